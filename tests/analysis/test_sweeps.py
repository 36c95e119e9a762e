"""Tests of analysis/sweeps.py: points, overrides, dispatch, the report.

The dispatch tests start the real train_main.py; the failing points fail
inside it (a strategy that does not exist, a negative subset size), so the
sweep's handling of a real failed run is what is tested. The end-to-end
sweep trains two smoke-config networks on a TFDS dataset built from
synthetic records (slow).
"""

import json
import os
import signal
import subprocess
import sys
import time

from absl import flags
from ml_collections import config_flags
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from glassy_dynamics_tf import input_pipeline
from glassy_dynamics_tf import io as io_lib
from glassy_dynamics_tf import metrics
from glassy_dynamics_tf import training
from glassy_dynamics_tf.analysis import common
from glassy_dynamics_tf.analysis import sweeps

import synthetic_records

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SMOKE = os.path.join(ROOT, "glassy_dynamics_tf", "configs", "smoke.py")
if os.path.join(ROOT, "datasets") not in sys.path:
  # The module name `tfds build datasets/glassy_dynamics` and pytest use.
  sys.path.insert(0, os.path.join(ROOT, "datasets"))

# pylint: disable=g-import-not-at-top,wrong-import-position
from glassy_dynamics import glassy_dynamics_dataset_builder as gd


@pytest.fixture(name="tfds_data", scope="module")
def _tfds_data(tmp_path_factory):
  """10 synthetic records as glassy_dynamics/demo.

  Returns:
    (data_dir, records, number of train-split configurations).
  """
  root = tmp_path_factory.mktemp("sweep_data")
  source = root / "npz"
  source.mkdir()
  records = synthetic_records.make_records(10, n_particles=100)
  for i, record in enumerate(records):
    io_lib.save_npz(record, str(source / f"configuration_{i:05d}.npz"))
  builder = gd.Builder(config=gd.GlassyDynamicsConfig(name="demo",
                                                      path=str(source)),
                       data_dir=str(root / "tfds"))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig())
  return (str(root / "tfds"), records,
          builder.info.splits["train"].num_examples)


def _quiet(_):
  pass


# ------------------------------------------------------------- points ---


def test_builtin_sweeps_expand_to_named_override_points():
  sweep = sweeps.dataset_size_sweep(SMOKE, ["1", "5", "all"],
                                    {"train.num_steps": 7})
  assert [p.name for p in sweep.points] == ["n_train_0001", "n_train_0005",
                                            "n_train_all"]
  assert [dict(p.overrides) for p in sweep.points] == [
      {"dataset.max_train_examples": 1}, {"dataset.max_train_examples": 5},
      {"dataset.max_train_examples": 0}]
  # Base overrides first, then the point's own (which win).
  assert sweep.overrides(sweep.points[1]) == {
      "train.num_steps": 7, "dataset.max_train_examples": 5}
  grid = sweeps.edge_threshold_sweep(SMOKE, ["1.5", "2"], [1, 3])
  assert len(grid.points) == 2 * 2 * 2
  assert grid.points[0].name == "cutoff_1.5_rec_01_edges"
  assert dict(grid.points[0].overrides) == {
      "graph.cutoff": 1.5, "model.num_recurrences": 1,
      "model.use_edge_features": True}
  assert dict(grid.points[-1].overrides) == {
      "graph.cutoff": 2.0, "model.num_recurrences": 3,
      "model.use_edge_features": False}
  assert len({p.name for p in grid.points}) == 8
  for bad, match in ((["x"], "'x' is not an int"), (["0"], "0 must be > 0"),
                     (["2", "2"], "repeated"), ([], "no values")):
    with pytest.raises(sweeps.SweepError, match="--sizes: " + match):
      sweeps.dataset_size_sweep(SMOKE, bad)
  with pytest.raises(sweeps.SweepError, match="--cutoffs: 'a' is not a "
                     "float"):
    sweeps.edge_threshold_sweep(SMOKE, ["a"], [1])
  with pytest.raises(sweeps.SweepError, match="unknown sweep 'other'"):
    sweeps.builtin_sweep("other", SMOKE)


def test_override_flags_parse_back_to_the_checked_config():
  # What train_main.py's --config flag makes of a point's command line is
  # the config check_sweep built in-process.
  base = {"dataset.name": "glassy_dynamics/other",
          "dataset.timescale_indices": (1,), "train.learning_rate": 3e-4}
  sweep = sweeps.edge_threshold_sweep(SMOKE, [1.25], [2], base_overrides=base)
  configs = sweeps.check_sweep(sweep)
  for point in sweep.points:
    argv = ["train_main.py", f"--config={SMOKE}",
            *sweeps.override_flags(sweep.overrides(point))]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values,
                                    lock_config=True, sys_argv=argv)
    values(argv)
    parsed = common.jsonable(values.config.to_dict())
    assert parsed == common.jsonable(configs[point.name].to_dict())
    assert values.config.model.use_edge_features == (
        point.name.endswith("_edges"))
    assert values.config.dataset.timescale_indices == (1,)
    assert values.config.train.learning_rate == 3e-4


def test_bad_points_are_refused_before_anything_runs(tmp_path):
  root = str(tmp_path / "root")

  def sweep(*points, **kwargs):
    return sweeps.Sweep("custom", SMOKE, tuple(
        sweeps.Point(name, overrides) for name, overrides in points),
                        **kwargs)

  cases = [
      (sweep(("a", {"graph.no_such": 1})), r"point 'a'.*'graph.no_such'"),
      (sweep(("a", {"model.num_recurrences": 1.5})),
       r"point 'a': model.num_recurrences=1.5 does not fit"),
      (sweep(("a", {"graph.cutoff": 1.0}), ("a", {"graph.cutoff": 2.0})),
       "two points named 'a'"),
      (sweep(("a/b", {})), "point name 'a/b'"),
      (sweep(("a", {}), base_overrides={"train.nope": 1}),
       "base override.*'train.nope'"),
      (sweep(), "no points"),
  ]
  for bad, match in cases:
    with pytest.raises(sweeps.SweepError, match=match):
      sweeps.dispatch(bad, root, log=_quiet)
  with pytest.raises(sweeps.SweepError, match="cannot load config file"):
    sweeps.check_sweep(sweeps.Sweep("x", str(tmp_path / "no.py"),
                                    (sweeps.Point("a", {}),)))
  assert not os.path.exists(root)


# ----------------------------------------------------------- dispatch ---


def _fake_finished(workdir, config):
  """The files train_main.py leaves behind a finished run."""
  os.makedirs(os.path.join(workdir, "saved_model"))
  open(os.path.join(workdir, "saved_model", "saved_model.pb"), "wb").close()
  training.write_json(os.path.join(workdir, "config.json"),
                      json.loads(config.to_json_best_effort()))
  training.write_json(os.path.join(workdir, training.STATE_FILE),
                      {"finished": True, "steps": 2})


def test_point_state_skips_finished_and_refuses_other_configs(tmp_path):
  sweep = sweeps.dataset_size_sweep(SMOKE, [1, 2, 3])
  configs = sweeps.check_sweep(sweep)
  root = tmp_path / "root"
  one, two, three = (str(root / p.name) for p in sweep.points)
  assert sweeps.point_state(one) == "new"
  os.makedirs(os.path.join(one, "backup"))
  assert sweeps.point_state(one) == "started"
  _fake_finished(one, configs["n_train_0001"])
  assert sweeps.point_state(one) == "finished"
  # train_state.json alone (the export never finished) is not finished.
  os.remove(os.path.join(one, "saved_model", "saved_model.pb"))
  assert sweeps.point_state(one) == "started"
  open(os.path.join(one, "saved_model", "saved_model.pb"), "wb").close()
  _fake_finished(two, configs["n_train_0002"])
  # Point 3's directory holds a run of another config: never reused.
  _fake_finished(three, configs["n_train_0002"])
  assert sweeps.config_differences(three, configs["n_train_0003"]) == [
      "dataset.max_train_examples"]
  assert sweeps.config_differences(two, configs["n_train_0002"]) == []
  messages = []
  result = sweeps.dispatch(sweep, str(root), log=messages.append)
  assert result.finished == result.skipped == ["n_train_0001",
                                               "n_train_0002"]
  assert list(result.failed) == ["n_train_0003"]
  assert "holds a run of another config (fields dataset.max_train_examples " \
         "differ)" in result.failed["n_train_0003"]
  assert "2 already finished, 0 to train" in "\n".join(messages)
  # Nothing was started: no point has a log.
  assert not any(os.path.exists(os.path.join(d, sweeps.LOG_FILE))
                 for d in (one, two, three))


def test_failing_points_are_reported_and_the_others_go_on(tmp_path):
  # Two points fail inside train_main.py, one after the other (one process
  # at a time); a third was finished before and is skipped.
  sweep = sweeps.Sweep("custom", SMOKE, (
      sweeps.Point("bad_strategy", {"train.strategy": "pod"}),
      sweeps.Point("bad_size", {"dataset.max_train_examples": -1}),
      sweeps.Point("done", {"graph.cutoff": 1.5}),
  ))
  configs = sweeps.check_sweep(sweep)
  root = tmp_path / "root"
  _fake_finished(str(root / "done"), configs["done"])
  # bad_size was started before (its log has an earlier attempt): it is
  # run again in the same directory and its log is appended to.
  os.makedirs(root / "bad_size" / "backup")
  (root / "bad_size" / sweeps.LOG_FILE).write_text("earlier attempt\n")
  messages = []
  result = sweeps.dispatch(sweep, str(root), num_parallel=1,
                           log=messages.append, poll_seconds=0.1)
  assert result.finished == result.skipped == ["done"]
  assert list(result.failed) == ["bad_strategy", "bad_size"]
  assert "exit status 1" in result.failed["bad_strategy"]
  assert "config.train.strategy='pod' is not one of" in (
      result.failed["bad_strategy"])
  assert "max_train_examples must be an integer >= 0" in (
      result.failed["bad_size"])
  # The failure shows the tail of this attempt only.
  assert "earlier attempt" not in result.failed["bad_size"]
  log = (root / "bad_size" / sweeps.LOG_FILE).read_text()
  assert log.startswith("earlier attempt\n")
  assert "--config.dataset.max_train_examples=-1" in log
  with open(root / "bad_size" / sweeps.POINT_FILE) as f:
    record = json.load(f)
  assert record["overrides"] == {"dataset.max_train_examples": -1}
  assert [a["returncode"] for a in record["attempts"]] == [1]
  assert record["attempts"][0]["resumed"] is True
  assert record["train_seconds"] > 0
  text = "\n".join(messages)
  assert "1 already finished, 2 to train, 1 at a time" in text
  assert "3/3 points done (2 failed)" in text


def test_dataset_size_points_train_on_nested_subsets(tfds_data):
  data_dir, records, _ = tfds_data
  sweep = sweeps.dataset_size_sweep(SMOKE, [1, 2, 4])
  configs = sweeps.check_sweep(sweep)
  index = {r.positions.tobytes(): i for i, r in enumerate(records)}
  subsets = []
  for point in sweep.points:
    ds = input_pipeline.load_records(configs[point.name], "train", data_dir)
    subsets.append([index[x["positions"].tobytes()] for x in
                    ds.as_numpy_iterator()])
  assert [len(s) for s in subsets] == [1, 2, 4]
  assert subsets[1][:1] == subsets[0] and subsets[2][:2] == subsets[1]


# ------------------------------------------------------ report, figure ---


def _point(name, n, pearson, cutoff=2.0, recurrences=2, edges=True):
  summary = lambda v: {"mean": list(v), "std": [0.01] * len(v)}
  return {"name": name, "overrides": {}, "n_train_configurations": n,
          "cutoff": cutoff, "num_recurrences": recurrences,
          "use_edge_features": edges, "train_seconds": 12.0,
          "timescale_indices": [0, 1],
          "metrics": {"pearson": summary(pearson),
                      "spearman": summary(pearson),
                      "accuracy": summary([0.85, 0.9]),
                      "overlap": summary([0.3, 0.4]),
                      "roc_auc": summary([0.7, 0.8])}}


def _report(study, points):
  return {"study": study, "reproduces": sweeps.FIGURES.get(study, ""),
          "dataset": "ds", "split": "test", "n_configurations": 3,
          "times": [0.5, 2.0], "isf_levels": [0.9, 0.36787944117144233],
          "top_fraction": 0.1, "points": points,
          "failed": [{"name": "x", "overrides": {},
                      "message": "exit status 1; last lines of train.log:\n"
                                 "  last lines ..."}]}


def test_figures_and_summary(tmp_path):
  size = _report("dataset_size", [_point("n_train_0004", 4, [0.2, 0.3]),
                                  _point("n_train_0001", 1, [0.1, 0.15])])
  assert sweeps.reference_timescale(size) == 1  # the ISF = 1/e timescale
  path = sweeps.plot(size, str(tmp_path / "dataset_size.png"))
  assert os.path.getsize(path) > 0
  text = sweeps.summary(size)
  assert "Extended Data Fig. 1" in text
  assert "FAILED x (exit status 1): last lines ..." in text
  row = [l for l in text.splitlines() if l.startswith("n_train_0004")][0]
  assert "+0.200" in row and "+0.300" in row and "0.900 0.800" in row
  edge = _report("edge_threshold", [
      _point(f"c{c}_r{r}_{e}", 4, [0.1 * c, 0.1 * r], c, r, e)
      for c in (1.5, 2.0) for r in (1, 2) for e in (True, False)])
  assert os.path.getsize(sweeps.plot(edge, str(tmp_path / "edge.png"))) > 0
  custom = _report("custom", [_point("a", 4, [0.2, 0.3])])
  assert os.path.getsize(sweeps.plot(custom, str(tmp_path / "c.png"))) > 0


# --------------------------------------------------------- end to end ---


def _analyze_main(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "analyze_main.py", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=900, env=env)


def test_analyze_main_names_a_bad_grid_flag(tmp_path):
  run = _analyze_main("--study=dataset_size", f"--config={SMOKE}",
                      "--sizes=1,x", f"--sweep_root={tmp_path / 'root'}")
  assert run.returncode != 0
  assert "analyze_main.py: error: --sizes: 'x' is not an int" in run.stderr
  assert not (tmp_path / "root").exists()


@pytest.mark.slow
def test_dataset_size_sweep_end_to_end(tfds_data, tmp_path):
  data_dir, _, n_train = tfds_data
  root = tmp_path / "sweep"
  args = ["--study=dataset_size", f"--config={SMOKE}",
          "--config.train.num_steps=2", "--config.train.steps_per_epoch=1",
          "--dataset=glassy_dynamics/demo", f"--data_dir={data_dir}",
          f"--sweep_root={root}"]
  # Three points; the largest asks for more configurations than the split
  # has, fails inside train_main.py, and the sweep still reports the rest.
  run = _analyze_main(*args, f"--sizes=1,2,{n_train + 1}")
  assert run.returncode != 0
  assert "1 of 3 point(s) failed" in run.stderr, run.stderr[-3000:]
  with open(root / "dataset_size.json") as f:
    report = json.load(f)
  assert [p["name"] for p in report["points"]] == ["n_train_0001",
                                                   "n_train_0002"]
  assert [p["n_train_configurations"] for p in report["points"]] == [1, 2]
  assert report["failed"][0]["name"] == f"n_train_{n_train + 1:04d}"
  assert f"holds only {n_train} configurations" in (
      report["failed"][0]["message"])
  assert (root / "dataset_size.png").stat().st_size > 0
  assert "n_train_0002" in run.stdout and "ETA" in run.stdout

  # The scores are those of the exported SavedModel on the test split:
  # Pearson over type-A particles per configuration, averaged.
  ids, test = common.load_records(dataset="glassy_dynamics/demo",
                                  split="test", data_dir=data_dir)
  assert report["n_configurations"] == len(ids)
  for point in report["points"]:
    assert point["train_seconds"] > 0 and point["steps"] == 2
    loaded = tf.saved_model.load(os.path.join(point["workdir"],
                                              "saved_model"))
    per_config = []
    for record in test:
      predicted = loaded.signatures["predict"](
          positions=tf.constant(record.positions),
          types=tf.constant(record.types),
          box=tf.constant(record.box))["propensity"].numpy()
      a = record.types == 0
      per_config.append([np.corrcoef(predicted[a, j],
                                     record.propensity[j, a])[0, 1]
                         for j in range(2)])
    np.testing.assert_allclose(point["metrics"]["pearson"]["mean"],
                               np.mean(per_config, axis=0), atol=1e-5)
    for metric in ("accuracy", "roc_auc"):
      values = np.asarray(point["metrics"][metric]["mean"], float)
      assert values.shape == (2,) and np.all((0 <= values) & (values <= 1))
    state = training.read_json(os.path.join(point["workdir"],
                                            training.STATE_FILE))
    assert state["metadata"]["num_examples"]["train"] == (
        point["n_train_configurations"])
  assert metrics.DEFAULT_TOP_FRACTION == report["top_fraction"]

  # Re-running skips the finished points (and reuses their scores).
  again = _analyze_main(*args, "--sizes=1,2")
  assert again.returncode == 0, again.stderr[-3000:]
  assert "2 already finished, 0 to train" in again.stdout
  with open(root / "dataset_size.json") as f:
    assert json.load(f)["points"] == report["points"]


def _processes_running(text):
  """PIDs of live processes whose command line contains `text` (Linux)."""
  found = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        if text.encode() in f.read():
          found.append(int(pid))
    except OSError:
      pass
  return found


@pytest.mark.slow
def test_a_stopped_sweep_stops_its_runs_and_resumes_them(tfds_data, tmp_path):
  data_dir, _, _ = tfds_data
  root = tmp_path / "sweep"
  args = [sys.executable, "analyze_main.py", "--study=dataset_size",
          f"--config={SMOKE}", "--config.train.num_steps=400",
          "--config.train.steps_per_epoch=20", "--sizes=2",
          "--dataset=glassy_dynamics/demo", f"--data_dir={data_dir}",
          f"--sweep_root={root}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  log = root / "n_train_0002" / sweeps.LOG_FILE
  sweep = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.time() + 300
    # Stop it once a few epochs (each backed up) are done.
    while not (log.exists() and "Epoch 4/" in log.read_text()):
      assert sweep.poll() is None and time.time() < deadline, (
          sweep.stdout.read()[-3000:] if sweep.poll() is not None else "")
      time.sleep(0.5)
    sweep.send_signal(signal.SIGTERM)
    output, _ = sweep.communicate(timeout=120)
  finally:
    if sweep.poll() is None:
      sweep.kill()
      sweep.wait()
  assert sweep.returncode != 0
  assert "interrupted" in output
  assert not _processes_running(str(root / "n_train_0002"))
  with open(root / "n_train_0002" / sweeps.POINT_FILE) as f:
    assert json.load(f)["attempts"][-1]["returncode"] == "interrupted"
  assert sweeps.point_state(str(root / "n_train_0002")) == "started"

  again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "attempt 2, resuming" in again.stdout
  text = log.read_text()
  assert "resuming from the backup at step" in text
  state = training.read_json(str(root / "n_train_0002" / training.STATE_FILE))
  assert state["finished"] and state["steps"] == 400
