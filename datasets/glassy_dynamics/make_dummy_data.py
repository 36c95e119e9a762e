r"""Regenerates `dummy_data/`: tiny files in both source formats.

Run from the repository root:

  .venv/bin/python datasets/glassy_dynamics/make_dummy_data.py

Writes (about 120 KB in all, deterministic contents):

  dummy_data/configuration_*.npz   6 of our files (save_npz), 20-40 particles,
                                   2 timescales, the 1st and 4th with
                                   propensity_halves; read by
                                   `demo`/`simulated`.
  dummy_data/public_dataset/temperature_044/{train,test}/aggregated_*.pickle
  dummy_data/temperature_{047,050,056}/{train,test}/aggregated_data_*.pickle
                                   DeepMind-style pickles in the published
                                   format (tests/fixtures/deepmind/
                                   README.md): a plain pickle (protocol 3) of
                                   a dict of numpy arrays, lists and a
                                   metadata dict, 10 timescales.

File names are chosen with the builder's own split rule so that each split
gets files without the small-dataset rule: npz 4 train / 1 validation /
1 test; t044 3 / 1 / 2; the others 2 / 1 / 1. These counts are the SPLITS of
glassy_dynamics_dataset_builder_test.py.
"""

import math
import pathlib
import pickle
import shutil
import sys

import numpy as np

_HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))  # `glassy_dynamics` package.
sys.path.insert(0, str(_HERE.parent.parent))  # `glassy_dynamics_tf`.

# pylint: disable=g-import-not-at-top,wrong-import-position
from glassy_dynamics import glassy_dynamics_dataset_builder as builder_lib
from glassy_dynamics_tf.io import npz_format
from glassy_dynamics_tf.io import record as record_lib

DUMMY_DIR = _HERE / "dummy_data"
# split -> number of files wanted in it.
NPZ_COUNTS = {"train": 4, "validation": 1, "test": 1}
DEEPMIND_COUNTS = {
    "044": {"train": 3, "validation": 1, "test": 2},
    "047": {"train": 2, "validation": 1, "test": 1},
    "050": {"train": 2, "validation": 1, "test": 1},
    "056": {"train": 2, "validation": 1, "test": 1},
}
# The published ISF levels (0.9 ... 0.1, then 1/e), one per time index.
IS_VALUES = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 1.0 / math.e)
DENSITY = 1.2  # particles per σ_AA³, as the published data.


def _natural_split(name: str, validation: float, test: float) -> str:
  u = builder_lib.split_fraction(name)
  if u < 1.0 - validation - test:
    return "train"
  return "validation" if u < 1.0 - test else "test"


def _pick_names(pattern: str, start: int, counts, validation: float,
                test: float):
  """The first names `pattern.format(i)`, i >= start, filling `counts`."""
  wanted = dict(counts)
  names = []
  i = start
  while any(wanted.values()):
    name = pattern.format(i)
    split = _natural_split(name, validation, test)
    if wanted.get(split, 0) > 0:
      wanted[split] -= 1
      names.append(name)
    i += 1
  return names


def _configuration(rng: np.random.Generator, n_particles: int):
  """Positions [n, 3] (some outside the box), types [n], box [3]."""
  edge = (n_particles / DENSITY)**(1.0 / 3.0)
  box = np.full((3,), edge)
  positions = rng.uniform(-0.2 * edge, 1.2 * edge, size=(n_particles, 3))
  types = np.zeros((n_particles,), np.int32)
  types[rng.permutation(n_particles)[:n_particles // 5]] = 1  # 80:20 KA.
  return positions, types, box


def write_npz_files() -> None:
  names = _pick_names("configuration_{:05d}.npz", 0, NPZ_COUNTS, 0.1, 0.1)
  for k, name in enumerate(names):
    rng = np.random.default_rng(100 + k)
    n = 20 + 4 * k  # variable n_particles: 20 ... 40.
    positions, types, box = _configuration(rng, n)
    propensity = rng.uniform(0.0, 1.0, size=(2, n))
    halves = None
    if k % 3 == 0:
      # Two files with half-ensemble propensities (builder version 1.1.0)
      # whose mean is the propensity; their own generator leaves the other
      # files as they were.
      spread = np.random.default_rng(200 + k).uniform(-0.5, 0.5, (2, n))
      halves = np.stack([propensity * (1 + spread),
                         propensity * (1 - spread)])
    record = record_lib.ConfigurationRecord.create(
        positions=positions,
        types=types,
        box=box,
        times=[0.13, 1.5],
        isf_levels=[0.9, 0.5],
        propensity=propensity,
        propensity_halves=halves,
        temperature=0.9,
        # Half the files with an unknown pressure (NaN), as NVT runs.
        pressure=math.nan if k % 2 else 6.3,
        n_runs=2,
        source=name)
    npz_format.save_npz(record, str(DUMMY_DIR / name))


def _published_dict(rng: np.random.Generator, n_particles: int, n_runs: int,
                    temperature: float):
  """One configuration in the published pickle's types and nesting."""
  positions, types, box = _configuration(rng, n_particles)
  # Log-spaced times with 0 first, as the published `time` list (shorter).
  time = [0.0] + [float(t) for t in np.round(np.geomspace(0.003, 5e4, 39), 3)]
  time_indices = [8, 12, 20, 23, 26, 29, 32, 35, 38, 27]
  targets = []
  for j in time_indices:
    scale = 0.1 * math.sqrt(time[j])
    targets.append([
        positions + rng.normal(0.0, scale, size=positions.shape)
        for _ in range(n_runs)
    ])
  return {
      "positions": positions,
      "box": box,
      "types": types,
      "time": time,
      "is_values": np.asarray(IS_VALUES),
      "time_indices": time_indices,
      "metadata": {
          "temperature": temperature,
          "pressure": 2.93,
          "fluid": "Kob Andersen"
      },
      "trajectory_start_velocities": [
          rng.normal(0.0, math.sqrt(temperature), size=positions.shape)
          for _ in range(n_runs)
      ],
      "trajectory_target_positions": targets,
  }


def write_pickles() -> None:
  for code, counts in DEEPMIND_COUNTS.items():
    temperature = int(code) / 100.0
    if code == "044":
      base = DUMMY_DIR / "public_dataset" / f"temperature_{code}"
      n_particles, n_runs = 16, 2
    else:
      base = DUMMY_DIR / f"temperature_{code}"
      n_particles, n_runs = 12, 1
    train_counts = {s: counts[s] for s in ("train", "validation")}
    # Only the validation hold-out is hashed; the test files are the test
    # folder, numbered from 10001 as the authors'.
    folders = {
        "train":
            _pick_names("aggregated_data_{}.pickle", 1, train_counts, 0.1,
                        0.0),
        "test": [
            f"aggregated_data_{10001 + i}.pickle"
            for i in range(counts["test"])
        ],
    }
    for folder, names in folders.items():
      (base / folder).mkdir(parents=True, exist_ok=True)
      for name in names:
        seed = int(code) * 100_000 + int(name.split("_")[-1].split(".")[0])
        data = _published_dict(
            np.random.default_rng(seed), n_particles, n_runs, temperature)
        with open(base / folder / name, "wb") as f:
          pickle.dump(data, f, protocol=3)


def main() -> None:
  if DUMMY_DIR.exists():
    shutil.rmtree(DUMMY_DIR)
  DUMMY_DIR.mkdir(parents=True)
  write_npz_files()
  write_pickles()
  total = sum(p.stat().st_size for p in DUMMY_DIR.rglob("*") if p.is_file())
  print(f"wrote {DUMMY_DIR} ({total / 1024:.0f} KB)")


if __name__ == "__main__":
  main()
