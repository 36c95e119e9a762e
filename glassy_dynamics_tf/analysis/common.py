"""Plumbing shared by the analyses: configurations in, a model, files out.

```
 --input files, dirs, globs │ --dataset TFDS split
        └──► load_records ──► ids, records
 --model SavedModel dir │ train workdir │ TF1 checkpoint
        └──► load_model ──► AnalysisModel (predict, cut-off, num_recurrences,
                                           Sonnet network for the embeddings)
 study.run(model, ids, records, output_dir)
        └──► <study>.json (write_json), <study>.png (save_figure)
```

Every study takes an `AnalysisModel`, whose `predict(positions, types, box)`
is the exported SavedModel's `predict` signature (docs/CONTRACTS.md) or the
same function on a network in memory, so the studies are tested on random
weights without exporting anything.
"""

import dataclasses
import glob
import json
import math
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from glassy_dynamics_tf import deepmind_checkpoint
from glassy_dynamics_tf import evaluation
from glassy_dynamics_tf import model as model_lib
from glassy_dynamics_tf import prediction
from glassy_dynamics_tf import training
from glassy_dynamics_tf.io import json_files
from glassy_dynamics_tf.io import record as record_lib

TYPE_A = int(record_lib.ParticleType.A)
# Paper defaults, used when a SavedModel's metadata does not say
# (Bapst et al. 2020, Methods: 2.0 σ cut-off with self-loops, 7 steps).
DEFAULT_CUTOFF = 2.0
DEFAULT_SELF_LOOPS = True


class AnalysisError(ValueError):
  """Inputs an analysis cannot use; the message names the file or flag."""


Predict = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass
class AnalysisModel:
  """A trained (or random) network, as the analyses need it.

  Attributes:
    predict: (positions [n, 3] float32 σ_AA, types [n] int32, box [3]
      float32 σ_AA) -> [n, n_outputs] float32 propensity, σ_AA units. The
      neighbour graph is built inside, from the positions.
    metadata: the SavedModel's assets/metadata.json (times, isf_levels,
      timescale_indices, config, ...).
    source: what was loaded (for reports).
    cutoff: σ_AA, neighbour-graph cut-off the model expects.
    self_loops: whether its graphs carry self-loops.
    num_recurrences: shared core steps (message-passing rounds); None if
      the metadata does not say.
    network: the Sonnet EncodeProcessDecode with the model's weights (for
      the node embeddings), or None if not restored.
    target_mean, target_std: [n_outputs] float32 σ_AA, the standardisation
      `network`'s raw outputs carry (empty: raw outputs are σ_AA already).
  """
  predict: Predict
  metadata: Dict[str, Any]
  source: str
  cutoff: float = DEFAULT_CUTOFF
  self_loops: bool = DEFAULT_SELF_LOOPS
  num_recurrences: Optional[int] = None
  network: Optional[model_lib.EncodeProcessDecode] = None
  target_mean: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros([0], np.float32))
  target_std: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros([0], np.float32))

  @property
  def n_outputs(self) -> int:
    return len(self.metadata.get("times", []))

  @property
  def times(self) -> List[float]:
    """τ units, the time of each output (NaN where unknown)."""
    return [math.nan if t is None else float(t)
            for t in self.metadata.get("times", [])]

  @property
  def isf_levels(self) -> List[float]:
    return [math.nan if t is None else float(t)
            for t in self.metadata.get("isf_levels", [])]

  def record_timescales(self, record: record_lib.ConfigurationRecord,
                        rid: str = "") -> List[int]:
    """The record timescale that each output stands for.

    Raises:
      AnalysisError: the record has no such timescale (e.g. no propensity).
    """
    indices = self.metadata.get("timescale_indices")
    indices = list(indices) if indices else list(range(self.n_outputs))
    if len(indices) != self.n_outputs:
      raise AnalysisError(
          f"model {self.source}: metadata lists {len(indices)} "
          f"timescale_indices for {self.n_outputs} outputs")
    if indices and max(indices) >= record.n_timescales:
      raise AnalysisError(
          f"configuration '{rid}' has {record.n_timescales} propensity "
          f"timescale(s), but model {self.source} predicts record "
          f"timescales {indices}; this study needs the true propensity")
    return indices


def network_predict(network: model_lib.EncodeProcessDecode,
                    cutoff: float = DEFAULT_CUTOFF,
                    self_loops: bool = DEFAULT_SELF_LOOPS,
                    target_mean=(), target_std=()) -> Predict:
  """`predict(positions, types, box)` of a network in memory.

  The same function as the exported SavedModel's signature
  (training.PropensityPredictor), without exporting.
  """
  module = training.PropensityPredictor(network, cutoff, self_loops, "{}",
                                        target_mean, target_std)

  def predict(positions, types, box):
    out = module.predict(tf.constant(positions, tf.float32),
                         tf.constant(types, tf.int32),
                         tf.constant(box, tf.float32))["propensity"]
    return out.numpy()

  return predict


def model_from_network(network: model_lib.EncodeProcessDecode,
                       times: Sequence[float],
                       cutoff: float = DEFAULT_CUTOFF,
                       self_loops: bool = DEFAULT_SELF_LOOPS,
                       timescale_indices: Optional[Sequence[int]] = None,
                       target_mean=(), target_std=(),
                       source: str = "<network>") -> AnalysisModel:
  """An AnalysisModel around a network in memory (tests, notebooks).

  Args:
    network: EncodeProcessDecode with variables.
    times: τ, the time of each of its outputs.
    cutoff, self_loops: the graph it expects.
    timescale_indices: record timescale of each output (default 0, 1, ...).
    target_mean, target_std: [n_outputs] σ_AA, undo standardised targets.
    source: label for reports.
  """
  indices = (list(range(len(times))) if timescale_indices is None else
             [int(i) for i in timescale_indices])
  metadata = {"times": [float(t) for t in times],
              "isf_levels": [None] * len(times),
              "timescale_indices": indices,
              "graph": {"cutoff": float(cutoff),
                        "self_loops": bool(self_loops)}}
  return AnalysisModel(
      predict=network_predict(network, cutoff, self_loops, target_mean,
                              target_std),
      metadata=metadata, source=source, cutoff=float(cutoff),
      self_loops=bool(self_loops),
      num_recurrences=network.num_recurrences, network=network,
      target_mean=np.asarray(target_mean, np.float32),
      target_std=np.asarray(target_std, np.float32))


def load_model(path: str, with_network: bool = False) -> AnalysisModel:
  """Loads a model for the analyses.

  Args:
    path: an exported SavedModel directory, a train workdir (its
      saved_model/), or a TF1 checkpoint prefix of the 2020 release
      (e.g. .../t044_s09.ckpt).
    with_network: also rebuild the Sonnet network and load the weights
      into it (for the node embeddings). For a SavedModel the weights are
      read from its variables/ (the object graph of the exported
      PropensityPredictor: `core` is the EncodeProcessDecode); the
      architecture from the config in assets/metadata.json.

  Returns:
    AnalysisModel.

  Raises:
    AnalysisError: nothing loadable at `path`, or weights that do not fit
      the architecture the metadata describes.
  """
  if prediction.is_tf1_checkpoint(path):
    try:
      imported = deepmind_checkpoint.load_deepmind_checkpoint(path)
    except deepmind_checkpoint.CheckpointError as e:
      raise AnalysisError(f"--model {path}: {e}") from e
    config = imported.config
    metadata = prediction.deepmind_metadata(path, imported.n_outputs)
    metadata["config"] = json.loads(config.to_json_best_effort())
    cutoff = float(config.graph.cutoff)
    self_loops = bool(config.graph.self_loops)
    return AnalysisModel(
        predict=network_predict(imported.network, cutoff, self_loops),
        metadata=metadata, source=path, cutoff=cutoff, self_loops=self_loops,
        num_recurrences=imported.network.num_recurrences,
        network=imported.network)
  try:
    predictor = prediction.load_predictor(path)
  except (prediction.PredictionError, training.TrainingError) as e:
    raise AnalysisError(str(e)) from e
  metadata = predictor.metadata
  config = metadata.get("config") or {}
  graph = metadata.get("graph") or config.get("graph") or {}
  model_config = config.get("model") or {}
  num_recurrences = model_config.get("num_recurrences")
  model = AnalysisModel(
      predict=predictor.predict, metadata=metadata, source=predictor.source,
      cutoff=float(graph.get("cutoff", DEFAULT_CUTOFF)),
      self_loops=bool(graph.get("self_loops", DEFAULT_SELF_LOOPS)),
      num_recurrences=None if num_recurrences is None else
      int(num_recurrences),
      target_mean=np.asarray(metadata.get("target_mean", []), np.float32),
      target_std=np.asarray(metadata.get("target_std", []), np.float32))
  if with_network:
    model.network = restore_network(predictor.source, metadata)
  return model


def restore_network(saved_model_dir: str, metadata: Dict[str, Any]
                    ) -> model_lib.EncodeProcessDecode:
  """The Sonnet network of an exported SavedModel, weights included.

  `training.export_saved_model` saves a PropensityPredictor whose attribute
  `core` is the EncodeProcessDecode, so the SavedModel's variables/ is a
  checkpoint in which a fresh network of the same architecture, attached as
  `core`, finds every one of its variables by object path.

  Args:
    saved_model_dir: the SavedModel directory (holding variables/).
    metadata: its assets/metadata.json (config.model, times).

  Returns:
    EncodeProcessDecode with the exported weights.

  Raises:
    AnalysisError: no model config in the metadata, or weights that do not
      match it.
  """
  model_config = (metadata.get("config") or {}).get("model")
  if not model_config:
    raise AnalysisError(
        f"{saved_model_dir}: assets/metadata.json has no config.model "
        f"section; cannot rebuild the network for its embeddings")
  n_outputs = len(metadata.get("times", []))
  try:
    network = model_lib.EncodeProcessDecode(
        latent_size=model_config["latent_size"],
        mlp_layers=model_config["mlp_layers"],
        num_recurrences=model_config["num_recurrences"],
        n_outputs=n_outputs,
        use_edge_features=model_config.get("use_edge_features", True),
        **model_lib.optional_model_arguments(model_config))
  except (KeyError, ValueError) as e:
    raise AnalysisError(f"{saved_model_dir}: bad config.model in "
                        f"assets/metadata.json: {e!r}") from e
  model_lib.build_variables(network)
  prefix = os.path.join(saved_model_dir, "variables", "variables")
  try:
    status = tf.train.Checkpoint(core=network).read(prefix)
    n_networks = int(metadata.get("n_networks", 1))
    if n_networks > 1:
      # Per-head checkpoint selection: the SavedModel also holds the
      # weights of other epochs (`extra_cores`), used for some heads by
      # `predict`. The analyses see one network, `core`.
      logging.warning(
          "%s holds %d networks (per-head checkpoint selection, heads from "
          "steps %s); the analysis uses the last head's (`core`) for "
          "every head", saved_model_dir, n_networks,
          metadata.get("checkpoint_selection", {}).get("head_steps"))
      status.assert_existing_objects_matched()
    else:
      status.assert_consumed()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise AnalysisError(
        f"{saved_model_dir}: its variables do not fit the architecture of "
        f"its metadata ({dict(model_config)}, {n_outputs} outputs): "
        f"{str(e).splitlines()[0]}") from e
  del status  # releases the restore bookkeeping now, not at interpreter exit
  return network


# ---------------------------------------------------------------- inputs ---


def expand_inputs(inputs: Sequence[str]) -> List[str]:
  """Files named by --input entries: files, directories or glob patterns.

  A directory stands for the .npz, .pickle and .pkl files in it.

  Raises:
    AnalysisError: an entry that names nothing.
  """
  paths = []
  for entry in inputs:
    if os.path.isdir(entry):
      found = sorted(p for p in glob.glob(os.path.join(entry, "*"))
                     if p.lower().endswith((".npz", ".pickle", ".pkl")))
      if not found:
        raise AnalysisError(f"--input {entry}: the directory holds no .npz "
                            f"or .pickle configuration files")
    elif glob.has_magic(entry):
      found = sorted(glob.glob(entry))
      if not found:
        raise AnalysisError(f"--input {entry}: the pattern matches no file")
    elif os.path.exists(entry):
      found = [entry]
    else:
      raise AnalysisError(f"--input {entry}: no such file or directory")
    paths.extend(found)
  return paths


def load_records(inputs: Sequence[str] = (), dataset: str = "",
                 split: str = "test", data_dir: Optional[str] = None,
                 max_configurations: int = 0
                 ) -> Tuple[List[str], List[record_lib.ConfigurationRecord]]:
  """Configurations from files (--input) or a TFDS split (--dataset).

  Args:
    inputs: configuration files, directories or glob patterns (our .npz,
      the authors' .pickle, or what prediction.read_configuration reads).
    dataset: TFDS name, e.g. "glassy_dynamics/demo" (exclusive with inputs).
    split, data_dir: the TFDS split and data_dir.
    max_configurations: read at most this many (0 = all).

  Returns:
    (ids, records): file names without directory and suffix, or TFDS ids.

  Raises:
    AnalysisError: neither or both sources, or unreadable inputs.
  """
  if bool(inputs) == bool(dataset):
    raise AnalysisError("give exactly one of --input (configuration files) "
                        "and --dataset (a TFDS name)")
  if max_configurations < 0:
    raise AnalysisError(f"--max_configurations must be >= 0, got "
                        f"{max_configurations}")
  if dataset:
    try:
      return evaluation.load_split(dataset, split, data_dir,
                                   max_configurations)
    except evaluation.EvaluationError as e:
      raise AnalysisError(f"--dataset: {e}") from e
  paths = expand_inputs(inputs)
  if max_configurations:
    paths = paths[:max_configurations]
  ids, records = [], []
  for path in paths:
    try:
      records.append(prediction.read_configuration(path))
    except (prediction.PredictionError, record_lib.RecordError,
            FileNotFoundError) as e:
      raise AnalysisError(f"--input {path}: {e}") from e
    ids.append(os.path.splitext(os.path.basename(path))[0])
  return ids, records


def select_centres(types: np.ndarray, n_centres: int,
                   rng: np.random.Generator) -> np.ndarray:
  """A random sample of type-A particles (the paper scores type A only).

  Args:
    types: [n] int, 0 = A, 1 = B.
    n_centres: how many (all type-A particles if fewer, or if 0).
    rng: the random generator.

  Returns:
    [min(n_centres, n_A)] int64 indices, sorted.
  """
  candidates = np.flatnonzero(np.asarray(types) == TYPE_A)
  if n_centres and n_centres < candidates.size:
    candidates = rng.choice(candidates, size=n_centres, replace=False)
  return np.sort(candidates).astype(np.int64)


# --------------------------------------------------------------- outputs ---


# Strict, atomic JSON: one implementation for the whole project.
jsonable = json_files.jsonable


def float_array(values) -> np.ndarray:
  """Numbers or nested lists (None for NaN, as in the JSON) -> float64."""

  def convert(value):
    if value is None:
      return math.nan
    if isinstance(value, (list, tuple)):
      return [convert(v) for v in value]
    return value

  return np.asarray(convert(values.tolist() if isinstance(values, np.ndarray)
                            else values), np.float64)


def write_json(path: str, value: Dict[str, Any]) -> str:
  """Strict JSON (NaN as null), written atomically; returns the path."""
  return json_files.write_json(path, value, indent=1)


def pyplot():
  """matplotlib.pyplot on the Agg backend (no display needed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save_figure(fig, path: str) -> str:
  plt = pyplot()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return path


def timescale_label(time: float, isf_level: float) -> str:
  """'t = 0.132 τ (ISF 0.9)' for legends."""
  text = "t = ?" if not math.isfinite(time) else f"t = {time:.3g} τ"
  if math.isfinite(isf_level):
    text += f" (ISF {isf_level:.2g})"
  return text


def model_description(model: AnalysisModel) -> Dict[str, Any]:
  """What every report says about the model."""
  return {"model": model.source, "cutoff": model.cutoff,
          "self_loops": model.self_loops,
          "num_recurrences": model.num_recurrences,
          "times": model.times, "isf_levels": model.isf_levels,
          "timescale_indices": list(model.metadata.get(
              "timescale_indices") or range(model.n_outputs))}
