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


# Cap growth of `MultiOriginIsf`: 8 points of the 25-per-decade grid, i.e.
# the longest followed lag grows by a factor 10^(8/25) ≈ 2.1.
CAP_GROWTH_POINTS = 8


class MultiOriginIsf:
  """Self-ISF of one equilibrium trajectory, averaged over time origins.

    F_s(q, t) = < sin(q |r_i(t0 + t) - r_i(t0)|) / (q |...|) >_{i ∈ A, t0},

  the standard time-origin average of an equilibrium correlation function
  (Allen & Tildesley, Computer Simulation of Liquids, 2nd ed. (2017),
  §8.1), streamed so that only the open origins' positions are kept.

  Origins are the trajectory's states at steps 0, Δ, 2Δ, ... (Δ =
  `origin_interval` MD steps, counted along the trajectory across LAMMPS
  sessions). Each origin is followed at lags `lag_steps[:cap]` (the common
  log grid of the ensembles, so that crossings are snapped on the same
  grid). `cap` adapts: when an origin reaches it and the origin-averaged ISF
  at the last followed lag is still above `stop_level`, the cap grows by
  `CAP_GROWTH_POINTS` for this and all later origins; an origin stops once
  it has reached the cap. The average at lag j is over the origins that
  reached it (`isf_count[j]`, non-increasing in j).

  The caller owns the MD and feeds positions at the steps it asks for:

    while acc.next_event() <= target:
      advance the trajectory to step acc.next_event()
      acc.record(acc.next_event(), unwrapped_positions)
    advance to target; acc.step = target

  The state is checkpointed with `to_arrays(positions_now)` (open origins as
  offsets from the current unwrapped positions, so a restarted LAMMPS
  session, whose unwrapped frame may differ by whole box images, resumes
  exactly) and restored with `from_arrays`.
  """

  _PREFIX = "isf_acc_"

  def __init__(self, lag_steps: np.ndarray, origin_interval: int, q: float,
               mask: np.ndarray, cap: int, stop_level: float):
    """Starts with no origins; the first one opens at step 0.

    Args:
      lag_steps: [G] int, increasing lags in MD steps (>= 1).
      origin_interval: Δ, MD steps between origins (>= 1).
      q: wave number, σ_AA⁻¹.
      mask: [n] bool, particles to average over (A particles).
      cap: initial number of lags followed per origin, in [1, G].
      stop_level: ISF level below which the cap stops growing.
    """
    self.lag_steps = np.asarray(lag_steps, np.int64)
    if self.lag_steps.ndim != 1 or not len(self.lag_steps) or np.any(
        self.lag_steps < 1) or np.any(np.diff(self.lag_steps) <= 0):
      raise ValueError(f"lag_steps must increase from >= 1: {lag_steps}")
    if int(origin_interval) < 1:
      raise ValueError(f"origin_interval must be >= 1, found {origin_interval}")
    self.origin_interval = int(origin_interval)
    self.q = float(q)
    self.mask = np.asarray(mask, bool)
    self.cap = int(min(max(1, cap), len(self.lag_steps)))
    self.stop_level = float(stop_level)
    self.step = 0
    self.next_origin = 0
    self.n_origins = 0
    self.exhausted = False  # An origin reached the grid's end above stop_level.
    self.origin_steps = []       # int, step of each open origin.
    self.origin_positions = []   # [n, 3] float64 unwrapped, each open origin.
    self.origin_next = []        # int, next lag index of each open origin.
    self.isf_sum = np.zeros(len(self.lag_steps), np.float64)
    self.isf_count = np.zeros(len(self.lag_steps), np.int64)

  def next_event(self) -> int:
    """The next trajectory step at which positions are needed."""
    due = [s + int(self.lag_steps[j])
           for s, j in zip(self.origin_steps, self.origin_next)]
    return min(due + [self.next_origin])

  def record(self, step: int, positions: np.ndarray) -> None:
    """Takes the unwrapped positions [n, 3] at `step` == next_event()."""
    step = int(step)
    if step != self.next_event():
      raise ValueError(f"expected positions at step {self.next_event()}, "
                       f"got step {step}")
    positions = np.asarray(positions, np.float64)
    keep = []
    for k, (s, j) in enumerate(zip(self.origin_steps, self.origin_next)):
      if s + int(self.lag_steps[j]) == step:
        d = np.linalg.norm(positions - self.origin_positions[k], axis=-1)
        self.isf_sum[j] += self_isf(d, self.q, self.mask)
        self.isf_count[j] += 1
        j += 1
        if j >= self.cap:
          mean = self.isf_sum[j - 1] / self.isf_count[j - 1]
          if mean > self.stop_level:
            if self.cap < len(self.lag_steps):
              self.cap = min(len(self.lag_steps),
                             self.cap + CAP_GROWTH_POINTS)
            else:
              self.exhausted = True
        self.origin_next[k] = j
      keep.append(self.origin_next[k] < self.cap)
    self.origin_steps = [x for x, k in zip(self.origin_steps, keep) if k]
    self.origin_positions = [x for x, k in zip(self.origin_positions, keep)
                             if k]
    self.origin_next = [x for x, k in zip(self.origin_next, keep) if k]
    if step == self.next_origin:
      self.origin_steps.append(step)
      self.origin_positions.append(positions.copy())
      self.origin_next.append(0)
      self.next_origin += self.origin_interval
      self.n_origins += 1
    self.step = step

  def mean(self) -> np.ndarray:
    """[G'] origin-averaged ISF on lag_steps[:G'], G' = lags with data."""
    n = int(np.count_nonzero(self.isf_count))
    return self.isf_sum[:n] / self.isf_count[:n]

  def to_arrays(self, positions_now: np.ndarray) -> dict:
    """The full state as arrays (for an npz checkpoint)."""
    n = len(self.mask)
    offsets = (np.stack(self.origin_positions) -
               np.asarray(positions_now, np.float64)[None]
               if self.origin_positions else np.zeros((0, n, 3)))
    arrays = {
        "lag_steps": self.lag_steps,
        "origin_interval": np.int64(self.origin_interval),
        "q": np.float64(self.q),
        "mask": self.mask,
        "cap": np.int64(self.cap),
        "stop_level": np.float64(self.stop_level),
        "step": np.int64(self.step),
        "next_origin": np.int64(self.next_origin),
        "n_origins": np.int64(self.n_origins),
        "exhausted": np.bool_(self.exhausted),
        "origin_steps": np.asarray(self.origin_steps, np.int64),
        "origin_next": np.asarray(self.origin_next, np.int64),
        "origin_offsets": offsets,
        "isf_sum": self.isf_sum,
        "isf_count": self.isf_count,
    }
    return {self._PREFIX + k: v for k, v in arrays.items()}

  @classmethod
  def from_arrays(cls, arrays: dict,
                  positions_now: np.ndarray) -> "MultiOriginIsf":
    """Restores `to_arrays`' state; `positions_now` are the unwrapped
    positions of the same microstate in the (new) session."""
    a = {k[len(cls._PREFIX):]: np.asarray(v) for k, v in arrays.items()
         if k.startswith(cls._PREFIX)}
    acc = cls(a["lag_steps"], int(a["origin_interval"]), float(a["q"]),
              a["mask"], int(a["cap"]), float(a["stop_level"]))
    acc.step = int(a["step"])
    acc.next_origin = int(a["next_origin"])
    acc.n_origins = int(a["n_origins"])
    acc.exhausted = bool(a["exhausted"])
    acc.origin_steps = [int(x) for x in a["origin_steps"]]
    acc.origin_next = [int(x) for x in a["origin_next"]]
    positions_now = np.asarray(positions_now, np.float64)
    acc.origin_positions = [o + positions_now for o in a["origin_offsets"]]
    acc.isf_sum = np.asarray(a["isf_sum"], np.float64).copy()
    acc.isf_count = np.asarray(a["isf_count"], np.int64).copy()
    return acc

  @classmethod
  def has_state(cls, arrays: dict) -> bool:
    return cls._PREFIX + "isf_sum" in arrays


def first_crossing_index(isf: np.ndarray, level: float) -> int:
  """Index of the first value <= level, or -1."""
  below = np.flatnonzero(np.asarray(isf) <= level)
  return int(below[0]) if below.size else -1
