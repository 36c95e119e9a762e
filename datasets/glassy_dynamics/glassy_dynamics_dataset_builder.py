"""glassy_dynamics: configurations and their propensities as TFRecords.

One example is one equilibrated Kob-Andersen configuration and the
isoconfigurational propensity of its particles (Bapst et al., Nature Physics
16, 448 (2020)), in the units and vocabulary of DESIGN.md's configuration
record: lengths in σ_AA, times in τ = σ_AA·sqrt(m/ε_AA), temperatures in
ε_AA / k_B.

Sources (`manual_dir`, or the `path` field of the builder config):

  demo, simulated        our `.npz` files (`simulate_main.py --output_dir`),
                         read from the top level of the directory.
  deepmind_t0XX          the authors' published pickles, in the layout of
                         their bucket (see `MANUAL_DOWNLOAD_INSTRUCTIONS`).

Split rule (the same for every config; `assign_splits` below):

  u(name) = first 8 bytes of sha256(file name, UTF-8), big-endian, / 2**64,
            a number in [0, 1) that depends on the file name only (not on the
            directory, nor on which other files exist).
  npz:      u < 1 - v - t -> train, u < 1 - t -> validation, else test,
            with v = validation_fraction = 0.1, t = test_fraction = 0.1.
  deepmind: the authors' test files -> test; their training files ->
            validation if u >= 1 - v (v = 0.1), else train. The original
            release selected checkpoints on test; we select on validation.

So a configuration never moves between splits when files are added or
removed. Tiny datasets (a few files, e.g. the smoke tests') would often leave
a split empty; then, deterministically, the file of a split holding two or
more files whose u lies closest to the empty split's interval (ties: the
smaller name) moves into it, validation first, then test; the moved names are
logged and recorded in the dataset's metadata (`moved_for_small_dataset`).
Only such datasets can see a file change split when files are added (once
every split fills on its own, the rule no longer applies). With fewer files
than splits the build stops with an error naming the config and the count.

Optional half-ensemble propensities (version 1.1.0): TFDS features have one
spec for every example, so `propensity_halves` is always present, with a
leading dimension that says whether the record had it: [2, T, n] (the mean
over the even-indexed and over the odd-indexed runs, `record.propensity_halves`)
or an empty [0, T, n] when the record does not know it (the published data,
older simulations, one run). An empty tensor costs a few bytes, where a
NaN-filled [2, T, n] would triple the size of such examples, and a reader
cannot mistake it for data. `evaluation.propensity_halves_of_example` turns
the feature back into the record's field (None for [0, T, n]).

Bad files: a corrupt, truncated or malformed file stops the build with an
error naming the file and the reason. With the config field
`skip_bad_files=True` (CLI: `--config '{"name": "demo", "skip_bad_files":
true}'`) it is skipped with a warning and counted in the dataset's metadata
(`skipped_files`, and `skipped_file_names` without Beam).

Scale: with `--beam_pipeline_options=runner=FnApiRunner` (locally; Dataflow,
Spark or Flink options on a cluster) or a `beam_runner` in the download
config, `_generate_examples` returns a Beam PTransform, otherwise a Python
generator; both read one file at a time, so memory is flat in the number of
files. Files are read through `epath` (so `gs://` works); TFDS writes into a
temporary directory renamed only on success, and keys and split assignment
are pure functions of file names, so re-running an interrupted build yields
the same dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from glassy_dynamics_tf.io import deepmind_pickle
from glassy_dynamics_tf.io import npz_format
from glassy_dynamics_tf.io import record as record_lib

_SPLITS = ("train", "validation", "test")
_NPZ_SUFFIXES = (".npz",)
_PICKLE_SUFFIXES = (".pickle", ".pkl")
# The authors' bucket (deepmind-research, glassy_dynamics/README.md and
# train_binary.py: `<data_directory>/train/aggregated*`, `.../test/...`).
_DEEPMIND_BUCKET = "gs://deepmind-research-glassy-dynamics/public_dataset"
# Relative roots tried in order under manual_dir; "{t}" is e.g. "044".
_DEEPMIND_ROOTS = ("public_dataset/temperature_{t}", "temperature_{t}", "")
_DEEPMIND_TEMPERATURES = {"044": 0.44, "047": 0.47, "050": 0.50, "056": 0.56}
_METRICS_NAMESPACE = "glassy_dynamics"

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
demo / simulated: point --manual_dir (or the config field `path`) at the
directory `simulate_main.py --output_dir=DIR` wrote: DIR/configuration_*.npz
(every top-level *.npz file is read; other files are ignored).

deepmind_t044 / _t047 / _t050 / _t056: download the authors' data set (about
100 GB for all four temperatures) keeping their bucket layout, e.g.
  gsutil -m cp -r {_DEEPMIND_BUCKET}/temperature_044 MANUAL_DIR/public_dataset/
Any of these layouts is accepted (first match wins), with T = 044, 047, 050
or 056:
  MANUAL_DIR/public_dataset/temperature_T/{{train,test}}/*.pickle
  MANUAL_DIR/temperature_T/{{train,test}}/*.pickle
  MANUAL_DIR/{{train,test}}/*.pickle   (one temperature only)
(the authors name them aggregated_data_1.pickle ... in train/ and
aggregated_data_10001.pickle ... in test/).
Every *.pickle / *.pkl file in train/ and test/ is read, through the project's
restricted unpickler (no code in a pickle is ever run).
"""


class SourceLayoutError(FileNotFoundError):
  """The source directory is missing, empty or not laid out as expected."""


class BadConfigurationFileError(record_lib.RecordError):
  """A configuration file is corrupt, truncated or malformed."""


class SplitError(ValueError):
  """The files cannot fill every split."""


@dataclasses.dataclass(eq=False, kw_only=True)
class GlassyDynamicsConfig(tfds.core.BuilderConfig):
  """Builder config: which files, how to split them, what to do on bad ones.

  Attributes:
    source: "npz" (our files) or "deepmind" (the published pickles); "" infers
      it from the name ("deepmind_t0XX" -> "deepmind", else "npz"), so that
      `--config '{"name": "demo", "skip_bad_files": true}'` keeps the rest.
    temperature: for "deepmind", ε_AA / k_B units (0.44, 0.47, 0.50, 0.56);
      every file must carry it in its metadata. Inferred from the name.
    path: source directory (local or `gs://`); "" = the TFDS `manual_dir`.
    validation_fraction: fraction of configurations (npz) or of the authors'
      training files (deepmind) held out for validation.
    test_fraction: fraction of configurations in test (npz only; deepmind
      uses the authors' test files).
    skip_bad_files: skip corrupt or malformed files with a warning (counted in
      the metadata) instead of stopping the build.
  """

  source: str = ""
  temperature: float = math.nan
  path: str = ""
  validation_fraction: float = 0.1
  test_fraction: float = 0.1
  skip_bad_files: bool = False

  def __post_init__(self):
    inferred = "deepmind" if self.name.startswith("deepmind_t") else "npz"
    if not self.source:
      self.source = inferred
    if self.source not in ("npz", "deepmind"):
      raise ValueError(
          f"builder config '{self.name}': field 'source' must be 'npz' or "
          f"'deepmind', found '{self.source}'")
    if self.source == "deepmind" and math.isnan(self.temperature):
      code = self.name[len("deepmind_t"):]
      if code not in _DEEPMIND_TEMPERATURES:
        raise ValueError(
            f"builder config '{self.name}': cannot infer the temperature; "
            f"name it deepmind_t{{{','.join(_DEEPMIND_TEMPERATURES)}}} or set "
            "field 'temperature'")
      self.temperature = _DEEPMIND_TEMPERATURES[code]
    v, t = self.validation_fraction, self.test_fraction
    if not (0 < v < 1 and 0 < t < 1 and v + t < 1):
      raise ValueError(
          f"builder config '{self.name}': need 0 < validation_fraction, "
          f"test_fraction and their sum < 1, found {v} and {t}")

  @property
  def temperature_code(self) -> str:
    """"044" for T = 0.44: the authors' folder suffix."""
    return f"{round(self.temperature * 100):03d}"


# ----------------------------------------------------------------------------
# Split assignment: pure functions of file names.
# ----------------------------------------------------------------------------


def split_fraction(name: str) -> float:
  """u(name) in [0, 1): sha256 of the file name (no directories), see top."""
  digest = hashlib.sha256(name.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclasses.dataclass(frozen=True)
class SplitAssignment:
  """Which file goes where.

  Attributes:
    files: split name -> file names (sorted), for every split in `_SPLITS`.
    moved: names moved by the small-dataset rule (usually empty).
  """
  files: Dict[str, Tuple[str, ...]]
  moved: Tuple[str, ...] = ()


def assign_splits(names: Sequence[str],
                  validation_fraction: float = 0.1,
                  test_fraction: float = 0.1,
                  test_names: Optional[Sequence[str]] = None,
                  what: str = "glassy_dynamics") -> SplitAssignment:
  """Assigns file names to train / validation / test (module docstring rule).

  Args:
    names: file names without directories (unique). For npz sources all
      files; for deepmind sources the authors' training files.
    validation_fraction: fraction of `names` expected in validation.
    test_fraction: fraction of `names` expected in test; ignored when
      `test_names` is given.
    test_names: the authors' test files (deepmind); they all go to test.
    what: the config's name, for errors.

  Returns:
    A SplitAssignment with every split non-empty.

  Raises:
    SplitError: naming `what` and the number of files, when there are too
      few files to fill every split.
  """
  if test_names is None:
    bounds = (1.0 - validation_fraction - test_fraction, 1.0 - test_fraction)
    intervals = {  # split -> [lo, hi) in u
        "train": (0.0, bounds[0]),
        "validation": bounds,
        "test": (bounds[1], 1.0),
    }
  else:
    intervals = {
        "train": (0.0, 1.0 - validation_fraction),
        "validation": (1.0 - validation_fraction, 1.0),
    }
  u = {name: split_fraction(name) for name in names}
  files: Dict[str, List[str]] = {split: [] for split in intervals}
  for name in sorted(names):
    # The first interval whose upper bound exceeds u; u < 1 always.
    split = next((s for s, (_, hi) in intervals.items() if u[name] < hi),
                 list(intervals)[-1])
    files[split].append(name)

  moved = []
  for empty in intervals:  # in order: train, validation[, test]
    if files[empty]:
      continue
    donors = [s for s in intervals if len(files[s]) >= 2]
    if not donors:
      counted = f"{len(names)} file(s)"
      if test_names is not None:
        counted += f" in the authors' train folder"
      raise SplitError(
          f"{what}: {counted} cannot fill the splits {list(intervals)}: "
          f"split '{empty}' would be empty; need at least {len(intervals)} "
          "files")
    lo, hi = intervals[empty]
    candidate = min(
        (n for s in donors for n in files[s]),
        key=lambda n, lo=lo, hi=hi: (max(lo - u[n], u[n] - hi, 0.0), n))
    for s in donors:
      if candidate in files[s]:
        files[s].remove(candidate)
    files[empty].append(candidate)
    moved.append(candidate)
  if test_names is not None:
    if not test_names:
      raise SplitError(f"{what}: no test files")
    files["test"] = list(test_names)
  return SplitAssignment(
      files={s: tuple(sorted(files[s])) for s in _SPLITS},
      moved=tuple(moved))


# ----------------------------------------------------------------------------
# Reading one file.
# ----------------------------------------------------------------------------


def load_record(path: epath.Path) -> record_lib.ConfigurationRecord:
  """Reads one configuration file (npz or DeepMind pickle) through epath.

  Args:
    path: a local or remote (`gs://`) path; the suffix selects the format.

  Returns:
    The validated record.

  Raises:
    BadConfigurationFileError: naming `path` and the reason, for any file
      that cannot be read or does not hold a valid record.
  """
  source = str(path)
  try:
    payload = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
      return deepmind_pickle.record_from_dict(
          deepmind_pickle.safe_loads(payload, source=source), source=source)
    if suffix in _NPZ_SUFFIXES:
      return _npz_record_from_bytes(payload, source)
    raise record_lib.RecordError(
        f"{source}: unknown configuration file type '{suffix}'; expected one "
        f"of {_NPZ_SUFFIXES + _PICKLE_SUFFIXES}")
  except Exception as e:  # pylint: disable=broad-except
    reason = str(e)
    if source not in reason:
      reason = f"{source}: {type(e).__name__}: {reason}"
    raise BadConfigurationFileError(reason) from e


def _npz_record_from_bytes(payload: bytes,
                           source: str) -> record_lib.ConfigurationRecord:
  """npz bytes -> record, reporting errors under `source`."""
  from_bytes = getattr(npz_format, "load_npz_bytes", None)
  if from_bytes is not None:
    return from_bytes(payload, source=source)
  # `npz_format.load_npz` reads local paths only: go through a temporary
  # file and report errors under the real name.
  with tempfile.TemporaryDirectory() as tmp:
    local = epath.Path(tmp) / "configuration.npz"
    local.write_bytes(payload)
    try:
      return npz_format.load_npz(str(local))
    except record_lib.RecordError as e:
      raise record_lib.RecordError(str(e).replace(str(local), source)) from e


def example_from_record(
    name: str, record: record_lib.ConfigurationRecord) -> Dict[str, Any]:
  """The TFDS example (see `Builder._info`) of one record."""
  halves = record.propensity_halves
  if halves is None:
    # Unknown: an empty [0, T, n] (module docstring, "Optional half-ensemble
    # propensities").
    halves = np.zeros((0,) + record.propensity.shape, np.float32)
  return {
      "id": name,
      "positions": record.positions,
      "types": record.types,
      "box": record.box,
      "propensity": record.propensity,
      "propensity_halves": halves,
      "times": record.times,
      "isf_levels": record.isf_levels,
      "temperature": np.float32(record.temperature),
      "pressure": np.float32(record.pressure),
      "density": np.float32(record.density),
      "n_runs": np.int32(record.n_runs),
  }


def _check_temperature(record, path, config: GlassyDynamicsConfig) -> None:
  if (config.source == "deepmind" and
      not math.isclose(record.temperature, config.temperature, abs_tol=1e-6)):
    raise BadConfigurationFileError(
        f"{path}: metadata temperature is {record.temperature}, but config "
        f"'{config.name}' reads T = {config.temperature}; is the file in the "
        "wrong temperature folder?")


def _load_example(
    path_str: str,
    config: GlassyDynamicsConfig) -> Optional[Tuple[str, Dict[str, Any]]]:
  """(key, example) of one file, or None if it is bad and skipped.

  Raises:
    BadConfigurationFileError: unless `config.skip_bad_files`.
  """
  path = epath.Path(path_str)
  try:
    record = load_record(path)
    _check_temperature(record, path, config)
  except BadConfigurationFileError as e:
    if not config.skip_bad_files:
      raise BadConfigurationFileError(
          f"glassy_dynamics/{config.name}: bad configuration file, build "
          f"stopped: {e}\n(to skip such files with a warning: --config "
          f"'{{\"name\": \"{config.name}\", \"skip_bad_files\": true}}')"
      ) from e
    logging.warning("glassy_dynamics/%s: skipping bad configuration file: %s",
                    config.name, e)
    return None
  return path.name, example_from_record(path.name, record)


def _beam_load_example(path_str: str, config: GlassyDynamicsConfig):
  """Beam FlatMap body: 0 or 1 (key, example), counting skipped files."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  key_example = _load_example(path_str, config)
  if key_example is None:
    beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "skipped_files").inc()
    return []
  return [key_example]


# ----------------------------------------------------------------------------
# Listing source files.
# ----------------------------------------------------------------------------


def _list_files(directory: epath.Path, suffixes) -> List[epath.Path]:
  """Non-hidden files of `directory` (not recursive) with a given suffix."""
  return sorted(
      (p for p in directory.iterdir()
       if p.suffix.lower() in suffixes and not p.name.startswith(".")),
      key=lambda p: p.name)


def _deepmind_root(root: epath.Path,
                   config: GlassyDynamicsConfig) -> epath.Path:
  """The folder holding train/ and test/ for `config`'s temperature."""
  tried = []
  for relative in _DEEPMIND_ROOTS:
    candidate = root / relative.format(t=config.temperature_code)
    tried.append(candidate)
    if (candidate / "train").is_dir() and (candidate / "test").is_dir():
      return candidate
  expected = "\n".join(f"  {c / 'train'}/aggregated_data_*.pickle and "
                       f"{c / 'test'}/..." for c in tried)
  raise SourceLayoutError(
      f"glassy_dynamics/{config.name}: found no train/ and test/ folders of "
      f"the published data at T = {config.temperature} under {root}. "
      f"Expected one of:\n{expected}\n(download "
      f"{_DEEPMIND_BUCKET}/temperature_{config.temperature_code}/ there)")


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for glassy_dynamics: one example per configuration."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": ("New feature `propensity_halves` [2, n_timescales, "
                "n_particles] float32 (even-run and odd-run propensities, "
                "for the split-half noise ceiling of the evaluation), empty "
                "[0, n_timescales, n_particles] when a record lacks it. "
                "Every other feature is unchanged."),
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [
      GlassyDynamicsConfig(
          name="demo",
          description=("The README demo's simulated Kob-Andersen liquid "
                       "(T = 0.9, N = 1000, our .npz files)."),
      ),
      GlassyDynamicsConfig(
          name="simulated",
          description=("Configurations written by simulate_main.py at any "
                       "state point (our .npz files)."),
      ),
  ] + [
      GlassyDynamicsConfig(
          name=f"deepmind_t{code}",
          description=(f"The authors' published data at T = {temperature} "
                       "(400 + 400 configurations, N = 4096, 30 runs)."),
      ) for code, temperature in _DEEPMIND_TEMPERATURES.items()
  ]
  DEFAULT_CONFIG_NAME = "deepmind_t044"

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self._use_beam = False
    self._skipped: List[str] = []
    self._beam_skipped = 0

  def _create_builder_config(self, builder_config, version):
    """Accepts a predefined config's name with run-time options changed.

    TFDS refuses a custom config named like a predefined one. The fields
    `path` and `skip_bad_files` say where the files are and how to treat bad
    ones, not what the dataset is, so e.g. `GlassyDynamicsConfig(name="demo",
    path=DIR)` or `--config '{"name": "demo", "skip_bad_files": true}'` still
    builds `glassy_dynamics/demo`. Any other field that differs needs a new
    name.
    """
    predefined = {c.name: c for c in self.BUILDER_CONFIGS}
    if (isinstance(builder_config, GlassyDynamicsConfig) and
        builder_config.name in predefined and
        builder_config is not predefined[builder_config.name]):
      base = predefined[builder_config.name]
      for field in ("source", "temperature", "validation_fraction",
                    "test_fraction"):
        mine, theirs = getattr(builder_config, field), getattr(base, field)
        same = mine == theirs or (isinstance(mine, float) and
                                  math.isnan(mine) and math.isnan(theirs))
        if not same:
          raise ValueError(
              f"glassy_dynamics/{base.name}: field '{field}' is {theirs!r} in "
              f"the predefined config, found {mine!r}; only 'path' and "
              "'skip_bad_files' may change under the same name (give the "
              "config another name)")
      builder_config = dataclasses.replace(
          base,
          path=builder_config.path,
          skip_bad_files=builder_config.skip_bad_files)
      return builder_config
    return super()._create_builder_config(builder_config, version)

  def _info(self) -> tfds.core.DatasetInfo:
    """Returns the dataset metadata (features documented with shapes/units)."""
    features = tfds.features.FeaturesDict({
        "id": tfds.features.Text(
            doc="Configuration id: its file name without directories."),
        "positions": tfds.features.Tensor(
            shape=(None, 3), dtype=np.float32,
            doc=("[n_particles, 3] float32, σ_AA units, wrapped into "
                 "[0, box).")),
        "types": tfds.features.Tensor(
            shape=(None,), dtype=np.int32,
            doc="[n_particles] int32, 0 = A (large), 1 = B (small)."),
        "box": tfds.features.Tensor(
            shape=(3,), dtype=np.float32,
            doc="[3] float32, orthorhombic box edges, σ_AA units."),
        # Two unknown dimensions need a bytes encoding (TFDS rule); it is
        # lossless.
        "propensity": tfds.features.Tensor(
            shape=(None, None), dtype=np.float32, encoding="bytes",
            doc=("[n_timescales, n_particles] float32, σ_AA units: mean over "
                 "isoconfigurational runs of |r_i(t) - r_i(0)|, unwrapped.")),
        "propensity_halves": tfds.features.Tensor(
            shape=(None, None, None), dtype=np.float32, encoding="bytes",
            doc=("[2, n_timescales, n_particles] float32, σ_AA units: the "
                 "propensity of the even-indexed runs ([0]) and of the "
                 "odd-indexed runs ([1]), whose agreement gives the noise "
                 "ceiling; [0, n_timescales, n_particles] (empty) when "
                 "unknown.")),
        "times": tfds.features.Tensor(
            shape=(None,), dtype=np.float32,
            doc="[n_timescales] float32, τ units, times of the propensities."),
        "isf_levels": tfds.features.Tensor(
            shape=(None,), dtype=np.float32,
            doc=("[n_timescales] float32, self-ISF level that defined each "
                 "time; NaN for fixed times.")),
        "temperature": tfds.features.Scalar(
            dtype=np.float32, doc="float32, ε_AA / k_B units."),
        "pressure": tfds.features.Scalar(
            dtype=np.float32,
            doc="float32, ε_AA / σ_AA³ units, NaN if unknown."),
        "density": tfds.features.Scalar(
            dtype=np.float32, doc="float32, particles per σ_AA³."),
        "n_runs": tfds.features.Scalar(
            dtype=np.int32,
            doc="int32, isoconfigurational runs averaged (0 if unknown)."),
    })
    return self.dataset_info_from_configs(
        features=features,
        supervised_keys=None,
        homepage=("https://github.com/google-deepmind/deepmind-research/"
                  "tree/master/glassy_dynamics"),
        metadata=tfds.core.MetadataDict(),
    )

  def _generate_splits(self, dl_manager, download_config):
    """Notes whether Beam is in use, then records what was skipped."""
    self._use_beam = bool(download_config.beam_runner or
                          download_config.beam_options)
    self._skipped = []
    self._beam_skipped = 0
    split_infos = super()._generate_splits(dl_manager, download_config)
    count = self._beam_skipped if self._use_beam else len(self._skipped)
    self.info.metadata["skipped_files"] = count
    if not self._use_beam:
      self.info.metadata["skipped_file_names"] = sorted(self._skipped)
    if count:
      logging.warning("glassy_dynamics/%s: skipped %d bad file(s)",
                      self.builder_config.name, count)
    return split_infos

  def _process_pipeline_result(self, pipeline_result) -> None:
    """Reads the Beam counter of skipped files."""
    import apache_beam as beam  # pylint: disable=g-import-not-at-top
    query = pipeline_result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(
            _METRICS_NAMESPACE).with_name("skipped_files"))
    self._beam_skipped = int(
        sum(c.committed or 0 for c in query.get("counters", [])))

  def _source_dir(self, dl_manager) -> epath.Path:
    config = self.builder_config
    if config.path:
      root = epath.Path(config.path)
      if not root.is_dir():
        raise SourceLayoutError(
            f"glassy_dynamics/{config.name}: source directory {root} (config "
            "field 'path') does not exist or is not a directory")
      return root
    try:
      return epath.Path(dl_manager.manual_dir)
    except AssertionError as e:  # TFDS: manual_dir missing or empty.
      raise SourceLayoutError(
          f"glassy_dynamics/{config.name}: {e}") from e

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    """Lists the source files and assigns them to splits (see top)."""
    config = self.builder_config
    what = f"glassy_dynamics/{config.name}"
    root = self._source_dir(dl_manager)
    if config.source == "npz":
      paths = _list_files(root, _NPZ_SUFFIXES)
      if not paths:
        raise SourceLayoutError(
            f"{what}: no configuration files (*.npz) in {root}; expected the "
            "configuration_*.npz files simulate_main.py --output_dir writes")
      by_name = {p.name: p for p in paths}
      assignment = assign_splits(
          list(by_name), config.validation_fraction, config.test_fraction,
          what=what)
    else:
      base = _deepmind_root(root, config)
      train = _list_files(base / "train", _PICKLE_SUFFIXES)
      test = _list_files(base / "test", _PICKLE_SUFFIXES)
      for folder, found in (("train", train), ("test", test)):
        if not found:
          raise SourceLayoutError(
              f"{what}: no *.pickle files in {base / folder} (expected the "
              "authors' aggregated_data_*.pickle)")
      by_name = {p.name: p for p in train}
      by_test_name = {p.name: p for p in test}
      assignment = assign_splits(
          list(by_name), config.validation_fraction,
          test_names=list(by_test_name), what=what)
    if assignment.moved:
      logging.warning(
          "%s: small dataset, moved %s to fill empty splits (see the split "
          "rule in glassy_dynamics_dataset_builder.py)", what,
          list(assignment.moved))
    self.info.metadata.update({
        "source": config.source,
        "split_rule": ("u = sha256(file name)[:8] / 2**64; npz: train | "
                       "validation | test by u with fractions below; "
                       "deepmind: test = authors' test files, validation = "
                       "authors' train files with u >= 1 - "
                       "validation_fraction"),
        "validation_fraction": config.validation_fraction,
        "test_fraction": (config.test_fraction if config.source == "npz" else
                          None),
        "files_per_split": {s: len(f) for s, f in assignment.files.items()},
        "moved_for_small_dataset": list(assignment.moved),
    })
    splits = {}
    for split, names in assignment.files.items():
      if config.source == "deepmind" and split == "test":
        files = [str(by_test_name[n]) for n in names]
      else:
        files = [str(by_name[n]) for n in names]
      splits[split] = self._generate_examples(files=files)
    return splits

  def _generate_examples(self, files: Sequence[str]):
    """Yields (file name, example), one file at a time.

    Args:
      files: full paths (strings) of this split's configuration files.

    Returns:
      A Beam PTransform when the build uses Beam, else a generator.
    """
    config = self.builder_config
    if self._use_beam:
      import apache_beam as beam  # pylint: disable=g-import-not-at-top
      return (beam.Create(list(files))
              | beam.Reshuffle()
              | beam.FlatMap(_beam_load_example, config=config))
    return self._iterate_examples(files)

  def _iterate_examples(
      self, files: Sequence[str]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """The generator of `_generate_examples` without Beam."""
    for path_str in files:
      key_example = _load_example(path_str, self.builder_config)
      if key_example is None:
        self._skipped.append(epath.Path(path_str).name)
        continue
      yield key_example
