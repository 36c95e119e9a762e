r"""Trains the graph network on a TFDS split and exports a SavedModel.

  python train_main.py --config=glassy_dynamics_tf/configs/demo.py \
    --workdir=/tmp/demo_workdir --data_dir=/tmp/tfds \
    --config.train.num_steps=400

Writes WORKDIR/{tensorboard/, best/, backup/ (while running),
saved_model/ (signature `predict`, assets/metadata.json), train_state.json}.
Re-running with the same --workdir resumes a killed run at its last backup,
or, once the run has finished and exported, says so and exits. See
glassy_dynamics_tf/training.py.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from glassy_dynamics_tf import console  # First: quiets TensorFlow's start-up.
from glassy_dynamics_tf import input_pipeline
from glassy_dynamics_tf import training

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. glassy_dynamics_tf/configs/demo.py; "
    "override fields with --config.train.num_steps=100 etc.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory (checkpoints, TensorBoard, "
    "saved_model/); reusing it resumes or reuses the run.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data_dir holding the dataset; default: "
    "config.dataset.data_dir, else ~/tensorflow_datasets.")
_STRATEGY = flags.DEFINE_enum(
    "strategy", None, list(training.STRATEGIES),
    "tf.distribute strategy; default: config.train.strategy.")
_PROGRESS = flags.DEFINE_enum(
    "progress", "auto", ["auto", "bar", "epoch", "none"],
    "Progress output: a bar per epoch, one line per epoch, or none; auto = "
    "bar on a terminal, else one line per epoch.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None:
    raise app.UsageError("--config is required, e.g. "
                         "--config=glassy_dynamics_tf/configs/demo.py")
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required")
  console.quiet_library_logs()
  config = _CONFIG.value
  if _STRATEGY.value:
    with config.unlocked():
      config.train.strategy = _STRATEGY.value
  verbose = {"auto": 1 if sys.stdout.isatty() else 2, "bar": 1, "epoch": 2,
             "none": 0}[_PROGRESS.value]
  try:
    result = training.train(config, _WORKDIR.value,
                            data_dir=_DATA_DIR.value, verbose=verbose)
  except (training.TrainingError, input_pipeline.PipelineError) as e:
    sys.exit(f"train_main: {e}")
  if result.already_finished:
    print(f"{_WORKDIR.value} already holds a finished run "
          f"({result.resumed_from_step} steps); SavedModel: "
          f"{result.saved_model}. Use a new --workdir to train again.")
  else:
    logging.info("best validation scores: %s", result.best)
    print(f"SavedModel: {result.saved_model}")


if __name__ == "__main__":
  app.run(main)
