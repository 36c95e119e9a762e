"""Console output of the mains: our progress lines, not the libraries'.

Two sources of noise, handled in two places:

* Native start-up banners. Importing TensorFlow 2.21 on a CPU-only machine
  prints, from C++, "WARNING: All log messages before absl::InitializeLog()
  is called are written to STDERR", the oneDNN round-off notice, "Could not
  find cuda drivers" (cudart stub), the CPU-feature notice and, at the first
  device initialisation, "E0000 ... failed call to cuInit". They are logged
  through absl C++ before anything initialises it, so neither
  TF_CPP_MIN_LOG_LEVEL (measured: no effect at 1, 2 or 3) nor Python logging
  reaches them; turning oneDNN off would silence its notice but change the
  numerics. Importing this module (every *_main.py does so first) therefore
  sets TF_CPP_MIN_LOG_LEVEL=2 and GRPC_VERBOSITY=ERROR unless the user set
  them, and arranges that the first `import tensorflow`, wherever it
  happens, runs with the process's stderr file descriptor captured; the
  captured text is written back without exactly those banner lines. Anything
  else TensorFlow prints while loading (errors, warnings) comes through.
* absl INFO lines. TensorFlow and tf_keras log through absl at INFO level
  (one line per checkpoint shard, per SavedModel signature, ...), which
  buries the progress lines of a training or evaluation run.
  `quiet_library_logs` keeps our INFO lines and every library warning and
  error.

Library code never imports this module: only programs decide what a
console shows.
"""

import contextlib
import importlib.abc
import importlib.util
import logging as std_logging
import os
import re
import sys
import tempfile
from typing import Iterator

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
  """Installs the filter on absl's handler and on the handler TensorFlow
  gives its own logger when it is imported before absl configures logging
  (it prints "INFO:tensorflow:Assets written to: ..."); idempotent."""
  handlers = [logging.get_absl_handler()]
  handlers += std_logging.getLogger("tensorflow").handlers
  for handler in handlers:
    if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
      handler.addFilter(_LibraryInfoFilter())


# ------------------------------------------------------ native banners ---

# Whole lines, as TensorFlow 2.21 prints them (glog-style prefix
# "I0000 00:00:1796323388.304373    5415 port.cc:153] ..."). Only these are
# dropped; anything else printed while TensorFlow loads is kept.
_GLOG_PREFIX = r"[IWE]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] "
_BANNERS = re.compile("|".join([
    r"WARNING: All log messages before absl::InitializeLog\(\) is called "
    r"are written to STDERR",
    _GLOG_PREFIX + r"oneDNN custom operations are on\. .*",
    _GLOG_PREFIX + r"Could not find cuda drivers on your machine, GPU will "
    r"not be used\.",
    _GLOG_PREFIX + r"This TensorFlow binary is optimized to use available "
    r"CPU instructions.*",
    # The second line of the CPU-feature notice.
    r"To enable the following instructions: .* rebuild TensorFlow with the "
    r"appropriate compiler flags\.",
]))
# A failed cuInit is news on a machine with an NVIDIA driver (a broken GPU
# set-up), and noise on one without: only then is it dropped.
_NO_DRIVER_CUINIT = re.compile(_GLOG_PREFIX + r".*failed call to cuInit.*")
NVIDIA_DRIVER_FILE = "/proc/driver/nvidia/version"


def filter_native_banners(text: str, has_nvidia_driver: bool) -> str:
  """`text` without the start-up banner lines (see the module docstring).

  Args:
    text: what the process wrote to stderr, lines ending in "\\n".
    has_nvidia_driver: whether the machine has an NVIDIA kernel driver (then
      a failed cuInit is kept: it reports a broken GPU set-up).
  """
  kept = []
  for line in text.splitlines(keepends=True):
    bare = line.rstrip("\r\n")
    if _BANNERS.fullmatch(bare):
      continue
    if not has_nvidia_driver and _NO_DRIVER_CUINIT.fullmatch(bare):
      continue
    kept.append(line)
  return "".join(kept)


@contextlib.contextmanager
def native_banners_filtered() -> Iterator[None]:
  """Captures file descriptor 2 (C++ and Python stderr) for the block, then
  writes back what was captured, without the start-up banners.

  The text is held back until the block ends, so output of a block that
  crashes the interpreter is lost: use it only around loading libraries.
  """
  has_driver = os.path.exists(NVIDIA_DRIVER_FILE)
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      text = captured.read().decode("utf-8", errors="replace")
      kept = filter_native_banners(text, has_driver)
      if kept:
        sys.stderr.write(kept)
        sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
  """Runs TensorFlow's own loader under `native_banners_filtered`, then
  initialises the devices there too (cuInit runs then, not at import)."""

  def __init__(self, loader: importlib.abc.Loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module) -> None:
    # The module keeps TensorFlow's own loader, as if imported plainly.
    module.__loader__ = self._loader
    if module.__spec__ is not None:
      module.__spec__.loader = self._loader
    with native_banners_filtered():
      self._loader.exec_module(module)
      try:
        # Listing physical devices is allowed before a program configures
        # logical devices or memory growth; it does not start the runtime.
        module.config.list_physical_devices()
      except Exception:  # pylint: disable=broad-except
        pass  # An odd TensorFlow build: its first op will report it.

  def __getattr__(self, name):
    # get_resource_reader, is_package, get_data, ...: the real loader's.
    return getattr(self._loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
  """Intercepts the first `import tensorflow` (direct, or through tf_keras,
  sonnet, tensorflow_datasets, ...) and wraps its loader; one shot."""

  def find_spec(self, fullname, path, target=None):
    if fullname != "tensorflow":
      return None
    try:
      sys.meta_path.remove(self)
    except ValueError:  # Another thread got here first.
      return None
    # The finders after this one (sys.modules has no "tensorflow" yet).
    spec = importlib.util.find_spec(fullname)
    if spec is None or spec.loader is None:
      return spec
    spec.loader = _QuietLoader(spec.loader)
    return spec


def quiet_native_start() -> None:
  """Sets the log-level variables (unless set) and filters TensorFlow's
  start-up banners if TensorFlow is not imported yet (idempotent)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO, WARNING.
  os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
  if "tensorflow" in sys.modules:
    return
  if not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlowFinder())


quiet_native_start()
