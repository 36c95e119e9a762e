"""The resumable driver and simulate_main.py: records, resume, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from glassy_dynamics_tf.io import npz_format
from glassy_dynamics_tf.io import record as record_lib
from glassy_dynamics_tf.simulation import driver
from glassy_dynamics_tf.simulation import isf as isf_lib

from conftest import DEEPMIND_PICKLE
from conftest import REPO_ROOT

# Seconds, not physics: N = 250 at T = 1.0 with a very short preparation.
TINY = dict(temperature=1.0, density=1.2, n_particles=250, n_configurations=2,
            n_runs=2, isf_levels=(0.9, 0.5), seed=3, melt_time=1.0,
            cool_time=1.0, equilibration_tau_alpha=2.0)

CONFIG_FILE = '''
from glassy_dynamics_tf.configs import smoke

def get_config():
  config = smoke.get_config()
  sim = config.simulation
  sim.n_configurations = 3
  sim.n_runs = 4
  sim.melt_time = 1.0
  sim.cool_time = 1.0
  sim.equilibration_tau_alpha = 2.0
  return config
'''


def _records(output_dir):
  names = sorted(f for f in os.listdir(output_dir) if f.endswith(".npz"))
  return names, [npz_format.load_npz(os.path.join(output_dir, f),
                                     with_extras=True) for f in names]


def _assert_same_outputs(dir_a, dir_b):
  names_a, recs_a = _records(dir_a)
  names_b, recs_b = _records(dir_b)
  assert names_a == names_b and names_a
  for (ra, ea), (rb, eb) in zip(recs_a, recs_b):
    assert ra.equals(rb)
    assert sorted(ea) == sorted(eb)
    for key in ea:
      np.testing.assert_array_equal(ea[key], eb[key])
  manifests = []
  for d in (dir_a, dir_b):
    with open(os.path.join(d, driver.MANIFEST)) as f:
      manifests.append(json.load(f))
  assert manifests[0]["configurations"] == manifests[1]["configurations"]
  assert manifests[0].get("tau_alpha") == manifests[1].get("tau_alpha")
  assert manifests[0].get("timescales") == manifests[1].get("timescales")
  assert manifests[0]["status"] == manifests[1]["status"] == "complete"


def test_driver_writes_valid_records(tmp_path):
  spec = driver.SimulationSpec(**TINY)
  paths = driver.simulate(spec, str(tmp_path), num_workers=1, log=lambda m: 0)
  assert [os.path.basename(p) for p in paths] == [
      "configuration_00000.npz", "configuration_00001.npz"]
  for k, path in enumerate(paths):
    record, extras = npz_format.load_npz(path, with_extras=True)
    assert record.n_particles == 250 and record.n_runs == 2
    assert record.temperature == 1.0
    assert record.density == pytest.approx(1.2, rel=1e-5)
    np.testing.assert_array_equal(record.isf_levels,
                                  np.float32([0.9, 0.5]))
    assert record.propensity.shape == (2, 250)
    assert np.all(record.times[1:] > record.times[:-1])
    assert np.sum(record.types == 1) == 50
    # The propensity is taken where the equilibrium ISF crosses the levels;
    # this configuration's own run average is near them (2 runs of 250).
    times = extras["time_grid"]
    np.testing.assert_array_equal(
        times[extras["time_indices"]].astype(np.float32), record.times)
    assert times[-1] == times[extras["time_indices"]].max()
    reference = extras["reference_isf"][extras["time_indices"]]
    np.testing.assert_allclose(reference, [0.9, 0.5], atol=0.06)
    mean_isf = extras["isf_mean"][extras["time_indices"]]
    np.testing.assert_allclose(mean_isf, [0.9, 0.5], atol=0.15)
    np.testing.assert_allclose(extras["isf_runs"].mean(0), extras["isf_mean"])
    assert extras["own_isf_crossing_times"].shape == (2,)
    assert extras["run_seeds"].shape == (2,)
    assert int(extras["configuration_index"]) == k
    assert extras["tau_alpha"] > 0
  with open(tmp_path / driver.MANIFEST) as f:
    manifest = json.load(f)
  assert manifest["status"] == "complete"
  assert manifest["engine"].startswith("LAMMPS")
  assert "damping 0.3" in manifest["thermostat"]
  assert manifest["settings"]["n_particles"] == 250
  assert not os.path.exists(tmp_path / "work")


def test_parallel_equals_serial_and_rerun_is_a_no_op(tmp_path):
  spec = driver.SimulationSpec(**dict(TINY, n_configurations=1, n_runs=3))
  driver.simulate(spec, str(tmp_path / "one"), num_workers=1, log=lambda m: 0)
  driver.simulate(spec, str(tmp_path / "two"), num_workers=2, log=lambda m: 0)
  _assert_same_outputs(tmp_path / "one", tmp_path / "two")
  before = os.path.getmtime(tmp_path / "one" / "configuration_00000.npz")
  driver.simulate(spec, str(tmp_path / "one"), num_workers=1, log=lambda m: 0)
  assert os.path.getmtime(tmp_path / "one" /
                          "configuration_00000.npz") == before


def test_prepared_run_shares_times_chosen_on_the_stored_isf(tmp_path):
  spec = driver.SimulationSpec(**dict(TINY, n_configurations=3,
                                      isf_levels=(0.9, 0.7, 0.5)))
  paths = driver.simulate(spec, str(tmp_path), num_workers=2, log=lambda m: 0)
  loaded = [npz_format.load_npz(p, with_extras=True) for p in paths]
  first, first_extras = loaded[0]
  for record, extras in loaded:
    # Bit-identical times and levels in every record.
    assert record.times.dtype == np.float32
    assert record.times.tobytes() == first.times.tobytes()
    assert record.isf_levels.tobytes() == first.isf_levels.tobytes()
    np.testing.assert_array_equal(extras["time_indices"],
                                  first_extras["time_indices"])
    np.testing.assert_array_equal(extras["reference_isf"],
                                  first_extras["reference_isf"])
  with open(tmp_path / driver.MANIFEST) as f:
    timescales = json.load(f)["timescales"]
  np.testing.assert_array_equal(np.float32(timescales["times"]), first.times)
  assert timescales["isf_levels"] == [0.9, 0.7, 0.5]
  curve_times = np.asarray(timescales["reference_isf"]["times"])
  curve = np.asarray(timescales["reference_isf"]["isf"])
  origins = np.asarray(timescales["reference_isf"]["n_origins"])
  np.testing.assert_array_equal(curve, first_extras["reference_isf"])
  np.testing.assert_array_equal(curve_times,
                                first_extras["reference_time_grid"])
  assert np.all(np.diff(origins) <= 0) and origins[-1] >= 1
  for level, t, index in zip(timescales["isf_levels"], timescales["times"],
                             timescales["time_indices"]):
    # The stored curve crosses the level between grid points j - 1 and j;
    # the chosen time is one of them, the nearer in log t.
    j = int(np.flatnonzero(curve <= level)[0])
    assert j >= 1 and curve[j - 1] > level
    assert index in (j - 1, j) and curve_times[index] == t
    crossing = isf_lib.crossing_time(curve_times, curve, level)
    assert abs(np.log(t / crossing)) <= 0.5 * np.log(
        curve_times[j] / curve_times[j - 1]) + 1e-12
  assert sum(timescales["origins_per_chain"]) >= 16
  # Every run went exactly to the largest shared time.
  assert first_extras["time_grid"][-1] == max(timescales["times"])


def test_parallel_chains(tmp_path):
  spec = driver.SimulationSpec(**dict(TINY, n_configurations=3, n_chains=2,
                                      n_runs=1))
  paths = driver.simulate(spec, str(tmp_path / "two"), num_workers=2,
                          log=lambda m: 0)
  driver.simulate(spec, str(tmp_path / "one"), num_workers=1, log=lambda m: 0)
  _assert_same_outputs(tmp_path / "one", tmp_path / "two")
  with open(tmp_path / "two" / driver.MANIFEST) as f:
    taus = json.load(f)["tau_alpha_per_chain"]
  assert len(taus) == 2 and taus[0] != taus[1]
  extras = [npz_format.load_npz(p, with_extras=True)[1] for p in paths]
  assert [float(e["tau_alpha"]) for e in extras] == [taus[0], taus[1], taus[0]]


def test_fixed_times(tmp_path):
  spec = driver.SimulationSpec(**dict(TINY, n_configurations=1,
                                      isf_levels=(), times=(0.03, 0.3)))
  (path,) = driver.simulate(spec, str(tmp_path), num_workers=1,
                            log=lambda m: 0)
  record = npz_format.load_npz(path)
  np.testing.assert_allclose(record.times, [0.03, 0.3], rtol=1e-6)
  assert np.all(np.isnan(record.isf_levels))


def test_changed_settings_in_same_output_dir_are_refused(tmp_path):
  spec = driver.SimulationSpec(**dict(TINY, n_configurations=1))
  driver.simulate(spec, str(tmp_path), num_workers=1, log=lambda m: 0)
  with pytest.raises(driver.SimulationInputError, match="different settings"):
    driver.simulate(driver.SimulationSpec(**dict(TINY, n_configurations=1,
                                                 seed=4)),
                    str(tmp_path), num_workers=1, log=lambda m: 0)


def test_deepmind_pickle_as_initial_configuration(tmp_path):
  spec = driver.SimulationSpec(n_runs=3, isf_levels=(0.9, 0.5), seed=1)
  (path,) = driver.simulate(spec, str(tmp_path),
                            initial_configuration=DEEPMIND_PICKLE,
                            num_workers=1, log=lambda m: 0)
  record = npz_format.load_npz(path)
  assert record.n_particles == 20
  assert record.temperature == pytest.approx(0.44)  # from the metadata.
  assert record.propensity.shape == (2, 20) and record.n_runs == 3
  # The runs start from exactly the input configuration.
  from glassy_dynamics_tf import io as io_lib
  source = io_lib.load_configuration(DEEPMIND_PICKLE)
  np.testing.assert_array_equal(record.positions, source.positions)
  np.testing.assert_array_equal(record.types, source.types)
  # The excerpt's box density is not the liquid's: q scales with it unless
  # given explicitly.
  _, extras = npz_format.load_npz(path, with_extras=True)
  assert float(extras["q"]) == pytest.approx(
      7.25 * (record.density / 1.2)**(1 / 3))
  spec = driver.SimulationSpec(n_runs=2, isf_levels=(0.9,), seed=1,
                               isf_wavenumber=7.25)
  (path,) = driver.simulate(spec, str(tmp_path / "q"),
                            initial_configuration=DEEPMIND_PICKLE,
                            num_workers=1, log=lambda m: 0)
  _, extras = npz_format.load_npz(path, with_extras=True)
  assert float(extras["q"]) == 7.25


def test_npt_preparation(tmp_path):
  spec = driver.SimulationSpec(**dict(TINY, pressure=9.8, n_runs=1))
  paths = driver.simulate(spec, str(tmp_path), num_workers=1, log=lambda m: 0)
  records = [npz_format.load_npz(p) for p in paths]
  assert all(r.pressure == pytest.approx(9.8) for r in records)
  # The barostat moves the box: ρ(T = 1.0, P = 9.8) ≈ 1.2 for KA.
  assert records[0].box[0] != records[1].box[0]
  for r in records:
    assert r.density == pytest.approx(1.2, abs=0.05)


def test_own_record_as_initial_configuration(tmp_path):
  spec = driver.SimulationSpec(**dict(TINY, n_configurations=1))
  (first,) = driver.simulate(spec, str(tmp_path / "a"), num_workers=1,
                             log=lambda m: 0)
  again = driver.SimulationSpec(n_runs=2, times=(0.3,), seed=9)
  (second,) = driver.simulate(again, str(tmp_path / "b"), first,
                              num_workers=1, log=lambda m: 0)
  a, b = npz_format.load_npz(first), npz_format.load_npz(second)
  np.testing.assert_array_equal(a.positions, b.positions)
  np.testing.assert_array_equal(a.box, b.box)
  assert b.temperature == a.temperature == 1.0
  # Re-running with an initial configuration resumes too: nothing is redone.
  before = os.path.getmtime(second)
  driver.simulate(again, str(tmp_path / "b"), first, num_workers=1,
                  log=lambda m: 0)
  assert os.path.getmtime(second) == before


@pytest.mark.parametrize("changes,match", [
    (dict(n_particles=1), "--n_particles"),
    (dict(n_particles=100), "--n_particles.*twice the cut-off"),
    (dict(temperature=0.0), "--temperature"),
    (dict(temperature=float("nan")), "--temperature"),
    (dict(density=-1.0), "--density"),
    (dict(n_runs=0), "--n_runs"),
    (dict(isf_levels=(0.9, 1.5)), "--isf_levels"),
    (dict(isf_levels=(), times=()), "--isf_levels"),
    (dict(times=(0.1,)), "--times"),
    (dict(pressure=-2.0), "--pressure"),
    (dict(seed=-1), "--seed"),
    (dict(n_chains=3), "--n_chains"),
])
def test_bad_settings_fail_before_any_md(tmp_path, changes, match):
  spec = driver.SimulationSpec(**dict(TINY, **changes))
  with pytest.raises(driver.SimulationInputError, match=match):
    driver.simulate(spec, str(tmp_path / "out"), num_workers=1,
                    log=lambda m: 0)
  assert not os.path.exists(tmp_path / "out")


def _write_initial(path, positions, box=(8.0, 8.0, 8.0)):
  n = len(positions)
  record = record_lib.ConfigurationRecord.create(
      positions=positions, types=np.zeros(n, np.int32), box=box,
      propensity=np.zeros((0, n)), times=[], temperature=1.0)
  npz_format.save_npz(record, str(path))


def test_bad_initial_configurations(tmp_path):
  spec = driver.SimulationSpec(n_runs=1, isf_levels=(0.5,))
  overlapping = tmp_path / "overlap.npz"
  _write_initial(overlapping, [[1, 1, 1], [1.3, 1, 1], [4, 4, 4]])
  with pytest.raises(driver.SimulationInputError, match="overlap.*0.3000"):
    driver.simulate(spec, str(tmp_path / "a"), str(overlapping),
                    log=lambda m: 0)
  across = tmp_path / "across.npz"
  _write_initial(across, [[0.1, 1, 1], [7.8, 1, 1]])
  with pytest.raises(driver.SimulationInputError, match="overlap"):
    driver.simulate(spec, str(tmp_path / "b"), str(across), log=lambda m: 0)
  small = tmp_path / "small.npz"
  _write_initial(small, [[1, 1, 1], [3, 3, 3]], box=(4.0, 8.0, 8.0))
  with pytest.raises(driver.SimulationInputError, match="cut-off"):
    driver.simulate(spec, str(tmp_path / "c"), str(small), log=lambda m: 0)
  with pytest.raises(driver.SimulationInputError, match="no such file"):
    driver.simulate(spec, str(tmp_path / "d"), str(tmp_path / "missing.npz"),
                    log=lambda m: 0)
  nan_file = tmp_path / "nan.npz"
  arrays = dict(np.load(overlapping))
  arrays["positions"] = np.full((3, 3), np.nan, np.float32)
  np.savez(nan_file, **arrays)
  with pytest.raises(driver.SimulationInputError, match="non-finite"):
    driver.simulate(spec, str(tmp_path / "e"), str(nan_file), log=lambda m: 0)
  for d in "abcde":
    assert not os.path.exists(tmp_path / d)


def _main(args, **kwargs):
  return subprocess.Popen(
      [sys.executable, os.path.join(REPO_ROOT, "simulate_main.py")] + args,
      cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True, **kwargs)


@pytest.mark.parametrize("flags,message", [
    (["--density=1.2", "--pressure=2.9"], "--density and --pressure"),
    (["--n_particles=1"], "--n_particles"),
    (["--temperature=-1"], "--temperature"),
    (["--times=0.1,abc"], "--times"),
    (["--times=0.1", "--isf_levels=0.5"], "--times and --isf_levels"),
    (["--config.simulation.n_runs=0"], "--n_runs"),
    (["--initial_configuration=/nonexistent.pickle"], "no such file"),
])
def test_main_reports_bad_flags(tmp_path, flags, message):
  proc = _main(["--config=glassy_dynamics_tf/configs/smoke.py",
                f"--output_dir={tmp_path / 'out'}"] + flags)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode != 0
  assert message in out
  assert not os.path.exists(tmp_path / "out")


def test_main_rejects_unknown_state_point_fields(tmp_path):
  config = tmp_path / "config.py"
  config.write_text(CONFIG_FILE.replace("  return config",
                                        "  sim.volume = 3.0\n  return config"))
  proc = _main([f"--config={config}", f"--output_dir={tmp_path / 'out'}"])
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode != 0
  assert "unknown simulation field(s) ['volume']" in out


def _wait_for(predicate, proc, timeout=120.0):
  start = time.time()
  while not predicate():
    if proc.poll() is not None:
      raise AssertionError("finished before it could be killed: " +
                           proc.stdout.read())
    if time.time() - start > timeout:
      raise AssertionError("timed out")
    time.sleep(0.02)


def test_resume_after_sigkill_gives_identical_files(tmp_path):
  config = tmp_path / "config.py"
  config.write_text(CONFIG_FILE)
  common = [f"--config={config}", "--num_workers=2"]
  reference = _main(common + [f"--output_dir={tmp_path / 'reference'}"])
  assert reference.wait(timeout=300) == 0, reference.stdout.read()

  out = tmp_path / "killed"
  work = out / "work"
  stops = [
      # during preparation,
      lambda: (work / "chain_000" / "prep_cooled.npz").exists(),
      # while sampling and measuring the reference ISF,
      lambda: any(work.glob("chain_000/prep_production_*.npz")),
      # during the runs of the first configuration,
      lambda: any(work.glob("configuration_00000/run_*.npz")),
      # after a record, during the next ensemble.
      lambda: (out / "configuration_00001.npz").exists(),
  ]
  for stop in stops:
    proc = _main(common + [f"--output_dir={out}"])
    _wait_for(stop, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
  final = _main(common + [f"--output_dir={out}"])
  assert final.wait(timeout=300) == 0, final.stdout.read()
  _assert_same_outputs(tmp_path / "reference", out)
  assert not any(p.name.endswith(".tmp") for p in out.iterdir())


@pytest.mark.slow
def test_resume_after_many_kills_at_arbitrary_moments(tmp_path):
  # Tens of seconds of work, killed at pseudo-random moments (a fraction of
  # the uninterrupted wall time each) until it finishes.
  config = tmp_path / "config.py"
  config.write_text(CONFIG_FILE.replace(
      "sim.n_configurations = 3", "sim.n_configurations = 4\n"
      "  sim.n_particles = 1000").replace(
          "sim.n_runs = 4", "sim.n_runs = 6").replace(
              "equilibration_tau_alpha = 2.0", "equilibration_tau_alpha = 5.0"))
  common = [f"--config={config}", "--num_workers=2"]
  start = time.time()
  reference = _main(common + [f"--output_dir={tmp_path / 'reference'}"])
  assert reference.wait(timeout=600) == 0, reference.stdout.read()
  wall = time.time() - start
  out = tmp_path / "killed"
  kills = 0
  for fraction in np.random.default_rng(0).uniform(0.1, 0.3, size=30):
    delay = fraction * wall
    proc = _main(common + [f"--output_dir={out}"])
    try:
      proc.wait(timeout=delay)
      break  # finished before this kill.
    except subprocess.TimeoutExpired:
      os.kill(proc.pid, signal.SIGKILL)
      proc.wait()
      kills += 1
  assert kills >= 3
  final = _main(common + [f"--output_dir={out}"])
  assert final.wait(timeout=300) == 0, final.stdout.read()
  _assert_same_outputs(tmp_path / "reference", out)
