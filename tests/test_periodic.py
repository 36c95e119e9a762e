"""periodic.neighbour_pairs against brute force and hand-checked systems."""

import itertools
import math

import numpy as np
import pytest

from glassy_dynamics_tf import periodic

BOX = np.array([5.3, 6.1, 7.7])  # non-cubic on purpose


def brute_force_directed(positions, box, cutoff):
  """Every (i, j, r_j + s·box − r_i) closer than cutoff, O(N² · images).

  Directed: each neighbour relation appears from both ends, and a particle's
  own images (s ≠ 0) appear with both signs, so the result does not depend
  on which of a pair's two orientations the code under test lists.
  """
  positions = np.asarray(positions, np.float64)
  box = np.asarray(box, np.float64)
  inside = positions - box * np.floor(positions / box)
  reach = int(np.ceil(cutoff / box.min())) + 1
  shifts = np.array(list(itertools.product(range(-reach, reach + 1),
                                           repeat=3)))
  out = []
  for i, j in itertools.product(range(len(inside)), repeat=2):
    vectors = inside[j] + shifts * box - inside[i]
    close = np.linalg.norm(vectors, axis=-1) < cutoff
    if i == j:
      close &= np.any(shifts != 0, axis=1)
    out += [(i, j, *v) for v in vectors[close]]
  return _sorted(np.array(out).reshape(-1, 5))


def directed(pairs):
  """Pairs -> the directed rows (i, j, vector) of both orientations."""
  forward = np.column_stack([pairs.i, pairs.j, pairs.vectors])
  backward = np.column_stack([pairs.j, pairs.i, -pairs.vectors])
  return _sorted(np.concatenate([forward, backward]))


def _sorted(rows):
  keys = np.round(rows, 6)
  return rows[np.lexsort(keys.T[::-1])]


def check_invariants(pairs, cutoff):
  assert pairs.i.dtype == pairs.j.dtype == np.int64
  assert np.all(pairs.i <= pairs.j)
  np.testing.assert_allclose(pairs.distances,
                             np.linalg.norm(pairs.vectors, axis=-1))
  assert np.all(pairs.distances < cutoff)
  order = np.lexsort((pairs.distances, pairs.j, pairs.i))
  np.testing.assert_array_equal(order, np.arange(len(order)))


def random_positions(seed, n, box=BOX):
  return np.random.default_rng(seed).uniform(0, 1, (n, 3)) * box


@pytest.mark.parametrize("cutoff", [
    2.4,   # every edge > 2·cutoff: minimum image, one image per pair
    3.0,   # 5.3 < 6.0: some pairs have two images in range
    6.5,   # every edge < cutoff: several images per pair, self images
])
def test_matches_brute_force_on_a_non_cubic_box(cutoff):
  positions = random_positions(0, 30)
  pairs = periodic.neighbour_pairs(positions, BOX, cutoff)
  check_invariants(pairs, cutoff)
  want = brute_force_directed(positions, BOX, cutoff)
  got = directed(pairs)
  assert got.shape == want.shape
  np.testing.assert_array_equal(got[:, :2], want[:, :2])
  np.testing.assert_allclose(got[:, 2:], want[:, 2:], atol=1e-12)
  if cutoff == 2.4:
    assert np.all(pairs.i < pairs.j)
  if cutoff == 6.5:
    assert np.any(pairs.i == pairs.j)


def test_cluster_across_the_corner():
  # Four particles 0.1 from the faces meeting at the corner of the box: the
  # cluster is split over the 8 corners but its members are 0.2, 0.2·√2 and
  # 0.2·√3 apart through the boundaries; a fifth particle sits mid-box.
  lx, ly, lz = BOX
  positions = np.array([[0.1, 0.1, 0.1], [lx - 0.1, 0.1, 0.1],
                        [0.1, ly - 0.1, lz - 0.1], [lx - 0.1, ly - 0.1,
                                                    lz - 0.1],
                        [lx / 2, ly / 2, lz / 2]])
  pairs = periodic.neighbour_pairs(positions, BOX, 0.5)
  np.testing.assert_array_equal(pairs.i, [0, 0, 0, 1, 1, 2])
  np.testing.assert_array_equal(pairs.j, [1, 2, 3, 2, 3, 3])
  s2, s3 = 0.2 * math.sqrt(2), 0.2 * math.sqrt(3)
  np.testing.assert_allclose(pairs.distances, [0.2, s2, s3, s3, s2, 0.2])
  # Minimum-image vectors r_j − r_i point through the boundary.
  np.testing.assert_allclose(pairs.vectors, [
      [-0.2, 0, 0], [0, -0.2, -0.2], [-0.2, -0.2, -0.2],
      [0.2, -0.2, -0.2], [0, -0.2, -0.2], [-0.2, 0, 0]
  ], atol=1e-12)


def test_small_box_lists_each_self_image_once():
  # One particle in a 1.1 × 1.3 × 1.7 box, cut-off 1.5: its images at ±1.1
  # (x) and ±1.3 (y) are in range; ±1.7 (z) and the xy diagonal
  # √(1.1² + 1.3²) = 1.70 are not. One of each ± pair is listed.
  box = np.array([1.1, 1.3, 1.7])
  pairs = periodic.neighbour_pairs([[0.3, 0.2, 1.0]], box, 1.5)
  np.testing.assert_array_equal(pairs.i, [0, 0])
  np.testing.assert_array_equal(pairs.j, [0, 0])
  np.testing.assert_allclose(pairs.distances, [1.1, 1.3])
  np.testing.assert_allclose(np.abs(pairs.vectors),
                             [[1.1, 0, 0], [0, 1.3, 0]], atol=1e-12)
  # Two particles 0.5 apart along x in a box of 1.1 along x: each has its
  # own ±x image (1.1) and the other at 0.5 and 0.6 (through the wall).
  pairs = periodic.neighbour_pairs([[0.2, 0.2, 1.0], [0.7, 0.2, 1.0]], box,
                                   1.2)
  np.testing.assert_array_equal(pairs.i, [0, 0, 0, 1])
  np.testing.assert_array_equal(pairs.j, [0, 1, 1, 1])
  np.testing.assert_allclose(pairs.distances, [1.1, 0.5, 0.6, 1.1])
  np.testing.assert_allclose(pairs.vectors[1:3, 0], [0.5, -0.6])


def test_positions_far_outside_the_box():
  positions = random_positions(1, 40)
  rng = np.random.default_rng(2)
  far = positions + rng.integers(-1000, 1000, positions.shape) * BOX
  for cutoff in (2.0, 3.5):  # both paths
    want = periodic.neighbour_pairs(positions, BOX, cutoff)
    got = periodic.neighbour_pairs(far, BOX, cutoff)
    np.testing.assert_array_equal(got.i, want.i)
    np.testing.assert_array_equal(got.j, want.j)
    np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-9)


def test_cutoff_is_strict_and_isolated_particles_have_no_pairs():
  positions = np.array([[1.0, 1.0, 1.0], [3.0, 1.0, 1.0], [1.0, 4.0, 5.0]])
  assert periodic.neighbour_pairs(positions, BOX, 2.0).i.size == 0
  pairs = periodic.neighbour_pairs(positions, BOX, 2.0 + 1e-9)
  np.testing.assert_array_equal(np.column_stack([pairs.i, pairs.j]), [[0, 1]])
  empty = periodic.neighbour_pairs(np.zeros((0, 3)), BOX, 2.0)
  assert empty.i.size == 0 and empty.vectors.shape == (0, 3)


def test_errors_name_the_thing():
  assert issubclass(periodic.TooManyImagesError, ValueError)
  with pytest.raises(periodic.TooManyImagesError,
                     match=r"box \[0.5, 0.5, 0.5\].*cut-off 2.5"):
    periodic.neighbour_pairs(random_positions(3, 1000, np.full(3, 0.5)),
                             np.full(3, 0.5), 2.5)
  with pytest.raises(ValueError, match="box must be 3 finite edges > 0"):
    periodic.neighbour_pairs(np.zeros((2, 3)), [1.0, 0.0, 1.0], 0.5)
  with pytest.raises(ValueError, match=r"positions must have shape \[n, 3\]"):
    periodic.neighbour_pairs(np.zeros((2, 2)), BOX, 0.5)
  with pytest.raises(ValueError, match="particle 1 is at"):
    periodic.neighbour_pairs([[0, 0, 0], [np.nan, 0, 0]], BOX, 0.5)
  with pytest.raises(ValueError, match="cutoff must be finite and > 0"):
    periodic.neighbour_pairs(np.zeros((2, 3)), BOX, -1.0)
