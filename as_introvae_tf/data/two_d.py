"""2-D toy data: ``8gaussians``, ``2spirals``, ``checkerboard``, ``rings``, sampled afresh for
every batch with the S-IntroVAE reference's formulas (:func:`sample_2d` in NumPy, its TensorFlow
twin :func:`sample_2d_tf` in the pipeline); points float32 ``[B, 2]``."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

TWO_D_DATASETS = ("8gaussians", "2spirals", "checkerboard", "rings")


def canonical_2d(name) -> str:
  """The lower-case 2-D name; ValueError naming ``--dataset`` for any other name."""
  key = str(name).strip().lower()
  if key not in TWO_D_DATASETS:
    raise ValueError(
      f"--dataset {name!r} is not a 2-D dataset; allowed: {', '.join(TWO_D_DATASETS)}"
    )
  return key


def two_d_range(name) -> float:
  """Half-width R of the square ``[-R, R]^2`` used for plots and 2-D metrics.

  2.0 for ``8gaussians`` and 4.0 for ``2spirals``, ``checkerboard`` and ``rings``. This is the
  reference's ``scale * train_set.range * 2`` (``scale`` 1 for 8Gaussians, 2 otherwise;
  ``ToyDataset.range`` 1). Raises ValueError naming ``--dataset`` for other names.
  """
  return 2.0 if canonical_2d(name) == "8gaussians" else 4.0


def _gaussian_centres() -> np.ndarray:
  """The 8 centres of ``8Gaussians`` before the division by 1.414: scale 2 times the unit
  directions, in the reference's order (axes, then diagonals). float64 ``[8, 2]``."""
  d = 1.0 / np.sqrt(2.0)
  unit = np.array(
    [(1, 0), (-1, 0), (0, 1), (0, -1), (d, d), (d, -d), (-d, d), (-d, -d)], dtype=np.float64
  )
  return 2.0 * unit


def _rings_grid(num: int) -> np.ndarray:
  """The noise-free point set ``rings`` resamples for a batch of ``num``: float64 ``[num, 2]``.

  Reference: sample_2d_data('rings') (from BNAF). Four circles of radius 3 * {1, .75, .5, .25}
  with num//4 evenly spaced angles each (the innermost takes the remainder), endpoint excluded.
  Quirk kept: circle 3's x coordinate uses circle 4's angles (equal, since n3 == n4).
  """
  n4 = n3 = n2 = num // 4
  n1 = num - n4 - n3 - n2

  def angles(k):
    return np.linspace(0.0, 2.0 * np.pi, k + 1)[:-1]

  lin4, lin3, lin2, lin1 = angles(n4), angles(n3), angles(n2), angles(n1)
  xs = np.concatenate([np.cos(lin4), np.cos(lin4) * 0.75, np.cos(lin2) * 0.5, np.cos(lin1) * 0.25])
  ys = np.concatenate([np.sin(lin4), np.sin(lin3) * 0.75, np.sin(lin2) * 0.5, np.sin(lin1) * 0.25])
  return np.stack([xs, ys], axis=1) * 3.0


_SPIRAL_TURN = 540.0 * (2.0 * np.pi) / 360.0  # 540 degrees in radians


def _sample_8gaussians(num: int, rng: np.random.Generator) -> np.ndarray:
  # Reference: ToyDataset('8Gaussians', scale=2).next_batch(sig=0.02): one centre uniformly per
  # point, N(0, sig^2) noise per coordinate, then everything divided by 1.414.
  # (sample_2d_data's own '8gaussians' branch, scale 4 and noise 0.5, is NOT what the reference
  # trains on: the name differs in case.)
  centres = _gaussian_centres()
  noise = rng.standard_normal((num, 2)) * 0.02
  pick = rng.integers(0, len(centres), size=num)
  return (noise + centres[pick]) / 1.414


def _sample_2spirals(num: int, rng: np.random.Generator) -> np.ndarray:
  # Reference: sample_2d_data('2spirals') (from BNAF). Half the points on one spiral, the other
  # half its point reflection, all divided by 3, plus N(0, 0.1^2) noise:
  #   n = sqrt(U) * 540 deg (in radians); p = (-cos(n) n + 0.5 U', sin(n) n + 0.5 U'').
  # The reference crashes for odd num (its noise has num rows, the points 2*(num//2)); here
  # ceil(num/2) points per spiral are drawn and the last reflected point is dropped.
  half = (num + 1) // 2
  z = rng.standard_normal((num, 2))
  n = np.sqrt(rng.random(half)) * _SPIRAL_TURN
  d1x = -np.cos(n) * n + rng.random(half) * 0.5
  d1y = np.sin(n) * n + rng.random(half) * 0.5
  spiral = np.stack([d1x, d1y], axis=1)
  x = np.concatenate([spiral, -spiral], axis=0)[:num] / 3.0
  return x + 0.1 * z


def _sample_checkerboard(num: int, rng: np.random.Generator) -> np.ndarray:
  # Reference: sample_2d_data('checkerboard') (from BNAF):
  #   x1 = 4U - 2;  x2 = U' - 2*Bernoulli(1/2) + (floor(x1) mod 2);  return 2 * (x1, x2).
  # Python/NumPy/PyTorch '%' of a float keeps the divisor's sign, so floor(x1) mod 2 is in {0, 1}.
  x1 = rng.random(num) * 4.0 - 2.0
  x2_ = rng.random(num) - rng.integers(0, 2, size=num).astype(np.float64) * 2.0
  x2 = x2_ + np.mod(np.floor(x1), 2.0)
  return np.stack([x1, x2], axis=1) * 2.0


def _sample_rings(num: int, rng: np.random.Generator) -> np.ndarray:
  # Reference: sample_2d_data('rings') (from BNAF): num points drawn with replacement from
  # _rings_grid(num), then N(0, 0.08^2) noise per coordinate.
  if num == 0:
    return np.zeros((0, 2), np.float64)
  x = _rings_grid(num)[rng.integers(0, num, size=num)]
  return x + rng.normal(0.0, 0.08, size=x.shape)


_SAMPLERS = {
  "8gaussians": _sample_8gaussians,
  "2spirals": _sample_2spirals,
  "checkerboard": _sample_checkerboard,
  "rings": _sample_rings,
}


def sample_2d(name: str, num: int, rng: np.random.Generator) -> np.ndarray:
  """Draws ``num`` points of a 2-D toy distribution as the S-IntroVAE reference does (NumPy).

  Reference: ``soft_intro_vae_2d/train_soft_intro_vae_2d.py`` of taldatech/soft-intro-vae-pytorch,
  ``ToyDataset.next_batch`` (``8Gaussians``: centres 2 * the 8 unit directions, one centre
  uniformly per point, N(0, 0.02^2) noise, then / 1.414) and ``sample_2d_data`` (from BNAF) for
  ``2spirals``, ``checkerboard`` and ``rings`` (each formula ported one for one, quirks included).
  Rows come in the reference's order (for ``2spirals``: first spiral, then its reflection).
  :func:`build_dataset` samples with :func:`sample_2d_tf`, a TensorFlow port of the same formulas.

  Args:
    name: one of ``TWO_D_DATASETS`` (case-insensitive, so the reference's ``8Gaussians`` works).
    num: number of points, >= 0.
    rng: ``np.random.Generator`` (an int is taken as a seed).
  Returns:
    float32 ``[num, 2]``. Support: about ``[-1.5, 1.5]^2`` (8gaussians), ``[-4, 4]^2`` (others).
  Raises:
    ValueError for an unknown name (naming ``--dataset``) or a negative ``num``.
  """
  key = canonical_2d(name)
  num = _check_num(num)
  if not isinstance(rng, np.random.Generator):
    rng = np.random.default_rng(rng)
  return _SAMPLERS[key](num, rng).astype(np.float32)


def _check_num(num) -> int:
  if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 0:
    raise ValueError(f"num must be an integer >= 0, got {num!r}")
  return int(num)


def sample_2d_tf(name: str, num: int, seed, shuffle_rows: bool = False) -> tf.Tensor:
  """TensorFlow port of :func:`sample_2d` (same formulas, same reference), stateless.

  Used by :func:`build_dataset` so the 2-D input pipeline runs without Python: a Python
  generator inside tf.data (``from_generator``) hung at interpreter exit in about 1 of 12 runs
  here (a known TF problem).

  Args:
    name: one of ``TWO_D_DATASETS``; num: static batch size >= 0.
    seed: int32/int64 ``[2]`` stateless seed (same seed -> same points).
    shuffle_rows: mix the rows with a random permutation (only changes ``2spirals``, whose
      points come as [spiral; reflection]).
  Returns:
    float32 ``[num, 2]``.
  """
  key = canonical_2d(name)
  num = _check_num(num)
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
  f64 = tf.float64

  def uniform(shape, k):
    return tf.random.stateless_uniform(shape, seeds[k], dtype=f64)

  if key == "8gaussians":
    centres = tf.constant(_gaussian_centres())
    noise = tf.random.stateless_normal([num, 2], seeds[0], dtype=f64) * 0.02
    pick = tf.random.stateless_uniform([num], seeds[1], minval=0, maxval=8, dtype=tf.int32)
    x = (noise + tf.gather(centres, pick)) / 1.414
  elif key == "2spirals":
    half = (num + 1) // 2
    z = tf.random.stateless_normal([num, 2], seeds[0], dtype=f64)
    n = tf.sqrt(uniform([half], 1)) * _SPIRAL_TURN
    d1x = -tf.cos(n) * n + uniform([half], 2) * 0.5
    d1y = tf.sin(n) * n + uniform([half], 3) * 0.5
    spiral = tf.stack([d1x, d1y], axis=1)
    x = tf.concat([spiral, -spiral], axis=0)[:num] / 3.0 + 0.1 * z
  elif key == "checkerboard":
    x1 = uniform([num], 0) * 4.0 - 2.0
    bit = tf.random.stateless_uniform([num], seeds[1], minval=0, maxval=2, dtype=tf.int32)
    x2_ = uniform([num], 2) - tf.cast(bit, f64) * 2.0
    x2 = x2_ + tf.math.floormod(tf.floor(x1), 2.0)
    x = tf.stack([x1, x2], axis=1) * 2.0
  else:  # rings
    if num == 0:
      return tf.zeros([0, 2], tf.float32)
    grid = tf.constant(_rings_grid(num))
    idx = tf.random.stateless_uniform([num], seeds[0], minval=0, maxval=num, dtype=tf.int32)
    x = tf.gather(grid, idx) + tf.random.stateless_normal([num, 2], seeds[1], dtype=f64) * 0.08
  if shuffle_rows and num > 1:
    order = tf.argsort(tf.random.stateless_uniform([num], seeds[5]))
    x = tf.gather(x, order)
  return tf.ensure_shape(tf.cast(x, tf.float32), [num, 2])


def two_d_dataset(name: str, batch: int, seed: int) -> tf.data.Dataset:
  """The 2-D pipeline of :func:`build_dataset`: an infinite stream of fresh batches."""
  # Batch i is sample_2d_tf(name, batch, seed=(seed, i)): fresh points every step, reproducible.
  # 2spirals rows are mixed: the reference's batch is [spiral; reflection], and a strategy
  # splits the global batch into contiguous per-replica parts, which would give each replica
  # one arm only (the distribution of the global batch is unchanged).
  seed = seed % (2**63)

  def make(i):
    return sample_2d_tf(
      name, batch, tf.stack([tf.constant(seed, tf.int64), i]), shuffle_rows=name == "2spirals"
    )

  ds = tf.data.Dataset.counter(dtype=tf.int64).map(make, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)
