"""Preparation checkpoints and the reference (equilibrium) self-ISF."""

import math
import os

import numpy as np

from glassy_dynamics_tf.simulation import isf
from glassy_dynamics_tf.simulation import kob_andersen as ka
from glassy_dynamics_tf.simulation import preparation

# Seconds, not physics (as TINY in test_driver.py).
SETTINGS = preparation.PreparationSettings(
    temperature=1.0, density=1.2, pressure=math.nan, n_particles=250, seed=3,
    melt_time=1.0, cool_time=1.0, equilibration_tau_alpha=2.0,
    isf_levels=(0.9, 0.5))


def _same(a, b):
  for key, value in a.as_arrays().items():
    np.testing.assert_array_equal(value, b.as_arrays()[key])


def test_reference_isf_is_measured_checkpointed_and_reused(tmp_path):
  parents, tau_alpha, reference = preparation.prepare(
      SETTINGS, 2, str(tmp_path), log=lambda m: 0)
  assert len(parents) == 2 and all(os.path.exists(p) for p in parents)
  # Enough time origins at the lowest level's crossing, on the common grid.
  j = isf.first_crossing_index(reference.mean, 0.5)
  assert j >= 1 and reference.isf_count[j] >= preparation.ISF_MIN_ORIGINS
  assert np.all(np.diff(reference.isf_count) <= 0)
  assert reference.mean[0] > 0.99 and reference.mean[j] <= 0.5
  assert reference.origin_interval_steps == round(tau_alpha / 4 / ka.TIMESTEP)
  assert reference.q == ka.first_peak_wavenumber(
      250 / float(np.prod(preparation.load_state(parents[0])[0].box)))
  # Stored in the chain's checkpoint and reused without any MD.
  messages = []
  again = preparation.prepare(SETTINGS, 2, str(tmp_path), log=messages.append)
  assert [m for m in messages if "warning" not in m] == []
  assert again[1] == tau_alpha
  _same(again[2], reference)
  _same(preparation.load_reference_isf(str(tmp_path / "prep_isf.npz")),
        reference)
  # Only the last production checkpoint is kept; from it (prep_isf.npz
  # lost), the same curve comes back.
  kept = [f for f in os.listdir(tmp_path) if f.startswith("prep_production")]
  assert len(kept) == 1
  os.remove(tmp_path / "prep_isf.npz")
  _same(preparation.prepare(SETTINGS, 2, str(tmp_path),
                            log=lambda m: 0)[2], reference)


def test_no_reference_isf_without_levels(tmp_path):
  settings = preparation.PreparationSettings(
      **dict(SETTINGS.__dict__, isf_levels=()))
  parents, _, reference = preparation.prepare(settings, 2, str(tmp_path),
                                              log=lambda m: 0)
  assert reference is None and len(parents) == 2
  assert not os.path.exists(tmp_path / "prep_isf.npz")
