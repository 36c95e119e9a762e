#!/usr/bin/env bash
# Paper-scale simulation inside one Slurm allocation (docs/CLUSTER.md).
#
# A Dask scheduler runs on the allocation's first node, one single-threaded
# Dask worker per allocated core on every node (one MD run, i.e. one LAMMPS
# rank, per core), and simulate_main.py is the client that hands out the
# work units and writes every result into $OUT. Resubmitting the same script
# with the same OUT and flags resumes: finished records and runs are
# skipped, the rest is recomputed bit-identically (same seeds).
#
#   OUT=/scratch/$USER/t044 sbatch --nodes=8 scripts/cluster/slurm_simulate.sh \
#       --temperature=0.44 --pressure=2.93 --n_configurations=800 \
#       --n_runs=30 --isf_levels=0.9,0.5,0.3679 --n_chains=256
#
# Environment (all optional except OUT):
#   OUT     output directory, on a file system every node sees (the
#           preparation chains write their checkpoints there).
#   REPO    this repository (default: the directory sbatch ran in).
#   VENV    virtual env with `pip install -e .[sim,cluster]` (default
#           $REPO/.venv); the same path on every node.
#   CONFIG  simulate_main.py --config (default: the paper's configs/default.py).
#   PORT    scheduler port (default 8786).
# Arguments are passed on to simulate_main.py.
#
# Alternative without a job script: run simulate_main.py on a login node
# with --cluster=slurm --cluster_jobs=K --cluster_cores=32 ...; dask-jobqueue
# then submits the worker jobs itself.
#
#SBATCH --job-name=glassy-simulate
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=32
#SBATCH --mem=0
#SBATCH --time=48:00:00
#SBATCH --output=glassy-simulate-%j.log
set -euo pipefail

REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(pwd)}}"
VENV="${VENV:-$REPO/.venv}"
OUT="${OUT:?set OUT to an output directory on a shared file system}"
CONFIG="${CONFIG:-$REPO/glassy_dynamics_tf/configs/default.py}"
PORT="${PORT:-8786}"
PYTHON="$VENV/bin/python"
CORES="${SLURM_CPUS_PER_TASK:?run this script with sbatch (SLURM_CPUS_PER_TASK unset)}"
NODES="${SLURM_JOB_NUM_NODES:-1}"

HOST="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
ADDRESS="tcp://$HOST:$PORT"
mkdir -p "$OUT/dask_logs"

# The scheduler on this (the first) node. It only hands out tasks, so it
# shares the node with a worker per core without slowing the runs.
"$PYTHON" -m distributed.cli.dask_scheduler --host "$HOST" --port "$PORT" \
    --no-dashboard > "$OUT/dask_logs/scheduler-$SLURM_JOB_ID.log" 2>&1 &
SCHEDULER_PID=$!

# One srun task per node, each starting CORES single-threaded workers. Node
# -local scratch for the workers' spill files; they keep no state, so a
# worker (or node) that dies is simply replaced and its task rerun.
srun --ntasks-per-node=1 --cpus-per-task="$CORES" \
    "$PYTHON" -m distributed.cli.dask_worker "$ADDRESS" \
    --nworkers "$CORES" --nthreads 1 --no-dashboard \
    --local-directory "${TMPDIR:-/tmp}" --death-timeout 120 \
    > "$OUT/dask_logs/workers-$SLURM_JOB_ID.log" 2>&1 &
WORKERS_PID=$!

cleanup() {
  kill "$WORKERS_PID" "$SCHEDULER_PID" 2>/dev/null || true
  wait "$WORKERS_PID" "$SCHEDULER_PID" 2>/dev/null || true
}
trap cleanup EXIT

# Start once most workers are there; late ones join as they come.
"$PYTHON" - "$ADDRESS" "$((NODES * CORES * 9 / 10))" <<'PY'
import sys
from distributed import Client
with Client(sys.argv[1], timeout="300s") as client:
  client.wait_for_workers(max(1, int(sys.argv[2])), timeout="600s")
  print(f"{len(client.nthreads())} Dask workers ready at {sys.argv[1]}")
PY

"$PYTHON" "$REPO/simulate_main.py" --config="$CONFIG" --output_dir="$OUT" \
    --dask_scheduler="$ADDRESS" "$@"
