"""Athermal quasistatic shear (AQS) of Kob-Andersen glasses, plastic events.

After Bapst et al. 2020, Fig. 4: a configuration is quenched to its inherent
structure, sheared quasistatically, and the particles that rearrange in the
first plastic event are compared with what the structure (a trained
network, a baseline) predicts of the unsheared quenched configuration.

```
 positions, types, box ──► minimise ──► InherentStructure (γ = 0, orthorhombic
 (any KA configuration)    FIRE, CG      box: what predictors see)
                                   │
                                   ▼ change_box triclinic
       ┌──► γ_k = k·Δγ: change_box xy final γ_k·L_y remap  (affine simple shear)
       │    minimise (FIRE, CG)      ──► σ_xy, U/N, P, max force, max |u|
       │    stress drop > threshold? ──► plastic event (before, after)
       └─── checkpoint every `checkpoint_every` steps (npz, atomic)
                                   │
                                   ▼
 first event: non-affine displacements, D²_min (Falk & Langer) ──► ShearResult
```

Protocol (Maloney & Lemaître, PRE 74, 016118 (2006)): every step applies an
affine simple shear of Δγ to the particles and the cell (LAMMPS `change_box
... remap` keeps every particle's fractional coordinates, so x += Δγ·y with
the cell's origin at 0) and then minimises the energy at fixed cell, i.e.
T = 0 and strain rate → 0. The cell is the triclinic cell with tilt
xy = γ·L_y, the periodic images of which are the Lees-Edwards images of
simple shear.

Minimisation (`simulation/minimise.py`, `ShearSettings.minimiser`): by
default FIRE down to a largest force component of 1e-4 ε_AA/σ_AA (robust
far from a minimum, e.g. right after an instability), then conjugate
gradients to 1e-10, with FIRE finishing if CG stalls; the stopping test is
the force alone (`etol = 0`), on the largest force component of any
particle (`norm = "inf"`). 1e-10 ε_AA/σ_AA puts positions within ~1e-12
σ_AA of the minimum, far below any displacement we measure. The quench is
`minimise.minimise` (it raises if it does not converge); every AQS step
re-minimises in the running session with `minimise.run_minimiser`, and a
step that does not converge is logged, not fatal. Which minimum a hot
configuration falls into is not unique: from one N = 4096 configuration
cooled to T = 0.4, FIRE+CG reached U/N = −7.5652 from both its float64 and
its float32-rounded coordinates, CG alone (method "cg") −7.5698 and
−7.5763. Any of these is an inherent structure; we keep FIRE first for its
robustness. Sheared from the same inherent structure (N = 4096), "fire+cg"
and "cg" gave the same first event (761 and 760 particles with D²_min >
1 σ², at steps 10 and 9).

Stress: σ_xy = −P_xy, the virial part of LAMMPS' pressure tensor (`compute
pressure NULL virial`, no kinetic term; velocities play no role at T = 0),
ε_AA/σ_AA³. With this sign a solid sheared by γ > 0 (upper layers moved to
+x) pushes back with σ_xy > 0, so σ_xy ≈ G·γ at small strain with a shear
modulus G > 0.

Plastic events (`test_step`): a stress drop between consecutive steps,
measured against the elastic branch: elastic steps raise the stress by
about G·Δγ with a spread set by the slow variation of the modulus; a step
whose increment falls short of the recent elastic ones by more than
`drop_factor` × that spread (1.4826 × median absolute deviation), and in
which some particle moves non-affinely by more than
`min_event_displacement`, is a plastic event.

Rearranging particles of the first event: D²_min of Falk & Langer, PRE 57,
7192 (1998), between the minimum just before and just after the drop, the
residual of the best local affine map of each particle's neighbourhood:

  D²_min(i) = min_J Σ_j |d_ij − J d⁰_ij|²,  j within `d2min_cutoff` of i in
  the configuration before (d⁰ = r_j − r_i before, d = after, same image).

It is a sum over neighbours (FL's definition, not normalised), σ_AA². FL
sum over the neighbours within a fixed radius; we take the range of the
A-A potential, 2.5 σ_AA, which spans the first two neighbour shells, so
that the local affine fit sees a particle's whole mechanical surroundings.

Reproducibility and resumption: every segment of `checkpoint_every` steps
starts a fresh LAMMPS session from the checkpointed microstate (atoms created
in ID order, the saved coordinates scattered bit for bit), interrupted or
not, so a killed and resumed run reproduces an uninterrupted one exactly
(one MPI rank, fixed accelerator; see engine.py).

Vocabulary:
  positions: [n, 3] float64, σ_AA units, Cartesian.
  types: [n] int32, 0 = A, 1 = B.
  box: [3] float64, edges of the unsheared (orthorhombic) cell, σ_AA.
  cell: [3, 3] float64, rows are the cell vectors a, b, c, σ_AA; sheared by
    γ: a = (L_x, 0, 0), b = (γ L_y, L_y, 0), c = (0, 0, L_z) (LAMMPS'
    convention, origin at 0). Fractional coordinates s: r = s · cell.
  strain γ: dimensionless; stress σ_xy, pressure: ε_AA/σ_AA³; energies per
    particle: ε_AA, truncated and shifted (kob_andersen.SHIFTED).
"""

import ctypes
import dataclasses
import io as _io
import math
import os
import time
from typing import Callable, NamedTuple, Optional

import numpy as np
from scipy import spatial

from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.io import npz_format
from glassy_dynamics_tf.simulation import engine
from glassy_dynamics_tf.simulation import kob_andersen as ka
from glassy_dynamics_tf.simulation import minimise as minimise_lib

# 2: the minimiser settings of simulation/minimise.py (method, norm, ...).
FORMAT_VERSION = 2
# Strain step and range: Δγ = 1e-4 resolves the elastic branches between the
# first events of N ~ 10³ KA glasses (γ ~ 10⁻²), as in Maloney & Lemaître's
# AQS; the largest strain keeps the tilt within LAMMPS' limit |xy| <= L_x/2.
DEFAULT_STRAIN_STEP = 1e-4
DEFAULT_MAX_STRAIN = 0.15
MAX_TILT_FRACTION = 0.5
# Event detection (`test_step`): stress loss > DROP_FACTOR × robust spread
# of the last NOISE_WINDOW elastic increments (once MIN_NOISE_STEPS are
# known), and a non-affine displacement > MIN_EVENT_DISPLACEMENT σ_AA.
# Measured on an N = 256 glass (Δγ = 1e-4): elastic increments G·Δγ ≈
# 1.8e-3 spread by ~2e-4; the first two drops 1.1e-1 and 2.9e-2 with core
# displacements 0.23 and 0.18 σ; elastic steps move particles ≤ ~5e-3 σ.
DROP_FACTOR = 10.0
NOISE_WINDOW = 100
MIN_NOISE_STEPS = 5
MIN_EVENT_DISPLACEMENT = 0.05
MAD_TO_STD = 1.4826  # σ of a Gaussian = 1.4826 × its median absolute dev.
# D²_min neighbourhood: the range of the A-A potential, σ_AA.
D2MIN_CUTOFF = ka.MAX_CUTOFF
# Rearranging particles: D²_min above this, σ_AA² (see ShearSettings).
REARRANGING_D2MIN = 1.0


class ShearError(ValueError):
  """Bad settings, inputs or checkpoint; the message names the thing."""


# ----------------------------------------------------------------- settings --


@dataclasses.dataclass(frozen=True)
class ShearSettings:
  """The AQS protocol, event detection and rearrangement criterion.

  Attributes:
    strain_step: Δγ per step.
    max_strain: stop at this strain (|tilt| <= L_x/2, LAMMPS' limit).
    stop_after_events: stop once this many plastic events were seen (plus
      `extra_steps`); 0 = shear up to `max_strain`.
    extra_steps: steps sheared after the stopping event (the figure's
      unloading branch).
    drop_factor: the stress loss of an event must exceed drop_factor × the
      spread of the elastic increments (`test_step`).
    noise_window: recent elastic increments that give the expected
      increment and its spread.
    min_noise_steps: elastic increments needed before the loss is measured
      against the elastic branch (before: the stress must fall).
    min_stress_drop: floor of the threshold, ε_AA/σ_AA³.
    min_event_displacement: an event must move some particle non-affinely
      by more than this, σ_AA (`test_step`).
    d2min_cutoff: D²_min neighbourhood radius, σ_AA.
    rearranging_d2min: a particle rearranges if its D²_min exceeds this,
      σ_AA² (used when `rearranging_top_k` is 0). For the default 2.5 σ
      neighbourhood (~75 neighbours) D²_min ≈ 75 δ² for a particle moved by
      δ against its surroundings, so 1 σ² means δ ≳ 0.12 σ: the core of an
      event. Measured on the first event of an N = 256 glass: 6 particles
      above 1 σ² (largest 4.3), all within 3.3 σ of the largest; the
      elastic far field of the small box gives a median of 0.15 σ².
    rearranging_top_k: if > 0, the k particles with the largest D²_min.
    checkpoint_every: steps between checkpoints (and fresh sessions).
    minimiser: minimise.MinimiserSettings of the quench and of every step
      (default: FIRE then CG, largest force component below 1e-10).
  """
  strain_step: float = DEFAULT_STRAIN_STEP
  max_strain: float = DEFAULT_MAX_STRAIN
  stop_after_events: int = 1
  extra_steps: int = 20
  drop_factor: float = DROP_FACTOR
  noise_window: int = NOISE_WINDOW
  min_noise_steps: int = MIN_NOISE_STEPS
  min_stress_drop: float = 0.0
  min_event_displacement: float = MIN_EVENT_DISPLACEMENT
  d2min_cutoff: float = D2MIN_CUTOFF
  rearranging_d2min: float = REARRANGING_D2MIN
  rearranging_top_k: int = 0
  checkpoint_every: int = 50
  minimiser: minimise_lib.MinimiserSettings = (
      minimise_lib.MinimiserSettings())

  @property
  def n_steps(self) -> int:
    """Steps up to `max_strain`."""
    return int(round(self.max_strain / self.strain_step))

  def validate(self, box: Optional[np.ndarray] = None) -> None:
    """Checks ranges (and the tilt limit if `box` is given).

    Raises:
      ShearError: naming the setting, what was expected and found.
    """
    try:
      self.minimiser.validate()
    except minimise_lib.MinimiserError as e:
      raise ShearError(str(e)) from e
    if not (math.isfinite(self.strain_step) and self.strain_step > 0):
      raise ShearError(f"strain_step must be finite and > 0, found "
                       f"{self.strain_step}")
    if not self.max_strain >= self.strain_step:
      raise ShearError(f"max_strain ({self.max_strain}) must be >= "
                       f"strain_step ({self.strain_step})")
    for name in ("stop_after_events", "extra_steps", "min_noise_steps",
                 "rearranging_top_k"):
      if int(getattr(self, name)) < 0:
        raise ShearError(f"{name} must be >= 0, found {getattr(self, name)}")
    for name in ("noise_window", "checkpoint_every"):
      if int(getattr(self, name)) < 1:
        raise ShearError(f"{name} must be >= 1, found {getattr(self, name)}")
    for name in ("drop_factor", "d2min_cutoff"):
      if not getattr(self, name) > 0:
        raise ShearError(f"{name} must be > 0, found {getattr(self, name)}")
    if not self.min_event_displacement >= 0:
      raise ShearError(f"min_event_displacement must be >= 0, found "
                       f"{self.min_event_displacement}")
    if not self.min_stress_drop >= 0:
      raise ShearError(f"min_stress_drop must be >= 0, found "
                       f"{self.min_stress_drop}")
    if not self.rearranging_d2min >= 0:
      raise ShearError(f"rearranging_d2min must be >= 0, found "
                       f"{self.rearranging_d2min}")
    if box is not None:
      box = np.asarray(box, np.float64)
      tilt = self.n_steps * self.strain_step * box[1]
      if tilt > MAX_TILT_FRACTION * box[0] * (1 + 1e-12):
        raise ShearError(
            f"max_strain {self.max_strain} tilts the cell by {tilt:.4g} σ, "
            f"beyond LAMMPS' limit L_x/2 = {box[0] / 2:.4g} σ; use "
            f"max_strain <= {MAX_TILT_FRACTION * box[0] / box[1]:.4g}")

  def as_arrays(self, prefix: str = "setting_") -> dict:
    flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.name != "minimiser"}
    flat.update({"minimiser_" + f.name: getattr(self.minimiser, f.name)
                 for f in dataclasses.fields(self.minimiser)})
    return {prefix + k: np.asarray(v) for k, v in flat.items()}

  @classmethod
  def from_arrays(cls, arrays: dict, prefix: str = "setting_"
                  ) -> "ShearSettings":
    def value(name, field_type):
      if prefix + name not in arrays:
        found = sorted(k for k in arrays if k.startswith(prefix))
        raise ShearError(f"setting '{name}' ({prefix + name}) is missing; "
                         f"found {found}")
      v = np.asarray(arrays[prefix + name])
      return field_type(v.item()) if v.dtype.kind != "U" else str(v)

    settings_class = minimise_lib.MinimiserSettings
    minimiser = settings_class(**{
        f.name: value("minimiser_" + f.name,
                      type(getattr(settings_class(), f.name)))
        for f in dataclasses.fields(settings_class)})
    return cls(minimiser=minimiser, **{
        f.name: value(f.name, type(getattr(cls(), f.name)))
        for f in dataclasses.fields(cls) if f.name != "minimiser"})


# ------------------------------------------------------ triclinic geometry --


def cell_matrix(box, xy: float = 0.0, xz: float = 0.0,
                yz: float = 0.0) -> np.ndarray:
  """[3, 3] float64 cell, rows a = (L_x, 0, 0), b = (xy, L_y, 0),
  c = (xz, yz, L_z) (LAMMPS' restricted triclinic cell), σ_AA."""
  box = np.asarray(box, np.float64)
  if box.shape != (3,) or not np.all(np.isfinite(box)) or np.any(box <= 0):
    raise ShearError(f"box must be 3 finite edges > 0, found {box.tolist()}")
  return np.array([[box[0], 0.0, 0.0], [xy, box[1], 0.0], [xz, yz, box[2]]])


def sheared_cell(box, strain: float) -> np.ndarray:
  """The cell of `box` under simple shear γ = `strain` (xy = γ L_y)."""
  box = np.asarray(box, np.float64)
  return cell_matrix(box, xy=float(strain) * box[1])


def to_fractional(positions, cell) -> np.ndarray:
  """[..., 3] fractional coordinates s with positions = s · cell."""
  return np.asarray(positions, np.float64) @ np.linalg.inv(cell)


def wrap_cell(positions, cell) -> np.ndarray:
  """Positions wrapped into the cell (fractional coordinates in [0, 1))."""
  s = periodic.wrap(to_fractional(positions, cell), np.ones(3))
  return s @ np.asarray(cell, np.float64)


def perpendicular_widths(cell) -> np.ndarray:
  """[3] distances between opposite faces of the cell, σ_AA.

  Width a is the volume over the area of the face spanned by the other two
  vectors; the fractional coordinate s_a changes by 1 over it.
  """
  cell = np.asarray(cell, np.float64)
  volume = abs(np.linalg.det(cell))
  areas = np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=-1)
  return volume / areas


# Integer shifts {-1, 0, 1}³, the candidates around the rounded image.
_NEIGHBOUR_SHIFTS = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3,
                                         indexing="ij"), -1).reshape(-1, 3)


def triclinic_minimum_image(displacements, cell) -> np.ndarray:
  """The shortest periodic image of each vector in a triclinic cell.

  Rounding the fractional coordinates to (−1/2, 1/2] (the orthorhombic rule,
  done modulo-based as `periodic.minimum_image`) gives the image inside the
  parallelepiped centred on 0. That is the shortest image whenever it is
  shorter than half the smallest face-to-face width (then |s_a| = |r·n_a| /
  w_a < 1/2 for every axis), which covers every pair within any cut-off we
  use; in a sheared cell a longer vector's shortest image can lie in a
  neighbouring parallelepiped (the cell's corners stick out of its Voronoi
  cell). We therefore compare the rounded image with its 26 neighbours,
  which finds the shortest image of any vector for cells within LAMMPS'
  tilt limits (|xy| <= L_x/2, ...); tests check it against a brute-force
  search over many images.

  Args:
    displacements: [..., 3] float, r_j − r_i, σ_AA.
    cell: [3, 3] float, rows = cell vectors.

  Returns:
    [..., 3] float64, the shortest image of each vector.
  """
  cell = np.asarray(cell, np.float64)
  d = np.asarray(displacements, np.float64)
  shape = d.shape
  s = to_fractional(d.reshape(-1, 3), cell)
  s = np.mod(s + 0.5, 1.0) - 0.5
  candidates = (s[:, None, :] + _NEIGHBOUR_SHIFTS[None]) @ cell  # [m, 27, 3]
  best = np.argmin(np.einsum("mkc,mkc->mk", candidates, candidates), axis=1)
  return candidates[np.arange(len(s)), best].reshape(shape)


class TriclinicPairs(NamedTuple):
  """Unordered pairs closer than a cut-off in a periodic triclinic cell.

  As `periodic.Pairs`: i <= j; in a cell narrower than twice the cut-off a
  pair may appear once per image in range, and a particle may pair with
  its own images (one of ±shift listed).

  Fields:
    i, j: [p] int64.
    shifts: [p, 3] int64, the image of j: vector = r_j + shift·cell − r_i,
      with r the positions wrapped into the cell (`wrap_cell`).
    vectors: [p, 3] float64, σ_AA.
    distances: [p] float64, < cutoff.
  """
  i: np.ndarray
  j: np.ndarray
  shifts: np.ndarray
  vectors: np.ndarray
  distances: np.ndarray


def triclinic_neighbour_pairs(positions, cell, cutoff: float
                              ) -> TriclinicPairs:
  """Every pair (and periodic image) closer than `cutoff` in a triclinic cell.

  The periodic k-d tree of `periodic` handles orthorhombic boxes only, so
  we search explicit images: wrapped positions differ by less than one
  cell in fractional coordinates, so an image shifted by n_a cells along
  axis a is at least (|n_a| − 1)·w_a away (w_a the face-to-face width) and
  only |n_a| <= ceil(cutoff / w_a) can be in range.

  Args:
    positions: [n, 3] float, σ_AA, any image.
    cell: [3, 3] float, rows = cell vectors.
    cutoff: σ_AA, > 0 (strict: a pair at exactly `cutoff` is left out).

  Returns:
    TriclinicPairs, sorted by i, then j, then distance.
  """
  cell = np.asarray(cell, np.float64)
  positions = np.asarray(positions, np.float64)
  if positions.ndim != 2 or positions.shape[1] != 3:
    raise ShearError(f"positions must have shape [n, 3], found "
                     f"{list(positions.shape)}")
  if not np.all(np.isfinite(positions)):
    raise ShearError("positions must be finite")
  if not (math.isfinite(cutoff) and cutoff > 0):
    raise ShearError(f"cutoff must be finite and > 0, found {cutoff}")
  n = positions.shape[0]
  s = periodic.wrap(to_fractional(positions, cell), np.ones(3))
  wrapped = s @ cell
  reach = np.ceil(cutoff / perpendicular_widths(cell)).astype(np.int64)
  shifts = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in reach],
                                indexing="ij"), -1).reshape(-1, 3)
  n_shifts = len(shifts)
  if n * n_shifts > periodic.MAX_IMAGE_POINTS:
    raise ShearError(f"cell {cell.tolist()} is too small for cut-off "
                     f"{cutoff}: {n_shifts} images of {n} particles")
  images = (wrapped[None] + (shifts @ cell)[:, None]).reshape(-1, 3)
  found = spatial.cKDTree(wrapped).sparse_distance_matrix(
      spatial.cKDTree(images), cutoff, output_type="ndarray")
  i = found["i"].astype(np.int64)
  image = found["j"].astype(np.int64)
  j = image % n
  shift = shifts[image // n]
  # (i, j, n) is the pair (j, i, −n): keep i < j, and of a particle's own
  # images the one whose first non-zero shift component is positive.
  first = np.argmax(shift != 0, axis=1)
  positive = shift[np.arange(len(shift)), first] > 0
  keep = (i < j) | ((i == j) & positive)
  i, j, shift, image = i[keep], j[keep], shift[keep], image[keep]
  vectors = images[image] - wrapped[i]
  distances = np.linalg.norm(vectors, axis=-1)
  keep = distances < cutoff
  i, j, shift = i[keep], j[keep], shift[keep]
  vectors, distances = vectors[keep], distances[keep]
  order = np.lexsort((distances, j, i))
  return TriclinicPairs(i[order], j[order], shift[order], vectors[order],
                        distances[order])


# ------------------------------------------------------------- D²_min ------


class NonAffineResult(NamedTuple):
  """Non-affine motion between two configurations of the same particles.

  Fields:
    displacement: [n, 3] float64, σ_AA: r_i(after) − (r_i(before) mapped
      by the global affine deformation before → after), i.e. the change of
      fractional coordinates times the current cell.
    d2min: [n] float64, σ_AA², Falk-Langer D²_min (module docstring);
      0 for a particle with no neighbour.
    n_neighbours: [n] int64, neighbours within the cut-off (before).
  """
  displacement: np.ndarray
  d2min: np.ndarray
  n_neighbours: np.ndarray


def nonaffine_d2min(positions_before, positions_after, cell_before,
                    cell_after, cutoff: float = D2MIN_CUTOFF
                    ) -> NonAffineResult:
  """Non-affine displacements and D²_min (Falk & Langer 1998).

  Particles are matched by index. Each must have moved by less than half
  the cell between the two configurations relative to the affine map
  (true of consecutive AQS minima), so that the change of its fractional
  coordinates, taken modulo 1 into [−1/2, 1/2), is its real motion.

  For particle i with neighbours j (within `cutoff` before, each with its
  periodic image), d⁰_ij before and d_ij after (the same image), and
  u_ij = d_ij − d⁰_ij; with X = Σ u d⁰ᵀ and Y = Σ d⁰ d⁰ᵀ the best local
  map is J = 1 + X Y⁺ and

    D²_min = Σ |u_ij|² − tr(X Y⁺ Xᵀ),

  the least-squares residual written with u rather than d, so that no
  large numbers cancel. Y⁺ is the pseudo-inverse: with fewer than three
  non-coplanar neighbours the minimum over J is still this expression.

  Args:
    positions_before, positions_after: [n, 3] float, σ_AA, any image.
    cell_before, cell_after: [3, 3] float, rows = cell vectors.
    cutoff: neighbourhood radius, σ_AA.

  Returns:
    NonAffineResult.
  """
  before = np.asarray(positions_before, np.float64)
  after = np.asarray(positions_after, np.float64)
  if before.shape != after.shape or before.ndim != 2 or before.shape[1] != 3:
    raise ShearError(f"positions before {list(before.shape)} and after "
                     f"{list(after.shape)} must both be [n, 3]")
  cell_before = np.asarray(cell_before, np.float64)
  cell_after = np.asarray(cell_after, np.float64)
  n = before.shape[0]
  s0 = periodic.wrap(to_fractional(before, cell_before), np.ones(3))
  ds = to_fractional(after, cell_after) - s0
  ds = np.mod(ds + 0.5, 1.0) - 0.5
  s1 = s0 + ds  # after, in the same image as s0
  displacement = ds @ cell_after
  pairs = triclinic_neighbour_pairs(s0 @ cell_before, cell_before, cutoff)
  d0 = pairs.vectors
  d1 = (s1[pairs.j] + pairs.shifts - s1[pairs.i]) @ cell_after
  u = d1 - d0
  # Both ends of a pair see the same outer products (d and d⁰ flip sign
  # together), so each pair adds the same terms to i and to j.
  uu = np.einsum("pc,pc->p", u, u)
  x = np.einsum("pa,pb->pab", u, d0).reshape(-1, 9)
  y = np.einsum("pa,pb->pab", d0, d0).reshape(-1, 9)

  def per_particle(values):
    out = np.zeros((n,) + values.shape[1:], np.float64)
    np.add.at(out, pairs.i, values)
    np.add.at(out, pairs.j, values)
    return out

  sum_uu = per_particle(uu)
  big_x = per_particle(x).reshape(n, 3, 3)
  big_y = per_particle(y).reshape(n, 3, 3)
  count = (np.bincount(pairs.i, minlength=n) +
           np.bincount(pairs.j, minlength=n)).astype(np.int64)
  y_plus = np.linalg.pinv(big_y, hermitian=True)
  explained = np.einsum("nab,nbc,nac->n", big_x, y_plus, big_x)
  d2min = np.maximum(sum_uu - explained, 0.0)
  return NonAffineResult(displacement, d2min, count)


def rearranging_particles(d2min, threshold: float = REARRANGING_D2MIN,
                          top_k: int = 0) -> np.ndarray:
  """[n] bool: D²_min > threshold, or (top_k > 0) the top_k largest.

  Ties at the k-th value are broken by index (stable sort), as
  metrics.top_mask.
  """
  d2min = np.asarray(d2min, np.float64).reshape(-1)
  mask = np.zeros(d2min.shape, bool)
  if top_k:
    if top_k > d2min.size:
      raise ShearError(f"rearranging_top_k = {top_k} exceeds the "
                       f"{d2min.size} particles")
    mask[np.argsort(-d2min, kind="stable")[:int(top_k)]] = True
    return mask
  return d2min > threshold


# ------------------------------------------------------- event detection ---


class StepTest(NamedTuple):
  """Whether one AQS step was a plastic event, and why.

  Fields:
    is_event: the stress loss exceeded the threshold and some particle
      moved non-affinely by more than `min_event_displacement`.
    stress_loss: ε_AA/σ_AA³, the expected elastic increment minus the
      measured one, σ_{k−1} + ⟨Δσ⟩ − σ_k (> 0: stress relaxed).
    expected_increment: ⟨Δσ⟩, median of the recent elastic increments (0
      before `min_noise_steps` of them are known).
    threshold: ε_AA/σ_AA³, what the loss had to exceed.
  """
  is_event: bool
  stress_loss: float
  expected_increment: float
  threshold: float


def test_step(increments, is_event, increment: float, max_nonaffine: float,
              settings: ShearSettings) -> StepTest:
  """Classifies AQS step k from its stress increment (module docstring).

  On an elastic branch the stress grows by about G·Δγ per step; an event
  relaxes part of it. The loss relative to the elastic branch,
  ⟨Δσ⟩ − Δσ_k with ⟨Δσ⟩ the median of the last `noise_window` elastic
  increments, must exceed `drop_factor` × their spread (1.4826 × median
  absolute deviation), and at least `min_stress_drop`. Using the loss rather
  than the bare drop σ_{k−1} − σ_k keeps events whose drop is smaller than
  one elastic increment, as localised events in large systems are (their
  Δσ ∝ 1/N); the two coincide as Δγ → 0. Before `min_noise_steps` elastic
  increments are known, ⟨Δσ⟩ = 0 and the threshold is `min_stress_drop`
  (the stress must fall).

  A stress loss alone also flags the tiny instabilities of poorly annealed
  glasses (an N = 250 glass quenched from T = 2 showed losses of ~2e-3 with
  no particle moving more than 0.005 σ), which rearrange nothing; a step is
  an event only if, in addition, some particle moved non-affinely by more
  than `min_event_displacement` (0.05 σ; the first rearrangements we
  measured moved their core by ~0.2 σ, elastic steps ~3e-4 σ).

  Args:
    increments: [k − 1] float, σ_m − σ_{m−1} of the previous steps.
    is_event: [k − 1] bool, which of those were events (left out).
    increment: σ_k − σ_{k−1}, ε_AA/σ_AA³.
    max_nonaffine: largest non-affine displacement of step k, σ_AA.
    settings: ShearSettings.

  Returns:
    StepTest.
  """
  increments = np.asarray(increments, np.float64)
  elastic = increments[~np.asarray(is_event, bool)][-settings.noise_window:]
  expected, threshold = 0.0, settings.min_stress_drop
  if elastic.size >= max(1, settings.min_noise_steps):
    expected = float(np.median(elastic))
    noise = MAD_TO_STD * float(np.median(np.abs(elastic - expected)))
    threshold = max(settings.drop_factor * noise, settings.min_stress_drop)
  loss = expected - float(increment)
  return StepTest(
      is_event=bool(loss > threshold and
                    max_nonaffine > settings.min_event_displacement),
      stress_loss=loss, expected_increment=expected, threshold=threshold)


def find_plastic_events(stress, max_nonaffine,
                        settings: ShearSettings) -> np.ndarray:
  """Steps k (>= 1) of an AQS curve where a plastic event happened.

  The AQS loop applies `test_step` step by step; this re-derives the
  events from a finished curve (ShearResult.stress, .max_nonaffine).

  Args:
    stress: [s + 1] float, σ_xy at γ = 0, Δγ, 2Δγ, ...
    max_nonaffine: [s + 1] float, σ_AA, largest non-affine displacement of
      each step (entry 0 unused).
    settings: ShearSettings.

  Returns:
    [n_events] int64 step indices into `stress`.
  """
  increments = np.diff(np.asarray(stress, np.float64))
  max_nonaffine = np.asarray(max_nonaffine, np.float64)
  flags = np.zeros(increments.shape, bool)
  for m in range(increments.size):
    flags[m] = test_step(increments[:m], flags[:m], increments[m],
                         max_nonaffine[m + 1], settings).is_event
  return np.flatnonzero(flags).astype(np.int64) + 1


# ----------------------------------------------------------- LAMMPS side ---


def _open_session(positions, types, box, xy: float,
                  minimiser: minimise_lib.MinimiserSettings
                  ) -> engine.KobAndersenSimulation:
  """A KA session (engine.py's setup) in the cell tilted by `xy`.

  The atoms are created by the engine in ID order, the box is made
  triclinic (`change_box all triclinic`) and tilted, and only then are the
  given coordinates scattered into LAMMPS bit for bit (the engine would
  have wrapped them into the orthorhombic box); LAMMPS wraps them into the
  tilted cell at its next setup.
  """
  box = np.asarray(box, np.float64)
  positions = np.ascontiguousarray(positions, np.float64)
  sim = engine.KobAndersenSimulation(positions, types, box,
                                     timestep=minimiser.timestep,
                                     accelerator=minimiser.accelerator)
  try:
    lmp = sim.lmp
    lmp.commands_string(f"""
change_box all triclinic
change_box all xy final {float(xy)!r} units box
""")
    minimise_lib.add_virial_compute(lmp)
    lmp.scatter("x", 1, 3, positions.ravel().ctypes.data_as(
        ctypes.POINTER(ctypes.c_double)))
  except Exception:
    sim.close()
    raise
  return sim


def _coordinates(sim: engine.KobAndersenSimulation) -> np.ndarray:
  """[n, 3] LAMMPS coordinates x, ordered by atom ID, bit for bit."""
  n = sim.n_particles
  return np.ctypeslib.as_array(sim.lmp.gather("x", 1, 3)).reshape(
      n, 3).copy()


# ---------------------------------------------------------------- result ---


# Per-step curve arrays of ShearResult and the checkpoint, [n_steps + 1],
# and per-event arrays, [n_events].
CURVE_FIELDS = ("strain", "stress", "potential_energy", "pressure",
                "max_force", "max_nonaffine", "iterations")
EVENT_FIELDS = ("event_steps", "event_stress_drops", "event_stress_losses",
                "event_thresholds", "event_energy_drops")


@dataclasses.dataclass(frozen=True)
class ShearResult:
  """An AQS run and its first plastic event.

  Attributes:
    positions: [n, 3] float64, the quenched configuration at γ = 0,
      wrapped into the orthorhombic [0, box): the input of predictors.
    types: [n] int32.
    box: [3] float64, σ_AA.
    particle_energies: [n] float64, ε_AA, per-particle energy at γ = 0.
    strain: [s + 1] float64, γ_k = k·Δγ, k = 0..s.
    stress: [s + 1] float64, σ_xy, ε_AA/σ_AA³.
    potential_energy: [s + 1] float64, ε_AA per particle.
    pressure: [s + 1] float64, virial pressure, ε_AA/σ_AA³.
    max_force: [s + 1] float64, largest force component after
      minimisation, ε_AA/σ_AA.
    max_nonaffine: [s + 1] float64, σ_AA, largest non-affine displacement
      of a particle between steps k − 1 and k (0 at k = 0).
    iterations: [s + 1] int64, minimiser iterations of each step.
    event_steps: [e] int64, steps k where σ dropped (events).
    event_stress_drops: [e] float64, σ_{k−1} − σ_k, ε_AA/σ_AA³.
    event_stress_losses: [e] float64, the loss against the elastic branch
      (`StepTest.stress_loss`), ε_AA/σ_AA³.
    event_thresholds: [e] float64, the threshold each loss exceeded.
    event_energy_drops: [e] float64, U_{k−1} − U_k, ε_AA per particle.
    positions_before, positions_after: [n, 3] float64, the minima at steps
      k − 1 and k of the first event (wrapped into their cells); NaN if no
      event.
    cell_before, cell_after: [3, 3] float64, their cells (NaN if none).
    nonaffine_displacement: [n, 3] float64, σ_AA (NaN if no event).
    d2min: [n] float64, σ_AA², D²_min of the first event (NaN if none).
    rearranging: [n] bool, the particles that rearranged in it.
    settings: ShearSettings.
    quench_iterations: minimiser iterations of the quench.
  """
  positions: np.ndarray
  types: np.ndarray
  box: np.ndarray
  particle_energies: np.ndarray
  strain: np.ndarray
  stress: np.ndarray
  potential_energy: np.ndarray
  pressure: np.ndarray
  max_force: np.ndarray
  max_nonaffine: np.ndarray
  iterations: np.ndarray
  event_steps: np.ndarray
  event_stress_drops: np.ndarray
  event_stress_losses: np.ndarray
  event_thresholds: np.ndarray
  event_energy_drops: np.ndarray
  positions_before: np.ndarray
  positions_after: np.ndarray
  cell_before: np.ndarray
  cell_after: np.ndarray
  nonaffine_displacement: np.ndarray
  d2min: np.ndarray
  rearranging: np.ndarray
  settings: ShearSettings
  quench_iterations: int = 0

  @property
  def n_particles(self) -> int:
    return int(self.positions.shape[0])

  @property
  def has_event(self) -> bool:
    return bool(self.event_steps.size)

  @property
  def first_event_strain(self) -> float:
    """γ at the step after the first drop (NaN if none)."""
    return (float(self.strain[self.event_steps[0]]) if self.has_event else
            math.nan)

  def shear_modulus(self, max_strain: Optional[float] = None) -> float:
    """G, ε_AA/σ_AA³: least-squares slope of σ(γ) up to `max_strain`
    (default: the step before the first event, or the whole curve)."""
    last = (int(self.event_steps[0]) - 1 if self.has_event else
            len(self.strain) - 1)
    if max_strain is not None:
      last = min(last, int(np.searchsorted(self.strain, max_strain,
                                           side="right")) - 1)
    if last < 1:
      return math.nan
    return float(np.polyfit(self.strain[:last + 1],
                            self.stress[:last + 1], 1)[0])

  def as_arrays(self) -> dict:
    arrays = {f.name: np.asarray(getattr(self, f.name))
              for f in dataclasses.fields(self) if f.name != "settings"}
    arrays.update(self.settings.as_arrays())
    arrays["format_version"] = np.asarray(FORMAT_VERSION, np.int32)
    return arrays

  @classmethod
  def from_arrays(cls, arrays: dict, source: str = "<arrays>"
                  ) -> "ShearResult":
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name != "settings" and f.name not in arrays]
    if missing:
      raise ShearError(f"{source}: not a shear result, missing {missing}")
    kwargs = {f.name: np.asarray(arrays[f.name])
              for f in dataclasses.fields(cls) if f.name != "settings"}
    kwargs["quench_iterations"] = int(kwargs["quench_iterations"])
    kwargs["rearranging"] = kwargs["rearranging"].astype(bool)
    return cls(settings=ShearSettings.from_arrays(arrays), **kwargs)


def save(result: ShearResult, path: str) -> None:
  """Writes a ShearResult as .npz (numeric arrays only), atomically."""
  buffer = _io.BytesIO()
  np.savez_compressed(buffer, **result.as_arrays())
  npz_format.write_atomic_bytes(path, buffer.getvalue())


def load(path: str) -> ShearResult:
  """Reads a ShearResult written by `save` (allow_pickle=False)."""
  with np.load(path, allow_pickle=False) as data:
    arrays = {k: data[k] for k in data.files}
  return ShearResult.from_arrays(arrays, path)


# ------------------------------------------------------------ AQS loop -----


def _nan_event_arrays(n: int) -> dict:
  return {"positions_before": np.full((n, 3), np.nan),
          "positions_after": np.full((n, 3), np.nan),
          "cell_before": np.full((3, 3), np.nan),
          "cell_after": np.full((3, 3), np.nan)}


def _input_arrays(positions, types, box) -> dict:
  return {"input_positions": np.asarray(positions, np.float64),
          "input_types": np.asarray(types, np.int32),
          "input_box": np.asarray(box, np.float64)}


def _write_checkpoint(path: str, arrays: dict) -> None:
  buffer = _io.BytesIO()
  np.savez(buffer, **arrays)
  npz_format.write_atomic_bytes(path, buffer.getvalue())


def _read_checkpoint(path: str, inputs: dict, settings: ShearSettings
                     ) -> dict:
  """The arrays of a checkpoint, checked against the inputs and settings."""
  with np.load(path, allow_pickle=False) as data:
    arrays = {k: data[k] for k in data.files}
  if int(arrays.get("format_version", -1)) != FORMAT_VERSION:
    raise ShearError(f"{path}: checkpoint format_version "
                     f"{arrays.get('format_version')}, expected "
                     f"{FORMAT_VERSION}")
  for key, value in inputs.items():
    if key not in arrays or not np.array_equal(arrays[key], value):
      raise ShearError(f"{path}: the checkpoint was made from another "
                       f"configuration ('{key}' differs); delete it or "
                       f"choose another checkpoint path")
  for key, value in settings.as_arrays().items():
    if key not in arrays or not np.array_equal(arrays[key], value):
      found = arrays[key] if key in arrays else "nothing"
      raise ShearError(
          f"{path}: the checkpoint was made with {key[len('setting_'):]} = "
          f"{found}, not {value}; delete it or use the same settings")
  return arrays


def athermal_quasistatic_shear(
    positions, types, box,
    settings: ShearSettings = ShearSettings(),
    checkpoint_path: Optional[str] = None,
    log: Callable[[str], None] = print) -> ShearResult:
  """Quenches a configuration and shears it quasistatically (module doc).

  Resumable: with `checkpoint_path`, the state is saved there every
  `settings.checkpoint_every` steps (and at the end); a later call with the
  same inputs and settings resumes from it, and returns the finished result
  at once if the run had completed. A kill at any point loses at most one
  segment, and the resumed result is bit-identical to an uninterrupted one.

  Args:
    positions: [n, 3] float, σ_AA, any configuration (quenched here).
    types: [n] int, 0 = A, 1 = B.
    box: [3] float, orthorhombic box edges, σ_AA.
    settings: ShearSettings.
    checkpoint_path: .npz checkpoint to write/resume, or None.
    log: progress messages.

  Returns:
    ShearResult.

  Raises:
    ShearError: bad settings/inputs, or a checkpoint of another run.
  """
  box = np.asarray(box, np.float64)
  settings.validate(box)
  inputs = _input_arrays(positions, types, box)
  n = inputs["input_positions"].shape[0]
  start_time = time.time()
  if checkpoint_path and os.path.exists(checkpoint_path):
    arrays = _read_checkpoint(checkpoint_path, inputs, settings)
    log(f"shear: resuming {checkpoint_path} at step "
        f"{len(arrays['strain']) - 1}")
  else:
    try:
      quenched = minimise_lib.minimise(positions, types, box,
                                       settings.minimiser)
    except minimise_lib.MinimiserError as e:
      raise ShearError(f"quench: {e}") from e
    log(f"shear: quenched U/N {quenched.initial_potential_energy:.4f} -> "
        f"{quenched.potential_energy:.4f}, max force "
        f"{quenched.max_force:.2g} ({quenched.iterations} iterations)")
    arrays = dict(inputs)
    arrays.update(settings.as_arrays())
    arrays.update(_nan_event_arrays(n))
    arrays.update(
        format_version=np.asarray(FORMAT_VERSION, np.int32),
        positions=quenched.positions, types=quenched.types,
        box=quenched.box, particle_energies=quenched.particle_energies,
        quench_iterations=np.asarray(quenched.iterations, np.int64),
        state_x=quenched.positions, complete=np.asarray(False),
        strain=np.zeros(1), stress=np.asarray([quenched.stress]),
        potential_energy=np.asarray([quenched.potential_energy]),
        pressure=np.asarray([quenched.pressure]),
        max_force=np.asarray([quenched.max_force]),
        max_nonaffine=np.zeros(1),
        iterations=np.asarray([quenched.iterations], np.int64),
        event_steps=np.zeros(0, np.int64),
        event_stress_drops=np.zeros(0),
        event_stress_losses=np.zeros(0), event_thresholds=np.zeros(0),
        event_energy_drops=np.zeros(0))
    if checkpoint_path:
      _write_checkpoint(checkpoint_path, arrays)
  while not bool(arrays["complete"]):
    k0 = len(arrays["strain"]) - 1
    arrays = _run_segment(arrays, settings)
    if checkpoint_path:
      _write_checkpoint(checkpoint_path, arrays)
    k = len(arrays["strain"]) - 1
    force = arrays["max_force"][k0 + 1:]
    for j in np.flatnonzero(force > 10 * settings.minimiser.force_tolerance):
      log(f"shear: warning: step {k0 + 1 + j} ended with a force of "
          f"{force[j]:.3g} ε/σ, above 10 × force_tolerance (minimiser "
          f"stalled; raise max_iterations?)")
    elapsed = time.time() - start_time
    log(f"shear: step {k}/{settings.n_steps} γ = {arrays['strain'][-1]:.4f} "
        f"σ_xy = {arrays['stress'][-1]:.4f} events "
        f"{len(arrays['event_steps'])} ({elapsed:.1f} s)")
  return _finish(arrays, settings)


def _run_segment(arrays: dict, settings: ShearSettings) -> dict:
  """Up to `checkpoint_every` AQS steps from the checkpointed state."""
  arrays = {k: np.array(v) for k, v in arrays.items()}
  curve = {name: list(arrays[name]) for name in CURVE_FIELDS}
  events = {name: list(arrays[name]) for name in EVENT_FIELDS}
  box = arrays["box"]
  k0 = len(curve["strain"]) - 1
  length_y = float(box[1])

  def gamma(k):
    return k * float(settings.strain_step)

  x_previous = arrays["state_x"]
  cell_previous = sheared_cell(box, gamma(k0))
  stop_at = settings.n_steps
  if settings.stop_after_events and len(events["event_steps"]) >= (
      settings.stop_after_events):
    stop_at = min(stop_at, int(events["event_steps"][
        settings.stop_after_events - 1]) + settings.extra_steps)
  with _open_session(x_previous, arrays["types"], box,
                     gamma(k0) * length_y, settings.minimiser) as sim:
    lmp = sim.lmp
    for k in range(k0 + 1, min(k0 + settings.checkpoint_every, stop_at) + 1):
      # `final` (not `delta`) so that the tilt is k·Δγ·L_y exactly, however
      # the run was split into segments.
      lmp.command(f"change_box all xy final {gamma(k) * length_y!r} remap "
                  "units box")
      try:
        iterations = minimise_lib.run_minimiser(
            lmp, settings.minimiser).iterations
      except minimise_lib.MinimiserError as e:
        raise ShearError(f"AQS step {k} (γ = {gamma(k):.6g}): {e}") from e
      observed = minimise_lib.observe(lmp)
      x = _coordinates(sim)
      cell = sheared_cell(box, gamma(k))
      ds = to_fractional(x, cell) - to_fractional(x_previous, cell_previous)
      ds = np.mod(ds + 0.5, 1.0) - 0.5
      max_nonaffine = float(np.linalg.norm(ds @ cell, axis=-1).max())
      increments = np.diff(curve["stress"])
      flags = np.isin(np.arange(1, len(curve["stress"])),
                      events["event_steps"])
      step = test_step(increments, flags,
                       observed.stress - curve["stress"][-1], max_nonaffine,
                       settings)
      if step.is_event:
        if not events["event_steps"]:
          arrays["positions_before"] = wrap_cell(x_previous, cell_previous)
          arrays["positions_after"] = wrap_cell(x, cell)
          arrays["cell_before"] = cell_previous
          arrays["cell_after"] = cell
        for name, value in (
            ("event_steps", k),
            ("event_stress_drops", curve["stress"][-1] - observed.stress),
            ("event_stress_losses", step.stress_loss),
            ("event_thresholds", step.threshold),
            ("event_energy_drops",
             curve["potential_energy"][-1] - observed.potential_energy)):
          events[name].append(value)
        if (settings.stop_after_events and
            len(events["event_steps"]) == settings.stop_after_events):
          stop_at = min(stop_at, k + settings.extra_steps)
      for name, value in (("strain", gamma(k)), ("stress", observed.stress),
                          ("potential_energy", observed.potential_energy),
                          ("pressure", observed.pressure),
                          ("max_force", observed.max_force),
                          ("max_nonaffine", max_nonaffine),
                          ("iterations", iterations)):
        curve[name].append(value)
      x_previous, cell_previous = x, cell
      if k >= stop_at:
        break
  for name in CURVE_FIELDS:
    arrays[name] = np.asarray(curve[name], arrays[name].dtype)
  for name, values in events.items():
    arrays[name] = np.asarray(values, arrays[name].dtype)
  arrays["state_x"] = x_previous
  arrays["complete"] = np.asarray(len(curve["strain"]) - 1 >= stop_at)
  return arrays


def _finish(arrays: dict, settings: ShearSettings) -> ShearResult:
  n = arrays["positions"].shape[0]
  if arrays["event_steps"].size:
    nonaffine = nonaffine_d2min(arrays["positions_before"],
                                arrays["positions_after"],
                                arrays["cell_before"], arrays["cell_after"],
                                settings.d2min_cutoff)
    displacement, d2min = nonaffine.displacement, nonaffine.d2min
    rearranging = rearranging_particles(d2min, settings.rearranging_d2min,
                                        settings.rearranging_top_k)
  else:
    displacement = np.full((n, 3), np.nan)
    d2min = np.full(n, np.nan)
    rearranging = np.zeros(n, bool)
  fields = {f.name for f in dataclasses.fields(ShearResult)} - {
      "settings", "nonaffine_displacement", "d2min", "rearranging"}
  return ShearResult(
      settings=settings, nonaffine_displacement=displacement, d2min=d2min,
      rearranging=rearranging,
      **{name: (int(arrays[name]) if name == "quench_iterations" else
                np.asarray(arrays[name])) for name in fields})


def first_event_summary(result: ShearResult) -> dict:
  """JSON-friendly numbers of the first event (empty dict if none)."""
  if not result.has_event:
    return {}
  k = int(result.event_steps[0])
  return {
      "step": k,
      "strain": float(result.strain[k]),
      "stress_drop": float(result.event_stress_drops[0]),
      "stress_loss": float(result.event_stress_losses[0]),
      "energy_drop_per_particle": float(result.event_energy_drops[0]),
      "threshold": float(result.event_thresholds[0]),
      "max_nonaffine_displacement": float(result.max_nonaffine[k]),
      "max_d2min": float(np.max(result.d2min)),
      "n_rearranging": int(result.rearranging.sum()),
  }


__all__ = [
    "ShearSettings", "ShearResult",
    "NonAffineResult", "TriclinicPairs", "ShearError",
    "athermal_quasistatic_shear", "nonaffine_d2min", "rearranging_particles",
    "find_plastic_events", "test_step", "StepTest", "cell_matrix",
    "sheared_cell", "to_fractional", "wrap_cell", "perpendicular_widths",
    "triclinic_minimum_image", "triclinic_neighbour_pairs", "save", "load",
    "first_event_summary", "CURVE_FIELDS",
]
