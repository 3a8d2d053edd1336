"""Standard datasets by name (``mnist``, ``fashion_mnist``, ``cifar10``, ...) and TFDS
(``tfds:NAME``): what is on disk first, then a TFDS download, else one clear error."""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from as_introvae_tf.data import folders
from as_introvae_tf.data import idx
from as_introvae_tf.data import image_scan
from as_introvae_tf.data.common import SHARED_DATA_ENV
from as_introvae_tf.data.common import DatasetSpec
from as_introvae_tf.data.common import resize_if_needed
from as_introvae_tf.data.common import shared_data_dir
from as_introvae_tf.data.common import to_channels

log = logging.getLogger(__name__)

STANDARD_DATASETS = {
  "mnist": "mnist",
  "fashion_mnist": "fashion_mnist",
  "cifar10": "cifar10",
  "cifar100": "cifar100",
  "svhn": "svhn_cropped",
  "celeb_a": "celeb_a",
}
"""``--dataset`` name -> TensorFlow Datasets name, for the datasets found or downloaded by name."""
STANDARD_ALIASES = {
  "fashion-mnist": "fashion_mnist",
  "fashionmnist": "fashion_mnist",
  "celeba": "celeb_a",
  "svhn_cropped": "svhn",
}
TFDS_HOST = ("storage.googleapis.com", 443)
"""Where TFDS downloads from (its GCS mirror); probed before a download is tried."""


def tfds_prepared(name: str, data_dir: str | None) -> bool:
  """Whether TFDS dataset ``name`` is prepared in ``data_dir`` (None: the TFDS cache)."""
  import tensorflow_datasets as tfds

  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    return False
  return tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json"))


def network_available(host=TFDS_HOST, timeout: float = 3.0) -> bool:
  """Whether a TCP connection to ``host`` (``(name, port)``) opens within ``timeout`` seconds.

  Checked before a download so that an offline machine gets the clear error at once instead
  of after TFDS's retries (minutes).
  """
  import socket

  try:
    with socket.create_connection(host, timeout=timeout):
      return True
  except OSError:
    return False


def download_and_prepare(name: str, data_dir: str | None) -> None:
  """Downloads and prepares TFDS dataset ``name`` into ``data_dir`` (None: the TFDS cache)."""
  import tensorflow_datasets as tfds

  log.warning(
    "downloading %s with TensorFlow Datasets into %s (first use only)",
    name,
    data_dir or "the TFDS cache (~/tensorflow_datasets)",
  )
  tfds.builder(name, data_dir=data_dir).download_and_prepare()


def _what_to_get(key: str, tfds_name: str, data_dir) -> str:
  where = data_dir or "~/tensorflow_datasets"
  text = (
    f"connect to the internet once so that TensorFlow Datasets can download it into "
    f"{where}, or prepare it elsewhere (python -c \"import tensorflow_datasets as tfds; "
    f"tfds.builder('{tfds_name}').download_and_prepare()\") and copy the "
    f"{tfds_name}/ folder into {where}"
  )
  if key == "fashion_mnist":
    text = f"install the Debian package (sudo {idx.FASHION_MNIST_INSTALL}), or " + text
  if key == "cifar10":
    text += (
      f"; or set ${SHARED_DATA_ENV} to a folder holding cifar10/{{train,test}}/<class>/<image>.jpg"
    )
  if key == "celeb_a":
    text += (
      "; or pass your own image folder with --dataset=folder:PATH (e.g. CelebA's img_align_celeba/)"
    )
  return text


def resolve_standard(
  key, image_size, channels, data_dir=None, max_image_pixels=image_scan.DEFAULT_MAX_IMAGE_PIXELS
) -> DatasetSpec:
  """The :class:`DatasetSpec` of a standard dataset, finding or downloading its data (see the
  package docstring for the order).

  Raises:
    FileNotFoundError: nothing on disk and no download possible; the message names what to
      download or install.
  """
  tfds_name = STANDARD_DATASETS[key]
  if key == "fashion_mnist" and idx.fashion_mnist_files_present():
    size = image_size or 28
    return DatasetSpec("fashion_mnist", "fashion_mnist", (size, size, channels or 1))
  if tfds_prepared(tfds_name, data_dir):
    return tfds_spec(tfds_name, image_size, channels, data_dir, require_data_dir=False)
  if key == "cifar10":
    root = shared_data_dir() / "cifar10"
    if root.is_dir():
      return folders.folder_spec(str(root), image_size, channels, "cifar10", max_image_pixels)
  if not network_available():
    raise FileNotFoundError(
      f"--dataset {key}: no {key} data on this machine and no network to download it: "
      + _what_to_get(key, tfds_name, data_dir)
    )
  try:
    download_and_prepare(tfds_name, data_dir)
  except Exception as e:  # noqa: BLE001  (TFDS raises many kinds: network, disk, checksum)
    raise FileNotFoundError(
      f"--dataset {key}: downloading {tfds_name} with TensorFlow Datasets failed "
      f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
      + _what_to_get(key, tfds_name, data_dir)
    ) from e
  return tfds_spec(tfds_name, image_size, channels, data_dir, require_data_dir=False)


def tfds_spec(name, image_size, channels, data_dir, require_data_dir=True) -> DatasetSpec:
  """The :class:`DatasetSpec` of TFDS dataset ``name``, from its builder's image feature."""
  if require_data_dir and not data_dir:
    raise ValueError(f"--dataset tfds:{name} needs --data_dir (a folder with prepared TFDS data)")
  import tensorflow_datasets as tfds  # slow import: only when needed

  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(f"--dataset tfds:{name}: TFDS has no dataset {name!r}") from e
  features = builder.info.features
  if "image" not in features.keys():
    raise ValueError(
      f"--dataset tfds:{name}: the dataset has no 'image' feature (features: "
      f"{sorted(features.keys())})"
    )
  shape = tuple(features["image"].shape)
  if image_size is None:
    if len(shape) != 3 or shape[0] is None or shape[0] != shape[1]:
      raise ValueError(f"--dataset tfds:{name}: images are {shape}; pass --image_size")
    image_size = int(shape[0])
  if channels is None:
    channels = 1 if len(shape) == 3 and shape[2] == 1 else 3
  return DatasetSpec("tfds", name, (image_size, image_size, channels))


def tfds_dataset(spec, split, batch, seed, shuffle, repeat, data_dir) -> tf.data.Dataset:
  """The pipeline of :func:`build_dataset` for a prepared TFDS dataset."""
  # A standard dataset found by name (resolve_standard) may sit in the TFDS cache.
  if not data_dir and not tfds_prepared(spec.name, None):
    raise ValueError(
      f"--dataset tfds:{spec.name} needs --data_dir (a folder with prepared TFDS data)"
    )
  import tensorflow_datasets as tfds

  try:
    ds = tfds.load(
      spec.name,
      split=split,
      data_dir=data_dir,
      download=False,
      shuffle_files=shuffle,
      read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(f"--dataset tfds:{spec.name}: TFDS has no dataset {spec.name!r}") from e
  except AssertionError as e:  # tfds: "could not find data in <data_dir>"
    raise FileNotFoundError(
      f"--dataset tfds:{spec.name}: no prepared data for {spec.name!r} (split {split!r}) in "
      f"--data_dir {data_dir}; downloads are impossible here, prepare it elsewhere and copy "
      f"<data_dir>/{spec.name}/ over ({e})"
    ) from e
  size, _, channels = spec.shape

  def prep(example):
    img = tf.image.convert_image_dtype(example["image"], tf.float32)
    img = to_channels(img, channels)
    return tf.ensure_shape(resize_if_needed(img, size), [size, size, channels])

  ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE)
  if shuffle:
    ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
