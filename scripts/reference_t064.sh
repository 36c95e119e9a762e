#!/usr/bin/env bash
# The T = 0.64 reference experiment (docs/results/reference_t064.md):
#   simulate (or reuse) 120 configurations of N = 1000 at T = 0.64,
#   tfds build (config `simulated`), train the graph network, evaluate it on
#   the test split against every baseline.
# About 65 min to simulate and 1-1.5 h to train on 2 CPU cores. Every stage
# reuses what an earlier run left in $OUT, so re-running after an
# interruption continues where it stopped.
#   ./scripts/reference_t064.sh                  simulate into $OUT/simulated
#   DATA=/path/to/npz ./scripts/reference_t064.sh   reuse simulated files
#   OUT=/elsewhere ./scripts/reference_t064.sh   output elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure_venv.sh
OUT="${OUT:-reference_t064_output}"
CONFIG=glassy_dynamics_tf/configs/reference_t064.py
TFDS_DIR="$OUT/tensorflow_datasets"
DATA="${DATA:-$OUT/simulated}"
START=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - START ))s] $* ==="; }

if [ ! -f "$DATA/manifest.json" ] || [ "$DATA" = "$OUT/simulated" ]; then
  stage "1/4 simulate 120 configurations at T = 0.64 (LAMMPS; resumes)"
  python simulate_main.py --config="$CONFIG" --output_dir="$DATA"
else
  stage "1/4 reuse the simulated configurations in $DATA"
fi

stage "2/4 tfds build datasets/glassy_dynamics --config=simulated"
tfds build datasets/glassy_dynamics --config=simulated \
  --manual_dir="$DATA" --data_dir="$TFDS_DIR"

stage "3/4 train the graph network (resumes from its last backup)"
python train_main.py --config="$CONFIG" --workdir="$OUT/gnn" \
  --data_dir="$TFDS_DIR"

stage "4/4 evaluate on the test split against every baseline"
python evaluate_main.py --config="$CONFIG" --model="$OUT/gnn" \
  --dataset=glassy_dynamics/simulated --data_dir="$TFDS_DIR" --split=test \
  --output_dir="$OUT/report"

stage "done: report in $OUT/report (report.json, table.txt, figures)"
