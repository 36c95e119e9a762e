"""Small synthetic configurations for the pipeline/training/export tests.

Not physics: particles are placed uniformly at random at the Kob-Andersen
density (1.2) and the "propensity" is a smooth function of the local
structure (neighbour counts within 1.3 and 1.8 σ, and the type), so a graph
network can learn it in a few steps and a correlation is meaningful.
"""

import numpy as np

from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.io import record as record_lib

DENSITY = 1.2


def make_record(seed: int, n_particles: int = 128,
                times=(0.5, 2.0)) -> record_lib.ConfigurationRecord:
  """One synthetic configuration with len(times) propensity timescales.

  Args:
    seed: random seed (positions, types).
    n_particles: particles; the cubic box edge is (n / 1.2)^(1/3) σ, so
      n >= 77 keeps the box above twice the 2.0 σ cut-off.
    times: τ units, one propensity row each.

  Returns:
    a validated ConfigurationRecord (80 % type A).
  """
  rng = np.random.default_rng(seed)
  side = (n_particles / DENSITY)**(1 / 3)
  box = np.full(3, side, np.float32)
  positions = rng.uniform(0, side, size=(n_particles, 3))
  types = np.zeros(n_particles, np.int32)
  types[rng.permutation(n_particles)[:n_particles // 5]] = 1
  vectors = periodic.minimum_image(positions[None] - positions[:, None], box)
  distance = np.linalg.norm(vectors, axis=-1)
  np.fill_diagonal(distance, np.inf)
  close = (distance < 1.3).sum(axis=1)
  far = (distance < 1.8).sum(axis=1)
  score = 0.6 - 0.04 * close + 0.01 * far + 0.2 * types
  propensity = np.stack([np.maximum(score * t**0.5, 0.01) for t in times])
  return record_lib.ConfigurationRecord.create(
      positions=positions, types=types, box=box, propensity=propensity,
      times=np.asarray(times, np.float32),
      isf_levels=np.linspace(0.9, 0.5, len(times)), temperature=1.0,
      n_runs=2)


def make_records(n: int, seed: int = 0, **kwargs):
  """n records with seeds seed, seed + 1, ..."""
  return [make_record(seed + i, **kwargs) for i in range(n)]
