"""Tests of training.py and train_main.py (small synthetic data, seconds)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from glassy_dynamics_tf import input_pipeline
from glassy_dynamics_tf import training
from glassy_dynamics_tf.configs import smoke

import crash_callback
import synthetic_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**train):
  config = smoke.get_config()
  config.train.deterministic = True
  config.train.batch_size = 2
  for key, value in train.items():
    config.train[key] = value
  return config


def _records(n_train=4, n_validation=0, n_particles=100):
  records = {"train": input_pipeline.records_dataset(
      synthetic_records.make_records(n_train, n_particles=n_particles))}
  if n_validation:
    records["validation"] = input_pipeline.records_dataset(
        synthetic_records.make_records(n_validation, seed=100,
                                       n_particles=n_particles))
  return records


def test_masked_mse_golden_value():
  # One example, 4 node slots (2 real type-A, 1 type-B, 1 padding), 2 times.
  truth = np.array([[[0., 2.], [3., 2.], [5., 6.], [0., 0.]]], np.float32)
  predictions = np.array([[[1., 2.], [3., 4.], [9., 9.], [7., 7.]]],
                         np.float32)
  weights = np.array([[1., 1., 0., 0.]], np.float32)
  # Node 0: ((1-0)² + 0) / 2 = 0.5; node 1: (0 + (4-2)²) / 2 = 2.
  expected = (0.5 + 2.0) / 2
  assert float(training.masked_mse(truth, predictions, weights)) == expected
  loss = training.MaskedMeanSquaredError()
  assert float(loss(truth, predictions, sample_weight=weights)) == expected
  # Keras' own weighted MSE divides by every slot, padding included.
  keras_mse = tf_keras.losses.MeanSquaredError()(truth, predictions,
                                                 sample_weight=weights)
  assert float(keras_mse) == pytest.approx(expected * 2 / 4)
  with pytest.raises(training.TrainingError, match="sample_weight"):
    loss(truth, predictions)


def test_in_memory_records_are_cut_to_max_train_examples(tmp_path):
  config = _config(num_steps=2, steps_per_epoch=2)
  config.dataset.max_train_examples = 2
  result = training.train(config, str(tmp_path), records=_records(n_train=3),
                          verbose=0)
  assert result.metadata.num_examples["train"] == 2


def test_training_reduces_loss(tmp_path):
  # Raw targets: their mean alone is most of the initial loss.
  config = _config(num_steps=40, steps_per_epoch=20, learning_rate=3e-3,
                   augment=True, standardize_targets=False)
  records = _records(n_train=2)
  result = training.train(config, str(tmp_path), records=records, verbose=0)
  first, last = result.history["loss"]
  metadata = result.metadata
  evaluation = input_pipeline.eval_dataset(
      input_pipeline.graph_dataset(records["train"], config, metadata), 2)
  x, y, w = next(iter(evaluation))
  before = training.create_model(config, metadata)
  loss_before = float(training.masked_mse(y, before(x), w))
  loss_after = float(training.masked_mse(y, result.model(x), w))
  assert last < first
  assert loss_after < 0.5 * loss_before


def test_validation_callback_keeps_best_and_logs(tmp_path):
  config = _config(num_steps=4, steps_per_epoch=2, early_stopping_patience=1)
  result = training.train(config, str(tmp_path),
                          records=_records(n_validation=2), verbose=0)
  assert {"val_pearson", "val_pearson_0", "val_pearson_1",
          "val_loss"} <= set(result.history)
  best = json.load(open(tmp_path / "best" / "best.json"))
  assert best["val_pearson"] == max(result.history["val_pearson"])
  assert best["step"] in (2, 4)
  assert tf.train.latest_checkpoint(str(tmp_path / "best"))
  events = [f for _, _, files in os.walk(tmp_path / "tensorboard")
            for f in files if f.startswith("events")]
  assert events
  state = json.load(open(tmp_path / "train_state.json"))
  assert state["finished"] and state["steps"] == 4
  # A second call reuses the finished run.
  again = training.train(config, str(tmp_path),
                         records=_records(n_validation=2), verbose=0)
  assert again.already_finished and again.best == best


def test_test_split_is_refused(tmp_path):
  records = _records()
  records["test"] = records["train"]
  with pytest.raises(training.TrainingError, match="test split"):
    training.train(_config(), str(tmp_path), records=records, verbose=0)


def test_resume_after_crash_gives_same_weights(tmp_path):
  config = _config(num_steps=6, steps_per_epoch=3, backup_every_steps=1)
  uninterrupted = training.train(config, str(tmp_path / "a"),
                                 records=_records(), verbose=0)
  with pytest.raises(RuntimeError, match="simulated crash"):
    training.train(config, str(tmp_path / "b"), records=_records(),
                   extra_callbacks=[crash_callback.CrashAfter(4)], verbose=0)
  assert training.backup_step(str(tmp_path / "b" / "backup"), 3) == 4
  resumed = training.train(config, str(tmp_path / "b"), records=_records(),
                           verbose=0)
  assert resumed.resumed_from_step == 4
  assert len(resumed.history["loss"]) == 1  # only the second epoch ran
  # (The epoch's mean loss differs: the resumed epoch averages steps 5-6.)
  for a, b in zip(uninterrupted.model.get_weights(),
                  resumed.model.get_weights()):
    np.testing.assert_array_equal(a, b)
  assert not os.path.exists(tmp_path / "b" / "backup" / "chief")


def test_crash_while_exporting_resumes_without_training(tmp_path,
                                                       monkeypatch):
  config = _config(num_steps=2, steps_per_epoch=1)
  export = training.export_saved_model

  def broken_export(*args, **kwargs):
    raise RuntimeError("disk full")

  monkeypatch.setattr(training, "export_saved_model", broken_export)
  with pytest.raises(RuntimeError, match="disk full"):
    training.train(config, str(tmp_path), records=_records(n_validation=1),
                   verbose=0)
  monkeypatch.setattr(training, "export_saved_model", export)
  result = training.train(config, str(tmp_path),
                          records=_records(n_validation=1), verbose=0)
  assert result.resumed_from_step == 2 and result.history == {}
  assert result.best["step"] in (1, 2)
  assert os.path.exists(tmp_path / "saved_model" / "saved_model.pb")
  assert not os.path.exists(tmp_path / "backup")


_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, "tests")
    from glassy_dynamics_tf import input_pipeline, training
    from glassy_dynamics_tf.configs import smoke
    import synthetic_records
    out = {}
    for name in ("default", "mirrored"):
      config = smoke.get_config()
      config.train.batch_size = 2
      config.train.strategy = name
      config.train.deterministic = True
      config.train.num_steps = 4
      config.train.steps_per_epoch = 2
      records = {"train": input_pipeline.records_dataset(
          synthetic_records.make_records(4, n_particles=100))}
      result = training.train(config, sys.argv[1] + "/" + name,
                              records=records, verbose=0)
      out[name] = {
          "replicas": tf.distribute.get_strategy().num_replicas_in_sync
                      if name == "default" else 2,
          "loss": result.history["loss"],
          "weights": [w.tolist() for w in result.model.get_weights()[:2]]}
    print("RESULT" + json.dumps(out))
""")


def test_mirrored_two_cpus_matches_single_device(tmp_path):
  # Logical devices must be configured before TF initialises: a subprocess.
  run = subprocess.run(
      [sys.executable, "-c", _MIRRORED_SCRIPT, str(tmp_path)], cwd=ROOT,
      capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  line = [l for l in run.stdout.splitlines() if l.startswith("RESULT")][0]
  out = json.loads(line[len("RESULT"):])
  np.testing.assert_allclose(out["mirrored"]["loss"], out["default"]["loss"],
                             rtol=1e-5)
  for a, b in zip(out["mirrored"]["weights"], out["default"]["weights"]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_batch_size_must_divide_over_replicas(tmp_path):
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  # One replica divides everything; check the message on a fake count.
  config = _config(batch_size=3)

  class _Two:
    num_replicas_in_sync = 2
    extended = strategy.extended

    def scope(self):
      return strategy.scope()

  with pytest.raises(training.TrainingError, match="batch_size=3"):
    training.train(config, str(tmp_path), records=_records(),
                   strategy=_Two(), verbose=0)


def test_unknown_strategy_is_named():
  with pytest.raises(training.TrainingError, match="'pod'"):
    training.create_strategy("pod")


def _main(*args):
  return subprocess.run([sys.executable, "train_main.py", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)


def test_train_main_help():
  run = _main("--help")
  # absl prints the usage to stdout and exits with status 1.
  assert "Trains the graph network" in run.stdout, run.stderr[-2000:]
  for flag in ("--config", "--workdir", "--data_dir", "--strategy",
               "--progress"):
    assert flag in run.stdout


def test_train_main_bad_flags(tmp_path):
  config = "--config=glassy_dynamics_tf/configs/smoke.py"
  run = _main(config)
  assert run.returncode != 0 and "--workdir is required" in run.stderr
  run = _main(config, f"--workdir={tmp_path}", "--strategy=pod")
  assert run.returncode != 0 and "strategy" in run.stderr
  run = _main(config, f"--workdir={tmp_path}", "--config.train.no_such=1")
  assert run.returncode != 0 and "no_such" in run.stderr
  run = _main(f"--workdir={tmp_path}")
  assert run.returncode != 0 and "--config is required" in run.stderr


def test_train_main_end_to_end_on_tfds_dummy_data(tmp_path):
  # The builder's dummy data: 20-particle boxes of ~2.6 σ, so a 1.2 σ
  # cut-off (the box must exceed twice the cut-off).
  tfds_dir = tmp_path / "tfds"
  tfds_cli = os.path.join(os.path.dirname(sys.executable), "tfds")
  build = subprocess.run(
      [tfds_cli, "build", "datasets/glassy_dynamics", "--config=demo",
       "--manual_dir=datasets/glassy_dynamics/dummy_data",
       f"--data_dir={tfds_dir}"], cwd=ROOT, capture_output=True, text=True,
      timeout=300)
  assert build.returncode == 0, build.stderr[-3000:]
  args = ["--config=glassy_dynamics_tf/configs/smoke.py",
          f"--workdir={tmp_path / 'work'}", f"--data_dir={tfds_dir}",
          "--config.train.num_steps=2", "--config.train.steps_per_epoch=1",
          "--config.graph.cutoff=1.2", "--progress=epoch"]
  run = _main(*args)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "val_pearson" in run.stdout
  saved = tmp_path / "work" / "saved_model"
  info = training.load_saved_model_metadata(str(saved))
  assert info["dataset"] == "glassy_dynamics/demo"
  assert info["graph"]["cutoff"] == 1.2
  again = _main(*args)
  assert again.returncode == 0 and "already holds a finished run" in (
      again.stdout)
  # The default cut-off does not fit these boxes: the error says so.
  bad = _main(*args[:-2], f"--workdir={tmp_path / 'bad'}")
  assert bad.returncode != 0
  assert "split 'train', example 0" in bad.stderr
  assert "twice the cut-off" in bad.stderr
