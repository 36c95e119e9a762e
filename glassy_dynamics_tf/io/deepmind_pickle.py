"""Safe reader for the authors' published data (one pickle per configuration).

The published files (deepmind-research, `glassy_dynamics/`; format described in
tests/fixtures/deepmind/README.md) are Python pickles. A pickle is a
program: loading one with `pickle.load` can call any importable function. We
therefore unpickle through `RestrictedUnpickler`, which resolves only the few
globals that numpy arrays and dtypes are rebuilt from. Everything else
(`os.system`, `builtins.eval`, `subprocess.Popen`, ...) raises
`UnsafePickleError` *before* it is called, so a malicious file executes
nothing.

Mapping onto the configuration record (DESIGN.md):
  positions   <- `positions` (absolute, unwrapped coordinates), wrapped.
  types, box  <- `types`, `box`.
  times       <- `time[time_indices]`.
  isf_levels  <- `is_values`.
  propensity  <- `targets` [T, n] when the file carries it, otherwise
                 mean over runs of |trajectory_target_positions[j, run] -
                 positions| (the fixture README's definition).
  temperature, pressure <- `metadata`.
"""

import io
import math
import os
import pickle
from typing import Any, Dict

import numpy as np

from glassy_dynamics_tf.io import record as record_lib

# (module, name) pairs that numpy needs to rebuild arrays, dtypes and scalars.
# `_reconstruct` only allocates an empty array of a given subtype (we admit
# ndarray alone), `dtype` parses a type string, `scalar` builds a numpy scalar
# from raw bytes; none can reach the file system or run user code.
_ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    # Python 2 pickles spell the built-in containers through these.
    ("__builtin__", "set"),
    ("builtins", "set"),
    ("__builtin__", "frozenset"),
    ("builtins", "frozenset"),
    ("_codecs", "encode"),  # latin-1 bytes of Python-2 array buffers
})


class UnsafePickleError(record_lib.RecordError):
  """A pickle asked for a global that the restricted unpickler refuses."""


class RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that admits numpy arrays, dtypes and plain containers only."""

  def __init__(self, file, source: str):
    super().__init__(file, encoding="latin1")
    self._source = source

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED_GLOBALS:
      return super().find_class(module, name)
    raise UnsafePickleError(
        f"{self._source}: refusing to load: the pickle asks for the global "
        f"'{module}.{name}', which is not a numpy array, dtype or plain "
        "container; nothing was executed")

  def persistent_load(self, pid):
    raise UnsafePickleError(
        f"{self._source}: refusing to load: the pickle uses persistent ids")


def safe_load_pickle(path: str) -> Any:
  """Unpickles `path` allowing only numpy arrays and plain Python containers.

  Raises:
    FileNotFoundError: if `path` does not exist.
    UnsafePickleError: if the pickle references any other global.
    RecordError: if the file is not a readable pickle (truncated, corrupt).
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"DeepMind pickle not found: {path}")
  with open(path, "rb") as f:
    payload = f.read()
  return safe_loads(payload, source=path)


def safe_loads(payload: bytes, source: str = "<bytes>") -> Any:
  """As `safe_load_pickle`, on bytes already in memory (e.g. from gfile)."""
  try:
    obj = RestrictedUnpickler(io.BytesIO(payload), source).load()
  except UnsafePickleError:
    raise
  except Exception as e:  # pickle raises many types on corrupt input
    raise record_lib.RecordError(
        f"{source}: not a readable pickle ({type(e).__name__}: {e})") from e
  if isinstance(obj, np.ndarray) and obj.dtype == object:
    obj = obj.item() if obj.shape == () else obj
  return obj


def record_from_dict(data: Dict[str, Any],
                     source: str) -> record_lib.ConfigurationRecord:
  """Maps one published dict onto a ConfigurationRecord (see module doc)."""
  if not isinstance(data, dict):
    raise record_lib.RecordError(
        f"{source}: expected a dict at the top of the pickle, found "
        f"{type(data).__name__}")
  required = ("positions", "types", "box", "time", "time_indices")
  missing = [k for k in required if k not in data]
  if missing:
    raise record_lib.RecordError(
        f"{source}: missing key(s) {missing}; found {sorted(data)}")

  positions = _float_array(data["positions"], "positions", source)
  if positions.ndim != 2 or positions.shape[1] != 3:
    raise record_lib.RecordError(
        f"{source}: key 'positions' must have shape [n, 3], found "
        f"{list(positions.shape)}")
  n_particles = positions.shape[0]
  time = _float_array(data["time"], "time", source).reshape(-1)
  time_indices = np.asarray(data["time_indices"])
  if time_indices.dtype.kind not in "iu" or time_indices.ndim != 1:
    raise record_lib.RecordError(
        f"{source}: key 'time_indices' must be a 1-D integer list, found "
        f"{time_indices.dtype} of shape {list(time_indices.shape)}")
  if np.any(time_indices < 0) or np.any(time_indices >= time.shape[0]):
    raise record_lib.RecordError(
        f"{source}: key 'time_indices' points outside 'time' "
        f"(len {time.shape[0]}): {time_indices.tolist()}")
  n_timescales = time_indices.shape[0]
  times = time[time_indices]

  if "is_values" in data:
    isf_levels = _float_array(data["is_values"], "is_values",
                              source).reshape(-1)
  else:
    isf_levels = np.full((n_timescales,), np.nan)
  if isf_levels.shape != (n_timescales,):
    raise record_lib.RecordError(
        f"{source}: key 'is_values' must have {n_timescales} entries (one "
        f"per time index), found {isf_levels.shape[0]}")

  n_runs = 0
  if "targets" in data:
    propensity = _float_array(data["targets"], "targets", source)
    if propensity.shape != (n_timescales, n_particles):
      raise record_lib.RecordError(
          f"{source}: key 'targets' must have shape "
          f"[{n_timescales}, {n_particles}], found {list(propensity.shape)}")
  elif "trajectory_target_positions" in data:
    targets = _float_array(data["trajectory_target_positions"],
                           "trajectory_target_positions", source)
    if (targets.ndim != 4 or targets.shape[0] != n_timescales or
        targets.shape[2:] != (n_particles, 3)):
      raise record_lib.RecordError(
          f"{source}: key 'trajectory_target_positions' must have shape "
          f"[{n_timescales}, n_runs, {n_particles}, 3], found "
          f"{list(targets.shape)}")
    n_runs = targets.shape[1]
    # Both arrays hold absolute (unwrapped) coordinates: the plain
    # difference is the displacement; no minimum image here.
    propensity = np.linalg.norm(targets - positions[None, None], axis=-1)
    propensity = propensity.mean(axis=1)
  else:
    raise record_lib.RecordError(
        f"{source}: neither 'targets' nor 'trajectory_target_positions' "
        "present; cannot compute propensity")
  if "trajectory_start_velocities" in data and n_runs == 0:
    n_runs = int(np.shape(data["trajectory_start_velocities"])[0])

  metadata = data.get("metadata", {}) or {}
  if not isinstance(metadata, dict):
    raise record_lib.RecordError(
        f"{source}: key 'metadata' must be a dict, found "
        f"{type(metadata).__name__}")
  if "temperature" not in metadata:
    raise record_lib.RecordError(
        f"{source}: 'metadata' lacks 'temperature'; found {sorted(metadata)}")
  return record_lib.ConfigurationRecord.create(
      positions=positions,
      types=data["types"],
      box=data["box"],
      times=times,
      isf_levels=isf_levels,
      propensity=propensity,
      temperature=float(metadata["temperature"]),
      pressure=float(metadata.get("pressure", math.nan)),
      n_runs=n_runs,
      source=source)


def load_deepmind_pickle(path: str) -> record_lib.ConfigurationRecord:
  """Reads one published configuration safely and maps it onto a record."""
  return record_from_dict(safe_load_pickle(path), source=path)


def _float_array(value, key: str, source: str) -> np.ndarray:
  try:
    array = np.asarray(value, dtype=np.float64)
  except (ValueError, TypeError) as e:
    raise record_lib.RecordError(
        f"{source}: key '{key}' is not a numeric array ({e})") from e
  if not np.all(np.isfinite(array)):
    raise record_lib.RecordError(
        f"{source}: key '{key}' holds non-finite values")
  return array
