"""Small synthetic configurations for the pipeline/training/export tests.

Not physics: particles are placed uniformly at random at the Kob-Andersen
density (1.2) and the "propensity" is a smooth function of the local
structure (neighbour counts within 1.3 and 1.8 σ, and the type), so a graph
network can learn it in a few steps and a correlation is meaningful.
"""

import os
from typing import Any, NamedTuple

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


def with_noisy_halves(record: record_lib.ConfigurationRecord, signal,
                      noise_std: float,
                      seed: int) -> record_lib.ConfigurationRecord:
  """`record` with a known signal measured by two noisy half-ensembles.

  propensity_halves[h] = signal + independent N(0, noise_std²) per particle,
  timescale and half; propensity = their mean (an even ensemble). So the
  split-half reliability is var(s) / (var(s) + noise_std²) and the
  Spearman-Brown ceiling sqrt(var(s) / (var(s) + noise_std² / 2)), with
  var(s) over the particles of one timescale.

  Args:
    record: supplies the geometry, times and state point.
    signal: [n_timescales, n_particles] float, σ_AA; keep it far enough above
      0 that the halves stay non-negative (records refuse negative values).
    noise_std: σ_AA, the noise of one half.
    seed: random seed of the noise.
  """
  signal = np.asarray(signal, np.float64)
  rng = np.random.default_rng(seed)
  halves = signal[None] + rng.normal(scale=noise_std, size=(2,) +
                                     signal.shape)
  fields = record.as_dict()
  fields.update(propensity=halves.mean(axis=0), propensity_halves=halves,
                n_runs=2 * max(1, record.n_runs))
  return record_lib.ConfigurationRecord.create(**fields)


def make_records(n: int, seed: int = 0, **kwargs):
  """n records with seeds seed, seed + 1, ..."""
  return [make_record(seed + i, **kwargs) for i in range(n)]


def train_validation_datasets(n_train: int = 3, n_validation: int = 2,
                              n_particles: int = 100) -> dict:
  """{"train", "validation"}: tf.data record datasets for `training.train`
  (validation seeds start at 100, so the splits never share a record)."""
  from glassy_dynamics_tf import input_pipeline  # pylint: disable=g-import-not-at-top
  return {
      "train": input_pipeline.records_dataset(
          make_records(n_train, n_particles=n_particles)),
      "validation": input_pipeline.records_dataset(
          make_records(n_validation, seed=100, n_particles=n_particles)),
  }


class ExportedModel(NamedTuple):
  """A network with random weights exported as a SavedModel."""
  path: str             # the SavedModel directory
  model: Any            # the tf_keras model behind it
  metadata: Any         # input_pipeline.DatasetMetadata of `records`
  records: list         # the synthetic records the metadata comes from


def export_random_model(config, directory: str, n_records: int = 2,
                        n_particles: int = 120) -> ExportedModel:
  """Builds `config`'s network with random weights on the metadata of
  `n_records` synthetic records and exports it to DIRECTORY/saved_model."""
  # pylint: disable=g-import-not-at-top  (TensorFlow only where needed)
  from glassy_dynamics_tf import input_pipeline
  from glassy_dynamics_tf import training
  records = make_records(n_records, n_particles=n_particles)
  metadata = input_pipeline.compute_metadata(
      {"train": input_pipeline.records_dataset(records)}, config)
  model = training.create_model(config, metadata)
  path = os.path.join(directory, "saved_model")
  training.export_saved_model(model, config, metadata, path)
  return ExportedModel(path, model, metadata, records)
