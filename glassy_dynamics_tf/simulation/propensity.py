"""Isoconfigurational ensemble and dynamic propensity.

Widmer-Cooper, Harrowell & Fynewever, PRL 93, 135701 (2004): from one
configuration, R trajectories with independent Maxwell-Boltzmann velocities;
the propensity of particle i at time t is the ensemble mean of its
displacement, here (as in Bapst et al. 2020) the mean over runs of
|r_i(t) - r_i(0)| with unwrapped r.

Each run (`run_trajectory`):
  * starts from exactly the record's positions (float32, wrapped),
  * draws velocities with `velocity all create T SEED dist gaussian mom yes
    rot no` (zero total momentum, recorded seed),
  * integrates Nosé-Hoover NVT at T with damping 0.3 τ, dt = 0.003 τ
    (DESIGN.md: indistinguishable from NVE up to t ≈ 0.4 and verified
    against the authors' propensities),
  * records |Δr_i| on a log-spaced grid of step counts (`time_grid`, 25
    points per decade like the published grid) until its own A-particle
    self-ISF has fallen below `stop_isf` (or the grid ends).

The timescales are then chosen on the run-averaged ISF (`isf.py`).
"""

import dataclasses
from typing import Optional, Sequence

import numpy as np

from glassy_dynamics_tf.io.record import ParticleType
from glassy_dynamics_tf.simulation import engine
from glassy_dynamics_tf.simulation import isf as isf_lib
from glassy_dynamics_tf.simulation import kob_andersen as ka

POINTS_PER_DECADE = 25   # The published grid: t_{k+1}/t_k = 10^0.04.


def time_grid(max_steps: int, points_per_decade: int = POINTS_PER_DECADE,
              extra_steps: Sequence[int] = ()) -> np.ndarray:
  """Log-spaced MD step counts 1, 2, ..., up to and including `max_steps`.

  Args:
    max_steps: last step count (>= 1).
    points_per_decade: grid density; every integer below ~points/ln(10).
    extra_steps: step counts that must be on the grid (fixed times).

  Returns:
    [G] int64, strictly increasing, starting at 1, ending at max_steps.
  """
  max_steps = int(max_steps)
  if max_steps < 1:
    raise ValueError(f"max_steps must be >= 1, found {max_steps}")
  k = np.arange(int(np.ceil(points_per_decade * np.log10(max_steps))) + 1)
  steps = np.round(10.0**(k / points_per_decade)).astype(np.int64)
  steps = np.concatenate([steps[steps < max_steps], [max_steps],
                          np.asarray(extra_steps, np.int64)])
  return np.unique(steps)


@dataclasses.dataclass(frozen=True)
class RunResult:
  """One isoconfigurational run.

  Attributes:
    steps: [G] int64, grid step counts reached (a prefix of the full grid).
    displacements: [G, n] float32, |r_i(t) - r_i(0)|, σ_AA units.
    isf: [G] float64, A-particle self-ISF of this run.
    seed: the LAMMPS velocity seed.
  """
  steps: np.ndarray
  displacements: np.ndarray
  isf: np.ndarray
  seed: int


def run_trajectory(positions: np.ndarray,
                   types: np.ndarray,
                   box: np.ndarray,
                   temperature: float,
                   seed: int,
                   grid_steps: np.ndarray,
                   q: float,
                   stop_isf: Optional[float] = None,
                   min_grid_points: int = 0,
                   accelerator: str = "opt",
                   damping: float = engine.THERMOSTAT_DAMPING) -> RunResult:
  """One NVT run from `positions` with fresh velocities.

  Deterministic in all arguments: the same call gives bit-identical output,
  and a call with a larger `min_grid_points` reproduces a shorter one as its
  prefix (the grid, not the stop, fixes where the run is sampled).

  Args:
    positions: [n, 3] float, start configuration, σ_AA units.
    types: [n] int, 0 = A, 1 = B.
    box: [3] float, box edges.
    temperature: T of the velocities and the thermostat, ε_AA/k_B.
    seed: LAMMPS velocity seed in (0, 2^31).
    grid_steps: [G] int, increasing step counts at which to record.
    q: ISF wave number, σ_AA⁻¹.
    stop_isf: stop once this run's ISF is <= stop_isf (after at least
      `min_grid_points` grid points); None runs the whole grid.
    min_grid_points: record at least this many grid points.
    accelerator: LAMMPS accelerator suffix, see `engine`.
    damping: Nosé-Hoover damping time, τ.

  Returns:
    The RunResult.
  """
  grid_steps = np.asarray(grid_steps, np.int64)
  types = np.asarray(types, np.int32)
  is_a = types == ParticleType.A
  if not is_a.any():
    is_a = np.ones_like(is_a)   # a pure-B system: measure all particles.
  with engine.KobAndersenSimulation(
      positions, types, box, accelerator=accelerator) as sim:
    sim.set_velocities(temperature, seed)
    sim.nvt(temperature, damping=damping)
    start = sim.unwrapped_positions()
    displacements, isfs = [], []
    for k, step in enumerate(grid_steps):
      sim.run(int(step) - sim.step)
      d = np.linalg.norm(sim.unwrapped_positions() - start, axis=-1)
      displacements.append(d.astype(np.float32))
      isfs.append(isf_lib.self_isf(d, q, is_a))
      if (stop_isf is not None and k + 1 >= min_grid_points and
          isfs[-1] <= stop_isf):
        break
  n = len(isfs)
  return RunResult(steps=grid_steps[:n], displacements=np.stack(displacements),
                   isf=np.asarray(isfs), seed=int(seed))


@dataclasses.dataclass(frozen=True)
class Timescales:
  """Where the propensity is taken on the common grid.

  Attributes:
    grid_indices: [T] int, indices into the common grid.
    times: [T] float64, grid times at those indices, τ.
    crossing_times: [T] float64, interpolated ISF crossings (NaN for fixed
      times).
    missing: list of the ISF levels not crossed on the grid (empty if OK).
  """
  grid_indices: np.ndarray
  times: np.ndarray
  crossing_times: np.ndarray
  missing: list


def common_prefix(runs: Sequence[RunResult]) -> int:
  """Number of grid points that every run reached."""
  return min(len(r.steps) for r in runs)


def choose_timescales(grid_times: np.ndarray, mean_isf: np.ndarray,
                      isf_levels: Sequence[float] = (),
                      fixed_times: Sequence[float] = ()) -> Timescales:
  """Grid indices for ISF levels (nearest in log t to the crossing) or for
  fixed times (exactly on the grid, see `time_grid(extra_steps=...)`)."""
  indices, times, crossings, missing = [], [], [], []
  for level in isf_levels:
    t = isf_lib.crossing_time(grid_times, mean_isf, level)
    if not np.isfinite(t):
      missing.append(float(level))
      continue
    k = isf_lib.nearest_grid_index(grid_times, t)
    indices.append(k)
    times.append(grid_times[k])
    crossings.append(t)
  for t in fixed_times:
    k = isf_lib.nearest_grid_index(grid_times, t)
    indices.append(k)
    times.append(grid_times[k])
    crossings.append(np.nan)
  return Timescales(np.asarray(indices, np.int64), np.asarray(times),
                    np.asarray(crossings), missing)


def propensity(runs: Sequence[RunResult], grid_indices: np.ndarray) -> np.ndarray:
  """[T, n] float32 mean over runs of |Δr_i| at the chosen grid indices."""
  stacked = np.stack([r.displacements[grid_indices] for r in runs])
  return stacked.astype(np.float64).mean(axis=0).astype(np.float32)


def stop_level(isf_levels: Sequence[float]) -> Optional[float]:
  """Per-run ISF at which a run may stop: well below the lowest level, so
  that the run average has crossed it too (runs differ by a few 0.01)."""
  if not len(isf_levels):
    return None
  return 0.75 * float(min(isf_levels))


def steps_for_time(t: float, timestep: float = ka.TIMESTEP) -> int:
  """Nearest whole number of MD steps to time `t` (τ), at least 1."""
  return max(1, int(round(float(t) / timestep)))
