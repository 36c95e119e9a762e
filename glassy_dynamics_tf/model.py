"""The encode-process-decode graph network of Bapst et al. 2020 (Methods).

Two layers:
- `EncodeProcessDecode` (Sonnet 2, graph_nets blocks): GraphsTuple -> node
  outputs. Its sub-module names match the variable names of the authors'
  TF1 release (`graph_independent`, `graph_network/{edge,node}_block`,
  `graph_independent_1`), so `deepmind_checkpoint.py` can import the
  published weights by name.
- `GlassyGraphNetwork` (tf_keras.Model): a batch of padded graphs
  (docs/CONTRACTS.md) -> [B, max_nodes, n_outputs], for compile / fit /
  predict / save under any tf.distribute strategy.

Sonnet creates variables on the first call. Under a distribution strategy,
call `build_variables(model)` inside `strategy.scope()` before `compile`.
"""

from typing import Dict, Optional

from graph_nets import blocks
from graph_nets import graphs as gn_graphs
from graph_nets import modules
import ml_collections
import numpy as np
import sonnet as snt
import tensorflow as tf
import tf_keras

from glassy_dynamics_tf import graphs as graphs_lib


class _CoreGraphNetwork(snt.Module):
  """GraphNetwork with edge and node blocks only (no globals anywhere).

  graph_nets' `modules.GraphNetwork` always carries a global block; the
  paper's model uses no global features, so the core is the edge block
  followed by the node block, under the release's name `graph_network`.
  """

  def __init__(self, make_mlp, name: str = "graph_network"):
    super().__init__(name=name)
    # Edge model input: [edge, receiver node, sender node] (graph_nets order).
    self._edge_block = blocks.EdgeBlock(
        edge_model_fn=make_mlp, use_edges=True, use_receiver_nodes=True,
        use_sender_nodes=True, use_globals=False, name="edge_block")
    # Node model input: [sum of received updated edges, node] (Methods: sum
    # aggregation, as in the release).
    self._node_block = blocks.NodeBlock(
        node_model_fn=make_mlp, use_received_edges=True, use_sent_edges=False,
        use_nodes=True, use_globals=False,
        received_edges_reducer=tf.math.unsorted_segment_sum,
        name="node_block")

  def __call__(self, graph: gn_graphs.GraphsTuple) -> gn_graphs.GraphsTuple:
    return self._node_block(self._edge_block(graph))


class EncodeProcessDecode(snt.Module):
  """Encoder, shared-weight core applied `num_recurrences` times, decoder.

  Bapst et al. 2020, Methods ("Graph neural networks"), and the authors'
  release (../shared/fixtures/deepmind/README.md):

    graph: nodes [N, 1] (type), edges [E, 3] (r_receiver - r_sender)
      |
      v
    encoder (node MLP, edge MLP) ---------------> encoded
                                                    |
             +--------------------------------------+
             |                   (latent = encoded before step 1)
             v
    +--> concat([latent, encoded]) --> core --> latent --+
    |      edge MLP([e, v_receiver, v_sender]) -> e'     |
    |      node MLP([sum of received e', v])    -> v'    |
    +------------- repeated num_recurrences times -------+
                          (shared weights)               |
                                                         v
                                decoder (node MLP on latent nodes)
                                                         |
                                                         v
                                           outputs [N, n_outputs]

  - encoder: `GraphIndependent`, node and edge MLPs (latent,) * mlp_layers,
    ReLU, last layer activated. Nodes: type as float [N, 1] (A = 0, B = 1);
    edges: minimum-image relative vector receiver - sender [E, 3], σ_AA units.
  - core: edge model on concat(edge, receiver node, sender node); node model
    on concat(sum over received edges of the new edges, node). Its input is
    concat([latent, encoded]) (latent first); the first step sees
    [encoded, encoded]. MLPs as the encoder's.
  - decoder: `GraphIndependent` node MLP (latent,) * mlp_layers + (n_outputs,)
    on the final latent nodes, no final activation.
  No normalisation, no global features.

  With the paper's sizes (latent 64, 2 layers, one output) it has 62 401
  parameters.
  """

  def __init__(self, latent_size: int = 64, mlp_layers: int = 2,
               num_recurrences: int = 7, n_outputs: int = 1,
               use_edge_features: bool = True,
               name: str = "encode_process_decode"):
    """Builds the modules (variables are created on the first call).

    Args:
      latent_size: width of every hidden layer and of the latent graph.
      mlp_layers: hidden layers per MLP (the paper: 2).
      num_recurrences: core steps with shared weights (the paper: 7).
      n_outputs: outputs per node (1 = one timescale, as in the paper; T for
        a multi-timescale head).
      use_edge_features: if False, edges enter as a constant 1 (connectivity
        only, no geometry) instead of the relative vector.
      name: module name.
    """
    super().__init__(name=name)
    for arg, value in (("latent_size", latent_size),
                       ("mlp_layers", mlp_layers),
                       ("num_recurrences", num_recurrences),
                       ("n_outputs", n_outputs)):
      if int(value) != value or value < 1:
        raise ValueError(f"EncodeProcessDecode: {arg} must be a positive "
                         f"integer, got {value!r}.")
    self.latent_size = int(latent_size)
    self.mlp_layers = int(mlp_layers)
    self.num_recurrences = int(num_recurrences)
    self.n_outputs = int(n_outputs)
    self.use_edge_features = bool(use_edge_features)
    hidden = [self.latent_size] * self.mlp_layers

    def make_mlp():
      return snt.nets.MLP(hidden, activate_final=True, name="mlp")

    def make_decoder_mlp():
      return snt.nets.MLP(hidden + [self.n_outputs], activate_final=False,
                          name="mlp")

    # Names as in the TF1 release (`Graph/graph_independent/...`, ...).
    self._encoder = modules.GraphIndependent(
        edge_model_fn=make_mlp, node_model_fn=make_mlp,
        name="graph_independent")
    self._core = _CoreGraphNetwork(make_mlp, name="graph_network")
    self._decoder = modules.GraphIndependent(
        node_model_fn=make_decoder_mlp, name="graph_independent_1")

  def __call__(self, graph: gn_graphs.GraphsTuple) -> tf.Tensor:
    """Predicts per-node outputs.

    Args:
      graph: GraphsTuple with nodes [N, 1] float32 (type, A = 0, B = 1),
        edges [E, 3] float32 (minimum-image positions[receiver] -
        positions[sender], σ_AA units), senders, receivers [E] int32,
        n_node, n_edge. Globals are ignored.

    Returns:
      [N, n_outputs] float32 node outputs (e.g. propensity, σ_AA units).
    """
    return self.decode(self.latent_graph(graph))

  def latent_graph(self, graph: gn_graphs.GraphsTuple
                   ) -> gn_graphs.GraphsTuple:
    """The core's last latent graph, the decoder's input.

    Args:
      graph: as for `__call__`.

    Returns:
      GraphsTuple with nodes [N, latent_size] (the learned node embeddings,
      Bapst et al. 2020 Fig. 5) and edges [E, latent_size].
    """
    edges = graph.edges
    if not self.use_edge_features:
      edges = tf.ones_like(edges[:, :1])
    graph = graph.replace(nodes=tf.cast(graph.nodes, tf.float32),
                          edges=tf.cast(edges, tf.float32), globals=None)
    encoded = self._encoder(graph)
    latent = encoded
    for _ in range(self.num_recurrences):
      core_input = latent.replace(
          nodes=tf.concat([latent.nodes, encoded.nodes], axis=-1),
          edges=tf.concat([latent.edges, encoded.edges], axis=-1))
      latent = self._core(core_input)
    return latent

  def decode(self, latent: gn_graphs.GraphsTuple) -> tf.Tensor:
    """The decoder on a latent graph: [N, n_outputs] float32."""
    return self._decoder(latent).nodes

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict,
                  n_outputs: int) -> "EncodeProcessDecode":
    """Builds from the `model` section of a config (configs/default.py)."""
    return cls(latent_size=model_config.latent_size,
               mlp_layers=model_config.mlp_layers,
               num_recurrences=model_config.num_recurrences,
               n_outputs=n_outputs,
               use_edge_features=model_config.use_edge_features)


class GlassyGraphNetwork(tf_keras.Model):
  """Keras model: batch of padded graphs -> per-particle predictions.

  `call(batch)` takes the padded-graph dict of docs/CONTRACTS.md with a
  leading batch dimension (node_types [B, max_nodes], node_mask, senders,
  receivers [B, max_edges], edge_vectors [B, max_edges, 3], edge_mask; other
  keys ignored) and returns [B, max_nodes, n_outputs] float32, zero on
  padding nodes. Padding nodes and edges never reach real nodes: padding
  edges connect only the padding node max_nodes - 1.
  """

  def __init__(self, latent_size: int = 64, mlp_layers: int = 2,
               num_recurrences: int = 7, n_outputs: int = 1,
               use_edge_features: bool = True,
               name: str = "glassy_graph_network", **kwargs):
    super().__init__(name=name, **kwargs)
    self._arguments = dict(latent_size=latent_size, mlp_layers=mlp_layers,
                           num_recurrences=num_recurrences,
                           n_outputs=n_outputs,
                           use_edge_features=use_edge_features)
    self.network = EncodeProcessDecode(**self._arguments)
    self.n_outputs = int(n_outputs)

  @classmethod
  def from_model_config(cls, model_config: ml_collections.ConfigDict,
                        n_outputs: int, **kwargs) -> "GlassyGraphNetwork":
    """Builds from the `model` section of a config (configs/default.py)."""
    return cls(latent_size=model_config.latent_size,
               mlp_layers=model_config.mlp_layers,
               num_recurrences=model_config.num_recurrences,
               n_outputs=n_outputs,
               use_edge_features=model_config.use_edge_features, **kwargs)

  def get_config(self):
    return dict(self._arguments, name=self.name)

  def call(self, batch: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
    del training  # No dropout or batch norm.
    node_mask = tf.cast(tf.convert_to_tensor(batch["node_mask"]), tf.float32)
    graph = graphs_lib.padded_to_graphs_tuple(batch)
    outputs = self.network(graph)                     # [B * max_nodes, out]
    outputs = tf.reshape(outputs, tf.concat(
        [tf.shape(node_mask), [self.n_outputs]], axis=0))
    return outputs * node_mask[..., None]


def dummy_batch(batch_size: int = 1, max_nodes: int = 2,
                max_edges: int = 2) -> Dict[str, np.ndarray]:
  """A tiny valid padded batch (one A particle with its self-loop).

  Variable shapes do not depend on graph sizes, so this builds the
  variables of any model (`build_variables`).
  """
  graph = graphs_lib.NeighbourGraph(
      senders=np.zeros([1], np.int32), receivers=np.zeros([1], np.int32),
      edge_vectors=np.zeros([1, 3], np.float32))
  example = graphs_lib.pad_graph(np.zeros([1], np.int32), graph, max_nodes,
                                 max_edges)
  return {k: np.stack([v] * batch_size) for k, v in example.items()}


def build_variables(model, example_batch: Optional[Dict] = None) -> None:
  """Creates the model's variables by calling it once.

  Call inside `strategy.scope()` before `model.compile` (Sonnet creates
  variables lazily; DESIGN.md "Verified stack").

  Args:
    model: GlassyGraphNetwork (or EncodeProcessDecode).
    example_batch: a padded batch; default `dummy_batch()`.
  """
  batch = dummy_batch() if example_batch is None else example_batch
  if isinstance(model, EncodeProcessDecode):
    model(graphs_lib.padded_to_graphs_tuple(batch))
  else:
    model(batch)


def count_parameters(model) -> int:
  """Number of trainable scalars of a built model or module."""
  try:
    variables = model.trainable_variables
  except ValueError:  # Sonnet refuses to list variables before a call.
    variables = ()
  if not variables:
    raise ValueError("count_parameters: the model has no variables yet; call "
                     "build_variables(model) first.")
  return int(sum(np.prod(v.shape) for v in variables))


def parameter_summary(model) -> str:
  """One line per variable (name, shape, size) and the total, for logs."""
  lines = [f"{v.name:<80s} {str(v.shape.as_list()):>12s} "
           f"{int(np.prod(v.shape)):>8d}"
           for v in sorted(model.trainable_variables, key=lambda v: v.name)]
  lines.append(f"total trainable parameters: {count_parameters(model)}")
  return "\n".join(lines)
