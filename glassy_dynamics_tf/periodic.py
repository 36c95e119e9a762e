"""Periodic geometry of orthorhombic boxes, done once (STYLE.md item 6).

Every module that needs a wrapped position or a minimum-image vector calls
these functions; none shifts by "one box" by hand. The wrap is modulo-based,
as jax-md's ``periodic`` space, so it is correct for any displacement, however
many boxes away a particle has travelled.

Vocabulary:
  positions: [n_particles, 3] float, σ_AA units.
  box: [3] float, orthorhombic box edges, σ_AA units, all > 0.
"""

import numpy as np


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
