"""The TFDS builder (datasets/glassy_dynamics) end to end, on small files.

What a user relies on: a record written by the simulator comes back from the
TFRecords bit for bit; a configuration never changes split when files are
added; a bad file stops the build with its name (or is skipped and counted
when asked); an empty or misplaced source says which directory; Beam and
plain generation give the same dataset; an interrupted build, re-run, gives
the same files; and `tfds build datasets/glassy_dynamics` works from the repo
root.

The builder's own TFDS tests (dummy_data/) are in
datasets/glassy_dynamics/glassy_dynamics_dataset_builder_test.py.
"""

import math
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from glassy_dynamics_tf.io import deepmind_pickle
from glassy_dynamics_tf.io import npz_format
from glassy_dynamics_tf.io import record as record_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO / "datasets") not in sys.path:
  # The module name `glassy_dynamics.glassy_dynamics_dataset_builder` is the
  # one `tfds build datasets/glassy_dynamics` and pytest use: import it once.
  sys.path.insert(0, str(REPO / "datasets"))

# pylint: disable=g-import-not-at-top,wrong-import-position
from glassy_dynamics import glassy_dynamics_dataset_builder as gd
import fixtures

FIXTURE_PICKLE = pathlib.Path(fixtures.DEEPMIND_PICKLE)
SPLITS = ("train", "validation", "test")


# ----------------------------------------------------------------------------
# Helpers.
# ----------------------------------------------------------------------------


def make_record(seed: int, n_particles: int, n_timescales: int = 2,
                **overrides) -> record_lib.ConfigurationRecord:
  """A small valid record; unwrapped positions, awkward float values."""
  rng = np.random.default_rng(seed)
  box = np.array([3.1, 2.9, 3.3]) * (n_particles / 30.0)**(1 / 3)
  fields = dict(
      positions=rng.uniform(-4.0, 8.0, size=(n_particles, 3)),
      types=(rng.uniform(size=n_particles) < 0.2).astype(np.int32),
      box=box,
      times=np.geomspace(0.1, 30.0, n_timescales),
      isf_levels=np.linspace(0.9, 0.3, n_timescales),
      propensity=rng.exponential(0.3, size=(n_timescales, n_particles)),
      temperature=0.44 + 1e-9 * seed,  # not representable in float32
      pressure=2.93,
      n_runs=7,
      source=f"make_record({seed})")
  fields.update(overrides)
  return record_lib.ConfigurationRecord.create(**fields)


def write_npz(directory: pathlib.Path, names, n_particles: int = 10,
              seed0: int = 0):
  """Writes one small record per name; returns name -> record."""
  directory.mkdir(parents=True, exist_ok=True)
  records = {}
  for k, name in enumerate(names):
    record = make_record(seed0 + k, n_particles + k % 3)
    npz_format.save_npz(record, str(directory / name))
    records[name] = record
  return records


def config_for(path, name="simulated", **kwargs):
  return gd.GlassyDynamicsConfig(name=name, path=str(path), **kwargs)


def build(config, data_dir, **download_kwargs):
  builder = gd.Builder(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(**download_kwargs))
  return builder


def examples_by_split(builder):
  """split -> {id: example (numpy)}."""
  out = {}
  for split in SPLITS:
    out[split] = {}
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
      out[split][ex["id"].decode()] = ex
  return out


def assert_bit_identical(example, record):
  """Every contract field; scalars are float32/int32 in the contract."""
  for name in record_lib.ARRAY_FIELDS:
    want, got = getattr(record, name), example[name]
    assert got.dtype == want.dtype, name
    assert got.shape == want.shape, name
    assert got.tobytes() == want.tobytes(), name
  halves = example["propensity_halves"]
  assert halves.dtype == np.float32
  if record.propensity_halves is None:
    # Unknown: an empty [0, T, n] (the builder's docstring).
    assert halves.shape == (0,) + record.propensity.shape
  else:
    assert halves.shape == record.propensity_halves.shape
    assert halves.tobytes() == record.propensity_halves.tobytes()
  for name, want in (("temperature", np.float32(record.temperature)),
                     ("pressure", np.float32(record.pressure)),
                     ("density", np.float32(record.density)),
                     ("n_runs", np.int32(record.n_runs))):
    got = example[name]
    assert got.dtype == want.dtype and got.shape == (), name
    assert got.tobytes() == want.tobytes(), name


def natural_names(prefix, count):
  return [f"{prefix}_{i:05d}.npz" for i in range(count)]


# ----------------------------------------------------------------------------
# Round trip.
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
  """12 npz files with NaN pressure / NaN ISF levels / varying n, built."""
  root = tmp_path_factory.mktemp("simulated")
  names = natural_names("configuration", 12)
  records = {}
  for k, name in enumerate(names):
    overrides = {}
    if k % 3 == 0:
      overrides["pressure"] = math.nan
    if k % 4 == 1:
      overrides["isf_levels"] = None  # fixed times: NaN levels
    if k % 2 == 0:
      # Half-ensemble propensities whose mean is the propensity.
      p = make_record(100 + k, 8 + 5 * k, n_timescales=1 + k % 4).propensity
      spread = np.random.default_rng(k).uniform(-0.5, 0.5, p.shape)
      overrides["propensity_halves"] = np.stack([p * (1 + spread),
                                                 p * (1 - spread)])
    record = make_record(100 + k, 8 + 5 * k, n_timescales=1 + k % 4,
                         **overrides)
    npz_format.save_npz(record, str(root / "in" / name),
                        extra_arrays={"seeds": np.arange(3)})
    records[name] = record
  (root / "in" / "manifest.json").write_text("{}")
  builder = build(config_for(root / "in"), root / "data")
  return root, records, builder


def test_round_trip_is_bit_identical(simulated):
  _, records, builder = simulated
  got = examples_by_split(builder)
  seen = {}
  for split, examples in got.items():
    for key, example in examples.items():
      assert key not in seen, f"{key} in {split} and {seen[key]}"
      seen[key] = split
      assert_bit_identical(example, records[key])
  assert set(seen) == set(records)


def test_splits_follow_the_hash_rule(simulated):
  _, records, builder = simulated
  assignment = gd.assign_splits(list(records), what="test")
  got = examples_by_split(builder)
  for split in SPLITS:
    assert sorted(got[split]) == list(assignment.files[split])
    assert builder.info.splits[split].num_examples == len(got[split])
  assert builder.info.metadata["files_per_split"] == {
      s: len(assignment.files[s]) for s in SPLITS}
  assert builder.info.metadata["skipped_files"] == 0


def test_example_keys_and_ids_have_no_directories(simulated):
  root, _, builder = simulated
  for examples in examples_by_split(builder).values():
    for key in examples:
      assert "/" not in key and str(root) not in key


def test_features_document_shapes_and_units():
  builder = gd.Builder(config="demo", data_dir="/nonexistent")
  features = builder.info.features
  assert features["positions"].shape == (None, 3)
  assert features["propensity"].shape == (None, None)
  for name in ("positions", "box", "propensity", "times", "temperature"):
    doc = features[name].doc.desc
    assert "units" in doc, name
  assert "[n_timescales, n_particles]" in features["propensity"].doc.desc
  halves = features["propensity_halves"]
  assert halves.shape == (None, None, None) and halves.dtype == np.float32
  assert "[2, n_timescales, n_particles]" in halves.doc.desc
  assert "[0, n_timescales, n_particles] (empty) when unknown" in (
      halves.doc.desc)


def test_version_1_1_0_adds_propensity_halves():
  assert str(gd.Builder.VERSION) == "1.1.0"
  assert "propensity_halves" in gd.Builder.RELEASE_NOTES["1.1.0"]
  record = make_record(0, 6, n_timescales=3)
  example = gd.example_from_record("a.npz", record)
  assert example["propensity_halves"].shape == (0, 3, 6)
  halves = np.ones((2, 3, 6), np.float32)
  example = gd.example_from_record(
      "a.npz", make_record(0, 6, n_timescales=3, propensity_halves=halves))
  assert example["propensity_halves"] is not None
  np.testing.assert_array_equal(example["propensity_halves"], halves)


def test_evaluation_reads_the_halves_back_into_records(simulated):
  # The evaluation's reader (evaluation.load_split) turns the feature back
  # into record.propensity_halves: the array, or None for an empty one.
  from glassy_dynamics_tf import evaluation  # pylint: disable=g-import-not-at-top
  root, records, _ = simulated
  seen = 0
  for split in SPLITS:
    ids, got = evaluation.load_split("glassy_dynamics/simulated", split,
                                     data_dir=str(root / "data"))
    for rid, record in zip(ids, got):
      want = records[rid]
      # Scalars come back as float32 (the features'); the arrays exactly.
      for name in record_lib.ARRAY_FIELDS + record_lib.OPTIONAL_ARRAY_FIELDS:
        mine, theirs = getattr(record, name), getattr(want, name)
        if theirs is None:
          assert mine is None, (rid, name)
        else:
          assert mine.tobytes() == theirs.tobytes(), (rid, name)
      seen += want.propensity_halves is not None
  assert seen == 6


# ----------------------------------------------------------------------------
# Split stability.
# ----------------------------------------------------------------------------


def test_adding_files_never_moves_existing_ones():
  rng = np.random.default_rng(0)
  names = [f"configuration_{i:05d}.npz" for i in range(300)]
  before = gd.assign_splits(names)
  assert not before.moved
  for _ in range(5):
    extra = [f"run{rng.integers(1 << 30)}_{i}.npz" for i in range(200)]
    after = gd.assign_splits(names + extra)
    for split in SPLITS:
      assert set(before.files[split]) <= set(after.files[split])
  # Removing files does not move the others either.
  fewer = gd.assign_splits(names[::2])
  for split in SPLITS:
    assert set(fewer.files[split]) <= set(before.files[split])


def test_split_fractions_are_as_configured():
  names = [f"x{i}.npz" for i in range(20000)]
  a = gd.assign_splits(names, validation_fraction=0.1, test_fraction=0.2)
  counts = {s: len(a.files[s]) / len(names) for s in SPLITS}
  assert counts["train"] == pytest.approx(0.7, abs=0.015)
  assert counts["validation"] == pytest.approx(0.1, abs=0.015)
  assert counts["test"] == pytest.approx(0.2, abs=0.015)


def test_split_depends_on_file_name_only():
  assert gd.split_fraction("configuration_00003.npz") == gd.split_fraction(
      "configuration_00003.npz")
  a = gd.assign_splits(["a.npz", "b.npz", "c.npz", "configuration_1.npz"])
  b = gd.assign_splits(["configuration_1.npz", "c.npz", "b.npz", "a.npz"])
  assert a == b


def test_built_splits_are_stable_when_files_are_added(tmp_path):
  first = natural_names("configuration", 30)
  write_npz(tmp_path / "in", first)
  before = examples_by_split(
      build(config_for(tmp_path / "in"), tmp_path / "data1"))
  assert not gd.assign_splits(first).moved  # the property's precondition
  write_npz(tmp_path / "in", natural_names("batch2", 15), seed0=500)
  after = examples_by_split(
      build(config_for(tmp_path / "in"), tmp_path / "data2"))
  for split in SPLITS:
    assert set(before[split]) <= set(after[split]), split
  assert sum(len(v) for v in after.values()) == 45


def test_small_datasets_fill_every_split_deterministically():
  three = gd.assign_splits(natural_names("configuration", 3))
  assert all(len(three.files[s]) == 1 for s in SPLITS)
  four = gd.assign_splits(natural_names("configuration", 4))
  assert all(four.files[s] for s in SPLITS)
  assert four.moved  # the smoke config's 4 files need the rule
  assert gd.assign_splits(natural_names("configuration", 4)) == four


def test_too_few_files_is_an_error_naming_config_and_count():
  with pytest.raises(gd.SplitError, match=r"glassy_dynamics/smoke: 2 file"):
    gd.assign_splits(natural_names("configuration", 2),
                     what="glassy_dynamics/smoke")
  with pytest.raises(gd.SplitError, match="1 file"):
    gd.assign_splits(["aggregated_data_1.pickle"], test_names=["t.pickle"],
                     what="glassy_dynamics/deepmind_t044")


def test_tiny_build_fills_every_split(tmp_path):
  write_npz(tmp_path / "in", natural_names("configuration", 4))
  builder = build(config_for(tmp_path / "in", name="demo"), tmp_path / "data")
  assert all(builder.info.splits[s].num_examples >= 1 for s in SPLITS)
  assert builder.info.metadata["moved_for_small_dataset"]


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------


def _write_bad_files(directory: pathlib.Path):
  """One garbage file and one truncated npz among good ones."""
  write_npz(directory, natural_names("configuration", 8))
  (directory / "configuration_00002.npz").write_bytes(b"not a zip file")
  good = (directory / "configuration_00005.npz").read_bytes()
  (directory / "configuration_00005.npz").write_bytes(good[:len(good) // 2])


@pytest.mark.parametrize("bad", ["configuration_00002.npz",
                                 "configuration_00005.npz"])
def test_corrupt_file_stops_the_build_naming_it(tmp_path, bad):
  write_npz(tmp_path / "in", natural_names("configuration", 8))
  path = tmp_path / "in" / bad
  if bad.endswith("2.npz"):
    path.write_bytes(b"not a zip file")
  else:
    path.write_bytes(path.read_bytes()[:300])  # truncated
  with pytest.raises(gd.BadConfigurationFileError) as info:
    build(config_for(tmp_path / "in"), tmp_path / "data")
  message = str(info.value)
  assert str(path) in message
  assert "glassy_dynamics/simulated" in message
  assert "not a readable .npz" in message  # the reason
  assert not (tmp_path / "data" / "glassy_dynamics" / "simulated" /
              str(gd.Builder.VERSION)).exists()


def test_malformed_record_names_the_field(tmp_path):
  write_npz(tmp_path / "in", natural_names("configuration", 5))
  record = make_record(1, 10)
  arrays = record.as_dict()
  arrays["format_version"] = np.int32(1)
  arrays["types"] = np.full((10,), 7, np.int32)  # neither A nor B
  np.savez(tmp_path / "in" / "configuration_00001.npz", **arrays)
  with pytest.raises(gd.BadConfigurationFileError,
                     match=r"configuration_00001\.npz.*'types'"):
    build(config_for(tmp_path / "in"), tmp_path / "data")


def test_skip_bad_files_skips_and_counts(tmp_path):
  _write_bad_files(tmp_path / "in")
  config = config_for(tmp_path / "in", skip_bad_files=True)
  builder = build(config, tmp_path / "data")
  total = sum(builder.info.splits[s].num_examples for s in SPLITS)
  assert total == 6
  assert builder.info.metadata["skipped_files"] == 2
  assert builder.info.metadata["skipped_file_names"] == [
      "configuration_00002.npz", "configuration_00005.npz"]
  # The count is saved with the dataset.
  reloaded = gd.Builder(config=config, data_dir=str(tmp_path / "data"))
  assert reloaded.info.metadata["skipped_files"] == 2


def test_unsafe_pickle_is_a_bad_file(tmp_path):
  root = tmp_path / "temperature_044"
  _copy_fixture(root, train=3, test=1)
  # A pickle that would call os.system when loaded with plain pickle.
  (root / "train" / "aggregated_data_2.pickle").write_bytes(
      b"cos\nsystem\n(S'echo pwned'\ntR.")
  with pytest.raises(gd.BadConfigurationFileError,
                     match=r"aggregated_data_2\.pickle.*refusing"):
    build(config_for(tmp_path, name="deepmind_t044"), tmp_path / "data")


def test_empty_source_directory_is_an_error_naming_it(tmp_path):
  (tmp_path / "in").mkdir()
  (tmp_path / "in" / "manifest.json").write_text("{}")
  with pytest.raises(gd.SourceLayoutError,
                     match=f"no configuration files .* in {tmp_path / 'in'}"):
    build(config_for(tmp_path / "in"), tmp_path / "data")


def test_missing_source_directory_is_an_error_naming_it(tmp_path):
  with pytest.raises(gd.SourceLayoutError, match=str(tmp_path / "nowhere")):
    build(config_for(tmp_path / "nowhere"), tmp_path / "data")


def test_empty_manual_dir_is_an_error_naming_it(tmp_path):
  (tmp_path / "manual").mkdir()
  builder = gd.Builder(config="demo", data_dir=str(tmp_path / "data"))
  with pytest.raises(gd.SourceLayoutError, match=str(tmp_path / "manual")):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(tmp_path / "manual")))


# ----------------------------------------------------------------------------
# DeepMind pickles.
# ----------------------------------------------------------------------------


def _copy_fixture(root: pathlib.Path, train: int, test: int):
  (root / "train").mkdir(parents=True)
  (root / "test").mkdir(parents=True)
  for i in range(1, train + 1):
    shutil.copy(FIXTURE_PICKLE, root / "train" / f"aggregated_data_{i}.pickle")
  for i in range(10001, 10001 + test):
    shutil.copy(FIXTURE_PICKLE, root / "test" / f"aggregated_data_{i}.pickle")


@pytest.mark.parametrize("layout", ["public_dataset/temperature_044",
                                    "temperature_044", ""])
def test_deepmind_layouts_and_bit_identical_records(tmp_path, layout):
  _copy_fixture(tmp_path / "manual" / layout, train=3, test=2)
  builder = gd.Builder(config="deepmind_t044", data_dir=str(tmp_path / "d"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(tmp_path / "manual")))
  want = deepmind_pickle.load_deepmind_pickle(str(FIXTURE_PICKLE))
  got = examples_by_split(builder)
  assert sorted(got["test"]) == ["aggregated_data_10001.pickle",
                                 "aggregated_data_10002.pickle"]
  assert len(got["train"]) == 2 and len(got["validation"]) == 1
  for examples in got.values():
    for example in examples.values():
      assert_bit_identical(example, want)
  assert want.n_runs == 30


def test_deepmind_missing_layout_lists_expected_folders(tmp_path):
  (tmp_path / "manual" / "something_else").mkdir(parents=True)
  builder = gd.Builder(config="deepmind_t050", data_dir=str(tmp_path / "d"))
  with pytest.raises(gd.SourceLayoutError) as info:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(tmp_path / "manual")))
  message = str(info.value)
  for expected in ("public_dataset/temperature_050/train",
                   "temperature_050/test", "aggregated_data_*.pickle",
                   "gs://deepmind-research-glassy-dynamics"):
    assert expected in message


def test_deepmind_wrong_temperature_folder_is_an_error(tmp_path):
  _copy_fixture(tmp_path / "temperature_047", train=3, test=1)  # T = 0.44
  with pytest.raises(gd.BadConfigurationFileError,
                     match=r"aggregated_data_\d+\.pickle.*0\.44.*0\.47"):
    build(config_for(tmp_path, name="deepmind_t047"), tmp_path / "data")


# ----------------------------------------------------------------------------
# Beam, re-runs, CLI.
# ----------------------------------------------------------------------------


def test_beam_gives_the_same_dataset_and_counts_skips(tmp_path):
  # FnApiRunner: Beam's in-process runner (DirectRunner would first try to
  # download the Prism runner).
  # pylint: disable-next=g-import-not-at-top
  from apache_beam.runners.portability import fn_api_runner
  _write_bad_files(tmp_path / "in")
  config = config_for(tmp_path / "in", skip_bad_files=True)
  plain = examples_by_split(build(config, tmp_path / "plain"))
  beam_builder = build(config, tmp_path / "beam",
                       beam_runner=fn_api_runner.FnApiRunner())
  assert beam_builder.info.metadata["skipped_files"] == 2
  # Names are only listed without Beam: this build did go through Beam.
  assert "skipped_file_names" not in beam_builder.info.metadata
  with_beam = examples_by_split(beam_builder)
  for split in SPLITS:
    assert sorted(plain[split]) == sorted(with_beam[split])
    for key, example in plain[split].items():
      for field, value in example.items():
        assert np.asarray(value).tobytes() == np.asarray(
            with_beam[split][key][field]).tobytes()


def test_rerun_after_interrupted_build_gives_the_same_files(tmp_path):
  write_npz(tmp_path / "in", natural_names("configuration", 12))
  good = (tmp_path / "in" / "configuration_00007.npz").read_bytes()
  (tmp_path / "in" / "configuration_00007.npz").write_bytes(good[:100])
  with pytest.raises(gd.BadConfigurationFileError):  # interrupted mid-way
    build(config_for(tmp_path / "in"), tmp_path / "data")
  (tmp_path / "in" / "configuration_00007.npz").write_bytes(good)
  build(config_for(tmp_path / "in"), tmp_path / "data")  # re-run, same dir
  build(config_for(tmp_path / "in"), tmp_path / "clean")
  version = str(gd.Builder.VERSION)
  rerun = tmp_path / "data" / "glassy_dynamics" / "simulated" / version
  clean = tmp_path / "clean" / "glassy_dynamics" / "simulated" / version
  shards = sorted(p.name for p in clean.glob("*.tfrecord*"))
  assert shards and shards == sorted(p.name for p in rerun.glob("*tfrecord*"))
  for name in shards:
    assert (rerun / name).read_bytes() == (clean / name).read_bytes(), name
  assert not list((tmp_path / "data" / "glassy_dynamics" /
                   "simulated").glob("*incomplete*"))


def test_tfds_cli_builds_from_the_repo_root(tmp_path):
  tfds_cli = pathlib.Path(sys.executable).parent / "tfds"
  dummy = REPO / "datasets" / "glassy_dynamics" / "dummy_data"
  result = subprocess.run(
      [str(tfds_cli), "build", "datasets/glassy_dynamics", "--config=demo",
       f"--manual_dir={dummy}", f"--data_dir={tmp_path}"],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  # A consumer (the input pipeline) loads it by name, without the builder.
  code = ("import tensorflow_datasets as tfds; b = tfds.builder("
          f"'glassy_dynamics/demo', data_dir='{tmp_path}'); "
          "print({s: v.num_examples for s, v in b.info.splits.items()})")
  result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "'train': 4, 'validation': 1, 'test': 1" in result.stdout
