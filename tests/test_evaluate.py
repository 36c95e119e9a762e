"""The evaluation core, the SavedModel predictor and evaluate_main's flags."""

import dataclasses
import json
import math
import os
import re
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
import synthetic_records

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
  # methods × timescales × metrics; no noise-ceiling rows (no halves).
  assert len(lines) == 1 + 3 * 2 * len(metrics.METRIC_NAMES)
  assert lines[0].endswith(",std,count,sem")
  assert report["noise_ceiling"]["known"] is False
  assert set(report["comparisons"]["gnn"]) == {"potential_energy",
                                               "neighbour_count"}
  with open(os.path.join(hot, "table.txt")) as f:
    table = f.read()
  assert "noise ceiling: unknown (records lack propensity_halves)" in table
  assert "gnn ahead of every baseline by > 2 s.e." in table
  figures = os.listdir(os.path.join(hot, "figures"))
  assert {"pearson_vs_time.png", "headline_vs_time.png",
          "paired_differences.png"} <= set(figures)
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
  # No samples, no slices; no model, no paired differences.
  assert sorted(figures) == ["headline_vs_time.png", "pearson_vs_time.png"]
  # Flags given to run override the config.
  report = evaluation.run([], ["ds"], str(tmp_path), config=config,
                          split="test", baseline_names=["neighbour_count"],
                          figures=False)["ds"]
  assert report["split"] == "test"
  assert list(report["methods"]) == ["neighbour_count"]


def test_run_maps_old_names_and_shares_the_symmetry_functions(
    tmp_path, monkeypatch):
  def fake_load_split(dataset, split, data_dir=None, max_configurations=0):
    del dataset, data_dir, max_configurations
    seeds = range(3) if split == "train" else range(10, 12)
    return [f"{split}{s}" for s in seeds], [make_record(s) for s in seeds]

  calls = []
  original = baselines.symmetry_functions

  def counting(*args, **kwargs):
    calls.append(1)
    return original(*args, **kwargs)

  monkeypatch.setattr(evaluation, "load_split", fake_load_split)
  monkeypatch.setattr(baselines, "symmetry_functions", counting)
  config = default.get_config().evaluate
  config.n_plot_configurations = 0
  report = evaluation.run(
      [], ["ds"], str(tmp_path), config=config, figures=False,
      baseline_names=["local_structure", "softness", "symmetry_ridge"])["ds"]
  # The deprecated name is the current one, listed once.
  assert report["baselines"] == ["symmetry_ridge", "softness"]
  assert list(report["methods"]) == ["symmetry_ridge", "softness"]
  assert report["methods"]["softness"]["describe"]["classes"][
      "non_rearranging"].startswith("bottom 0.5")
  # 3 train + 2 test configurations, each once for both baselines.
  assert len(calls) == 5


def _noisy_records(n_records=8, n_particles=600, noise_std=1.0):
  """Records whose propensity is a known signal s (var 1) plus the mean of
  two half-ensembles of noise (var noise_std² each), and s itself."""
  records, signals = [], []
  for k in range(n_records):
    base = synthetic_records.make_record(k, n_particles=n_particles)
    rng = np.random.default_rng(100 + k)
    # Far above 0, so the noisy halves stay non-negative.
    signal = 10.0 + rng.normal(size=(2, n_particles))
    records.append(synthetic_records.with_noisy_halves(base, signal,
                                                       noise_std, seed=k))
    signals.append(signal)
  return records, signals


def test_noise_ceiling_matches_the_analytic_value():
  # var(s) = 1, noise of a half 1: r_hh = 1/2, R = 2 r_hh / (1 + r_hh) = 2/3,
  # ceiling sqrt(2/3). An oracle for s reaches the ceiling (r/ceiling 1); a
  # predictor s + independent noise of var 1 has corr(f, s) = 1/sqrt(2),
  # which r/ceiling must recover although its r is only sqrt(2/3)/sqrt(2).
  records, signals = _noisy_records()
  by_record = {id(r): s for r, s in zip(records, signals)}
  rng = np.random.default_rng(0)
  methods = [
      evaluation.Method("oracle", lambda r: by_record[id(r)].T),
      evaluation.Method("blurred", lambda r: by_record[id(r)].T +
                        rng.normal(size=(r.n_particles, 2)), None,
                        "baseline"),
  ]
  report = evaluation.evaluate(records, methods).report
  ceiling = report["noise_ceiling"]
  assert ceiling["known"] is True and ceiling["reason"] is None
  np.testing.assert_allclose(ceiling["split_half_reliability"]["mean"],
                             [0.5, 0.5], atol=0.02)
  np.testing.assert_allclose(ceiling["ceiling"]["mean"],
                             [math.sqrt(2 / 3)] * 2, atol=0.01)
  oracle = report["methods"]["oracle"]
  np.testing.assert_allclose(oracle["metrics"]["pearson"]["mean"],
                             [math.sqrt(2 / 3)] * 2, atol=0.015)
  np.testing.assert_allclose(oracle["pearson_over_ceiling"]["mean"],
                             [1.0, 1.0], atol=0.02)
  np.testing.assert_allclose(
      report["methods"]["blurred"]["pearson_over_ceiling"]["mean"],
      [1 / math.sqrt(2)] * 2, atol=0.03)
  # Per configuration, the ceiling is the Spearman-Brown value of r_hh.
  per = ceiling["per_configuration"]
  r_hh = np.asarray(per["split_half_reliability"])
  np.testing.assert_allclose(per["ceiling"],
                             np.sqrt(2 * r_hh / (1 + r_hh)))
  table = evaluation.format_table(report)
  assert "r_hh" in table and "ceiling" in table
  assert re.search(r"\+0\.8\d\d ± 0\.0\d\d \[(0\.9\d|1\.0\d)\]", table), table
  json.dumps(report, allow_nan=False)


def test_noise_ceiling_is_unknown_without_every_record_s_halves():
  records, _ = _noisy_records(n_records=3, n_particles=200)
  methods = [evaluation.Method("oracle", lambda r: r.propensity.T)]
  plain = [dataclasses.replace(r, propensity_halves=None) for r in records]
  for group, reason in ((plain, "records lack propensity_halves"),
                        (plain[:1] + records[1:],
                         "1 of 3 records lack propensity_halves")):
    report = evaluation.evaluate(group, methods).report
    ceiling = report["noise_ceiling"]
    assert ceiling["known"] is False and ceiling["reason"] == reason
    for field in ("split_half_reliability", "ceiling", "per_configuration"):
      assert ceiling[field] is None
    assert report["methods"]["oracle"]["pearson_over_ceiling"] is None
    # Strict JSON: null, not NaN.
    assert json.loads(json.dumps(report, allow_nan=False))[
        "noise_ceiling"]["ceiling"] is None
    assert f"noise ceiling: unknown ({reason})" in evaluation.format_report(
        report)


def test_headline_report_and_paired_differences():
  records, signals = _noisy_records(n_records=6, n_particles=300)
  by_record = {id(r): s for r, s in zip(records, signals)}
  rng = np.random.default_rng(1)
  methods = [
      evaluation.Method("gnn", lambda r: by_record[id(r)].T),
      evaluation.Method("worse", lambda r: by_record[id(r)].T + 3 *
                        rng.normal(size=(r.n_particles, 2)), None,
                        "baseline"),
      evaluation.Method("late_twin", lambda r: by_record[id(r)][1], [1],
                        "baseline"),
  ]
  report = evaluation.evaluate(records, methods).report
  assert report["headline_metrics"] == ["pearson", "roc_auc",
                                        "balanced_accuracy"]
  assert report["chance_levels"]["accuracy"] == pytest.approx(0.82)
  # s.e. of the mean = std(ddof=1) / sqrt(n).
  per = np.asarray(report["methods"]["worse"]["per_configuration"]["pearson"])
  np.testing.assert_allclose(report["methods"]["worse"]["metrics"]["pearson"]
                             ["sem"], per.std(axis=0, ddof=1) / math.sqrt(6))
  # gnn − worse: the paired difference of the per-configuration values.
  comparison = report["comparisons"]["gnn"]["worse"]
  assert comparison["timescale_indices"] == [0, 1]
  for metric in metrics.HEADLINE_METRICS:
    want = metrics.paired_difference(
        report["methods"]["gnn"]["per_configuration"][metric],
        report["methods"]["worse"]["per_configuration"][metric])
    np.testing.assert_allclose(comparison[metric]["mean"], want.mean)
    np.testing.assert_allclose(comparison[metric]["sem"], want.sem)
  assert min(comparison["pearson"]["n_sem"]) > 2
  # late_twin equals gnn at timescale 1 (the only one it predicts): a zero
  # difference with zero spread is not "ahead".
  twin = report["comparisons"]["gnn"]["late_twin"]
  assert twin["timescale_indices"] == [1]
  assert twin["pearson"]["mean"] == [0.0] and twin["pearson"]["n_sem"] == [
      None]
  verdict = report["verdict"]["gnn"]["pearson"]
  assert verdict["ahead_everywhere"] is False
  assert [(e["baseline"], e["timescale_index"]) for e in
          verdict["exceptions"]] == [("late_twin", 1)]
  text = evaluation.format_report(report)
  # Headlines first, in order; accuracy and overlap are JSON-only.
  starts = [text.index(f"{m} over type-A particles (chance")
            for m in metrics.HEADLINE_METRICS]
  assert starts == sorted(starts) and starts[0] == 0
  assert "accuracy over" not in text.replace("balanced_accuracy over", "")
  assert "gnn − worse" in text and "gnn − late_twin" in text
  assert "pearson: NO, not by 2 s.e. over late_twin at j=1 (nan s.e.)" in text
  # Without the twin, the gnn is ahead everywhere on Pearson.
  report = evaluation.evaluate(records, methods[:2]).report
  assert report["verdict"]["gnn"]["pearson"]["ahead_everywhere"] is True
  assert "  pearson: yes" in evaluation.format_verdict(report)
  # Baselines only: no comparison, no verdict.
  report = evaluation.evaluate(records, methods[1:]).report
  assert report["comparisons"] == {} and report["verdict"] == {}


def test_propensity_halves_of_example():
  halves = np.ones((2, 3, 5), np.float32)
  got = evaluation.propensity_halves_of_example(
      {"propensity_halves": halves}, "ds/test/a")
  np.testing.assert_array_equal(got, halves)
  assert evaluation.propensity_halves_of_example(
      {"propensity_halves": np.zeros((0, 3, 5), np.float32)}, "x") is None
  assert evaluation.propensity_halves_of_example({}, "x") is None
  with pytest.raises(evaluation.EvaluationError,
                     match=r"ds/test/b: feature 'propensity_halves' must have "
                     r"shape \[2, T, n\].*found \[3, 3, 5\]"):
    evaluation.propensity_halves_of_example(
        {"propensity_halves": np.ones((3, 3, 5))}, "ds/test/b")


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
  # A deprecated name passes the flag check (it fails later, on the data).
  result = _main("--dataset=x", f"--output_dir={tmp_path}",
                 "--baselines=local_structure")
  assert result.returncode != 0 and "unknown baseline" not in result.stderr
  assert "cannot load split 'test' of dataset 'x'" in result.stderr
  # The evaluate section of the (default) config reaches the run.
  result = _main("--dataset=x", f"--output_dir={tmp_path}",
                 "--config.evaluate.top_fraction=1.5")
  assert result.returncode != 0
  assert "config.evaluate.top_fraction" in result.stderr, result.stderr


def test_main_takes_pretrained_model_names(tmp_path):
  # A shipped SavedModel by name: resolved, so the run fails only later,
  # on the (missing) data.
  result = _main("--model=demo", "--dataset=x", "--baselines=",
                 f"--output_dir={tmp_path}")
  assert result.returncode != 0
  assert "cannot load split 'test' of dataset 'x'" in result.stderr, (
      result.stderr[-2000:])
  # The TF1 checkpoint is not a SavedModel: the error says how to make one.
  result = _main("--model=t044_s09", "--dataset=x", "--baselines=",
                 f"--output_dir={tmp_path}")
  assert result.returncode != 0
  assert "--export_saved_model" in result.stderr
  # An unknown name lists the known ones.
  result = _main("--model=no_such_model", "--dataset=x", "--baselines=",
                 f"--output_dir={tmp_path}")
  assert result.returncode != 0
  assert "reference_t064" in result.stderr, result.stderr[-2000:]
