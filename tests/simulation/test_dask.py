"""The simulator on Dask (simulation/cluster.py), on a LocalCluster over
loopback: two single-threaded worker processes, as one batch job of two
cores would be.

What must hold (docs/CLUSTER.md): the same seeds give bit-identical records
on Dask and on the local pool; a worker killed mid-task has its task rerun
elsewhere, with nothing lost or written twice; a killed client resumes with
the same command; bad cluster flags fail with an error naming the flag.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip(
    "distributed", reason="the `cluster` extra (dask[distributed]) is not "
    "installed")

from glassy_dynamics_tf.io import npz_format  # pylint: disable=g-import-not-at-top
from glassy_dynamics_tf.simulation import cluster
from glassy_dynamics_tf.simulation import driver

from conftest import REPO_ROOT
from test_driver import _assert_same_outputs  # pylint: disable=g-bad-import-order

# Seconds, not physics: two chains of N = 250 at T = 1.0, each run 2000 MD
# steps (fixed times), so that a worker can be killed while runs are going.
SPEC = dict(temperature=1.0, density=1.2, n_particles=250, n_configurations=2,
            n_chains=2, n_runs=4, times=(0.1, 6.0), seed=5, melt_time=1.0,
            cool_time=1.0, equilibration_tau_alpha=2.0)


def _quiet(message):
  del message


@pytest.fixture(scope="module")
def local_cluster():
  cluster_ = distributed.LocalCluster(
      n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
      dashboard_address=None, memory_limit="2GiB")
  yield cluster_
  cluster_.close()


@pytest.fixture
def executor(local_cluster):
  with cluster.DaskExecutor(distributed.Client(local_cluster)) as e:
    yield e


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The records of the local pool (2 processes), to compare against."""
  out = tmp_path_factory.mktemp("reference")
  driver.simulate(driver.SimulationSpec(**SPEC), str(out), num_workers=2,
                  log=_quiet)
  return out


def test_dask_records_equal_local_pool(reference, executor, tmp_path):
  messages = []
  driver.simulate(driver.SimulationSpec(**SPEC), str(tmp_path),
                  log=messages.append, executor=executor)
  _assert_same_outputs(reference, tmp_path)
  assert any("Dask at" in m and "2 worker(s)" in m for m in messages)
  # The work directory (chain checkpoints, run files) is gone, as locally.
  assert not (tmp_path / "work").exists()


def _kill_a_worker_running(prefix, scheduler_address, killed, stop):
  """Kills (SIGKILL) the process of the first worker seen processing a task
  whose key starts with `prefix`; records (address, pid, keys)."""
  with distributed.Client(scheduler_address) as client:
    while not stop.is_set():
      for address, keys in client.processing().items():
        mine = [str(k) for k in keys if str(k).startswith(prefix)]
        if mine:
          pid = client.run(os.getpid, workers=[address])[address]
          os.kill(pid, signal.SIGKILL)
          killed.append((address, pid, mine))
          return
      time.sleep(0.005)


def test_worker_killed_mid_run_reruns_elsewhere(reference, local_cluster,
                                                executor, tmp_path):
  killed, stop = [], threading.Event()
  killer = threading.Thread(target=_kill_a_worker_running, args=(
      "_execute", local_cluster.scheduler_address, killed, stop))
  killer.start()
  try:
    driver.simulate(driver.SimulationSpec(**SPEC), str(tmp_path), log=_quiet,
                    executor=executor)
  finally:
    stop.set()
    killer.join()
  assert killed, "no worker was seen running an MD run"
  _, pid, keys = killed[0]
  assert keys
  with pytest.raises(ProcessLookupError):
    os.kill(pid, 0)  # the worker really died,
  # and every record is still there, complete and identical.
  _assert_same_outputs(reference, tmp_path)


def _die_first_time(task):
  """Test task: the attempt on item 3 kills its own worker process once."""
  index, marker_dir = task
  marker = os.path.join(marker_dir, f"attempts_{index}")
  with open(marker, "a") as f:
    f.write("x")
  if index == 3 and os.path.getsize(marker) == 1:
    os.kill(os.getpid(), signal.SIGKILL)
  return index, index**2


def test_task_that_kills_its_worker_is_rerun_once(executor, tmp_path):
  import cloudpickle  # pylint: disable=g-import-not-at-top
  # The workers cannot import this test module: send the function itself.
  cloudpickle.register_pickle_by_value(sys.modules[__name__])
  try:
    results = list(executor.map_unordered(
        _die_first_time, [(i, str(tmp_path)) for i in range(8)]))
  finally:
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
  # One result per task, none lost, none duplicated,
  assert sorted(results) == [(i, i**2) for i in range(8)]
  attempts = {i: os.path.getsize(tmp_path / f"attempts_{i}")
              for i in range(8)}
  # though the killed task ran twice; others may have too: a result
  # finished but still held by the dead worker is recomputed elsewhere,
  # and the client still gets one copy.
  assert attempts[3] == 2 and all(1 <= n <= 2 for n in attempts.values())
  # executor.map keeps the order of the tasks.
  assert executor.map(abs, [-3, 1, -2]) == [3, 1, 2]


CONFIG = '''
import ml_collections

def get_config():
  return ml_collections.ConfigDict({{"simulation": {simulation!r}}})
'''


def _main(args):
  return subprocess.Popen(
      [sys.executable, os.path.join(REPO_ROOT, "simulate_main.py")] + args,
      cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)


def _wait_for(predicate, proc, timeout=180.0):
  start = time.time()
  while not predicate():
    if proc.poll() is not None:
      raise AssertionError("finished before it could be killed: " +
                           proc.stdout.read())
    if time.time() - start > timeout:
      raise AssertionError("timed out")
    time.sleep(0.02)


def test_killed_client_resumes_with_the_same_command(reference, local_cluster,
                                                     tmp_path):
  config = tmp_path / "config.py"
  config.write_text(CONFIG.format(simulation=dict(SPEC)))
  out = tmp_path / "out"
  command = [f"--config={config}", f"--output_dir={out}",
             f"--dask_scheduler={local_cluster.scheduler_address}"]
  work = out / "work"
  stops = [
      # while the chains run on the workers,
      lambda: any(work.glob("chain_*/prep_cooled.npz")),
      # after the client wrote the first runs,
      lambda: any(work.glob("configuration_*/run_*.npz")),
      # after the first record.
      lambda: any(out.glob("configuration_*.npz")),
  ]
  for stop in stops:
    proc = _main(command)
    _wait_for(stop, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
  final = _main(command)
  output = final.communicate(timeout=300)[0]
  assert final.returncode == 0, output
  assert "resuming the simulation" in output
  _assert_same_outputs(reference, out)
  assert not any(p.name.endswith(".tmp") for p in out.iterdir())
  # The rerun of a finished simulation is a no-op.
  before = os.path.getmtime(out / "configuration_00000.npz")
  again = _main(command)
  assert again.wait(timeout=120) == 0
  assert os.path.getmtime(out / "configuration_00000.npz") == before


def test_soft_modes_per_configuration_on_dask(reference, executor, tmp_path):
  from glassy_dynamics_tf import soft_modes  # pylint: disable=g-import-not-at-top
  records = sorted(str(p) for p in reference.glob("configuration_*.npz"))
  messages = []
  paths = cluster.compute_soft_modes(records, str(tmp_path), executor,
                                     n_modes=10, log=messages.append)
  assert [os.path.basename(p) for p in paths] == [
      "configuration_00000.npz", "configuration_00001.npz"]
  local = soft_modes.SoftModesBaseline(n_modes=10)
  cached = cluster.cached_soft_modes_baseline(str(tmp_path), n_modes=10)
  assert len(cached.cache) == 2
  for record_path, path in zip(records, paths):
    record = npz_format.load_npz(record_path)
    with np.load(path) as data:
      participation = data["participation"]
      assert str(data["structure_key"]) == cluster.structure_key(
          record.positions, record.types, record.box)
    # Same numbers as the baseline computed here, in this process.
    expected = local.predict(record)
    np.testing.assert_allclose(participation, expected[:, 0], rtol=1e-9,
                               atol=1e-12)
    assert participation.sum() == pytest.approx(10.0)
    np.testing.assert_array_equal(cached.predict(record),
                                  np.repeat(participation[:, None],
                                            len(record.times), axis=1))
  assert cached.hits == 2
  # Resumed: nothing left to compute; other settings are not mixed in.
  cluster.compute_soft_modes(records, str(tmp_path), executor, n_modes=10,
                             log=messages.append)
  assert messages[-1].startswith("soft modes: 0 of 2")
  assert cluster.cached_soft_modes_baseline(str(tmp_path),
                                            n_modes=12).cache == {}


@pytest.mark.parametrize("flags,message", [
    (["--cluster=kubernetes"], "--cluster: unknown cluster 'kubernetes'"),
    (["--cluster=slurm", "--dask_scheduler=tcp://127.0.0.1:8786"],
     "--dask_scheduler and --cluster=slurm"),
    (["--dask_scheduler=nowhere"], "--dask_scheduler: expected an address"),
    (["--cluster=slurm", "--cluster_walltime=two days"],
     "--cluster_walltime: expected HH:MM:SS"),
    (["--cluster=pbs", "--cluster_jobs=0"], "--cluster_jobs: must be >= 1"),
])
def test_main_reports_bad_cluster_flags(tmp_path, flags, message):
  proc = _main(["--config=glassy_dynamics_tf/configs/smoke.py",
                f"--output_dir={tmp_path / 'out'}"] + flags)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode != 0
  assert message in out
  assert not os.path.exists(tmp_path / "out")


def test_unreachable_scheduler_is_named(monkeypatch):
  monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
  with pytest.raises(cluster.ClusterError,
                     match="cannot reach the scheduler at tcp://127.0.0.1:9"):
    cluster.make_executor(cluster.ClusterOptions(
        dask_scheduler="tcp://127.0.0.1:9"))


@pytest.mark.parametrize("name,expected", [
    ("slurm", ["#SBATCH -p short", "#SBATCH -A proj",
               "#SBATCH --cpus-per-task=4", "#SBATCH -t 02:00:00",
               "#SBATCH --qos=long"]),
    ("pbs", ["#PBS -q short", "#PBS -A proj", "#PBS -l walltime=02:00:00",
             "#PBS --qos=long"]),
    ("sge", ["#$ -q short", "#$ -P proj", "#$ -l h_rt=02:00:00",
             "#$ --qos=long"]),
    ("lsf", ["#BSUB -q short", '#BSUB -P "proj"', "#BSUB -n 4",
             "#BSUB -W 02:00:00",
             "#BSUB --qos=long"]),
])
def test_batch_job_scripts(name, expected):
  # Rendering a job script submits nothing; it needs no batch system.
  jobs = cluster.make_jobqueue_cluster(cluster.ClusterOptions(
      cluster=name, cores=4, memory="8GB", walltime="02:00:00", queue="short",
      account="proj", job_extra=("--qos=long",)))
  try:
    script = jobs.job_script()
  finally:
    jobs.close()
  for line in expected:
    assert line in script, script
  # One single-threaded worker process per core, this environment's Python.
  assert "--nthreads 1" in script and "--nworkers 4" in script
  assert sys.executable in script


def test_local_default_and_serial():
  with cluster.make_executor(cluster.ClusterOptions()) as e:
    assert isinstance(e, cluster.LocalPoolExecutor) and not e.remote
    assert e.n_workers == (os.cpu_count() or 1)
  with cluster.make_executor(cluster.ClusterOptions(num_workers=1)) as e:
    assert isinstance(e, cluster.SerialExecutor)
    assert sorted(e.map_unordered(abs, [-2, 1])) == [1, 2]


def test_manifest_does_not_depend_on_the_executor(reference, executor,
                                                  tmp_path):
  # Resuming a local-pool output directory on Dask is allowed: the settings
  # are the physics, not where it ran.
  with open(reference / driver.MANIFEST) as f:
    settings = json.load(f)["settings"]
  assert "num_workers" not in settings and "cluster" not in settings
  record = reference / "configuration_00001.npz"
  before = os.path.getmtime(record)
  driver.simulate(driver.SimulationSpec(**SPEC), str(reference), log=_quiet,
                  executor=executor)
  assert os.path.getmtime(record) == before


FAKE_SRUN = """#!/usr/bin/env bash
# srun on a one-node "allocation": drop srun's options, run the command.
while [[ "$1" == --* ]]; do shift; done
exec "$@"
"""


def test_slurm_job_script_runs_on_a_fake_allocation(reference, tmp_path):
  # scripts/cluster/slurm_simulate.sh end to end, with stand-ins for the two
  # Slurm commands it calls, on one "node" of two cores over loopback.
  import socket  # pylint: disable=g-import-not-at-top
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "srun").write_text(FAKE_SRUN)
  (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\necho 127.0.0.1\n")
  for tool in ("srun", "scontrol"):
    os.chmod(bin_dir / tool, 0o755)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  config = tmp_path / "config.py"
  config.write_text(CONFIG.format(simulation=dict(SPEC)))
  out = tmp_path / "out"
  env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
             OUT=str(out), REPO=REPO_ROOT, VENV=os.path.dirname(
                 os.path.dirname(sys.executable)), CONFIG=str(config),
             PORT=str(port), SLURM_CPUS_PER_TASK="2", SLURM_JOB_NUM_NODES="1",
             SLURM_JOB_NODELIST="node1", SLURM_JOB_ID="42")
  proc = subprocess.run(
      ["bash", os.path.join(REPO_ROOT, "scripts", "cluster",
                            "slurm_simulate.sh")],
      env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert f"Dask workers ready at tcp://127.0.0.1:{port}" in proc.stdout
  _assert_same_outputs(reference, out)
  assert (out / "dask_logs" / "scheduler-42.log").exists()
