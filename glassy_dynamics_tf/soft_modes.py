"""Soft modes: participation in the lowest-frequency harmonic modes.

Widmer-Cooper, Perry, Harrowell & Reichman, "Irreversible reorganization in
a supercooled liquid originates from localized soft modes", Nature Physics
4, 711 (2008), found that the particles that rearrange first are those that
take a large part in the softest vibrations of the configuration's inherent
structure. Their map of "soft spots" is the participation of each particle
summed over the lowest-frequency normal modes (the 30 lowest modes of a
system of about a thousand particles). Bapst et al. 2020 use such
structure-only predictors as baselines for their graph network.

The pipeline, for one configuration:

  positions ──► LAMMPS minimisation ──► inherent structure ──► Hessian H
  (simulation/minimise.py, FIRE)        (a local energy minimum)  [3n, 3n]
      ──► lowest n_modes + 3 eigenpairs of H ──► drop the 3 translations
      ──► p_i = Σ_m |e_i^(m)|²   (participation, [n], sums to n_modes)

The potential is the simulator's Kob-Andersen mixture
(`simulation.kob_andersen`, Kob & Andersen, PRE 51, 4626 (1995)). All
masses are 1, so the Hessian equals the dynamical matrix and its
eigenvalues are squared angular frequencies, ω² (τ⁻² = ε_AA/σ_AA²).

The Hessian is the second derivative of the smooth part of the energy: the
truncated-and-shifted potential has a jump of φ'(r_c) in the pair force at
the cut-off, which would add a delta function to φ''. A pair sitting
exactly at the cut-off has measure zero, and we drop that term, as is
standard practice for truncated Lennard-Jones Hessians (pairs inside the
cut-off keep their transverse φ'(r)/r term, pairs outside contribute
nothing).

Vocabulary:
  positions: [n, 3] float, σ_AA units (wrapped here into [0, box)).
  types: [n] int, 0 = A, 1 = B.
  box: [3] float, orthorhombic box edges, σ_AA units, each > 2 × 2.5 σ_AA so
    that each pair interacts through its minimum image only.
  hessian: scipy.sparse [3n, 3n] float64, ε_AA/σ_AA², row 3i + a is
    particle i's Cartesian component a.
  eigenvalues: ω², ε_AA/σ_AA² (m = 1).
"""

from typing import NamedTuple

import numpy as np
import scipy.linalg
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

from glassy_dynamics_tf import baselines
from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.simulation import kob_andersen as ka
from glassy_dynamics_tf.simulation import minimise as minimise_lib

# Widmer-Cooper et al. (2008) sum the participation over the 30 lowest-
# frequency modes at about a thousand particles. The same fraction of the
# spectrum at another N is about 30 · N / 1000 modes.
DEFAULT_N_MODES = 30
# Global translations are the only zero modes of a periodic system without
# isolated particles or rattlers (at ρ = 1.2 every KA particle has
# neighbours inside the cut-off).
N_TRANSLATIONS = 3
# |ω²| below this counts as zero (ε_AA/σ_AA²). The analytic Hessian is
# translation invariant to rounding (|ω²| ~ 1e-13 measured), while the
# softest non-zero mode of KA inherent structures quenched from T = 2 or
# 0.6 measured ω² = 1.3-2.4 at N = 256-4096.
ZERO_TOLERANCE = 1e-6
# Up to this many degrees of freedom the lowest eigenpairs come from a dense
# LAPACK solver; above it from ARPACK's Lanczos iteration, which is ~5×
# faster already at N = 256 (0.3 s against 1.7 s on a shared core).
DENSE_MAX_DIMENSION = 300


class SoftModesError(baselines.BaselineError):
  """Soft modes cannot be computed for this configuration or settings."""


# ---------------------------------------------------------------------------
# Minimisation (simulation/minimise.py).

# The inherent structure of the baseline: FIRE alone down to a 2-norm of the
# global 3n force vector of 1e-10 ε_AA/σ_AA, which FIRE reaches in a few
# thousand steps at N = 256-1000 and which leaves no negative ω². For a
# tighter minimum add a CG stage: method="fire+cg" with
# fire_force_tolerance=1e-10 and force_tolerance below it (the 2-norm's
# rounding floor is about 2e-12 at N = 256).
DEFAULT_MINIMISER = minimise_lib.MinimiserSettings(
    method="fire", norm="two", force_tolerance=1e-10)


def inherent_structure(positions, types, box,
                       settings: minimise_lib.MinimiserSettings = (
                           DEFAULT_MINIMISER)
                       ) -> minimise_lib.InherentStructure:
  """minimise.minimise, with this module's checks and error type.

  Args:
    positions: [n, 3] float, σ_AA units.
    types: [n] int, 0 = A, 1 = B.
    box: [3] float, σ_AA units, each edge > 5 σ_AA.
    settings: minimise.MinimiserSettings.

  Raises:
    SoftModesError: bad configuration, or minimise.MinimiserError's cases
      (LAMMPS failed, no convergence, non-finite energy), same message.
  """
  positions, types, box = _check_configuration(positions, types, box)
  try:
    return minimise_lib.minimise(positions, types, box, settings)
  except minimise_lib.MinimiserError as e:
    raise SoftModesError(f"soft modes: {e}") from e


# ---------------------------------------------------------------------------
# Forces and Hessian of the KA energy (analytic).


class PairDerivatives(NamedTuple):
  """First and second derivatives of V_αβ at pair distances.

  Fields: [m] float64, zero at and beyond the pair's cut-off.
    first: φ'(r), ε_AA/σ_AA.
    second: φ''(r), ε_AA/σ_AA².
  """
  first: np.ndarray
  second: np.ndarray


def pair_derivatives(r, type_i, type_j) -> PairDerivatives:
  """φ' and φ'' of the KA pair potential (the shift does not enter).

  With s = σ_αβ/r, φ = 4ε(s¹² − s⁶), so
    φ'(r)  = −24 ε (2 s¹² − s⁶) / r,
    φ''(r) =  24 ε (26 s¹² − 7 s⁶) / r².

  Args:
    r: [m] float, distances, σ_AA units, > 0.
    type_i, type_j: [m] int, species of the two particles.
  """
  r = np.asarray(r, np.float64)
  eps = ka.EPSILON[type_i, type_j]
  s6 = (ka.SIGMA[type_i, type_j] / r)**6
  s12 = s6 * s6
  inside = r < ka.CUTOFF[type_i, type_j]
  first = np.where(inside, -24.0 * eps * (2.0 * s12 - s6) / r, 0.0)
  second = np.where(inside, 24.0 * eps * (26.0 * s12 - 7.0 * s6) / r**2, 0.0)
  return PairDerivatives(first, second)


class _Pairs(NamedTuple):
  i: np.ndarray        # [m] int64
  j: np.ndarray        # [m] int64
  unit: np.ndarray     # [m, 3] float64, (r_j − r_i)/|r_j − r_i|, minimum image
  distance: np.ndarray  # [m] float64
  derivatives: PairDerivatives


def _interacting_pairs(positions, types, box) -> _Pairs:
  """Pairs inside their own type-dependent cut-off, minimum image."""
  positions, types, box = _check_configuration(positions, types, box)
  # The box check above makes these minimum-image pairs, i < j.
  pairs = periodic.neighbour_pairs(positions, box, ka.MAX_CUTOFF)
  inside = pairs.distances < ka.CUTOFF[types[pairs.i], types[pairs.j]]
  i, j = pairs.i[inside], pairs.j[inside]
  vectors, distance = pairs.vectors[inside], pairs.distances[inside]
  if np.any(distance <= 0):
    k = int(np.argmin(distance))
    raise SoftModesError(f"particles {i[k]} and {j[k]} sit on top of each "
                         "other (distance 0)")
  return _Pairs(i, j, vectors / distance[:, None], distance,
                pair_derivatives(distance, types[i], types[j]))


def forces(positions, types, box) -> np.ndarray:
  """Forces −∇E of the KA energy (shift-independent).

  Particle i feels φ'(r_ij) r̂_ij from each partner j, with r̂_ij the unit
  minimum-image vector from i to j.

  Returns:
    [n, 3] float64, ε_AA/σ_AA.
  """
  pairs = _interacting_pairs(positions, types, box)
  n = np.asarray(positions).shape[0]
  f = pairs.derivatives.first[:, None] * pairs.unit
  out = np.zeros((n, 3))
  np.add.at(out, pairs.i, f)
  np.add.at(out, pairs.j, -f)
  return out


def hessian(positions, types, box) -> sparse.csr_matrix:
  """Hessian ∂²E/∂r_ia ∂r_jb of the total KA energy, analytic.

  For a pair at separation r = r_j − r_i (minimum image), d = |r|,
  r̂ = r/d, the 3 × 3 block
    B = φ''(d) r̂r̂ᵀ + φ'(d)/d (I − r̂r̂ᵀ)
  is added to the (i, i) and (j, j) blocks and subtracted from the (i, j)
  and (j, i) blocks. The delta term of the force jump at the cut-off is left
  out (module docstring). Masses are 1, so this is also the dynamical
  matrix.

  Args:
    positions: [n, 3] float, σ_AA units.
    types: [n] int, 0 = A, 1 = B.
    box: [3] float, σ_AA units, each edge > 5 σ_AA.

  Returns:
    [3n, 3n] scipy.sparse CSR float64, symmetric, ε_AA/σ_AA².

  Raises:
    SoftModesError: bad shapes, non-finite values, box too small.
  """
  pairs = _interacting_pairs(positions, types, box)
  n = np.asarray(positions).shape[0]
  d1, d2 = pairs.derivatives
  # The outer product is formed before scaling so that B is symmetric.
  outer = pairs.unit[:, :, None] * pairs.unit[:, None, :]
  transverse = d1 / pairs.distance
  blocks = ((d2 - transverse)[:, None, None] * outer +
            transverse[:, None, None] * np.eye(3))
  a = np.arange(3)
  def index(p):  # [m, 3, 3] row or column index of particle p's component
    return 3 * p[:, None, None] + a
  rows, cols, data = [], [], []
  for p, q, sign in ((pairs.i, pairs.i, 1.0), (pairs.j, pairs.j, 1.0),
                     (pairs.i, pairs.j, -1.0), (pairs.j, pairs.i, -1.0)):
    rows.append(np.broadcast_to(index(p).transpose(0, 2, 1), blocks.shape))
    cols.append(np.broadcast_to(index(q), blocks.shape))
    data.append(sign * blocks)
  matrix = sparse.coo_matrix(
      (np.concatenate(data).ravel(),
       (np.concatenate(rows).ravel(), np.concatenate(cols).ravel())),
      shape=(3 * n, 3 * n)).tocsr()
  # Duplicates in the diagonal blocks are summed in an order that can
  # differ between (a, b) and (b, a) by an ulp; averaging with the
  # transpose makes the matrix exactly symmetric (x + y == y + x).
  return ((matrix + matrix.T) * 0.5).tocsr()


# ---------------------------------------------------------------------------
# Normal modes and participation.


class Modes(NamedTuple):
  """The softest non-zero normal modes.

  Fields:
    eigenvalues: [n_modes] float64, ω², ε_AA/σ_AA², ascending, all > 0.
    vectors: [3n, n_modes] float64, orthonormal eigenvectors (columns).
    zero_eigenvalues: [n_zero_modes] float64, the dropped translations,
      each |ω²| <= zero_tolerance.
  """
  eigenvalues: np.ndarray
  vectors: np.ndarray
  zero_eigenvalues: np.ndarray


def lowest_modes(matrix, n_modes: int = DEFAULT_N_MODES, *,
                 n_zero_modes: int = N_TRANSLATIONS,
                 zero_tolerance: float = ZERO_TOLERANCE,
                 solver: str = "auto") -> Modes:
  """The `n_modes` lowest eigenpairs above the zero modes of a Hessian.

  Args:
    matrix: [3n, 3n] symmetric (sparse or dense) Hessian, ε_AA/σ_AA².
    n_modes: number of non-zero modes wanted.
    n_zero_modes: expected number of zero modes (3 translations).
    zero_tolerance: |ω²| at or below this counts as zero, ε_AA/σ_AA².
    solver: "dense" (LAPACK), "sparse" (ARPACK's implicitly restarted
      Lanczos for the smallest algebraic eigenvalues, matrix-vector
      products only), or "auto" (dense up to DENSE_MAX_DIMENSION rows).
      Both return the lowest eigenvalues, negative ones included. Lanczos
      beats shift-invert here: the LU factors of H − σI fill in badly in
      3-D (at N = 2000: 2 s against 10 s; at N = 4096 the factorisation
      alone takes 40-70 s).

  Returns:
    the Modes. Within a degenerate eigenvalue the vectors are an arbitrary
    basis; the participation of a whole degenerate set does not depend on
    it, but a set cut by `n_modes` makes it basis dependent.

  Raises:
    SoftModesError: a negative eigenvalue (not a minimum: the minimisation
      did not converge), a number of zero modes other than `n_zero_modes`
      (isolated particles, rattlers), or impossible sizes.
  """
  dimension = matrix.shape[0]
  k = int(n_modes) + int(n_zero_modes)
  if n_modes < 1 or k > dimension:
    raise SoftModesError(
        f"n_modes must be in [1, {dimension - n_zero_modes}] for a "
        f"{dimension}-row Hessian, found {n_modes}")
  if solver == "auto":
    solver = "dense" if dimension <= DENSE_MAX_DIMENSION else "sparse"
  if solver == "sparse" and k >= dimension - 1:
    solver = "dense"  # ARPACK needs k < dimension - 1.
  if solver == "dense":
    dense = matrix.toarray() if sparse.issparse(matrix) else np.asarray(
        matrix, np.float64)
    values, vectors = scipy.linalg.eigh(dense, subset_by_index=(0, k - 1))
  elif solver == "sparse":
    # A fixed start vector makes the result reproducible.
    start = np.random.default_rng(0).standard_normal(dimension)
    try:
      values, vectors = sparse_linalg.eigsh(
          sparse.csr_matrix(matrix), k=k, which="SA", v0=start)
    except sparse_linalg.ArpackNoConvergence as e:
      raise SoftModesError(
          f"Lanczos did not converge to the lowest {k} eigenvalues of the "
          f"{dimension}-row Hessian ({e}); try solver='dense'") from e
    order = np.argsort(values)
    values, vectors = values[order], vectors[:, order]
  else:
    raise SoftModesError(
        f"solver must be 'auto', 'dense' or 'sparse', found {solver!r}")
  negative = values[values < -zero_tolerance]
  if negative.size:
    raise SoftModesError(
        f"Hessian has {negative.size} negative eigenvalue(s) among the {k} "
        f"computed, down to {negative.min():.6g} ε/σ²: the configuration is "
        "not at an energy minimum; the minimisation did not converge "
        "(tighten the force tolerance or add a CG stage)")
  n_zero = int(np.count_nonzero(np.abs(values) <= zero_tolerance))
  if n_zero != n_zero_modes:
    raise SoftModesError(
        f"Hessian has {n_zero} eigenvalue(s) with |ω²| <= {zero_tolerance} "
        f"among the {k} computed, expected {n_zero_modes} (translations); "
        "isolated particles or rattlers add zero modes. Lowest: "
        f"{np.round(values[:n_zero_modes + 2], 9).tolist()}")
  return Modes(eigenvalues=values[n_zero_modes:],
               vectors=vectors[:, n_zero_modes:],
               zero_eigenvalues=values[:n_zero_modes])


def participation(vectors: np.ndarray) -> np.ndarray:
  """p_i = Σ_m |e_i^(m)|², a particle's share of the given modes.

  Args:
    vectors: [3n, n_modes] float, orthonormal eigenvectors (columns).

  Returns:
    [n] float64, non-negative, summing to n_modes.
  """
  vectors = np.asarray(vectors, np.float64)
  return (vectors.reshape(-1, 3, vectors.shape[1])**2).sum(axis=(1, 2))


class SoftModes(NamedTuple):
  """Soft-mode analysis of one configuration.

  Fields:
    inherent_positions: [n, 3] float64, σ_AA units, wrapped into [0, box).
    eigenvalues: [n_modes] float64, ω² of the softest non-zero modes,
      ε_AA/σ_AA², ascending.
    zero_eigenvalues: [3] float64, the translations (≈ 0).
    participation: [n] float64, Σ over those modes of |e_i|²; sums to
      n_modes. High = soft = predicted mobile (Widmer-Cooper et al. 2008).
    energy_before, energy_after: potential energy per particle before and
      after minimisation, ε_AA, truncated and shifted.
    n_minimiser_steps: LAMMPS minimiser iterations.
    max_force: largest |F_i| at the inherent structure from this module's
      analytic forces, ε_AA/σ_AA.
  """
  inherent_positions: np.ndarray
  eigenvalues: np.ndarray
  zero_eigenvalues: np.ndarray
  participation: np.ndarray
  energy_before: float
  energy_after: float
  n_minimiser_steps: int
  max_force: float


def soft_modes(positions, types, box, n_modes: int = DEFAULT_N_MODES, *,
               minimiser: minimise_lib.MinimiserSettings = (
                   DEFAULT_MINIMISER),
               zero_tolerance: float = ZERO_TOLERANCE,
               solver: str = "auto") -> SoftModes:
  """Minimise, diagonalise, and sum participation over the softest modes.

  Args:
    positions: [n, 3] float, σ_AA units.
    types: [n] int, 0 = A, 1 = B.
    box: [3] float, σ_AA units, each edge > 5 σ_AA.
    n_modes: softest non-zero modes summed over (paper: 30 at N ≈ 1000).
    minimiser: LAMMPS minimisation settings (minimise.MinimiserSettings).
    zero_tolerance: |ω²| counted as zero, ε_AA/σ_AA².
    solver: eigen-solver, see `lowest_modes`.

  Returns:
    the SoftModes.

  Raises:
    SoftModesError: see `inherent_structure` and `lowest_modes`.
  """
  inherent = inherent_structure(positions, types, box, minimiser)
  modes = lowest_modes(hessian(inherent.positions, types, box), n_modes,
                       zero_tolerance=zero_tolerance, solver=solver)
  force = forces(inherent.positions, types, box)
  return SoftModes(
      inherent_positions=inherent.positions,
      eigenvalues=modes.eigenvalues,
      zero_eigenvalues=modes.zero_eigenvalues,
      participation=participation(modes.vectors),
      energy_before=inherent.initial_potential_energy,
      energy_after=inherent.potential_energy,
      n_minimiser_steps=inherent.iterations,
      max_force=float(np.linalg.norm(force, axis=1).max()))


# ---------------------------------------------------------------------------
# The baseline.


class SoftModesBaseline(baselines.Baseline):
  """Participation in the softest normal modes of the inherent structure.

  Widmer-Cooper et al., Nat. Phys. 4, 711 (2008). Unfitted: the score of a
  particle is its participation summed over the `n_modes` lowest non-zero
  modes, repeated for every timescale of the record; high = predicted
  mobile.
  """
  name = "soft_modes"

  def __init__(self, n_modes: int = DEFAULT_N_MODES,
               minimiser: minimise_lib.MinimiserSettings = (
                   DEFAULT_MINIMISER),
               zero_tolerance: float = ZERO_TOLERANCE):
    self.n_modes = int(n_modes)
    self.minimiser = minimiser
    self.zero_tolerance = float(zero_tolerance)

  def predict(self, record) -> np.ndarray:
    """[n_particles, n_timescales] float64 participation."""
    result = soft_modes(record.positions, record.types, record.box,
                        self.n_modes, minimiser=self.minimiser,
                        zero_tolerance=self.zero_tolerance)
    n_timescales = int(np.asarray(record.propensity).shape[0])
    return np.repeat(result.participation[:, None], n_timescales, axis=1)

  def describe(self) -> dict:
    return {**super().describe(),
            "source": "Widmer-Cooper, Perry, Harrowell & Reichman, "
                      "Nat. Phys. 4, 711 (2008)",
            "n_modes": self.n_modes,
            "zero_tolerance": self.zero_tolerance,
            "minimiser": self.minimiser.as_dict(),
            "potential": "Kob-Andersen, truncated and shifted at 2.5 σ_αβ",
            "units": "participation (dimensionless, sums to n_modes)"}


# ---------------------------------------------------------------------------
# Helpers.


def _check_configuration(positions, types, box) -> tuple:
  """Validated float64 positions [n, 3], int64 types [n], float64 box [3].

  The checks of `minimise.check_configuration`, plus the Hessian's own
  condition: every box edge beyond twice the largest cut-off.
  """
  try:
    positions, types, box = minimise_lib.check_configuration(
        positions, types, box)
  except minimise_lib.MinimiserError as e:
    raise SoftModesError(str(e)) from e
  if np.any(box <= 2.0 * ka.MAX_CUTOFF):
    raise SoftModesError(
        f"box {box.tolist()} must exceed twice the largest cut-off "
        f"(2 × {ka.MAX_CUTOFF} σ_AA) on every edge, so that each pair "
        "interacts through its minimum image only")
  return positions, types.astype(np.int64), box
