"""Spatial correlation length of per-particle fields (Fig. 5b of Bapst et al.
2020).

The paper's finding: the structural predictors the network learns are
correlated in space over a length that grows with the timescale predicted,
up to the size of the system. Here, for a field f_i on the type-A particles
of each configuration (the predicted propensity at each timescale, the true
propensity for comparison, or the learned node embeddings),

    C(r) = < δf_i · δf_j >_{pairs i < j with |r_ij| in the bin of r}
           / < |δf_i|² >_i,          δf_i = f_i - <f>,

with minimum-image distances, pooled over configurations (pair-count
weighted), and a length ξ from fitting A exp(-r / ξ) to the decaying part
of C(r) (`fit_exponential`). For a vector field (an embedding) the product
is the dot product, so C(r) is the normalised spatial covariance of the
whole representation.

Finite box: subtracting each configuration's mean lowers C(r) by about the
box average of the true correlation, which biases ξ low once ξ³ is not
small against the volume (tests: a field with exact ξ = 0.6 σ in a 7 σ box
gives 0.604 σ without and 0.554 σ with the mean subtracted). A length that
"reaches the size of the system", as the paper reports at long times, is
therefore a lower bound here.
"""

import math
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
from scipy import optimize

from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.analysis import common
from glassy_dynamics_tf.analysis import embeddings as embeddings_lib
from glassy_dynamics_tf.io import record as record_lib

FIGURE = "Fig. 5b of Bapst et al. 2020"
FIELDS = ("prediction", "propensity", "embedding", "embedding_pc1")
# Rows of the pair matrix handled at once (memory: rows × n × 3 float64).
_CHUNK = 256


class CorrelationFunction(NamedTuple):
  """A binned spatial correlation function.

  Attributes:
    bin_edges: [B + 1] float64, σ_AA.
    r: [B] float64, σ_AA, bin centres.
    correlation: [B] float64, C(r) (1 at r -> 0 for a smooth field); NaN
      for bins without pairs.
    counts: [B] int64, pairs in each bin.
  """
  bin_edges: np.ndarray
  r: np.ndarray
  correlation: np.ndarray
  counts: np.ndarray


def pair_correlation(positions, box, field, mask=None,
                     bin_width: float = 0.1, r_max: Optional[float] = None,
                     subtract_mean: bool = True) -> CorrelationFunction:
  """C(r) of one configuration (module docstring), O(n²) in chunks.

  Args:
    positions: [n, 3] float, σ_AA.
    box: [3] float, σ_AA, orthorhombic.
    field: [n] or [n, d] float, any units (C is dimensionless).
    mask: [n] bool, the particles to correlate (e.g. types == A); default
      all.
    bin_width: σ_AA.
    r_max: σ_AA, outer edge of the last bin; default half the smallest box
      edge (beyond it the minimum image does not define distances).
    subtract_mean: correlate fluctuations about the mean over the masked
      particles (the usual estimator); False correlates the raw field.

  Returns:
    CorrelationFunction with floor(r_max / bin_width) bins.

  Raises:
    common.AnalysisError: bad shapes, fewer than 2 particles, or a field
      without fluctuations.
  """
  positions = np.asarray(positions, np.float64)
  box = np.asarray(box, np.float64)
  field = np.asarray(field, np.float64)
  if field.ndim == 1:
    field = field[:, None]
  if positions.ndim != 2 or positions.shape[1] != 3:
    raise common.AnalysisError(f"positions: expected [n, 3], found "
                               f"{list(positions.shape)}")
  if field.ndim != 2 or field.shape[0] != positions.shape[0]:
    raise common.AnalysisError(
        f"field: expected [{positions.shape[0]}] or [{positions.shape[0]}, "
        f"d], found {list(field.shape)}")
  if mask is not None:
    mask = np.asarray(mask, bool).reshape(-1)
    positions, field = positions[mask], field[mask]
  if positions.shape[0] < 2:
    raise common.AnalysisError(
        f"pair_correlation needs at least 2 particles, found "
        f"{positions.shape[0]}")
  half_box = float(np.min(box)) / 2
  r_max = half_box if r_max is None else float(r_max)
  if not 0 < r_max <= half_box + 1e-9 or not bin_width > 0:
    raise common.AnalysisError(
        f"need 0 < r_max <= half the smallest box edge ({half_box:.4g} σ) "
        f"and bin_width > 0, got r_max={r_max}, bin_width={bin_width}")
  n_bins = int(np.floor(r_max / bin_width + 1e-9))
  if n_bins < 1:
    raise common.AnalysisError(f"r_max={r_max} is below one bin width "
                               f"{bin_width}")
  edges = bin_width * np.arange(n_bins + 1, dtype=np.float64)
  if subtract_mean:
    field = field - field.mean(axis=0)
  variance = float(np.mean(np.sum(field * field, axis=1)))
  if not variance > 0:
    raise common.AnalysisError("the field is constant over the selected "
                               "particles: its correlation is undefined")
  sums = np.zeros(n_bins)
  counts = np.zeros(n_bins, np.int64)
  m = positions.shape[0]
  column = np.arange(m)
  for start in range(0, m, _CHUNK):
    rows = np.arange(start, min(start + _CHUNK, m))
    vectors = periodic.minimum_image(
        positions[rows, None, :] - positions[None, :, :], box)
    distance = np.sqrt(np.sum(vectors * vectors, axis=-1))
    products = field[rows] @ field.T
    # Each unordered pair once (j > i), inside the last bin's edge.
    keep = (column[None, :] > rows[:, None]) & (distance < edges[-1])
    index = np.minimum((distance[keep] / bin_width).astype(np.int64),
                       n_bins - 1)
    sums += np.bincount(index, weights=products[keep], minlength=n_bins)
    counts += np.bincount(index, minlength=n_bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    correlation = np.where(counts > 0, sums / counts / variance, np.nan)
  return CorrelationFunction(bin_edges=edges,
                             r=0.5 * (edges[:-1] + edges[1:]),
                             correlation=correlation, counts=counts)


def combine(functions: Sequence[CorrelationFunction]) -> CorrelationFunction:
  """Pair-count-weighted average of C(r) over configurations.

  Raises:
    common.AnalysisError: no functions, or different bins.
  """
  if not functions:
    raise common.AnalysisError("combine: no correlation functions")
  edges = functions[0].bin_edges
  for f in functions[1:]:
    if f.bin_edges.shape != edges.shape or not np.allclose(f.bin_edges,
                                                           edges):
      raise common.AnalysisError(
          "combine: the configurations' correlation functions have "
          "different bins (boxes of different sizes?); give r_max")
  counts = np.sum([f.counts for f in functions], axis=0)
  sums = np.sum([np.where(f.counts > 0, f.correlation * f.counts, 0.0)
                 for f in functions], axis=0)
  with np.errstate(invalid="ignore", divide="ignore"):
    correlation = np.where(counts > 0, sums / counts, np.nan)
  return CorrelationFunction(edges, functions[0].r, correlation, counts)


class ExponentialFit(NamedTuple):
  """A exp(-r / length) fitted to the decaying part of a curve.

  Attributes:
    length: σ_AA (NaN if fewer than 3 points decay).
    amplitude: A, the fitted curve extrapolated to r = 0 (NaN where that
      overflows: a length far below r_start, a drop faster than the bins
      resolve).
    r_start, r_end: σ_AA, the first and last point fitted.
    n_points: points fitted.
    start_value: the fitted curve at r_start, A exp(-r_start / length)
      (always finite for a finite fit; what the figure draws from).
  """
  length: float
  amplitude: float
  r_start: float
  r_end: float
  n_points: int
  start_value: float = math.nan


def fit_exponential(r, values, weights=None, r_min: float = 0.0,
                    r_max: float = math.inf,
                    floor: float = 0.0) -> ExponentialFit:
  """Fits A exp(-r / ξ) to the decaying part of a curve.

  The decaying part starts at the largest finite value with r >= r_min and
  runs over the following points up to r_max, stopping before the first
  point whose value is <= floor (where the curve has reached the noise, or
  turned negative). The fit is least squares on the values (scipy
  curve_fit), started from a log-linear fit.

  Args:
    r: [B] σ_AA, increasing.
    values: [B], e.g. C(r); NaN points are skipped.
    weights: [B] >= 0, e.g. pair counts (uncertainty ∝ 1/sqrt(weight));
      default equal; points with weight 0 are skipped.
    r_min, r_max: σ_AA, the window searched.
    floor: the level that ends the decaying part (>= 0).

  Returns:
    ExponentialFit (length NaN if fewer than 3 points, if they do not
    decay, or if the fitted length is shorter than the spacing of the
    points: a drop the bins do not resolve).
  """
  r = np.asarray(r, np.float64).reshape(-1)
  values = np.asarray(values, np.float64).reshape(-1)
  weights = (np.ones_like(values) if weights is None else
             np.asarray(weights, np.float64).reshape(-1))
  if not r.shape == values.shape == weights.shape:
    raise common.AnalysisError(
        f"fit_exponential: r, values, weights must have equal shapes, found "
        f"{r.shape}, {values.shape}, {weights.shape}")
  usable = (np.isfinite(values) & (weights > 0) & (r >= r_min) &
            (r <= r_max))
  index = np.flatnonzero(usable)
  nan_fit = ExponentialFit(math.nan, math.nan, math.nan, math.nan, 0)
  if index.size == 0:
    return nan_fit
  index = index[int(np.argmax(values[index])):]
  below = np.flatnonzero(values[index] <= max(floor, 0.0))
  if below.size:
    index = index[:below[0]]
  if index.size < 3:
    return nan_fit._replace(n_points=int(index.size))
  x, y, w = r[index], values[index], weights[index]
  x0 = x[0]
  slope, intercept = np.polyfit(x - x0, np.log(y), 1, w=np.sqrt(w))
  if not slope < 0:
    return nan_fit._replace(r_start=float(x[0]), r_end=float(x[-1]),
                            n_points=int(index.size))
  start = (math.exp(intercept), -1.0 / slope)
  try:
    (a, length), _ = optimize.curve_fit(
        lambda t, a, xi: a * np.exp(-t / xi), x - x0, y, p0=start,
        sigma=1.0 / np.sqrt(w), bounds=([0.0, 1e-6], [np.inf, np.inf]),
        maxfev=10000)
  except (RuntimeError, ValueError):
    a, length = start
  if length < np.min(np.diff(x)):
    # The curve falls to the noise within one bin (e.g. C(r) of an
    # early-time field beyond the first shell): no length is resolved.
    return nan_fit._replace(r_start=float(x[0]), r_end=float(x[-1]),
                            n_points=int(index.size))
  try:
    amplitude = float(a * math.exp(x0 / length))
  except OverflowError:
    amplitude = math.nan
  return ExponentialFit(length=float(length), amplitude=amplitude,
                        r_start=float(x[0]), r_end=float(x[-1]),
                        n_points=int(index.size), start_value=float(a))


# ------------------------------------------------------------------ study ---


def _fields(model: Optional[common.AnalysisModel], records,
            names: Sequence[str]) -> Dict[str, Dict[str, Any]]:
  """name -> {"label", "time", "values": per configuration [n] or [n, d]}."""
  out = {}
  predictions = embeddings = None
  for name in names:
    if name in ("prediction", "embedding", "embedding_pc1") and model is None:
      raise common.AnalysisError(f"--fields={name} needs --model")
    if name == "prediction":
      if predictions is None:
        predictions = [np.asarray(model.predict(r.positions, r.types, r.box),
                                  np.float64).reshape(r.n_particles, -1)
                       for r in records]
      for j in range(model.n_outputs):
        out[f"prediction_{j}"] = {
            "label": "prediction, " + common.timescale_label(
                model.times[j], model.isf_levels[j]),
            "time": model.times[j],
            "values": [p[:, j] for p in predictions]}
    elif name == "propensity":
      counts = {r.n_timescales for r in records}
      if len(counts) != 1 or not counts.pop():
        raise common.AnalysisError(
            "--fields=propensity needs configurations with the same, "
            "non-zero number of propensity timescales; found "
            f"{sorted(r.n_timescales for r in records)}")
      for j in range(records[0].n_timescales):
        time = float(np.mean([r.times[j] for r in records]))
        level = float(records[0].isf_levels[j])
        out[f"propensity_{j}"] = {
            "label": "true propensity, " + common.timescale_label(time,
                                                                  level),
            "time": time,
            "values": [r.propensity[j] for r in records]}
    elif name in ("embedding", "embedding_pc1"):
      if model.network is None:
        raise common.AnalysisError(
            f"--fields={name} needs the model's network (load the model "
            f"with its weights: a SavedModel, train workdir or TF1 "
            f"checkpoint)")
      if embeddings is None:
        embeddings = [embeddings_lib.configuration_embeddings(
            model.network, r.positions, r.types, r.box, model.cutoff,
            model.self_loops) for r in records]
      if name == "embedding":
        out[name] = {"label": "node embedding (dot product)",
                     "time": math.nan, "values": embeddings}
      else:
        pooled = np.concatenate([e[r.types == common.TYPE_A]
                                 for e, r in zip(embeddings, records)])
        axis = embeddings_lib.principal_axes(pooled, 1)[:, 0]
        out[name] = {"label": "node embedding, 1st principal component",
                     "time": math.nan,
                     "values": [e @ axis for e in embeddings]}
    else:
      raise common.AnalysisError(f"--fields: unknown field '{name}'; "
                                 f"known: {FIELDS}")
  return out


def run(model: Optional[common.AnalysisModel], ids: Sequence[str],
        records: Sequence[record_lib.ConfigurationRecord], output_dir: str,
        fields: Sequence[str] = ("prediction",), bin_width: float = 0.1,
        r_max: float = 0.0, fit_r_min: float = 0.0, fit_floor: float = 0.0,
        figure: bool = True) -> Dict[str, Any]:
  """The study: correlation_length.json and correlation_length.png.

  Args:
    model: the model (None if only the true propensity is analysed).
    ids, records: configurations.
    output_dir: where the files go.
    fields: any of FIELDS: "prediction" (each output), "propensity" (each
      record timescale), "embedding" (full vector), "embedding_pc1".
    bin_width: σ_AA.
    r_max: σ_AA, 0 = half the smallest box edge over the configurations.
    fit_r_min, fit_floor: the fit window (see fit_exponential); the
      default floor 0 fits up to C(r)'s first zero crossing. (On the demo
      model, T = 0.9, a floor of 0.05 left 6 bins dominated by the
      first-shell oscillation of C(r) and gave lengths from 0.9 to 3.6 σ
      across timescales; up to the zero crossing, 0.44 to 0.48 σ.)
    figure: write the PNG.

  Returns:
    the report (as written to JSON).
  """
  if not records:
    raise common.AnalysisError("correlation_length: no configurations given")
  if not fields:
    raise common.AnalysisError(f"--fields: give at least one of {FIELDS}")
  half_box = min(float(np.min(r.box)) / 2 for r in records)
  r_max = r_max or half_box
  values = _fields(model, records, fields)
  results: Dict[str, Any] = {}
  for name, entry in values.items():
    per_config = [
        pair_correlation(record.positions, record.box, field,
                         record.types == common.TYPE_A, bin_width, r_max)
        for record, field in zip(records, entry["values"])]
    pooled = combine(per_config)
    fit = fit_exponential(pooled.r, pooled.correlation, pooled.counts,
                          fit_r_min, floor=fit_floor)
    lengths = [fit_exponential(c.r, c.correlation, c.counts, fit_r_min,
                               floor=fit_floor).length for c in per_config]
    results[name] = {
        "label": entry["label"], "time": entry["time"],
        "correlation": pooled.correlation, "pair_counts": pooled.counts,
        "fit": fit._asdict(),
        "length_per_configuration": lengths,
    }
    del pooled
  report = {
      "study": "correlation_length",
      "reproduces": FIGURE,
      **(common.model_description(model) if model else {"model": None}),
      "configurations": list(ids),
      "n_configurations": len(records),
      "bin_width": bin_width,
      "r": per_config[0].r,
      "bin_edges": per_config[0].bin_edges,
      "fit_r_min": fit_r_min,
      "fit_floor": fit_floor,
      "fields": results,
      "notes": ("C(r): normalised correlation of the field's fluctuations "
                "over type-A pairs (minimum image), pair-count weighted "
                "over configurations; fit: A exp(-r / length) from the "
                "peak of C(r) up to where it first drops to fit_floor "
                "(pair-count weighted least squares)."),
  }
  common.write_json(f"{output_dir}/correlation_length.json", report)
  if figure:
    report["figure"] = plot(report, f"{output_dir}/correlation_length.png")
  return report


def plot(report: Dict[str, Any], path: str) -> str:
  """C(r) with the fits (left) and ξ vs time per field family (right)."""
  plt = common.pyplot()
  r = common.float_array(report["r"])
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
  families: Dict[str, List] = {}
  for name, entry in report["fields"].items():
    c = common.float_array(entry["correlation"])
    line, = left.plot(r, c, "-", lw=1.5, label=entry["label"])
    fit = entry["fit"]
    length = fit.get("length")
    if length is not None and math.isfinite(length):
      x = np.linspace(fit["r_start"], fit["r_end"], 50)
      left.plot(x, fit["start_value"] * np.exp(-(x - x[0]) / length), "--",
                color=line.get_color(), lw=1)
    family = name.rsplit("_", 1)[0] if name[-1].isdigit() else name
    families.setdefault(family, []).append(
        (_number(entry.get("time")), _number(length)))
  for family, points in families.items():
    points = sorted(p for p in points if math.isfinite(p[0]))
    if points:
      right.plot([p[0] for p in points], [p[1] for p in points], "-o", ms=4,
                 label=family)
  left.axhline(0.0, color="0.7", lw=0.8)
  left.set_xlabel("r [σ_AA]")
  left.set_ylabel("C(r), type-A pairs")
  left.set_title(f"spatial correlation (cf. {FIGURE}); dashed: exp fit",
                 fontsize=8)
  left.legend(fontsize=6)
  right.set_xscale("log")
  right.set_xlabel("time t [τ]")
  right.set_ylabel("correlation length ξ [σ_AA]")
  right.legend(fontsize=7)
  for ax in (left, right):
    ax.grid(alpha=0.3, which="both")
  return common.save_figure(fig, path)


def _number(value) -> float:
  return math.nan if value is None else float(value)


def summary(report: Dict[str, Any]) -> str:
  """One line per field: ξ of the pooled C(r) and its spread."""
  lines = [f"correlation_length ({report['reproduces']}): "
           f"{report['n_configurations']} configuration(s), type-A pairs"]
  for entry in report["fields"].values():
    fit = entry["fit"]
    per_config = common.float_array(entry["length_per_configuration"])
    spread = (f" (per configuration {np.nanmean(per_config):.3g} ± "
              f"{np.nanstd(per_config):.2g})"
              if np.isfinite(per_config).any() else "")
    length = _number(fit["length"])
    lines.append(f"  {entry['label']}: ξ = {length:.3g} σ over "
                 f"{fit['n_points']} bins{spread}")
  return "\n".join(lines)
