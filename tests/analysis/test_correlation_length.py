"""Tests of analysis/correlation_length.py: C(r) on hand-made and
brute-force-checked fields, the exponential fit, and the study."""

import json

import math

import numpy as np
import pytest

from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.analysis import common
from glassy_dynamics_tf.analysis import correlation_length as cl

import synthetic_records


def test_golden_values_on_three_particles():
  # Box 10 σ; particle 1 sits 1 σ from particle 0 through the boundary.
  box = np.array([10.0, 10.0, 10.0])
  positions = np.array([[0.5, 5.0, 5.0], [9.5, 5.0, 5.0], [0.5, 7.0, 5.0]])
  field = np.array([1.0, -1.0, 0.0])   # mean 0, <δf²> = 2 / 3
  c = cl.pair_correlation(positions, box, field, bin_width=0.5, r_max=5.0)
  np.testing.assert_allclose(c.bin_edges, np.arange(11) * 0.5)
  # Pairs: (0, 1) at 1 σ, product -1; (0, 2) at 2 σ and (1, 2) at √5 σ,
  # products 0. C = mean product / (2 / 3).
  expected_counts = np.zeros(10, int)
  expected_counts[[2, 4]] = [1, 2]
  np.testing.assert_array_equal(c.counts, expected_counts)
  assert c.correlation[2] == pytest.approx(-1.5)
  assert c.correlation[4] == pytest.approx(0.0)
  assert np.isnan(c.correlation[[0, 1, 3, 5, 6, 7, 8, 9]]).all()
  # The mask drops particle 2: only the (0, 1) pair remains, variance 1.
  masked = cl.pair_correlation(positions, box, field, [True, True, False],
                               bin_width=0.5, r_max=5.0)
  assert masked.correlation[2] == pytest.approx(-1.0)
  assert masked.counts.sum() == 1


def _brute_force(positions, box, field, edges, subtract_mean=True):
  field = np.asarray(field, np.float64).reshape(len(positions), -1)
  if subtract_mean:
    field = field - field.mean(axis=0)
  variance = np.mean(np.sum(field**2, axis=1))
  sums = np.zeros(len(edges) - 1)
  counts = np.zeros(len(edges) - 1, int)
  for i in range(len(positions)):
    for j in range(i + 1, len(positions)):
      r = np.linalg.norm(periodic.minimum_image(positions[j] - positions[i],
                                                box))
      b = np.searchsorted(edges, r, side="right") - 1
      if 0 <= b < len(sums):
        sums[b] += field[i] @ field[j]
        counts[b] += 1
  with np.errstate(invalid="ignore"):
    return np.where(counts > 0, sums / counts / variance, np.nan), counts


@pytest.mark.parametrize("dim,subtract_mean", [(1, True), (3, True),
                                               (3, False)])
def test_matches_brute_force(dim, subtract_mean):
  # 300 particles: two row chunks, a non-cubic box.
  rng = np.random.default_rng(dim)
  box = np.array([6.0, 7.0, 8.0])
  positions = rng.uniform(0, 1, size=(300, 3)) * box
  field = rng.normal(size=(300, dim)) + positions[:, :1]
  mask = rng.uniform(size=300) < 0.8
  c = cl.pair_correlation(positions, box, field, mask, bin_width=0.25,
                          subtract_mean=subtract_mean)
  expected, counts = _brute_force(positions[mask], box, field[mask],
                                  c.bin_edges, subtract_mean)
  assert c.bin_edges[-1] == pytest.approx(3.0)   # half the smallest edge
  np.testing.assert_array_equal(c.counts, counts)
  np.testing.assert_allclose(c.correlation, expected, rtol=1e-10,
                             atol=1e-12)


def _exponential_field(n, box, length, rng):
  """A vector field whose dot products are exp(-r / length), periodised.

  The periodic sum over images of exp(-|r|/length) is a positive-definite
  kernel on the torus (Fourier coefficients ∝ (1 + k² length²)⁻² > 0),
  so rows of V sqrt(Λ) of its eigen-decomposition reproduce it.
  """
  positions = rng.uniform(0, 1, size=(n, 3)) * box
  d = periodic.minimum_image(positions[:, None] - positions[None], box)
  shifts = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1)
                     for c in (-1, 0, 1)]) * box
  kernel = sum(np.exp(-np.linalg.norm(d + s, axis=-1) / length)
               for s in shifts)
  eigenvalues, vectors = np.linalg.eigh(kernel)
  assert eigenvalues.min() > -1e-8 * eigenvalues.max()
  return positions, vectors * np.sqrt(np.maximum(eigenvalues, 0.0))


def test_recovers_the_length_of_an_exponential_field():
  rng = np.random.default_rng(0)
  box = np.full(3, 7.0)
  positions, field = _exponential_field(400, box, 0.6, rng)
  c = cl.pair_correlation(positions, box, field, bin_width=0.1,
                          subtract_mean=False)
  # Dot products are the kernel: C(r) is its bin average (C(0) = 1).
  fit = cl.fit_exponential(c.r, c.correlation, c.counts, floor=0.01)
  assert fit.length == pytest.approx(0.6, rel=0.03)
  assert fit.amplitude == pytest.approx(1.0, rel=0.05)
  assert fit.n_points >= 20
  # With the mean subtracted the estimator is biased down by the field's
  # box average (≈ 8π 0.6³ / 343 = 0.016) but the length barely moves.
  c_mean = cl.pair_correlation(positions, box, field, bin_width=0.1)
  fit_mean = cl.fit_exponential(c_mean.r, c_mean.correlation,
                                c_mean.counts, floor=0.05)
  assert fit_mean.length == pytest.approx(0.6, rel=0.1)


def test_fit_exponential_of_a_drop_faster_than_the_bins():
  """A drop by orders of magnitude within one bin resolves no length
  (this once crashed the study with an overflow in A at r = 0)."""
  r = np.arange(3.0, 3.5, 0.1)
  fit = cl.fit_exponential(r, 5.0 * np.exp(-(r - 3.0) / 0.004))
  assert math.isnan(fit.length) and fit.n_points == 5
  assert fit.r_start == pytest.approx(3.0)


def test_fit_exponential_far_from_the_origin_keeps_a_finite_curve():
  """A resolved length far below r_start: A at r = 0 overflows (NaN), the
  curve at r_start stays finite and is what the figure draws."""
  r = np.arange(80.0, 82.0, 0.1)
  fit = cl.fit_exponential(r, 5.0 * np.exp(-(r - 80.0) / 0.1))
  assert fit.length == pytest.approx(0.1, rel=1e-4)
  assert math.isnan(fit.amplitude)
  assert fit.start_value == pytest.approx(5.0, rel=1e-4)


def test_fit_exponential_exact_and_window():
  r = np.arange(0.05, 5.0, 0.1)
  values = 2.0 * np.exp(-r / 0.8)
  values[0] = 0.5               # a rising start: the fit begins at the peak
  values[30:] = -0.01           # the noise floor ends the decaying part
  fit = cl.fit_exponential(r, values, floor=0.0)
  assert fit.length == pytest.approx(0.8, rel=1e-6)
  assert fit.amplitude == pytest.approx(2.0, rel=1e-6)
  assert fit.start_value == pytest.approx(2.0 * np.exp(-r[1] / 0.8),
                                          rel=1e-6)
  assert fit.r_start == pytest.approx(r[1])
  assert fit.r_end == pytest.approx(r[29])
  assert fit.n_points == 29
  floor_fit = cl.fit_exponential(r, values, floor=2.0 * np.exp(-2.0))
  assert floor_fit.r_end < 1.6 + 1e-9 and floor_fit.length == pytest.approx(
      0.8, rel=1e-6)
  rising = cl.fit_exponential(r[:10], np.arange(10.0))
  assert np.isnan(rising.length)          # peak at the end: < 3 points
  flat = cl.fit_exponential(r[:5], np.ones(5))
  assert np.isnan(flat.length) and flat.n_points == 5
  assert np.isnan(cl.fit_exponential(r, np.full(r.shape, np.nan)).length)


def test_combine_weights_by_pairs():
  edges = np.array([0.0, 1.0, 2.0])
  a = cl.CorrelationFunction(edges, np.array([0.5, 1.5]),
                             np.array([1.0, np.nan]), np.array([1, 0]))
  b = cl.CorrelationFunction(edges, np.array([0.5, 1.5]),
                             np.array([0.0, 0.5]), np.array([3, 2]))
  combined = cl.combine([a, b])
  np.testing.assert_allclose(combined.correlation, [0.25, 0.5])
  np.testing.assert_array_equal(combined.counts, [4, 2])
  other = cl.CorrelationFunction(np.array([0.0, 0.5]), np.array([0.25]),
                                 np.array([1.0]), np.array([1]))
  with pytest.raises(common.AnalysisError, match="different bins"):
    cl.combine([a, other])


def test_errors_name_the_problem():
  box = np.full(3, 6.0)
  positions = np.random.default_rng(0).uniform(0, 6, size=(10, 3))
  with pytest.raises(common.AnalysisError, match="constant"):
    cl.pair_correlation(positions, box, np.ones(10))
  with pytest.raises(common.AnalysisError, match="half the smallest"):
    cl.pair_correlation(positions, box, np.arange(10.0), r_max=4.0)
  with pytest.raises(common.AnalysisError, match=r"field: expected \[10\]"):
    cl.pair_correlation(positions, box, np.arange(9.0))


def test_run_on_true_propensity_without_model(tmp_path):
  records = synthetic_records.make_records(2, n_particles=200)
  report = cl.run(None, ["a", "b"], records, str(tmp_path),
                  fields=("propensity",), bin_width=0.2)
  with open(tmp_path / "correlation_length.json") as f:
    written = json.load(f)
  assert sorted(written["fields"]) == ["propensity_0", "propensity_1"]
  entry = written["fields"]["propensity_0"]
  assert len(entry["correlation"]) == len(written["r"])
  assert len(entry["length_per_configuration"]) == 2
  assert (tmp_path / "correlation_length.png").stat().st_size > 0
  assert "ξ =" in cl.summary(report)
  with pytest.raises(common.AnalysisError, match="needs --model"):
    cl.run(None, ["a"], records[:1], str(tmp_path), fields=("prediction",))
  with pytest.raises(common.AnalysisError, match="unknown field"):
    cl.run(None, ["a"], records[:1], str(tmp_path), fields=("energy",))


def test_run_on_predictions_and_embeddings(make_network, tmp_path):
  model = common.model_from_network(make_network(num_recurrences=1),
                                    [0.5, 2.0])
  records = synthetic_records.make_records(2, n_particles=200)
  report = cl.run(model, ["a", "b"], records, str(tmp_path),
                  fields=("prediction", "embedding", "embedding_pc1"),
                  bin_width=0.2, figure=False)
  assert sorted(report["fields"]) == ["embedding", "embedding_pc1",
                                      "prediction_0", "prediction_1"]
  # A smooth field: nearby type-A pairs are positively correlated.
  for entry in report["fields"].values():
    assert np.nanmax(entry["correlation"][:8]) > 0
