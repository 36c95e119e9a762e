"""Baselines on tiny hand-made configurations (glassy_dynamics_tf.baselines)."""

import itertools
import math

import numpy as np
import pytest

from glassy_dynamics_tf import baselines
from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.io import record as record_lib

BOX = np.array([10.0, 11.0, 12.0])  # non-cubic on purpose


def lj(r, eps, sig):
  return 4 * eps * ((sig / r)**12 - (sig / r)**6)


@pytest.mark.parametrize("types,eps,sig", [((0, 0), 1.0, 1.0),
                                           ((0, 1), 1.5, 0.8),
                                           ((1, 1), 0.5, 0.88)])
def test_dimer_energy_is_half_the_pair_energy(types, eps, sig):
  r = 1.1
  positions = np.array([[5.0, 5.0, 5.0], [5.0 + r, 5.0, 5.0]])
  e = baselines.potential_energy_per_particle(positions, types, BOX)
  np.testing.assert_allclose(e, [lj(r, eps, sig) / 2] * 2, rtol=1e-12)
  shifted = baselines.potential_energy_per_particle(
      positions, types, BOX, baselines.KobAndersenPotential(shifted=True))
  np.testing.assert_allclose(
      shifted, [(lj(r, eps, sig) - lj(2.5 * sig, eps, sig)) / 2] * 2,
      rtol=1e-12)


def test_dimer_across_the_boundary():
  # x = 0.25 and x = 9.5 in a box of 10: 0.75 apart through the boundary.
  positions = np.array([[0.25, 5.0, 5.0], [9.5, 5.0, 5.0]])
  e = baselines.potential_energy_per_particle(positions, [0, 1], BOX)
  np.testing.assert_allclose(e, [lj(0.75, 1.5, 0.8) / 2] * 2, rtol=1e-9)


def test_cutoff_is_per_pair_type():
  # AB cut at 2.0, AA at 2.5: at r = 2.2 only the AA pair interacts.
  positions = np.array([[2.0, 2.0, 2.0], [4.2, 2.0, 2.0]])
  assert np.all(baselines.potential_energy_per_particle(
      positions, [0, 1], BOX) == 0.0)
  e_aa = baselines.potential_energy_per_particle(positions, [0, 0], BOX)
  np.testing.assert_allclose(e_aa, [lj(2.2, 1.0, 1.0) / 2] * 2)


def brute_force_energy(positions, types, box):
  pot = baselines.KobAndersenPotential()
  n = len(types)
  e = np.zeros(n)
  for i, j in itertools.combinations(range(n), 2):
    r = np.linalg.norm(periodic.minimum_image(positions[j] - positions[i],
                                              box))
    v = pot.pair_energy(r, types[i], types[j])
    e[i] += v / 2
    e[j] += v / 2
  return e


def random_configuration(seed, n=120, box=BOX):
  rng = np.random.default_rng(seed)
  return (rng.uniform(0, 1, (n, 3)) * box,
          (rng.uniform(size=n) < 0.2).astype(np.int32))


def test_energy_matches_brute_force_and_is_invariant():
  positions, types = random_configuration(0)
  e = baselines.potential_energy_per_particle(positions, types, BOX)
  np.testing.assert_allclose(e, brute_force_energy(positions, types, BOX),
                             rtol=1e-9, atol=1e-9)
  shifted = periodic.wrap(positions + np.array([3.3, -7.1, 25.0]), BOX)
  np.testing.assert_allclose(
      baselines.potential_energy_per_particle(shifted, types, BOX), e,
      rtol=1e-9, atol=1e-9)
  perm = np.random.default_rng(1).permutation(len(types))
  np.testing.assert_allclose(
      baselines.potential_energy_per_particle(positions[perm], types[perm],
                                              BOX), e[perm], rtol=1e-9,
      atol=1e-9)


def test_neighbour_counts_by_hand():
  # Centre A at (1, 5, 5); an A at 1.0 (+x), an A at 1.0 through the x = 0
  # boundary, a B at 1.5 (+y), an A at 3.0 (-y); an isolated B far away.
  positions = np.array([[1.0, 5.0, 5.0], [2.0, 5.0, 5.0], [10.0, 5.0, 5.0],
                        [1.0, 6.5, 5.0], [1.0, 2.0, 5.0], [6.0, 9.0, 10.0]])
  types = np.array([0, 0, 0, 1, 0, 1])
  counts = baselines.neighbour_counts(positions, types, BOX,
                                      [0.5, 1.2, 2.0, 3.5])
  # [radius, (A, B)] for the centre particle.
  np.testing.assert_array_equal(counts[0], [[0, 0], [2, 0], [2, 1], [3, 1]])
  np.testing.assert_array_equal(counts[5], np.zeros((4, 2)))  # isolated
  # Particle 1 (x = 2) sees the centre at 1.0, the B at √(1 + 2.25) = 1.80
  # and particle 2 at exactly 2.0 through the boundary (not within r < 2.0;
  # within 3.5, as is the A at √(1 + 9) = 3.16).
  np.testing.assert_array_equal(counts[1, 2], [1, 1])
  np.testing.assert_array_equal(counts[1, 3], [3, 1])


def test_neighbour_counts_match_brute_force():
  positions, types = random_configuration(2)
  radii = [1.0, 1.7, 2.4]
  counts = baselines.neighbour_counts(positions, types, BOX, radii)
  d = np.linalg.norm(periodic.minimum_image(
      positions[None] - positions[:, None], BOX), axis=-1)
  np.fill_diagonal(d, np.inf)
  for k, r in enumerate(radii):
    for t in (0, 1):
      np.testing.assert_array_equal(counts[:, k, t],
                                    ((d < r) & (types[None] == t)).sum(1))


def test_small_box_sums_every_image():
  # One A particle alone in a cubic box of 1.1: its 6 face images at 1.1,
  # 12 edge images at 1.1·√2, 8 corner images at 1.1·√3, ... up to 2.5.
  box = np.array([1.1, 1.1, 1.1])
  shifts = np.stack(np.meshgrid(*[np.arange(-3, 4)] * 3, indexing="ij"),
                    -1).reshape(-1, 3)
  r = np.linalg.norm(shifts * box, axis=-1)
  r = r[(r > 0) & (r < 2.5)]
  e = baselines.potential_energy_per_particle([[0.5, 0.5, 0.5]], [0], box)
  np.testing.assert_allclose(e, [0.5 * lj(r, 1.0, 1.0).sum()], rtol=1e-12)
  counts = baselines.neighbour_counts([[0.5, 0.5, 0.5]], [0], box, [1.2])
  np.testing.assert_array_equal(counts[0, 0], [6, 0])
  # Two particles: the brute-force image sum agrees with the fast path for
  # a box large enough for both.
  positions, types = random_configuration(3, n=40, box=np.array([5.2] * 3))
  big = baselines.neighbour_counts(positions, types, [5.2] * 3, [2.5])
  small_path = baselines._image_pairs(
      periodic.wrap(positions, np.array([5.2] * 3)), np.array([5.2] * 3),
      2.5)
  assert small_path.i.size == int(big.sum()) // 2


def test_symmetry_functions_by_hand():
  params = baselines.SymmetryFunctionParameters(
      radial_centres=(1.0, 1.5), radial_width=0.1, angular_xi=(1.5,),
      angular_lambda=(1.0,), angular_zeta=(2.0,), angular_cutoff=2.0)
  # Centre i with A neighbours at unit distance along x and y (90°).
  positions = np.array([[5.0, 5.0, 5.0], [6.0, 5.0, 5.0], [5.0, 6.0, 5.0]])
  f = baselines.symmetry_functions(positions, [0, 0, 1], BOX, params)
  assert f.shape == (3, params.n_features) == (3, 5)
  g = lambda r, mu: math.exp(-(r - mu)**2 / (2 * 0.1**2))
  np.testing.assert_allclose(f[0, :4], [g(1, 1), g(1, 1.5), g(1, 1),
                                        g(1, 1.5)])
  # Ψ(i) = exp(-(1 + 1 + 2)/ξ²) (1 + cos 90°)² for the one pair (j, k).
  np.testing.assert_allclose(f[0, 4], math.exp(-4 / 1.5**2))
  # Centre j: vectors (-1,0,0) and (-1,1,0): r² = 1, 2, 1; cos = 1/√2.
  np.testing.assert_allclose(
      f[1, 4], math.exp(-4 / 1.5**2) * (1 + 1 / math.sqrt(2))**2)


def make_record(seed, n=150, box=BOX):
  positions, types = random_configuration(seed, n, box)
  counts = baselines.neighbour_counts(positions, types, box, [1.5])
  total = counts[:, 0].sum(-1)
  propensity = np.stack([0.1 + 0.05 * total, 0.2 + 0.1 * total])
  return record_lib.ConfigurationRecord.create(
      positions=positions, types=types, box=box, propensity=propensity,
      times=[0.5, 1.0], isf_levels=[0.7, math.exp(-1)], temperature=1.0)


def test_neighbour_count_baseline_finds_the_radius():
  train = [make_record(s) for s in range(3)]
  test = make_record(10)
  baseline = baselines.make_baseline("neighbour_count").fit(train)
  assert baseline.describe()["best_radius_per_timescale"] == [1.5, 1.5]
  prediction = baseline.predict(test)
  assert prediction.shape == (test.n_particles, 2)
  is_a = test.types == 0
  np.testing.assert_allclose(prediction[is_a], test.propensity.T[is_a],
                             atol=1e-9)
  assert baseline.predict_sweep(test).shape == (len(baseline.radii),
                                                test.n_particles, 2)


def test_local_structure_baseline_fits_and_predicts():
  train = [make_record(s) for s in range(2)]
  test = make_record(10)
  baseline = baselines.make_baseline("local_structure").fit(train)
  prediction = baseline.predict(test)
  assert prediction.shape == (test.n_particles, 2)
  assert np.all(np.isfinite(prediction))
  is_a = test.types == 0
  r = np.corrcoef(prediction[is_a, 0], test.propensity[0, is_a])[0, 1]
  assert r > 0.5  # the features contain the counts within 1.5 σ


def test_baseline_errors_name_the_thing():
  with pytest.raises(baselines.BaselineError, match="soft modes"):
    baselines.make_baseline("soft_modes")
  with pytest.raises(baselines.BaselineError, match="unknown baseline 'x'"):
    baselines.make_baseline("x")
  with pytest.raises(baselines.BaselineError, match="fitted before"):
    baselines.make_baseline("neighbour_count").predict(make_record(0))
  with pytest.raises(baselines.BaselineError, match="train split"):
    baselines.make_baseline("local_structure").fit([])
  energy = baselines.make_baseline("potential_energy").predict(make_record(0))
  assert energy.shape == (150, 2) and np.all(energy[:, 0] == energy[:, 1])
