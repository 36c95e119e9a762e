"""The description of the machine that every benchmark result records."""

import importlib.metadata
import os
import platform
from typing import Sequence

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
