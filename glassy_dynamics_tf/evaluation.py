"""Evaluation core of `evaluate_main.py`: predictors + records -> report.

  SavedModel(s) ──► SavedModelPredictor ─┐
                                         ├─► evaluate(records, methods) ──► report (dict, JSON)
  baselines.fit(train) ──► Baseline ─────┘                         └──────► samples (arrays, for plots)

`evaluate` is a pure function of a list of configuration records and a list of
`Method`s (a name, a `predict(record) -> [n_particles, n_outputs]` callable
and the record timescales its outputs stand for), so it is tested without a
TFDS dataset or a trained network. The rest of the module loads the inputs
(`load_split` through TFDS, `SavedModelPredictor` from a SavedModel with the
`predict` signature of docs/CONTRACTS.md) and writes the outputs
(`report.json`, `metrics.csv`, the printed table). `run`, the whole of
evaluate_main.py, takes its settings (split, baselines, the top fraction of
the mobile class, how many configurations are drawn as slices and how thick)
from the `evaluate` section of a config (configs/default.py).

Report layout (every number per timescale, with times and ISF levels; the
fields are documented in docs/CONTRACTS.md, "Evaluation report"):
  {"dataset", "split", "n_configurations", "ids", "temperature",
   "times" [T] (τ, mean over configurations), "isf_levels" [T],
   "tau_alpha" (time of the 1/e ISF level, or null), "top_fraction",
   "metrics": [every metric], "headline_metrics": [pearson, roc_auc,
   balanced_accuracy], "chance_levels": {metric: value},
   "methods": {name: {"kind": "model"|"baseline", "timescale_indices": [T_m],
                      "describe": {...},
                      "metrics": {metric: {mean, median, min, max, std,
                                           count, sem: [T_m]}},
                      "per_configuration": {metric: [n_configurations][T_m]},
                      "pearson_over_ceiling": {mean, ..., sem: [T_m]} | null}},
   "noise_ceiling": {"known", "reason", "formula", "split_half_reliability",
                     "ceiling", "per_configuration", "n_runs"},
   "comparisons": {model: {baseline: {"timescale_indices": [T_mb],
                                      metric: {mean, sem, n_sem, count}}}},
   "verdict": {model: {"threshold_n_sem", metric: {"ahead_everywhere",
                                                    "exceptions": [...]}}},
   "neighbour_sweep": {...} (optional, Extended Data Fig. 10)}

The printed report (`format_report`) leads with HEADLINE_METRICS, mean ± s.e.
over configurations (accuracy and overlap stay in the JSON and the CSV: with
a 10 % mobile class their chance levels are 0.82 and 0.1, not 0.5), then the
paired model − baseline differences and the verdict line.
"""

import csv
import dataclasses
import json
import math
import os
from typing import Callable, Dict, List, Optional, Sequence

from absl import logging
import ml_collections
import numpy as np

from glassy_dynamics_tf import baselines as baselines_lib
from glassy_dynamics_tf import metrics
from glassy_dynamics_tf.configs import default as default_config
from glassy_dynamics_tf.io import json_files
from glassy_dynamics_tf.io import record as record_lib

INV_E = math.exp(-1.0)
# A model is "ahead" of a baseline at a timescale when its paired mean
# difference exceeds this many standard errors (about a 2.3 % one-sided
# false-positive rate for normal differences).
AHEAD_N_SEM = 2.0
# What the report says when the noise ceiling cannot be computed.
NO_HALVES = "records lack propensity_halves"
NOISE_CEILING_FORMULA = ("r_ceiling = sqrt(R), R = 2 r_hh / (1 + r_hh) "
                         "(Spearman-Brown), r_hh = Pearson between the "
                         "even-run and odd-run propensities (type A)")


class EvaluationError(ValueError):
  """The inputs of an evaluation do not fit together (names the culprit)."""


@dataclasses.dataclass
class Method:
  """Something that scores particles: a trained model or a baseline.

  Attributes:
    name: column name in the report and the table.
    predict: record -> [n_particles, n_outputs] (or [n_particles]) float.
    timescale_indices: which of the record's timescales the outputs stand
      for, in output order; None = all of them (n_outputs = n_timescales).
    kind: "model" or "baseline".
    describe: JSON-friendly details copied into the report.
  """
  name: str
  predict: Callable
  timescale_indices: Optional[Sequence[int]] = None
  kind: str = "model"
  describe: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Sample:
  """One configuration kept for the figures.

  Attributes:
    id: the record's id.
    positions: [n, 3] float32, σ_AA; types: [n] int32; box: [3] float32.
    propensity: [T, n] float32, σ_AA units.
    predictions: method name -> [n, T] float64, NaN on the timescales the
      method does not predict.
  """
  id: str
  positions: np.ndarray
  types: np.ndarray
  box: np.ndarray
  propensity: np.ndarray
  predictions: Dict[str, np.ndarray]


@dataclasses.dataclass
class Evaluation:
  report: dict
  samples: List[Sample]


# ---------------------------------------------------------------------------
# The core.


def evaluate(records: Sequence[record_lib.ConfigurationRecord],
             methods: Sequence[Method],
             ids: Optional[Sequence[str]] = None,
             top_fraction: float = metrics.DEFAULT_TOP_FRACTION,
             n_samples: int = 3) -> Evaluation:
  """Scores every method on every record, per timescale, on type-A particles.

  Args:
    records: the configurations to evaluate (one split), all with the same
      number of timescales.
    methods: models and (already fitted) baselines.
    ids: one id per record (default "0", "1", ...).
    top_fraction: size of the mobile class (Extended Data Fig. 1).
    n_samples: how many configurations to keep with their predictions for
      the figures (the first ones).

  Returns:
    Evaluation(report, samples); see the module docstring for the report.

  Raises:
    EvaluationError: no records, records with different numbers of
      timescales, a method whose outputs do not fit the timescales, or
      duplicate method names.
  """
  if not records:
    raise EvaluationError("no configurations to evaluate (empty split?)")
  ids = [str(i) for i in (ids if ids is not None else range(len(records)))]
  if len(ids) != len(records):
    raise EvaluationError(f"{len(ids)} ids for {len(records)} records")
  names = [m.name for m in methods]
  if len(set(names)) != len(names):
    raise EvaluationError(f"method names must be unique, found {names}")
  n_timescales = records[0].n_timescales
  for rid, record in zip(ids, records):
    if record.n_timescales != n_timescales:
      raise EvaluationError(
          f"configuration '{rid}' has {record.n_timescales} timescales, "
          f"configuration '{ids[0]}' has {n_timescales}")
  indices = {m.name: resolve_timescale_indices(m, n_timescales)
             for m in methods}

  per_config = {m.name: [] for m in methods}
  samples = []
  for k, (rid, record) in enumerate(zip(ids, records)):
    keep = k < n_samples
    predictions = {}
    for method in methods:
      idx = indices[method.name]
      raw = np.asarray(method.predict(record), np.float64)
      prediction = _check_prediction(raw, record, len(idx), method.name, rid)
      per_config[method.name].append(
          metrics.configuration_metrics(prediction, record.propensity[idx],
                                        record.types,
                                        fraction=top_fraction))
      if keep:
        full = np.full((record.n_particles, n_timescales), np.nan)
        full[:, idx] = prediction
        predictions[method.name] = full
    if keep:
      samples.append(Sample(rid, record.positions, record.types, record.box,
                            record.propensity, predictions))

  times_all = np.stack([r.times for r in records]).astype(np.float64)
  times = times_all.mean(axis=0)
  spread = np.max(np.abs(times_all - times), axis=0)
  if np.any(spread > 1e-3 * times):
    logging.warning("times differ between configurations (largest spread "
                    "%s τ); the report gives their mean", spread.max())
  isf_levels = records[0].isf_levels.astype(np.float64)
  ceiling = noise_ceiling(records)
  report = {
      "n_configurations": len(records),
      "ids": ids,
      "temperature": float(np.mean([r.temperature for r in records])),
      "times": times.tolist(),
      "isf_levels": _nan_to_none(isf_levels),
      "tau_alpha": tau_alpha(times, isf_levels),
      "top_fraction": top_fraction,
      "metrics": list(metrics.METRIC_NAMES),
      "headline_metrics": list(metrics.HEADLINE_METRICS),
      "chance_levels": metrics.chance_levels(top_fraction),
      "methods": {},
      "noise_ceiling": ceiling.as_report(),
  }
  for method in methods:
    idx = indices[method.name]
    summaries = metrics.summarise_configurations(per_config[method.name])
    pearson = np.stack([m.pearson for m in per_config[method.name]])
    report["methods"][method.name] = {
        "kind": method.kind,
        "timescale_indices": [int(i) for i in idx],
        "describe": method.describe,
        "metrics": {k: _json_summary(v) for k, v in summaries.items()},
        "per_configuration": {
            name: [_nan_to_none(getattr(m, name)) for m in
                   per_config[method.name]] for name in metrics.METRIC_NAMES
        },
        # r / r_ceiling per configuration, then summarised: estimates the
        # correlation with the infinite-ensemble propensity.
        "pearson_over_ceiling": (
            None if ceiling.per_configuration is None else _json_summary(
                metrics.summarise(_ratio(pearson,
                                         ceiling.per_configuration[:, idx])))),
    }
  report["comparisons"] = compare_methods(report)
  report["verdict"] = verdict(report)
  return Evaluation(report, samples)


@dataclasses.dataclass
class NoiseCeiling:
  """The split-half reliability and noise ceiling of a set of records.

  Attributes:
    reason: None when known, else why not (e.g. NO_HALVES).
    reliability: [n_configurations, T] float64 split-half Pearson r_hh of
      each record (type A), or None.
    per_configuration: [n_configurations, T] float64 ceilings
      metrics.noise_ceiling(r_hh), or None.
    n_runs: [n_configurations] the records' n_runs.
  """
  reason: Optional[str]
  reliability: Optional[np.ndarray]
  per_configuration: Optional[np.ndarray]
  n_runs: List[int]

  @property
  def known(self) -> bool:
    return self.reason is None

  def as_report(self) -> dict:
    """The report's "noise_ceiling" entry (nulls when unknown)."""
    out = {"known": self.known, "reason": self.reason,
           "formula": NOISE_CEILING_FORMULA, "n_runs": self.n_runs,
           "split_half_reliability": None, "ceiling": None,
           "per_configuration": None}
    if self.known:
      out["split_half_reliability"] = _json_summary(
          metrics.summarise(self.reliability))
      out["ceiling"] = _json_summary(metrics.summarise(
          self.per_configuration))
      out["per_configuration"] = {
          "split_half_reliability": _nan_to_none(self.reliability),
          "ceiling": _nan_to_none(self.per_configuration)}
    return out


def noise_ceiling(records: Sequence[record_lib.ConfigurationRecord]
                  ) -> NoiseCeiling:
  """Split-half reliability and noise ceiling, per record and timescale.

  Known only when every record has `propensity_halves`: a ceiling averaged
  over a subset of the configurations would not be that of the scores it
  sits beside. See metrics.noise_ceiling for the formula and assumptions.
  """
  n_runs = [int(r.n_runs) for r in records]
  missing = sum(r.propensity_halves is None for r in records)
  if missing:
    reason = (NO_HALVES if missing == len(records) else
              f"{missing} of {len(records)} {NO_HALVES}")
    return NoiseCeiling(reason, None, None, n_runs)
  odd = sorted({n for n in n_runs if n % 2})
  if odd:
    # Unequal halves: Spearman-Brown's doubling then slightly underrates the
    # full ensemble (metrics.noise_ceiling, assumptions).
    logging.info("records with an odd number of runs %s: the noise ceiling "
                 "is slightly underestimated", odd)
  reliability = np.stack([
      metrics.split_half_reliability(r.propensity_halves, r.types)
      for r in records])
  return NoiseCeiling(None, reliability, metrics.noise_ceiling(reliability),
                      n_runs)


def compare_methods(report: dict) -> dict:
  """Paired differences model − baseline of the headline metrics.

  For every model and every baseline, on the timescales both predict, the
  per-configuration difference of each HEADLINE_METRICS metric, its mean,
  standard error, mean/s.e. and count (metrics.paired_difference).

  Returns:
    {model: {baseline: {"timescale_indices": [T_mb],
                        metric: {"mean", "sem", "n_sem", "count": [T_mb]}}}}
  """
  methods = report["methods"]
  models = [n for n, e in methods.items() if e["kind"] == "model"]
  others = [n for n, e in methods.items() if e["kind"] != "model"]
  out = {}
  for model in models:
    a = methods[model]
    out[model] = {}
    for baseline in others:
      b = methods[baseline]
      common = [j for j in a["timescale_indices"]
                if j in b["timescale_indices"]]
      ka = [a["timescale_indices"].index(j) for j in common]
      kb = [b["timescale_indices"].index(j) for j in common]
      entry = {"timescale_indices": common}
      for metric in metrics.HEADLINE_METRICS:
        va = _float_array(a["per_configuration"][metric])[:, ka]
        vb = _float_array(b["per_configuration"][metric])[:, kb]
        d = metrics.paired_difference(va, vb)
        entry[metric] = {k: _nan_to_none(v) for k, v in d._asdict().items()}
      out[model][baseline] = entry
  return out


def verdict(report: dict, threshold: float = AHEAD_N_SEM) -> dict:
  """Is each model ahead of every baseline by > `threshold` s.e. everywhere?

  Per model and headline metric: "ahead_everywhere" is true when the paired
  difference model − baseline exceeds `threshold` standard errors for every
  baseline at every shared timescale (null without baselines); each pair
  that falls short is listed in "exceptions" (an undefined s.e., e.g. one
  configuration, falls short too).
  """
  out = {}
  for model, against in report.get("comparisons", {}).items():
    entry = {"threshold_n_sem": threshold}
    for metric in metrics.HEADLINE_METRICS:
      exceptions, n_pairs = [], 0
      for baseline, comparison in against.items():
        d = comparison[metric]
        for k, j in enumerate(comparison["timescale_indices"]):
          n_pairs += 1
          n_sem = d["n_sem"][k]
          if n_sem is None or not n_sem > threshold:
            exceptions.append({"baseline": baseline, "timescale_index": j,
                               "difference": d["mean"][k],
                               "sem": d["sem"][k], "n_sem": n_sem})
      entry[metric] = {"ahead_everywhere": (not exceptions) if n_pairs else
                                           None,
                       "exceptions": exceptions}
    out[model] = entry
  return out


def resolve_timescale_indices(method: Method, n_timescales: int) -> List[int]:
  """The record timescales a method's outputs stand for, checked.

  Raises:
    EvaluationError: naming the method, if an index is out of range.
  """
  if method.timescale_indices is None or len(method.timescale_indices) == 0:
    return list(range(n_timescales))
  idx = [int(i) for i in method.timescale_indices]
  bad = [i for i in idx if not 0 <= i < n_timescales]
  if bad:
    raise EvaluationError(
        f"'{method.name}' predicts timescale indices {idx}, but the dataset "
        f"has {n_timescales} timescales (indices 0..{n_timescales - 1})")
  return idx


def tau_alpha(times, isf_levels) -> Optional[float]:
  """τ_α: the time at which the self-ISF reaches 1/e, if the data has it."""
  levels = np.asarray(isf_levels, np.float64)
  hit = np.flatnonzero(np.isclose(levels, INV_E, atol=1e-4))
  return float(np.asarray(times)[hit[0]]) if hit.size else None


def neighbour_sweep(records: Sequence[record_lib.ConfigurationRecord],
                    baseline: baselines_lib.NeighbourCountBaseline) -> dict:
  """Test Pearson of the neighbour-count regression at every radius.

  Extended Data Fig. 10: correlation vs counting radius, per timescale.

  Returns:
    {"radii": [R], "pearson_mean": [R][T], "pearson_std": [R][T],
     "train_pearson": [R][T], "best_radius": [T]}
  """
  per_config = []
  for record in records:
    sweep = baseline.predict_sweep(record)  # [R, n, T]
    per_config.append(np.stack([
        metrics.configuration_metrics(s, record.propensity,
                                      record.types).pearson for s in sweep
    ]))
  summary = metrics.summarise(np.stack(per_config))  # over configurations
  return {
      "radii": baseline.radii.tolist(),
      "pearson_mean": _nan_to_none(summary.mean),
      "pearson_std": _nan_to_none(summary.std),
      "train_pearson": _nan_to_none(baseline.train_pearson),
      "best_radius": baseline.radii[baseline.best_radius_index].tolist(),
  }


def transfer_matrix(reports: Dict[str, Dict[str, dict]],
                    metric: str = "pearson") -> dict:
  """Train state × test state × timescale matrix (the paper's Fig. 3c).

  Args:
    reports: model name -> dataset name -> report of `evaluate` on that
      dataset (the model must appear in its "methods").
    metric: which metric's mean to tabulate.

  Returns:
    {"models": [M], "datasets": [D], "test_temperatures": [D],
     "isf_levels": [T], "metric": metric,
     "mean": [M][D][T] (None where a model has no output for a timescale)}
  """
  models = list(reports)
  datasets = list(next(iter(reports.values())))
  first = reports[models[0]][datasets[0]]
  n_t = len(first["times"])
  matrix = np.full((len(models), len(datasets), n_t), np.nan)
  for a, model in enumerate(models):
    for b, dataset in enumerate(datasets):
      entry = reports[model][dataset]["methods"][model]
      for value, j in zip(entry["metrics"][metric]["mean"],
                          entry["timescale_indices"]):
        if j < n_t:
          matrix[a, b, j] = np.nan if value is None else value
  return {
      "models": models,
      "datasets": datasets,
      "test_temperatures": [reports[models[0]][d]["temperature"]
                            for d in datasets],
      "isf_levels": first["isf_levels"],
      "metric": metric,
      "mean": _nan_to_none(matrix),
  }


# ---------------------------------------------------------------------------
# Inputs: SavedModels and TFDS splits.


def resolve_model_dir(path: str) -> str:
  """A SavedModel directory from itself or from a train workdir.

  Raises:
    FileNotFoundError: naming `path` and the places looked at.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for candidate in (path, os.path.join(path, "saved_model")):
    if tf.io.gfile.exists(os.path.join(candidate, "saved_model.pb")):
      return candidate
  raise FileNotFoundError(
      f"model '{path}': no SavedModel found (looked for {path}/saved_model.pb"
      f" and {path}/saved_model/saved_model.pb; pass a train workdir or its "
      "saved_model/ directory)")


class SavedModelPredictor:
  """Calls a SavedModel's `predict(positions, types, box)` signature.

  Attributes:
    path: the SavedModel directory.
    metadata: assets/metadata.json as a dict ({} if absent).
    timescale_indices: metadata["timescale_indices"] or None (= all).
  """

  def __init__(self, path: str, name: Optional[str] = None):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._tf = tf
    self.path = resolve_model_dir(path)
    self.name = name or model_name(path)
    loaded = tf.saved_model.load(self.path)
    if "predict" not in loaded.signatures:
      raise EvaluationError(
          f"model '{self.path}' has no 'predict' signature; found "
          f"{sorted(loaded.signatures)} (docs/CONTRACTS.md, SavedModel)")
    self._loaded = loaded  # keeps the variables alive
    self._fn = loaded.signatures["predict"]
    metadata_path = os.path.join(self.path, "assets", "metadata.json")
    self.metadata = {}
    if tf.io.gfile.exists(metadata_path):
      with tf.io.gfile.GFile(metadata_path) as f:
        self.metadata = json.load(f)
    else:
      logging.warning("model '%s' has no %s; assuming it predicts every "
                      "timescale of the dataset", self.path, metadata_path)
    indices = self.metadata.get("timescale_indices")
    self.timescale_indices = list(indices) if indices else None

  def __call__(self, record) -> np.ndarray:
    """[n_particles, n_outputs] float32 predicted propensity, σ_AA."""
    tf = self._tf
    out = self._fn(
        positions=tf.constant(record.positions, tf.float32),
        types=tf.constant(record.types, tf.int32),
        box=tf.constant(record.box, tf.float32))
    if "propensity" not in out:
      raise EvaluationError(f"model '{self.path}': predict returned "
                            f"{sorted(out)}, expected 'propensity'")
    value = out["propensity"].numpy()
    return value.reshape(value.shape[0], -1)

  def method(self) -> Method:
    describe = {"path": self.path}
    for key in ("dataset", "times", "isf_levels", "timescale_indices"):
      if key in self.metadata:
        describe[key] = self.metadata[key]
    return Method(self.name, self, self.timescale_indices, "model", describe)

  def train_label(self) -> str:
    """What the model was trained on, for the transfer matrix's rows."""
    config = self.metadata.get("config") or {}
    temperature = (config.get("simulation") or {}).get("temperature")
    dataset = self.metadata.get("dataset") or (config.get("dataset") or
                                               {}).get("name")
    parts = [p for p in (dataset, temperature is not None and
                         f"T={temperature:g}") if p]
    return f"{self.name} ({', '.join(parts)})" if parts else self.name


def model_name(path: str) -> str:
  """A short column name for a model path (its workdir's base name)."""
  path = os.path.normpath(path)
  base = os.path.basename(path)
  if base == "saved_model":
    base = os.path.basename(os.path.dirname(path)) or base
  return base


def load_split(dataset: str, split: str, data_dir: Optional[str] = None,
               max_configurations: int = 0):
  """Reads a TFDS split into records.

  Args:
    dataset: TFDS name, e.g. "glassy_dynamics/demo".
    split: "train", "validation", "test" (or any TFDS split string).
    data_dir: TFDS data_dir (None/"" = TFDS default).
    max_configurations: read at most this many (0 = all).

  Returns:
    (ids [N] str, records [N] ConfigurationRecord).

  Raises:
    EvaluationError: naming the dataset and split, if it cannot be read or
      holds no examples.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # A prepared dataset is read from its files in data_dir; the builder need
  # not be importable here (evaluation never generates data).
  try:
    ds = tfds.load(dataset, split=split, data_dir=data_dir or None,
                   shuffle_files=False)
  except Exception as e:  # tfds raises a zoo of types; re-raise with names.
    # TFDS appends the list of every dataset it knows; keep the first lines.
    message = "\n".join(str(e).splitlines()[:2])
    raise EvaluationError(
        f"cannot load split '{split}' of dataset '{dataset}' (data_dir="
        f"{data_dir or 'TFDS default'}): {type(e).__name__}: {message}"
    ) from e
  if max_configurations:
    ds = ds.take(max_configurations)
  ids, records = [], []
  for k, example in enumerate(tfds.as_numpy(ds)):
    rid = example.get("id", str(k))
    rid = rid.decode() if isinstance(rid, bytes) else str(rid)
    records.append(record_lib.ConfigurationRecord.create(
        positions=example["positions"], types=example["types"],
        box=example["box"], propensity=example["propensity"],
        times=example["times"], isf_levels=example["isf_levels"],
        temperature=example["temperature"],
        pressure=example.get("pressure", math.nan),
        density=example.get("density"), n_runs=example.get("n_runs", 0),
        propensity_halves=propensity_halves_of_example(
            example, f"{dataset}/{split}/{rid}"),
        source=f"{dataset}/{split}/{rid}"))
    ids.append(rid)
  if not records:
    raise EvaluationError(f"split '{split}' of dataset '{dataset}' is empty")
  return ids, records


def propensity_halves_of_example(example: dict,
                                 source: str) -> Optional[np.ndarray]:
  """The record's `propensity_halves` from a TFDS example, or None.

  The builder (datasets/glassy_dynamics, version 1.1.0) stores
  [2, T, n] when the record has the halves and an empty [0, T, n] when it
  does not; datasets built before 1.1.0 have no such feature (None too).

  Raises:
    EvaluationError: naming `source`, for a leading dimension other than 0
      or 2.
  """
  halves = example.get("propensity_halves")
  if halves is None:
    return None
  halves = np.asarray(halves)
  if halves.ndim != 3 or halves.shape[0] not in (0, 2):
    raise EvaluationError(
        f"{source}: feature 'propensity_halves' must have shape [2, T, n] "
        f"(known) or [0, T, n] (unknown), found {list(halves.shape)}")
  return halves if halves.shape[0] == 2 else None


# ---------------------------------------------------------------------------
# Outputs.


def _timescale_table(report: dict, columns) -> List[str]:
  """Rows of a per-timescale text table (sorted by time), as lines.

  Args:
    report: the report (times, isf_levels).
    columns: [(header, j -> cell text)].

  The row of τ_α (ISF = 1/e) is marked with '*'.
  """
  header = ["j", "t [τ]", "ISF"] + [h for h, _ in columns]
  rows = []
  times = report["times"]
  for j in np.argsort(times, kind="stable"):
    j = int(j)
    level = report["isf_levels"][j]
    mark = "*" if level is not None and abs(level - INV_E) < 1e-4 else ""
    rows.append([f"{j}{mark}", f"{times[j]:.4g}",
                 "-" if level is None else f"{level:.3f}"] +
                [cell(j) for _, cell in columns])
  widths = [max(len(r[c]) for r in [header] + rows) for c in
            range(len(header))]
  line = lambda r: "  ".join(v.rjust(w) for v, w in zip(r, widths))
  return [line(header), line(["-" * w for w in widths])] + [
      line(r) for r in rows]


def _error_field(summary: dict) -> str:
  """"sem", or "std" for reports written before the s.e. was kept."""
  return "sem" if "sem" in summary else "std"


def _summary_cell(summary: Optional[dict], k: int, signed: bool = True,
                  error: str = "sem") -> str:
  if summary is None:
    return "—"
  mean = summary["mean"][k]
  if mean is None:
    return "nan"
  spread = summary.get(error, summary["std"])[k]
  spread_text = "nan" if spread is None else f"{spread:.3f}"
  return f"{mean:+.3f} ± {spread_text}" if signed else (
      f"{mean:.3f} ± {spread_text}")


def _where(report: dict) -> str:
  return " ".join(str(report[k]) for k in ("dataset", "split") if
                  report.get(k))


def ceiling_status(report: dict) -> str:
  """"known" or "unknown (<reason>)" for the report's noise ceiling."""
  ceiling = report.get("noise_ceiling")
  if not ceiling:
    return f"unknown ({NO_HALVES})"
  return "known" if ceiling["known"] else f"unknown ({ceiling['reason']})"


def format_table(report: dict, metric: str = "pearson") -> str:
  """A text table of one metric: one row per timescale, mean ± s.e. per method.

  For Pearson with a known noise ceiling, two columns give the split-half
  reliability r_hh and the ceiling (mean ± s.e. over configurations) and
  each score is followed by [r / ceiling]; with an unknown ceiling a line
  below says so. Reports written before the s.e. was kept show ± std (the
  title says which). A method without an output at a timescale shows '—'.
  """
  names = list(report["methods"])
  ceiling = report.get("noise_ceiling") or {}
  with_ceiling = metric == "pearson" and ceiling.get("known")
  first = next(iter(report["methods"].values()), None)
  error = _error_field(first["metrics"][metric]) if first else "sem"
  columns = []
  if with_ceiling:
    columns.append(("r_hh", lambda j: _summary_cell(
        ceiling["split_half_reliability"], j, signed=False)))
    columns.append(("ceiling", lambda j: _summary_cell(
        ceiling["ceiling"], j, signed=False)))

  def method_cell(name):
    entry = report["methods"][name]

    def cell(j):
      if j not in entry["timescale_indices"]:
        return "—"
      k = entry["timescale_indices"].index(j)
      text = _summary_cell(entry["metrics"][metric], k, error=error)
      ratio = entry.get("pearson_over_ceiling")
      if with_ceiling and ratio is not None:
        value = ratio["mean"][k]
        text += " [nan]" if value is None else f" [{value:.2f}]"
      return text
    return cell

  columns += [(name, method_cell(name)) for name in names]
  where = _where(report)
  chance = (report.get("chance_levels") or {}).get(metric)
  spread = "s.e." if error == "sem" else "std"
  title = (f"{metric} over type-A particles"
           f"{'' if chance is None else f' (chance {chance:g})'}, mean ± "
           f"{spread} over {report['n_configurations']} configurations"
           f"{' of ' + where if where else ''}; * = τ_α (ISF = 1/e)")
  if with_ceiling:
    title += ("; r_hh = split-half reliability, ceiling = sqrt(2 r_hh / "
              "(1 + r_hh)), [r / ceiling]")
  lines = [title] + _timescale_table(report, columns)
  if metric == "pearson" and not with_ceiling:
    lines.append(f"noise ceiling: {ceiling_status(report)}")
  return "\n".join(lines)


def format_comparisons(report: dict, metric: str = "pearson") -> str:
  """Paired differences model − baseline of one metric, per timescale.

  Cells: mean ± s.e. of the per-configuration difference, then (mean / s.e.);
  '—' where the pair shares no output at that timescale. Empty string
  without a model or a baseline.
  """
  columns = []
  for model, against in (report.get("comparisons") or {}).items():
    for baseline, comparison in against.items():
      def cell(j, d=comparison[metric], idx=comparison["timescale_indices"]):
        if j not in idx:
          return "—"
        k = idx.index(j)
        mean, sem, n_sem = d["mean"][k], d["sem"][k], d["n_sem"][k]
        if mean is None:
          return "nan"
        return (f"{mean:+.3f} ± {'nan' if sem is None else f'{sem:.3f}'} "
                f"({'nan' if n_sem is None else f'{n_sem:+.1f}'})")
      columns.append((f"{model} − {baseline}", cell))
  if not columns:
    return ""
  title = (f"{metric}: paired difference model − baseline over the same "
           "configurations, mean ± s.e. (mean / s.e.)")
  return "\n".join([title] + _timescale_table(report, columns))


def format_verdict(report: dict) -> str:
  """One line per model and headline metric: ahead of every baseline?"""
  lines = []
  for model, entry in (report.get("verdict") or {}).items():
    threshold = entry["threshold_n_sem"]
    lines.append(f"{model} ahead of every baseline by > {threshold:g} s.e. "
                 "at every timescale:")
    for metric in report.get("headline_metrics", metrics.HEADLINE_METRICS):
      v = entry[metric]
      if v["ahead_everywhere"] is None:
        lines.append(f"  {metric}: no baseline to compare with")
      elif v["ahead_everywhere"]:
        lines.append(f"  {metric}: yes")
      else:
        short = [f"{e['baseline']} at j={e['timescale_index']} ("
                 + ("nan" if e["n_sem"] is None else f"{e['n_sem']:+.1f}")
                 + " s.e.)" for e in v["exceptions"]]
        lines.append(f"  {metric}: NO, not by {threshold:g} s.e. over "
                     + ", ".join(short))
  return "\n".join(lines)


def format_report(report: dict) -> str:
  """The printed report: headline tables, noise ceiling, comparisons,
  verdict (what evaluate_main.py prints and writes to table.txt)."""
  headline = report.get("headline_metrics", list(metrics.HEADLINE_METRICS))
  blocks = [format_table(report, m) for m in headline]
  comparisons = [format_comparisons(report, m) for m in headline]
  blocks += [c for c in comparisons if c]
  verdict_text = format_verdict(report)
  if verdict_text:
    blocks.append(verdict_text)
  return "\n\n".join(blocks)


def write_csv(report: dict, path: str) -> None:
  """Long-format CSV: one row per method × timescale × metric.

  Besides the metrics of METRIC_NAMES, each method has rows for
  "pearson_over_ceiling" when the noise ceiling is known, and the method
  "noise_ceiling" (kind "data") rows for "split_half_reliability" and
  "ceiling".
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  stats = ("mean", "median", "min", "max", "std", "count", "sem")
  fields = ["method", "kind", "timescale_index", "time", "isf_level",
            "metric"] + list(stats)
  rows = []
  for name, entry in report["methods"].items():
    summaries = dict(entry["metrics"])
    if entry.get("pearson_over_ceiling") is not None:
      summaries["pearson_over_ceiling"] = entry["pearson_over_ceiling"]
    for metric, summary in summaries.items():
      rows.append((name, entry["kind"], entry["timescale_indices"], metric,
                   summary))
  ceiling = report.get("noise_ceiling") or {}
  if ceiling.get("known"):
    for metric in ("split_half_reliability", "ceiling"):
      rows.append(("noise_ceiling", "data",
                   list(range(len(report["times"]))), metric,
                   ceiling[metric]))
  with tf.io.gfile.GFile(path, "w") as f:
    writer = csv.writer(f)
    writer.writerow(fields)
    for name, kind, indices, metric, summary in rows:
      for k, j in enumerate(indices):
        level = report["isf_levels"][j]
        writer.writerow(
            [name, kind, j, report["times"][j],
             "" if level is None else level, metric] +
            ["" if summary.get(s) is None or summary[s][k] is None else
             summary[s][k] for s in stats])


def write_json(obj, path: str) -> None:
  json_files.write_json(path, obj, indent=1)


def _ratio(a, b) -> np.ndarray:
  """a / b, NaN where b is 0 or NaN (summaries then leave it out)."""
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(b > 0, a / b, np.nan)


def _float_array(nested) -> np.ndarray:
  """Nested lists with None (report JSON) -> float64 array with NaN."""
  return np.array([[math.nan if v is None else v for v in row]
                   for row in nested], np.float64)


def _json_summary(summary: metrics.Summary) -> dict:
  return {k: _nan_to_none(v) for k, v in summary._asdict().items()}


def _nan_to_none(values):
  """Array -> nested lists with NaN as None (strict JSON has no NaN)."""
  values = np.asarray(values)
  if values.dtype.kind in "iub":
    return values.tolist()
  out = np.where(np.isfinite(values), values, np.nan).astype(object)
  out[~np.isfinite(values.astype(np.float64))] = None
  return out.tolist()


def _check_prediction(raw: np.ndarray, record, n_outputs: int, name: str,
                      rid: str) -> np.ndarray:
  n = record.n_particles
  if raw.ndim == 1:
    raw = raw[:, None]
  if raw.ndim != 2 or raw.shape[0] != n:
    raise EvaluationError(
        f"'{name}' returned shape {list(raw.shape)} for configuration "
        f"'{rid}' with {n} particles; expected [{n}, {n_outputs}]")
  if raw.shape[1] != n_outputs:
    raise EvaluationError(
        f"'{name}' has {raw.shape[1]} outputs but stands for {n_outputs} "
        f"timescales of the dataset (which has {record.n_timescales}); "
        "check the model's assets/metadata.json timescale_indices against "
        "the dataset")
  if not np.all(np.isfinite(raw)):
    raise EvaluationError(f"'{name}' returned non-finite values for "
                          f"configuration '{rid}'")
  return raw


# ---------------------------------------------------------------------------
# The whole run of evaluate_main.py.


def write_figures(evaluation: Evaluation, output_dir: str,
                  sweep: Optional[dict] = None,
                  slice_thickness: float = 1.0) -> List[str]:
  """Writes the report's figures into output_dir/figures/; returns paths.

  One slice PNG per kept sample and timescale (the samples are the first
  `n_plot_configurations` of `run`), marking the report's `top_fraction`;
  `slice_thickness` is the slab thickness, σ_AA.
  """
  try:
    from glassy_dynamics_tf import plots  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    logging.warning("matplotlib is not installed (pip install .[plots]); no "
                    "figures: %s", e)
    return []
  report, samples = evaluation.report, evaluation.samples
  fig_dir = os.path.join(output_dir, "figures")
  paths = [plots.pearson_vs_time(report, os.path.join(fig_dir,
                                                      "pearson_vs_time.png")),
           plots.headline_vs_time(report, os.path.join(
               fig_dir, "headline_vs_time.png"))]
  if report.get("comparisons") and any(report["comparisons"].values()):
    paths.append(plots.paired_differences(report, os.path.join(
        fig_dir, "paired_differences.png")))
  if samples:
    paths.append(plots.propensity_histograms(
        samples, report, os.path.join(fig_dir, "propensity_histograms.png")))
    paths.append(plots.prediction_scatter(
        samples, report, os.path.join(fig_dir, "scatter_tau_alpha.png")))
    for sample in samples:
      for j in range(len(report["times"])):
        paths.append(plots.propensity_slices(
            sample.positions, sample.types, sample.box, sample.propensity,
            sample.predictions,
            os.path.join(fig_dir, f"slice_{_safe(sample.id)}_t{j}.png"),
            timescale=j, time=report["times"][j],
            thickness=slice_thickness, top_fraction=report["top_fraction"]))
  if sweep:
    paths.append(plots.neighbour_sweep(
        sweep, report, os.path.join(fig_dir, "neighbour_count_sweep.png")))
  return paths


def run(models: Sequence[str], datasets: Sequence[str], output_dir: str,
        config: Optional[ml_collections.ConfigDict] = None,
        split: Optional[str] = None, train_split: Optional[str] = None,
        baseline_names: Optional[Sequence[str]] = None,
        data_dir: Optional[str] = None, max_configurations: int = 0,
        figures: bool = True) -> dict:
  """Evaluates models and baselines on one or several datasets.

  Writes, per dataset (into output_dir, or output_dir/<dataset> when there
  are several): report.json, metrics.csv, table.txt, figures/*.png; with
  several datasets and at least one model also transfer.json and
  transfer_heatmap.png (Fig. 3c). Prints the table of each dataset.

  Args:
    models: SavedModel directories or train workdirs.
    datasets: TFDS names.
    output_dir: where the outputs go.
    config: the `evaluate` section of a config (configs/default.py):
      split, train_split, baselines, top_fraction, n_plot_configurations,
      slice_thickness. None = the paper defaults of configs/default.py.
    split, train_split, baseline_names: override the config's when given.
    data_dir: TFDS data_dir (None = TFDS default).
    max_configurations: read at most this many per split (0 = all).
    figures: write the PNG figures.

  Returns:
    {dataset: report}, plus "transfer" if computed.

  Raises:
    EvaluationError: no dataset, nothing to evaluate, or a config field out
      of range (named as config.evaluate.<field>).
  """
  settings = _evaluate_settings(config)
  split = settings.split if split is None else split
  train_split = settings.train_split if train_split is None else train_split
  baseline_names = list(settings.baselines if baseline_names is None else
                        baseline_names)
  # Current names (a deprecated one is mapped, with a logged note), each
  # once: "local_structure" and "symmetry_ridge" are the same baseline.
  canonical = []
  for name in baseline_names:
    name = baselines_lib.canonical_name(name)
    if name not in canonical:
      canonical.append(name)
  baseline_names = canonical
  top_fraction = settings.top_fraction
  if not datasets:
    raise EvaluationError("no dataset given (--dataset)")
  if not models and not baseline_names:
    raise EvaluationError("nothing to evaluate: give --model and/or "
                          "--baselines")
  predictors = [SavedModelPredictor(m) for m in models]
  names = [p.name for p in predictors]
  if len(set(names)) != len(names):  # e.g. runs/a/saved_model, runs2/a/...
    for k, p in enumerate(predictors):
      p.name = f"{p.name}#{k}"
  results = {}
  for dataset in datasets:
    ids, records = load_split(dataset, split, data_dir, max_configurations)
    methods = [p.method() for p in predictors]
    fitted = []
    train_records = None
    # symmetry_ridge and softness use the same symmetry functions: computed
    # once per configuration for both (dropped with the dataset's records).
    feature_cache = baselines_lib.SymmetryFunctionCache()
    for name in baseline_names:
      baseline = baselines_lib.make_baseline(name,
                                             feature_cache=feature_cache)
      if baseline.needs_fit:
        if train_records is None:
          _, train_records = load_split(dataset, train_split, data_dir,
                                        max_configurations)
        logging.info("fitting baseline %s on %d %s configurations", name,
                     len(train_records), train_split)
        baseline.fit(train_records)
      fitted.append(baseline)
    methods += [
        Method(b.name, b.predict, None, "baseline", {}) for b in fitted
    ]
    evaluation = evaluate(records, methods, ids, top_fraction,
                          n_samples=settings.n_plot_configurations)
    for method, b in zip(methods[len(predictors):], fitted):
      evaluation.report["methods"][method.name]["describe"] = b.describe()
    report = evaluation.report
    report.update(dataset=dataset, split=split, models=list(models),
                  baselines=list(baseline_names))
    sweep = None
    for b in fitted:
      if isinstance(b, baselines_lib.NeighbourCountBaseline):
        sweep = neighbour_sweep(records, b)
        report["neighbour_sweep"] = sweep
    out = (output_dir if len(datasets) == 1 else
           os.path.join(output_dir, _safe(dataset)))
    os.makedirs(out, exist_ok=True)
    table = format_report(report)
    print(table, flush=True)
    with open(os.path.join(out, "table.txt"), "w") as f:
      f.write(table + "\n")
    write_json(report, os.path.join(out, "report.json"))
    write_csv(report, os.path.join(out, "metrics.csv"))
    if figures:
      write_figures(evaluation, out, sweep, settings.slice_thickness)
    results[dataset] = report
  if len(datasets) > 1 and predictors:
    transfer = transfer_matrix({
        p.name: {d: results[d] for d in datasets} for p in predictors})
    transfer["model_labels"] = [p.train_label() for p in predictors]
    write_json(transfer, os.path.join(output_dir, "transfer.json"))
    if figures:
      try:
        from glassy_dynamics_tf import plots  # pylint: disable=g-import-not-at-top
        plots.transfer_heatmap(transfer, os.path.join(output_dir,
                                                      "transfer_heatmap.png"))
      except ImportError:
        pass
    results["transfer"] = transfer
  return results


def _evaluate_settings(config: Optional[ml_collections.ConfigDict]
                       ) -> ml_collections.ConfigDict:
  """The `evaluate` config section, defaults filled in and checked.

  Fields missing from `config` (e.g. an older config file) take the values
  of configs/default.py.
  """
  settings = default_config.get_config().evaluate
  if config is not None:
    unknown = sorted(set(config.keys()) - set(settings.keys()))
    if unknown:
      raise EvaluationError(f"config.evaluate has unknown fields {unknown}; "
                            f"known: {sorted(settings.keys())}")
    settings.update(config)
  if not 0.0 < settings.top_fraction < 1.0:
    raise EvaluationError("config.evaluate.top_fraction must lie in (0, 1) "
                          f"(the paper: 0.1), found {settings.top_fraction}")
  if int(settings.n_plot_configurations) != settings.n_plot_configurations or (
      settings.n_plot_configurations < 0):
    raise EvaluationError(
        "config.evaluate.n_plot_configurations must be an integer >= 0, "
        f"found {settings.n_plot_configurations}")
  if not settings.slice_thickness > 0:
    raise EvaluationError("config.evaluate.slice_thickness must be > 0 "
                          f"(σ_AA), found {settings.slice_thickness}")
  return settings


def _safe(name: str) -> str:
  """A file-name stem from a configuration id (its .npz/.pickle dropped)."""
  stem = str(name)
  for suffix in (".npz", ".pickle", ".pkl"):
    if stem.endswith(suffix):
      stem = stem[:-len(suffix)]
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
