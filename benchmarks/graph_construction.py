r"""Graph construction: graphs.build_graph against a k-d tree pair search (CPU).

  nice -n 10 python benchmarks/graph_construction.py \
    [--sizes=4096,32768,110592,262144,1000000] [--rounds=3] \
    [--labels=lattice,shuffled] \
    [--out=benchmarks/results/graph_construction.json]

Methods, each measured in its own subprocess (so that every peak-memory
figure belongs to one measurement):
  build_graph          graphs.build_graph: the whole output (directed edges,
                       self-loops, float32 vectors, sorted by sender then
                       receiver).
  cell_list_reference  the build_graph before issue #8.2, copied here
                       unchanged as `_cell_list_reference` so that the two
                       stay side by side: all 27 neighbour cells, float32
                       pre-selection of every candidate pair, float64
                       minimum image of the survivors, one argsort. It
                       skips only the input validation (the inputs here
                       are valid).
  ckdtree_search       scipy.spatial.cKDTree(positions, boxsize=box) and
                       query_pairs(2.0, output_type="ndarray"): the bare
                       neighbour search (unordered pairs i < j; no vectors,
                       no directions, no ordering), the yardstick of the
                       issue.
  build_graph_tf       (not by default) graphs.build_graph_tf in a
                       tf.function with dynamic n, as the SavedModel's
                       predict runs it; TensorFlow uses both cores, so its
                       CPU time exceeds its wall time.

Protocol. For each particle ordering (--labels) and N, --rounds rounds; in
each round every method runs once in a fresh subprocess, in an order
rotated from round to round, so that load from other users of the shared
machine hits the methods alike. A subprocess makes one untimed first call,
then timed calls until --calls calls or --time_budget_s seconds of them (at
least one). Per (labels, N, method) the JSON keeps every call; the summary
gives the median and range (min-max) of the timed calls of all rounds, in
wall-clock seconds and in CPU seconds of the process (user + system, from
getrusage; all but build_graph_tf run on one thread), and the largest peak
resident set (VmHWM) minus the resident set before the first call (after
imports and inputs), over the rounds. Subprocesses run under an
address-space limit (RLIMIT_AS, --memory_cap_gib) so that a size that does
not fit fails cleanly instead of exhausting the shared machine.

Inputs: inference_scaling.configuration, a KA-like liquid at ρ = 1.2 (a
jittered simple-cubic lattice, 39.3 edges per particle within 2.0 σ,
self-loop included), as float32 positions and box. Labels "lattice": the
particles numbered along the lattice as generated (neighbours have nearby
indices); "shuffled": the same positions under a random permutation of the
labels, as in a liquid that has diffused since it was labelled: the
gathers of the edge vectors then become random memory accesses.

Correctness: one more subprocess per N <= --verify_max_n checks that
build_graph's output is bit-identical to _cell_list_reference's.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np

# pylint: disable=g-bad-import-order
import inference_scaling  # benchmarks/inference_scaling.py: the inputs
import machine  # benchmarks/machine.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUTOFF = inference_scaling.CUTOFF  # 2.0 σ_AA, the paper's graph cut-off
METHODS = ("build_graph", "cell_list_reference", "ckdtree_search",
           "build_graph_tf")
DEFAULT_METHODS = METHODS[:3]


def _parse_args(argv=None) -> argparse.Namespace:
  """Command line (argparse: inference_scaling, imported for its inputs,
  already defines absl flags of the same names)."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  add = parser.add_argument
  add("--sizes", default="4096,32768,110592,262144,1000000",
      help="Numbers of particles, comma-separated.")
  add("--methods", default=",".join(DEFAULT_METHODS),
      help=f"What to measure, of {', '.join(METHODS)}.")
  add("--labels", default="lattice,shuffled",
      help="Particle orderings: lattice, shuffled.")
  add("--rounds", type=int, default=3, help="Subprocesses per (labels, N, "
      "method), interleaved with the others.")
  add("--calls", type=int, default=7, help="Timed calls per subprocess, at "
      "most (after one untimed first call).")
  add("--time_budget_s", type=float, default=20.0, help="Stop the timed "
      "calls of a subprocess once they took this long.")
  add("--memory_cap_gib", type=float, default=16.0, help="Address-space "
      "limit of each measurement subprocess (RLIMIT_AS), GiB.")
  add("--verify_max_n", type=int, default=262144, help="Check bit-identity "
      "with the reference up to this N.")
  add("--timeout_s", type=int, default=3600, help="Per subprocess.")
  add("--out", default="benchmarks/results/graph_construction.json",
      help="JSON output.")
  # Internal: one measurement in a subprocess.
  add("--measure", choices=list(METHODS) + ["verify"], help=argparse.SUPPRESS)
  add("--n_particles", type=int, default=0, help=argparse.SUPPRESS)
  add("--label", default="lattice", help=argparse.SUPPRESS)
  return parser.parse_args(argv)


# ----------------------------------------------- the builder before #8.2 ---


def _reference_cells_per_axis(box, cutoff, n):
  """[3] int64 cells per axis, each edge >= cutoff (graphs.py before #8.2)."""
  n_cells = np.maximum(np.floor(box / (cutoff * (1 + 1e-6))), 1)
  limit = 4 * n + 64
  total = np.prod(n_cells)
  if total > limit:
    n_cells = np.maximum(np.floor(n_cells / (total / limit)**(1 / 3)), 1)
  return n_cells.astype(np.int64)


def _reference_unique_offsets(n_cells):
  """[K, 3] int64 offsets distinct modulo n_cells (graphs.py before #8.2)."""
  per_axis = []
  for n in n_cells:
    per_axis.append([o for o in (-1, 0, 1)
                     if o == 0 or (o == 1 and n >= 2) or (o == -1 and n >= 3)])
  grid = np.meshgrid(*per_axis, indexing="ij")
  return np.stack([g.ravel() for g in grid], axis=-1).astype(np.int64)


def _cell_list_reference(positions, box, cutoff=CUTOFF, self_loops=True):
  """graphs.build_graph as it was before issue #8.2 (validation omitted).

  Returns:
    senders, receivers [E] int32, vectors [E, 3] float32, sorted by sender
    then receiver.
  """
  from glassy_dynamics_tf import periodic  # pylint: disable=g-import-not-at-top
  positions = np.asarray(positions, np.float64)
  box = np.asarray(box, np.float64)
  cutoff = float(cutoff)
  n = positions.shape[0]
  wrapped = periodic.wrap(positions, box)
  n_cells = _reference_cells_per_axis(box, cutoff, n)
  cell_size = box / n_cells
  cell3 = np.minimum((wrapped / cell_size).astype(np.int64), n_cells - 1)
  strides = np.array([n_cells[1] * n_cells[2], n_cells[2], 1], np.int64)
  order = np.argsort(cell3 @ strides, kind="stable")  # particles by cell
  cell3 = cell3[order]
  counts = np.bincount(cell3 @ strides, minlength=int(np.prod(n_cells)))
  starts = np.cumsum(counts) - counts

  offsets = _reference_unique_offsets(n_cells)   # [K, 3]
  n_offsets = offsets.shape[0]
  neighbour_cell = (np.mod(cell3[:, None, :] + offsets[None], n_cells)
                    @ strides).ravel()            # [n * K]
  per_candidate = counts[neighbour_cell]
  total = int(per_candidate.sum())
  group_start = np.cumsum(per_candidate) - per_candidate
  senders = np.repeat(np.repeat(np.arange(n, dtype=np.int64), n_offsets),
                      per_candidate)
  receivers = (np.arange(total, dtype=np.int64)
               + np.repeat(starts[neighbour_cell] - group_start,
                           per_candidate))

  near = np.zeros(total, np.float32)
  for axis in range(3):
    x = wrapped[order, axis].astype(np.float32)
    length = np.float32(box[axis])
    d = x[receivers] - x[senders]
    d -= length * np.rint(d / length)
    near += d * d
  near = near < np.float32((cutoff * (1 + 1e-4))**2)
  if not self_loops:
    near &= senders != receivers
  senders, receivers = order[senders[near]], order[receivers[near]]
  vectors = periodic.minimum_image(wrapped[receivers] - wrapped[senders], box)
  keep = np.einsum("ij,ij->i", vectors, vectors) < cutoff * cutoff
  senders, receivers, vectors = senders[keep], receivers[keep], vectors[keep]
  canonical = np.argsort(senders * n + receivers, kind="stable")
  return (senders[canonical].astype(np.int32),
          receivers[canonical].astype(np.int32),
          vectors[canonical].astype(np.float32))


# -------------------------------------------------------- subprocesses ---


def _inputs(n: int, label: str):
  """positions [n, 3] float32 in [0, box), box [3] float32 (σ_AA)."""
  positions, _, box = inference_scaling.configuration(n)
  if label == "shuffled":
    positions = positions[np.random.default_rng(1).permutation(n)]
  elif label != "lattice":
    raise ValueError(f"--labels: expected lattice or shuffled, got {label}")
  return positions, box


def _timed(call) -> dict:
  """One call: wall-clock and CPU (user, system) seconds, its size."""
  before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  size = call()
  wall = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_SELF)
  return {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime,
          "system_s": after.ru_stime - before.ru_stime, "size": size}


def _measure(args, method: str, n: int, label: str) -> dict:
  """One measurement (runs in its own subprocess)."""
  # pylint: disable=g-import-not-at-top
  positions, box = _inputs(n, label)
  if method == "build_graph":
    from glassy_dynamics_tf import graphs

    def call():
      return graphs.build_graph(positions, box, CUTOFF).n_edges
  elif method == "cell_list_reference":
    # Imported before the baseline resident set is taken, as for the others.
    from glassy_dynamics_tf import periodic  # pylint: disable=unused-import

    def call():
      return int(_cell_list_reference(positions, box)[0].shape[0])
  elif method == "ckdtree_search":
    from scipy import spatial

    def call():
      tree = spatial.cKDTree(positions.astype(np.float64),
                             boxsize=box.astype(np.float64))
      return int(tree.query_pairs(CUTOFF, output_type="ndarray").shape[0])
  elif method == "build_graph_tf":
    import tensorflow as tf
    from glassy_dynamics_tf import graphs

    # As the SavedModel's predict runs it: a tf.function with dynamic n.
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32),
                                  tf.TensorSpec([3], tf.float32)])
    def build(x, b):
      return graphs.build_graph_tf(x, b, CUTOFF)

    x_tf, box_tf = tf.constant(positions), tf.constant(box)

    def call():  # eager results of a tf.function are computed on return
      return int(build(x_tf, box_tf).senders.shape[0])
  elif method == "verify":
    from glassy_dynamics_tf import graphs
    graph = graphs.build_graph(positions, box, CUTOFF)
    reference = _cell_list_reference(positions, box)
    identical = all(np.array_equal(np.asarray(a).view(np.int32),
                                   np.asarray(b).view(np.int32))
                    for a, b in zip(graph, reference))
    return {"identical": bool(identical), "n_edges": graph.n_edges}
  else:
    raise ValueError(method)

  baseline = machine.status_gib("VmRSS")
  first = _timed(call)
  calls = []
  while len(calls) < args.calls and (
      not calls or sum(c["wall_s"] for c in calls) < args.time_budget_s):
    calls.append(_timed(call))
  return {"first": first, "calls": calls, "baseline_rss_gib": baseline,
          "peak_rss_gib": machine.status_gib("VmHWM"),
          "load_average": os.getloadavg()}


def _child_main(args):
  cap = int(args.memory_cap_gib * machine.GIB)
  resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
  try:
    result = _measure(args, args.measure, args.n_particles, args.label)
  except MemoryError as e:
    result = {"error": f"MemoryError {e}"}
  except Exception as e:  # pylint: disable=broad-except
    result = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
  print("RESULT " + json.dumps(result), flush=True)


def _run_child(args, method: str, n: int, label: str) -> dict:
  """Runs one measurement in a subprocess; adds its ru_maxrss (wait4)."""
  run = machine.run_child(
      __file__, [f"--measure={method}", f"--n_particles={n}",
                 f"--label={label}", f"--calls={args.calls}",
                 f"--time_budget_s={args.time_budget_s}",
                 f"--memory_cap_gib={args.memory_cap_gib}"],
      ROOT, args.timeout_s)
  if run.result is not None:
    return dict(run.result, ru_maxrss_gib=run.peak_rss_gib)
  return {"error": f"exit status {run.returncode}: " +
                   " | ".join(run.stderr_lines[-2:]),
          "ru_maxrss_gib": run.peak_rss_gib}


# ------------------------------------------------------------- report ---


def _summary(rows) -> dict:
  """Per (labels, N, method): medians and ranges of the timed calls."""
  groups = {}
  for row in rows:
    groups.setdefault((row["labels"], row["n_particles"], row["method"]),
                      []).append(row)
  summary = {}
  for (label, n, method), runs in groups.items():
    good = [r for r in runs if "error" not in r]
    key = f"{label}/{n}/{method}"
    if not good:
      summary[key] = {"error": runs[0].get("error", "?")}
      continue
    calls = [c for r in good for c in r["calls"]]
    wall = [c["wall_s"] for c in calls]
    cpu = [c["user_s"] + c["system_s"] for c in calls]
    system = [c["system_s"] for c in calls]
    summary[key] = {
        "labels": label, "n_particles": n, "method": method,
        "size": calls[0]["size"], "n_calls": len(calls),
        "n_processes": len(good),
        "wall_median_s": statistics.median(wall),
        "wall_min_s": min(wall), "wall_max_s": max(wall),
        "cpu_median_s": statistics.median(cpu),
        "cpu_min_s": min(cpu), "cpu_max_s": max(cpu),
        "system_median_s": statistics.median(system),
        "first_wall_median_s": statistics.median(
            r["first"]["wall_s"] for r in good),
        "peak_minus_baseline_gib": max(
            r["peak_rss_gib"] - r["baseline_rss_gib"] for r in good),
        "peak_rss_gib": max(r["peak_rss_gib"] for r in good),
        "baseline_rss_gib": statistics.median(
            r["baseline_rss_gib"] for r in good),
    }
  for entry in list(summary.values()):
    if entry.get("method") in ("build_graph", "cell_list_reference"):
      search = summary.get(
          f"{entry['labels']}/{entry['n_particles']}/ckdtree_search", {})
      if "wall_median_s" in search:
        entry["wall_ratio_to_search"] = (entry["wall_median_s"]
                                         / search["wall_median_s"])
        entry["cpu_ratio_to_search"] = (entry["cpu_median_s"]
                                        / search["cpu_median_s"])
  return summary


def _markdown(summary) -> str:
  """Tables for the results .md (one per particle ordering)."""
  lines = []
  labels = sorted({v["labels"] for v in summary.values() if "labels" in v})
  for label in labels:
    lines += [f"### labels: {label}", "",
              "| N | method | wall s: median (min–max) | CPU s: median "
              "(min–max) | system s | peak − baseline GiB | wall / search "
              "| CPU / search |",
              "|---:|---|---:|---:|---:|---:|---:|---:|"]
    rows = sorted((v for v in summary.values() if v.get("labels") == label),
                  key=lambda v: (v["n_particles"],
                                 METHODS.index(v["method"])))
    for v in rows:
      ratio = (f"{v['wall_ratio_to_search']:.2f} | "
               f"{v['cpu_ratio_to_search']:.2f}"
               if "wall_ratio_to_search" in v else " | ")
      lines.append(
          f"| {v['n_particles']:,} | {v['method']} | "
          f"{v['wall_median_s']:.3g} ({v['wall_min_s']:.3g}–"
          f"{v['wall_max_s']:.3g}) | {v['cpu_median_s']:.3g} "
          f"({v['cpu_min_s']:.3g}–{v['cpu_max_s']:.3g}) | "
          f"{v['system_median_s']:.2g} | "
          f"{v['peak_minus_baseline_gib']:.2f} | {ratio} |")
    lines.append("")
  return "\n".join(lines)


def main():
  args = _parse_args()
  if args.measure:
    _child_main(args)
    return
  started = time.time()
  load_start = os.getloadavg()
  sizes = [int(s) for s in args.sizes.split(",")]
  methods = args.methods.split(",")
  rows, verified = [], []
  for label in args.labels.split(","):
    for n in sizes:
      if n <= args.verify_max_n:
        check = _run_child(args, "verify", n, label)
        verified.append(dict(labels=label, n_particles=n, **check))
        print(f"{label} N={n} verify: {check}", flush=True)
        if not check.get("identical"):
          sys.exit(f"graph_construction: build_graph differs from the "
                   f"reference at N = {n} ({label}): {check}")
      for round_index in range(args.rounds):
        shift = round_index % len(methods)
        for method in methods[shift:] + methods[:shift]:
          row = _run_child(args, method, n, label)
          row = dict(labels=label, n_particles=n, method=method,
                     round=round_index, **row)
          rows.append(row)
          if "error" in row:
            print(f"{label} N={n} {method}: FAILED {row['error']}",
                  flush=True)
          else:
            walls = ", ".join(f"{c['wall_s']:.3f}" for c in row["calls"])
            print(f"{label} N={n} {method} round {round_index}: wall "
                  f"[{walls}] peak-baseline "
                  f"{row['peak_rss_gib'] - row['baseline_rss_gib']:.2f} GiB "
                  f"load {row['load_average'][0]:.1f}", flush=True)
  summary = _summary(rows)
  report = {
      "machine": dict(machine.describe(
          ("numpy", "scipy", "tensorflow", "tensorflow-cpu")),
                      load_average_at_start=load_start,
                      load_average_at_end=os.getloadavg()),
      "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
      "command": "nice -n 10 python benchmarks/graph_construction.py "
                 + " ".join(a for a in sys.argv[1:]),
      "configuration": {
          "density": inference_scaling.DENSITY, "cutoff": CUTOFF,
          "positions": "inference_scaling.configuration: simple-cubic "
                       "lattice, spacing density^(-1/3), uniform jitter "
                       f"+-{inference_scaling.JITTER} spacing per axis",
          "labels": args.labels.split(",")},
      "protocol": {"rounds": args.rounds, "calls": args.calls,
                   "time_budget_s": args.time_budget_s,
                   "memory_cap_gib": args.memory_cap_gib},
      "wall_time_s": time.time() - started,
      "verified_identical": verified,
      "summary": summary,
      "results": rows,
  }
  print(_markdown(summary))
  out = (args.out if os.path.isabs(args.out)
         else os.path.join(ROOT, args.out))
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
