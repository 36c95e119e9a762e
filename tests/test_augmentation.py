"""Tests of glassy_dynamics_tf.augmentation: the cube's symmetry group and
the equivariance of the periodic graph under it."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from glassy_dynamics_tf import augmentation
from glassy_dynamics_tf import graphs
from glassy_dynamics_tf import periodic


def _index_of(matrix, group):
  hits = [i for i, g in enumerate(group) if np.array_equal(g, matrix)]
  assert len(hits) == 1, matrix
  return hits[0]


def test_the_48_elements_form_the_cube_group():
  group = augmentation.cube_symmetries()
  assert group.shape == (48, 3, 3) and group.dtype == np.float32
  np.testing.assert_array_equal(group[0], np.eye(3))
  assert len({g.tobytes() for g in group}) == 48
  for g in group:
    np.testing.assert_array_equal(g @ g.T, np.eye(3))      # orthogonal
  dets = np.round(np.linalg.det(group)).astype(int)
  assert sorted(np.bincount(dets + 1)[[0, 2]]) == [24, 24]  # 24 rotations
  for a, b in itertools.product(group, repeat=2):           # closure
    _index_of(a @ b, group)


@pytest.mark.parametrize("box, count", [([7.0, 7.0, 7.0], 48),
                                        ([5.0, 7.0, 5.0], 16),
                                        ([4.5, 6.3, 9.1], 8)])
def test_box_symmetries_keep_the_box(box, count):
  allowed = augmentation.box_symmetries(box)
  assert len(allowed) == count
  box = np.array(box)
  for g in allowed:
    np.testing.assert_allclose(np.abs(g) @ box, box)   # edges land on equals


@pytest.mark.parametrize("box", [[8.0, 8.0, 8.0], [4.5, 6.3, 9.1],
                                 [5.0, 7.0, 5.0]])
def test_graph_is_equivariant_under_allowed_symmetries(box):
  # Mapping every position r -> R r (then wrapping) leaves the connectivity
  # unchanged and maps each edge vector d -> R d: augmenting edge vectors is
  # the same as rebuilding the graph of the transformed configuration.
  box = np.array(box)
  positions = np.random.default_rng(0).uniform(0, 1, (300, 3)) * box
  reference = graphs.build_graph(positions, box)
  for g in augmentation.box_symmetries(box):
    moved = graphs.build_graph(periodic.wrap(positions @ g.T, box), box)
    np.testing.assert_array_equal(moved.senders, reference.senders)
    np.testing.assert_array_equal(moved.receivers, reference.receivers)
    np.testing.assert_allclose(
        moved.edge_vectors,
        augmentation.apply_symmetry(reference.edge_vectors, g).numpy(),
        atol=1e-5)


def test_swapping_unequal_axes_is_not_a_symmetry_of_the_box():
  box = np.array([4.5, 6.3, 9.1])
  positions = np.random.default_rng(1).uniform(0, 1, (300, 3)) * box
  swap = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], np.float32)
  assert _index_of(swap, augmentation.cube_symmetries()) is not None
  assert not any(np.array_equal(swap, g)
                 for g in augmentation.box_symmetries(box))
  # The swapped configuration lives in another box, whose graph differs.
  swapped_box = np.abs(swap) @ box
  moved = graphs.build_graph(periodic.wrap(positions @ swap.T, box),
                             swapped_box)
  assert moved.n_edges != graphs.build_graph(positions, box).n_edges


def test_random_draws_cover_the_group_and_are_reproducible():
  group = augmentation.cube_symmetries()
  draw = tf.function(lambda seed: augmentation.random_symmetry_matrix(
      seed=seed))
  seen = [_index_of(draw(tf.constant([s, 7])).numpy(), group)
          for s in range(600)]
  assert set(seen) == set(range(48))
  np.testing.assert_array_equal(draw(tf.constant([3, 7])),
                                draw(tf.constant([3, 7])))


def test_random_draws_respect_a_non_cubic_box():
  box = tf.constant([5.0, 7.0, 5.0])
  allowed = augmentation.box_symmetries(box.numpy())
  seen = set()
  for s in range(200):
    g = augmentation.random_symmetry_matrix(seed=[s, 1], box=box).numpy()
    seen.add(_index_of(g, allowed))
  assert seen == set(range(16))


def test_generator_draws_are_reproducible_and_allowed():
  box = [4.5, 6.3, 9.1]
  allowed = augmentation.box_symmetries(box)
  draws = []
  for _ in range(2):
    rng = tf.random.Generator.from_seed(11)
    draws.append([augmentation.random_symmetry_matrix(rng=rng, box=box)
                  .numpy() for _ in range(40)])
  np.testing.assert_array_equal(draws[0], draws[1])
  assert {_index_of(g, allowed) for g in draws[0]} == set(range(8))
  with pytest.raises(ValueError, match="exactly one of seed and rng"):
    augmentation.random_symmetry_matrix()


def test_augment_padded_graph_rotates_only_edge_vectors():
  box = np.array([6.0, 6.0, 6.0])
  positions = np.random.default_rng(2).uniform(0, 6, (30, 3))
  graph = graphs.build_graph(positions, box)
  example = graphs.pad_graph(np.zeros(30, np.int32), graph, 32,
                             graph.n_edges + 5)
  dataset = tf.data.Dataset.from_tensors(example).map(
      lambda e: augmentation.augment_padded_graph(e, seed=[1, 2]))
  out = next(iter(dataset))
  for key in example:
    if key != "edge_vectors":
      np.testing.assert_array_equal(out[key], example[key])
  np.testing.assert_array_equal(out["edge_vectors"][graph.n_edges:], 0)
  g = augmentation.random_symmetry_matrix(seed=[1, 2]).numpy()
  np.testing.assert_allclose(out["edge_vectors"][:graph.n_edges],
                             graph.edge_vectors @ g.T, atol=1e-6)
  np.testing.assert_allclose(
      np.linalg.norm(out["edge_vectors"], axis=-1),
      np.linalg.norm(example["edge_vectors"], axis=-1), atol=1e-6)
