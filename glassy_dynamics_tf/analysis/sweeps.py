r"""Studies that train many networks: one per point of a grid of overrides.

A sweep is a base config file plus named points, each a dict of config
overrides (`{"dataset.max_train_examples": 5}`, `{"graph.cutoff": 1.5,
"model.num_recurrences": 3}`). Every point is one ordinary training run,

  python train_main.py --config=BASE --config.graph.cutoff=1.5 ... \
    --workdir=ROOT/<point> [--data_dir=...]

so a point's work directory is exactly what train_main.py makes (and resumes),
and the whole sweep reuses the trainer, its resume and its SavedModel export.

```
 Sweep(config_file, base_overrides, points)
   │ check_sweep: every point's config built in-process, fields and types
   │              checked before anything runs
   ▼
 dispatch: num_parallel train_main.py subprocesses at a time
   │   ROOT/<point>/train.log       the run's output (appended per attempt)
   │   ROOT/<point>/sweep_point.json  overrides, command, attempts, seconds
   │   finished (train_state.json + saved_model/) -> skipped on re-runs;
   │   started (backup/) -> train_main resumes it; failed -> log tail
   │   reported, the other points go on, the sweep ends non-zero
   ▼
 evaluate_points: each finished SavedModel on the test split, in-process
   │   (evaluation.SavedModelPredictor + evaluation.evaluate; cached in
   │   ROOT/<point>/sweep_eval.json)
   ▼
 ROOT/<sweep>.json and <sweep>.png
```

Built-in sweeps (Bapst et al. 2020):
  dataset_size     Extended Data Fig. 1: test Pearson per timescale, and
                   accuracy / ROC-AUC of the 10 % most mobile particles,
                   vs the number of training configurations. Point k trains
                   on the first k configurations of the train split
                   (config.dataset.max_train_examples; nested subsets), each
                   still augmented by the 48 cube symmetries; validation and
                   test splits are the same for every point.
  edge_threshold   Extended Data Fig. 2: test Pearson vs the graph cut-off
                   (config.graph.cutoff), one line per number of
                   message-passing steps (config.model.num_recurrences), for
                   the network with edge features (relative vectors) and
                   without (config.model.use_edge_features = False: edges
                   carry only connectivity). The grids are ours; the paper's
                   model is the point cutoff 2.0 σ, 7 steps, with features.

Every point trains for the base config's train.num_steps and is selected on
the validation split, as a single run would be.

Paper scale (GPU; the published T = 0.44 data, 400 training configurations;
see datasets/glassy_dynamics/README.md to build it). The step budget and
early stopping below are our choices, not the paper's:

  python analyze_main.py --study=dataset_size \
    --config=glassy_dynamics_tf/configs/default.py \
    --config.train.num_steps=200000 --config.train.early_stopping_patience=20 \
    --dataset=glassy_dynamics/deepmind_t044 --data_dir=$TFDS_DIR \
    --sizes=1,2,5,10,20,50,100,200,all --sweep_root=$RUNS/dataset_size

  python analyze_main.py --study=edge_threshold \
    --config=glassy_dynamics_tf/configs/default.py \
    --config.train.num_steps=200000 --config.train.early_stopping_patience=20 \
    --dataset=glassy_dynamics/deepmind_t044 --data_dir=$TFDS_DIR \
    --cutoffs=1.25,1.5,1.75,2.0,2.5 --recurrences=1,3,5,7 \
    --num_parallel=4 --sweep_root=$RUNS/edge_threshold

(the published data keeps about 360 of its 400 training configurations
after our 10 % validation hold-out, hence `all` rather than 400). Several
processes may share one GPU (num_parallel > 1 turns on
TF_FORCE_GPU_ALLOW_GROWTH so they do not each reserve all of its memory). On
a multi-GPU node, run one sweep per GPU (CUDA_VISIBLE_DEVICES=k, the same
--sweep_root, disjoint --sizes), then the full command once more: every
point is finished by then, so it only scores them and writes the whole
report.

Demo scale (the README demo's data, 17 training configurations; 7 minutes
on two shared CPU cores, measured):

  nice -n 10 python analyze_main.py --study=dataset_size \
    --config=glassy_dynamics_tf/configs/demo.py --config.train.num_steps=1000 \
    --dataset=glassy_dynamics/demo --data_dir=demo_output/tensorflow_datasets \
    --sizes=1,4,16 --num_parallel=1 --sweep_root=/tmp/sweeps/dataset_size

Re-running the same command continues the sweep: finished points are skipped
(their evaluation is cached too), a killed point resumes from its last
backup. A point directory that holds a run of a different config (the base
config or the grid changed) is reported as failed, never silently reused.
"""

import dataclasses
import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import ml_collections
from ml_collections.config_flags import config_flags as config_flags_lib
import numpy as np

from glassy_dynamics_tf import evaluation
from glassy_dynamics_tf import metrics
from glassy_dynamics_tf import training
from glassy_dynamics_tf.analysis import common

SWEEPS = ("dataset_size", "edge_threshold")
FIGURES = {"dataset_size": "Extended Data Fig. 1 of Bapst et al. 2020",
           "edge_threshold": "Extended Data Fig. 2 of Bapst et al. 2020"}
# Grids of the built-in sweeps (ours; the paper trained on up to 400
# configurations, with a 2.0 σ cut-off and 7 steps by default). "all" = the
# whole train split.
DEFAULT_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, "all")
DEFAULT_CUTOFFS = (1.25, 1.5, 1.75, 2.0, 2.5)
DEFAULT_RECURRENCES = (1, 3, 5, 7)
# The metrics the sweep report keeps (summaries over test configurations).
METRICS = ("pearson", "spearman", "accuracy", "overlap", "roc_auc")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TRAIN_MAIN = os.path.join(REPO_ROOT, "train_main.py")
# Files of a point's work directory beside train_main.py's own.
LOG_FILE = "train.log"
POINT_FILE = "sweep_point.json"
EVAL_FILE = "sweep_eval.json"
# How many lines of a failed point's log the report shows.
LOG_TAIL_LINES = 15
_NAME = re.compile(r"^[A-Za-z0-9_.=-]+$")
_ATTEMPT_HEADER = "=== sweep attempt"


class SweepError(ValueError):
  """A sweep that cannot run; the message names the point, field or flag."""


@dataclasses.dataclass(frozen=True)
class Point:
  """One training run of a sweep.

  Attributes:
    name: the run's directory under the sweep root (letters, digits, `_.=-`).
    overrides: dotted config field -> value, e.g. {"graph.cutoff": 1.5}.
  """
  name: str
  overrides: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A base config and the points that vary it.

  Attributes:
    name: the study ("dataset_size", "edge_threshold" or any label); names
      ROOT/<name>.json and the figure.
    config_file: the base config file (what train_main.py's --config takes,
      optionally `path:argument`).
    points: the runs, in dispatch order.
    base_overrides: dotted field -> value applied to every point before its
      own overrides (the --config.x.y=v flags of analyze_main.py, the
      --dataset name).
  """
  name: str
  config_file: str
  points: Sequence[Point]
  base_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def overrides(self, point: Point) -> Dict[str, Any]:
    """Every override of `point`'s run: the base ones, then its own."""
    merged = dict(self.base_overrides)
    merged.update(point.overrides)
    return merged


# ------------------------------------------------------------ configs ---


def load_config(config_file: str) -> ml_collections.ConfigDict:
  """The config a `--config=config_file` flag gives (ml_collections' parser).

  Raises:
    SweepError: naming the file, if it cannot be loaded.
  """
  parser = config_flags_lib.ConfigFileFlagParser(name="config",
                                                 lock_config=False)
  try:
    # A file that fails to load comes back as a placeholder that raises
    # when read.
    config = parser.parse(config_file)
    return ml_collections.ConfigDict(config.to_dict())
  except Exception as e:  # the parser raises whatever the file raises.
    message = " ".join(str(e).split())
    raise SweepError(f"cannot load config file '{config_file}': "
                     f"{type(e).__name__}: {message}") from e


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any],
                    what: str = "override") -> ml_collections.ConfigDict:
  """A copy of `config` with dotted fields set (ConfigDict type rules).

  Args:
    config: the base config (not modified).
    overrides: dotted field -> value; the field must exist and the value
      must fit its type (an int where a float is expected is widened, as
      ml_collections' flags do).
    what: how errors name the source of the overrides (e.g. "point 'x'").

  Returns:
    the new ConfigDict (unlocked).

  Raises:
    SweepError: an unknown field or a value of the wrong type.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in overrides.items():
    parts = key.split(".")
    node = config
    for depth, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        known = (sorted(node.keys()) if isinstance(
            node, ml_collections.ConfigDict) else [])
        raise SweepError(
            f"{what}: config has no field '{'.'.join(parts[:depth + 1])}' "
            f"(in {key}={value!r}); known here: {known}")
      if depth < len(parts) - 1:
        node = node[part]
    try:
      node[parts[-1]] = value
    except TypeError as e:
      raise SweepError(f"{what}: {key}={value!r} does not fit the field's "
                       f"type: {e}") from e
  return config


def format_value(value: Any) -> str:
  """A value as ml_collections' --config.x=v flags parse it back."""
  if isinstance(value, (bool, np.bool_)):
    return str(bool(value))
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    return repr(float(value))
  if isinstance(value, str):
    return value
  if isinstance(value, (tuple, list)):
    return repr(tuple(value))
  raise SweepError(f"cannot pass a {type(value).__name__} ({value!r}) as a "
                   f"--config override")


def override_flags(overrides: Mapping[str, Any]) -> List[str]:
  """["--config.graph.cutoff=1.5", ...] for train_main.py."""
  return [f"--config.{key}={format_value(value)}"
          for key, value in overrides.items()]


def check_sweep(sweep: Sweep) -> Dict[str, ml_collections.ConfigDict]:
  """Builds every point's config; nothing runs unless all of them build.

  Returns:
    point name -> its full config.

  Raises:
    SweepError: no points, a bad or repeated point name, an unknown field
      or a value of the wrong type (naming the point).
  """
  if not sweep.points:
    raise SweepError(f"sweep '{sweep.name}' has no points")
  base = apply_overrides(load_config(sweep.config_file), sweep.base_overrides,
                         "base override")
  configs = {}
  for point in sweep.points:
    if not _NAME.match(point.name):
      raise SweepError(f"point name '{point.name}' must be made of letters, "
                       f"digits and _.=- (it names a directory)")
    if point.name in configs:
      raise SweepError(f"sweep '{sweep.name}' has two points named "
                       f"'{point.name}'")
    configs[point.name] = apply_overrides(base, point.overrides,
                                          f"point '{point.name}'")
    for value in sweep.overrides(point).values():
      format_value(value)  # fails now, not in the subprocess
  return configs


# ---------------------------------------------------- built-in sweeps ---


def _parse_numbers(values: Sequence[Any], kind: type, flag: str,
                   allow_all: bool = False) -> List[Any]:
  out = []
  for value in values:
    text = str(value).strip()
    if not text:
      continue
    if allow_all and text == "all":
      out.append(0)
      continue
    try:
      number = kind(text)
    except ValueError:
      raise SweepError(f"{flag}: '{text}' is not a{'n' if kind is int else ''}"
                       f" {kind.__name__}") from None
    if not number > 0 or (kind is float and not math.isfinite(number)):
      raise SweepError(f"{flag}: {text} must be > 0")
    out.append(number)
  if not out:
    raise SweepError(f"{flag}: no values given")
  if len(set(out)) != len(out):
    raise SweepError(f"{flag}: repeated values in {list(values)}")
  return out


def dataset_size_sweep(config_file: str, sizes: Sequence[Any] = DEFAULT_SIZES,
                       base_overrides: Optional[Mapping[str, Any]] = None
                       ) -> Sweep:
  """Extended Data Fig. 1: one point per number of training configurations.

  Args:
    config_file: base config.
    sizes: positive ints (or their strings), "all" = the whole split.
    base_overrides: applied to every point.

  Returns:
    Sweep with points n_train_<k> (zero-padded; n_train_all), each setting
    dataset.max_train_examples = k (0 for all).
  """
  points = []
  for k in _parse_numbers(sizes, int, "--sizes", allow_all=True):
    name = f"n_train_{k:04d}" if k else "n_train_all"
    points.append(Point(name, {"dataset.max_train_examples": k}))
  return Sweep("dataset_size", config_file, tuple(points),
               dict(base_overrides or {}))


def edge_threshold_sweep(config_file: str,
                         cutoffs: Sequence[Any] = DEFAULT_CUTOFFS,
                         recurrences: Sequence[Any] = DEFAULT_RECURRENCES,
                         edge_features: Sequence[bool] = (True, False),
                         base_overrides: Optional[Mapping[str, Any]] = None
                         ) -> Sweep:
  """Extended Data Fig. 2: cut-off × message-passing steps × edge features.

  Args:
    config_file: base config.
    cutoffs: σ_AA, graph cut-offs (> 0; each must stay below half the box).
    recurrences: numbers of shared core steps (ints > 0).
    edge_features: with (True) and / or without (False) edge vectors.
    base_overrides: applied to every point.

  Returns:
    Sweep with points cutoff_<c>_rec_<r>_<edges|noedges>.
  """
  cutoffs = _parse_numbers(cutoffs, float, "--cutoffs")
  recurrences = _parse_numbers(recurrences, int, "--recurrences")
  if not edge_features or len(set(edge_features)) != len(edge_features):
    raise SweepError(f"edge_features must be distinct booleans, got "
                     f"{list(edge_features)}")
  points = []
  for with_edges in edge_features:
    for r in recurrences:
      for c in cutoffs:
        name = (f"cutoff_{c:g}_rec_{r:02d}_"
                f"{'edges' if with_edges else 'noedges'}")
        points.append(Point(name, {"graph.cutoff": float(c),
                                   "model.num_recurrences": int(r),
                                   "model.use_edge_features":
                                       bool(with_edges)}))
  return Sweep("edge_threshold", config_file, tuple(points),
               dict(base_overrides or {}))


def builtin_sweep(study: str, config_file: str,
                  base_overrides: Optional[Mapping[str, Any]] = None,
                  sizes: Sequence[Any] = DEFAULT_SIZES,
                  cutoffs: Sequence[Any] = DEFAULT_CUTOFFS,
                  recurrences: Sequence[Any] = DEFAULT_RECURRENCES) -> Sweep:
  """The sweep of analyze_main.py's --study (`SWEEPS`)."""
  if study == "dataset_size":
    return dataset_size_sweep(config_file, sizes, base_overrides)
  if study == "edge_threshold":
    return edge_threshold_sweep(config_file, cutoffs, recurrences,
                                base_overrides=base_overrides)
  raise SweepError(f"unknown sweep '{study}'; built in: {SWEEPS}")


# ----------------------------------------------------------- dispatch ---


def point_state(workdir: str) -> str:
  """Where a point's run stands, from its work directory.

  Returns:
    "finished": train_state.json says finished and saved_model/ is there
      (what train_main.py itself treats as done);
    "started": the directory holds a config.json or a backup/ (train_main
      resumes it at the backup's step, or restarts if it died earlier);
    "new": nothing yet.
  """
  state = training.read_json(os.path.join(workdir, training.STATE_FILE))
  if state.get("finished") and os.path.exists(os.path.join(
      workdir, training.SAVED_MODEL_DIR, "saved_model.pb")):
    return "finished"
  if any(os.path.exists(os.path.join(workdir, f)) for f in
         ("config.json", training.BACKUP_DIR)):
    return "started"
  return "new"


def config_differences(workdir: str,
                       config: ml_collections.ConfigDict) -> List[str]:
  """Dotted fields where WORKDIR/config.json differs from `config`.

  [] if they agree or the run has not written its config yet.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    stored = common.jsonable(json.load(f))
  wanted = common.jsonable(json.loads(config.to_json_best_effort()))
  return _differences(stored, wanted, "")


def _differences(a, b, prefix: str) -> List[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for key in sorted(set(a) | set(b)):
      out.extend(_differences(a.get(key), b.get(key),
                              f"{prefix}.{key}" if prefix else key))
    return out
  return [] if a == b else [prefix or "<root>"]


def train_command(sweep: Sweep, point: Point, workdir: str,
                  data_dir: Optional[str] = None,
                  train_script: str = TRAIN_MAIN) -> List[str]:
  """The train_main.py command line of one point."""
  command = [sys.executable, train_script,
             f"--config={_config_path(sweep.config_file)}",
             *override_flags(sweep.overrides(point)),
             f"--workdir={os.path.abspath(workdir)}", "--progress=epoch"]
  if data_dir:
    command.append(f"--data_dir={os.path.abspath(data_dir)}")
  return command


def _config_path(config_file: str) -> str:
  """An absolute config path (keeping an optional `:argument`)."""
  path, colon, argument = config_file.partition(":")
  return os.path.abspath(path) + colon + argument


@dataclasses.dataclass
class DispatchResult:
  """What `dispatch` did.

  Attributes:
    finished: names of the points whose run is finished (now or before).
    skipped: those that were finished before this call.
    failed: name -> message (exit status and log tail, or why it was not
      run).
  """
  finished: List[str]
  skipped: List[str]
  failed: Dict[str, str]


@dataclasses.dataclass
class _Job:
  point: Point
  process: subprocess.Popen
  log: Any
  started: float
  attempt: Dict[str, Any]
  record: Dict[str, Any]


def dispatch(sweep: Sweep, root: str, data_dir: Optional[str] = None,
             num_parallel: int = 1, train_script: str = TRAIN_MAIN,
             log: Optional[Callable[[str], None]] = None,
             poll_seconds: float = 0.5) -> DispatchResult:
  """Trains every point not yet finished, num_parallel processes at a time.

  Each point runs `train_command` with stdout and stderr appended to
  ROOT/<point>/train.log; ROOT/<point>/sweep_point.json records the
  overrides, the command and every attempt (start, seconds, exit status).
  A failed point is reported with the tail of its log and the others go
  on. Interrupting (Ctrl-C or SIGTERM) stops the running processes (their
  attempts are recorded as "interrupted"); re-running resumes them from
  their backups.

  Args:
    sweep: the sweep (checked with `check_sweep` first).
    root: sweep root directory (created).
    data_dir: TFDS data_dir handed to train_main.py (None = the config's).
    num_parallel: processes at once (>= 1).
    train_script: train_main.py.
    log: progress printer (default: print, flushed).
    poll_seconds: how often finished processes are looked for.

  Returns:
    DispatchResult.

  Raises:
    SweepError: a bad sweep (see `check_sweep`) or num_parallel < 1.
  """
  log = log or _print
  if int(num_parallel) != num_parallel or num_parallel < 1:
    raise SweepError(f"--num_parallel must be an integer >= 1, got "
                     f"{num_parallel!r}")
  configs = check_sweep(sweep)
  os.makedirs(root, exist_ok=True)
  finished, skipped, failed, pending = [], [], {}, []
  for point in sweep.points:
    workdir = os.path.join(root, point.name)
    differences = config_differences(workdir, configs[point.name])
    if differences:
      listed = ", ".join(differences[:6])
      if len(differences) > 6:
        listed += ", ..."
      failed[point.name] = (
          f"{workdir} holds a run of another config (fields {listed} "
          f"differ); delete it or use another --sweep_root")
      log(f"[{sweep.name}] {point.name}: NOT RUN: {failed[point.name]}")
    elif point_state(workdir) == "finished":
      finished.append(point.name)
      skipped.append(point.name)
    else:
      pending.append(point)
  total = len(sweep.points)
  log(f"[{sweep.name}] {total} points under {root}: {len(skipped)} already "
      f"finished, {len(pending)} to train, {num_parallel} at a time")
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env["PYTHONUNBUFFERED"] = "1"  # the log shows progress as it happens
  if num_parallel > 1:
    # Several TensorFlow processes on one GPU: each would reserve all of its
    # memory by default.
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
  running: Dict[str, _Job] = {}
  durations = []
  previous_handler = None
  if threading.current_thread() is threading.main_thread():
    # Stopped by SIGTERM (a batch scheduler's time limit, `kill`), the sweep
    # stops its training processes as on Ctrl-C instead of orphaning them.
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
  try:
    while pending or running:
      while pending and len(running) < num_parallel:
        point = pending.pop(0)
        job = _launch(sweep, point, root, data_dir, train_script, env)
        running[point.name] = job
        log(f"[{sweep.name}] start {point.name} (attempt "
            f"{len(job.record['attempts'])}"
            f"{', resuming' if job.attempt['resumed'] else ''}); log "
            f"{os.path.join(root, point.name, LOG_FILE)}")
      time.sleep(poll_seconds)
      for name, job in list(running.items()):
        returncode = job.process.poll()
        if returncode is None:
          continue
        del running[name]
        seconds = _close(job, returncode, root)
        workdir = os.path.join(root, name)
        if returncode == 0 and point_state(workdir) == "finished":
          finished.append(name)
          durations.append(seconds)
          outcome = f"finished in {_duration(seconds)}"
        else:
          why = (f"killed by signal {-returncode}" if returncode < 0 else
                 f"exit status {returncode}" if returncode else
                 "exit status 0 but no finished run in the workdir")
          failed[name] = (f"{why}; last lines of "
                          f"{os.path.join(workdir, LOG_FILE)}:\n"
                          f"{log_tail(os.path.join(workdir, LOG_FILE))}")
          outcome = f"FAILED ({why}):\n{_indent(failed[name])}"
        done = len(finished) + len(failed)
        eta = ""
        remaining = len(pending) + len(running)
        if remaining and durations:
          rounds = math.ceil(remaining / num_parallel)
          eta = f"; ETA ~{_duration(np.mean(durations) * rounds)}"
        log(f"[{sweep.name}] {name} {outcome}\n[{sweep.name}] {done}/{total} "
            f"points done ({len(failed)} failed), {len(running)} running"
            f"{eta}")
  except BaseException:
    for job in running.values():  # only the processes this call started
      job.process.terminate()
    for job in running.values():
      try:
        job.process.wait(timeout=30)
      except subprocess.TimeoutExpired:
        job.process.kill()
        job.process.wait()
      _close(job, "interrupted", root)
    log(f"[{sweep.name}] interrupted; stopped {sorted(running) or 'nothing'}"
        f"; re-run to resume")
    raise
  finally:
    if previous_handler is not None:
      signal.signal(signal.SIGTERM, previous_handler)
  return DispatchResult(finished=finished, skipped=skipped, failed=failed)


def _raise_interrupt(signum, frame):
  del frame
  raise KeyboardInterrupt(f"signal {signum}")


def _launch(sweep: Sweep, point: Point, root: str, data_dir: Optional[str],
            train_script: str, env: Dict[str, str]) -> _Job:
  workdir = os.path.join(root, point.name)
  resumed = point_state(workdir) == "started"
  os.makedirs(workdir, exist_ok=True)
  command = train_command(sweep, point, workdir, data_dir, train_script)
  record = training.read_json(os.path.join(workdir, POINT_FILE))
  record.update(name=point.name, sweep=sweep.name,
                config_file=sweep.config_file,
                overrides=sweep.overrides(point), command=command)
  record.setdefault("attempts", [])
  attempt = {"started_at": datetime.datetime.now().isoformat(
      timespec="seconds"), "resumed": resumed}
  record["attempts"].append(attempt)
  # Appended: the log keeps every attempt of a resumed point.
  log_file = open(os.path.join(workdir, LOG_FILE), "a")
  log_file.write(f"{_ATTEMPT_HEADER} {len(record['attempts'])} "
                 f"({attempt['started_at']}): {' '.join(command)}\n")
  log_file.flush()
  process = subprocess.Popen(command, stdout=log_file,
                             stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env)
  return _Job(point, process, log_file, time.time(), attempt, record)


def _close(job: _Job, returncode, root: str) -> float:
  seconds = time.time() - job.started
  job.log.close()
  job.attempt.update(seconds=seconds, returncode=returncode)
  job.record["train_seconds"] = sum(a.get("seconds", 0.0) for a in
                                    job.record["attempts"])
  common.write_json(os.path.join(root, job.point.name, POINT_FILE),
                    job.record)
  return seconds


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
  """The last lines of the latest attempt in a point's train.log."""
  if not os.path.exists(path):
    return "(no log)"
  with open(path, errors="replace") as f:
    text = f.read().splitlines()
  starts = [i for i, line in enumerate(text) if
            line.startswith(_ATTEMPT_HEADER)]
  text = text[starts[-1] + 1:] if starts else text
  return "\n".join(text[-lines:]) or "(empty log)"


def _print(message: str) -> None:
  print(message, flush=True)


def _indent(text: str) -> str:
  return "\n".join("    " + line for line in text.splitlines())


def _duration(seconds: float) -> str:
  seconds = float(seconds)
  if seconds < 90:
    return f"{seconds:.0f} s"
  if seconds < 5400:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------- evaluation ---


def evaluate_points(sweep: Sweep, root: str, names: Sequence[str],
                    dataset: str, split: str = "test",
                    data_dir: Optional[str] = None,
                    max_configurations: int = 0,
                    top_fraction: float = metrics.DEFAULT_TOP_FRACTION,
                    log: Optional[Callable[[str], None]] = None) -> dict:
  """Scores the SavedModels of finished points on a split.

  Uses evaluation.SavedModelPredictor and evaluation.evaluate, as
  evaluate_main.py does; each point's scores are cached in
  ROOT/<point>/sweep_eval.json, keyed on the split, the settings and the
  SavedModel's time stamp.

  Args:
    sweep: the sweep.
    root: its root directory.
    names: the points to score (finished ones).
    dataset, split, data_dir: the TFDS split (see evaluation.load_split).
    max_configurations: score at most this many configurations (0 = all).
    top_fraction: the mobile class of the accuracy / ROC-AUC metrics.
    log: progress printer.

  Returns:
    {"data": {"n_configurations", "ids", "times" [T], "isf_levels" [T],
              "tau_alpha"} of the split (None if nothing was scored),
     "points": {name: {"timescale_indices": [T_m],
                       "metrics": {metric: {"mean": [T_m], "std": [T_m]}}}},
     "failed": {name: message} of the points that could not be scored}

  Raises:
    evaluation.EvaluationError: the split cannot be read.
  """
  log = log or _print
  key = {"dataset": dataset, "split": split,
         "max_configurations": int(max_configurations),
         "top_fraction": float(top_fraction)}
  data, records, ids, out, failed = None, None, None, {}, {}
  for name in names:
    workdir = os.path.join(root, name)
    stamp = os.path.getmtime(os.path.join(workdir, training.SAVED_MODEL_DIR,
                                          "saved_model.pb"))
    cache_path = os.path.join(workdir, EVAL_FILE)
    cache = training.read_json(cache_path)
    if cache.get("key") == dict(key, saved_model_mtime=stamp):
      data = data or cache["data"]
      out[name] = cache["point"]
      continue
    if records is None:
      ids, records = evaluation.load_split(dataset, split, data_dir,
                                           max_configurations)
      log(f"[{sweep.name}] scoring on {len(records)} {split} configurations "
          f"of {dataset}")
    try:
      predictor = evaluation.SavedModelPredictor(workdir, name=name)
      report = evaluation.evaluate(records, [predictor.method()], ids,
                                   top_fraction, n_samples=0).report
    except (evaluation.EvaluationError, FileNotFoundError, OSError) as e:
      # One unreadable model must not lose the other points' scores.
      failed[name] = f"cannot score {workdir}: {type(e).__name__}: {e}"
      log(f"[{sweep.name}] {name}: {failed[name]}")
      continue
    entry = report["methods"][name]
    point = {"timescale_indices": entry["timescale_indices"],
             "metrics": {m: {"mean": entry["metrics"][m]["mean"],
                             "std": entry["metrics"][m]["std"]}
                         for m in METRICS}}
    data = {k: report[k] for k in ("n_configurations", "ids", "times",
                                   "isf_levels", "tau_alpha")}
    common.write_json(cache_path, {"key": dict(key, saved_model_mtime=stamp),
                                   "data": data, "point": point})
    out[name] = point
  return {"data": data, "points": out, "failed": failed}


# --------------------------------------------------------------- run ---


@dataclasses.dataclass
class SweepResult:
  """What `run` returns: the report (also in ROOT/<sweep>.json), failures."""
  report: dict
  failed: Dict[str, str]
  paths: List[str]


def run(sweep: Sweep, root: str, data_dir: Optional[str] = None,
        split: str = "test", num_parallel: int = 1,
        max_configurations: int = 0, output_dir: Optional[str] = None,
        figure: bool = True, train_script: str = TRAIN_MAIN,
        log: Optional[Callable[[str], None]] = None) -> SweepResult:
  """Trains the sweep's points, scores the finished ones, writes the report.

  Args:
    sweep: the sweep.
    root: its root directory (one work directory per point).
    data_dir: TFDS data_dir (None = the base config's dataset.data_dir).
    split: the split the points are scored on (never the training data).
    num_parallel: training processes at once.
    max_configurations: score at most this many configurations (0 = all).
    output_dir: where <sweep>.json and .png go (default: root).
    figure: write the PNG.
    train_script: train_main.py.
    log: progress printer.

  Returns:
    SweepResult; its report (module docstring) lists every point with its
    overrides, training seconds, steps, train-split size and test metrics
    per timescale, and every failure with its message.

  Raises:
    SweepError: a bad sweep; evaluation.EvaluationError: an unreadable split.
  """
  log = log or _print
  configs = check_sweep(sweep)
  base = apply_overrides(load_config(sweep.config_file), sweep.base_overrides)
  data_dir = data_dir or base.dataset.get("data_dir", "") or None
  dispatched = dispatch(sweep, root, data_dir, num_parallel, train_script,
                        log)
  top_fraction = float(base.get("evaluate", {}).get(
      "top_fraction", metrics.DEFAULT_TOP_FRACTION))
  finished = [p.name for p in sweep.points if p.name in dispatched.finished]
  scores = evaluate_points(sweep, root, finished, base.dataset.name, split,
                           data_dir, max_configurations, top_fraction, log)
  failed = dict(dispatched.failed, **scores["failed"])
  points = []
  for point in sweep.points:
    if point.name not in scores["points"]:
      continue
    workdir = os.path.join(root, point.name)
    state = training.read_json(os.path.join(workdir, training.STATE_FILE))
    record = training.read_json(os.path.join(workdir, POINT_FILE))
    config = configs[point.name]
    points.append(dict(
        name=point.name, overrides=dict(point.overrides),
        workdir=os.path.abspath(workdir),
        n_train_configurations=state["metadata"]["num_examples"]["train"],
        cutoff=float(config.graph.cutoff),
        num_recurrences=int(config.model.num_recurrences),
        use_edge_features=bool(config.model.use_edge_features),
        steps=state.get("steps"),
        best_validation=state.get("best", {}),
        train_seconds=record.get("train_seconds"),
        **scores["points"][point.name]))
  data = scores["data"] or {}
  report = {
      "study": sweep.name,
      "reproduces": FIGURES.get(sweep.name, ""),
      "config_file": sweep.config_file,
      "base_overrides": dict(sweep.base_overrides),
      "dataset": base.dataset.name,
      "data_dir": data_dir,
      "split": split,
      "top_fraction": top_fraction,
      "n_configurations": data.get("n_configurations", 0),
      "times": data.get("times", []),
      "isf_levels": data.get("isf_levels", []),
      "tau_alpha": data.get("tau_alpha"),
      "metrics": list(METRICS),
      "points": points,
      "failed": [{"name": p.name, "overrides": dict(p.overrides),
                  "message": failed[p.name]}
                 for p in sweep.points if p.name in failed],
  }
  output_dir = output_dir or root
  paths = [common.write_json(os.path.join(output_dir, f"{sweep.name}.json"),
                             report)]
  if figure and points:
    paths.append(plot(report, os.path.join(output_dir, f"{sweep.name}.png")))
  return SweepResult(report=report, failed=failed, paths=paths)


# ----------------------------------------------------- figure, summary ---


def reference_timescale(report: Mapping[str, Any]) -> int:
  """Index of τ_α (ISF = 1/e) among the report's timescales, else the last."""
  levels = common.float_array(report["isf_levels"])
  hit = np.flatnonzero(np.isclose(levels, math.exp(-1.0), atol=1e-4))
  return int(hit[0]) if hit.size else len(levels) - 1


def _metric(point: Mapping[str, Any], metric: str, j: int):
  """(mean, std) of a metric at record timescale j (NaN if not predicted)."""
  indices = list(point["timescale_indices"])
  if j not in indices:
    return math.nan, math.nan
  k = indices.index(j)
  mean = common.float_array(point["metrics"][metric]["mean"])[k]
  std = common.float_array(point["metrics"][metric]["std"])[k]
  return float(mean), float(std)


def plot(report: Dict[str, Any], path: str) -> str:
  """The sweep's figure.

  dataset_size: Pearson vs the number of training configurations (log x),
  one line per timescale; beside it accuracy and ROC-AUC of the top-fraction
  mobile class at τ_α. edge_threshold: Pearson at τ_α vs cut-off, one line
  per num_recurrences, one panel with and one without edge features. Other
  sweeps: Pearson at τ_α per point. Error bars: std over configurations.
  """
  plt = common.pyplot()
  points = report["points"]
  times = common.float_array(report["times"])
  levels = common.float_array(report["isf_levels"])
  j_ref = reference_timescale(report)
  ref_label = common.timescale_label(times[j_ref], levels[j_ref])
  source = f" (cf. {report['reproduces']})" if report.get("reproduces") else ""
  if report["study"] == "dataset_size":
    points = sorted(points, key=lambda p: p["n_train_configurations"])
    n = np.array([p["n_train_configurations"] for p in points], float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for j in range(len(times)):
      mean, std = np.array([_metric(p, "pearson", j) for p in points]).T
      if np.isfinite(mean).any():
        left.errorbar(n, mean, yerr=std, fmt="-o", ms=4, capsize=2,
                      label=common.timescale_label(times[j], levels[j]))
    for metric, marker in (("accuracy", "-s"), ("roc_auc", "-^")):
      mean, std = np.array([_metric(p, metric, j_ref) for p in points]).T
      right.errorbar(n, mean, yerr=std, fmt=marker, ms=4, capsize=2,
                     label=metric.replace("roc_auc", "ROC-AUC"))
    ticks = sorted(set(int(k) for k in n))
    for ax in (left, right):
      ax.set_xscale("log")
      ax.minorticks_off()
      ax.set_xticks(ticks, [str(k) for k in ticks])
      ax.set_xlabel("training configurations")
      ax.grid(alpha=0.3)
    left.set_ylabel("test Pearson r (type-A)")
    left.set_title(f"dataset size{source}", fontsize=8)
    left.legend(fontsize=6)
    right.set_ylabel(f"top {report['top_fraction']:.0%} mobile class")
    right.set_title(ref_label, fontsize=8)
    right.legend(fontsize=7)
  elif report["study"] == "edge_threshold":
    settings = sorted({p["use_edge_features"] for p in points}, reverse=True)
    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 4),
                             sharey=True, squeeze=False)
    for ax, with_edges in zip(axes[0], settings):
      chosen = [p for p in points if p["use_edge_features"] == with_edges]
      for r in sorted({p["num_recurrences"] for p in chosen}):
        line = sorted((p for p in chosen if p["num_recurrences"] == r),
                      key=lambda p: p["cutoff"])
        mean, std = np.array([_metric(p, "pearson", j_ref) for p in line]).T
        ax.errorbar([p["cutoff"] for p in line], mean, yerr=std, fmt="-o",
                    ms=4, capsize=2,
                    label=f"{r} message-passing step{'s' if r != 1 else ''}")
      ax.set_xlabel("edge cut-off [σ_AA]")
      ax.set_title(f"{'with' if with_edges else 'without'} edge features, "
                   f"{ref_label}", fontsize=8)
      ax.grid(alpha=0.3)
      ax.legend(fontsize=7)
    axes[0][0].set_ylabel("test Pearson r (type-A)")
    fig.suptitle(f"edge cut-off and message passing{source}", fontsize=9)
  else:
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(points)), 4))
    mean, std = np.array([_metric(p, "pearson", j_ref) for p in points]).T
    ax.bar(range(len(points)), mean, yerr=std, capsize=2)
    ax.set_xticks(range(len(points)))
    ax.set_xticklabels([p["name"] for p in points], rotation=60, ha="right",
                       fontsize=7)
    ax.set_ylabel(f"test Pearson r, {ref_label}")
    ax.set_title(report["study"], fontsize=8)
  return common.save_figure(fig, path)


def summary(report: Dict[str, Any]) -> str:
  """A text table: one row per point, metrics at every timescale / at τ_α."""
  times = common.float_array(report["times"])
  j_ref = reference_timescale(report) if len(times) else 0
  title = report["study"]
  if report.get("reproduces"):
    title += f" ({report['reproduces']})"
  lines = [f"{title}: {len(report['points'])} trained point(s) scored on "
           f"{report['n_configurations']} {report['split']} configuration(s) "
           f"of {report['dataset']}; {len(report['failed'])} failed"]
  if report["points"]:
    header = (f"{'point':<28} {'n_train':>7} {'train':>8}  " +
              "  ".join(f"{f'r(t={t:.3g})':>12}" for t in times) +
              f"  {'acc*':>5} {'auc*':>5}")
    lines += [header, "-" * len(header)]
    for p in report["points"]:
      pearson = [_metric(p, "pearson", j)[0] for j in range(len(times))]
      seconds = p.get("train_seconds")
      lines.append(
          f"{p['name']:<28} {p['n_train_configurations']:>7d} "
          f"{_duration(seconds) if seconds else '-':>8}  " +
          "  ".join(f"{v:+12.3f}" for v in pearson) +
          f"  {_metric(p, 'accuracy', j_ref)[0]:5.3f} "
          f"{_metric(p, 'roc_auc', j_ref)[0]:5.3f}")
    lines.append(f"r = test Pearson mean over configurations; * = at t = "
                 f"{times[j_ref]:.3g} τ (top {report['top_fraction']:.0%} "
                 f"mobile class)")
  for failure in report["failed"]:
    # The cause (e.g. "exit status 1") and the log's last line (the error).
    message = [l.strip() for l in failure["message"].splitlines()
               if l.strip()]
    cause = message[0].split(";")[0]
    last = f": {message[-1]}" if len(message) > 1 else ""
    lines.append(f"FAILED {failure['name']} ({cause}){last}")
  return "\n".join(lines)
