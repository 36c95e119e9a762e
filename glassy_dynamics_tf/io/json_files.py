"""Strict JSON reports and state files, written atomically.

Every JSON the project writes (reports, training state, analysis results)
goes through `write_json`: NaN and infinities become null (strict JSON has
neither), numpy scalars and arrays become numbers and lists, and the file
appears under its name only when complete (temporary name, then rename),
so a killed job never leaves half a file that a resumed one would misread.
"""

import json
import math
import os
from typing import Any, Mapping

import numpy as np


def jsonable(value: Any) -> Any:
  """Nested containers of numbers -> JSON values; NaN and inf -> None."""
  if isinstance(value, Mapping):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return jsonable(value.tolist())
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    value = float(value)
    return value if math.isfinite(value) else None
  return value


def write_json(path: str, value: Any, indent: int = 1,
               sort_keys: bool = False) -> str:
  """Writes `jsonable(value)` to `path` atomically; returns the path.

  Local paths use the file system directly; URLs (gs://, ...) go through
  tf.io.gfile, imported only then so that TF-free tools stay TF-free.
  """
  text = json.dumps(jsonable(value), indent=indent, sort_keys=sort_keys,
                    allow_nan=False) + "\n"
  tmp = path + ".tmp"
  if "://" in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(tmp, "w") as f:
      f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
  return path
