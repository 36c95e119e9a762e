r"""Inference and graph-construction cost against system size (CPU).

  nice -n 10 python benchmarks/inference_scaling.py \
    [--sizes=4096,32768,110592,262144,1000000] [--memory_cap_gib=16] \
    [--out=benchmarks/results/inference_scaling.json]

For each number of particles N it measures, each in its own subprocess (so
that every peak-memory figure belongs to one measurement):
  predict         the exported SavedModel's `predict` signature (graph built
                  inside with graphs.build_graph_tf, then the network), for
                  the demo config's network (latent 32, 4 recurrences, 4
                  outputs) with random weights;
  build_graph     graphs.build_graph (NumPy cell list, host);
  build_graph_tf  graphs.build_graph_tf inside a tf.function with dynamic
                  shapes, as the SavedModel runs it;
  ckdtree         scipy.spatial.cKDTree(positions, boxsize=box) and
                  query_pairs(2.0, output_type="ndarray"): the neighbour
                  search alone (unordered pairs i < j, no vectors);
  ckdtree_graph   the same search completed to build_graph's exact output
                  (directed edges, self-loops, minimum-image vectors, sorted
                  by sender then receiver; see _ckdtree_graph), checked
                  identical to build_graph for N <= 32768.
Time: wall clock of one call; "first" is the first call (for TensorFlow it
includes tracing and graph optimisation), "time" the median of the calls
after it (between 1 and --max_repeats of them, within --time_budget_s).
Memory: the subprocess' resident-set high-water mark (ru_maxrss from wait4,
so also for a child that died), and its resident set just before the first
call (imports, inputs, loaded model), in GiB. Each subprocess runs under an
address-space limit (RLIMIT_AS, --memory_cap_gib) so that a size that does
not fit fails cleanly instead of exhausting a shared machine; a method that
fails at one N is not tried at larger N. TensorFlow maps ~2 GiB more address
space than it keeps resident, so the cap binds before the resident set
reaches it.

Configurations: a Kob-Andersen-like liquid at ρ = 1.2 σ⁻³ (80 % A, 20 % B at
random), particles on a simple-cubic lattice of spacing ρ^(-1/3) = 0.941 σ
(N a perfect cube; otherwise random vacancies of a slightly denser lattice)
each displaced uniformly by up to ±0.3 spacing per axis. The minimum
separation is then >= 0.4 spacing = 0.38 σ, and there are 39.3 edges per
particle (self-loop included) against 40.8 in the authors' T = 0.44
configuration (the golden file of ../shared/fixtures/deepmind); ±0.15 would
keep particles 0.66 σ apart but leave only 36 edges, since the lattice's
fifth shell (2.24 spacings) lies outside 2.0 σ. Structure does not matter
for timing, only the number of neighbours does.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags
import numpy as np

import machine  # benchmarks/machine.py  # pylint: disable=g-bad-import-order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DENSITY = 1.2      # σ⁻³, Kob & Andersen (1995)
CUTOFF = 2.0       # σ_AA, the paper's graph cut-off (Methods)
JITTER = 0.3       # lattice spacings, uniform per axis
METHODS = ("build_graph", "build_graph_tf", "ckdtree", "ckdtree_graph",
           "predict")
GIB = 1024**3

_SIZES = flags.DEFINE_list(
    "sizes", ["4096", "32768", "110592", "262144", "1000000"],
    "Numbers of particles (perfect cubes keep the lattice full).")
_METHODS = flags.DEFINE_list("methods", list(METHODS), "What to measure.")
_CAP = flags.DEFINE_float("memory_cap_gib", 16.0, "Address-space limit of "
                          "each measurement subprocess (RLIMIT_AS), GiB.")
_REPEATS = flags.DEFINE_integer("max_repeats", 5, "Timed calls after the "
                                "first, at most.")
_BUDGET = flags.DEFINE_float("time_budget_s", 60.0, "Stop repeating once the "
                             "timed calls took this long (at least one).")
_TIMEOUT = flags.DEFINE_integer("timeout_s", 3600, "Per subprocess.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/inference_scaling.json",
                           "JSON output.")
# Internal: one measurement in a subprocess.
_MEASURE = flags.DEFINE_enum("measure", None, list(METHODS) + ["export"],
                             "Run one measurement (internal).")
_N = flags.DEFINE_integer("n_particles", 0, "For --measure (internal).")
_SAVED_MODEL = flags.DEFINE_string("saved_model", "", "For --measure.")


# ------------------------------------------------------------ inputs ---


def configuration(n: int, seed: int = 0):
  """Jittered-lattice KA-like configuration (module docstring).

  Returns:
    positions [n, 3] float32 in [0, box), types [n] int32 (0 = A, 1 = B),
    box [3] float32; σ_AA units.
  """
  rng = np.random.default_rng(seed)
  side = (n / DENSITY)**(1 / 3)
  m = int(round(n**(1 / 3)))
  if m**3 < n:
    m += 1
  spacing = side / m
  sites = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"),
                   -1).reshape(-1, 3)
  if m**3 > n:
    sites = sites[np.sort(rng.choice(m**3, n, replace=False))]
  positions = (sites + 0.5 + rng.uniform(-JITTER, JITTER, (n, 3))) * spacing
  positions = np.mod(positions, side).astype(np.float32)
  positions[positions >= np.float32(side)] = 0.0
  types = np.zeros(n, np.int32)
  types[rng.permutation(n)[:n // 5]] = 1
  return positions, types, np.full(3, side, np.float32)


# -------------------------------------------------------- subprocesses ---


def _status_gib(field: str) -> float:
  """A Vm* line of /proc/self/status, GiB."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024 / GIB
  raise KeyError(field)


def _ckdtree_pairs(positions, box):
  from scipy import spatial  # pylint: disable=g-import-not-at-top
  tree = spatial.cKDTree(positions.astype(np.float64),
                         boxsize=box.astype(np.float64))
  return tree.query_pairs(CUTOFF, output_type="ndarray")


def _ckdtree_graph(positions, box):
  """build_graph's output from a k-d tree search.

  Directed edges with self-loops and minimum-image vectors, sorted by
  sender then receiver, without a sort of all 2P + N directed edges: the P
  unordered pairs are sorted once by (i, j); sender s's receivers are then
  [i of pairs (i, s), ascending] + [s] + [j of pairs (s, j), ascending], and
  each edge's place follows from per-particle counts (O(E) scatter). The
  vectors are computed as in build_graph (float64 minimum image of each
  direction, then float32), so the output is identical.

  Returns:
    senders, receivers [E] int32, vectors [E, 3] float32.
  """
  from glassy_dynamics_tf import periodic  # pylint: disable=g-import-not-at-top
  n = positions.shape[0]
  x = positions.astype(np.float64)
  box = box.astype(np.float64)
  key = _ckdtree_pairs(positions, box).astype(np.int64)
  key = key[:, 0] * n + key[:, 1]   # i < j
  key.sort()
  i, j = np.divmod(key, n)
  displacement = x[j] - x[i]
  forward = periodic.minimum_image(displacement, box)
  keep = np.einsum("ij,ij->i", forward, forward) < CUTOFF**2  # strict
  i, j, forward = i[keep], j[keep], forward[keep]
  backward = periodic.minimum_image(-displacement[keep], box)
  n_before = np.bincount(j, minlength=n)  # receivers < sender
  n_after = np.bincount(i, minlength=n)   # receivers > sender
  size = n_before + 1 + n_after
  start = np.cumsum(size) - size
  receivers = np.empty(int(size.sum()), np.int32)
  vectors = np.empty((receivers.size, 3), np.float32)
  # s -> j for pairs (s, j), already in (s, j) order.
  first = np.cumsum(n_after) - n_after
  place = start[i] + n_before[i] + 1 + np.arange(i.size) - first[i]
  receivers[place] = j
  vectors[place] = forward
  # j -> i for pairs (i, j), wanted in (j, i) order: a stable sort by j.
  order = np.argsort(j, kind="stable")
  first = np.cumsum(n_before) - n_before
  place = start[j[order]] + np.arange(i.size) - first[j[order]]
  receivers[place] = i[order]
  vectors[place] = backward[order]
  receivers[start + n_before] = np.arange(n)  # self-loops
  vectors[start + n_before] = 0.0
  senders = np.repeat(np.arange(n, dtype=np.int32), size)
  return senders, receivers, vectors


def _export(path: str) -> dict:
  """The demo config's network with random weights, as a SavedModel."""
  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.join(ROOT, "tests"))
  import tensorflow as tf
  from glassy_dynamics_tf import input_pipeline
  from glassy_dynamics_tf import model as model_lib
  from glassy_dynamics_tf import training
  from glassy_dynamics_tf.configs import demo
  import synthetic_records
  config = demo.get_config()
  # Four timescales, as the demo's four self-ISF levels.
  records = synthetic_records.make_records(2, n_particles=128,
                                           times=(0.2, 0.5, 1.0, 2.0))
  metadata = input_pipeline.compute_metadata(
      {"train": input_pipeline.records_dataset(records)}, config)
  model = training.create_model(config, metadata)
  training.export_saved_model(model, config, metadata, path)
  return {"tensorflow": tf.__version__,
          "latent_size": config.model.latent_size,
          "num_recurrences": config.model.num_recurrences,
          "mlp_layers": config.model.mlp_layers,
          "n_outputs": metadata.n_outputs,
          "parameters": model_lib.count_parameters(model)}


def _measure(method: str, n: int, saved_model: str) -> dict:
  """One measurement (runs in its own subprocess)."""
  # pylint: disable=g-import-not-at-top
  positions, types, box = configuration(n)
  if method == "predict":
    import tensorflow as tf
    predict = tf.saved_model.load(saved_model).signatures["predict"]
    args = dict(positions=tf.constant(positions), types=tf.constant(types),
                box=tf.constant(box))

    def call():
      out = predict(**args)["propensity"].numpy()
      if not np.all(np.isfinite(out)) or out.shape[0] != n:
        raise RuntimeError(f"predict: bad output {out.shape}")
      return None
  elif method == "build_graph":
    from glassy_dynamics_tf import graphs

    def call():
      return graphs.build_graph(positions, box, CUTOFF).n_edges
  elif method == "build_graph_tf":
    import tensorflow as tf
    from glassy_dynamics_tf import graphs

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32),
                                  tf.TensorSpec([3], tf.float32)])
    def build(x, b):
      return graphs.build_graph_tf(x, b, CUTOFF)

    x_tf, box_tf = tf.constant(positions), tf.constant(box)

    def call():  # eager results of a tf.function are computed on return
      return int(build(x_tf, box_tf).senders.shape[0])
  elif method == "ckdtree":

    def call():
      return 2 * _ckdtree_pairs(positions, box).shape[0] + n
  elif method == "ckdtree_graph":
    if n <= 32768:  # same edges, order and vectors as build_graph
      from glassy_dynamics_tf import graphs
      reference = graphs.build_graph(positions, box, CUTOFF)
      senders, receivers, vectors = _ckdtree_graph(positions, box)
      np.testing.assert_array_equal(senders, reference.senders)
      np.testing.assert_array_equal(receivers, reference.receivers)
      np.testing.assert_array_equal(vectors, reference.edge_vectors)
      del reference, senders, receivers, vectors

    def call():
      return int(_ckdtree_graph(positions, box)[0].shape[0])
  else:
    raise ValueError(method)

  baseline = _status_gib("VmRSS")
  start = time.perf_counter()
  n_edges = call()
  first = time.perf_counter() - start
  times = []
  while len(times) < _REPEATS.value and (
      not times or sum(times) < _BUDGET.value):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return {"first_s": first, "time_s": statistics.median(times),
          "times_s": times, "n_edges": n_edges,
          "baseline_rss_gib": baseline, "peak_rss_gib": _status_gib("VmHWM")}


def _child_main():
  cap = int(_CAP.value * GIB)
  resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
  try:
    if _MEASURE.value == "export":
      result = _export(_SAVED_MODEL.value)
    else:
      result = _measure(_MEASURE.value, _N.value, _SAVED_MODEL.value)
  except MemoryError as e:
    result = {"error": f"MemoryError {e}"}
  except Exception as e:  # pylint: disable=broad-except
    # TensorFlow's out-of-memory is ResourceExhaustedError; keep its "OOM
    # when allocating tensor with shape[...]" line.
    lines = str(e).splitlines() or [""]
    oom = [l.strip() for l in lines if "OOM when allocating" in l]
    result = {"error": f"{type(e).__name__}: {(oom or lines)[0][:300]}"}
  print("RESULT " + json.dumps(result), flush=True)


def _run_child(*args) -> dict:
  """Runs one measurement; its peak RSS comes from the kernel (wait4), so
  it is known even for a child that was killed or aborted."""
  command = [sys.executable, os.path.abspath(__file__),
             f"--memory_cap_gib={_CAP.value}",
             f"--max_repeats={_REPEATS.value}",
             f"--time_budget_s={_BUDGET.value}", *args]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile(
      "w+") as err:
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                             stderr=err, text=True)
    timer = threading.Timer(_TIMEOUT.value, child.kill)
    timer.start()
    _, status, usage = os.wait4(child.pid, 0)
    timer.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
  peak = usage.ru_maxrss * 1024 / GIB  # ru_maxrss is in KiB on Linux
  for line in stdout.splitlines():
    if line.startswith("RESULT "):
      return dict(json.loads(line[len("RESULT "):]), peak_rss_gib=peak)
  if child.returncode == -9:
    return {"error": f"killed (timeout {_TIMEOUT.value} s, or the kernel's "
                     f"out-of-memory killer)", "peak_rss_gib": peak}
  # Aborted by an allocation failure outside Python's reach (std::bad_alloc
  # in a TensorFlow kernel): keep the line that says so.
  lines = [l for l in stderr.splitlines() if l.strip()]
  reason = [l for l in lines if "bad_alloc" in l or "what()" in l]
  return {"error": f"exit status {child.returncode}: " +
                   " | ".join(reason[-1:] or lines[-2:]),
          "peak_rss_gib": peak}


# ------------------------------------------------------------- report ---


def _table(results) -> str:
  header = (f"{'N':>9s} {'method':15s} {'edges':>10s} {'first s':>9s} "
            f"{'time s':>9s} {'us/particle':>11s} {'peak GiB':>9s} "
            f"{'base GiB':>9s}")
  lines = [header]
  for row in results:
    if "error" in row:
      peak = (f" (peak {row['peak_rss_gib']:.1f} GiB)"
              if "peak_rss_gib" in row else "")
      lines.append(f"{row['n_particles']:9d} {row['method']:15s} "
                   f"FAILED: {row['error'][:100]}{peak}")
      continue
    edges = "-" if row.get("n_edges") is None else str(row["n_edges"])
    lines.append(
        f"{row['n_particles']:9d} {row['method']:15s} {edges:>10s} "
        f"{row['first_s']:9.3f} {row['time_s']:9.3f} "
        f"{1e6 * row['time_s'] / row['n_particles']:11.2f} "
        f"{row['peak_rss_gib']:9.2f} {row['baseline_rss_gib']:9.2f}")
  return "\n".join(lines)


def main(argv):
  del argv
  if _MEASURE.value:
    _child_main()
    return
  started = time.time()
  load_start = os.getloadavg()
  sizes = [int(s) for s in _SIZES.value]
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    saved_model = os.path.join(tmp, "saved_model")
    model = _run_child("--measure=export", f"--saved_model={saved_model}")
    if "error" in model:
      sys.exit(f"inference_scaling: export failed: {model['error']}")
    print(f"model: {model}", flush=True)
    failed = {}
    for n in sizes:
      for method in _METHODS.value:
        if method in failed:
          row = {"error": f"not tried: failed at N = {failed[method]}"}
        else:
          row = _run_child(f"--measure={method}", f"--n_particles={n}",
                           f"--saved_model={saved_model}")
          if "error" in row:
            failed[method] = n
        row = dict(n_particles=n, method=method, **row)
        results.append(row)
        print(_table([row]).splitlines()[-1], flush=True)
  report = {
      "machine": dict(machine.describe(
          ("tensorflow", "tensorflow-cpu", "numpy", "scipy")), load_average_at_start=load_start,
                      load_average_at_end=os.getloadavg()),
      "model": dict(model, config="glassy_dynamics_tf/configs/demo.py",
                    weights="random (training.create_model)"),
      "configuration": {
          "density": DENSITY, "cutoff": CUTOFF, "composition": "80:20 A:B",
          "positions": f"simple-cubic lattice, spacing density^(-1/3), "
                       f"uniform jitter +-{JITTER} spacing per axis"},
      "memory_cap_gib": _CAP.value,
      "threads": "TensorFlow defaults (all cores); NumPy and cKDTree one "
                 "thread",
      "wall_time_s": time.time() - started,
      "results": results,
  }
  print(_table(results))
  out = os.path.join(ROOT, _OUT.value) if not os.path.isabs(
      _OUT.value) else _OUT.value
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
