"""Input pipelines: 2-D toy distributions, Fashion-MNIST (Debian IDX files), image folders, TFDS.

What a ``--dataset`` string means (:func:`parse_dataset`):

* ``8gaussians``, ``2spirals``, ``checkerboard``, ``rings``: 2-D toy data, sampled afresh for every
  batch with the S-IntroVAE reference's formulas (:func:`sample_2d` in NumPy; the pipeline uses
  its TensorFlow twin :func:`sample_2d_tf`); points float32 ``[B, 2]``.
* Standard datasets (``STANDARD_DATASETS``: ``mnist``, ``fashion_mnist``, ``cifar10``,
  ``cifar100``, ``svhn``, ``celeb_a``): from what is already on disk, else downloaded through
  TensorFlow Datasets on first use (:func:`resolve_standard`), in this order:

  1. ``fashion_mnist`` only: the original IDX files of the Debian package
     ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``), 60,000 train / 10,000
     test (``t10k``) 28x28 grey images;
  2. a prepared TFDS dataset in ``--data_dir`` (default the TFDS cache,
     ``~/tensorflow_datasets``);
  3. ``cifar10`` only: the JPEG folder ``<shared data>/cifar10`` when it exists (this
     repository's tests: ``$AS_INTROVAE_SHARED_DATA``, else ``<repo root>/../shared/data``);
  4. a TFDS download into ``--data_dir`` when the network answers;
  5. otherwise a ``FileNotFoundError`` naming what to download or install.
* ``folder:PATH``: an image folder, ``PATH/{train,test}/<class>/<img>``, ``PATH/<class>/<img>`` or
  flat ``PATH/<img>``. When ``PATH`` has ``train``/``test`` subfolders the requested split's
  subfolder is used; otherwise every image under ``PATH`` belongs to every split.
* ``tfds:NAME``: an already prepared TFDS dataset in ``--data_dir`` (``download=False``: nothing
  can be downloaded here).

Image batches are float32 ``[B, H, W, C]`` with pixels in ``[0, 1]``; every pipeline yields full
global batches (``drop_remainder=True``) and is meant to be fed to
``strategy.experimental_distribute_dataset``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gzip
import hashlib
import json
import logging
import os
import pathlib
import zlib

import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)

TWO_D_DATASETS = ("8gaussians", "2spirals", "checkerboard", "rings")
SPLITS = ("train", "test")
CHANNELS = (1, 3)
BAD_IMAGES_MODES = ("fail", "skip")
# Formats tf.io.decode_image reads; other files in an image folder are ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
SHARED_DATA_ENV = "AS_INTROVAE_SHARED_DATA"
# Where find_bad_images keeps its results ("" disables); default $XDG_CACHE_HOME or ~/.cache.
CACHE_DIR_ENV = "AS_INTROVAE_CACHE_DIR"

STANDARD_DATASETS = {
    "mnist": "mnist",
    "fashion_mnist": "fashion_mnist",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "svhn": "svhn_cropped",
    "celeb_a": "celeb_a",
}
"""``--dataset`` name -> TensorFlow Datasets name, for the datasets found or downloaded by name."""
_STANDARD_ALIASES = {"fashion-mnist": "fashion_mnist", "fashionmnist": "fashion_mnist",
                     "celeba": "celeb_a", "svhn_cropped": "svhn"}
TFDS_HOST = ("storage.googleapis.com", 443)
"""Where TFDS downloads from (its GCS mirror); probed before a download is tried."""

_ALLOWED_DATASETS = (
    "8gaussians, 2spirals, checkerboard, rings, " + ", ".join(STANDARD_DATASETS)
    + ", folder:PATH, tfds:NAME"
)
_FASHION_MNIST_INSTALL = "apt-get install -y dataset-fashion-mnist"
_VALIDATION_CHUNK = 256

# ---------------------------------------------------------------------------------------------
# 2-D toy data
# ---------------------------------------------------------------------------------------------


def _canonical_2d(name) -> str:
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
    return 2.0 if _canonical_2d(name) == "8gaussians" else 4.0


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
    key = _canonical_2d(name)
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
    key = _canonical_2d(name)
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


def _two_d_dataset(name: str, batch: int, seed: int) -> tf.data.Dataset:
    # Batch i is sample_2d_tf(name, batch, seed=(seed, i)): fresh points every step, reproducible.
    # 2spirals rows are mixed: the reference's batch is [spiral; reflection], and a strategy
    # splits the global batch into contiguous per-replica parts, which would give each replica
    # one arm only (the distribution of the global batch is unchanged).
    seed = seed % (2**63)

    def make(i):
        return sample_2d_tf(name, batch, tf.stack([tf.constant(seed, tf.int64), i]),
                            shuffle_rows=name == "2spirals")

    ds = tf.data.Dataset.counter(dtype=tf.int64).map(make, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------------
# Dataset strings
# ---------------------------------------------------------------------------------------------


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
    ``<repo root>/../shared/data`` located from this file."""
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return pathlib.Path(env).expanduser().resolve()
    repo_root = pathlib.Path(__file__).resolve().parents[1]
    return (repo_root.parent / "shared" / "data").resolve()


def _check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"--image_size must be a positive integer (or unset), got {image_size!r}")
    return int(image_size)


def _check_channels(channels):
    if channels is None:
        return None
    if isinstance(channels, bool) or channels not in CHANNELS:
        raise ValueError(f"--channels must be one of {CHANNELS} (or unset), got {channels!r}")
    return int(channels)


def parse_dataset(
    dataset: str, image_size: int | None, channels: int | None, data_dir: str | None = None
) -> DatasetSpec:
    """Parses a ``--dataset`` string (see the module docstring) into a :class:`DatasetSpec`.

    ``image_size``/``channels`` (None = the data's own): fashion_mnist defaults to 28/1; a folder
    to the majority of up to 64 images spread over its files (the most common size, square only,
    else ``--image_size`` is required; channels 1 if most are grey, else 3, logged; every image
    is converted to it); tfds to the builder's image feature shape. They must be
    unset for 2-D data. ``data_dir`` is required for ``tfds:NAME``.

    Raises:
      ValueError naming ``--dataset``, ``--image_size``, ``--channels`` or ``--data_dir`` (with
        the allowed values) on bad input;
      FileNotFoundError naming the path when a folder (or the shared CIFAR-10 folder) is missing.
    """
    if not isinstance(dataset, str) or not dataset.strip():
        raise ValueError(f"--dataset must be one of {_ALLOWED_DATASETS}; got {dataset!r}")
    image_size = _check_image_size(image_size)
    channels = _check_channels(channels)
    text = dataset.strip()
    key = text.lower()

    if key in TWO_D_DATASETS:
        if image_size is not None or channels is not None:
            raise ValueError(
                f"--image_size/--channels apply to image datasets only; --dataset {text} is 2-D "
                f"(got --image_size {image_size}, --channels {channels})"
            )
        return DatasetSpec("2d", key, (2,))

    key = _STANDARD_ALIASES.get(key, key)
    if key in STANDARD_DATASETS:
        return resolve_standard(key, image_size, channels, data_dir)

    if key.startswith("folder:"):
        path = text[len("folder:"):].strip()
        if not path:
            raise ValueError(f"--dataset folder:PATH needs a path, got {dataset!r}")
        return _folder_spec(path, image_size, channels, text)

    if key.startswith("tfds:"):
        name = text[len("tfds:"):].strip()
        if not name:
            raise ValueError(f"--dataset tfds:NAME needs a TFDS name, got {dataset!r}")
        return _tfds_spec(name, image_size, channels, data_dir)

    raise ValueError(f"--dataset must be one of {_ALLOWED_DATASETS}; got {dataset!r}")


def _folder_spec(path, image_size, channels, flag_text) -> DatasetSpec:
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
                img = tf.io.decode_image(tf.io.read_file(f), expand_animations=False)
            except (tf.errors.OpError, ValueError):
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
                f"under {root} decodes (e.g. {files[0]}); pass --image_size and --channels "
                "explicitly"
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
                "to choose.", flag_text, greys, greys + colours, colours, channels,
                "grey" if channels == 1 else "RGB",
            )
    return DatasetSpec("folder", root, (image_size, image_size, channels))


def _fashion_mnist_files_present(path: str | None = None) -> bool:
    path = path or FASHION_MNIST_DIR
    return all(
        any(os.path.isfile(os.path.join(path, stem + ext)) for ext in (".gz", ""))
        for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
    )


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

    log.warning("downloading %s with TensorFlow Datasets into %s (first use only)", name,
                data_dir or "the TFDS cache (~/tensorflow_datasets)")
    tfds.builder(name, data_dir=data_dir).download_and_prepare()


def _what_to_get(key: str, tfds_name: str, data_dir) -> str:
    where = data_dir or "~/tensorflow_datasets"
    text = (f"connect to the internet once so that TensorFlow Datasets can download it into "
            f"{where}, or prepare it elsewhere (python -c \"import tensorflow_datasets as tfds; "
            f"tfds.builder('{tfds_name}').download_and_prepare()\") and copy the "
            f"{tfds_name}/ folder into {where}")
    if key == "fashion_mnist":
        text = (f"install the Debian package (sudo {_FASHION_MNIST_INSTALL}), or " + text)
    if key == "cifar10":
        text += (f"; or set ${SHARED_DATA_ENV} to a folder holding "
                 "cifar10/{train,test}/<class>/<image>.jpg")
    if key == "celeb_a":
        text += ("; or pass your own image folder with --dataset=folder:PATH (e.g. CelebA's "
                 "img_align_celeba/)")
    return text


def resolve_standard(key, image_size, channels, data_dir=None) -> DatasetSpec:
    """The :class:`DatasetSpec` of a standard dataset, finding or downloading its data (see the
    module docstring for the order).

    Raises:
      FileNotFoundError: nothing on disk and no download possible; the message names what to
        download or install.
    """
    tfds_name = STANDARD_DATASETS[key]
    if key == "fashion_mnist" and _fashion_mnist_files_present():
        size = image_size or 28
        return DatasetSpec("fashion_mnist", "fashion_mnist", (size, size, channels or 1))
    if tfds_prepared(tfds_name, data_dir):
        return _tfds_spec(tfds_name, image_size, channels, data_dir, require_data_dir=False)
    if key == "cifar10":
        root = shared_data_dir() / "cifar10"
        if root.is_dir():
            return _folder_spec(str(root), image_size, channels, "cifar10")
    if not network_available():
        raise FileNotFoundError(
            f"--dataset {key}: no {key} data on this machine and no network to download it: "
            + _what_to_get(key, tfds_name, data_dir))
    try:
        download_and_prepare(tfds_name, data_dir)
    except Exception as e:  # noqa: BLE001  (TFDS raises many kinds: network, disk, checksum)
        raise FileNotFoundError(
            f"--dataset {key}: downloading {tfds_name} with TensorFlow Datasets failed "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
            + _what_to_get(key, tfds_name, data_dir)) from e
    return _tfds_spec(tfds_name, image_size, channels, data_dir, require_data_dir=False)


_SAMPLED_FILES = 64
"""Files decoded to choose a folder's default ``--image_size`` and ``--channels``."""


def _spread(files, num):
    """Up to ``num`` of ``files``, evenly spread over the sorted list (every class folder)."""
    if len(files) <= num:
        return list(files)
    return [files[int(i * len(files) / num)] for i in range(num)]


def _tfds_spec(name, image_size, channels, data_dir, require_data_dir=True) -> DatasetSpec:
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


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST IDX files
# ---------------------------------------------------------------------------------------------


def _read_idx_ubyte(path: str, ndim: int) -> np.ndarray:
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
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise ValueError(
            f"{path}: IDX size mismatch: header says {dims} ({expected} bytes), file has "
            f"{len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _idx_path(directory: str, stem: str) -> str:
    for candidate in (stem + ".gz", stem):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"Fashion-MNIST file {os.path.join(directory, stem + '.gz')} not found. Install the Debian "
        f"package with `{_FASHION_MNIST_INSTALL}` (it puts the IDX files in {FASHION_MNIST_DIR})."
    )


@functools.lru_cache(maxsize=4)
def _load_fashion_mnist_cached(split: str, path: str) -> np.ndarray:
    prefix = "train" if split == "train" else "t10k"
    file = _idx_path(path, f"{prefix}-images-idx3-ubyte")
    images = _read_idx_ubyte(file, ndim=3)
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


# ---------------------------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------------------------


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
        dirnames[:] = [d for d in dirnames if not d.startswith(".")
                       and os.path.realpath(os.path.join(dirpath, d)) not in seen]
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


def _decode_shape(path):
    img = tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
    return tf.shape(img)


def _decode_chunk(paths):
    return tf.map_fn(_decode_shape, paths, fn_output_signature=tf.TensorSpec([3], tf.int32))


def _surviving_indices(ds: tf.data.Dataset) -> set:
    ok = set()
    for idx, _ in ds.ignore_errors().prefetch(tf.data.AUTOTUNE):
        ok.add(int(idx))
    return ok


_BAD_IMAGE_CACHE: dict = {}


def _cache_dir() -> pathlib.Path | None:
    env = os.environ.get(CACHE_DIR_ENV)
    if env is not None:
        return pathlib.Path(env).expanduser() if env.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "as_introvae_tf"


def _files_key(files) -> str:
    digest = hashlib.sha256()
    for f in files:
        try:
            st = os.stat(f)
            stat = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stat = "missing"
        digest.update(f"{f}\t{stat}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:40]


def _read_cached(key: str, num: int):
    directory = _cache_dir()
    if directory is None:
        return None
    try:
        with open(directory / f"image_check-{key}.json", encoding="utf-8") as fh:
            entry = json.load(fh)
        if entry.get("num_files") == num and isinstance(entry.get("bad"), list):
            return [str(b) for b in entry["bad"]]
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _write_cached(key: str, num: int, bad) -> None:
    directory = _cache_dir()
    if directory is None:
        return
    path = directory / f"image_check-{key}.json"
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"num_files": num, "bad": list(bad)}, fh)
        os.replace(tmp, path)
    except OSError as e:  # a read-only home is no reason to fail
        log.debug("could not write the image check cache %s: %s", path, e)


def find_bad_images(files, cache: bool = True) -> list[str]:
    """Files among ``files`` that ``tf.io.decode_image`` cannot read (corrupt, truncated, not an
    image, unreadable), in the given order.

    Decodes every file once, in chunks of 256 (a chunk that fails is re-checked file by file),
    so the training pipeline never meets an undecodable file: about 1.5 s per 50,000 CIFAR-10
    JPEGs on 2 idle cores. With ``cache``, results are kept per process and on disk (a small
    JSON file in ``$AS_INTROVAE_CACHE_DIR``, default ``~/.cache/as_introvae_tf``; set it to ""
    to disable), keyed by every file's path, size and mtime: a later run only stats the files
    (about 0.2 s for 50,000).
    """
    files = [str(f) for f in files]
    if not files:
        return []
    key = _files_key(files) if cache else None
    if cache:
        if key in _BAD_IMAGE_CACHE:
            return list(_BAD_IMAGE_CACHE[key])
        cached = _read_cached(key, len(files))
        if cached is not None:
            _BAD_IMAGE_CACHE[key] = tuple(cached)
            return cached

    chunks = (
        tf.data.Dataset.from_tensor_slices(files)
        .batch(_VALIDATION_CHUNK)
        .enumerate()
        .map(lambda i, ps: (i, _decode_chunk(ps)), num_parallel_calls=tf.data.AUTOTUNE,
             deterministic=False)
    )
    n_chunks = (len(files) + _VALIDATION_CHUNK - 1) // _VALIDATION_CHUNK
    failed = sorted(set(range(n_chunks)) - _surviving_indices(chunks))
    suspects = [
        j for c in failed
        for j in range(c * _VALIDATION_CHUNK, min((c + 1) * _VALIDATION_CHUNK, len(files)))
    ]
    bad = []
    if suspects:
        singles = (
            tf.data.Dataset.from_tensor_slices([files[j] for j in suspects])
            .enumerate()
            .map(lambda i, p: (i, _decode_shape(p)), num_parallel_calls=tf.data.AUTOTUNE,
                 deterministic=False)
        )
        ok = _surviving_indices(singles)
        bad = [files[j] for k, j in enumerate(suspects) if k not in ok]
    if cache:
        if len(_BAD_IMAGE_CACHE) >= 32:
            _BAD_IMAGE_CACHE.pop(next(iter(_BAD_IMAGE_CACHE)))
        _BAD_IMAGE_CACHE[key] = tuple(bad)
        _write_cached(key, len(files), bad)
    return bad


def _decode_error(path: str) -> str:
    try:
        tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
    except tf.errors.OpError as e:
        return e.message.strip().splitlines()[-1].split("[Op:")[0].strip()
    return "unreadable"


def _to_channels(img, channels: int):
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


def _resize(img, size: int):
    """float ``[..., H, W, C]`` -> ``[..., size, size, C]`` (antialiased bilinear), kept in [0, 1]."""
    out = tf.image.resize(img, [size, size], antialias=True)
    return tf.clip_by_value(out, 0.0, 1.0)


def _resize_if_needed(img, size: int):
    """``[H, W, C]`` -> ``[size, size, C]``; images already that size pass unchanged (and fast)."""
    shape = tf.shape(img)
    same = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
    return tf.cond(same, lambda: img, lambda: _resize(img, size))


def _load_image(path, size: int, channels: int):
    """One image file -> float32 ``[size, size, channels]`` in [0, 1]."""
    img = tf.io.decode_image(tf.io.read_file(path), expand_animations=False, dtype=tf.float32)
    img = _to_channels(img, channels)
    return tf.ensure_shape(_resize_if_needed(img, size), [size, size, channels])


def _load_batch(paths, size: int, channels: int):
    """``[B]`` paths -> float32 ``[B, size, size, channels]``. One tf.data call per batch: about
    2.5x the throughput of a per-file map for small images."""
    return tf.map_fn(
        lambda p: _load_image(p, size, channels),
        paths,
        fn_output_signature=tf.TensorSpec([size, size, channels], tf.float32),
        parallel_iterations=16,
    )


def _folder_dataset(spec, split, batch, seed, shuffle, repeat, bad_images) -> tf.data.Dataset:
    files = list_image_files(spec.name, split)
    bad = find_bad_images(files)
    if bad:
        described = "; ".join(f"{f} ({_decode_error(f)})" for f in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        if bad_images == "fail":
            raise ValueError(
                f"{len(bad)} unreadable image file(s) under {spec.name}: {described}{more}. "
                "Remove them or pass --bad_images skip (bad_images='skip') to skip them."
            )
        log.warning(
            "skipped %d unreadable image file(s) under %s: %s%s",
            len(bad), spec.name, ", ".join(bad[:10]), more,
        )
        bad_set = set(bad)
        files = [f for f in files if f not in bad_set]
        if not files:
            raise ValueError(f"no readable image files under {spec.name} ({len(bad)} skipped)")
    if not repeat and len(files) < batch:
        log.warning(
            "%s (%s) has %d images, fewer than one batch of %d: the dataset is empty",
            spec.name, split, len(files), batch,
        )
    size, _, channels = spec.shape
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch, drop_remainder=True)
    ds = ds.map(lambda ps: _load_batch(ps, size, channels), num_parallel_calls=tf.data.AUTOTUNE)
    if bad_images == "skip":
        # Only files that broke after the up-front check can fail here; drop their batch.
        ds = ds.ignore_errors(log_warning=True)
    return ds.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST and TFDS pipelines
# ---------------------------------------------------------------------------------------------


def _fashion_mnist_dataset(spec, split, batch, seed, shuffle, repeat) -> tf.data.Dataset:
    images = tf.constant(load_fashion_mnist(split))
    size, _, channels = spec.shape
    n = int(images.shape[0])

    def gather(idx):
        x = tf.cast(tf.gather(images, idx), tf.float32)[..., None] / 255.0
        if channels == 3:
            x = tf.tile(x, [1, 1, 1, 3])
        if size != 28:
            x = _resize(x, size)
        return tf.ensure_shape(x, [batch, size, size, channels])

    # Shuffle indices (cheap scalars, full buffer), gather whole batches.
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch, drop_remainder=True).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _tfds_dataset(spec, split, batch, seed, shuffle, repeat, data_dir) -> tf.data.Dataset:
    # A standard dataset found by name (resolve_standard) may sit in the TFDS cache.
    if not data_dir and not tfds_prepared(spec.name, None):
        raise ValueError(
            f"--dataset tfds:{spec.name} needs --data_dir (a folder with prepared TFDS data)"
        )
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load(
            spec.name, split=split, data_dir=data_dir, download=False, shuffle_files=shuffle,
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
        img = _to_channels(img, channels)
        return tf.ensure_shape(_resize_if_needed(img, size), [size, size, channels])

    ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def count_examples(spec: DatasetSpec, split: str, *, bad_images: str = "fail", data_dir=None) -> int:
    """Examples in a split of an image dataset: readable files of a folder's split (unreadable
    ones are not counted), Fashion-MNIST's 60,000 / 10,000, a TFDS split's size.

    Raises:
      ValueError for 2-D data (infinite) or as :func:`build_dataset` for bad folders.
    """
    if spec.kind == "2d":
        raise ValueError("2-D datasets are sampled afresh: they have no size")
    if spec.kind == "fashion_mnist":
        return int(load_fashion_mnist(split).shape[0])
    if spec.kind == "folder":
        files = list_image_files(spec.name, split)
        return len(files) - len(find_bad_images(files))
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
      Folder images are decoded with ``tf.io.decode_image``, converted to ``C`` channels (grey ->
      RGB by tiling, RGB -> grey by ``rgb_to_grayscale``, alpha dropped) and resized to ``H x W``
      (``tf.image.resize``, antialiased bilinear; not aspect-preserving).
    * ``bad_images`` (folders): every file is checked up front (:func:`find_bad_images`);
      ``"fail"`` raises ValueError naming the unreadable files, ``"skip"`` drops them and logs a
      warning with their count and up to 10 names.

    Raises:
      ValueError on a bad split, batch size, ``bad_images``, unreadable/empty folders or a missing
        ``data_dir`` for TFDS; FileNotFoundError for missing data (the Debian package hint for
        fashion_mnist, the path for folders, the name and data_dir for TFDS).
    """
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"spec must be a DatasetSpec (see parse_dataset), got {type(spec).__name__}")
    if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, (int, np.integer)) \
            or global_batch_size < 1:
        raise ValueError(f"global_batch_size must be a positive integer, got {global_batch_size!r}")
    if bad_images not in BAD_IMAGES_MODES:
        raise ValueError(f"--bad_images must be one of {BAD_IMAGES_MODES}, got {bad_images!r}")
    batch = int(global_batch_size)
    seed = int(seed)
    if spec.kind == "2d":
        return _two_d_dataset(_canonical_2d(spec.name), batch, seed)
    if spec.kind != "tfds" and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if spec.kind == "fashion_mnist":
        return _fashion_mnist_dataset(spec, split, batch, seed, shuffle, repeat)
    if spec.kind == "folder":
        return _folder_dataset(spec, split, batch, seed, shuffle, repeat, bad_images)
    if spec.kind == "tfds":
        return _tfds_dataset(spec, split, batch, seed, shuffle, repeat, data_dir)
    raise ValueError(f"unknown DatasetSpec kind {spec.kind!r}; expected 2d, fashion_mnist, folder, tfds")
