"""The evaluation core, the SavedModel predictor and evaluate_main's flags."""

import json
import math
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from glassy_dynamics_tf import baselines
from glassy_dynamics_tf import evaluation
from glassy_dynamics_tf import metrics
from glassy_dynamics_tf.configs import default
from glassy_dynamics_tf.io import record as record_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOX = np.array([6.0, 6.5, 7.0])
LEVELS = [0.8, math.exp(-1)]


def make_record(seed, n=120, temperature=1.0):
  """Random configuration whose propensity is x/box_x (+ a B-only offset)."""
  rng = np.random.default_rng(seed)
  positions = rng.uniform(0, 1, (n, 3)) * BOX
  types = (rng.uniform(size=n) < 0.2).astype(np.int32)
  x = positions[:, 0] / BOX[0]
  propensity = np.stack([0.1 + x, 0.5 + 2 * x]) + 3.0 * types
  return record_lib.ConfigurationRecord.create(
      positions=positions, types=types, box=BOX, propensity=propensity,
      times=[0.3, 1.7], isf_levels=LEVELS, temperature=temperature)


class TinyModel(tf.Module):
  """Predicts x/box_x for every output: Pearson 1 against make_record."""

  def __init__(self, n_outputs):
    super().__init__()
    self.scale = tf.Variable(tf.range(1.0, n_outputs + 1.0))

  @tf.function(input_signature=[
      tf.TensorSpec([None, 3], tf.float32, name="positions"),
      tf.TensorSpec([None], tf.int32, name="types"),
      tf.TensorSpec([3], tf.float32, name="box")])
  def predict(self, positions, types, box):
    del types
    return {"propensity": positions[:, :1] / box[0] * self.scale[None, :]}


def save_model(path, n_outputs, timescale_indices=()):
  module = TinyModel(n_outputs)
  saved = os.path.join(path, "saved_model")
  tf.saved_model.save(module, saved, signatures={"predict": module.predict})
  os.makedirs(os.path.join(saved, "assets"), exist_ok=True)
  with open(os.path.join(saved, "assets", "metadata.json"), "w") as f:
    json.dump({"times": [0.3, 1.7], "isf_levels": LEVELS,
               "timescale_indices": list(timescale_indices),
               "dataset": "glassy_dynamics/demo",
               "config": {"simulation": {"temperature": 1.0}}}, f)
  return path


def test_evaluate_perfect_and_partial_methods():
  records = [make_record(s) for s in range(3)]
  methods = [
      evaluation.Method("oracle", lambda r: r.propensity.T),
      evaluation.Method("late_only", lambda r: -r.positions[:, 0], [1]),
      evaluation.Method("energy", baselines.make_baseline(
          "potential_energy").predict, None, "baseline"),
  ]
  result = evaluation.evaluate(records, methods, ids=["a", "b", "c"],
                               n_samples=2)
  report = result.report
  assert report["ids"] == ["a", "b", "c"]
  assert report["tau_alpha"] == pytest.approx(1.7)
  np.testing.assert_allclose(report["times"], [0.3, 1.7], rtol=1e-6)
  oracle = report["methods"]["oracle"]["metrics"]
  assert oracle["pearson"]["mean"] == pytest.approx([1.0, 1.0])
  assert oracle["roc_auc"]["min"] == pytest.approx([1.0, 1.0])
  late = report["methods"]["late_only"]
  assert late["timescale_indices"] == [1]
  assert late["metrics"]["pearson"]["mean"] == pytest.approx([-1.0])
  energy = report["methods"]["energy"]["metrics"]["pearson"]
  assert all(math.isfinite(v) for v in energy["mean"])
  assert len(result.samples) == 2
  assert np.isnan(result.samples[0].predictions["late_only"][:, 0]).all()
  json.dumps(report, allow_nan=False)  # strict JSON
  table = evaluation.format_table(report)
  assert "+1.000 ± 0.000" in table and "—" in table and "1*" in table


def test_evaluate_errors_name_the_thing():
  records = [make_record(0)]
  with pytest.raises(evaluation.EvaluationError, match="empty split"):
    evaluation.evaluate([], [])
  with pytest.raises(evaluation.EvaluationError,
                     match="'three' has 3 outputs .* 2 timescales"):
    evaluation.evaluate(records, [evaluation.Method(
        "three", lambda r: np.zeros((r.n_particles, 3)))])
  with pytest.raises(evaluation.EvaluationError,
                     match="'far' predicts timescale indices \\[5\\]"):
    evaluation.evaluate(records, [evaluation.Method(
        "far", lambda r: np.zeros(r.n_particles), [5])])


def test_saved_model_predictor_round_trip(tmp_path):
  workdir = save_model(str(tmp_path / "run1"), n_outputs=1,
                       timescale_indices=[1])
  predictor = evaluation.SavedModelPredictor(workdir)
  assert predictor.name == "run1"
  assert predictor.timescale_indices == [1]
  assert "T=1" in predictor.train_label()
  records = [make_record(s) for s in range(2)]
  report = evaluation.evaluate(records, [predictor.method()]).report
  assert report["methods"]["run1"]["metrics"]["pearson"]["mean"] == (
      pytest.approx([1.0], abs=1e-5))
  # A model with 3 outputs on a 2-timescale dataset is refused, by name.
  bad = evaluation.SavedModelPredictor(
      save_model(str(tmp_path / "wide"), n_outputs=3))
  with pytest.raises(evaluation.EvaluationError, match="'wide' has 3 outputs"):
    evaluation.evaluate(records, [bad.method()])
  with pytest.raises(FileNotFoundError, match="no_such_dir"):
    evaluation.SavedModelPredictor(str(tmp_path / "no_such_dir"))


def test_run_writes_report_csv_figures_and_transfer(tmp_path, monkeypatch):
  model = save_model(str(tmp_path / "gnn"), n_outputs=2)
  temperatures = {"ds/hot": 1.0, "ds/cold": 0.5}

  def fake_load_split(dataset, split, data_dir=None, max_configurations=0):
    del data_dir, max_configurations
    seeds = range(3) if split == "train" else range(10, 12)
    return ([f"{split}{s}" for s in seeds],
            [make_record(s, temperature=temperatures[dataset]) for s in seeds])

  monkeypatch.setattr(evaluation, "load_split", fake_load_split)
  out = str(tmp_path / "eval")
  config = default.get_config().evaluate
  config.n_plot_configurations = 1
  config.top_fraction = 0.2
  results = evaluation.run(
      [model], ["ds/hot", "ds/cold"], out, config=config,
      baseline_names=["potential_energy", "neighbour_count"], figures=True)
  hot = os.path.join(out, "ds_hot")
  with open(os.path.join(hot, "report.json")) as f:
    report = json.load(f)
  assert set(report["methods"]) == {"gnn", "potential_energy",
                                    "neighbour_count"}
  for entry in report["methods"].values():
    assert all(v is not None for v in entry["metrics"]["pearson"]["mean"])
  assert "neighbour_sweep" in report
  with open(os.path.join(hot, "metrics.csv")) as f:
    lines = f.read().splitlines()
  assert lines[0].startswith("method,kind,timescale_index,time")
  assert len(lines) == 1 + 3 * 2 * 5  # methods × timescales × metrics
  figures = os.listdir(os.path.join(hot, "figures"))
  assert "pearson_vs_time.png" in figures
  # config.evaluate.n_plot_configurations = 1: one configuration, both
  # timescales.
  assert sorted(f for f in figures if f.startswith("slice_")) == [
      "slice_test10_t0.png", "slice_test10_t1.png"]
  # config.evaluate.top_fraction reaches the metrics: the energy baseline's
  # accuracy on the first test configuration is that of a top-20 % class.
  assert report["top_fraction"] == 0.2
  record = make_record(10)
  energy = baselines.make_baseline("potential_energy").predict(record)
  want = metrics.configuration_metrics(energy, record.propensity,
                                       record.types, fraction=0.2)
  got = report["methods"]["potential_energy"]["per_configuration"]
  np.testing.assert_allclose(got["accuracy"][0], want.accuracy)
  assert not np.allclose(want.accuracy, metrics.configuration_metrics(
      energy, record.propensity, record.types, fraction=0.1).accuracy)
  transfer = results["transfer"]
  assert transfer["datasets"] == ["ds/hot", "ds/cold"]
  assert transfer["test_temperatures"] == [1.0, 0.5]
  np.testing.assert_allclose(np.asarray(transfer["mean"], float), 1.0,
                             atol=1e-5)
  assert os.path.exists(os.path.join(out, "transfer_heatmap.png"))


def test_run_takes_its_settings_from_config_evaluate(tmp_path, monkeypatch):
  calls = []

  def fake_load_split(dataset, split, data_dir=None, max_configurations=0):
    del data_dir, max_configurations
    calls.append((dataset, split))
    return ["r0", "r1", "r2"], [make_record(s) for s in range(3)]

  monkeypatch.setattr(evaluation, "load_split", fake_load_split)
  config = default.get_config().evaluate
  config.split = "validation"
  config.baselines = ("potential_energy",)
  config.n_plot_configurations = 0
  results = evaluation.run([], ["ds"], str(tmp_path), config=config)
  report = results["ds"]
  assert calls == [("ds", "validation")]
  assert report["split"] == "validation"
  assert list(report["methods"]) == ["potential_energy"]
  assert report["top_fraction"] == default.get_config().evaluate.top_fraction
  figures = os.listdir(tmp_path / "figures")
  assert figures == ["pearson_vs_time.png"]  # no samples, no slices
  # Flags given to run override the config.
  report = evaluation.run([], ["ds"], str(tmp_path), config=config,
                          split="test", baseline_names=["neighbour_count"],
                          figures=False)["ds"]
  assert report["split"] == "test"
  assert list(report["methods"]) == ["neighbour_count"]


@pytest.mark.parametrize("field,value,match", [
    ("top_fraction", 1.5, r"config.evaluate.top_fraction must lie in \(0, 1\)"),
    ("n_plot_configurations", -1, "config.evaluate.n_plot_configurations"),
    ("slice_thickness", 0.0, "config.evaluate.slice_thickness must be > 0"),
])
def test_bad_evaluate_config_is_named(tmp_path, field, value, match):
  config = default.get_config().evaluate
  config[field] = value
  with pytest.raises(evaluation.EvaluationError, match=match):
    evaluation.run([], ["ds"], str(tmp_path), config=config)
  with pytest.raises(evaluation.EvaluationError, match="unknown fields"):
    evaluation.run([], ["ds"], str(tmp_path),
                   config=ml_collections.ConfigDict({"top_fractoin": 0.1}))


def _main(*args):
  return subprocess.run([sys.executable, os.path.join(REPO,
                                                      "evaluate_main.py"),
                         *args], capture_output=True, text=True, cwd=REPO,
                        timeout=120, check=False)


def test_main_help_and_missing_model(tmp_path):
  result = _main("--help")
  # absl's --help prints the flags and exits with status 1 by design.
  assert result.returncode in (0, 1), result.stderr
  assert "--model" in result.stdout and "--baselines" in result.stdout
  missing = str(tmp_path / "missing_workdir")
  result = _main(f"--model={missing}", "--dataset=glassy_dynamics/demo",
                 f"--output_dir={tmp_path / 'out'}")
  assert result.returncode != 0
  assert "missing_workdir" in result.stderr
  result = _main("--dataset=x", f"--output_dir={tmp_path}",
                 "--baselines=soft_mode")
  assert result.returncode != 0 and "unknown baseline" in result.stderr
  # The evaluate section of the (default) config reaches the run.
  result = _main("--dataset=x", f"--output_dir={tmp_path}",
                 "--config.evaluate.top_fraction=1.5")
  assert result.returncode != 0
  assert "config.evaluate.top_fraction" in result.stderr, result.stderr
