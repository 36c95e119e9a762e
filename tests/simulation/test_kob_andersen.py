"""Kob-Andersen parameters and the numpy energy helpers."""

import itertools

import numpy as np
import pytest

from glassy_dynamics_tf import periodic
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


def test_cutoff_is_per_pair_type():
  # AB cut at 2.0, AA at 2.5: at r = 2.2 only the AA pair interacts.
  box = np.array([10.0, 11.0, 12.0])
  positions = np.array([[2.0, 2.0, 2.0], [4.2, 2.0, 2.0]])
  assert np.all(ka.per_particle_potential_energy(positions, [0, 1], box,
                                                 shifted=False) == 0.0)
  e_aa = ka.per_particle_potential_energy(positions, [0, 0], box,
                                          shifted=False)
  np.testing.assert_allclose(e_aa, [_lj(2.2, 1.0, 1.0) / 2] * 2)


def _brute_force_energy(positions, types, box, shifted):
  """½ Σ_j V(r_ij) over all pairs and minimum images, O(N²)."""
  e = np.zeros(len(types))
  for i, j in itertools.combinations(range(len(types)), 2):
    d = positions[j] - positions[i]
    d -= box * np.round(d / box)  # nearest image (every edge > 2 r_c)
    r = np.linalg.norm(d)
    eps, sig = ka.EPSILON[types[i], types[j]], ka.SIGMA[types[i], types[j]]
    rc = ka.CUTOFF_FACTOR * sig
    v = _lj(r, eps, sig) - (_lj(rc, eps, sig) if shifted else 0.0)
    if r < rc:
      e[i] += v / 2
      e[j] += v / 2
  return e


@pytest.mark.parametrize("shifted", [True, False])
def test_energy_matches_brute_force_and_is_invariant(shifted):
  box = np.array([10.0, 11.0, 12.0])  # non-cubic on purpose
  rng = np.random.default_rng(0)
  positions = rng.uniform(0, 1, (120, 3)) * box
  types = (rng.uniform(size=120) < 0.2).astype(np.int32)
  e = ka.per_particle_potential_energy(positions, types, box, shifted)
  np.testing.assert_allclose(
      e, _brute_force_energy(positions, types, box, shifted), rtol=1e-9,
      atol=1e-9)
  translated = positions + np.array([3.3, -7.1, 25.0])  # not wrapped
  np.testing.assert_allclose(
      ka.per_particle_potential_energy(translated, types, box, shifted), e,
      rtol=1e-9, atol=1e-9)
  perm = rng.permutation(len(types))
  np.testing.assert_allclose(
      ka.per_particle_potential_energy(positions[perm], types[perm], box,
                                       shifted), e[perm], rtol=1e-9,
      atol=1e-9)


def test_small_box_sums_every_image():
  # One A particle alone in a cubic box of 1.1: its 6 face images at 1.1,
  # 12 edge images at 1.1·√2, 8 corner images at 1.1·√3, ... up to 2.5;
  # e = ½ Σ over all of them (each image pair counts half to each end).
  box = np.full(3, 1.1)
  shifts = np.stack(np.meshgrid(*[np.arange(-3, 4)] * 3, indexing="ij"),
                    -1).reshape(-1, 3)
  r = np.linalg.norm(shifts * box, axis=-1)
  r = r[(r > 0) & (r < 2.5)]
  e = ka.per_particle_potential_energy([[0.5, 0.5, 0.5]], [0], box,
                                       shifted=False)
  np.testing.assert_allclose(e, [0.5 * _lj(r, 1.0, 1.0).sum()], rtol=1e-12)


@pytest.mark.parametrize("n,box", [
    (8, [2.0, 2.2, 2.4]),    # edges < r_c: particles see their own images
    (40, [3.1, 3.4, 3.3]),   # edges < 2 r_c: pairs have several images
])
@pytest.mark.parametrize("shifted", [True, False])
def test_small_box_energy_equals_lammps(n, box, shifted):
  # LAMMPS sums every image within the cut-off when the box is smaller than
  # it (multiple ghost images); the numpy helper must agree per particle.
  box = np.asarray(box)
  positions, types = ka.lattice_configuration(n, box, seed=5)
  positions += np.random.default_rng(0).uniform(-0.1, 0.1, positions.shape)
  types[:2] = [0, 1]  # both species even for n = 8
  mine = ka.per_particle_potential_energy(positions, types, box, shifted)
  with engine.KobAndersenSimulation(positions, types, box,
                                    shifted=shifted) as sim:
    theirs = sim.potential_energy_per_particle()
    thermo = sim.thermo()
  np.testing.assert_allclose(mine, theirs, atol=1e-10)
  assert mine.mean() == pytest.approx(thermo["potential_energy"], abs=1e-10)


def test_bad_inputs_are_rejected_by_name():
  with pytest.raises(periodic.TooManyImagesError, match="cut-off 2.5"):
    ka.per_particle_potential_energy(np.zeros((2000, 3)), np.zeros(2000, int),
                                     np.full(3, 0.5))
  with pytest.raises(ValueError, match=r"types must have shape \[2\]"):
    ka.per_particle_potential_energy(np.zeros((2, 3)), [0], np.full(3, 6.))
  with pytest.raises(ValueError, match=r"types must be 0 \(A\) or 1 \(B\)"):
    ka.per_particle_potential_energy([[0, 0, 0], [1, 0, 0]], [0, 2],
                                     np.full(3, 6.))
