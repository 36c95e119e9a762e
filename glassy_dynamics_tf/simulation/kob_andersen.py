"""The Kob-Andersen binary Lennard-Jones mixture: parameters and energies.

Model (Kob & Andersen, PRE 51, 4626 (1995), Sec. II): an 80:20 mixture of A
(large) and B (small) particles of equal mass m = 1 interacting through

  V_αβ(r) = 4 ε_αβ [(σ_αβ / r)^12 - (σ_αβ / r)^6],   r < r_c,αβ = 2.5 σ_αβ,

with ε_AA = 1, σ_AA = 1, ε_AB = 1.5, σ_AB = 0.8, ε_BB = 0.5, σ_BB = 0.88.
Kob and Andersen truncate *and shift* the potential at the cut-off
(V_αβ(r_c) subtracted so that it is continuous); we do the same everywhere
(`SHIFTED = True`: LAMMPS `pair_modify shift yes`, and the numpy helpers
below default to it). The shift changes energies, never forces or dynamics
(DESIGN.md, "Verified physics"). Every energy this package reports says
whether it is shifted.

Units: Lennard-Jones units of the A-A interaction, length σ_AA, energy ε_AA,
time τ = σ_AA·sqrt(m/ε_AA).
"""

import numpy as np
from scipy import spatial

from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.io.record import ParticleType

# [2, 2] pair parameters indexed by ParticleType (A = 0, B = 1).
EPSILON = np.array([[1.0, 1.5], [1.5, 0.5]])
SIGMA = np.array([[1.0, 0.8], [0.8, 0.88]])
CUTOFF_FACTOR = 2.5                      # r_c = 2.5 σ_αβ (KA 1995).
CUTOFF = CUTOFF_FACTOR * SIGMA           # [2, 2], σ_AA units.
MAX_CUTOFF = float(CUTOFF.max())         # 2.5, the A-A cut-off.
MASS = 1.0
FRACTION_B = 0.2                         # 80:20 mixture.
SHIFTED = True                           # truncated and shifted, as KA 1995.

# Timestep of the published data (its time grid is 0, 0.003, 0.006, ...);
# DESIGN.md: dt = 0.001 or 0.005 with the same step counts breaks agreement.
TIMESTEP = 0.003

# Wave number of the first peak of S(q) of the A particles at ρ = 1.2
# (Kob & Andersen, PRE 51, 4626 (1995) use q = 7.25 for the A-A peak).
Q_PEAK_AT_RHO_1_2 = 7.25
REFERENCE_DENSITY = 1.2

# Closest allowed distance in an initial configuration (σ_AA units): at
# r = 0.5 the A-A repulsion is 4·(2^12 - 2^6) ≈ 1.6e4 ε, which would blow
# up the first MD step.
MIN_DISTANCE = 0.5

# Neighbour-list skin of the verified LAMMPS settings (DESIGN.md).
NEIGHBOUR_SKIN = 0.3


def n_small_particles(n_particles: int) -> int:
  """Number of B particles in an N-particle KA mixture (20 %, rounded)."""
  return int(round(FRACTION_B * n_particles))


def first_peak_wavenumber(density: float) -> float:
  """Wave number q of the first S(q) peak, σ_AA⁻¹, scaled with density.

  q = 7.25 at ρ = 1.2 (KA 1995); at other densities the structure scales as
  the mean interparticle distance, so q ∝ ρ^(1/3). This is an approximation
  away from ρ = 1.2, where it is exact by construction.
  """
  if not density > 0:
    raise ValueError(f"density must be > 0, found {density}")
  return Q_PEAK_AT_RHO_1_2 * (density / REFERENCE_DENSITY)**(1.0 / 3.0)


def lammps_pair_commands(shifted: bool = SHIFTED) -> str:
  """LAMMPS input lines for the KA pair style (types 1 = A, 2 = B)."""
  lines = [f"pair_style lj/cut {CUTOFF_FACTOR}"]
  lines.append(f"pair_modify shift {'yes' if shifted else 'no'}")
  for i, j in ((0, 0), (0, 1), (1, 1)):
    lines.append(f"pair_coeff {i + 1} {j + 1} {EPSILON[i, j]} {SIGMA[i, j]} "
                 f"{CUTOFF[i, j]}")
  return "\n".join(lines)


def pair_energy(r: np.ndarray, type_i: np.ndarray, type_j: np.ndarray,
                shifted: bool = SHIFTED) -> np.ndarray:
  """KA pair potential V_αβ(r), ε_AA units, zero beyond the cut-off.

  Args:
    r: [...] float, pair distances, σ_AA units, > 0.
    type_i, type_j: [...] int, ParticleType of each partner (broadcastable).
    shifted: subtract V_αβ(r_c) inside the cut-off (KA 1995) or not.

  Returns:
    [...] float64 pair energies.
  """
  r = np.asarray(r, np.float64)
  eps = EPSILON[type_i, type_j]
  sig = SIGMA[type_i, type_j]
  rc = CUTOFF[type_i, type_j]
  sr6 = (sig / r)**6
  energy = 4.0 * eps * (sr6 * sr6 - sr6)
  if shifted:
    src6 = (sig / rc)**6
    energy = energy - 4.0 * eps * (src6 * src6 - src6)
  return np.where(r < rc, energy, 0.0)


def per_particle_potential_energy(positions: np.ndarray, types: np.ndarray,
                                  box: np.ndarray,
                                  shifted: bool = SHIFTED) -> np.ndarray:
  """Potential energy of each particle, half of each of its pair energies.

  The same decomposition as LAMMPS' `compute pe/atom`, so the mean over
  particles is the potential energy per particle of the configuration. In a
  box with an edge below 2 r_c = 5 σ_AA every periodic image within the
  cut-off counts, a particle's own images included, as in LAMMPS
  (`periodic.neighbour_pairs`).

  Args:
    positions: [n, 3] float, σ_AA units, any image.
    types: [n] int, ParticleType (0 = A, 1 = B).
    box: [3] float, orthorhombic box edges, σ_AA units.
    shifted: truncated-and-shifted potential (default, KA 1995) or not.

  Returns:
    [n] float64, ε_AA units.

  Raises:
    ValueError: `types` not [n] or not 0/1, or bad positions/box
      (`periodic.neighbour_pairs`); its subclass
      periodic.TooManyImagesError for a box far smaller than the cut-off.
  """
  positions = np.asarray(positions, np.float64)
  types = np.asarray(types)
  if types.shape != positions.shape[:1]:
    raise ValueError(f"types must have shape [{positions.shape[0]}] like "
                     f"positions {list(positions.shape)}, found "
                     f"{list(types.shape)}")
  if types.size and not np.all((types == ParticleType.A) |
                               (types == ParticleType.B)):
    raise ValueError(f"types must be 0 (A) or 1 (B), found "
                     f"{sorted(set(types.tolist()))}")
  types = types.astype(np.int64)
  pairs = periodic.neighbour_pairs(positions, box, MAX_CUTOFF)
  half = 0.5 * pair_energy(pairs.distances, types[pairs.i], types[pairs.j],
                           shifted)
  n = types.size
  return (np.bincount(pairs.i, half, minlength=n) +
          np.bincount(pairs.j, half, minlength=n))


def minimum_distance(positions: np.ndarray, box: np.ndarray) -> tuple:
  """Closest pair distance under minimum image.

  Returns:
    (distance, i, j): σ_AA units and the pair's indices; (inf, -1, -1) for
    fewer than two particles.
  """
  positions = np.asarray(positions, np.float64)
  if len(positions) < 2:
    return float("inf"), -1, -1
  box = np.asarray(box, np.float64)
  wrapped = periodic.wrap(positions, box)
  tree = spatial.cKDTree(wrapped, boxsize=box)
  distance, index = tree.query(wrapped, k=2)
  k = int(np.argmin(distance[:, 1]))
  return float(distance[k, 1]), k, int(index[k, 1])


def lattice_configuration(n_particles: int, box: np.ndarray,
                          seed: int) -> tuple:
  """A non-overlapping start: N sites of a simple cubic grid, random species.

  The grid spacing is box/ceil(N^(1/3)) ≥ ρ^(-1/3) ≈ 0.94 σ at ρ = 1.2, far
  from overlap; melting at high temperature erases the lattice.

  Args:
    n_particles: N.
    box: [3] float, box edges.
    seed: numpy seed for the choice of sites and species.

  Returns:
    (positions [N, 3] float64 in [0, box), types [N] int32 with exactly
    round(0.2 N) B particles).
  """
  rng = np.random.default_rng(seed)
  m = int(np.ceil(n_particles**(1.0 / 3.0) - 1e-9))
  grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1)
  grid = grid.reshape(-1, 3)
  sites = np.sort(rng.choice(len(grid), n_particles, replace=False))
  positions = (grid[sites] + 0.5) * (np.asarray(box, np.float64) / m)
  types = np.full(n_particles, ParticleType.A, np.int32)
  types[rng.permutation(n_particles)[:n_small_particles(n_particles)]] = (
      ParticleType.B)
  return positions, types
