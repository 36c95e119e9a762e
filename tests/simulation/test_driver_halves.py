"""The driver keeps two half-ensemble propensities per record (`_finalise`).

The split-half noise ceiling of evaluation.py needs, for every configuration,
the propensity of the even-indexed runs and of the odd-indexed runs. The first
tests feed `_finalise` hand-made run files (no LAMMPS); the last one runs a
tiny simulation end to end.
"""

import os

import numpy as np
import pytest

from glassy_dynamics_tf.io import npz_format
from glassy_dynamics_tf.simulation import driver
from glassy_dynamics_tf.simulation import kob_andersen as ka
from glassy_dynamics_tf.simulation import propensity as propensity_lib

N_PARTICLES = 4
# Fixed times of 10 and 100 MD steps: exactly on the grid.
TIMES = (10 * ka.TIMESTEP, 100 * ka.TIMESTEP)


def _finalise_hand_made_runs(tmp_path, displacements):
  """Writes one run file per [G, n] displacement array, then `_finalise`.

  Returns:
    (record, grid indices of TIMES).
  """
  n_runs = len(displacements)
  grid_steps = propensity_lib.time_grid(100, extra_steps=[10, 100])
  run_dir = str(tmp_path / "work" / "configuration_00000")
  out_path = driver.configuration_path(str(tmp_path), 0)
  rng = np.random.default_rng(0)
  positions = rng.uniform(0, 5, (N_PARTICLES, 3)).astype(np.float32)
  c = driver._Configuration(  # pylint: disable=protected-access
      index=0, positions=positions, types=np.array([0, 0, 0, 1], np.int32),
      box=np.full(3, 5.0, np.float32), seeds=np.arange(1, n_runs + 1),
      run_dir=run_dir, out_path=out_path, tau_alpha=None, q=7.25)
  isf = np.linspace(0.99, 0.5, grid_steps.size)
  for r, d in enumerate(displacements):
    driver._save_run(  # pylint: disable=protected-access
        c.run_path(r), propensity_lib.RunResult(
            steps=grid_steps, displacements=np.asarray(d, np.float32),
            isf=isf, seed=r + 1), 0)
  spec = driver.SimulationSpec(temperature=1.0, n_particles=N_PARTICLES,
                               n_runs=n_runs, times=TIMES)
  assert driver._finalise(  # pylint: disable=protected-access
      c, spec, grid_steps, log=lambda m: None)
  record = npz_format.load_npz(out_path)
  grid_times = grid_steps * ka.TIMESTEP
  indices = [int(np.argmin(np.abs(grid_times - t))) for t in TIMES]
  np.testing.assert_allclose(grid_times[indices], TIMES)
  return record, indices


def test_halves_of_three_runs_are_runs_0_2_and_run_1(tmp_path):
  g = propensity_lib.time_grid(100, extra_steps=[10, 100]).size
  # Run r moves particle i by f_r * (i + 1) * 0.25 at every grid point, with
  # f = 1, 2, 4: exact in float32, and so are the means of the halves.
  base = np.outer(np.ones(g), np.arange(1, N_PARTICLES + 1)) * 0.25
  runs = [base * f for f in (1.0, 2.0, 4.0)]
  record, _ = _finalise_hand_made_runs(tmp_path, runs)
  halves = record.propensity_halves
  assert halves.shape == (2, 2, N_PARTICLES) and halves.dtype == np.float32
  per_particle = 0.25 * np.arange(1, N_PARTICLES + 1)
  # Even runs 0 and 2: (1 + 4) / 2 = 2.5; odd run 1: 2; all three: 7/3.
  np.testing.assert_array_equal(halves[0], np.stack([2.5 * per_particle] * 2))
  np.testing.assert_array_equal(halves[1], np.stack([2.0 * per_particle] * 2))
  np.testing.assert_allclose(record.propensity,
                             np.stack([7 / 3 * per_particle] * 2), rtol=1e-6)


def test_halves_pick_the_right_runs_and_times(tmp_path):
  rng = np.random.default_rng(5)
  g = propensity_lib.time_grid(100, extra_steps=[10, 100]).size
  runs = [rng.uniform(0, 2, (g, N_PARTICLES)).astype(np.float32)
          for _ in range(5)]
  record, indices = _finalise_hand_made_runs(tmp_path, runs)
  stacked = np.stack(runs).astype(np.float64)[:, indices]  # [R, T, n]
  want_even = stacked[[0, 2, 4]].mean(0).astype(np.float32)
  want_odd = stacked[[1, 3]].mean(0).astype(np.float32)
  np.testing.assert_array_equal(record.propensity_halves[0], want_even)
  np.testing.assert_array_equal(record.propensity_halves[1], want_odd)
  np.testing.assert_array_equal(record.propensity,
                                stacked.mean(0).astype(np.float32))
  assert not np.allclose(want_even, want_odd)


def test_one_run_has_no_halves(tmp_path):
  g = propensity_lib.time_grid(100, extra_steps=[10, 100]).size
  record, _ = _finalise_hand_made_runs(tmp_path,
                                       [np.ones((g, N_PARTICLES)) * 0.5])
  assert record.propensity_halves is None
  assert record.n_runs == 1


def test_simulated_record_keeps_halves(tmp_path):
  # Seconds: N = 250 at T = 1.0, a very short preparation, 2 runs, as in
  # test_driver.py.
  spec = driver.SimulationSpec(
      temperature=1.0, density=1.2, n_particles=250, n_configurations=1,
      n_runs=2, isf_levels=(0.9, 0.5), seed=3, melt_time=1.0, cool_time=1.0,
      equilibration_tau_alpha=2.0)
  (path,) = driver.simulate(spec, str(tmp_path), num_workers=1,
                            log=lambda m: None)
  assert os.path.basename(path) == "configuration_00000.npz"
  record = npz_format.load_npz(path)
  halves = record.propensity_halves
  assert halves.shape == (2, 2, 250) and halves.dtype == np.float32
  # Two runs: each half is one run, and their mean is the propensity.
  np.testing.assert_allclose(halves.astype(np.float64).mean(0),
                             record.propensity, rtol=1e-6, atol=1e-7)
  assert not np.allclose(halves[0], halves[1])
  # Independent runs of the same configuration agree, but not perfectly.
  is_a = record.types == 0
  r = np.corrcoef(halves[0, 1, is_a], halves[1, 1, is_a])[0, 1]
  assert 0.0 < r < 0.99
