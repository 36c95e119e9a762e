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


def _random_walk(n_steps, n_particles=40, seed=0):
  rng = np.random.default_rng(seed)
  steps = rng.normal(scale=0.03, size=(n_steps + 1, n_particles, 3))
  steps[0] = rng.uniform(0, 5, size=(n_particles, 3))
  return np.cumsum(steps, axis=0)  # [step, particle, xyz], unwrapped.


def _feed(acc, trajectory, target, shift=0.0):
  while acc.next_event() <= target:
    e = acc.next_event()
    acc.record(e, trajectory[e] + shift)
  acc.step = target


def test_multi_origin_isf_equals_the_brute_force_time_origin_average():
  trajectory = _random_walk(400)
  lags = propensity.time_grid(60)
  mask = np.arange(40) % 5 != 0
  acc = isf.MultiOriginIsf(lags, origin_interval=7, q=7.25, mask=mask,
                           cap=len(lags), stop_level=0.0)
  _feed(acc, trajectory, 400)
  mean = acc.mean()
  assert acc.n_origins == len(range(0, 401, 7))
  for j, lag in enumerate(lags[:len(mean)]):
    origins = [s for s in range(0, 401, 7) if s + lag <= 400]
    values = [isf.self_isf(np.linalg.norm(trajectory[s + lag] - trajectory[s],
                                          axis=-1), 7.25, mask)
              for s in origins]
    assert acc.isf_count[j] == len(origins)
    assert mean[j] == pytest.approx(np.mean(values), rel=1e-12)


def test_multi_origin_isf_checkpoint_resumes_in_a_shifted_frame():
  # A restarted LAMMPS session may unwrap into a frame shifted by box
  # images; the checkpoint keeps open origins relative to the current
  # positions, so the result is the same.
  trajectory = _random_walk(300, seed=1)
  lags = propensity.time_grid(100)
  mask = np.ones(40, bool)
  whole = isf.MultiOriginIsf(lags, 9, 7.25, mask, cap=20, stop_level=0.5)
  _feed(whole, trajectory, 300)
  split = isf.MultiOriginIsf(lags, 9, 7.25, mask, cap=20, stop_level=0.5)
  _feed(split, trajectory, 130)
  shift = np.zeros((40, 3))
  shift[::3, 0] = 9.0  # whole-box image changes of some particles.
  arrays = split.to_arrays(trajectory[130])
  resumed = isf.MultiOriginIsf.from_arrays(arrays, trajectory[130] + shift)
  _feed(resumed, trajectory, 300, shift=shift)
  np.testing.assert_array_equal(resumed.isf_count, whole.isf_count)
  np.testing.assert_allclose(resumed.isf_sum, whole.isf_sum, rtol=1e-12)
  assert resumed.cap == whole.cap and resumed.n_origins == whole.n_origins


def test_multi_origin_isf_cap_grows_until_the_stop_level():
  # Particles hop by a growing distance: the ISF decays slowly, so the
  # cap must grow past its first value to reach the stop level.
  lags = propensity.time_grid(2000)
  n = 50
  trajectory = np.zeros((2001, n, 3))
  trajectory[:, :, 0] = (np.arange(2001) / 2000.0)[:, None] * np.linspace(
      0.1, 1.5, n)[None]
  acc = isf.MultiOriginIsf(lags, 500, 7.25, np.ones(n, bool), cap=10,
                           stop_level=0.3)
  _feed(acc, trajectory, 2000)
  assert acc.cap > 10
  j = isf.first_crossing_index(acc.mean(), 0.3)
  assert j >= 0 and j < acc.cap
