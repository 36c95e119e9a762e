"""Prediction quality vs the neighbour shells the network sees (Extended Data
Fig. 8 of Bapst et al. 2020).

For a sample of type-A centre particles, every particle more than k graph
hops from the centre (hops along the 2.0 σ neighbour graph of
`graphs.build_graph`) is removed, the model predicts the remaining
configuration (same box), and the centre's prediction is kept. The Pearson
correlation of these predictions with the true propensity of the centres,
per k and per timescale, says how much of the model's skill comes from
within k shells. This probes the trained model with its context cut away;
it is not a model retrained with fewer message-passing steps.

Receptive field, derived from model.EncodeProcessDecode:
- encoder (GraphIndependent): an encoded node depends on its own type, an
  encoded edge on its own relative vector;
- one core step: edge s->r is updated from (edge, node r, node s), then node
  r from (the sum of its updated incoming edges, node r); the encoded graph
  re-enters every step by concatenation, which adds no reach;
- decoder: node-wise.
So after m steps node i depends on the types of the particles within m hops
and on the vectors of the edges whose receiver lies within m - 1 hops
(their senders lie within m hops). With R = num_recurrences the output of
particle i is a function of the particles within R hops of i (types and
positions) and of nothing else: removing every particle beyond R hops
leaves the prediction unchanged, removing the R-th shell changes it. In
space, R hops span less than R × cutoff, so nothing beyond R × cutoff
(7 × 2.0 σ = 14 σ for the paper's model, about the 15 σ box of N = 4096)
can matter. `receptive_field_hops` states this; the tests check it.
"""

from typing import Any, Dict, NamedTuple, Sequence

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from glassy_dynamics_tf import graphs
from glassy_dynamics_tf import metrics
from glassy_dynamics_tf.analysis import common
from glassy_dynamics_tf.io import record as record_lib

FIGURE = "Extended Data Fig. 8 of Bapst et al. 2020"
# Hop distance of particles that no path reaches.
UNREACHABLE = np.iinfo(np.int32).max
# Shells studied when the model's num_recurrences is unknown.
DEFAULT_MAX_HOPS = 8


def receptive_field_hops(num_recurrences: int) -> int:
  """Graph hops a prediction depends on: num_recurrences (module docstring)."""
  if int(num_recurrences) != num_recurrences or num_recurrences < 1:
    raise ValueError(f"num_recurrences must be a positive integer, got "
                     f"{num_recurrences!r}")
  return int(num_recurrences)


def receptive_field_radius(num_recurrences: int, cutoff: float) -> float:
  """σ_AA, the distance beyond which nothing can change a prediction.

  A path of R hops of edges shorter than the cut-off spans less than
  R × cutoff.
  """
  return receptive_field_hops(num_recurrences) * float(cutoff)


def hop_distances(graph: graphs.NeighbourGraph, n_particles: int,
                  sources: Sequence[int]) -> np.ndarray:
  """Breadth-first hop counts on the (symmetric) neighbour graph.

  Args:
    graph: NeighbourGraph of the configuration (self-loops are ignored).
    n_particles: nodes of the graph.
    sources: [n_sources] particle indices.

  Returns:
    [n_sources, n_particles] int32: hops from each source (0 for itself),
    UNREACHABLE where no path exists.
  """
  senders = np.asarray(graph.senders, np.int64)
  receivers = np.asarray(graph.receivers, np.int64)
  keep = senders != receivers
  adjacency = sparse.csr_matrix(
      (np.ones(int(keep.sum()), np.int8), (senders[keep], receivers[keep])),
      shape=(n_particles, n_particles))
  sources = np.asarray(sources, np.int64).reshape(-1)
  if sources.size == 0:
    return np.zeros([0, n_particles], np.int32)
  distance = csgraph.shortest_path(adjacency, directed=False, unweighted=True,
                                   indices=sources)
  distance = np.atleast_2d(distance)
  out = np.full(distance.shape, UNREACHABLE, np.int32)
  finite = np.isfinite(distance)
  out[finite] = distance[finite].astype(np.int32)
  return out


class ShellAblation(NamedTuple):
  """The centre predictions of one configuration with context removed.

  Attributes:
    hops: [K] int, k = 1 ... K, the hops kept around each centre.
    centres: [C] int, the centre particles (type A).
    restricted: [C, K, n_outputs] float64, σ_AA: prediction of each centre
      when only the particles within k hops of it are present.
    full: [C, n_outputs] float64, σ_AA: its prediction in the whole system.
    n_kept: [C, K] int, particles kept (the centre included).
  """
  hops: np.ndarray
  centres: np.ndarray
  restricted: np.ndarray
  full: np.ndarray
  n_kept: np.ndarray


def ablate_configuration(predict: common.Predict, positions, types, box,
                         centres: Sequence[int], max_hops: int,
                         cutoff: float = common.DEFAULT_CUTOFF,
                         self_loops: bool = common.DEFAULT_SELF_LOOPS
                         ) -> ShellAblation:
  """Predicts each centre with only its k-hop neighbourhood, k = 1..max_hops.

  Args:
    predict: (positions, types, box) -> [n, n_outputs] (AnalysisModel).
    positions: [n, 3] float32, σ_AA; types: [n] int32; box: [3] σ_AA.
    centres: [C] particle indices.
    max_hops: K >= 1.
    cutoff, self_loops: the model's graph (the hops are counted on it).

  Returns:
    ShellAblation. A k whose neighbourhood is the whole system reuses the
    full prediction (the same input gives the same output).
  """
  if max_hops < 1:
    raise common.AnalysisError(f"max_hops must be >= 1, got {max_hops}")
  positions = np.asarray(positions, np.float32)
  types = np.asarray(types, np.int32)
  box = np.asarray(box, np.float32)
  n = types.size
  centres = np.asarray(centres, np.int64).reshape(-1)
  graph = graphs.build_graph(positions, box, cutoff, self_loops)
  hops = hop_distances(graph, n, centres)
  full = np.asarray(predict(positions, types, box), np.float64)
  full = full.reshape(n, -1)
  n_outputs = full.shape[1]
  restricted = np.empty([centres.size, max_hops, n_outputs])
  n_kept = np.empty([centres.size, max_hops], np.int64)
  for row, centre in enumerate(centres):
    for k in range(1, max_hops + 1):
      subset = np.flatnonzero(hops[row] <= k)
      n_kept[row, k - 1] = subset.size
      if subset.size == n:
        restricted[row, k - 1] = full[centre]
        continue
      out = np.asarray(predict(positions[subset], types[subset], box))
      restricted[row, k - 1] = out.reshape(subset.size, -1)[
          np.searchsorted(subset, centre)]
  return ShellAblation(hops=np.arange(1, max_hops + 1), centres=centres,
                       restricted=restricted, full=full[centres],
                       n_kept=n_kept)


class ShellScores(NamedTuple):
  """Pearson of the restricted predictions with the truth.

  Attributes:
    pearson: [n_configurations, K, n_outputs], over each configuration's
      centres.
    pearson_full: [n_configurations, n_outputs], the unrestricted model on
      the same centres.
    pooled: [K, n_outputs], over the centres of all configurations together.
    pooled_full: [n_outputs].
    deviation: [K, n_outputs] σ_AA, mean |restricted - full| over centres.
  """
  pearson: np.ndarray
  pearson_full: np.ndarray
  pooled: np.ndarray
  pooled_full: np.ndarray
  deviation: np.ndarray


def score(ablations: Sequence[ShellAblation],
          truths: Sequence[np.ndarray]) -> ShellScores:
  """Pearson per configuration, shell and timescale.

  Args:
    ablations: one ShellAblation per configuration.
    truths: per configuration [n_outputs, C] true propensity of the centres,
      σ_AA.

  Returns:
    ShellScores.
  """
  per_config, per_config_full = [], []
  for ablation, truth in zip(ablations, truths):
    _, n_hops, n_outputs = ablation.restricted.shape
    per_config.append([[metrics.pearson(ablation.restricted[:, k, j],
                                        truth[j]) for j in range(n_outputs)]
                       for k in range(n_hops)])
    per_config_full.append([metrics.pearson(ablation.full[:, j], truth[j])
                            for j in range(n_outputs)])
  restricted = np.concatenate([a.restricted for a in ablations])
  full = np.concatenate([a.full for a in ablations])
  truth = np.concatenate([np.asarray(t) for t in truths], axis=1)
  _, n_hops, n_outputs = restricted.shape
  pooled = np.array([[metrics.pearson(restricted[:, k, j], truth[j])
                      for j in range(n_outputs)] for k in range(n_hops)])
  pooled_full = np.array([metrics.pearson(full[:, j], truth[j])
                          for j in range(n_outputs)])
  return ShellScores(
      pearson=np.asarray(per_config, np.float64).reshape(
          len(ablations), n_hops, n_outputs),
      pearson_full=np.asarray(per_config_full, np.float64).reshape(
          len(ablations), n_outputs),
      pooled=pooled, pooled_full=pooled_full,
      deviation=np.mean(np.abs(restricted - full[:, None, :]), axis=0))


def run(model: common.AnalysisModel, ids: Sequence[str],
        records: Sequence[record_lib.ConfigurationRecord], output_dir: str,
        n_centres: int = 16, max_hops: int = 0, seed: int = 0,
        figure: bool = True) -> Dict[str, Any]:
  """The study: shell_ablation.json and shell_ablation.png in output_dir.

  Args:
    model: the model (its predict, graph and num_recurrences).
    ids, records: configurations with true propensity.
    output_dir: where the files go.
    n_centres: type-A centres per configuration (0 = all; each costs
      max_hops predictions of at most the whole configuration).
    max_hops: K; 0 = the model's num_recurrences + 1 (one shell past the
      receptive field, to show the plateau), or 8 if unknown.
    seed: of the centre sample.
    figure: write the PNG.

  Returns:
    the report (as written to JSON).
  """
  if not records:
    raise common.AnalysisError("shell_ablation: no configurations given")
  if max_hops < 0 or n_centres < 0:
    raise common.AnalysisError(
        f"--max_hops and --n_centres must be >= 0, got {max_hops}, "
        f"{n_centres}")
  if not max_hops:
    max_hops = (model.num_recurrences + 1 if model.num_recurrences else
                DEFAULT_MAX_HOPS)
  rng = np.random.default_rng(seed)
  ablations, truths = [], []
  for rid, record in zip(ids, records):
    indices = model.record_timescales(record, rid)
    centres = common.select_centres(record.types, n_centres, rng)
    if centres.size < 2:
      raise common.AnalysisError(
          f"configuration '{rid}' has {centres.size} type-A particle(s); a "
          f"correlation needs at least 2")
    ablations.append(ablate_configuration(
        model.predict, record.positions, record.types, record.box, centres,
        max_hops, model.cutoff, model.self_loops))
    truths.append(record.propensity[indices][:, centres])
  scores = score(ablations, truths)
  n_kept = np.concatenate([a.n_kept for a in ablations])
  report = {
      "study": "shell_ablation",
      "reproduces": FIGURE,
      **common.model_description(model),
      "receptive_field_hops": (receptive_field_hops(model.num_recurrences)
                               if model.num_recurrences else None),
      "configurations": list(ids),
      "n_configurations": len(records),
      "n_centres": [int(a.centres.size) for a in ablations],
      "seed": seed,
      "hops": list(range(1, max_hops + 1)),
      "mean_particles_kept": n_kept.mean(axis=0),
      "pearson": {"mean": np.nanmean(scores.pearson, axis=0),
                  "std": np.nanstd(scores.pearson, axis=0),
                  "pooled": scores.pooled,
                  "per_configuration": scores.pearson},
      "pearson_full": {"mean": np.nanmean(scores.pearson_full, axis=0),
                       "std": np.nanstd(scores.pearson_full, axis=0),
                       "pooled": scores.pooled_full},
      "mean_abs_deviation_from_full": scores.deviation,
      "notes": ("pearson[k][j]: over the centres of a configuration, "
                "between the true propensity at output j's time and the "
                "prediction with only the particles within k hops; mean/std "
                "over configurations; pooled: all centres together."),
  }
  common.write_json(f"{output_dir}/shell_ablation.json", report)
  if figure:
    report["figure"] = plot(report, f"{output_dir}/shell_ablation.png")
  return report


def plot(report: Dict[str, Any], path: str) -> str:
  """Pearson vs hops kept, per timescale; the full model dashed."""
  plt = common.pyplot()
  hops = np.asarray(report["hops"])
  mean = common.float_array(report["pearson"]["mean"])
  std = common.float_array(report["pearson"]["std"])
  full = common.float_array(report["pearson_full"]["mean"])
  deviation = common.float_array(report["mean_abs_deviation_from_full"])
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
  for j in range(mean.shape[1]):
    label = common.timescale_label(
        *common.float_array([report["times"][j], report["isf_levels"][j]]))
    line = left.errorbar(hops, mean[:, j], yerr=std[:, j], fmt="-o", ms=4,
                         capsize=2, label=label)
    left.axhline(full[j], color=line[0].get_color(), ls="--", lw=1)
    right.plot(hops, deviation[:, j], "-o", ms=4,
               color=line[0].get_color(), label=label)
  for ax in (left, right):
    if report.get("receptive_field_hops"):
      ax.axvline(report["receptive_field_hops"], color="0.5", ls=":", lw=1)
    ax.set_xlabel("graph hops kept around the centre, k")
    ax.grid(alpha=0.3)
  left.set_ylabel("Pearson r (type-A centres)")
  left.set_title(f"shells seen vs quality (cf. {FIGURE}); dashed: full",
                 fontsize=8)
  right.set_ylabel("mean |p_k - p_full| [σ_AA]")
  right.set_title("dotted: receptive field = num_recurrences hops",
                  fontsize=8)
  left.legend(fontsize=7)
  return common.save_figure(fig, path)



def summary(report: Dict[str, Any]) -> str:
  """A text table: mean Pearson per hops kept (rows) and timescale."""
  mean = common.float_array(report["pearson"]["mean"])
  full = common.float_array(report["pearson_full"]["mean"])
  header = "k hops  " + "  ".join(f"t={t:<8.4g}" for t in
                                  common.float_array(report["times"]))
  lines = [f"shell_ablation ({report['reproduces']}): Pearson over "
           f"{sum(report['n_centres'])} type-A centres of "
           f"{report['n_configurations']} configuration(s); receptive field "
           f"{report['receptive_field_hops']} hops", header]
  for k, row in zip(report["hops"], mean):
    lines.append(f"{k:>6d}  " + "  ".join(f"{v:+10.3f}" for v in row))
  lines.append("  full  " + "  ".join(f"{v:+10.3f}" for v in full))
  return "\n".join(lines)
