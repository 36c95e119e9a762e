"""Athermal quasistatic shear, D²_min and the Fig. 4 scoring.

Fast tests use the conftest's N = 250 liquid (melted at T = 2) quenched to
an inherent structure and sheared over 20 steps; the slow test shears a
slowly cooled N = 256 glass to its first plastic event.
"""

import dataclasses
import itertools
import json
import math
import os

import numpy as np
import pytest

from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.analysis import shear as shear_study
from glassy_dynamics_tf.io import record as record_lib
from glassy_dynamics_tf.simulation import kob_andersen as ka
from glassy_dynamics_tf.simulation import minimise
from glassy_dynamics_tf.simulation import shear

# 20 steps of Δγ = 1e-4, a fresh LAMMPS session every 5.
SHORT = shear.ShearSettings(max_strain=0.002, stop_after_events=0,
                            checkpoint_every=5)


@pytest.fixture(name="quenched", scope="module")
def _quenched(small_liquid_state):
  s = small_liquid_state
  return minimise.minimise(s.positions, s.types, s.box,
                           SHORT.minimiser)


@pytest.fixture(name="short_run", scope="module")
def _short_run(small_liquid_state):
  s = small_liquid_state
  return shear.athermal_quasistatic_shear(s.positions, s.types, s.box, SHORT,
                                          log=lambda m: None)


# The quench itself (energies, forces, stress, a minimum stays a minimum) is
# tested in test_minimise.py.


def test_quench_failure_is_a_shear_error(tmp_path):
  # Two particles 0.05 σ apart: LAMMPS loses atoms in the first FIRE step.
  positions = np.array([[1.0, 1.0, 1.0], [1.05, 1.0, 1.0], [4.0, 4.0, 4.0]])
  checkpoint = str(tmp_path / "run.checkpoint.npz")
  with pytest.raises(shear.ShearError,
                     match="quench: LAMMPS could not minimise"):
    shear.athermal_quasistatic_shear(positions, [0, 0, 0], np.full(3, 8.0),
                                     SHORT, checkpoint_path=checkpoint,
                                     log=lambda m: None)
  assert not os.path.exists(checkpoint)


# ----------------------------------------------------- triclinic geometry --


def test_perpendicular_widths_of_a_sheared_cell():
  cell = shear.cell_matrix([3.0, 4.0, 5.0], xy=1.5)
  # Face y-z is tilted: w_x = L_x L_y / sqrt(L_y² + xy²); w_y, w_z unchanged.
  np.testing.assert_allclose(shear.perpendicular_widths(cell),
                             [3.0 * 4.0 / math.hypot(4.0, 1.5), 4.0, 5.0])
  np.testing.assert_allclose(shear.sheared_cell([3.0, 4.0, 5.0], 0.375), cell,
                             atol=0)


def test_wrap_cell_puts_positions_in_the_cell_and_keeps_the_image():
  cell = shear.cell_matrix([3.0, 4.0, 5.0], xy=1.5, xz=-1.0, yz=0.5)
  rng = np.random.default_rng(0)
  positions = rng.uniform(-20, 20, (50, 3))
  wrapped = shear.wrap_cell(positions, cell)
  s = shear.to_fractional(wrapped, cell)
  assert np.all((s >= 0) & (s < 1))
  shift = shear.to_fractional(positions - wrapped, cell)
  np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)


def _brute_force_image(d, cell, reach=6):
  shifts = np.array(list(itertools.product(range(-reach, reach + 1),
                                           repeat=3)))
  candidates = d[:, None, :] + (shifts @ cell)[None]
  best = np.argmin(np.linalg.norm(candidates, axis=-1), axis=1)
  return candidates[np.arange(len(d)), best]


@pytest.mark.parametrize("tilts", [(0.0, 0.0, 0.0), (2.0, 0.0, 0.0),
                                   (-2.0, 1.5, -1.9), (1.9, -1.4, 2.4)])
def test_triclinic_minimum_image_matches_brute_force(tilts):
  # LAMMPS' limits: |xy| <= L_x/2, |xz| <= L_x/2, |yz| <= L_y/2.
  cell = shear.cell_matrix([4.0, 5.0, 3.5], *tilts)
  rng = np.random.default_rng(1)
  d = rng.uniform(-10, 10, (500, 3))  # images within 6 cells suffice
  got = shear.triclinic_minimum_image(d, cell)
  want = _brute_force_image(d, cell)
  np.testing.assert_allclose(np.linalg.norm(got, axis=-1),
                             np.linalg.norm(want, axis=-1), atol=1e-12)
  # Same periodic image of the input vector (an integer shift away).
  shift = shear.to_fractional(got - d, cell)
  np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)


def _brute_force_pairs(positions, cell, cutoff, reach=3):
  """Set of (i, j, shift) with i < j (or i == j, first shift > 0)."""
  wrapped = shear.wrap_cell(positions, cell)
  found = {}
  for shift in itertools.product(range(-reach, reach + 1), repeat=3):
    offset = np.array(shift) @ cell
    d = wrapped[None, :, :] + offset - wrapped[:, None, :]
    r = np.linalg.norm(d, axis=-1)
    for i, j in zip(*np.nonzero(r < cutoff)):
      first = next((c for c in shift if c != 0), 0)
      if i < j or (i == j and first > 0):
        found[(int(i), int(j), shift)] = r[i, j]
  return found


@pytest.mark.parametrize("edges,tilts,cutoff", [
    ([6.0, 6.0, 6.0], (0.0, 0.0, 0.0), 2.5),
    ([6.0, 6.0, 6.0], (1.8, 0.0, 0.0), 2.5),
    ([4.0, 3.0, 3.5], (1.7, -1.2, 1.4), 2.5),   # cut-off beyond half widths
])
def test_triclinic_neighbour_pairs_match_brute_force(edges, tilts, cutoff):
  cell = shear.cell_matrix(edges, *tilts)
  rng = np.random.default_rng(2)
  positions = rng.uniform(-5, 10, (30, 3))
  pairs = shear.triclinic_neighbour_pairs(positions, cell, cutoff)
  want = _brute_force_pairs(positions, cell, cutoff)
  got = {(int(i), int(j), tuple(int(c) for c in s)): r
         for i, j, s, r in zip(pairs.i, pairs.j, pairs.shifts,
                               pairs.distances)}
  assert got.keys() == want.keys()
  for key, r in got.items():
    assert r == pytest.approx(want[key], abs=1e-12)
  wrapped = shear.wrap_cell(positions, cell)
  np.testing.assert_allclose(
      pairs.vectors, wrapped[pairs.j] + pairs.shifts @ cell - wrapped[pairs.i],
      atol=1e-12)


def test_triclinic_pairs_equal_orthorhombic_pairs_without_tilt():
  rng = np.random.default_rng(3)
  box = np.array([6.0, 7.0, 6.5])
  positions = rng.uniform(0, 1, (80, 3)) * box
  got = shear.triclinic_neighbour_pairs(positions, shear.cell_matrix(box),
                                        2.5)
  want = periodic.neighbour_pairs(positions, box, 2.5)
  np.testing.assert_array_equal(got.i, want.i)
  np.testing.assert_array_equal(got.j, want.j)
  np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-12)


# ----------------------------------------------------------------- D²_min --


def test_d2min_of_an_affine_deformation_is_zero():
  rng = np.random.default_rng(4)
  cell = shear.cell_matrix([6.0, 6.0, 6.0], xy=0.9)
  positions = rng.uniform(0, 1, (120, 3)) @ cell
  # Any global deformation gradient: shear, stretch and a rotation.
  angle = 0.3
  rotation = np.array([[np.cos(angle), -np.sin(angle), 0],
                       [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
  f = rotation @ np.array([[1.02, 0.05, 0.0], [0.0, 0.97, 0.01],
                           [0.03, 0.0, 1.01]])
  after = positions @ f.T
  result = shear.nonaffine_d2min(positions, after, cell, cell @ f.T, 2.5)
  # Zero to round-off: Σ|u|² ~ 30 σ² here (u = (F − 1)·d⁰ is large).
  assert np.abs(result.d2min).max() < 1e-12
  assert np.abs(result.displacement).max() < 1e-12
  assert np.all(result.n_neighbours > 10)


def _cubic_lattice(m, spacing):
  grid = np.array(list(itertools.product(range(m), repeat=3)), np.float64)
  return grid * spacing


@pytest.mark.parametrize("tilt_in_spacings", [0, 1])
def test_d2min_of_one_displaced_lattice_particle(tilt_in_spacings):
  # Simple cubic lattice, spacing a = 1.25, cut-off 1.3: six neighbours.
  # Moving particle 0 by δ: its six bonds change by −δ, their sum of d⁰ is
  # 0, so the best J is 1 and D²_min(0) = 6 δ². A neighbour m has one bond
  # changed by +δ (X = δ d⁰ᵀ), Y = 2 a² 1, so D²_min(m) = δ² − δ²/2 = δ²/2.
  # Everyone else: 0. A tilt of one lattice spacing keeps the lattice.
  a, m = 1.25, 4
  positions = _cubic_lattice(m, a)
  cell = shear.cell_matrix([m * a] * 3, xy=tilt_in_spacings * a)
  delta = np.array([0.06, -0.08, 0.0])  # |δ| = 0.1
  after = positions.copy()
  after[0] += delta
  result = shear.nonaffine_d2min(positions, after, cell, cell, 1.3)
  np.testing.assert_array_equal(result.n_neighbours, np.full(m**3, 6))
  d = shear.triclinic_minimum_image(positions - positions[0], cell)
  neighbours = np.abs(np.linalg.norm(d, axis=-1) - a) < 1e-9
  assert neighbours.sum() == 6
  expected = np.zeros(m**3)
  expected[0] = 6 * 0.01
  expected[neighbours] = 0.01 / 2
  np.testing.assert_allclose(result.d2min, expected, atol=1e-14)
  assert np.argmax(result.d2min) == 0
  np.testing.assert_allclose(result.displacement[0], delta, atol=1e-14)


def test_d2min_follows_particles_across_the_sheared_boundary():
  # A particle at the top of the cell, sheared affinely by Δγ (so it leaves
  # the old cell's image) then nudged: only the nudge is non-affine.
  box = np.array([5.0, 5.0, 5.0])
  rng = np.random.default_rng(5)
  positions = rng.uniform(0, 1, (100, 3)) * box
  positions[7] = [4.99, 4.99, 2.5]
  before_cell = shear.sheared_cell(box, 0.1)
  after_cell = shear.sheared_cell(box, 0.1001)
  s = shear.to_fractional(positions, before_cell)
  after = s @ after_cell
  after[7] += [0.02, 0.0, 0.0]
  after = shear.wrap_cell(after, after_cell)  # particle 7 wraps around
  result = shear.nonaffine_d2min(positions, after, before_cell, after_cell)
  np.testing.assert_allclose(result.displacement[7], [0.02, 0, 0],
                             atol=1e-12)
  others = np.delete(np.arange(100), 7)
  assert np.abs(result.displacement[others]).max() < 1e-12
  assert np.argmax(result.d2min) == 7


def test_rearranging_particles_by_threshold_and_top_k():
  d2min = np.array([0.5, 3.0, 1.0, 2.0, 2.0])
  np.testing.assert_array_equal(shear.rearranging_particles(d2min, 1.0),
                                [False, True, False, True, True])
  # Top 2: the largest, then the first of the tie (stable order).
  np.testing.assert_array_equal(
      shear.rearranging_particles(d2min, top_k=2),
      [False, True, False, True, False])
  with pytest.raises(shear.ShearError, match="rearranging_top_k"):
    shear.rearranging_particles(d2min, top_k=6)


# -------------------------------------------------------- event detection --


def test_plastic_events_of_a_hand_built_curve():
  settings = shear.ShearSettings(drop_factor=10.0, min_noise_steps=5)
  g, step = 15.0, 1e-4
  rng = np.random.default_rng(6)
  increments = g * step + 1e-5 * rng.standard_normal(60)
  increments[29] = -0.02   # step 30: a drop with a rearrangement
  increments[44] = -5e-4   # step 45: a decrease with no rearrangement
  increments[2] = -0.01    # step 3: a drop before the noise is known
  stress = np.concatenate([[0.1], 0.1 + np.cumsum(increments)])
  moved = np.full(61, 3e-4)
  moved[[3, 30]] = 0.2
  events = shear.find_plastic_events(stress, moved, settings)
  np.testing.assert_array_equal(events, [3, 30])
  # Step 30's test: loss = expected elastic increment + 0.02.
  flags = np.isin(np.arange(1, 30), events)
  test = shear.test_step(increments[:29], flags, increments[29], 0.2,
                         settings)
  assert test.is_event
  assert test.expected_increment == pytest.approx(g * step, abs=5e-5)
  assert test.stress_loss == pytest.approx(0.02 + test.expected_increment)
  assert 0 < test.threshold < 1e-3
  # Without a large non-affine displacement a drop is not an event.
  assert not shear.test_step(increments[:29], flags, increments[29], 0.01,
                             settings).is_event


def test_settings_are_validated():
  with pytest.raises(shear.ShearError, match="strain_step"):
    shear.ShearSettings(strain_step=0).validate()
  with pytest.raises(shear.ShearError, match="LAMMPS' limit"):
    shear.ShearSettings(max_strain=0.6).validate(np.array([5.0, 5.0, 5.0]))
  with pytest.raises(shear.ShearError, match="accelerator"):
    shear.ShearSettings(
        minimiser=minimise.MinimiserSettings(accelerator="gpu")).validate()
  with pytest.raises(shear.ShearError, match="fire_force_tolerance"):
    shear.ShearSettings(minimiser=minimise.MinimiserSettings(
        fire_force_tolerance=1e-12)).validate()


def test_settings_round_trip_through_arrays():
  minimiser = minimise.MinimiserSettings(
      method="cg", norm="two", energy_tolerance=1e-8, accelerator="none")
  settings = shear.ShearSettings(strain_step=2e-4, rearranging_top_k=7,
                                 minimiser=minimiser)
  assert shear.ShearSettings.from_arrays(settings.as_arrays()) == settings
  arrays = settings.as_arrays()
  del arrays["setting_minimiser_norm"]
  with pytest.raises(shear.ShearError, match="'minimiser_norm'.*missing"):
    shear.ShearSettings.from_arrays(arrays)


# -------------------------------------------------------------------- AQS --


def test_small_strain_is_linear_elastic(short_run, quenched):
  r = short_run
  np.testing.assert_allclose(r.strain, np.arange(21) * 1e-4, rtol=1e-12)
  # Starts from the quenched structure, unsheared.
  np.testing.assert_array_equal(r.positions, quenched.positions)
  assert r.stress[0] == quenched.stress
  assert r.max_force.max() <= 2 * minimise.FORCE_TOLERANCE
  slope, intercept = np.polyfit(r.strain, r.stress, 1)
  fit = slope * r.strain + intercept
  # A KA glass has G ≈ 15-20 ε/σ³. This one, quenched straight from T = 2,
  # is poorly annealed: between elastic steps (increment G_elastic·Δγ) a
  # few tiny instabilities slip (one at step 19 loses 2e-4 ε/σ³, moving no
  # particle by more than 0.005 σ), so the stress rises linearly only to
  # within 5 %, with a mean slope a little below the elastic one.
  assert 5.0 < slope < 40.0
  assert np.abs(r.stress - fit).max() < 0.05 * slope * r.strain[-1]
  elastic_modulus = np.median(np.diff(r.stress)) / 1e-4
  assert 1.0 <= elastic_modulus / slope < 1.25
  assert not r.has_event
  assert r.shear_modulus() == pytest.approx(slope, rel=1e-9)
  # dU/dγ = σ_xy V / N: the energy follows the stress (trapezoid rule).
  volume_per_particle = np.prod(r.box) / r.n_particles
  du = np.diff(r.potential_energy)
  predicted = 0.5 * (r.stress[1:] + r.stress[:-1]) * 1e-4 * (
      volume_per_particle)
  # (1e-6 of ~1.4e-5 per step: tiny instabilities of this poorly annealed
  # glass release ~3e-7.)
  np.testing.assert_allclose(du, predicted, atol=1e-6)


class _Killed(Exception):
  pass


def test_shear_resumes_bit_for_bit(small_liquid_state, short_run, tmp_path):
  s = small_liquid_state
  checkpoint = str(tmp_path / "run.checkpoint.npz")

  def kill_after_ten(message):
    if "step 10/" in message:
      raise _Killed(message)

  with pytest.raises(_Killed):
    shear.athermal_quasistatic_shear(s.positions, s.types, s.box, SHORT,
                                     checkpoint_path=checkpoint,
                                     log=kill_after_ten)
  with np.load(checkpoint) as data:
    assert len(data["strain"]) == 11 and not data["complete"]
  messages = []
  resumed = shear.athermal_quasistatic_shear(
      s.positions, s.types, s.box, SHORT, checkpoint_path=checkpoint,
      log=messages.append)
  assert "resuming" in messages[0]
  for field in dataclasses.fields(shear.ShearResult):
    if field.name != "settings":
      np.testing.assert_array_equal(getattr(resumed, field.name),
                                    getattr(short_run, field.name),
                                    err_msg=field.name)
  # A finished checkpoint returns at once; other settings are refused.
  again = shear.athermal_quasistatic_shear(s.positions, s.types, s.box,
                                           SHORT, checkpoint_path=checkpoint,
                                           log=lambda m: None)
  np.testing.assert_array_equal(again.stress, resumed.stress)
  with pytest.raises(shear.ShearError, match="strain_step"):
    shear.athermal_quasistatic_shear(
        s.positions, s.types, s.box,
        dataclasses.replace(SHORT, strain_step=2e-4),
        checkpoint_path=checkpoint, log=lambda m: None)


def test_save_and_load_round_trip(short_run, tmp_path):
  path = str(tmp_path / "result.npz")
  shear.save(short_run, path)
  loaded = shear.load(path)
  assert loaded.settings == short_run.settings
  for field in dataclasses.fields(shear.ShearResult):
    if field.name != "settings":
      np.testing.assert_array_equal(getattr(loaded, field.name),
                                    getattr(short_run, field.name))
  with np.load(path, allow_pickle=False) as data:
    assert all(data[k].dtype != object for k in data.files)


# --------------------------------------------------------------- scoring --


def test_scores_of_perfect_reversed_and_b_particles():
  types = np.array([0, 0, 0, 0, 0, 0, 1, 1])
  rearranging = np.array([1, 1, 0, 0, 0, 0, 1, 0], bool)
  d2min = np.array([5.0, 4.0, 0.1, 0.2, 0.3, 0.0, 9.0, 0.0])
  perfect = shear_study.score_rearrangements(d2min, rearranging, types,
                                             d2min)
  assert perfect.roc_auc == 1.0 and perfect.precision_at_k == 1.0
  assert perfect.k == 2 and perfect.n_rearranging == 2
  assert perfect.n_candidates == 6
  assert perfect.random_precision == pytest.approx(2 / 6)
  assert perfect.spearman == pytest.approx(1.0)
  reversed_ = shear_study.score_rearrangements(-d2min, rearranging, types)
  assert reversed_.roc_auc == 0.0 and reversed_.precision_at_k == 0.0
  assert math.isnan(reversed_.spearman)
  # B particles are not candidates: their scores change nothing.
  scores = d2min.copy()
  scores[6:] = [100.0, -100.0]
  with_b = shear_study.score_rearrangements(scores, rearranging, types)
  assert (with_b.roc_auc, with_b.precision_at_k) == (1.0, 1.0)
  # Hand count: scores rank A particles 0 > 2 > 1 > ...; positives {0, 1}:
  # pairs (pos, neg) ordered correctly 4 + 3 of 8 -> AUC 7/8; top-2 = {0, 2}.
  mixed = np.array([5.0, 0.25, 0.5, 0.2, 0.1, 0.0, 0.0, 0.0])
  score = shear_study.score_rearrangements(mixed, rearranging, types)
  assert score.roc_auc == pytest.approx(7 / 8)
  assert score.precision_at_k == 0.5
  assert shear_study.score_rearrangements(
      mixed, rearranging, types, k=1).precision_at_k == 1.0


def _score(auc, precision, chance=0.1, rank=0.0):
  return {"roc_auc": auc, "precision_at_k": precision,
          "random_precision": chance, "spearman": rank}


def test_mean_and_standard_error_over_configurations():
  # Three events and one configuration without: by hand, AUC of "a" is
  # 0.9, 0.7, 0.5: mean 0.7, sample std 0.2, standard error 0.2/√3; its
  # population std (metrics.Summary) sqrt(0.08/3). Paired differences
  # a − b: AUC 0.2, 0.1, 0.0 (mean 0.1, s.e. 0.1/√3); precision 0.25,
  # −0.05, 0.1 (mean 0.1, sample std 0.15, s.e. 0.15/√3).
  entries = [
      {"scores": {"a": _score(0.9, 0.5, rank=0.3), "b": _score(0.7, 0.25)}},
      {"scores": {"a": _score(0.7, 0.3, rank=math.nan),
                  "b": _score(0.6, 0.35)}},
      {"scores": {"a": _score(0.5, 0.2, rank=0.1), "b": _score(0.5, 0.1)}},
      {"scores": {"a": None, "b": None}},
  ]
  summary, differences = shear_study.summarise_scores(entries, ["a", "b"])
  auc = summary["a"]["roc_auc"]
  assert auc["mean"] == pytest.approx(0.7)
  assert auc["standard_error"] == pytest.approx(0.2 / math.sqrt(3))
  assert auc["std"] == pytest.approx(math.sqrt(0.08 / 3))
  assert auc["count"] == 3
  # A NaN (undefined rank correlation) is left out of the count.
  rank = summary["a"]["spearman"]
  assert rank["count"] == 2 and rank["mean"] == pytest.approx(0.2)
  assert rank["standard_error"] == pytest.approx(0.1)
  assert summary["b"]["precision_at_k"]["mean"] == pytest.approx(0.7 / 3)
  assert list(differences) == ["a - b"]
  d = differences["a - b"]
  assert d["roc_auc"]["mean"] == pytest.approx(0.1)
  assert d["roc_auc"]["standard_error"] == pytest.approx(0.1 / math.sqrt(3))
  assert d["precision_at_k"]["mean"] == pytest.approx(0.1)
  assert d["precision_at_k"]["standard_error"] == pytest.approx(
      0.15 / math.sqrt(3))
  # One predictor: no differences; no events: no summary.
  alone, none = shear_study.summarise_scores(entries[3:] * 2, ["a"])
  assert alone == {"a": None} and none == {}
  assert math.isnan(shear_study.standard_error([1.0]))
  assert shear_study.standard_error([1.0, 3.0, math.nan]) == pytest.approx(
      1.0)


def test_predictor_output_shapes_are_checked(short_run):
  n = short_run.n_particles
  good = shear_study.predictor_scores(lambda p, t, b: np.ones((n, 1)),
                                      short_run)
  assert good.shape == (n,)
  with pytest.raises(shear_study.ShearStudyError, match="'gnn'.*\\[250, 3\\]"):
    shear_study.predictor_scores(lambda p, t, b: np.ones((n, 3)), short_run,
                                 "gnn")
  two_outputs = shear_study.model_score_fn(
      lambda p, t, b: np.stack([np.zeros(len(t)), np.arange(len(t))], 1), 1)
  np.testing.assert_array_equal(
      shear_study.predictor_scores(two_outputs, short_run), np.arange(n))


def test_shear_study_report_and_figure(short_run, tmp_path):
  # A real run with a planted first event (the event arrays of a result
  # are data; the study scores whatever result it gets), and one without.
  r = short_run
  rng = np.random.default_rng(7)
  d2min = rng.uniform(0.0, 0.5, r.n_particles)
  d2min[:5] = [4.0, 3.0, 2.5, 2.0, 1.5]
  planted = dataclasses.replace(
      r, event_steps=np.array([12]), event_stress_drops=np.array([0.05]),
      event_stress_losses=np.array([0.052]),
      event_thresholds=np.array([1e-3]), event_energy_drops=np.array([1e-4]),
      d2min=d2min, rearranging=d2min > 1.0)

  def oracle(positions, types, box):
    del positions, types, box
    return d2min

  predictors = {"oracle": oracle,
                "anti_oracle": lambda p, t, b: -d2min,
                "potential_energy": shear_study.potential_energy_score}
  report = shear_study.run_shear_study(
      [planted, r], predictors, str(tmp_path), ids=["planted", "plain"],
      log=lambda m: None)
  with open(tmp_path / shear_study.REPORT_NAME) as f:
    written = json.load(f)
  assert written["predictors"] == ["oracle", "anti_oracle",
                                   "potential_energy"]
  first, second = written["configurations"]
  assert first["first_event"]["step"] == 12
  n_a = int(np.sum((d2min > 1.0) & (r.types == 0)))
  assert first["first_event"]["n_rearranging"] == 5
  assert first["scores"]["oracle"]["roc_auc"] == 1.0
  assert first["scores"]["oracle"]["n_rearranging"] == n_a
  assert first["scores"]["anti_oracle"]["roc_auc"] == 0.0
  assert 0.0 <= first["scores"]["potential_energy"]["roc_auc"] <= 1.0
  assert second["first_event"] == {} and second["scores"]["oracle"] is None
  assert written["summary"]["oracle"]["roc_auc"]["count"] == 1
  # One event: no standard error (NaN, written as null); the paired
  # difference is exact.
  assert math.isnan(report["summary"]["oracle"]["roc_auc"]["standard_error"])
  assert written["summary"]["oracle"]["roc_auc"]["standard_error"] is None
  difference = written["differences"]["oracle - anti_oracle"]["roc_auc"]
  assert difference["mean"] == 1.0 and difference["count"] == 1
  assert set(written["differences"]) == {
      "oracle - anti_oracle", "oracle - potential_energy",
      "anti_oracle - potential_energy"}
  assert len(first["curve"]["stress"]) == len(r.stress)
  assert os.path.getsize(tmp_path / shear_study.FIGURE_NAME) > 10_000
  assert "oracle: ROC-AUC 1.000" in shear_study.summary(report)


# ------------------------------------------------------------------ slow ---


@pytest.mark.slow
def test_first_plastic_event_of_a_glass(tmp_path):
  """N = 256 cooled from T = 2 to 0.4 over 9 τ, sheared to its first drop.

  Measured (LAMMPS 2025.7.22, opt): the first event at γ = 0.0307, a drop of
  0.113 ε/σ³ from G ≈ 16 ε/σ³, its core moving 0.23 σ, six particles with
  D²_min > 1 σ², all within 3.3 σ of the largest (4.3 σ²).
  """
  from glassy_dynamics_tf.simulation import engine
  n = 256
  box = np.full(3, (n / 1.2)**(1.0 / 3.0))
  positions, types = ka.lattice_configuration(n, box, seed=3)
  with engine.KobAndersenSimulation(positions, types, box) as sim:
    sim.set_velocities(2.0, 11)
    sim.nvt(2.0)
    sim.run(1000)
    sim.nvt(2.0, 0.4)
    sim.run(3000)
    state = sim.state()
  settings = shear.ShearSettings(max_strain=0.1, stop_after_events=1,
                                 extra_steps=5, checkpoint_every=100)
  report = shear_study.run_shear_study(
      [record_lib.ConfigurationRecord.create(
          positions=state.positions, types=state.types, box=state.box,
          propensity=np.zeros((0, n)), times=np.zeros(0), temperature=0.4)],
      {"potential_energy": shear_study.potential_energy_score},
      str(tmp_path), ids=["glass"], settings=settings, log=lambda m: None)
  r = shear.load(str(tmp_path / shear_study.RUNS_DIR / "glass.npz"))
  assert r.has_event
  k = int(r.event_steps[0])
  assert len(r.strain) == k + 6
  # Elastic loading, then a drop well beyond the elastic noise.
  assert 10.0 < r.shear_modulus() < 25.0
  assert r.event_stress_drops[0] > 0.01
  assert r.event_stress_losses[0] > r.event_thresholds[0] > 0
  assert r.event_energy_drops[0] > 0
  assert r.max_nonaffine[k] > 20 * np.median(r.max_nonaffine[1:k])
  np.testing.assert_array_equal(
      shear.find_plastic_events(r.stress[:k + 1], r.max_nonaffine[:k + 1],
                                settings), [k])
  # A localised rearrangement: a few particles, close to the largest D²_min.
  n_rearranging = int(r.rearranging.sum())
  assert 1 <= n_rearranging <= 0.1 * n
  centre = r.positions_after[np.argmax(r.d2min)]
  d = shear.triclinic_minimum_image(r.positions_after[r.rearranging] - centre,
                                    r.cell_after)
  assert np.linalg.norm(d, axis=-1).max() < 4.0
  # D²_min itself is a perfect score; the report holds the energy baseline.
  assert shear_study.score_rearrangements(
      r.d2min, r.rearranging, r.types, k=None).roc_auc == 1.0
  entry = report["configurations"][0]
  assert entry["first_event"]["strain"] == pytest.approx(r.strain[k])
  assert 0 <= entry["scores"]["potential_energy"]["roc_auc"] <= 1
