"""Tests of analyze_main.py end to end and of analysis/common.py's loaders."""

import importlib.util
import json
import math
import os
import subprocess
import sys

from absl import flags
import numpy as np
import pytest

from glassy_dynamics_tf import io as io_lib
from glassy_dynamics_tf.analysis import common
from glassy_dynamics_tf.io import record as record_lib
from glassy_dynamics_tf.simulation import kob_andersen as ka

import fixtures
import synthetic_records

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CHECKPOINT = fixtures.T044_S09_CHECKPOINT
GOLDEN = fixtures.T044_S09_GOLDEN


def _write_npz(directory, n=2, n_particles=150):
  os.makedirs(directory, exist_ok=True)
  records = synthetic_records.make_records(n, n_particles=n_particles)
  for i, record in enumerate(records):
    io_lib.save_npz(record, os.path.join(directory,
                                         f"configuration_{i:05d}.npz"))
  return records


def _analyze_main(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "analyze_main.py", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300, env=env)


def test_load_records_from_files(tmp_path):
  records = _write_npz(str(tmp_path / "data"), n=3)
  ids, loaded = common.load_records([str(tmp_path / "data")])
  assert ids == ["configuration_00000", "configuration_00001",
                 "configuration_00002"]
  assert all(a.equals(b) for a, b in zip(records, loaded))
  ids, _ = common.load_records([str(tmp_path / "data" / "*_0000[12].npz")])
  assert ids == ["configuration_00001", "configuration_00002"]
  ids, _ = common.load_records([str(tmp_path / "data")],
                               max_configurations=1)
  assert ids == ["configuration_00000"]
  with pytest.raises(common.AnalysisError, match="exactly one"):
    common.load_records([])
  with pytest.raises(common.AnalysisError, match="exactly one"):
    common.load_records([str(tmp_path)], dataset="glassy_dynamics/demo")
  with pytest.raises(common.AnalysisError, match="no such file"):
    common.load_records([str(tmp_path / "missing.npz")])
  with pytest.raises(common.AnalysisError, match="holds no .npz"):
    common.load_records([str(tmp_path)])
  (tmp_path / "bad.npz").write_bytes(b"not a zip")
  with pytest.raises(common.AnalysisError, match="bad.npz"):
    common.load_records([str(tmp_path / "bad.npz")])


def test_load_model_from_the_published_checkpoint():
  model = common.load_model(CHECKPOINT)
  assert model.num_recurrences == 7 and model.cutoff == 2.0
  assert model.self_loops and model.n_outputs == 1
  assert model.metadata["isf_levels"] == [0.9]
  golden = np.load(GOLDEN)
  out = model.predict(golden["positions"].astype(np.float32),
                      golden["types"].astype(np.int32),
                      golden["box"].astype(np.float32))
  np.testing.assert_allclose(out[:, 0], golden["predictions"], atol=1e-5)
  assert model.network is not None


def test_load_model_errors_name_the_path(tmp_path):
  with pytest.raises(common.AnalysisError, match="neither a SavedModel"):
    common.load_model(str(tmp_path))


def test_jsonable_writes_strict_json(tmp_path):
  path = common.write_json(str(tmp_path / "x.json"), {
      "a": np.array([1.0, np.nan]), "b": math.inf, "c": np.int64(3),
      "d": (np.float32(0.5),), "e": np.bool_(True)})
  with open(path) as f:
    assert json.load(f) == {"a": [1.0, None], "b": None, "c": 3,
                            "d": [0.5], "e": True}
  np.testing.assert_array_equal(common.float_array([[1, None]]),
                                [[1.0, np.nan]])


def test_analyze_main_shell_ablation_end_to_end(exported, tmp_path):
  path, _, _ = exported
  _write_npz(str(tmp_path / "data"), n=2, n_particles=150)
  out = tmp_path / "out"
  run = _analyze_main("--study=shell_ablation", f"--model={path}",
                      f"--input={tmp_path / 'data'}", f"--output_dir={out}",
                      "--n_centres=5", "--max_hops=3")
  assert run.returncode == 0, run.stderr[-3000:]
  assert "shell_ablation" in run.stdout and "full" in run.stdout
  with open(out / "shell_ablation.json") as f:
    report = json.load(f)
  assert report["model"] == path
  assert report["configurations"] == ["configuration_00000",
                                      "configuration_00001"]
  assert report["hops"] == [1, 2, 3] and report["n_centres"] == [5, 5]
  assert report["receptive_field_hops"] == 2   # the smoke config's steps
  deviation = np.array(report["mean_abs_deviation_from_full"])
  assert deviation[0].min() > 0 and deviation[1:].max() < 1e-5
  assert (out / "shell_ablation.png").stat().st_size > 0


def test_every_flag_is_explained():
  spec = importlib.util.spec_from_file_location(
      "analyze_main", os.path.join(ROOT, "analyze_main.py"))
  module = importlib.util.module_from_spec(spec)
  # absl files flags under the defining module's name in sys.modules.
  sys.modules.setdefault("analyze_main", module)
  module = sys.modules["analyze_main"]
  if not hasattr(module, "STUDIES"):
    spec.loader.exec_module(module)  # defines the flags, parses nothing
  defined = {f.name: f for f in
             flags.FLAGS.get_flags_for_module(module.__name__)}
  assert set(defined) == {
      "study", "model", "input", "dataset", "data_dir", "split",
      "output_dir", "max_configurations", "seed", "n_centres", "max_hops",
      "shell_width", "max_distance", "displacement", "n_draws",
      "perturbation", "fields", "bin_width", "r_max", "fit_r_min",
      "fit_floor", "max_points", "perplexity", "neighbours", "figures",
      "config", "sweep_root", "num_parallel", "sizes", "cutoffs",
      "recurrences", "output_index", "strain_step", "max_strain"}
  for name, flag in defined.items():
    assert len(flag.help) > 10, name
  assert set(module.STUDIES) == {"shell_ablation", "edge_perturbation",
                                 "correlation_length", "embedding_map",
                                 "dataset_size", "edge_threshold", "shear"}
  assert defined["study"].parser.enum_values == list(module.STUDIES)
  # Each study is described in the module docstring that --help prints.
  for study in module.STUDIES:
    assert study in module.__doc__


def test_analyze_main_reports_bad_input(tmp_path):
  run = _analyze_main("--study=correlation_length", "--fields=propensity",
                      f"--input={tmp_path / 'missing.npz'}",
                      f"--output_dir={tmp_path}")
  assert run.returncode != 0
  assert "analyze_main.py: error: --input" in run.stderr
  assert "no such file or directory" in run.stderr


def test_analyze_main_shear_end_to_end(exported, tmp_path):
  # Two AQS steps of a quenched synthetic configuration: the command path
  # (model scores, energy baseline, JSON, figure); the physics of the
  # events is tested in tests/simulation/test_shear.py.
  path, _, _ = exported
  # A jittered lattice: quenchable (random synthetic positions overlap).
  n = 250
  box = np.full(3, (n / 1.2)**(1 / 3))
  positions, types = ka.lattice_configuration(n, box, seed=3)
  positions = positions + np.random.default_rng(0).normal(0, 0.05, (n, 3))
  record = record_lib.ConfigurationRecord.create(
      positions=positions, types=types, box=box, temperature=0.9,
      propensity=np.zeros((1, n)), times=[1.0])
  os.makedirs(tmp_path / "data")
  io_lib.save_npz(record, str(tmp_path / "data" / "configuration_00000.npz"))
  out = tmp_path / "out"
  run = _analyze_main("--study=shear", f"--model={path}",
                      f"--input={tmp_path / 'data'}", f"--output_dir={out}",
                      "--strain_step=1e-3", "--max_strain=0.002")
  assert run.returncode == 0, run.stderr[-3000:]
  assert "shear" in run.stdout
  with open(out / "shear.json") as f:
    report = json.load(f)
  (configuration,) = report["configurations"]
  assert configuration["id"] == "configuration_00000"
  assert (out / "shear.png").stat().st_size > 0
  assert (out / "shear_runs" / "configuration_00000.npz").exists()
  run = _analyze_main("--study=shear", f"--model={path}",
                      f"--input={tmp_path / 'data'}", f"--output_dir={out}",
                      "--strain_step=1e-3", "--max_strain=0.002",
                      "--output_index=7")
  assert run.returncode != 0 and "output_index 7" in run.stderr
  # Overlapping particles: the quench fails with a clear message.
  _write_npz(str(tmp_path / "overlapping"), n=1, n_particles=250)
  run = _analyze_main("--study=shear", f"--model={path}",
                      f"--input={tmp_path / 'overlapping'}",
                      f"--output_dir={tmp_path / 'out2'}")
  assert run.returncode != 0
  assert "could not minimise" in run.stderr, run.stderr[-2000:]
