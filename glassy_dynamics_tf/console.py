"""Console output of the mains: our progress lines, not the libraries'.

TensorFlow and tf_keras log through absl at INFO level (one line per
checkpoint shard, per SavedModel signature, ...), which buries the progress
lines of a training or evaluation run. `quiet_library_logs` keeps our INFO
lines and every library warning and error.
"""

import logging as std_logging
import os

from absl import logging

# Packages whose INFO lines are dropped (directory names in the path).
_QUIET_PACKAGES = ("tensorflow", "tf_keras", "keras", "sonnet", "graph_nets",
                   "tensorflow_datasets")


# Library warnings that say nothing to a user of this project (TFDS 4.9
# warns about its own internal use of a deprecated field on every load).
_SILENCED_WARNINGS = ("`FeatureConnector.dtype` is deprecated",)


class _LibraryInfoFilter(std_logging.Filter):
  """Drops records below WARNING emitted from files of `_QUIET_PACKAGES`,
  and the `_SILENCED_WARNINGS`."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return not str(record.msg).startswith(_SILENCED_WARNINGS)
    parts = os.path.normpath(record.pathname or "").split(os.sep)
    return not any(p in _QUIET_PACKAGES for p in parts)


def quiet_library_logs() -> None:
  """Installs the filter on absl's handler (idempotent)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
    handler.addFilter(_LibraryInfoFilter())
