"""Tests of input_pipeline: records -> padded, batched, augmented graphs."""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from glassy_dynamics_tf import augmentation
from glassy_dynamics_tf import graphs
from glassy_dynamics_tf import input_pipeline
from glassy_dynamics_tf import io as io_lib
from glassy_dynamics_tf.configs import smoke
from glassy_dynamics_tf.io import record as record_lib

import synthetic_records


@pytest.fixture(name="config")
def _config():
  return smoke.get_config()


@pytest.fixture(name="records", scope="module")
def _records():
  return synthetic_records.make_records(3, n_particles=100)


def _metadata(config, records):
  return input_pipeline.compute_metadata(
      {"train": input_pipeline.records_dataset(records)}, config)


def test_metadata_sizes_times_and_counts(config, records):
  metadata = _metadata(config, records)
  n_edges = [graphs.build_graph(r.positions, r.box, 2.0).n_edges
             for r in records]
  assert metadata.max_nodes >= 101
  assert metadata.max_edges >= max(n_edges)
  assert metadata.times == pytest.approx((0.5, 2.0))
  assert metadata.timescale_indices == (0, 1)
  assert metadata.n_outputs == 2
  assert metadata.num_examples == {"train": 3}
  round_trip = input_pipeline.DatasetMetadata.from_json_dict(
      metadata.to_json_dict())
  assert round_trip == metadata


def test_padded_example_shapes_masks_and_labels(config, records):
  metadata = _metadata(config, records)
  dataset = input_pipeline.graph_dataset(
      input_pipeline.records_dataset(records), config, metadata)
  for record, (features, propensity, weights) in zip(
      records, dataset.as_numpy_iterator()):
    n = record.n_particles
    graph = graphs.build_graph(record.positions, record.box, 2.0)
    assert features["node_types"].shape == (metadata.max_nodes,)
    assert features["edge_vectors"].shape == (metadata.max_edges, 3)
    assert features["node_mask"].sum() == n
    assert features["edge_mask"].sum() == graph.n_edges
    np.testing.assert_array_equal(features["senders"][:graph.n_edges],
                                  graph.senders)
    # Padding edges attach to the last (padding) node.
    assert np.all(features["senders"][graph.n_edges:] ==
                  metadata.max_nodes - 1)
    assert propensity.shape == (metadata.max_nodes, 2)
    # Labels are standardised with the train split's type-A statistics.
    np.testing.assert_allclose(
        propensity[:n] * metadata.target_std + metadata.target_mean,
        record.propensity.T, rtol=1e-5, atol=1e-6)
    assert np.all(propensity[n:] == 0)
    np.testing.assert_array_equal(weights[:n], record.types == 0)
    assert np.all(weights[n:] == 0)


def test_target_statistics_are_type_a_train_moments(config, records):
  metadata = _metadata(config, records)
  a = np.concatenate([r.propensity[:, r.types == 0] for r in records], 1)
  np.testing.assert_allclose(metadata.target_mean, a.mean(1), rtol=1e-6)
  np.testing.assert_allclose(metadata.target_std, a.std(1), rtol=1e-5)
  # The validation split does not contribute; raw labels without the flag.
  with_validation = input_pipeline.compute_metadata(
      {"train": input_pipeline.records_dataset(records[:2]),
       "validation": input_pipeline.records_dataset(records[2:])}, config)
  b = np.concatenate([r.propensity[:, r.types == 0] for r in records[:2]], 1)
  np.testing.assert_allclose(with_validation.target_mean, b.mean(1),
                             rtol=1e-6)
  config.train.standardize_targets = False
  raw = _metadata(config, records)
  assert raw.target_mean == () and raw.target_std == ()
  dataset = input_pipeline.graph_dataset(
      input_pipeline.records_dataset(records), config, raw)
  _, propensity, _ = next(dataset.as_numpy_iterator())
  np.testing.assert_array_equal(propensity[:records[0].n_particles],
                                records[0].propensity.T)


def test_timescale_selection(config, records):
  config.dataset.timescale_indices = (1,)
  metadata = _metadata(config, records)
  assert metadata.n_outputs == 1
  assert metadata.times == pytest.approx((2.0,))
  dataset = input_pipeline.graph_dataset(
      input_pipeline.records_dataset(records[:1]), config, metadata)
  _, propensity, _ = next(dataset.as_numpy_iterator())
  n = records[0].n_particles
  np.testing.assert_allclose(
      propensity[:n, 0] * metadata.target_std[0] + metadata.target_mean[0],
      records[0].propensity[1], rtol=1e-5, atol=1e-6)


def test_bad_timescale_index_names_it(config, records):
  config.dataset.timescale_indices = (0, 5)
  with pytest.raises(input_pipeline.PipelineError, match="index 5"):
    _metadata(config, records)


def test_empty_split_is_an_error(config, records):
  empty = input_pipeline.records_dataset(records).take(0)
  with pytest.raises(input_pipeline.PipelineError, match="'validation'.*empty"):
    input_pipeline.compute_metadata(
        {"train": input_pipeline.records_dataset(records),
         "validation": empty}, config)
  with pytest.raises(input_pipeline.PipelineError, match="no records"):
    input_pipeline.records_dataset([])


def test_configured_max_edges_too_small(config, records):
  config.graph.max_edges = 10
  with pytest.raises(input_pipeline.PipelineError, match="max_edges=10"):
    _metadata(config, records)


def test_train_batches_are_augmented_and_deterministic(config, records):
  metadata = _metadata(config, records)
  graphs_ds = input_pipeline.graph_dataset(
      input_pipeline.records_dataset(records), config, metadata)

  def stream(start_step=0, seed=3):
    return list(input_pipeline.train_dataset(
        graphs_ds, config, batch_size=2, seed=seed,
        start_step=start_step).take(4).as_numpy_iterator())

  first, again = stream(), stream()
  for (x1, y1, w1), (x2, _, _) in zip(first, again):
    assert x1["edge_vectors"].shape == (2, metadata.max_edges, 3)
    assert "box" not in x1
    assert y1.shape == (2, metadata.max_nodes, 2)
    assert w1.shape == (2, metadata.max_nodes)
    np.testing.assert_array_equal(x1["edge_vectors"], x2["edge_vectors"])
  # Resuming at step 2 continues the same stream.
  resumed = stream(start_step=2)
  for (x1, _, _), (x2, _, _) in zip(first[2:], resumed[:2]):
    np.testing.assert_array_equal(x1["edge_vectors"], x2["edge_vectors"])
    np.testing.assert_array_equal(x1["senders"], x2["senders"])

  # Each augmented example is an unaugmented one under a cube symmetry.
  # Examples are told apart by their labels.
  plain = {round(float(y.sum()), 3): x for x, y, _ in
           input_pipeline.eval_dataset(graphs_ds, 1).unbatch()
           .as_numpy_iterator()}
  symmetries = augmentation.cube_symmetries()
  n_changed = 0
  for x, y, _ in first:
    for b in range(2):
      original = plain[round(float(y[b].sum()), 3)]
      np.testing.assert_array_equal(x["senders"][b], original["senders"])
      assert any(np.allclose(original["edge_vectors"] @ m.T,
                             x["edge_vectors"][b], atol=1e-6)
                 for m in symmetries)
      n_changed += not np.array_equal(original["edge_vectors"],
                                      x["edge_vectors"][b])
  assert n_changed > 0


def test_no_augmentation_on_request(config, records):
  config.train.augment = False
  metadata = _metadata(config, records)
  graphs_ds = input_pipeline.graph_dataset(
      input_pipeline.records_dataset(records), config, metadata)
  plain = {round(float(y.sum()), 3): x["edge_vectors"] for x, y, _ in
           graphs_ds.as_numpy_iterator()}
  for x, y, _ in input_pipeline.train_dataset(
      graphs_ds, config, 1).take(3).as_numpy_iterator():
    np.testing.assert_array_equal(
        x["edge_vectors"][0], plain[round(float(y[0].sum()), 3)])


def test_non_cubic_box_and_mixed_sizes(config):
  # A box of 5 x 5.5 x 6 σ: only reflections (and no axis swaps) are allowed.
  rng = np.random.default_rng(0)
  box = np.array([5.0, 5.5, 6.0], np.float32)
  records = []
  for n in (120, 150):
    records.append(record_lib.ConfigurationRecord.create(
        positions=rng.uniform(0, 1, (n, 3)) * box, types=np.arange(n) % 2,
        box=box, propensity=rng.uniform(0, 1, (2, n)), times=[0.5, 2.0],
        temperature=1.0))
  metadata = _metadata(config, records)
  assert metadata.max_nodes >= 151
  graphs_ds = input_pipeline.graph_dataset(
      input_pipeline.records_dataset(records), config, metadata)
  plain = {int(x["node_mask"].sum()): x["edge_vectors"] for x, _, _ in
           graphs_ds.as_numpy_iterator()}
  for x, _, w in input_pipeline.train_dataset(
      graphs_ds, config, 2, seed=1).take(3).as_numpy_iterator():
    for b in range(2):
      original = plain[int(x["node_mask"][b].sum())]
      # Only sign flips: |components| unchanged axis by axis.
      np.testing.assert_allclose(np.abs(x["edge_vectors"][b]),
                                 np.abs(original), atol=1e-6)
    assert set(np.unique(w)) <= {0.0, 1.0}


def test_make_datasets_for_fit(config, records):
  datasets, metadata = input_pipeline.make_datasets(
      config, records={
          "train": input_pipeline.records_dataset(records),
          "validation": input_pipeline.records_dataset(records[:1])})
  x, y, w = next(iter(datasets["train"]))
  assert x["node_types"].shape == (config.train.batch_size, metadata.max_nodes)
  assert y.shape == (config.train.batch_size, metadata.max_nodes, 2)
  assert len(list(datasets["validation"])) == 1


def test_missing_tfds_dataset_is_named(config, tmp_path):
  config.dataset.name = "glassy_dynamics/no_such_config"
  with pytest.raises(input_pipeline.PipelineError,
                     match="split 'train' of TFDS dataset 'glassy_dynamics/"
                     "no_such_config'"):
    input_pipeline.load_records(config, "train", str(tmp_path))


def _build_tfds(directory, n_files, n_particles=100):
  """Synthetic records as the TFDS dataset glassy_dynamics/demo.

  Returns:
    (data_dir, records by file name).
  """
  datasets_dir = os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), "datasets")
  if datasets_dir not in sys.path:
    # The module name `tfds build datasets/glassy_dynamics` and pytest use.
    sys.path.insert(0, datasets_dir)
  # pylint: disable=g-import-not-at-top
  from glassy_dynamics import glassy_dynamics_dataset_builder as gd
  source = directory / "npz"
  source.mkdir(parents=True)
  written = {}
  for i, record in enumerate(synthetic_records.make_records(
      n_files, n_particles=n_particles)):
    name = f"configuration_{i:05d}.npz"
    io_lib.save_npz(record, str(source / name))
    written[name] = record
  builder = gd.Builder(config=gd.GlassyDynamicsConfig(name="demo",
                                                      path=str(source)),
                       data_dir=str(directory / "tfds"))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig())
  return str(directory / "tfds"), written


def test_max_train_examples_takes_a_fixed_nested_prefix(config, tmp_path):
  data_dir, written = _build_tfds(tmp_path, 10)
  by_positions = {r.positions.tobytes(): r for r in written.values()}

  def train_records(k):
    config.dataset.max_train_examples = k
    return [by_positions[x["positions"].tobytes()] for x in
            input_pipeline.load_records(config, "train",
                                        data_dir).as_numpy_iterator()]

  everything = train_records(0)
  assert len(everything) >= 4  # the builder's hash split of 10 files
  # Nested: every subset is the first k of the same fixed order, and reading
  # it again gives the same configurations.
  for k in (1, 2, len(everything) - 1, len(everything)):
    subset = train_records(k)
    assert [r.positions.tobytes() for r in subset] == [
        r.positions.tobytes() for r in everything[:k]]
  assert [r.positions.tobytes() for r in train_records(2)] == [
      r.positions.tobytes() for r in train_records(2)]
  # Validation is never cut.
  config.dataset.max_train_examples = 1
  n_validation = len(list(input_pipeline.load_records(
      config, "validation", data_dir)))
  config.dataset.max_train_examples = 0
  assert n_validation == len(list(input_pipeline.load_records(
      config, "validation", data_dir)))
  # The metadata (count, target statistics) is that of the subset.
  config.dataset.max_train_examples = 2
  metadata = input_pipeline.compute_metadata(
      {"train": input_pipeline.load_records(config, "train", data_dir)},
      config)
  assert metadata.num_examples == {"train": 2}
  a = np.concatenate([r.propensity[:, r.types == 0] for r in everything[:2]],
                     1)
  np.testing.assert_allclose(metadata.target_mean, a.mean(1), rtol=1e-6)
  np.testing.assert_allclose(metadata.target_std, a.std(1), rtol=1e-5)
  # Records handed over in memory must already be cut.
  with pytest.raises(input_pipeline.PipelineError,
                     match="holds 3 configurations but config.dataset."
                     "max_train_examples=2"):
    input_pipeline.compute_metadata(
        {"train": input_pipeline.records_dataset(everything[:3])}, config)
  # More than the split holds, or a negative count: named errors.
  config.dataset.max_train_examples = len(everything) + 1
  with pytest.raises(input_pipeline.PipelineError,
                     match=f"max_train_examples={len(everything) + 1}, but "
                     f"split 'train'.*only {len(everything)}"):
    input_pipeline.load_records(config, "train", data_dir)
  config.dataset.max_train_examples = -1
  with pytest.raises(input_pipeline.PipelineError, match=">= 0"):
    input_pipeline.load_records(config, "train", data_dir)
