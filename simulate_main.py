r"""Simulates Kob-Andersen configurations and their isoconfigurational propensity.

Examples:
  # The README demo (T = 0.9, ρ = 1.2, N = 1000): minutes on two cores.
  python simulate_main.py --config=glassy_dynamics_tf/configs/demo.py \
      --output_dir=/tmp/glassy_demo/raw
  # Paper state point, fixed times, one configuration:
  python simulate_main.py --temperature=0.44 --pressure=2.93 \
      --n_configurations=1 --times=0.132,0.435 --output_dir=/tmp/t044
  # Propensity of your own (or the authors') configuration:
  python simulate_main.py --initial_configuration=conf.pickle \
      --n_runs=30 --isf_levels=0.9,0.5 --output_dir=/tmp/mine

Flags override the `simulation` section of --config (default: the paper's
configs/default.py). Re-running the same command resumes an interrupted run.
"""

import dataclasses
import math
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from glassy_dynamics_tf import console  # First: quiets TensorFlow's start-up.
from glassy_dynamics_tf.simulation import driver

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "glassy_dynamics_tf", "configs", "default.py"),
    "ml_collections config file; its `simulation` section gives the defaults.")
flags.DEFINE_float("temperature", None, "Temperature T (ε_AA/k_B). Default: "
                   "the config's, or the initial configuration's metadata.")
flags.DEFINE_float("density", None, "Number density ρ (σ_AA⁻³), NVT.")
flags.DEFINE_float("pressure", None, "Pressure P (ε_AA/σ_AA³): prepare in NPT "
                   "(the paper: T=0.44, P=2.93). Excludes --density.")
flags.DEFINE_integer("n_particles", None, "Number of particles N (80% A).")
flags.DEFINE_integer("n_configurations", None, "Configurations to sample.")
flags.DEFINE_integer("n_runs", None, "Isoconfigurational runs per configuration.")
flags.DEFINE_list("times", None, "Fixed times (τ), comma-separated; "
                  "excludes --isf_levels.")
flags.DEFINE_list("isf_levels", None, "Self-ISF levels in (0,1) that define "
                  "the timescales, comma-separated.")
flags.DEFINE_integer("seed", None, "Base seed (>= 0); all seeds derive from it.")
flags.DEFINE_string("output_dir", None, "Directory for the .npz records and "
                    "manifest.json.", required=True)
flags.DEFINE_string("initial_configuration", None, "A configuration (.npz or "
                    "DeepMind .pickle) to use instead of preparing new ones.")
flags.DEFINE_integer("n_chains", None, "Independent preparation trajectories "
                     "(run in parallel); configuration k comes from chain "
                     "k mod n_chains. Default 1.")
flags.DEFINE_integer("num_workers", None, "Parallel worker processes for the "
                     "runs of an ensemble (default: number of CPU cores).")
flags.DEFINE_float("max_time", None, "Longest run or τ_α window (τ).")
flags.DEFINE_enum("accelerator", None, ["opt", "none"], "LAMMPS pair style "
                  "suffix: opt (lj/cut/opt, faster) or none (lj/cut).")
flags.DEFINE_float("isf_wavenumber", None, "Wave number q (σ_AA⁻¹) of the "
                   "self-ISF; default 7.25·(ρ/1.2)^(1/3) with each "
                   "configuration's density.")
FLAGS = flags.FLAGS

_KNOWN = {f.name for f in dataclasses.fields(driver.SimulationSpec)}


def _floats(name, values):
  try:
    return tuple(float(v) for v in values)
  except ValueError as e:
    raise driver.SimulationInputError(f"--{name}: not a number ({e})") from e


def build_spec() -> driver.SimulationSpec:
  """The SimulationSpec from --config and the flags that override it."""
  sim = dict(_CONFIG.value.simulation)
  unknown = sorted(set(sim) - _KNOWN)
  if unknown:
    raise driver.SimulationInputError(
        f"--config: unknown simulation field(s) {unknown}; known: "
        f"{sorted(_KNOWN)}")
  if FLAGS.density is not None and FLAGS.pressure is not None:
    raise driver.SimulationInputError(
        "--density and --pressure: give one state-point variable, not both")
  if FLAGS.times is not None and FLAGS.isf_levels is not None:
    raise driver.SimulationInputError("--times and --isf_levels: give one")
  for name in ("temperature", "density", "n_particles", "n_configurations",
               "n_runs", "seed", "max_time", "accelerator", "isf_wavenumber",
               "n_chains"):
    if getattr(FLAGS, name) is not None:
      sim[name] = getattr(FLAGS, name)
  if FLAGS.density is not None:
    sim["pressure"] = math.nan
  if FLAGS.pressure is not None:
    sim["pressure"] = FLAGS.pressure
  if FLAGS.times is not None:
    sim["times"], sim["isf_levels"] = _floats("times", FLAGS.times), ()
  if FLAGS.isf_levels is not None:
    sim["isf_levels"] = _floats("isf_levels", FLAGS.isf_levels)
    sim["times"] = ()
  if FLAGS.initial_configuration and FLAGS.temperature is None:
    sim["temperature"] = None  # from the file's metadata.
  for name in ("times", "isf_levels"):
    sim[name] = tuple(float(v) for v in sim.get(name, ()))
  return driver.SimulationSpec(**sim)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  try:
    spec = build_spec()
    driver.simulate(spec, FLAGS.output_dir,
                    initial_configuration=FLAGS.initial_configuration,
                    num_workers=FLAGS.num_workers, log=logging.info)
  except driver.SimulationInputError as e:
    raise app.UsageError(str(e)) from e


if __name__ == "__main__":
  app.run(main)
