"""Golden values for glassy_dynamics_tf.metrics (hand-computed)."""

import math

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from glassy_dynamics_tf import metrics


def test_pearson_golden():
  # x̄ = 2, ȳ = 7/3: Σdxdy = 3, Σdx² = 2, Σdy² = 42/9 -> r = 9/√84.
  assert metrics.pearson([1, 2, 3], [1, 2, 4]) == pytest.approx(
      9 / math.sqrt(84), rel=1e-12)
  assert metrics.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  # Invariant under affine maps with positive slope.
  assert metrics.pearson([1, 2, 3], [5, 7, 11]) == pytest.approx(
      metrics.pearson([10, 20, 30], [1, 2, 4]))


def test_pearson_undefined_is_nan():
  assert math.isnan(metrics.pearson([1, 1, 1], [1, 2, 3]))
  assert math.isnan(metrics.pearson([1], [2]))
  with pytest.raises(ValueError, match="equal length"):
    metrics.pearson([1, 2], [1, 2, 3])


def test_spearman_golden():
  # Monotonic but non-linear: ranks agree exactly.
  assert metrics.spearman([1, 2, 3, 4], [1, 8, 27, 1000]) == pytest.approx(1)
  # Ranks [1,2,3,4] vs [1,3,2,4]: Σdxdy = 4, Σdx² = 5 -> 0.8.
  assert metrics.spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(
      0.8)


def test_roc_auc_golden():
  assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
  assert metrics.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
  # Positives 0.9, 0.3; negatives 0.8, 0.1: 3 of 4 pairs ordered -> 0.75.
  assert metrics.roc_auc([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1]) == 0.75
  assert metrics.roc_auc([1, 0, 1, 0], [1, 1, 1, 1]) == 0.5  # ties: half
  assert math.isnan(metrics.roc_auc([1, 1], [0.3, 0.4]))


def test_roc_auc_matches_sklearn_with_ties():
  rng = np.random.default_rng(0)
  labels = rng.uniform(size=200) < 0.1
  scores = np.round(rng.normal(size=200) + labels, 1)  # many ties
  assert metrics.roc_auc(labels, scores) == pytest.approx(
      sk_metrics.roc_auc_score(labels, scores), abs=1e-12)


def test_top_mask_size_and_ties():
  mask = metrics.top_mask(np.arange(20.0), 0.1)
  assert np.flatnonzero(mask).tolist() == [18, 19]
  # Ties at the threshold: the earlier index wins, exactly k marked.
  mask = metrics.top_mask([5, 5, 5, 1, 0, 0, 0, 0, 0, 0], 0.2)
  assert np.flatnonzero(mask).tolist() == [0, 1]
  with pytest.raises(ValueError, match="fraction"):
    metrics.top_mask([1, 2], 1.5)


def test_mobile_classification_perfect_inverted_random():
  propensity = np.arange(20.0)
  perfect = metrics.mobile_classification(2 * propensity, propensity)
  assert perfect == metrics.MobileClassification(1.0, 1.0, 1.0, 2)
  inverted = metrics.mobile_classification(-propensity, propensity)
  # Top-2 predicted = {0, 1}, true = {18, 19}: 4 of 20 wrong.
  assert inverted.accuracy == pytest.approx(16 / 20)
  assert inverted.overlap == 0.0
  assert inverted.roc_auc == 0.0


def test_configuration_metrics_type_a_only_and_broadcast():
  types = np.array([0, 0, 0, 1, 0])
  propensity = np.array([[1.0, 2.0, 3.0, 100.0, 4.0],
                         [4.0, 3.0, 2.0, -50.0, 1.0]])
  score = np.array([1.0, 2.0, 3.0, -7.0, 4.0])  # [n]: same for every t
  m = metrics.configuration_metrics(score, propensity, types)
  np.testing.assert_allclose(m.pearson, [1.0, -1.0])
  np.testing.assert_allclose(m.spearman, [1.0, -1.0])
  np.testing.assert_allclose(m.roc_auc, [1.0, 0.0])
  # All particles: the B particle breaks the perfect correlation.
  m_all = metrics.configuration_metrics(score, propensity, types,
                                        particle_type=None)
  assert m_all.pearson[0] < 0.5
  with pytest.raises(ValueError, match="propensity"):
    metrics.configuration_metrics(score, propensity.T, types)
  with pytest.raises(ValueError, match="prediction"):
    metrics.configuration_metrics(np.zeros((5, 3)), propensity, types)


def test_summarise_golden_with_nan():
  values = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]])
  s = metrics.summarise(values)
  np.testing.assert_allclose(s.mean, [3.0, 4.0])
  np.testing.assert_allclose(s.median, [3.0, 4.0])
  np.testing.assert_allclose(s.min, [1.0, 2.0])
  np.testing.assert_allclose(s.max, [5.0, 6.0])
  np.testing.assert_allclose(s.std, [math.sqrt(8 / 3), 2.0])
  assert s.count.tolist() == [3, 2]
  all_nan = metrics.summarise(np.array([[np.nan], [np.nan]]))
  assert np.isnan(all_nan.mean[0]) and all_nan.count[0] == 0
  scalar = metrics.summarise([0.5, 0.7])
  assert scalar.mean == pytest.approx(0.6) and scalar.count == 2
  with pytest.raises(ValueError, match="at least one"):
    metrics.summarise(np.zeros((0, 2)))
