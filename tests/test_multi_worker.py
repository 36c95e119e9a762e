"""Scaling paths of training.py: MultiWorkerMirroredStrategy and XLA.

The multi-worker tests start a real two-worker cluster on 127.0.0.1 (one
process per worker, TF_CONFIG per process, gRPC between them) that trains
the smoke config on synthetic records through `training.train`, and compare
it with the same training in one process: with shuffling and augmentation
off, worker k's shard of the records (k, k + 2, ...) makes the same global
batches as the single-process stream, and the masked loss is the mean over
the global batch, so the two runs must agree up to float summation order.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from glassy_dynamics_tf import input_pipeline
from glassy_dynamics_tf import training
from glassy_dynamics_tf.configs import smoke

import synthetic_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Overrides of the smoke config shared by the cluster and the reference.
# No shuffling or augmentation, so that sharded and unsharded streams form
# the same global batches (module docstring).
_OVERRIDES = {
    "train.batch_size": 2,
    "train.num_steps": 4,
    "train.steps_per_epoch": 2,
    "train.backup_every_steps": 1,
    "train.deterministic": True,
    "train.augment": False,
    "dataset.shuffle_buffer": 1,
}
_N_TRAIN, _N_VALIDATION, _N_PARTICLES = 4, 2, 100


def _config(strategy):
  config = smoke.get_config()
  for key, value in _OVERRIDES.items():
    section, field = key.split(".")
    config[section][field] = value
  config.train.strategy = strategy
  return config


def _records():
  return {
      "train": input_pipeline.records_dataset(synthetic_records.make_records(
          _N_TRAIN, n_particles=_N_PARTICLES)),
      "validation": input_pipeline.records_dataset(
          synthetic_records.make_records(_N_VALIDATION, seed=100,
                                         n_particles=_N_PARTICLES)),
  }


# One worker. argv: workdir, output npz, crash after this many steps (0 =
# never). The strategy is created first: collective ops must be configured
# before the TensorFlow runtime starts (before the records' tf.data).
_WORKER_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, "tests")
    from glassy_dynamics_tf import training
    strategy = training.create_strategy("multi_worker")
    import numpy as np
    import crash_callback
    import test_multi_worker as t

    workdir, output, crash_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    result = training.train(
        t._config("multi_worker"), workdir, records=t._records(),
        strategy=strategy, verbose=0,
        extra_callbacks=([crash_callback.CrashAfter(crash_after)]
                         if crash_after else []))
    np.savez(output, *result.model.get_weights(),
             loss=np.asarray(result.history["loss"]),
             val_pearson=np.asarray(result.history["val_pearson"]),
             resumed_from_step=result.resumed_from_step,
             chief=training.is_chief(strategy),
             replicas=strategy.num_replicas_in_sync)
""")


def _free_ports(n):
  """n distinct free TCP ports on 127.0.0.1 (held open until all are found)."""
  sockets = []
  for _ in range(n):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _run_cluster(workdir, outputs, crash_after=0, timeout=300):
  """Runs two workers to the end; returns (return codes, logs).

  If one worker fails, the other would wait for its collectives for ever:
  it is killed.
  """
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  processes = []
  for index, output in enumerate(outputs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}))
    processes.append(subprocess.Popen(
        [sys.executable, "-c", _WORKER_SCRIPT, str(workdir), str(output),
         str(crash_after)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True))
  deadline = time.monotonic() + timeout
  while any(p.poll() is None for p in processes):
    failed = any(p.poll() not in (None, 0) for p in processes)
    if failed or time.monotonic() > deadline:
      time.sleep(15)  # let a failing peer finish its own traceback
      for p in processes:
        if p.poll() is None:
          p.kill()
      break
    time.sleep(0.5)
  logs = [p.communicate()[0] for p in processes]
  return [p.returncode for p in processes], logs


def _weights(npz):
  """The model weights a worker saved (positional arrays of np.savez)."""
  return [npz[f"arr_{i}"]
          for i in range(sum(k.startswith("arr_") for k in npz.files))]


@pytest.fixture(name="reference", scope="module")
def _reference(tmp_path_factory):
  """The same training in this process, one device."""
  result = training.train(_config("default"),
                          str(tmp_path_factory.mktemp("reference")),
                          records=_records(), verbose=0)
  return result


def _assert_matches_reference(npz, reference):
  weights = _weights(npz)
  expected = reference.model.get_weights()
  assert len(weights) == len(expected)
  for a, b in zip(weights, expected):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_two_workers_train_like_one_process(tmp_path, reference):
  workdir = tmp_path / "work"
  outputs = [tmp_path / "worker0.npz", tmp_path / "worker1.npz"]
  codes, logs = _run_cluster(workdir, outputs)
  assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
  chief, other = (np.load(o) for o in outputs)
  assert int(chief["replicas"]) == 2
  assert bool(chief["chief"]) and not bool(other["chief"])
  # Mirrored training: the two copies of the model are identical.
  for a, b in zip(_weights(chief), _weights(other)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(chief["loss"], other["loss"])
  np.testing.assert_array_equal(chief["val_pearson"], other["val_pearson"])
  assert np.all(np.isfinite(chief["loss"])) and chief["loss"].shape == (2,)
  # ... and equal to the single-process run (data sharding, loss scaling
  # over the global batch, gathered validation predictions).
  np.testing.assert_allclose(chief["loss"], reference.history["loss"],
                             rtol=1e-5)
  np.testing.assert_allclose(chief["val_pearson"],
                             reference.history["val_pearson"], rtol=1e-4)
  _assert_matches_reference(chief, reference)
  # Only the chief's files remain: no worker's temporary directories, the
  # backup deleted after the export.
  files = [os.path.relpath(os.path.join(d, f), workdir)
           for d, _, names in os.walk(workdir) for f in names]
  assert not [f for f in files if "workertemp" in f], files
  assert not os.path.exists(workdir / "backup")
  assert os.path.exists(workdir / "saved_model" / "saved_model.pb")
  state = json.load(open(workdir / "train_state.json"))
  assert state["finished"] and state["steps"] == 4
  best = json.load(open(workdir / "best" / "best.json"))
  assert best["val_pearson"] == pytest.approx(
      float(np.max(chief["val_pearson"])))


@pytest.mark.slow
def test_two_workers_resume_after_crash(tmp_path, reference):
  workdir = tmp_path / "work"
  outputs = [tmp_path / "worker0.npz", tmp_path / "worker1.npz"]
  # Both workers die after step 3 (a crash of the whole job); the chief's
  # backup of step 3 is in backup/chief, the other worker's went to a
  # temporary directory that tf_keras removes after each save.
  codes, logs = _run_cluster(workdir, outputs, crash_after=3)
  assert all(code != 0 for code in codes)
  assert all("simulated crash" in log for log in logs), logs[0][-3000:]
  assert training.backup_step(str(workdir / "backup"), 2) == 3
  assert not os.path.exists(workdir / "backup" / "workertemp_1")
  codes, logs = _run_cluster(workdir, outputs)
  assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
  for output in outputs:
    resumed = np.load(output)
    assert int(resumed["resumed_from_step"]) == 3
    _assert_matches_reference(resumed, reference)
  assert not os.path.exists(workdir / "backup")
  assert not os.path.exists(workdir / "best" / "workertemp_1")


def test_multi_worker_strategy_created_too_late_is_named():
  # A one-worker cluster still configures collective ops, which TensorFlow
  # allows only before its runtime starts.
  script = textwrap.dedent("""
      import tensorflow as tf
      from glassy_dynamics_tf import training
      tf.constant(1.0)  # starts the runtime
      try:
        training.create_strategy("multi_worker")
      except training.TrainingError as e:
        print("ERROR", e)
  """)
  port, = _free_ports(1)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps({
      "cluster": {"worker": [f"127.0.0.1:{port}"]},
      "task": {"type": "worker", "index": 0}}))
  run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "ERROR config.train.strategy='multi_worker'" in run.stdout
  assert "before any TensorFlow op" in run.stdout


def test_worker_dir_of_a_single_process_is_the_path(tmp_path):
  strategy = tf.distribute.get_strategy()
  assert training.is_chief(strategy)
  assert training.worker_dir(str(tmp_path), strategy) == str(tmp_path)
  training.barrier(strategy)  # a no-op without a cluster


def test_train_step_compiles_with_xla_under_static_padding(tmp_path):
  # Fixed padding (as on a TPU, where every batch must have one shape).
  config = _config("default")
  config.train.jit_compile = True
  config.train.num_steps = 2
  config.train.steps_per_epoch = 2
  config.graph.max_nodes = 128      # 100 particles + padding
  config.graph.max_edges = 8192     # ~4.1k edges with self-loops at ρ = 1.2
  records = _records()
  result = training.train(config, str(tmp_path / "xla"), records=records,
                          verbose=0)
  model, metadata = result.model, result.metadata
  assert (metadata.max_nodes, metadata.max_edges) == (128, 8192)
  assert model.jit_compile
  assert np.all(np.isfinite(result.history["loss"]))

  stream = input_pipeline.train_dataset(
      input_pipeline.graph_dataset(records["train"], config, metadata),
      config, batch_size=2)
  for spec in tf.nest.flatten(stream.element_spec):
    assert spec.shape.is_fully_defined(), stream.element_spec
  x, y, w = next(iter(stream))
  # The whole train step (forward, masked loss, gradients, clipped Adam)
  # lowers to one XLA computation with the static shapes.
  step = tf.function(lambda x, y, w: model.train_step((x, y, w)),
                     jit_compile=True)
  hlo = step.experimental_get_compiler_ir(x, y, w)(stage="hlo")
  assert "f32[2,8192,3]" in hlo and "s32[2,8192]" in hlo
  # Without XLA the same step gives the same loss.
  # (The loss is computed before the update; the running-mean metric is
  # reset so that each value is this one step's.)
  before = [v.numpy() for v in model.variables]
  model.reset_metrics()
  compiled = float(step(x, y, w)["loss"])
  for variable, value in zip(model.variables, before):
    variable.assign(value)
  model.reset_metrics()
  graph = float(tf.function(lambda x, y, w: model.train_step((x, y, w)))(
      x, y, w)["loss"])
  assert compiled == pytest.approx(graph, rel=1e-5)
