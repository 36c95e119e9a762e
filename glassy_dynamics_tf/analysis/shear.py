"""Do structural predictors foresee where a glass yields? (Fig. 4 of Bapst
et al. 2020.)

Each configuration is quenched to its inherent structure and sheared
athermally and quasistatically (`simulation.shear`); the particles that
rearrange in its first plastic event (Falk-Langer D²_min above a threshold)
are the positives. Every predictor scores the particles of the *unsheared
quenched* configuration (strain 0, the original orthorhombic box), so the
usual neighbour-graph builder applies unchanged and a predictor sees only
the static structure, never the sheared cell or the event, as in the paper.
The score's ROC-AUC and its precision among the top k (k = the number of
rearranging particles by default) measure how well it detects the
rearranging type-A particles (the paper scores type A only).

```
 configurations ──► athermal_quasistatic_shear ──► ShearResult
 (files, records      (checkpointed: resumable)      output_dir/shear_runs/ID.npz
  or ShearResults)                                    │ positions at γ = 0,
                                                      │ rearranging particles
 predictor_fns[name](positions, types, box) ──► [n] scores
                                                      ▼
               score_rearrangements ──► shear.json (ROC-AUC, precision@k)
               plot ──► shear.png (σ-γ curves, slices of D²_min, scores)
```

Score convention: larger = more likely to rearrange (a propensity, a
per-particle energy: high energy = loosely bound).

Measured over 24 independent N = 4096 glasses, each melted at T = 2 and
cooled to T = 0.4 over 9 τ (not the paper's equilibrated T = 0.44
configurations; default settings; docs/results/shear_fig4.md has the
commands and the per-glass numbers): the first events ranged from 0 to 826
particles with D²_min > 1 σ², and 8 of them moved no type-A particle that
far (small events led by B particles; two moved no particle that far),
leaving 16 scored. Mean ± standard
error over those: ROC-AUC 0.644 ± 0.033 for the published t044_s09 network
and 0.562 ± 0.036 for the potential energy (paired difference 0.082 ±
0.033), precision@k 0.078 ± 0.022 and 0.051 ± 0.019 against 0.030 by
chance. How a glass first yields depends on the minimiser: an earlier glass
cooled the same way (seeds not recorded) yielded in a 761-particle avalanche at
γ = 0.001 (ROC-AUC 0.588 and 0.570); quenched and sheared with CG alone it
first yielded locally at γ = 0.0008 (12 particles; 0.707 and 0.662).
"""

import math
import os
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional
from typing import Sequence, Union

import numpy as np

from glassy_dynamics_tf import metrics
from glassy_dynamics_tf.io import json_files
from glassy_dynamics_tf.io import record as record_lib
from glassy_dynamics_tf.simulation import kob_andersen as ka
from glassy_dynamics_tf.simulation import shear as shear_lib

FIGURE = "Fig. 4 of Bapst et al. 2020"
TYPE_A = int(record_lib.ParticleType.A)
REPORT_NAME = "shear.json"
FIGURE_NAME = "shear.png"
RUNS_DIR = "shear_runs"
# Slab of the slice panels, σ_AA: about the core of a first event.
SLICE_THICKNESS = 1.5

ScoreFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
Configuration = Union[str, record_lib.ConfigurationRecord,
                      shear_lib.ShearResult]


class ShearStudyError(ValueError):
  """Inputs the study cannot use; the message names the predictor or file."""


class RearrangementScore(NamedTuple):
  """How well one per-particle score detects the rearranging particles.

  Fields:
    roc_auc: area under the ROC curve over the candidates (type A);
      0.5 random, 1 perfect, 0 reversed; NaN without both classes.
    precision_at_k: fraction of the k top-scored candidates that rearrange.
    k: the size of that top set.
    n_rearranging: rearranging candidates.
    n_candidates: candidates (type-A particles).
    random_precision: n_rearranging / n_candidates, what a random score
      gets on average.
    spearman: rank correlation of score and D²_min over the candidates
      (NaN if D²_min was not given).
  """
  roc_auc: float
  precision_at_k: float
  k: int
  n_rearranging: int
  n_candidates: int
  random_precision: float
  spearman: float


def score_rearrangements(scores, rearranging, types,
                         d2min=None, k: Optional[int] = None,
                         particle_type: Optional[int] = TYPE_A
                         ) -> RearrangementScore:
  """Scores a per-particle prediction against the rearranging particles.

  Args:
    scores: [n] float, larger = more likely to rearrange (any units).
    rearranging: [n] bool, the particles that rearranged.
    types: [n] int, 0 = A, 1 = B.
    d2min: optional [n] float, σ_AA², for the rank correlation.
    k: size of the top set (default: the number of rearranging candidates,
      so that precision = recall).
    particle_type: the candidates' species; None = all particles.

  Returns:
    RearrangementScore (NaNs where undefined, never an exception).
  """
  scores = np.asarray(scores, np.float64).reshape(-1)
  rearranging = np.asarray(rearranging, bool).reshape(-1)
  types = np.asarray(types).reshape(-1)
  if not scores.shape == rearranging.shape == types.shape:
    raise ShearStudyError(
        f"scores {list(scores.shape)}, rearranging "
        f"{list(rearranging.shape)} and types {list(types.shape)} must all "
        f"be [n_particles]")
  mask = (np.ones(types.shape, bool) if particle_type is None else
          types == particle_type)
  s, y = scores[mask], rearranging[mask]
  n_candidates, n_positive = int(mask.sum()), int(y.sum())
  k = n_positive if k is None else int(k)
  if k < 0 or k > n_candidates:
    raise ShearStudyError(f"k = {k} must lie in [0, {n_candidates}] (the "
                          f"candidates)")
  precision = math.nan
  if k > 0:
    # Stable sort of −score: ties broken by index, as metrics.top_mask.
    top = np.argsort(-s, kind="stable")[:k]
    precision = float(y[top].mean())
  spearman = math.nan
  if d2min is not None:
    spearman = metrics.spearman(s, np.asarray(d2min, np.float64)[mask])
  return RearrangementScore(
      roc_auc=metrics.roc_auc(y, s), precision_at_k=precision, k=k,
      n_rearranging=n_positive, n_candidates=n_candidates,
      random_precision=(n_positive / n_candidates if n_candidates else
                        math.nan),
      spearman=spearman)


def predictor_scores(fn: ScoreFn, result: shear_lib.ShearResult,
                     name: str = "predictor") -> np.ndarray:
  """[n] float64 scores of `fn` on the quenched, unsheared configuration.

  Raises:
    ShearStudyError: the predictor returned something other than [n] or
      [n, 1] finite numbers.
  """
  out = np.asarray(fn(result.positions, result.types, result.box),
                   np.float64)
  n = result.n_particles
  if out.shape == (n, 1):
    out = out[:, 0]
  if out.shape != (n,):
    raise ShearStudyError(
        f"predictor '{name}' returned shape {list(out.shape)}; expected "
        f"[{n}] or [{n}, 1] (for a multi-output model choose the output "
        f"with model_score_fn(predict, output_index))")
  if not np.all(np.isfinite(out)):
    raise ShearStudyError(f"predictor '{name}' returned non-finite scores")
  return out


def model_score_fn(predict: ScoreFn, output_index: int = 0) -> ScoreFn:
  """One output (timescale) of a model's predict(positions, types, box) ->
  [n, n_outputs] (e.g. prediction.load_predictor(path).predict), as a
  score function. Positions are passed as float32, the SavedModel's type.
  A negative `output_index` counts from the end (-1 = the last output)."""

  def score(positions, types, box):
    out = np.asarray(predict(np.asarray(positions, np.float32),
                             np.asarray(types, np.int32),
                             np.asarray(box, np.float32)))
    if out.ndim == 1:
      out = out[:, None]
    if not -out.shape[1] <= output_index < out.shape[1]:
      raise ShearStudyError(f"output_index {output_index} outside the "
                            f"model's {out.shape[1]} outputs")
    return out[:, output_index]

  return score


def potential_energy_score(positions, types, box) -> np.ndarray:
  """Per-particle KA energy (shifted), ε_AA: the paper's energy baseline.

  Computed with kob_andersen.per_particle_potential_energy, so it is the
  same for any source of the configuration; high energy = loosely bound.
  """
  return ka.per_particle_potential_energy(positions, types, box)


# ------------------------------------------------------------------ study --


def _resolve(configurations: Sequence[Configuration],
             ids: Optional[Sequence[str]]) -> List[str]:
  if ids is not None:
    if len(ids) != len(configurations):
      raise ShearStudyError(f"{len(ids)} ids for {len(configurations)} "
                            f"configurations")
    return [str(i) for i in ids]
  names = []
  for k, c in enumerate(configurations):
    if isinstance(c, str):
      names.append(os.path.splitext(os.path.basename(c))[0])
    else:
      names.append(f"configuration_{k:05d}")
  if len(set(names)) != len(names):
    raise ShearStudyError(f"configuration ids are not unique: {names}; "
                          f"pass ids=")
  return names


def shear_configuration(configuration: Configuration, run_dir: str, rid: str,
                        settings: shear_lib.ShearSettings,
                        log: Callable[[str], None] = print
                        ) -> shear_lib.ShearResult:
  """The ShearResult of one configuration, computed once.

  A ShearResult is returned as is. Otherwise `run_dir/ID.npz` is loaded if
  it exists (with the same settings), else the configuration (a file that
  io.load_configuration reads, or a record) is quenched and sheared with
  the checkpoint `run_dir/ID.checkpoint.npz` (resumable) and saved.
  """
  if isinstance(configuration, shear_lib.ShearResult):
    return configuration
  path = os.path.join(run_dir, f"{rid}.npz")
  if os.path.exists(path):
    result = shear_lib.load(path)
    if result.settings == settings:
      log(f"shear study: {rid}: loaded {path}")
      return result
    raise ShearStudyError(
        f"{path} was sheared with other settings ({result.settings}); "
        f"delete it or use another output_dir")
  if isinstance(configuration, str):
    from glassy_dynamics_tf import io as io_lib  # pylint: disable=g-import-not-at-top,line-too-long
    record = io_lib.load_configuration(configuration)
  else:
    record = configuration
  checkpoint = os.path.join(run_dir, f"{rid}.checkpoint.npz")
  result = shear_lib.athermal_quasistatic_shear(
      record.positions, record.types, record.box, settings,
      checkpoint_path=checkpoint, log=lambda m: log(f"{rid}: {m}"))
  shear_lib.save(result, path)
  if os.path.exists(checkpoint):
    os.remove(checkpoint)
  return result


def run_shear_study(configurations: Sequence[Configuration],
                    predictor_fns: Mapping[str, ScoreFn],
                    output_dir: str, *,
                    ids: Optional[Sequence[str]] = None,
                    settings: shear_lib.ShearSettings = (
                        shear_lib.ShearSettings()),
                    k: Optional[int] = None,
                    figure: bool = True,
                    log: Callable[[str], None] = print) -> Dict[str, Any]:
  """Shears every configuration and scores every predictor (Fig. 4).

  Args:
    configurations: configuration files (.npz ours, .pickle DeepMind),
      ConfigurationRecords, or finished ShearResults (re-scored only).
    predictor_fns: name -> fn(positions [n, 3] float64 σ_AA, types [n]
      int32, box [3] float64 σ_AA) -> [n] scores, larger = more likely to
      rearrange; called on the quenched configuration at strain 0. Use
      `model_score_fn(model.predict, j)` for output j of a SavedModel and
      `potential_energy_score` for the energy baseline.
    output_dir: gets shear.json, shear.png and shear_runs/ID.npz (each
      ShearResult; reused by a later call with the same settings).
    ids: names of the configurations (default: file names, or
      configuration_KKKKK).
    settings: the AQS protocol (simulation.shear.ShearSettings).
    k: top-set size of precision@k (default: each configuration's number
      of rearranging type-A particles).
    figure: also write shear.png.
    log: progress messages.

  Returns:
    The report written to shear.json: "settings", "configurations" (per
    configuration: id, event summary, stress-strain curve, per-predictor
    RearrangementScore), "summary" and "differences"
    (`summarise_scores`, over the configurations with a first event),
    "figure".

  Raises:
    ShearStudyError: no predictor, bad ids, or a predictor's bad output.
  """
  if not predictor_fns:
    raise ShearStudyError("run_shear_study needs at least one predictor")
  names = _resolve(configurations, ids)
  run_dir = os.path.join(output_dir, RUNS_DIR)
  os.makedirs(run_dir, exist_ok=True)
  entries, results, all_scores = [], [], []
  for rid, configuration in zip(names, configurations):
    result = shear_configuration(configuration, run_dir, rid, settings, log)
    scores = {name: predictor_scores(fn, result, name)
              for name, fn in predictor_fns.items()}
    entry = {
        "id": rid,
        "n_particles": result.n_particles,
        "shear_modulus": result.shear_modulus(),
        "first_event": shear_lib.first_event_summary(result),
        "n_events": int(result.event_steps.size),
        "curve": {"strain": result.strain.tolist(),
                  "stress": result.stress.tolist()},
        "scores": {},
    }
    for name, values in scores.items():
      score = (score_rearrangements(values, result.rearranging,
                                    result.types, result.d2min, k)
               if result.has_event else None)
      entry["scores"][name] = None if score is None else score._asdict()
    if result.has_event:
      log(f"shear study: {rid}: first event at γ = "
          f"{result.first_event_strain:.4f}, "
          f"{entry['first_event']['n_rearranging']} rearranging; " +
          ", ".join(f"{n} AUC {entry['scores'][n]['roc_auc']:.3f}"
                    for n in scores))
    else:
      log(f"shear study: {rid}: no plastic event up to γ = "
          f"{result.strain[-1]:.4f}")
    entries.append(entry)
    results.append(result)
    all_scores.append(scores)
  summary, differences = summarise_scores(entries, list(predictor_fns))
  settings_dict = {key[len("setting_"):]: value.item()
                   for key, value in settings.as_arrays().items()}
  report = {
      "study": "shear", "figure_of": FIGURE, "settings": settings_dict,
      "predictors": list(predictor_fns), "configurations": entries,
      "summary": summary, "differences": differences, "figure": None,
  }
  if figure:
    report["figure"] = plot(results, all_scores, names,
                            os.path.join(output_dir, FIGURE_NAME))
  json_files.write_json(os.path.join(output_dir, REPORT_NAME), report)
  return report


# ------------------------------------------------------------ aggregation --

SUMMARY_METRICS = ("roc_auc", "precision_at_k", "random_precision",
                   "spearman")
# Metrics compared between predictors, configuration by configuration.
PAIRED_METRICS = ("roc_auc", "precision_at_k")


def standard_error(values) -> float:
  """s / √n over the finite values, s the sample standard deviation
  (ddof = 1): the uncertainty of their mean when the configurations are
  independent. NaN for fewer than two finite values."""
  values = np.asarray(values, np.float64).reshape(-1)
  values = values[np.isfinite(values)]
  if values.size < 2:
    return math.nan
  return float(np.std(values, ddof=1) / math.sqrt(values.size))


def _with_standard_error(values) -> Dict[str, Any]:
  out = metrics.summarise(values).as_dict()
  out["standard_error"] = standard_error(values)
  return out


def summarise_scores(entries: Sequence[Mapping[str, Any]],
                     predictors: Sequence[str]) -> tuple:
  """Mean and standard error of each predictor's scores over configurations.

  Independent glasses give independent first events, so the mean over
  configurations with an event estimates the expected score and s/√n its
  uncertainty. Predictors scored on the same events are compared pairwise
  (configuration by configuration), which removes the event-to-event
  spread they share (the size of the event moves every predictor's
  precision@k together).

  Args:
    entries: the report's "configurations": each with "scores" mapping a
      predictor to a RearrangementScore dict, or None without an event.
    predictors: the predictor names, in report order.

  Returns:
    (summary, differences):
      summary: predictor -> metric (SUMMARY_METRICS) -> metrics.Summary
        fields (mean, median, min, max, std with ddof = 0, count) plus
        "standard_error"; None for a predictor with no scored event.
      differences: "A - B" for each pair of predictors (A listed first) ->
        metric (PAIRED_METRICS) -> the same fields of the per-configuration
        differences A − B; {} for fewer than two predictors.
  """
  summary, scored = {}, {}
  for name in predictors:
    scored[name] = [e["scores"][name] for e in entries
                    if e["scores"].get(name)]
    summary[name] = ({metric: _with_standard_error(
        [v[metric] for v in scored[name]]) for metric in SUMMARY_METRICS}
                     if scored[name] else None)
  differences = {}
  for i, first in enumerate(predictors):
    for second in predictors[i + 1:]:
      pairs = [(e["scores"][first], e["scores"][second]) for e in entries
               if e["scores"].get(first) and e["scores"].get(second)]
      if not pairs:
        continue
      differences[f"{first} - {second}"] = {
          metric: _with_standard_error([a[metric] - b[metric]
                                        for a, b in pairs])
          for metric in PAIRED_METRICS}
  return summary, differences


# ---------------------------------------------------------------- outputs --


def plot(results: Sequence[shear_lib.ShearResult],
         scores: Sequence[Mapping[str, np.ndarray]],
         names: Sequence[str], path: str) -> str:
  """Stress-strain curves and, for the first configuration with an event,
  slices of log10 D²_min and of each predictor's score.

  Panels: (1) σ_xy(γ) of every configuration, the shown one in black with
  its first drop marked; (2) a slab (thickness SLICE_THICKNESS σ, centred
  on the particle with the largest D²_min) of log10 D²_min, the rearranging
  type-A particles ringed; (3...) the same slab coloured by each score,
  its top-k type-A particles ringed (k = the number rearranging). Particles
  are drawn at their quenched (γ = 0) positions, the predictors' input.
  """
  from glassy_dynamics_tf import plots  # pylint: disable=g-import-not-at-top
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  shown = next((k for k, r in enumerate(results) if r.has_event), None)
  n_score = len(scores[shown]) if shown is not None else 0
  n_panels = 1 + (1 + n_score if shown is not None else 0)
  fig, axes = plt.subplots(1, n_panels, figsize=(4.2 * n_panels, 4.0),
                           squeeze=False)
  axes = axes[0]
  ax = axes[0]
  for k, r in enumerate(results):
    chosen = k == shown
    ax.plot(r.strain, r.stress, color="k" if chosen else "0.7",
            lw=1.2 if chosen else 0.7, zorder=2 if chosen else 1,
            label=names[k] if chosen else None)
    if chosen:
      e = int(r.event_steps[0])
      ax.plot(r.strain[e - 1:e + 1], r.stress[e - 1:e + 1], color="C3",
              lw=2.0, zorder=3, label="first plastic event")
  ax.set_xlabel("shear strain γ")
  ax.set_ylabel("shear stress σ_xy (ε/σ³)")
  ax.set_title("athermal quasistatic shear")
  if shown is not None:
    ax.legend(loc="best", fontsize=8)
    r = results[shown]
    is_a = r.types == TYPE_A
    n_a = int(is_a.sum())
    n_rearranging = int((r.rearranging & is_a).sum())
    fraction = min(max(n_rearranging, 1) / max(n_a, 1), 0.99)
    centre = float(r.positions[int(np.argmax(r.d2min)), 2])
    panels = [("log10 D²_min (σ²)",
               np.log10(np.maximum(r.d2min, 1e-12)))]
    panels += list(scores[shown].items())
    for ax, (title, values) in zip(axes[1:], panels):
      artists = plots.draw_slice(ax, r.positions, r.types, r.box, values,
                                 z_centre=centre, thickness=SLICE_THICKNESS,
                                 top_fraction=fraction, cmap="viridis")
      fig.colorbar(artists.a, ax=ax, shrink=0.8)
      ax.set_title(title, fontsize=9)
      ax.set_xlabel("x (σ)")
      ax.set_ylabel("y (σ)")
  fig.suptitle(f"{FIGURE}: rings = rearranging (D²_min) / top-k of score",
               fontsize=9)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return path


def summary(report: Dict[str, Any]) -> str:
  """A few lines for the console."""
  n = len(report["configurations"])
  n_event = sum(1 for e in report["configurations"] if e["first_event"])
  lines = [f"shear ({FIGURE}): {n_event} of {n} configurations had a "
           f"plastic event"]
  for name, metrics_ in report["summary"].items():
    if not metrics_ or metrics_["roc_auc"] is None:
      lines.append(f"  {name}: no event to score")
      continue
    auc, precision = metrics_["roc_auc"], metrics_["precision_at_k"]
    chance = metrics_["random_precision"]
    lines.append(
        f"  {name}: ROC-AUC {_fmt(auc['mean'])} ± "
        f"{_fmt(auc.get('standard_error'))}, precision@k "
        f"{_fmt(precision['mean'])} ± "
        f"{_fmt(precision.get('standard_error'))} (random "
        f"{_fmt(chance['mean'])}), n = {auc['count']} (± standard error)")
  for pair, metrics_ in report.get("differences", {}).items():
    auc, precision = metrics_["roc_auc"], metrics_["precision_at_k"]
    lines.append(
        f"  {pair}: ΔROC-AUC {_fmt(auc['mean'])} ± "
        f"{_fmt(auc['standard_error'])}, Δprecision@k "
        f"{_fmt(precision['mean'])} ± "
        f"{_fmt(precision['standard_error'])} (paired, n = "
        f"{auc['count']})")
  return "\n".join(lines)


def _fmt(value) -> str:
  return "nan" if value is None or not math.isfinite(value) else (
      f"{value:.3f}")
