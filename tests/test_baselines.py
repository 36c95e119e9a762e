"""Baselines on tiny hand-made configurations (glassy_dynamics_tf.baselines)."""

import math

import numpy as np
import pytest

from glassy_dynamics_tf import baselines
from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.io import record as record_lib
from glassy_dynamics_tf.simulation import kob_andersen as ka

BOX = np.array([10.0, 11.0, 12.0])  # non-cubic on purpose


def lj(r, eps, sig):
  return 4 * eps * ((sig / r)**12 - (sig / r)**6)


@pytest.mark.parametrize("types,eps,sig", [((0, 0), 1.0, 1.0),
                                           ((0, 1), 1.5, 0.8),
                                           ((1, 1), 0.5, 0.88)])
def test_energy_baseline_is_the_simulators_shifted_energy(types, eps, sig):
  # A dimer across the x boundary (x = 0.25 and 9.375: 0.875 apart, exact
  # in the record's float32). The
  # simulator's convention is the shifted potential (kob_andersen.SHIFTED,
  # LAMMPS pair_modify shift yes): V(r) − V(2.5 σ_αβ), half to each end.
  assert ka.SHIFTED
  r = 0.875
  positions = np.array([[0.25, 5.0, 5.0], [0.25 - r + BOX[0], 5.0, 5.0]])
  record = make_record(0, positions=positions, types=types)
  want = (lj(r, eps, sig) - lj(2.5 * sig, eps, sig)) / 2
  baseline = baselines.make_baseline("potential_energy")
  np.testing.assert_allclose(baseline.predict(record), np.full((2, 2), want),
                             rtol=1e-12)
  unshifted = baselines.PotentialEnergyBaseline(shifted=False)
  np.testing.assert_allclose(unshifted.predict(record),
                             np.full((2, 2), lj(r, eps, sig) / 2), rtol=1e-12)
  describe = baseline.describe()
  assert describe["shifted"] is True and describe["cutoff_factor"] == 2.5
  assert "2.5 sigma_ab and shifted" in describe["potential"]
  assert "not shifted" in unshifted.describe()["potential"]


def random_configuration(seed, n=120, box=BOX):
  rng = np.random.default_rng(seed)
  return (rng.uniform(0, 1, (n, 3)) * box,
          (rng.uniform(size=n) < 0.2).astype(np.int32))


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


def test_small_box_counts_every_image():
  # One A particle alone in a cubic box of 1.1: its 6 face images at 1.1
  # are within 1.2, the 12 edge images at 1.1·√2 = 1.56 are not; within 1.6
  # it has 6 + 12.
  box = np.array([1.1, 1.1, 1.1])
  counts = baselines.neighbour_counts([[0.5, 0.5, 0.5]], [0], box,
                                      [1.2, 1.6])
  np.testing.assert_array_equal(counts[0], [[6, 0], [18, 0]])
  # A box smaller than 2 × 2.5: counts equal a brute force over images.
  small = np.array([4.1, 4.4, 4.7])
  positions, types = random_configuration(3, n=40, box=small)
  counts = baselines.neighbour_counts(positions, types, small, [2.5])
  shifts = np.stack(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij"),
                    -1).reshape(-1, 3) * small
  d = np.linalg.norm(positions[None, :, None] + shifts[None, None] -
                     positions[:, None, None], axis=-1)  # [i, j, image]
  d[d == 0] = np.inf  # a particle itself (its images stay)
  for t in (0, 1):
    np.testing.assert_array_equal(
        counts[:, 0, t], ((d < 2.5) & (types[None, :, None] == t)).sum((1, 2)))


def test_too_small_box_is_a_baseline_error():
  box = np.full(3, 0.5)
  positions, types = random_configuration(4, n=1000, box=box)
  with pytest.raises(baselines.BaselineError, match="cut-off 2.5"):
    baselines.neighbour_counts(positions, types, box, [2.5])
  record = record_lib.ConfigurationRecord.create(
      positions=positions, types=types, box=box,
      propensity=np.ones((1, 1000)), times=[1.0], isf_levels=[0.5],
      temperature=1.0)
  with pytest.raises(baselines.BaselineError,
                     match="'potential_energy': .*images"):
    baselines.make_baseline("potential_energy").predict(record)


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


def make_record(seed, n=150, box=BOX, positions=None, types=None):
  """A record whose propensity is linear in the counts within 1.5 σ."""
  if positions is None:
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
  assert baselines.make_baseline("soft_modes").name == "soft_modes"
  with pytest.raises(baselines.BaselineError, match="unknown baseline 'x'"):
    baselines.make_baseline("x")
  with pytest.raises(baselines.BaselineError, match="fitted before"):
    baselines.make_baseline("neighbour_count").predict(make_record(0))
  with pytest.raises(baselines.BaselineError, match="train split"):
    baselines.make_baseline("local_structure").fit([])
  energy = baselines.make_baseline("potential_energy").predict(make_record(0))
  assert energy.shape == (150, 2) and np.all(energy[:, 0] == energy[:, 1])
