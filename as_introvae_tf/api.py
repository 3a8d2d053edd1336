"""Using a trained model from Python: `as_introvae_tf.load(path)`.

  import as_introvae_tf
  model = as_introvae_tf.load("runs/quickstart")       # a training workdir ...
  model = as_introvae_tf.load("exports/quickstart")    # ... or an export (its latest version)
  images = model.sample(16, seed=0)                     # float32 [16, 28, 28, 1] in [0, 1]
  mu, logvar = model.encode(images)                     # float32 [16, z_dim] each
  frames = model.interpolate(images[0], images[1], steps=8)   # [8, 28, 28, 1]

Everything takes and returns NumPy arrays (anything `np.asarray` accepts goes in); nothing
needs a GPU. Shapes: `example_shape` is `(H, W, C)` for image models (pixels float32 in
[0, 1], NHWC) and `(2,)` for the 2-D toy models (points, unbounded).

A workdir is loaded from WORKDIR/config.json and its newest intact checkpoint through
`run.restore_run`, the restore path evaluation and export use (same checkpoint choice,
warnings and errors): the networks are rebuilt in float32 (whatever --mixed_precision the run
used) and no data is read. Samples and decodes use the EMA decoder (what training samples
with) when the run has one, otherwise the decoder; `decoder="raw"` picks the trained decoder. An export directory (`as-introvae-export` output:
EXPORT_DIR with version folders, or one VERSION folder) is loaded as its SavedModel, whose
decoder is the one chosen at export time (EMA by default); its `max_batch` is honoured.
Inputs are checked the same way for both (shape, NaN/inf, pixels in [0, 1]: ValueError).
"""

from __future__ import annotations

import json
import os

import numpy as np

DECODERS = ("ema", "raw")
BATCH_SIZE = 256
"""Examples per call of the networks; an export's `max_batch` (model_card.json) lowers it."""


class TrainedModel:
  """A trained introspective VAE (or baseline) for inference, NumPy in and out.

  Attributes:
    method: the training method (e.g. "as_introvae").
    dataset: the --dataset it was trained on.
    z_dim: latent dimension.
    example_shape: shape of one example: `(H, W, C)` or `(2,)`.
    step: the training step of the weights.
    source: "workdir" or "export".
    path: the checkpoint prefix or SavedModel folder loaded.
    has_encoder: False for WGAN-GP (its encoder is a critic): `encode`, `reconstruct` and
      image interpolation raise then.
    batch_size: the most examples sent to the networks per call (256, or less: an export's
      `max_batch`, which its signatures enforce).
  """

  def __init__(
    self,
    *,
    method,
    dataset,
    z_dim,
    example_shape,
    step,
    source,
    path,
    decode_fn,
    encode_fn=None,
    batch_size=BATCH_SIZE,
  ):
    self.method, self.dataset = method, dataset
    self.z_dim = int(z_dim)
    self.example_shape = tuple(int(d) for d in example_shape)
    self.step, self.source, self.path = int(step), source, path
    self._decode_fn, self._encode_fn = decode_fn, encode_fn
    self.has_encoder = encode_fn is not None
    self.batch_size = int(batch_size)

  @property
  def is_image(self):
    return len(self.example_shape) == 3

  def __repr__(self):
    return (
      f"TrainedModel(method={self.method!r}, dataset={self.dataset!r}, "
      f"z_dim={self.z_dim}, example_shape={self.example_shape}, step={self.step}, "
      f"source={self.source!r})"
    )

  # --- checks --------------------------------------------------------------------------------

  def _examples(self, x, name="images"):
    x = np.asarray(x, np.float32)
    if x.shape[1:] != self.example_shape:
      raise ValueError(
        f"{name} must have shape [N, {', '.join(map(str, self.example_shape))}] "
        f"(float32{', pixels in [0, 1]' if self.is_image else ''}); got "
        f"{list(x.shape)}"
      )
    what = "images" if self.is_image else "points"
    if not np.isfinite(x).all():
      raise ValueError(f"{what} must be finite; got NaN or inf values")
    if self.is_image and x.size and (x.min() < 0.0 or x.max() > 1.0):
      raise ValueError(
        f"images must be float32 pixel values in [0, 1]; got values from {x.min()} to {x.max()}"
      )
    return x

  def _latents(self, z):
    z = np.asarray(z, np.float32)
    if z.ndim != 2 or z.shape[1] != self.z_dim:
      raise ValueError(f"z must have shape [N, {self.z_dim}]; got {list(z.shape)}")
    if not np.isfinite(z).all():
      raise ValueError("z must be finite; got NaN or inf values")
    return z

  def _need_encoder(self, what):
    if not self.has_encoder:
      raise ValueError(
        f"{what} needs an encoder, and a {self.method} model has none (its "
        "encoder network is a critic)"
      )

  def _batched(self, fn, x, empty):
    if len(x) == 0:  # (some TF kernels reject empty batches)
      return empty
    parts = [fn(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
    if isinstance(parts[0], tuple):
      return tuple(np.concatenate(p) for p in zip(*parts))
    return np.concatenate(parts)

  # --- the API -------------------------------------------------------------------------------

  def decode(self, z):
    """Latent codes float `[N, z_dim]` -> examples float32 `[N, *example_shape]` (images
    clipped to [0, 1]), in calls of at most `batch_size` codes. Raises ValueError naming the
    expected shape, or for NaN/inf codes (workdir and export alike)."""
    return self._batched(
      self._decode_fn, self._latents(z), np.zeros((0, *self.example_shape), np.float32)
    )

  def sample(self, n, seed=None):
    """`n` samples from the prior: decode(z) with z ~ N(0, I) drawn by
    `np.random.default_rng(seed)` (the same seed gives the same samples; None: fresh ones).

    Returns float32 `[n, *example_shape]`.

    Raises:
      ValueError: `n` not an integer >= 0.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
      raise ValueError(f"n must be an integer >= 0; got {n!r}")
    z = np.random.default_rng(seed).standard_normal((int(n), self.z_dim)).astype(np.float32)
    return self.decode(z)

  def encode(self, images):
    """Examples float `[N, *example_shape]` -> `(mu, logvar)`, float32 `[N, z_dim]` each: the
    Gaussian posterior q(z|x) = N(mu, exp(logvar)). Raises ValueError for a wrong shape,
    NaN/inf values or (images) pixels outside [0, 1], workdir and export alike."""
    self._need_encoder("encode")
    empty = np.zeros((0, self.z_dim), np.float32)
    return self._batched(self._encode_fn, self._examples(images), (empty, empty))

  def reconstruct(self, images):
    """Examples `[N, *example_shape]` -> decode(mu(images)), float32 `[N, *example_shape]`."""
    mu, _ = self.encode(images)
    return self.decode(mu)

  def interpolate(self, a, b, steps=8, latent=False):
    """Decodes `steps` evenly spaced points on the line from a's to b's latent code.

    Args:
      a: one end: an example (`example_shape`) or a batch `[N, *example_shape]`, encoded to
        its posterior mean; with `latent=True`, a latent code (`[z_dim]` or `[N, z_dim]`).
      b: the other end, shaped as `a`.
      steps: points including both ends, >= 2.

    Returns:
      float32 `[steps, *example_shape]` for single examples; `[N, steps, *example_shape]` for
      batches. The first and last entries are the reconstructions (decodes) of a and b.

    Raises:
      ValueError: `steps` not an integer >= 2, or `a` and `b` of different shapes.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
      raise ValueError(f"steps must be an integer >= 2; got {steps!r}")
    single_shape = (self.z_dim,) if latent else self.example_shape
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    single = a.shape == single_shape
    if single:
      a, b = a[None], b[None]
    if a.shape != b.shape:
      raise ValueError(f"a and b must have the same shape; got {list(a.shape)} and {list(b.shape)}")
    if latent:
      za, zb = self._latents(a), self._latents(b)
    else:
      za, zb = self.encode(a)[0], self.encode(b)[0]
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    z = za[:, None] + t * (zb - za)[:, None]  # [N, steps, z_dim]
    out = self.decode(z.reshape(-1, self.z_dim)).reshape(len(za), steps, *self.example_shape)
    return out[0] if single else out


# === Loading ==================================================================================


def _is_export_version(path):
  return os.path.isfile(os.path.join(path, "saved_model.pb"))


def _versions(path):
  """The numbered version folders of an export directory, newest first."""
  return sorted(
    (int(d) for d in os.listdir(path) if d.isdigit() and os.path.isdir(os.path.join(path, d))),
    reverse=True,
  )


def load(path, decoder="ema", checkpoint=None):
  """Loads a trained model for inference (see the module docstring).

  Args:
    path: a training workdir (config.json + checkpoints/), an export directory (version
      folders 1/, 2/, ...: the newest that loads) or one export version folder; relative to
      the working directory, or absolute.
    decoder: workdirs only: "ema" (the EMA decoder, what training samples with; the decoder
      when the run has no EMA) or "raw" (the trained decoder).
    checkpoint: workdirs only: a checkpoint prefix (e.g. WORKDIR/checkpoints/ckpt-1000);
      default the newest intact one, chosen as training's resume, evaluation and export
      choose it (`checkpoints.choose`; a warning names a damaged newer one).

  Returns:
    `TrainedModel`.

  Raises:
    FileNotFoundError: `path` does not exist, or is neither a workdir nor an export;
      `checkpoints.NoCheckpointError` (a FileNotFoundError) when the workdir has no
      checkpoint yet.
    ValueError: a bad `decoder`; `checkpoints.CheckpointError` (a ValueError): every
      checkpoint damaged, the one asked for damaged, or one that does not match config.json
      (`run.CheckpointMismatchError`); `config.ConfigError`: an unreadable config.json; no
      export version loads (each named with its error); the version folder given does not
      load (named, with its error).
  """
  from as_introvae_tf import workdir as workdir_lib  # pylint: disable=import-outside-toplevel

  path = workdir_lib.resolve(path)
  if decoder not in DECODERS:
    raise ValueError(f"decoder must be one of {DECODERS}; got {decoder!r}")
  if not os.path.isdir(path):
    raise FileNotFoundError(
      f"{path} does not exist (expected a training workdir or an export directory)"
    )
  if os.path.isfile(os.path.join(path, "config.json")):
    return _load_workdir(path, decoder, checkpoint)
  if _is_export_version(path):
    try:
      return _load_export(path)
    except Exception as e:  # pylint: disable=broad-except  # OSError, DecodeError, OpError...
      raise ValueError(
        f"the export version folder {path} does not load ({_first_line(e)}). Export again "
        "(as-introvae-export)."
      ) from e
  versions = _versions(path)
  if versions:
    return _load_newest_export(path, versions)
  raise FileNotFoundError(
    f"{path} is neither a training workdir (no config.json) nor an export (no "
    "saved_model.pb in it or in a numbered version folder): train with as-introvae-train "
    "--workdir=PATH or export with as-introvae-export"
  )


def _first_line(error):
  """`Type: the first line of its message` (300 characters at most) of an exception."""
  text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _load_newest_export(path, versions):
  """The newest version of export directory `path` that loads; a warning names each newer
  broken one and the version loaded instead."""
  from absl import logging  # pylint: disable=import-outside-toplevel

  broken = []
  for version in versions:
    folder = os.path.join(path, str(version))
    try:
      if not _is_export_version(folder):
        raise FileNotFoundError(f"no saved_model.pb in {folder}")
      model = _load_export(folder)
    except Exception as e:  # pylint: disable=broad-except  # OSError, DecodeError, OpError...
      broken.append((version, _first_line(e)))
      continue
    for bad, why in broken:
      logging.warning(
        "Export version %d in %s is broken (%s); loading the newest intact version, %d.",
        bad,
        path,
        why,
        version,
      )
    return model
  raise ValueError(
    f"no version of the export {path} loads: "
    + "; ".join(f"version {v}: {why}" for v, why in broken)
    + ". Export again (as-introvae-export)."
  )


def _load_workdir(workdir, decoder, checkpoint):
  """A workdir through `run.restore_run`, the restore path evaluation and export use."""
  from as_introvae_tf import cli  # pylint: disable=import-outside-toplevel

  tf = cli.import_tensorflow()
  from as_introvae_tf import run as run_lib  # pylint: disable=import-outside-toplevel

  run = run_lib.restore_run(workdir, checkpoint, read_data=False)
  model, config = run.model, run.config
  sampler = model.sampling_decoder() if decoder == "ema" else model.decoder
  encoder = model.encoder
  clip = len(run.spec.shape) == 3

  @tf.function(reduce_retracing=True)
  def decode_tf(z):
    x = sampler(z, training=False)
    return tf.clip_by_value(x, 0.0, 1.0) if clip else x

  @tf.function(reduce_retracing=True)
  def encode_tf(x):
    mu, logvar = encoder(x, training=False)
    return mu, logvar

  def decode_fn(z):
    return decode_tf(tf.constant(z)).numpy()

  def encode_fn(x):
    mu, logvar = encode_tf(tf.constant(x))
    return mu.numpy(), logvar.numpy()

  trained = TrainedModel(
    method=config.method,
    dataset=config.dataset,
    z_dim=config.z_dim,
    example_shape=run.spec.shape,
    step=int(model.step.numpy()),
    source="workdir",
    path=run.restored,
    decode_fn=decode_fn,
    encode_fn=encode_fn if model.has_inference_encoder else None,
  )
  trained._run = run  # keeps the networks alive  pylint: disable=protected-access
  return trained


def _load_export(version_dir):
  from as_introvae_tf import cli  # pylint: disable=import-outside-toplevel

  tf = cli.import_tensorflow()
  card_path = os.path.join(version_dir, "model_card.json")
  try:
    with open(card_path) as f:
      card = json.load(f)
    if not isinstance(card, dict):
      raise ValueError("not a JSON object")
  except (OSError, ValueError) as e:
    raise FileNotFoundError(
      f"{card_path} is missing or unreadable ({e}): is {version_dir} an as-introvae-export output?"
    ) from None
  loaded = tf.saved_model.load(version_dir)
  has_encoder = hasattr(loaded, "encode")

  def decode_fn(z):
    return loaded.decode(tf.constant(z))["images"].numpy()

  def encode_fn(x):
    out = loaded.encode(tf.constant(x))
    return out["mu"].numpy(), out["logvar"].numpy()

  max_batch = card.get("max_batch") or BATCH_SIZE
  model = TrainedModel(
    method=card["method"],
    dataset=card["dataset"],
    z_dim=card["z_dim"],
    example_shape=card["example_shape"],
    step=card["training_step"],
    source="export",
    path=version_dir,
    decode_fn=decode_fn,
    encode_fn=encode_fn if has_encoder else None,
    batch_size=min(BATCH_SIZE, int(max_batch)),
  )
  model._saved_model = (
    loaded  # keeps the functions' variables alive  pylint: disable=protected-access
  )
  return model
