"""Baselines on tiny hand-made configurations (glassy_dynamics_tf.baselines)."""

import logging
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


def test_symmetry_ridge_baseline_fits_and_predicts():
  train = [make_record(s) for s in range(2)]
  test = make_record(10)
  baseline = baselines.make_baseline("symmetry_ridge").fit(train)
  assert isinstance(baseline, baselines.SymmetryRidgeBaseline)
  prediction = baseline.predict(test)
  assert prediction.shape == (test.n_particles, 2)
  assert np.all(np.isfinite(prediction))
  is_a = test.types == 0
  r = np.corrcoef(prediction[is_a, 0], test.propensity[0, is_a])[0, 1]
  assert r > 0.5  # the features contain the counts within 1.5 σ


def test_local_structure_is_a_deprecated_name_of_symmetry_ridge(caplog):
  with caplog.at_level(logging.WARNING):
    baseline = baselines.make_baseline("local_structure")
  assert isinstance(baseline, baselines.SymmetryRidgeBaseline)
  assert baseline.name == "symmetry_ridge"
  assert "'local_structure' is deprecated" in caplog.text
  assert "symmetry_ridge" in caplog.text
  assert baselines.canonical_name("local_structure") == "symmetry_ridge"
  assert baselines.canonical_name("softness") == "softness"
  assert "local_structure" not in baselines.BASELINES


class OneFeatureSoftness(baselines.SoftnessBaseline):
  """Softness on a single hand-made feature: the propensity at t_0."""

  def features(self, record):
    return np.asarray(record.propensity[0], np.float64)[:, None]


def ranked_record(seed, n=20):
  """All-A record whose propensity is a permutation of 1..n (both times)."""
  rng = np.random.default_rng(seed)
  values = rng.permutation(np.arange(1.0, n + 1))
  positions, _ = random_configuration(seed, n)
  return record_lib.ConfigurationRecord.create(
      positions=positions, types=np.zeros(n, np.int32), box=BOX,
      propensity=np.stack([values, values]), times=[0.5, 1.0],
      isf_levels=[0.7, math.exp(-1)], temperature=1.0)


def test_softness_is_the_distance_to_the_max_margin_plane():
  # Each train configuration: values 1..20; rearranging = top 10 % = {19,
  # 20}, non-rearranging = bottom 50 % = {1..10}. Separable with a gap, so
  # a nearly hard-margin SVM (C = 1e4) puts the plane midway between 10 and
  # 19, at 14.5. In standardised units (the std of 1..20, ddof 0, is
  # sqrt(399/12)) the softness of a value x is (x - 14.5) / sqrt(399/12).
  train = [ranked_record(s) for s in range(3)]
  baseline = OneFeatureSoftness(c_grid=(1e4,)).fit(train)
  test = ranked_record(9)
  softness = baseline.predict(test)
  want = (test.propensity[0] - 14.5) / math.sqrt(399 / 12)
  np.testing.assert_allclose(softness[:, 0], want, atol=2e-3)
  np.testing.assert_allclose(softness[:, 1], want, atol=2e-3)
  info = baseline.describe()["per_timescale"][0]
  assert info["C"] == 1e4
  assert info["n_rearranging"] == 3 * 2 and info["n_non_rearranging"] == 3 * 10
  assert info["train_accuracy"] == 1.0 and info["converged"]
  assert info["held_out"] == "the last 1 of 3 train configurations"


def test_softness_class_sizes_follow_the_fractions():
  train = [ranked_record(s) for s in range(4)]
  baseline = OneFeatureSoftness(top_fraction=0.2, bottom_fraction=0.3,
                                c_grid=(1e4,)).fit(train)
  info = baseline.describe()["per_timescale"][1]
  assert (info["n_rearranging"], info["n_non_rearranging"]) == (4 * 4, 4 * 6)
  # Plane midway between 6 (the top of the bottom 30 %) and 17.
  softness = baseline.predict(train[0])[:, 1]
  want = (train[0].propensity[1] - 11.5) / math.sqrt(399 / 12)
  np.testing.assert_allclose(softness, want, atol=2e-3)


def test_softness_baseline_predicts_mobility():
  train = [make_record(s) for s in range(3)]
  test = make_record(10)
  baseline = baselines.make_baseline("softness").fit(train)
  softness = baseline.predict(test)
  assert softness.shape == (test.n_particles, 2)
  assert np.all(np.isfinite(softness))
  is_a = test.types == 0
  for j in range(2):
    r = np.corrcoef(softness[is_a, j], test.propensity[j, is_a])[0, 1]
    assert r > 0.5  # the propensity is linear in counts within 1.5 σ
  describe = baseline.describe()
  assert [d["C"] in baseline.c_grid for d in describe["per_timescale"]] == [
      True, True]
  assert len(describe["per_timescale"][0]["held_out_roc_auc_per_C"]) == len(
      baseline.c_grid)
  # One train configuration: its odd type-A particles choose C.
  single = baselines.make_baseline("softness").fit(train[:1])
  assert "odd type-A particles" in single.describe()["per_timescale"][0][
      "held_out"]
  assert np.all(np.isfinite(single.predict(test)))


def test_symmetry_baselines_share_one_feature_cache(monkeypatch):
  calls = []
  original = baselines.symmetry_functions

  def counting(*args, **kwargs):
    calls.append(1)
    return original(*args, **kwargs)

  train = [make_record(s) for s in range(2)]
  test = make_record(10)
  alone = baselines.make_baseline("softness").fit(train).predict(test)
  monkeypatch.setattr(baselines, "symmetry_functions", counting)
  cache = baselines.SymmetryFunctionCache()
  ridge = baselines.make_baseline("symmetry_ridge", feature_cache=cache)
  softness = baselines.make_baseline("softness", feature_cache=cache)
  ridge.fit(train)
  softness.fit(train)
  shared = softness.predict(test)
  ridge.predict(test)
  assert len(calls) == len(cache) == 3  # 2 train + 1 test, once each
  np.testing.assert_array_equal(shared, alone)
  # Baselines without symmetry functions ignore the cache.
  assert baselines.make_baseline("potential_energy",
                                 feature_cache=cache).name == (
                                     "potential_energy")


@pytest.mark.parametrize("kwargs,match", [
    (dict(top_fraction=0.0), "top_fraction must lie in"),
    (dict(top_fraction=0.1, bottom_fraction=0.9), "bottom_fraction must lie"),
    (dict(c_grid=()), "c_grid"),
    (dict(c_grid=(1.0, -1.0)), "c_grid"),
    (dict(validation_fraction=1.0), "validation_fraction"),
])
def test_softness_arguments_are_checked(kwargs, match):
  with pytest.raises(baselines.BaselineError, match="'softness': " + match):
    baselines.make_baseline("softness", **kwargs)


def test_baseline_errors_name_the_thing():
  assert baselines.make_baseline("soft_modes").name == "soft_modes"
  with pytest.raises(baselines.BaselineError, match="unknown baseline 'x'"):
    baselines.make_baseline("x")
  with pytest.raises(baselines.BaselineError, match="fitted before"):
    baselines.make_baseline("neighbour_count").predict(make_record(0))
  with pytest.raises(baselines.BaselineError, match="'softness' must be fitted"):
    baselines.make_baseline("softness").predict(make_record(0))
  for name in ("symmetry_ridge", "softness"):
    with pytest.raises(baselines.BaselineError, match="train split"):
      baselines.make_baseline(name).fit([])
  energy = baselines.make_baseline("potential_energy").predict(make_record(0))
  assert energy.shape == (150, 2) and np.all(energy[:, 0] == energy[:, 1])
