"""Configurations from TFDS -> padded, batched graphs for `model.fit`.

The pipeline (DESIGN.md, "Data flows one way"):

```
 tfds.load(dataset.name, split)          one example = one configuration
   │  records_dataset / load_records        train: the first
   │                                        dataset.max_train_examples (0 = all)
   ▼
 select timescales (dataset.timescale_indices)
   │  graph_dataset: build_graph_tf ONCE per configuration, pad, cache
   ▼
 padded example: features (CONTRACTS.md "Padded graphs"), labels, weights
   │  train_dataset: shuffle, repeat, skip (resume), cube symmetry, batch
   │  eval_dataset:  batch (no augmentation, no shuffling)
   ▼
 (features [B, ...], propensity [B, max_nodes, n_outputs], weights [B, max_nodes])
```

The neighbour graph of a configuration does not change between epochs, so it
is built once and cached; only the random cube symmetry (Methods, "Data
augmentation") is applied per step, to the edge vectors, which is all the
network sees of the geometry. Padding to static sizes (max_nodes, max_edges,
measured on the data by `compute_metadata` or fixed in the config) gives every
batch the same shapes, which XLA, TPUs and `tf.distribute` need.

Randomness is stateless and keyed on the example's position in the training
stream, so a run resumed at step k (BackupAndRestore) sees exactly the
batches the uninterrupted run would have seen from step k on.
"""

import dataclasses
import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from glassy_dynamics_tf import augmentation
from glassy_dynamics_tf import graphs
from glassy_dynamics_tf import model as model_lib
from glassy_dynamics_tf.io import record as record_lib

# Keys of one record as stored by the TFDS builder (docs/CONTRACTS.md).
RECORD_KEYS = ("positions", "types", "box", "propensity", "times",
               "isf_levels")

# tf.TensorSpec of the record fields the pipeline reads.
RECORD_SIGNATURE = {
    "positions": tf.TensorSpec([None, 3], tf.float32),
    "types": tf.TensorSpec([None], tf.int32),
    "box": tf.TensorSpec([3], tf.float32),
    "propensity": tf.TensorSpec([None, None], tf.float32),
    "times": tf.TensorSpec([None], tf.float32),
    "isf_levels": tf.TensorSpec([None], tf.float32),
}


class PipelineError(ValueError):
  """The data does not fit the configuration (split, timescales, sizes)."""


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
  """What the model and the exported SavedModel need to know about the data.

  Attributes:
    dataset_name: TFDS name (with config), e.g. "glassy_dynamics/demo", or a
      free label for in-memory data.
    times: [n_outputs] float, τ units, the times of the selected timescales.
    isf_levels: [n_outputs] float, self-ISF levels of the selected
      timescales (NaN for fixed times).
    timescale_indices: indices into the records' `times` of the n_outputs
      timescales the network predicts, in output order.
    n_outputs: number of predicted timescales (output heads).
    max_nodes: nodes per padded example (>= largest configuration + 1).
    max_edges: edges per padded example (>= largest graph, self-loops
      included).
    num_examples: split name -> number of configurations.
    target_mean, target_std: [n_outputs] float, σ_AA units, mean and
      standard deviation of the type-A propensity of each selected timescale
      over the train split, when `config.train.standardize_targets`: the
      network then learns (propensity - mean) / std, which weighs every
      timescale equally in the multi-timescale loss (short-time propensities
      are an order of magnitude smaller than those at τ_α). Empty = the
      network learns raw propensities (the paper's single-timescale setup).
      The exported SavedModel undoes the scaling; its outputs are σ_AA.
  """
  dataset_name: str
  times: Tuple[float, ...]
  isf_levels: Tuple[float, ...]
  timescale_indices: Tuple[int, ...]
  max_nodes: int
  max_edges: int
  num_examples: Dict[str, int]
  target_mean: Tuple[float, ...] = ()
  target_std: Tuple[float, ...] = ()

  @property
  def n_outputs(self) -> int:
    return len(self.timescale_indices)

  def to_json_dict(self) -> Dict[str, Any]:
    """JSON-friendly dict (NaN ISF levels become None)."""
    return {
        "dataset_name": self.dataset_name,
        "times": [float(t) for t in self.times],
        "isf_levels": [None if math.isnan(x) else float(x)
                       for x in self.isf_levels],
        "timescale_indices": [int(i) for i in self.timescale_indices],
        "n_outputs": self.n_outputs,
        "max_nodes": int(self.max_nodes),
        "max_edges": int(self.max_edges),
        "num_examples": {k: int(v) for k, v in self.num_examples.items()},
        "target_mean": [float(x) for x in self.target_mean],
        "target_std": [float(x) for x in self.target_std],
    }

  @classmethod
  def from_json_dict(cls, d: Mapping[str, Any]) -> "DatasetMetadata":
    return cls(
        dataset_name=str(d["dataset_name"]),
        times=tuple(float(t) for t in d["times"]),
        isf_levels=tuple(math.nan if x is None else float(x)
                         for x in d["isf_levels"]),
        timescale_indices=tuple(int(i) for i in d["timescale_indices"]),
        max_nodes=int(d["max_nodes"]),
        max_edges=int(d["max_edges"]),
        num_examples={k: int(v) for k, v in d["num_examples"].items()},
        target_mean=tuple(float(x) for x in d.get("target_mean", ())),
        target_std=tuple(float(x) for x in d.get("target_std", ())))


# ------------------------------------------------------------- records ---


def load_records(config, split: str,
                 data_dir: Optional[str] = None) -> tf.data.Dataset:
  """One split of the TFDS dataset `config.dataset.name`, as record dicts.

  Args:
    config: the experiment ConfigDict (reads dataset.name, dataset.data_dir).
    split: "train", "validation" or "test" (any TFDS split string).
    data_dir: TFDS data_dir; None = config.dataset.data_dir, "" = TFDS
      default (~/tensorflow_datasets).

  Returns:
    tf.data.Dataset of dicts with RECORD_KEYS (see RECORD_SIGNATURE), in the
    deterministic order of the TFDS files. For split "train" with
    config.dataset.max_train_examples = k > 0, only the first k examples in
    that fixed order, so a smaller subset is contained in every larger one.

  Raises:
    PipelineError: the dataset or split does not exist or is empty, or
      max_train_examples is negative or exceeds the train split.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = config.dataset.name
  if data_dir is None:
    data_dir = config.dataset.get("data_dir", "")
  limit = max_train_examples(config) if split == "train" else 0
  # A prepared dataset is read from its files in data_dir; the builder need
  # not be importable (training never generates data).
  try:
    dataset, info = tfds.load(name, split=split, data_dir=data_dir or None,
                              shuffle_files=False, download=False,
                              with_info=True)
  except Exception as e:  # TFDS raises a zoo of types here.
    # TFDS appends every dataset it knows; keep the first lines.
    message = "\n".join(str(e).splitlines()[:2])
    raise PipelineError(
        f"cannot load split '{split}' of TFDS dataset '{name}' from data_dir "
        f"'{data_dir or '~/tensorflow_datasets'}': {type(e).__name__}: "
        f"{message}. Build it first: tfds build datasets/glassy_dynamics "
        f"--config=... --manual_dir=... --data_dir=...") from e
  if limit:
    available = info.splits[split].num_examples
    if limit > available:
      # A dataset-size study must not silently train two of its points on
      # the same data.
      raise PipelineError(
          f"config.dataset.max_train_examples={limit}, but split '{split}' "
          f"of TFDS dataset '{name}' holds only {available} configurations")
    # A prefix of the unshuffled read order: the same k configurations on
    # every run, nested in any larger k.
    dataset = dataset.take(limit)
  return dataset.map(lambda ex: {k: ex[k] for k in RECORD_KEYS})


def max_train_examples(config) -> int:
  """config.dataset.max_train_examples, checked (0 = the whole split).

  Raises:
    PipelineError: a negative or non-integer value.
  """
  value = config.dataset.get("max_train_examples", 0) or 0
  if int(value) != value or value < 0:
    raise PipelineError(
        f"config.dataset.max_train_examples must be an integer >= 0 (0 = "
        f"all), found {value!r}")
  return int(value)


def records_dataset(records: Sequence[Any]) -> tf.data.Dataset:
  """In-memory records (ConfigurationRecord or dicts) as a record dataset.

  For tests and for data that is not in TFDS. Every record needs the fields
  of RECORD_KEYS; extra fields are ignored.

  Args:
    records: sequence of `io.record.ConfigurationRecord` or dicts.

  Returns:
    tf.data.Dataset of dicts with RECORD_SIGNATURE.

  Raises:
    PipelineError: no records.
  """
  if not records:
    raise PipelineError("records_dataset: no records given (empty split)")
  arrays = []
  for i, r in enumerate(records):
    d = r.as_dict() if isinstance(r, record_lib.ConfigurationRecord) else r
    missing = [k for k in RECORD_KEYS if k not in d]
    if missing:
      raise PipelineError(f"record {i}: missing field(s) {missing}")
    arrays.append({
        k: np.asarray(d[k], RECORD_SIGNATURE[k].dtype.as_numpy_dtype)
        for k in RECORD_KEYS
    })

  def generator():
    yield from arrays

  return tf.data.Dataset.from_generator(
      generator, output_signature=RECORD_SIGNATURE)


# ------------------------------------------------------------ metadata ---


def resolve_timescale_indices(config, n_timescales: int) -> Tuple[int, ...]:
  """config.dataset.timescale_indices checked against the data.

  Args:
    config: experiment ConfigDict.
    n_timescales: timescales in the records.

  Returns:
    tuple of indices; () in the config means all of them.

  Raises:
    PipelineError: an index outside [-n_timescales, n_timescales) or a
      repeated index.
  """
  indices = tuple(config.dataset.get("timescale_indices", ()) or ())
  if not indices:
    return tuple(range(n_timescales))
  resolved = []
  for i in indices:
    if not -n_timescales <= int(i) < n_timescales:
      raise PipelineError(
          f"config.dataset.timescale_indices={tuple(indices)}: index {i} is "
          f"out of range for a dataset with {n_timescales} timescales")
    resolved.append(int(i) % n_timescales)
  if len(set(resolved)) != len(resolved):
    raise PipelineError(
        f"config.dataset.timescale_indices={tuple(indices)} repeats a "
        f"timescale")
  return tuple(resolved)


def compute_metadata(splits: Mapping[str, tf.data.Dataset], config,
                     dataset_name: Optional[str] = None) -> DatasetMetadata:
  """One pass over the splits: times, timescales and static padding sizes.

  The padding sizes are the largest over every split given (so training and
  validation batches share shapes and compile once), unless the config fixes
  them (graph.max_nodes, graph.max_edges > 0). Graphs are built here with the
  same builder and cut-off as the pipeline.

  Args:
    splits: split name -> record dataset (from `load_records` or
      `records_dataset`).
    config: experiment ConfigDict (dataset, graph sections).
    dataset_name: label for the metadata; default config.dataset.name.

  Returns:
    DatasetMetadata.

  Raises:
    PipelineError: an empty split, records whose timescale count differs,
      configured padding sizes too small for the data, or a train split
      larger than config.dataset.max_train_examples.
  """
  cutoff = float(config.graph.cutoff)
  self_loops = bool(config.graph.self_loops)

  def sizes(example):
    graph = graphs.build_graph_tf(example["positions"], example["box"],
                                  cutoff, self_loops)
    return {
        "n_nodes": tf.shape(example["types"])[0],
        "n_edges": tf.shape(graph.senders)[0],
        "times": example["times"],
        "isf_levels": example["isf_levels"],
        "propensity_a": tf.boolean_mask(
            tf.transpose(example["propensity"]),
            tf.equal(example["types"], int(record_lib.ParticleType.A))),
    }

  n_nodes, n_edges, counts = [], [], {}
  times = isf_levels = None
  standardize = bool(config.train.get("standardize_targets", False))
  moments = np.zeros((3, 0))  # count, sum, sum of squares per timescale
  for split, dataset in splits.items():
    count = 0
    for s in _checked(dataset.map(sizes).as_numpy_iterator(), split,
                      dataset_name or config.dataset.name):
      n_nodes.append(int(s["n_nodes"]))
      n_edges.append(int(s["n_edges"]))
      if split == "train" and standardize:
        p = s["propensity_a"].astype(np.float64)  # [n_A, T]
        if moments.shape[1] != p.shape[1]:
          moments = np.zeros((3, p.shape[1]))
        moments += [np.full(p.shape[1], p.shape[0]), p.sum(0),
                    np.square(p).sum(0)]
      if times is None:
        times, isf_levels = s["times"], s["isf_levels"]
      elif s["times"].shape != times.shape:
        raise PipelineError(
            f"split '{split}', example {count}: {s['times'].size} timescales, "
            f"but earlier examples have {times.size}")
      elif not np.allclose(s["times"], times, rtol=1e-4):
        logging.warning(
            "split '%s', example %d: times %s differ from the first "
            "example's %s; the metadata keeps the first.", split, count,
            s["times"], times)
      count += 1
    if count == 0:
      raise PipelineError(
          f"split '{split}' of dataset "
          f"'{dataset_name or config.dataset.name}' is empty")
    counts[split] = count

  limit = max_train_examples(config)
  if limit and counts.get("train", 0) > limit:
    # Records given directly (not through load_records) must be cut by the
    # caller, or the statistics would not be those of the data trained on.
    raise PipelineError(
        f"split 'train' holds {counts['train']} configurations but "
        f"config.dataset.max_train_examples={limit}; pass only the first "
        f"{limit} (load_records does so for TFDS data)")
  padded = graphs.padding_sizes(n_nodes, n_edges)
  max_nodes = int(config.graph.get("max_nodes", 0) or padded.max_nodes)
  max_edges = int(config.graph.get("max_edges", 0) or padded.max_edges)
  if max_nodes < max(n_nodes) + 1:
    raise PipelineError(
        f"config.graph.max_nodes={max_nodes} is too small: the data has "
        f"{max(n_nodes)} particles, needs >= {max(n_nodes) + 1}")
  if max_edges < max(n_edges):
    raise PipelineError(
        f"config.graph.max_edges={max_edges} is too small: the data has a "
        f"graph with {max(n_edges)} edges")
  indices = resolve_timescale_indices(config, times.size)
  target_mean = target_std = ()
  if standardize:
    if "train" not in counts or not moments[0].all():
      raise PipelineError(
          "config.train.standardize_targets needs type-A particles in a "
          "'train' split to measure the propensity's mean and spread")
    mean = moments[1] / moments[0]
    std = np.sqrt(np.maximum(moments[2] / moments[0] - mean**2, 0.0))
    target_mean = tuple(float(mean[i]) for i in indices)
    # A timescale with no spread (impossible for real data) keeps its scale.
    target_std = tuple(float(std[i]) if std[i] > 0 else 1.0 for i in indices)
  return DatasetMetadata(
      dataset_name=dataset_name or config.dataset.name,
      times=tuple(float(times[i]) for i in indices),
      isf_levels=tuple(float(isf_levels[i]) for i in indices),
      timescale_indices=indices,
      max_nodes=max_nodes,
      max_edges=max_edges,
      num_examples=counts,
      target_mean=target_mean,
      target_std=target_std)


def _checked(iterator, split: str, name: str):
  """Yields from `iterator`, naming split and example in graph errors."""
  index = 0
  while True:
    try:
      value = next(iterator)
    except StopIteration:
      return
    except tf.errors.InvalidArgumentError as e:
      reason = [l for l in e.message.splitlines() if "assertion failed" in l]
      reason = reason[0] if reason else e.message.splitlines()[0]
      reason = reason[reason.find("assertion failed"):]
      raise PipelineError(
          f"dataset '{name}', split '{split}', example {index}: cannot build "
          f"its graph: {reason}") from e
    yield value
    index += 1


# -------------------------------------------------------------- graphs ---


def graph_dataset(records: tf.data.Dataset, config,
                  metadata: DatasetMetadata,
                  cache: bool = True) -> tf.data.Dataset:
  """Records -> padded examples (features, propensity, weights), cached.

  Args:
    records: record dataset.
    config: experiment ConfigDict (graph section).
    metadata: from `compute_metadata` (timescales, padding sizes).
    cache: keep the padded graphs in memory after the first pass (the
      neighbour graph is built once per configuration, not once per epoch).

  Returns:
    tf.data.Dataset of (features, propensity, weights):
      features: dict of the padded-graph contract (CONTRACTS.md):
        node_types [max_nodes] int32, node_mask [max_nodes] float32,
        senders, receivers [max_edges] int32, edge_vectors [max_edges, 3]
        float32 (σ_AA units), edge_mask [max_edges] float32; plus box [3]
        float32 (σ_AA units), which only the augmentation reads (it restricts
        the symmetries to those of the box) and train_dataset /
        eval_dataset drop;
      propensity: [max_nodes, n_outputs] float32, σ_AA units, or
        standardised by metadata.target_mean/std when those are set (0 on
        padding);
      weights: [max_nodes] float32, 1 for real type-A particles, else 0.
  """
  cutoff = float(config.graph.cutoff)
  self_loops = bool(config.graph.self_loops)
  indices = tf.constant(metadata.timescale_indices, tf.int32)
  max_nodes, max_edges = metadata.max_nodes, metadata.max_edges
  target_mean = tf.constant(metadata.target_mean, tf.float32)
  target_std = tf.constant(metadata.target_std, tf.float32)
  # The model's own reading of its config section (and its defaults).
  model_arguments = model_lib.optional_model_arguments(config.model)
  with_descriptors = model_arguments["node_encoding"] == "type_descriptors"
  num_rbf = model_arguments["num_rbf"]
  rbf_cutoff = model_arguments["rbf_cutoff"]

  def to_example(r):
    graph = graphs.build_graph_tf(r["positions"], r["box"], cutoff, self_loops)
    features = graphs.pad_graph_tf(r["types"], graph, max_nodes, max_edges)
    n = tf.shape(r["types"])[0]
    propensity = tf.transpose(tf.gather(r["propensity"], indices))  # [n, T]
    if metadata.target_mean:
      propensity = (propensity - target_mean) / target_std
    propensity = tf.pad(propensity, [[0, max_nodes - n], [0, 0]])
    propensity = tf.ensure_shape(propensity,
                                 [max_nodes, metadata.n_outputs])
    is_a = tf.cast(tf.equal(r["types"], int(record_lib.ParticleType.A)),
                   tf.float32)
    weights = tf.ensure_shape(tf.pad(is_a, [[0, max_nodes - n]]), [max_nodes])
    if with_descriptors:
      # Invariant under the cube symmetries, so computed once here (and
      # cached) instead of at every step inside the model.
      single = graphs.padded_to_graphs_tuple(
          {k: features[k][None] for k in
           ("node_types", "senders", "receivers", "edge_vectors")})
      features["node_descriptors"] = tf.ensure_shape(
          model_lib.node_descriptors(single, num_rbf, rbf_cutoff),
          [max_nodes, model_lib.n_node_descriptors(num_rbf)])
    features["box"] = r["box"]
    return features, propensity, weights

  dataset = records.map(to_example, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
  return dataset.cache() if cache else dataset


def _without_box(features):
  """Drops the `box` entry that only the augmentation needs."""
  return {k: v for k, v in features.items() if k != "box"}


def train_dataset(graphs_ds: tf.data.Dataset, config, batch_size: int,
                  seed: int = 0, start_step: int = 0,
                  examples_per_step: Optional[int] = None) -> tf.data.Dataset:
  """Infinite, shuffled, augmented, batched training stream.

  Element i of the (per-pipeline) stream is a fixed function of (seed, i):
  the shuffle is seeded and the cube symmetry of example i uses the stateless
  seed (seed, i). `start_step` skips the examples of the first start_step
  global steps, so a resumed run continues the same stream.

  Args:
    graphs_ds: from `graph_dataset` (already sharded for this pipeline).
    config: experiment ConfigDict (dataset.shuffle_buffer, train.augment).
    batch_size: examples per batch of this pipeline's replicas (the
      per-replica batch size under tf.distribute).
    seed: int, the run's seed.
    start_step: global steps already trained.
    examples_per_step: examples this pipeline hands out per global step
      (per-replica batch x replicas it feeds); default `batch_size`.

  Returns:
    tf.data.Dataset of (features, propensity, weights) with a leading batch
    dimension, static shapes (drop_remainder).
  """
  buffer = int(config.dataset.get("shuffle_buffer", 64))
  augment = bool(config.train.get("augment", True))
  dataset = graphs_ds.repeat()
  if buffer > 1:
    dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
  dataset = dataset.enumerate()
  skip = int(start_step) * int(examples_per_step or batch_size)
  if skip:
    dataset = dataset.skip(skip)

  def augment_fn(index, example):
    features, propensity, weights = example
    if augment:
      # Methods: a random element of the cube's symmetry group per example
      # (only those mapping a non-cubic box onto itself).
      example_seed = tf.stack([tf.constant(seed, tf.int64), index])
      features = augmentation.augment_padded_graph(
          features, seed=example_seed, box=features["box"])
    return _without_box(features), propensity, weights

  dataset = dataset.map(augment_fn, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
  dataset = dataset.batch(batch_size, drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE)


def eval_dataset(graphs_ds: tf.data.Dataset,
                 batch_size: int) -> tf.data.Dataset:
  """Batched examples in order, no augmentation (validation, test).

  The last batch may be smaller than `batch_size` (every configuration is
  evaluated once).
  """
  dataset = graphs_ds.map(lambda x, y, w: (_without_box(x), y, w))
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def shard_records(records: tf.data.Dataset,
                  input_context: Optional[tf.distribute.InputContext]
                  ) -> tf.data.Dataset:
  """This pipeline's share of the records under multi-worker training."""
  if input_context is None or input_context.num_input_pipelines == 1:
    return records
  return records.shard(input_context.num_input_pipelines,
                       input_context.input_pipeline_id)


def make_datasets(config, data_dir: Optional[str] = None,
                  splits: Sequence[str] = ("train", "validation"),
                  records: Optional[Mapping[str, tf.data.Dataset]] = None,
                  seed: int = 0) -> Tuple[Dict[str, tf.data.Dataset],
                                          DatasetMetadata]:
  """Every step above in one call, for `model.fit` / `model.predict` users.

  Args:
    config: experiment ConfigDict.
    data_dir: TFDS data_dir (default config.dataset.data_dir).
    splits: TFDS splits to load (ignored if `records` is given).
    records: split name -> record dataset instead of TFDS.
    seed: shuffle and augmentation seed of the "train" stream.

  Returns:
    (datasets, metadata): "train" -> the infinite augmented stream of
    batches (train.batch_size); any other split -> its batches in order,
    unaugmented. Elements are (features, propensity [B, max_nodes,
    n_outputs], weights [B, max_nodes]).
  """
  if records is None:
    records = {s: load_records(config, s, data_dir) for s in splits}
  metadata = compute_metadata(records, config)
  batch_size = int(config.train.batch_size)
  datasets = {}
  for split, split_records in records.items():
    graphs_ds = graph_dataset(split_records, config, metadata)
    datasets[split] = (
        train_dataset(graphs_ds, config, batch_size, seed=seed)
        if split == "train" else eval_dataset(graphs_ds, batch_size))
  return datasets, metadata
