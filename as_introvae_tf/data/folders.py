"""Image folders (``--dataset=folder:PATH``): ``PATH/{train,test}/<class>/<img>``,
``PATH/<class>/<img>`` or flat ``PATH/<img>``, every file checked up front (``image_scan``) and
read as the check read it (``image_files``)."""

from __future__ import annotations

import collections
import logging
import os
import re

import tensorflow as tf

from as_introvae_tf.data.common import SPLITS
from as_introvae_tf.data.common import DatasetSpec
from as_introvae_tf.data.image_files import ImageTooLarge
from as_introvae_tf.data.image_files import decode_file
from as_introvae_tf.data.image_files import load_image
from as_introvae_tf.data.image_files import read_header
from as_introvae_tf.data.image_scan import DEFAULT_MAX_IMAGE_PIXELS
from as_introvae_tf.data.image_scan import scan_images

log = logging.getLogger(__name__)

# Formats tf.io.decode_image reads; other files in an image folder are ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
MAX_CONSECUTIVE_BAD_BATCHES = 100
"""With ``--bad_images=skip``: batches dropped in a row before the pipeline stops with an error
naming the folder (it never loops for ever on a folder whose files all went bad)."""
_SAMPLED_FILES = 64
"""Files decoded to choose a folder's default ``--image_size`` and ``--channels``."""


def _spread(files, num):
  """Up to ``num`` of ``files``, evenly spread over the sorted list (every class folder)."""
  if len(files) <= num:
    return list(files)
  return [files[int(i * len(files) / num)] for i in range(num)]


def folder_spec(
  path, image_size, channels, flag_text, max_pixels=DEFAULT_MAX_IMAGE_PIXELS
) -> DatasetSpec:
  """The :class:`DatasetSpec` of an image folder (unset size and channels: see
  :func:`parse_dataset`; files over ``max_pixels`` are not decoded to sample them)."""
  root = os.path.abspath(os.path.expanduser(path))
  if not os.path.isdir(root):
    raise FileNotFoundError(
      f"--dataset {flag_text}: image folder {root} does not exist or is not a directory "
      "(expected PATH/{train,test}/<class>/<image>, PATH/<class>/<image> or PATH/<image>)"
    )
  if image_size is None or channels is None:
    split = "train" if os.path.isdir(os.path.join(root, "train")) else "test"
    files = list_image_files(root, split)
    sizes, example, greys, colours = collections.Counter(), {}, 0, 0
    for f in _spread(files, _SAMPLED_FILES):
      try:
        header = read_header(f)
        if header is not None and header[0] * header[1] > max_pixels:
          continue  # not decoded to sample it (the check names it later)
        img = decode_file(f, header[2] if header else 1)
      except (tf.errors.OpError, ValueError, ImageTooLarge):
        continue
      height, width, native = (int(v) for v in img.shape)
      sizes[(height, width)] += 1
      example.setdefault((height, width), f)
      if native in (1, 2):
        greys += 1
      else:
        colours += 1
    if not greys + colours:
      raise ValueError(
        f"--dataset {flag_text}: none of {min(_SAMPLED_FILES, len(files))} images sampled "
        f"under {root} decodes within --max_image_pixels={max_pixels} (e.g. {files[0]}); "
        "pass --image_size and --channels explicitly"
      )
    if image_size is None:
      (height, width), _ = sizes.most_common(1)[0]
      if height != width:
        raise ValueError(
          f"--dataset {flag_text}: images are not square ({example[(height, width)]} is "
          f"{height}x{width}); pass --image_size to resize them to a square"
        )
      image_size = height
    if channels is None:
      channels = 1 if greys > colours else 3
      report = log.warning if greys and colours else log.info
      report(
        "--dataset %s: %d of %d sampled images are grey and %d colour: using the "
        "majority, --channels=%d (%s); every image is converted to it. Pass --channels "
        "to choose.",
        flag_text,
        greys,
        greys + colours,
        colours,
        channels,
        "grey" if channels == 1 else "RGB",
      )
  return DatasetSpec("folder", root, (image_size, image_size, channels))


def list_image_files(root: str, split: str) -> list[str]:
  """Sorted image files (``IMAGE_EXTENSIONS``, any case; hidden files ignored) of a split.

  If ``root`` has a ``train`` or ``test`` subfolder, the files under ``root/<split>`` (recursively,
  e.g. ``<class>/<img>``); otherwise every image under ``root`` (for either split). Symlinked
  folders are followed, each real folder once (a link loop does not repeat images).

  Raises:
    FileNotFoundError naming the path when ``root`` or the split's subfolder is missing;
    ValueError naming the folder when it holds no image files.
  """
  root = os.path.abspath(os.path.expanduser(str(root)))
  if not os.path.isdir(root):
    raise FileNotFoundError(
      f"image folder {root} does not exist or is not a directory (expected "
      "PATH/{train,test}/<class>/<image>, PATH/<class>/<image> or PATH/<image>)"
    )
  present = [s for s in SPLITS if os.path.isdir(os.path.join(root, s))]
  if present:
    if split not in present:
      raise FileNotFoundError(
        f"image folder {root} has split subfolder(s) {present} but no {split!r} "
        f"subfolder ({os.path.join(root, split)} is missing)"
      )
    base = os.path.join(root, split)
  else:
    base = root
  files = []
  seen = set()  # real folders already walked: symlinked folders (and loops) count once
  for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
    real = os.path.realpath(dirpath)
    if real in seen:
      dirnames[:] = []
      continue
    seen.add(real)
    dirnames[:] = [
      d
      for d in dirnames
      if not d.startswith(".") and os.path.realpath(os.path.join(dirpath, d)) not in seen
    ]
    for f in filenames:
      if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
        files.append(os.path.join(dirpath, f))
  if not files:
    raise ValueError(
      f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found under {base}; expected "
      f"{base}/<class>/<image> or {base}/<image>"
    )
  files.sort()
  return files


def _load_batch(paths, orientations, size: int, channels: int):
  """``[B]`` paths and orientations -> float32 ``[B, size, size, channels]``. One tf.data call
  per batch: about 2.5x the throughput of a per-file map for small images."""
  return tf.map_fn(
    lambda po: load_image(po[0], po[1], size, channels),
    (paths, orientations),
    fn_output_signature=tf.TensorSpec([size, size, channels], tf.float32),
    parallel_iterations=16,
  )


_STOP_MARK = "batches in a row failed to load"


def pipeline_stop_message(error) -> str | None:
  """The one-line message of an image folder's skip pipeline that stopped (the error its
  iterator raises after ``MAX_CONSECUTIVE_BAD_BATCHES`` failed batches), or None when ``error``
  is anything else."""
  text = str(getattr(error, "message", error))
  found = re.search(r"\[(image folder [^\]]*" + _STOP_MARK + r"[^\]]*)\]", text)
  return found.group(1) if found else None


def _skip_failed_batches(batches, load, root, shape):
  """``batches`` of ``(paths, orientations)`` -> their images, a batch that fails to load
  dropped (logged), and at most ``MAX_CONSECUTIVE_BAD_BATCHES`` dropped in a row: then the
  iterator raises ``tf.errors.InvalidArgumentError`` naming ``root``.

  Each batch is loaded in a one-element dataset of its own, so a failure becomes an element
  marked as failed (an empty batch) instead of disappearing, and the count can see it: a folder
  whose files all went bad after the check stops instead of looping for ever.
  """

  def one(paths, orientations):
    good = (
      tf.data.Dataset.from_tensors((paths, orientations))
      .map(lambda p, o: (load(p, o), True))
      .ignore_errors(log_warning=True)
    )
    failed = tf.data.Dataset.from_tensors((tf.zeros([0, *shape], tf.float32), False))
    return good.concatenate(failed).take(1)

  message = (
    f"image folder {root}: {MAX_CONSECUTIVE_BAD_BATCHES} {_STOP_MARK} "
    "(files changed, removed or unreadable since the check at the start): stopping instead of "
    "skipping for ever; check the folder and run again"
  )

  def count(run, element):
    images, ok = element
    run = tf.where(ok, tf.constant(0, tf.int64), run + 1)
    check = tf.debugging.Assert(run < MAX_CONSECUTIVE_BAD_BATCHES, [message])
    with tf.control_dependencies([check]):
      return tf.identity(run), (images, ok)

  return (
    batches.interleave(one, cycle_length=4, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    .scan(tf.constant(0, tf.int64), count)
    .filter(lambda images, ok: ok)
    .map(lambda images, ok: images)
  )


def folder_dataset(
  spec, split, batch, seed, shuffle, repeat, bad_images, max_pixels=DEFAULT_MAX_IMAGE_PIXELS
) -> tf.data.Dataset:
  """The pipeline of :func:`build_dataset` for an image folder."""
  files = list_image_files(spec.name, split)
  scan = scan_images(files, max_pixels)
  bad = list(scan.bad)
  if bad:
    described = "; ".join(f"{f} ({scan.bad[f]})" for f in bad[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    if bad_images == "fail":
      raise ValueError(
        f"{len(bad)} unreadable or too large image file(s) under {spec.name}: {described}{more}. "
        "Remove them or pass --bad_images skip (bad_images='skip') to skip them."
      )
    log.warning(
      "skipped %d unreadable or too large image file(s) under %s: %s%s",
      len(bad),
      spec.name,
      described,
      more,
    )
    bad_set = set(bad)
    files = [f for f in files if f not in bad_set]
    if not files:
      raise ValueError(f"no readable image files under {spec.name} ({len(bad)} skipped)")
  if not repeat and len(files) < batch:
    log.warning(
      "%s (%s) has %d images, fewer than one batch of %d: the dataset is empty",
      spec.name,
      split,
      len(files),
      batch,
    )
  size, _, channels = spec.shape
  turns = [scan.orientation.get(f, 1) for f in files]
  ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(turns, tf.int32)))
  if shuffle:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.batch(batch, drop_remainder=True)

  def load(paths, orientations):
    return _load_batch(paths, orientations, size, channels)

  if bad_images == "skip":
    # Only files that broke after the up-front check can fail here; drop their batch.
    ds = _skip_failed_batches(ds, load, spec.name, spec.shape)
    ds = ds.map(lambda images: tf.ensure_shape(images, [batch, size, size, channels]))
  else:
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)
