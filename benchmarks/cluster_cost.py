r"""What paper-scale data costs on a cluster, from rates measured here.

  nice -n 19 .venv/bin/python benchmarks/cluster_cost.py \
      [--sizes=500,2000] [--steps=4000] [--cores_per_node=32]

Measures, on this machine, through the code the cluster runs:
  * one (configuration, run) work unit: `driver._execute` (the task the
    executors send) of a KA liquid (ρ = 1.2, T = 0.9, after a short melt) for
    `--steps` MD steps at each N of `--sizes`; CPU seconds of this process
    (LAMMPS runs in it, one MPI rank), so the machine's other load stretches
    the wall time but not the cost;
  * the Dask dispatch overhead per task: the same work units on a
    LocalCluster of one single-threaded worker, client-side wall time per
    task minus the task's own wall time;
  * one soft-modes work unit (`cluster.soft_modes_task`: minimisation,
    Hessian, 30 lowest modes) at N = 500 and 1000.

Scaling. MD with a neighbour list costs a fixed amount per particle and
step at fixed density, so a run costs ∝ N·t: core-seconds = N · (t / dt) /
rate, with rate in particle-steps per core-second measured at the largest
N (closest to 4096, where the per-particle cost has levelled off; compare
the two sizes in the output). Paper scale (Bapst et al. 2020, T = 0.44):
800 configurations × 30 runs of N = 4096 to τ_α = 5375 τ, the 1/e time of
the authors' data (benchmarks/simulation_speed.py), dt = 0.003 τ.
Preparation (preparation.py): each of `n_chains` chains equilibrates
10 τ_α and samples one configuration every τ_α, so it costs
(10 + 800 / n_chains) τ_α of MD at N = 4096; with one chain per core the
chains run side by side. The soft modes scale as N^a with a fitted between
the two sizes (a rough guide: the eigen-solver's cost grows faster than
linearly).

Writes benchmarks/results/cluster_cost.md and cluster_cost.json.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position

from glassy_dynamics_tf.simulation import cluster  # pylint: disable=g-import-not-at-top,wrong-import-position
from glassy_dynamics_tf.simulation import driver  # pylint: disable=g-import-not-at-top,wrong-import-position
from glassy_dynamics_tf.simulation import engine  # pylint: disable=g-import-not-at-top,wrong-import-position
from glassy_dynamics_tf.simulation import kob_andersen as ka  # pylint: disable=g-import-not-at-top,wrong-import-position
from glassy_dynamics_tf.simulation import propensity  # pylint: disable=g-import-not-at-top,wrong-import-position

TAU_ALPHA_T044 = 5375.112  # τ, as in simulation_speed.py.
PAPER = dict(n_particles=4096, n_configurations=800, n_runs=30,
             equilibration_tau_alpha=10.0, sampling_interval_tau_alpha=1.0)
NODES = (1, 4, 16, 64, 256)


def _liquid(n):
  box = np.full(3, (n / 1.2)**(1 / 3))
  positions, types = ka.lattice_configuration(n, box, 0)
  with engine.KobAndersenSimulation(positions, types, box) as sim:
    sim.set_velocities(2.0, 1)
    sim.nvt(2.0, 0.9)
    sim.run(1000)
    state = sim.state()
  return (state.positions.astype(np.float32), state.types,
          state.box.astype(np.float32))


def _run_tasks(n, steps, count):
  positions, types, box = _liquid(n)
  grid = propensity.time_grid(steps)
  return [driver._RunTask(  # pylint: disable=protected-access
      configuration=0, run=r, path="", positions=positions, types=types,
      box=box, temperature=0.9, seed=r + 1, grid_steps=grid, q=7.25,
      stop_isf=None, min_grid_points=0, accelerator="opt",
      damping=engine.THERMOSTAT_DAMPING) for r in range(count)]


def _measure_runs(n, steps, count=2):
  """CPU and wall seconds per work unit, run in this process."""
  cpu, wall = [], []
  for task in _run_tasks(n, steps, count):
    c0, w0 = time.process_time(), time.perf_counter()
    driver._execute(task)  # pylint: disable=protected-access
    cpu.append(time.process_time() - c0)
    wall.append(time.perf_counter() - w0)
  best = min(cpu)
  return dict(n_particles=n, steps=steps, cpu_seconds=cpu,
              wall_seconds=wall,
              particle_steps_per_core_second=n * steps / best)


def _measure_dask_overhead(n, steps, count=4):
  import distributed  # pylint: disable=g-import-not-at-top
  tasks = _run_tasks(n, steps, count)
  with distributed.LocalCluster(n_workers=1, threads_per_worker=1,
                                processes=True, host="127.0.0.1",
                                dashboard_address=None) as local:
    with cluster.DaskExecutor(distributed.Client(local)) as executor:
      # The first task also pays the worker's imports; not counted.
      list(executor.map_unordered(driver._execute, tasks[:1]))  # pylint: disable=protected-access
      start = time.perf_counter()
      inside = sum(seconds for _, _, seconds, _ in executor.map_unordered(
          driver._execute, tasks[1:]))  # pylint: disable=protected-access
      total = time.perf_counter() - start
  per_task = (total - inside) / (count - 1)
  return dict(n_particles=n, steps=steps, tasks=count - 1,
              client_wall_seconds=total, task_wall_seconds=inside,
              overhead_seconds_per_task=per_task)


def _measure_soft_modes(n):
  positions, types, box = _liquid(n)
  from glassy_dynamics_tf import soft_modes  # pylint: disable=g-import-not-at-top
  task = cluster.SoftModesTask(0, positions, types, box,
                               soft_modes.DEFAULT_N_MODES,
                               soft_modes.DEFAULT_MINIMISER,
                               soft_modes.ZERO_TOLERANCE)
  c0, w0 = time.process_time(), time.perf_counter()
  cluster.soft_modes_task(task)
  return dict(n_particles=n, cpu_seconds=time.process_time() - c0,
              wall_seconds=time.perf_counter() - w0)


def _hours(seconds):
  return seconds / 3600.0


def cost_table(rate, cores_per_node, soft_modes_seconds_4096):
  """Rows of core-hours and wall hours for K nodes (module docstring)."""
  n = PAPER["n_particles"]
  run_steps = TAU_ALPHA_T044 / ka.TIMESTEP
  run_core_s = n * run_steps / rate
  tau_core_s = n * (TAU_ALPHA_T044 / ka.TIMESTEP) / rate  # one τ_α of MD.
  n_runs_total = PAPER["n_configurations"] * PAPER["n_runs"]
  rows = []
  for nodes in NODES:
    cores = nodes * cores_per_node
    chains = min(cores, PAPER["n_configurations"])
    per_chain = (PAPER["equilibration_tau_alpha"] +
                 math.ceil(PAPER["n_configurations"] / chains) *
                 PAPER["sampling_interval_tau_alpha"])
    prep_core_h = _hours(chains * per_chain * tau_core_s)
    prep_wall_h = _hours(per_chain * tau_core_s)
    runs_core_h = _hours(n_runs_total * run_core_s)
    runs_wall_h = _hours(math.ceil(n_runs_total / cores) * run_core_s)
    soft_core_h = _hours(PAPER["n_configurations"] * soft_modes_seconds_4096)
    soft_wall_h = _hours(math.ceil(PAPER["n_configurations"] / cores) *
                         soft_modes_seconds_4096)
    rows.append(dict(
        nodes=nodes, cores=cores, n_chains=chains,
        preparation_core_hours=prep_core_h, preparation_wall_hours=prep_wall_h,
        runs_core_hours=runs_core_h, runs_wall_hours=runs_wall_h,
        soft_modes_core_hours=soft_core_h, soft_modes_wall_hours=soft_wall_h,
        total_core_hours=prep_core_h + runs_core_h + soft_core_h,
        total_wall_hours=prep_wall_h + runs_wall_h + soft_wall_h))
  return dict(run_core_hours=_hours(run_core_s),
              configuration_core_hours=_hours(PAPER["n_runs"] * run_core_s),
              tau_alpha_core_hours=_hours(tau_core_s), rows=rows)


def _markdown(result):
  m = result["machine"]
  lines = [
      "# Paper-scale simulation on a cluster: measured rates, scaled cost",
      "",
      "    nice -n 19 .venv/bin/python benchmarks/cluster_cost.py",
      "",
      f"Run {result['date']} on {m['cpu_model']}, {m['cores']} cores shared "
      "with other jobs (load average "
      f"{result['load_average_start'][0]:.1f} at the start, "
      f"{result['load_average_end'][0]:.1f} at the end), "
      f"{m['memory_gib']} GiB, Python {m['python']}, {result['engine']}. "
      "Costs are CPU seconds of the process running LAMMPS, so the load "
      "stretches the wall times below but not the cost.",
      "",
      "## Measured work units (this machine)",
      "",
      "| work unit | N | MD steps | CPU s (each) | wall s (each) | "
      "particle-steps per core-s |",
      "|---|---|---|---|---|---|",
  ]
  for r in result["runs"]:
    lines.append(
        f"| (configuration, run), `driver._execute` | {r['n_particles']} | "
        f"{r['steps']} | {', '.join(f'{x:.2f}' for x in r['cpu_seconds'])} | "
        f"{', '.join(f'{x:.2f}' for x in r['wall_seconds'])} | "
        f"{r['particle_steps_per_core_second']:.3g} |")
  for s in result["soft_modes"]:
    lines.append(f"| soft modes, `cluster.soft_modes_task` | "
                 f"{s['n_particles']} | – | {s['cpu_seconds']:.2f} | "
                 f"{s['wall_seconds']:.2f} | – |")
  d = result["dask_overhead"]
  lines += [
      "",
      f"Dask dispatch overhead (LocalCluster, 1 worker, {d['tasks']} tasks of "
      f"N = {d['n_particles']}): {d['overhead_seconds_per_task'] * 1e3:.0f} ms "
      "per task (client wall time minus the tasks' own), against hours per "
      "paper-scale task: negligible.",
      "",
      "## Scaled to the paper (800 configurations × 30 runs, N = 4096, "
      "T = 0.44, to τ_α = 5375 τ)",
      "",
      f"Rate used: {result['rate']:.3g} particle-steps per core-second "
      f"(N = {result['rate_n']}); cost ∝ N·t. Cross-check: "
      "benchmarks/results/simulation_speed.json measured "
      f"{result['rate_4096']:.3g} at N = 4096 (lj/cut/opt, from wall time, "
      "on the same loaded machine; it puts one configuration at 34 "
      "core-hours instead of the figure below).",
      "",
      f"* one run: {result['table']['run_core_hours']:.2f} core-hours; one "
      f"configuration (30 runs): "
      f"{result['table']['configuration_core_hours']:.1f} core-hours; one "
      f"τ_α of preparation MD: {result['table']['tau_alpha_core_hours']:.2f} "
      "core-hours;",
      f"* soft modes at N = 4096 ≈ {result['soft_modes_seconds_4096']:.0f} "
      f"CPU s per configuration (N^{result['soft_modes_exponent']:.2f} from "
      "the two sizes).",
      "",
      f"Wall time for K nodes of {result['cores_per_node']} cores, one "
      "single-threaded Dask worker per core (`--cluster_cores="
      f"{result['cores_per_node']}`), preparation with one chain per core "
      "(`--n_chains`, at most 800), then the 24 000 runs, then the soft "
      "modes; perfect packing of equal tasks, no queue wait:",
      "",
      "| K nodes | cores | chains | preparation core-h / wall h | runs "
      "core-h / wall h | soft modes core-h / wall h | total core-h | total "
      "wall |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for r in result["table"]["rows"]:
    wall = r["total_wall_hours"]
    lines.append(
        f"| {r['nodes']} | {r['cores']} | {r['n_chains']} | "
        f"{r['preparation_core_hours']:,.0f} / {r['preparation_wall_hours']:,.0f}"
        f" | {r['runs_core_hours']:,.0f} / {r['runs_wall_hours']:,.1f} | "
        f"{r['soft_modes_core_hours']:,.1f} / {r['soft_modes_wall_hours']:.2f} |"
        f" {r['total_core_hours']:,.0f} | {wall:,.0f} h ({wall / 24:.1f} d) |")
  lines += [
      "",
      "Reading it: the runs dominate the core-hours and parallelise "
      "perfectly; the preparation does not: each chain must equilibrate "
      "10 τ_α before its first sample, so below ~80 chains the sampling "
      "dominates, and beyond that the 10 τ_α floor (about "
      f"{10 * result['table']['tau_alpha_core_hours']:.0f} h of wall time) "
      "stays however many nodes there are. A walltime limit must exceed one "
      f"run ({result['table']['run_core_hours']:.1f} h); a preparation "
      "chain outliving its job is rerun by Dask on another worker and "
      "resumes from its last checkpoint in work/ (docs/CLUSTER.md).",
  ]
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="500,2000")
  parser.add_argument("--steps", type=int, default=4000)
  parser.add_argument("--cores_per_node", type=int, default=32)
  parser.add_argument("--out", default="benchmarks/results/cluster_cost.json")
  args = parser.parse_args()
  load_start = os.getloadavg()
  sizes = [int(s) for s in args.sizes.split(",")]
  runs = [_measure_runs(n, args.steps) for n in sizes]
  print("runs:", json.dumps(runs), flush=True)
  overhead = _measure_dask_overhead(sizes[0], args.steps)
  print("dask:", json.dumps(overhead), flush=True)
  soft = [_measure_soft_modes(n) for n in (500, 1000)]
  print("soft modes:", json.dumps(soft), flush=True)
  exponent = (math.log(soft[1]["cpu_seconds"] / soft[0]["cpu_seconds"]) /
              math.log(soft[1]["n_particles"] / soft[0]["n_particles"]))
  soft_4096 = soft[1]["cpu_seconds"] * (4096 / soft[1]["n_particles"])**max(
      exponent, 1.0)
  rate = runs[-1]["particle_steps_per_core_second"]
  speed_path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "results", "simulation_speed.json")
  with open(speed_path) as f:
    speed = json.load(f)
  rate_4096 = speed["rates"]["opt"]["driver_steps_per_s"] * speed[
      "n_particles"]
  result = dict(
      date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
      machine=machine.describe(["numpy", "scipy", "dask", "distributed",
                                "dask-jobqueue", "lammps"]),
      engine=engine.engine_version(), load_average_start=load_start,
      runs=runs, dask_overhead=overhead, soft_modes=soft,
      soft_modes_exponent=exponent, soft_modes_seconds_4096=soft_4096,
      rate=rate, rate_n=runs[-1]["n_particles"], rate_4096=rate_4096,
      cores_per_node=args.cores_per_node,
      table=cost_table(rate, args.cores_per_node, soft_4096),
      load_average_end=os.getloadavg())
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  md = os.path.splitext(args.out)[0] + ".md"
  with open(md, "w") as f:
    f.write(_markdown(result))
  print(open(md).read())


if __name__ == "__main__":
  main()
