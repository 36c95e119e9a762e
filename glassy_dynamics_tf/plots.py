"""The paper's figures from an evaluation report (matplotlib, Agg backend).

Each function takes the report of `evaluation.evaluate` (a dict, as in
report.json) or plain arrays, writes one PNG and returns its path:

  pearson_vs_time        Fig. 3b / Extended Data Fig. 3: correlation vs time,
                         with the noise ceiling when the report knows it.
  headline_vs_time       the report's headline metrics (Pearson, ROC-AUC,
                         balanced accuracy) vs time, mean ± s.e., chance
                         levels and the noise ceiling.
  paired_differences     model − baseline per timescale, ± 2 s.e.
  propensity_slices      Extended Data Figs. 4-6: 2-D slices, truth beside
                         predictions; type A coloured on its own range,
                         type B grey, the top fraction of A ringed
                         (`draw_slice` draws one panel).
  propensity_histograms  Extended Data Fig. 7: distributions of propensity.
  prediction_scatter     predicted vs true propensity at one timescale.
  neighbour_sweep        Extended Data Fig. 10: correlation vs radius r.
  transfer_heatmap       Fig. 3c: train state × test state.
  learning_curves        a training run's history (train_state.json):
                         loss, validation Pearson per head, learning rate.

Units: time τ, lengths and propensity σ_AA.
"""

import math
import os
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import matplotlib
matplotlib.use("Agg")
# pylint: disable=g-import-not-at-top
from matplotlib import collections as mcollections
from matplotlib import colors as mcolors
from matplotlib import lines as mlines
import matplotlib.pyplot as plt
# pylint: enable=g-import-not-at-top
import numpy as np

from glassy_dynamics_tf import metrics

INV_E = math.exp(-1.0)
TYPE_A = 0


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return path


def _as_float(values):
  return np.array([np.nan if v is None else v for v in values], np.float64)


def _ceiling_known(report: dict) -> bool:
  return bool((report.get("noise_ceiling") or {}).get("known"))


def draw_noise_ceiling(ax, report: dict) -> bool:
  """Draws the noise ceiling (mean ± s.e. over configurations) as a dashed
  black line with a grey band; returns whether it was known.

  An unknown ceiling (records without propensity_halves) becomes a legend
  entry without a line, "noise ceiling unknown (<the report's reason>)", so
  that the legend's placement keeps it clear of the data.
  """
  ceiling = report.get("noise_ceiling") or {}
  if not ceiling.get("known"):
    reason = ceiling.get("reason") or "records lack propensity_halves"
    # An explicit colour keeps the methods' colours where they were.
    ax.plot([], [], ls="none", color="0.4",
            label=f"noise ceiling unknown ({reason})")
    return False
  times = np.asarray(report["times"], np.float64)
  order = np.argsort(times)
  mean = _as_float(ceiling["ceiling"]["mean"])[order]
  sem = _as_float(ceiling["ceiling"]["sem"])[order]
  ax.plot(times[order], mean, "k--", lw=1.3,
          label="noise ceiling sqrt(2r_hh/(1+r_hh))")
  ax.fill_between(times[order], mean - np.nan_to_num(sem),
                  mean + np.nan_to_num(sem), color="0.5", alpha=0.2, lw=0)
  return True


def pearson_vs_time(report: dict, path: str,
                    metric: str = "pearson") -> str:
  """Mean correlation vs time, one line per method (Fig. 3b).

  Error bars: standard deviation over test configurations; the shaded band
  spans min to max. Log time axis; τ_α (self-ISF = 1/e) is a dashed line.
  For Pearson, the noise ceiling is a dashed black line when the report
  knows it (`draw_noise_ceiling`), else a note says it is unknown.
  """
  times = np.asarray(report["times"], np.float64)
  fig, ax = plt.subplots(figsize=(6.0, 4.2))
  if metric == "pearson":
    draw_noise_ceiling(ax, report)
  for name, entry in report["methods"].items():
    idx = np.asarray(entry["timescale_indices"], int)
    summary = entry["metrics"][metric]
    order = np.argsort(times[idx])
    t = times[idx][order]
    mean = _as_float(summary["mean"])[order]
    std = _as_float(summary["std"])[order]
    style = "-o" if entry["kind"] == "model" else "--s"
    line = ax.errorbar(t, mean, yerr=std, fmt=style, ms=4, capsize=2,
                       label=name, lw=2 if entry["kind"] == "model" else 1.2)
    ax.fill_between(t, _as_float(summary["min"])[order],
                    _as_float(summary["max"])[order],
                    color=line[0].get_color(), alpha=0.12, lw=0)
  tau = report.get("tau_alpha")
  if tau:
    ax.axvline(tau, color="0.4", ls=":", lw=1)
    ax.annotate("τ_α", (tau, 0.0), xycoords=("data", "axes fraction"),
                textcoords="offset points", xytext=(3, 4), color="0.3")
  ax.set_xscale("log")
  ax.set_xlabel("time t [τ]")
  ax.set_ylabel(f"{metric} (type A)")
  ax.axhline(0.0, color="0.8", lw=0.8)
  where = " ".join(str(report[k]) for k in ("dataset", "split") if
                  report.get(k))
  ax.set_title(f"{where + ': ' if where else ''}"
               f"{report['n_configurations']} configurations (cf. Fig. 3b)",
               fontsize=9)
  ax.legend(fontsize=8, loc="best")
  ax.grid(alpha=0.3, which="both")
  return _save(fig, path)


def headline_vs_time(report: dict, path: str) -> str:
  """The headline metrics vs time, one panel each, one line per method.

  Panels: the report's `headline_metrics` (Pearson, ROC-AUC, balanced
  accuracy); error bars: standard error of the mean over configurations
  (older reports without it: std); dotted grey: the metric's chance level;
  on the Pearson panel the noise ceiling (`draw_noise_ceiling`).
  """
  names = report.get("headline_metrics") or list(metrics.HEADLINE_METRICS)
  chance = report.get("chance_levels") or metrics.chance_levels(
      report.get("top_fraction", metrics.DEFAULT_TOP_FRACTION))
  times = np.asarray(report["times"], np.float64)
  fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 3.8),
                           squeeze=False)
  for ax, metric in zip(axes[0], names):
    if metric == "pearson":
      draw_noise_ceiling(ax, report)
    for name, entry in report["methods"].items():
      idx = np.asarray(entry["timescale_indices"], int)
      summary = entry["metrics"][metric]
      order = np.argsort(times[idx])
      error = _as_float(summary.get("sem", summary["std"]))[order]
      model = entry["kind"] == "model"
      ax.errorbar(times[idx][order], _as_float(summary["mean"])[order],
                  yerr=error, fmt="-o" if model else "--s", ms=4, capsize=2,
                  label=name, lw=2 if model else 1.2)
    if metric in chance:
      ax.axhline(chance[metric], color="0.6", ls=":", lw=1,
                 label="chance")
    tau = report.get("tau_alpha")
    if tau:
      ax.axvline(tau, color="0.4", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("time t [τ]")
    ax.set_title(f"{metric} (type A), mean ± s.e.", fontsize=9)
    ax.grid(alpha=0.3, which="both")
  axes[0][0].legend(fontsize=7, loc="best")
  where = " ".join(str(report[k]) for k in ("dataset", "split") if
                  report.get(k))
  fig.suptitle(f"{where + ': ' if where else ''}"
               f"{report['n_configurations']} configurations, top "
               f"{report.get('top_fraction', 0.1):.0%} mobile class",
               fontsize=9)
  fig.tight_layout()
  return _save(fig, path)


def paired_differences(report: dict, path: str) -> str:
  """Model − baseline per timescale for each headline metric, ± 2 s.e.

  One panel per headline metric; one line per (model, baseline) pair, its
  error bars twice the standard error of the paired mean difference, so a
  bar clear of zero is the report's "ahead by > 2 s.e." (evaluation.verdict).
  """
  names = report.get("headline_metrics") or list(metrics.HEADLINE_METRICS)
  times = np.asarray(report["times"], np.float64)
  fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 3.8),
                           squeeze=False)
  for ax, metric in zip(axes[0], names):
    for model, against in (report.get("comparisons") or {}).items():
      for baseline, comparison in against.items():
        idx = np.asarray(comparison["timescale_indices"], int)
        if not idx.size:
          continue
        order = np.argsort(times[idx])
        d = comparison[metric]
        ax.errorbar(times[idx][order], _as_float(d["mean"])[order],
                    yerr=2 * np.nan_to_num(_as_float(d["sem"])[order]),
                    fmt="-o", ms=4, capsize=3,
                    label=f"{model} − {baseline}")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("time t [τ]")
    ax.set_title(f"{metric}: paired difference ± 2 s.e.", fontsize=9)
    ax.grid(alpha=0.3, which="both")
  axes[0][0].legend(fontsize=7, loc="best")
  fig.tight_layout()
  return _save(fig, path)


# Drawn diameters of the slice plots, σ_AA (data units, so particles keep
# their size whatever the box and figure): type A a little under its σ_AA = 1
# so that neighbours stay apart, type B small (σ_BB = 0.88, drawn smaller
# still: they are context, not data), the mobile ring just outside an A disc.
A_DIAMETER = 0.85
B_DIAMETER = 0.5
RING_DIAMETER = 1.1
# Colour range of a slice panel: these percentiles of the type-A values of the
# whole configuration, so that neither the faster B particles (their true
# propensity is larger, and the network is not trained on them) nor a few
# outliers (e.g. overlapping pairs in an energy) set the scale.
COLOUR_PERCENTILES = (1.0, 99.0)


class SliceArtists(NamedTuple):
  """What `draw_slice` put on an axis.

  Fields:
    a: EllipseCollection of the type-A particles in the slab, coloured by
      value (its array is their values, its norm the colour range).
    b: EllipseCollection of the type-B particles in the slab, grey outlines.
    mobile: EllipseCollection of black rings around the slab's type-A
      particles in the top fraction of the whole configuration.
    in_slab: [n] bool, particles in the slab.
    is_mobile: [n] bool, type-A particles in the top fraction (whole
      configuration, not only the slab).
  """
  a: mcollections.EllipseCollection
  b: mcollections.EllipseCollection
  mobile: mcollections.EllipseCollection
  in_slab: np.ndarray
  is_mobile: np.ndarray


def colour_limits(values, types,
                  percentiles: Tuple[float, float] = COLOUR_PERCENTILES
                  ) -> Tuple[float, float]:
  """Colour range of a slice panel from the type-A values only.

  Args:
    values: [n] float, a score or propensity per particle (any units).
    types: [n] int, 0 = A, 1 = B.
    percentiles: lower and upper percentile of the finite type-A values.

  Returns:
    (vmin, vmax) with vmin < vmax (a constant score gets ±0.5, or ±5 % of
    its magnitude); all particles are used if there is no finite A value.
  """
  values = np.asarray(values, np.float64).reshape(-1)
  use = (np.asarray(types).reshape(-1) == TYPE_A) & np.isfinite(values)
  if not use.any():
    use = np.isfinite(values)
  if not use.any():
    return 0.0, 1.0
  vmin, vmax = (float(v) for v in np.percentile(values[use], percentiles))
  if not vmax > vmin:
    half = 0.05 * abs(vmin) if vmin else 0.5
    vmin, vmax = vmin - half, vmax + half
  return vmin, vmax


def draw_slice(ax, positions, types, box, values, *,
               z_centre: Optional[float] = None, thickness: float = 1.0,
               top_fraction: float = metrics.DEFAULT_TOP_FRACTION,
               cmap: str = "viridis") -> SliceArtists:
  """Draws one slab of a configuration, type A coloured by `values`.

  Type-A particles with |z − z_centre| < thickness/2 (periodic) are discs
  coloured by value on the `colour_limits` range; type-B particles are
  small grey outlines; the `top_fraction` of type-A particles with the
  largest values (ranked over the whole configuration) are ringed in black.

  Args:
    ax: a matplotlib Axes.
    positions: [n, 3] float, σ_AA; types: [n] int; box: [3] float, σ_AA.
    values: [n] float, what colours the A particles (any units).
    z_centre: slab centre, σ_AA (default: mid-box).
    thickness: slab thickness, σ_AA.
    top_fraction: size of the ringed class, in (0, 1).
    cmap: matplotlib colour map of the A particles.
  """
  positions = np.asarray(positions, np.float64)
  types = np.asarray(types).reshape(-1)
  box = np.asarray(box, np.float64)
  values = np.asarray(values, np.float64).reshape(-1)
  z0 = box[2] / 2 if z_centre is None else z_centre
  dz = np.mod(positions[:, 2] - z0 + box[2] / 2, box[2]) - box[2] / 2
  in_slab = np.abs(dz) < thickness / 2
  is_a = types == TYPE_A
  is_mobile = np.zeros(types.shape, bool)
  if is_a.any():
    is_mobile[is_a] = metrics.top_mask(values[is_a], top_fraction)
  xy = np.mod(positions[:, :2], box[:2])

  def discs(mask, diameter, **kwargs):
    count = int(mask.sum())
    return ax.add_collection(mcollections.EllipseCollection(
        np.full(count, diameter), np.full(count, diameter),
        np.zeros(count), units="xy", offsets=xy[mask],
        offset_transform=ax.transData, **kwargs))

  b = discs(in_slab & ~is_a, B_DIAMETER, facecolors="none",
            edgecolors="0.6", linewidths=0.7, zorder=1)
  a_mask = in_slab & is_a
  vmin, vmax = colour_limits(values, types)
  a = discs(a_mask, A_DIAMETER, cmap=cmap,
            norm=mcolors.Normalize(vmin, vmax), edgecolors="none", zorder=2)
  a.set_array(values[a_mask])
  mobile = discs(a_mask & is_mobile, RING_DIAMETER, facecolors="none",
                 edgecolors="k", linewidths=1.2, zorder=3)
  ax.set_xlim(0, box[0])
  ax.set_ylim(0, box[1])
  ax.set_aspect("equal")
  return SliceArtists(a, b, mobile, in_slab, is_mobile)


def propensity_slices(positions, types, box, propensity,
                      predictions: Dict[str, np.ndarray], path: str,
                      timescale: int, time: Optional[float] = None,
                      thickness: float = 1.0, z_centre: Optional[float] = None,
                      top_fraction: float = metrics.DEFAULT_TOP_FRACTION
                      ) -> str:
  """A slab of the configuration coloured by true and predicted propensity.

  Extended Data Figs. 4-6: one panel per quantity (the truth, then each
  method with an output at this timescale), drawn by `draw_slice`: type-A
  particles coloured on the range of their own 1st-99th percentiles (each
  panel its own scale: baseline scores have other units; the colour bar's
  arrows mark clipping), type-B particles as small grey outlines, and the
  `top_fraction` most mobile type-A particles of the whole configuration,
  by each panel's values, ringed in black.

  Args:
    positions: [n, 3] float, σ_AA; types: [n] int; box: [3] float.
    propensity: [T, n] float, σ_AA (true).
    predictions: name -> [n, T] float scores (NaN where not predicted).
    path: the PNG to write.
    timescale: index j of the timescale to draw.
    time: t_j, τ, for the title.
    thickness: slab thickness, σ_AA (the paper: about one σ).
    z_centre: slab centre, σ_AA (default: mid-box).
    top_fraction: size of the ringed class (config.evaluate.top_fraction).

  Returns:
    path.
  """
  box = np.asarray(box, np.float64)
  types = np.asarray(types).reshape(-1)
  panels = [("true propensity [σ]", np.asarray(propensity)[timescale])]
  for name, value in predictions.items():
    column = np.asarray(value)[:, timescale]
    if np.all(np.isfinite(column[types == TYPE_A])):
      panels.append((name, column))
  n_cols = min(3, len(panels))
  n_rows = int(math.ceil(len(panels) / n_cols))
  fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols,
                                                    3.9 * n_rows + 0.4),
                           squeeze=False, layout="constrained")
  for ax in axes.flat[len(panels):]:
    ax.axis("off")
  z0 = box[2] / 2 if z_centre is None else z_centre
  for ax, (title, values) in zip(axes.flat, panels):
    artists = draw_slice(ax, positions, types, box, values, z_centre=z0,
                         thickness=thickness, top_fraction=top_fraction)
    fig.colorbar(artists.a, ax=ax, shrink=0.85, extend="both")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x [σ]")
    ax.set_ylabel("y [σ]")
  handles = [
      mlines.Line2D([], [], ls="none", marker="o", ms=8, mfc="tab:green",
                    mec="none", label="type A (colour: value)"),
      mlines.Line2D([], [], ls="none", marker="o", ms=5, mfc="none",
                    mec="0.6", label="type B (not scored)"),
      mlines.Line2D([], [], ls="none", marker="o", ms=10, mfc="none",
                    mec="k", label=f"top {top_fraction:.0%} of type A"),
  ]
  fig.legend(handles=handles, loc="outside lower center", ncols=3,
             fontsize=8, frameon=False)
  when = f"t = {time:.3g} τ" if time is not None else f"timescale {timescale}"
  fig.suptitle(f"slab |z − {z0:.2f}| < {thickness / 2:g} σ, {when}; colours: "
               "type-A 1st-99th percentiles (cf. ED Figs. 4-6)", fontsize=9)
  return _save(fig, path)


def propensity_histograms(samples, report: dict, path: str,
                          method: Optional[str] = None) -> str:
  """Distributions of type-A propensity, true vs predicted (ED Fig. 7).

  One panel per timescale (sorted by time); the predicted histogram is that
  of `method` (default: the first model, else nothing but the truth).
  Uses the configurations kept in `samples` (evaluation.Sample list).
  """
  times = np.asarray(report["times"])
  order = np.argsort(times)
  if method is None:
    models = [n for n, e in report["methods"].items() if e["kind"] == "model"]
    method = models[0] if models else None
  n_cols = min(4, len(order))
  n_rows = int(math.ceil(len(order) / n_cols))
  fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols,
                                                    2.6 * n_rows),
                           squeeze=False)
  for ax in axes.flat[len(order):]:
    ax.axis("off")
  for ax, j in zip(axes.flat, order):
    true = np.concatenate([s.propensity[j][s.types == TYPE_A]
                           for s in samples])
    bins = np.linspace(0, np.percentile(true, 99.5) * 1.2, 40)
    ax.hist(true, bins=bins, density=True, alpha=0.5, label="true")
    if method is not None:
      pred = np.concatenate([s.predictions[method][s.types == TYPE_A, j]
                             for s in samples])
      if np.all(np.isfinite(pred)):
        ax.hist(pred, bins=bins, density=True, histtype="step", lw=1.5,
                label=method)
    ax.set_title(f"t = {times[j]:.3g} τ", fontsize=9)
    ax.set_xlabel("propensity [σ]")
  axes.flat[0].legend(fontsize=7)
  fig.suptitle("type-A propensity distributions (cf. ED Fig. 7)",
               fontsize=9)
  fig.tight_layout()
  return _save(fig, path)


def prediction_scatter(samples, report: dict, path: str,
                       methods: Optional[Sequence[str]] = None,
                       timescale: Optional[int] = None) -> str:
  """Predicted vs true type-A propensity at one timescale (default τ_α).

  One panel per method; Pearson of the pooled points in each title.
  """
  times = np.asarray(report["times"])
  if timescale is None:
    levels = _as_float(report["isf_levels"])
    hit = np.flatnonzero(np.isclose(levels, INV_E, atol=1e-4))
    timescale = int(hit[0]) if hit.size else int(np.argmax(times))
  methods = list(methods or report["methods"])
  fig, axes = plt.subplots(1, len(methods), figsize=(3.4 * len(methods), 3.3),
                           squeeze=False)
  true = np.concatenate([s.propensity[timescale][s.types == TYPE_A]
                         for s in samples])
  for ax, name in zip(axes[0], methods):
    pred = np.concatenate([s.predictions[name][s.types == TYPE_A, timescale]
                           for s in samples])
    if not np.all(np.isfinite(pred)):
      ax.set_title(f"{name}: no output here", fontsize=9)
      ax.axis("off")
      continue
    ax.scatter(true, pred, s=3, alpha=0.3, edgecolors="none")
    ax.set_title(f"{name}: r = {metrics.pearson(pred, true):.3f}",
                 fontsize=9)
    ax.set_xlabel("true propensity [σ]")
  axes[0][0].set_ylabel("prediction")
  fig.suptitle(f"type A at t = {times[timescale]:.3g} τ, "
               f"{len(samples)} configurations", fontsize=9)
  fig.tight_layout()
  return _save(fig, path)


def neighbour_sweep(sweep: dict, report: dict, path: str) -> str:
  """Test Pearson of the neighbour-count regression vs radius (ED Fig. 10)."""
  radii = np.asarray(sweep["radii"])
  mean = _as_float(np.asarray(sweep["pearson_mean"], object).ravel()
                   ).reshape(len(radii), -1)
  std = _as_float(np.asarray(sweep["pearson_std"], object).ravel()
                  ).reshape(len(radii), -1)
  times = np.asarray(report["times"])
  fig, ax = plt.subplots(figsize=(5.5, 4.0))
  colours = plt.cm.plasma(np.linspace(0, 0.9, len(times)))
  for c, j in enumerate(np.argsort(times)):
    ax.errorbar(radii, mean[:, j], yerr=std[:, j], fmt="-o", ms=3,
                capsize=2, color=colours[c], label=f"t = {times[j]:.3g} τ")
  ax.set_xlabel("counting radius r [σ]")
  ax.set_ylabel("pearson (type A, test)")
  ax.set_title("neighbour-count regression (cf. ED Fig. 10)", fontsize=9)
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  return _save(fig, path)


def transfer_heatmap(transfer: dict, path: str,
                     timescale: Optional[int] = None) -> str:
  """Mean Pearson of each model (row) on each dataset (column), Fig. 3c.

  Args:
    transfer: `evaluation.transfer_matrix` output.
    timescale: index j (default: τ_α if present, else the last).
  """
  matrix = _as_float(np.asarray(transfer["mean"], object).ravel()).reshape(
      len(transfer["models"]), len(transfer["datasets"]), -1)
  levels = _as_float(transfer["isf_levels"])
  if timescale is None:
    hit = np.flatnonzero(np.isclose(levels, INV_E, atol=1e-4))
    timescale = int(hit[0]) if hit.size else matrix.shape[2] - 1
  values = matrix[:, :, timescale]
  fig, ax = plt.subplots(figsize=(1.4 + 1.1 * values.shape[1],
                                  1.2 + 0.6 * values.shape[0]))
  im = ax.imshow(values, cmap="viridis", vmin=np.nanmin(values) if
                 np.isfinite(values).any() else 0, vmax=1.0 if
                 np.isfinite(values).any() and np.nanmax(values) > 0.9
                 else None)
  for (a, b), v in np.ndenumerate(values):
    ax.text(b, a, "nan" if not np.isfinite(v) else f"{v:.2f}",
            ha="center", va="center", color="w", fontsize=8)
  ax.set_xticks(range(values.shape[1]))
  ax.set_xticklabels([f"{d}\nT={t:.3g}" for d, t in
                      zip(transfer["datasets"],
                          transfer["test_temperatures"])], fontsize=7)
  ax.set_yticks(range(values.shape[0]))
  ax.set_yticklabels(transfer["models"], fontsize=7)
  ax.set_xlabel("test dataset")
  ax.set_ylabel("trained model")
  level = levels[timescale]
  ax.set_title(f"mean {transfer['metric']}, ISF level "
               f"{'n/a' if not np.isfinite(level) else f'{level:.3f}'} "
               "(cf. Fig. 3c)", fontsize=9)
  fig.colorbar(im, ax=ax)
  return _save(fig, path)


def learning_curves(history: Dict[str, Sequence[float]], steps_per_epoch: int,
                    path: str, times: Sequence[float] = (),
                    title: str = "") -> str:
  """Loss, validation Pearson per head and learning rate vs training step.

  Args:
    history: per-epoch lists, as `training.train` returns and
      train_state.json stores: `loss`, `val_loss`, `val_pearson`,
      `val_pearson_<j>`, `learning_rate` (missing keys are skipped).
    steps_per_epoch: steps between two entries.
    path: the PNG to write.
    times: head j's time (τ), for the legend.
    title: figure title.
  """
  n = len(history.get("loss", []))
  steps = steps_per_epoch * np.arange(1, n + 1)
  fig, (ax_loss, ax_lr, ax_r) = plt.subplots(
      1, 3, figsize=(14.0, 4.0), gridspec_kw={"width_ratios": [1, 0.7, 1]})
  for key, label in (("loss", "train loss (epoch mean)"),
                     ("val_loss", "validation loss")):
    if history.get(key):
      ax_loss.plot(steps[:len(history[key])], history[key], label=label)
  ax_loss.set_yscale("log")
  ax_loss.set_xlabel("step")
  ax_loss.set_ylabel("masked MSE (standardised targets)")
  if history.get("loss") or history.get("val_loss"):
    ax_loss.legend(fontsize=8, loc="upper right")
  if history.get("learning_rate"):
    ax_lr.plot(steps[:len(history["learning_rate"])],
               history["learning_rate"], color="0.3")
  ax_lr.set_xlabel("step")
  ax_lr.set_ylabel("learning rate (epoch's last step)")
  ax_lr.grid(alpha=0.3)
  heads = sorted((k for k in history if k.startswith("val_pearson_")),
                 key=lambda k: int(k.rsplit("_", 1)[1]))
  cmap = plt.get_cmap("viridis")
  for i, key in enumerate(heads):
    j = int(key.rsplit("_", 1)[1])
    label = f"head {j}" + (f" (t = {times[j]:.3g} τ)" if j < len(times)
                           else "")
    ax_r.plot(steps[:len(history[key])], history[key],
              color=cmap(i / max(len(heads) - 1, 1)), label=label)
  if history.get("val_pearson"):
    ax_r.plot(steps[:len(history["val_pearson"])], history["val_pearson"],
              color="k", lw=2, label="mean over heads")
  ax_r.set_xlabel("step")
  ax_r.set_ylabel("validation Pearson (type A)")
  if heads or history.get("val_pearson"):
    ax_r.legend(fontsize=7, loc="lower right")
  ax_r.grid(alpha=0.3)
  if title:
    fig.suptitle(title, fontsize=10)
  return _save(fig, path)
