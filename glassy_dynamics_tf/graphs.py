"""Periodic neighbour graphs of particle configurations (pure functions).

A configuration becomes a directed graph, as in Bapst et al. 2020 (Methods,
"Graph neural networks") and the authors' release:
- one node per particle, its input feature the particle type (A = 0, B = 1);
- an edge sender -> receiver for every ordered pair of particles whose
  minimum-image distance is strictly below the cut-off (2.0 σ_AA), plus one
  self-loop per particle (without the self-loops the published weights give
  r ≈ 0, see tests/fixtures/deepmind/README.md);
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
receiver) and the same vectors, both O(N) with a cell list: with cells of
edge >= cutoff a neighbour lies in the same or an adjacent cell.
- `build_graph`: NumPy, on the host (data preparation, prediction). It visits
  half of the adjacent cells, so that each unordered pair is examined once,
  computes distances in float32 with a proven error bound, and decides in
  float64 (per direction) only the pairs within that bound of the cut-off.
  Its peak memory is ~36 bytes per edge (the output 20, sort keys 8), 1.3
  GiB at N = 10⁶ and ρ = 1.2, and it takes 0.4-0.7 times as long as a bare
  scipy cKDTree pair search of the same positions
  (benchmarks/results/graph_construction.md).
- `build_graph_tf`: TensorFlow ops only, with a dynamic number of particles,
  usable inside `tf.data` and `tf.function` (the SavedModel's `predict`). It
  visits all adjacent cells; with fewer than three cells along an axis the
  offsets -1, 0, +1 would name the same cell twice, so only distinct offsets
  (modulo the cell count) are visited and each ordered pair is examined
  exactly once. Senders go in blocks through a tf.while_loop, so that its
  memory is about twice the output (1.8 GiB at N = 10⁶).

Static-shape padding (`pad_graph`, `pad_graph_tf`) and batching into one
`graph_nets.graphs.GraphsTuple` (`padded_to_graphs_tuple`) follow the
padded-graph contract of docs/CONTRACTS.md.
"""

import math
from typing import Dict, Iterable, List, NamedTuple, Union

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
# Candidate pairs examined at once by build_graph: bounds its temporary
# memory (a few tens of bytes per candidate) and keeps the arrays in cache.
_CANDIDATES_PER_BLOCK = 2**18
# Edges whose vectors build_graph computes at once, for the same reasons.
_EDGES_PER_CHUNK = 2**16
# Candidate pairs per block of build_graph_tf (~100 bytes each).
_TF_CANDIDATES_PER_BLOCK = 2**20
# Unit roundoffs: the largest relative rounding error of one operation.
_FLOAT32_ROUNDING = 2.0**-24
_FLOAT64_ROUNDING = 2.0**-53
_LOW_32_BITS = (1 << 32) - 1

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
  """[3] int64 cells along each axis for `build_graph`, each edge >= cutoff.

  An axis that fits fewer than three such cells gets a single cell: with two,
  the offsets -1 and +1 would name the same cell and the half shell would
  visit some pairs twice. Along a single-cell axis the nearest image is found
  by rounding instead (box edges below three cut-offs, or a dilute system
  whose cell count is capped).
  """
  n_cells = np.floor(box / (cutoff * (1 + _CELL_MARGIN)))
  n_cells[n_cells < 3] = 1
  limit = _CELLS_PER_PARTICLE * n + _EXTRA_CELLS
  total = np.prod(n_cells)
  if total > limit:
    n_cells = np.floor(n_cells / (total / limit)**(1 / 3))
    n_cells[n_cells < 3] = 1
  return n_cells.astype(np.int64)


def _half_shell(n_cells: np.ndarray) -> np.ndarray:
  """[K, 3] int64 offsets to the neighbour cells visited, K <= 13.

  Of each pair of opposite offsets (o, -o) only the lexicographically
  positive one: two particles in cells A and A + o are then examined once,
  from A. Pairs inside one cell are examined apart (i < j). With >= 3 cells
  along every axis that has offsets, o and -o name different cells, so this
  covers every pair exactly once.
  """
  per_axis = [(-1, 0, 1) if m >= 3 else (0,) for m in n_cells]
  grid = np.stack(np.meshgrid(*per_axis, indexing="ij"), -1).reshape(-1, 3)
  first = np.argmax(grid != 0, axis=1)
  positive = grid[np.arange(grid.shape[0]), first] > 0
  return grid[positive].astype(np.int64)


class _PairBlocks(NamedTuple):
  """Unordered pairs of particles i != j found by `_find_pairs`, in blocks.

  Attributes:
    sure_i, sure_j: lists of [m] int32 particle indices, pairs whose distance
      is below the cut-off by more than the float32 error bound: both
      directed edges exist.
    near_i, near_j: lists of [m] int32, pairs within the error bound of the
      cut-off: each direction is decided by the exact float64 test.
  """
  sure_i: List[np.ndarray]
  sure_j: List[np.ndarray]
  near_i: List[np.ndarray]
  near_j: List[np.ndarray]


def _find_pairs(wrapped: np.ndarray, box: np.ndarray,
                cutoff: float) -> _PairBlocks:
  """Every unordered pair closer than the cut-off (O(N) cell list).

  Half-shell cell list (cells of edge >= cutoff; `_half_shell`). Cells are
  processed in blocks of equal occupancy q, so that the displacements
  between a cell's q particles and the particles of its neighbour cells are
  one dense [q, receivers] array per axis: each receiver's coordinates are
  gathered once per cell, not once per candidate pair. Distances are
  computed in float32 from coordinates relative to the particle's own cell
  corner, which keeps their rounding error independent of the box size; an
  error bound (`slack`) splits the pairs found into sure ones and the few
  near the cut-off. Temporary memory is bounded by _CANDIDATES_PER_BLOCK.

  Args:
    wrapped: [n, 3] float64 positions in [0, box), σ_AA units.
    box: [3] float64 box edges, each >= 2 * cutoff.
    cutoff: float, σ_AA units.

  Returns:
    _PairBlocks in original particle indices.
  """
  n = wrapped.shape[0]
  n_cells = _cells_per_axis(box, cutoff, n)
  single = n_cells == 1
  cell_size = box / n_cells
  cell3 = np.minimum((wrapped / cell_size).astype(np.int64), n_cells - 1)
  strides = np.array([n_cells[1] * n_cells[2], n_cells[2], 1], np.int64)
  cell = cell3 @ strides
  # Particles numbered in cell order ("sorted index"): a cell's particles are
  # consecutive, and the gathers below read memory almost sequentially.
  order = np.argsort(cell, kind="stable").astype(np.int32)
  counts = np.bincount(cell, minlength=int(np.prod(n_cells)))
  starts = np.cumsum(counts) - counts
  # Coordinates relative to the own cell's corner: numbers below one cell
  # edge, so float32 keeps them to ~1e-7 σ whatever the box (absolute
  # float32 coordinates would lose L * 6e-8). Along a single-cell axis these
  # are the wrapped coordinates.
  relative = np.take(wrapped - cell3 * cell_size, order, axis=0).astype(
      np.float32)
  relative = [np.ascontiguousarray(relative[:, a]) for a in range(3)]
  del cell3, cell

  offsets = _half_shell(n_cells)                         # [K, 3]
  n_offsets = offsets.shape[0]
  # A neighbour's coordinate seen from the sender's cell: its relative
  # coordinate plus the offset times the cell edge (periodic images
  # included: the offset, not the wrapped cell index, says where it is).
  shift = (offsets * cell_size).astype(np.float32)       # [K, 3], σ
  box32 = box.astype(np.float32)
  # neighbour_index[a][c, o + 1]: axis a's share of the index of the cell o
  # cells from cell c (periodic).
  neighbour_index = [
      ((np.arange(m)[:, None] + np.arange(-1, 2)[None]) % m) * stride
      for m, stride in zip(n_cells, strides)]

  # Error bound of the float32 distances, σ. Each float32 operation rounds
  # by at most u = 2^-24 of its result. Along an axis every operand and
  # result is below `magnitude` (two cell edges: coordinates within a cell
  # plus one cell of offset; along a single-cell axis two box edges), and
  # five roundings (two coordinates, the offset, two differences) err by
  # < 4 u * magnitude; the squares, their sum and the thresholds add < 3 u
  # of the distance. On the rounding to the nearest image along a single-
  # cell axis the two candidate images differ by < 2 u L in length. 64 u per
  # axis leaves a factor of more than eight; the float64 cell corners and
  # the float64 vectors of the contract differ from exact arithmetic by a
  # few float64 ulps of the box. So a pair below cutoff - slack is an edge
  # both ways, a pair at or above cutoff + slack in neither.
  magnitude = np.where(single, 2 * box, 2 * cell_size)
  slack = (64 * _FLOAT32_ROUNDING * float(magnitude.sum())
           + 64 * _FLOAT64_ROUNDING * float(box.sum()))
  sure2 = np.float32((cutoff - slack)**2 if cutoff > slack else -1.0)
  near2 = np.float32((cutoff + slack)**2)

  pairs = _PairBlocks([], [], [], [])

  def keep(senders, receivers, distance2):
    """Stores pairs (sorted indices) with distance2 < near2 by class."""
    sure = distance2 < sure2
    if not sure.all():
      near = ~sure
      pairs.near_i.append(order[senders[near]])
      pairs.near_j.append(order[receivers[near]])
      senders, receivers = senders[sure], receivers[sure]
    pairs.sure_i.append(order[senders])
    pairs.sure_j.append(order[receivers])

  def distance2(displacements):
    """[...] float32 squared norms of per-axis [...] float32 displacements
    (overwritten); nearest image by rounding along single-cell axes."""
    squares = None
    for axis, d in enumerate(displacements):
      if single[axis]:
        d -= box32[axis] * np.rint(d / box32[axis])
      d *= d
      squares = d if squares is None else np.add(squares, d, out=squares)
    return squares

  occupied = np.flatnonzero(counts)
  occupancy = counts[occupied]
  by_occupancy = np.argsort(occupancy, kind="stable")
  occupied, occupancy = occupied[by_occupancy], occupancy[by_occupancy]
  group_ends = np.append(np.flatnonzero(np.diff(occupancy)) + 1,
                         occupied.size)
  receivers_per_cell = max(1.0, n_offsets * n / counts.size)  # mean
  group_start = 0
  for group_end in group_ends:
    q = int(occupancy[group_start])
    first_in_cell, second_in_cell = np.triu_indices(q, 1)
    candidates_per_cell = q * max(receivers_per_cell, (q - 1) / 2)
    cells_per_block = max(1, int(_CANDIDATES_PER_BLOCK //
                                 candidates_per_cell))
    for block_start in range(group_start, group_end, cells_per_block):
      cells = occupied[block_start:min(group_end, block_start +
                                       cells_per_block)]
      first = starts[cells]                               # [C]
      # Members of each cell, [q, C] per axis: the long axis last, so that
      # every NumPy inner loop below runs over many cells or receivers.
      members = [np.take(r, first + np.arange(q)[:, None]) for r in relative]
      if q > 1:  # pairs inside a cell, i < j in sorted index
        r2 = distance2([m[second_in_cell] - m[first_in_cell]
                        for m in members]).ravel()        # [q(q-1)/2 * C]
        which = np.flatnonzero(r2 < near2)
        pair, cell_in_block = np.divmod(which, cells.size)
        keep(first[cell_in_block] + first_in_cell[pair],
             first[cell_in_block] + second_in_cell[pair], r2[which])
      # Pairs with the half-shell neighbour cells: the receivers of all the
      # block's cells, one after another, as ranges of sorted indices.
      neighbour = sum(
          neighbour_index[a][(cells // strides[a]) % n_cells[a]][
              :, offsets[:, a] + 1] for a in range(3))     # [C, K]
      count = counts[neighbour].ravel()                    # [C * K]
      total = int(count.sum())
      if total == 0:
        continue
      receivers = np.arange(total) + np.repeat(
          starts[neighbour].ravel() - (np.cumsum(count) - count), count)
      offset_of = np.repeat(np.tile(np.arange(n_offsets), cells.size), count)
      per_cell = count.reshape(cells.size, n_offsets).sum(axis=1)
      cell_of = np.repeat(np.arange(cells.size), per_cell)
      displacements = []
      for a in range(3):
        seen = np.take(relative[a], receivers)             # [R]
        if not single[a]:
          seen += np.take(shift[:, a], offset_of)
        # Each member faces its cell's ~10² receivers: a repeat with long
        # runs, several times faster than a gather.
        d = np.repeat(members[a], per_cell, axis=1)        # [q, R]
        displacements.append(np.subtract(seen, d, out=d))
      r2 = distance2(displacements).ravel()                # [q * R]
      which = np.flatnonzero(r2 < near2)
      member, receiver = np.divmod(which, total)
      keep(first[cell_of[receiver]] + member, receivers[receiver],
           r2[which])
    group_start = group_end
  return pairs


def _sorted_edge_keys(pairs: _PairBlocks, wrapped: np.ndarray,
                      box: np.ndarray, cutoff: float,
                      self_loops: bool) -> np.ndarray:
  """[n_edges] int64 keys sender * 2^32 + receiver, sorted (edge order).

  Sure pairs give both directions. A pair near the cut-off gives each
  direction whose exact float64 minimum-image vector (as the contract
  defines it; the two directions can differ in the last bit) is shorter
  than the cut-off. One sort of the 64-bit keys orders the edges by sender,
  then receiver.
  """
  n = wrapped.shape[0]
  near_keys = np.zeros(0, np.int64)
  if pairs.near_i:
    i = np.concatenate(pairs.near_i).astype(np.int64)
    j = np.concatenate(pairs.near_j).astype(np.int64)
    senders, receivers = np.concatenate([i, j]), np.concatenate([j, i])
    vectors = periodic.minimum_image(
        np.take(wrapped, receivers, axis=0) - np.take(wrapped, senders,
                                                      axis=0), box)
    inside = np.einsum("ij,ij->i", vectors, vectors) < cutoff * cutoff
    near_keys = (senders[inside] << 32) | receivers[inside]
  n_sure = sum(i.size for i in pairs.sure_i)
  keys = np.empty(2 * n_sure + near_keys.size + (n if self_loops else 0),
                  np.int64)
  at = 0
  # Emptied as they are copied, so that blocks and keys never coexist whole.
  while pairs.sure_i:
    i, j = pairs.sure_i.pop(), pairs.sure_j.pop()
    for sender, receiver in ((i, j), (j, i)):
      key = keys[at:at + i.size]
      key[...] = sender
      key <<= 32
      key |= receiver
      at += i.size
  keys[at:at + near_keys.size] = near_keys
  at += near_keys.size
  if self_loops:
    keys[at:] = np.arange(n, dtype=np.int64) * ((1 << 32) + 1)
  keys.sort()
  return keys


def _edges_from_keys(keys: np.ndarray, wrapped: np.ndarray,
                     box: np.ndarray) -> NeighbourGraph:
  """NeighbourGraph of sorted keys, vectors float32(float64 minimum image).

  The vector of edge s -> r is periodic.minimum_image(wrapped[r] -
  wrapped[s], box) cast to float32, bit for bit, one axis at a time:
  minimum_image is mod(d + L/2, L) - L/2; when |d| < L/4, d + L/2 lies in
  [L/4, 3L/4] (also after rounding), where the mod returns its argument, so
  the vector is (d + L/2) - L/2 in float64 and the costly mod is needed
  only for the few edges across a boundary.
  """
  n_edges = keys.size
  senders = np.empty(n_edges, np.int32)
  receivers = np.empty(n_edges, np.int32)
  vectors = np.empty((n_edges, 3), np.float32)
  columns = [np.ascontiguousarray(wrapped[:, a]) for a in range(3)]
  half = 0.5 * box
  for start in range(0, n_edges, _EDGES_PER_CHUNK):
    key = keys[start:start + _EDGES_PER_CHUNK]
    stop = start + key.size
    sender, receiver = senders[start:stop], receivers[start:stop]
    np.right_shift(key, 32, out=sender, casting="unsafe")
    np.copyto(receiver, np.bitwise_and(key, _LOW_32_BITS), casting="unsafe")
    for a in range(3):
      d = np.take(columns[a], receiver)
      d -= np.take(columns[a], sender)
      v = d + half[a]
      v -= half[a]
      across = np.flatnonzero(np.abs(d) >= 0.5 * half[a])
      if across.size:
        v[across] = periodic.minimum_image(d[across], box[a])
      vectors[start:stop, a] = v
  return NeighbourGraph(senders=senders, receivers=receivers,
                        edge_vectors=vectors)


def build_graph(positions, box, cutoff: float = 2.0,
                self_loops: bool = True) -> NeighbourGraph:
  """Periodic neighbour graph of one configuration (NumPy, O(N) cell list).

  A half-shell cell list finds each unordered pair once, with float32
  distances and an error bound (`_find_pairs`); pairs within that bound of
  the cut-off are decided exactly, per direction; one sort of 64-bit keys
  orders the edges; the vectors are the float64 minimum image cast to
  float32 (`_edges_from_keys`). Memory: the output (20 bytes per edge), 8
  bytes per edge of sort keys and bounded blocks; the peak is ~36 bytes per
  edge, 1.3 GiB at N = 10⁶ and ρ = 1.2. Time: see
  benchmarks/results/graph_construction.md.

  Args:
    positions: [n_particles, 3] float, σ_AA units, any coordinates (wrapped
      into [0, box) here).
    box: [3] float, orthorhombic box edges, σ_AA units, each >= 2 * cutoff.
    cutoff: float, σ_AA units; an edge for every ordered pair i != j with
      minimum-image distance strictly below it.
    self_loops: bool, add one edge i -> i (vector 0) per particle, as in the
      authors' release.

  Returns:
    NeighbourGraph with edges sorted by sender, then receiver; edge_vectors
    = float32(periodic.minimum_image(positions[receivers] -
    positions[senders], box) in float64), and an edge exactly where the
    squared norm of that float64 vector (as np.einsum sums it) is below
    cutoff².

  Raises:
    GraphError: wrong shapes, non-finite positions, box edges <= 0 or smaller
      than 2 * cutoff, no particles.
  """
  positions, box, cutoff = _validate(positions, box, cutoff)
  wrapped = periodic.wrap(positions, box)
  pairs = _find_pairs(wrapped, box, cutoff)
  keys = _sorted_edge_keys(pairs, wrapped, box, cutoff, self_loops)
  return _edges_from_keys(keys, wrapped, box)


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

  The same edges, order and vectors as `build_graph` (a cell list over all
  adjacent cells, a float32 pre-selection, then the same float64 minimum
  image and cut-off test), for a number of particles known only at run
  time: works eagerly, inside `tf.function` (e.g. a SavedModel signature)
  and in `tf.data.Dataset.map`. Output sizes are dynamic, so it does not
  compile under XLA; pad afterwards (`pad_graph_tf`). Its squared norms are
  summed in another order than build_graph's einsum, so a pair within one
  float64 rounding of the cut-off could come out differently. Pass float64
  arrays: a Python list becomes a float32 tensor, another box (e.g. 6.3).

  Time is O(N): ~260 candidate pairs per particle at ρ = 1.2 (6.7 per
  edge). Memory is twice the output (20 bytes per edge: the blocks, then
  their concatenation) plus one block of _TF_CANDIDATES_PER_BLOCK
  candidates (~0.1 GB): senders are taken in blocks by a tf.while_loop.
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
                     n_cells - 1)                         # [n, 3]
  strides = tf.stack([n_cells[1] * n_cells[2], n_cells[2],
                      tf.constant(1, tf.int64)])
  cell = tf.reduce_sum(cell3 * strides, axis=-1)
  # Sorted index (particles in cell order) -> particle; a cell's particles
  # are consecutive in it.
  order = tf.cast(tf.argsort(cell, stable=True), tf.int64)
  counts = tf.math.unsorted_segment_sum(tf.ones([n], tf.int64), cell,
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

  # float32 pre-selection, then the exact float64 minimum image and test of
  # the survivors (as build_graph). Margin: 1e-4 of the cut-off plus the
  # rounding of float32 coordinates, which grows with the box (each axis'
  # difference, nearest-image shift included, errs by < 4 u L).
  position32 = tf.cast(wrapped, tf.float32)
  sorted32 = tf.gather(position32, order)
  box32 = tf.cast(box, tf.float32)
  near2 = tf.cast((cutoff * (1 + 1e-4) + 8 * _FLOAT32_ROUNDING
                   * tf.reduce_sum(box))**2, tf.float32)

  # Senders in blocks of consecutive particle indices (a tf.while_loop, one
  # block at a time), so that memory is the output plus one block's
  # candidates (~100 bytes each), and the blocks' edges, each sorted by
  # (sender, receiver), concatenate in the final order.
  candidates_per_sender = tf.cast(n_offsets, tf.float64) * tf.maximum(
      tf.cast(n, tf.float64) / tf.cast(tf.reduce_prod(n_cells), tf.float64),
      1.0)
  block = tf.maximum(tf.cast(
      _TF_CANDIDATES_PER_BLOCK / candidates_per_sender, tf.int64), 1)
  n_blocks = (n + block - 1) // block

  def one_block(index, senders_out, receivers_out, vectors_out):
    first = index * block
    senders = tf.range(first, tf.minimum(first + block, n))   # particles
    neighbour3 = tf.math.floormod(
        tf.gather(cell3, senders)[:, None, :] + offsets[None], n_cells)
    neighbour_cell = tf.reshape(tf.reduce_sum(neighbour3 * strides, axis=-1),
                                [-1])                      # [block * K]
    per_candidate = tf.gather(counts, neighbour_cell)
    group_start = tf.cumsum(per_candidate, exclusive=True)
    senders = tf.repeat(tf.repeat(senders, n_offsets), per_candidate)
    receivers = (tf.range(tf.reduce_sum(per_candidate))   # sorted index
                 + tf.repeat(tf.gather(starts, neighbour_cell) - group_start,
                             per_candidate))
    d = tf.gather(sorted32, receivers) - tf.gather(position32, senders)
    d -= box32 * tf.round(d / box32)
    near = tf.reduce_sum(d * d, axis=-1) < near2
    senders = tf.boolean_mask(senders, near)
    receivers = tf.gather(order, tf.boolean_mask(receivers, near))
    vectors = minimum_image_tf(
        tf.gather(wrapped, receivers) - tf.gather(wrapped, senders), box)
    keep = tf.reduce_sum(vectors * vectors, axis=-1) < cutoff * cutoff
    if not self_loops:
      keep = keep & (senders != receivers)
    senders = tf.boolean_mask(senders, keep)
    receivers = tf.boolean_mask(receivers, keep)
    vectors = tf.boolean_mask(vectors, keep)
    local = tf.argsort(senders * n + receivers, stable=True)
    at = tf.cast(index, tf.int32)
    return (index + 1,
            senders_out.write(at, tf.cast(tf.gather(senders, local),
                                          tf.int32)),
            receivers_out.write(at, tf.cast(tf.gather(receivers, local),
                                            tf.int32)),
            vectors_out.write(at, tf.cast(tf.gather(vectors, local),
                                          tf.float32)))

  def blocks(dtype, shape):
    return tf.TensorArray(dtype, size=tf.cast(n_blocks, tf.int32),
                          infer_shape=False, element_shape=shape)

  _, senders, receivers, vectors = tf.while_loop(
      lambda index, *_: index < n_blocks, one_block,
      (tf.constant(0, tf.int64), blocks(tf.int32, [None]),
       blocks(tf.int32, [None]), blocks(tf.float32, [None, 3])),
      parallel_iterations=1)  # one block's candidates in memory at a time
  return NeighbourGraph(senders=senders.concat(),
                        receivers=receivers.concat(),
                        edge_vectors=vectors.concat())


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
