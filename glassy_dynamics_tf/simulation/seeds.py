"""Deterministic seeds for every random choice of a simulation.

Every seed is a pure function of the user's `--seed` and integer keys
(stage, configuration index, run index), through numpy's SeedSequence, so a
resumed run draws exactly the seeds an uninterrupted one would.
"""

import numpy as np

# LAMMPS' Park-Miller and Marsaglia generators accept seeds up to ~9e8.
MAX_LAMMPS_SEED = 900_000_000

# First key of each use, so that streams never coincide.
PREPARATION = 0
RUNS = 1


def derive_seed(base_seed: int, *keys: int) -> int:
  """A LAMMPS seed in [1, 9e8] from a base seed and non-negative int keys."""
  entropy = [int(base_seed) & 0xFFFFFFFF, int(base_seed) >> 32, *map(int, keys)]
  state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
  return int(state % (MAX_LAMMPS_SEED - 1)) + 1


def run_seeds(base_seed: int, configuration_index: int,
              n_runs: int) -> np.ndarray:
  """[n_runs] int64 velocity seeds of one configuration's ensemble."""
  return np.asarray([derive_seed(base_seed, RUNS, configuration_index, r)
                     for r in range(n_runs)], np.int64)
