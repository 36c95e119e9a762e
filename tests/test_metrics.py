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
  assert perfect == metrics.MobileClassification(
      roc_auc=1.0, balanced_accuracy=1.0, accuracy=1.0, overlap=1.0,
      n_mobile=2)
  inverted = metrics.mobile_classification(-propensity, propensity)
  # Top-2 predicted = {0, 1}, true = {18, 19}: 4 of 20 wrong, yet an
  # accuracy of 0.8; TPR = 0, TNR = 16/18.
  assert inverted.accuracy == pytest.approx(16 / 20)
  assert inverted.balanced_accuracy == pytest.approx(0.5 * (0 + 16 / 18))
  assert inverted.overlap == 0.0
  assert inverted.roc_auc == 0.0


def test_balanced_accuracy_by_hand():
  # n = 10, fraction 0.2: true mobile {8, 9}; the score's top 2 is {9, 0}.
  propensity = np.arange(10.0)
  score = np.array([100.0, 1, 2, 3, 4, 5, 6, 7, 8, 200])
  c = metrics.mobile_classification(score, propensity, fraction=0.2)
  # TP = 1 (9), FP = 1 (0), FN = 1 (8), TN = 7: TPR 1/2, TNR 7/8.
  assert c.balanced_accuracy == pytest.approx(0.5 * (1 / 2 + 7 / 8))
  assert c.accuracy == pytest.approx(8 / 10)
  assert c.overlap == pytest.approx(1 / 2)


def test_chance_levels_of_a_random_score():
  rng = np.random.default_rng(3)
  got = {"accuracy": [], "balanced_accuracy": [], "roc_auc": [],
         "overlap": []}
  for _ in range(200):
    c = metrics.mobile_classification(rng.normal(size=1000),
                                      rng.exponential(size=1000))
    for name in got:
      got[name].append(getattr(c, name))
  chance = metrics.chance_levels(0.1)
  assert chance["accuracy"] == pytest.approx(0.82)
  assert chance["balanced_accuracy"] == chance["roc_auc"] == 0.5
  for name, values in got.items():
    # 200 draws of 1000 particles: the means are within a few 0.001.
    assert np.mean(values) == pytest.approx(chance[name], abs=0.005), name
  assert set(metrics.HEADLINE_METRICS) <= set(metrics.METRIC_NAMES)
  assert "accuracy" not in metrics.HEADLINE_METRICS


def test_configuration_metrics_type_a_only_and_broadcast():
  types = np.array([0, 0, 0, 1, 0])
  propensity = np.array([[1.0, 2.0, 3.0, 100.0, 4.0],
                         [4.0, 3.0, 2.0, -50.0, 1.0]])
  score = np.array([1.0, 2.0, 3.0, -7.0, 4.0])  # [n]: same for every t
  m = metrics.configuration_metrics(score, propensity, types)
  np.testing.assert_allclose(m.pearson, [1.0, -1.0])
  np.testing.assert_allclose(m.spearman, [1.0, -1.0])
  np.testing.assert_allclose(m.roc_auc, [1.0, 0.0])
  # 4 A particles, top 10 %: k = 1 (particle 4, then particle 0).
  np.testing.assert_allclose(m.balanced_accuracy, [1.0, 0.5 * (0 + 2 / 3)])
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
  # sem = std(ddof=1) / sqrt(n): 2 / sqrt(3) and sqrt(8) / sqrt(2).
  np.testing.assert_allclose(s.sem, [2 / math.sqrt(3), 2.0])
  assert math.isnan(metrics.summarise([[0.5]]).sem[0])
  all_nan = metrics.summarise(np.array([[np.nan], [np.nan]]))
  assert np.isnan(all_nan.mean[0]) and all_nan.count[0] == 0
  scalar = metrics.summarise([0.5, 0.7])
  assert scalar.mean == pytest.approx(0.6) and scalar.count == 2
  with pytest.raises(ValueError, match="at least one"):
    metrics.summarise(np.zeros((0, 2)))


def test_paired_difference_golden():
  # d = a - b = [0.1, 0.3, 0.2, nan]: mean 0.2, std (ddof=1) 0.1, n = 3.
  a = np.array([[0.5, 1.0], [0.7, 1.0], [0.6, 1.0], [np.nan, 1.0]])
  b = np.array([[0.4, 0.5], [0.4, 0.5], [0.4, 0.5], [0.4, 0.5]])
  d = metrics.paired_difference(a, b)
  np.testing.assert_allclose(d.mean, [0.2, 0.5])
  np.testing.assert_allclose(d.sem[0], 0.1 / math.sqrt(3))
  np.testing.assert_allclose(d.n_sem[0], 0.2 / (0.1 / math.sqrt(3)))
  assert d.count.tolist() == [3, 4]
  # A constant difference has no spread: sem 0, n_sem undefined.
  assert d.sem[1] == 0.0 and math.isnan(d.n_sem[1])
  one = metrics.paired_difference([0.5], [0.25])
  assert one.mean == 0.25 and math.isnan(one.sem) and one.count == 1
  with pytest.raises(ValueError, match="equally shaped"):
    metrics.paired_difference(np.zeros((3, 2)), np.zeros((3, 1)))


def test_noise_ceiling_golden():
  # r_hh = 0.5: R = 2 * 0.5 / 1.5 = 2/3.
  assert metrics.noise_ceiling(0.5) == pytest.approx(math.sqrt(2 / 3))
  np.testing.assert_allclose(metrics.noise_ceiling([0.0, 1.0, 0.8]),
                             [0.0, 1.0, math.sqrt(1.6 / 1.8)])
  assert math.isnan(metrics.noise_ceiling(-0.1))
  assert math.isnan(metrics.noise_ceiling(float("nan")))


def test_split_half_reliability_of_truth_plus_noise():
  # Halves = truth + independent noise, var(truth) = 1, var(noise) = 0.5:
  # r_hh = 1 / 1.5 = 2/3; the full ensemble (the mean of the halves) has
  # noise variance 0.25, so its correlation with the truth is
  # sqrt(1 / 1.25), which the Spearman-Brown ceiling must reproduce.
  rng = np.random.default_rng(7)
  n = 200_000
  truth = 10.0 + rng.normal(size=n)
  halves = truth + rng.normal(scale=math.sqrt(0.5), size=(2, 1, n))
  types = np.zeros(n, int)
  types[:10] = 1
  halves[:, :, :10] = 1e3  # B particles would ruin the correlation
  r_hh = metrics.split_half_reliability(halves, types)
  assert r_hh.shape == (1,)
  assert r_hh[0] == pytest.approx(2 / 3, abs=0.005)
  ceiling = metrics.noise_ceiling(r_hh)
  assert ceiling[0] == pytest.approx(math.sqrt(1 / 1.25), abs=0.003)
  full = halves.mean(axis=0)[0]
  assert metrics.pearson(truth[10:], full[10:]) == pytest.approx(
      ceiling[0], abs=0.005)
  with pytest.raises(ValueError, match="propensity_halves must have shape"):
    metrics.split_half_reliability(halves[0], types)
