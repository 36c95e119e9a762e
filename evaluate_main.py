r"""Evaluates trained models and physics baselines on a dataset split.

  python evaluate_main.py --model=/tmp/workdir --dataset=glassy_dynamics/demo \
    --split=test --baselines=potential_energy,symmetry_ridge,softness \
    --output_dir=/tmp/eval

Prints the report (evaluation.format_report): per timescale, the headline
metrics (Pearson, ROC-AUC and balanced accuracy of the top-10 % mobile class,
over the type-A particles of each configuration) as mean ± s.e. over
configurations for every model and baseline; the split-half noise ceiling
and r/ceiling when every record has propensity_halves (else "unknown"); the
paired model − baseline differences with their s.e.; and whether each model
is ahead of every baseline by > 2 s.e. at every timescale. Writes
report.json (docs/CONTRACTS.md, "Evaluation report"), metrics.csv,
table.txt and figures/ (Fig. 3b, Extended Data Figs. 4-7 and 10 of Bapst et
al. 2020, and the headline metrics). Several --dataset values add the
transfer matrix of the paper's Fig. 3c. Settings come from the `evaluate`
section of --config (default: glassy_dynamics_tf/configs/default.py), e.g.
--config.evaluate.top_fraction=0.05 --config.evaluate.n_plot_configurations=4;
--split, --train_split and --baselines override it. See
glassy_dynamics_tf/evaluation.py.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from glassy_dynamics_tf import console  # First: quiets TensorFlow's start-up.
from glassy_dynamics_tf import baselines
from glassy_dynamics_tf import evaluation
from glassy_dynamics_tf import prediction
from glassy_dynamics_tf.io import record as record_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "glassy_dynamics_tf", "configs", "default.py"),
    "Config file; its `evaluate` section sets the split, the baselines, "
    "top_fraction (mobile class of the accuracy/ROC-AUC metrics and of the "
    "slice plots), n_plot_configurations and slice_thickness. Override "
    "with e.g. --config.evaluate.top_fraction=0.05.", lock_config=True)
_MODEL = flags.DEFINE_multi_string(
    "model", [], "SavedModel directory, train workdir holding "
    "saved_model/, or the name of a shipped pretrained SavedModel (e.g. "
    "reference_t064; `predict_main.py --list_models`); repeat the flag or "
    "give a comma list.")
_DATASET = flags.DEFINE_multi_string(
    "dataset", [], "TFDS name, e.g. glassy_dynamics/demo; several give a "
    "transfer matrix. Repeat or comma list.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data_dir; default: config.dataset.data_dir, "
    "else the TFDS default.")
_SPLIT = flags.DEFINE_string(
    "split", None, "Split to evaluate; default: config.evaluate.split.")
_TRAIN_SPLIT = flags.DEFINE_string(
    "train_split", None, "Split the fitted baselines are fitted on; "
    "default: config.evaluate.train_split.")
_BASELINES = flags.DEFINE_list(
    "baselines", None,
    f"Comma list from {sorted(baselines.BASELINES)} (deprecated names "
    f"{sorted(baselines.DEPRECATED_NAMES)} are mapped); empty for none; "
    "default: config.evaluate.baselines.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Where the report and figures go.")
_MAX_CONFIGURATIONS = flags.DEFINE_integer(
    "max_configurations", 0, "Read at most this many configurations per "
    "split (0 = all).")
_FIGURES = flags.DEFINE_bool("figures", True, "Write PNG figures.")


def _split_list(values):
  return [v.strip() for value in values for v in value.split(",") if
          v.strip()]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  console.quiet_library_logs()
  if not _OUTPUT_DIR.value:
    raise app.UsageError("--output_dir is required")
  datasets = _split_list(_DATASET.value)
  if not datasets:
    raise app.UsageError("--dataset is required (e.g. glassy_dynamics/demo)")
  config = _CONFIG.value
  baseline_names = (config.evaluate.baselines if _BASELINES.value is None
                    else _BASELINES.value)
  for name in baseline_names:
    # Deprecated names pass (evaluation.run maps them, logging a note).
    if name not in baselines.BASELINES and (
        name not in baselines.DEPRECATED_NAMES):
      raise app.UsageError(
          f"--baselines: unknown baseline '{name}'; known: "
          f"{sorted(baselines.BASELINES)} (deprecated: "
          f"{sorted(baselines.DEPRECATED_NAMES)})")
  try:
    models = [_model_path(m) for m in _split_list(_MODEL.value)]
    evaluation.run(
        models=models, datasets=datasets,
        output_dir=_OUTPUT_DIR.value, config=config.evaluate,
        split=_SPLIT.value, train_split=_TRAIN_SPLIT.value,
        baseline_names=baseline_names,
        data_dir=_DATA_DIR.value or config.dataset.data_dir or None,
        max_configurations=_MAX_CONFIGURATIONS.value,
        figures=_FIGURES.value)
  except (FileNotFoundError, evaluation.EvaluationError,
          baselines.BaselineError, record_lib.RecordError,
          prediction.PredictionError) as e:
    # Errors of the user's inputs: the message names the thing, no traceback.
    sys.exit(f"evaluate_main.py: error: {e}")


def _model_path(model: str) -> str:
  """A --model value as a SavedModel path (pretrained names resolved)."""
  path, entry = prediction.resolve_model(model)
  if entry is not None and entry.kind != "saved_model":
    raise evaluation.EvaluationError(
        f"--model {model}: the pretrained model is a {entry.kind}, which "
        f"evaluate_main.py cannot read; export it first with `python "
        f"predict_main.py --model={model} --input=CONF --output=OUT.npz "
        f"--export_saved_model=DIR` and pass --model=DIR")
  return path


if __name__ == "__main__":
  app.run(main)
