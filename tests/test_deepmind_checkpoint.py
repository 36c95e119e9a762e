"""Import of the published TF1 checkpoint t044_s09 (golden predictions)."""

import numpy as np
import pytest
import tensorflow as tf
from graph_nets import graphs as gn_graphs

from glassy_dynamics_tf import deepmind_checkpoint
from glassy_dynamics_tf import graphs
from glassy_dynamics_tf import model

import fixtures

# In the repository (tests/fixtures/__init__.py): a missing file fails.
CHECKPOINT = fixtures.T044_S09_CHECKPOINT
GOLDEN = fixtures.T044_S09_GOLDEN


@pytest.fixture(scope="module")
def imported():
  return deepmind_checkpoint.load_deepmind_checkpoint(CHECKPOINT)


@pytest.fixture(scope="module")
def golden():
  with np.load(GOLDEN) as data:
    return {k: data[k] for k in data}


def _graphs_tuple(golden):
  graph = graphs.build_graph(golden["positions"], golden["box"], cutoff=2.0,
                             self_loops=True)
  n = len(golden["types"])
  return graph, gn_graphs.GraphsTuple(
      nodes=golden["types"].astype(np.float32)[:, None],
      edges=graph.edge_vectors, senders=graph.senders,
      receivers=graph.receivers, n_node=np.array([n], np.int32),
      n_edge=np.array([graph.n_edges], np.int32), globals=None)


def test_config_implied_by_the_checkpoint(imported):
  config = imported.config
  assert imported.n_outputs == 1
  assert config.model.latent_size == 64
  assert config.model.mlp_layers == 2
  assert config.model.num_recurrences == 7
  assert config.model.use_edge_features
  assert config.graph.cutoff == 2.0 and config.graph.self_loops
  assert model.count_parameters(imported.network) == 62401


def test_every_variable_is_mapped(imported):
  # 22 used variables: encoder 8, core 8, decoder node model 6.
  names = deepmind_checkpoint.assign_from_checkpoint(imported.network,
                                                     CHECKPOINT)
  assert len(names) == 22
  reader = tf.train.load_checkpoint(CHECKPOINT)
  for variable in imported.network.variables:
    key = deepmind_checkpoint.checkpoint_name(variable.name)
    np.testing.assert_array_equal(variable.numpy(), reader.get_tensor(key))


def test_golden_predictions_are_reproduced(imported, golden):
  graph, graphs_tuple = _graphs_tuple(golden)
  assert graph.n_edges == int(golden["n_edges"])   # self-loops included
  predicted = imported.network(graphs_tuple).numpy()[:, 0]
  error = np.max(np.abs(predicted - golden["predictions"]))
  # Measured: 7.6e-7 (float32 model against the float64 reference).
  assert error < 1e-5, f"max abs error {error}"
  np.testing.assert_array_equal(imported.network(graphs_tuple).numpy()[:, 0],
                                predicted)   # deterministic


def test_keras_model_reproduces_golden_on_padded_batch(golden):
  keras_model = deepmind_checkpoint.load_keras_model(CHECKPOINT)
  graph = graphs.build_graph(golden["positions"], golden["box"])
  n = len(golden["types"])
  example = graphs.pad_graph(golden["types"], graph, n + 7,
                             graph.n_edges + 100)
  batch = {k: v[None] for k, v in example.items()}
  predicted = keras_model(batch).numpy()[0, :n, 0]
  np.testing.assert_allclose(predicted, golden["predictions"], atol=1e-5)


def test_checkpoint_name_mapping():
  assert deepmind_checkpoint.checkpoint_name(
      "glassy_graph_network/encode_process_decode/graph_network/edge_block/"
      "mlp/linear_0/w:0") == "Graph/graph_network/edge_block/mlp/linear_0/w"
  with pytest.raises(deepmind_checkpoint.CheckpointError, match="dense/w"):
    deepmind_checkpoint.checkpoint_name("dense/w:0")


@pytest.mark.parametrize("kwargs, match", [
    (dict(latent_size=32), r"edge_model/mlp/linear_0/b has shape \[64\] in "
                           r"the checkpoint but \[32\]"),
    (dict(mlp_layers=3), r"our variable\(s\) \['Graph/.*linear_2/b'"),
    (dict(mlp_layers=1), r"checkpoint variable\(s\) \['Graph/.*linear_1"),
    (dict(n_outputs=10), r"linear_2/b has shape \[1\] in the checkpoint "
                         r"but \[10\]"),
])
def test_other_architectures_fail_loudly(kwargs, match):
  network = model.EncodeProcessDecode(**kwargs)
  model.build_variables(network)
  with pytest.raises(deepmind_checkpoint.CheckpointError, match=match):
    deepmind_checkpoint.assign_from_checkpoint(network, CHECKPOINT)


def test_missing_checkpoint_is_named(tmp_path):
  missing = str(tmp_path / "nothing.ckpt")
  with pytest.raises(deepmind_checkpoint.CheckpointError, match="nothing"):
    deepmind_checkpoint.load_deepmind_checkpoint(missing)
