r"""Turns a trained, evaluated model into a pretrained model of the package.

  python scripts/register_pretrained.py --name=demo --model=demo_output/gnn \
    --report=demo_output/report/report.json \
    --summary="The ./demo.sh network: T = 0.9, N = 1000, 4 timescales." \
    --source="Trained by this project: ./demo.sh (configs/demo.py)."

Copies the SavedModel (--model: a SavedModel or a train workdir) to
glassy_dynamics_tf/pretrained/NAME/saved_model/ and writes model_card.json
and MODEL_CARD.md there: times and ISF levels from the SavedModel's
metadata, state point and data sizes from its stored config, and the test
Pearson per timescale from --report (evaluate_main.py's report.json; the
column --method, default the report's only model). Commit the directory;
`predict_main.py --model=NAME` then works on a fresh clone.
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # Run from anywhere without installing the package.

from glassy_dynamics_tf import pretrained  # pylint: disable=wrong-import-position

_NAME = flags.DEFINE_string("name", None, "Registry name, e.g. demo.")
_MODEL = flags.DEFINE_string("model", None, "SavedModel or train workdir.")
_REPORT = flags.DEFINE_string(
    "report", None, "evaluate_main.py report.json of the test split (omit: "
    "the card has no scores).")
_METHOD = flags.DEFINE_string(
    "method", None, "The model's name in the report (default: its only "
    "model).")
_SUMMARY = flags.DEFINE_string("summary", None, "One line: what it is.")
_SOURCE = flags.DEFINE_string("source", None, "Who trained it, and how.")
_EVALUATION = flags.DEFINE_string(
    "evaluation", "", "What the scores were measured on (split, command); "
    "default: from the report.")
_NOTES = flags.DEFINE_string("notes", "", "Anything else a user must know.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for flag in (_NAME, _MODEL, _SUMMARY, _SOURCE):
    if not flag.value:
      raise app.UsageError(f"--{flag.name} is required")
  report = None
  evaluation = _EVALUATION.value
  if _REPORT.value:
    with open(_REPORT.value, encoding="utf-8") as f:
      report = json.load(f)
    if not evaluation:
      evaluation = (
          f"{report.get('dataset', '?')} {report.get('split', '?')} split, "
          f"{report.get('n_configurations', '?')} configurations: Pearson "
          f"over type-A particles, mean ± std over configurations "
          f"(evaluate_main.py, {_REPORT.value})")
  try:
    entry = pretrained.register_saved_model(
        _NAME.value, _MODEL.value, report, summary=_SUMMARY.value,
        source=_SOURCE.value, method=_METHOD.value, evaluation=evaluation,
        notes=_NOTES.value)
  except pretrained.PretrainedError as e:
    sys.exit(f"register_pretrained: {e}")
  print(pretrained.describe(entry))


if __name__ == "__main__":
  app.run(main)
