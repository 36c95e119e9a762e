"""Propensity prediction for single configurations (`predict_main.py`).

```
 --model  SavedModel dir │ train workdir │ TF1 checkpoint prefix (2020 release)
          │ pretrained model name (pretrained/: t044_s09, demo, ...)
            │ load_predictor                 │ deepmind_checkpoint + PropensityPredictor
            ▼                                ▼
        Predictor(positions [n,3], types [n], box [3]) -> [n, n_outputs]
            │ large boxes: predict_in_domains (domains.py: sub-boxes + halo,
            │ exact)
 --input  .npz (ours) │ .pickle (DeepMind) │ anything ASE reads (optional)
            │ read_configuration
            ▼
 --output npz (propensity, types, times, ...) + extended XYZ for OVITO
```
"""

import dataclasses
import json
import math
import os
import re
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from glassy_dynamics_tf import domains
from glassy_dynamics_tf import io as io_lib
from glassy_dynamics_tf import pretrained
from glassy_dynamics_tf import training
from glassy_dynamics_tf.io import record as record_lib

# File suffixes handed to ASE (extended XYZ, LAMMPS data and dump files).
ASE_SUFFIXES = (".xyz", ".extxyz", ".data", ".lmp", ".dump", ".lammpstrj")
# Names of the published checkpoints: t044_s09 = T 0.44, self-ISF level 0.9.
_RELEASE_NAME = re.compile(r"t(\d)(\d+)_s(\d)(\d+)")
class PredictionError(ValueError):
  """A model or input file that prediction cannot use."""


@dataclasses.dataclass
class Predictor:
  """A loaded model.

  Attributes:
    predict: (positions [n,3] float32, types [n] int32, box [3] float32) ->
      [n, n_outputs] float32 propensity, σ_AA units.
    metadata: times, isf_levels, timescale_indices, dataset, config, ...
    source: what was loaded (for messages).
    module: the tf.Module behind `predict` (to export it).
    cutoff: graph cut-off, σ_AA units (None if the metadata lacks it).
    num_recurrences: message-passing steps of the core (None if unknown).
  """
  predict: Callable[..., np.ndarray]
  metadata: Dict[str, Any]
  source: str
  module: Optional[tf.Module] = None
  cutoff: Optional[float] = None
  num_recurrences: Optional[int] = None

  @property
  def receptive_field(self) -> float:
    """σ_AA units: a particle's output depends only on particles closer than
    this (each core step passes messages one cut-off further; encoder and
    decoder act per node and edge).

    Raises:
      PredictionError: the metadata gave no cut-off or no num_recurrences.
    """
    if self.cutoff is None or self.num_recurrences is None:
      raise PredictionError(
          f"{self.source}: the model's receptive field is unknown (its "
          f"metadata has no graph.cutoff or config.model.num_recurrences), "
          f"so it can only predict whole boxes in one call (max_particles "
          f"-1, predict_main --max_particles_per_domain=-1)")
    return self.num_recurrences * self.cutoff

  def plan_domains(self, positions, box,
                   max_particles: int = 0) -> domains.DomainDecomposition:
    """How `predict_in_domains` will cut this box (`domains.plan_domains`).

    Args:
      positions: [n, 3] float, σ_AA units (any coordinates).
      box: [3] float, orthorhombic box edges, σ_AA units.
      max_particles: particles per call, halo included: 0 for
        domains.DEFAULT_MAX_PARTICLES_PER_DOMAIN, -1 to always predict the whole
        box in one call, or a positive budget.

    Raises:
      domains.DomainError: max_particles is not -1, 0 or positive, or too small.
      PredictionError: the box does not fit in one call and the receptive
        field is unknown.
    """
    budget = domains.resolve_max_particles(max_particles)
    n = int(np.shape(positions)[0])
    if budget is None or n <= budget:
      # One call: the halo does not matter (and may be unknown, for a
      # SavedModel exported without it); an infinite halo never splits.
      return domains.plan_domains(positions, box, math.inf,
                                  max(n, budget or n))
    return domains.plan_domains(positions, box,
                                self.receptive_field + domains.HALO_MARGIN,
                        budget)

  def predict_in_domains(
      self, positions, types, box, max_particles: int = 0,
      progress: Optional[Callable[[domains.DomainProgress], None]] = None
  ) -> domains.DomainPrediction:
    """`predict` for boxes of any size, in memory bounded by a domain.

    Args:
      positions: [n, 3] float32, σ_AA units (any coordinates).
      types: [n] int32, 0 = A, 1 = B.
      box: [3] float32, orthorhombic box edges, σ_AA units.
      max_particles: as for `plan_domains`.
      progress: called with a DomainProgress after each call.

    Returns:
      DomainPrediction, equal to `predict(positions, types, box)` up to
      float32 round-off.

    Raises:
      as `plan_domains`.
    """
    decomposition = self.plan_domains(positions, box, max_particles)
    return domains.predict_with_decomposition(
        self.predict, positions, types, decomposition, progress)

  @property
  def times(self) -> np.ndarray:
    return np.asarray([np.nan if t is None else t
                       for t in self.metadata.get("times", [])], np.float32)

  @property
  def isf_levels(self) -> np.ndarray:
    return np.asarray([np.nan if t is None else t
                       for t in self.metadata.get("isf_levels", [])],
                      np.float32)


def is_tf1_checkpoint(path: str) -> bool:
  """A checkpoint prefix (PATH.index exists), not a SavedModel directory."""
  return tf.io.gfile.exists(path + ".index")


def resolve_model(model: str,
                  pretrained_root: str = pretrained.PRETRAINED_DIR
                  ) -> Tuple[str, Optional[pretrained.Entry]]:
  """What --model names: (path, None) for an existing path, or (asset path,
  entry) for a pretrained model name.

  A path wins over a name (a directory `demo/` in the working directory is
  loaded, not the pretrained `demo`).

  Raises:
    PredictionError: a name that is unknown or whose files are missing
      (the message lists the known names or says how to produce the model).
  """
  if (tf.io.gfile.exists(model) or is_tf1_checkpoint(model) or
      not pretrained.looks_like_name(model)):
    return model, None
  try:
    entry = pretrained.get(model, pretrained_root)
  except pretrained.PretrainedError as e:
    raise PredictionError(f"--model {model}: not a file or directory, and {e}"
                          ) from e
  return entry.asset_path, entry


def load_predictor(path: str, times: Optional[Sequence[float]] = None,
                   pretrained_root: str = pretrained.PRETRAINED_DIR
                   ) -> Predictor:
  """Loads a SavedModel, a train workdir's SavedModel, a TF1 checkpoint, or
  a pretrained model by name.

  Args:
    path: SavedModel directory, train workdir (holding saved_model/), a
      published TF1 checkpoint prefix such as .../t044_s09.ckpt, or the name
      of a pretrained model (`pretrained.list_models()`, e.g. t044_s09).
    times: for a TF1 checkpoint, the time (τ units) of each output; the
      checkpoint does not store it (default: the model card's times for a
      pretrained model, else NaN).
    pretrained_root: where names are looked up (tests use their own).

  Raises:
    PredictionError: nothing loadable at `path`.
  """
  path, entry = resolve_model(path, pretrained_root)
  if entry is not None and times is None and entry.card is not None:
    times = entry.card.times
  if is_tf1_checkpoint(path):
    predictor = _load_tf1_checkpoint(path, times)
  else:
    predictor = _load_saved_model(path)
  if entry is not None:
    predictor.metadata["pretrained_model"] = entry.name
    predictor.source = f"pretrained model {entry.name} ({path})"
  return predictor


def _load_saved_model(path: str) -> Predictor:
  for candidate in (path, os.path.join(path, training.SAVED_MODEL_DIR)):
    if tf.io.gfile.exists(os.path.join(candidate, "saved_model.pb")):
      loaded = tf.saved_model.load(candidate)
      if "predict" not in loaded.signatures:
        raise PredictionError(
            f"{candidate}: the SavedModel has no 'predict' signature (found "
            f"{sorted(loaded.signatures)}); export it with "
            f"training.export_saved_model")
      fn = loaded.signatures["predict"]

      def predict(positions, types, box, fn=fn):
        return fn(positions=tf.constant(positions, tf.float32),
                  types=tf.constant(types, tf.int32),
                  box=tf.constant(box, tf.float32))["propensity"].numpy()

      metadata = training.load_saved_model_metadata(candidate)
      cutoff, num_recurrences = receptive_field_from_metadata(metadata)
      return Predictor(predict, metadata, candidate, loaded, cutoff,
                       num_recurrences)
  raise PredictionError(
      f"--model {path}: neither a SavedModel directory, a train workdir with "
      f"{training.SAVED_MODEL_DIR}/saved_model.pb, a TF1 checkpoint "
      f"prefix ({path}.index), nor a pretrained model name "
      f"({', '.join(pretrained.names())})")


def receptive_field_from_metadata(metadata: Dict[str, Any]
                                  ) -> Tuple[Optional[float], Optional[int]]:
  """(cutoff σ_AA, num_recurrences) of an exported SavedModel's metadata.

  export_saved_model stores `graph.cutoff` and the whole config (whose
  `model.num_recurrences` counts the core steps); None where missing.
  """
  graph = metadata.get("graph") or {}
  config = metadata.get("config") or {}
  cutoff = graph.get("cutoff", (config.get("graph") or {}).get("cutoff"))
  steps = (config.get("model") or {}).get("num_recurrences")
  return (None if cutoff is None else float(cutoff),
          None if steps is None else int(steps))


def deepmind_metadata(path: str, n_outputs: int,
                      times: Optional[Sequence[float]] = None
                      ) -> Dict[str, Any]:
  """Metadata of a published checkpoint, from its name (t044_s09 -> T 0.44,
  self-ISF 0.9) and the optional times."""
  name = os.path.basename(path)
  match = _RELEASE_NAME.search(name)
  isf = [None] * n_outputs
  temperature = None
  if match:
    temperature = float(f"{match.group(1)}.{match.group(2)}")
    isf = [float(f"{match.group(3)}.{match.group(4)}")] * n_outputs
  if times is None:
    times = [math.nan] * n_outputs
  if len(times) != n_outputs:
    raise PredictionError(f"{len(times)} times given for a checkpoint with "
                          f"{n_outputs} output(s)")
  return {
      "dataset_name": f"deepmind_release/{name}",
      "times": [float(t) for t in times],
      "isf_levels": isf,
      "timescale_indices": list(range(n_outputs)),
      "temperature": temperature,
      "source_checkpoint": os.path.abspath(path),
  }


def _load_tf1_checkpoint(path: str, times) -> Predictor:
  from glassy_dynamics_tf import deepmind_checkpoint  # pylint: disable=g-import-not-at-top
  imported = deepmind_checkpoint.load_deepmind_checkpoint(path)
  metadata = deepmind_metadata(path, imported.n_outputs, times)
  metadata_json = json.dumps(metadata)
  module = training.PropensityPredictor(
      imported.network, imported.config.graph.cutoff,
      imported.config.graph.self_loops, metadata_json)

  def predict(positions, types, box):
    return module.predict(tf.constant(positions, tf.float32),
                          tf.constant(types, tf.int32),
                          tf.constant(box, tf.float32))["propensity"].numpy()

  return Predictor(predict, metadata, path, module,
                   float(imported.config.graph.cutoff),
                   int(imported.config.model.num_recurrences))


def export_deepmind_checkpoint(path: str, output_dir: str,
                               times: Optional[Sequence[float]] = None) -> str:
  """Exports a published TF1 checkpoint as our `predict` SavedModel.

  Args:
    path: checkpoint prefix, e.g. .../t044_s09.ckpt.
    output_dir: SavedModel directory to write.
    times: τ units, the time of each output (NaN if not given).

  Returns:
    output_dir.
  """
  from glassy_dynamics_tf import deepmind_checkpoint  # pylint: disable=g-import-not-at-top
  imported = deepmind_checkpoint.load_deepmind_checkpoint(path)
  return training.export_saved_model(
      imported.network, imported.config,
      deepmind_metadata(path, imported.n_outputs, times), output_dir)


def ase_available() -> bool:
  """Whether ASE (optional, for .xyz / LAMMPS inputs) is installed."""
  try:
    import ase.io  # pylint: disable=g-import-not-at-top,unused-import
    return True
  except ImportError:
    return False


def read_configuration(path: str) -> record_lib.ConfigurationRecord:
  """One configuration: our .npz, a DeepMind pickle, or (with ASE) a file
  ASE reads (extended XYZ, LAMMPS data/dump).

  ASE files carry no propensity; the record holds an empty timescale axis.
  Types: an integer `type` column if present (0/1, or LAMMPS 1/2), else
  the atomic numbers as LAMMPS types (1 = A, 2 = B).

  Raises:
    PredictionError: unknown suffix, ASE missing, or a non-orthorhombic cell.
  """
  suffix = os.path.splitext(path)[1].lower()
  if suffix in io_lib.NPZ_SUFFIXES + io_lib.PICKLE_SUFFIXES:
    return io_lib.load_configuration(path)
  if suffix not in ASE_SUFFIXES:
    raise PredictionError(
        f"--input {path}: unknown suffix '{suffix}'; expected .npz, .pickle "
        f"or (with ASE installed) one of {ASE_SUFFIXES}")
  try:
    import ase.io  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise PredictionError(
        f"--input {path}: reading '{suffix}' files needs ASE "
        f"(pip install ase), which is not installed") from e
  fmt = {".data": "lammps-data", ".lmp": "lammps-data",
         ".dump": "lammps-dump-text", ".lammpstrj": "lammps-dump-text"}.get(
             suffix)
  atoms = ase.io.read(path, format=fmt)
  cell = np.asarray(atoms.cell[:], np.float64)
  if np.any(np.abs(cell - np.diag(np.diag(cell))) > 1e-6):
    raise PredictionError(f"--input {path}: the cell {cell.tolist()} is not "
                          f"orthorhombic")
  if "type" in atoms.arrays:
    types = np.asarray(atoms.arrays["type"]).astype(np.int64).reshape(-1)
  else:
    types = atoms.get_atomic_numbers().astype(np.int64)
  if types.size and types.min() >= 1:  # LAMMPS numbering 1 = A, 2 = B.
    types = types - 1
  return record_lib.ConfigurationRecord.create(
      positions=atoms.get_positions(), types=types, box=np.diag(cell),
      propensity=np.zeros([0, len(atoms)], np.float32),
      times=np.zeros([0], np.float32), temperature=1.0, source=path)


def write_outputs(record: record_lib.ConfigurationRecord,
                  propensity: np.ndarray, predictor: Predictor,
                  output: str, output_xyz: Optional[str]) -> None:
  """Writes the npz (and the extended XYZ, if `output_xyz`).

  npz keys: propensity [n, n_outputs] float32 (σ_AA), types [n] int32, times
  [n_outputs] float32 (τ), isf_levels [n_outputs], positions [n, 3], box [3],
  and, if the input had them, record_propensity [T, n] and record_times [T]
  (the input file's own propensities, for comparison).
  """
  arrays = {
      "propensity": propensity.astype(np.float32),
      "types": record.types,
      "times": predictor.times,
      "isf_levels": predictor.isf_levels,
      "positions": record.positions,
      "box": record.box,
  }
  if record.n_timescales:
    arrays["record_propensity"] = record.propensity
    arrays["record_times"] = record.times
  directory = os.path.dirname(os.path.abspath(output))
  os.makedirs(directory, exist_ok=True)
  tmp = output + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, output)
  if output_xyz:
    write_extxyz(output_xyz, record.positions, record.types, record.box,
                 propensity, predictor.times)


def write_extxyz(path: str, positions, types, box, propensity,
                 times) -> None:
  """Extended XYZ (OVITO, ASE) with one propensity column per timescale.

  Species are written as A / B (Kob-Andersen large / small), plus an integer
  `type` column (0 = A, 1 = B) and columns `propensity_<j>` (σ_AA units) for
  the time times[j] (given in the comment line).
  """
  positions = np.asarray(positions, np.float64)
  types = np.asarray(types).reshape(-1)
  propensity = np.asarray(propensity, np.float64).reshape(len(types), -1)
  box = np.asarray(box, np.float64)
  n_out = propensity.shape[1]
  properties = "species:S:1:pos:R:3:type:I:1:" + ":".join(
      f"propensity_{j}:R:1" for j in range(n_out))
  lattice = (f"{box[0]:.8f} 0 0 0 {box[1]:.8f} 0 0 0 {box[2]:.8f}")
  times_text = " ".join(f"{float(t):.6g}" for t in times)
  lines = [str(len(types)),
           f'Lattice="{lattice}" Properties={properties} pbc="T T T" '
           f'propensity_times="{times_text}"']
  names = {0: "A", 1: "B"}
  for i in range(len(types)):
    values = " ".join(f"{v:.8g}" for v in propensity[i])
    lines.append(f"{names.get(int(types[i]), str(int(types[i])))} "
                 f"{positions[i, 0]:.8f} {positions[i, 1]:.8f} "
                 f"{positions[i, 2]:.8f} {int(types[i])} {values}")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(tmp, path)
