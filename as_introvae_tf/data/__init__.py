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
     repository's tests: ``$AS_INTROVAE_SHARED_DATA``, else the ``shared/data`` folder beside
     the repository root);
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

One module per source: ``two_d`` (2-D samplers), ``idx`` (IDX files: Fashion-MNIST images and
labels), ``folders`` (image folders; ``image_files``: one file's header and decode,
``image_scan``: the up-front check of a folder's files), ``standard`` (standard datasets by
name, TFDS); ``common`` (``DatasetSpec``, splits, image conversion) and ``pipeline``
(``parse_dataset``, ``build_dataset``, ``count_examples``, dispatching by source). Every public
name is exported here; to replace one in a test, patch the module that calls it (e.g.
``data.standard.network_available``).
"""

from as_introvae_tf.data.common import BAD_IMAGES_MODES
from as_introvae_tf.data.common import CACHE_DIR_ENV
from as_introvae_tf.data.common import CHANNELS
from as_introvae_tf.data.common import DATA_AUTOTUNE_ENV
from as_introvae_tf.data.common import SHARED_DATA_ENV
from as_introvae_tf.data.common import SPLITS
from as_introvae_tf.data.common import DatasetSpec
from as_introvae_tf.data.common import shared_data_dir
from as_introvae_tf.data.common import with_pipeline_options
from as_introvae_tf.data.folders import IMAGE_EXTENSIONS
from as_introvae_tf.data.folders import MAX_CONSECUTIVE_BAD_BATCHES
from as_introvae_tf.data.folders import list_image_files
from as_introvae_tf.data.image_files import decode_file
from as_introvae_tf.data.image_scan import DEFAULT_MAX_IMAGE_PIXELS
from as_introvae_tf.data.image_scan import ImageScan
from as_introvae_tf.data.image_scan import find_bad_images
from as_introvae_tf.data.image_scan import scan_images
from as_introvae_tf.data.idx import FASHION_MNIST_DIR
from as_introvae_tf.data.idx import load_fashion_mnist
from as_introvae_tf.data.idx import load_fashion_mnist_labels
from as_introvae_tf.data.idx import read_idx_ubyte
from as_introvae_tf.data.pipeline import build_dataset
from as_introvae_tf.data.pipeline import count_examples
from as_introvae_tf.data.pipeline import parse_dataset
from as_introvae_tf.data.standard import STANDARD_DATASETS
from as_introvae_tf.data.standard import TFDS_HOST
from as_introvae_tf.data.standard import download_and_prepare
from as_introvae_tf.data.standard import network_available
from as_introvae_tf.data.standard import resolve_standard
from as_introvae_tf.data.standard import tfds_prepared
from as_introvae_tf.data.two_d import TWO_D_DATASETS
from as_introvae_tf.data.two_d import sample_2d
from as_introvae_tf.data.two_d import sample_2d_tf
from as_introvae_tf.data.two_d import two_d_range

__all__ = [
  "BAD_IMAGES_MODES",
  "build_dataset",
  "CACHE_DIR_ENV",
  "CHANNELS",
  "DATA_AUTOTUNE_ENV",
  "count_examples",
  "DatasetSpec",
  "decode_file",
  "DEFAULT_MAX_IMAGE_PIXELS",
  "download_and_prepare",
  "FASHION_MNIST_DIR",
  "find_bad_images",
  "IMAGE_EXTENSIONS",
  "ImageScan",
  "list_image_files",
  "load_fashion_mnist",
  "load_fashion_mnist_labels",
  "MAX_CONSECUTIVE_BAD_BATCHES",
  "network_available",
  "parse_dataset",
  "read_idx_ubyte",
  "resolve_standard",
  "sample_2d",
  "sample_2d_tf",
  "scan_images",
  "shared_data_dir",
  "SHARED_DATA_ENV",
  "SPLITS",
  "STANDARD_DATASETS",
  "TFDS_HOST",
  "tfds_prepared",
  "TWO_D_DATASETS",
  "two_d_range",
  "with_pipeline_options",
]
