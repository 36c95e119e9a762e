"""The description of the machine that every benchmark result records."""

import dataclasses
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
from typing import Optional, Sequence

GIB = 1024**3


def _cpuinfo_field(name: str) -> str:
  with open("/proc/cpuinfo") as f:
    for line in f:
      if line.startswith(name):
        return line.split(":", 1)[1].strip()
  return ""


def describe(packages: Sequence[str]) -> dict:
  """CPU model, AVX-512, cores, memory, Python and `packages`' versions."""
  with open("/proc/meminfo") as f:
    mem_kib = int(f.readline().split()[1])
  versions = {}
  for name in packages:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return {
      "cpu_model": _cpuinfo_field("model name") or platform.processor(),
      "avx512": "avx512f" in _cpuinfo_field("flags").split(),
      "cores": os.cpu_count(),
      "memory_gib": round(mem_kib * 1024 / GIB, 1),
      "python": platform.python_version(),
      "platform": platform.platform(),
      "versions": versions,
  }


GIB = 1024**3


@dataclasses.dataclass
class ChildRun:
  """One measurement subprocess.

  Attributes:
    returncode: exit status (-9: killed, e.g. by the timeout).
    result: the JSON object of its line "RESULT {...}", or None.
    stderr_lines: its non-empty stderr lines (for the error message).
    peak_rss_gib: its peak resident set, from the kernel (wait4), so it is
      known even for a child that was killed or aborted.
  """
  returncode: int
  result: Optional[dict]
  stderr_lines: list
  peak_rss_gib: float


def run_child(script: str, args: Sequence[str], root: str,
              timeout_s: float) -> ChildRun:
  """Runs `python script *args` in `root` with `root` on PYTHONPATH.

  The child reports by printing one line "RESULT <json>" on stdout.
  """
  command = [sys.executable, os.path.abspath(script), *args]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile(
      "w+") as err:
    child = subprocess.Popen(command, cwd=root, env=env, stdout=out,
                             stderr=err, text=True)
    timer = threading.Timer(timeout_s, child.kill)
    timer.start()
    _, status, usage = os.wait4(child.pid, 0)
    timer.cancel()
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
  result = None
  for line in stdout.splitlines():
    if line.startswith("RESULT "):
      result = json.loads(line[len("RESULT "):])
      break
  return ChildRun(returncode=os.waitstatus_to_exitcode(status),
                  result=result,
                  stderr_lines=[l for l in stderr.splitlines() if l.strip()],
                  peak_rss_gib=usage.ru_maxrss * 1024 / GIB)  # KiB on Linux


def status_gib(field: str, pid: int = 0) -> float:
  """A Vm* line (e.g. VmHWM, VmRSS) of /proc/PID/status (0 = this
  process), GiB.

  Raises:
    FileNotFoundError: no process PID; KeyError: no such line.
  """
  with open(f"/proc/{pid or 'self'}/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024 / GIB
  raise KeyError(field)
