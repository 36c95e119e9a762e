"""Our configuration files: one `.npz` per configuration record.

Written with `allow_pickle=False` semantics (only numeric arrays, no Python
objects), atomically: the bytes go to a temporary file in the same directory,
which is renamed over the final name only once complete, so a killed writer
never leaves a half-written file under a real name. Optional record fields
(`record.OPTIONAL_ARRAY_FIELDS`, e.g. `propensity_halves`) are stored only when
known, and a file without one reads back as None, so files written before a
field existed stay readable (and older readers see it as an extra array, which
they ignore: the format version stays 1). Files are read through
local paths here; callers holding `tf.io.gfile` bytes (cloud buckets) use
`load_npz_bytes`.
"""

import io as _io
import os
import tempfile
import zipfile

import numpy as np

from glassy_dynamics_tf.io import record as record_lib

FORMAT_VERSION = 1
_FORMAT_KEY = "format_version"


def write_atomic_bytes(path: str, payload: bytes) -> None:
  """Writes `payload` to `path` atomically (temporary file, then rename)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp_path = tempfile.mkstemp(
      prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
  try:
    # mkstemp creates the file 0600; give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    with os.fdopen(fd, "wb") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp_path, path)
  except BaseException:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)
    raise


def record_to_bytes(record: record_lib.ConfigurationRecord,
                    extra_arrays=None) -> bytes:
  """Serialises a record (plus optional extra numeric arrays) as npz bytes."""
  record.validate("record to write")
  arrays = record.as_dict()
  arrays[_FORMAT_KEY] = np.asarray(FORMAT_VERSION, np.int32)
  for key, value in (extra_arrays or {}).items():
    if key in arrays:
      raise ValueError(f"extra array '{key}' clashes with a record field")
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
      raise ValueError(
          f"extra array '{key}' must be numeric, found dtype {value.dtype}")
    arrays[key] = value
  buffer = _io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  return buffer.getvalue()


def save_npz(record: record_lib.ConfigurationRecord, path: str,
             extra_arrays=None) -> None:
  """Writes `record` to `path` (.npz) atomically.

  Args:
    record: a valid ConfigurationRecord.
    path: destination; its directory is created if missing.
    extra_arrays: optional name -> numeric array stored beside the record
      (e.g. the simulator's seeds or per-run ISF); readers ignore unknown keys.
  """
  write_atomic_bytes(path, record_to_bytes(record, extra_arrays))


def load_npz(path: str, with_extras: bool = False):
  """Reads a configuration record from one of our `.npz` files.

  Args:
    path: the file.
    with_extras: also return a dict of the non-record arrays in the file.

  Returns:
    The validated record (and the extras dict if `with_extras`).

  Raises:
    FileNotFoundError: if `path` does not exist.
    RecordError: naming the file, if it is corrupt, lacks a field or holds
      values outside the record's contract.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"configuration file not found: {path}")
  with open(path, "rb") as f:
    payload = f.read()
  return load_npz_bytes(payload, source=path, with_extras=with_extras)


def load_npz_bytes(payload: bytes, source: str = "<bytes>",
                   with_extras: bool = False):
  """As `load_npz`, on the bytes of a file already in memory (e.g. gfile).

  `source` names the file in error messages.
  """
  # np.load reads anything that is not a zip archive as a .npy or a pickle
  # and then complains about "pickled data", which misleads; name the real
  # problem first.
  if not payload.startswith((b"PK\x03\x04", b"PK\x05\x06")):
    raise record_lib.RecordError(
        f"{source}: not a readable .npz configuration file (expected a zip "
        f"archive, found {len(payload)} bytes starting with "
        f"{payload[:8]!r}; truncated or not written by this project?)")
  try:
    with np.load(_io.BytesIO(payload), allow_pickle=False) as data:
      arrays = {key: data[key] for key in data.files}
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
    raise record_lib.RecordError(
        f"{source}: not a readable .npz configuration file ({e})") from e
  version = arrays.pop(_FORMAT_KEY, None)
  if version is None or version.shape != () or int(version) > FORMAT_VERSION:
    raise record_lib.RecordError(
        f"{source}: expected a scalar '{_FORMAT_KEY}' <= {FORMAT_VERSION}, "
        f"found {None if version is None else version.tolist()}")
  missing = [
      k for k in (*record_lib.ARRAY_FIELDS, *record_lib.SCALAR_FIELDS)
      if k not in arrays
  ]
  if missing:
    raise record_lib.RecordError(f"{source}: missing field(s) {missing}")
  fields = {k: arrays.pop(k) for k in record_lib.ARRAY_FIELDS}
  for key in record_lib.OPTIONAL_ARRAY_FIELDS:
    fields[key] = arrays.pop(key, None)  # absent: unknown
  for key, kind in record_lib.SCALAR_FIELDS.items():
    value = arrays.pop(key)
    if value.shape != ():
      raise record_lib.RecordError(
          f"{source}: field '{key}' must be a scalar, found shape "
          f"{list(value.shape)}")
    fields[key] = kind(value)
  record = record_lib.ConfigurationRecord(**fields)
  record.validate(source)
  return (record, arrays) if with_extras else record
