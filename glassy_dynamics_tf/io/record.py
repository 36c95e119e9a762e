"""The configuration record: the contract between every stage of the pipeline.

One record is one equilibrated configuration and the isoconfigurational
propensity of its particles (DESIGN.md, "The configuration record"). Units are
Lennard-Jones units of the A-A interaction: length σ_AA, energy ε_AA, time
τ = σ_AA·sqrt(m/ε_AA).

Fields:
  positions:   [n_particles, 3] float32, σ_AA units, wrapped into [0, box).
  types:       [n_particles] int32, 0 = A (large), 1 = B (small).
  box:         [3] float32, orthorhombic box edges, σ_AA units.
  times:       [n_timescales] float32, τ units, strictly increasing is not
               required (the published data lists 1/e last), all > 0.
  isf_levels:  [n_timescales] float32, self-ISF level that defined each time,
               NaN where the times were fixed by hand.
  propensity:  [n_timescales, n_particles] float32, σ_AA units, mean over runs
               of |r_i(t) - r_i(0)| with unwrapped r.
  temperature: float, ε_AA / k_B units.
  pressure:    float, ε_AA / σ_AA³ units, NaN if unknown.
  density:     float, particles per σ_AA³ (derived from n_particles and box
               when the source does not say).
  n_runs:      int, isoconfigurational runs averaged (0 if unknown).
  propensity_halves:
               optional [2, n_timescales, n_particles] float32, σ_AA units:
               the propensity of two disjoint halves of the ensemble, [0]
               the mean over the even-indexed runs (0, 2, 4, ...) and [1]
               over the odd-indexed ones (1, 3, ...), in run-seed order.
               Their agreement measures the isoconfigurational noise, so the
               noise ceiling of any predictor (evaluation.py). None when
               unknown (the published data, files simulated before it was
               kept, ensembles of one run). With an even n_runs,
               propensity = (halves[0] + halves[1]) / 2 up to float32
               rounding; with an odd one the even half has one run more.
"""

import dataclasses
import enum
import math
from typing import Optional

import numpy as np

from glassy_dynamics_tf import periodic


class ParticleType(enum.IntEnum):
  """Kob-Andersen species (Kob & Andersen, PRE 51, 4626 (1995))."""
  A = 0  # large, 80 %
  B = 1  # small, 20 %


class RecordError(ValueError):
  """A configuration record (or the file it came from) is malformed."""


@dataclasses.dataclass(frozen=True, eq=False)
class ConfigurationRecord:
  """One configuration and its propensities; see the module docstring."""

  positions: np.ndarray
  types: np.ndarray
  box: np.ndarray
  times: np.ndarray
  isf_levels: np.ndarray
  propensity: np.ndarray
  temperature: float
  pressure: float = math.nan
  density: float = math.nan
  n_runs: int = 0
  propensity_halves: Optional[np.ndarray] = None

  @property
  def n_particles(self) -> int:
    return int(self.positions.shape[0])

  @property
  def n_timescales(self) -> int:
    return int(self.times.shape[0])

  @classmethod
  def create(cls,
             *,
             positions,
             types,
             box,
             propensity,
             times,
             temperature: float,
             isf_levels=None,
             pressure: float = math.nan,
             density: Optional[float] = None,
             n_runs: int = 0,
             propensity_halves=None,
             source: str = "<record>") -> "ConfigurationRecord":
    """Builds a validated record, converting dtypes and wrapping positions.

    Accepts unwrapped positions (they are wrapped into [0, box)) and any
    float/int dtypes; everything else must already have the right shape.
    `propensity_halves` may be None (unknown). `source` names the file or
    function the data came from, for errors.

    Raises:
      RecordError: naming `source`, the field, what was expected and found.
    """
    box = _as_array(box, np.float32, "box", source)
    positions = _as_array(positions, np.float64, "positions", source)
    _check_shape(positions, (None, 3), "positions", source)
    _check_shape(box, (3,), "box", source)
    _check_finite(box, "box", source)
    if not np.all(box > 0):
      raise RecordError(f"{source}: field 'box' must be positive, found {box}")
    _check_finite(positions, "positions", source)
    positions = periodic.wrap(positions, box.astype(np.float64))
    positions = positions.astype(np.float32)
    # float32 rounding can land a coordinate just below box on box itself.
    positions = periodic.wrap(positions, box)
    times = _as_array(times, np.float32, "times", source).reshape(-1)
    if isf_levels is None:
      isf_levels = np.full(times.shape, np.nan, np.float32)
    if density is None:
      density = positions.shape[0] / float(np.prod(box.astype(np.float64)))
    record = cls(
        positions=positions,
        types=_as_array(types, np.int32, "types", source),
        box=box,
        times=times,
        isf_levels=_as_array(isf_levels, np.float32, "isf_levels",
                             source).reshape(-1),
        propensity=_as_array(propensity, np.float32, "propensity", source),
        temperature=float(temperature),
        pressure=float(pressure),
        density=float(density),
        n_runs=int(n_runs),
        propensity_halves=(None if propensity_halves is None else _as_array(
            propensity_halves, np.float32, "propensity_halves", source)))
    record.validate(source)
    return record

  def validate(self, source: str = "<record>") -> None:
    """Checks shapes, dtypes, finiteness and ranges of every field.

    Raises:
      RecordError: naming `source`, the field, what was expected and found.
    """
    n = self.positions.shape[0] if self.positions.ndim == 2 else None
    expected = {
        "positions": (np.float32, (None, 3)),
        "types": (np.int32, (n,)),
        "box": (np.float32, (3,)),
        "times": (np.float32, (None,)),
        "isf_levels": (np.float32, (self.times.shape[0],)),
        "propensity": (np.float32, (self.times.shape[0], n)),
    }
    if self.propensity_halves is not None:
      expected["propensity_halves"] = (np.float32,
                                       (2, self.times.shape[0], n))
    for name, (dtype, shape) in expected.items():
      value = getattr(self, name)
      if not isinstance(value, np.ndarray) or value.dtype != dtype:
        found = getattr(value, "dtype", type(value).__name__)
        raise RecordError(
            f"{source}: field '{name}' must be a {np.dtype(dtype).name} "
            f"array, found {found}")
      _check_shape(value, shape, name, source)
    if n == 0:
      raise RecordError(f"{source}: field 'positions' holds no particles")
    for name in ("positions", "box", "times", "propensity",
                 "propensity_halves"):
      if getattr(self, name) is not None:
        _check_finite(getattr(self, name), name, source)
    if not np.all(self.box > 0):
      raise RecordError(
          f"{source}: field 'box' must be positive, found {self.box}")
    if np.any(self.positions < 0) or np.any(self.positions >= self.box):
      raise RecordError(
          f"{source}: field 'positions' must be wrapped into [0, box); "
          "build records with ConfigurationRecord.create, which wraps them")
    bad_types = np.setdiff1d(np.unique(self.types), [t.value for t in
                                                     ParticleType])
    if bad_types.size:
      raise RecordError(
          f"{source}: field 'types' must hold 0 (A) or 1 (B), found "
          f"{bad_types.tolist()}")
    if self.times.size and not np.all(self.times > 0):
      raise RecordError(
          f"{source}: field 'times' must be positive, found {self.times}")
    levels = self.isf_levels[np.isfinite(self.isf_levels)]
    if np.any((levels <= 0) | (levels >= 1)):
      raise RecordError(
          f"{source}: field 'isf_levels' must lie in (0, 1) or be NaN, "
          f"found {self.isf_levels}")
    for name in ("propensity", "propensity_halves"):
      value = getattr(self, name)
      if value is not None and np.any(value < 0):
        raise RecordError(
            f"{source}: field '{name}' must be non-negative (it is a mean "
            "distance)")
    if not (math.isfinite(self.temperature) and self.temperature > 0):
      raise RecordError(
          f"{source}: field 'temperature' must be finite and > 0, found "
          f"{self.temperature}")
    if not (math.isfinite(self.density) and self.density > 0):
      raise RecordError(
          f"{source}: field 'density' must be finite and > 0, found "
          f"{self.density}")
    if self.n_runs < 0:
      raise RecordError(
          f"{source}: field 'n_runs' must be >= 0, found {self.n_runs}")

  def as_dict(self) -> dict:
    """Field name -> numpy array (scalars as 0-d arrays), for serialisers.

    Optional fields that are None (unknown) are left out.
    """
    return {
        field.name: np.asarray(getattr(self, field.name))
        for field in dataclasses.fields(self)
        if getattr(self, field.name) is not None
    }

  def equals(self, other: "ConfigurationRecord") -> bool:
    """Bit-for-bit equality of every field (NaN equal to NaN); an unknown
    optional field equals only an unknown one."""
    mine, theirs = self.as_dict(), other.as_dict()
    if sorted(mine) != sorted(theirs):
      return False
    return all(
        mine[k].dtype == theirs[k].dtype and mine[k].shape == theirs[k].shape
        and np.array_equal(mine[k], theirs[k], equal_nan=mine[k].dtype.kind ==
                           "f") for k in mine)


SCALAR_FIELDS = {
    "temperature": float,
    "pressure": float,
    "density": float,
    "n_runs": int,
}
ARRAY_FIELDS = ("positions", "types", "box", "times", "isf_levels",
                "propensity")
# Array fields that may be None (unknown); serialisers store them only when
# known and read their absence back as None.
OPTIONAL_ARRAY_FIELDS = ("propensity_halves",)


def _as_array(value, dtype, name: str, source: str) -> np.ndarray:
  try:
    array = np.asarray(value)
  except Exception as e:  # ragged lists and the like
    raise RecordError(f"{source}: field '{name}' is not an array: {e}") from e
  if array.dtype.kind not in "biuf":
    raise RecordError(
        f"{source}: field '{name}' must be numeric, found dtype {array.dtype}")
  if np.dtype(dtype).kind in "iu" and array.dtype.kind == "f":
    if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
      raise RecordError(
          f"{source}: field '{name}' must hold integers, found non-integral "
          "values")
  return array.astype(dtype)


def _check_shape(array: np.ndarray, shape, name: str, source: str) -> None:
  ok = array.ndim == len(shape) and all(
      want is None or want == got for want, got in zip(shape, array.shape))
  if not ok:
    want = "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"
    raise RecordError(
        f"{source}: field '{name}' must have shape {want}, found "
        f"{list(array.shape)}")


def _check_finite(array: np.ndarray, name: str, source: str) -> None:
  if not np.all(np.isfinite(array)):
    bad = np.argwhere(~np.isfinite(array))
    raise RecordError(
        f"{source}: field '{name}' holds {len(bad)} non-finite value(s), "
        f"first at index {bad[0].tolist()}")
