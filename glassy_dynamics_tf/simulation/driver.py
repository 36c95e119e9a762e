"""Resumable driver: state point -> one `.npz` record per configuration.

Output directory layout (docs/CONTRACTS.md, "Simulation output"):

  DIR/manifest.json                 settings, seeds, engine, thermostat,
                                    τ_α, per-configuration status, wall time
  DIR/configuration_00000.npz ...   one ConfigurationRecord each, plus extra
                                    arrays (see `_finalise`)
  DIR/work/                         checkpoints: preparation states
                                    (chain_CCC/prep_*.npz, parent_XXXXX.npz,
                                    the chain's reference ISF prep_isf.npz),
                                    the shared timescales (timescales.json)
                                    and finished runs
                                    (configuration_XXXXX/run_XXX.npz); the run
                                    files of a configuration are deleted once
                                    its record is written, work/ once all are

Timescales (one set per state point). The self-ISF that defines them is
an ensemble average, and every index j of `times` must mean the same
physical time in every record (as in the published data, whose files of
one temperature share `time_indices` on a common grid), or a network's
output j would mix different times. So:
  * prepared run with ISF levels: the times are chosen once, before any
    ensemble, where the equilibrium self-ISF of the A particles, averaged
    over time origins along the preparation trajectories
    (preparation.py, stage 6), crosses the levels, snapped to the common
    log grid (`_shared_timescales`). They are stored in the manifest
    ("timescales", with the curve and how it was measured) and in
    work/timescales.json before the ensembles start, and reused on resume.
    Every run then goes exactly to the largest of these times; each record
    also keeps its own run-averaged ISF and crossings for diagnostics;
  * fixed --times: the same fixed times for everyone;
  * --initial_configuration with ISF levels: there is nothing to average
    over but the configuration's own ensemble, so its run-averaged ISF
    chooses the times (runs are extended until it crosses every level).

Resume: every file is written atomically (temporary name, then rename) and
every result is a deterministic function of the settings and `--seed`
(seeds.py; one MPI rank per LAMMPS session). Re-running the same command
after SIGKILL at any moment skips what exists and recomputes the rest, so
the final files equal those of an uninterrupted run, with nothing lost or
duplicated. Runs of one ensemble are independent and execute in parallel
through an executor (cluster.py): by default a local pool of worker
processes (multiprocessing 'spawn'; workers die with the driver), or the
workers of a Dask cluster; so do independent preparation chains
(`n_chains`). A run's result comes back to this process, which writes it;
results do not depend on the number or kind of workers.
"""

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from typing import Callable, List, Optional

import numpy as np

from glassy_dynamics_tf import io as io_lib
from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.io import npz_format
from glassy_dynamics_tf.io import record as record_lib
from glassy_dynamics_tf.simulation import cluster as cluster_lib
from glassy_dynamics_tf.simulation import engine
from glassy_dynamics_tf.simulation import isf as isf_lib
from glassy_dynamics_tf.simulation import kob_andersen as ka
from glassy_dynamics_tf.simulation import preparation
from glassy_dynamics_tf.simulation import propensity as propensity_lib
from glassy_dynamics_tf.simulation import seeds as seeds_lib

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class SimulationInputError(ValueError):
  """Bad settings or initial configuration, found before any MD runs."""


@dataclasses.dataclass(frozen=True)
class SimulationSpec:
  """Everything that determines the output (flags of simulate_main.py).

  Attributes:
    temperature: T, ε_AA/k_B; None to take it from the initial
      configuration's metadata.
    density: ρ, σ_AA⁻³ (NVT; the start density in NPT).
    pressure: P, ε_AA/σ_AA³, NaN for NVT; finite for NPT preparation.
    n_particles: N (ignored with an initial configuration).
    n_configurations: configurations to sample (1 with an initial one).
    n_runs: isoconfigurational runs per configuration.
    isf_levels: self-ISF levels that define the timescales.
    times: fixed times, τ (instead of isf_levels).
    seed: base seed (>= 0).
    melt_temperature, melt_time, cool_time, equilibration_tau_alpha,
    sampling_interval_tau_alpha: preparation protocol, see preparation.py.
    max_time: longest run or τ_α window, τ.
    accelerator: "opt" or "none" (LAMMPS pair style suffix).
    thermostat_damping: Nosé-Hoover damping, τ.
    n_chains: independent preparation trajectories, run in parallel;
      configuration k comes from chain k mod n_chains.
    isf_wavenumber: q of the self-ISF, σ_AA⁻¹; None scales the first S(q)
      peak 7.25 at ρ = 1.2 with each configuration's density^(1/3). Set it
      (e.g. 7.25) for excerpts whose box density is not the liquid's.
  """
  temperature: Optional[float] = None
  density: float = 1.2
  pressure: float = math.nan
  n_particles: int = 4096
  n_configurations: int = 1
  n_runs: int = 30
  isf_levels: tuple = ()
  times: tuple = ()
  seed: int = 42
  melt_temperature: float = 2.0
  melt_time: float = 10.0
  cool_time: float = 10.0
  equilibration_tau_alpha: float = 10.0
  sampling_interval_tau_alpha: float = 1.0
  max_time: float = 1e5
  accelerator: str = "opt"
  thermostat_damping: float = engine.THERMOSTAT_DAMPING
  isf_wavenumber: Optional[float] = None
  n_chains: int = 1

  def validate(self, with_initial_configuration: bool = False) -> None:
    """Raises SimulationInputError naming the flag of any bad value."""

    def fail(flag, message):
      raise SimulationInputError(f"--{flag}: {message}")

    def finite_positive(flag, value):
      if value is None or not (math.isfinite(value) and value > 0):
        fail(flag, f"must be a finite number > 0, found {value}")

    finite_positive("temperature", self.temperature)
    if not with_initial_configuration:
      finite_positive("density", self.density)
      if self.n_particles < 2:
        fail("n_particles", f"must be >= 2, found {self.n_particles}")
      edge = (self.n_particles / self.density)**(1.0 / 3.0)
      if edge <= 2.0 * ka.MAX_CUTOFF:
        fail("n_particles",
             f"N={self.n_particles} at density {self.density} gives a box "
             f"edge {edge:.3f} σ, which must exceed twice the cut-off "
             f"({2 * ka.MAX_CUTOFF} σ); use more particles")
      if self.n_configurations < 1:
        fail("n_configurations", f"must be >= 1, found {self.n_configurations}")
      if not 1 <= self.n_chains <= self.n_configurations:
        fail("n_chains", f"must be in [1, n_configurations="
             f"{self.n_configurations}], found {self.n_chains}")
    if not math.isnan(self.pressure):
      finite_positive("pressure", self.pressure)
    if self.n_runs < 1:
      fail("n_runs", f"must be >= 1, found {self.n_runs}")
    if self.seed < 0:
      fail("seed", f"must be >= 0, found {self.seed}")
    if self.times and self.isf_levels:
      fail("times", "give either --times or --isf_levels, not both")
    if not self.times and not self.isf_levels:
      fail("isf_levels", "give --isf_levels or --times")
    for t in self.times:
      finite_positive("times", t)
    for level in self.isf_levels:
      if not (math.isfinite(level) and 0 < level < 1):
        fail("isf_levels", f"levels must lie in (0, 1), found {level}")
    if len(set(self.isf_levels)) != len(self.isf_levels):
      fail("isf_levels", f"levels repeat: {self.isf_levels}")
    finite_positive("max_time", self.max_time)
    if self.times and max(self.times) > self.max_time:
      fail("times", f"the longest time {max(self.times)} exceeds --max_time "
           f"{self.max_time}")
    finite_positive("melt_temperature", self.melt_temperature)
    for flag in ("melt_time", "cool_time", "equilibration_tau_alpha",
                 "sampling_interval_tau_alpha", "thermostat_damping"):
      finite_positive(flag, getattr(self, flag))
    if self.isf_wavenumber is not None:
      finite_positive("isf_wavenumber", self.isf_wavenumber)
    if self.accelerator not in engine.ACCELERATORS:
      fail("accelerator", f"must be one of {engine.ACCELERATORS}, found "
           f"{self.accelerator!r}")

  def settings_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["isf_levels"] = [float(x) for x in self.isf_levels]
    d["times"] = [float(x) for x in self.times]
    d["pressure"] = None if math.isnan(self.pressure) else self.pressure
    return d


def check_initial_configuration(record: record_lib.ConfigurationRecord,
                                path: str) -> None:
  """Raises SimulationInputError if MD cannot start from `record`."""
  if record.n_particles < 2:
    raise SimulationInputError(
        f"{path}: needs >= 2 particles, found {record.n_particles}")
  if np.any(record.box <= 2.0 * ka.MAX_CUTOFF):
    raise SimulationInputError(
        f"{path}: box {record.box.tolist()} must exceed twice the cut-off "
        f"({2 * ka.MAX_CUTOFF} σ) on every edge")
  distance, i, j = ka.minimum_distance(record.positions, record.box)
  if distance < ka.MIN_DISTANCE:
    raise SimulationInputError(
        f"{path}: particles {i} and {j} overlap (distance {distance:.4f} σ < "
        f"{ka.MIN_DISTANCE} σ); MD would blow up")


def load_initial_configuration(path: str) -> record_lib.ConfigurationRecord:
  """Reads and checks an initial configuration (our npz or DeepMind pickle)."""
  if not os.path.exists(path):
    raise SimulationInputError(f"--initial_configuration: no such file {path}")
  try:
    record = io_lib.load_configuration(path)
  except record_lib.RecordError as e:
    raise SimulationInputError(f"--initial_configuration: {e}") from e
  check_initial_configuration(record, path)
  return record


# -- worker side ----------------------------------------------------------------


def _prepare_chain(task) -> tuple:
  """Pool task: one preparation chain; progress goes to stderr.

  It writes its checkpoints under work_dir as it goes, and the driver reads
  them back, so on a cluster the output directory must be shared.
  """
  settings, n_configurations, work_dir = task
  output_dir = os.path.dirname(os.path.dirname(work_dir))
  cluster_lib.check_visible(os.path.join(output_dir, MANIFEST),
                            "the simulation's manifest")

  def log(message):
    print(f"chain {settings.chain}: {message}", file=sys.stderr, flush=True)

  return preparation.prepare(settings, n_configurations, work_dir, log=log)


@dataclasses.dataclass(frozen=True)
class _RunTask:
  configuration: int
  run: int
  path: str
  positions: np.ndarray
  types: np.ndarray
  box: np.ndarray
  temperature: float
  seed: int
  grid_steps: np.ndarray
  q: float
  stop_isf: Optional[float]
  min_grid_points: int
  accelerator: str
  damping: float


def _execute(task: _RunTask) -> tuple:
  """Pure task: runs one trajectory; returns (configuration, run, seconds,
  RunResult). The driver saves the result (`_save_run`), so the task needs
  no shared disk and a rerun after a lost worker writes nothing twice."""
  start = time.time()
  result = propensity_lib.run_trajectory(
      task.positions, task.types, task.box, task.temperature, task.seed,
      task.grid_steps, task.q, stop_isf=task.stop_isf,
      min_grid_points=task.min_grid_points, accelerator=task.accelerator,
      damping=task.damping)
  return task.configuration, task.run, time.time() - start, result


def _save_run(path: str, result: propensity_lib.RunResult,
              min_grid_points: int) -> None:
  import io  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  np.savez(buffer, steps=result.steps, displacements=result.displacements,
           isf=result.isf, seed=np.int64(result.seed),
           min_grid_points=np.int64(min_grid_points))
  npz_format.write_atomic_bytes(path, buffer.getvalue())


def _load_run(path: str) -> tuple:
  with np.load(path, allow_pickle=False) as data:
    result = propensity_lib.RunResult(
        steps=data["steps"], displacements=data["displacements"],
        isf=data["isf"], seed=int(data["seed"]))
    return result, int(data["min_grid_points"])


# -- driver side ------------------------------------------------------------------


class _Configuration:
  """What the driver knows about one configuration being simulated."""

  def __init__(self, index, positions, types, box, seeds, run_dir, out_path,
               tau_alpha, q):
    self.index = index
    self.positions = positions  # [n, 3] float32, as in the record.
    self.types = types
    self.box = box
    self.seeds = seeds
    self.run_dir = run_dir
    self.out_path = out_path
    self.tau_alpha = tau_alpha
    self.q = q  # ISF wave number, σ_AA⁻¹.
    self.min_grid_points = 0

  def run_path(self, r: int) -> str:
    return os.path.join(self.run_dir, f"run_{r:03d}.npz")


def configuration_path(output_dir: str, index: int) -> str:
  return os.path.join(output_dir, f"configuration_{index:05d}.npz")


def _manifest_entry(spec: SimulationSpec, index: int) -> dict:
  return {
      "file": os.path.basename(configuration_path("", index)),
      "run_seeds": seeds_lib.run_seeds(spec.seed, index, spec.n_runs).tolist(),
  }


def _remove_stale_temporaries(output_dir: str, log) -> None:
  """Deletes half-written files a killed session left in `output_dir`.

  Only names of the form `.NAME.XXXX.tmp` (npz_format.write_atomic_bytes'
  temporaries) are touched; a finished file is never a temporary, so
  nothing already written is lost.
  """
  for name in os.listdir(output_dir):
    if name.startswith(".") and name.endswith(".tmp"):
      path = os.path.join(output_dir, name)
      if os.path.isfile(path):
        os.remove(path)
        log(f"removed {path}, left half-written by an interrupted session")


def _write_manifest(path: str, manifest: dict) -> None:
  npz_format.write_atomic_bytes(
      path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def simulate(spec: SimulationSpec,
             output_dir: str,
             initial_configuration: Optional[str] = None,
             num_workers: Optional[int] = None,
             log: Callable[[str], None] = print,
             executor: Optional[cluster_lib.Executor] = None) -> List[str]:
  """Simulates configurations and their propensity; resumable.

  Args:
    spec: the settings (validated here, before any MD).
    output_dir: where records and the manifest go.
    initial_configuration: path of one configuration (npz or DeepMind
      pickle) to use instead of preparing `spec.n_configurations`.
    num_workers: parallel processes for the runs (default: CPU count),
      when no `executor` is given.
    log: progress messages.
    executor: where the chains and runs execute (cluster.py), e.g. a
      DaskExecutor; the caller closes it. Default: a local pool of
      `num_workers` processes, closed here.

  Returns:
    Paths of the configuration records, in index order.

  Raises:
    SimulationInputError: bad settings or initial configuration, or an
      output directory holding a different simulation.
  """
  session_start = time.time()
  initial = None
  if initial_configuration:
    initial = load_initial_configuration(initial_configuration)
    if spec.temperature is None:
      spec = dataclasses.replace(spec, temperature=initial.temperature)
    spec = dataclasses.replace(spec, n_particles=initial.n_particles,
                               n_configurations=1,
                               density=initial.density)
  spec.validate(with_initial_configuration=initial is not None)
  own_executor = executor is None
  if own_executor:
    executor = cluster_lib.LocalPoolExecutor(num_workers)

  os.makedirs(output_dir, exist_ok=True)
  _remove_stale_temporaries(output_dir, log)
  work_dir = os.path.join(output_dir, "work")
  manifest_path = os.path.join(output_dir, MANIFEST)
  settings = spec.settings_dict()
  settings["initial_configuration"] = (
      os.path.abspath(initial_configuration) if initial_configuration else None)
  manifest = None
  if os.path.exists(manifest_path):
    with open(manifest_path) as f:
      manifest = json.load(f)
    if manifest.get("settings") != settings:
      raise SimulationInputError(
          f"{output_dir}: holds a simulation with different settings "
          f"({manifest_path}); use a new --output_dir or the same flags")
    log(f"resuming the simulation in {output_dir}")
  else:
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "settings": settings,
        "engine": engine.engine_version(),
        "mpi_ranks_per_run": 1,
        "pair_potential": "Kob-Andersen LJ, lj/cut 2.5 σ_αβ, truncated and "
                          f"{'shifted' if ka.SHIFTED else 'not shifted'}",
        "timestep": ka.TIMESTEP,
        "thermostat": f"Nosé-Hoover NVT (LAMMPS fix nvt), damping "
                      f"{spec.thermostat_damping} τ, for every run",
        "preparation_ensemble": ("NPT (fix npt)" if math.isfinite(spec.pressure)
                                 else "NVT (fix nvt)"),
        "velocities": "velocity all create T SEED dist gaussian mom yes rot no",
        "isf": "A particles, isotropic sin(qr)/(qr), q = " + (
            f"{spec.isf_wavenumber}" if spec.isf_wavenumber else
            "7.25 (ρ/1.2)^(1/3) with ρ of each configuration"),
        "wall_time_s": 0.0,
        "configurations": {},
    }
  manifest["status"] = "running"
  _write_manifest(manifest_path, manifest)
  try:
    return _simulate(spec, output_dir, initial, log, manifest,
                     manifest_path, work_dir, executor, session_start)
  finally:
    if own_executor:
      executor.close()


def _simulate(spec, output_dir, initial, log, manifest,
              manifest_path, work_dir, executor, session_start):
  """The body of `simulate` after validation and the manifest."""
  # Preparation: `n_chains` independent trajectories, in parallel workers.
  configurations = []
  shared = None  # Timescales shared by all configurations of a prepared run.
  if initial is not None:
    tau_alpha = None
    entries = [(initial.positions, initial.types, initial.box)]
  else:
    pending = [k for k in range(spec.n_configurations)
               if not os.path.exists(configuration_path(output_dir, k))]
    entries = [None] * spec.n_configurations
    tau_alpha = manifest.get("tau_alpha")
    if pending:
      stage_start = time.time()
      log(f"stage 1/2: preparing {spec.n_configurations} configurations of "
          f"N={spec.n_particles} at T={spec.temperature}")
      chain_tasks = [
          (preparation.PreparationSettings(
              temperature=spec.temperature, density=spec.density,
              pressure=spec.pressure, n_particles=spec.n_particles,
              seed=spec.seed, melt_temperature=spec.melt_temperature,
              melt_time=spec.melt_time, cool_time=spec.cool_time,
              equilibration_tau_alpha=spec.equilibration_tau_alpha,
              sampling_interval_tau_alpha=spec.sampling_interval_tau_alpha,
              max_window_time=spec.max_time, accelerator=spec.accelerator,
              damping=spec.thermostat_damping, chain=c,
              isf_levels=tuple(spec.isf_levels),
              isf_wavenumber=spec.isf_wavenumber,
              isf_min_origins=-(-preparation.ISF_MIN_ORIGINS //
                                spec.n_chains)),
           len(range(c, spec.n_configurations, spec.n_chains)),
           os.path.join(work_dir, f"chain_{c:03d}"))
          for c in range(spec.n_chains)]
      # A remote executor gets even one chain: the client may sit on a
      # login node, and a chain at T = 0.44 runs for hours.
      if executor.remote or (spec.n_chains > 1 and executor.n_workers > 1):
        chains = executor.map(_prepare_chain, chain_tasks)
      else:
        chains = [preparation.prepare(*task, log=log) for task in chain_tasks]
      parents = [chains[k % spec.n_chains][0][k // spec.n_chains]
                 for k in range(spec.n_configurations)]
      chain_taus = [float(chain[1]) for chain in chains]
      tau_alpha = float(np.mean(chain_taus))
      manifest["tau_alpha"] = tau_alpha
      manifest["tau_alpha_per_chain"] = chain_taus
      if spec.isf_levels:
        manifest["timescales"] = _shared_timescales(
            spec, [chain[2] for chain in chains], manifest, work_dir)
        _write_manifest(manifest_path, manifest)
        shared = _timescales_from_dict(manifest["timescales"])
      log(f"stage 1/2 done in {time.time() - stage_start:.1f} s; "
          f"τ_α = {tau_alpha:.4g} τ" + (
              "" if shared is None else
              "; timescales of every configuration (from the equilibrium "
              f"ISF): {np.round(shared.times, 4).tolist()} τ at levels "
              f"{np.round(spec.isf_levels, 4).tolist()}"))
      for k in pending:
        state, _ = preparation.load_state(parents[k])
        box32 = state.box.astype(np.float32)
        # The record's float32 positions are the exact start of every run.
        positions32 = periodic.wrap(
            periodic.wrap(state.positions, state.box).astype(np.float32),
            box32)
        entries[k] = (positions32, state.types, box32)
  full_grid = propensity_lib.time_grid(
      propensity_lib.steps_for_time(max(spec.times) if spec.times
                                    else spec.max_time),
      extra_steps=[propensity_lib.steps_for_time(t) for t in spec.times])
  if shared is not None:
    # Every run goes exactly to the largest shared time.
    grid_steps = full_grid[:int(max(shared.grid_indices)) + 1]
    if not np.array_equal(grid_steps[shared.grid_indices] * ka.TIMESTEP,
                          shared.times):
      raise RuntimeError(
          f"{output_dir}: the stored timescales {shared.times.tolist()} are "
          "not on this run's time grid; the manifest or work/ was altered")
  else:
    grid_steps = full_grid
  stop_isf = propensity_lib.stop_level(spec.isf_levels)
  for k, entry in enumerate(entries):
    if entry is None or os.path.exists(configuration_path(output_dir, k)):
      continue
    positions, types, box = entry
    configurations.append(_Configuration(
        k, np.asarray(positions, np.float32), np.asarray(types, np.int32),
        np.asarray(box, np.float32),
        seeds_lib.run_seeds(spec.seed, k, spec.n_runs),
        os.path.join(work_dir, f"configuration_{k:05d}"),
        configuration_path(output_dir, k),
        (None if tau_alpha is None else
         manifest.get("tau_alpha_per_chain", [tau_alpha] * spec.n_chains)[
             k % spec.n_chains]),
        spec.isf_wavenumber or ka.first_peak_wavenumber(
            len(types) / float(np.prod(np.asarray(box, np.float64))))))
    if shared is not None:
      configurations[-1].min_grid_points = len(grid_steps)

  # Records written by an interrupted session before it could update the
  # manifest are entered now (entries are pure functions of the settings).
  for k in range(spec.n_configurations):
    if os.path.exists(configuration_path(output_dir, k)):
      manifest["configurations"][f"{k:05d}"] = _manifest_entry(spec, k)

  if initial is None and manifest.get("tau_alpha") is None:
    done = [configuration_path(output_dir, k)
            for k in range(spec.n_configurations)
            if os.path.exists(configuration_path(output_dir, k))]
    if done:
      _, extras = npz_format.load_npz(done[0], with_extras=True)
      manifest["tau_alpha"] = float(extras["tau_alpha"])

  # Ensembles.
  total_runs = len(configurations) * spec.n_runs
  log(f"stage 2/2: {len(configurations)} configuration(s) x {spec.n_runs} runs "
      f"on {executor.describe()}")
  pending = {c.index: c for c in configurations}

  def finalise(k):
    nonlocal session_start
    c = pending[k]
    if _finalise(c, spec, grid_steps, log, shared,
                 manifest.get("timescales")):
      del pending[k]
      manifest["configurations"][f"{k:05d}"] = _manifest_entry(spec, k)
      manifest["wall_time_s"] = (manifest.get("wall_time_s", 0.0) +
                                 time.time() - session_start)
      session_start = time.time()
      _write_manifest(manifest_path, manifest)

  # One local run is not worth starting a pool for; a cluster gets it anyway.
  if not executor.remote and (executor.n_workers == 1 or total_runs <= 1):
    executor = cluster_lib.SerialExecutor()
  while pending:
    tasks = []
    for c in pending.values():
      os.makedirs(c.run_dir, exist_ok=True)
      for r in range(spec.n_runs):
        path = c.run_path(r)
        if os.path.exists(path):
          try:
            result, min_points = _load_run(path)
            if (min_points >= c.min_grid_points or
                len(result.steps) >= c.min_grid_points):
              continue
          except (OSError, ValueError, KeyError):
            pass  # unreadable: recompute.
        tasks.append(_RunTask(
            c.index, r, path, c.positions, c.types, c.box,
            spec.temperature, int(c.seeds[r]), grid_steps, c.q,
            None if (spec.times or shared is not None) else stop_isf,
            c.min_grid_points,
            spec.accelerator, spec.thermostat_damping))
    n_todo = len(tasks)
    outstanding = {k: 0 for k in pending}
    for task in tasks:
      outstanding[task.configuration] += 1
    # Configurations with nothing left to run are finalised first.
    for k in [k for k, n in outstanding.items() if n == 0]:
      finalise(k)
    pass_start = time.time()
    paths = {(t.configuration, t.run): (t.path, t.min_grid_points)
             for t in tasks}
    results = executor.map_unordered(_execute, tasks)
    for i, (k, r, seconds, result) in enumerate(results):
      # Written here, once per (configuration, run), whichever worker (or
      # how many, after a lost one) computed it.
      _save_run(*paths[(k, r)][:1], result, paths[(k, r)][1])
      last_step = int(result.steps[-1])
      elapsed = time.time() - pass_start
      eta = elapsed / (i + 1) * (n_todo - i - 1)
      log(f"configuration {k + 1}/{spec.n_configurations}: run {r + 1}/"
          f"{spec.n_runs} done ({last_step} steps, {seconds:.1f} s); "
          f"{i + 1}/{n_todo} runs of this pass, ETA {eta:.0f} s")
      outstanding[k] -= 1
      if outstanding[k] == 0:
        finalise(k)

  manifest["status"] = "complete"
  manifest["wall_time_s"] = (manifest.get("wall_time_s", 0.0) +
                             time.time() - session_start)
  _write_manifest(manifest_path, manifest)
  if initial is None and os.path.isdir(work_dir):
    leftover = [k for k in range(spec.n_configurations)
                if not os.path.exists(configuration_path(output_dir, k))]
    if not leftover:
      shutil.rmtree(work_dir, ignore_errors=True)
  elif os.path.isdir(work_dir):
    shutil.rmtree(work_dir, ignore_errors=True)
  log(f"done: {spec.n_configurations} configuration(s) in {output_dir} "
      f"(total wall time {manifest['wall_time_s']:.1f} s)")
  return [configuration_path(output_dir, k)
          for k in range(spec.n_configurations)]


TIMESCALES_CHECKPOINT = "timescales.json"


def _shared_timescales(spec: SimulationSpec,
                       references: List[preparation.ReferenceIsf],
                       manifest: dict, work_dir: str) -> dict:
  """The timescales of every configuration of a prepared run, as a dict.

  Chosen once per state point from the equilibrium self-ISF of the A
  particles measured along the preparation trajectories (preparation.py,
  stage 6: time-origin average), the chains' sums and origin counts pooled
  lag by lag. Each level's crossing is interpolated linearly in log t
  (isf.crossing_time) and snapped to the nearest point in log t of the
  common grid (`propensity.time_grid`, the ensembles' grid), as the
  published data's `time_indices` are shared by all files of a
  temperature. A resumed run reuses the stored choice: from the manifest
  if it has one, else from `work/timescales.json`; both hold the same dict.

  Returns:
    JSON-able dict: isf_levels, time_indices (into the grid), times (τ,
    float64 grid times = steps × 0.003), crossing_times (τ, interpolated),
    reference_isf {times, isf, n_origins} (the pooled curve), per-chain q,
    origins, origin interval and trajectory length, and `method`.
  """
  if manifest.get("timescales"):
    return manifest["timescales"]
  path = os.path.join(work_dir, TIMESCALES_CHECKPOINT)
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  longest = max(references, key=lambda r: len(r.lag_steps)).lag_steps
  isf_sum = np.zeros(len(longest))
  isf_count = np.zeros(len(longest), np.int64)
  for r in references:
    n = len(r.lag_steps)
    if not np.array_equal(r.lag_steps, longest[:n]):
      raise RuntimeError("the chains' reference ISFs use different grids")
    isf_sum[:n] += r.isf_sum
    isf_count[:n] += r.isf_count
  grid_times = longest * ka.TIMESTEP
  isf_mean = isf_sum / isf_count
  ts = propensity_lib.choose_timescales(grid_times, isf_mean, spec.isf_levels)
  if ts.missing:
    raise RuntimeError(
        f"the pooled equilibrium self-ISF does not cross {ts.missing} within "
        f"{grid_times[-1]:.4g} τ")
  result = {
      "method": (
          "A-particle self-ISF, isotropic sin(qr)/(qr), averaged over time "
          "origins every τ_α/"
          f"{preparation.ISF_ORIGINS_PER_TAU_ALPHA:g} along each "
          "preparation chain's equilibrium production trajectory "
          "(preparation.py, stage 6), chains pooled lag by lag; crossings "
          "interpolated linearly in log t and snapped to the nearest grid "
          "time in log t; the same times for every configuration"),
      "isf_levels": [float(x) for x in spec.isf_levels],
      "time_indices": [int(i) for i in ts.grid_indices],
      "times": [float(t) for t in ts.times],
      "crossing_times": [float(t) for t in ts.crossing_times],
      "reference_isf": {
          "times": [float(t) for t in grid_times],
          "isf": [float(x) for x in isf_mean],
          "n_origins": [int(n) for n in isf_count],
      },
      "q_per_chain": [float(r.q) for r in references],
      "origins_per_chain": [int(r.n_origins) for r in references],
      "origin_interval_per_chain": [
          float(r.origin_interval_steps * ka.TIMESTEP) for r in references],
      "trajectory_time_per_chain": [
          float(r.trajectory_steps * ka.TIMESTEP) for r in references],
  }
  os.makedirs(work_dir, exist_ok=True)
  npz_format.write_atomic_bytes(
      path, (json.dumps(result, indent=1) + "\n").encode())
  return result


def _timescales_from_dict(d: dict) -> propensity_lib.Timescales:
  return propensity_lib.Timescales(
      grid_indices=np.asarray(d["time_indices"], np.int64),
      times=np.asarray(d["times"], np.float64),
      crossing_times=np.asarray(d["crossing_times"], np.float64),
      missing=[])


def _finalise(c: _Configuration, spec: SimulationSpec,
              grid_steps: np.ndarray, log,
              shared: Optional[propensity_lib.Timescales] = None,
              shared_dict: Optional[dict] = None) -> bool:
  """Writes the record of configuration `c` once its runs allow it.

  With `shared` timescales (a prepared run with ISF levels) the runs cover
  the whole `grid_steps`, which ends at the largest shared time, and the
  propensity is taken at the shared grid indices. Otherwise (fixed times,
  or an initial configuration with ISF levels) the timescales come from
  this configuration's run-averaged ISF; returns False (and raises
  `c.min_grid_points`) when it has not crossed every level on the common
  grid yet; the runs are then extended deterministically.

  Extra arrays in the record file:
    run_seeds [R] int64; time_grid [G] float64 (τ, the common grid, as far
    as the runs went); isf_runs [R, G] float64 and isf_mean [G] float64
    (this configuration's own ISF); time_indices [T] int64 (into
    time_grid); isf_crossing_times [T] float64 (τ, the interpolated
    crossings that chose the times: of the shared reference ISF in a
    prepared run, of isf_mean with an initial configuration; NaN for fixed
    times); own_isf_crossing_times [T] float64 (τ, crossings of this
    configuration's isf_mean, NaN where it stays above the level within
    time_grid, and for fixed times); q float64; configuration_index int64;
    tau_alpha float64 (NaN with an initial configuration). With shared
    timescales also reference_time_grid [G'] float64 (τ),
    reference_isf [G'] float64 and reference_isf_origins [G'] int64: the
    equilibrium ISF the times came from and its origins per lag.

  The record keeps `propensity_halves` [2, T, n] float32: the propensity of
  the even-indexed runs (0, 2, ...) and of the odd-indexed ones (1, 3, ...),
  for the split-half noise ceiling of evaluation.py; None with one run.
  """
  runs = [_load_run(c.run_path(r))[0] for r in range(spec.n_runs)]
  n_common = propensity_lib.common_prefix(runs)
  grid_times = grid_steps[:n_common] * ka.TIMESTEP
  isf_runs = np.stack([r.isf[:n_common] for r in runs])
  isf_mean = isf_runs.mean(axis=0)
  extra = {}
  if shared is not None:
    if n_common < len(grid_steps):
      raise RuntimeError(
          f"configuration {c.index}: runs end at grid point {n_common} of "
          f"{len(grid_steps)}; delete {c.run_dir} and resume")
    timescales = shared
    own = [isf_lib.crossing_time(grid_times, isf_mean, level)
           for level in spec.isf_levels]
    reference = shared_dict["reference_isf"]
    extra = {
        "reference_time_grid": np.asarray(reference["times"], np.float64),
        "reference_isf": np.asarray(reference["isf"], np.float64),
        "reference_isf_origins": np.asarray(reference["n_origins"], np.int64),
    }
  else:
    timescales = propensity_lib.choose_timescales(
        grid_times, isf_mean, spec.isf_levels, spec.times)
    if timescales.missing:
      longest = max(len(r.steps) for r in runs)
      if longest >= len(grid_steps) and n_common >= len(grid_steps):
        raise RuntimeError(
            f"configuration {c.index}: the run-averaged self-ISF did not "
            f"cross {timescales.missing} within --max_time={spec.max_time} τ")
      c.min_grid_points = min(len(grid_steps),
                              max(longest, n_common + 1,
                                  int(1.2 * n_common)))
      log(f"configuration {c.index + 1}: ISF levels {timescales.missing} not "
          f"yet crossed by the run average; extending runs to "
          f"{c.min_grid_points} grid points")
      return False
    # Store the grid up to the last point needed, which depends only on the
    # (deterministic) prefix of the runs, not on how far they were extended.
    needed = [int(i) for i in timescales.grid_indices]
    for level in spec.isf_levels:
      needed.append(int(np.flatnonzero(isf_mean <= level)[0]))
    n_store = max(needed) + 1
    grid_times, isf_runs, isf_mean = (grid_times[:n_store],
                                      isf_runs[:, :n_store],
                                      isf_mean[:n_store])
    own = list(timescales.crossing_times)
  # Two disjoint half-ensembles (even and odd run indices): their agreement
  # is the split-half reliability behind the noise ceiling (evaluation.py).
  halves = None
  if len(runs) >= 2:
    halves = np.stack([
        propensity_lib.propensity(runs[parity::2], timescales.grid_indices)
        for parity in (0, 1)])
  record = record_lib.ConfigurationRecord.create(
      positions=c.positions, types=c.types, box=c.box,
      times=timescales.times,
      isf_levels=(spec.isf_levels if spec.isf_levels else None),
      propensity=propensity_lib.propensity(runs, timescales.grid_indices),
      temperature=spec.temperature,
      pressure=spec.pressure,
      n_runs=spec.n_runs,
      propensity_halves=halves,
      source=c.out_path)
  npz_format.save_npz(record, c.out_path, extra_arrays=dict({
      "run_seeds": c.seeds,
      "time_grid": grid_times,
      "isf_runs": isf_runs,
      "isf_mean": isf_mean,
      "time_indices": timescales.grid_indices,
      "isf_crossing_times": timescales.crossing_times,
      "own_isf_crossing_times": np.asarray(own, np.float64),
      "q": np.float64(c.q),
      "configuration_index": np.int64(c.index),
      "tau_alpha": np.float64(c.tau_alpha if c.tau_alpha else np.nan),
  }, **extra))
  shutil.rmtree(c.run_dir, ignore_errors=True)
  if shared is not None:
    log(f"configuration {c.index + 1}/{spec.n_configurations} written: "
        f"{os.path.basename(c.out_path)} (shared times "
        f"{np.round(timescales.times, 4).tolist()}; own ISF crossings "
        f"{np.round(own, 4).tolist()})")
  else:
    log(f"configuration {c.index + 1}/{spec.n_configurations} written: "
        f"{os.path.basename(c.out_path)} (times "
        f"{np.round(timescales.times, 4).tolist()})")
  return True
