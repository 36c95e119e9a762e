"""How well a per-particle score predicts propensity (Bapst et al. 2020).

Pure numpy functions of arrays; they return NamedTuples, never loose tuples.

The paper's headline metric (Fig. 3b, Extended Data Fig. 3) is the Pearson
correlation coefficient between predicted and true propensity, computed over
the type-A particles of one configuration, for each timescale, then
summarised over the test configurations (the paper plots the mean and uses
the spread over configurations as error bars). Beside it (HEADLINE_METRICS
are Pearson and the two classification scores whose chance level is 0.5):
  * a mobile/immobile classification of the 10 % most mobile type-A
    particles (the quantities the paper uses to compare with softness,
    Extended Data Fig. 1; Schoenholz et al., Nat. Phys. 12, 469 (2016)
    classify "rearranging" particles), scored by
      - roc_auc: threshold free, chance 0.5;
      - balanced_accuracy: (TPR + TNR) / 2 of "predicted mobile = the top
        10 % of the score", chance 0.5;
      - accuracy (the fraction of particles classified right) and overlap
        (the fraction of the mobile class recovered), kept for comparison
        with earlier reports but not headlines: with classes of 10 % and
        90 % a random score already reaches an accuracy of 0.82
        (`chance_levels`);
  * Spearman's rank correlation (insensitive to any monotonic rescaling of the
    score, useful for baselines such as the potential energy whose units are
    not those of propensity).

Two comparisons across methods and with the data's own noise:
  * `paired_difference`: the difference of a metric between two methods on
    the same configurations, with its standard error;
  * `split_half_reliability` and `noise_ceiling`: how well any predictor
    could correlate with a propensity measured from a finite ensemble of
    runs (Spearman-Brown, see `noise_ceiling`).

Vocabulary (shapes and units):
  score, prediction: [n_particles] or [n_particles, n_timescales] float, any
    units (a model predicts σ_AA; a baseline may score in ε_AA, counts, ...).
  propensity: [n_timescales, n_particles] float, σ_AA units, the record's
    layout (`io.record.ConfigurationRecord.propensity`).
  propensity_halves: [2, n_timescales, n_particles] float, σ_AA units, the
    propensity of two disjoint halves of the runs (the record's optional
    field).
  types: [n_particles] int, 0 = A, 1 = B.

Undefined values are NaN, never an exception: a correlation with a constant
vector, an AUC without both classes. Summaries ignore NaNs and count them.
"""

import math
import warnings
from typing import NamedTuple, Optional

import numpy as np
from scipy import stats

# The paper's mobile class: the 10 % most mobile type-A particles (Extended
# Data Fig. 1 and the slices of Extended Data Figs. 4-6).
DEFAULT_TOP_FRACTION = 0.1
TYPE_A = 0
# The metrics a report leads with: each has a fixed chance level (0 or 0.5)
# whatever the size of the mobile class.
HEADLINE_METRICS = ("pearson", "roc_auc", "balanced_accuracy")


class Summary(NamedTuple):
  """A metric summarised over configurations, one entry per timescale.

  Fields are [n_timescales] float64 (or floats for a single timescale);
  `count` is the number of finite per-configuration values that went in.
  `std` is the population standard deviation (ddof = 0) of those values,
  the spread the paper draws as error bars; `sem` is the standard error of
  the mean, std(ddof = 1) / sqrt(count) = std / sqrt(count - 1), NaN with
  fewer than 2 values: how well the mean itself is known, what a
  comparison of two means needs.
  """
  mean: np.ndarray
  median: np.ndarray
  min: np.ndarray
  max: np.ndarray
  std: np.ndarray
  count: np.ndarray
  sem: np.ndarray

  def as_dict(self) -> dict:
    """JSON-friendly: field -> list (or float), NaN kept as float('nan')."""
    return {k: np.asarray(v).tolist() for k, v in self._asdict().items()}


class MobileClassification(NamedTuple):
  """Top-fraction mobile/immobile classification of one score vector.

  The true mobile class is the top `fraction` of the propensity (k
  particles); the predicted one is the top `fraction` of the score (also k).

  Fields:
    roc_auc: area under the ROC curve of the score as a detector of the truly
      mobile particles; threshold free, 0.5 for random, 1 perfect, 0 inverted.
    balanced_accuracy: (TPR + TNR) / 2 of the predicted class, TPR = TP / k,
      TNR = TN / (n - k); 0.5 for random whatever the fraction, 1 perfect.
    accuracy: fraction of particles whose predicted class equals the true
      class. Both classes have the same size, so a random score gives
      1 - 2·fraction·(1 - fraction) = 0.82 for fraction 0.1: not a headline.
    overlap: fraction of the truly mobile particles that the score also puts
      in its top set (= TPR = precision, the classes having equal size);
      random gives `fraction`.
    n_mobile: the size k of the mobile class.
  """
  roc_auc: float
  balanced_accuracy: float
  accuracy: float
  overlap: float
  n_mobile: int


class ConfigurationMetrics(NamedTuple):
  """Every metric for one configuration, [n_timescales] float64 each."""
  pearson: np.ndarray
  spearman: np.ndarray
  roc_auc: np.ndarray
  balanced_accuracy: np.ndarray
  accuracy: np.ndarray
  overlap: np.ndarray


METRIC_NAMES = ConfigurationMetrics._fields


def chance_levels(fraction: float = DEFAULT_TOP_FRACTION) -> dict:
  """What a score independent of the propensity reaches, metric by metric.

  Expectations for a random score (large n): correlations 0, ROC-AUC and
  balanced accuracy 0.5, accuracy 1 - 2f(1 - f) (0.82 for f = 0.1), overlap
  f, with f = `fraction`, the size of the mobile class.
  """
  f = float(fraction)
  return {"pearson": 0.0, "spearman": 0.0, "roc_auc": 0.5,
          "balanced_accuracy": 0.5, "accuracy": 1.0 - 2.0 * f * (1.0 - f),
          "overlap": f}


def pearson(x, y) -> float:
  """Pearson correlation coefficient of two equally long vectors.

  Args:
    x, y: [n] float.

  Returns:
    r in [-1, 1]; NaN if n < 2 or either vector is constant.
  """
  x, y = _pair(x, y)
  if x.size < 2:
    return math.nan
  dx, dy = x - x.mean(), y - y.mean()
  denominator = math.sqrt(float(np.dot(dx, dx)) * float(np.dot(dy, dy)))
  if denominator == 0.0 or not math.isfinite(denominator):
    return math.nan
  return float(np.clip(np.dot(dx, dy) / denominator, -1.0, 1.0))


def spearman(x, y) -> float:
  """Spearman rank correlation: Pearson of the (tie-averaged) ranks.

  Args:
    x, y: [n] float.

  Returns:
    ρ in [-1, 1]; NaN if n < 2 or either vector is constant.
  """
  x, y = _pair(x, y)
  return pearson(stats.rankdata(x), stats.rankdata(y))


def roc_auc(labels, scores) -> float:
  """Area under the ROC curve (Mann-Whitney U / (n_pos · n_neg)).

  Ties in `scores` count one half, as sklearn.metrics.roc_auc_score.

  Args:
    labels: [n] bool (or 0/1), True = positive (mobile).
    scores: [n] float, larger = more likely positive.

  Returns:
    AUC in [0, 1]; NaN if either class is empty.
  """
  labels = np.asarray(labels).astype(bool).reshape(-1)
  scores = np.asarray(scores, np.float64).reshape(-1)
  if labels.shape != scores.shape:
    raise ValueError(f"roc_auc: labels has shape {labels.shape} but scores "
                     f"has {scores.shape}")
  n_pos = int(labels.sum())
  n_neg = labels.size - n_pos
  if n_pos == 0 or n_neg == 0:
    return math.nan
  ranks = stats.rankdata(scores)  # 1-based, ties averaged.
  u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
  return float(u / (n_pos * n_neg))


def top_mask(values, fraction: float = DEFAULT_TOP_FRACTION) -> np.ndarray:
  """Marks the `fraction` largest entries (k = round(fraction·n), at least 1).

  Ties at the threshold are broken by index (a stable sort), so exactly k
  entries are marked.

  Args:
    values: [n] float.
    fraction: in (0, 1).

  Returns:
    [n] bool with exactly k True.
  """
  values = np.asarray(values, np.float64).reshape(-1)
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"top fraction must lie in (0, 1), found {fraction}")
  k = _n_top(values.size, fraction)
  mask = np.zeros(values.shape, bool)
  if k:
    # Stable argsort of -values: the largest first, earlier index first.
    mask[np.argsort(-values, kind="stable")[:k]] = True
  return mask


def mobile_classification(
    prediction, propensity,
    fraction: float = DEFAULT_TOP_FRACTION) -> MobileClassification:
  """Classifies the `fraction` most mobile particles (Extended Data Fig. 1).

  The true mobile class is the top `fraction` of `propensity`; the predicted
  class is the top `fraction` of `prediction` (the same number of particles).

  Args:
    prediction: [n] float score, larger = more mobile.
    propensity: [n] float, σ_AA units.
    fraction: the size of the mobile class relative to n.

  Returns:
    MobileClassification; NaNs if n < 2.
  """
  prediction, propensity = _pair(prediction, propensity)
  if prediction.size < 2:
    return MobileClassification(math.nan, math.nan, math.nan, math.nan, 0)
  true_mobile = top_mask(propensity, fraction)
  predicted_mobile = top_mask(prediction, fraction)
  k = int(true_mobile.sum())
  n = true_mobile.size
  hits = int(np.sum(true_mobile & predicted_mobile))
  # k < n always (top_mask marks at most n - 1 of n >= 2 particles).
  tpr = hits / k
  tnr = int(np.sum(~true_mobile & ~predicted_mobile)) / (n - k)
  return MobileClassification(
      roc_auc=roc_auc(true_mobile, prediction),
      balanced_accuracy=0.5 * (tpr + tnr),
      accuracy=float(np.mean(true_mobile == predicted_mobile)),
      overlap=hits / k,
      n_mobile=k)


def configuration_metrics(
    prediction, propensity, types,
    particle_type: Optional[int] = TYPE_A,
    fraction: float = DEFAULT_TOP_FRACTION) -> ConfigurationMetrics:
  """All metrics of one configuration, per timescale, over one species.

  The paper evaluates on type-A particles only (Methods: the loss and the
  correlations are restricted to the large particles).

  Args:
    prediction: [n_particles, n_timescales] (the SavedModel's layout) or
      [n_particles] (one score for every timescale) float.
    propensity: [n_timescales, n_particles] float, σ_AA units (the record's
      layout).
    types: [n_particles] int, 0 = A, 1 = B.
    particle_type: the species to evaluate; None = all particles.
    fraction: size of the mobile class for the classification metrics.

  Returns:
    ConfigurationMetrics, every field [n_timescales] float64.

  Raises:
    ValueError: naming the argument whose shape does not fit.
  """
  propensity = np.asarray(propensity, np.float64)
  types = np.asarray(types).reshape(-1)
  if propensity.ndim != 2 or propensity.shape[1] != types.size:
    raise ValueError(
        f"propensity must have shape [n_timescales, n_particles={types.size}]"
        f", found {list(propensity.shape)}")
  n_timescales = propensity.shape[0]
  prediction = broadcast_prediction(prediction, types.size, n_timescales)
  mask = (np.ones(types.shape, bool) if particle_type is None else
          types == particle_type)
  rows = []
  for j in range(n_timescales):
    p, y = prediction[mask, j], propensity[j, mask]
    c = mobile_classification(p, y, fraction)
    rows.append(ConfigurationMetrics(
        pearson=pearson(p, y), spearman=spearman(p, y), roc_auc=c.roc_auc,
        balanced_accuracy=c.balanced_accuracy, accuracy=c.accuracy,
        overlap=c.overlap))
  columns = np.asarray(rows, np.float64).reshape(n_timescales,
                                                 len(METRIC_NAMES)).T
  return ConfigurationMetrics(*columns)


def broadcast_prediction(prediction, n_particles: int,
                         n_timescales: int) -> np.ndarray:
  """[n] or [n, 1] or [n, T] -> [n, T] float64, checking the sizes.

  Raises:
    ValueError: if the prediction is not one of those shapes.
  """
  prediction = np.asarray(prediction, np.float64)
  if prediction.ndim == 1:
    prediction = prediction[:, None]
  if (prediction.ndim != 2 or prediction.shape[0] != n_particles or
      prediction.shape[1] not in (1, n_timescales)):
    raise ValueError(
        f"prediction must have shape [n_particles={n_particles}] or "
        f"[{n_particles}, n_timescales={n_timescales}], found "
        f"{list(prediction.shape)}")
  return np.broadcast_to(prediction, (n_particles, n_timescales))


def summarise(values) -> Summary:
  """Mean, median, min, max, std over configurations (axis 0), NaN-aware.

  The paper's convention: the mean over test configurations, with their
  spread as error bars (Fig. 3b).

  Args:
    values: [n_configurations] or [n_configurations, n_timescales] float.

  Returns:
    Summary with [n_timescales] fields (floats for 1-D input); all NaN where
    no configuration gave a finite value.
  """
  values = np.asarray(values, np.float64)
  if values.ndim == 0 or values.shape[0] == 0:
    raise ValueError("summarise needs at least one configuration, found "
                     f"shape {list(values.shape)}")
  cleaned = np.where(np.isfinite(values), values, np.nan)
  count = np.isfinite(values).sum(axis=0)
  with warnings.catch_warnings():
    # All-NaN timescales give NaN, which is what we want; hush the warning.
    warnings.simplefilter("ignore", RuntimeWarning)
    summary = Summary(
        mean=np.nanmean(cleaned, axis=0),
        median=np.nanmedian(cleaned, axis=0),
        min=np.nanmin(cleaned, axis=0),
        max=np.nanmax(cleaned, axis=0),
        std=np.nanstd(cleaned, axis=0),
        count=count,
        sem=np.where(count > 1, np.nanstd(cleaned, axis=0) /
                     np.sqrt(np.maximum(count - 1, 1)), np.nan))
  if values.ndim == 1:
    summary = Summary(*(v.item() for v in summary))
  return summary


def summarise_configurations(per_configuration) -> dict:
  """Summaries of a list of ConfigurationMetrics: metric name -> Summary."""
  if not per_configuration:
    raise ValueError("summarise_configurations needs at least one "
                     "configuration's metrics, found none")
  return {
      name: summarise(np.stack([getattr(m, name) for m in per_configuration]))
      for name in METRIC_NAMES
  }


class PairedDifference(NamedTuple):
  """A metric of method a minus that of method b, paired by configuration.

  Fields are [n_timescales] float64 (floats for 1-D input):
    mean: mean over configurations of d_k = a_k - b_k.
    sem: standard error of that mean, std(d, ddof=1) / sqrt(count); NaN with
      fewer than 2 configurations.
    n_sem: mean / sem, how many standard errors the difference is from 0;
      NaN where sem is 0 or NaN.
    count: configurations where both values are finite.
  """
  mean: np.ndarray
  sem: np.ndarray
  n_sem: np.ndarray
  count: np.ndarray


def paired_difference(a, b) -> PairedDifference:
  """Difference of two methods' per-configuration metrics, with its s.e.

  Pairing removes what the configurations share (some are easier to predict
  than others for every method), so the standard error of the mean
  difference is usually far smaller than the spread of either method.
  Configurations where either value is NaN are left out.

  Args:
    a, b: [n_configurations] or [n_configurations, n_timescales] float, the
      same metric of two methods on the same configurations, in the same
      order.

  Returns:
    PairedDifference (a - b).

  Raises:
    ValueError: if the shapes differ or there is no configuration.
  """
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim == 0 or a.shape[0] == 0:
    raise ValueError(
        "paired_difference needs two equally shaped [n_configurations, ...] "
        f"arrays with at least one configuration, found {list(a.shape)} and "
        f"{list(b.shape)}")
  d = a - b
  finite = np.isfinite(d)
  count = finite.sum(axis=0)
  d = np.where(finite, d, 0.0)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean = np.where(count > 0, d.sum(axis=0) / np.maximum(count, 1), np.nan)
    squares = np.where(finite, (d - mean)**2, 0.0).sum(axis=0)
    std = np.where(count > 1, np.sqrt(squares / np.maximum(count - 1, 1)),
                   np.nan)
    sem = std / np.sqrt(count)
    n_sem = np.where(sem > 0, mean / sem, np.nan)
  result = PairedDifference(mean, sem, n_sem, count)
  if a.ndim == 1:
    result = PairedDifference(*(np.asarray(v).item() for v in result))
  return result


def split_half_reliability(propensity_halves, types,
                           particle_type: Optional[int] = TYPE_A
                           ) -> np.ndarray:
  """Pearson between the two half-ensemble propensities, per timescale.

  Args:
    propensity_halves: [2, n_timescales, n_particles] float, σ_AA units.
    types: [n_particles] int, 0 = A, 1 = B.
    particle_type: the species to evaluate; None = all particles.

  Returns:
    r_hh: [n_timescales] float64 (NaN where undefined).

  Raises:
    ValueError: naming the argument whose shape does not fit.
  """
  halves = np.asarray(propensity_halves, np.float64)
  types = np.asarray(types).reshape(-1)
  if halves.ndim != 3 or halves.shape[0] != 2 or halves.shape[2] != types.size:
    raise ValueError(
        "propensity_halves must have shape [2, n_timescales, n_particles="
        f"{types.size}], found {list(halves.shape)}")
  mask = (np.ones(types.shape, bool) if particle_type is None else
          types == particle_type)
  return np.asarray([pearson(halves[0, j, mask], halves[1, j, mask])
                     for j in range(halves.shape[1])], np.float64)


def noise_ceiling(split_half_r):
  """Highest Pearson any predictor can expect against an n-run propensity.

  r_ceiling = sqrt(2 r_hh / (1 + r_hh)), with r_hh the split-half
  reliability (`split_half_reliability`, the correlation between the
  propensities of two disjoint halves of the runs).

  Why: write the measured propensity of a particle as y = s + e, with s the
  propensity of an infinite ensemble (what structure can determine) and e
  the average over the n runs of their independent fluctuations, of variance
  σ²/n. A half of the runs has noise variance 2σ²/n, so
    r_hh = var(s) / (var(s) + 2σ²/n),
  and the reliability of the full ensemble (Spearman-Brown prophecy formula,
  doubling the number of runs) is
    R = var(s) / (var(s) + σ²/n) = 2 r_hh / (1 + r_hh).
  A predictor f of the structure alone has noise uncorrelated with e, so
    corr(f, y) = corr(f, s) · corr(s, y) = corr(f, s) · sqrt(R) <= sqrt(R):
  a perfect predictor of s reaches r_ceiling = sqrt(R), and r / r_ceiling
  estimates corr(f, s).

  Assumptions: the runs are independent and exchangeable given the
  configuration (independent Maxwell-Boltzmann velocities), so the halves'
  fluctuations are independent of each other and of s; the two halves have
  equal numbers of runs (with an odd n the even half has one more and the
  ceiling is slightly underestimated); var(s) and σ² are taken over the
  particles of one configuration (the noise may be larger for mobile
  particles: only its average over particles enters). Undefined (NaN) for
  r_hh < 0, where noise dominates.

  Args:
    split_half_r: float or array of r_hh values.

  Returns:
    r_ceiling of the same shape (float64).
  """
  r = np.asarray(split_half_r, np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    ceiling = np.where(r >= 0, np.sqrt(2.0 * r / (1.0 + r)), np.nan)
  return ceiling.item() if ceiling.ndim == 0 else ceiling


def _pair(x, y):
  x = np.asarray(x, np.float64).reshape(-1)
  y = np.asarray(y, np.float64).reshape(-1)
  if x.shape != y.shape:
    raise ValueError(f"vectors must have equal length, found {x.size} and "
                     f"{y.size}")
  return x, y


def _n_top(n: int, fraction: float) -> int:
  if n == 0:
    return 0
  return int(min(n - 1, max(1, round(fraction * n)))) if n > 1 else 1
