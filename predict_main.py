r"""Predicts the propensity of every particle of one configuration.

  python predict_main.py --model=/tmp/demo_workdir \
    --input=configuration_00000.npz --output=/tmp/prediction.npz

  python predict_main.py --model=t044_s09 \
    --input=tests/fixtures/deepmind/test_small.pickle \
    --output=/tmp/t044.npz --export_saved_model=/tmp/t044_sm

  python predict_main.py --list_models

--model: an exported SavedModel, a train workdir (its saved_model/), a
TF1 checkpoint prefix of the 2020 release, or the name of a pretrained model
shipped with the package (glassy_dynamics_tf/pretrained/: t044_s09, the
published network; demo and reference_t064, ours; --list_models shows which
are present, with their model cards). --input: our .npz, a DeepMind
pickle, or (if ASE is installed) extended XYZ / LAMMPS data or dump.
Writes --output (npz: propensity [n, n_outputs], types, times, ...) and an
extended XYZ file with propensity columns for OVITO.

Large boxes are predicted domain by domain (sub-boxes plus a halo of
num_recurrences x cut-off), with the same result as one whole-box call and
memory bounded by --max_particles_per_domain (domains.predict_in_domains).
"""

import os
import sys

from absl import app
from absl import flags

from glassy_dynamics_tf import console  # First: quiets TensorFlow's start-up.
from glassy_dynamics_tf import deepmind_checkpoint
from glassy_dynamics_tf import domains
from glassy_dynamics_tf import prediction
from glassy_dynamics_tf import pretrained
from glassy_dynamics_tf import training
from glassy_dynamics_tf.io import record as record_lib

_MODEL = flags.DEFINE_string(
    "model", None, "SavedModel directory, train workdir, TF1 checkpoint "
    "prefix (e.g. .../t044_s09.ckpt), or a pretrained model name "
    "(--list_models).")
_LIST_MODELS = flags.DEFINE_bool(
    "list_models", False, "List the pretrained models (present or not), "
    "with state point and test Pearson per timescale, and exit.")
_INPUT = flags.DEFINE_string(
    "input", None, "Configuration file: .npz (ours), .pickle (DeepMind), or "
    "with ASE installed .xyz/.extxyz/.data/.dump.")
_OUTPUT = flags.DEFINE_string(
    "output", None, "Output .npz (propensity [n, n_outputs], types, times).")
_OUTPUT_XYZ = flags.DEFINE_string(
    "output_xyz", None, "Extended XYZ with propensity columns (OVITO); "
    "default: --output with suffix .xyz; 'none' to skip.")
_TIMES = flags.DEFINE_list(
    "times", None, "For a TF1 checkpoint: the time (τ) of each output, "
    "which the checkpoint does not store (default: a pretrained model's "
    "card, t044_s09: 0.132; else NaN).")
_MAX_PARTICLES = flags.DEFINE_integer(
    "max_particles_per_domain", 0, "Particles per model call, halo "
    "included: boxes with more are predicted domain by domain (exact). 0: "
    f"auto ({domains.DEFAULT_MAX_PARTICLES_PER_DOMAIN:,}, a few GiB); -1: "
    "always the whole box in one call.", lower_bound=-1)
_EXPORT = flags.DEFINE_string(
    "export_saved_model", None, "For a TF1 checkpoint: also export it as a "
    "SavedModel (signature predict) to this directory.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  console.quiet_library_logs()
  if _LIST_MODELS.value:
    print(pretrained.list_models())
    return
  for flag in (_MODEL, _INPUT, _OUTPUT):
    if not flag.value:
      raise app.UsageError(f"--{flag.name} is required")
  try:
    _predict()
  except (prediction.PredictionError, domains.DomainError,
          training.TrainingError, deepmind_checkpoint.CheckpointError,
          record_lib.RecordError, pretrained.PretrainedError,
          FileNotFoundError) as e:
    sys.exit(f"predict_main: {e}")


def _predict():
  times = [float(t) for t in _TIMES.value] if _TIMES.value else None
  predictor = prediction.load_predictor(_MODEL.value, times=times)
  print(f"model: {predictor.source}", flush=True)
  if _EXPORT.value:
    path, _ = prediction.resolve_model(_MODEL.value)
    if not prediction.is_tf1_checkpoint(path):
      raise app.UsageError("--export_saved_model needs a TF1 checkpoint "
                           "--model (a SavedModel is already exported)")
    prediction.export_deepmind_checkpoint(
        path, _EXPORT.value, predictor.metadata["times"])
    print(f"SavedModel: {_EXPORT.value}")
  record = prediction.read_configuration(_INPUT.value)
  try:
    plan = predictor.plan_domains(record.positions, record.box,
                                  _MAX_PARTICLES.value)
  except domains.DomainError as e:
    raise prediction.PredictionError(
        f"--max_particles_per_domain={_MAX_PARTICLES.value}: {e}") from e
  print(f"domains: {plan.describe()}", flush=True)
  propensity = domains.predict_with_decomposition(
      predictor.predict, record.positions, record.types, plan,
      _print_progress).propensity
  xyz = _OUTPUT_XYZ.value or os.path.splitext(_OUTPUT.value)[0] + ".xyz"
  xyz = None if xyz.lower() == "none" else xyz
  prediction.write_outputs(record, propensity, predictor, _OUTPUT.value, xyz)
  print(f"{record.n_particles} particles, {propensity.shape[1]} timescale(s) "
        f"{[float(f'{t:.6g}') for t in predictor.times]} τ: {_OUTPUT.value}" +
        (f", {xyz}" if xyz else ""))


def _print_progress(step: domains.DomainProgress):
  if step.n_domains > 1:
    print(f"domain {step.done}/{step.n_domains} {step.index}: "
          f"{step.region_particles:,} particles, {step.interior_particles:,} "
          f"predicted, {step.seconds:.1f} s", flush=True)


if __name__ == "__main__":
  app.run(main)
