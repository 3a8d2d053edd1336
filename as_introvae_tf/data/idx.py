"""IDX files: Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (images here, the
labels for the feature nets too), parsed with NumPy."""

from __future__ import annotations

import functools
import gzip
import os
import zlib

import numpy as np
import tensorflow as tf

from as_introvae_tf.data.common import SPLITS
from as_introvae_tf.data.common import resize

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_INSTALL = "apt-get install -y dataset-fashion-mnist"


def read_idx_ubyte(path: str, ndim: int) -> np.ndarray:
  """Reads an IDX file of unsigned bytes (gzip or plain); ValueError naming the file if corrupt."""
  try:
    with open(path, "rb") as fh:
      raw = fh.read()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
  except (OSError, EOFError, zlib.error) as e:
    raise ValueError(f"{path}: corrupt or unreadable IDX file ({e})") from e
  magic = 0x0800 | ndim
  if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
    got = data[:4].hex() if len(data) >= 4 else f"{len(data)} bytes"
    raise ValueError(f"{path}: bad IDX magic number {got}, expected {magic:08x}")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"{path}: IDX header truncated ({len(data)} bytes)")
  dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  expected = header + int(np.prod(dims, dtype=np.int64))
  if len(data) != expected:
    raise ValueError(
      f"{path}: IDX size mismatch: header says {dims} ({expected} bytes), file has "
      f"{len(data)} bytes"
    )
  return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(directory: str, stem: str) -> str | None:
  """``directory/stem.gz`` or else ``directory/stem``, whichever is a file; None if neither."""
  for candidate in (stem + ".gz", stem):
    path = os.path.join(directory, candidate)
    if os.path.isfile(path):
      return path
  return None


def _idx_path(directory: str, stem: str) -> str:
  path = _find_idx(directory, stem)
  if path is None:
    raise FileNotFoundError(
      f"Fashion-MNIST file {os.path.join(directory, stem + '.gz')} not found. Install the "
      f"Debian package with `{FASHION_MNIST_INSTALL}` (it puts the IDX files in "
      f"{FASHION_MNIST_DIR})."
    )
  return path


@functools.lru_cache(maxsize=4)
def _load_fashion_mnist_cached(split: str, path: str) -> np.ndarray:
  prefix = "train" if split == "train" else "t10k"
  file = _idx_path(path, f"{prefix}-images-idx3-ubyte")
  images = read_idx_ubyte(file, ndim=3)
  if images.shape[1:] != (28, 28):
    raise ValueError(f"{file}: expected 28x28 images, header says {images.shape[1:]}")
  return images


def load_fashion_mnist(split: str, path: str = FASHION_MNIST_DIR) -> np.ndarray:
  """Fashion-MNIST images of a split, parsed from the IDX files (gzip or plain) with NumPy.

  Args:
    split: ``"train"`` (``train-images-idx3-ubyte.gz``, 60,000 images) or ``"test"``
      (``t10k-images-idx3-ubyte.gz``, 10,000 images).
    path: folder of the IDX files (the Debian package ``dataset-fashion-mnist``'s by default).
  Returns:
    uint8 ``[N, 28, 28]`` in ``[0, 255]`` (read-only; cached per process).
  Raises:
    ValueError for another split, or naming the file if it is corrupt (gzip error, bad magic
      number, header and size disagree);
    FileNotFoundError saying ``apt-get install -y dataset-fashion-mnist`` if a file is missing.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS} for fashion_mnist, got {split!r}")
  return _load_fashion_mnist_cached(split, os.path.abspath(os.path.expanduser(str(path))))


def fashion_mnist_files_present(path: str | None = None) -> bool:
  """Whether both image files (train and t10k) are in ``path`` (default ``FASHION_MNIST_DIR``)."""
  path = path or FASHION_MNIST_DIR
  stems = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
  return all(_find_idx(path, stem) for stem in stems)


def load_fashion_mnist_labels(split: str, path: str = FASHION_MNIST_DIR) -> np.ndarray:
  """Fashion-MNIST labels of a split from the IDX files (``train``/``t10k-labels-idx1-ubyte``).

  Returns:
    uint8 ``[N]`` in 0..9, aligned with :func:`load_fashion_mnist`.
  """
  prefix = "train" if split == "train" else "t10k"
  file = _find_idx(path, f"{prefix}-labels-idx1-ubyte")
  if file is None:
    raise FileNotFoundError(
      f"Fashion-MNIST labels {os.path.join(path, prefix)}-labels-idx1-ubyte"
      f".gz not found ({FASHION_MNIST_INSTALL})"
    )
  return read_idx_ubyte(file, 1)


def fashion_mnist_dataset(spec, split, batch, seed, shuffle, repeat) -> tf.data.Dataset:
  """The pipeline of :func:`build_dataset` for the Fashion-MNIST IDX files."""
  images = tf.constant(load_fashion_mnist(split))
  size, _, channels = spec.shape
  n = int(images.shape[0])

  def gather(idx):
    x = tf.cast(tf.gather(images, idx), tf.float32)[..., None] / 255.0
    if channels == 3:
      x = tf.tile(x, [1, 1, 1, 3])
    if size != 28:
      x = resize(x, size)
    return tf.ensure_shape(x, [batch, size, size, channels])

  # Shuffle indices (cheap scalars, full buffer), gather whole batches.
  ds = tf.data.Dataset.range(n)
  if shuffle:
    ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.batch(batch, drop_remainder=True).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)
