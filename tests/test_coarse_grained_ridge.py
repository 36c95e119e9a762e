"""The coarse-grained ridge baseline (Boattini et al. 2021)."""

import math

import numpy as np
import pytest

from glassy_dynamics_tf import baselines
from glassy_dynamics_tf.io import record as record_lib

BOX = np.array([8.0, 9.0, 10.0])


def _random_configuration(seed, n=150, box=BOX):
  rng = np.random.default_rng(seed)
  positions = rng.uniform(0, 1, (n, 3)) * box
  types = (rng.uniform(size=n) < 0.2).astype(np.int32)
  return positions, types


def test_coarse_graining_by_hand():
  # Three particles on a line: 0 -- 1 at 1.0, 1 -- 2 at 1.5, 0 -- 2 at 2.5.
  positions = np.array([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0], [3.5, 1.0, 1.0]])
  features = np.array([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
  out = baselines.coarse_grained(features, positions, BOX, length=1.0,
                                 cutoff_lengths=3.0)
  w = {1.0: math.exp(-1.0), 1.5: math.exp(-1.5), 2.5: math.exp(-2.5)}
  weights = np.array([[1.0, w[1.0], w[2.5]],
                      [w[1.0], 1.0, w[1.5]],
                      [w[2.5], w[1.5], 1.0]])
  want = weights @ features / weights.sum(1, keepdims=True)
  np.testing.assert_allclose(out, want, rtol=1e-12)
  # A shorter cut-off drops the 2.5 σ pair.
  short = baselines.coarse_grained(features, positions, BOX, length=1.0,
                                   cutoff_lengths=2.0)
  weights[0, 2] = weights[2, 0] = 0.0
  np.testing.assert_allclose(
      short, weights @ features / weights.sum(1, keepdims=True), rtol=1e-12)


def test_coarse_graining_keeps_a_constant_and_sees_periodic_images():
  positions, _ = _random_configuration(0)
  constant = np.full((150, 3), 2.5)
  np.testing.assert_allclose(
      baselines.coarse_grained(constant, positions, BOX, 1.0), constant)
  # Two particles across the x boundary, 0.5 apart through it.
  pair = np.array([[0.25, 4.0, 4.0], [7.75, 4.0, 4.0]])
  out = baselines.coarse_grained(np.array([[0.0], [1.0]]), pair, BOX, 1.0)
  w = math.exp(-0.5)
  np.testing.assert_allclose(out[:, 0], [w / (1 + w), 1 / (1 + w)])


def test_coarse_graining_arguments_are_checked():
  positions, _ = _random_configuration(0)
  with pytest.raises(baselines.BaselineError, match="length"):
    baselines.coarse_grained(np.ones((150, 1)), positions, BOX, 0.0)


def _record(seed):
  """Propensity = the local A count within 1.5 σ, averaged over neighbours
  (a non-local target the coarse-grained features can reach)."""
  positions, types = _random_configuration(seed)
  counts = baselines.neighbour_counts(positions, types, BOX, [1.5])
  local = counts[:, 0].sum(-1, keepdims=True).astype(np.float64)
  smooth = baselines.coarse_grained(local, positions, BOX, 1.0)[:, 0]
  propensity = np.stack([0.1 + 0.05 * smooth, 0.2 + 0.1 * smooth])
  return record_lib.ConfigurationRecord.create(
      positions=positions, types=types, box=BOX, propensity=propensity,
      times=[0.5, 1.0], isf_levels=[0.7, math.exp(-1)], temperature=1.0)


def test_coarse_grained_ridge_beats_the_local_ridge_on_a_smooth_target():
  train = [_record(s) for s in range(3)]
  test = _record(10)
  cache = baselines.SymmetryFunctionCache()
  coarse = baselines.make_baseline("coarse_grained_ridge",
                                   feature_cache=cache).fit(train)
  local = baselines.make_baseline("symmetry_ridge",
                                  feature_cache=cache).fit(train)
  assert isinstance(coarse, baselines.CoarseGrainedRidgeBaseline)
  n_local = baselines.SymmetryFunctionParameters().n_features
  assert coarse.features(test).shape == (test.n_particles, 2 * n_local)
  is_a = test.types == 0

  def pearson(baseline):
    return np.corrcoef(baseline.predict(test)[is_a, 1],
                       test.propensity[1, is_a])[0, 1]

  # The local features reach 3.3 σ, so they already explain much of it;
  # the averages halve what is left.
  assert pearson(coarse) > 0.95
  assert 1.0 - pearson(coarse) < 0.5 * (1.0 - pearson(local))
  assert coarse.describe()["lengths"] == [1.0]
  with pytest.raises(baselines.BaselineError, match="at least one length"):
    baselines.CoarseGrainedRidgeBaseline(lengths=())
