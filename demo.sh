#!/usr/bin/env bash
# The whole pipeline on a small, warm Kob-Andersen liquid, on this machine:
#   simulate (LAMMPS) -> tfds build -> train (graph network) -> evaluate.
# Every stage reuses what an earlier run left in $OUT, so re-running after an
# interruption continues where it stopped.
#   ./demo.sh                 output in ./demo_output
#   OUT=/elsewhere ./demo.sh  output elsewhere
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
OUT="${OUT:-demo_output}"
CONFIG=glassy_dynamics_tf/configs/demo.py
TFDS_DIR="$OUT/tensorflow_datasets"
START=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - START ))s] $* ==="; }

stage "1/4 simulate Kob-Andersen configurations and their propensities (LAMMPS)"
python simulate_main.py --config="$CONFIG" --output_dir="$OUT/simulated"

stage "2/4 tfds build datasets/glassy_dynamics --config=demo"
tfds build datasets/glassy_dynamics --config=demo \
  --manual_dir="$OUT/simulated" --data_dir="$TFDS_DIR"

stage "3/4 train the graph network"
python train_main.py --config="$CONFIG" --workdir="$OUT/gnn" \
  --data_dir="$TFDS_DIR"

stage "4/4 evaluate on the test split against physics baselines"
python evaluate_main.py --config="$CONFIG" --model="$OUT/gnn" \
  --dataset=glassy_dynamics/demo --data_dir="$TFDS_DIR" --split=test \
  --output_dir="$OUT/report"

stage "done: report in $OUT/report (report.json, figures)"
