"""Tests of analysis/embeddings.py and of restoring the Sonnet network from
an exported SavedModel (analysis/common.py)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from glassy_dynamics_tf.analysis import common
from glassy_dynamics_tf.analysis import embeddings

import synthetic_records


@pytest.mark.parametrize("num_recurrences,use_edge_features",
                         [(1, True), (3, True), (2, False)])
def test_latent_graph_is_the_decoder_input(make_network, num_recurrences,
                                           use_edge_features):
  """decode(latent_graph(g)) is the network's output, bit for bit: the
  step-by-step forward pass here mirrors model.py."""
  network = make_network(num_recurrences=num_recurrences,
                         use_edge_features=use_edge_features)
  record = synthetic_records.make_record(0, n_particles=150)
  graph = embeddings.graphs_tuple(record.positions, record.types,
                                  record.box)
  latent = embeddings.latent_graph(network, graph)
  assert latent.nodes.shape == (150, 16)
  np.testing.assert_array_equal(embeddings.decode(network, latent).numpy(),
                                network(graph).numpy())
  np.testing.assert_array_equal(
      embeddings.configuration_embeddings(network, record.positions,
                                          record.types, record.box),
      latent.nodes.numpy())


def test_restored_network_reproduces_the_saved_model(exported):
  path, keras_model, metadata = exported
  model = common.load_model(path, with_network=True)
  assert model.num_recurrences == 2 and model.cutoff == 2.0
  assert model.network.num_recurrences == 2
  originals = {v.name: v.numpy() for v in keras_model.network.variables}
  restored = {v.name: v.numpy() for v in model.network.variables}
  assert sorted(originals) == sorted(restored)
  for name, value in originals.items():
    np.testing.assert_array_equal(restored[name], value, err_msg=name)
  # The decoder's output, un-standardised, is the SavedModel's prediction.
  record = synthetic_records.make_record(9, n_particles=150)
  latent = embeddings.latent_graph(model.network, embeddings.graphs_tuple(
      record.positions, record.types, record.box))
  raw = embeddings.decode(model.network, latent).numpy()
  np.testing.assert_allclose(
      raw * np.float32(metadata.target_std) + np.float32(metadata.target_mean),
      model.predict(record.positions, record.types, record.box),
      rtol=1e-5, atol=1e-6)


def test_restore_refuses_a_different_architecture(exported, tmp_path):
  path, _, _ = exported
  with open(f"{path}/assets/metadata.json") as f:
    metadata = json.load(f)
  metadata["config"]["model"]["latent_size"] = 8
  with pytest.raises(common.AnalysisError, match="do not fit"):
    common.restore_network(path, metadata)
  del metadata["config"]
  with pytest.raises(common.AnalysisError, match="no config.model"):
    common.restore_network(path, metadata)


def test_principal_axes_of_an_elongated_cloud():
  rng = np.random.default_rng(0)
  direction = np.array([1.0, -2.0, 2.0]) / 3.0
  x = (rng.normal(size=(500, 1)) * 5.0 * direction +
       rng.normal(size=(500, 3)) * 0.1 + [3.0, 1.0, -1.0])
  axes = embeddings.principal_axes(x, 2)
  assert axes.shape == (3, 2)
  # Sign convention: the largest component (here -2/3 or 2/3) is positive.
  np.testing.assert_allclose(np.abs(axes[:, 0] @ direction), 1.0, atol=1e-3)
  assert axes[np.argmax(np.abs(axes[:, 0])), 0] > 0
  np.testing.assert_allclose(axes.T @ axes, np.eye(2), atol=1e-12)
  ratio = embeddings.explained_variance(x, 3)
  assert ratio[0] > 0.99 and ratio.sum() == pytest.approx(1.0)


def test_neighbour_agreement():
  rng = np.random.default_rng(1)
  points = rng.uniform(size=(400, 2))
  smooth = np.sin(4 * points[:, 0]) + points[:, 1]
  assert embeddings.neighbour_agreement(points, smooth, 5) > 0.95
  noise = rng.normal(size=400)
  assert abs(embeddings.neighbour_agreement(points, noise, 5)) < 0.2
  # Golden: 4 points on a line, k = 1: each one's nearest neighbour.
  line = np.array([[0.0], [1.0], [3.0], [7.0]])
  values = np.array([1.0, 2.0, 3.0, 4.0])
  # Neighbours: 0->1, 1->0, 2->1, 3->2: means (2, 1, 2, 3).
  expected = np.corrcoef(values, [2.0, 1.0, 2.0, 3.0])[0, 1]
  assert embeddings.neighbour_agreement(line, values, 1) == pytest.approx(
      expected)


def test_tsne_separates_clusters():
  rng = np.random.default_rng(2)
  x = np.concatenate([rng.normal(size=(40, 8)),
                      rng.normal(size=(40, 8)) + 10.0])
  labels = np.repeat([0.0, 1.0], 40)
  points, kl, perplexity = embeddings.tsne_map(x, perplexity=30, seed=0)
  assert points.shape == (80, 2) and np.isfinite(kl)
  assert perplexity == 26.333333333333332  # capped at (80 - 1) / 3
  assert embeddings.neighbour_agreement(points, labels, 5) == 1.0


def test_run_writes_map(make_network, tmp_path):
  network = make_network(num_recurrences=2)
  model = common.model_from_network(network, [0.5, 2.0])
  records = synthetic_records.make_records(2, n_particles=120)
  report = embeddings.run(model, ["a", "b"], records, str(tmp_path),
                          max_points=100, perplexity=20, seed=0)
  with open(tmp_path / "embedding_map.json") as f:
    written = json.load(f)
  assert written["n_points"] == 100 and written["latent_size"] == 16
  assert len(written["panels"]) == 2   # one per record timescale
  arrays = np.load(tmp_path / "embedding_map.npz")
  assert arrays["points"].shape == (100, 2)
  assert arrays["propensity"].shape == (2, 100)
  # Every mapped particle is type A, and its propensity is the record's.
  for c, i, p in zip(arrays["configuration"], arrays["particle"],
                     arrays["propensity"][1]):
    assert records[c].types[i] == 0
    assert records[c].propensity[1, i] == p
  assert (tmp_path / "embedding_map.png").stat().st_size > 0
  assert "neighbour Pearson" in embeddings.summary(report)
  no_network = common.AnalysisModel(model.predict, model.metadata, "m")
  with pytest.raises(common.AnalysisError, match="weights"):
    embeddings.run(no_network, ["a"], records[:1], str(tmp_path))


def test_graphs_tuple_is_the_saved_model_input():
  record = synthetic_records.make_record(3, n_particles=100)
  graph = embeddings.graphs_tuple(record.positions, record.types,
                                  record.box)
  assert graph.nodes.dtype == tf.float32 and graph.nodes.shape == (100, 1)
  np.testing.assert_array_equal(graph.nodes.numpy()[:, 0], record.types)
  assert int(graph.n_edge[0]) == graph.senders.shape[0]
