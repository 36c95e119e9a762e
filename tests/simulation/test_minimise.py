"""Energy minimisation with LAMMPS (glassy_dynamics_tf.simulation.minimise).

A dimer gives hand-derived golden values (the Lennard-Jones minimum); the
conftest's N = 250 liquid (melted at T = 2, far above its inherent
structure) checks every method against independent numpy energies, forces
and stress.
"""

import dataclasses

import numpy as np
import pytest

from glassy_dynamics_tf import periodic
from glassy_dynamics_tf import soft_modes
from glassy_dynamics_tf.simulation import engine
from glassy_dynamics_tf.simulation import kob_andersen as ka
from glassy_dynamics_tf.simulation import minimise

SOFT_MODES = soft_modes.DEFAULT_MINIMISER  # FIRE alone, 2-norm
AQS = minimise.MinimiserSettings()        # FIRE + CG, largest component
CG = dataclasses.replace(AQS, method="cg")
BIG_BOX = np.array([8.0, 9.0, 10.0])     # non-cubic, images out of range


def _force_in_norm(forces, norm):
  return (np.linalg.norm(forces) if norm == "two" else np.abs(forces).max())


def _virial_stress_xy(positions, types, box):
  """σ_xy = (1/V) Σ_pairs V'(r) x y / r, the KA pair virial (= −P_xy)."""
  pairs = periodic.neighbour_pairs(positions, box, ka.MAX_CUTOFF)
  ti, tj = types[pairs.i], types[pairs.j]
  eps, sig = ka.EPSILON[ti, tj], ka.SIGMA[ti, tj]
  r = pairs.distances
  inside = r < ka.CUTOFF[ti, tj]
  dv_dr = 4 * eps * (-12 * sig**12 / r**13 + 6 * sig**6 / r**7)
  v = pairs.vectors
  terms = np.where(inside, dv_dr * v[:, 0] * v[:, 1] / r, 0.0)
  return terms.sum() / np.prod(box)


@pytest.fixture(name="minima", scope="module")
def _minima(small_liquid_state):
  s = small_liquid_state
  return {name: minimise.minimise(s.positions, s.types, s.box, settings)
          for name, settings in (("fire", SOFT_MODES), ("fire+cg", AQS),
                                 ("cg", CG))}


# -------------------------------------------------------------- golden ----


@pytest.mark.parametrize("settings", [SOFT_MODES, AQS, CG],
                         ids=["fire", "fire+cg", "cg"])
@pytest.mark.parametrize("pair", [(0, 0), (0, 1), (1, 1)])
def test_dimer_relaxes_to_the_lennard_jones_minimum(settings, pair):
  # Two particles 1.6 σ_αβ apart along y, across the y boundary: the force
  # vanishes at r_m = 2^(1/6) σ_αβ, where the pair energy is −ε_αβ minus
  # the shift V(r_c) = 4 ε (2.5⁻¹² − 2.5⁻⁶); each particle carries half.
  # The stiffness there is 72 ε / (2^(1/3) σ²) (≥ 40 ε/σ_AA²), so a force
  # of 1e-10 leaves r within ~1e-11 σ of r_m.
  eps, sig = ka.EPSILON[pair], ka.SIGMA[pair]
  positions = np.array([[4.0, 0.3, 5.0],
                        [4.0, 0.3 - 1.6 * sig + BIG_BOX[1], 5.0]])
  result = minimise.minimise(positions, pair, BIG_BOX, settings)
  d = periodic.minimum_image(result.positions[1] - result.positions[0],
                             BIG_BOX)
  np.testing.assert_allclose(np.abs(d), [0.0, 2**(1 / 6) * sig, 0.0],
                             atol=1e-9)
  shift = 4 * eps * (2.5**-12 - 2.5**-6)
  assert result.potential_energy == pytest.approx(0.5 * (-eps - shift),
                                                  abs=1e-12)
  np.testing.assert_allclose(result.particle_energies,
                             0.5 * (-eps - shift), atol=1e-12)
  start = 4 * eps * (1.6**-12 - 1.6**-6) - shift
  assert result.initial_potential_energy == pytest.approx(0.5 * start,
                                                          rel=1e-12)
  # At the minimum there is no tension, hence no virial stress.
  assert abs(result.stress) < 1e-10 and abs(result.pressure) < 1e-10
  assert result.max_force <= 2 * settings.force_tolerance
  assert 0 < result.iterations < 1000
  np.testing.assert_array_equal(result.types, pair)
  np.testing.assert_array_equal(result.box, BIG_BOX)


# -------------------------------------------------------------- liquid ----


@pytest.mark.parametrize("name", ["fire", "fire+cg", "cg"])
def test_liquid_reaches_an_inherent_structure(small_liquid_state, minima,
                                              name):
  s = small_liquid_state
  result = minima[name]
  settings = {"fire": SOFT_MODES, "fire+cg": AQS, "cg": CG}[name]
  # A liquid at T = 2 sits far above its inherent structure (~ −7.5 ε).
  assert result.potential_energy < result.initial_potential_energy - 1.0
  assert -7.8 < result.potential_energy < -7.3
  assert result.initial_potential_energy == pytest.approx(
      ka.per_particle_potential_energy(s.positions, s.types, s.box).mean(),
      abs=1e-10)
  # LAMMPS' energies and stress agree with independent numpy sums.
  energies = ka.per_particle_potential_energy(result.positions,
                                              result.types, result.box)
  np.testing.assert_allclose(result.particle_energies, energies, atol=1e-10)
  assert result.potential_energy == pytest.approx(energies.mean(),
                                                  abs=1e-10)
  assert result.stress == pytest.approx(
      _virial_stress_xy(result.positions, result.types, result.box),
      abs=1e-9)
  # Forces below the tolerance in the method's norm, from this package's
  # analytic forces, not from LAMMPS (round-off of the fresh neighbour
  # list: a factor 2).
  forces = soft_modes.forces(result.positions, result.types, result.box)
  assert _force_in_norm(forces, settings.norm) <= (
      2 * settings.force_tolerance)
  assert result.max_force == pytest.approx(np.abs(forces).max(), rel=1e-3,
                                           abs=1e-12)
  assert result.force_norm == pytest.approx(np.linalg.norm(forces),
                                            rel=1e-3, abs=1e-12)
  np.testing.assert_array_equal(result.types, s.types)
  assert np.all((result.positions >= 0) & (result.positions < s.box))


def test_minimum_stays_a_minimum(minima):
  first = minima["fire+cg"]
  again = minimise.minimise(first.positions, first.types, first.box, AQS)
  moved = periodic.minimum_image(again.positions - first.positions,
                                 first.box)
  assert np.abs(moved).max() < 1e-6
  assert again.potential_energy == pytest.approx(first.potential_energy,
                                                 abs=1e-12)
  assert again.initial_potential_energy == pytest.approx(
      first.potential_energy, abs=1e-12)
  assert again.iterations < 0.1 * first.iterations
  # One MPI rank is deterministic: the same input, the same minimum.
  twice = minimise.minimise(first.positions, first.types, first.box, AQS)
  np.testing.assert_array_equal(twice.positions, again.positions)


def test_cg_stage_polishes_a_fire_minimum(small_liquid_state, minima):
  # The soft-modes baseline's optional CG stage: FIRE to a 2-norm of 1e-10,
  # then CG to 1e-11 (above the 2-norm's rounding floor).
  s = small_liquid_state
  fire = minima["fire"]
  settings = dataclasses.replace(SOFT_MODES, method="fire+cg",
                                 fire_force_tolerance=1e-10,
                                 force_tolerance=1e-11,
                                 cg_max_iterations=2000)
  polished = minimise.minimise(s.positions, s.types, s.box, settings)
  assert polished.force_norm < 1e-11
  assert polished.potential_energy <= fire.potential_energy + 1e-12
  assert polished.iterations > fire.iterations


def test_run_minimiser_in_an_open_session(minima):
  # The shear loop's use: a session it holds, stages reported.
  first = minima["fire+cg"]
  with engine.KobAndersenSimulation(first.positions, first.types,
                                    first.box) as sim:
    minimise.add_virial_compute(sim.lmp)
    before = minimise.observe(sim.lmp)
    run = minimise.run_minimiser(sim.lmp, CG)
    after = minimise.observe(sim.lmp)
  # Already at a minimum: CG alone, at once.
  assert run.stages == ("cg",) and run.converged
  assert run.iterations <= 5 and not run.last_stage_exhausted
  assert run.force <= CG.force_tolerance
  assert after.potential_energy == pytest.approx(before.potential_energy,
                                                 abs=1e-12)
  assert before.stress == pytest.approx(first.stress, abs=1e-12)


def test_energy_tolerance_stops_early_and_counts_as_converged(
    small_liquid_state, minima):
  s = small_liquid_state
  loose = dataclasses.replace(SOFT_MODES, energy_tolerance=1e-6)
  result = minimise.minimise(s.positions, s.types, s.box, loose)
  assert result.iterations < minima["fire"].iterations
  assert result.force_norm > SOFT_MODES.force_tolerance
  assert result.potential_energy < result.initial_potential_energy - 1.0


# ------------------------------------------------------------ failures ----


def test_iteration_limit_is_an_error_that_names_the_stage(
    small_liquid_state):
  s = small_liquid_state
  with pytest.raises(minimise.MinimiserError,
                     match=r"min_style fire .*used all 10 iterations.*"
                           r"force_tolerance = 1e-10"):
    minimise.minimise(s.positions, s.types, s.box,
                      dataclasses.replace(SOFT_MODES, max_iterations=10))
  # CG stalls or runs out, FIRE finishes and runs out as well.
  with pytest.raises(minimise.MinimiserError,
                     match="min_style fire .*used all 5 iterations"):
    minimise.minimise(s.positions, s.types, s.box,
                      dataclasses.replace(CG, cg_max_iterations=5,
                                          max_iterations=5))


def test_overlapping_particles_are_refused():
  same = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [4.0, 4.0, 4.0]])
  with pytest.raises(minimise.MinimiserError,
                     match="could not minimise.*initial potential energy "
                           "is inf"):
    minimise.minimise(same, [0, 0, 0], BIG_BOX)
  close = same + [[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.0, 0.0, 0.0]]
  with pytest.raises(minimise.MinimiserError,
                     match="could not minimise.*min_style fire failed"):
    minimise.minimise(close, [0, 0, 0], BIG_BOX)


@pytest.mark.parametrize("change,message", [
    ({"method": "bfgs"}, "method must be one of"),
    ({"norm": "max"}, "norm must be one of"),
    ({"force_tolerance": 0.0}, "force_tolerance must be finite and > 0"),
    ({"force_tolerance": float("nan")}, "force_tolerance must be finite"),
    ({"fire_force_tolerance": 1e-12}, r"fire_force_tolerance \(1e-12\) "
                                      r"must be >= force_tolerance"),
    ({"energy_tolerance": -1.0}, "energy_tolerance must be finite"),
    ({"max_iterations": 0}, "max_iterations must be >= 1, found 0"),
    ({"cg_max_iterations": 0}, "cg_max_iterations must be >= 1"),
    ({"timestep": -0.003}, "timestep must be finite and > 0"),
    ({"accelerator": "gpu"}, "accelerator must be one of"),
])
def test_bad_settings_are_named(change, message):
  settings = dataclasses.replace(AQS, **change)
  with pytest.raises(minimise.MinimiserError, match=message):
    settings.validate()
  with pytest.raises(minimise.MinimiserError, match=message):
    minimise.minimise([[1.0, 1.0, 1.0]], [0], BIG_BOX, settings)


def test_fire_tolerance_below_the_final_one_is_fine_without_fire_stage():
  # fire_force_tolerance is used by "fire+cg" only.
  dataclasses.replace(AQS, method="cg", fire_force_tolerance=0.0).validate()
  dataclasses.replace(AQS, method="fire",
                      fire_force_tolerance=0.0).validate()


def test_bad_configurations_are_named():
  good = np.array([[1.0, 1.0, 1.0], [3.0, 1.0, 1.0]])
  error = minimise.MinimiserError
  with pytest.raises(error, match=r"shape \[n, 3\] with n >= 1, found "
                                  r"\[2, 2\]"):
    minimise.minimise(good[:, :2], [0, 0], BIG_BOX)
  with pytest.raises(error, match=r"found \[0, 3\]"):
    minimise.minimise(np.zeros((0, 3)), [], BIG_BOX)
  bad = good.copy()
  bad[1, 2] = np.inf
  with pytest.raises(error, match=r"finite.*particle\(s\) \[1\]"):
    minimise.minimise(bad, [0, 0], BIG_BOX)
  with pytest.raises(error, match=r"types must have shape \[2\], found "
                                  r"\[3\]"):
    minimise.minimise(good, [0, 0, 1], BIG_BOX)
  with pytest.raises(error, match=r"0 \(A\) or 1 \(B\), found \[0, 2\]"):
    minimise.minimise(good, [0, 2], BIG_BOX)
  with pytest.raises(error, match="box must be 3 finite edges > 0"):
    minimise.minimise(good, [0, 0], [8.0, 8.0])
  with pytest.raises(error, match="box must be 3 finite edges > 0"):
    minimise.minimise(good, [0, 0], [8.0, -8.0, 8.0])
