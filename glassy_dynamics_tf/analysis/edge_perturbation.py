"""How far the model looks: response of a prediction to distant displacements
(Fig. 5c and Extended Data Fig. 9 of Bapst et al. 2020).

For a sample of type-A centre particles c and shells of distance
[d, d + Δd) from c (minimum image, σ_AA), every particle of the shell is
moved by a small random vector of fixed length ε in a uniformly random
direction, the model predicts the perturbed configuration, and the response
|p_c(perturbed) - p_c(original)| is recorded. Averaged over centres (and
random draws), the curve vs d says how strongly the structure at distance d
enters a prediction; its decay length is fitted with the exponential of
correlation_length.fit_exponential.

Two ways to apply the displacement (PERTURBATIONS):
- "positions" (default, any model, through the SavedModel's predict): the
  graph is rebuilt, so near the 2.0 σ cut-off edges can appear or vanish,
  as they would under real structural noise; the model has no smooth
  cut-off, so these shells respond more strongly.
- "fixed_graph" (needs the network's weights): the unperturbed edge list is
  kept and only the edge vectors change, the "perturb edge features" reading
  of the paper's analysis; the response is then smooth in ε.

Exact properties (shell_ablation's receptive field, R = num_recurrences):
with "positions", particles further than R × cutoff + ε from the centre
cannot change its prediction; with "fixed_graph", particles more than R hops
away cannot. The response is exactly zero there (tested).
"""

from typing import Any, Dict, NamedTuple, Sequence

from graph_nets import graphs as gn_graphs
import numpy as np
import tensorflow as tf

from glassy_dynamics_tf import graphs
from glassy_dynamics_tf import model as model_lib
from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.analysis import common
from glassy_dynamics_tf.analysis import correlation_length
from glassy_dynamics_tf.analysis import shell_ablation
from glassy_dynamics_tf.io import record as record_lib

FIGURE = "Fig. 5c and Extended Data Fig. 9 of Bapst et al. 2020"
# How a displacement reaches the model: through the SavedModel's predict
# (graph rebuilt, edges may appear or vanish at the cut-off), or on the
# unperturbed configuration's edge list with updated edge vectors (needs the
# network; the response is then smooth in the displacement).
PERTURBATIONS = ("positions", "fixed_graph")


def random_displacements(n: int, magnitude: float,
                         rng: np.random.Generator) -> np.ndarray:
  """[n, 3] float64 vectors of length `magnitude` (σ_AA), isotropic."""
  vectors = rng.normal(size=(n, 3))
  norms = np.linalg.norm(vectors, axis=1, keepdims=True)
  # A zero draw has probability zero; guard the division anyway.
  vectors = np.where(norms > 0, vectors / np.maximum(norms, 1e-300),
                     [1.0, 0.0, 0.0])
  return magnitude * vectors


def fixed_graph_predict(network: model_lib.EncodeProcessDecode, positions,
                        box, cutoff: float = common.DEFAULT_CUTOFF,
                        self_loops: bool = common.DEFAULT_SELF_LOOPS,
                        target_mean=(), target_std=()) -> common.Predict:
  """A predict function that keeps the edges of one configuration.

  Args:
    network: EncodeProcessDecode with weights.
    positions: [n, 3] σ_AA, the reference configuration whose neighbour
      graph is kept.
    box: [3] σ_AA.
    cutoff, self_loops: the model's graph.
    target_mean, target_std: [n_outputs] σ_AA, undo standardised outputs.

  Returns:
    predict(moved [n, 3], types [n], box) -> [n, n_outputs] float32: the
    network on the reference graph with edge vectors minimum_image(
    moved[receiver] - moved[sender]); equal to the ordinary prediction when
    nothing moved.
  """
  box = np.asarray(box, np.float64)
  graph = graphs.build_graph(positions, box, cutoff, self_loops)
  senders = tf.constant(graph.senders)
  receivers = tf.constant(graph.receivers)
  n_edge = tf.constant([graph.n_edges], tf.int32)
  mean = np.asarray(target_mean, np.float32)
  std = np.asarray(target_std, np.float32)

  @tf.function(reduce_retracing=True)
  def forward(nodes, edges):
    return network(gn_graphs.GraphsTuple(
        nodes=nodes, edges=edges, senders=senders, receivers=receivers,
        n_node=tf.shape(nodes)[:1], n_edge=n_edge, globals=None))

  def predict(moved, types, box_):
    moved = np.asarray(moved, np.float64)
    if moved.shape != np.shape(positions):
      raise common.AnalysisError(
          f"fixed-graph prediction: expected positions of shape "
          f"{list(np.shape(positions))}, found {list(moved.shape)}")
    vectors = periodic.minimum_image(
        moved[graph.receivers] - moved[graph.senders],
        np.asarray(box_, np.float64))
    nodes = np.asarray(types, np.float32).reshape(-1, 1)
    out = forward(tf.constant(nodes), tf.constant(vectors, tf.float32))
    out = out.numpy()
    return out * std + mean if std.size else out

  return predict


def shell_edges(shell_width: float, max_distance: float) -> np.ndarray:
  """[S + 1] float64 shell boundaries 0, Δd, 2Δd, ... up to max_distance."""
  if not shell_width > 0 or not max_distance > 0:
    raise common.AnalysisError(
        f"shell width and maximum distance must be > 0, got {shell_width} "
        f"and {max_distance}")
  n_shells = int(np.floor(max_distance / shell_width + 1e-9))
  if n_shells < 1:
    raise common.AnalysisError(
        f"maximum distance {max_distance} σ is below one shell width "
        f"{shell_width} σ")
  return shell_width * np.arange(n_shells + 1, dtype=np.float64)


class PerturbationResponse(NamedTuple):
  """Responses of the centres of one configuration.

  Attributes:
    shell_edges: [S + 1] σ_AA, shell s is [edges[s], edges[s + 1]).
    centres: [C] int.
    response: [C, S, n_outputs] float64 σ_AA, mean over draws of
      |Δ prediction of the centre|; NaN where the shell holds no particle.
    counts: [C, S] int, particles in each shell (the centre excluded).
  """
  shell_edges: np.ndarray
  centres: np.ndarray
  response: np.ndarray
  counts: np.ndarray


def perturbation_response(predict: common.Predict, positions, types, box,
                          centres: Sequence[int], edges: np.ndarray,
                          magnitude: float, rng: np.random.Generator,
                          n_draws: int = 1) -> PerturbationResponse:
  """Moves each shell around each centre and measures the centre's response.

  Args:
    predict: (positions, types, box) -> [n, n_outputs] (AnalysisModel).
    positions: [n, 3] float32, σ_AA; types: [n] int32; box: [3] σ_AA.
    centres: [C] particle indices.
    edges: [S + 1] shell boundaries, σ_AA, increasing.
    magnitude: ε, σ_AA, the length of every displacement.
    rng: random generator of the displacements.
    n_draws: random displacement sets per centre and shell.

  Returns:
    PerturbationResponse (one predict call per centre, shell and draw).
  """
  if not magnitude > 0:
    raise common.AnalysisError(f"displacement must be > 0 σ, got {magnitude}")
  if n_draws < 1:
    raise common.AnalysisError(f"n_draws must be >= 1, got {n_draws}")
  positions = np.asarray(positions, np.float64)
  types = np.asarray(types, np.int32)
  box = np.asarray(box, np.float64)
  edges = np.asarray(edges, np.float64)
  centres = np.asarray(centres, np.int64).reshape(-1)
  base = np.asarray(predict(positions.astype(np.float32), types,
                            box.astype(np.float32)), np.float64)
  base = base.reshape(types.size, -1)
  n_shells = edges.size - 1
  response = np.full([centres.size, n_shells, base.shape[1]], np.nan)
  counts = np.zeros([centres.size, n_shells], np.int64)
  for row, centre in enumerate(centres):
    distance = np.linalg.norm(
        periodic.minimum_image(positions - positions[centre], box), axis=1)
    shell = np.searchsorted(edges, distance, side="right") - 1
    shell[centre] = -1  # the centre itself belongs to no shell
    for s in range(n_shells):
      members = np.flatnonzero(shell == s)
      counts[row, s] = members.size
      if not members.size:
        continue
      changes = []
      for _ in range(n_draws):
        moved = positions.copy()
        moved[members] += random_displacements(members.size, magnitude, rng)
        out = np.asarray(predict(moved.astype(np.float32), types,
                                 box.astype(np.float32)), np.float64)
        changes.append(np.abs(out.reshape(types.size, -1)[centre] -
                              base[centre]))
      response[row, s] = np.mean(changes, axis=0)
  return PerturbationResponse(shell_edges=edges, centres=centres,
                              response=response, counts=counts)


def run(model: common.AnalysisModel, ids: Sequence[str],
        records: Sequence[record_lib.ConfigurationRecord], output_dir: str,
        n_centres: int = 16, shell_width: float = 0.5,
        max_distance: float = 0.0, displacement: float = 0.05,
        n_draws: int = 1, seed: int = 0,
        perturbation: str = "positions", figure: bool = True
        ) -> Dict[str, Any]:
  """The study: edge_perturbation.json and edge_perturbation.png.

  Args:
    model: the model.
    ids, records: configurations (no propensity needed).
    output_dir: where the files go.
    n_centres: type-A centres per configuration (0 = all).
    shell_width: Δd, σ_AA.
    max_distance: σ_AA, the last shell's outer edge; 0 = half the smallest
      box edge (the largest distance the minimum image defines).
    displacement: ε, σ_AA. Small against the typical vibration amplitude
      (≈ 0.1 σ at T = 0.44) so that the response stays local.
    n_draws: random displacement sets per centre and shell.
    seed: centres and displacements.
    perturbation: one of PERTURBATIONS; "fixed_graph" needs model.network.
    figure: write the PNG.

  Returns:
    the report (as written to JSON).
  """
  if not records:
    raise common.AnalysisError("edge_perturbation: no configurations given")
  if n_centres < 0:
    raise common.AnalysisError(f"--n_centres must be >= 0, got {n_centres}")
  half_box = min(float(np.min(r.box)) / 2 for r in records)
  if max_distance < 0:
    raise common.AnalysisError(
        f"--max_distance must be >= 0, got {max_distance}")
  max_distance = max_distance or half_box
  if max_distance > half_box + 1e-6:
    raise common.AnalysisError(
        f"--max_distance={max_distance} σ exceeds half the smallest box edge "
        f"({half_box:.4g} σ), beyond which the minimum image is undefined")
  if perturbation not in PERTURBATIONS:
    raise common.AnalysisError(f"--perturbation={perturbation!r} is not one "
                               f"of {PERTURBATIONS}")
  if perturbation == "fixed_graph" and model.network is None:
    raise common.AnalysisError(
        f"--perturbation=fixed_graph needs the network of model "
        f"{model.source} (load it with its weights)")
  edges = shell_edges(shell_width, max_distance)
  rng = np.random.default_rng(seed)
  responses = []
  for record in records:
    centres = common.select_centres(record.types, n_centres, rng)
    predict = model.predict
    if perturbation == "fixed_graph":
      predict = fixed_graph_predict(
          model.network, record.positions, record.box, model.cutoff,
          model.self_loops, model.target_mean, model.target_std)
    responses.append(perturbation_response(
        predict, record.positions, record.types, record.box, centres,
        edges, displacement, rng, n_draws))
  response = np.concatenate([r.response for r in responses])  # [C, S, T]
  counts = np.concatenate([r.counts for r in responses])
  with np.errstate(invalid="ignore"):
    mean = _nanmean(response, axis=0)                        # [S, T]
    sem = _nanstd(response, axis=0) / np.sqrt(
        np.maximum(np.sum(np.isfinite(response), axis=0), 1))
  peak = np.nanmax(np.where(np.isfinite(mean), mean, -np.inf), axis=0)
  normalised = mean / np.where(peak > 0, peak, np.nan)
  middle = 0.5 * (edges[:-1] + edges[1:])
  fits = []
  for j in range(mean.shape[1]):
    fit = correlation_length.fit_exponential(middle, normalised[:, j],
                                             floor=1e-3)
    fits.append(fit._asdict())
  radius = (shell_ablation.receptive_field_radius(model.num_recurrences,
                                                  model.cutoff)
            if model.num_recurrences else None)
  report = {
      "study": "edge_perturbation",
      "reproduces": FIGURE,
      **common.model_description(model),
      "receptive_field_radius": radius,
      "configurations": list(ids),
      "n_configurations": len(records),
      "n_centres": [int(r.centres.size) for r in responses],
      "seed": seed,
      "displacement": displacement,
      "perturbation": perturbation,
      "n_draws": n_draws,
      "shell_edges": edges,
      "shell_centres": middle,
      "mean_particles_per_shell": counts.mean(axis=0),
      "response": {"mean": mean, "sem": sem, "normalised": normalised},
      "decay_fit": fits,
      "notes": ("response[s][j]: mean over centres of |Δ prediction of the "
                "centre at output j| (σ_AA) when the particles in shell s "
                "move by the displacement (every particle of the shell "
                "moves, so the shell population, mean_particles_per_shell "
                "∝ d², is part of the response); normalised: divided by its "
                "largest value; decay_fit: A exp(-d / length) fitted to the "
                "normalised curve from its peak on, while above 1e-3."),
  }
  common.write_json(f"{output_dir}/edge_perturbation.json", report)
  if figure:
    report["figure"] = plot(report, f"{output_dir}/edge_perturbation.png")
  return report


def plot(report: Dict[str, Any], path: str) -> str:
  """Response vs distance per timescale: raw (log) and normalised."""
  plt = common.pyplot()
  d = common.float_array(report["shell_centres"])
  mean = common.float_array(report["response"]["mean"])
  sem = common.float_array(report["response"]["sem"])
  normalised = common.float_array(report["response"]["normalised"])
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
  for j in range(mean.shape[1]):
    label = common.timescale_label(
        *common.float_array([report["times"][j], report["isf_levels"][j]]))
    length = report["decay_fit"][j].get("length")
    if length is not None and np.isfinite(length):
      label += f", decay {length:.2f} σ"
    positive = mean[:, j] > 0
    line = left.errorbar(d[positive], mean[positive, j],
                         yerr=sem[positive, j], fmt="-o", ms=4, capsize=2,
                         label=label)
    right.plot(d, normalised[:, j], "-o", ms=4, color=line[0].get_color(),
               label=label)
  left.set_yscale("log")
  left.set_ylabel("mean |Δ prediction of centre| [σ_AA]")
  right.set_ylabel("normalised response")
  radius = report.get("receptive_field_radius")
  edges = common.float_array(report["shell_edges"])
  for ax in (left, right):
    if radius and radius <= edges[-1]:
      ax.axvline(radius, color="0.5", ls=":", lw=1)
    ax.set_xlabel("distance d of the displaced shell [σ_AA]")
    ax.grid(alpha=0.3, which="both")
  left.set_title(f"{report['perturbation']}, displacement "
                 f"{report['displacement']} σ "
                 f"(cf. {FIGURE})", fontsize=8)
  right.set_title(f"receptive field num_recurrences × cut-off = "
                  f"{radius} σ" + (" (dotted)" if radius and
                                   radius <= edges[-1] else ""),
                  fontsize=8)
  right.legend(fontsize=7)
  return common.save_figure(fig, path)


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
  """np.nanmean without the all-NaN warning (gives NaN)."""
  finite = np.isfinite(values)
  total = np.where(finite, values, 0.0).sum(axis=axis)
  count = finite.sum(axis=axis)
  return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nanstd(values: np.ndarray, axis: int) -> np.ndarray:
  mean = np.expand_dims(_nanmean(values, axis), axis)
  return np.sqrt(_nanmean((values - mean)**2, axis))


def summary(report: Dict[str, Any]) -> str:
  """A text table: mean response per shell (rows) and timescale."""
  mean = common.float_array(report["response"]["mean"])
  times = common.float_array(report["times"])
  lines = [f"edge_perturbation ({report['reproduces']}): mean |Δ prediction"
           f"| [σ_AA] of {sum(report['n_centres'])} centres, displacement "
           f"{report['displacement']} σ",
           "d [σ]   " + "  ".join(f"t={t:<8.4g}" for t in times)]
  for d, row in zip(common.float_array(report["shell_centres"]), mean):
    lines.append(f"{d:6.2f}  " + "  ".join(f"{v:10.3g}" for v in row))
  lengths = [common.float_array([f["length"]])[0]
             for f in report["decay_fit"]]
  lines.append("decay   " + "  ".join(f"{v:8.3g} σ" for v in lengths))
  return "\n".join(lines)
