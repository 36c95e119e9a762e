"""Kob-Andersen parameters and the numpy energy helpers."""

import numpy as np
import pytest

from glassy_dynamics_tf.simulation import engine
from glassy_dynamics_tf.simulation import kob_andersen as ka


def test_parameters_are_kob_andersen_1995():
  # Kob & Andersen, PRE 51, 4626 (1995), Sec. II.
  np.testing.assert_array_equal(ka.EPSILON, [[1.0, 1.5], [1.5, 0.5]])
  np.testing.assert_array_equal(ka.SIGMA, [[1.0, 0.8], [0.8, 0.88]])
  np.testing.assert_allclose(ka.CUTOFF, [[2.5, 2.0], [2.0, 2.2]])
  assert ka.MASS == 1.0 and ka.TIMESTEP == 0.003 and ka.SHIFTED
  assert ka.n_small_particles(4096) == 819 and ka.n_small_particles(1000) == 200
  assert ka.first_peak_wavenumber(1.2) == pytest.approx(7.25)
  assert ka.first_peak_wavenumber(1.2 * 8) == pytest.approx(14.5)


def test_lammps_commands_match_verified_settings():
  lines = ka.lammps_pair_commands().splitlines()
  assert lines == [
      "pair_style lj/cut 2.5", "pair_modify shift yes",
      "pair_coeff 1 1 1.0 1.0 2.5", "pair_coeff 1 2 1.5 0.8 2.0",
      "pair_coeff 2 2 0.5 0.88 2.2"
  ]


def _lj(r, eps, sig):
  return 4 * eps * ((sig / r)**12 - (sig / r)**6)


@pytest.mark.parametrize("ti,tj", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("shifted", [True, False])
def test_dimer_energy_is_analytic_lj(ti, tj, shifted):
  eps, sig = ka.EPSILON[ti, tj], ka.SIGMA[ti, tj]
  rc = 2.5 * sig
  box = np.full(3, 10.0)
  for r in (0.9 * sig, 2.0**(1 / 6) * sig, 1.7 * sig, 0.999 * rc, 1.001 * rc):
    # Across the periodic boundary: particle 1 sits r to the left of 0.
    positions = np.array([[0.2, 5.0, 5.0], [0.2 - r + 10.0, 5.0, 5.0]])
    energy = ka.per_particle_potential_energy(positions, [ti, tj], box,
                                              shifted=shifted)
    want = _lj(r, eps, sig) - (_lj(rc, eps, sig) if shifted else 0.0)
    want = want if r < rc else 0.0
    np.testing.assert_allclose(energy, [want / 2, want / 2], atol=1e-12)


def test_minimum_of_aa_potential():
  r = 2.0**(1 / 6)
  assert ka.pair_energy(r, 0, 0, shifted=False) == pytest.approx(-1.0)


def test_numpy_energy_equals_lammps(small_liquid_state):
  state = small_liquid_state
  mine = ka.per_particle_potential_energy(state.positions, state.types,
                                          state.box)
  with engine.create_from_state(state) as sim:
    theirs = sim.potential_energy_per_particle()
    thermo = sim.thermo()
  np.testing.assert_allclose(mine, theirs, atol=1e-10)
  assert mine.mean() == pytest.approx(thermo["potential_energy"], abs=1e-10)


def test_lattice_start_has_no_overlaps_and_80_20_composition():
  box = np.full(3, (1000 / 1.2)**(1 / 3))
  positions, types = ka.lattice_configuration(1000, box, seed=0)
  assert positions.shape == (1000, 3) and types.dtype == np.int32
  assert np.sum(types == 1) == 200
  assert np.all(positions >= 0) and np.all(positions < box)
  distance, _, _ = ka.minimum_distance(positions, box)
  assert distance > 0.9


def test_minimum_distance_across_boundary():
  box = np.array([6.0, 7.0, 8.0])
  positions = np.array([[0.1, 1, 1], [5.8, 1, 1], [3, 3, 3]])
  distance, i, j = ka.minimum_distance(positions, box)
  assert distance == pytest.approx(0.3)
  assert {i, j} == {0, 1}


def test_box_smaller_than_twice_cutoff_is_rejected():
  with pytest.raises(ValueError, match="twice the cut-off"):
    ka.per_particle_potential_energy(np.zeros((2, 3)), [0, 0], np.full(3, 4.))
