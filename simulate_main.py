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
  # On a running Dask scheduler, or on Slurm jobs it starts (docs/CLUSTER.md):
  python simulate_main.py ... --dask_scheduler=tcp://HOST:8786
  python simulate_main.py ... --cluster=slurm --cluster_jobs=8 \
      --cluster_cores=32 --cluster_memory=32GB --cluster_walltime=48:00:00

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
from glassy_dynamics_tf.simulation import cluster
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
flags.DEFINE_string("cluster", "local", "Where the chains and runs execute: "
                    "local (a process pool on this host) or a batch system "
                    f"through dask-jobqueue: {sorted(cluster.JOBQUEUE_CLUSTERS)}"
                    ". See docs/CLUSTER.md.")
flags.DEFINE_string("dask_scheduler", None, "Address of a running Dask "
                    "scheduler (tcp://HOST:8786) whose workers run the tasks; "
                    "excludes a batch --cluster.")
flags.DEFINE_integer("cluster_cores", 1, "Batch clusters: cores per job, each "
                     "a single-threaded Dask worker (one MD run at a time).")
flags.DEFINE_string("cluster_memory", "4GB", "Batch clusters: memory per job.")
flags.DEFINE_string("cluster_walltime", "24:00:00", "Batch clusters: job time "
                    "limit, HH:MM:SS; longer than the longest single run.")
flags.DEFINE_integer("cluster_jobs", 1, "Batch clusters: jobs to keep running.")
flags.DEFINE_string("cluster_queue", None, "Batch clusters: partition/queue.")
flags.DEFINE_string("cluster_account", None, "Batch clusters: account/project "
                    "to charge.")
flags.DEFINE_list("cluster_job_extra", [], "Batch clusters: extra scheduler "
                  "directives, comma-separated (e.g. --qos=long).")
flags.DEFINE_bool("soft_modes", False, "Also compute the soft-modes baseline "
                  "of every record, one task per configuration on the same "
                  "workers, into OUTPUT_DIR/soft_modes/ (resumable).")
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


def cluster_options() -> cluster.ClusterOptions:
  """The ClusterOptions of the --cluster* flags (validated)."""
  options = cluster.ClusterOptions(
      cluster=FLAGS.cluster, dask_scheduler=FLAGS.dask_scheduler,
      num_workers=FLAGS.num_workers, cores=FLAGS.cluster_cores,
      memory=FLAGS.cluster_memory, walltime=FLAGS.cluster_walltime,
      jobs=FLAGS.cluster_jobs, queue=FLAGS.cluster_queue,
      account=FLAGS.cluster_account, job_extra=tuple(FLAGS.cluster_job_extra))
  options.validate()
  return options


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  try:
    spec = build_spec()
    options = cluster_options()
    # Bad settings fail before a cluster is started (the driver validates
    # again, harmlessly).
    if not FLAGS.initial_configuration:
      spec.validate()
    with cluster.make_executor(options) as executor:
      paths = driver.simulate(spec, FLAGS.output_dir,
                              initial_configuration=FLAGS.initial_configuration,
                              log=logging.info, executor=executor)
      if FLAGS.soft_modes:
        cluster.compute_soft_modes(
            paths, os.path.join(FLAGS.output_dir, "soft_modes"), executor,
            log=logging.info)
  except (driver.SimulationInputError, cluster.ClusterError) as e:
    raise app.UsageError(str(e)) from e


if __name__ == "__main__":
  app.run(main)
