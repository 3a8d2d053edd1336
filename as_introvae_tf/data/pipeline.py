"""The entry points: :func:`parse_dataset` (a ``--dataset`` string -> :class:`DatasetSpec`),
:func:`build_dataset` (its input pipeline) and :func:`count_examples`, dispatching by source."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from as_introvae_tf.data import folders
from as_introvae_tf.data import image_scan
from as_introvae_tf.data import idx
from as_introvae_tf.data import standard
from as_introvae_tf.data import two_d
from as_introvae_tf.data.common import BAD_IMAGES_MODES
from as_introvae_tf.data.common import SPLITS
from as_introvae_tf.data.common import DatasetSpec
from as_introvae_tf.data.common import check_channels
from as_introvae_tf.data.common import check_image_size
from as_introvae_tf.data.common import with_pipeline_options


_ALLOWED_DATASETS = (
  "8gaussians, 2spirals, checkerboard, rings, "
  + ", ".join(standard.STANDARD_DATASETS)
  + ", folder:PATH, tfds:NAME"
)


def parse_dataset(
  dataset: str,
  image_size: int | None,
  channels: int | None,
  data_dir: str | None = None,
  max_image_pixels: int = image_scan.DEFAULT_MAX_IMAGE_PIXELS,
) -> DatasetSpec:
  """Parses a ``--dataset`` string (see the package docstring) into a :class:`DatasetSpec`.

  ``image_size``/``channels`` (None = the data's own): fashion_mnist defaults to 28/1; a folder
  to the majority of up to 64 images spread over its files (the most common size, square only,
  else ``--image_size`` is required; channels 1 if most are grey, else 3, logged; every image
  is converted to it); tfds to the builder's image feature shape. They must be
  unset for 2-D data. ``data_dir`` is required for ``tfds:NAME``. A folder's images over
  ``max_image_pixels`` (``--max_image_pixels``) are not decoded to sample them.

  Raises:
    ValueError naming ``--dataset``, ``--image_size``, ``--channels`` or ``--data_dir`` (with
      the allowed values) on bad input;
    FileNotFoundError naming the path when a folder (or the shared CIFAR-10 folder) is missing.
  """
  if not isinstance(dataset, str) or not dataset.strip():
    raise ValueError(f"--dataset must be one of {_ALLOWED_DATASETS}; got {dataset!r}")
  image_size = check_image_size(image_size)
  channels = check_channels(channels)
  text = dataset.strip()
  key = text.lower()

  if key in two_d.TWO_D_DATASETS:
    if image_size is not None or channels is not None:
      raise ValueError(
        f"--image_size/--channels apply to image datasets only; --dataset {text} is 2-D "
        f"(got --image_size {image_size}, --channels {channels})"
      )
    return DatasetSpec("2d", key, (2,))

  key = standard.STANDARD_ALIASES.get(key, key)
  if key in standard.STANDARD_DATASETS:
    return standard.resolve_standard(key, image_size, channels, data_dir, max_image_pixels)

  if key.startswith("folder:"):
    path = text[len("folder:") :].strip()
    if not path:
      raise ValueError(f"--dataset folder:PATH needs a path, got {dataset!r}")
    return folders.folder_spec(path, image_size, channels, text, max_image_pixels)

  if key.startswith("tfds:"):
    name = text[len("tfds:") :].strip()
    if not name:
      raise ValueError(f"--dataset tfds:NAME needs a TFDS name, got {dataset!r}")
    return standard.tfds_spec(name, image_size, channels, data_dir)

  raise ValueError(f"--dataset must be one of {_ALLOWED_DATASETS}; got {dataset!r}")


def count_examples(
  spec: DatasetSpec,
  split: str,
  *,
  bad_images: str = "fail",
  data_dir=None,
  max_image_pixels: int = image_scan.DEFAULT_MAX_IMAGE_PIXELS,
) -> int:
  """Examples in a split of an image dataset: usable files of a folder's split (unreadable
  ones and those over ``max_image_pixels`` are not counted), Fashion-MNIST's 60,000 / 10,000,
  a TFDS split's size.

  Raises:
    ValueError for 2-D data (infinite) or as :func:`build_dataset` for bad folders.
  """
  if spec.kind == "2d":
    raise ValueError("2-D datasets are sampled afresh: they have no size")
  if spec.kind == "fashion_mnist":
    return int(idx.load_fashion_mnist(split).shape[0])
  if spec.kind == "folder":
    files = folders.list_image_files(spec.name, split)
    return len(files) - len(image_scan.scan_images(files, max_image_pixels).bad)
  import tensorflow_datasets as tfds

  return int(tfds.builder(spec.name, data_dir=data_dir).info.splits[split].num_examples)


def build_dataset(
  spec: DatasetSpec,
  split: str,
  global_batch_size: int,
  *,
  seed: int,
  shuffle: bool = True,
  repeat: bool = True,
  bad_images: str = "fail",
  data_dir=None,
  max_image_pixels: int = image_scan.DEFAULT_MAX_IMAGE_PIXELS,
) -> tf.data.Dataset:
  """The input pipeline of a :class:`DatasetSpec`: global batches, ``drop_remainder=True``.

  * 2-D: an infinite stream of float32 ``[global_batch_size, 2]``; batch ``i`` is freshly
    sampled as ``sample_2d_tf(name, global_batch_size, seed=(seed, i))`` (the reference's
    formulas in TensorFlow, no Python in the pipeline; reproducible; 2spirals rows mixed);
    ``split``, ``shuffle``, ``repeat`` and ``bad_images`` do not apply.
  * images: float32 ``[global_batch_size, H, W, C]`` (``spec.shape``) in ``[0, 1]``; split
    ``"train"``/``"test"`` (fashion_mnist ``t10k`` = test; a folder's split subfolder if it has
    them, else all its files; any TFDS split string); full-size seeded shuffle of examples
    (TFDS: 10,000-example buffer), reshuffled every epoch; ``repeat`` makes it infinite.
    Folder images are decoded with ``tf.io.decode_image`` to 8 bits (16-bit PNGs too) and
    scaled to [0, 1], turned upright by their EXIF orientation (as image viewers and
    ``PIL.ImageOps.exif_transpose`` do), converted to ``C`` channels (grey -> RGB by tiling,
    RGB -> grey by ``rgb_to_grayscale``, alpha dropped) and resized to ``H x W``
    (``tf.image.resize``, antialiased bilinear; not aspect-preserving).
  * ``bad_images`` (folders): every file is checked up front, decoded as the pipeline decodes
    it (``image_scan.scan_images``); ``"fail"`` raises ValueError naming the unusable files and
    why, ``"skip"`` drops them and logs a warning with their count and up to 10 names. With
    ``"skip"``, a batch that still fails later (a file changed after the check) is dropped,
    and ``folders.MAX_CONSECUTIVE_BAD_BATCHES`` (100) dropped in a row stop the iterator with
    ``tf.errors.InvalidArgumentError`` naming the folder.
  * ``max_image_pixels`` (folders; ``--max_image_pixels``, default 50,000,000): a file of more
    pixels (width x height, read from its header before any decoding where Pillow can read it)
    is unusable, named with its size.

  Raises:
    ValueError on a bad split, batch size, ``bad_images`` or ``max_image_pixels``, a folder
      with unusable files (``"fail"``) or none usable, or a missing ``data_dir`` for TFDS;
      FileNotFoundError for missing data (the Debian package hint for fashion_mnist, the path
      for folders, the name and data_dir for TFDS).
  """
  if not isinstance(spec, DatasetSpec):
    raise TypeError(f"spec must be a DatasetSpec (see parse_dataset), got {type(spec).__name__}")
  if (
    isinstance(global_batch_size, bool)
    or not isinstance(global_batch_size, (int, np.integer))
    or global_batch_size < 1
  ):
    raise ValueError(f"global_batch_size must be a positive integer, got {global_batch_size!r}")
  if bad_images not in BAD_IMAGES_MODES:
    raise ValueError(f"--bad_images must be one of {BAD_IMAGES_MODES}, got {bad_images!r}")
  max_image_pixels = image_scan.check_max_image_pixels(max_image_pixels)
  return with_pipeline_options(
    _build_dataset(
      spec,
      split,
      int(global_batch_size),
      int(seed),
      shuffle,
      repeat,
      bad_images,
      data_dir,
      max_image_pixels,
    )
  )


def _build_dataset(spec, split, batch, seed, shuffle, repeat, bad_images, data_dir, max_pixels):
  if spec.kind == "2d":
    return two_d.two_d_dataset(two_d.canonical_2d(spec.name), batch, seed)
  if spec.kind != "tfds" and split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if spec.kind == "fashion_mnist":
    return idx.fashion_mnist_dataset(spec, split, batch, seed, shuffle, repeat)
  if spec.kind == "folder":
    return folders.folder_dataset(spec, split, batch, seed, shuffle, repeat, bad_images, max_pixels)
  if spec.kind == "tfds":
    return standard.tfds_dataset(spec, split, batch, seed, shuffle, repeat, data_dir)
  raise ValueError(
    f"unknown DatasetSpec kind {spec.kind!r}; expected 2d, fashion_mnist, folder, tfds"
  )
