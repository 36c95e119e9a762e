"""A Keras callback that crashes training, for the resume tests."""

import tf_keras


class CrashAfter(tf_keras.callbacks.Callback):
  """Raises (as a crash would) at the end of training step `after`."""

  def __init__(self, after: int):
    super().__init__()
    self.after, self.steps = after, 0

  def on_train_batch_end(self, batch, logs=None):
    self.steps += 1
    if self.steps == self.after:
      raise RuntimeError("simulated crash")
