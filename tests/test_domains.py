"""Tests of domain-decomposed prediction (domains.predict_in_domains).

The claim under test: a particle's output depends only on particles closer
than num_recurrences x cutoff, so predicting sub-boxes plus a halo that wide
and keeping each sub-box's own particles reproduces the whole-box
prediction. Checked against a brute-force K-hop function (NumPy, exact), a
real exported SavedModel and the published TF1 checkpoint; a halo one
cut-off too thin must change the answer.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from glassy_dynamics_tf import domains
from glassy_dynamics_tf import io as io_lib
from glassy_dynamics_tf import periodic
from glassy_dynamics_tf import prediction
from glassy_dynamics_tf.configs import demo
from glassy_dynamics_tf.io import record as record_lib

import fixtures
import synthetic_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINT = fixtures.T044_S09_CHECKPOINT
MARGIN = domains.HALO_MARGIN


def _configuration(box, n, seed=0):
  """Uniform random positions in `box` (not physics: the decomposition only
  needs particles), 80 % type A."""
  rng = np.random.default_rng(seed)
  box = np.asarray(box, np.float32)
  positions = (rng.uniform(0, 1, (n, 3)) * box).astype(np.float32)
  positions = np.minimum(positions, np.nextafter(box, 0))
  types = np.zeros(n, np.int32)
  types[rng.permutation(n)[:n // 5]] = 1
  return positions, types, box


# ------------------------------------------------ brute-force reference ---


def _hop_function(cutoff, hops):
  """predict_fn whose output depends on exactly `hops` graph steps.

  Output of particle i: the sum over particles j within `hops` steps of
  edges shorter than `cutoff` (minimum image) of (1 + j's type) times the
  number of walks of length `hops` from i to j, computed with the O(n^2)
  adjacency matrix. Integers (exact in float64), so any missing neighbour
  changes the result.
  """

  def predict(positions, types, box):
    vectors = periodic.minimum_image(
        positions[None].astype(np.float64) - positions[:, None], box)
    adjacency = (np.einsum("ijk,ijk->ij", vectors, vectors)
                 < cutoff**2).astype(np.float64)   # self-loops included
    value = 1.0 + types.astype(np.float64)
    for _ in range(hops):
      value = adjacency @ value
    return value[:, None].astype(np.float32)

  return predict


def test_k_hop_reference_decomposed_equals_whole_box():
  # Non-cubic box; z (4.2 σ) is too thin to split, x and y are split.
  positions, types, box = _configuration([30.0, 24.0, 4.2], 1500)
  cutoff, hops = 1.5, 3   # receptive field 4.5 σ; ~7 neighbours at ρ = 0.5
  predict = _hop_function(cutoff, hops)
  whole = predict(positions, types, box)
  result = domains.predict_in_domains(
      predict, positions, types, box, halo=hops * cutoff + MARGIN,
      max_particles=500)
  grid = result.decomposition.grid
  assert grid[0] >= 2 and grid[1] >= 2 and grid[2] == 1, grid
  assert result.decomposition.region_particles.max() <= 500
  np.testing.assert_array_equal(result.propensity, whole)
  # One cut-off too thin: the particles near the domain faces lose walks.
  thin = domains.predict_in_domains(
      predict, positions, types, box, halo=(hops - 1) * cutoff + MARGIN,
      max_particles=500)
  assert np.sum(thin.propensity != whole) > 10


def test_regions_match_a_brute_force_halo_and_interiors_partition():
  positions, _, box = _configuration([30.0, 24.0, 4.2], 900, seed=1)
  halo = 4.51
  plan = domains.plan_domains(positions, box, halo, 300)
  widths = plan.widths
  assert np.allclose(widths * plan.grid, box)
  wrapped = periodic.wrap(positions.astype(np.float64), box)
  interiors = []
  for domain in domains.iter_domains(positions, plan):
    lower = np.asarray(domain.index) * widths
    # In the region <=> on every split axis, within `halo` of the domain's
    # slab [lower, lower + width) along the periodic axis.
    inside = np.ones(len(positions), bool)
    for axis in range(3):
      if plan.grid[axis] > 1:
        arc = np.mod(wrapped[:, axis] - lower[axis] + halo, box[axis])
        inside &= arc < widths[axis] + 2 * halo
    np.testing.assert_array_equal(domain.region, np.flatnonzero(inside))
    own = np.all((wrapped >= lower) & (wrapped < lower + widths), axis=1)
    np.testing.assert_array_equal(domain.region[domain.interior],
                                  np.flatnonzero(own))
    assert plan.region_particles[domain.index] == domain.region.size
    assert plan.interior_particles[domain.index] == domain.interior.sum()
    interiors.append(domain.region[domain.interior])
  # Every particle is predicted by exactly one domain.
  np.testing.assert_array_equal(np.sort(np.concatenate(interiors)),
                                np.arange(len(positions)))
  assert plan.work == pytest.approx(
      plan.region_particles.sum() / len(positions))


def test_fewest_domains_and_no_split_when_the_box_fits():
  positions, types, box = _configuration([30.0, 24.0, 4.2], 900, seed=2)
  calls = []

  def predict(x, t, b):
    calls.append(len(x))
    return np.stack([x[:, 0], t.astype(np.float32)], axis=1)

  result = domains.predict_in_domains(predict, positions, types, box,
                                         halo=4.51, max_particles=900)
  assert result.decomposition.grid == (1, 1, 1) and calls == [900]
  np.testing.assert_array_equal(result.propensity[:, 0], positions[:, 0])
  # Splitting only x in two: regions of 15 + 2 x 4.51 of 30 σ hold ~722.
  plan = domains.plan_domains(positions, box, 4.51, 800)
  assert plan.grid == (2, 1, 1), plan.describe()
  # An axis is never split when a region would cover it (24 / 2 + 9.02 is
  # less than 24, but 4.2 / k + 9.02 never is).
  assert all(p.grid[2] == 1 for p in [
      domains.plan_domains(positions, box, 4.51, b)
      for b in (250, 400, 600)])
  calls.clear()
  result = domains.predict_in_domains(predict, positions, types, box,
                                         halo=4.51, max_particles=400)
  assert len(calls) == result.decomposition.n_domains > 1
  assert max(calls) <= 400
  np.testing.assert_array_equal(result.propensity[:, 0], positions[:, 0])


def test_bad_arguments_are_named():
  positions, types, box = _configuration([30.0, 24.0, 4.2], 900)

  def predict(x, t, b):
    del t, b
    return np.zeros((len(x), 1), np.float32)

  for halo in (0.0, -1.0, float("nan")):
    with pytest.raises(domains.DomainError, match="halo"):
      domains.predict_in_domains(predict, positions, types, box, halo,
                                    300)
  for budget in (0, -5, 2.5):
    with pytest.raises(domains.DomainError, match="max_particles"):
      domains.predict_in_domains(predict, positions, types, box, 4.51,
                                    budget)
  # At ρ = 0.3 the halo alone (9.02 x 9.02 x 4.2 σ) holds ~100 particles.
  with pytest.raises(domains.DomainError,
                     match=r"max_particles: 50 particles .* too small"):
    domains.predict_in_domains(predict, positions, types, box, 4.51, 50)
  with pytest.raises(domains.DomainError, match="types"):
    domains.predict_in_domains(predict, positions, types[:-1], box, 4.51,
                                  300)
  with pytest.raises(domains.DomainError, match="box"):
    domains.predict_in_domains(predict, positions, types, [30.0, 24.0],
                                  4.51, 300)
  with pytest.raises(domains.DomainError, match="predict_fn"):
    domains.predict_in_domains(lambda x, t, b: np.zeros(len(x)),
                                  positions, types, box, 4.51, 300)
  for value in (-2, 1.5):
    with pytest.raises(domains.DomainError, match="max_particles"):
      domains.resolve_max_particles(value)
  assert domains.resolve_max_particles(-1) is None
  assert (domains.resolve_max_particles(0) ==
          domains.DEFAULT_MAX_PARTICLES_PER_DOMAIN)


def test_unknown_receptive_field_only_allows_whole_boxes():
  positions, types, box = _configuration([30.0, 24.0, 4.2], 900)
  predictor = prediction.Predictor(
      lambda x, t, b: np.ones((len(x), 1), np.float32), {}, "test")
  assert predictor.predict_in_domains(positions, types, box,
                                      -1).propensity.shape == (900, 1)
  assert predictor.plan_domains(positions, box, 1000).n_domains == 1
  with pytest.raises(prediction.PredictionError,
                     match="receptive field is unknown"):
    predictor.predict_in_domains(positions, types, box, 300)


# ------------------------------------------------------- real models ---


@pytest.fixture(name="demo_model", scope="module")
def _demo_model(tmp_path_factory):
  """The demo config's network (4 recurrences, latent 32) with random
  weights, exported as a SavedModel."""
  tf.random.set_seed(0)
  return synthetic_records.export_random_model(
      demo.get_config(), str(tmp_path_factory.mktemp("export"))).path


# 50 x 40 x 4.5 σ at ρ = 0.44: the demo network's halo (8.01 σ) allows
# splits along x and y, not z.
BOX = (50.0, 40.0, 4.5)
N = 4000


def test_saved_model_decomposed_equals_whole_box(demo_model):
  predictor = prediction.load_predictor(demo_model)
  assert predictor.cutoff == 2.0 and predictor.num_recurrences == 4
  assert predictor.receptive_field == 8.0
  positions, types, box = _configuration(BOX, N)
  whole = predictor.predict(positions, types, box)
  sizes = []
  result = predictor.predict_in_domains(
      positions, types, box, max_particles=1200,
      progress=lambda step: sizes.append(step.region_particles))
  plan = result.decomposition
  assert plan.grid[0] >= 2 and plan.grid[1] >= 2 and plan.grid[2] == 1
  assert len(sizes) == plan.n_domains and max(sizes) <= 1200
  assert plan.halo == 8.0 + MARGIN
  # Same edges and edge vectors, bit for bit; only float32 sums may be
  # ordered differently (the demo config's node descriptors sum ~40
  # neighbours per particle in float32: up to ~2e-6 apart).
  np.testing.assert_allclose(result.propensity, whole, rtol=1e-5,
                             atol=5e-6)
  # A halo of one cut-off instead of four fails the same comparison. (With
  # random weights the fourth hop moves outputs by only ~1e-6, below the
  # tolerance; the K-hop reference test above checks one cut-off less.)
  thin = domains.predict_in_domains(
      predictor.predict, positions, types, box, halo=2.0 + MARGIN,
      max_particles=1200)
  assert thin.decomposition.n_domains > 1
  with pytest.raises(AssertionError):
    np.testing.assert_allclose(thin.propensity, whole, rtol=1e-5, atol=1e-6)


def test_tf1_checkpoint_decomposed_equals_whole_box():
  predictor = prediction.load_predictor(CHECKPOINT, times=[0.132])
  assert predictor.cutoff == 2.0 and predictor.num_recurrences == 7
  # ρ = 1.2; the 14.01 σ halo allows splitting x (70 σ) only.
  positions, types, box = _configuration([70.0, 8.0, 4.5], 3024)
  whole = predictor.predict(positions, types, box)
  result = predictor.predict_in_domains(positions, types, box, 2300)
  assert result.decomposition.grid == (3, 1, 1)
  np.testing.assert_allclose(result.propensity, whole, rtol=1e-5,
                             atol=1e-6)


def _predict_main(*args):
  return subprocess.run([sys.executable, "predict_main.py", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_predict_main_flag(demo_model, tmp_path):
  positions, types, box = _configuration(BOX, N)
  record = record_lib.ConfigurationRecord.create(
      positions=positions, types=types, box=box,
      propensity=np.zeros([0, N], np.float32),
      times=np.zeros([0], np.float32), temperature=1.0)
  npz = str(tmp_path / "config.npz")
  io_lib.save_npz(record, npz)
  outputs = {}
  for budget in (-1, 1200):
    out = str(tmp_path / f"out_{budget}.npz")
    run = _predict_main(f"--model={demo_model}", f"--input={npz}",
                        f"--output={out}", "--output_xyz=none",
                        f"--max_particles_per_domain={budget}")
    assert run.returncode == 0, run.stderr[-3000:]
    outputs[budget] = np.load(out)["propensity"]
  assert "halo 8.01 σ" in run.stdout and "domain 1/" in run.stdout
  np.testing.assert_allclose(outputs[1200], outputs[-1], rtol=1e-5,
                             atol=1e-6)
  for budget, message in ((-5, "--max_particles_per_domain"),
                          (50, "--max_particles_per_domain=50: "
                               "max_particles: 50 particles")):
    run = _predict_main(f"--model={demo_model}", f"--input={npz}",
                        f"--output={tmp_path / 'bad.npz'}",
                        f"--max_particles_per_domain={budget}")
    assert run.returncode != 0 and message in run.stderr, run.stderr[-2000:]
