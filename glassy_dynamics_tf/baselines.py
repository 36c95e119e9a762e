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
    "potential energy" line of the paper's Fig. 3b / Extended Data Fig. 3.
    Unfitted; high energy = loosely bound = predicted mobile.
  neighbour_count: linear regression of propensity on the numbers of A and B
    neighbours within a radius r, fitted per timescale on the train split
    (Extended Data Fig. 10 sweeps r). The radius used for a timescale is the
    one with the best train-set correlation; the whole sweep is available
    through `predict_sweep` for the Extended-Data-Fig.-10 curve.
  local_structure: radial and angular symmetry functions ("softness"
    features; Behler & Parrinello, PRL 98, 146401 (2007); Cubuk et al.,
    PRL 114, 108001 (2015); Schoenholz et al., Nat. Phys. 12, 469 (2016))
    with a ridge regressor per timescale, fitted on the train split. The
    original work classifies rearranging particles with an SVM; regressing
    propensity is the analogue the paper compares with.

Not here yet: soft modes (participation in the lowest-frequency harmonic
modes of the inherent structure, Widmer-Cooper et al., Nat. Phys. 4, 711
(2008)); they need an energy minimisation and a Hessian (a later issue).

Every baseline is fitted and scored on type-A particles only, as the paper's
metrics are (Methods).
"""

import abc
import dataclasses
from typing import Dict, NamedTuple, Sequence

import numpy as np
from scipy import spatial
from sklearn import linear_model
from sklearn import preprocessing

from glassy_dynamics_tf import metrics
from glassy_dynamics_tf import periodic

TYPE_A, TYPE_B = 0, 1
N_TYPES = 2


class BaselineError(ValueError):
  """A baseline cannot be applied to the given configuration or records."""


# ---------------------------------------------------------------------------
# Periodic neighbour pairs.


class Pairs(NamedTuple):
  """Unordered particle pairs closer than a cut-off, each listed once.

  Fields:
    i, j: [n_pairs] int64, i < j.
    vectors: [n_pairs, 3] float64, minimum image of r_j - r_i, σ_AA units.
    distances: [n_pairs] float64, |vectors|, σ_AA units.
  """
  i: np.ndarray
  j: np.ndarray
  vectors: np.ndarray
  distances: np.ndarray


def neighbour_pairs(positions, box, cutoff: float) -> Pairs:
  """All pairs with a periodic-image distance < cutoff.

  For boxes with every edge > 2·cutoff each pair has at most one image in
  range (minimum image, periodic k-d tree). Smaller boxes (tiny test
  systems) are handled by summing over every image in range, as LAMMPS
  does: a pair may then appear several times with different vectors, and a
  particle may pair with its own images (i == j, each ± image pair listed
  once, so that "half to each end" bookkeeping counts it fully).

  Args:
    positions: [n, 3] float, σ_AA units (wrapped here, any input is fine).
    box: [3] float, box edges, σ_AA units.
    cutoff: σ_AA units.

  Raises:
    BaselineError: if a small box would need too many images.
  """
  box = np.asarray(box, np.float64).reshape(3)
  positions = periodic.wrap(np.asarray(positions, np.float64), box)
  if np.any(box <= 2.0 * cutoff):
    return _image_pairs(positions, box, cutoff)
  tree = spatial.cKDTree(positions, boxsize=box)
  pairs = tree.query_pairs(cutoff, output_type="ndarray")
  if pairs.size == 0:
    pairs = np.zeros((0, 2), np.int64)
  i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
  vectors = periodic.minimum_image(positions[j] - positions[i], box)
  distances = np.linalg.norm(vectors, axis=-1)
  keep = distances < cutoff  # the tree's test is <=; ours is strict.
  return Pairs(i[keep], j[keep], vectors[keep], distances[keep])


def _image_pairs(positions, box, cutoff: float) -> Pairs:
  """Brute force over periodic images, for boxes smaller than 2·cutoff."""
  n = positions.shape[0]
  reach = np.ceil(cutoff / box).astype(int) + 1
  shifts = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in reach],
                                indexing="ij"), -1).reshape(-1, 3)
  if n * n * len(shifts) > 20_000_000:
    raise BaselineError(
        f"box {box.tolist()} is smaller than 2 × cutoff = {2 * cutoff} σ and "
        f"the {n} particles would need {len(shifts)} periodic images; use a "
        "larger box")
  i, j = np.triu_indices(n, k=0)
  out_i, out_j, out_v = [], [], []
  for shift in shifts:
    if i.size == 0:
      break
    vectors = positions[j] - positions[i] + shift * box
    keep = np.linalg.norm(vectors, axis=-1) < cutoff
    same = i == j
    # Self images: keep one of each ± pair (first non-zero component > 0).
    nonzero = shift[np.flatnonzero(shift)[0]] if shift.any() else 0
    keep &= ~same | (nonzero > 0)
    out_i.append(i[keep])
    out_j.append(j[keep])
    out_v.append(vectors[keep])
  vectors = np.concatenate(out_v) if out_v else np.zeros((0, 3))
  return Pairs(np.concatenate(out_i).astype(np.int64),
               np.concatenate(out_j).astype(np.int64), vectors,
               np.linalg.norm(vectors, axis=-1))


# ---------------------------------------------------------------------------
# Kob-Andersen potential energy.


@dataclasses.dataclass(frozen=True)
class KobAndersenPotential:
  """Kob-Andersen binary Lennard-Jones mixture (Kob & Andersen, PRE 51, 4626
  (1995)), in units of ε_AA and σ_AA.

  V_αβ(r) = 4 ε_αβ [(σ_αβ/r)¹² − (σ_αβ/r)⁶] for r < cutoff_factor·σ_αβ, else 0;
  minus V_αβ(cut-off) if `shifted`. The default (unshifted, 2.5 σ_αβ) is
  what the simulator runs: LAMMPS `pair_style lj/cut 2.5` without
  `pair_modify shift yes` (DESIGN.md, "Verified physics").
  """
  epsilon: tuple = ((1.0, 1.5), (1.5, 0.5))   # [α][β], ε_AA units
  sigma: tuple = ((1.0, 0.8), (0.8, 0.88))    # [α][β], σ_AA units
  cutoff_factor: float = 2.5
  shifted: bool = False

  def cutoffs(self) -> np.ndarray:
    """[2, 2] float64, cut-off radius per type pair, σ_AA units."""
    return self.cutoff_factor * np.asarray(self.sigma, np.float64)

  def pair_energy(self, r, type_i, type_j) -> np.ndarray:
    """V_αβ(r), ε_AA units; zero at and beyond the cut-off.

    Args:
      r: [...] float, distances, σ_AA units, > 0.
      type_i, type_j: [...] int, species of the two particles (broadcast).
    """
    r = np.asarray(r, np.float64)
    eps = np.asarray(self.epsilon, np.float64)[type_i, type_j]
    sig = np.asarray(self.sigma, np.float64)[type_i, type_j]
    rc = self.cutoff_factor * sig
    def lj(x):
      s6 = (sig / x)**6
      return 4.0 * eps * (s6 * s6 - s6)
    energy = lj(r)
    if self.shifted:
      energy = energy - lj(rc)
    return np.where(r < rc, energy, 0.0)


def potential_energy_per_particle(
    positions, types, box,
    potential: KobAndersenPotential = KobAndersenPotential()) -> np.ndarray:
  """Per-particle potential energy e_i = ½ Σ_j V(r_ij) (Fig. 3b baseline).

  The halves add up to the total energy Σ_{i<j} V(r_ij).

  Args:
    positions: [n, 3] float, σ_AA units.
    types: [n] int, 0 = A, 1 = B.
    box: [3] float, σ_AA units (boxes under 2 × 2.5 σ: all images summed).
    potential: the pair potential (default: unshifted KA, 2.5 σ_αβ).

  Returns:
    [n] float64, ε_AA units.
  """
  types = np.asarray(types, np.int64).reshape(-1)
  _check_configuration(positions, types, box)
  pairs = neighbour_pairs(positions, box, float(potential.cutoffs().max()))
  half = 0.5 * potential.pair_energy(pairs.distances, types[pairs.i],
                                     types[pairs.j])
  n = types.size
  return (np.bincount(pairs.i, half, minlength=n) +
          np.bincount(pairs.j, half, minlength=n))


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
  pairs = neighbour_pairs(positions, box, float(radii.max()))
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
  pairs = neighbour_pairs(positions, box, cutoff)
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


def _angular_functions(pairs: Pairs, n: int,
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

  def __init__(self, shifted: bool = False):
    self.potential = KobAndersenPotential(shifted=shifted)

  def predict(self, record) -> np.ndarray:
    energy = potential_energy_per_particle(record.positions, record.types,
                                           record.box, self.potential)
    return np.repeat(energy[:, None], _n_timescales(record), axis=1)

  def describe(self) -> dict:
    return {**super().describe(), "shifted": self.potential.shifted,
            "cutoff_factor": self.potential.cutoff_factor,
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


class LocalStructureBaseline(_RegressionBaseline):
  """Ridge regression on radial + angular symmetry functions (softness)."""
  name = "local_structure"

  def __init__(self, params: SymmetryFunctionParameters =
               SymmetryFunctionParameters(),
               alphas: Sequence[float] = tuple(np.logspace(-2, 4, 7))):
    super().__init__()
    self.params = params
    self.alphas = tuple(float(a) for a in alphas)

  def features(self, record) -> np.ndarray:
    return symmetry_functions(record.positions, record.types, record.box,
                              self.params)

  def _make_regressor(self):
    # Regularisation strength chosen per timescale by efficient leave-one-out
    # cross-validation on the train split only.
    return linear_model.RidgeCV(alphas=self.alphas, alpha_per_target=True)

  def describe(self) -> dict:
    out = {**super().describe(),
           "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in
                      dataclasses.asdict(self.params).items()}}
    if self._models is not None:
      out["alpha_per_timescale"] = np.atleast_1d(
          self._models[1].alpha_).tolist()
    return out


BASELINES: Dict[str, type] = {
    PotentialEnergyBaseline.name: PotentialEnergyBaseline,
    NeighbourCountBaseline.name: NeighbourCountBaseline,
    LocalStructureBaseline.name: LocalStructureBaseline,
}


def make_baseline(name: str, **kwargs) -> Baseline:
  """A fresh baseline by name (see BASELINES).

  Raises:
    BaselineError: naming the unknown baseline and the known ones.
  """
  if name not in BASELINES:
    extra = (" (soft modes need an energy minimisation and a Hessian; not "
             "implemented yet)" if "soft" in name else "")
    raise BaselineError(f"unknown baseline '{name}'{extra}; known: "
                        f"{sorted(BASELINES)}")
  return BASELINES[name](**kwargs)


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
