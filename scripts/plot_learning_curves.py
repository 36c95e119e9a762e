r"""Learning curves of a finished (or running) training work directory.

  python scripts/plot_learning_curves.py --workdir=WORKDIR --output=curves.png

Reads WORKDIR/train_state.json (written when training finishes) and
WORKDIR/config.json; prints the per-epoch table and writes the figure
(plots.learning_curves).
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from glassy_dynamics_tf import console  # pylint: disable=g-import-not-at-top,unused-import,wrong-import-position
from glassy_dynamics_tf import plots  # pylint: disable=g-import-not-at-top,wrong-import-position

_WORKDIR = flags.DEFINE_string("workdir", None, "Training work directory.")
_OUTPUT = flags.DEFINE_string("output", None, "PNG to write.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  state_path = os.path.join(_WORKDIR.value, "train_state.json")
  if not os.path.exists(state_path):
    raise app.UsageError(f"{state_path} does not exist: the run has not "
                         "finished (train_state.json is written at the end)")
  with open(state_path) as f:
    state = json.load(f)
  with open(os.path.join(_WORKDIR.value, "config.json")) as f:
    config = json.load(f)
  history = state["history"]
  steps_per_epoch = int(config["train"]["steps_per_epoch"])
  heads = sorted((k for k in history if k.startswith("val_pearson_")),
                 key=lambda k: int(k.rsplit("_", 1)[1]))
  print("step    loss    lr        val_pearson  " + " ".join(
      f"{k[len('val_pearson_'):]:>6s}" for k in heads))
  for e in range(len(history["loss"])):
    lr = history.get("learning_rate", [float("nan")] * (e + 1))[e]
    print(f"{(e + 1) * steps_per_epoch:6d}  {history['loss'][e]:6.3f}  "
          f"{lr:8.2e}  {history['val_pearson'][e]:11.4f}  " +
          " ".join(f"{history[k][e]:6.3f}" for k in heads))
  plots.learning_curves(history, steps_per_epoch, _OUTPUT.value,
                        times=state["metadata"].get("times", ()),
                        title=os.path.basename(os.path.abspath(
                            _WORKDIR.value)))
  print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir", "output"])
  app.run(main)
