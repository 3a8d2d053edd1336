"""What every source shares: the parsed ``--dataset`` (:class:`DatasetSpec`), split names,
the shared data folder, the checks of ``--image_size``/``--channels`` and image conversion."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import tensorflow as tf

SPLITS = ("train", "test")
CHANNELS = (1, 3)
BAD_IMAGES_MODES = ("fail", "skip")
SHARED_DATA_ENV = "AS_INTROVAE_SHARED_DATA"
# Where find_bad_images keeps its results ("" disables); default $XDG_CACHE_HOME or ~/.cache.
CACHE_DIR_ENV = "AS_INTROVAE_CACHE_DIR"
# "0" turns tf.data's model-based autotuning off in every pipeline of the package
# (`with_pipeline_options`); anything else, or unset, leaves TensorFlow's default (on).
DATA_AUTOTUNE_ENV = "AS_INTROVAE_DATA_AUTOTUNE"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What a ``--dataset`` string means.

  kind: ``"2d"``, ``"fashion_mnist"``, ``"folder"`` or ``"tfds"``.
  name: the 2-D name (e.g. ``"8gaussians"``), ``"fashion_mnist"``, the folder's absolute path,
    or the TFDS name.
  shape: shape of one example: ``(2,)`` or ``(H, W, C)`` after resizing.
  """

  kind: str
  name: str
  shape: tuple


def shared_data_dir() -> pathlib.Path:
  """The project's shared real-data folder: ``$AS_INTROVAE_SHARED_DATA`` if set, else
  the ``shared/data`` folder beside the repository root, located from this file."""
  env = os.environ.get(SHARED_DATA_ENV)
  if env:
    return pathlib.Path(env).expanduser().resolve()
  repo_root = pathlib.Path(__file__).resolve().parents[2]
  return (repo_root.parent / "shared" / "data").resolve()


def check_image_size(image_size):
  if image_size is None:
    return None
  if (
    isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1
  ):
    raise ValueError(f"--image_size must be a positive integer (or unset), got {image_size!r}")
  return int(image_size)


def check_channels(channels):
  if channels is None:
    return None
  if isinstance(channels, bool) or channels not in CHANNELS:
    raise ValueError(f"--channels must be one of {CHANNELS} (or unset), got {channels!r}")
  return int(channels)


def to_channels(img, channels: int):
  """float ``[H, W, C]`` with C in 1..4 (grey, grey+alpha, RGB, RGBA) -> ``[H, W, channels]``."""
  static = img.shape[-1]
  if static is not None:  # known channels (TFDS features): pick the branch here, since
    # tf.cond would also build the other one, which fails for a static channel count
    if channels == 1:
      out = img[..., :1] if static <= 2 else tf.image.rgb_to_grayscale(img[..., :3])
    else:
      out = tf.tile(img[..., :1], [1, 1, 3]) if static <= 2 else img[..., :3]
    return tf.ensure_shape(out, [None, None, channels])
  grey = tf.shape(img)[-1] <= 2
  if channels == 1:
    out = tf.cond(grey, lambda: img[..., :1], lambda: tf.image.rgb_to_grayscale(img[..., :3]))
  else:
    out = tf.cond(grey, lambda: tf.tile(img[..., :1], [1, 1, 3]), lambda: img[..., :3])
  return tf.ensure_shape(out, [None, None, channels])


def resize(img, size: int):
  """float ``[..., H, W, C]`` -> ``[..., size, size, C]`` (antialiased bilinear), kept in [0, 1]."""
  out = tf.image.resize(img, [size, size], antialias=True)
  return tf.clip_by_value(out, 0.0, 1.0)


def resize_if_needed(img, size: int):
  """``[H, W, C]`` -> ``[size, size, C]``; images already that size pass unchanged (and fast)."""
  shape = tf.shape(img)
  same = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
  return tf.cond(same, lambda: img, lambda: resize(img, size))


def with_pipeline_options(ds: tf.data.Dataset) -> tf.data.Dataset:
  """``ds`` with the package's ``tf.data.Options``: with ``$AS_INTROVAE_DATA_AUTOTUNE=0``,
  ``autotune.enabled = False``; otherwise ``ds`` unchanged (TensorFlow's default, autotuning on).

  Why the switch exists (docs/measurements.md, "Stalls: tf.data autotuning"; TensorFlow 2.21, 2 cores):
  deleting an iterator waits for its autotuning thread, which sleeps between optimisations
  for a period that doubles up to 60 s. On a busy CPU (other processes on every core) the
  deletion often waited for that sleep: 2.4 s instead of 0.3 s in 6 of 12 tries for iterators
  read for 3 s, and 30-90 s for single tests of the suite (three processes on two cores), with
  every thread asleep. Off, the ``AUTOTUNE`` parallelism and buffer sizes keep TensorFlow's
  untuned defaults; the data and their order are the same either way (``tests/test_data.py``).
  The tests run with it off (``tests/conftest.py``).

  Raises:
    TypeError: ``ds`` is not a ``tf.data.Dataset``.
  """
  if not isinstance(ds, tf.data.Dataset):
    raise TypeError(f"ds must be a tf.data.Dataset, got {type(ds).__name__}")
  if os.environ.get(DATA_AUTOTUNE_ENV, "").strip() != "0":
    return ds
  options = tf.data.Options()
  options.autotune.enabled = False
  return ds.with_options(options)
