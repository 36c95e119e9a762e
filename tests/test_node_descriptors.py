"""Tests of the rotation-invariant node descriptors (model.node_descriptors)
and of the "type_descriptors" node encoding: the descriptors against
independent NumPy computations, their symmetries, the input pipeline's
precomputed copy, training, export and restore."""

import copy

from graph_nets import graphs as gn_graphs
import numpy as np
from numpy.polynomial import legendre as np_legendre
import pytest
import tensorflow as tf
import tf_keras

from glassy_dynamics_tf import graphs
from glassy_dynamics_tf import input_pipeline
from glassy_dynamics_tf import model
from glassy_dynamics_tf import periodic
from glassy_dynamics_tf import prediction
from glassy_dynamics_tf import training
from glassy_dynamics_tf.analysis import common
from glassy_dynamics_tf.configs import default
from glassy_dynamics_tf.configs import reference_t064
from glassy_dynamics_tf.configs import smoke

import synthetic_records

N_C = len(model.ANGULAR_CENTRES)


# ------------------------------------------------------------- helpers ---


def _graph(types, vectors, senders, receivers):
  """A one-graph GraphsTuple as the model sees it (nodes = type [N, 1])."""
  types = np.asarray(types, np.float32).reshape(-1, 1)
  senders = np.asarray(senders, np.int32)
  return gn_graphs.GraphsTuple(
      nodes=tf.constant(types), edges=tf.constant(vectors, tf.float32),
      senders=tf.constant(senders), receivers=tf.constant(receivers,
                                                          tf.int32),
      n_node=tf.constant([types.shape[0]], tf.int32),
      n_edge=tf.constant([senders.shape[0]], tf.int32), globals=None)


def _star(neighbour_vectors, neighbour_types=None, centre_type=0,
          self_loop=True):
  """Node 0 receives one edge from each neighbour node 1 ... n (vector
  r_0 - r_j = the given vector), plus its zero-vector self-loop."""
  vectors = np.asarray(neighbour_vectors, np.float64).reshape(-1, 3)
  n = vectors.shape[0]
  if neighbour_types is None:
    neighbour_types = np.zeros(n)
  types = np.concatenate([[centre_type], neighbour_types])
  senders = list(range(1, n + 1))
  receivers = [0] * n
  if self_loop:
    vectors = np.concatenate([np.zeros([1, 3]), vectors])
    senders = [0] + senders
    receivers = [0] + receivers
  return _graph(types, vectors, senders, receivers)


def _radial_block(distances, num_rbf, rbf_cutoff):
  """Σ_j exp(-(r_j - μ_k)² / (2 w²)) over the given distances: [num_rbf]."""
  distances = np.asarray(distances, np.float64).reshape(-1)
  centres = np.linspace(0.0, rbf_cutoff, num_rbf)
  width = rbf_cutoff / (num_rbf - 1)
  return np.exp(-(distances[:, None] - centres[None])**2 /
                (2 * width**2)).sum(axis=0)


def _steinhardt_squared(vectors):
  """q_c,l² [len(ANGULAR_ORDERS), C] of one centre, from its neighbour
  vectors, by the double sum over pairs and Legendre polynomials."""
  vectors = np.asarray(vectors, np.float64)
  r = np.linalg.norm(vectors, axis=-1)
  unit = vectors / r[:, None]
  cos = np.clip(unit @ unit.T, -1.0, 1.0)
  centres = np.asarray(model.ANGULAR_CENTRES)
  h = np.exp(-(r[:, None] - centres[None])**2 /
             (2 * model.ANGULAR_WIDTH**2))                 # [n, C]
  out = np.zeros([len(model.ANGULAR_ORDERS), len(centres)])
  for a, l in enumerate(model.ANGULAR_ORDERS):
    p = np_legendre.legval(cos, [0.0] * l + [1.0])           # [n, n]
    out[a] = np.einsum("jc,kc,jk->c", h, h, p) / h.sum(axis=0)**2
  return out


def _angular(descriptors, num_rbf):
  """The angular columns [..., len(ANGULAR_ORDERS), C], unscaled."""
  d = np.asarray(descriptors)[..., 2 * num_rbf:]
  return d.reshape(d.shape[:-1] + (len(model.ANGULAR_ORDERS), N_C)) / (
      model.ANGULAR_SCALE)


def _periodic_graph(n_particles=100, seed=3):
  record = synthetic_records.make_record(seed, n_particles=n_particles)
  graph = graphs.build_graph(record.positions, record.box, 2.0)
  return record, graph


def _config(node_encoding="type_descriptors", **train):
  config = smoke.get_config()
  config.train.deterministic = True
  config.train.batch_size = 1
  config.model.node_encoding = node_encoding
  for key, value in train.items():
    config.train[key] = value
  return config


def _records(n_train=2, n_validation=1, n_particles=100):
  return synthetic_records.train_validation_datasets(n_train, n_validation,
                                                     n_particles)


def _random_rotation(rng):
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  q = q * np.sign(np.diag(r))[None]
  if np.linalg.det(q) < 0:
    q[:, 0] = -q[:, 0]
  return q


# ------------------------------------------------- hand-made geometry ---


def test_layout_constants_and_width():
  assert model.NODE_ENCODINGS == ("type", "type_descriptors")
  for num_rbf in (2, 5, 16):
    assert model.n_node_descriptors(num_rbf) == (
        2 * num_rbf + len(model.ANGULAR_CENTRES) * len(model.ANGULAR_ORDERS))
  assert default.get_config().model.node_encoding == "type"
  assert reference_t064.get_config().model.node_encoding == (
      "type_descriptors")


def test_two_opposite_neighbours():
  num_rbf, rbf_cutoff = 5, 2.0
  graph = _star([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
  out = model.node_descriptors(graph, num_rbf, rbf_cutoff).numpy()
  assert out.shape == (3, model.n_node_descriptors(num_rbf))
  # Radial: two A neighbours at 1.0; the self-loop (r = 0, which would add
  # exp(0) = 1 to the first basis function) is skipped; no B neighbours.
  np.testing.assert_allclose(
      out[0, :num_rbf],
      model.RADIAL_SCALE * _radial_block([1.0, 1.0], num_rbf, rbf_cutoff),
      rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(out[0, num_rbf:2 * num_rbf], 0.0, atol=1e-7)
  # Angular: a linear pair has q_odd = 0 and q_even = 1 in every shell.
  angular = out[0, 2 * num_rbf:].reshape(len(model.ANGULAR_ORDERS), N_C)
  expected = {1: 0.0, 2: 1.0, 3: 0.0, 4: 1.0}
  for a, l in enumerate(model.ANGULAR_ORDERS):
    np.testing.assert_allclose(angular[a], model.ANGULAR_SCALE * expected[l],
                               atol=2e-3 * model.ANGULAR_SCALE)
  # The shell centred at 1.0 is accurate, not only the ratio.
  np.testing.assert_allclose(angular[:, 0] / model.ANGULAR_SCALE,
                             [expected[l] for l in model.ANGULAR_ORDERS],
                             atol=1e-3)
  # Nodes that receive no edge have all-zero descriptors (no NaN).
  np.testing.assert_array_equal(out[1:], 0.0)


def test_three_orthogonal_neighbours_and_types():
  num_rbf, rbf_cutoff = 6, 2.0
  vectors = np.array([[1.1, 0.0, 0.0], [0.0, 1.1, 0.0], [0.0, 0.0, 1.1]])
  types = [0, 1, 1]   # one A and two B neighbours
  out = model.node_descriptors(_star(vectors, types), num_rbf,
                               rbf_cutoff).numpy()
  np.testing.assert_allclose(
      out[0, :num_rbf],
      model.RADIAL_SCALE * _radial_block([1.1], num_rbf, rbf_cutoff),
      rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(
      out[0, num_rbf:2 * num_rbf],
      model.RADIAL_SCALE * _radial_block([1.1, 1.1], num_rbf, rbf_cutoff),
      rtol=1e-5, atol=1e-7)
  # Three orthogonal bonds: q_l² = (3 P_l(1) + 6 P_l(0)) / 9.
  p0 = {1: 0.0, 2: -0.5, 3: 0.0, 4: 3.0 / 8.0}
  q = np.array([np.sqrt((3 + 6 * p0[l]) / 9) for l in model.ANGULAR_ORDERS])
  np.testing.assert_allclose(_angular(out, num_rbf)[0],
                             np.repeat(q[:, None], N_C, axis=1), atol=1e-3)


def test_radial_part_of_several_receivers():
  # Node 0 (A) receives from 1 (A, r = 1.0) and 2 (B, r = 1.3); node 3 (B)
  # receives from 0 (A, r = 0.9), 1 (A, r = 1.7) and 2 (B, r = 0.8); every
  # node has a self-loop; two padding-like zero edges on node 4.
  num_rbf, rbf_cutoff = 8, 2.0
  rng = np.random.default_rng(0)

  def v(r):
    d = rng.normal(size=3)
    return r * d / np.linalg.norm(d)

  edges = [(1, 0, v(1.0)), (2, 0, v(1.3)), (0, 3, v(0.9)), (1, 3, v(1.7)),
           (2, 3, v(0.8))]
  edges += [(i, i, np.zeros(3)) for i in range(5)] + [(4, 4, np.zeros(3))]
  order = rng.permutation(len(edges))
  edges = [edges[k] for k in order]
  graph = _graph([0, 0, 1, 1, 0], [e[2] for e in edges],
                 [e[0] for e in edges], [e[1] for e in edges])
  out = model.node_descriptors(graph, num_rbf, rbf_cutoff).numpy()
  s = model.RADIAL_SCALE
  expected = np.zeros([5, 2 * num_rbf])
  expected[0, :num_rbf] = s * _radial_block([1.0], num_rbf, rbf_cutoff)
  expected[0, num_rbf:] = s * _radial_block([1.3], num_rbf, rbf_cutoff)
  expected[3, :num_rbf] = s * _radial_block([0.9, 1.7], num_rbf, rbf_cutoff)
  expected[3, num_rbf:] = s * _radial_block([0.8], num_rbf, rbf_cutoff)
  np.testing.assert_allclose(out[:, :2 * num_rbf], expected, rtol=1e-5,
                             atol=1e-7)
  # Other radial bases (centres and width follow num_rbf, rbf_cutoff).
  out = model.node_descriptors(graph, 4, 2.5).numpy()
  np.testing.assert_allclose(out[3, :4], s * _radial_block([0.9, 1.7], 4,
                                                           2.5),
                             rtol=1e-5, atol=1e-7)


def test_steinhardt_order_of_random_clusters():
  rng = np.random.default_rng(1)
  num_rbf = 4
  for n in (1, 2, 5, 12, 30):
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    vectors = direction * rng.uniform(0.8, 2.0, size=(n, 1))
    out = model.node_descriptors(_star(vectors), num_rbf).numpy()
    got = _angular(out, num_rbf)[0]**2
    np.testing.assert_allclose(got, _steinhardt_squared(vectors), atol=2e-4,
                               err_msg=f"{n} neighbours")
    if n == 1:   # a single bond: every q_l = 1
      np.testing.assert_allclose(got, 1.0, atol=1e-4)


def test_cluster_order_is_independent_of_scale_of_shell_weights():
  # A shell far from every neighbour (tiny weights) still normalises: the
  # same q_l in every shell when all neighbours are at one distance.
  rng = np.random.default_rng(2)
  direction = rng.normal(size=(7, 3))
  vectors = 1.3 * direction / np.linalg.norm(direction, axis=-1,
                                             keepdims=True)
  out = model.node_descriptors(_star(vectors), 3).numpy()
  angular = _angular(out, 3)[0]
  np.testing.assert_allclose(angular, angular[:, :1] * np.ones([1, N_C]),
                             atol=2e-3)
  np.testing.assert_allclose(angular[:, 1]**2,
                             _steinhardt_squared(vectors)[:, 1], atol=1e-4)


# ------------------------------------------- periodic configurations ---


def test_radial_part_matches_brute_force_pairs():
  record, graph = _periodic_graph()
  num_rbf = 16
  out = model.node_descriptors(
      _graph(record.types, graph.edge_vectors, graph.senders,
             graph.receivers), num_rbf).numpy()
  box = np.asarray(record.box, np.float64)
  delta = periodic.minimum_image(
      record.positions[:, None].astype(np.float64) -
      record.positions[None].astype(np.float64), box)
  r = np.linalg.norm(delta, axis=-1)
  np.fill_diagonal(r, np.inf)
  expected = np.zeros([record.n_particles, 2 * num_rbf])
  for i in range(record.n_particles):
    for t in (0, 1):
      near = (r[i] < 2.0) & (record.types == t)
      expected[i, t * num_rbf:(t + 1) * num_rbf] = _radial_block(
          r[i, near], num_rbf, 2.0)
  np.testing.assert_allclose(out[:, :2 * num_rbf],
                             model.RADIAL_SCALE * expected, rtol=1e-4,
                             atol=1e-5)
  # And the angular part of a few particles from the same brute force.
  for i in (0, 17, 55):
    near = r[i] < 2.0
    np.testing.assert_allclose(_angular(out, num_rbf)[i]**2,
                               _steinhardt_squared(delta[i, near]),
                               atol=2e-4)


def test_rotation_reflection_and_permutation_invariance():
  record, graph = _periodic_graph(seed=5)
  num_rbf = 16
  types = record.types
  base = model.node_descriptors(
      _graph(types, graph.edge_vectors, graph.senders, graph.receivers),
      num_rbf).numpy()
  assert np.all(np.isfinite(base))
  # Dense liquid: the scaled descriptors are of order one, not all zero.
  assert 0.05 < np.abs(base).mean() < 10
  rng = np.random.default_rng(7)
  tol = 1e-4 * model.ANGULAR_SCALE
  for matrix in (_random_rotation(rng), -_random_rotation(rng)):
    rotated = graph.edge_vectors.astype(np.float64) @ matrix.T
    out = model.node_descriptors(
        _graph(types, rotated, graph.senders, graph.receivers),
        num_rbf).numpy()
    np.testing.assert_allclose(out, base, atol=tol, rtol=1e-4)
  # Relabel the nodes (new node k = old node perm[k]) and shuffle the edges.
  n = record.n_particles
  perm = rng.permutation(n)
  new_index = np.empty(n, np.int64)
  new_index[perm] = np.arange(n)
  edge_order = rng.permutation(graph.n_edges)
  out = model.node_descriptors(
      _graph(types[perm], graph.edge_vectors[edge_order],
             new_index[graph.senders[edge_order]],
             new_index[graph.receivers[edge_order]]), num_rbf).numpy()
  np.testing.assert_allclose(out, base[perm], atol=tol, rtol=1e-4)
  # Swapping the species swaps the two radial blocks, angular unchanged.
  out = model.node_descriptors(
      _graph(1 - types, graph.edge_vectors, graph.senders, graph.receivers),
      num_rbf).numpy()
  np.testing.assert_allclose(out[:, :num_rbf], base[:, num_rbf:2 * num_rbf],
                             atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out[:, 2 * num_rbf:], base[:, 2 * num_rbf:],
                             atol=1e-5, rtol=1e-5)


def test_width_and_no_gradient():
  record, graph = _periodic_graph(n_particles=80, seed=8)
  for num_rbf in (3, 16):
    g = _graph(record.types, graph.edge_vectors, graph.senders,
               graph.receivers)
    edges = tf.Variable(g.edges)
    with tf.GradientTape() as tape:
      out = model.node_descriptors(g.replace(edges=edges), num_rbf)
      loss = tf.reduce_sum(out**2)
    assert out.shape == (80, model.n_node_descriptors(num_rbf))
    assert out.dtype == tf.float32
    gradient = tape.gradient(loss, edges)
    assert gradient is None or not np.any(tf.convert_to_tensor(gradient))


def test_inside_tf_function_with_unknown_sizes():
  record, graph = _periodic_graph(n_particles=80, seed=9)
  g = _graph(record.types, graph.edge_vectors, graph.senders,
             graph.receivers)
  eager = model.node_descriptors(g, 5).numpy()

  @tf.function(input_signature=[
      tf.TensorSpec([None, 1], tf.float32), tf.TensorSpec([None, 3],
                                                          tf.float32),
      tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)])
  def traced(nodes, edges, senders, receivers):
    return model.node_descriptors(g.replace(
        nodes=nodes, edges=edges, senders=senders, receivers=receivers), 5)

  out = traced(g.nodes, g.edges, g.senders, g.receivers)
  assert out.shape.as_list() == [80, model.n_node_descriptors(5)]
  # Float32 round-off of the angular sums differs between graph and eager.
  np.testing.assert_allclose(out.numpy(), eager, atol=1e-4, rtol=1e-5)


# --------------------------------------------------------- the model ---


def test_bad_node_encodings_are_rejected():
  with pytest.raises(ValueError, match="bogus") as info:
    model.EncodeProcessDecode(node_encoding="bogus")
  for name in model.NODE_ENCODINGS:
    assert name in str(info.value)
  with pytest.raises(ValueError, match="use_edge_features"):
    model.EncodeProcessDecode(node_encoding="type_descriptors",
                              use_edge_features=False)
  with pytest.raises(ValueError, match="bogus"):
    model.GlassyGraphNetwork(node_encoding="bogus")
  # "type" without edge features is the connectivity-only ablation.
  model.EncodeProcessDecode(node_encoding="type", use_edge_features=False)


def test_encoder_reads_type_and_descriptors():
  record, graph = _periodic_graph(n_particles=80, seed=10)
  g = _graph(record.types, graph.edge_vectors, graph.senders,
             graph.receivers)
  num_rbf = 6
  net = model.EncodeProcessDecode(latent_size=8, num_recurrences=1,
                                  node_encoding="type_descriptors",
                                  num_rbf=num_rbf, edge_encoding="vector_rbf")
  assert net.node_encoding == "type_descriptors"
  out = net(g)
  assert out.shape == (80, 1)
  node_w = [v for v in net.variables
            if "graph_independent/" in v.name and "node_model" in v.name
            and v.name.endswith("linear_0/w:0")]
  assert len(node_w) == 1, [v.name for v in net.variables]
  assert node_w[0].shape == (1 + model.n_node_descriptors(num_rbf), 8)
  # Explicit descriptors equal to the computed ones give the same outputs;
  # other descriptors change them (they are read, not recomputed).
  descriptors = model.node_descriptors(g, num_rbf, 2.0)
  np.testing.assert_allclose(net(g, descriptors).numpy(), out.numpy(),
                             atol=1e-6)
  assert not np.allclose(net(g, descriptors[::-1]).numpy(), out.numpy(),
                         atol=1e-4)
  # The "type" model has a one-wide node encoder, and ignores descriptors.
  plain = model.EncodeProcessDecode(latent_size=8, num_recurrences=1)
  assert plain.node_encoding == "type"
  np.testing.assert_array_equal(plain(g, descriptors).numpy(),
                                plain(g).numpy())


def test_old_configs_default_to_type():
  config = _config()
  old = copy.deepcopy(config)
  del old.model["node_encoding"]
  assert "node_encoding" not in old.model
  assert model.optional_model_arguments(old.model)["node_encoding"] == "type"
  assert model.optional_model_arguments(config.model)["node_encoding"] == (
      "type_descriptors")
  net = model.GlassyGraphNetwork.from_model_config(old.model, n_outputs=2)
  assert net.network.node_encoding == "type"
  assert net.get_config()["node_encoding"] == "type"
  assert model.EncodeProcessDecode.from_config(
      old.model, 2).node_encoding == "type"
  assert model.EncodeProcessDecode.from_config(
      config.model, 2).node_encoding == "type_descriptors"
  # The pipeline adds no descriptors for an old config.
  records = synthetic_records.make_records(1, n_particles=80)
  metadata = input_pipeline.compute_metadata(
      {"train": input_pipeline.records_dataset(records)}, old)
  features, _, _ = next(input_pipeline.graph_dataset(
      input_pipeline.records_dataset(records), old,
      metadata).as_numpy_iterator())
  assert "node_descriptors" not in features


# ------------------------------------------------------ the pipeline ---


def test_pipeline_descriptors_match_the_in_graph_ones():
  config = _config()
  config.model.num_rbf = 12
  records = synthetic_records.make_records(2, n_particles=100)
  metadata = input_pipeline.compute_metadata(
      {"train": input_pipeline.records_dataset(records)}, config)
  dataset = input_pipeline.graph_dataset(
      input_pipeline.records_dataset(records), config, metadata)
  width = model.n_node_descriptors(12)
  examples = list(dataset.as_numpy_iterator())
  for record, (features, _, _) in zip(records, examples):
    d = features["node_descriptors"]
    assert d.shape == (metadata.max_nodes, width)
    assert d.dtype == np.float32
    graph = graphs.build_graph(record.positions, record.box, 2.0)
    direct = model.node_descriptors(
        _graph(record.types, graph.edge_vectors, graph.senders,
               graph.receivers), 12).numpy()
    np.testing.assert_allclose(d[:record.n_particles], direct, atol=1e-4,
                               rtol=1e-4)
    np.testing.assert_array_equal(d[record.n_particles:], 0.0)
  # "type" configs get no descriptors.
  plain = _config("type")
  features, _, _ = next(input_pipeline.graph_dataset(
      input_pipeline.records_dataset(records), plain,
      metadata).as_numpy_iterator())
  assert "node_descriptors" not in features
  # The training stream keeps the cached descriptors through the cube
  # symmetry: they are those of the augmented edge vectors too.
  stream = input_pipeline.train_dataset(dataset, config, batch_size=2,
                                        seed=3)
  batch, _, _ = next(iter(stream))
  assert batch["node_descriptors"].shape == (2, metadata.max_nodes, width)
  assert "box" not in batch
  recomputed = model.node_descriptors(graphs.padded_to_graphs_tuple(batch),
                                      12)
  np.testing.assert_allclose(
      tf.reshape(batch["node_descriptors"], [-1, width]).numpy(),
      recomputed.numpy(), atol=1e-4 * model.ANGULAR_SCALE, rtol=1e-4)


def test_keras_model_same_with_and_without_precomputed_descriptors():
  config = _config()
  records = synthetic_records.make_records(2, n_particles=100)
  metadata = input_pipeline.compute_metadata(
      {"train": input_pipeline.records_dataset(records)}, config)
  batch, _, _ = next(iter(input_pipeline.eval_dataset(
      input_pipeline.graph_dataset(input_pipeline.records_dataset(records),
                                   config, metadata), batch_size=2)))
  assert "node_descriptors" in batch
  tf_keras.utils.set_random_seed(0)
  net = training.create_model(config, metadata)
  assert net.network.node_encoding == "type_descriptors"
  with_key = net(batch).numpy()
  without = net({k: v for k, v in batch.items()
                 if k != "node_descriptors"}).numpy()
  assert with_key.shape == (2, metadata.max_nodes, metadata.n_outputs)
  # Outputs of a random network are up to ~10 here: float32 round-off of
  # the descriptors (tf.data graph vs eager) shows at ~3e-6 relative.
  np.testing.assert_allclose(with_key, without, atol=1e-5, rtol=1e-5)
  # The key is read: other descriptors give other outputs.
  shuffled = dict(batch, node_descriptors=batch["node_descriptors"][::-1])
  assert not np.allclose(net(shuffled).numpy(), with_key, atol=1e-4)
  # Padding nodes stay zero.
  mask = batch["node_mask"].numpy()
  assert np.all(with_key[mask == 0] == 0)


# ------------------------------------------------------ end to end ---


@pytest.fixture(name="trained", scope="module")
def _trained(tmp_path_factory):
  config = _config(num_steps=2, steps_per_epoch=2)
  workdir = tmp_path_factory.mktemp("descriptors")
  result = training.train(config, str(workdir), records=_records(),
                          verbose=0)
  return config, result


def test_training_exports_descriptor_model(trained):
  config, result = trained
  metadata = training.load_saved_model_metadata(result.saved_model)
  assert metadata["config"]["model"]["node_encoding"] == "type_descriptors"
  assert result.model.network.node_encoding == "type_descriptors"
  record = synthetic_records.make_record(200, n_particles=110)
  predictor = prediction.load_predictor(result.saved_model)
  out = predictor.predict(record.positions, record.types, record.box)
  assert out.shape == (110, result.metadata.n_outputs)
  assert np.all(np.isfinite(out))
  # The SavedModel computes the descriptors in its graph; the Keras model
  # gets them from the batch. Both give the same propensities.
  graph = graphs.build_graph(record.positions, record.box,
                             config.graph.cutoff)
  padded = graphs.pad_graph(record.types, graph, 128, graph.n_edges + 8)
  batch = {k: v[None] for k, v in padded.items()}
  single = graphs.padded_to_graphs_tuple(batch)
  descriptors = model.node_descriptors(
      single, config.model.num_rbf, config.model.rbf_cutoff)
  for inputs in (batch, dict(batch, node_descriptors=descriptors[None])):
    keras_out = result.model(inputs).numpy()[0, :110]
    if result.metadata.target_mean:
      keras_out = (keras_out * np.asarray(result.metadata.target_std) +
                   np.asarray(result.metadata.target_mean))
    np.testing.assert_allclose(out, keras_out, atol=1e-4, rtol=1e-4)
  # The analyses rebuild the same network from the metadata.
  network = common.restore_network(result.saved_model, metadata)
  assert network.node_encoding == "type_descriptors"
  restored = common.network_predict(
      network, config.graph.cutoff, config.graph.self_loops,
      result.metadata.target_mean, result.metadata.target_std)(
          record.positions, record.types, record.box)
  np.testing.assert_allclose(restored, out, atol=1e-5, rtol=1e-5)
