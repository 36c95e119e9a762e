"""Training: strategy, optimiser, masked loss, callbacks, SavedModel export.

```
 train(config, workdir)
   │ set_random_seed(train.seed)            deterministic under a seed
   │ create_strategy(train.strategy)        default | mirrored | multi_worker | tpu
   │ compute_metadata(train, validation)    timescales, padding sizes
   │ with strategy.scope():
   │   create_model(...)                    GlassyGraphNetwork, called once so
   │                                        Sonnet creates its variables
   │   compile(Adam(lr, global_clipnorm), MaskedMeanSquaredError, jit_compile)
   │ fit(DatasetCreator(train stream), steps_per_epoch, callbacks=[
   │       BackupAndRestore(WORKDIR/backup)      resume at the step it died
   │       ValidationPearson(validation split)   best checkpoint WORKDIR/best/
   │       EarlyStopping(val_pearson)            if train.early_stopping_patience
   │       TensorBoard(WORKDIR/tensorboard)])
   │ restore best-on-validation weights
   ▼ export_saved_model(...) -> WORKDIR/saved_model/   (+ assets/metadata.json)
```

Under MultiWorkerMirroredStrategy (docs/SCALING.md) every worker runs all of
this but the export; the chief writes WORKDIR's files, the other workers
take part in every save but write to their own `workertemp_<i>`
directories (`worker_dir`), which are removed again.

Paper choices (Bapst et al. 2020, Methods): MSE on type-A particles only,
Adam with learning rate 1e-4, gradients clipped to global norm 1.0, a random
cube symmetry per example per step. Model selection uses the validation split,
never the test split; the selection metric is the Pearson correlation between
predicted and true propensity over the type-A particles of each validation
configuration, averaged over configurations and timescales.
"""

import dataclasses
import json
import math
import os
import time
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from absl import logging
import numpy as np
import sonnet as snt
import tensorflow as tf
import tf_keras

from glassy_dynamics_tf import graphs
from glassy_dynamics_tf import input_pipeline
from glassy_dynamics_tf import metrics
from glassy_dynamics_tf import model as model_lib
from glassy_dynamics_tf.io import json_files

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

# Layout of a work directory.
BACKUP_DIR = "backup"
BEST_DIR = "best"
TENSORBOARD_DIR = "tensorboard"
SAVED_MODEL_DIR = "saved_model"
STATE_FILE = "train_state.json"
BEST_FILE = "best.json"
HEADS_FILE = "heads.json"
METADATA_FILE = "metadata.json"


class TrainingError(ValueError):
  """A configuration, work directory or model that training cannot use."""


# ----------------------------------------------------------- strategy ---


def create_strategy(name: str = "default",
                    tpu_address: str = "") -> tf.distribute.Strategy:
  """The tf.distribute strategy named by config.train.strategy.

  Args:
    name: "default" (one device), "mirrored" (all local GPUs, or the local
      logical CPUs), "multi_worker" (the cluster in $TF_CONFIG; create it
      before any other TensorFlow op), "tpu". See docs/SCALING.md.
    tpu_address: for "tpu": the Cloud TPU's name or grpc://host:8470
      address, "local" for the chips of the TPU VM this runs on; "" lets
      TPUClusterResolver find it ($TPU_NAME, or the VM's metadata).

  Returns:
    the strategy.

  Raises:
    TrainingError: an unknown name, or "multi_worker" after TensorFlow's
      runtime has started.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    devices = tf.config.list_logical_devices("GPU")
    if not devices:
      devices = tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  if name == "multi_worker":
    # The cluster comes from the TF_CONFIG environment variable
    # (docs/SCALING.md). Collective ops can only be configured before the
    # TensorFlow runtime starts, i.e. before the first op or tf.data dataset.
    try:
      return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as e:
      if "program startup" not in str(e):
        raise
      raise TrainingError(
          "config.train.strategy='multi_worker': the strategy must be "
          "created before any TensorFlow op runs; call "
          "training.create_strategy('multi_worker') first thing in the "
          "program (before building datasets) and pass it to "
          "train(strategy=...)") from e
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise TrainingError(
      f"config.train.strategy={name!r} is not one of {STRATEGIES}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process owns the work directory's files.

  True for every single-process strategy (default, mirrored, TPU: one
  client drives all the devices) and for the chief of a multi-worker
  cluster (task "chief", or "worker" 0 if there is no chief).
  """
  return bool(strategy.extended.should_checkpoint)


def worker_dir(path: str, strategy: tf.distribute.Strategy) -> str:
  """The directory this worker writes the files meant for `path` to.

  Under MultiWorkerMirroredStrategy every worker must take part in saving a
  checkpoint (the save runs collective ops, so a chief saving alone waits
  for ever or fails), but only the chief's files count. As tf_keras'
  callbacks do (distributed_file_utils.write_dirpath), the chief writes to
  `path` and every other worker to its own `path/workertemp_<task id>`, so
  two processes never write the same file.

  Args:
    path: directory, as a single-process run would use it.
    strategy: the training strategy.

  Returns:
    `path` for the chief (or a single process), else the worker's temporary
    directory inside it.
  """
  if is_chief(strategy):
    return path
  task_id = strategy.cluster_resolver.task_id
  return os.path.join(path, f"workertemp_{task_id}")


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Waits until every worker of a multi-worker cluster gets here.

  An all-reduce of a constant over all replicas; a no-op for single-process
  strategies. Used before the chief deletes files that other workers may
  still be writing.
  """
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return

  @tf.function  # eager collectives are slow and warn
  def all_reduce():
    return strategy.reduce(tf.distribute.ReduceOp.SUM,
                           strategy.run(lambda: tf.ones([], tf.float32)),
                           axis=None)

  all_reduce()


# --------------------------------------------------------------- loss ---


def masked_mse(propensity, predictions, weights) -> tf.Tensor:
  """Mean squared error over the weighted (real type-A) particles.

  Args:
    propensity: [B, max_nodes, n_outputs] float, σ_AA units.
    predictions: [B, max_nodes, n_outputs] float, σ_AA units.
    weights: [B, max_nodes] float, 1 for real type-A particles, else 0.

  Returns:
    scalar float32, σ_AA² units: sum_i w_i mean_t (p_it - y_it)² / sum_i w_i
    (0 if no particle has weight).
  """
  propensity = tf.cast(propensity, tf.float32)
  predictions = tf.cast(predictions, tf.float32)
  weights = tf.cast(weights, tf.float32)
  squared = tf.reduce_mean(tf.square(predictions - propensity), axis=-1)
  total = tf.reduce_sum(weights * squared)
  count = tf.reduce_sum(weights)
  return tf.math.divide_no_nan(total, count)


class MaskedMeanSquaredError(tf_keras.losses.Loss):
  """Keras loss: MSE over the real type-A particles of the global batch.

  Keras would otherwise divide the weighted sum by every slot of the padded
  batch (B * max_nodes), padding included. Here each replica returns its
  weighted sum divided by the weight of the *global* batch (summed over
  replicas), with reduction SUM, so the gradients Keras sums over replicas are
  exactly those of the global masked mean, and the reported loss is it.
  """

  def __init__(self, name: str = "masked_mse"):
    super().__init__(reduction=tf_keras.losses.Reduction.SUM, name=name)

  def __call__(self, y_true, y_pred, sample_weight=None):
    if sample_weight is None:
      raise TrainingError(
          "MaskedMeanSquaredError needs the type-A mask as sample_weight "
          "[B, max_nodes]; the input pipeline yields (features, propensity, "
          "weights)")
    weights = tf.cast(sample_weight, tf.float32)
    squared = tf.reduce_mean(
        tf.square(tf.cast(y_pred, tf.float32) - tf.cast(y_true, tf.float32)),
        axis=-1)
    total = tf.reduce_sum(weights * squared)
    count = tf.reduce_sum(weights)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
      count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return tf.math.divide_no_nan(total, count)

  def call(self, y_true, y_pred):
    raise NotImplementedError("use __call__ with sample_weight")


# -------------------------------------------------------------- model ---


def dummy_batch(metadata: input_pipeline.DatasetMetadata,
                batch_size: int = 1) -> Dict[str, tf.Tensor]:
  """An all-padding batch of the padded-graph contract (to build a model)."""
  n, e = metadata.max_nodes, metadata.max_edges
  return {
      "node_types": tf.zeros([batch_size, n], tf.int32),
      "node_mask": tf.zeros([batch_size, n], tf.float32),
      "senders": tf.fill([batch_size, e], n - 1),
      "receivers": tf.fill([batch_size, e], n - 1),
      "edge_vectors": tf.zeros([batch_size, e, 3], tf.float32),
      "edge_mask": tf.zeros([batch_size, e], tf.float32),
  }


LR_SCHEDULES = ("constant", "warmup_cosine")
CHECKPOINT_SELECTIONS = ("mean", "per_head")


class WarmupCosineSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up to `peak`, then cosine decay to `final_fraction * peak`.

    lr(s) = peak (s + 1) / warmup_steps                        s < warmup
    lr(s) = peak [f + (1 - f) (1 + cos(π p)) / 2],  p = (s - warmup) /
            (total_steps - warmup), clipped to [0, 1]          otherwise

  (Loshchilov & Hutter, "SGDR", ICLR 2017; Goyal et al. 2017 for the
  warm-up.) The step is the optimiser's iteration counter, which
  BackupAndRestore restores, so a resumed run continues on the same curve.
  Why not the paper's constant 1e-4: with 10^4 rather than 10^6 steps a
  larger peak learns faster, the warm-up keeps the first Adam steps (whose
  second-moment estimate is still poor) from blowing up the non-zero-bias
  initialisation, and the decay lets the last epochs settle in a minimum
  instead of hopping around it. docs/results/reference_t064.md measures the
  whole recipe against the old one (the schedule is not ablated alone).
  """

  def __init__(self, peak: float, warmup_steps: int, total_steps: int,
               final_fraction: float = 0.0):
    super().__init__()
    if not peak > 0:
      raise TrainingError(f"learning rate must be > 0, found {peak}")
    if warmup_steps < 0 or total_steps < 1 or warmup_steps >= total_steps:
      raise TrainingError(
          f"warm-up/cosine schedule needs 0 <= train.warmup_steps "
          f"({warmup_steps}) < train.num_steps ({total_steps})")
    if not 0.0 <= final_fraction <= 1.0:
      raise TrainingError(f"train.final_lr_fraction must lie in [0, 1], "
                          f"found {final_fraction}")
    self.peak = float(peak)
    self.warmup_steps = int(warmup_steps)
    self.total_steps = int(total_steps)
    self.final_fraction = float(final_fraction)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warmup = float(self.warmup_steps)
    warm = self.peak * (step + 1.0) / max(warmup, 1.0)
    progress = tf.clip_by_value(
        (step - warmup) / float(self.total_steps - self.warmup_steps),
        0.0, 1.0)
    cosine = self.peak * (self.final_fraction + (1.0 - self.final_fraction) *
                          0.5 * (1.0 + tf.cos(math.pi * progress)))
    return tf.where(step < warmup, warm, cosine)

  def get_config(self):
    return dict(peak=self.peak, warmup_steps=self.warmup_steps,
                total_steps=self.total_steps,
                final_fraction=self.final_fraction)


def learning_rate(train_config):
  """The optimiser's learning rate: a float or a schedule (train section:
  learning_rate, lr_schedule, warmup_steps, final_lr_fraction, num_steps)."""
  kind = train_config.get("lr_schedule", "constant")
  peak = float(train_config.learning_rate)
  if kind == "constant":
    return peak
  if kind == "warmup_cosine":
    return WarmupCosineSchedule(
        peak, int(train_config.get("warmup_steps", 0)),
        int(train_config.num_steps),
        float(train_config.get("final_lr_fraction", 0.0)))
  raise TrainingError(f"unknown config.train.lr_schedule {kind!r}; known: "
                      f"{list(LR_SCHEDULES)}")


def current_learning_rate(optimizer) -> float:
  """The learning rate of the optimiser's latest step (tf_keras reports the
  value its last apply_gradients computed; the schedule itself if no step
  was taken)."""
  lr = optimizer.learning_rate
  if isinstance(lr, tf_keras.optimizers.schedules.LearningRateSchedule):
    lr = lr(optimizer.iterations)
  return float(tf.convert_to_tensor(lr).numpy())


def create_model(config, metadata: input_pipeline.DatasetMetadata,
                 strategy: Optional[tf.distribute.Strategy] = None
                 ) -> tf_keras.Model:
  """GlassyGraphNetwork with variables created (and compiled) in `strategy`.

  Sonnet creates variables on first call, so the model is called once on an
  all-padding batch inside `strategy.scope()` before `compile` (DESIGN.md,
  "Verified stack").

  Args:
    config: experiment ConfigDict (model and train sections).
    metadata: the data's timescales (n_outputs) and padding sizes.
    strategy: default: the current strategy.

  Returns:
    the compiled tf_keras.Model.
  """
  strategy = strategy or tf.distribute.get_strategy()
  jit_compile = bool(config.train.get("jit_compile", False))
  if jit_compile and strategy.num_replicas_in_sync > 1 and all(
      "CPU" in d.upper() for d in strategy.extended.worker_devices):
    # XLA cannot place the replicas' variables on several logical CPU devices
    # ("Trying to access resource ... located in device CPU:1 from CPU:0"),
    # and has no CPU collectives for multi-worker runs ("Collectives are not
    # yet implemented for CPU devices when compiling with XLA", TF 2.21).
    logging.warning("jit_compile is off: XLA does not support %d replicas "
                    "on CPU devices", strategy.num_replicas_in_sync)
    jit_compile = False
  with strategy.scope():
    model = model_lib.GlassyGraphNetwork.from_model_config(
        config.model, n_outputs=metadata.n_outputs)
    model_lib.build_variables(model, dummy_batch(metadata))
    optimizer = tf_keras.optimizers.Adam(
        learning_rate=learning_rate(config.train),
        global_clipnorm=float(config.train.clip_norm) or None)
    model.compile(
        optimizer=optimizer,
        loss=MaskedMeanSquaredError(),
        jit_compile=jit_compile)
  return model


# ----------------------------------------------------------- callbacks ---


def pearson_per_timescale(predictions: np.ndarray, propensity: np.ndarray,
                          weights: np.ndarray) -> np.ndarray:
  """Pearson r per configuration and timescale over the weighted particles.

  Args:
    predictions, propensity: [n_configurations, max_nodes, n_outputs].
    weights: [n_configurations, max_nodes], 1 for real type-A particles.

  Returns:
    [n_configurations, n_outputs] float64 (NaN where undefined).
  """
  out = np.full(propensity.shape[:1] + propensity.shape[2:], np.nan)
  for c in range(propensity.shape[0]):
    mask = weights[c] > 0
    for t in range(propensity.shape[2]):
      out[c, t] = metrics.pearson(predictions[c, mask, t],
                                  propensity[c, mask, t])
  return out


class ValidationPearson(tf_keras.callbacks.Callback):
  """Per-timescale Pearson r on the validation split; keeps the best weights.

  At the end of every epoch: predicts every validation configuration, adds
  `val_pearson` (mean over timescales of the mean over configurations),
  `val_pearson_<j>` (timescale j), `val_loss` (masked MSE) and
  `learning_rate` to the logs (TensorBoard, EarlyStopping and History see
  them), and, if `val_pearson` improved, saves the weights to `best_dir`
  and the scores to `best_dir/best.json`.

  With per_head=True it also keeps, for every timescale j, the weights of
  the epoch with the best val_pearson_j (checkpoint selection per head: a
  multi-timescale network's short-time heads often peak earlier than its
  long-time ones). Each such epoch is written once to
  `best_dir/step_<N>/` and deleted when no head refers to it any more;
  `best_dir/heads.json` lists, per head, its step and score.

  The best scores survive restarts of a killed run. Under
  MultiWorkerMirroredStrategy every worker needs its own `best_dir`
  (`worker_dir(shared_best_dir, strategy)`).
  """

  def __init__(self, dataset: tf.data.Dataset, best_dir: str,
               steps_per_epoch: int, per_head: bool = False):
    super().__init__()
    self._dataset = dataset
    self._best_dir = best_dir
    self._steps_per_epoch = steps_per_epoch
    self._per_head = bool(per_head)
    propensity, weights = [], []
    for _, y, w in dataset.as_numpy_iterator():
      propensity.append(y)
      weights.append(w)
    if not propensity:
      raise TrainingError("the validation split is empty")
    self._propensity = np.concatenate(propensity)
    self._weights = np.concatenate(weights)
    self.best = read_json(os.path.join(best_dir, BEST_FILE))
    self.heads = read_json(os.path.join(best_dir, HEADS_FILE)).get(
        "heads", [])

  @property
  def best_value(self) -> float:
    return float(self.best["val_pearson"]) if self.best else -math.inf

  def evaluate(self) -> Dict[str, float]:
    """Scores of the current weights on the validation split."""
    predictions = self.model.predict(
        self._dataset.map(lambda x, y, w: x), verbose=0)
    r = pearson_per_timescale(predictions, self._propensity, self._weights)
    per_timescale = np.nanmean(r, axis=0)
    scores = {"val_pearson": float(np.nanmean(per_timescale))}
    for j, value in enumerate(per_timescale):
      scores[f"val_pearson_{j}"] = float(value)
    scores["val_loss"] = float(
        masked_mse(self._propensity, predictions, self._weights))
    return scores

  def on_epoch_end(self, epoch, logs=None):
    scores = self.evaluate()
    if logs is not None:
      logs.update(scores)
      logs["learning_rate"] = current_learning_rate(self.model.optimizer)
    step = (epoch + 1) * self._steps_per_epoch
    value = scores["val_pearson"]
    # Every worker computes the same scores (the predictions are gathered
    # from all workers), so all take the same branch: under multi-worker
    # training each must save, since a checkpoint save runs collective ops;
    # `best_dir` is then worker_dir(...) of the shared directory.
    if math.isfinite(value) and value > self.best_value:
      checkpoint = tf.train.Checkpoint(model=self.model)
      manager = tf.train.CheckpointManager(checkpoint, self._best_dir,
                                           max_to_keep=1)
      manager.save(checkpoint_number=step)
      self.best = dict(scores, epoch=epoch + 1, step=step)
      write_json(os.path.join(self._best_dir, BEST_FILE), self.best)
      logging.info("epoch %d: val_pearson %.4f, new best", epoch + 1, value)
    if self._per_head:
      self._update_heads(scores, step)

  def _update_heads(self, scores: Mapping[str, float], step: int) -> None:
    n = sum(1 for k in scores if k.startswith("val_pearson_"))
    heads = list(self.heads) + [None] * (n - len(self.heads))
    improved = []
    for j in range(n):
      value = scores[f"val_pearson_{j}"]
      if math.isfinite(value) and (heads[j] is None or
                                   value > heads[j]["val_pearson"]):
        heads[j] = {"val_pearson": value, "step": step}
        improved.append(j)
    if not improved:
      return
    # Write the new checkpoint, then the index, then delete what no head
    # uses: a kill between two of these leaves an index whose every step
    # exists (at worst an unreferenced directory, removed next time).
    tf.train.Checkpoint(model=self.model).write(
        os.path.join(head_checkpoint_dir(self._best_dir, step), "ckpt"))
    self.heads = heads
    write_json(os.path.join(self._best_dir, HEADS_FILE), {"heads": heads})
    keep = {h["step"] for h in heads if h is not None}
    for name in tf.io.gfile.listdir(self._best_dir):
      name = name.rstrip("/")
      if name.startswith("step_") and int(name[5:]) not in keep:
        tf.io.gfile.rmtree(os.path.join(self._best_dir, name))
    logging.info("step %d: best so far for head(s) %s", step, improved)


def head_checkpoint_dir(best_dir: str, step: int) -> str:
  """Where ValidationPearson(per_head=True) keeps the weights of `step`."""
  return os.path.join(best_dir, f"step_{step}")


# ------------------------------------------------------------- export ---


class PropensityPredictor(tf.Module):
  """A SavedModel-ready module: positions, types, box -> propensity.

  The neighbour graph is built inside (graphs.build_graph_tf, TensorFlow ops
  only), so the exported model needs neither this project nor graph_nets:

    loaded = tf.saved_model.load(path)
    out = loaded.predict(positions=..., types=..., box=...)["propensity"]
  """

  def __init__(self, core: snt.Module, cutoff: float, self_loops: bool,
               metadata_json: str, target_mean=(), target_std=(),
               extra_cores: Sequence[snt.Module] = (),
               head_source: Sequence[int] = ()):
    """See class docstring; target_mean/std [n_outputs], σ_AA units, undo
    the training targets' standardisation (empty: outputs are already σ_AA).

    With per-head checkpoint selection, output j comes from network
    head_source[j]: 0 = `core`, k = extra_cores[k - 1] (each network is the
    same architecture with the weights of another epoch; each runs once per
    call). Empty extra_cores: every output from `core`.
    """
    super().__init__(name="propensity_predictor")
    self.core = core
    self.extra_cores = list(extra_cores)
    self._head_source = tuple(int(k) for k in head_source)
    if self.extra_cores and not self._head_source:
      raise TrainingError("PropensityPredictor: extra_cores need head_source")
    if any(not 0 <= k <= len(self.extra_cores) for k in self._head_source):
      raise TrainingError(
          f"PropensityPredictor: head_source {list(self._head_source)} "
          f"refers to networks beyond the {1 + len(self.extra_cores)} given")
    self._cutoff = float(cutoff)
    self._self_loops = bool(self_loops)
    self._metadata_json = metadata_json
    self._target_mean = tuple(float(x) for x in target_mean)
    self._target_std = tuple(float(x) for x in target_std)

  @tf.function(input_signature=[
      tf.TensorSpec([None, 3], tf.float32, name="positions"),
      tf.TensorSpec([None], tf.int32, name="types"),
      tf.TensorSpec([3], tf.float32, name="box"),
  ])
  def predict(self, positions, types, box):
    """Propensity of every particle.

    Args:
      positions: [n, 3] float32, σ_AA units (any coordinates; wrapped here).
      types: [n] int32, 0 = A, 1 = B.
      box: [3] float32, orthorhombic box edges, σ_AA units, >= 2 * cutoff.

    Returns:
      {"propensity": [n, n_outputs] float32, σ_AA units}.
    """
    graph = graphs.build_graph_tf(positions, box, self._cutoff,
                                  self._self_loops)
    tf.debugging.assert_equal(
        tf.shape(types)[0], tf.shape(positions)[0],
        message="types and positions must have the same number of particles")
    n = tf.shape(types)[0]
    graph_tuple = _graphs_tuple(types, graph, n)
    propensity = self._network_outputs(graph_tuple)
    if self._target_mean:
      propensity = (propensity * tf.constant(self._target_std) +
                    tf.constant(self._target_mean))
    return {"propensity": propensity}

  def _network_outputs(self, graph_tuple):
    """[n, n_outputs]: every head from its own network."""
    if not self.extra_cores:
      return self.core(graph_tuple)
    outputs = [self.core(graph_tuple)] + [c(graph_tuple)
                                          for c in self.extra_cores]
    return tf.stack([outputs[k][:, j]
                     for j, k in enumerate(self._head_source)], axis=1)

  @tf.function(input_signature=[])
  def metadata(self):
    """The JSON of assets/metadata.json, as a string tensor."""
    return tf.constant(self._metadata_json)


def _graphs_tuple(types, graph, n):
  from graph_nets import graphs as gn_graphs  # pylint: disable=g-import-not-at-top
  return gn_graphs.GraphsTuple(
      nodes=tf.cast(tf.reshape(types, [-1, 1]), tf.float32),
      edges=graph.edge_vectors,
      senders=graph.senders,
      receivers=graph.receivers,
      n_node=tf.reshape(n, [1]),
      n_edge=tf.reshape(tf.shape(graph.senders)[0], [1]),
      globals=None)


def sonnet_core(module_or_model) -> snt.Module:
  """The Sonnet EncodeProcessDecode inside a GlassyGraphNetwork (or itself)."""
  if isinstance(module_or_model, model_lib.EncodeProcessDecode):
    return module_or_model
  core = getattr(module_or_model, "network", None)
  if isinstance(core, model_lib.EncodeProcessDecode):
    return core
  raise TrainingError(
      f"cannot export {type(module_or_model).__name__}: expected a "
      f"GlassyGraphNetwork or an EncodeProcessDecode module")


def export_saved_model(module_or_model, config, metadata: Union[
    input_pipeline.DatasetMetadata, Mapping[str, Any]], path: str,
                       head_models: Optional[Sequence[Any]] = None,
                       selection: Optional[Mapping[str, Any]] = None
                       ) -> str:
  """Writes the `predict` SavedModel and assets/metadata.json (atomically).

  Works for a trained GlassyGraphNetwork and for an EncodeProcessDecode core
  on its own (e.g. the imported DeepMind TF1 checkpoint).

  Args:
    module_or_model: GlassyGraphNetwork or EncodeProcessDecode with
      variables.
    config: experiment ConfigDict (its graph section defines the graph the
      model expects; the whole config is stored in the metadata).
    metadata: DatasetMetadata, or a dict with at least `times`, `isf_levels`,
      `timescale_indices` and `dataset_name`.
    path: output directory; replaced if it exists.
    head_models: per-head checkpoint selection: [n_outputs] models (as
      module_or_model; the same object for heads that share weights), head j
      predicted by head_models[j]. None: every head from module_or_model.
    selection: how the weights were chosen, stored in the metadata as
      `checkpoint_selection`.

  Returns:
    path.

  Raises:
    TrainingError: metadata without the required keys, or whose timescales
      disagree with the model's number of outputs.
  """
  if isinstance(metadata, input_pipeline.DatasetMetadata):
    info = metadata.to_json_dict()
  else:
    info = dict(metadata)
    info["isf_levels"] = [
        None if x is None or (isinstance(x, float) and math.isnan(x)) else
        float(x) for x in info.get("isf_levels", [])
    ]
  missing = [k for k in ("times", "isf_levels", "timescale_indices",
                         "dataset_name") if k not in info]
  if missing:
    raise TrainingError(f"export_saved_model: metadata lacks {missing}")
  info["n_outputs"] = len(info["times"])
  info["dataset"] = info["dataset_name"]  # the key evaluation.py reads
  info["config"] = json.loads(config.to_json_best_effort())
  info["graph"] = {"cutoff": float(config.graph.cutoff),
                   "self_loops": bool(config.graph.self_loops)}
  if selection is not None:
    info["checkpoint_selection"] = dict(selection)
  core = sonnet_core(module_or_model)
  cores, head_source = [core], []
  if head_models is not None:
    if len(head_models) != info["n_outputs"]:
      raise TrainingError(
          f"export_saved_model: {len(head_models)} head models for "
          f"{info['n_outputs']} outputs")
    head_cores = [sonnet_core(m) for m in head_models]
    # `core` (what the analyses restore) is the last head's network: the
    # longest timescale's, the headline τ_α in the paper's layout. The
    # mean-best weights are not kept unless some head uses them.
    core = head_cores[-1]
    cores = [core]
    for c in head_cores:
      index = next((k for k, x in enumerate(cores) if x is c), None)
      if index is None:
        cores.append(c)
        index = len(cores) - 1
      head_source.append(index)
  info["n_networks"] = len(cores)
  metadata_json = json.dumps(info, indent=2, sort_keys=True)
  predictor = PropensityPredictor(core, config.graph.cutoff,
                                  config.graph.self_loops, metadata_json,
                                  info.get("target_mean", ()),
                                  info.get("target_std", ()),
                                  extra_cores=cores[1:],
                                  head_source=head_source if len(cores) > 1
                                  else ())
  # Check the output width against the metadata before writing anything.
  probe = _probe_configuration(float(config.graph.cutoff))
  width = predictor.predict(*probe)["propensity"].shape[-1]
  if width != info["n_outputs"]:
    raise TrainingError(
        f"export_saved_model: the model predicts {width} timescale(s) but "
        f"the metadata lists {info['n_outputs']} times {info['times']}")
  path = os.fspath(path)
  tmp = path.rstrip("/") + ".tmp"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  tf.saved_model.save(predictor, tmp, signatures={
      "predict": predictor.predict.get_concrete_function(),
      "serving_default": predictor.predict.get_concrete_function(),
  })
  tf.io.gfile.makedirs(os.path.join(tmp, "assets"))
  with tf.io.gfile.GFile(os.path.join(tmp, "assets", METADATA_FILE),
                         "w") as f:
    f.write(metadata_json)
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)
  tf.io.gfile.rename(tmp, path)
  return path


def _probe_configuration(cutoff: float):
  """Three particles in a box just large enough for `cutoff`."""
  side = 2.0 * cutoff + 0.5
  positions = tf.constant([[0.5, 0.5, 0.5], [1.5, 0.5, 0.5], [0.5, 1.7, 0.5]],
                          tf.float32)
  return positions, tf.constant([0, 1, 0], tf.int32), tf.constant(
      [side] * 3, tf.float32)


def load_saved_model_metadata(path: str) -> Dict[str, Any]:
  """assets/metadata.json of an exported SavedModel."""
  file = os.path.join(path, "assets", METADATA_FILE)
  if not tf.io.gfile.exists(file):
    raise TrainingError(f"{path}: not an exported propensity SavedModel "
                        f"(no assets/{METADATA_FILE})")
  with tf.io.gfile.GFile(file) as f:
    return json.load(f)


# -------------------------------------------------------------- train ---


@dataclasses.dataclass
class TrainResult:
  """What `train` returns.

  Attributes:
    history: metric name -> per-epoch values of this invocation (empty if the
      run had already finished).
    best: the best validation scores (val_pearson, val_pearson_<j>,
      val_loss, epoch, step), or {} without validation.
    metadata: the data's DatasetMetadata.
    saved_model: path of the exported SavedModel.
    resumed_from_step: global step this invocation started at.
    already_finished: True if the work directory held a finished run.
    model: the trained tf_keras.Model with the exported (best) weights; None
      if the run had already finished.
  """
  history: Dict[str, list]
  best: Dict[str, Any]
  metadata: input_pipeline.DatasetMetadata
  saved_model: str
  resumed_from_step: int
  already_finished: bool = False
  model: Optional[tf_keras.Model] = None


def train(config, workdir: str, data_dir: Optional[str] = None,
          records: Optional[Mapping[str, tf.data.Dataset]] = None,
          strategy: Optional[tf.distribute.Strategy] = None,
          extra_callbacks=(), verbose: int = 1) -> TrainResult:
  """Trains the graph network and exports WORKDIR/saved_model/.

  Re-running on the same workdir resumes a killed run at the step of its
  last backup (every train.backup_every_steps steps), or, if the run had
  finished and exported, returns at once.

  Args:
    config: experiment ConfigDict (dataset, graph, model, train sections).
    workdir: output directory (created).
    data_dir: TFDS data_dir override (default config.dataset.data_dir).
    records: split name -> record dataset instead of TFDS (tests, in-memory
      data); needs "train", and "validation" for model selection. The train
      split is cut to its first config.dataset.max_train_examples records,
      as `input_pipeline.load_records` cuts TFDS data.
    strategy: default: create_strategy(config.train.strategy).
    extra_callbacks: more Keras callbacks (e.g. to stop a run in tests).
    verbose: Keras fit verbosity (1 = progress bar, 2 = one line per epoch).

  Returns:
    TrainResult.

  Raises:
    TrainingError, input_pipeline.PipelineError: bad config or data.
  """
  workdir = os.fspath(workdir)
  tf.io.gfile.makedirs(workdir)
  state_path = os.path.join(workdir, STATE_FILE)
  saved_model_path = os.path.join(workdir, SAVED_MODEL_DIR)
  state = read_json(state_path)
  if state.get("finished") and tf.io.gfile.exists(
      os.path.join(saved_model_path, "saved_model.pb")):
    logging.info("%s holds a finished run (%d steps); SavedModel at %s. "
                 "Use another --workdir to train again.", workdir,
                 state["steps"], saved_model_path)
    return TrainResult(
        history={}, best=state.get("best", {}),
        metadata=input_pipeline.DatasetMetadata.from_json_dict(
            state["metadata"]),
        saved_model=saved_model_path, resumed_from_step=state["steps"],
        already_finished=True)

  seed = int(config.train.get("seed", 0))
  tf_keras.utils.set_random_seed(seed)
  if config.train.get("deterministic", False):
    tf.config.experimental.enable_op_determinism()
  strategy = strategy or create_strategy(
      config.train.strategy, config.train.get("tpu_address", ""))

  if records is None:
    records = {"train": input_pipeline.load_records(config, "train", data_dir)}
    try:
      records["validation"] = input_pipeline.load_records(
          config, "validation", data_dir)
    except input_pipeline.PipelineError as e:
      logging.warning("no validation split (%s): no model selection, the "
                      "last weights are exported", e)
  if "train" not in records:
    raise TrainingError(f"records has splits {sorted(records)}, needs "
                        f"'train'")
  if "test" in records:
    raise TrainingError("train() never looks at the test split; pass only "
                        "'train' and 'validation'")
  limit = input_pipeline.max_train_examples(config)
  if limit:
    records = dict(records, train=records["train"].take(limit))
  metadata = input_pipeline.compute_metadata(records, config)
  logging.info("data: %s", metadata.to_json_dict())

  batch_size = int(config.train.batch_size)
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise TrainingError(
        f"config.train.batch_size={batch_size} is not divisible by the "
        f"{replicas} replicas of the {config.train.strategy} strategy")
  num_steps = int(config.train.num_steps)
  steps_per_epoch = min(int(config.train.steps_per_epoch), num_steps)
  epochs = -(-num_steps // steps_per_epoch)
  if epochs * steps_per_epoch != num_steps:
    logging.warning("train.num_steps=%d is not a multiple of "
                    "train.steps_per_epoch=%d: training %d steps", num_steps,
                    steps_per_epoch, epochs * steps_per_epoch)
  backup_every = int(config.train.get("backup_every_steps", 0) or
                     steps_per_epoch)
  backup_dir = os.path.join(workdir, BACKUP_DIR)
  start_step = backup_step(backup_dir, steps_per_epoch)
  if start_step:
    logging.info("resuming from the backup at step %d", start_step)

  model = create_model(config, metadata, strategy)
  logging.info("model: %d trainable parameters, %d output(s)",
               model_lib.count_parameters(model), metadata.n_outputs)

  def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    shard = input_pipeline.shard_records(records["train"], context)
    per_replica = context.get_per_replica_batch_size(batch_size)
    return input_pipeline.train_dataset(
        input_pipeline.graph_dataset(shard, config, metadata),
        config, per_replica, seed=seed, start_step=start_step,
        examples_per_step=batch_size // context.num_input_pipelines)

  # The backup is deleted only once the SavedModel is written, so a run that
  # dies while exporting resumes with nothing left to train.
  callbacks = [tf_keras.callbacks.BackupAndRestore(
      backup_dir, save_freq=backup_every, delete_checkpoint=False)]
  validation = None
  # Multi-worker: each non-chief worker keeps its own copy of the best
  # weights (worker_dir) until the end, so that every worker restores them
  # from its own files, without reading the chief's while it writes.
  best_dir = worker_dir(os.path.join(workdir, BEST_DIR), strategy)
  selection_mode = config.train.get("checkpoint_selection", "mean")
  if selection_mode not in CHECKPOINT_SELECTIONS:
    raise TrainingError(
        f"unknown config.train.checkpoint_selection {selection_mode!r}; "
        f"known: {list(CHECKPOINT_SELECTIONS)}")
  if "validation" in records:
    validation = ValidationPearson(
        input_pipeline.eval_dataset(
            input_pipeline.graph_dataset(records["validation"], config,
                                         metadata), batch_size),
        best_dir, steps_per_epoch, per_head=selection_mode == "per_head")
    callbacks.append(validation)
    patience = int(config.train.get("early_stopping_patience", 0))
    if patience:
      callbacks.append(tf_keras.callbacks.EarlyStopping(
          monitor="val_pearson", mode="max", patience=patience, verbose=1))
  if _tensorboard_available():
    callbacks.append(tf_keras.callbacks.TensorBoard(
        os.path.join(workdir, TENSORBOARD_DIR),
        update_freq=int(config.train.get("log_every_steps", 0)) or "epoch",
        profile_batch=0))
  else:
    logging.warning("the tensorboard package is not installed: no "
                    "TensorBoard summaries (pip install tensorboard)")
  callbacks.extend(extra_callbacks)

  config_json = json.loads(config.to_json_best_effort())
  previous = read_json(os.path.join(workdir, "config.json"))
  if previous and start_step and (json_files.jsonable(previous) !=
                                  json_files.jsonable(config_json)):
    logging.warning("the config differs from the one %s was started with; "
                    "resuming anyway", workdir)
  if is_chief(strategy):
    write_json(os.path.join(workdir, "config.json"), config_json)
  started = time.time()
  history = model.fit(
      tf_keras.utils.experimental.DatasetCreator(dataset_fn),
      epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
      verbose=verbose)
  logging.info("trained %d steps in %.1f s", epochs * steps_per_epoch -
               start_step, time.time() - started)

  best, head_models, selection = {}, None, {"mode": "last"}
  if validation is not None and validation.best:
    best = validation.best
    restore_best(model, best_dir)
    selection = {"mode": "mean", "step": best["step"],
                 "val_pearson": best["val_pearson"]}
    logging.info("exporting the best validation weights (step %d, "
                 "val_pearson %.4f)", best["step"], best["val_pearson"])
    if selection_mode == "per_head" and validation.heads:
      heads = complete_heads(validation.heads, metadata.n_outputs,
                             best["step"])
      head_models = load_head_models(config, metadata, heads, best_dir,
                                     model, best["step"])
      selection = {"mode": "per_head", "step": best["step"],
                   "val_pearson": best["val_pearson"],
                   "head_steps": [h["step"] for h in heads],
                   "head_val_pearson": [h["val_pearson"] for h in heads]}
      best = dict(best, heads=heads)
      logging.info("per-head selection: head steps %s",
                   selection["head_steps"])
  if is_chief(strategy):  # the chief (or the only) process
    export_saved_model(model, config, metadata, saved_model_path,
                       head_models=head_models, selection=selection)
    write_json(state_path, {
        "finished": True,
        "steps": epochs * steps_per_epoch,
        "best": best,
        "metadata": metadata.to_json_dict(),
        "history": history.history,
    })
  # No worker may still be writing its backup when the chief deletes it.
  barrier(strategy)
  if is_chief(strategy):
    if tf.io.gfile.exists(backup_dir):
      tf.io.gfile.rmtree(backup_dir)
  elif tf.io.gfile.exists(best_dir):
    tf.io.gfile.rmtree(best_dir)  # this worker's temporary copy
  return TrainResult(history=history.history, best=best, metadata=metadata,
                     saved_model=saved_model_path,
                     resumed_from_step=start_step, model=model)


def complete_heads(heads: Sequence[Optional[Mapping[str, Any]]],
                   n_outputs: int, best_step: int) -> list:
  """ValidationPearson.heads with a record for every head.

  A head whose validation Pearson was never finite (e.g. a constant
  propensity) has no best epoch of its own: it takes the mean-best weights
  (`best_step`), with val_pearson None.
  """
  heads = list(heads) + [None] * (n_outputs - len(heads))
  return [dict(h) if h is not None else
          {"step": int(best_step), "val_pearson": None} for h in heads]


def load_head_models(config, metadata: input_pipeline.DatasetMetadata,
                     heads: Sequence[Mapping[str, Any]], best_dir: str,
                     best_model: tf_keras.Model, best_step: int):
  """[n_outputs] networks, head j's with the weights of heads[j]["step"].

  Heads whose step is `best_step` share `best_model` (already restored to
  those weights); every other step is loaded once into a new network.
  """
  by_step = {int(best_step): best_model}
  out = []
  for j, head in enumerate(heads):
    step = int(head["step"])
    if step not in by_step:
      prefix = os.path.join(head_checkpoint_dir(best_dir, step), "ckpt")
      if not tf.io.gfile.exists(prefix + ".index"):
        raise TrainingError(
            f"head {j}'s best weights (step {step}) are missing: no "
            f"{prefix}.index")
      net = model_lib.GlassyGraphNetwork.from_model_config(
          config.model, n_outputs=metadata.n_outputs)
      model_lib.build_variables(net)
      tf.train.Checkpoint(model=net).read(prefix).expect_partial()
      by_step[step] = net
    out.append(by_step[step])
  return out


def _tensorboard_available() -> bool:
  try:
    import tensorboard  # pylint: disable=g-import-not-at-top,unused-import
    return True
  except ImportError:
    return False


def backup_step(backup_dir: str, steps_per_epoch: int) -> int:
  """Global step at which BackupAndRestore will resume (0 if no backup).

  Mirrors tf_keras' WorkerTrainingState.maybe_load_initial_counters_from_ckpt
  for step-level backups, so the input pipeline can skip the examples of the
  steps already trained.
  """
  latest = tf.train.latest_checkpoint(os.path.join(backup_dir, "chief"))
  if not latest:
    return 0
  reader = tf.train.load_checkpoint(latest)
  epoch = int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
  batch = int(reader.get_tensor("ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"))
  if epoch < 0:
    return 0
  if batch < 0:  # an epoch-level backup: the next epoch starts afresh.
    return (epoch + 1) * steps_per_epoch
  return epoch * steps_per_epoch + batch + 1


def restore_best(model: tf_keras.Model, best_dir: str) -> None:
  """Loads the best-on-validation weights saved by ValidationPearson."""
  latest = tf.train.latest_checkpoint(best_dir)
  if not latest:
    raise TrainingError(f"no checkpoint in {best_dir}")
  tf.train.Checkpoint(model=model).restore(latest).expect_partial()


# -------------------------------------------------------------- files ---


def read_json(path: str) -> Dict[str, Any]:
  """A JSON file as a dict; {} if it does not exist."""
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def write_json(path: str, value: Mapping[str, Any]) -> None:
  """Writes strict JSON atomically (temporary file, then rename)."""
  json_files.write_json(path, value, indent=2, sort_keys=True)
