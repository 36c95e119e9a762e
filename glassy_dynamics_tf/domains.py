"""Exact prediction of large boxes, domain by domain (`predict_main.py`).

A particle's prediction depends only on particles closer than
num_recurrences x cutoff (its receptive field): each core step passes
messages along edges shorter than the cut-off, and the encoder and decoder
act on single nodes and edges (model.EncodeProcessDecode). So the box is cut
into a grid of domains; each call sees one domain's particles plus every
particle within `halo` of it (the "region"), and only the domain's own
particles (its "interior") keep their outputs.

The region's particles are passed with their original coordinates and the
original box. The graph built inside `predict` is then exactly the
whole-box graph restricted to the region: the same pairs, the same float64
minimum image, bit-identical edge vectors (edges through the periodic
boundary are real edges of the whole box, not artefacts). Every node within
num_recurrences - 1 hops of an interior particle has all its neighbours in
the region, so interior outputs equal the whole-box ones up to the order of
float32 sums. (Shifting each region to the origin in a smaller box, as a
classical halo exchange does, would round the coordinates of periodic
images and could flip edges within ~1e-6 σ of the cut-off.)

```
 plan_domains(positions, box, halo, max_particles) -> DomainDecomposition
   │ the fewest domains whose regions (domain + halo) fit the budget
   ▼
 iter_domains -> Domain(index, region, interior)
   ▼
 predict_with_decomposition(predict_fn, ...) -> DomainPrediction
   one predict_fn call per region; the interior keeps its outputs
```
"""

import math
import time
from typing import Callable, Iterator, NamedTuple, Optional, Tuple

import numpy as np

from glassy_dynamics_tf import periodic

# Particles per call, halo included, when the caller asks for "auto" (0).
# Measured peak of one call of this size (benchmarks/results/
# inference_scaling.md): ~3.1 GiB for the demo network, 5.4 GiB for the
# paper's (74 KiB per particle). The halo makes smaller domains wasteful:
# for the paper's network (halo 7 x 2.0 σ, whose cube alone holds ~26,000
# particles at ρ = 1.2) this budget already means ~60 x redundant work;
# 131,072 cuts that to 10-15 x for ~10 GiB.
DEFAULT_MAX_PARTICLES_PER_DOMAIN = 65536
# Added to num_recurrences x cutoff. The region test and the graph builder
# both work in float64 on the same float32 coordinates, so any margin far
# above float64 round-off (1e-14 σ) is safe; it costs a 0.01 σ thicker halo.
HALO_MARGIN = 0.01
# Narrowest domain considered, as a fraction of the halo: its region holds
# (2 + 1/8)^3 / 2^3 = 1.2 x the halo cube (the limit for vanishing width),
# so narrower domains would add calls and save little memory.
_MIN_WIDTH_PER_HALO = 1 / 8
_MAX_DOMAINS_PER_AXIS = 256



class DomainError(ValueError):
  """Bad arguments of the domain decomposition (names the argument)."""


class DomainDecomposition(NamedTuple):
  """How a box is cut into domains.

  Attributes:
    grid: domains per axis (k_x, k_y, k_z); 1 = the axis is not split (its
      regions span the whole periodic axis).
    box: [3] float64, box edges, σ_AA units.
    halo: σ_AA units, added on both sides of a domain along split axes.
    max_particles: the budget the grid was chosen for (particles per call).
    region_particles: [k_x, k_y, k_z] int64, particles per call (interior
      plus halo).
    interior_particles: [k_x, k_y, k_z] int64, particles each domain
      predicts; they sum to n.
  """
  grid: Tuple[int, int, int]
  box: np.ndarray
  halo: float
  max_particles: int
  region_particles: np.ndarray
  interior_particles: np.ndarray

  @property
  def n_domains(self) -> int:
    return int(np.prod(self.grid))

  @property
  def widths(self) -> np.ndarray:
    """[3] float64, domain edges, σ_AA units."""
    return self.box / np.asarray(self.grid, np.float64)

  @property
  def work(self) -> float:
    """Particles evaluated per particle predicted (1 = no redundancy)."""
    return float(self.region_particles.sum() /
                 max(1, self.interior_particles.sum()))

  def describe(self) -> str:
    """One line for logs: grid, widths, particles per call, redundancy."""
    if self.n_domains == 1:
      return (f"whole box in one call ({int(self.interior_particles.sum()):,}"
              f" particles, budget {self.max_particles:,})")
    widths = " x ".join(f"{w:.2f}" for w in self.widths)
    return (f"{' x '.join(map(str, self.grid))} = {self.n_domains} domains "
            f"of {widths} σ, halo {self.halo:.2f} σ: "
            f"{int(self.region_particles.min()):,}-"
            f"{int(self.region_particles.max()):,} particles per call "
            f"(budget {self.max_particles:,}), {self.work:.2f} x the "
            f"particles evaluated")


class Domain(NamedTuple):
  """One call of a decomposition.

  Attributes:
    index: (i, j, k) position in the grid.
    region: [r] int64, ascending indices of the particles passed to the
      model (interior and halo).
    interior: [r] bool, which of them keep their outputs.
  """
  index: Tuple[int, int, int]
  region: np.ndarray
  interior: np.ndarray


class DomainProgress(NamedTuple):
  """Reported after each call of `predict_in_domains`."""
  done: int                  # calls finished, 1 ... n_domains
  n_domains: int
  index: Tuple[int, int, int]
  region_particles: int
  interior_particles: int
  seconds: float             # wall time of this call


class DomainPrediction(NamedTuple):
  """propensity [n, n_outputs] float32 (σ_AA) and how it was computed."""
  propensity: np.ndarray
  decomposition: DomainDecomposition


def resolve_max_particles(value: int) -> Optional[int]:
  """predict_main's convention -> a budget: 0 -> the default, -1 -> None
  (never decompose), n > 0 -> n.

  Raises:
    DomainError: any other value.
  """
  if isinstance(value, bool) or int(value) != value or value < -1:
    raise DomainError(
        f"max_particles: expected -1 (never decompose), 0 (auto: "
        f"{DEFAULT_MAX_PARTICLES_PER_DOMAIN:,}) or a positive number of "
        f"particles per call, got {value!r}")
  value = int(value)
  if value == -1:
    return None
  return value or DEFAULT_MAX_PARTICLES_PER_DOMAIN


def _check_inputs(positions, box, halo, max_particles):
  """Validated float64 wrapped positions [n, 3] and box [3]."""
  positions = np.asarray(positions)
  box = np.asarray(box, np.float64)
  if positions.ndim != 2 or positions.shape[1] != 3 or not len(positions):
    raise DomainError(f"positions: expected shape [n_particles >= 1, 3], got "
                      f"{list(positions.shape)}")
  if not np.all(np.isfinite(positions)):
    raise DomainError("positions: non-finite values (NaN or inf)")
  if box.shape != (3,) or not np.all(np.isfinite(box)) or np.any(box <= 0):
    raise DomainError(f"box: expected 3 finite edges > 0, got {box.tolist()}")
  if not halo > 0:  # also NaN; inf is allowed (never split).
    raise DomainError(f"halo: must be > 0 σ (num_recurrences x cutoff plus "
                      f"a margin), got {halo!r}")
  if (isinstance(max_particles, bool) or int(max_particles) != max_particles
      or max_particles < 1):
    raise DomainError(f"max_particles: must be a positive number of "
                      f"particles per call, got {max_particles!r}")
  # The same wrap as the graph builder (float64 of the float32 inputs).
  return np.asarray(periodic.wrap(positions.astype(np.float64), box)), box


def _axis_domains(x: np.ndarray, length: float, k: int, halo: float):
  """Domains of one axis for every particle.

  Domain j covers [j w, (j + 1) w), w = length / k, and its region the arc
  [j w - halo, (j + 1) w + halo) of the periodic axis.

  Args:
    x: [n] float64, coordinates in [0, length).
    length: axis edge, σ_AA units.
    k: domains along the axis (1: the region is the whole axis).
    halo: σ_AA units.

  Returns:
    interior [n] int64 (the particle's domain), first [n] int64 and span [n]
    int64: the particle lies in the regions of domains first, first + 1, ...,
    first + span (mod k). The interior domain is always among them.
  """
  n = x.shape[0]
  if k == 1:
    zeros = np.zeros(n, np.int64)
    return zeros, zeros, zeros
  width = length / k
  interior = np.minimum(np.floor(x / width).astype(np.int64), k - 1)
  # x in [j w - h, (j + 1) w + h)  <=>  floor((x - h) / w) <= j
  #                                      <= floor((x + h) / w).
  low = np.floor((x - halo) / width).astype(np.int64)
  high = np.floor((x + halo) / width).astype(np.int64)
  low = np.minimum(low, interior)   # guards against round-off at the edges
  high = np.maximum(high, interior)
  span = np.minimum(high - low, k - 1)
  return interior, np.mod(low, k), span


def _region_counts(axes, grid):
  """Exact particles per region and per interior, [k_x, k_y, k_z] int64.

  Args:
    axes: per axis, `_axis_domains`' (interior, first, span) for grid[a].
    grid: (k_x, k_y, k_z).
  """
  interior = np.bincount(
      np.ravel_multi_index([a[0] for a in axes], grid),
      minlength=int(np.prod(grid))).reshape(grid)
  # Particles with the same (first, span) on an axis belong to the same
  # regions of that axis: count each combination once, then expand.
  codes, patterns = [], []
  for (_, first, span), k in zip(axes, grid):
    code = first * k + span                          # < k^2
    present = np.flatnonzero(np.bincount(code, minlength=k * k))
    lookup = np.zeros(k * k, np.int64)
    lookup[present] = np.arange(present.size)
    j = np.arange(k)
    patterns.append((np.mod(j[None, :] - (present // k)[:, None], k)
                     <= (present % k)[:, None]).astype(np.int64))
    codes.append(lookup[code])
  sizes = [p.shape[0] for p in patterns]
  histogram = np.bincount(np.ravel_multi_index(codes, sizes),
                          minlength=int(np.prod(sizes))).reshape(sizes)
  region = np.einsum("xa,yb,zc,xyz->abc", *patterns, histogram,
                     optimize=True)
  return region, interior


def _candidate_grids(box, halo):
  """[m, 3] int64 grids worth trying: per axis k = 1, or k >= 2 such that a
  region (width + 2 halo) is shorter than the axis, and width >= halo / 8."""
  per_axis = []
  for length in box:
    ks = [1]
    if math.isfinite(halo):
      top = min(_MAX_DOMAINS_PER_AXIS,
                int(length / (halo * _MIN_WIDTH_PER_HALO)))
      ks += [k for k in range(2, top + 1) if length / k + 2 * halo < length]
    per_axis.append(np.asarray(ks, np.int64))
  mesh = np.meshgrid(*per_axis, indexing="ij")
  return np.stack([m.reshape(-1) for m in mesh], axis=-1)


def plan_domains(positions, box, halo: float,
                 max_particles: int) -> DomainDecomposition:
  """The grid with the fewest domains whose calls hold <= max_particles.

  Grids are ranked by number of domains (then by the largest region
  expected at uniform density); the first whose exact largest region fits
  the budget wins. An axis is split into k only if a region (L/k + 2 halo)
  is shorter than the axis L; otherwise its regions span the whole axis.
  Domains narrower than halo / 8 are not considered (they would be almost
  all halo). A whole box that fits is one call (grid (1, 1, 1)).

  Args:
    positions: [n, 3] float, σ_AA units (any coordinates; wrapped here).
    box: [3] float, orthorhombic box edges, σ_AA units.
    halo: σ_AA units, > 0: at least the receptive field (num_recurrences x
      cutoff); math.inf never splits.
    max_particles: particles per call, halo included, >= 1.

  Returns:
    DomainDecomposition.

  Raises:
    DomainError: a bad argument, or no grid meets the budget (the message
      gives the smallest region found).
  """
  wrapped, box = _check_inputs(positions, box, halo, max_particles)
  n = wrapped.shape[0]
  grids = _candidate_grids(box, halo)
  extent = np.where(grids == 1, box, box / grids + 2 * halo)
  expected = n * np.prod(extent / box, axis=-1)
  cache = {}

  def counts(grid):
    axes = []
    for a, k in enumerate(grid):
      if (a, k) not in cache:
        cache[a, k] = _axis_domains(wrapped[:, a], box[a], k, halo)
      axes.append(cache[a, k])
    return _region_counts(axes, grid)

  for g in np.lexsort((expected, np.prod(grids, axis=-1))):
    if expected[g] > max_particles:
      continue
    grid = tuple(int(k) for k in grids[g])
    region, interior = counts(grid)
    if region.max() <= max_particles:
      return DomainDecomposition(grid, box, float(halo), int(max_particles),
                                 region, interior)
  grid = tuple(int(k) for k in grids[int(np.argmin(expected))])
  smallest = int(counts(grid)[0].max())
  raise DomainError(
      f"max_particles: {max_particles:,} particles per call is too small for "
      f"a halo of {halo:.2f} σ in a box of {box.tolist()} σ ({n:,} "
      f"particles): the smallest domains tried (grid {grid}) need "
      f"{smallest:,} particles per call; give at least that, or -1 to "
      f"predict the whole box at once")


def iter_domains(positions, decomposition: DomainDecomposition
                 ) -> Iterator[Domain]:
  """The particles of each call, in grid order.

  Args:
    positions: [n, 3] float, the positions `decomposition` was planned for.
    decomposition: from `plan_domains`.

  Yields:
    Domain(index, region, interior); every particle is interior to exactly
    one domain.
  """
  wrapped = np.asarray(periodic.wrap(
      np.asarray(positions, np.float64), decomposition.box))
  grid = decomposition.grid
  axes = [_axis_domains(wrapped[:, a], decomposition.box[a], grid[a],
                        decomposition.halo) for a in range(3)]

  def member(axis, j):
    interior, first, span = axes[axis]
    return np.mod(j - first, grid[axis]) <= span, interior == j

  for i in range(grid[0]):
    in_x, own_x = member(0, i)
    for j in range(grid[1]):
      in_y, own_y = member(1, j)
      in_xy, own_xy = in_x & in_y, own_x & own_y
      for k in range(grid[2]):
        in_z, own_z = member(2, k)
        region = np.flatnonzero(in_xy & in_z)
        yield Domain((i, j, k), region, (own_xy & own_z)[region])


def predict_in_domains(
    predict_fn: Callable[..., np.ndarray], positions, types, box,
    halo: float, max_particles: int,
    progress: Optional[Callable[[DomainProgress], None]] = None
) -> DomainPrediction:
  """Whole-box predictions, computed one domain (plus halo) at a time.

  `plan_domains`, then `predict_with_decomposition`.

  Args:
    predict_fn: (positions [r, 3] float32, types [r] int32, box [3] float32)
      -> [r, n_outputs], e.g. `Predictor.predict`. Its output for a particle
      must depend only on particles closer than `halo`.
    positions: [n, 3] float32, σ_AA units (any coordinates).
    types: [n] int32, 0 = A, 1 = B.
    box: [3] float32, orthorhombic box edges, σ_AA units.
    halo: σ_AA units, > 0: num_recurrences x cutoff plus a margin
      (HALO_MARGIN). A smaller halo gives wrong outputs near domain faces.
    max_particles: particles per call, halo included (>= 1); a box that
      fits is predicted in one call.
    progress: called with a DomainProgress after each call.

  Returns:
    DomainPrediction(propensity [n, n_outputs] float32, decomposition).

  Raises:
    DomainError: bad arguments, a budget that no grid meets, or a
      predict_fn output of the wrong shape.
  """
  decomposition = plan_domains(positions, box, halo, max_particles)
  return predict_with_decomposition(predict_fn, positions, types,
                                    decomposition, progress)


def predict_with_decomposition(
    predict_fn: Callable[..., np.ndarray], positions, types,
    decomposition: DomainDecomposition,
    progress: Optional[Callable[[DomainProgress], None]] = None
) -> DomainPrediction:
  """Runs a plan of `plan_domains`: one predict_fn call per domain.

  Each call gets a region's particles (in ascending original order) with
  their original coordinates and the original box (see the comment above
  DomainDecomposition for why this is exact).

  Args:
    predict_fn, positions, types, progress: as for `predict_in_domains`.
    decomposition: planned for these positions.

  Returns:
    DomainPrediction(propensity [n, n_outputs] float32, decomposition).

  Raises:
    DomainError: types or positions that do not match, or a predict_fn
      output of the wrong shape.
  """
  positions = np.asarray(positions, np.float32)
  types = np.asarray(types, np.int32)
  box = np.asarray(decomposition.box, np.float32)
  n = positions.shape[0]
  planned = int(decomposition.interior_particles.sum())
  if n != planned:
    raise DomainError(f"positions: {n} particles, but the decomposition was "
                      f"planned for {planned}")
  if types.shape != (n,):
    raise DomainError(f"types: expected shape [{n}] like positions, got "
                      f"{list(types.shape)}")
  if decomposition.n_domains == 1:
    domains = [Domain((0, 0, 0), np.arange(n), np.ones(n, bool))]
  else:
    domains = iter_domains(positions, decomposition)
  output = None
  predicted = np.zeros(n, bool)
  for done, domain in enumerate(domains, start=1):
    start = time.perf_counter()
    region = domain.region
    whole = region.shape[0] == n
    result = np.asarray(predict_fn(
        positions if whole else positions[region],
        types if whole else types[region], box))
    if result.ndim != 2 or result.shape[0] != region.shape[0]:
      raise DomainError(f"predict_fn: expected [{region.shape[0]}, "
                        f"n_outputs] for domain {domain.index}, got "
                        f"{list(result.shape)}")
    if output is None:
      output = np.empty((n, result.shape[1]), np.float32)
    keep = region[domain.interior]
    if predicted[keep].any():  # cannot happen: interiors are disjoint.
      raise AssertionError(f"domain {domain.index} repeats particles")
    predicted[keep] = True
    output[keep] = result[domain.interior]
    if progress is not None:
      progress(DomainProgress(done, decomposition.n_domains, domain.index,
                              int(region.shape[0]), int(keep.shape[0]),
                              time.perf_counter() - start))
  if not predicted.all():  # cannot happen: every particle has a domain.
    raise AssertionError(f"{int((~predicted).sum())} particles in no domain")
  return DomainPrediction(output, decomposition)
