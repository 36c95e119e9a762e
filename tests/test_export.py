"""Tests of the SavedModel export, the published checkpoint's export and
predict_main.py."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from glassy_dynamics_tf import input_pipeline
from glassy_dynamics_tf import io as io_lib
from glassy_dynamics_tf import periodic
from glassy_dynamics_tf import prediction
from glassy_dynamics_tf import training
from glassy_dynamics_tf.configs import smoke

import fixtures
import synthetic_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINT = fixtures.T044_S09_CHECKPOINT
GOLDEN = fixtures.T044_S09_GOLDEN
PICKLE = fixtures.DEEPMIND_PICKLE


@pytest.fixture(name="trained", scope="module")
def _trained(tmp_path_factory):
  """A smoke-sized model with random weights, its config and metadata."""
  config = smoke.get_config()
  exported = synthetic_records.export_random_model(
      config, str(tmp_path_factory.mktemp("export")))
  return (config, exported.metadata, exported.model, exported.records,
          exported.path)


def test_round_trip_gives_identical_predictions(trained):
  config, metadata, model, records, path = trained
  loaded = tf.saved_model.load(path)
  predict = loaded.signatures["predict"]
  in_memory = training.PropensityPredictor(
      model.network, config.graph.cutoff, config.graph.self_loops, "{}",
      metadata.target_mean, metadata.target_std)
  assert metadata.target_std  # the export must undo the standardisation.
  batch = input_pipeline.eval_dataset(input_pipeline.graph_dataset(
      input_pipeline.records_dataset(records), config, metadata), 1)
  for record, (x, _, _) in zip(records, batch):
    args = dict(positions=tf.constant(record.positions),
                types=tf.constant(record.types), box=tf.constant(record.box))
    exported = predict(**args)["propensity"].numpy()
    assert exported.shape == (record.n_particles, metadata.n_outputs)
    np.testing.assert_array_equal(exported,
                                  in_memory.predict(**args)["propensity"])
    # The padded Keras path agrees up to float summation order.
    padded = (model(x).numpy()[0, :record.n_particles] *
              np.float32(metadata.target_std) +
              np.float32(metadata.target_mean))
    np.testing.assert_allclose(exported, padded, rtol=1e-5, atol=1e-6)
  # Unwrapped positions (a whole box away) give the same prediction.
  record = records[0]
  shifted = predict(positions=tf.constant(record.positions + record.box),
                    types=tf.constant(record.types),
                    box=tf.constant(record.box))["propensity"].numpy()
  np.testing.assert_allclose(
      shifted, predict(positions=tf.constant(record.positions),
                       types=tf.constant(record.types),
                       box=tf.constant(record.box))["propensity"].numpy(),
      atol=1e-5)


def test_metadata_asset(trained):
  config, metadata, _, _, path = trained
  info = training.load_saved_model_metadata(path)
  assert info["times"] == pytest.approx(list(metadata.times))
  assert info["timescale_indices"] == [0, 1]
  assert info["dataset_name"] == info["dataset"] == config.dataset.name
  assert info["config"]["model"]["latent_size"] == config.model.latent_size
  assert info["n_outputs"] == 2
  loaded = tf.saved_model.load(path)
  assert json.loads(loaded.metadata().numpy().decode()) == info


def test_wrong_n_outputs_is_refused(trained, tmp_path):
  config, metadata, model, _, _ = trained
  bad = metadata.to_json_dict()
  bad["times"] = [1.0]
  with pytest.raises(training.TrainingError, match="predicts 2 timescale"):
    training.export_saved_model(model, config, bad, str(tmp_path / "m"))
  assert not os.path.exists(tmp_path / "m")


def test_bad_inputs_name_the_problem(trained):
  *_, path = trained
  predict = tf.saved_model.load(path).signatures["predict"]
  with pytest.raises(tf.errors.InvalidArgumentError, match="twice the cut"):
    predict(positions=tf.zeros([5, 3]), types=tf.zeros([5], tf.int32),
            box=tf.constant([3., 3., 3.]))


def test_deepmind_checkpoint_export_reproduces_golden(tmp_path):
  golden = np.load(GOLDEN)
  path = prediction.export_deepmind_checkpoint(CHECKPOINT,
                                               str(tmp_path / "t044"),
                                               times=[0.132])
  predict = tf.saved_model.load(path).signatures["predict"]
  out = predict(positions=tf.constant(golden["positions"], tf.float32),
                types=tf.constant(golden["types"], tf.int32),
                box=tf.constant(golden["box"], tf.float32))["propensity"]
  np.testing.assert_allclose(out.numpy()[:, 0], golden["predictions"],
                             atol=1e-5)
  info = training.load_saved_model_metadata(path)
  assert info["times"] == [0.132] and info["isf_levels"] == [0.9]
  assert info["temperature"] == 0.44


def _predict_main(*args):
  return subprocess.run([sys.executable, "predict_main.py", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=180)


def test_predict_main_with_saved_model_and_checkpoint(trained, tmp_path):
  _, metadata, _, records, path = trained
  npz = str(tmp_path / "config.npz")
  io_lib.save_npz(records[0], npz)
  run = _predict_main(f"--model={path}", f"--input={npz}",
                      f"--output={tmp_path / 'out.npz'}")
  assert run.returncode == 0, run.stderr[-3000:]
  out = np.load(tmp_path / "out.npz")
  n = records[0].n_particles
  assert out["propensity"].shape == (n, 2)
  np.testing.assert_array_equal(out["types"], records[0].types)
  np.testing.assert_allclose(out["times"], metadata.times)
  lines = open(tmp_path / "out.xyz").read().splitlines()
  assert int(lines[0]) == n and len(lines) == n + 2
  assert "propensity_1:R:1" in lines[1] and 'Lattice="' in lines[1]
  first = lines[2].split()
  assert first[0] in ("A", "B") and len(first) == 1 + 3 + 1 + 2
  np.testing.assert_allclose(float(first[-1]), out["propensity"][0, 1],
                             rtol=1e-6)

  # The published TF1 checkpoint on the published pickle format.
  run = _predict_main(f"--model={CHECKPOINT}", f"--input={PICKLE}",
                      f"--output={tmp_path / 'dm.npz'}", "--times=0.132",
                      "--output_xyz=none")
  assert run.returncode == 0, run.stderr[-3000:]
  out = np.load(tmp_path / "dm.npz")
  assert out["propensity"].shape == (20, 1)
  assert np.all(np.isfinite(out["propensity"]))
  assert out["record_propensity"].shape == (10, 20)
  assert not os.path.exists(tmp_path / "dm.xyz")


def test_bad_model_paths(tmp_path):
  with pytest.raises(prediction.PredictionError, match="neither a SavedModel"):
    prediction.load_predictor(str(tmp_path))
  if not prediction.ase_available():
    with pytest.raises(prediction.PredictionError, match="needs ASE"):
      prediction.read_configuration(str(tmp_path / "x.xyz"))
  with pytest.raises(prediction.PredictionError, match="unknown suffix"):
    prediction.read_configuration(str(tmp_path / "x.cfg"))
  run = _predict_main(f"--model={tmp_path}", f"--input={PICKLE}",
                      f"--output={tmp_path / 'x.npz'}")
  assert run.returncode != 0 and "neither a SavedModel" in run.stderr


def test_ase_inputs_extxyz_and_lammps_data(trained, tmp_path):
  ase_io = pytest.importorskip("ase.io")
  import ase  # pylint: disable=g-import-not-at-top
  _, _, _, records, path = trained
  record = records[0]
  atoms = ase.Atoms(
      # Symbols only label the species for OVITO; types come from `type`.
      symbols=["Ar" if t == 0 else "Ne" for t in record.types],
      positions=record.positions.astype(np.float64) + record.box * [1, 0, -2],
      cell=np.diag(record.box.astype(np.float64)), pbc=True)
  atoms.arrays["type"] = record.types.astype(np.int64) + 1  # LAMMPS 1/2.
  xyz = str(tmp_path / "conf.extxyz")
  ase_io.write(xyz, atoms, format="extxyz")
  data = str(tmp_path / "conf.data")
  ase_io.write(data, atoms, format="lammps-data", atom_style="atomic",
               specorder=["Ar", "Ne"])
  for source in (xyz, data):
    read = prediction.read_configuration(source)
    np.testing.assert_array_equal(read.types, record.types)
    np.testing.assert_allclose(read.box, record.box, rtol=1e-6)
    # Positions come back wrapped into the box (they were shifted by boxes).
    np.testing.assert_allclose(
        periodic.minimum_image(read.positions - record.positions,
                               record.box), 0, atol=1e-4)
  run = _predict_main(f"--model={path}", f"--input={xyz}",
                      f"--output={tmp_path / 'out.npz'}")
  assert run.returncode == 0, run.stderr[-3000:]
  reference = _predict_main(f"--model={path}",
                            f"--input={_save(record, tmp_path)}",
                            f"--output={tmp_path / 'ref.npz'}")
  assert reference.returncode == 0, reference.stderr[-3000:]
  np.testing.assert_allclose(np.load(tmp_path / "out.npz")["propensity"],
                             np.load(tmp_path / "ref.npz")["propensity"],
                             rtol=1e-4, atol=1e-5)
  # A sheared (triclinic) cell is refused with the cell named.
  atoms.set_cell(np.diag(record.box.astype(np.float64)) +
                 [[0, 0, 0], [0.5, 0, 0], [0, 0, 0]], scale_atoms=False)
  sheared = str(tmp_path / "sheared.extxyz")
  ase_io.write(sheared, atoms, format="extxyz")
  with pytest.raises(prediction.PredictionError, match="not orthorhombic"):
    prediction.read_configuration(sheared)


def _save(record, tmp_path):
  path = str(tmp_path / "ref_input.npz")
  io_lib.save_npz(record, path)
  return path
