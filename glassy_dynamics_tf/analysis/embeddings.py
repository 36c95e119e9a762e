"""The learned node embeddings and their t-SNE map (issue 7, item 7).

The embedding of a particle is its final latent node vector: the core's
output after num_recurrences steps, the decoder's input
(`EncodeProcessDecode.latent_graph` in model.py; `__call__` is
`decode(latent_graph(graph))`, so the embeddings are exactly what the
decoder reads).

The map: type-A embeddings of a set of configurations, projected to 2-D with
t-SNE (sklearn.manifold.TSNE) and coloured by the true propensity at each
timescale. How well the map (or the latent space itself) is ordered by
propensity is measured by `neighbour_agreement`: the Pearson correlation of
a particle's propensity with the mean propensity of its k nearest
neighbours in the map.
"""

import os
from typing import Any, Dict, NamedTuple, Sequence

from graph_nets import graphs as gn_graphs
import numpy as np
from scipy import spatial
import tensorflow as tf
import threadpoolctl

from glassy_dynamics_tf import graphs
from glassy_dynamics_tf import metrics
from glassy_dynamics_tf import model as model_lib
from glassy_dynamics_tf.analysis import common
from glassy_dynamics_tf.io import record as record_lib

FIGURE = ("the embedding map of issue 7 (cf. the analysis of the learned "
          "representation, Fig. 5 of Bapst et al. 2020)")


def latent_graph(network: model_lib.EncodeProcessDecode,
                 graph: gn_graphs.GraphsTuple) -> gn_graphs.GraphsTuple:
  """The core's final latent graph (the decoder's input).

  EncodeProcessDecode.latent_graph, as a function of the network.

  Args:
    network: EncodeProcessDecode (variables created or not).
    graph: as for EncodeProcessDecode: nodes [N, 1] (type), edges [E, 3]
      (σ_AA), senders, receivers, n_node, n_edge.

  Returns:
    GraphsTuple with nodes [N, latent_size] (the node embeddings) and edges
    [E, latent_size].
  """
  return network.latent_graph(graph)


def decode(network: model_lib.EncodeProcessDecode,
           latent: gn_graphs.GraphsTuple) -> tf.Tensor:
  """The decoder on a latent graph: [N, n_outputs] (the network's output)."""
  return network.decode(latent)


def graphs_tuple(positions, types, box, cutoff: float = common.DEFAULT_CUTOFF,
                 self_loops: bool = common.DEFAULT_SELF_LOOPS
                 ) -> gn_graphs.GraphsTuple:
  """One configuration as the network's input graph (graphs.build_graph).

  Args:
    positions: [n, 3] float, σ_AA; types: [n] int (0 = A, 1 = B); box: [3].
    cutoff, self_loops: the model's graph.
  """
  graph = graphs.build_graph(positions, box, cutoff, self_loops)
  types = np.asarray(types, np.float32).reshape(-1, 1)
  return gn_graphs.GraphsTuple(
      nodes=tf.constant(types), edges=tf.constant(graph.edge_vectors),
      senders=tf.constant(graph.senders),
      receivers=tf.constant(graph.receivers),
      n_node=tf.constant([types.shape[0]], tf.int32),
      n_edge=tf.constant([graph.n_edges], tf.int32), globals=None)


def configuration_embeddings(network: model_lib.EncodeProcessDecode,
                             positions, types, box,
                             cutoff: float = common.DEFAULT_CUTOFF,
                             self_loops: bool = common.DEFAULT_SELF_LOOPS
                             ) -> np.ndarray:
  """[n, latent_size] float32 node embeddings of one configuration."""
  graph = graphs_tuple(positions, types, box, cutoff, self_loops)
  return latent_graph(network, graph).nodes.numpy()


def principal_axes(x, k: int = 1) -> np.ndarray:
  """[d, k] unit principal axes of the rows of x (largest variance first).

  Signs are fixed so that each axis' largest-magnitude component is
  positive (the SVD leaves them arbitrary).

  Args:
    x: [m, d] float, m >= 2.
    k: axes wanted, 1 <= k <= d.
  """
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or x.shape[0] < 2 or not 1 <= k <= x.shape[1]:
    raise common.AnalysisError(
        f"principal_axes: need [m >= 2, d] rows and 1 <= k <= d, got shape "
        f"{list(x.shape)} and k={k}")
  _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
  axes = vt[:k].T
  signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(k)])
  return axes * np.where(signs == 0, 1.0, signs)


def explained_variance(x, k: int = 5) -> np.ndarray:
  """[min(k, d)] fraction of the variance along the first principal axes."""
  x = np.asarray(x, np.float64)
  s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
  total = float(np.sum(s**2))
  return (s[:k]**2 / total) if total > 0 else np.full(min(k, s.size),
                                                       np.nan)


def neighbour_agreement(points, values, k: int = 10) -> float:
  """Pearson r of each value with the mean value of its k nearest points.

  1 when neighbours in the map (or latent space) share their propensity,
  about 0 when the map ignores it.

  Args:
    points: [m, D] float, any space (Euclidean distances).
    values: [m] float.
    k: neighbours (the point itself excluded), 1 <= k < m.
  """
  points = np.asarray(points, np.float64)
  values = np.asarray(values, np.float64).reshape(-1)
  if points.shape[0] != values.size or not 1 <= k < values.size:
    raise common.AnalysisError(
        f"neighbour_agreement: {points.shape[0]} points, {values.size} "
        f"values, k={k}; need equal counts and 1 <= k < count")
  _, index = spatial.cKDTree(points).query(points, k=k + 1)
  # Column 0 is the point itself (distance 0), unless duplicates tie;
  # dropping the query point explicitly handles both.
  neighbours = np.array([[j for j in row if j != i][:k]
                         for i, row in enumerate(index)])
  return metrics.pearson(values, values[neighbours].mean(axis=1))


def tsne_map(x, perplexity: float = 30.0, seed: int = 0):
  """2-D t-SNE of the rows of x.

  Args:
    x: [m, d] float, m >= 4.
    perplexity: capped at (m - 1) / 3 (sklearn needs perplexity < m).
    seed: TSNE's random_state.

  Returns:
    (points [m, 2] float64, KL divergence, perplexity used).
  """
  from sklearn import manifold  # pylint: disable=g-import-not-at-top
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or x.shape[0] < 4:
    raise common.AnalysisError(f"t-SNE needs at least 4 points, got shape "
                               f"{list(x.shape)}")
  perplexity = float(min(perplexity, (x.shape[0] - 1) / 3.0))
  tsne = manifold.TSNE(n_components=2, perplexity=perplexity, init="pca",
                       random_state=seed)
  # One OpenMP thread: with TensorFlow's thread pools beside it on a shared
  # machine, sklearn's spinning OpenMP workers made a 300-point map take
  # 79 s instead of 1.9 s (two shared cores, measured).
  with threadpoolctl.threadpool_limits(limits=1):
    points = tsne.fit_transform(x)
  return points, float(tsne.kl_divergence_), perplexity


class EmbeddingSet(NamedTuple):
  """Type-A embeddings gathered over configurations.

  Attributes:
    embeddings: [m, latent] float32.
    propensity: [T, m] float32, σ_AA (T = 0 without true propensity).
    prediction: [m, n_outputs] float32, σ_AA, the model's output.
    configuration: [m] int, index of the configuration.
    particle: [m] int, particle index within it.
  """
  embeddings: np.ndarray
  propensity: np.ndarray
  prediction: np.ndarray
  configuration: np.ndarray
  particle: np.ndarray


def gather_embeddings(model: common.AnalysisModel,
                      records: Sequence[record_lib.ConfigurationRecord]
                      ) -> EmbeddingSet:
  """Type-A embeddings, propensities and predictions of the records."""
  if model.network is None:
    raise common.AnalysisError(
        f"model {model.source}: the embedding map needs the network's "
        f"weights (a SavedModel, train workdir or TF1 checkpoint)")
  n_timescales = {r.n_timescales for r in records}
  if len(n_timescales) != 1:
    raise common.AnalysisError(
        f"the configurations have different numbers of propensity "
        f"timescales: {sorted(r.n_timescales for r in records)}")
  parts = []
  for c, record in enumerate(records):
    latent = latent_graph(model.network, graphs_tuple(
        record.positions, record.types, record.box, model.cutoff,
        model.self_loops))
    output = decode(model.network, latent).numpy()
    if model.target_std.size:
      output = output * model.target_std + model.target_mean
    a = np.flatnonzero(record.types == common.TYPE_A)
    parts.append((latent.nodes.numpy()[a], record.propensity[:, a],
                  output[a], np.full(a.size, c), a))
  return EmbeddingSet(
      embeddings=np.concatenate([p[0] for p in parts]),
      propensity=np.concatenate([p[1] for p in parts], axis=1),
      prediction=np.concatenate([p[2] for p in parts]).astype(np.float32),
      configuration=np.concatenate([p[3] for p in parts]),
      particle=np.concatenate([p[4] for p in parts]))


def run(model: common.AnalysisModel, ids: Sequence[str],
        records: Sequence[record_lib.ConfigurationRecord], output_dir: str,
        max_points: int = 2000, perplexity: float = 30.0,
        neighbours: int = 10, seed: int = 0, figure: bool = True
        ) -> Dict[str, Any]:
  """The study: embedding_map.{json,npz,png} in output_dir.

  Args:
    model: with its network (common.load_model(..., with_network=True)).
    ids, records: configurations (true propensity colours the map; without
      it the predictions do).
    output_dir: where the files go.
    max_points: type-A particles mapped (a uniform random sample); t-SNE
      costs O(m log m) and minutes for m ~ 10⁴ on two cores.
    perplexity: t-SNE perplexity.
    neighbours: k of neighbour_agreement.
    seed: the sample and t-SNE.
    figure: write the PNG.

  Returns:
    the report (as written to JSON).
  """
  if not records:
    raise common.AnalysisError("embedding_map: no configurations given")
  if max_points < 4:
    raise common.AnalysisError(f"--max_points must be >= 4, got {max_points}")
  data = gather_embeddings(model, records)
  rng = np.random.default_rng(seed)
  m = data.embeddings.shape[0]
  chosen = np.sort(rng.choice(m, size=max_points, replace=False)
                   if m > max_points else np.arange(m))
  data = EmbeddingSet(
      embeddings=data.embeddings[chosen],
      propensity=data.propensity[:, chosen],
      prediction=data.prediction[chosen],
      configuration=data.configuration[chosen],
      particle=data.particle[chosen])
  points, kl, used_perplexity = tsne_map(data.embeddings, perplexity, seed)
  k = min(neighbours, data.embeddings.shape[0] - 1)
  colours = []  # (label, values, time)
  if data.propensity.shape[0]:
    for j in range(data.propensity.shape[0]):
      time = float(np.mean([r.times[j] for r in records]))
      label = "true propensity, " + common.timescale_label(
          time, float(records[0].isf_levels[j]))
      colours.append((label, data.propensity[j], time))
  else:
    for j in range(data.prediction.shape[1]):
      label = "predicted propensity, " + common.timescale_label(
          model.times[j], model.isf_levels[j])
      colours.append((label, data.prediction[:, j], model.times[j]))
  panels = [{"label": label, "time": time,
             "map_neighbour_pearson": neighbour_agreement(points, values, k),
             "latent_neighbour_pearson": neighbour_agreement(
                 data.embeddings, values, k)}
            for label, values, time in colours]
  os.makedirs(output_dir, exist_ok=True)
  np.savez(f"{output_dir}/embedding_map.npz", points=points,
           embeddings=data.embeddings, propensity=data.propensity,
           prediction=data.prediction, configuration=data.configuration,
           particle=data.particle)
  report = {
      "study": "embedding_map",
      "reproduces": FIGURE,
      **common.model_description(model),
      "configurations": list(ids),
      "n_configurations": len(records),
      "n_points": int(points.shape[0]),
      "latent_size": int(data.embeddings.shape[1]),
      "perplexity": used_perplexity,
      "kl_divergence": kl,
      "neighbours": k,
      "seed": seed,
      "explained_variance_ratio": explained_variance(data.embeddings),
      "panels": panels,
      "arrays": "embedding_map.npz",
      "notes": ("points: t-SNE of the type-A node embeddings (the core's "
                "final latent nodes); *_neighbour_pearson: Pearson of each "
                "particle's propensity with the mean over its k nearest "
                "neighbours in the 2-D map or in the latent space."),
  }
  common.write_json(f"{output_dir}/embedding_map.json", report)
  if figure:
    report["figure"] = plot(points, [c[1] for c in colours], panels,
                            f"{output_dir}/embedding_map.png")
  return report


def plot(points: np.ndarray, colours: Sequence[np.ndarray],
         panels: Sequence[Dict[str, Any]], path: str) -> str:
  """One t-SNE scatter per timescale, coloured by propensity (σ_AA)."""
  plt = common.pyplot()
  n = len(colours)
  columns = min(n, 4)
  rows = -(-n // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns,
                                                   3.3 * rows),
                           squeeze=False)
  for ax in axes.ravel()[n:]:
    ax.axis("off")
  for ax, values, panel in zip(axes.ravel(), colours, panels):
    low, high = np.percentile(values, [1, 99])
    scatter = ax.scatter(points[:, 0], points[:, 1], c=values, s=4,
                         cmap="viridis", vmin=low, vmax=high, lw=0)
    fig.colorbar(scatter, ax=ax, label="propensity [σ_AA]")
    ax.set_title(f"{panel['label']}\nneighbour r = "
                 f"{panel['map_neighbour_pearson']:.2f}", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle("t-SNE of type-A node embeddings", fontsize=9, y=1.03)
  return common.save_figure(fig, path)


def summary(report: Dict[str, Any]) -> str:
  """One line per panel: how well neighbours share their propensity."""
  lines = [f"embedding_map: t-SNE of {report['n_points']} type-A embeddings "
           f"(latent {report['latent_size']}, perplexity "
           f"{report['perplexity']:.3g}, KL {report['kl_divergence']:.3g})"]
  for panel in report["panels"]:
    lines.append(f"  {panel['label']}: neighbour Pearson map "
                 f"{_number(panel['map_neighbour_pearson']):+.3f}, latent "
                 f"{_number(panel['latent_neighbour_pearson']):+.3f}")
  return "\n".join(lines)


def _number(value) -> float:
  return float("nan") if value is None else float(value)
