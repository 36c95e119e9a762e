"""Physics baselines: per-particle scores from static structure alone.

The paper compares its graph network with simpler structural predictors of
propensity (Bapst et al. 2020, Fig. 3b and Extended Data Figs. 3 and 10). Each
baseline here is a pure function of one configuration,

  positions: [n_particles, 3] float, σ_AA units, wrapped into [0, box)
  types:     [n_particles] int, 0 = A, 1 = B
  box:       [3] float, orthorhombic box edges, σ_AA units

returning a per-particle score or feature matrix, wrapped in a `Baseline`
with a "fit on train, apply to test" interface:

  baseline = make_baseline("neighbour_count")
  baseline.fit(train_records)            # no-op for unfitted baselines
  scores = baseline.predict(test_record)  # [n_particles, n_timescales]

Baselines (name: source):
  potential_energy: per-particle Kob-Andersen energy (half the pair sum), the
    "potential energy" line of the paper's Fig. 3b / Extended Data Fig. 3,
    computed by `simulation.kob_andersen` with the simulator's convention
    (cut at 2.5 σ_αβ, shifted: `kob_andersen.SHIFTED`). Unfitted; high
    energy = loosely bound = predicted mobile.
  neighbour_count: linear regression of propensity on the numbers of A and B
    neighbours within a radius r, fitted per timescale on the train split
    (Extended Data Fig. 10 sweeps r). The radius used for a timescale is the
    one with the best train-set correlation; the whole sweep is available
    through `predict_sweep` for the Extended-Data-Fig.-10 curve.
  symmetry_ridge: radial and angular symmetry functions (Behler &
    Parrinello, PRL 98, 146401 (2007); the "softness" features of Cubuk et
    al., PRL 114, 108001 (2015) and Schoenholz et al., Nat. Phys. 12, 469
    (2016)) with a ridge regressor per timescale, fitted on the train split:
    those works' features, regressed on propensity. Called
    `local_structure` before; that name is still accepted (deprecated).
  coarse_grained_ridge: the same ridge on the symmetry functions and their
    spatial averages with weight exp(-r / 1 σ) (Boattini, Smallenburg &
    Filion, PRL 127, 088007 (2021), who found that such averages make a
    linear model as predictive as the graph network of Bapst et al.).
  softness: the same features, standardised, with a linear SVM per timescale
    (Cubuk et al. 2015; Schoenholz et al. 2016) trained to tell the most
    mobile type-A particles of each train configuration from the least
    mobile; the softness of a particle is its signed distance to the
    hyperplane (`SoftnessBaseline` documents the classes and the choice of C).
  soft_modes: participation of each particle in the lowest-frequency
    harmonic modes of its inherent structure (Widmer-Cooper et al., Nat.
    Phys. 4, 711 (2008)); LAMMPS FIRE minimisation and a sparse Hessian, in
    soft_modes.py. Unfitted; about a minute per N = 4096 configuration, so
    not in the default list.

Every baseline is fitted and scored on type-A particles only, as the paper's
metrics are (Methods).
"""

import abc
import dataclasses
import warnings
from typing import Callable, Dict, Optional, Sequence

import numpy as np
from absl import logging
from scipy import sparse
from sklearn import exceptions as sk_exceptions
from sklearn import linear_model
from sklearn import preprocessing
from sklearn import svm

from glassy_dynamics_tf import metrics
from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.simulation import kob_andersen as ka

TYPE_A, TYPE_B = 0, 1
N_TYPES = 2


class BaselineError(ValueError):
  """A baseline cannot be applied to the given configuration or records."""


# ---------------------------------------------------------------------------
# Neighbour pairs: periodic.neighbour_pairs, with its errors translated.


def _neighbour_pairs(positions, box, cutoff: float) -> periodic.Pairs:
  """`periodic.neighbour_pairs`, its errors as BaselineError.

  Boxes with an edge not above 2·cutoff sum every periodic image in range
  (see periodic.Pairs).

  Raises:
    BaselineError: bad positions or box, or a box so small that too many
      periodic images would be needed (the message says which).
  """
  try:
    return periodic.neighbour_pairs(positions, box, cutoff)
  except ValueError as e:  # includes periodic.TooManyImagesError
    raise BaselineError(str(e)) from e


# ---------------------------------------------------------------------------
# Structural features.


def neighbour_counts(positions, types, box, radii) -> np.ndarray:
  """Numbers of A and of B neighbours within each radius (Extended Data
  Fig. 10 baseline).

  A particle does not count itself; a neighbour at exactly r is not counted.

  Args:
    positions: [n, 3] float, σ_AA units.
    types: [n] int, 0 = A, 1 = B.
    box: [3] float, σ_AA units.
    radii: [n_radii] float, σ_AA units.

  Returns:
    [n, n_radii, 2] float64: [..., 0] A neighbours, [..., 1] B neighbours.
  """
  types = np.asarray(types, np.int64).reshape(-1)
  radii = np.asarray(radii, np.float64).reshape(-1)
  _check_configuration(positions, types, box)
  pairs = _neighbour_pairs(positions, box, float(radii.max()))
  n = types.size
  counts = np.zeros((n, radii.size, N_TYPES))
  for k, r in enumerate(radii):
    inside = pairs.distances < r
    for centre, other in ((pairs.i, pairs.j), (pairs.j, pairs.i)):
      for t in range(N_TYPES):
        sel = inside & (types[other] == t)
        counts[:, k, t] += np.bincount(centre[sel], minlength=n)
  return counts


@dataclasses.dataclass(frozen=True)
class SymmetryFunctionParameters:
  """Parameters of the local-structure features (Cubuk et al. 2015).

  Radial: G_X(i; μ) = Σ_{j ∈ X} exp(−(r_ij − μ)² / (2 w²)), for neighbour
  species X ∈ {A, B} and shell centres μ (σ_AA units), summed over
  r_ij < μ_max + 3 w.
  Angular: Ψ(i; ξ, λ, ζ) = Σ_{j<k} exp(−(r_ij² + r_ik² + r_jk²)/ξ²)
  (1 + λ cos θ_jik)^ζ over neighbours j, k of i closer than
  `angular_cutoff`, as Behler & Parrinello 2007 / Cubuk et al. 2015.
  """
  radial_centres: tuple = tuple(np.round(np.arange(0.5, 3.01, 0.1), 2))
  radial_width: float = 0.1
  angular_xi: tuple = (1.0, 1.5, 2.0)
  angular_lambda: tuple = (-1.0, 1.0)
  angular_zeta: tuple = (1.0, 2.0, 4.0)
  angular_cutoff: float = 2.0

  @property
  def radial_cutoff(self) -> float:
    return float(max(self.radial_centres)) + 3.0 * self.radial_width

  @property
  def n_features(self) -> int:
    return (N_TYPES * len(self.radial_centres) + len(self.angular_xi) *
            len(self.angular_lambda) * len(self.angular_zeta))


def symmetry_functions(
    positions, types, box,
    params: SymmetryFunctionParameters = SymmetryFunctionParameters()
) -> np.ndarray:
  """Radial and angular symmetry functions of every particle.

  Args:
    positions: [n, 3] float, σ_AA units.
    types: [n] int, 0 = A, 1 = B.
    box: [3] float, σ_AA units.
    params: which functions (see SymmetryFunctionParameters).

  Returns:
    [n, params.n_features] float64: the radial functions for A neighbours,
    then for B neighbours (each in `radial_centres` order), then the angular
    ones (ξ outermost, then λ, then ζ).
  """
  types = np.asarray(types, np.int64).reshape(-1)
  _check_configuration(positions, types, box)
  n = types.size
  cutoff = max(params.radial_cutoff, params.angular_cutoff)
  pairs = _neighbour_pairs(positions, box, cutoff)
  centres = np.asarray(params.radial_centres, np.float64)
  gauss = np.exp(-(pairs.distances[:, None] - centres[None, :])**2 /
                 (2.0 * params.radial_width**2))
  gauss *= (pairs.distances < params.radial_cutoff)[:, None]
  radial = np.zeros((n, N_TYPES, centres.size))
  for centre, other in ((pairs.i, pairs.j), (pairs.j, pairs.i)):
    for t in range(N_TYPES):
      sel = types[other] == t
      np.add.at(radial[:, t], centre[sel], gauss[sel])
  angular = _angular_functions(pairs, n, params)
  return np.concatenate([radial.reshape(n, -1), angular], axis=1)


def _angular_functions(pairs: periodic.Pairs, n: int,
                       params: SymmetryFunctionParameters) -> np.ndarray:
  """Ψ(i; ξ, λ, ζ) of every particle: [n, n_ξ · n_λ · n_ζ] float64."""
  close = pairs.distances < params.angular_cutoff
  # Directed neighbour list: for centre c, vectors to each neighbour.
  centre = np.concatenate([pairs.i[close], pairs.j[close]])
  vectors = np.concatenate([pairs.vectors[close], -pairs.vectors[close]])
  order = np.argsort(centre, kind="stable")
  centre, vectors = centre[order], vectors[order]
  n_neighbours = np.bincount(centre, minlength=n)
  max_nb = int(n_neighbours.max()) if n_neighbours.size else 0
  combos = [(xi, lam, zeta) for xi in params.angular_xi
            for lam in params.angular_lambda for zeta in params.angular_zeta]
  out = np.zeros((n, len(combos)))
  if max_nb < 2:
    return out
  # Padded [n, max_nb, 3] neighbour vectors; padding has mask 0.
  slot = np.arange(centre.size) - np.repeat(
      np.cumsum(n_neighbours) - n_neighbours, n_neighbours)
  padded = np.zeros((n, max_nb, 3))
  mask = np.zeros((n, max_nb), bool)
  padded[centre, slot] = vectors
  mask[centre, slot] = True
  j_idx, k_idx = np.triu_indices(max_nb, k=1)  # each unordered pair once
  chunk = max(1, 2_000_000 // max(1, j_idx.size))
  for start in range(0, n, chunk):
    rij = padded[start:start + chunk, j_idx]      # [c, P, 3]
    rik = padded[start:start + chunk, k_idx]
    valid = mask[start:start + chunk, j_idx] & mask[start:start + chunk, k_idx]
    dij2, dik2 = (rij**2).sum(-1), (rik**2).sum(-1)
    djk2 = ((rik - rij)**2).sum(-1)
    cos = np.where(valid, (rij * rik).sum(-1) /
                   np.sqrt(np.maximum(dij2 * dik2, 1e-300)), 0.0)
    for c, (xi, lam, zeta) in enumerate(combos):
      radial_part = np.exp(-(dij2 + dik2 + djk2) / xi**2)
      angle_part = np.maximum(1.0 + lam * cos, 0.0)**zeta
      out[start:start + chunk, c] = np.sum(
          np.where(valid, radial_part * angle_part, 0.0), axis=1)
  return out


class SymmetryFunctionCache:
  """Symmetry functions of records, each computed once per parameter set.

  The `symmetry_ridge` and `softness` baselines use the same features; an
  evaluation that runs both shares one cache (make_baseline's
  `feature_cache`) so that each configuration's features are computed once
  (about a second per N = 1000 configuration). Entries hold a reference to
  their record, so a key (the record's id) is never reused while cached;
  drop the cache to free the memory ([n, n_features] float64 per record).
  """

  def __init__(self):
    self._entries = {}

  def __call__(self, record,
               params: SymmetryFunctionParameters) -> np.ndarray:
    """[n_particles, params.n_features] float64 (read-only)."""
    key = (id(record), params)
    entry = self._entries.get(key)
    if entry is None or entry[0] is not record:
      features = symmetry_functions(record.positions, record.types,
                                    record.box, params)
      features.setflags(write=False)
      entry = (record, features)
      self._entries[key] = entry
    return entry[1]

  def __len__(self) -> int:
    return len(self._entries)


# ---------------------------------------------------------------------------
# The fit/predict interface.


class Baseline(abc.ABC):
  """A per-particle predictor of propensity from structure alone.

  `predict(record)` returns [n_particles, n_timescales] float64 scores for
  the record's timescales (an unfitted baseline repeats one score per
  timescale). Fitted baselines must see `fit(train_records)` first.
  """
  name: str = "baseline"
  needs_fit: bool = False

  def fit(self, records: Sequence) -> "Baseline":
    """Fits on training records (ConfigurationRecord-like); returns self."""
    del records
    return self

  @abc.abstractmethod
  def predict(self, record) -> np.ndarray:
    """[n_particles, n_timescales] float64 scores for `record`."""

  def describe(self) -> dict:
    """JSON-friendly description (source, parameters, fitted choices)."""
    return {"name": self.name, "doc": (type(self).__doc__ or "").split(
        "\n")[0]}


class PotentialEnergyBaseline(Baseline):
  """Per-particle Kob-Andersen potential energy (Fig. 3b, ED Fig. 3)."""
  name = "potential_energy"

  def __init__(self, shifted: bool = ka.SHIFTED):
    """shifted: default the simulator's convention (kob_andersen.SHIFTED)."""
    self.shifted = bool(shifted)

  def predict(self, record) -> np.ndarray:
    types = np.asarray(record.types).reshape(-1)
    _check_configuration(record.positions, types, record.box)
    try:
      energy = ka.per_particle_potential_energy(record.positions, types,
                                                record.box, self.shifted)
    except ValueError as e:  # includes periodic.TooManyImagesError
      raise BaselineError(f"baseline '{self.name}': {e}") from e
    return np.repeat(energy[:, None], _n_timescales(record), axis=1)

  def describe(self) -> dict:
    return {**super().describe(),
            "potential": (
                "Kob-Andersen LJ (KA 1995), truncated at 2.5 sigma_ab and "
                f"{'shifted' if self.shifted else 'not shifted'} "
                f"(LAMMPS pair_modify shift {'yes' if self.shifted else 'no'})"
            ),
            "shifted": self.shifted,
            "cutoff_factor": ka.CUTOFF_FACTOR,
            "units": "epsilon_AA"}


class _RegressionBaseline(Baseline):
  """Features of type-A particles -> propensity, one regressor/timescale."""
  needs_fit = True

  def __init__(self):
    self._models = None
    self._n_timescales = None

  def features(self, record) -> np.ndarray:
    """[n_particles, n_features] float64."""
    raise NotImplementedError

  def _make_regressor(self):
    raise NotImplementedError

  def fit(self, records: Sequence) -> "Baseline":
    x, y = _training_arrays(records, self.features, self.name)
    scaler = preprocessing.StandardScaler().fit(x)
    regressor = self._make_regressor().fit(scaler.transform(x), y)
    self._models = (scaler, regressor)
    self._n_timescales = y.shape[1]
    return self

  def predict(self, record) -> np.ndarray:
    self._check_fitted(record)
    scaler, regressor = self._models
    out = regressor.predict(scaler.transform(self.features(record)))
    return np.asarray(out, np.float64).reshape(record.positions.shape[0], -1)

  def _check_fitted(self, record):
    if self._models is None:
      raise BaselineError(f"baseline '{self.name}' must be fitted before "
                          "predict (call fit(train_records))")
    if _n_timescales(record) != self._n_timescales:
      raise BaselineError(
          f"baseline '{self.name}' was fitted on {self._n_timescales} "
          f"timescales, the record has {_n_timescales(record)}")


class NeighbourCountBaseline(Baseline):
  """Linear regression on neighbour counts within r (ED Fig. 10)."""
  name = "neighbour_count"
  needs_fit = True

  def __init__(self, radii: Sequence[float] = tuple(
      np.round(np.arange(0.8, 2.51, 0.1), 2))):
    self.radii = np.asarray(radii, np.float64)
    self._fits = None          # per radius: LinearRegression, all timescales
    self.train_pearson = None  # [n_radii, n_timescales]
    self.best_radius_index = None  # [n_timescales]

  def fit(self, records: Sequence) -> "Baseline":
    features = lambda r: neighbour_counts(r.positions, r.types, r.box,
                                          self.radii).reshape(
                                              r.positions.shape[0], -1)
    x, y = _training_arrays(records, features, self.name)
    x = x.reshape(x.shape[0], self.radii.size, N_TYPES)
    self._fits = []
    pearson = np.zeros((self.radii.size, y.shape[1]))
    for k in range(self.radii.size):
      model = linear_model.LinearRegression().fit(x[:, k], y)
      fitted = model.predict(x[:, k]).reshape(y.shape[0], -1)
      pearson[k] = [metrics.pearson(fitted[:, t], y[:, t])
                    for t in range(y.shape[1])]
      self._fits.append(model)
    self.train_pearson = pearson
    # NaN (a constant count at tiny r) never wins.
    self.best_radius_index = np.argmax(np.nan_to_num(pearson, nan=-2.0),
                                       axis=0)
    return self

  def predict_sweep(self, record) -> np.ndarray:
    """[n_radii, n_particles, n_timescales] float64: prediction at every r."""
    if self._fits is None:
      raise BaselineError(f"baseline '{self.name}' must be fitted before "
                          "predict (call fit(train_records))")
    if _n_timescales(record) != self.train_pearson.shape[1]:
      raise BaselineError(
          f"baseline '{self.name}' was fitted on "
          f"{self.train_pearson.shape[1]} timescales, the record has "
          f"{_n_timescales(record)}")
    counts = neighbour_counts(record.positions, record.types, record.box,
                              self.radii)
    n = counts.shape[0]
    return np.stack([
        np.asarray(m.predict(counts[:, k]), np.float64).reshape(n, -1)
        for k, m in enumerate(self._fits)
    ])

  def predict(self, record) -> np.ndarray:
    sweep = self.predict_sweep(record)
    columns = np.arange(sweep.shape[2])
    return sweep[self.best_radius_index, :, columns].T

  def describe(self) -> dict:
    out = {**super().describe(), "radii": self.radii.tolist()}
    if self.best_radius_index is not None:
      out["best_radius_per_timescale"] = self.radii[
          self.best_radius_index].tolist()
      out["train_pearson"] = self.train_pearson.tolist()
    return out


class _SymmetryFeatures:
  """Mixin: the symmetry functions of a record, through an optional cache."""

  params: SymmetryFunctionParameters
  feature_cache: Optional[SymmetryFunctionCache]

  def features(self, record) -> np.ndarray:
    """[n_particles, params.n_features] float64."""
    if self.feature_cache is not None:
      return self.feature_cache(record, self.params)
    return symmetry_functions(record.positions, record.types, record.box,
                              self.params)

  def _describe_params(self) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in
            dataclasses.asdict(self.params).items()}


class SymmetryRidgeBaseline(_SymmetryFeatures, _RegressionBaseline):
  """Ridge regression on radial + angular symmetry functions."""
  name = "symmetry_ridge"

  def __init__(self, params: SymmetryFunctionParameters =
               SymmetryFunctionParameters(),
               alphas: Sequence[float] = tuple(np.logspace(-2, 4, 7)),
               feature_cache: Optional[SymmetryFunctionCache] = None):
    super().__init__()
    self.params = params
    self.alphas = tuple(float(a) for a in alphas)
    self.feature_cache = feature_cache

  def _make_regressor(self):
    # Regularisation strength chosen per timescale by efficient leave-one-out
    # cross-validation on the train split only.
    return linear_model.RidgeCV(alphas=self.alphas, alpha_per_target=True)

  def describe(self) -> dict:
    out = {**super().describe(), "params": self._describe_params()}
    if self._models is not None:
      out["alpha_per_timescale"] = np.atleast_1d(
          self._models[1].alpha_).tolist()
    return out


def coarse_grained(features, positions, box, length: float,
                   cutoff_lengths: float = 3.0) -> np.ndarray:
  """Spatial averages of per-particle features (Boattini et al. 2021).

  f̄_i = Σ_j w(r_ij) f_j / Σ_j w(r_ij) with w(r) = exp(-r / length), over
  particles j closer than cutoff_lengths · length, i itself included
  (w = 1): Boattini, Smallenburg & Filion, PRL 127, 088007 (2021)
  ("Averaging local structure to predict the dynamic propensity in
  supercooled liquids").

  Args:
    features: [n, k] float.
    positions: [n, 3] float, σ_AA units.
    box: [3] float, σ_AA units.
    length: the averaging length, σ_AA units (> 0).
    cutoff_lengths: the sum stops at this many lengths.

  Returns:
    [n, k] float64.
  """
  if not length > 0 or not cutoff_lengths > 0:
    raise BaselineError(f"coarse graining: length ({length}) and "
                        f"cutoff_lengths ({cutoff_lengths}) must be > 0")
  features = np.asarray(features, np.float64)
  n = features.shape[0]
  pairs = _neighbour_pairs(positions, box, float(length * cutoff_lengths))
  weight = np.exp(-pairs.distances / float(length))
  matrix = sparse.coo_matrix(
      (np.concatenate([weight, weight, np.ones(n)]),
       (np.concatenate([pairs.i, pairs.j, np.arange(n)]),
        np.concatenate([pairs.j, pairs.i, np.arange(n)]))),
      shape=(n, n)).tocsr()
  return (matrix @ features) / np.asarray(matrix.sum(axis=1))


class CoarseGrainedRidgeBaseline(SymmetryRidgeBaseline):
  """Ridge regression on symmetry functions and their spatial averages."""
  name = "coarse_grained_ridge"

  def __init__(self, params: SymmetryFunctionParameters =
               SymmetryFunctionParameters(),
               lengths: Sequence[float] = (1.0,),
               alphas: Sequence[float] = tuple(np.logspace(-2, 4, 7)),
               feature_cache: Optional[SymmetryFunctionCache] = None):
    super().__init__(params, alphas, feature_cache)
    self.lengths = tuple(float(x) for x in lengths)
    if not self.lengths:
      raise BaselineError("coarse_grained_ridge: give at least one length")

  def features(self, record) -> np.ndarray:
    """[n_particles, (1 + len(lengths)) · params.n_features] float64."""
    local = super().features(record)
    return np.concatenate([local] + [
        coarse_grained(local, record.positions, record.box, length)
        for length in self.lengths], axis=1)

  def describe(self) -> dict:
    return {**super().describe(), "lengths": list(self.lengths)}


class SoftnessBaseline(_SymmetryFeatures, Baseline):
  """Softness: linear-SVM distance on symmetry functions (Cubuk 2015)."""
  name = "softness"
  needs_fit = True

  def __init__(self, params: SymmetryFunctionParameters =
               SymmetryFunctionParameters(),
               top_fraction: float = metrics.DEFAULT_TOP_FRACTION,
               bottom_fraction: float = 0.5,
               c_grid: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0),
               validation_fraction: float = 0.2,
               max_iter: int = 10_000,
               feature_cache: Optional[SymmetryFunctionCache] = None):
    """Builds an unfitted softness baseline.

    Classes, per train configuration and timescale, over its type-A
    particles ranked by propensity (`metrics.top_mask`):
      rearranging (1):     the top `top_fraction` (10 %: the mobile class
                           the metrics score);
      non-rearranging (0): the bottom `bottom_fraction` (50 %);
      left out:            the middle (40 %).
    Cubuk et al. and Schoenholz et al. label a particle rearranging when its
    hop indicator p_hop exceeds a threshold within a time window, and
    non-rearranging when it has not for a long time, and leave the rest
    out. With only an isoconfigurational propensity, the analogue is its top
    against its bottom within each configuration; the gap between them
    keeps particles whose class the finite ensemble barely decides (the
    propensity of neighbouring ranks differs by much less than its noise
    near the threshold) out of the hinge loss. Ranking within each
    configuration (as the mobile class of the metrics) keeps configurations
    with a larger mean mobility from dominating either class.

    Args:
      params: the symmetry functions (as `symmetry_ridge`).
      top_fraction: size of the rearranging class, in (0, 1).
      bottom_fraction: size of the non-rearranging class, in (0, 1), with
        top_fraction + bottom_fraction < 1 (a gap between the classes).
      c_grid: SVM regularisation values C tried per timescale.
      validation_fraction: fraction of the train configurations (at least
        one) held out to choose C; with one train configuration, its odd
        type-A particles (by index) are held out instead.
      max_iter: liblinear iterations per fit.
      feature_cache: a SymmetryFunctionCache shared with other baselines.

    Raises:
      BaselineError: naming the argument out of range.
    """
    if not 0.0 < top_fraction < 1.0:
      raise BaselineError(f"baseline 'softness': top_fraction must lie in "
                          f"(0, 1), found {top_fraction}")
    if not 0.0 < bottom_fraction < 1.0 - top_fraction:
      raise BaselineError(
          f"baseline 'softness': bottom_fraction must lie in (0, 1 - "
          f"top_fraction = {1.0 - top_fraction:g}) so that the classes are "
          f"disjoint, found {bottom_fraction}")
    if not c_grid or any(not c > 0 for c in c_grid):
      raise BaselineError(f"baseline 'softness': c_grid must hold values "
                          f"> 0, found {list(c_grid)}")
    if not 0.0 < validation_fraction < 1.0:
      raise BaselineError(
          f"baseline 'softness': validation_fraction must lie in (0, 1), "
          f"found {validation_fraction}")
    self.params = params
    self.top_fraction = float(top_fraction)
    self.bottom_fraction = float(bottom_fraction)
    self.c_grid = tuple(float(c) for c in c_grid)
    self.validation_fraction = float(validation_fraction)
    self.max_iter = int(max_iter)
    self.feature_cache = feature_cache
    self._scaler = None
    self._planes = None     # [n_timescales, n_features] unit normals
    self._offsets = None    # [n_timescales] offsets of the unit normals
    self._fit_info = None

  def _labelled(self, records, scaled):
    """Per record: (features of labelled A particles, labels) per timescale.

    Returns:
      list over records of list over timescales of (x [m, f], y [m] int,
      index [m] into the record's type-A particles).
    """
    out = []
    for record, x in zip(records, scaled):
      is_a = np.asarray(record.types) == TYPE_A
      per_t = []
      for j in range(_n_timescales(record)):
        y = np.asarray(record.propensity, np.float64)[j, is_a]
        top = metrics.top_mask(y, self.top_fraction)
        bottom = metrics.top_mask(-y, self.bottom_fraction) & ~top
        keep = np.flatnonzero(top | bottom)
        per_t.append((x[keep], top[keep].astype(np.int64), keep))
      out.append(per_t)
    return out

  def _fit_svm(self, x, y, c):
    model = svm.LinearSVC(C=c, class_weight="balanced", dual=False,
                          max_iter=self.max_iter, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always", sk_exceptions.ConvergenceWarning)
      model.fit(x, y)
    converged = not any(issubclass(w.category,
                                   sk_exceptions.ConvergenceWarning)
                        for w in caught)
    return model, converged

  def fit(self, records: Sequence) -> "Baseline":
    # The features are used twice (scaler, then classes): compute them once
    # (`records` keeps every record, so its id stays unique meanwhile).
    memo = {}

    def features(record):
      if id(record) not in memo:
        memo[id(record)] = np.asarray(self.features(record), np.float64)
      return memo[id(record)]

    x_all, _ = _training_arrays(records, features, self.name)
    self._scaler = preprocessing.StandardScaler().fit(x_all)
    n_timescales = _n_timescales(records[0])
    scaled = []
    for record in records:
      is_a = np.asarray(record.types) == TYPE_A
      scaled.append(self._scaler.transform(features(record)[is_a]))
    labelled = self._labelled(records, scaled)
    k = len(records)
    planes, offsets, info = [], [], []
    for j in range(n_timescales):
      if k >= 2:
        n_held = max(1, int(round(self.validation_fraction * k)))
        n_held = min(n_held, k - 1)
        fit_part = [labelled[i][j] for i in range(k - n_held)]
        held_part = [labelled[i][j] for i in range(k - n_held, k)]
        held_out = f"the last {n_held} of {k} train configurations"
      else:
        x, y, index = labelled[0][j]
        odd = index % 2 == 1
        fit_part = [(x[~odd], y[~odd], index[~odd])]
        held_part = [(x[odd], y[odd], index[odd])]
        held_out = "the odd type-A particles of the one train configuration"
      x_fit = np.concatenate([p[0] for p in fit_part])
      y_fit = np.concatenate([p[1] for p in fit_part])
      x_held = np.concatenate([p[0] for p in held_part])
      y_held = np.concatenate([p[1] for p in held_part])
      for name, labels in (("fitting", y_fit), ("held-out", y_held)):
        if labels.min() == labels.max():
          raise BaselineError(
              f"baseline 'softness': the {name} part of the train split "
              f"has one class only at timescale {j} (too few type-A "
              "particles?)")
      held_auc = []
      for c in self.c_grid:
        model, _ = self._fit_svm(x_fit, y_fit, c)
        held_auc.append(metrics.roc_auc(y_held == 1,
                                        model.decision_function(x_held)))
      # The largest held-out ROC-AUC; ties go to the smaller C (the
      # stronger regularisation).
      best = int(np.argmax(np.nan_to_num(held_auc, nan=-1.0)))
      x_train = np.concatenate([labelled[i][j][0] for i in range(k)])
      y_train = np.concatenate([labelled[i][j][1] for i in range(k)])
      model, converged = self._fit_svm(x_train, y_train, self.c_grid[best])
      if not converged:
        logging.warning("baseline 'softness': the SVM (C = %g) did not "
                        "converge in %d iterations at timescale %d",
                        self.c_grid[best], self.max_iter, j)
      w = model.coef_.reshape(-1)
      norm = float(np.linalg.norm(w))
      if not norm > 0:
        raise BaselineError(
            f"baseline 'softness': the SVM at timescale {j} found no "
            "direction (all weights 0); are the features constant?")
      planes.append(w / norm)
      offsets.append(float(model.intercept_[0]) / norm)
      info.append({
          "C": self.c_grid[best],
          "held_out_roc_auc_per_C": held_auc,
          "train_accuracy": float(model.score(x_train, y_train)),
          "n_rearranging": int(y_train.sum()),
          "n_non_rearranging": int(y_train.size - y_train.sum()),
          "converged": converged,
          "held_out": held_out,
      })
    self._planes = np.stack(planes)
    self._offsets = np.asarray(offsets)
    self._fit_info = info
    return self

  def predict(self, record) -> np.ndarray:
    """Softness of every particle: [n_particles, n_timescales] float64.

    The signed distance to the SVM's hyperplane, (w·x + b) / |w|, in the
    standardised feature space (the scaler of the type-A train features);
    positive on the rearranging side. B particles get a value too (the
    metrics use type A only).
    """
    if self._planes is None:
      raise BaselineError(f"baseline '{self.name}' must be fitted before "
                          "predict (call fit(train_records))")
    if _n_timescales(record) != self._planes.shape[0]:
      raise BaselineError(
          f"baseline '{self.name}' was fitted on {self._planes.shape[0]} "
          f"timescales, the record has {_n_timescales(record)}")
    x = self._scaler.transform(np.asarray(self.features(record), np.float64))
    return x @ self._planes.T + self._offsets[None, :]

  def describe(self) -> dict:
    out = {**super().describe(),
           "params": self._describe_params(),
           "classes": {
               "rearranging": f"top {self.top_fraction:g} of the type-A "
                              "propensity of each train configuration",
               "non_rearranging": f"bottom {self.bottom_fraction:g}",
           },
           "top_fraction": self.top_fraction,
           "bottom_fraction": self.bottom_fraction,
           "c_grid": list(self.c_grid),
           "svm": "sklearn LinearSVC, squared hinge, L2, class_weight "
                  "balanced, on standardised features",
           "softness": "(w.x + b) / |w| in standardised feature units"}
    if self._fit_info is not None:
      out["per_timescale"] = self._fit_info
    return out


def _soft_modes_baseline(**kwargs) -> Baseline:
  # Imported here: soft_modes imports this module (and needs LAMMPS).
  from glassy_dynamics_tf import soft_modes  # pylint: disable=g-import-not-at-top
  return soft_modes.SoftModesBaseline(**kwargs)


# Name -> factory (a Baseline class or a function returning one).
BASELINES: Dict[str, Callable[..., Baseline]] = {
    PotentialEnergyBaseline.name: PotentialEnergyBaseline,
    NeighbourCountBaseline.name: NeighbourCountBaseline,
    SymmetryRidgeBaseline.name: SymmetryRidgeBaseline,
    SoftnessBaseline.name: SoftnessBaseline,
    CoarseGrainedRidgeBaseline.name: CoarseGrainedRidgeBaseline,
    "soft_modes": _soft_modes_baseline,
}
# Old name -> current name. `local_structure` was ridge regression on the
# symmetry functions, not the (SVM) softness of Cubuk et al.
DEPRECATED_NAMES: Dict[str, str] = {
    "local_structure": SymmetryRidgeBaseline.name,
}


def canonical_name(name: str) -> str:
  """The current name of a baseline (a deprecated name is mapped, with a
  logged note).

  Raises:
    BaselineError: naming the unknown baseline and the known ones.
  """
  if name in DEPRECATED_NAMES:
    logging.warning("baseline '%s' is deprecated: it is now called '%s' "
                    "(use that name)", name, DEPRECATED_NAMES[name])
    return DEPRECATED_NAMES[name]
  if name not in BASELINES:
    raise BaselineError(f"unknown baseline '{name}'; known: "
                        f"{sorted(BASELINES)} (deprecated: "
                        f"{sorted(DEPRECATED_NAMES)})")
  return name


def make_baseline(name: str,
                  feature_cache: Optional[SymmetryFunctionCache] = None,
                  **kwargs) -> Baseline:
  """A fresh baseline by name (see BASELINES; DEPRECATED_NAMES accepted).

  Args:
    name: a key of BASELINES or DEPRECATED_NAMES.
    feature_cache: shared symmetry functions, passed to the baselines that
      use them (symmetry_ridge, softness) and ignored by the others.
    **kwargs: the baseline's constructor arguments.

  Raises:
    BaselineError: naming the unknown baseline and the known ones.
  """
  factory = BASELINES[canonical_name(name)]
  if (feature_cache is not None and isinstance(factory, type) and
      issubclass(factory, _SymmetryFeatures)):
    kwargs["feature_cache"] = feature_cache
  return factory(**kwargs)


# ---------------------------------------------------------------------------
# Helpers.


def _n_timescales(record) -> int:
  return int(np.asarray(record.propensity).shape[0])


def _check_configuration(positions, types, box) -> None:
  positions = np.asarray(positions)
  if positions.ndim != 2 or positions.shape[1] != 3:
    raise BaselineError(f"positions must have shape [n, 3], found "
                        f"{list(positions.shape)}")
  if types.shape != (positions.shape[0],):
    raise BaselineError(f"types must have shape [{positions.shape[0]}], "
                        f"found {list(types.shape)}")
  if np.asarray(box).size != 3:
    raise BaselineError(f"box must have 3 edges, found {np.asarray(box)}")


def _training_arrays(records: Sequence, features, name: str):
  """Stacks type-A features and propensities of the training records.

  Returns:
    x: [n_A_total, n_features] float64; y: [n_A_total, n_timescales].
  """
  if not records:
    raise BaselineError(f"baseline '{name}' needs training records to fit, "
                        "found none (is the train split empty?)")
  xs, ys = [], []
  n_timescales = None
  for k, record in enumerate(records):
    propensity = np.asarray(record.propensity, np.float64)
    if n_timescales is None:
      n_timescales = propensity.shape[0]
    elif propensity.shape[0] != n_timescales:
      raise BaselineError(
          f"baseline '{name}': training record {k} has "
          f"{propensity.shape[0]} timescales, the first had {n_timescales}")
    is_a = np.asarray(record.types) == TYPE_A
    xs.append(np.asarray(features(record), np.float64)[is_a])
    ys.append(propensity[:, is_a].T)
  return np.concatenate(xs), np.concatenate(ys)
