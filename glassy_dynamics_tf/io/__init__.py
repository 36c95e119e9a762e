"""Configuration file formats: our npz files and the authors' pickles.

`load_configuration(path)` is the one entry point the other stages use; it
dispatches on the file suffix and always returns a validated
`ConfigurationRecord`.
"""

import os

from glassy_dynamics_tf.io.deepmind_pickle import load_deepmind_pickle
from glassy_dynamics_tf.io.deepmind_pickle import safe_load_pickle
from glassy_dynamics_tf.io.deepmind_pickle import UnsafePickleError
from glassy_dynamics_tf.io.npz_format import load_npz
from glassy_dynamics_tf.io.npz_format import load_npz_bytes
from glassy_dynamics_tf.io.npz_format import save_npz
from glassy_dynamics_tf.io.record import ConfigurationRecord
from glassy_dynamics_tf.io.record import ParticleType
from glassy_dynamics_tf.io.record import RecordError

PICKLE_SUFFIXES = (".pickle", ".pkl")
NPZ_SUFFIXES = (".npz",)


def load_configuration(path: str) -> ConfigurationRecord:
  """Reads a configuration record from an `.npz` or a DeepMind pickle.

  Raises:
    FileNotFoundError: if `path` does not exist.
    RecordError: naming the file, if its suffix is unknown or it is invalid.
  """
  suffix = os.path.splitext(path)[1].lower()
  if suffix in NPZ_SUFFIXES:
    return load_npz(path)
  if suffix in PICKLE_SUFFIXES:
    return load_deepmind_pickle(path)
  raise RecordError(
      f"{path}: unknown configuration file type '{suffix}'; expected one of "
      f"{NPZ_SUFFIXES + PICKLE_SUFFIXES}")


__all__ = [
    "ConfigurationRecord", "ParticleType", "RecordError", "UnsafePickleError",
    "load_configuration", "load_deepmind_pickle", "load_npz", "load_npz_bytes",
    "save_npz",
    "safe_load_pickle"
]
