"""Tests of glassy_dynamics_tf.graphs: the periodic neighbour graph.

The fast cell-list builders are checked against an O(N²) brute force that
follows the definition literally (bit for bit, `exact_reference`), and on
systems small enough to check by hand.
"""

import numpy as np
import pytest
import tensorflow as tf

from glassy_dynamics_tf import graphs
from glassy_dynamics_tf import periodic


def brute_force(positions, box, cutoff=2.0, self_loops=True):
  """O(N²) reference: every ordered pair, minimum image, |d| < cutoff."""
  positions = np.asarray(positions, np.float64)
  box = np.asarray(box, np.float64)
  n = len(positions)
  d = periodic.minimum_image(positions[None, :, :] - positions[:, None, :],
                             box)            # d[s, r] = r_r - r_s
  close = np.sum(d * d, axis=-1) < cutoff**2
  if not self_loops:
    np.fill_diagonal(close, False)
  senders, receivers = np.nonzero(close)     # row-major: sorted by sender
  return senders, receivers, d[senders, receivers]


def assert_same_graph(graph, reference, atol=1e-5):
  senders, receivers, vectors = reference
  np.testing.assert_array_equal(np.asarray(graph.senders), senders)
  np.testing.assert_array_equal(np.asarray(graph.receivers), receivers)
  np.testing.assert_allclose(np.asarray(graph.edge_vectors), vectors,
                             atol=atol)


def exact_reference(positions, box, cutoff=2.0, self_loops=True):
  """The output contract bit for bit, O(N²) over blocks of senders.

  Positions wrapped into the box (periodic.wrap), the float64 minimum image
  of every ordered pair's difference (periodic.minimum_image), an edge where
  its squared norm (the builders' einsum) is below cutoff², vectors cast to
  float32; edges in row-major (sender, receiver) order.
  """
  box = np.asarray(box, np.float64)
  wrapped = periodic.wrap(np.asarray(positions, np.float64), box)
  n = len(wrapped)
  senders, receivers, vectors = [], [], []
  for start in range(0, n, 256):
    block = wrapped[start:start + 256]
    d = periodic.minimum_image(
        wrapped[None, :, :] - block[:, None, :], box).reshape(-1, 3)
    close = np.einsum("ij,ij->i", d, d) < cutoff * cutoff
    pair = np.arange(close.size)
    if not self_loops:
      close &= pair // n + start != pair % n
    senders.append(pair[close] // n + start)
    receivers.append(pair[close] % n)
    vectors.append(d[close].astype(np.float32))
  return (np.concatenate(senders), np.concatenate(receivers),
          np.concatenate(vectors))


def assert_identical(graph, reference):
  """Same edges, same order, same float32 vectors bit for bit."""
  senders, receivers, vectors = reference
  assert np.asarray(graph.senders).dtype == np.int32
  assert np.asarray(graph.edge_vectors).dtype == np.float32
  np.testing.assert_array_equal(np.asarray(graph.senders), senders)
  np.testing.assert_array_equal(np.asarray(graph.receivers), receivers)
  np.testing.assert_array_equal(
      np.asarray(graph.edge_vectors).view(np.int32),
      np.asarray(vectors, np.float32).view(np.int32))


def random_configuration(n, box, seed):
  rng = np.random.default_rng(seed)
  return rng.uniform(0, 1, (n, 3)) * np.asarray(box)


def jittered_lattice(n_side, spacing, jitter, seed):
  """[n_side³, 3] simple-cubic lattice sites moved by up to ±jitter·spacing
  per axis (a liquid-like packing, as benchmarks/inference_scaling.py), and
  its cubic box edges [3]."""
  rng = np.random.default_rng(seed)
  sites = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"),
                   -1).reshape(-1, 3)
  positions = (sites + 0.5 + rng.uniform(-jitter, jitter, sites.shape))
  return positions * spacing, np.full(3, n_side * spacing)


# -------------------------------------------------- hand-checkable cases ---


def test_pair_across_boundary_in_non_cubic_box():
  box = [5.0, 6.0, 7.0]
  positions = [[0.2, 3.0, 3.0], [4.7, 3.0, 3.5]]
  graph = graphs.build_graph(positions, box, cutoff=2.0)
  # Sorted by sender, then receiver; self-loops included.
  np.testing.assert_array_equal(graph.senders, [0, 0, 1, 1])
  np.testing.assert_array_equal(graph.receivers, [0, 1, 0, 1])
  # r_1 - r_0 = (4.5, 0, 0.5) -> minimum image (-0.5, 0, 0.5).
  np.testing.assert_allclose(
      graph.edge_vectors,
      [[0, 0, 0], [-0.5, 0, 0.5], [0.5, 0, -0.5], [0, 0, 0]], atol=1e-6)
  assert graph.edge_vectors.dtype == np.float32
  assert graph.senders.dtype == np.int32


def test_cutoff_is_strict_and_self_loops_optional():
  box = [10.0, 10.0, 10.0]
  positions = [[1.0, 1.0, 1.0], [3.0, 1.0, 1.0], [1.0, 2.5, 1.0]]
  graph = graphs.build_graph(positions, box, cutoff=2.0, self_loops=False)
  # 0-1 at exactly 2.0 is not an edge; 0-2 at 1.5 is; 1-2 at 2.5 is not.
  np.testing.assert_array_equal(graph.senders, [0, 2])
  np.testing.assert_array_equal(graph.receivers, [2, 0])


def test_isolated_particle_has_only_its_self_loop():
  box = [8.0, 8.0, 8.0]
  positions = [[1.0, 1.0, 1.0], [1.5, 1.0, 1.0], [5.0, 5.0, 5.0]]
  graph = graphs.build_graph(positions, box)
  incident = (graph.senders == 2) | (graph.receivers == 2)
  np.testing.assert_array_equal(graph.senders[incident], [2])
  np.testing.assert_array_equal(graph.receivers[incident], [2])
  np.testing.assert_array_equal(graph.edge_vectors[incident], [[0, 0, 0]])
  assert graphs.build_graph(positions, box, self_loops=False).n_edges == 2


def test_cluster_around_a_corner_is_complete():
  # Eight particles 0.3 from each of the eight corners of the box are one
  # tight cluster through the periodic boundaries: all 64 ordered pairs.
  box = np.array([6.0, 7.0, 9.0])
  corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1)
                      for k in (0, 1)], np.float64)
  positions = np.where(corners == 0, 0.3, box - 0.3)
  graph = graphs.build_graph(positions, box)
  assert graph.n_edges == 64
  assert np.max(np.linalg.norm(graph.edge_vectors, axis=-1)) < 2.0
  # Particle 0 at (0.3, 0.3, 0.3) sees particle 7 at (-0.3, -0.3, -0.3).
  edge = np.flatnonzero((graph.senders == 0) & (graph.receivers == 7))[0]
  np.testing.assert_allclose(graph.edge_vectors[edge], [-0.6] * 3, atol=1e-6)


@pytest.mark.parametrize("shift", [[15.0, 0, 0], [-30.0, 45.0, 15.0],
                                   [1.5e4, -3.0e4, 4.5e3]])
def test_whole_box_shifts_change_nothing(shift):
  box = np.array([15.0, 15.0, 15.0])
  positions = random_configuration(200, box, seed=1)
  reference = graphs.build_graph(positions, box)
  shifted = graphs.build_graph(positions + np.array(shift), box)
  assert_same_graph(shifted, (reference.senders, reference.receivers,
                              reference.edge_vectors), atol=1e-6)


def test_positions_far_outside_the_box():
  box = np.array([5.0, 6.0, 7.0])
  positions = random_configuration(100, box, seed=2)
  rng = np.random.default_rng(3)
  images = rng.integers(-1000, 1000, size=positions.shape)
  graph = graphs.build_graph(positions + images * box, box)
  assert_same_graph(graph, brute_force(positions, box), atol=1e-5)


def test_translation_keeps_connectivity_and_vectors():
  box = np.array([6.0, 8.0, 10.0])
  positions = random_configuration(150, box, seed=4)
  graph = graphs.build_graph(positions, box)
  moved = graphs.build_graph(positions + np.array([0.37, -2.9, 11.3]), box)
  assert_same_graph(moved, (graph.senders, graph.receivers,
                            graph.edge_vectors), atol=1e-5)


# ------------------------------------------------------ vs brute force ---


@pytest.mark.parametrize("box", [
    [8.5, 8.5, 8.5],           # >= 4 cells per axis
    [4.5, 6.3, 9.1],           # 2, 3, 4 cells: the -1 and +1 cell coincide
    [4.0, 4.0, 4.0],           # exactly 2 * cutoff: one cell per axis
    [4.1, 12.0, 5.9],
    [60.0, 60.0, 60.0],        # dilute: the cell grid is capped
])
@pytest.mark.parametrize("self_loops", [True, False])
def test_random_500_matches_brute_force(box, self_loops):
  positions = random_configuration(500, box, seed=int(sum(box)))
  graph = graphs.build_graph(positions, box, self_loops=self_loops)
  assert_same_graph(graph, brute_force(positions, box, self_loops=self_loops))


@pytest.mark.parametrize("box", [
    [7.3, 9.1, 12.5],          # 3, 4 and 6 cells: the half shell
    [4.0, 4.0, 4.0],           # exactly 2 * cutoff: one cell, rounding
    [4.0 + 1e-9, 6.5, 5.99],   # just above 2 * cutoff; 1, 3 and 1 cells
    [6.0 * (1 + 2e-6), 8.5, 4.5],  # just wide enough for 3 cells
    [60.0, 60.0, 60.0],        # dilute: the cell grid is capped
])
@pytest.mark.parametrize("self_loops", [True, False])
def test_random_400_is_the_exact_reference_bit_for_bit(box, self_loops):
  positions = random_configuration(400, box, seed=int(10 * sum(box))) - 7.0
  graph = graphs.build_graph(positions, box, self_loops=self_loops)
  assert_identical(graph, exact_reference(positions, box,
                                          self_loops=self_loops))


def test_liquid_like_4096_is_the_exact_reference_bit_for_bit():
  # ρ = 1.2 as the Kob-Andersen liquid: ~39 edges per particle, 7 cells of
  # 2.15 σ per axis holding 8 to 20 particles.
  positions, box = jittered_lattice(16, 1.2**(-1 / 3), 0.3, seed=3)
  graph = graphs.build_graph(positions, box)
  reference = exact_reference(positions, box)
  assert_identical(graph, reference)
  assert 38 < graph.n_edges / 4096 < 41


def test_cluster_across_the_boundary_is_complete_and_exact():
  # 60 particles within ±0.55 σ of the corner (0, 0, 0) of a box of 6 x 7 x
  # 8 cells, i.e. spread over its eight corner cells, among 300 random
  # ones. The cluster's diameter is 1.1·√3 = 1.91 σ < 2.0: through the
  # periodic boundaries every ordered pair of its members is an edge, with
  # vector components within ±1.1 σ.
  box = np.array([12.5, 14.5, 16.5])
  rng = np.random.default_rng(8)
  cluster = periodic.wrap(rng.uniform(-0.55, 0.55, (60, 3)), box)
  positions = np.concatenate([random_configuration(300, box, seed=9),
                              cluster])
  graph = graphs.build_graph(positions, box, self_loops=False)
  assert_identical(graph, exact_reference(positions, box, self_loops=False))
  inside = (graph.senders >= 300) & (graph.receivers >= 300)
  assert inside.sum() == 60 * 59
  assert np.all(np.abs(graph.edge_vectors[inside]) <= 1.1)


def test_each_direction_of_a_pair_at_the_cutoff_is_decided_exactly():
  # A pair 2.0 σ apart to within one float64 ulp, where the minimum images
  # of r_b - r_a and r_a - r_b (periodic.minimum_image, mod(d + L/2, L) -
  # L/2) round differently: |b - a|² == 4.0, |a - b|² == 4 - 2^-50. Only
  # b -> a is an edge. Found by a random search over such pairs.
  box = np.array([7.0, 8.0, 9.0])
  a = [4.45873181125018, 2.1582937101109625, 0.3687617154257522]
  b = [4.779160137204509, 0.5220358567798065, 1.473291445826081]
  forward = periodic.minimum_image(np.subtract([b], [a]), box)
  backward = periodic.minimum_image(np.subtract([a], [b]), box)
  assert np.einsum("ij,ij->i", forward, forward)[0] == 4.0
  assert np.einsum("ij,ij->i", backward, backward)[0] < 4.0
  graph = graphs.build_graph([a, b], box, self_loops=False)
  np.testing.assert_array_equal(graph.senders, [1])
  np.testing.assert_array_equal(graph.receivers, [0])
  np.testing.assert_array_equal(graph.edge_vectors,
                                backward.astype(np.float32))
  # The same pair among 500 other particles.
  positions = np.concatenate([[a, b],
                              random_configuration(500, box, seed=12)])
  graph = graphs.build_graph(positions, box)
  assert_identical(graph, exact_reference(positions, box))
  pair = (graph.senders < 2) & (graph.receivers < 2)
  np.testing.assert_array_equal(graph.senders[pair], [0, 1, 1])
  np.testing.assert_array_equal(graph.receivers[pair], [0, 0, 1])


@pytest.mark.parametrize("cutoff, neighbours", [
    (2.0, 0),                          # spacing 2.0 exactly: no edge
    (np.nextafter(2.0, 3.0), 6),       # one ulp above: six neighbours
    (np.nextafter(2.0, 1.0), 0),       # one ulp below: none either
])
def test_lattice_at_the_cutoff(cutoff, neighbours):
  # Simple-cubic lattice of spacing 2.0 in a 10 σ box (5 sites per axis):
  # positions and periodic differences are exact, every nearest neighbour
  # is at exactly 2.0 σ, the next ones at 2√2.
  sites = np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"),
                   -1).reshape(-1, 3) * 2.0
  graph = graphs.build_graph(sites, [10.0, 10.0, 10.0], cutoff=cutoff,
                             self_loops=False)
  assert graph.n_edges == 125 * neighbours
  if neighbours:
    np.testing.assert_array_equal(np.bincount(graph.senders), 6)
    np.testing.assert_array_equal(
        np.sort(np.abs(graph.edge_vectors), axis=1)[:, -1], 2.0)
    np.testing.assert_array_equal(
        np.sort(np.abs(graph.edge_vectors), axis=1)[:, :2], 0.0)


def huge_box_pairs(n_pairs: int, seed: int):
  """n_pairs pairs 2.0 σ minus up to 1e-3 σ apart, far from the origin of a
  3·10⁴ × 9 × 9 σ box: positions [2 n_pairs, 3], box [3]."""
  box = np.array([3.0e4, 9.0, 9.0])
  rng = np.random.default_rng(seed)
  first = np.stack([rng.uniform(1e4, 3e4, n_pairs),
                    rng.uniform(0, 9, n_pairs),
                    rng.uniform(0, 9, n_pairs)], -1)
  direction = rng.normal(size=(n_pairs, 3))
  direction /= np.linalg.norm(direction, axis=1, keepdims=True)
  second = first + direction * (2.0 - rng.uniform(0, 1e-3, (n_pairs, 1)))
  return np.concatenate([first, second]), box


def test_huge_box_pairs_just_inside_the_cutoff():
  # A 3·10⁴ σ box: absolute float32 coordinates there are only good to
  # ~1e-3 σ, so pairs within 1e-3 σ of the cut-off must still be found
  # (build_graph's float32 distances use coordinates within a cell).
  positions, box = huge_box_pairs(150, seed=13)
  graph = graphs.build_graph(positions, box, self_loops=False)
  reference = exact_reference(positions, box, self_loops=False)
  assert_identical(graph, reference)
  assert graph.n_edges >= 300


def test_blocks_and_chunks_do_not_change_the_graph(monkeypatch):
  box = [7.3, 9.1, 12.5]
  positions = random_configuration(300, box, seed=14)
  reference = graphs.build_graph(positions, box)
  monkeypatch.setattr(graphs, "_CANDIDATES_PER_BLOCK", 1)  # one cell each
  monkeypatch.setattr(graphs, "_EDGES_PER_CHUNK", 7)
  assert_identical(graphs.build_graph(positions, box), reference)


def test_relabelling_particles_relabels_the_graph():
  box = np.array([7.3, 9.1, 12.5])
  positions = random_configuration(300, box, seed=15)
  graph = graphs.build_graph(positions, box)
  permutation = np.random.default_rng(16).permutation(300)
  relabelled = graphs.build_graph(positions[permutation], box)
  # Particle k of the relabelled system is particle permutation[k].
  senders = permutation[relabelled.senders]
  receivers = permutation[relabelled.receivers]
  order = np.lexsort((receivers, senders))
  assert_identical(graph, (senders[order], receivers[order],
                           relabelled.edge_vectors[order]))


def test_other_cutoff_matches_brute_force():
  box = [7.0, 9.0, 8.0]
  positions = random_configuration(400, box, seed=7)
  graph = graphs.build_graph(positions, box, cutoff=1.3)
  assert_same_graph(graph, brute_force(positions, box, cutoff=1.3))


def test_single_particle():
  graph = graphs.build_graph([[1.0, 2.0, 3.0]], [5.0, 5.0, 5.0])
  np.testing.assert_array_equal(graph.senders, [0])
  assert graphs.build_graph([[1.0, 2.0, 3.0]], [5.0, 5.0, 5.0],
                            self_loops=False).n_edges == 0


# ------------------------------------------------------------- errors ---


@pytest.mark.parametrize("positions, box, match", [
    (np.zeros((4, 2)), [5.0, 5.0, 5.0], r"positions: expected shape"),
    (np.zeros((0, 3)), [5.0, 5.0, 5.0], r"empty configuration"),
    ([[0, 0, 0], [np.nan, 1, 1]], [5.0, 5.0, 5.0],
     r"non-finite .* particle 1, axis 0"),
    (np.zeros((2, 3)), [5.0, 5.0], r"box: expected shape \[3\]"),
    (np.zeros((2, 3)), [5.0, 0.0, 5.0], r"box: edges must be finite and > 0"),
    (np.zeros((2, 3)), [5.0, 3.9, 5.0],
     r"smaller than twice the cut-off .* minimum-image"),
])
def test_bad_input_is_named(positions, box, match):
  with pytest.raises(graphs.GraphError, match=match):
    graphs.build_graph(positions, box)


# --------------------------------------------------------- TensorFlow ---


@pytest.mark.parametrize("box", [[8.5, 8.5, 8.5], [4.5, 6.3, 9.1],
                                 [4.0, 4.0, 4.0], [7.3, 9.1, 12.5]])
def test_tf_builder_equals_numpy(box):
  # float64 arrays: a Python list would become a float32 tensor, and 6.3
  # in float32 is another box.
  box = np.asarray(box, np.float64)
  positions = random_configuration(300, box, seed=11) - 20.0
  reference = graphs.build_graph(positions, box)
  graph = graphs.build_graph_tf(positions, box)
  assert_identical(graph, reference)
  assert graph.senders.dtype == tf.int32
  assert graph.edge_vectors.dtype == tf.float32


def test_tf_builder_in_tf_function_and_tf_data_with_dynamic_n():
  box = np.array([6.0, 7.0, 8.0], np.float32)

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32),
                                tf.TensorSpec([3], tf.float32)])
  def build(positions, box):
    graph = graphs.build_graph_tf(positions, box)
    return graph.senders, graph.receivers, graph.edge_vectors

  configurations = [random_configuration(n, box, seed=n).astype(np.float32)
                    for n in (10, 120)]
  for positions in configurations:
    senders, receivers, vectors = build(positions, box)
    assert_same_graph(graphs.NeighbourGraph(senders, receivers, vectors),
                      brute_force(positions, box), atol=1e-5)

  dataset = tf.data.Dataset.from_generator(
      lambda: iter(configurations),
      output_signature=tf.TensorSpec([None, 3], tf.float32))
  counts = list(dataset.map(
      lambda p: tf.shape(graphs.build_graph_tf(p, box).senders)[0])
                .as_numpy_iterator())
  assert counts == [len(brute_force(p, box)[0]) for p in configurations]


@pytest.mark.parametrize("self_loops", [True, False])
def test_tf_builder_in_blocks_equals_numpy(monkeypatch, self_loops):
  # A few candidates per block: one sender per iteration of the while loop,
  # inside a tf.function with a dynamic number of particles.
  monkeypatch.setattr(graphs, "_TF_CANDIDATES_PER_BLOCK", 50)
  box = np.array([7.3, 9.1, 12.5])

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float64),
                                tf.TensorSpec([3], tf.float64)])
  def build(positions, box):
    return tuple(graphs.build_graph_tf(positions, box,
                                       self_loops=self_loops))

  for n in (1, 2, 150):
    positions = random_configuration(n, box, seed=n)
    assert_identical(graphs.NeighbourGraph(*build(positions, box)),
                     graphs.build_graph(positions, box,
                                        self_loops=self_loops))


def test_tf_builder_huge_box_equals_numpy():
  # As test_huge_box_pairs_just_inside_the_cutoff: the float32
  # pre-selection's margin grows with the box, so that no pair within
  # float32 rounding of the cut-off is lost.
  positions, box = huge_box_pairs(100, seed=17)
  reference = graphs.build_graph(positions, box)
  assert reference.n_edges >= 400
  assert_identical(graphs.build_graph_tf(positions, box), reference)


def test_tf_builder_rejects_small_box_and_nan():
  with pytest.raises(tf.errors.InvalidArgumentError, match="twice the cut"):
    graphs.build_graph_tf(np.zeros((3, 3)), [5.0, 3.0, 5.0])
  with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite"):
    graphs.build_graph_tf([[0.0, 0.0, np.nan]], [5.0, 5.0, 5.0])


# ------------------------------------------------------------ padding ---


def _small_example():
  box = np.array([6.0, 6.0, 6.0])
  positions = random_configuration(20, box, seed=5)
  types = (np.arange(20) % 5 == 0).astype(np.int32)
  return types, graphs.build_graph(positions, box)


def test_pad_graph_follows_the_contract():
  types, graph = _small_example()
  e = graph.n_edges
  padded = graphs.pad_graph(types, graph, max_nodes=24, max_edges=e + 10)
  assert padded["node_types"].shape == (24,)
  assert padded["edge_vectors"].shape == (e + 10, 3)
  np.testing.assert_array_equal(padded["node_types"][:20], types)
  np.testing.assert_array_equal(padded["node_types"][20:], 0)
  np.testing.assert_array_equal(padded["node_mask"],
                                [1] * 20 + [0] * 4)
  np.testing.assert_array_equal(padded["edge_mask"], [1] * e + [0] * 10)
  np.testing.assert_array_equal(padded["senders"][e:], 23)
  np.testing.assert_array_equal(padded["receivers"][e:], 23)
  np.testing.assert_array_equal(padded["edge_vectors"][e:], 0)
  np.testing.assert_array_equal(padded["senders"][:e], graph.senders)
  assert padded["node_mask"].dtype == np.float32
  assert padded["senders"].dtype == np.int32


def test_pad_graph_errors():
  types, graph = _small_example()
  with pytest.raises(graphs.GraphError, match=r"max_nodes=20 .* needs >= 21"):
    graphs.pad_graph(types, graph, 20, graph.n_edges)
  with pytest.raises(graphs.GraphError, match=r"max_edges=.* too small"):
    graphs.pad_graph(types, graph, 21, graph.n_edges - 1)
  with pytest.raises(graphs.GraphError, match=r"unknown particle types \[2\]"):
    graphs.pad_graph(types + 1, graph, 21, graph.n_edges)


def test_pad_graph_tf_equals_numpy():
  types, graph = _small_example()
  expected = graphs.pad_graph(types, graph, 24, graph.n_edges + 3)
  padded = graphs.pad_graph_tf(
      tf.constant(types), graphs.NeighbourGraph(*map(tf.constant, graph)),
      24, graph.n_edges + 3)
  for key in graphs.PADDED_KEYS:
    np.testing.assert_array_equal(padded[key].numpy(), expected[key], key)
  with pytest.raises(tf.errors.InvalidArgumentError, match="max_edges"):
    graphs.pad_graph_tf(types, graph, 24, graph.n_edges - 1)


def test_padded_to_graphs_tuple_offsets_each_example():
  types, graph = _small_example()
  one = graphs.pad_graph(types, graph, 24, graph.n_edges + 3)
  batch = {k: np.stack([v, v]) for k, v in one.items()}
  gt = graphs.padded_to_graphs_tuple(batch)
  e = graph.n_edges + 3
  assert gt.nodes.shape == (48, 1) and gt.edges.shape == (2 * e, 3)
  np.testing.assert_array_equal(gt.n_node, [24, 24])
  np.testing.assert_array_equal(gt.n_edge, [e, e])
  np.testing.assert_array_equal(gt.senders[e:], one["senders"] + 24)
  np.testing.assert_array_equal(gt.receivers[:e], one["receivers"])
  np.testing.assert_array_equal(gt.nodes[:, 0], np.tile(types_padded(one), 2))


def types_padded(example):
  return example["node_types"].astype(np.float32)


def test_padding_sizes():
  sizes = graphs.padding_sizes([100, 120], [4000, 4100], node_multiple=8,
                               edge_multiple=256)
  assert sizes == graphs.PaddingSizes(max_nodes=128, max_edges=4352)
  sizes = graphs.padding_sizes([127], [10])
  assert sizes.max_nodes == 128       # 127 particles + 1 padding node
  with pytest.raises(graphs.GraphError, match="no examples"):
    graphs.padding_sizes([], [])
