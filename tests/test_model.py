"""Tests of glassy_dynamics_tf.model: the encode-process-decode network."""

import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from glassy_dynamics_tf import graphs
from glassy_dynamics_tf import model
from glassy_dynamics_tf.configs import default as default_config
from glassy_dynamics_tf.configs import smoke as smoke_config

BOX = np.array([5.0, 5.5, 6.0])


def configuration(n=60, seed=0, box=BOX):
  rng = np.random.default_rng(seed)
  positions = rng.uniform(0, 1, (n, 3)) * box
  types = (rng.uniform(size=n) < 0.2).astype(np.int32)
  return positions, types


def padded_batch(examples, max_nodes, max_edges):
  """examples: list of (positions, types, box) -> batched padded dict."""
  padded = [graphs.pad_graph(t, graphs.build_graph(p, b), max_nodes,
                             max_edges) for p, t, b in examples]
  return {k: np.stack([e[k] for e in padded]) for k in padded[0]}


def small_model(n_outputs=2, seed=0):
  tf.random.set_seed(seed)
  net = model.GlassyGraphNetwork(latent_size=16, mlp_layers=2,
                                 num_recurrences=3, n_outputs=n_outputs)
  model.build_variables(net)
  return net


def real_outputs(net, positions, types, box=BOX, max_nodes=None,
                 max_edges=None):
  n = len(types)
  graph = graphs.build_graph(positions, box)
  batch = padded_batch([(positions, types, box)], max_nodes or n + 1,
                       max_edges or graph.n_edges)
  return net(batch).numpy()[0, :n]


# ---------------------------------------------------- size and names ---


def test_parameter_count_of_the_paper_model_is_pinned():
  config = default_config.get_config()
  net = model.GlassyGraphNetwork.from_model_config(config.model, n_outputs=1)
  model.build_variables(net)
  # Encoder 4288 + 4416, core edge 28800 + node 16512, decoder 8385 (paper:
  # "about 62k").
  assert model.count_parameters(net) == 62401
  assert "total trainable parameters: 62401" in model.parameter_summary(net)


def test_parameter_count_grows_with_outputs_and_smoke_size():
  net = model.GlassyGraphNetwork.from_model_config(
      default_config.get_config().model, n_outputs=10)
  model.build_variables(net)
  assert model.count_parameters(net) == 62401 + 9 * 65
  smoke = model.GlassyGraphNetwork.from_model_config(
      smoke_config.get_config().model, n_outputs=2)
  model.build_variables(smoke)
  assert model.count_parameters(smoke) == (
      (16 + 16 + 272) + (48 + 16 + 272)          # encoder node, edge
      + (96 * 16 + 16 + 272) + (48 * 16 + 16 + 272)  # core edge, node
      + (272 + 272 + 34))                         # decoder


def test_variable_names_match_the_published_release():
  net = small_model()
  names = sorted(v.name.split("encode_process_decode/")[1]
                 for v in net.trainable_variables)
  expected = []
  for scope, layers in (("graph_independent/edge_model", 2),
                        ("graph_independent/node_model", 2),
                        ("graph_independent_1/node_model", 3),
                        ("graph_network/edge_block", 2),
                        ("graph_network/node_block", 2)):
    for k in range(layers):
      expected += [f"{scope}/mlp/linear_{k}/b:0", f"{scope}/mlp/linear_{k}/w:0"]
  assert names == sorted(expected)


def test_bad_sizes_are_named():
  with pytest.raises(ValueError, match="latent_size"):
    model.EncodeProcessDecode(latent_size=0)
  with pytest.raises(ValueError, match="count_parameters: .* no variables"):
    model.count_parameters(model.GlassyGraphNetwork())


# ------------------------------------------------------- invariances ---


def test_padding_does_not_change_real_outputs():
  net = small_model()
  positions, types = configuration()
  tight = real_outputs(net, positions, types)
  loose = real_outputs(net, positions, types, max_nodes=97, max_edges=5000)
  np.testing.assert_allclose(loose, tight, atol=1e-5)
  # Padding nodes are zeroed.
  out = net(padded_batch([(positions, types, BOX)], 97, 5000)).numpy()
  np.testing.assert_array_equal(out[0, 60:], 0)
  assert out.shape == (1, 97, 2)


def test_batching_keeps_examples_apart():
  net = small_model()
  p1, t1 = configuration(50, seed=1)
  p2, t2 = configuration(70, seed=2)
  batch = padded_batch([(p1, t1, BOX), (p2, t2, BOX)], 80, 4000)
  out = net(batch).numpy()
  np.testing.assert_allclose(out[0, :50], real_outputs(net, p1, t1),
                             atol=1e-5)
  np.testing.assert_allclose(out[1, :70], real_outputs(net, p2, t2),
                             atol=1e-5)


def test_relabelling_particles_permutes_outputs():
  net = small_model()
  positions, types = configuration()
  permutation = np.random.default_rng(3).permutation(len(types))
  out = real_outputs(net, positions, types)
  permuted = real_outputs(net, positions[permutation], types[permutation])
  np.testing.assert_allclose(permuted, out[permutation], atol=1e-5)


def test_translation_does_not_change_outputs():
  net = small_model()
  positions, types = configuration()
  out = real_outputs(net, positions, types)
  moved = real_outputs(net, positions + np.array([2.2, -7.1, 31.0]), types)
  np.testing.assert_allclose(moved, out, atol=1e-5)


def test_eager_and_tf_function_agree():
  net = small_model()
  positions, types = configuration()
  graph = graphs.build_graph(positions, BOX)
  batch = padded_batch([(positions, types, BOX)], 64, graph.n_edges + 7)
  eager = net(batch).numpy()
  compiled = tf.function(net)(batch).numpy()
  np.testing.assert_allclose(compiled, eager, atol=1e-6)


def test_edge_features_can_be_switched_off():
  tf.random.set_seed(0)
  net = model.GlassyGraphNetwork(latent_size=8, num_recurrences=1,
                                 use_edge_features=False)
  model.build_variables(net)
  # The edge encoder sees a constant 1 per edge.
  first = [v for v in net.trainable_variables
           if "graph_independent/edge_model/mlp/linear_0/w" in v.name][0]
  assert first.shape == (1, 8)
  positions, types = configuration()
  # Rotating all edge vectors (a reflection x -> -x) cannot matter now.
  mirrored = positions * np.array([-1.0, 1.0, 1.0])
  np.testing.assert_allclose(real_outputs(net, mirrored, types),
                             real_outputs(net, positions, types), atol=1e-5)


# ------------------------------------- projection before gathering ---


@pytest.mark.parametrize("use_edge_features", [True, False])
def test_projected_edge_block_equals_the_graph_nets_edge_block(
    use_edge_features):
  """The factored core (project nodes, then gather) is the same function
  as graph_nets' EdgeBlock on the concatenation, with the same variables:
  a checkpoint of one restores into the other, outputs and gradients
  agree to float32 round-off."""
  kwargs = dict(latent_size=16, mlp_layers=2, num_recurrences=3, n_outputs=2,
                use_edge_features=use_edge_features)
  tf.random.set_seed(1)
  factored = model.GlassyGraphNetwork(**kwargs)
  reference = model.GlassyGraphNetwork(project_before_gather=False, **kwargs)
  model.build_variables(factored)
  model.build_variables(reference)
  assert ([v.name for v in factored.trainable_variables]
          == [v.name for v in reference.trainable_variables])
  path = tf.train.Checkpoint(model=factored).save(
      os.path.join(tempfile.mkdtemp(), "ckpt"))
  tf.train.Checkpoint(model=reference).restore(path).assert_consumed()

  positions, types = configuration(n=80, seed=3)
  other, other_types = configuration(n=50, seed=4)
  batch = padded_batch([(positions, types, BOX), (other, other_types, BOX)],
                       96, 4000)
  target = tf.random.stateless_normal([2, 96, 2], seed=[0, 1])

  def outputs_and_gradients(net):
    with tf.GradientTape() as tape:
      out = net(batch)
      loss = tf.reduce_sum(out * target)
    return out.numpy(), tape.gradient(loss, net.trainable_variables)

  out_f, grads_f = outputs_and_gradients(factored)
  out_r, grads_r = outputs_and_gradients(reference)
  assert np.abs(out_r).max() > 1e-2  # not a trivially zero network
  np.testing.assert_allclose(out_f, out_r, rtol=2e-6, atol=2e-6)
  for g_f, g_r, v in zip(grads_f, grads_r, factored.trainable_variables):
    np.testing.assert_allclose(tf.convert_to_tensor(g_f).numpy(),
                               tf.convert_to_tensor(g_r).numpy(),
                               rtol=1e-4, atol=1e-5, err_msg=v.name)
  # A different weight in the factored first layer changes the output: the
  # comparison above is not vacuous.
  w = [v for v in factored.trainable_variables
       if "graph_network/edge_block/mlp/linear_0/w" in v.name][0]
  w.assign_add(tf.ones_like(w) * 0.05)
  assert np.abs(factored(batch).numpy() - out_r).max() > 1e-3


def test_projected_edge_block_under_xla():
  net = small_model()
  positions, types = configuration()
  batch = padded_batch([(positions, types, BOX)], 64, 3000)
  eager = net(batch).numpy()
  compiled = tf.function(net, jit_compile=True)(batch).numpy()
  np.testing.assert_allclose(compiled, eager, atol=2e-6)


# ------------------------------------------------------------ training ---


def test_overfits_one_configuration():
  """Memorises random per-particle targets: Pearson > 0.99 in < 500 steps."""
  tf_keras.utils.set_random_seed(0)
  n = 100
  positions, types = configuration(n, seed=4, box=np.array([5.0, 5.0, 5.0]))
  batch = padded_batch([(positions, types, np.array([5.0] * 3))], n + 1,
                       4000)
  targets = np.random.default_rng(5).normal(size=(1, n + 1, 1))
  targets = tf.constant(targets, tf.float32)
  weights = tf.constant(batch["node_mask"][..., None])
  net = model.GlassyGraphNetwork(latent_size=32, num_recurrences=2)
  model.build_variables(net, batch)
  optimizer = tf_keras.optimizers.Adam(2e-3)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = (tf.reduce_sum(weights * (net(batch) - targets)**2)
              / tf.reduce_sum(weights))
    grads = tape.gradient(loss, net.trainable_variables)
    optimizer.apply_gradients(zip(grads, net.trainable_variables))
    return loss

  best = -1.0
  for i in range(500):
    step()
    if i % 25 == 24:
      predicted = net(batch).numpy()[0, :n, 0]
      best = max(best, np.corrcoef(predicted, targets.numpy()[0, :n, 0])[0, 1])
      if best > 0.99:
        break
  assert best > 0.99, f"Pearson after {i + 1} steps: {best}"


def test_keras_compile_and_fit_with_masked_loss():
  net = small_model(n_outputs=1)
  positions, types = configuration()
  graph = graphs.build_graph(positions, BOX)
  batch = padded_batch([(positions, types, BOX)] * 2, 64, graph.n_edges)
  labels = np.ones((2, 64, 1), np.float32)
  sample_weight = batch["node_mask"] * (batch["node_types"] == 0)
  net.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss="mse")
  history = net.fit(batch, labels, sample_weight=sample_weight, epochs=3,
                    batch_size=2, verbose=0)
  losses = history.history["loss"]
  assert losses[-1] < losses[0]
  assert net.predict(batch, verbose=0).shape == (2, 64, 1)
