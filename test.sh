#!/usr/bin/env bash
# Runs the test suite. Installs what it needs into .venv first.
#   ./test.sh            the default suite (minutes on 2 cores)
#   ./test.sh --slow     the slow physics checks (LAMMPS validation, ...)
#   ./test.sh ARGS...    extra arguments go to pytest (e.g. -k io -x)
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
if [ "${1:-}" = "--slow" ]; then
  shift
  exec python -m pytest -m slow "$@"
fi
exec python -m pytest "$@"
