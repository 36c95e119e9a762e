r"""Seconds per training step of the graph network (model.fit, CPU or GPU).

  python benchmarks/train_step_time.py --n_particles=1000 \
    --latent_size=32 --num_recurrences=4 --batch_size=1 --jit_compile=true

Synthetic configurations: uniform random positions at the Kob-Andersen
density 1.2 (about 40 neighbours within 2.0 σ per particle, as in the T = 0.9
liquid: N = 1000 gives about 41k edges with self-loops). Prints the mean time
of the timed steps after `--warmup_steps` (compilation excluded).
"""

import os
import sys
import time

from absl import app
from absl import flags
import tensorflow as tf
import tf_keras

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from glassy_dynamics_tf import input_pipeline  # pylint: disable=g-import-not-at-top
from glassy_dynamics_tf import training
from glassy_dynamics_tf.configs import default
import synthetic_records

_N = flags.DEFINE_integer("n_particles", 1000, "Particles per configuration.")
_LATENT = flags.DEFINE_integer("latent_size", 64, "model.latent_size.")
_RECURRENCES = flags.DEFINE_integer("num_recurrences", 7,
                                    "model.num_recurrences.")
_BATCH = flags.DEFINE_integer("batch_size", 1, "train.batch_size.")
_JIT = flags.DEFINE_bool("jit_compile", True, "train.jit_compile.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 3, "Untimed steps.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps.")
_THREADS = flags.DEFINE_integer("threads", 0, "intra/inter-op threads "
                                "(0 = TF default).")


class _Timer(tf_keras.callbacks.Callback):

  def __init__(self, warmup):
    super().__init__()
    self.warmup, self.times = warmup, []

  def on_train_batch_begin(self, batch, logs=None):
    self._start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    self.times.append(time.perf_counter() - self._start)


def main(argv):
  del argv
  if _THREADS.value:
    tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
    tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
  config = default.get_config()
  config.model.latent_size = _LATENT.value
  config.model.num_recurrences = _RECURRENCES.value
  config.train.batch_size = _BATCH.value
  config.train.jit_compile = _JIT.value
  records = synthetic_records.make_records(2, n_particles=_N.value,
                                           times=(1.0,))
  dataset = input_pipeline.records_dataset(records)
  metadata = input_pipeline.compute_metadata({"train": dataset}, config)
  model = training.create_model(config, metadata)
  stream = input_pipeline.train_dataset(
      input_pipeline.graph_dataset(dataset, config, metadata), config,
      _BATCH.value)
  timer = _Timer(_WARMUP.value)
  model.fit(stream, steps_per_epoch=_WARMUP.value + _STEPS.value, epochs=1,
            callbacks=[timer], verbose=0)
  timed = timer.times[_WARMUP.value:]
  print(f"N={_N.value} edges/config={metadata.max_edges} (padded) "
        f"latent={_LATENT.value} recurrences={_RECURRENCES.value} "
        f"batch={_BATCH.value} jit={_JIT.value}: "
        f"{sum(timed) / len(timed):.3f} s/step (mean of {len(timed)}), "
        f"first step {timer.times[0]:.1f} s, "
        f"{tf.config.list_logical_devices()[-1].device_type}")


if __name__ == "__main__":
  app.run(main)
