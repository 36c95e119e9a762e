#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment in .venv and installs
# the package with all extras. Sourced by demo.sh and test.sh.
# Re-installs only when setup.py changed since the last successful install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GLASSY_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.glassy_dynamics_tf.installed"
WANT="$(cat "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] || \
   ! "$VENV/bin/python" -c "import glassy_dynamics_tf" 2>/dev/null; then
  echo "[setup] installing glassy_dynamics_tf[all] (first run: several minutes)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[all]"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
# Quiet TensorFlow's start-up banners; errors still show.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
