"""Import of the authors' published TF1 checkpoints into our modules.

The 2020 release (deepmind-research/glassy_dynamics) saved one checkpoint per
temperature and timescale, e.g. `t044_s09.ckpt` (T = 0.44, self-ISF 0.9). Its
variables live under `Graph/`, with the same sub-module names as our
`model.EncodeProcessDecode`:

  Graph/graph_independent/{node,edge}_model/mlp/linear_{k}/{w,b}   encoder
  Graph/graph_network/{edge,node}_block/mlp/linear_{k}/{w,b}       core
  Graph/graph_independent_1/node_model/mlp/linear_{k}/{w,b}        decoder

Unused at inference, and therefore ignored: the Adam slots (`.../Adam`,
`.../Adam_1`, `beta1_power`, `beta2_power`) and the decoder's edge model
(`Graph/graph_independent_1/edge_model/...`, never used for the outputs).
Every other checkpoint variable must map onto one of ours with the same
shape, and every one of ours must be in the checkpoint; anything else is an
error naming the variable. The architecture facts (edge direction,
self-loops, concatenation order, sum aggregation) are measured in
tests/fixtures/deepmind/README.md; the golden test pins the import. The
checkpoint t044_s09 ships with the package (pretrained/t044_s09/).
"""

import re
from typing import Dict, List, NamedTuple

import ml_collections
import tensorflow as tf

from glassy_dynamics_tf import model as model_lib
from glassy_dynamics_tf.configs import default as default_config

CHECKPOINT_SCOPE = "Graph"
# The release runs the core 7 times (not stored in the checkpoint).
RELEASE_NUM_RECURRENCES = 7
RELEASE_CUTOFF = 2.0
RELEASE_SELF_LOOPS = True

_UNUSED = re.compile(r"(/Adam(_1)?$|^beta[12]_power$|"
                     r"^Graph/graph_independent_1/edge_model/)")
_OUR_PATH = re.compile(
    r"(?:^|/)((?:graph_independent|graph_independent_1|graph_network)/.*?)"
    r"(?::\d+)?$")


class CheckpointError(ValueError):
  """A checkpoint does not match the architecture it is imported into."""


class ImportedCheckpoint(NamedTuple):
  """A published checkpoint loaded into our modules.

  Attributes:
    network: model.EncodeProcessDecode holding the published weights.
    config: full ml_collections config (configs/default.py) with the `model`
      and `graph` sections the checkpoint implies.
    n_outputs: outputs per particle (1 for the published checkpoints).
  """
  network: model_lib.EncodeProcessDecode
  config: ml_collections.ConfigDict
  n_outputs: int


def checkpoint_name(variable_name: str) -> str:
  """Our variable name -> the TF1 checkpoint key.

  `.../encode_process_decode/graph_network/edge_block/mlp/linear_0/w:0`
  -> `Graph/graph_network/edge_block/mlp/linear_0/w`.
  """
  match = _OUR_PATH.search(variable_name)
  if match is None:
    raise CheckpointError(f"variable {variable_name!r} is not part of an "
                          f"EncodeProcessDecode module (no graph_independent/ "
                          f"or graph_network/ scope).")
  return f"{CHECKPOINT_SCOPE}/{match.group(1)}"


def _reader(path: str):
  try:
    return tf.train.load_checkpoint(path)
  except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
    raise CheckpointError(f"{path}: cannot read a TF checkpoint ({e}).")


def infer_model_config(path: str) -> ml_collections.ConfigDict:
  """The config a published checkpoint implies.

  latent_size, mlp_layers and n_outputs are read from the variable shapes;
  num_recurrences (7), the cut-off (2.0) and self-loops are the release's
  (they are not stored in the checkpoint).

  Returns:
    configs/default.py's config with `model` and `graph` set accordingly and
    `model.n_outputs` added.
  """
  shapes = _reader(path).get_variable_to_shape_map()
  prefix = f"{CHECKPOINT_SCOPE}/graph_independent/node_model/mlp/"
  layers = sorted(int(m.group(1)) for k in shapes
                  for m in [re.fullmatch(re.escape(prefix) + r"linear_(\d+)/w",
                                         k)] if m)
  if not layers:
    raise CheckpointError(f"{path}: no variable {prefix}linear_0/w; this is "
                          f"not a glassy-dynamics graph-network checkpoint.")
  decoder = f"{CHECKPOINT_SCOPE}/graph_independent_1/node_model/mlp/"
  decoder_layers = sorted(
      int(m.group(1)) for k in shapes
      for m in [re.fullmatch(re.escape(decoder) + r"linear_(\d+)/w", k)] if m)
  if not decoder_layers:
    raise CheckpointError(f"{path}: no decoder variable {decoder}linear_*/w.")
  edge_w = shapes.get(
      f"{CHECKPOINT_SCOPE}/graph_independent/edge_model/mlp/linear_0/w")
  if edge_w is None:
    raise CheckpointError(f"{path}: no edge encoder variable "
                          f"Graph/graph_independent/edge_model/mlp/linear_0/w.")
  config = default_config.get_config()
  config.model.latent_size = int(shapes[f"{prefix}linear_0/w"][1])
  config.model.mlp_layers = len(layers)
  config.model.num_recurrences = RELEASE_NUM_RECURRENCES
  config.model.use_edge_features = edge_w[0] == 3
  config.model.n_outputs = int(
      shapes[f"{decoder}linear_{decoder_layers[-1]}/w"][1])
  config.graph.cutoff = RELEASE_CUTOFF
  config.graph.self_loops = RELEASE_SELF_LOOPS
  return config


def assign_from_checkpoint(network: model_lib.EncodeProcessDecode,
                           path: str) -> List[str]:
  """Copies a published checkpoint's weights into a built network.

  Args:
    network: EncodeProcessDecode whose variables exist
      (`model.build_variables`), e.g. `GlassyGraphNetwork(...).network`.
    path: checkpoint prefix, e.g. `.../t044_s09.ckpt`.

  Returns:
    the checkpoint keys that were assigned, sorted.

  Raises:
    CheckpointError: one of our variables is missing from the checkpoint or
      has another shape there, or the checkpoint holds a used variable we do
      not have (another architecture). The message names the variable.
  """
  reader = _reader(path)
  shapes = reader.get_variable_to_shape_map()
  ours: Dict[str, tf.Variable] = {}
  for variable in network.variables:
    key = checkpoint_name(variable.name)
    if key in ours:
      raise CheckpointError(f"two of our variables map onto {key!r}.")
    ours[key] = variable
  if not ours:
    raise CheckpointError("the network has no variables yet; call "
                          "model.build_variables(...) before importing.")
  missing = sorted(k for k in ours if k not in shapes)
  if missing:
    raise CheckpointError(
        f"{path}: our variable(s) {missing} are not in the checkpoint "
        f"(architecture mismatch: check latent_size, mlp_layers, n_outputs).")
  extra = sorted(k for k in shapes if k not in ours and not _UNUSED.search(k))
  if extra:
    raise CheckpointError(
        f"{path}: checkpoint variable(s) {extra} have no counterpart in our "
        f"model (another architecture?).")
  for key, variable in sorted(ours.items()):
    if list(shapes[key]) != variable.shape.as_list():
      raise CheckpointError(
          f"{path}: variable {key} has shape {shapes[key]} in the checkpoint "
          f"but {variable.shape.as_list()} in our model.")
  for key, variable in ours.items():
    variable.assign(tf.cast(reader.get_tensor(key), variable.dtype))
  return sorted(ours)


def load_deepmind_checkpoint(path: str) -> ImportedCheckpoint:
  """Loads a published checkpoint into a new EncodeProcessDecode.

  Args:
    path: checkpoint prefix, e.g.
      `glassy_dynamics_tf/pretrained/t044_s09/t044_s09.ckpt`.

  Returns:
    ImportedCheckpoint(network, config, n_outputs). Feed the network graphs
    built with `config.graph` (cut-off 2.0, self-loops).
  """
  config = infer_model_config(path)
  n_outputs = config.model.n_outputs
  network = model_lib.EncodeProcessDecode.from_config(config.model, n_outputs)
  model_lib.build_variables(network)
  assign_from_checkpoint(network, path)
  return ImportedCheckpoint(network=network, config=config,
                            n_outputs=n_outputs)


def load_keras_model(path: str) -> model_lib.GlassyGraphNetwork:
  """A GlassyGraphNetwork carrying a published checkpoint's weights.

  Ready for `predict` and `save` (e.g. SavedModel export). Create it inside
  `strategy.scope()` if it is to be used under a strategy.
  """
  config = infer_model_config(path)
  keras_model = model_lib.GlassyGraphNetwork.from_model_config(
      config.model, config.model.n_outputs)
  model_lib.build_variables(keras_model)
  assign_from_checkpoint(keras_model.network, path)
  return keras_model
