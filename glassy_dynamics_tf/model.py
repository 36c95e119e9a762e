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

import math
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


INITIALIZERS = ("release", "sonnet")


def linear_initializers(kind: str = "release"
                        ) -> Dict[str, snt.initializers.Initializer]:
  """w_init / b_init of every linear layer: "release" (the authors', see
  `release_initializers`) or "sonnet" (Sonnet 2's defaults: truncated normal
  weights of std 1 / sqrt(fan_in), zero biases; kept for the ablation in
  docs/results/reference_t064.md)."""
  if kind == "release":
    return release_initializers()
  if kind == "sonnet":
    return {}
  raise ValueError(f"initializers must be one of {INITIALIZERS}, got "
                   f"{kind!r}")


def release_initializers() -> Dict[str, snt.initializers.Initializer]:
  """The initialisers of the authors' release, for every linear layer.

  The 2020 training script builds its MLPs with
  `initializers=dict(w=tf.variance_scaling_initializer(1.0),
  b=tf.variance_scaling_initializer(0.1))`: weights truncated normal with
  variance 1 / fan_in, and *non-zero* biases, truncated normal with variance
  0.1 / size (a 1-D shape's fan-in is its length). Sonnet 2's defaults give
  zero biases, and then every type-A particle (type 0, edges aside) encodes
  to the zero vector at the start of training (the ablation is in
  docs/results/reference_t064.md). Sonnet's VarianceScaling has
  the same truncation correction as TF's, so these draw from the release's
  distributions.
  """
  return dict(w_init=snt.initializers.VarianceScaling(1.0),
              b_init=snt.initializers.VarianceScaling(0.1))


EDGE_ENCODINGS = ("vector", "vector_distance", "vector_rbf")


def edge_inputs(vectors: tf.Tensor, encoding: str = "vector",
                num_rbf: int = 16, rbf_cutoff: float = 2.0) -> tf.Tensor:
  """The encoder's edge input from the relative vectors.

  Args:
    vectors: [E, 3] float32, minimum-image r_receiver - r_sender, σ_AA.
    encoding: one of EDGE_ENCODINGS:
      "vector": the vector itself [E, 3] (the paper and the release);
      "vector_distance": [E, 4], the vector and its length |Δr|;
      "vector_rbf": [E, 4 + num_rbf], the vector, |Δr| and Gaussian radial
        basis functions exp(-(|Δr| - μ_k)² / (2 w²)), centres μ_k evenly
        spaced on [0, rbf_cutoff], width w = the spacing (as SchNet's
        distance expansion; Schütt et al., J. Chem. Phys. 148, 241722
        (2018)).
      Every option is a function of the vector alone, so it adds no
      information: it only saves the encoder from learning |Δr| (a
      non-linear, rotation-invariant quantity) out of ReLUs of its
      components, which matters with little data.
    num_rbf: basis functions for "vector_rbf" (>= 2).
    rbf_cutoff: the largest centre, σ_AA (the graph's cutoff).

  Returns:
    [E, width] float32.

  Raises:
    ValueError: unknown encoding or bad basis size.
  """
  if encoding not in EDGE_ENCODINGS:
    raise ValueError(f"edge encoding must be one of {EDGE_ENCODINGS}, got "
                     f"{encoding!r}")
  vectors = tf.cast(vectors, tf.float32)
  if encoding == "vector":
    return vectors
  # sqrt(x + eps) keeps the gradient finite at the self-loops' |Δr| = 0.
  distance = tf.sqrt(tf.reduce_sum(vectors**2, axis=-1, keepdims=True)
                     + 1e-12)
  if encoding == "vector_distance":
    return tf.concat([vectors, distance], axis=-1)
  if int(num_rbf) < 2 or not rbf_cutoff > 0:
    raise ValueError(f"vector_rbf needs num_rbf >= 2 and rbf_cutoff > 0, got "
                     f"{num_rbf} and {rbf_cutoff}")
  return tf.concat([vectors, distance, radial_basis(distance, num_rbf,
                                                    rbf_cutoff)], axis=-1)


def radial_basis(distance: tf.Tensor, num_rbf: int,
                 rbf_cutoff: float) -> tf.Tensor:
  """Gaussians exp(-(d - μ_k)² / (2 w²)), μ_k evenly spaced on
  [0, rbf_cutoff], w = the spacing: [E, 1] distances -> [E, num_rbf]."""
  centres = tf.linspace(0.0, float(rbf_cutoff), int(num_rbf))
  width = float(rbf_cutoff) / (int(num_rbf) - 1)
  return tf.exp(-0.5 * ((distance - centres[None, :]) / width)**2)


NODE_ENCODINGS = ("type", "type_descriptors")

# Shells of the angular descriptors (σ_AA): first-shell AA and AB pairs,
# the first minimum, the second shell's inner edge.
ANGULAR_CENTRES = (1.0, 1.3, 1.6, 1.9)
ANGULAR_WIDTH = 0.2
ANGULAR_ORDERS = (1, 2, 3, 4)
RADIAL_SCALE = 0.25
ANGULAR_SCALE = 10.0


def n_node_descriptors(num_rbf: int = 16) -> int:
  """Width of `node_descriptors`: 2 num_rbf radial + angular."""
  return 2 * int(num_rbf) + len(ANGULAR_CENTRES) * len(ANGULAR_ORDERS)


def node_descriptors(graph: gn_graphs.GraphsTuple, num_rbf: int = 16,
                     rbf_cutoff: float = 2.0) -> tf.Tensor:
  """Rotation-invariant local-structure descriptors of every node.

  Computed inside the model from the graph's own edges (so every input
  path, the SavedModel included, gets them from positions alone), with no
  trainable parameters:

  - radial: G_t,k(i) = Σ_{j ∈ t} exp(-(r_ij - μ_k)² / (2 w²)) for neighbour
    species t ∈ {A, B} and the edge input's radial basis (μ_k evenly spaced
    on [0, rbf_cutoff], w = the spacing), the radial symmetry functions of
    Behler & Parrinello 2007 / Cubuk et al. 2015 within the graph's cut-off;
  - angular: Steinhardt bond-orientational order q_l, l = 1 ... 4, of
    Gaussian shells c (ANGULAR_CENTRES, width ANGULAR_WIDTH; Steinhardt,
    Nelson & Ronchetti, PRB 28, 784 (1983)) with neighbour weights
    h_c(r) = exp(-(r - c)² / (2 ANGULAR_WIDTH²)):
      q_c,l(i)² = Σ_{j,k} h_j h_k P_l(r̂_ij · r̂_ik) / (Σ_j h_j)²
    (the addition theorem of spherical harmonics), computed from the
    symmetric tensor moments Σ_j h_j r̂_ij^{⊗n}, n ≤ 4, without spherical
    harmonics.

  Self-loops and padding edges (|Δr| = 0) are skipped.

  Args:
    graph: GraphsTuple with nodes [N, 1] (type, A = 0, B = 1) and edges
      [E, 3] (the raw relative vectors), senders, receivers.
    num_rbf, rbf_cutoff: the radial basis.

  Returns:
    [N, n_node_descriptors(num_rbf)] float32, no gradient.
  """
  vectors = tf.cast(graph.edges, tf.float32)
  n_nodes = tf.shape(graph.nodes)[0]
  distance = tf.sqrt(tf.reduce_sum(vectors**2, axis=-1) + 1e-12)   # [E]
  # Self-loops and padding edges are exactly zero vectors.
  real = tf.cast(tf.reduce_sum(vectors**2, axis=-1) > 1e-10, tf.float32)
  sender_is_b = tf.gather(tf.cast(graph.nodes[:, 0], tf.float32),
                          graph.senders)
  basis = radial_basis(distance[:, None], num_rbf,
                       rbf_cutoff) * real[:, None]
  radial = tf.math.unsorted_segment_sum(
      tf.concat([basis * (1.0 - sender_is_b)[:, None],
                 basis * sender_is_b[:, None]], axis=-1),
      graph.receivers, n_nodes)                                    # [N, 2K]
  shells = tf.constant(ANGULAR_CENTRES, tf.float32)
  weight = tf.exp(-0.5 * ((distance[:, None] - shells[None]) /
                          ANGULAR_WIDTH)**2) * real[:, None]      # [E, C]
  norm = tf.math.unsorted_segment_sum(weight, graph.receivers, n_nodes)
  unit = vectors / distance[:, None]
  # S_n = |Σ_j h_j r̂_j^{⊗n}|² = Σ_{j,k} h_j h_k (r̂_j · r̂_k)^n, n = 1 ... 4.
  # The tensor power is symmetric: its distinct components are the
  # monomials x^a y^b z^c (a + b + c = n), each repeated n!/(a! b! c!) times,
  # so S_n = Σ_abc n!/(a! b! c!) (Σ_j h_j x^a y^b z^c)² (15 components at
  # n = 4 instead of 81, one order at a time: memory per edge stays small).
  sums = [norm**2]                                                 # S_0
  for order in range(1, 5):
    exponents = [(a, b, order - a - b) for a in range(order + 1)
                 for b in range(order + 1 - a)]
    monomials = tf.stack([unit[:, 0]**a * unit[:, 1]**b * unit[:, 2]**c
                          for a, b, c in exponents], axis=-1)     # [E, M]
    multiplicity = tf.constant(
        [math.factorial(order) / (math.factorial(a) * math.factorial(b) *
                                  math.factorial(c))
         for a, b, c in exponents], tf.float32)
    moment = tf.math.unsorted_segment_sum(
        weight[:, :, None] * monomials[:, None, :], graph.receivers,
        n_nodes)                                               # [N, C, M]
    sums.append(tf.reduce_sum(multiplicity * moment**2, axis=-1))
  # Σ_{j,k} h_j h_k P_l(cos θ_jk) from the S_n (Legendre polynomials).
  legendre = {1: sums[1],
              2: (3.0 * sums[2] - sums[0]) / 2.0,
              3: (5.0 * sums[3] - 3.0 * sums[1]) / 2.0,
              4: (35.0 * sums[4] - 30.0 * sums[2] + 3.0 * sums[0]) / 8.0}
  # No gradient is taken (stop_gradient below), so sqrt(0) is harmless.
  angular = [tf.math.divide_no_nan(tf.sqrt(tf.nn.relu(legendre[l])), norm)
             for l in ANGULAR_ORDERS]
  # Fixed scales bring both kinds to order one in a dense liquid (ρ ≈ 1.2:
  # shell counts up to ~10, q_l ~ 0.1), so Adam moves the encoder's first
  # layer at similar rates for each.
  return tf.stop_gradient(tf.concat(
      [RADIAL_SCALE * radial] + [ANGULAR_SCALE * q for q in angular],
      axis=-1))


class _EdgeModel(snt.Module):
  """The core's edge MLP, applied without materialising its input.

  The same layers as `snt.nets.MLP((latent,) * layers, activate_final=True,
  name="mlp")` (variables `mlp/linear_k/{w,b}`, the checkpoint paths
  `_layers/k/...` of an `snt.nets.MLP`), but the first layer's input
  concat([e_latent, e_encoded, v_r, v_s]) [E, 6 latent] is never built.
  Its matmul splits by rows of w:

    concat(...) @ w = e_latent @ w_el + e_encoded @ w_ee
                      + (v @ w_r)[receivers] + (v @ w_s)[senders]

  The node terms are projected on the N nodes and then gathered (N << E:
  about 40 edges per particle in the KA liquid), and e_encoded @ w_ee is the
  same at every recurrence, so it is computed once per forward pass. Per
  edge and recurrence this costs 2 latent² multiply-adds instead of
  7 latent², and never holds an [E, 6 latent] tensor.
  """

  def __init__(self, latent_size: int, mlp_layers: int, name: str = "mlp",
               initializers: str = "release"):
    super().__init__(name=name)
    self._latent_size = latent_size
    self._layers = [snt.Linear(latent_size, name=f"linear_{k}",
                               **linear_initializers(initializers))
                    for k in range(mlp_layers)]

  @snt.once
  def _create_first_layer(self, input_size: int):
    # snt.Linear creates w [input_size, latent] and b on its first call; a
    # zero-row input does that without computing anything.
    self._layers[0](tf.zeros([0, input_size], tf.float32))

  def encoded_term(self, encoded_edges: tf.Tensor,
                   node_size: int) -> tf.Tensor:
    """e_encoded @ w_ee + b: [E, latent], the recurrence-independent part.

    Args:
      encoded_edges: [E, latent] the encoder's edges.
      node_size: width of the core's node input (2 latent).
    """
    latent = self._latent_size
    self._create_first_layer(2 * latent + 2 * node_size)
    first = self._layers[0]
    return tf.matmul(encoded_edges, first.w[latent:2 * latent]) + first.b

  def __call__(self, latent_edges: tf.Tensor, encoded_term: tf.Tensor,
               nodes: tf.Tensor, receivers: tf.Tensor,
               senders: tf.Tensor) -> tf.Tensor:
    """New edges [E, latent] from the core's inputs.

    Args:
      latent_edges: [E, latent] the current latent edges.
      encoded_term: [E, latent] from `encoded_term`.
      nodes: [N, node_size] the core's node input (concat(latent, encoded)).
      receivers, senders: [E] int32 node indices.
    """
    latent = self._latent_size
    w = self._layers[0].w
    node_size = nodes.shape[-1]
    start = 2 * latent
    projected = tf.matmul(nodes, tf.concat(
        [w[start:start + node_size], w[start + node_size:]], axis=1))
    to_receiver, to_sender = tf.split(projected, 2, axis=1)
    hidden = tf.nn.relu(tf.matmul(latent_edges, w[:latent]) + encoded_term
                        + tf.gather(to_receiver, receivers)
                        + tf.gather(to_sender, senders))
    for layer in self._layers[1:]:
      hidden = tf.nn.relu(layer(hidden))
    return hidden


class _FactoredEdgeBlock(snt.Module):
  """graph_nets' EdgeBlock (edges, receiver and sender nodes; no globals)
  with the projection-before-gather edge model `_EdgeModel`.

  Module and variable names as `blocks.EdgeBlock(name="edge_block")` with
  an MLP named "mlp", so checkpoints and the TF1 import are unchanged.
  """

  def __init__(self, latent_size: int, mlp_layers: int,
               name: str = "edge_block", initializers: str = "release"):
    super().__init__(name=name)
    with self.name_scope:
      self._edge_model = _EdgeModel(latent_size, mlp_layers, name="mlp",
                                    initializers=initializers)

  def encoded_term(self, encoded_edges: tf.Tensor,
                   node_size: int) -> tf.Tensor:
    return self._edge_model.encoded_term(encoded_edges, node_size)

  def __call__(self, latent_edges, encoded_term, nodes, receivers, senders):
    return self._edge_model(latent_edges, encoded_term, nodes, receivers,
                            senders)


class _CoreGraphNetwork(snt.Module):
  """GraphNetwork with edge and node blocks only (no globals anywhere).

  graph_nets' `modules.GraphNetwork` always carries a global block; the
  paper's model uses no global features, so the core is the edge block
  followed by the node block, under the release's name `graph_network`.
  Its input is the latent graph and the encoded graph; the blocks see
  their concatenation (latent first), as in the release.

  project_before_gather=True uses `_FactoredEdgeBlock` (the same function
  and variables, less work per edge); False uses graph_nets' `EdgeBlock`
  on the materialised concatenation, as the 2020 release did (kept as the
  reference the tests and benchmarks compare against).
  """

  def __init__(self, make_mlp, latent_size: int, mlp_layers: int,
               project_before_gather: bool = True,
               name: str = "graph_network", initializers: str = "release"):
    super().__init__(name=name)
    self._project_before_gather = project_before_gather
    if project_before_gather:
      self._edge_block = _FactoredEdgeBlock(latent_size, mlp_layers,
                                            name="edge_block",
                                            initializers=initializers)
    else:
      # Edge model input: [edge, receiver node, sender node] (graph_nets
      # order).
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

  def encoded_term(self, encoded: gn_graphs.GraphsTuple
                   ) -> Optional[tf.Tensor]:
    """The recurrence-independent part of the edge model ([E, latent]), or
    None for the graph_nets edge block."""
    if not self._project_before_gather:
      return None
    return self._edge_block.encoded_term(
        encoded.edges, 2 * encoded.nodes.shape[-1])

  def __call__(self, latent: gn_graphs.GraphsTuple,
               encoded: gn_graphs.GraphsTuple,
               encoded_term: Optional[tf.Tensor]) -> gn_graphs.GraphsTuple:
    nodes = tf.concat([latent.nodes, encoded.nodes], axis=-1)
    if self._project_before_gather:
      edges = self._edge_block(latent.edges, encoded_term, nodes,
                               latent.receivers, latent.senders)
      graph = latent.replace(nodes=nodes, edges=edges)
    else:
      graph = self._edge_block(latent.replace(
          nodes=nodes,
          edges=tf.concat([latent.edges, encoded.edges], axis=-1)))
    return self._node_block(graph)


class EncodeProcessDecode(snt.Module):
  """Encoder, shared-weight core applied `num_recurrences` times, decoder.

  Bapst et al. 2020, Methods ("Graph neural networks"), and the authors'
  release (tests/fixtures/deepmind/README.md):

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

  The core's edge MLP is evaluated without building its [E, 6 latent]
  input: node features are projected by the first layer's weights on the
  nodes, then gathered to the edges (`_EdgeModel`). It is the release's
  function with the release's variables, checked against graph_nets'
  EdgeBlock in tests/test_model.py.

  With the paper's sizes (latent 64, 2 layers, one output) it has 62 401
  parameters.
  """

  def __init__(self, latent_size: int = 64, mlp_layers: int = 2,
               num_recurrences: int = 7, n_outputs: int = 1,
               use_edge_features: bool = True,
               project_before_gather: bool = True,
               edge_encoding: str = "vector", num_rbf: int = 16,
               rbf_cutoff: float = 2.0, initializers: str = "release",
               node_encoding: str = "type",
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
      project_before_gather: compute the core edge model's first layer by
        projecting node features before gathering them to edges (the same
        function and variables; measured in
        benchmarks/results/training_throughput.md). False materialises the
        [E, 6 latent] concatenation as the 2020 release did.
      edge_encoding, num_rbf, rbf_cutoff: the encoder's edge input
        (`edge_inputs`); "vector" is the paper's (and the only one the TF1
        checkpoint import accepts: its edge encoder has 3 inputs).
      initializers: "release" (the authors' non-zero biases) or "sonnet"
        (`linear_initializers`).
      node_encoding: the encoder's node input, one of NODE_ENCODINGS:
        "type" (the paper: the species as a float) or "type_descriptors"
        (the species and `node_descriptors`, computed from the edges with
        num_rbf and rbf_cutoff; needs use_edge_features).
      name: module name.
    """
    super().__init__(name=name)
    if node_encoding not in NODE_ENCODINGS:
      raise ValueError(f"node encoding must be one of {NODE_ENCODINGS}, got "
                       f"{node_encoding!r}")
    if node_encoding != "type" and not use_edge_features:
      raise ValueError(f"node encoding {node_encoding!r} reads the edge "
                       f"geometry; it cannot be combined with "
                       f"use_edge_features=False (the connectivity-only "
                       f"ablation)")
    self.node_encoding = str(node_encoding)
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
    self.project_before_gather = bool(project_before_gather)
    # Checked here, not at the first call, so a bad config fails at once.
    edge_inputs(tf.zeros([1, 3]), edge_encoding, num_rbf, rbf_cutoff)
    self.edge_encoding = str(edge_encoding)
    self.num_rbf = int(num_rbf)
    self.rbf_cutoff = float(rbf_cutoff)
    init = linear_initializers(initializers)  # checks the name
    self.initializers = str(initializers)
    hidden = [self.latent_size] * self.mlp_layers

    def make_mlp():
      return snt.nets.MLP(hidden, activate_final=True, name="mlp", **init)

    def make_decoder_mlp():
      return snt.nets.MLP(hidden + [self.n_outputs], activate_final=False,
                          name="mlp", **init)

    # Names as in the TF1 release (`Graph/graph_independent/...`, ...).
    self._encoder = modules.GraphIndependent(
        edge_model_fn=make_mlp, node_model_fn=make_mlp,
        name="graph_independent")
    self._core = _CoreGraphNetwork(
        make_mlp, self.latent_size, self.mlp_layers,
        project_before_gather=self.project_before_gather,
        name="graph_network", initializers=self.initializers)
    self._decoder = modules.GraphIndependent(
        node_model_fn=make_decoder_mlp, name="graph_independent_1")

  def __call__(self, graph: gn_graphs.GraphsTuple,
               descriptors: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Predicts per-node outputs.

    Args:
      graph: GraphsTuple with nodes [N, 1] float32 (type, A = 0, B = 1),
        edges [E, 3] float32 (minimum-image positions[receiver] -
        positions[sender], σ_AA units), senders, receivers [E] int32,
        n_node, n_edge. Globals are ignored.
      descriptors: optional [N, n_node_descriptors] `node_descriptors` of
        this graph, precomputed (the input pipeline does, once per
        configuration: they are invariant under the augmentation); None
        computes them when node_encoding needs them.

    Returns:
      [N, n_outputs] float32 node outputs (e.g. propensity, σ_AA units).
    """
    return self.decode(self.latent_graph(graph, descriptors))

  def latent_graph(self, graph: gn_graphs.GraphsTuple,
                   descriptors: Optional[tf.Tensor] = None
                   ) -> gn_graphs.GraphsTuple:
    """The core's last latent graph, the decoder's input.

    Args:
      graph, descriptors: as for `__call__`.

    Returns:
      GraphsTuple with nodes [N, latent_size] (the learned node embeddings,
      Bapst et al. 2020 Fig. 5) and edges [E, latent_size].
    """
    edges = graph.edges
    if not self.use_edge_features:
      edges = tf.ones_like(edges[:, :1])
    else:
      edges = edge_inputs(edges, self.edge_encoding, self.num_rbf,
                          self.rbf_cutoff)
    nodes = tf.cast(graph.nodes, tf.float32)
    if self.node_encoding == "type_descriptors":
      if descriptors is None:
        descriptors = node_descriptors(graph, self.num_rbf, self.rbf_cutoff)
      nodes = tf.concat([nodes, tf.cast(descriptors, tf.float32)], axis=-1)
    graph = graph.replace(nodes=nodes, edges=tf.cast(edges, tf.float32),
                          globals=None)
    encoded = self._encoder(graph)
    encoded_term = self._core.encoded_term(encoded)
    latent = encoded
    for _ in range(self.num_recurrences):
      latent = self._core(latent, encoded, encoded_term)
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
               use_edge_features=model_config.use_edge_features,
               **optional_model_arguments(model_config))


def optional_model_arguments(model_config: ml_collections.ConfigDict
                            ) -> Dict[str, object]:
  """edge_encoding, num_rbf, rbf_cutoff, initializers, node_encoding from a
  config's model section (defaults for configs written before these
  options: the paper's "vector" edges and "type" nodes, the release's
  initialisers)."""
  return dict(edge_encoding=model_config.get("edge_encoding", "vector"),
              num_rbf=int(model_config.get("num_rbf", 16)),
              rbf_cutoff=float(model_config.get("rbf_cutoff", 2.0)),
              initializers=model_config.get("initializers", "release"),
              node_encoding=model_config.get("node_encoding", "type"))


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
               project_before_gather: bool = True,
               edge_encoding: str = "vector", num_rbf: int = 16,
               rbf_cutoff: float = 2.0, initializers: str = "release",
               node_encoding: str = "type",
               name: str = "glassy_graph_network", **kwargs):
    super().__init__(name=name, **kwargs)
    self._arguments = dict(latent_size=latent_size, mlp_layers=mlp_layers,
                           num_recurrences=num_recurrences,
                           n_outputs=n_outputs,
                           use_edge_features=use_edge_features,
                           project_before_gather=project_before_gather,
                           edge_encoding=edge_encoding, num_rbf=num_rbf,
                           rbf_cutoff=rbf_cutoff, initializers=initializers,
                           node_encoding=node_encoding)
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
               use_edge_features=model_config.use_edge_features,
               **optional_model_arguments(model_config), **kwargs)

  def get_config(self):
    return dict(self._arguments, name=self.name)

  def call(self, batch: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
    del training  # No dropout or batch norm.
    node_mask = tf.cast(tf.convert_to_tensor(batch["node_mask"]), tf.float32)
    graph = graphs_lib.padded_to_graphs_tuple(batch)
    descriptors = batch.get("node_descriptors")
    if descriptors is not None:                       # [B, max_nodes, D]
      descriptors = tf.reshape(descriptors,
                               [-1, tf.shape(descriptors)[-1]])
    outputs = self.network(graph, descriptors)        # [B * max_nodes, out]
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
