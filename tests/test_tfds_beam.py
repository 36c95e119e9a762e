"""The TFDS builder on a real multi-process Beam runner.

tests/test_tfds_builder.py checks Beam with the in-process FnApiRunner. Here
the same builder runs on Beam's DirectRunner in multi-processing mode with
two SDK worker processes, as a large build would spread files over workers
(`tfds build --beam_pipeline_options=...`): each worker process imports the
builder module by name and reads its share of the files. The examples must
be byte-for-byte those of the plain (no Beam) build, for the published
DeepMind layout (dummy_data/public_dataset/temperature_044/{train,test}/,
restricted-unpickler path) and for our own npz records.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

beam = pytest.importorskip(
    "apache_beam", reason="Apache Beam is not installed (pip install "
    "apache-beam); the multi-process Beam build is not checked")
import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top,wrong-import-position
from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]
DATASETS = REPO / "datasets"
if str(DATASETS) not in sys.path:
  sys.path.insert(0, str(DATASETS))
# pylint: disable-next=g-import-not-at-top,wrong-import-position
from glassy_dynamics import glassy_dynamics_dataset_builder as gd

DUMMY_DATA = DATASETS / "glassy_dynamics" / "dummy_data"
SPLITS = ("train", "validation", "test")


def _examples(builder):
  """split -> {id: {feature: bytes of the numpy value}}."""
  out = {}
  for split in SPLITS:
    out[split] = {}
    for example in tfds.as_numpy(builder.as_dataset(split=split)):
      out[split][example["id"].decode()] = {
          name: (np.asarray(value).dtype.str, np.asarray(value).shape,
                 np.asarray(value).tobytes())
          for name, value in example.items()}
  return out


@pytest.fixture
def worker_commands(monkeypatch):
  """Command lines of the subprocesses started during the test."""
  commands = []
  original = subprocess.Popen.__init__

  def spy(self, args, *a, **k):
    commands.append(" ".join(map(str, args)) if isinstance(
        args, (list, tuple)) else str(args))
    original(self, args, *a, **k)

  monkeypatch.setattr(subprocess.Popen, "__init__", spy)
  # The SDK workers are fresh interpreters: they find the builder module
  # (pickled by reference) on PYTHONPATH, as on a real Beam cluster.
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [str(DATASETS), str(REPO), os.environ.get("PYTHONPATH", "")]))
  return commands


@pytest.mark.parametrize("config,manual_dir", [
    ("deepmind_t044", DUMMY_DATA),  # finds public_dataset/temperature_044/
    ("simulated", DUMMY_DATA),      # the top-level configuration_*.npz
])
def test_multi_process_beam_build_equals_plain_build(tmp_path, config,
                                                     manual_dir,
                                                     worker_commands):
  def build(data_dir, **kwargs):
    builder = gd.Builder(config=config, data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(manual_dir), **kwargs))
    return builder

  def sdk_workers():
    return [c for c in worker_commands if "sdk_worker_main" in c]

  plain = _examples(build(tmp_path / "plain"))
  assert not sdk_workers()
  options = pipeline_options.PipelineOptions(
      runner="DirectRunner", direct_num_workers=2,
      direct_running_mode="multi_processing")
  beam_builder = build(tmp_path / "beam", beam_options=options)
  # Two SDK worker processes really ran the pipeline.
  assert len(sdk_workers()) == 2, worker_commands
  with_beam = _examples(beam_builder)
  assert all(plain[split] for split in SPLITS)
  assert plain == with_beam
  assert beam_builder.info.metadata["skipped_files"] == 0
