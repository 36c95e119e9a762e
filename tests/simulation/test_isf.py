"""Self-ISF, crossing times and the log time grid."""

import math

import numpy as np
import pytest

from glassy_dynamics_tf.simulation import isf
from glassy_dynamics_tf.simulation import propensity


def test_isotropic_isf_values():
  q = 7.25
  assert isf.self_isf(np.zeros(5), q) == 1.0
  d = np.array([0.3, 0.5, 1.0])
  np.testing.assert_allclose(isf.self_isf(d, q),
                             np.mean(np.sin(q * d) / (q * d)))
  mask = np.array([True, False, False])
  assert isf.self_isf(d, q, mask) == pytest.approx(
      math.sin(q * 0.3) / (q * 0.3))


def test_isotropic_form_is_direction_average():
  # Average of cos(q·d) over random directions of q -> sin(qd)/(qd).
  rng = np.random.default_rng(0)
  directions = rng.normal(size=(200000, 3))
  directions /= np.linalg.norm(directions, axis=1, keepdims=True)
  d = np.array([0.0, 0.0, 0.4])
  mc = np.mean(np.cos(7.25 * directions @ d))
  assert mc == pytest.approx(isf.self_isf([0.4], 7.25), abs=5e-3)


def test_crossing_time_interpolates_in_log_time():
  times = np.array([0.1, 1.0, 10.0])
  values = np.array([0.9, 0.5, 0.1])
  assert isf.crossing_time(times, values, 0.5) == pytest.approx(1.0)
  assert isf.crossing_time(times, values, 0.7) == pytest.approx(10**-0.5)
  assert math.isnan(isf.crossing_time(times, values, 0.05))
  assert isf.crossing_time(times, values, 0.95) == 0.1
  assert isf.nearest_grid_index(times, 0.5) == 1
  assert isf.nearest_grid_index(times, 0.2) == 0


def test_time_grid_is_log_spaced_like_the_published_one():
  grid = propensity.time_grid(10**6)
  assert grid[0] == 1 and grid[-1] == 10**6
  assert np.all(np.diff(grid) > 0)
  np.testing.assert_array_equal(grid[:10], np.arange(1, 11))
  ratios = grid[60:] / grid[59:-1]
  np.testing.assert_allclose(ratios, 10**0.04, rtol=0.02)
  with_extra = propensity.time_grid(1000, extra_steps=[44, 777])
  assert 44 in with_extra and 777 in with_extra


def test_choose_timescales_and_propensity():
  grid_times = np.array([0.1, 0.2, 0.4, 0.8])
  mean_isf = np.array([0.95, 0.8, 0.5, 0.2])
  ts = propensity.choose_timescales(grid_times, mean_isf, (0.9, 0.5, 0.1))
  assert ts.missing == [0.1]
  # 0.9 is crossed a third of the way (in log t) from 0.1 to 0.2: nearest 0.
  np.testing.assert_array_equal(ts.grid_indices, [0, 2])
  runs = [
      propensity.RunResult(np.arange(1, 5), np.full((4, 3), v, np.float32),
                           mean_isf, 1) for v in (1.0, 3.0)
  ]
  np.testing.assert_allclose(propensity.propensity(runs, ts.grid_indices),
                             np.full((2, 3), 2.0))
  fixed = propensity.choose_timescales(grid_times, mean_isf, (), (0.4,))
  np.testing.assert_array_equal(fixed.grid_indices, [2])
  assert math.isnan(fixed.crossing_times[0])
