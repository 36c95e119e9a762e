"""The training recipe of issue 12: release initialisation, warm-up + cosine
learning rate, per-head checkpoint selection, richer edge inputs."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from glassy_dynamics_tf import model
from glassy_dynamics_tf import training
from glassy_dynamics_tf.configs import reference_t064
from glassy_dynamics_tf.configs import smoke

import crash_callback
import synthetic_records


def _config(**train):
  config = smoke.get_config()
  config.train.deterministic = True
  config.train.batch_size = 1
  for key, value in train.items():
    config.train[key] = value
  return config


def _records(n_train=3, n_validation=2, n_particles=100):
  return synthetic_records.train_validation_datasets(n_train, n_validation,
                                                     n_particles)


# ------------------------------------------------------------ schedule ---


def test_warmup_cosine_schedule_values():
  schedule = training.WarmupCosineSchedule(1e-3, warmup_steps=10,
                                           total_steps=110,
                                           final_fraction=0.1)
  lr = lambda s: float(schedule(s))  # pylint: disable=unnecessary-lambda-assignment
  assert lr(0) == pytest.approx(1e-4)           # (0 + 1) / 10 of the peak
  assert lr(9) == pytest.approx(1e-3)           # end of the warm-up
  assert lr(10) == pytest.approx(1e-3)          # cosine starts at the peak
  # Half way through the decay: f + (1 - f) / 2 of the peak.
  assert lr(60) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
  assert lr(110) == pytest.approx(1e-4)         # the floor ...
  assert lr(500) == pytest.approx(1e-4)         # ... stays after the end
  values = [lr(s) for s in range(10, 111)]
  assert all(a >= b for a, b in zip(values, values[1:]))
  assert training.WarmupCosineSchedule(**schedule.get_config()).get_config(
  ) == schedule.get_config()


@pytest.mark.parametrize("kwargs, match", [
    (dict(peak=0.0, warmup_steps=0, total_steps=10), "learning rate"),
    (dict(peak=1e-3, warmup_steps=10, total_steps=10), "warmup_steps"),
    (dict(peak=1e-3, warmup_steps=0, total_steps=10, final_fraction=2.0),
     "final_lr_fraction"),
])
def test_schedule_rejects_bad_settings(kwargs, match):
  with pytest.raises(training.TrainingError, match=match):
    training.WarmupCosineSchedule(**kwargs)


def test_unknown_schedule_and_selection_are_named(tmp_path):
  with pytest.raises(training.TrainingError, match="lr_schedule 'linear'"):
    training.learning_rate(_config(lr_schedule="linear").train)
  with pytest.raises(training.TrainingError,
                     match="checkpoint_selection 'best'"):
    training.train(_config(checkpoint_selection="best"), str(tmp_path),
                   records=_records(), verbose=0)


def test_learning_rate_is_logged_and_follows_the_schedule(tmp_path):
  config = _config(num_steps=6, steps_per_epoch=2, learning_rate=1e-2,
                   lr_schedule="warmup_cosine", warmup_steps=2,
                   final_lr_fraction=0.0)
  result = training.train(config, str(tmp_path), records=_records(),
                          verbose=0)
  schedule = training.learning_rate(config.train)
  # Logged at the end of epoch k: the rate of its last step, 2 k - 1
  # (steps count from 0).
  expected = [float(schedule(2 * k - 1)) for k in (1, 2, 3)]
  np.testing.assert_allclose(result.history["learning_rate"], expected,
                             rtol=1e-6)
  assert expected[0] == pytest.approx(1e-2)   # the peak, after warm-up
  assert expected[-1] < 0.2 * expected[0]      # decayed


def test_scheduled_run_resumes_on_the_same_curve(tmp_path):
  config = _config(num_steps=6, steps_per_epoch=3, backup_every_steps=1,
                   learning_rate=1e-2, lr_schedule="warmup_cosine",
                   warmup_steps=2)
  uninterrupted = training.train(config, str(tmp_path / "a"),
                                 records=_records(n_validation=1),
                                 verbose=0)
  with pytest.raises(RuntimeError, match="simulated crash"):
    training.train(config, str(tmp_path / "b"),
                   records=_records(n_validation=1),
                   extra_callbacks=[crash_callback.CrashAfter(4)], verbose=0)
  resumed = training.train(config, str(tmp_path / "b"),
                           records=_records(n_validation=1), verbose=0)
  assert resumed.resumed_from_step == 4
  for a, b in zip(uninterrupted.model.get_weights(),
                  resumed.model.get_weights()):
    np.testing.assert_array_equal(a, b)


# -------------------------------------------------- per-head selection ---


def _validation_pearson_per_head(saved_model_dir, records):
  """Mean over validation configurations of Pearson per output head."""
  loaded = tf.saved_model.load(saved_model_dir)
  rows = []
  for record in records:
    out = loaded.predict(positions=tf.constant(record.positions),
                         types=tf.constant(record.types),
                         box=tf.constant(record.box))["propensity"].numpy()
    a = record.types == 0
    rows.append([np.corrcoef(out[a, j], record.propensity[j, a])[0, 1]
                 for j in range(out.shape[1])])
  return np.mean(rows, axis=0)


def test_per_head_selection_exports_each_heads_best_epoch(tmp_path):
  config = _config(num_steps=12, steps_per_epoch=2, learning_rate=3e-2,
                   checkpoint_selection="per_head")
  result = training.train(config, str(tmp_path), records=_records(),
                          verbose=0)
  heads = json.load(open(tmp_path / "best" / "heads.json"))["heads"]
  n_heads = result.metadata.n_outputs
  assert len(heads) == n_heads
  history = result.history
  for j, head in enumerate(heads):
    scores = history[f"val_pearson_{j}"]
    assert head["val_pearson"] == pytest.approx(max(scores))
    assert head["step"] == 2 * (int(np.argmax(scores)) + 1)
  # Only the epochs some head uses are kept on disk.
  kept = sorted(p.name for p in (tmp_path / "best").glob("step_*"))
  assert kept == sorted({f"step_{h['step']}" for h in heads})
  metadata = training.load_saved_model_metadata(result.saved_model)
  selection = metadata["checkpoint_selection"]
  assert selection["mode"] == "per_head"
  assert selection["head_steps"] == [h["step"] for h in heads]
  # One network per distinct epoch that some head uses.
  assert metadata["n_networks"] == len({h["step"] for h in heads})
  # The SavedModel reproduces every head's best validation score, in σ_AA
  # (the standardisation is undone; Pearson does not see it).
  validation = synthetic_records.make_records(2, seed=100, n_particles=100)
  np.testing.assert_allclose(
      _validation_pearson_per_head(result.saved_model, validation),
      [h["val_pearson"] for h in heads], atol=2e-4)


def test_mean_selection_exports_one_network(tmp_path):
  config = _config(num_steps=4, steps_per_epoch=2)
  result = training.train(config, str(tmp_path), records=_records(),
                          verbose=0)
  metadata = training.load_saved_model_metadata(result.saved_model)
  assert metadata["n_networks"] == 1
  assert metadata["checkpoint_selection"]["mode"] == "mean"
  assert not list((tmp_path / "best").glob("step_*"))


def test_predictor_rejects_head_sources_out_of_range():
  core = model.EncodeProcessDecode(latent_size=4, num_recurrences=1,
                                   n_outputs=2)
  with pytest.raises(training.TrainingError, match="head_source"):
    training.PropensityPredictor(core, 2.0, True, "{}", extra_cores=[core],
                                 head_source=[0, 2])


# ------------------------------------------------------ initialisation ---


def test_release_initialisation_gives_non_zero_biases_and_a_type_a_signal():
  tf.random.set_seed(0)
  net = model.EncodeProcessDecode(latent_size=64, num_recurrences=1)
  model.build_variables(net)
  biases = [v for v in net.trainable_variables if v.name.endswith("b:0")]
  weights = [v for v in net.trainable_variables if v.name.endswith("w:0")]
  assert biases and all(np.abs(b.numpy()).max() > 0 for b in biases)
  for b in biases:  # truncated normal, variance 0.1 / size
    size = b.shape[0]
    bound = 2.0 * math.sqrt(0.1 / size) / 0.87962566103423978 + 1e-6
    assert np.abs(b.numpy()).max() <= bound
  for w in weights:  # variance 1 / fan_in (truncated normal, corrected)
    fan_in = w.shape[0]
    if w.shape.num_elements() >= 1000:
      assert np.var(w.numpy()) == pytest.approx(1.0 / fan_in, rel=0.25)
  # A lone type-A particle (node feature 0) no longer encodes to zero.
  batch = model.dummy_batch()
  from glassy_dynamics_tf import graphs as graphs_lib  # pylint: disable=g-import-not-at-top
  encoded = net._encoder(graphs_lib.padded_to_graphs_tuple(batch).replace(  # pylint: disable=protected-access
      nodes=tf.zeros([2, 1]), edges=tf.zeros([1, 3])))
  assert np.abs(encoded.nodes.numpy()).max() > 0


# ---------------------------------------------------------- edge inputs ---


def test_edge_inputs_shapes_and_values():
  vectors = tf.constant([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [0.0, 1.0, 0.0]])
  assert model.edge_inputs(vectors).shape == [3, 3]
  with_distance = model.edge_inputs(vectors, "vector_distance").numpy()
  np.testing.assert_allclose(with_distance[:, 3], [0.0, 5.0, 1.0], atol=1e-5)
  rbf = model.edge_inputs(vectors, "vector_rbf", num_rbf=5,
                          rbf_cutoff=2.0).numpy()
  assert rbf.shape == (3, 9)
  # Centres 0, 0.5, ..., 2, width 0.5: |Δr| = 1 sits on the third centre.
  np.testing.assert_allclose(rbf[2, 4:], np.exp(-0.5 * (
      (1.0 - np.linspace(0, 2, 5)) / 0.5)**2), rtol=1e-5)
  # Finite gradients at the self-loop's |Δr| = 0.
  with tf.GradientTape() as tape:
    tape.watch(vectors)
    out = tf.reduce_sum(model.edge_inputs(vectors, "vector_rbf"))
  assert np.all(np.isfinite(tape.gradient(out, vectors).numpy()))


def test_edge_encodings_are_rotation_covariant_and_checked():
  with pytest.raises(ValueError, match="edge encoding must be one of"):
    model.EncodeProcessDecode(edge_encoding="distance_only")
  with pytest.raises(ValueError, match="num_rbf"):
    model.EncodeProcessDecode(edge_encoding="vector_rbf", num_rbf=1)
  rng = np.random.default_rng(0)
  vectors = rng.normal(size=(20, 3)).astype(np.float32)
  # A cube symmetry (a permutation with signs) keeps |Δr| and the basis.
  rotated = vectors[:, [2, 0, 1]] * np.array([1, -1, 1], np.float32)
  a = model.edge_inputs(vectors, "vector_rbf").numpy()
  b = model.edge_inputs(rotated, "vector_rbf").numpy()
  np.testing.assert_allclose(a[:, 3:], b[:, 3:], rtol=1e-5, atol=1e-7)


def test_model_config_edge_encoding_builds_a_wider_encoder():
  config = reference_t064.get_config()
  config.model.latent_size = 8
  config.model.num_recurrences = 1
  net = model.GlassyGraphNetwork.from_model_config(config.model, n_outputs=7)
  model.build_variables(net)
  first = [v for v in net.trainable_variables
           if "graph_independent/edge_model" in v.name and
           v.name.endswith("linear_0/w:0")]
  assert first and first[0].shape[0] == 4 + config.model.num_rbf
  # Configs from before the option build the paper's 3-input encoder.
  old = smoke.get_config()
  del old.model["edge_encoding"]
  assert model.optional_model_arguments(old.model)["edge_encoding"] == "vector"


def test_reference_config_is_the_documented_recipe():
  config = reference_t064.get_config()
  assert config.simulation.temperature == 0.64
  assert config.simulation.n_particles == 1000
  assert config.simulation.n_runs == 30
  assert config.simulation.isf_levels[-1] == pytest.approx(math.exp(-1))
  assert config.train.lr_schedule == "warmup_cosine"
  assert config.train.checkpoint_selection == "per_head"
  assert config.train.warmup_steps < config.train.num_steps


def test_analyses_restore_a_per_head_saved_model(tmp_path):
  from glassy_dynamics_tf.analysis import common  # pylint: disable=g-import-not-at-top
  config = _config(num_steps=8, steps_per_epoch=2, learning_rate=3e-2,
                   checkpoint_selection="per_head")
  config.model.edge_encoding = "vector_distance"
  result = training.train(config, str(tmp_path), records=_records(),
                          verbose=0)
  metadata = training.load_saved_model_metadata(result.saved_model)
  network = common.restore_network(result.saved_model, metadata)
  assert network.edge_encoding == "vector_distance"
  # `core` carries the weights of the last head's epoch.
  step = metadata["checkpoint_selection"]["head_steps"][-1]
  reference = model.GlassyGraphNetwork.from_model_config(
      config.model, n_outputs=result.metadata.n_outputs)
  model.build_variables(reference)
  tf.train.Checkpoint(model=reference).read(str(
      tmp_path / "best" / f"step_{step}" / "ckpt")).expect_partial()
  for a, b in zip(sorted(network.trainable_variables, key=lambda v: v.name),
                  sorted(reference.network.trainable_variables,
                         key=lambda v: v.name)):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_sonnet_initialisers_keep_zero_biases_for_the_ablation():
  net = model.EncodeProcessDecode(latent_size=8, num_recurrences=1,
                                  initializers="sonnet")
  model.build_variables(net)
  biases = [v for v in net.trainable_variables if v.name.endswith("b:0")]
  assert biases and all(not np.any(b.numpy()) for b in biases)
  with pytest.raises(ValueError, match="initializers must be one of"):
    model.EncodeProcessDecode(initializers="glorot")
  config = smoke.get_config()
  config.model.initializers = "sonnet"
  keras_net = model.GlassyGraphNetwork.from_model_config(config.model,
                                                         n_outputs=1)
  assert keras_net.network.initializers == "sonnet"


def test_heads_without_a_finite_score_take_the_mean_best_weights():
  heads = [{"step": 10, "val_pearson": 0.3}, None]
  assert training.complete_heads(heads, 3, best_step=20) == [
      {"step": 10, "val_pearson": 0.3},
      {"step": 20, "val_pearson": None},
      {"step": 20, "val_pearson": None}]
