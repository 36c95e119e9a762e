"""The 48 symmetries of the cube, for data augmentation (Bapst et al. 2020,
Methods: "a random element of the cube's symmetry group per example").

The group O_h is the 48 signed 3x3 permutation matrices (6 axis permutations
× 8 sign patterns; 24 rotations and their products with the inversion).

Why rotating edge vectors is enough: for a cubic periodic box, mapping every
position r -> R r (then wrapping) maps the periodic lattice onto itself, so
minimum-image vectors map as d -> R d and all distances are unchanged. The
connectivity (senders, receivers, node types) is therefore invariant, and an
augmented example is the same padded graph with `edge_vectors @ R^T`. No
graph has to be rebuilt and the padding sizes stay valid.

Non-cubic (orthorhombic) boxes: a reflection x_i -> -x_i always maps the box
lattice onto itself, but swapping axes i and j only does if box[i] ==
box[j]. `box_symmetries(box)` and the `box=` argument of the TF functions
restrict the draw to those elements (8 reflections for three different
edges, 16 for two equal ones, all 48 for a cube).

Vocabulary: edge_vectors [..., 3] float32, σ_AA units; a symmetry is a
[3, 3] float32 matrix R acting on column vectors, d' = R d.
"""

import itertools
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

N_CUBE_SYMMETRIES = 48


def cube_symmetries() -> np.ndarray:
  """The 48 signed permutation matrices, [48, 3, 3] float32.

  Element 0 is the identity; the order is fixed (permutations in
  itertools order, then sign patterns), so an index names an element.
  """
  elements = []
  for perm in itertools.permutations(range(3)):
    for signs in itertools.product((1.0, -1.0), repeat=3):
      matrix = np.zeros([3, 3], np.float32)
      for row, (col, sign) in enumerate(zip(perm, signs)):
        matrix[row, col] = sign
      elements.append(matrix)
  return np.stack(elements)


def _allowed_for_box(box, rtol: float = 1e-6) -> np.ndarray:
  """[48] bool: which cube symmetries map this orthorhombic box onto itself."""
  box = np.asarray(box, np.float64)
  if box.shape != (3,) or not np.all(np.isfinite(box)) or np.any(box <= 0):
    raise ValueError(f"box: expected 3 finite positive edges, got "
                     f"{box.tolist() if box.size < 10 else box.shape}.")
  perms = np.argmax(np.abs(cube_symmetries()), axis=-1)   # [48, 3]
  # New axis `row` takes the old axis perms[row]: lengths must agree.
  return np.all(np.isclose(box[perms], box[None], rtol=rtol, atol=0), axis=-1)


def box_symmetries(box) -> np.ndarray:
  """Cube symmetries that map the periodic lattice of `box` onto itself.

  Args:
    box: [3] float, orthorhombic box edges, σ_AA units.

  Returns:
    [K, 3, 3] float32, K = 48 (cube), 16 (two equal edges) or 8 (none).
  """
  return cube_symmetries()[_allowed_for_box(box)]


def _allowed_for_box_tf(box: tf.Tensor) -> tf.Tensor:
  box = tf.cast(tf.reshape(box, [3]), tf.float32)
  perms = tf.constant(np.argmax(np.abs(cube_symmetries()), axis=-1),
                      tf.int32)                                  # [48, 3]
  permuted = tf.gather(box, perms)                              # [48, 3]
  close = tf.abs(permuted - box[None]) <= 1e-6 * tf.abs(box[None])
  return tf.reduce_all(close, axis=-1)


def random_symmetry_matrix(seed=None, box=None,
                           rng: Optional[tf.random.Generator] = None
                           ) -> tf.Tensor:
  """Draws one symmetry uniformly from those allowed.

  Args:
    seed: [2] int stateless seed (tf.random.stateless_*; deterministic, the
      choice for tf.data). Exactly one of `seed` and `rng`.
    box: optional [3] float box edges; if given, only symmetries mapping
      this box onto itself are drawn (all 48 for a cube). None = cubic box.
    rng: a tf.random.Generator instead of `seed`.

  Returns:
    [3, 3] float32 signed permutation matrix R (d' = R d).
  """
  if (seed is None) == (rng is None):
    raise ValueError("random_symmetry_matrix: give exactly one of seed and "
                     "rng.")
  if box is None:
    logits = tf.zeros([1, N_CUBE_SYMMETRIES])
  else:
    logits = tf.where(_allowed_for_box_tf(tf.convert_to_tensor(box)),
                      0.0, -np.inf)[None]
  if rng is not None:
    # Inverse-CDF draw from the generator's own stream, so the draw is
    # reproducible from the generator's state.
    # u < cdf[-1] strictly, so the first index with cdf > u exists and has
    # positive probability (an allowed element).
    cdf = tf.cumsum(tf.nn.softmax(logits[0]))
    u = rng.uniform([1], dtype=tf.float32) * cdf[-1]
    index = tf.searchsorted(cdf, u, side="right")
  else:
    index = tf.random.stateless_categorical(logits, 1, seed=seed)[0]
  return tf.gather(tf.constant(cube_symmetries()), index[0])


def apply_symmetry(edge_vectors, matrix) -> tf.Tensor:
  """d' = R d for every edge vector.

  Args:
    edge_vectors: [..., 3] float32, σ_AA units.
    matrix: [3, 3] float32 symmetry R.

  Returns:
    [..., 3] float32 rotated/reflected vectors (zeros stay zero, so padding
    edges and self-loops are unchanged).
  """
  edge_vectors = tf.convert_to_tensor(edge_vectors, tf.float32)
  return tf.linalg.matvec(tf.cast(matrix, tf.float32), edge_vectors)


def random_cube_symmetry(edge_vectors, seed=None, box=None,
                         rng: Optional[tf.random.Generator] = None
                         ) -> tf.Tensor:
  """Applies one random allowed cube symmetry to all edge vectors of a graph.

  Args:
    edge_vectors: [n_edges, 3] (or [max_edges, 3]) float32, σ_AA units.
    seed, box, rng: as in `random_symmetry_matrix`.

  Returns:
    [n_edges, 3] float32, R d for one R drawn per call.
  """
  return apply_symmetry(edge_vectors,
                        random_symmetry_matrix(seed=seed, box=box, rng=rng))


def augment_padded_graph(example: Dict[str, tf.Tensor], seed=None, box=None,
                         rng: Optional[tf.random.Generator] = None
                         ) -> Dict[str, tf.Tensor]:
  """Random cube symmetry of one padded example (CONTRACTS.md), for tf.data.

  Only `edge_vectors` changes (connectivity is invariant, see module doc);
  all other entries are passed through.
  """
  out = dict(example)
  out["edge_vectors"] = random_cube_symmetry(example["edge_vectors"],
                                             seed=seed, box=box, rng=rng)
  return out
