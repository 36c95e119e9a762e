"""Periodic neighbour graphs of particle configurations (pure functions).

A configuration becomes a directed graph, as in Bapst et al. 2020 (Methods,
"Graph neural networks") and the authors' release:
- one node per particle, its input feature the particle type (A = 0, B = 1);
- an edge sender -> receiver for every ordered pair of particles whose
  minimum-image distance is strictly below the cut-off (2.0 σ_AA), plus one
  self-loop per particle (without the self-loops the published weights give
  r ≈ 0, see ../shared/fixtures/deepmind/README.md);
- the edge input feature is the relative vector
  `minimum_image(positions[receiver] - positions[sender])`.

Vocabulary (DESIGN.md units: Lennard-Jones units of the A-A interaction):
  positions: [n_particles, 3] float, σ_AA units, any coordinates (they are
    wrapped into [0, box) here, with a modulo, so unwrapped trajectories work).
  box: [3] float, orthorhombic box edges, σ_AA units, each >= 2 * cutoff.
  cutoff: float, σ_AA units; an edge for |r_ij| < cutoff (strict).
  senders, receivers: [n_edges] int32 particle indices.
  edge_vectors: [n_edges, 3] float32, σ_AA units.

Two builders give the same edges in the same order (sorted by sender, then
receiver), both O(N) with a cell list:
- `build_graph`: NumPy, on the host (data preparation, prediction).
- `build_graph_tf`: TensorFlow ops only, with a dynamic number of particles,
  usable inside `tf.data` and `tf.function` (the SavedModel's `predict`).

The cell list uses cells of edge >= cutoff, so a neighbour lies in the same or
an adjacent cell. With fewer than three cells along an axis, the offsets -1,
0, +1 would name the same cell twice; only distinct offsets (modulo the cell
count) are visited, so each ordered pair is examined exactly once.

Static-shape padding (`pad_graph`, `pad_graph_tf`) and batching into one
`graph_nets.graphs.GraphsTuple` (`padded_to_graphs_tuple`) follow the
padded-graph contract of docs/CONTRACTS.md.
"""

import math
from typing import Dict, Iterable, NamedTuple, Union

from graph_nets import graphs as gn_graphs
import numpy as np
import tensorflow as tf

from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.io.record import ParticleType

# Cells are made a hair larger than the cut-off so that rounding in
# floor(x / cell_size) can never put two neighbours two cells apart.
_CELL_MARGIN = 1e-6
# At most this many cells per particle (plus a constant): a dilute system in a
# huge box would otherwise allocate a mostly empty cell grid.
_CELLS_PER_PARTICLE = 4
_EXTRA_CELLS = 64

PADDED_KEYS = ("node_types", "node_mask", "senders", "receivers",
               "edge_vectors", "edge_mask")


class GraphError(ValueError):
  """Positions, box or cut-off cannot make a valid periodic graph."""


class NeighbourGraph(NamedTuple):
  """Directed periodic neighbour graph of one configuration.

  Attributes:
    senders: [n_edges] int32, index of the sending particle.
    receivers: [n_edges] int32, index of the receiving particle.
    edge_vectors: [n_edges, 3] float32, σ_AA units, minimum image of
      positions[receivers] - positions[senders] (0 for self-loops).
  """
  senders: np.ndarray
  receivers: np.ndarray
  edge_vectors: np.ndarray

  @property
  def n_edges(self) -> int:
    return int(np.shape(self.senders)[0])


class PaddingSizes(NamedTuple):
  """Static sizes of a padded graph (docs/CONTRACTS.md).

  Attributes:
    max_nodes: int, nodes per padded example, >= n_particles + 1 (the last
      node is always padding; padding edges attach to it).
    max_edges: int, edges per padded example, >= n_edges.
  """
  max_nodes: int
  max_edges: int


# ---------------------------------------------------------------- NumPy ---


def _validate(positions, box, cutoff) -> tuple:
  """Checks and converts the inputs of the builders; float64 copies."""
  try:
    positions = np.asarray(positions, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise GraphError(f"positions: cannot convert to a float array ({e}).")
  try:
    box = np.asarray(box, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise GraphError(f"box: cannot convert to a float array ({e}).")
  if positions.ndim != 2 or positions.shape[1] != 3:
    raise GraphError(
        f"positions: expected shape [n_particles, 3], got {positions.shape}.")
  if positions.shape[0] == 0:
    raise GraphError("positions: empty configuration (0 particles); a graph "
                     "needs at least one particle.")
  if box.shape != (3,):
    raise GraphError(f"box: expected shape [3] (orthorhombic box edges), got "
                     f"{box.shape}.")
  bad = ~np.isfinite(positions)
  if bad.any():
    first = np.argwhere(bad)[0]
    raise GraphError(f"positions: {int(bad.sum())} non-finite values (NaN or "
                     f"inf), the first for particle {first[0]}, axis "
                     f"{first[1]}.")
  if not np.all(np.isfinite(box)) or np.any(box <= 0):
    raise GraphError(f"box: edges must be finite and > 0, got {box.tolist()}.")
  cutoff = float(cutoff)
  if not math.isfinite(cutoff) or cutoff <= 0:
    raise GraphError(f"cutoff: must be finite and > 0, got {cutoff}.")
  if np.any(box < 2 * cutoff):
    raise GraphError(
        f"box {box.tolist()} is smaller than twice the cut-off {cutoff} along "
        f"an axis: the minimum-image convention breaks (a particle would see "
        f"several images of one neighbour). Use a larger box or a smaller "
        f"cut-off.")
  return positions, box, cutoff


def _cells_per_axis(box: np.ndarray, cutoff: float, n: int) -> np.ndarray:
  """[3] int64 number of cells along each axis, each cell edge >= cutoff."""
  n_cells = np.maximum(np.floor(box / (cutoff * (1 + _CELL_MARGIN))), 1)
  limit = _CELLS_PER_PARTICLE * n + _EXTRA_CELLS
  total = np.prod(n_cells)
  if total > limit:
    n_cells = np.maximum(np.floor(n_cells / (total / limit)**(1 / 3)), 1)
  return n_cells.astype(np.int64)


def _unique_offsets(n_cells: np.ndarray) -> np.ndarray:
  """[K, 3] int64 neighbour-cell offsets, distinct modulo n_cells, K <= 27."""
  per_axis = []
  for n in n_cells:
    # -1, 0, +1 are distinct cells only if there are >= 3 cells.
    per_axis.append([o for o in (-1, 0, 1)
                     if o == 0 or (o == 1 and n >= 2) or (o == -1 and n >= 3)])
  grid = np.meshgrid(*per_axis, indexing="ij")
  return np.stack([g.ravel() for g in grid], axis=-1).astype(np.int64)


def build_graph(positions, box, cutoff: float = 2.0,
                self_loops: bool = True) -> NeighbourGraph:
  """Periodic neighbour graph of one configuration (NumPy, O(N) cell list).

  Args:
    positions: [n_particles, 3] float, σ_AA units, any coordinates (wrapped
      into [0, box) here).
    box: [3] float, orthorhombic box edges, σ_AA units, each >= 2 * cutoff.
    cutoff: float, σ_AA units; an edge for every ordered pair i != j with
      minimum-image distance strictly below it.
    self_loops: bool, add one edge i -> i (vector 0) per particle, as in the
      authors' release.

  Returns:
    NeighbourGraph with edges sorted by sender, then receiver.

  Raises:
    GraphError: wrong shapes, non-finite positions, box edges <= 0 or smaller
      than 2 * cutoff, no particles.
  """
  positions, box, cutoff = _validate(positions, box, cutoff)
  n = positions.shape[0]
  wrapped = periodic.wrap(positions, box)
  n_cells = _cells_per_axis(box, cutoff, n)
  cell_size = box / n_cells
  cell3 = np.minimum((wrapped / cell_size).astype(np.int64), n_cells - 1)
  strides = np.array([n_cells[1] * n_cells[2], n_cells[2], 1], np.int64)
  order = np.argsort(cell3 @ strides, kind="stable")  # particles by cell
  # From here on, particles are numbered in cell order ("sorted index"), so
  # that the gathers below read memory almost sequentially.
  cell3 = cell3[order]
  counts = np.bincount(cell3 @ strides, minlength=int(np.prod(n_cells)))
  starts = np.cumsum(counts) - counts

  offsets = _unique_offsets(n_cells)             # [K, 3]
  n_offsets = offsets.shape[0]
  neighbour_cell = (np.mod(cell3[:, None, :] + offsets[None], n_cells)
                    @ strides).ravel()            # [n * K]
  per_candidate = counts[neighbour_cell]          # particles in that cell
  total = int(per_candidate.sum())
  group_start = np.cumsum(per_candidate) - per_candidate
  senders = np.repeat(np.repeat(np.arange(n, dtype=np.int64), n_offsets),
                      per_candidate)
  receivers = (np.arange(total, dtype=np.int64)
               + np.repeat(starts[neighbour_cell] - group_start,
                           per_candidate))

  # Cheap pre-selection in float32 (the float64 modulo over all candidates
  # would dominate the cost): wrapped coordinates differ by less than one
  # box, so rounding gives the nearest image; keep a generous margin, then
  # take the exact float64 minimum image (periodic.py) of the survivors.
  near = np.zeros(total, np.float32)
  for axis in range(3):
    x = wrapped[order, axis].astype(np.float32)
    length = np.float32(box[axis])
    d = x[receivers] - x[senders]
    d -= length * np.rint(d / length)
    near += d * d
  near = near < np.float32((cutoff * (1 + 1e-4))**2)
  if not self_loops:
    near &= senders != receivers
  senders, receivers = order[senders[near]], order[receivers[near]]
  vectors = periodic.minimum_image(wrapped[receivers] - wrapped[senders], box)
  keep = np.einsum("ij,ij->i", vectors, vectors) < cutoff * cutoff
  senders, receivers, vectors = senders[keep], receivers[keep], vectors[keep]
  canonical = np.argsort(senders * n + receivers, kind="stable")
  return NeighbourGraph(
      senders=senders[canonical].astype(np.int32),
      receivers=receivers[canonical].astype(np.int32),
      edge_vectors=vectors[canonical].astype(np.float32))


def pad_graph(node_types, graph: NeighbourGraph, max_nodes: int,
              max_edges: int) -> Dict[str, np.ndarray]:
  """Pads one graph to static sizes (the padded-graph contract, CONTRACTS.md).

  Args:
    node_types: [n_particles] int, 0 = A, 1 = B.
    graph: its NeighbourGraph.
    max_nodes: int >= n_particles + 1; node max_nodes - 1 is always padding.
    max_edges: int >= graph.n_edges.

  Returns:
    dict of NumPy arrays:
      node_types [max_nodes] int32 (padding 0),
      node_mask [max_nodes] float32 (1 real, 0 padding),
      senders, receivers [max_edges] int32 (padding edges max_nodes - 1 ->
        max_nodes - 1),
      edge_vectors [max_edges, 3] float32, σ_AA units (0 for padding),
      edge_mask [max_edges] float32.

  Raises:
    GraphError: unknown types, inconsistent sizes, or a graph that does not
      fit.
  """
  node_types = np.asarray(node_types)
  if node_types.ndim != 1:
    raise GraphError(f"node_types: expected shape [n_particles], got "
                     f"{node_types.shape}.")
  n = node_types.shape[0]
  if n == 0:
    raise GraphError("node_types: empty configuration (0 particles).")
  known = {int(t) for t in ParticleType}
  unknown = sorted(set(np.unique(node_types).tolist()) - known)
  if unknown:
    raise GraphError(f"node_types: unknown particle types {unknown}; expected "
                     f"{sorted(known)} (0 = A, 1 = B).")
  senders = np.asarray(graph.senders)
  receivers = np.asarray(graph.receivers)
  vectors = np.asarray(graph.edge_vectors)
  e = senders.shape[0]
  if receivers.shape != (e,) or vectors.shape != (e, 3):
    raise GraphError(f"graph: inconsistent shapes senders {senders.shape}, "
                     f"receivers {receivers.shape}, edge_vectors "
                     f"{vectors.shape}.")
  if e and (max(senders.max(), receivers.max()) >= n
            or min(senders.min(), receivers.min()) < 0):
    raise GraphError(f"graph: node indices outside [0, {n}) for {n} "
                     f"particles.")
  if max_nodes < n + 1:
    raise GraphError(f"max_nodes={max_nodes} too small for {n} particles: "
                     f"needs >= {n + 1} (one padding node is always kept).")
  if max_edges < e:
    raise GraphError(f"max_edges={max_edges} too small for {e} edges.")
  pad = max_nodes - 1
  out = {
      "node_types": np.zeros([max_nodes], np.int32),
      "node_mask": np.zeros([max_nodes], np.float32),
      "senders": np.full([max_edges], pad, np.int32),
      "receivers": np.full([max_edges], pad, np.int32),
      "edge_vectors": np.zeros([max_edges, 3], np.float32),
      "edge_mask": np.zeros([max_edges], np.float32),
  }
  out["node_types"][:n] = node_types
  out["node_mask"][:n] = 1
  out["senders"][:e] = senders
  out["receivers"][:e] = receivers
  out["edge_vectors"][:e] = vectors
  out["edge_mask"][:e] = 1
  return out


def _round_up(value: int, multiple: int) -> int:
  return int(-(-value // multiple) * multiple)


def padding_sizes(n_nodes: Iterable[int], n_edges: Iterable[int],
                  node_multiple: int = 8, edge_multiple: int = 256,
                  edge_margin: float = 0.0) -> PaddingSizes:
  """Static sizes that fit every example of a data set.

  The connectivity does not change under the cube symmetries of
  `augmentation.py`, so the sizes measured on the unaugmented data hold for
  training too.

  Args:
    n_nodes: particles of each example.
    n_edges: edges of each example (self-loops included when used), e.g.
      `build_graph(...).n_edges`.
    node_multiple, edge_multiple: round the sizes up to these multiples
      (friendlier shapes for XLA/TPU).
    edge_margin: relative head-room on max_edges for unseen data (e.g. 0.05
      for a test set of the same state point).

  Returns:
    PaddingSizes(max_nodes = round_up(max n_nodes + 1),
                 max_edges = round_up(max n_edges * (1 + edge_margin))).
  """
  n_nodes = list(n_nodes)
  n_edges = list(n_edges)
  if not n_nodes or not n_edges:
    raise GraphError("padding_sizes: no examples given.")
  max_nodes = _round_up(max(n_nodes) + 1, node_multiple)
  max_edges = _round_up(max(1, math.ceil(max(n_edges) * (1 + edge_margin))),
                        edge_multiple)
  return PaddingSizes(max_nodes=max_nodes, max_edges=max_edges)


# ----------------------------------------------------------- TensorFlow ---


def _wrap_tf(positions: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
  """TF twin of periodic.wrap: coordinates into [0, box)."""
  wrapped = tf.math.floormod(positions, box)
  return tf.where(wrapped >= box, wrapped - box, wrapped)


def minimum_image_tf(displacements: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
  """TF twin of periodic.minimum_image: components in [-box/2, box/2)."""
  return tf.math.floormod(displacements + 0.5 * box, box) - 0.5 * box


def build_graph_tf(positions, box, cutoff: float = 2.0,
                   self_loops: bool = True) -> NeighbourGraph:
  """Periodic neighbour graph in TensorFlow ops (O(N) cell list).

  The same edges, order and vectors as `build_graph` (the same cell list,
  float32 pre-selection and float64 minimum image), for a number of
  particles known only at run time: works eagerly, inside `tf.function`
  (e.g. a SavedModel signature) and in `tf.data.Dataset.map`. Output sizes
  are dynamic, so it does not compile under XLA; pad afterwards
  (`pad_graph_tf`). Memory and time are O(N): about 30 candidate pairs per
  edge are examined (N = 4096 at ρ = 1.2: ~1.3 M candidates, 168 k edges).
  Bad inputs raise `tf.errors.InvalidArgumentError` with the same messages
  as `build_graph` (at run time, through tf.debugging asserts).

  Args:
    positions: [n_particles, 3] float tensor, σ_AA units, any coordinates.
    box: [3] float tensor, orthorhombic box edges, each >= 2 * cutoff.
    cutoff: Python float, σ_AA units.
    self_loops: Python bool.

  Returns:
    NeighbourGraph of tensors: senders, receivers [n_edges] int32,
    edge_vectors [n_edges, 3] float32; sorted by sender, then receiver.
  """
  cutoff = float(cutoff)
  if not math.isfinite(cutoff) or cutoff <= 0:
    raise GraphError(f"cutoff: must be finite and > 0, got {cutoff}.")
  positions = tf.cast(tf.convert_to_tensor(positions), tf.float64)
  box = tf.cast(tf.convert_to_tensor(box), tf.float64)
  if positions.shape.rank is not None and (
      positions.shape.rank != 2 or positions.shape[-1] not in (None, 3)):
    raise GraphError(f"positions: expected shape [n_particles, 3], got "
                     f"{positions.shape}.")
  if box.shape.rank is not None and box.shape.as_list() not in ([3], [None]):
    raise GraphError(f"box: expected shape [3] (orthorhombic box edges), got "
                     f"{box.shape}.")
  checks = [
      tf.debugging.assert_equal(
          tf.shape(positions)[-1], 3,
          message="positions: expected shape [n_particles, 3]"),
      tf.debugging.assert_equal(tf.size(box), 3,
                                message="box: expected shape [3]"),
      tf.debugging.assert_positive(
          tf.shape(positions)[0],
          message="positions: empty configuration (0 particles)"),
      tf.debugging.assert_all_finite(
          positions, message="positions: non-finite values (NaN or inf)"),
      tf.debugging.assert_all_finite(box, message="box: non-finite edges"),
      tf.debugging.assert_positive(box, message="box: edges must be > 0"),
      tf.debugging.assert_greater_equal(
          box, tf.constant(2 * cutoff, tf.float64),
          message=(f"box is smaller than twice the cut-off {cutoff} along an "
                   f"axis: the minimum-image convention breaks (a particle "
                   f"would see several images of one neighbour)")),
  ]
  with tf.control_dependencies(checks):
    positions = tf.identity(positions)
    box = tf.reshape(box, [3])

  n = tf.shape(positions, out_type=tf.int64)[0]
  wrapped = _wrap_tf(positions, box)
  n_cells = tf.maximum(tf.floor(box / (cutoff * (1 + _CELL_MARGIN))), 1.0)
  limit = tf.cast(_CELLS_PER_PARTICLE * n + _EXTRA_CELLS, tf.float64)
  total = tf.reduce_prod(n_cells)
  n_cells = tf.where(
      total > limit,
      tf.maximum(tf.floor(n_cells / (total / limit)**(1 / 3)), 1.0), n_cells)
  cell_size = box / n_cells
  n_cells = tf.cast(n_cells, tf.int64)
  cell3 = tf.minimum(tf.cast(tf.floor(wrapped / cell_size), tf.int64),
                     n_cells - 1)
  strides = tf.stack([n_cells[1] * n_cells[2], n_cells[2],
                      tf.constant(1, tf.int64)])
  order = tf.argsort(tf.reduce_sum(cell3 * strides, axis=-1), stable=True)
  order = tf.cast(order, tf.int64)
  # Particles numbered in cell order from here on (see build_graph).
  cell3 = tf.gather(cell3, order)
  counts = tf.math.unsorted_segment_sum(
      tf.ones([n], tf.int64), tf.reduce_sum(cell3 * strides, axis=-1),
      tf.reduce_prod(n_cells))
  starts = tf.cumsum(counts, exclusive=True)

  all_offsets = tf.constant(
      [[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)],
      tf.int64)
  distinct = ((all_offsets == 0)
              | ((all_offsets == 1) & (n_cells >= 2))
              | ((all_offsets == -1) & (n_cells >= 3)))
  offsets = tf.boolean_mask(all_offsets, tf.reduce_all(distinct, axis=-1))
  n_offsets = tf.shape(offsets, out_type=tf.int64)[0]
  neighbour_cell = tf.reshape(
      tf.reduce_sum(tf.math.floormod(cell3[:, None, :] + offsets[None],
                                     n_cells) * strides, axis=-1), [-1])
  per_candidate = tf.gather(counts, neighbour_cell)
  total_candidates = tf.reduce_sum(per_candidate)
  group_start = tf.cumsum(per_candidate, exclusive=True)
  senders = tf.repeat(tf.repeat(tf.range(n, dtype=tf.int64), n_offsets),
                      per_candidate)
  receivers = (tf.range(total_candidates, dtype=tf.int64)
               + tf.repeat(tf.gather(starts, neighbour_cell) - group_start,
                           per_candidate))

  # float32 pre-selection with a margin, then the exact float64 minimum
  # image of the survivors (as in build_graph).
  sorted32 = tf.cast(tf.gather(wrapped, order), tf.float32)
  box32 = tf.cast(box, tf.float32)
  d = tf.gather(sorted32, receivers) - tf.gather(sorted32, senders)
  d -= box32 * tf.round(d / box32)
  near = tf.reduce_sum(d * d, axis=-1) < (cutoff * (1 + 1e-4))**2
  if not self_loops:
    near = near & (senders != receivers)
  senders = tf.gather(order, tf.boolean_mask(senders, near))
  receivers = tf.gather(order, tf.boolean_mask(receivers, near))
  vectors = minimum_image_tf(
      tf.gather(wrapped, receivers) - tf.gather(wrapped, senders), box)
  keep = tf.reduce_sum(vectors * vectors, axis=-1) < cutoff * cutoff
  senders = tf.boolean_mask(senders, keep)
  receivers = tf.boolean_mask(receivers, keep)
  vectors = tf.boolean_mask(vectors, keep)
  canonical = tf.argsort(senders * n + receivers, stable=True)
  return NeighbourGraph(
      senders=tf.cast(tf.gather(senders, canonical), tf.int32),
      receivers=tf.cast(tf.gather(receivers, canonical), tf.int32),
      edge_vectors=tf.cast(tf.gather(vectors, canonical), tf.float32))


def pad_graph_tf(node_types, graph: NeighbourGraph, max_nodes: int,
                 max_edges: int) -> Dict[str, tf.Tensor]:
  """TF twin of `pad_graph` for `tf.data` (dynamic n, static output shapes).

  Args:
    node_types: [n_particles] int tensor, 0 = A, 1 = B.
    graph: NeighbourGraph of tensors (e.g. from `build_graph_tf`).
    max_nodes, max_edges: Python ints, as in `pad_graph`.

  Returns:
    dict of tensors with the static shapes of `pad_graph`'s arrays. A graph
    that does not fit, or unknown types, fail at run time with
    tf.errors.InvalidArgumentError naming the size.
  """
  node_types = tf.cast(tf.convert_to_tensor(node_types), tf.int32)
  senders = tf.cast(graph.senders, tf.int32)
  receivers = tf.cast(graph.receivers, tf.int32)
  vectors = tf.cast(graph.edge_vectors, tf.float32)
  n = tf.shape(node_types)[0]
  e = tf.shape(senders)[0]
  checks = [
      tf.debugging.assert_positive(
          n, message="node_types: empty configuration (0 particles)"),
      tf.debugging.assert_less_equal(
          n + 1, max_nodes,
          message=f"max_nodes={max_nodes} too small: needs n_particles + 1"),
      tf.debugging.assert_less_equal(
          e, max_edges, message=f"max_edges={max_edges} too small"),
      tf.debugging.assert_non_negative(
          node_types, message="node_types: unknown particle type (< 0)"),
      tf.debugging.assert_less_equal(
          node_types, max(int(t) for t in ParticleType),
          message="node_types: unknown particle type (expected 0 = A, 1 = B)"),
  ]
  with tf.control_dependencies(checks):
    pad_n = max_nodes - n
    pad_e = max_edges - e
  pad = max_nodes - 1
  out = {
      "node_types": tf.pad(node_types, [[0, pad_n]]),
      "node_mask": tf.pad(tf.ones([n], tf.float32), [[0, pad_n]]),
      "senders": tf.pad(senders, [[0, pad_e]], constant_values=pad),
      "receivers": tf.pad(receivers, [[0, pad_e]], constant_values=pad),
      "edge_vectors": tf.pad(vectors, [[0, pad_e], [0, 0]]),
      "edge_mask": tf.pad(tf.ones([e], tf.float32), [[0, pad_e]]),
  }
  shapes = {"node_types": [max_nodes], "node_mask": [max_nodes],
            "senders": [max_edges], "receivers": [max_edges],
            "edge_vectors": [max_edges, 3], "edge_mask": [max_edges]}
  return {k: tf.ensure_shape(v, shapes[k]) for k, v in out.items()}


def padded_to_graphs_tuple(
    batch: Dict[str, Union[tf.Tensor, np.ndarray]]) -> gn_graphs.GraphsTuple:
  """Turns a batch of padded graphs into one disjoint graph_nets GraphsTuple.

  Args:
    batch: dict with the padded-graph entries of CONTRACTS.md and a leading
      batch dimension B: node_types [B, max_nodes] int, senders, receivers
      [B, max_edges] int, edge_vectors [B, max_edges, 3] float. Other keys
      are ignored.

  Returns:
    GraphsTuple with B graphs of max_nodes nodes and max_edges edges each:
    nodes [B * max_nodes, 1] float32 (the type, A = 0, B = 1), edges
    [B * max_edges, 3] float32 (σ_AA units), senders/receivers offset by
    b * max_nodes, n_node [B] = max_nodes, n_edge [B] = max_edges, no globals.
    Padding nodes and edges stay in the graph; they touch only the padding
    node max_nodes - 1 of their own example, so real nodes never see them.
  """
  node_types = tf.convert_to_tensor(batch["node_types"])
  senders = tf.cast(tf.convert_to_tensor(batch["senders"]), tf.int32)
  receivers = tf.cast(tf.convert_to_tensor(batch["receivers"]), tf.int32)
  edge_vectors = tf.cast(tf.convert_to_tensor(batch["edge_vectors"]),
                         tf.float32)
  if node_types.shape.rank != 2:
    raise GraphError(f"batch['node_types']: expected shape [B, max_nodes], "
                     f"got {node_types.shape}.")
  if senders.shape.rank != 2 or edge_vectors.shape.rank != 3:
    raise GraphError(f"batch: expected senders [B, max_edges] and "
                     f"edge_vectors [B, max_edges, 3], got {senders.shape} "
                     f"and {edge_vectors.shape}.")
  shape_n = tf.shape(node_types)
  batch_size, max_nodes = shape_n[0], shape_n[1]
  max_edges = tf.shape(senders)[1]
  offsets = tf.range(batch_size, dtype=tf.int32)[:, None] * max_nodes
  return gn_graphs.GraphsTuple(
      nodes=tf.reshape(tf.cast(node_types, tf.float32), [-1, 1]),
      edges=tf.reshape(edge_vectors, [-1, 3]),
      senders=tf.reshape(senders + offsets, [-1]),
      receivers=tf.reshape(receivers + offsets, [-1]),
      n_node=tf.fill([batch_size], max_nodes),
      n_edge=tf.fill([batch_size], max_edges),
      globals=None)
