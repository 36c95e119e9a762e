"""Periodic geometry of orthorhombic boxes, done once (STYLE.md item 6).

Every module that needs a wrapped position or a minimum-image vector calls
these functions; none shifts by "one box" by hand. The wrap is modulo-based,
as jax-md's ``periodic`` space, so it is correct for any displacement, however
many boxes away a particle has travelled.

Neighbour search is also here (`neighbour_pairs`): the k-d tree's periodic
minimum image for ordinary boxes, and an explicit sum over images for boxes
smaller than twice the cut-off. The potential energy, the baselines and the
simulator's checks all use it.

Vocabulary:
  positions: [n_particles, 3] float, σ_AA units.
  box: [3] float, orthorhombic box edges, σ_AA units, all > 0.
"""

from typing import NamedTuple

import numpy as np
from scipy import spatial


def wrap(positions: np.ndarray, box: np.ndarray) -> np.ndarray:
  """Wraps positions into [0, box) along each axis.

  Args:
    positions: [..., 3] float, any (unwrapped) coordinates, σ_AA units.
    box: [3] float, box edges.

  Returns:
    [..., 3] same dtype as `positions`, every coordinate in [0, box).
  """
  positions = np.asarray(positions)
  box = np.asarray(box, dtype=positions.dtype)
  wrapped = np.mod(positions, box)
  # np.mod can return exactly `box` for tiny negative inputs through rounding
  # (e.g. -1e-17 mod 15.0 == 15.0 in float64); fold those onto 0.
  return np.where(wrapped >= box, wrapped - box, wrapped)


def minimum_image(displacements: np.ndarray, box: np.ndarray) -> np.ndarray:
  """Maps displacement vectors onto their nearest periodic image.

  Args:
    displacements: [..., 3] float, any vectors r_j - r_i, σ_AA units.
    box: [3] float, box edges.

  Returns:
    [..., 3] the image of each vector with components in [-box/2, box/2).
  """
  displacements = np.asarray(displacements)
  box = np.asarray(box, dtype=displacements.dtype)
  return np.mod(displacements + 0.5 * box, box) - 0.5 * box


# Limits of the small-box path of `neighbour_pairs`, far above what any test
# system needs: the particle images it builds (n_particles × periodic
# shifts, ~100 MB of coordinates and tree) and the (particle, image) pairs it
# expects to find within the cut-off (n² · (4/3)π·cutoff³ / volume, ~200 MB).
MAX_IMAGE_POINTS = 4_000_000
MAX_IMAGE_PAIRS = 8_000_000


class TooManyImagesError(ValueError):
  """A box so small against a cut-off that summing its images is impractical.

  Raised by `neighbour_pairs` when n_particles × periodic images would exceed
  `MAX_IMAGE_POINTS`, or the expected number of pairs `MAX_IMAGE_PAIRS`; the
  message names the box, the cut-off and the counts.
  """


class Pairs(NamedTuple):
  """Unordered particle pairs closer than a cut-off, each listed once.

  In a box whose every edge exceeds 2·cutoff each pair has at most one
  periodic image in range (its minimum image), and i < j. In a smaller box a
  pair (i, j) may appear once per image in range, with different vectors,
  and a particle may pair with its own images (i == j; of the two opposite
  images ±s only one is listed, so that handing half a pair quantity to
  each end counts the image fully, as LAMMPS' per-atom sums do).

  Fields:
    i, j: [n_pairs] int64, i <= j.
    vectors: [n_pairs, 3] float64, r_j (that image) − r_i, σ_AA units.
    distances: [n_pairs] float64, |vectors| < cutoff, σ_AA units.
  Pairs are sorted by i, then j, then distance.
  """
  i: np.ndarray
  j: np.ndarray
  vectors: np.ndarray
  distances: np.ndarray


def neighbour_pairs(positions: np.ndarray, box: np.ndarray,
                    cutoff: float) -> Pairs:
  """Every pair of particles (and periodic images) closer than `cutoff`.

  Boxes with every edge > 2·cutoff use the minimum image with a periodic
  k-d tree (O(n log n)). Smaller boxes (tiny test systems) sum over every
  periodic image in range, as LAMMPS does for a cut-off beyond half the box.

  Args:
    positions: [n, 3] float, σ_AA units, any image (wrapped here, so
      unwrapped coordinates many boxes away are fine).
    box: [3] float, orthorhombic box edges, σ_AA units, all > 0.
    cutoff: σ_AA units, > 0; a pair at exactly `cutoff` is not included.

  Returns:
    Pairs (see its docstring), float64.

  Raises:
    ValueError: wrong shapes, non-finite positions, box edges <= 0, or a
      cut-off <= 0.
    TooManyImagesError: a box so much smaller than the cut-off that more
      than MAX_IMAGE_POINTS particle images, or more than MAX_IMAGE_PAIRS
      pairs, would be needed.
  """
  positions = np.asarray(positions, np.float64)
  box = np.asarray(box, np.float64)
  if positions.ndim != 2 or positions.shape[1] != 3:
    raise ValueError(f"neighbour_pairs: positions must have shape [n, 3], "
                     f"found {list(positions.shape)}")
  if box.shape != (3,) or not np.all(np.isfinite(box)) or np.any(box <= 0):
    raise ValueError(f"neighbour_pairs: box must be 3 finite edges > 0, "
                     f"found {box.tolist()}")
  if not (np.isfinite(cutoff) and cutoff > 0):
    raise ValueError(f"neighbour_pairs: cutoff must be finite and > 0, "
                     f"found {cutoff}")
  if not np.all(np.isfinite(positions)):
    bad = int(np.flatnonzero(~np.all(np.isfinite(positions), axis=1))[0])
    raise ValueError(f"neighbour_pairs: positions must be finite, particle "
                     f"{bad} is at {positions[bad].tolist()}")
  wrapped = wrap(positions, box)
  if np.all(box > 2.0 * cutoff):
    i, j, vectors = _minimum_image_pairs(wrapped, box, cutoff)
  else:
    i, j, vectors = _all_image_pairs(wrapped, box, cutoff)
  distances = np.linalg.norm(vectors, axis=-1)
  keep = distances < cutoff  # the trees test <=; ours is strict.
  i, j, vectors, distances = i[keep], j[keep], vectors[keep], distances[keep]
  order = np.lexsort((distances, j, i))
  return Pairs(i[order], j[order], vectors[order], distances[order])


def _minimum_image_pairs(wrapped, box, cutoff):
  """(i, j, vectors) for i < j, when each pair has one image in range."""
  tree = spatial.cKDTree(wrapped, boxsize=box)
  pairs = tree.query_pairs(cutoff, output_type="ndarray").reshape(-1, 2)
  i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
  return i, j, minimum_image(wrapped[j] - wrapped[i], box)


def _all_image_pairs(wrapped, box, cutoff):
  """(i, j, vectors) over every periodic image in range (small boxes)."""
  n = wrapped.shape[0]
  # Wrapped coordinates differ by less than one box edge L, so the image
  # shifted by s boxes is at least (|s| − 1)·L away along that axis: only
  # |s| <= ceil(cutoff / L) can come within the cut-off.
  reach = np.ceil(cutoff / box).astype(np.int64)
  n_shifts = int(np.prod(2 * reach + 1))
  # Each particle sees about n·(4/3)π·cutoff³/volume images within range.
  n_expected = n * n * (4.0 / 3.0) * np.pi * cutoff**3 / float(np.prod(box))
  if n * n_shifts > MAX_IMAGE_POINTS or n_expected > MAX_IMAGE_PAIRS:
    raise TooManyImagesError(
        f"box {box.tolist()} has an edge not above twice the cut-off "
        f"{cutoff} σ; summing periodic images would need {n_shifts} images "
        f"of each of the {n} particles ({n * n_shifts} points, limit "
        f"MAX_IMAGE_POINTS = {MAX_IMAGE_POINTS}) and find about "
        f"{n_expected:.3g} pairs (limit MAX_IMAGE_PAIRS = {MAX_IMAGE_PAIRS}); "
        "use a larger box or a smaller cut-off")
  shifts = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in reach],
                                indexing="ij"), -1).reshape(-1, 3)
  images = (wrapped[None] + (shifts * box)[:, None]).reshape(-1, 3)
  owner = np.tile(np.arange(n, dtype=np.int64), n_shifts)
  shift_of = np.repeat(np.arange(n_shifts), n)
  found = spatial.cKDTree(wrapped).sparse_distance_matrix(
      spatial.cKDTree(images), cutoff, output_type="ndarray")
  i = found["i"].astype(np.int64)
  image = found["j"].astype(np.int64)
  j = owner[image]
  s = shifts[shift_of[image]]
  # A pair (i, j, s) is the pair (j, i, −s): keep i < j, and of a particle's
  # own images (i == j) the one whose first non-zero shift component is
  # positive (s = 0 is the particle itself and has none).
  first = np.argmax(s != 0, axis=1)
  positive = s[np.arange(s.shape[0]), first] > 0
  keep = (i < j) | ((i == j) & positive)
  i, image = i[keep], image[keep]
  return i, owner[image], images[image] - wrapped[i]
