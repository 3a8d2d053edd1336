"""Feature networks for FID/KID: a small classifier trained here, or InceptionV3 from a file.

Two kinds of features, never mixed up in the outputs:

* `fid_inception`: `keras.applications.InceptionV3(include_top=False, pooling="avg")`, 2048-d
  pool features, with weights from a file (`--inception_weights`; nothing can be downloaded
  here). Images are resized to 299 x 299 (bilinear), grey is tiled to RGB and pixels are mapped
  from [0, 1] to [-1, 1] (`keras.applications.inception_v3.preprocess_input`). These are the
  usual FID numbers only with the standard ImageNet weights; even then the Keras port differs
  slightly from the TF-GAN / pytorch-fid graph.
* `fid_<netname>` (e.g. `fid_fmnist_cnn`): the penultimate layer (named `features`) of a small
  CNN classifier trained on the dataset's own labels (`train_feature_net`, CLI
  `tools/train_feature_net.py`). A domain FID that works offline; comparable only between runs
  scored with the same saved network, never with published Inception FIDs.

Labels: Fashion-MNIST from the Debian package's IDX label files (`*-labels-idx1-ubyte.gz`),
image folders (CIFAR-10: `<root>/{train,test}/<class>/<image>`) from the class folder names.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import time

import keras
import numpy as np
import tensorflow as tf

from as_introvae_tf import data

FEATURE_LAYER = "features"
INCEPTION_SIZE = 299
CACHE_DIR_ENV = data.CACHE_DIR_ENV


@dataclasses.dataclass
class FeatureNet:
  """A feature extractor for FID/KID.

  name: the metric suffix: `fid_<name>`, `kid_<name>` ("inception" only for InceptionV3).
  model: `keras.Model`, preprocessed images -> float32 `[B, D]` features.
  input_shape: `(H, W, C)` the model expects; `adapt_images` resizes/converts to it.
  preprocess: float32 `[B, H, W, C]` in [0, 1] -> model input (identity for the classifiers).
  path: the file it was loaded from.
  """

  name: str
  model: keras.Model
  input_shape: tuple
  preprocess: object = None
  path: str | None = None

  def features(self, images, batch_size=100):
    """Features of images.

    Args:
      images: float `[N, H, W, C]` in [0, 1], any size and 1 or 3 channels.
      batch_size: images per forward pass.

    Returns:
      float64 numpy `[N, D]`.
    """
    images = np.asarray(images, np.float32)
    out = []
    for i in range(0, len(images), batch_size):
      x = adapt_images(images[i : i + batch_size], self.input_shape)
      if self.preprocess is not None:
        x = self.preprocess(x)
      out.append(np.asarray(self.model(x, training=False), np.float64))
    return np.concatenate(out, axis=0)


def adapt_images(images, shape):
  """Resizes (bilinear, antialiased) and converts channels (grey tiled to RGB, RGB to grey).

  Args:
    images: float `[B, H, W, C]` in [0, 1], C in (1, 3).
    shape: target `(H', W', C')`; `H' = W' = None` keeps the size.

  Returns:
    float32 tensor `[B, H', W', C']` in [0, 1].
  """
  x = tf.convert_to_tensor(images, tf.float32)
  height, width, channels = shape
  if x.shape[-1] != channels:
    if channels == 3 and x.shape[-1] == 1:
      x = tf.tile(x, [1, 1, 1, 3])
    elif channels == 1 and x.shape[-1] == 3:
      x = tf.image.rgb_to_grayscale(x)
    else:
      raise ValueError(f"cannot convert {x.shape[-1]} channels to {channels}")
  if height is not None and (x.shape[1] != height or x.shape[2] != width):
    x = tf.clip_by_value(tf.image.resize(x, [int(height), int(width)], antialias=True), 0.0, 1.0)
  return x


# ---------------------------------------------------------------------------------------------
# InceptionV3
# ---------------------------------------------------------------------------------------------


def inception_preprocess(images):
  """Images in [0, 1] -> InceptionV3 input: 299 x 299 RGB in [-1, 1].

  Bilinear resize (as TF-GAN's `preprocess_image`), grey tiled to 3 channels, then
  `2 x - 1` (= `keras.applications.inception_v3.preprocess_input` on [0, 255] pixels).

  Args:
    images: float `[B, H, W, C]` in [0, 1], C in (1, 3).

  Returns:
    float32 tensor `[B, 299, 299, 3]` in [-1, 1].
  """
  x = tf.convert_to_tensor(images, tf.float32)
  if x.shape[-1] == 1:
    x = tf.tile(x, [1, 1, 1, 3])
  if x.shape[1] != INCEPTION_SIZE or x.shape[2] != INCEPTION_SIZE:
    x = tf.image.resize(x, [INCEPTION_SIZE, INCEPTION_SIZE], method="bilinear")
  return keras.applications.inception_v3.preprocess_input(tf.clip_by_value(x, 0.0, 1.0) * 255.0)


def load_inception(weights):
  """InceptionV3 pool features (2048-d) with weights from a file.

  Args:
    weights: path of a Keras InceptionV3 weights file without the top (e.g. Keras's
      `inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`, or a `.weights.h5`).

  Returns:
    `FeatureNet` named "inception".

  Raises:
    FileNotFoundError: the file does not exist.
  """
  weights = os.path.abspath(os.path.expanduser(str(weights)))
  if not os.path.isfile(weights):
    raise FileNotFoundError(
      f"--inception_weights={weights}: no such file (InceptionV3 weights "
      "cannot be downloaded here; copy the Keras notop .h5 file over)"
    )
  model = keras.applications.InceptionV3(
    include_top=False,
    pooling="avg",
    weights=weights,
    input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3),
  )
  # Images are adapted to 3 channels at their own size; inception_preprocess resizes to 299.
  return FeatureNet("inception", model, (None, None, 3), inception_preprocess, weights)


# ---------------------------------------------------------------------------------------------
# Labeled data
# ---------------------------------------------------------------------------------------------


FASHION_MNIST_CLASSES = (
  "t-shirt/top",
  "trouser",
  "pullover",
  "dress",
  "coat",
  "sandal",
  "shirt",
  "sneaker",
  "bag",
  "ankle boot",
)
"""Names of the labels of `data.load_fashion_mnist_labels` (the IDX reader of `data/idx.py`)."""

load_fashion_mnist_labels = data.load_fashion_mnist_labels


def _folder_labels(root, split, files):
  base = os.path.join(root, split) if os.path.isdir(os.path.join(root, split)) else root
  classes = []
  for f in files:
    rel = os.path.relpath(f, base).split(os.sep)
    if len(rel) < 2:
      raise ValueError(
        f"{f} is not in a class folder: a feature network needs labels, i.e. {base}/<class>/<image>"
      )
    classes.append(rel[0])
  names = sorted(set(classes))
  if len(names) < 2:
    raise ValueError(f"{base} has {len(names)} class folder(s); a classifier needs at least 2")
  index = {n: i for i, n in enumerate(names)}
  return np.array([index[c] for c in classes], np.int32), tuple(names)


def _decode_files(files, orientations, shape):
  """Files -> uint8 `[N, *shape]`, read as training reads them (`data.image_files.load_image`:
  EXIF orientation, channels, size)."""
  size, _, channels = shape

  def load(path, orientation):
    img = data.image_files.load_image(path, orientation, size, channels)
    return tf.cast(tf.round(img * 255.0), tf.uint8)

  if not files:
    return np.zeros([0, size, size, channels], np.uint8)
  ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(orientations, tf.int32))).map(
    load, num_parallel_calls=tf.data.AUTOTUNE
  )
  return np.concatenate(
    list(data.with_pipeline_options(ds.batch(1024)).as_numpy_iterator()), axis=0
  )


def load_labeled(spec, split):
  """Images and class labels of a dataset split (for training or checking a feature net).

  Args:
    spec: `data.DatasetSpec` of kind "fashion_mnist" or "folder" (class subfolders).
    split: "train" or "test".

  Returns:
    (images uint8 `[N, H, W, C]` at `spec.shape`, labels int32 `[N]`, class names tuple).

  Raises:
    ValueError: the dataset has no labels (2-D data, TFDS, flat folders).
  """
  if spec.kind == "fashion_mnist":
    images = np.asarray(data.load_fashion_mnist(split))[..., None]
    if tuple(spec.shape) != (28, 28, 1):
      images = np.asarray(
        tf.cast(tf.round(adapt_images(images / 255.0, spec.shape) * 255.0), tf.uint8)
      )
    return images, load_fashion_mnist_labels(split).astype(np.int32), FASHION_MNIST_CLASSES
  if spec.kind == "folder":
    files = data.list_image_files(spec.name, split)
    scan = data.scan_images(files)
    files = [f for f in files if f not in scan.bad]
    labels, names = _folder_labels(spec.name, split, files)
    turns = [scan.orientation.get(f, 1) for f in files]
    return _decode_files(files, turns, spec.shape), labels, names
  raise ValueError(
    f"no class labels for a {spec.kind} dataset ({spec.name}); a feature network "
    "can be trained on fashion_mnist or an image folder with class subfolders "
    "(e.g. cifar10); pass --feature_net=PATH to use one trained elsewhere"
  )


# ---------------------------------------------------------------------------------------------
# The small classifier
# ---------------------------------------------------------------------------------------------


def dataset_key(spec):
  """Cache name of a dataset's default feature net: "fashion_mnist", "cifar10", or
  "folder_<basename>_<hash>" for other image folders; None for data without labels."""
  if spec.kind == "fashion_mnist":
    return "fashion_mnist"
  if spec.kind == "folder":
    if os.path.abspath(spec.name) == str(data.shared_data_dir() / "cifar10"):
      return "cifar10"
    import hashlib  # pylint: disable=import-outside-toplevel

    digest = hashlib.sha1(os.path.abspath(spec.name).encode()).hexdigest()[:8]
    base = re.sub(r"[^A-Za-z0-9_]+", "_", os.path.basename(spec.name.rstrip("/"))) or "folder"
    return f"folder_{base}_{digest}"
  return None


def net_name(key):
  """Metric suffix of a dataset's feature net: `fmnist_cnn`, `cifar10_cnn`, `<key>_cnn`."""
  return {"fashion_mnist": "fmnist_cnn"}.get(key, f"{key}_cnn")


def default_feature_net_path(key):
  """`$AS_INTROVAE_CACHE_DIR` (else `$XDG_CACHE_HOME` or `~/.cache`, + `/as_introvae_tf`)
  `/feature_nets/<key>.keras`."""
  env = os.environ.get(CACHE_DIR_ENV)
  if env and env.strip():
    base = pathlib.Path(env).expanduser()
  else:
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    base = pathlib.Path(home) / "as_introvae_tf"
  return base / "feature_nets" / f"{key}.keras"


def build_classifier(input_shape, num_classes, name, feature_dim=128):
  """A small CNN: conv-pool blocks (16, 32 channels; a third of 64 for >= 32 px), a linear
  `features` layer, ReLU, dropout, logits.

  The features are taken before the ReLU so that no feature is identically 0 (a dead ReLU
  unit would make the feature covariance singular).

  Args:
    input_shape: `(H, W, C)`, pixels in [0, 1].
    num_classes: classes of the logits layer.
    name: model name (the metric suffix).
    feature_dim: units of the `features` layer used for FID/KID.

  Returns:
    `keras.Model` (images -> logits `[B, num_classes]`).
  """
  inputs = keras.Input(shape=tuple(input_shape), name="images")
  x = keras.layers.Rescaling(2.0, offset=-1.0)(inputs)
  widths = (16, 32, 64) if min(input_shape[:2]) >= 32 else (16, 32)
  for i, width in enumerate(widths):
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(feature_dim, name=FEATURE_LAYER)(x)
  x = keras.layers.ReLU()(x)
  x = keras.layers.Dropout(0.3)(x)
  outputs = keras.layers.Dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=name)


def train_feature_net(
  dataset,
  out,
  *,
  epochs=2,
  max_steps=None,
  batch_size=128,
  lr=1e-3,
  seed=0,
  eval_examples=None,
  log=print,
):
  """Trains the small CNN classifier on a dataset's labels and saves it as `.keras`.

  Measured on 2 shared CPU cores, 2 epochs: Fashion-MNIST 45-70 s, 89% test accuracy;
  CIFAR-10 (50,000 JPEGs decoded first) 90 s, 60% test accuracy.

  Args:
    dataset: a `--dataset` string with labels: "fashion_mnist", "cifar10", "folder:PATH".
      The net is trained at the dataset's own image size and channels.
    out: output path, ending in `.keras`; a JSON description is written to `out + ".json"`.
    epochs: passes over the training split.
    max_steps: if set, stop after this many steps in total (for tests: 1).
    batch_size, lr, seed: Adam training settings.
    eval_examples: test images used for the reported accuracy (None: all).
    log: called with progress strings.

  Returns:
    dict: name, dataset, input_shape, num_classes, steps, test_accuracy, seconds, path.
  """
  out = str(out)
  if not out.endswith(".keras"):
    raise ValueError(f"--out must end in .keras, got {out}")
  spec = data.parse_dataset(dataset, None, None)
  start = time.time()
  images, labels, classes = load_labeled(spec, "train")  # ValueError for data without labels
  key = dataset_key(spec)
  keras.utils.set_random_seed(seed)
  model = build_classifier(spec.shape, len(classes), net_name(key))
  model.compile(
    optimizer=keras.optimizers.Adam(lr),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
  )
  ds = (
    tf.data.Dataset.from_tensor_slices((images, labels))
    .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    .map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
    .batch(batch_size)
    .prefetch(tf.data.AUTOTUNE)
  )
  steps_per_epoch = int(np.ceil(len(images) / batch_size))
  if max_steps is not None:
    ds = ds.repeat().take(int(max_steps))
    epochs, steps_per_epoch = 1, int(max_steps)
  log(
    f"training feature net {model.name} on {dataset} ({len(images)} images, "
    f"{len(classes)} classes, {epochs} epoch(s) of {steps_per_epoch} steps)"
  )
  model.fit(data.with_pipeline_options(ds), epochs=epochs, shuffle=False, verbose=0)
  test_images, test_labels, _ = load_labeled(spec, "test")
  if eval_examples is not None:
    test_images, test_labels = test_images[:eval_examples], test_labels[:eval_examples]
  logits = model.predict(test_images.astype(np.float32) / 255.0, batch_size=500, verbose=0)
  accuracy = float(np.mean(np.argmax(logits, axis=1) == test_labels))
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  tmp = out[: -len(".keras")] + f".tmp{os.getpid()}.keras"
  model.save(tmp)
  os.replace(tmp, out)
  info = dict(
    name=model.name,
    dataset=dataset,
    dataset_key=key,
    input_shape=list(spec.shape),
    num_classes=len(classes),
    classes=list(classes),
    feature_layer=FEATURE_LAYER,
    feature_dim=int(model.get_layer(FEATURE_LAYER).units),
    steps=int(epochs * steps_per_epoch),
    test_accuracy=accuracy,
    test_examples=int(len(test_labels)),
    seconds=round(time.time() - start, 1),
    path=os.path.abspath(out),
  )
  with open(out + ".json", "w") as f:
    json.dump(info, f, indent=2)
  log(
    f"saved {out}: test accuracy {accuracy:.4f} after {info['steps']} steps ({info['seconds']} s)"
  )
  return info


def load_feature_net(path):
  """A saved classifier as a `FeatureNet` on its `features` layer (else its penultimate layer).

  The metric suffix is the model's name (never "inception": such a name gets `_net` appended).

  Raises:
    FileNotFoundError: no such file.
  """
  path = os.path.abspath(os.path.expanduser(str(path)))
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"--feature_net={path}: no such file (train one with tools/train_feature_net.py)"
    )
  model = keras.saving.load_model(path, compile=False)
  names = [layer.name for layer in model.layers]
  layer = model.get_layer(FEATURE_LAYER) if FEATURE_LAYER in names else model.layers[-2]
  extractor = keras.Model(model.inputs, layer.output, name=f"{model.name}_features")
  name = re.sub(r"[^A-Za-z0-9_]+", "_", model.name)
  if name.startswith("inception"):
    name += "_net"
  return FeatureNet(name, extractor, tuple(int(d) for d in model.inputs[0].shape[1:]), None, path)


def get_default_feature_net(spec, log=print, **train_kwargs):
  """The cached feature net of a dataset, trained on first use (printing that it does so).

  Returns:
    `FeatureNet`, or None for data without labels.
  """
  key = dataset_key(spec)
  if key is None:
    return None
  path = default_feature_net_path(key)
  if not path.exists():
    dataset = "fashion_mnist" if key == "fashion_mnist" else f"folder:{spec.name}"
    log(
      f"No feature net for {key} at {path}: training one now (about a minute on a CPU; "
      f"tools/train_feature_net.py does the same)"
    )
    train_feature_net(dataset, str(path), log=log, **train_kwargs)
  return load_feature_net(path)
