r"""Training throughput: our input pipeline + model.fit vs a 2020-style step.

  nice -n 10 python benchmarks/training_throughput.py \
    [--n_particles=4096] [--models=paper,demo] [--batch_sizes=1,2,4,8] \
    [--rss_limit_gib=8] [--out=benchmarks/results/training_throughput.json]

Every measurement runs in its own `nice -n 10` subprocess (so that logical
devices, compilation caches and the peak resident set belong to it):

  ours     the real training path: `training.create_model` (compiled
           tf_keras model, Adam with global-norm clipping, masked MSE) and
           `model.fit` on `input_pipeline.train_dataset` (graph built once
           per configuration by `graph_dataset` and cached, shuffle,
           per-example cube symmetry, padding, batching, prefetch), fed as
           `training.train` feeds it (a DatasetCreator). For each model and
           jit_compile setting the batch size goes up through
           --batch_sizes until the subprocess' resident set exceeds
           --rss_limit_gib (it is then killed; that size does not fit);
           then once under MirroredStrategy (--mirrored_batch).
  paired   ours and a rival alternated step by step in one process (ours,
           rival, ours, rival, ...), so that load from other users of the
           machine, which moves step times by up to 2x within a minute on
           a shared machine, hits both alike. Rivals:
             gn2020   a straightforward step written against the 2020
                      graph_nets release: per step the graph of each
                      configuration of the batch is built on the host in
                      NumPy (graphs.build_graph, the same O(N) cell list),
                      a random cube symmetry is applied to its edge
                      vectors, `utils_tf.data_dicts_to_graphs_tuple`
                      concatenates the unpadded graphs, and a tf.function
                      (one input signature with dynamic sizes, as in
                      graph_nets' demos) with GradientTape, global-norm
                      clipping and snt.optimizers.Adam trains
                      model.EncodeProcessDecode(project_before_gather=
                      False): the same function and variables, with the
                      release's graph_nets EdgeBlock on the materialised
                      [E, 6 latent] concatenation, where ours projects node
                      features before gathering them (model._EdgeModel).
                      No tf.data, no padding, no Keras.
             default  with ours under MirroredStrategy over two logical CPU
                      devices (tf.config.set_logical_device_configuration,
                      set before TensorFlow initialises): our model under
                      the default strategy at the same global batch.
  profile  where our step's time goes: the input pipeline alone (`next()`
           on the stream), the step on the full path and on one cached
           batch (alternated), the forward pass alone, a tf.profiler trace
           of the step summed by op type, micro-benchmarks of the edge
           block's gathers, first layer and segment sum at the real
           shapes, and the 2020-style step with dynamic and with static
           shapes (alternated).

Step time: for `ours`, the wall time between the ends of consecutive steps
after the warm-up steps (tracing and XLA compilation happen in the warm-up),
so everything between steps counts; in `paired`, ours is timed from
on_train_batch_begin to on_train_batch_end (the train function with its
next batch) and the rival from then until its loss is on the host (its host
graph building included). Throughput uses the median step time:
configurations/s = batch / median; edges/s = real (unpadded) edges of the
batch / median (ours also processes its padding edges, at most 255 per
configuration). Speedup = rival step time / ours (> 1: ours is faster).

Data: synthetic configurations (tests/synthetic_records.py): N particles
uniformly at random at the Kob-Andersen density 1.2, 80 % A; N = 4096 gives
about 169 k edges with self-loops at the 2.0 σ cut-off (41.2 per particle;
an equilibrated T = 0.44 liquid has 40.8). Structure does not matter for
timing, only the edge count does. The records are generated once and
cached in --records_cache.
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

import machine  # benchmarks/machine.py  # pylint: disable=g-bad-import-order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUTOFF = 2.0  # σ_AA, the paper's graph cut-off (Methods).
# (latent_size, num_recurrences): configs/default.py and configs/demo.py.
MODELS = {"paper": (64, 7), "demo": (32, 4)}

_N = flags.DEFINE_integer("n_particles", 4096, "Particles per configuration.")
_N_RECORDS = flags.DEFINE_integer("n_records", 8, "Synthetic configurations.")
_MODELS = flags.DEFINE_list("models", ["paper", "demo"],
                            f"Which of {sorted(MODELS)}.")
_BATCHES = flags.DEFINE_list("batch_sizes", ["1", "2", "4", "8"],
                             "Batch sizes to try, ascending.")
_RSS = flags.DEFINE_float("rss_limit_gib", 8.0, "A subprocess whose resident "
                          "set exceeds this is killed (batch does not fit).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps.")
_BIG_STEPS = flags.DEFINE_integer("big_batch_steps", 3, "Timed steps at "
                                  "batch > 1 (each step is B times longer).")
_PAIRED_STEPS = flags.DEFINE_integer("paired_steps", 6, "Timed step pairs "
                                     "of the paired runs at batch 1.")
_MIRRORED_BATCH = flags.DEFINE_integer("mirrored_batch", 2, "Global batch of "
                                       "the MirroredStrategy runs.")
_PROFILE = flags.DEFINE_bool("profile", True, "Run the profile variant "
                             "(first model, batch 1, jit off).")
_RECORDS_CACHE = flags.DEFINE_string(
    "records_cache", os.path.join(tempfile.gettempdir(),
                                  "training_throughput_records"),
    "Directory for the generated synthetic records (.npz).")
_TIMEOUT = flags.DEFINE_integer("timeout_s", 900, "Per subprocess.")
_OUT = flags.DEFINE_string("out",
                           "benchmarks/results/training_throughput.json",
                           "JSON output.")
# Internal: one variant in a subprocess.
_VARIANT = flags.DEFINE_enum("variant", None,
                             ["ours", "paired", "profile"],
                             "Run one variant (internal).")
_RIVAL = flags.DEFINE_enum("rival", "gn2020", ["gn2020", "default"],
                           "Internal (paired): the step alternated with "
                           "ours.")
_RECORDS = flags.DEFINE_string("records", "", "Records .npz (internal).")
_LATENT = flags.DEFINE_integer("latent_size", 64, "Internal.")
_RECURRENCES = flags.DEFINE_integer("num_recurrences", 7, "Internal.")
_BATCH = flags.DEFINE_integer("batch_size", 1, "Internal.")
_JIT = flags.DEFINE_bool("jit_compile", False, "Internal (ours).")
_STRATEGY = flags.DEFINE_enum("strategy", "default", ["default", "mirrored"],
                              "Internal (ours).")
_RESULT = flags.DEFINE_string("result", "", "Internal: JSON result file.")


def _rss_gib(pid: int) -> float:
  """VmRSS of a running child process, GiB; 0 if it is gone."""
  try:
    return machine.status_gib("VmRSS", pid)
  except (FileNotFoundError, ProcessLookupError, KeyError):
    return 0.0  # exited (a zombie has no VmRSS line)


# ------------------------------------------------------------- records ---


def make_records_file(n_particles: int, n_records: int, directory: str) -> str:
  """Generates (once) the synthetic records; returns the .npz path.

  The file holds, per record i: positions_i [N, 3] float32 (σ_AA), types_i
  [N] int32, box_i [3] float32, propensity_i [1, N] float32 (σ_AA), times_i
  [1], isf_levels_i [1], and n_edges [n_records] int (edges with self-loops
  at the 2.0 σ cut-off, from graphs.build_graph).
  """
  path = os.path.join(directory, f"records_n{n_particles}_k{n_records}.npz")
  if os.path.exists(path):
    return path
  sys.path.insert(0, os.path.join(ROOT, "tests"))
  import synthetic_records  # pylint: disable=g-import-not-at-top
  from glassy_dynamics_tf import graphs  # pylint: disable=g-import-not-at-top
  arrays, n_edges = {}, []
  for i in range(n_records):
    record = synthetic_records.make_record(
        i, n_particles=n_particles, times=(1.0,)).as_dict()
    for key in ("positions", "types", "box", "propensity", "times",
                "isf_levels"):
      arrays[f"{key}_{i}"] = record[key]
    n_edges.append(graphs.build_graph(record["positions"], record["box"],
                                      CUTOFF, True).n_edges)
  arrays["n_edges"] = np.asarray(n_edges)
  os.makedirs(directory, exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)
  return path


def load_records(path: str):
  """The records of `make_records_file` as dicts, and their edge counts."""
  with np.load(path) as data:
    n_edges = data["n_edges"]
    records = [{key: data[f"{key}_{i}"] for key in (
        "positions", "types", "box", "propensity", "times", "isf_levels")}
               for i in range(len(n_edges))]
  return records, [int(e) for e in n_edges]


# ---------------------------------------------------------- subprocess ---


def _steady_times(ends, warmup):
  """Per-step wall times after `warmup` from step-end timestamps [s]."""
  return [b - a for a, b in zip(ends[warmup - 1:], ends[warmup:])]


def _summary(times, batch, edges_per_config, padded_edges=None) -> dict:
  """Step-time statistics and throughput (from the median step time)."""
  median = statistics.median(times)
  out = {
      "step_s": times,
      "mean_step_s": statistics.fmean(times),
      "median_step_s": median,
      "min_step_s": min(times),
      "configs_per_s": batch / median,
      "edges_per_s": batch * edges_per_config / median,
  }
  if padded_edges is not None:
    out["padded_edges_per_s"] = batch * padded_edges / median
  return out


def _ours_config(latent, recurrences, batch, jit, strategy):
  from glassy_dynamics_tf.configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.model.latent_size = latent
  config.model.num_recurrences = recurrences
  config.train.batch_size = batch
  config.train.jit_compile = jit
  config.train.strategy = strategy
  return config


def _ours_setup(config, records, strategy):
  """Metadata, compiled model and a DatasetCreator, as training.train."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from glassy_dynamics_tf import input_pipeline  # pylint: disable=g-import-not-at-top
  from glassy_dynamics_tf import training  # pylint: disable=g-import-not-at-top
  dataset = input_pipeline.records_dataset(records)
  metadata = input_pipeline.compute_metadata({"train": dataset}, config)
  model = training.create_model(config, metadata, strategy)
  batch = int(config.train.batch_size)

  def dataset_fn(context):
    return input_pipeline.train_dataset(
        input_pipeline.graph_dataset(dataset, config, metadata), config,
        context.get_per_replica_batch_size(batch), seed=0,
        examples_per_step=batch // context.num_input_pipelines)

  return metadata, model, tf_keras.utils.experimental.DatasetCreator(
      dataset_fn), dataset


def _step_end_timer():
  import tf_keras  # pylint: disable=g-import-not-at-top

  class StepEnds(tf_keras.callbacks.Callback):
    """Wall-clock time at the end of every training step."""

    def __init__(self):
      super().__init__()
      self.ends = []

    def on_train_batch_end(self, batch, logs=None):
      self.ends.append(time.perf_counter())

  return StepEnds()


def run_ours(records, n_edges) -> dict:
  """One `model.fit` run of our pipeline; see the module docstring."""
  if _STRATEGY.value == "mirrored":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    # Two logical CPU devices, before anything initialises the runtime.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from glassy_dynamics_tf import training  # pylint: disable=g-import-not-at-top
  strategy = training.create_strategy(_STRATEGY.value)
  config = _ours_config(_LATENT.value, _RECURRENCES.value, _BATCH.value,
                        _JIT.value, _STRATEGY.value)
  metadata, model, stream, _ = _ours_setup(config, records, strategy)
  timer = _step_end_timer()
  load_before = os.getloadavg()
  start = time.perf_counter()
  model.fit(stream, steps_per_epoch=_WARMUP.value + _STEPS.value, epochs=1,
            callbacks=[timer], verbose=0)
  load_after = os.getloadavg()
  times = _steady_times(timer.ends, _WARMUP.value)
  result = _summary(times, _BATCH.value, statistics.fmean(n_edges),
                    metadata.max_edges)
  result.update(
      first_step_s=timer.ends[0] - start,
      replicas=strategy.num_replicas_in_sync,
      jit_compile_effective=bool(model._jit_compile),  # pylint: disable=protected-access
      max_nodes=metadata.max_nodes, max_edges=metadata.max_edges,
      loadavg_before=load_before, loadavg_after=load_after)
  return result


def _gn2020_batches(records, batch, seed=0):
  """Endless host-built graphs_tuple inputs, as a 2020-style loop makes them.

  Yields (data_dicts, targets [sum n] float32, weights [sum n] float32,
  seconds spent building the graphs on the host).
  """
  from glassy_dynamics_tf import augmentation  # pylint: disable=g-import-not-at-top
  from glassy_dynamics_tf import graphs  # pylint: disable=g-import-not-at-top
  symmetries = augmentation.cube_symmetries()
  rng = np.random.default_rng(seed)
  order = []
  while True:
    start = time.perf_counter()
    dicts, targets, weights = [], [], []
    for _ in range(batch):
      if not order:
        order = list(rng.permutation(len(records)))
      r = records[order.pop()]
      graph = graphs.build_graph(r["positions"], r["box"], CUTOFF, True)
      matrix = symmetries[rng.integers(len(symmetries))]
      dicts.append({
          "nodes": r["types"][:, None].astype(np.float32),
          "edges": graph.edge_vectors @ matrix.T,
          "senders": graph.senders,
          "receivers": graph.receivers,
          "globals": np.zeros([1], np.float32),
      })
      targets.append(r["propensity"][0])
      weights.append((r["types"] == 0).astype(np.float32))
    yield (dicts, np.concatenate(targets), np.concatenate(weights),
           time.perf_counter() - start)


def gn2020_train_step(latent: int, recurrences: int, example_graph=None):
  """The 2020-style train step on a fresh model.EncodeProcessDecode with
  graph_nets' EdgeBlock (project_before_gather=False), as in the release.

  Args:
    latent, recurrences: model size.
    example_graph: a GraphsTuple; if given, the step gets one input
      signature with dynamic node, edge and graph counts from it (as
      graph_nets' demos do, so that graphs of every size share one trace);
      None = a plain tf.function, traced once per distinct input shape.

  Returns:
    train_step(graph, targets [n] float32, weights [n] float32) -> loss.
  """
  from graph_nets import utils_tf  # pylint: disable=g-import-not-at-top
  import sonnet as snt  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from glassy_dynamics_tf import model as model_lib  # pylint: disable=g-import-not-at-top
  module = model_lib.EncodeProcessDecode(
      latent_size=latent, mlp_layers=2, num_recurrences=recurrences,
      n_outputs=1, project_before_gather=False)
  model_lib.build_variables(module)
  optimizer = snt.optimizers.Adam(1e-4)  # Methods: Adam, 1e-4.

  def train_step(graph, targets, weights):
    with tf.GradientTape() as tape:
      predictions = module(graph)[:, 0]
      loss = tf.math.divide_no_nan(
          tf.reduce_sum(weights * tf.square(predictions - targets)),
          tf.reduce_sum(weights))  # MSE over type-A particles (Methods).
    grads = tape.gradient(loss, module.trainable_variables)
    grads, _ = tf.clip_by_global_norm(grads, 1.0)  # Methods: norm 1.
    optimizer.apply(grads, module.trainable_variables)
    return loss

  if example_graph is None:
    return tf.function(train_step)
  spec = utils_tf.specs_from_graphs_tuple(
      example_graph, dynamic_num_graphs=True, dynamic_num_nodes=True,
      dynamic_num_edges=True)
  vector = tf.TensorSpec([None], tf.float32)
  return tf.function(train_step, input_signature=[spec, vector, vector])


def _pair_result(ours_t, rival_t, batch, edges, max_edges) -> dict:
  """Both sides' statistics and the speedup rival / ours (> 1: ours wins)."""
  speedups = [b / a for a, b in zip(ours_t, rival_t)]
  return {
      "rival": _RIVAL.value,
      "ours": _summary(ours_t, batch, edges, max_edges),
      _RIVAL.value: _summary(rival_t, batch, edges),
      "speedup_per_pair": speedups,
      "speedup_median_of_pairs": statistics.median(speedups),
      "speedup_of_medians": (statistics.median(rival_t)
                             / statistics.median(ours_t)),
      "speedup_of_minima": min(rival_t) / min(ours_t),
  }


def run_paired(records, n_edges) -> dict:
  """Ours and a rival alternated step by step in one process.

  --rival=gn2020: each step of our `model.fit` (default strategy; timed from
  on_train_batch_begin to on_train_batch_end: the train function, with the
  next batch from the pipeline) is followed, in the callback, by one
  2020-style step on the same records and batch size (its host graph
  building included).
  --rival=default (with --strategy=mirrored): our model under
  MirroredStrategy and a second one under the default strategy, each with
  its own input pipeline (a DatasetCreator's, as model.fit builds it) and
  the train function model.fit runs (make_train_function), called in turn.
  model.fit runs its callbacks inside its strategy's scope, where the other
  strategy's model cannot step, so this pair is driven without fit.

  Both sides see the same load from other users of the machine, which on a
  shared machine moves step times by up to 2x within a minute.
  """
  if _RIVAL.value == "default":
    return _run_mirrored_pair(records, n_edges)
  from graph_nets import utils_tf  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  from glassy_dynamics_tf import training  # pylint: disable=g-import-not-at-top
  batch = _BATCH.value
  config = _ours_config(_LATENT.value, _RECURRENCES.value, batch, _JIT.value,
                        "default")
  metadata, model, stream, _ = _ours_setup(
      config, records, training.create_strategy("default"))
  batches = _gn2020_batches(records, batch, seed=1)
  pending = [next(batches)]
  gn_step = gn2020_train_step(
      _LATENT.value, _RECURRENCES.value,
      utils_tf.data_dicts_to_graphs_tuple(pending[0][0]))
  host_s, ours_s, rival_s = [], [], []

  def rival():
    dicts, targets, weights, built = (pending.pop() if pending
                                      else next(batches))
    host_s.append(built)
    graph = utils_tf.data_dicts_to_graphs_tuple(dicts)
    gn_step(graph, tf.constant(targets), tf.constant(weights)).numpy()

  w = _WARMUP.value
  load = {}

  class Alternate(tf_keras.callbacks.Callback):

    def on_train_batch_begin(self, batch, logs=None):
      if batch == w:
        load["before"] = os.getloadavg()
      self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
      end = time.perf_counter()
      ours_s.append(end - self.start)
      rival()
      rival_s.append(time.perf_counter() - end)

  model.fit(stream, steps_per_epoch=w + _STEPS.value, epochs=1,
            callbacks=[Alternate()], verbose=0)
  result = _pair_result(ours_s[w:], rival_s[w:], batch,
                        statistics.fmean(n_edges), metadata.max_edges)
  result["gn2020"]["host_graph_build_s"] = host_s[w:]
  result.update(
      jit_compile_effective=bool(model._jit_compile),  # pylint: disable=protected-access
      loadavg_before=load["before"], loadavg_after=os.getloadavg())
  return result


def _run_mirrored_pair(records, n_edges) -> dict:
  """MirroredStrategy (2 logical CPUs) against default; see run_paired."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # Two logical CPU devices, before anything initialises the runtime.
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from glassy_dynamics_tf import training  # pylint: disable=g-import-not-at-top
  batch = _BATCH.value
  steppers = []
  for name in ("mirrored", "default"):
    strategy = training.create_strategy(name)
    config = _ours_config(_LATENT.value, _RECURRENCES.value, batch, False,
                          name)
    metadata, model, creator, _ = _ours_setup(config, records, strategy)
    # What model.fit does with a DatasetCreator.
    iterator = iter(strategy.distribute_datasets_from_function(
        creator, options=tf.distribute.InputOptions()))
    train_function = model.make_train_function()

    def step(strategy=strategy, train_function=train_function,
             iterator=iterator):
      with strategy.scope():
        train_function(iterator)["loss"].numpy()

    steppers.append(step)
  for _ in range(_WARMUP.value):  # tracing, optimizer slots
    for step in steppers:
      step()
  load_before = os.getloadavg()
  mirrored_s, default_s = _interleaved(steppers, 0, _STEPS.value)
  result = _pair_result(mirrored_s, default_s, batch,
                        statistics.fmean(n_edges), metadata.max_edges)
  result.update(replicas=2, loadavg_before=load_before,
                loadavg_after=os.getloadavg())
  return result


# ------------------------------------------------------------- profile ---


def _op_time_by_type(logdir: str) -> dict:
  """Exclusive time per TensorFlow op type from a tf.profiler trace.

  Reads the XSpace (.xplane.pb) files and takes, on the host plane, the
  kernel events of the executor threads (those whose metadata carries the
  op type as display name; the event name is "<op name>:<op type>"). An
  op's event spans its kernel, including the intra-op thread pool work it
  waits for. Each event counts its exclusive time (minus the op events
  nested in it on the same thread), so function-call ops do not count their
  body twice. Ops on concurrent executor threads add up, so the total can
  exceed the wall time.

  Returns:
    {"by_type": op type -> s, "by_phase_type": "forward|backward/<type>"
    -> s (backward: under the "gradient_tape" name scope), largest
    first}. "other": loss, optimiser, input pipeline.
  """
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  by_type, by_phase = {}, {}
  for root, _, files in os.walk(logdir):
    for name in files:
      if not name.endswith(".xplane.pb"):
        continue
      space = xplane_pb2.XSpace()
      with open(os.path.join(root, name), "rb") as f:
        space.ParseFromString(f.read())
      for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
          continue
        metadata = plane.event_metadata
        for line in plane.lines:
          events = sorted(
              ((e.offset_ps, e.offset_ps + e.duration_ps,
                metadata[e.metadata_id]) for e in line.events
               if metadata[e.metadata_id].display_name),
              key=lambda e: (e[0], -e[1]))
          stack, finished = [], []  # [end_ps, metadata, exclusive_ps]
          for begin, end, meta in events:
            while stack and stack[-1][0] <= begin:
              finished.append(stack.pop())
            if stack:
              stack[-1][2] -= min(end, stack[-1][0]) - begin
            stack.append([end, meta, end - begin])
          finished.extend(stack)
          for _, meta, exclusive in finished:
            op_type = meta.display_name
            # Gradients of gathers reach the AddN that sums them as
            # IndexedSlices, densified by UnsortedSegmentSum ops named
            # "AddN*/inputs_*".
            if "gradient_tape" in meta.name or meta.name.startswith("AddN"):
              phase = "backward"
            elif "encode_process_decode" in meta.name:
              phase = "forward"
            else:
              phase = "other"
            seconds = exclusive * 1e-12
            by_type[op_type] = by_type.get(op_type, 0.0) + seconds
            key = f"{phase}/{op_type}"
            by_phase[key] = by_phase.get(key, 0.0) + seconds

  def ordered(d):
    return dict(sorted(d.items(), key=lambda kv: -kv[1]))

  return {"by_type": ordered(by_type), "by_phase_type": ordered(by_phase)}


def _timeit(fn, repeats: int = 5) -> float:
  """Median wall time of fn() after one untimed call [s]."""
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _edge_block_micro(n_nodes: int, n_edges: int, latent: int,
                      senders, receivers) -> dict:
  """Forward+backward of one core step's gathers, first edge layer, sum.

  At the core's shapes (node and edge inputs 2 * latent wide after the
  concatenation with the encoded graph): the gathers of sender and receiver
  nodes, the edge MLP's first linear layer on concat(edge, receiver,
  sender), and the segment sum of the new edges into their receivers;
  and, as an alternative, the same first layer computed per node before
  the gather (W_r v_r and W_s v_s are linear, so project the 4096 nodes,
  then gather `latent`-wide rows), which gives the same numbers with
  n_nodes / n_edges of the multiply-adds.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  width = 2 * latent
  nodes = tf.constant(rng.normal(size=(n_nodes, width)), tf.float32)
  edges = tf.constant(rng.normal(size=(n_edges, width)), tf.float32)
  weight = tf.Variable(rng.normal(size=(3 * width, latent)) * 0.05,
                       dtype=tf.float32)
  senders = tf.constant(senders, tf.int32)
  receivers = tf.constant(receivers, tf.int32)
  sorted_order = np.argsort(receivers.numpy(), kind="stable")
  receivers_sorted = tf.constant(receivers.numpy()[sorted_order])

  def first_layer_concat():
    inputs = tf.concat([edges, tf.gather(nodes, receivers),
                        tf.gather(nodes, senders)], axis=-1)
    return tf.nn.relu(tf.matmul(inputs, weight))

  def first_layer_project():
    w_e, w_r, w_s = tf.split(weight, 3, axis=0)
    return tf.nn.relu(tf.matmul(edges, w_e)
                      + tf.gather(tf.matmul(nodes, w_r), receivers)
                      + tf.gather(tf.matmul(nodes, w_s), senders))

  def grad_of(fn):
    @tf.function
    def step():
      with tf.GradientTape() as tape:
        tape.watch(nodes)
        loss = tf.reduce_sum(fn())
      # The gather's gradient is IndexedSlices; the model densifies it.
      return [tf.convert_to_tensor(g)
              for g in tape.gradient(loss, [nodes, weight])]
    return lambda: [g.numpy() for g in step()]

  latent_edges = tf.constant(rng.normal(size=(n_edges, latent)), tf.float32)
  out = {
      "shapes": {"n_nodes": n_nodes, "n_edges": n_edges, "width": width},
      "gather_2x_forward_s": _timeit(tf.function(lambda: (
          tf.gather(nodes, receivers), tf.gather(nodes, senders)))),
      "unsorted_segment_sum_forward_s": _timeit(tf.function(
          lambda: tf.math.unsorted_segment_sum(latent_edges, receivers,
                                               n_nodes))),
      # Edges re-sorted by receiver on the fly, and already sorted (as a
      # pipeline could store them: the graph is symmetric, so sorting by
      # receiver is only a permutation of the edges).
      "sorted_segment_sum_with_gather_forward_s": _timeit(tf.function(
          lambda: tf.math.segment_sum(
              tf.gather(latent_edges, sorted_order), receivers_sorted))),
      "sorted_segment_sum_presorted_forward_s": _timeit(tf.function(
          lambda: tf.math.segment_sum(latent_edges, receivers_sorted))),
      "first_edge_layer_concat_fwd_bwd_s": _timeit(
          grad_of(first_layer_concat)),
      "first_edge_layer_project_fwd_bwd_s": _timeit(
          grad_of(first_layer_project)),
  }
  diff = float(tf.reduce_max(tf.abs(first_layer_concat()
                                    - first_layer_project())))
  out["first_edge_layer_max_abs_diff"] = diff
  return out


def _interleaved(fns, warmup: int, repeats: int):
  """Calls fns in turn (a, b, a, b, ...); per-fn wall times after warmup."""
  times = [[] for _ in fns]
  for i in range(warmup + repeats):
    for fn, out in zip(fns, times):
      start = time.perf_counter()
      fn()
      if i >= warmup:
        out.append(time.perf_counter() - start)
  return times


def run_profile(records, n_edges) -> dict:
  """Input pipeline alone, cached-batch step, op-type trace, micro-benchmarks.

  Our path, default strategy, --batch_size, --jit_compile.
  """
  del n_edges
  from graph_nets import utils_tf  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from glassy_dynamics_tf import graphs  # pylint: disable=g-import-not-at-top
  from glassy_dynamics_tf import input_pipeline  # pylint: disable=g-import-not-at-top
  from glassy_dynamics_tf import training  # pylint: disable=g-import-not-at-top
  batch = _BATCH.value
  config = _ours_config(_LATENT.value, _RECURRENCES.value, batch, _JIT.value,
                        "default")
  strategy = training.create_strategy("default")
  metadata, model, _, dataset = _ours_setup(config, records, strategy)
  result = {"loadavg_before": os.getloadavg()}

  # 1. The input pipeline alone. The first batch fills the shuffle buffer,
  # which builds (and caches) the graph of every configuration.
  start = time.perf_counter()
  graphs_ds = input_pipeline.graph_dataset(dataset, config, metadata)
  stream = input_pipeline.train_dataset(graphs_ds, config, batch, seed=0)
  iterator = iter(stream)
  cached_batch = next(iterator)
  result["input_first_batch_s"] = time.perf_counter() - start
  waits = []
  for _ in range(10):
    start = time.perf_counter()
    next(iterator)
    waits.append(time.perf_counter() - start)
  result["input_next_batch_s"] = statistics.median(waits)
  start = time.perf_counter()
  for r in records[:2]:
    graphs.build_graph_tf(r["positions"], r["box"], CUTOFF, True)
  result["build_graph_tf_per_config_s"] = (time.perf_counter() - start) / 2

  # 2. The step on the full path (next batch from the stream) and on one
  # cached batch (no input pipeline), alternated step by step so that load
  # from other users hits both; train_on_batch runs the train function
  # model.fit runs.
  x, y, weights = cached_batch

  def full_step():
    xb, yb, wb = next(iterator)
    model.train_on_batch(xb, yb, sample_weight=wb)

  def cached_step():
    model.train_on_batch(x, y, sample_weight=weights)

  w, s = _WARMUP.value, _STEPS.value
  full, cached = _interleaved([full_step, cached_step], w, s)
  result.update(full_path_step_s=full, cached_batch_step_s=cached,
                full_path_median_step_s=statistics.median(full),
                cached_batch_median_step_s=statistics.median(cached))

  # Forward pass alone, in a tf.function like the train step.
  forward = tf.function(lambda x: model(x, training=True),
                        jit_compile=_JIT.value)
  result["forward_only_s"] = _timeit(lambda: forward(x).numpy(), repeats=s)

  # 3. tf.profiler trace of two cached-batch steps.
  result["trace"] = _trace(lambda: [cached_step() for _ in range(2)],
                           steps=2)

  # 4. Micro-benchmarks at the real shapes (the first record's graph).
  graph = graphs.build_graph(records[0]["positions"], records[0]["box"],
                             CUTOFF, True)
  result["micro"] = _edge_block_micro(
      len(records[0]["types"]), graph.n_edges, _LATENT.value,
      graph.senders, graph.receivers)
  result["numpy_build_graph_s"] = _timeit(lambda: graphs.build_graph(
      records[0]["positions"], records[0]["box"], CUTOFF, True), repeats=3)

  # 5. The 2020-style tf.function step on one fixed batch (no host work),
  # with the dynamic-size input signature it uses, and traced for the
  # batch's static shapes instead: isolates what static shapes are worth.
  dicts, targets, weights, _ = next(_gn2020_batches(records, batch))
  gn_graph = utils_tf.data_dicts_to_graphs_tuple(dicts)
  targets, gn_weights = tf.constant(targets), tf.constant(weights)
  runs = []
  for example in (gn_graph, None):
    step = gn2020_train_step(_LATENT.value, _RECURRENCES.value, example)
    runs.append(lambda step=step: step(gn_graph, targets, gn_weights).numpy())
  dynamic, static = _interleaved(runs, w, s)
  result.update(gn2020_dynamic_shapes_step_s=dynamic,
                gn2020_static_shapes_step_s=static)
  result["gn2020_dynamic_trace"] = _trace(
      lambda: [runs[0]() for _ in range(2)], steps=2)
  result["loadavg_after"] = os.getloadavg()
  return result


def _trace(fn, steps: int) -> dict:
  """fn() under tf.profiler; its op time by type (see _op_time_by_type)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  logdir = tempfile.mkdtemp(prefix="training_throughput_trace_")
  tf.profiler.experimental.start(logdir)
  start = time.perf_counter()
  fn()
  wall = time.perf_counter() - start
  tf.profiler.experimental.stop()
  op_times = _op_time_by_type(logdir)
  shutil.rmtree(logdir, ignore_errors=True)
  total = sum(op_times["by_type"].values())
  out = {"steps": steps, "wall_s": wall, "op_time_total_s": total}
  for key, values in op_times.items():
    # Op types under 0.2 % of the total are left out.
    out[key + "_s"] = {k: round(v, 4) for k, v in values.items()
                       if v >= 0.002 * total}
  return out


def worker() -> None:
  """Runs --variant in this process and writes its JSON to --result."""
  records, n_edges = load_records(_RECORDS.value)
  run = {"ours": run_ours, "paired": run_paired,
         "profile": run_profile}[_VARIANT.value]
  result = run(records, n_edges)
  result["peak_rss_gib"] = machine.status_gib("VmHWM")
  result["mean_edges_per_config"] = statistics.fmean(n_edges)
  with open(_RESULT.value, "w") as f:
    json.dump(result, f)


# --------------------------------------------------------- orchestrator ---


def launch(variant: str, records: str, model: str, batch: int,
           jit: bool = False, strategy: str = "default", steps: int = 5,
           warmup: int = 3, rival: str = "gn2020") -> dict:
  """Runs one variant in a `nice -n 10` subprocess under the RSS limit.

  Returns:
    the variant's JSON result plus "variant", "model", ..., "status" ("ok",
    "exceeded_rss" if killed above --rss_limit_gib, "failed" with the
    output's tail, or "timeout"), the subprocess' peak RSS as sampled here,
    wall time, and the load average before and after.
  """
  latent, recurrences = MODELS[model]
  entry = {"variant": variant, "model": model, "latent_size": latent,
           "num_recurrences": recurrences, "batch_size": batch,
           "jit_compile": jit, "strategy": strategy, "warmup": warmup,
           "steps": steps}
  if variant == "paired":
    entry["rival"] = rival
  with tempfile.TemporaryDirectory() as tmp:
    result_path = os.path.join(tmp, "result.json")
    log_path = os.path.join(tmp, "log.txt")
    command = [
        "nice", "-n", "10", sys.executable, os.path.abspath(__file__),
        f"--variant={variant}", f"--records={records}",
        f"--latent_size={latent}", f"--num_recurrences={recurrences}",
        f"--batch_size={batch}", f"--jit_compile={str(jit).lower()}",
        f"--strategy={strategy}", f"--warmup={warmup}", f"--steps={steps}",
        f"--rival={rival}", f"--result={result_path}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    entry["loadavg_before_launch"] = os.getloadavg()
    start = time.time()
    peak = 0.0
    status = "ok"
    with open(log_path, "w") as log:
      process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                 cwd=ROOT, env=env)
      while process.poll() is None:
        peak = max(peak, _rss_gib(process.pid))
        if peak > _RSS.value:
          status = "exceeded_rss"
          process.send_signal(signal.SIGKILL)
        elif time.time() - start > _TIMEOUT.value:
          status = "timeout"
          process.send_signal(signal.SIGKILL)
        time.sleep(0.2)
    entry["wall_s"] = time.time() - start
    entry["loadavg_after_exit"] = os.getloadavg()
    entry["sampled_peak_rss_gib"] = peak
    if status == "ok" and process.returncode != 0:
      status = "failed"
      with open(log_path) as f:
        entry["log_tail"] = f.read()[-3000:]
    if status == "ok":
      with open(result_path) as f:
        entry.update(json.load(f))
  entry["status"] = status
  # The sampler can miss a short peak; the worker's own high-water mark
  # cannot.
  entry["fits_rss_limit"] = status == "ok" and max(
      peak, entry.get("peak_rss_gib", 0.0)) <= _RSS.value
  if status != "ok" or variant == "profile":
    summary = status
  elif variant == "paired":
    summary = (f"ours {entry['ours']['median_step_s']:.3f} s/step, "
               f"{rival} {entry[rival]['median_step_s']:.3f} s/step, "
               f"speedup {entry['speedup_median_of_pairs']:.2f}")
  else:
    summary = (f"{entry['median_step_s']:.3f} s/step, "
               f"{entry['configs_per_s']:.3f} configs/s")
  print(f"[{time.strftime('%H:%M:%S')}] {variant} {model} batch={batch} "
        f"jit={jit} {strategy}: {summary}, peak RSS {peak:.2f} GiB, "
        f"{entry['wall_s']:.0f} s wall", flush=True)
  return entry


def orchestrate() -> None:
  """Every variant of the module docstring; writes --out."""
  records = make_records_file(_N.value, _N_RECORDS.value,
                              _RECORDS_CACHE.value)
  _, n_edges = load_records(records)
  batch_sizes = [int(b) for b in _BATCHES.value]
  runs = []
  started = time.time()

  def steps_for(batch):
    return _STEPS.value if batch == 1 else _BIG_STEPS.value

  paired = []
  for model in _MODELS.value:
    # Our path alone: batch ladder up to the RSS limit, jit off and on.
    largest = {}
    for jit in (False, True):
      for batch in batch_sizes:
        entry = launch("ours", records, model, batch, jit=jit,
                       steps=steps_for(batch),
                       warmup=_WARMUP.value if batch == 1 else 2)
        runs.append(entry)
        if not entry["fits_rss_limit"]:
          break
        largest[jit] = batch
    # MirroredStrategy alone (the paired run below holds two models and may
    # not fit the RSS limit where one does).
    runs.append(launch("ours", records, model, _MIRRORED_BATCH.value,
                       strategy="mirrored", steps=_BIG_STEPS.value,
                       warmup=2))
    # Ours against the 2020-style step, alternated step by step.
    settings = [(1, False), (1, True)]
    if largest.get(False, 1) > 1:
      settings.append((largest[False], False))
    for batch, jit in settings:
      paired.append(launch("paired", records, model, batch, jit=jit,
                           steps=_PAIRED_STEPS.value if batch == 1 else
                           _BIG_STEPS.value, warmup=2, rival="gn2020"))
    # MirroredStrategy over two logical CPUs against the default strategy.
    paired.append(launch("paired", records, model, _MIRRORED_BATCH.value,
                         strategy="mirrored", steps=_BIG_STEPS.value,
                         warmup=2, rival="default"))
  profile = None
  if _PROFILE.value:
    profile = launch("profile", records, _MODELS.value[0], 1,
                     steps=_BIG_STEPS.value, warmup=2)
  report = {
      "benchmark": "benchmarks/training_throughput.py",
      "command": " ".join(["nice -n 10 python"] + sys.argv),
      "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
      "machine": machine.describe(
          ("tensorflow", "tensorflow-cpu", "tf-keras", "dm-sonnet",
           "graph-nets", "numpy")),
      "data": {
          "kind": "synthetic (tests/synthetic_records.py): uniform random "
                  "positions at density 1.2, 80 % type A",
          "n_particles": _N.value, "n_records": _N_RECORDS.value,
          "cutoff": CUTOFF, "self_loops": True,
          "edges_per_config": n_edges,
      },
      "rss_limit_gib": _RSS.value,
      "total_wall_s": time.time() - started,
      "runs": runs,
      "paired": paired,
      "profile": profile,
  }
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w") as f:
    json.dump(report, f, indent=1)
  print(markdown_tables(report))


def markdown_tables(report) -> str:
  """The runs and the paired comparisons as markdown tables."""
  lines = ["| model | jit | batch | s/step (median) | configs/s | edges/s | "
           "peak RSS GiB | load 1-min before→after |",
           "|---|---|---|---|---|---|---|---|"]
  for r in report["runs"]:
    jit = "on" if r["jit_compile"] else "off"
    if r["strategy"] != "default":
      jit += f", {r['strategy']}"
    if r["status"] != "ok":
      lines.append(f"| {r['model']} | {jit} | {r['batch_size']} | "
                   f"{r['status']} | | | >{r['sampled_peak_rss_gib']:.1f} "
                   f"| |")
      continue
    rss = max(r["peak_rss_gib"], r["sampled_peak_rss_gib"])
    lines.append(
        f"| {r['model']} | {jit} | {r['batch_size']} | "
        f"{r['median_step_s']:.2f} | "
        f"{r['configs_per_s']:.2f} | {r['edges_per_s'] / 1e3:.0f}k | "
        f"{rss:.2f} | {r['loadavg_before'][0]:.1f}→"
        f"{r['loadavg_after'][0]:.1f} |")
  lines += ["", "| model | ours | rival | batch | ours s/step | rival s/step "
            "| speedup (median of pairs) | of minima | load before→after |",
            "|---|---|---|---|---|---|---|---|---|"]
  for r in report["paired"]:
    ours = f"{r['strategy']}, jit {'on' if r['jit_compile'] else 'off'}"
    if r["status"] != "ok":
      lines.append(f"| {r['model']} | {ours} | {r['rival']} | "
                   f"{r['batch_size']} | {r['status']} | | | | |")
      continue
    rival = r[r["rival"]]
    lines.append(
        f"| {r['model']} | {ours} | {r['rival']} | {r['batch_size']} | "
        f"{r['ours']['median_step_s']:.2f} | {rival['median_step_s']:.2f} | "
        f"{r['speedup_median_of_pairs']:.2f} | {r['speedup_of_minima']:.2f} "
        f"| {r['loadavg_before'][0]:.1f}→{r['loadavg_after'][0]:.1f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  if _VARIANT.value:
    worker()
  else:
    orchestrate()


if __name__ == "__main__":
  app.run(main)
