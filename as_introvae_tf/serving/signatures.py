"""The serving signatures an export holds (`ServingFunctions`) and the seed rule they share with
clients (`seeds_to_z`, `seeds_to_z_numpy`): the server side of `as_introvae_tf.serving`.

`as_introvae_tf.export_lib` restores a run and writes these signatures as a SavedModel (TF
Serving layout) and ONNX; its module docstring lists them. The client of the same protocol is
`as_introvae_tf.serving.client`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from as_introvae_tf.serving import MAX_BATCH

SIGNATURES_IMAGE = (
  "serving_default",
  "generate",
  "decode",
  "encode",
  "reconstruct",
  "generate_png",
)
SIGNATURES_2D = ("serving_default", "generate", "decode", "encode", "reconstruct")
SEED_RULE = "z = tf.random.stateless_normal([z_dim], seed=[seed, 0]) for each int64 seed"


# === Seeds -> latent codes ===================================================================


def seeds_to_z(seeds, z_dim):
  """Per-seed standard normal latent codes, vectorized over the batch (graph- or eager-safe).

  Args:
    seeds: int `[N]` tensor (cast to int64).
    z_dim: latent dimension.

  Returns:
    float32 `[N, z_dim]`; row i = `tf.random.stateless_normal([z_dim], seed=[seeds[i], 0])`, so
    a seed gives the same row whatever batch it is in.
  """
  seeds = tf.cast(seeds, tf.int64)
  return tf.map_fn(
    lambda s: tf.random.stateless_normal([z_dim], seed=tf.stack([s, tf.zeros_like(s)])),
    seeds,
    fn_output_signature=tf.TensorSpec([z_dim], tf.float32),
  )


def seeds_to_z_numpy(seeds, z_dim):
  """`seeds_to_z` one seed at a time (eager): float32 numpy `[N, z_dim]`, for ONNX clients."""
  rows = [
    tf.random.stateless_normal([z_dim], seed=tf.constant([int(s), 0], tf.int64)).numpy()
    for s in np.asarray(seeds).reshape(-1)
  ]
  return np.stack(rows).astype(np.float32) if rows else np.zeros([0, z_dim], np.float32)


# === The serving functions ====================================================================


class ServingFunctions:
  """The exported computations, usable in memory (eager or tf.function) and as endpoints.

  Args:
    encoder: `keras.Model`, x `[N, *example_shape]` -> `[mu, logvar]`, each `[N, z_dim]`.
    decoder: `keras.Model`, z `[N, z_dim]` -> x `[N, *example_shape]` (linear output).
    example_shape: shape of one example, `(2,)` or `(H, W, C)`.
    max_batch: the most examples one call accepts (`--max_batch`, default `MAX_BATCH`).

  All networks are called with `training=False`. Every signature checks, inside the graph (so
  TF Serving returns the message as an INVALID_ARGUMENT error):
    * N <= max_batch ("... at most max_batch=256 examples per request ...");
    * images (encode, reconstruct) are finite and, for image models, in [0, 1];
    * latent codes (decode) are finite.
  N = 0 is valid and returns empty outputs (`[0, *example_shape]`, `[0, z_dim]`, `[0]`).
  """

  def __init__(self, encoder, decoder, example_shape, has_inference_encoder=True, max_batch=None):
    self.encoder = encoder
    self.decoder = decoder
    self.example_shape = tuple(int(d) for d in example_shape)
    self.z_dim = int(decoder.inputs[0].shape[-1])
    self.is_image = len(self.example_shape) == 3
    # WGAN-GP's "encoder" is a critic: no `encode`/`reconstruct` signatures then.
    self.has_inference_encoder = has_inference_encoder
    self.max_batch = int(MAX_BATCH if max_batch is None else max_batch)

  def input_signatures(self):
    """{signature name: [tf.TensorSpec]} of every exported signature, in export order."""
    seeds = [tf.TensorSpec([None], tf.int64, name="seeds")]
    z = [tf.TensorSpec([None, self.z_dim], tf.float32, name="z")]
    images = [tf.TensorSpec([None, *self.example_shape], tf.float32, name="images")]
    specs = {"serving_default": seeds, "generate": seeds, "decode": z}
    if self.has_inference_encoder:
      specs.update(encode=images, reconstruct=images)
    if self.is_image:
      specs["generate_png"] = seeds
    return specs

  def function(self, name):
    """The Python callable behind signature `name` (`serving_default` is `generate`)."""
    return getattr(self, "generate" if name == "serving_default" else name)

  def _output(self, x):
    return tf.clip_by_value(x, 0.0, 1.0) if self.is_image else x

  def _checked(self, x, name, what, checks):
    """`x` after the in-graph checks `checks` (("batch", "finite", "unit") subset)."""
    asserts = []
    if "batch" in checks:
      n = tf.shape(x, out_type=tf.int64)[0]
      asserts.append(
        tf.debugging.Assert(
          n <= self.max_batch,
          [
            f"{name}: at most max_batch={self.max_batch} examples per request (split larger "
            f"batches, or export with a larger --max_batch); got {what} of batch size",
            n,
          ],
        )
      )
    if "finite" in checks:
      asserts.append(
        tf.debugging.Assert(
          tf.reduce_all(tf.math.is_finite(x)),
          [f"{name}: {what} must be finite; got NaN or inf values"],
        )
      )
    if "unit" in checks:
      low, high = tf.reduce_min(x), tf.reduce_max(x)  # +inf / -inf for N = 0: passes
      asserts.append(
        tf.debugging.Assert(
          tf.logical_and(low >= 0.0, high <= 1.0),
          [
            f"{name}: {what} must be float32 pixel values in [0, 1]; got values from",
            low,
            "to",
            high,
          ],
        )
      )
    with tf.control_dependencies(asserts):
      return tf.identity(x)

  def _check_images(self, images, name):
    images = tf.ensure_shape(tf.convert_to_tensor(images, tf.float32), [None, *self.example_shape])
    return self._checked(
      images,
      name,
      "images" if self.is_image else "points",
      ("batch", "finite", "unit") if self.is_image else ("batch", "finite"),
    )

  def _unless_empty(self, x, fn, empty_shape):
    """fn(x), or zeros of `[0, *empty_shape]` for N = 0 (BatchNorm cannot run on 0 rows)."""
    return tf.cond(
      tf.shape(x)[0] > 0, lambda: fn(x), lambda: tf.zeros([0, *empty_shape], tf.float32)
    )

  def decode_unchecked(self, z):
    """decode without the serving checks (for the ONNX conversion)."""
    z = tf.ensure_shape(tf.convert_to_tensor(z, tf.float32), [None, self.z_dim])
    return {"images": self._output(self.decoder(z, training=False))}

  def decode(self, z, name="decode"):
    """z float32 `[N, z_dim]` -> {"images": float32 `[N, *example_shape]`} ([0, 1] for images).

    Raises (in the graph): InvalidArgumentError for N > max_batch or a NaN/inf code."""
    z = tf.ensure_shape(tf.convert_to_tensor(z, tf.float32), [None, self.z_dim])
    z = self._checked(z, name, "z", ("batch", "finite"))
    images = self._unless_empty(
      z, lambda v: self._output(self.decoder(v, training=False)), self.example_shape
    )
    return {"images": tf.ensure_shape(images, [None, *self.example_shape])}

  def generate(self, seeds, name="generate"):
    """seeds int64 `[N]` -> {"images": float32 `[N, *example_shape]`}; see `seeds_to_z`.

    Raises (in the graph): InvalidArgumentError for N > max_batch (checked first)."""
    seeds = tf.ensure_shape(tf.convert_to_tensor(seeds, tf.int64), [None])
    seeds = self._checked(seeds, name, "seeds", ("batch",))
    return self.decode(seeds_to_z(seeds, self.z_dim), name=name)

  def encode(self, images):
    """images float32 `[N, *example_shape]` -> {"mu", "logvar"}: float32 `[N, z_dim]` each.

    Raises (in the graph): InvalidArgumentError for N > max_batch, NaN/inf, or pixels outside
    [0, 1]."""
    images = self._check_images(images, "encode")
    both = self._unless_empty(
      images, lambda x: tf.stack(self.encoder(x, training=False), axis=1), [2, self.z_dim]
    )
    return {"mu": both[:, 0], "logvar": both[:, 1]}

  def reconstruct(self, images):
    """images `[N, *example_shape]` -> {"images"}: decode(mu(images)), the posterior mean.

    Raises (in the graph): as `encode`."""
    images = self._check_images(images, "reconstruct")
    out = self._unless_empty(
      images,
      lambda x: self._output(self.decoder(self.encoder(x, training=False)[0], training=False)),
      self.example_shape,
    )
    return {"images": tf.ensure_shape(out, [None, *self.example_shape])}

  def generate_png(self, seeds):
    """seeds int64 `[N]` -> {"png_bytes": string `[N]`}: 8-bit PNGs of `generate` (images)."""
    images = self.generate(seeds, name="generate_png")["images"]
    pixels = tf.cast(tf.round(images * 255.0), tf.uint8)
    png = tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.TensorSpec([], tf.string))
    return {"png_bytes": tf.ensure_shape(png, [None])}
