"""Soft modes (glassy_dynamics_tf.soft_modes): Hessian, modes, pipeline."""

import dataclasses

import numpy as np
import pytest

from glassy_dynamics_tf import periodic
from glassy_dynamics_tf import soft_modes
from glassy_dynamics_tf.io import record as record_lib
from glassy_dynamics_tf.simulation import engine
from glassy_dynamics_tf.simulation import kob_andersen as ka

BOX = np.array([5.2, 5.6, 6.0])  # non-cubic; every edge > 2 × 2.5 σ_AA
BIG_BOX = np.array([12.0, 13.0, 14.0])
TYPE_PAIRS = [((0, 0), 1.0, 1.0), ((0, 1), 1.5, 0.8), ((1, 1), 0.5, 0.88)]


def lj_first(r, eps, sig):
  """d/dr of 4ε[(σ/r)¹² − (σ/r)⁶], term by term."""
  return 4 * eps * (-12 * sig**12 / r**13 + 6 * sig**6 / r**7)


def lj_second(r, eps, sig):
  """d²/dr² of 4ε[(σ/r)¹² − (σ/r)⁶], term by term."""
  return 4 * eps * (156 * sig**12 / r**14 - 42 * sig**6 / r**8)


def total_energy(positions, types, box):
  """The simulator's energy (truncated and shifted), ε_AA."""
  return ka.per_particle_potential_energy(positions, types, box).sum()


def random_configuration(seed=0, n=24, box=BOX, min_distance=0.95,
                         margin=5e-3):
  """n particles, none closer than min_distance, no pair within `margin` of
  its cut-off (finite differences of step ~1e-4 must not cross one).

  Three planted pairs sit just inside their cut-offs, where the transverse
  term φ'(r)/r of the Hessian is all that a pair contributes, one of them
  across the x boundary.
  """
  planted = [([1.0, 1.0, 1.0], 0), ([3.48, 1.0, 1.0], 0),     # A-A 2.48 < 2.5
             ([0.3, 3.0, 3.0], 1), ([box[0] - 1.67, 3.0, 3.0], 0),  # A-B 1.97
             ([2.5, 4.5, 0.5], 1), ([2.5, 4.5, 2.67], 1)]     # B-B 2.17 < 2.2
  positions = [np.array(p, float) for p, _ in planted]
  types = [t for _, t in planted]
  rng = np.random.default_rng(seed)

  def acceptable(p, t, others, other_types):
    if not others:
      return True
    d = np.linalg.norm(
        periodic.minimum_image(np.array(others) - p, box), axis=1)
    rc = ka.CUTOFF[t, np.array(other_types)]
    return d.min() >= min_distance and np.all(np.abs(d - rc) > margin)

  for k in range(1, len(planted)):
    assert acceptable(positions[k], types[k], positions[:k], types[:k])
  while len(positions) < n:
    p = rng.uniform(0, box)
    t = int(rng.uniform() < 0.2)
    if acceptable(p, t, positions, types):
      positions.append(p)
      types.append(t)
  return np.array(positions), np.array(types, np.int32)


# ---------------------------------------------------------------------------
# Pair derivatives and forces.


@pytest.mark.parametrize("types,eps,sig", TYPE_PAIRS)
def test_pair_derivatives_match_the_pair_energy(types, eps, sig):
  r = np.linspace(0.9 * sig, 2.45 * sig, 40)
  ti, tj = np.full(r.shape, types[0]), np.full(r.shape, types[1])
  d = soft_modes.pair_derivatives(r, ti, tj)
  np.testing.assert_allclose(d.first, lj_first(r, eps, sig), rtol=1e-12)
  np.testing.assert_allclose(d.second, lj_second(r, eps, sig), rtol=1e-12)
  # Central differences of the simulator's energy agree to O(h²).
  h = 1e-5
  e = lambda x: ka.pair_energy(x, ti, tj)
  np.testing.assert_allclose(d.first, (e(r + h) - e(r - h)) / (2 * h),
                             rtol=1e-6, atol=1e-8)
  # Beyond the cut-off nothing.
  beyond = soft_modes.pair_derivatives(
      np.array([2.5 * sig, 2.6 * sig]), [types[0]] * 2, [types[1]] * 2)
  np.testing.assert_array_equal(beyond.first, 0.0)
  np.testing.assert_array_equal(beyond.second, 0.0)


@pytest.mark.parametrize("types,eps,sig", TYPE_PAIRS)
def test_pair_derivatives_at_the_lennard_jones_minimum(types, eps, sig):
  # At r_m = 2^(1/6) σ: (σ/r)⁶ = 1/2, (σ/r)¹² = 1/4, so φ' ∝ 2/4 − 1/2 = 0
  # and φ'' = 24 ε (26/4 − 7/2) / r_m² = 72 ε / (2^(1/3) σ²).
  r_m = 2**(1 / 6) * sig
  d = soft_modes.pair_derivatives(np.array([r_m]), [types[0]], [types[1]])
  assert abs(d.first[0]) < 1e-12
  assert d.second[0] == pytest.approx(72 * eps / (2**(1 / 3) * sig**2),
                                      rel=1e-12)


def test_forces_are_minus_the_energy_gradient():
  positions, types = random_configuration()
  f = soft_modes.forces(positions, types, BOX)
  h = 1e-6
  gradient = np.zeros(positions.size)
  for a in range(positions.size):
    step = np.zeros(positions.size)
    step[a] = h
    plus = positions + step.reshape(-1, 3)
    minus = positions - step.reshape(-1, 3)
    gradient[a] = (total_energy(plus, types, BOX) -
                   total_energy(minus, types, BOX)) / (2 * h)
  # Truncation h²·φ'''/6 ~ 1e-12·1e4 and rounding 1e-16·|E|/h ~ 1e-9.
  np.testing.assert_allclose(f.ravel(), -gradient, atol=1e-6)
  # Newton's third law: the net force vanishes.
  np.testing.assert_allclose(f.sum(axis=0), 0.0, atol=1e-12)


# ---------------------------------------------------------------------------
# The Hessian.


def test_hessian_matches_finite_differences_of_the_simulator_energy():
  positions, types = random_configuration()
  dim = positions.size
  h = 1e-4
  e = lambda x: total_energy(x.reshape(-1, 3), types, BOX)
  x0 = positions.ravel()
  steps = np.eye(dim) * h
  numeric = np.zeros((dim, dim))
  for a in range(dim):
    for b in range(a, dim):
      sa, sb = steps[a], steps[b]
      numeric[a, b] = numeric[b, a] = (
          e(x0 + sa + sb) - e(x0 + sa - sb) - e(x0 - sa + sb) +
          e(x0 - sa - sb)) / (4 * h * h)
  analytic = soft_modes.hessian(positions, types, BOX).toarray()
  # Errors: truncation h²·φ''''/6 ≲ 1e-8 · 3e5 / 6 ≈ 5e-4 for the closest
  # A-A pair (0.95 σ), rounding 1e-16 · |E| / h² ≈ 1e-6.
  np.testing.assert_allclose(analytic, numeric, atol=2e-3)
  # The comparison is not trivially satisfied: entries reach hundreds.
  assert np.abs(analytic).max() > 100


def test_near_cutoff_pairs_contribute_their_transverse_term():
  # Planted pair 0-1: A-A along x at 2.48 σ, inside r_c = 2.5. The (0, 1)
  # block is −[φ'' x̂x̂ᵀ + φ'/d (I − x̂x̂ᵀ)]: −φ''(2.48) at (x, x) and
  # −φ'(2.48)/2.48 at (y, y) and (z, z) (one image only in this box).
  positions, types = random_configuration()
  block = soft_modes.hessian(positions, types, BOX).toarray()[0:3, 3:6]
  d = 2.48
  np.testing.assert_allclose(
      np.diag(block),
      [-lj_second(d, 1, 1), -lj_first(d, 1, 1) / d, -lj_first(d, 1, 1) / d],
      rtol=1e-9)
  assert lj_first(d, 1, 1) / d > 0.01  # φ'(r_c) ≠ 0: the force jumps there


def test_hessian_is_symmetric_and_translation_invariant():
  positions, types = random_configuration(seed=1)
  matrix = soft_modes.hessian(positions, types, BOX)
  assert matrix.shape == (positions.size, positions.size)
  assert abs(matrix - matrix.T).max() == 0.0
  scale = abs(matrix).max()
  for axis in range(3):
    translation = np.zeros((len(positions), 3))
    translation[:, axis] = 1.0
    np.testing.assert_allclose(matrix @ translation.ravel(), 0.0,
                               atol=1e-12 * scale)
  # Moving every particle by the same vector (through the boundaries)
  # changes nothing.
  moved = soft_modes.hessian(positions + [2.3, -7.1, 0.4], types, BOX)
  np.testing.assert_allclose(moved.toarray(), matrix.toarray(),
                             atol=1e-9 * scale)


def test_hessian_follows_a_relabelling_of_the_particles():
  positions, types = random_configuration(seed=2)
  perm = np.random.default_rng(0).permutation(len(positions))
  original = soft_modes.hessian(positions, types, BOX).toarray()
  relabelled = soft_modes.hessian(positions[perm], types[perm], BOX).toarray()
  index = (3 * perm[:, None] + np.arange(3)).ravel()
  np.testing.assert_allclose(relabelled, original[np.ix_(index, index)],
                             atol=1e-10)


@pytest.mark.parametrize("types,eps,sig", TYPE_PAIRS)
def test_dimer_at_its_minimum_has_one_bond_mode(types, eps, sig):
  # Two unit masses at separation r_m = 2^(1/6) σ, across the x boundary.
  # H = [[B, −B], [−B, B]] with B = φ''(r_m) x̂x̂ᵀ (φ'(r_m) = 0), so the
  # eigenvalues are those of [[1, −1], [−1, 1]] (0 and 2) times those of B
  # (φ'' and 0, 0): five zeros (3 translations, 2 rotations) and
  # ω² = 2 φ''(r_m) = 2 · 72 ε / (2^(1/3) σ²), the bond stretch k / μ with
  # reduced mass μ = 1/2. Its eigenvector is (x̂, −x̂) / √2.
  r_m = 2**(1 / 6) * sig
  positions = np.array([[0.2, 5.0, 5.0], [0.2 - r_m + BIG_BOX[0], 5.0, 5.0]])
  matrix = soft_modes.hessian(positions, types, BIG_BOX)
  values, vectors = np.linalg.eigh(matrix.toarray())
  bond = 2 * 72 * eps / (2**(1 / 3) * sig**2)
  np.testing.assert_allclose(values, [0, 0, 0, 0, 0, bond],
                             atol=1e-9 * bond)
  expected = np.array([1, 0, 0, -1, 0, 0]) / np.sqrt(2)
  assert abs(vectors[:, -1] @ expected) == pytest.approx(1.0, rel=1e-12)
  # Through lowest_modes: five zero modes are an error for a liquid (which
  # has three), and fine when expected.
  with pytest.raises(soft_modes.SoftModesError,
                     match=r"4 eigenvalue.*4 computed, expected 3"):
    soft_modes.lowest_modes(matrix, 1)
  modes = soft_modes.lowest_modes(matrix, 1, n_zero_modes=5)
  assert modes.eigenvalues[0] == pytest.approx(bond, rel=1e-9)
  np.testing.assert_allclose(soft_modes.participation(modes.vectors),
                             [0.5, 0.5], rtol=1e-12)


def test_stretched_dimer_has_rotation_and_unstable_bond_modes():
  # A-A at d = 1.3 σ along y, beyond the inflection point (26/7)^(1/6) σ ≈
  # 1.244 σ. With s⁶ = 1.3⁻⁶ ≈ 0.20718: φ'(1.3) ≈ 2.240 > 0 (attracting),
  # φ''(1.3) ≈ −4.747 < 0. Eigenvalues: three zeros, 2 φ'(d)/d ≈ 3.446
  # twice (rotations now cost energy against the tension), 2 φ''(d) ≈
  # −9.494 for the bond, which lowest_modes must refuse.
  d = 1.3
  positions = np.array([[4.0, 4.0, 4.0], [4.0, 4.0 + d, 4.0]])
  matrix = soft_modes.hessian(positions, [0, 0], BIG_BOX)
  values = np.linalg.eigvalsh(matrix.toarray())
  phi1, phi2 = lj_first(d, 1, 1), lj_second(d, 1, 1)
  assert phi1 == pytest.approx(2.240, abs=1e-3)
  assert phi2 == pytest.approx(-4.747, abs=1e-3)
  np.testing.assert_allclose(
      values, sorted([0, 0, 0, 2 * phi1 / d, 2 * phi1 / d, 2 * phi2]),
      atol=1e-10)
  with pytest.raises(soft_modes.SoftModesError, match="negative eigenvalue"):
    soft_modes.lowest_modes(matrix, 2, solver="dense")


# ---------------------------------------------------------------------------
# The full pipeline on a small KA liquid (LAMMPS).

N_LIQUID = 256
N_MODES = 30


@pytest.fixture(scope="module")
def liquid():
  """An N = 256 KA liquid at ρ = 1.2, melted at T = 2 for 500 steps, as a
  record (float32 positions), and its soft modes."""
  box = np.full(3, (N_LIQUID / 1.2)**(1 / 3))  # 5.98 σ > 5 σ
  positions, types = ka.lattice_configuration(N_LIQUID, box, seed=3)
  with engine.KobAndersenSimulation(positions, types, box) as sim:
    sim.set_velocities(2.0, 11)
    sim.nvt(2.0)
    sim.run(500)
    state = sim.state()
  record = record_lib.ConfigurationRecord.create(
      positions=state.positions, types=state.types, box=box,
      propensity=np.zeros((2, N_LIQUID)), times=[0.1, 1.0], temperature=2.0)
  result = soft_modes.soft_modes(record.positions, record.types, record.box,
                                 N_MODES)
  return record, result


def test_pipeline_reaches_a_minimum(liquid):
  record, result = liquid
  assert result.n_minimiser_steps > 0
  # LAMMPS' energies are the simulator's (shifted) energies.
  assert result.energy_before == pytest.approx(
      ka.per_particle_potential_energy(record.positions, record.types,
                                       record.box).mean(), abs=1e-9)
  assert result.energy_after == pytest.approx(
      ka.per_particle_potential_energy(result.inherent_positions,
                                       record.types, record.box).mean(),
      abs=1e-9)
  # A liquid at T = 2 sits far above its inherent structure (~ −7.5 ε).
  assert result.energy_after < result.energy_before - 1.0
  assert -8.0 < result.energy_after < -7.0
  # Forces from this module's analytic gradient, not from LAMMPS.
  assert result.max_force < 1e-9
  assert result.inherent_positions.shape == (N_LIQUID, 3)
  assert np.all((result.inherent_positions >= 0) &
                (result.inherent_positions < record.box))


def test_pipeline_modes_and_participation(liquid):
  _, result = liquid
  np.testing.assert_allclose(result.zero_eigenvalues, 0.0, atol=1e-9)
  assert result.eigenvalues.shape == (N_MODES,)
  assert np.all(result.eigenvalues > 0.1)
  assert np.all(np.diff(result.eigenvalues) >= 0)
  p = result.participation
  assert p.shape == (N_LIQUID,) and p.dtype == np.float64
  assert np.all(np.isfinite(p)) and np.all(p >= 0)
  assert p.sum() == pytest.approx(N_MODES, rel=1e-10)


def test_sparse_and_dense_solvers_agree(liquid):
  record, result = liquid
  matrix = soft_modes.hessian(result.inherent_positions, record.types,
                              record.box)
  dense = soft_modes.lowest_modes(matrix, N_MODES, solver="dense")
  lanczos = soft_modes.lowest_modes(matrix, N_MODES, solver="sparse")
  np.testing.assert_allclose(lanczos.eigenvalues, dense.eigenvalues,
                             rtol=1e-9)
  np.testing.assert_allclose(lanczos.eigenvalues, result.eigenvalues,
                             rtol=1e-9)
  # No degeneracy at the 30th mode here, so participation is basis free.
  spectrum = np.linalg.eigvalsh(matrix.toarray())
  assert spectrum[3 + N_MODES] - dense.eigenvalues[-1] > 1e-3
  np.testing.assert_allclose(soft_modes.participation(lanczos.vectors),
                             soft_modes.participation(dense.vectors),
                             atol=1e-8)
  # Non-zero modes are orthogonal to the translations: no net displacement.
  net = dense.vectors.reshape(N_LIQUID, 3, N_MODES).sum(axis=0)
  np.testing.assert_allclose(net, 0.0, atol=1e-9)


def test_unminimised_liquid_is_refused(liquid):
  record, _ = liquid
  matrix = soft_modes.hessian(record.positions, record.types, record.box)
  for solver in ("dense", "sparse"):
    with pytest.raises(soft_modes.SoftModesError, match="not at an energy"):
      soft_modes.lowest_modes(matrix, N_MODES, solver=solver)


def test_minimiser_settings_and_errors(liquid):
  # The minimiser itself is tested in tests/simulation/test_minimise.py;
  # here: the baseline's default (FIRE alone, 2-norm of the force vector)
  # and its failures as SoftModesError.
  record, result = liquid
  default = soft_modes.DEFAULT_MINIMISER
  assert (default.method, default.norm, default.force_tolerance) == (
      "fire", "two", 1e-10)
  inherent = soft_modes.inherent_structure(record.positions, record.types,
                                           record.box)
  np.testing.assert_array_equal(inherent.positions,
                                result.inherent_positions)
  assert inherent.iterations == result.n_minimiser_steps
  assert inherent.force_norm < default.force_tolerance * 1.01
  with pytest.raises(soft_modes.SoftModesError,
                     match="soft modes: minimiser did not converge.*used "
                           "all 10"):
    soft_modes.inherent_structure(
        record.positions, record.types, record.box,
        dataclasses.replace(default, max_iterations=10))


def test_baseline(liquid):
  record, result = liquid
  baseline = soft_modes.SoftModesBaseline(n_modes=N_MODES)
  assert baseline.name == "soft_modes" and not baseline.needs_fit
  scores = baseline.fit([record]).predict(record)
  assert scores.shape == (N_LIQUID, 2) and scores.dtype == np.float64
  # LAMMPS on one rank is deterministic: the same minimum, bit for bit.
  np.testing.assert_array_equal(scores[:, 0], result.participation)
  np.testing.assert_array_equal(scores[:, 1], result.participation)
  description = baseline.describe()
  assert description["name"] == "soft_modes"
  assert description["n_modes"] == N_MODES
  assert "Widmer-Cooper" in description["source"]
  assert description["minimiser"]["force_tolerance"] == 1e-10


# ---------------------------------------------------------------------------
# Bad input.


def test_bad_input_is_named():
  positions, types = random_configuration()
  error = soft_modes.SoftModesError
  with pytest.raises(error, match="twice the largest cut-off"):
    soft_modes.hessian(positions, types, [4.9, 6.0, 6.0])
  with pytest.raises(error, match="twice the largest cut-off"):
    soft_modes.soft_modes(positions, types, [6.0, 6.0, 5.0])
  bad = positions.copy()
  bad[3, 1] = np.nan
  with pytest.raises(error, match=r"finite.*particle\(s\) \[3\]"):
    soft_modes.hessian(bad, types, BOX)
  with pytest.raises(error, match="finite"):
    soft_modes.inherent_structure(bad, types, BOX)
  with pytest.raises(error, match=r"shape \[n, 3\]"):
    soft_modes.hessian(positions[:, :2], types, BOX)
  with pytest.raises(error, match="types must have shape"):
    soft_modes.hessian(positions, types[:-1], BOX)
  with pytest.raises(error, match="0 \\(A\\) or 1 \\(B\\)"):
    soft_modes.hessian(positions, types + 1, BOX)
  matrix = soft_modes.hessian(positions, types, BOX)
  with pytest.raises(error, match="n_modes must be in"):
    soft_modes.lowest_modes(matrix, positions.size)
  with pytest.raises(error, match="solver"):
    soft_modes.lowest_modes(matrix, 2, solver="qr")
  # SoftModesError is a BaselineError, which evaluation already handles.
  assert issubclass(error, soft_modes.baselines.BaselineError)
