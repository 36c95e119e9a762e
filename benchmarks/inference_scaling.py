r"""Inference cost against system size (CPU): whole box vs domains.

  nice -n 10 python benchmarks/inference_scaling.py \
    [--sizes=4096,32768,110592,262144,1000000] [--memory_cap_gib=16] \
    [--out=benchmarks/results/inference_scaling.json]

For each number of particles N it measures, each in its own subprocess (so
that every peak-memory figure belongs to one measurement):
  predict          the exported SavedModel's `predict` signature on the
                   whole box (graph built inside with graphs.build_graph_tf,
                   then the network), for the demo config's network (latent
                   32, 4 recurrences, 4 outputs) with random weights;
  predict_domains  the same model through prediction.load_predictor and
                   Predictor.predict_in_domains with the default budget
                   (domains.DEFAULT_MAX_PARTICLES_PER_DOMAIN particles per
                   call, halo 4 x 2.0 + 0.01 σ), for N in --domain_sizes;
  exactness        both on the same configuration (N in --exact_sizes): the
                   largest difference and the share of bit-identical outputs;
  predict_paper    the whole-box `predict` of the paper's network
                   (configs/default.py: latent 64, 7 recurrences), for N in
                   --paper_sizes: the memory of one call of the default
                   domain size for that network.
Graph construction alone is measured by benchmarks/graph_construction.py.
Time: wall clock of one call; "first" is the first call (for TensorFlow it
includes tracing and graph optimisation), "time" the median of the calls
after it (between 1 and --max_repeats of them, within --time_budget_s);
predict_domains is called once (time = first; its per-domain call times are
kept). Memory: the subprocess' resident-set high-water mark (ru_maxrss from
wait4, so also for a child that died), and its resident set just before the
first call (imports, inputs, loaded model), in GiB. Each subprocess runs
under an address-space limit (RLIMIT_AS, --memory_cap_gib) so that a size
that does not fit fails cleanly instead of exhausting a shared machine; a
method that fails at one N is not tried at larger N. TensorFlow maps ~2 GiB
more address space than it keeps resident, so the cap binds before the
resident set reaches it. Each row records the load average before and after
it (the machine is shared).

Configurations: a Kob-Andersen-like liquid at ρ = 1.2 σ⁻³ (80 % A, 20 % B at
random), particles on a simple-cubic lattice of spacing ρ^(-1/3) = 0.941 σ
(N a perfect cube; otherwise random vacancies of a slightly denser lattice)
each displaced uniformly by up to ±0.3 spacing per axis. The minimum
separation is then >= 0.4 spacing = 0.38 σ, and there are 39.3 edges per
particle (self-loop included) against 40.8 in the authors' T = 0.44
configuration (tests/fixtures/deepmind/t044_s09_golden.npz); ±0.15 would
keep particles 0.66 σ apart but leave only 36 edges, since the lattice's
fifth shell (2.24 spacings) lies outside 2.0 σ. Structure does not matter
for timing, only the number of neighbours does.
"""

import json
import os
import resource
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

import machine  # benchmarks/machine.py  # pylint: disable=g-bad-import-order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DENSITY = 1.2      # σ⁻³, Kob & Andersen (1995)
CUTOFF = 2.0       # σ_AA, the paper's graph cut-off (Methods)
JITTER = 0.3       # lattice spacings, uniform per axis
METHODS = ("predict", "predict_domains", "exactness", "predict_paper")

_SIZES = flags.DEFINE_list(
    "sizes", ["4096", "32768", "110592", "262144", "1000000"],
    "Numbers of particles (perfect cubes keep the lattice full).")
_DOMAIN_SIZES = flags.DEFINE_list(
    "domain_sizes", ["110592", "262144", "1000000"],
    "Sizes (within --sizes) at which predict_domains runs.")
_EXACT_SIZES = flags.DEFINE_list(
    "exact_sizes", ["110592"], "Sizes (within --sizes) at which exactness "
    "runs (the whole box must fit).")
_PAPER_SIZES = flags.DEFINE_list(
    "paper_sizes", ["32768", "65536"], "Sizes at which predict_paper runs.")
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
_CONFIG = flags.DEFINE_enum("config", "demo", ["demo", "default"],
                            "For --measure=export (internal).")


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


def _export(path: str, config_name: str) -> dict:
  """A config's network with random weights, as a SavedModel."""
  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.join(ROOT, "tests"))
  import tensorflow as tf
  from glassy_dynamics_tf import input_pipeline
  from glassy_dynamics_tf import model as model_lib
  from glassy_dynamics_tf import training
  from glassy_dynamics_tf.configs import default
  from glassy_dynamics_tf.configs import demo
  import synthetic_records
  tf.random.set_seed(0)
  config = {"demo": demo, "default": default}[config_name].get_config()
  # Four timescales, as the demo's four self-ISF levels.
  records = synthetic_records.make_records(2, n_particles=128,
                                           times=(0.2, 0.5, 1.0, 2.0))
  metadata = input_pipeline.compute_metadata(
      {"train": input_pipeline.records_dataset(records)}, config)
  model = training.create_model(config, metadata)
  training.export_saved_model(model, config, metadata, path)
  return {"tensorflow": tf.__version__,
          "config": f"glassy_dynamics_tf/configs/{config_name}.py",
          "latent_size": config.model.latent_size,
          "num_recurrences": config.model.num_recurrences,
          "mlp_layers": config.model.mlp_layers,
          "n_outputs": metadata.n_outputs,
          "parameters": model_lib.count_parameters(model)}


def _whole_box(saved_model: str, positions, types, box):
  """The SavedModel's predict signature on the whole box, as a callable."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  predict = tf.saved_model.load(saved_model).signatures["predict"]
  args = dict(positions=tf.constant(positions), types=tf.constant(types),
              box=tf.constant(box))
  return lambda: predict(**args)["propensity"].numpy()


def _measure(method: str, n: int, saved_model: str) -> dict:
  """One measurement (runs in its own subprocess)."""
  # pylint: disable=g-import-not-at-top
  positions, types, box = configuration(n)
  extra = {}
  repeats = _REPEATS.value
  if method in ("predict", "predict_paper"):
    predict = _whole_box(saved_model, positions, types, box)

    def call():
      out = predict()
      if not np.all(np.isfinite(out)) or out.shape[0] != n:
        raise RuntimeError(f"predict: bad output {out.shape}")
  elif method == "predict_domains":
    from glassy_dynamics_tf import domains
    from glassy_dynamics_tf import prediction
    predictor = prediction.load_predictor(saved_model)
    repeats = 0  # minutes per call at N = 10^6; one is enough.

    def call():
      start = time.perf_counter()
      plan = predictor.plan_domains(positions, box)
      planned = time.perf_counter() - start
      steps = []
      out = domains.predict_with_decomposition(
          predictor.predict, positions, types, plan,
          progress=steps.append).propensity
      if not np.all(np.isfinite(out)) or out.shape[0] != n:
        raise RuntimeError(f"predict_domains: bad output {out.shape}")
      seconds = [s.seconds for s in steps]
      extra.update(
          grid=list(plan.grid), n_domains=plan.n_domains, halo=plan.halo,
          max_particles=plan.max_particles,
          region_particles_max=int(plan.region_particles.max()),
          region_particles_min=int(plan.region_particles.min()),
          work=plan.work, plan_s=planned, domain_s_median=statistics.median(
              seconds), domain_s_sum=sum(seconds), domain_s=seconds,
          description=plan.describe())
  elif method == "exactness":
    from glassy_dynamics_tf import prediction
    predictor = prediction.load_predictor(saved_model)
    whole = _whole_box(saved_model, positions, types, box)
    repeats = 0

    def call():
      reference = whole()
      result = predictor.predict_in_domains(positions, types, box)
      difference = np.abs(result.propensity - reference)
      extra.update(
          description=result.decomposition.describe(),
          max_abs_difference=float(difference.max()),
          max_abs_output=float(np.abs(reference).max()),
          output_std=[float(s) for s in reference.std(axis=0)],
          bit_identical_fraction=float(np.mean(difference == 0)))
  else:
    raise ValueError(method)

  load_before = os.getloadavg()
  baseline = machine.status_gib("VmRSS")
  start = time.perf_counter()
  call()
  first = time.perf_counter() - start
  times = []
  while len(times) < repeats and (not times or sum(times) < _BUDGET.value):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return dict(extra, first_s=first,
              time_s=statistics.median(times) if times else first,
              times_s=times, baseline_rss_gib=baseline,
              peak_rss_gib=machine.status_gib("VmHWM"),
              load_average_before=load_before,
              load_average_after=os.getloadavg())


def _child_main():
  cap = int(_CAP.value * machine.GIB)
  resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
  try:
    if _MEASURE.value == "export":
      result = _export(_SAVED_MODEL.value, _CONFIG.value)
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
  """Runs one measurement in a subprocess; adds its peak RSS (wait4)."""
  run = machine.run_child(
      __file__, [f"--memory_cap_gib={_CAP.value}",
                 f"--max_repeats={_REPEATS.value}",
                 f"--time_budget_s={_BUDGET.value}", *args],
      ROOT, _TIMEOUT.value)
  peak = run.peak_rss_gib
  if run.result is not None:
    return dict(run.result, peak_rss_gib=peak)
  if run.returncode == -9:
    return {"error": f"killed (timeout {_TIMEOUT.value} s, or the kernel's "
                     f"out-of-memory killer)", "peak_rss_gib": peak}
  # Aborted by an allocation failure outside Python's reach (std::bad_alloc
  # in a TensorFlow kernel): keep the line that says so.
  lines = run.stderr_lines
  reason = [l for l in lines if "bad_alloc" in l or "what()" in l]
  return {"error": f"exit status {run.returncode}: " +
                   " | ".join(reason[-1:] or lines[-2:]),
          "peak_rss_gib": peak}


# ------------------------------------------------------------- report ---


def count_edges(positions, box) -> int:
  """Directed edges closer than CUTOFF, self-loops included (the graph the
  model sees), from a k-d tree search (light enough for N = 10^6)."""
  from scipy import spatial  # pylint: disable=g-import-not-at-top
  x = positions.astype(np.float64)
  box = box.astype(np.float64)
  pairs = spatial.cKDTree(x, boxsize=box).query_pairs(
      CUTOFF, output_type="ndarray")
  d = x[pairs[:, 1]] - x[pairs[:, 0]]
  d -= box * np.round(d / box)
  return int(2 * np.sum(np.einsum("ij,ij->i", d, d) < CUTOFF**2) +
             len(positions))


def _table(results) -> str:
  header = (f"{'N':>9s} {'method':15s} {'first s':>9s} {'time s':>9s} "
            f"{'us/particle':>11s} {'peak GiB':>9s} {'base GiB':>9s} "
            f"{'KiB/particle':>12s}  notes")
  lines = [header]
  for row in results:
    if "error" in row:
      peak = (f" (peak {row['peak_rss_gib']:.1f} GiB)"
              if "peak_rss_gib" in row else "")
      lines.append(f"{row['n_particles']:9d} {row['method']:15s} "
                   f"FAILED: {row['error'][:100]}{peak}")
      continue
    n = row["n_particles"]
    notes = ""
    if "grid" in row:
      notes = (f"grid {row['grid']}, <= {row['region_particles_max']} per "
               f"call, work x{row['work']:.2f}")
    if "max_abs_difference" in row:
      notes = (f"max |diff| {row['max_abs_difference']:.2e}, bit-identical "
               f"{100 * row['bit_identical_fraction']:.1f} %")
    lines.append(
        f"{n:9d} {row['method']:15s} {row['first_s']:9.3f} "
        f"{row['time_s']:9.3f} {1e6 * row['time_s'] / n:11.2f} "
        f"{row['peak_rss_gib']:9.2f} {row['baseline_rss_gib']:9.2f} "
        f"{(row['peak_rss_gib'] - row['baseline_rss_gib']) * 2**20 / n:12.1f}"
        f"  {notes}")
  return "\n".join(lines)


def main(argv):
  del argv
  if _MEASURE.value:
    _child_main()
    return
  started = time.time()
  load_start = os.getloadavg()
  wanted = {
      "predict": [int(s) for s in _SIZES.value],
      "predict_domains": [int(s) for s in _DOMAIN_SIZES.value],
      "exactness": [int(s) for s in _EXACT_SIZES.value],
      "predict_paper": [int(s) for s in _PAPER_SIZES.value],
  }
  wanted = {m: sizes for m, sizes in wanted.items() if m in _METHODS.value}
  results = []
  models = {}
  with tempfile.TemporaryDirectory() as tmp:
    paths = {"demo": os.path.join(tmp, "demo"),
             "default": os.path.join(tmp, "default")}
    for name in ("demo", "default") if "predict_paper" in wanted else (
        "demo",):
      models[name] = _run_child("--measure=export", f"--config={name}",
                                f"--saved_model={paths[name]}")
      if "error" in models[name]:
        sys.exit(f"inference_scaling: export failed: {models[name]}")
      print(f"model: {models[name]}", flush=True)
    edges = {}
    failed = {}
    for n in sorted({n for sizes in wanted.values() for n in sizes}):
      edges[n] = count_edges(*configuration(n)[::2])
      for method, sizes in wanted.items():
        if n not in sizes:
          continue
        if method in failed:
          row = {"error": f"not tried: failed at N = {failed[method]}"}
        else:
          path = paths["default" if method == "predict_paper" else "demo"]
          row = _run_child(f"--measure={method}", f"--n_particles={n}",
                           f"--saved_model={path}")
          if "error" in row:
            failed[method] = n
        row = dict(n_particles=n, n_edges=edges[n], method=method, **row)
        results.append(row)
        print(_table([row]).splitlines()[-1], flush=True)
  report = {
      "machine": dict(machine.describe(
          ("tensorflow", "tensorflow-cpu", "numpy", "scipy")),
                      load_average_at_start=load_start,
                      load_average_at_end=os.getloadavg()),
      "models": {name: dict(info, weights="random (training.create_model, "
                                          "tf.random.set_seed(0))")
                 for name, info in models.items()},
      "configuration": {
          "density": DENSITY, "cutoff": CUTOFF, "composition": "80:20 A:B",
          "positions": f"simple-cubic lattice, spacing density^(-1/3), "
                       f"uniform jitter +-{JITTER} spacing per axis"},
      "memory_cap_gib": _CAP.value,
      "threads": "TensorFlow defaults (all cores)",
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
