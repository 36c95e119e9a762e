"""Tests of the configuration record, our npz files and the safe pickle reader."""

import math
import os
import pickle

import numpy as np
import pytest

from glassy_dynamics_tf import io as gio
from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.io import deepmind_pickle
from glassy_dynamics_tf.io import npz_format

import fixtures

FIXTURE = fixtures.DEEPMIND_PICKLE


def _raw_fixture():
  # Plain pickle is fine for the trusted fixture in a test: it is the
  # reference that the safe reader must agree with.
  with open(FIXTURE, "rb") as f:
    return pickle.load(f, encoding="latin1")


def _record(n=5, t=2, **overrides):
  rng = np.random.default_rng(0)
  fields = dict(
      positions=rng.uniform(0, 3, size=(n, 3)),
      types=np.array([0] * (n - 1) + [1]),
      box=[3.0, 3.0, 4.0],
      times=np.linspace(0.1, 1.0, t),
      isf_levels=[0.9, 0.5][:t],
      propensity=rng.uniform(0, 1, size=(t, n)),
      temperature=0.9,
      n_runs=4,
      source="test")
  fields.update(overrides)
  return gio.ConfigurationRecord.create(**fields)


# ----------------------------------------------------------------- periodic


def test_wrap_any_displacement_lands_in_box():
  box = np.array([2.0, 3.0, 5.0])
  x = np.array([[-0.5, 7.25, -12.5], [1e6 + 0.25, -3.0, 5.0], [-1e-17, 0, 0]])
  wrapped = periodic.wrap(x, box)
  assert np.all(wrapped >= 0) and np.all(wrapped < box)
  np.testing.assert_allclose(wrapped[0], [1.5, 1.25, 2.5])
  np.testing.assert_allclose(wrapped[1], [0.25, 0.0, 0.0], atol=1e-9)


def test_minimum_image_is_nearest_image():
  box = np.array([4.0, 6.0, 10.0])
  dr = np.array([[3.0, -5.0, 21.0], [-1.9, 2.9, -4.9]])
  np.testing.assert_allclose(
      periodic.minimum_image(dr, box), [[-1.0, 1.0, 1.0], [-1.9, 2.9, -4.9]])


# ------------------------------------------------------------------- record


def test_create_converts_dtypes_and_wraps():
  record = _record(positions=[[3.5, -0.5, 4.0], [0, 0, 0], [1, 1, 1],
                              [2, 2, 2], [0.5, 0.5, 0.5]])
  assert record.positions.dtype == np.float32
  assert record.types.dtype == np.int32
  np.testing.assert_allclose(record.positions[0], [0.5, 2.5, 0.0])
  assert record.n_particles == 5 and record.n_timescales == 2
  assert math.isclose(record.density, 5 / 36.0, rel_tol=1e-6)
  assert math.isnan(record.pressure)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(positions=np.zeros((5, 2))), "'positions' must have shape [?, 3]"),
        (dict(types=np.array([0, 1, 2, 0, 0])), "'types' must hold 0 (A) or 1"),
        (dict(types=np.array([0, 1])), "'types' must have shape [5]"),
        (dict(box=[3.0, -1.0, 3.0]), "'box' must be positive"),
        (dict(box=[3.0, 3.0]), "'box' must have shape [3]"),
        (dict(propensity=np.full((2, 5), np.nan)), "'propensity' holds 10 "
         "non-finite"),
        (dict(propensity=np.ones((3, 5))), "'propensity' must have shape "
         "[2, 5]"),
        (dict(temperature=-1.0), "'temperature' must be finite and > 0"),
        (dict(times=[0.0, 1.0]), "'times' must be positive"),
        (dict(isf_levels=[1.5, 0.5]), "'isf_levels' must lie in (0, 1)"),
        (dict(positions=np.full((5, 3), np.inf)), "'positions' holds 15"),
        (dict(types=np.array([0.5, 0, 0, 0, 1])), "'types' must hold integers"),
    ])
def test_validation_names_the_field(overrides, message):
  with pytest.raises(gio.RecordError) as info:
    _record(**overrides)
  assert message in str(info.value)
  assert str(info.value).startswith("test:")


def test_validate_rejects_unwrapped_positions_built_by_hand():
  good = _record()
  bad = gio.ConfigurationRecord(**{
      **good.as_dict(), "positions": good.positions + good.box,
      "temperature": 0.9, "pressure": math.nan, "density": 1.0, "n_runs": 4
  })
  with pytest.raises(gio.RecordError, match="wrapped into"):
    bad.validate("by hand")


def _halves(n=5, t=2):
  rng = np.random.default_rng(1)
  return rng.uniform(0, 1, size=(2, t, n))


def test_propensity_halves_are_optional_and_validated():
  assert _record().propensity_halves is None
  assert "propensity_halves" not in _record().as_dict()
  record = _record(propensity_halves=_halves())
  assert record.propensity_halves.dtype == np.float32
  assert record.propensity_halves.shape == (2, 2, 5)
  # Unknown halves equal only unknown halves.
  assert not record.equals(_record())
  assert not _record().equals(record)
  assert record.equals(_record(propensity_halves=_halves()))


@pytest.mark.parametrize(
    "halves, message",
    [
        (np.ones((2, 5)), "'propensity_halves' must have shape [2, 2, 5]"),
        (np.ones((3, 2, 5)), "'propensity_halves' must have shape [2, 2, 5]"),
        (np.ones((2, 2, 4)), "'propensity_halves' must have shape [2, 2, 5]"),
        (-np.ones((2, 2, 5)), "'propensity_halves' must be non-negative"),
        (np.full((2, 2, 5), np.nan), "'propensity_halves' holds 20 "
         "non-finite"),
        (np.full((2, 2, 5), "x"), "'propensity_halves' must be numeric"),
    ])
def test_propensity_halves_errors_name_the_field(halves, message):
  with pytest.raises(gio.RecordError) as info:
    _record(propensity_halves=halves)
  assert message in str(info.value)


# ---------------------------------------------------------------------- npz


def test_npz_round_trip_is_bit_identical(tmp_path):
  record = _record()
  path = str(tmp_path / "sub" / "configuration_00000.npz")
  gio.save_npz(record, path, extra_arrays={"seeds": np.arange(4)})
  back, extras = gio.load_npz(path, with_extras=True)
  assert back.equals(record)
  np.testing.assert_array_equal(extras["seeds"], np.arange(4))
  assert gio.load_configuration(path).equals(record)
  # No temporary files are left behind.
  assert sorted(os.listdir(tmp_path / "sub")) == ["configuration_00000.npz"]


def test_npz_round_trip_keeps_the_halves(tmp_path):
  record = _record(propensity_halves=_halves())
  path = str(tmp_path / "configuration_00000.npz")
  gio.save_npz(record, path)
  back, extras = gio.load_npz(path, with_extras=True)
  assert back.equals(record) and extras == {}
  assert back.propensity_halves.tobytes() == record.propensity_halves.tobytes()


def test_npz_without_halves_reads_back_as_unknown(tmp_path):
  # A file written before the field existed: the record fields only.
  path = str(tmp_path / "old.npz")
  np.savez(path, format_version=np.int32(1), **_record().as_dict())
  back = gio.load_npz(path)
  assert back.propensity_halves is None and back.equals(_record())


def test_npz_is_not_pickled(tmp_path):
  path = str(tmp_path / "c.npz")
  gio.save_npz(_record(), path)
  with np.load(path, allow_pickle=False) as data:
    assert all(data[k].dtype != object for k in data.files)


def test_failed_write_keeps_the_old_file(tmp_path):
  path = str(tmp_path / "c.npz")
  record = _record()
  gio.save_npz(record, path)
  before = open(path, "rb").read()
  with pytest.raises(ValueError, match="extra array 'bad' must be numeric"):
    gio.save_npz(record, path, extra_arrays={"bad": np.array(["x"])})
  assert open(path, "rb").read() == before
  assert os.listdir(tmp_path) == ["c.npz"]


def test_atomic_write_interrupted_leaves_no_partial_file(tmp_path, monkeypatch):
  path = str(tmp_path / "c.npz")

  def boom(*args, **kwargs):
    raise KeyboardInterrupt  # a kill between write and rename

  monkeypatch.setattr(os, "replace", boom)
  with pytest.raises(KeyboardInterrupt):
    npz_format.write_atomic_bytes(path, b"payload")
  assert os.listdir(tmp_path) == []


def test_corrupt_and_missing_npz_name_the_file(tmp_path):
  path = str(tmp_path / "broken.npz")
  gio.save_npz(_record(), path)
  payload = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(payload[:len(payload) // 2])
  with pytest.raises(gio.RecordError, match="broken.npz"):
    gio.load_npz(path)
  with pytest.raises(FileNotFoundError, match="nothere.npz"):
    gio.load_configuration(str(tmp_path / "nothere.npz"))
  with pytest.raises(gio.RecordError, match="unknown configuration file type"):
    gio.load_configuration(str(tmp_path / "c.xyz"))


def test_non_zip_npz_is_not_called_pickled_data(tmp_path):
  path = str(tmp_path / "text.npz")
  with open(path, "w") as f:
    f.write("positions 1 2 3\n")
  with pytest.raises(gio.RecordError,
                     match=r"text.npz: .*expected a zip archive") as info:
    gio.load_npz(path)
  assert "pickle" not in str(info.value)
  with open(path, "wb"):
    pass  # empty file
  with pytest.raises(gio.RecordError, match=r"found 0 bytes"):
    gio.load_npz(path)


def test_npz_missing_field_is_named(tmp_path):
  path = str(tmp_path / "c.npz")
  arrays = _record().as_dict()
  del arrays["propensity"]
  np.savez(path, format_version=np.int32(1), **arrays)
  with pytest.raises(gio.RecordError, match=r"missing field\(s\) \['propensity'\]"):
    gio.load_npz(path)


# ------------------------------------------------------------ DeepMind pickle


def test_fixture_maps_onto_record():
  raw = _raw_fixture()
  record = gio.load_configuration(FIXTURE)
  assert record.n_particles == 20 and record.n_timescales == 10
  assert record.n_runs == 30
  assert record.temperature == pytest.approx(0.44)
  assert record.pressure == pytest.approx(2.93)
  time = np.asarray(raw["time"])
  np.testing.assert_allclose(record.times, time[raw["time_indices"]],
                             rtol=1e-6)
  np.testing.assert_allclose(record.isf_levels, raw["is_values"], rtol=1e-6)
  assert record.times[0] == pytest.approx(0.132)
  # Positions wrapped into the box, and equal to the raw ones modulo box.
  assert np.all(record.positions >= 0) and np.all(record.positions < record.box)
  np.testing.assert_allclose(
      periodic.minimum_image(record.positions - raw["positions"], raw["box"]),
      0, atol=1e-5)


def test_fixture_propensity_is_mean_over_runs_of_displacement_norm():
  raw = _raw_fixture()
  record = gio.load_configuration(FIXTURE)
  positions = raw["positions"]
  for j in (0, 4, 9):
    for i in (0, 7, 19):
      displacements = [
          math.dist(raw["trajectory_target_positions"][j][run][i],
                    positions[i]) for run in range(30)
      ]
      assert record.propensity[j, i] == pytest.approx(
          sum(displacements) / 30, rel=1e-5)


def test_precomputed_targets_are_used(tmp_path):
  raw = _raw_fixture()
  targets = np.arange(200, dtype=np.float64).reshape(10, 20) / 100
  del raw["trajectory_target_positions"]
  raw["targets"] = targets
  path = str(tmp_path / "with_targets.pickle")
  with open(path, "wb") as f:
    pickle.dump(raw, f, protocol=3)
  record = gio.load_configuration(path)
  np.testing.assert_allclose(record.propensity, targets, rtol=1e-6)
  assert record.n_runs == 30  # from the stored start velocities


class _Evil:
  """Pickles to a call of os.system that would create a marker file."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_executes_nothing(tmp_path):
  marker = tmp_path / "pwned"
  raw = _raw_fixture()
  raw["metadata"]["note"] = _Evil(marker)
  path = str(tmp_path / "evil.pickle")
  with open(path, "wb") as f:
    pickle.dump(raw, f, protocol=3)
  with pytest.raises(gio.UnsafePickleError) as info:
    gio.load_configuration(path)
  assert "evil.pickle" in str(info.value)
  assert "system" in str(info.value)
  assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps(eval, protocol=2),  # a builtin global
    b"cos\nsystem\n(S'echo hi'\ntR.",  # hand-written protocol-0 exploit
    pickle.dumps(np.array([1, None], dtype=object).tolist() + [slice(1)]),
])
def test_restricted_unpickler_refuses_other_globals(payload):
  with pytest.raises(gio.UnsafePickleError, match="refusing to load"):
    deepmind_pickle.safe_loads(payload, source="payload")


def test_restricted_unpickler_reads_numpy_and_containers():
  value = {"a": [np.arange(3, dtype=np.int64), np.float32(2.5)],
           "b": (1, "x", None), "c": np.zeros((2, 2), np.float64)}
  for protocol in (2, 3, 4, 5):
    back = deepmind_pickle.safe_loads(pickle.dumps(value, protocol=protocol))
    np.testing.assert_array_equal(back["a"][0], value["a"][0])
    assert back["a"][1] == np.float32(2.5)
    assert back["b"] == (1, "x", None)


def test_truncated_pickle_names_the_file(tmp_path):
  payload = open(FIXTURE, "rb").read()
  path = str(tmp_path / "truncated.pickle")
  with open(path, "wb") as f:
    f.write(payload[:5000])
  with pytest.raises(gio.RecordError, match="truncated.pickle: not a readable"):
    gio.load_configuration(path)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("positions"), "missing key(s) ['positions']"),
    (lambda d: d.update(time_indices=[0, 500]), "points outside 'time'"),
    (lambda d: d.update(is_values=np.ones(3) / 2), "must have 10 entries"),
    (lambda d: d.update(trajectory_target_positions=np.zeros((10, 2, 19, 3))),
     "'trajectory_target_positions' must have shape [10, n_runs, 20, 3]"),
    (lambda d: d["positions"].__setitem__((0, 0), np.nan),
     "'positions' holds non-finite"),
    (lambda d: d.update(metadata={}), "lacks 'temperature'"),
    (lambda d: d.update(types=np.arange(20)), "'types' must hold 0 (A) or 1"),
])
def test_malformed_pickle_names_key(tmp_path, mutate, message):
  raw = _raw_fixture()
  mutate(raw)
  path = str(tmp_path / "bad.pickle")
  with open(path, "wb") as f:
    pickle.dump(raw, f, protocol=3)
  with pytest.raises(gio.RecordError) as info:
    gio.load_configuration(path)
  assert message in str(info.value)
  assert "bad.pickle" in str(info.value)
