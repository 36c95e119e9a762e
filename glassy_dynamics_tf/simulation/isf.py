"""Self intermediate scattering function and the times where it crosses levels.

  F_s(q, t) = < (1/N_A) Σ_{i ∈ A} exp(i q·[r_i(t) - r_i(0)]) >,

measured on the A particles at the first peak of S(q) (q = 7.25 at ρ = 1.2,
Kob & Andersen, PRE 51, 4626 (1995)), as the published data defines its
timescales (Bapst et al., Nature Physics 16, 448 (2020), Methods).

Direction average: we use the exact isotropic average over all directions of
q in 3-D, <exp(i q·Δr)>_q̂ = sin(q|Δr|)/(q|Δr|), rather than an average over
three lattice axes. It is the limit of averaging over many q vectors of the
same length, has no finite-size anisotropy, and needs only |Δr|, which is
also what the propensity is built from.

Crossing times are interpolated linearly in log(t) between the two grid
points that bracket the first downward crossing; the propensity is then
taken at the grid point nearest in log(t) to that time, as the published
data picks `time_indices` on its own grid.
"""

import numpy as np


def self_isf(displacement_norms: np.ndarray, q: float,
             mask: np.ndarray = None) -> np.ndarray:
  """Isotropic self-ISF from displacement magnitudes.

  Args:
    displacement_norms: [..., n] float, |r_i(t) - r_i(0)|, σ_AA units.
    q: wave number, σ_AA⁻¹.
    mask: optional [n] bool, particles to average over (A particles).

  Returns:
    [...] float64, the mean of sin(q d)/(q d) over the selected particles.
  """
  d = np.asarray(displacement_norms, np.float64)
  values = np.sinc(q * d / np.pi)  # np.sinc(x) = sin(πx)/(πx), 1 at 0.
  if mask is not None:
    values = values[..., np.asarray(mask, bool)]
  return values.mean(axis=-1)


def crossing_time(times: np.ndarray, isf: np.ndarray, level: float) -> float:
  """First time the (decaying) ISF falls to `level`, log-time interpolation.

  Args:
    times: [G] float, increasing, > 0, τ units.
    isf: [G] float, F_s at those times.
    level: in (0, 1).

  Returns:
    The crossing time, or NaN if the ISF stays above `level` on the grid.
    If already at or below `level` at times[0], returns times[0].
  """
  times = np.asarray(times, np.float64)
  isf = np.asarray(isf, np.float64)
  below = np.flatnonzero(isf <= level)
  if below.size == 0:
    return float("nan")
  k = int(below[0])
  if k == 0:
    return float(times[0])
  f0, f1 = isf[k - 1], isf[k]
  lt0, lt1 = np.log(times[k - 1]), np.log(times[k])
  frac = 0.0 if f0 == f1 else (f0 - level) / (f0 - f1)
  return float(np.exp(lt0 + frac * (lt1 - lt0)))


def nearest_grid_index(times: np.ndarray, t: float) -> int:
  """Index of the grid time nearest to `t` in log(t)."""
  times = np.asarray(times, np.float64)
  return int(np.argmin(np.abs(np.log(times) - np.log(t))))
