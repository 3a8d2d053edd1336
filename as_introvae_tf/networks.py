"""Encoder and decoder networks of (AS-/S-)IntroVAE as Keras 3 functional models.

Two families, each ported layer for layer from the Soft-IntroVAE reference code
(github.com/taldatech/soft-intro-vae-pytorch), which the AS-IntroVAE code
(github.com/LOUEY233/AS-IntroVAE, `arch.py`) reuses unchanged:

* MLP networks for 2-D toy data: `EncoderSimple` / `DecoderSimple` in
  `soft_intro_vae_2d/train_soft_intro_vae_2d.py` (used there with `n_layers=3`,
  `num_hidden=256`).
* Residual convolutional networks for images: `ResidualBlock`, `Encoder` and
  `Decoder` in `soft_intro_vae/train_soft_intro_vae.py`.

Differences from PyTorch that do not change the function computed:

* Layout is NHWC (channels last), not NCHW. Conv kernels are [kh, kw, in, out].
* `Flatten` runs over (H, W, C) instead of (C, H, W), so the rows of the encoder's
  final Dense kernel (and the columns of the decoder's first Dense kernel) are a
  permutation of the PyTorch ones. Anyone loading PyTorch weights must permute them.
* Keras `BatchNormalization` also stores `moving_mean` / `moving_variance` as
  (non-trainable) weights; PyTorch keeps them as buffers. The trainable parameter
  count equals the PyTorch `parameters()` count.

Inputs and outputs are float32 (`keras.Input(dtype="float32")`; the encoder's
mu/logvar head and the decoder's output layer always have the float32 policy). The
hidden layers take the builders' `dtype` argument: None (Keras' global policy,
float32) or a mixed policy ("mixed_float16", "mixed_bfloat16": 16-bit compute,
float32 variables; `precision.py`). Models serialize through `get_config()` /
`keras.Model.from_config` once this module is imported (it registers `SplitHalves`).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import keras

from as_introvae_tf.hparams import INITS

# Filters per resolution level, keyed by image size. Sources:
#   28, 32, 128, 256: AS-IntroVAE `utils.py:get_dataset` (mnist 28 -> [64, 128];
#     cifar10 32 -> [64, 128, 256]; celeb128 -> [64, 128, 256, 512, 512];
#     celeb256 -> [64, 128, 256, 512, 512, 512]); the same values are in
#     Soft-IntroVAE `train_soft_intro_vae.py` (fmnist/mnist, cifar10/svhn,
#     celeb128/monsters128, celeb256).
#   1024: Soft-IntroVAE `train_soft_intro_vae.py` (celeb1024).
#   16, 64: NOT in either reference. Extrapolated from the reference pattern
#     (one level per halving, 4x4 feature map at the bottom, 64 filters first,
#     doubling up to 512): 16 -> (64, 128), 64 -> (64, 128, 256, 512).
CHANNEL_TABLES: dict[int, tuple[int, ...]] = {
  16: (64, 128),
  28: (64, 128),
  32: (64, 128, 256),
  64: (64, 128, 256, 512),
  128: (64, 128, 256, 512, 512),
  256: (64, 128, 256, 512, 512, 512),
  1024: (16, 32, 64, 128, 256, 512, 512, 512),
}

# PyTorch BatchNorm2d defaults: momentum=0.1 (weight of the NEW batch statistic),
# eps=1e-5. Keras `momentum` is the weight of the OLD moving average, so
# Keras momentum = 1 - PyTorch momentum = 0.9; Keras' default epsilon is 1e-3, so set 1e-5.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5
# nn.LeakyReLU(0.2) in the reference.
_LEAKY_SLOPE = 0.2

# Weight initializations (`--init`, `hparams.INITS`). `torch` (default, the reference's):
# PyTorch's defaults for `nn.Linear` / `nn.Conv2d`, weights AND biases uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)]
# (`kaiming_uniform_(a=sqrt(5))` gives gain sqrt(1/3) * sqrt(3 / fan_in) = 1/sqrt(fan_in); the
# bias bound is 1/sqrt(fan_in) in `reset_parameters`), fan_in = in_features, or
# in_channels * kh * kw for a convolution. `keras`: Keras' defaults (Glorot-uniform weights, zero
# biases). BatchNorm starts at gamma 1, beta 0 under both.


def initializers(init: str, fan_in: int, use_bias: bool = True) -> dict:
  """Keyword arguments `kernel_initializer` (and `bias_initializer`) of one layer.

  Args:
    init: one of `INITS`.
    fan_in: the layer's fan-in: input features of a Dense layer, kh * kw * in_channels of a
      convolution.
    use_bias: whether the layer has a bias.

  Returns:
    dict for `keras.layers.Dense(...)` / `Conv2D(...)`; empty for `init="keras"`. Each call
    makes new initializer objects (unseeded: they draw from Keras' global seed, set by
    `keras.utils.set_random_seed`), so no two layers share their draws.

  Raises:
    ValueError: unknown `init` or a non-positive `fan_in`.
  """
  if init not in INITS:
    raise ValueError(f"`init` must be one of {INITS}, got {init!r}")
  fan_in = _check_positive_int("fan_in", fan_in)
  if init == "keras":
    return {}
  bound = 1.0 / fan_in**0.5
  kwargs = {"kernel_initializer": keras.initializers.RandomUniform(-bound, bound)}
  if use_bias:
    kwargs["bias_initializer"] = keras.initializers.RandomUniform(-bound, bound)
  return kwargs


@keras.saving.register_keras_serializable(package="as_introvae_tf")
class SplitHalves(keras.layers.Layer):
  """Splits the last axis into two equal halves, like `torch.chunk(y, 2, dim=1)`.

  Input: float [B, 2 * z_dim]. Output: tuple (first half, second half), each
  [B, z_dim]; the reference takes the first half as `mu`, the second as `logvar`.
  """

  def call(self, inputs):
    first, second = keras.ops.split(inputs, 2, axis=-1)
    return first, second

  def compute_output_shape(self, input_shape):
    half = None if input_shape[-1] is None else input_shape[-1] // 2
    shape = tuple(input_shape[:-1]) + (half,)
    return shape, shape


def default_filters(image_size: int) -> tuple[int, ...]:
  """Returns the reference filter table for `image_size` (see `CHANNEL_TABLES`).

  Args:
    image_size: height (= width) of the square images, in pixels.

  Returns:
    Tuple of filter counts, one per resolution level, e.g. (64, 128, 256) for 32.

  Raises:
    ValueError: if there is no table for `image_size`; the message lists the
      allowed sizes. Pass `filters=` explicitly to the builders for other sizes.
  """
  try:
    return CHANNEL_TABLES[image_size]
  except (KeyError, TypeError):
    raise ValueError(
      f"No default filter table for image_size={image_size!r}; allowed sizes: "
      f"{sorted(CHANNEL_TABLES)}. Pass `filters` explicitly for other sizes."
    ) from None


# ----------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------


def _check_positive_int(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"`{name}` must be a positive int, got {value!r}")
  return int(value)


def _resolve_filters(image_size: int, filters: Iterable[int] | None) -> tuple[int, ...]:
  if filters is None:
    return default_filters(image_size)
  try:
    filters = tuple(filters)
  except TypeError:
    raise ValueError(f"`filters` must be a sequence of positive ints, got {filters!r}") from None
  if not filters:
    raise ValueError("`filters` must not be empty")
  for f in filters:
    _check_positive_int("filters", f)
  return tuple(int(f) for f in filters)


def _bottom_size(image_size: int, filters: Sequence[int]) -> int:
  """Spatial size after the encoder's len(filters) average poolings.

  The reference Encoder pools len(filters) times (once after the stem, once after
  each of the len(filters) - 1 first residual blocks) and measures the resulting
  feature map with a dummy forward pass (`calc_conv_output_size`); the Decoder
  reshapes its fc output to exactly that size and upsamples len(filters) times.
  The reconstruction has the input size only if `image_size` is divisible by
  2 ** len(filters) (28 / 2**2 = 7 for MNIST, 32 / 2**3 = 4 for CIFAR-10); the
  reference silently builds a mismatched decoder otherwise, we raise.
  """
  levels = len(filters)
  factor = 2**levels
  if image_size % factor != 0:
    raise ValueError(
      f"`image_size`={image_size} must be divisible by 2**len(filters) = {factor} "
      f"(filters={tuple(filters)}): the encoder halves the image {levels} times and "
      f"the decoder doubles it back"
    )
  return image_size // factor


# ----------------------------------------------------------------------------
# MLP networks (EncoderSimple / DecoderSimple)
# ----------------------------------------------------------------------------


def _mlp_trunk(x, num_hidden: int, num_layers: int, dtype=None, init="torch"):
  # input Linear + ReLU, then num_layers x (Linear + ReLU), as in EncoderSimple/DecoderSimple.
  h = keras.layers.Dense(
    num_hidden, activation="relu", name="fc_in", dtype=dtype, **initializers(init, x.shape[-1])
  )(x)
  for i in range(num_layers):
    h = keras.layers.Dense(
      num_hidden,
      activation="relu",
      name=f"hidden_{i + 1}",
      dtype=dtype,
      **initializers(init, num_hidden),
    )(h)
  return h


def _check_mlp_sizes(x_dim, z_dim, num_hidden, num_layers):
  """Validated MLP sizes; ValueError naming the bad argument."""
  if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 0:
    raise ValueError(f"`num_layers` must be an int >= 0, got {num_layers!r}")
  return (
    _check_positive_int("x_dim", x_dim),
    _check_positive_int("z_dim", z_dim),
    _check_positive_int("num_hidden", num_hidden),
    num_layers,
  )


def build_mlp_encoder(
  x_dim: int = 2,
  z_dim: int = 2,
  num_hidden: int = 256,
  num_layers: int = 3,
  name: str = "encoder",
  dtype=None,
  init: str = "torch",
) -> keras.Model:
  """MLP encoder q(z|x) for vector data (2-D toy datasets).

  Port of `EncoderSimple` (soft_intro_vae_2d/train_soft_intro_vae_2d.py):
  Dense(num_hidden)+ReLU, `num_layers` x [Dense(num_hidden)+ReLU], Dense(2 * z_dim),
  split into (mu, logvar). The reference trains with num_layers=3, num_hidden=256.
  Parameters: x_dim*H + H + num_layers*(H*H + H) + H*2*z_dim + 2*z_dim.

  Args:
    x_dim: data dimension.
    z_dim: latent dimension.
    num_hidden: units per hidden layer (H).
    num_layers: number of hidden H->H layers after the input layer.
    name: model name.
    dtype: dtype policy of the hidden layers: None (float32) or "mixed_float16" /
      "mixed_bfloat16" (16-bit compute, float32 variables). The output layer is float32.
    init: weight initialization, one of `INITS` ("torch": the reference's PyTorch
      defaults; "keras": Glorot-uniform weights, zero biases).

  Returns:
    keras.Model: input float32 [B, x_dim] (any real values) -> [mu, logvar], each
    float32 [B, z_dim], unbounded (logvar is the log of the posterior variance).

  Raises:
    ValueError: if a size argument is not a positive int (num_layers may be 0).
  """
  x_dim, z_dim, num_hidden, num_layers = _check_mlp_sizes(x_dim, z_dim, num_hidden, num_layers)

  x = keras.Input(shape=(x_dim,), dtype="float32", name="x")
  h = _mlp_trunk(x, num_hidden, num_layers, dtype, init)
  y = keras.layers.Dense(
    2 * z_dim, name="fc_out", dtype="float32", **initializers(init, num_hidden)
  )(h)
  mu, logvar = SplitHalves(name="split_mu_logvar", dtype="float32")(y)
  return keras.Model(x, [mu, logvar], name=name)


def build_mlp_decoder(
  x_dim: int = 2,
  z_dim: int = 2,
  num_hidden: int = 256,
  num_layers: int = 3,
  name: str = "decoder",
  dtype=None,
  init: str = "torch",
) -> keras.Model:
  """MLP decoder p(x|z) for vector data (2-D toy datasets).

  Port of `DecoderSimple` (soft_intro_vae_2d/train_soft_intro_vae_2d.py):
  Dense(num_hidden)+ReLU, `num_layers` x [Dense(num_hidden)+ReLU], Dense(x_dim)
  with a linear output. (The reference also defines an unused `loggamma`
  parameter; it is not part of the forward pass and is not ported.)
  Parameters: z_dim*H + H + num_layers*(H*H + H) + H*x_dim + x_dim.

  Args:
    x_dim: data dimension.
    z_dim: latent dimension.
    num_hidden: units per hidden layer (H).
    num_layers: number of hidden H->H layers after the input layer.
    name: model name.
    dtype: dtype policy of the hidden layers: None (float32) or "mixed_float16" /
      "mixed_bfloat16" (16-bit compute, float32 variables). The output layer is float32.
    init: weight initialization, one of `INITS` ("torch": the reference's PyTorch
      defaults; "keras": Glorot-uniform weights, zero biases).

  Returns:
    keras.Model: input float32 [B, z_dim] -> float32 [B, x_dim], unbounded.

  Raises:
    ValueError: if a size argument is not a positive int (num_layers may be 0).
  """
  x_dim, z_dim, num_hidden, num_layers = _check_mlp_sizes(x_dim, z_dim, num_hidden, num_layers)

  z = keras.Input(shape=(z_dim,), dtype="float32", name="z")
  h = _mlp_trunk(z, num_hidden, num_layers, dtype, init)
  x = keras.layers.Dense(x_dim, name="fc_out", dtype="float32", **initializers(init, num_hidden))(h)
  return keras.Model(z, x, name=name)


# ----------------------------------------------------------------------------
# Image networks (ResidualBlock / Encoder / Decoder)
# ----------------------------------------------------------------------------


def _batch_norm(name: str, dtype=None):
  # Keras computes the batch moments of 16-bit inputs in float32.
  return keras.layers.BatchNormalization(
    momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name, dtype=dtype
  )


def _residual_block(x, in_channels: int, out_channels: int, name: str, dtype=None, init="torch"):
  """Port of the reference `ResidualBlock(inc, outc, scale=1.0)` (groups=1).

  identity = Conv1x1(outc, no bias)(x) if inc != outc else x
  h = LeakyReLU(0.2)(BN(Conv3x3(outc, no bias)(x)))
  h = BN(Conv3x3(outc, no bias)(h))
  out = LeakyReLU(0.2)(h + identity)

  BN is on the conv branch only, before the addition (the reference's stated
  difference from the original IntroVAE block). The reference compares channels
  with `!=` (Soft-IntroVAE); AS-IntroVAE's `arch.py` writes `is not`, which gives
  the same result for the channel tables used.
  """
  if in_channels != out_channels:
    identity = keras.layers.Conv2D(
      out_channels,
      1,
      padding="valid",
      use_bias=False,
      name=f"{name}_conv_expand",
      dtype=dtype,
      **initializers(init, in_channels, use_bias=False),
    )(x)
  else:
    identity = x
  h = keras.layers.Conv2D(
    out_channels,
    3,
    padding="same",
    use_bias=False,
    name=f"{name}_conv1",
    dtype=dtype,
    **initializers(init, 9 * in_channels, use_bias=False),
  )(x)
  h = _batch_norm(f"{name}_bn1", dtype)(h)
  h = keras.layers.LeakyReLU(negative_slope=_LEAKY_SLOPE, name=f"{name}_relu1", dtype=dtype)(h)
  h = keras.layers.Conv2D(
    out_channels,
    3,
    padding="same",
    use_bias=False,
    name=f"{name}_conv2",
    dtype=dtype,
    **initializers(init, 9 * out_channels, use_bias=False),
  )(h)
  h = _batch_norm(f"{name}_bn2", dtype)(h)
  h = keras.layers.Add(name=f"{name}_add", dtype=dtype)([h, identity])
  return keras.layers.LeakyReLU(negative_slope=_LEAKY_SLOPE, name=f"{name}_relu2", dtype=dtype)(h)


def _check_image_args(image_size, image_channels, z_dim, filters):
  image_size = _check_positive_int("image_size", image_size)
  image_channels = _check_positive_int("image_channels", image_channels)
  z_dim = _check_positive_int("z_dim", z_dim)
  filters = _resolve_filters(image_size, filters)
  bottom = _bottom_size(image_size, filters)
  return image_size, image_channels, z_dim, filters, bottom


def build_image_encoder(
  image_size: int,
  image_channels: int,
  z_dim: int,
  filters: Sequence[int] | None = None,
  name: str = "encoder",
  dtype=None,
  init: str = "torch",
) -> keras.Model:
  """Residual convolutional encoder q(z|x) for square images.

  Port of `Encoder` (soft_intro_vae/train_soft_intro_vae.py; identical in
  AS-IntroVAE `arch.py`), with f = filters, n = len(filters), s = image_size / 2**n:

    Conv5x5(f[0], stride 1, pad 2, no bias) -> BN -> LeakyReLU(0.2) -> AvgPool(2)
    for c in f[1:]: ResidualBlock(prev, c) -> AvgPool(2)
    ResidualBlock(f[-1], f[-1])                        # feature map [B, s, s, f[-1]]
    Flatten -> Dense(2 * z_dim) -> split into (mu, logvar)

  Args:
    image_size: height = width of the input, in pixels; must be divisible by
      2 ** len(filters).
    image_channels: number of input channels (any, e.g. 1, 3 or 4).
    z_dim: latent dimension.
    filters: filters per resolution level; default `default_filters(image_size)`.
    name: model name.
    dtype: dtype policy of the hidden layers: None (float32) or "mixed_float16" /
      "mixed_bfloat16" (16-bit compute, float32 variables). The mu/logvar head is float32.
    init: weight initialization, one of `INITS` (see `build_mlp_encoder`).

  Returns:
    keras.Model: input float32 [B, image_size, image_size, image_channels] (NHWC;
    the data pipeline feeds values in [0, 1]) -> [mu, logvar], each float32
    [B, z_dim], unbounded. Contains BatchNormalization: call with
    `training=True/False` to pick batch statistics or moving averages.

  Raises:
    ValueError: if a size is not a positive int, `filters` is empty or has a
      non-positive entry, `image_size` has no default table (when filters=None),
      or `image_size` is not divisible by 2 ** len(filters).
  """
  image_size, image_channels, z_dim, filters, bottom = _check_image_args(
    image_size, image_channels, z_dim, filters
  )
  x = keras.Input(shape=(image_size, image_size, image_channels), dtype="float32", name="x")
  cc = filters[0]
  h = keras.layers.Conv2D(
    cc,
    5,
    padding="same",
    use_bias=False,
    name="stem_conv",
    dtype=dtype,
    **initializers(init, 25 * image_channels, use_bias=False),
  )(x)
  h = _batch_norm("stem_bn", dtype)(h)
  h = keras.layers.LeakyReLU(negative_slope=_LEAKY_SLOPE, name="stem_relu", dtype=dtype)(h)
  h = keras.layers.AveragePooling2D(2, name="stem_pool", dtype=dtype)(h)
  sz = image_size // 2
  for ch in filters[1:]:
    h = _residual_block(h, cc, ch, name=f"res_in_{sz}", dtype=dtype, init=init)
    h = keras.layers.AveragePooling2D(2, name=f"down_to_{sz // 2}", dtype=dtype)(h)
    cc, sz = ch, sz // 2
  h = _residual_block(h, cc, cc, name=f"res_in_{sz}", dtype=dtype, init=init)
  assert sz == bottom
  h = keras.layers.Flatten(name="flatten", dtype=dtype)(h)
  y = keras.layers.Dense(
    2 * z_dim, name="fc", dtype="float32", **initializers(init, bottom * bottom * cc)
  )(h)
  mu, logvar = SplitHalves(name="split_mu_logvar", dtype="float32")(y)
  return keras.Model(x, [mu, logvar], name=name)


def build_image_decoder(
  image_size: int,
  image_channels: int,
  z_dim: int,
  filters: Sequence[int] | None = None,
  name: str = "decoder",
  dtype=None,
  init: str = "torch",
) -> keras.Model:
  """Residual convolutional decoder p(x|z) for square images.

  Port of `Decoder` (soft_intro_vae/train_soft_intro_vae.py; identical in
  AS-IntroVAE `arch.py`), built as `SoftIntroVAE` builds it (with
  `conv_input_size` = the encoder's feature-map size), f = filters,
  n = len(filters), s = image_size / 2**n:

    Dense(s * s * f[-1]) -> ReLU -> reshape to [B, s, s, f[-1]]
    for c in reversed(f): ResidualBlock(prev, c) -> UpSampling(2, nearest)
    ResidualBlock(f[0], f[0]) -> Conv5x5(image_channels, stride 1, pad 2, with bias)

  The output is UNBOUNDED: the reference applies no sigmoid/tanh after the last
  conv (its MSE loss compares the raw output with images in [0, 1]). This port
  keeps it linear; callers clip to [0, 1] for display or export.

  Args:
    image_size: height = width of the output, in pixels; must be divisible by
      2 ** len(filters).
    image_channels: number of output channels (any, e.g. 1, 3 or 4).
    z_dim: latent dimension.
    filters: filters per resolution level (same as the encoder's); default
      `default_filters(image_size)`.
    name: model name.
    dtype: dtype policy of the hidden layers: None (float32) or "mixed_float16" /
      "mixed_bfloat16" (16-bit compute, float32 variables). The output conv is float32.
    init: weight initialization, one of `INITS` (see `build_mlp_encoder`).

  Returns:
    keras.Model: input float32 [B, z_dim] -> float32
    [B, image_size, image_size, image_channels] (NHWC), unbounded (ideally near
    [0, 1]). Contains BatchNormalization (see `build_image_encoder`).

  Raises:
    ValueError: same conditions as `build_image_encoder`.
  """
  image_size, image_channels, z_dim, filters, bottom = _check_image_args(
    image_size, image_channels, z_dim, filters
  )
  z = keras.Input(shape=(z_dim,), dtype="float32", name="z")
  cc = filters[-1]
  h = keras.layers.Dense(
    bottom * bottom * cc, activation="relu", name="fc", dtype=dtype, **initializers(init, z_dim)
  )(z)
  h = keras.layers.Reshape((bottom, bottom, cc), name="reshape", dtype=dtype)(h)
  sz = bottom
  for ch in filters[::-1]:
    h = _residual_block(h, cc, ch, name=f"res_in_{sz}", dtype=dtype, init=init)
    h = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up_to_{sz * 2}", dtype=dtype)(
      h
    )
    cc, sz = ch, sz * 2
  h = _residual_block(h, cc, cc, name=f"res_in_{sz}", dtype=dtype, init=init)
  assert sz == image_size
  x = keras.layers.Conv2D(
    image_channels,
    5,
    padding="same",
    use_bias=True,
    name="predict",
    dtype="float32",
    **initializers(init, 25 * cc),
  )(h)
  return keras.Model(z, x, name=name)


def build_networks(
  kind: str,
  *,
  x_dim: int = 2,
  image_size: int | None = None,
  image_channels: int | None = None,
  z_dim: int,
  filters: Sequence[int] | None = None,
  dtype=None,
  init: str = "torch",
) -> tuple[keras.Model, keras.Model]:
  """Builds a matching (encoder, decoder) pair.

  Args:
    kind: "mlp" (2-D/vector data: `build_mlp_encoder/decoder` with the reference
      3 x 256 hidden layers; `image_size`, `image_channels`, `filters` are ignored)
      or "image" (`build_image_encoder/decoder`; `x_dim` is ignored).
    x_dim: data dimension for "mlp".
    image_size: image height = width for "image" (required).
    image_channels: image channels for "image" (required).
    z_dim: latent dimension.
    filters: filters per level for "image"; default `default_filters(image_size)`.
    dtype: dtype policy of the hidden layers (see `build_mlp_encoder`).
    init: weight initialization, one of `INITS` (see `build_mlp_encoder`).

  Returns:
    (encoder, decoder) Keras models, named "encoder" and "decoder"; see the
    builders for shapes.

  Raises:
    ValueError: unknown `kind`, missing `image_size`/`image_channels` for
      "image", or any error of the builders.
  """
  if kind == "mlp":
    return (
      build_mlp_encoder(x_dim=x_dim, z_dim=z_dim, dtype=dtype, init=init),
      build_mlp_decoder(x_dim=x_dim, z_dim=z_dim, dtype=dtype, init=init),
    )
  if kind == "image":
    if image_size is None or image_channels is None:
      raise ValueError(
        "kind='image' needs `image_size` and `image_channels`, got "
        f"image_size={image_size!r}, image_channels={image_channels!r}"
      )
    return (
      build_image_encoder(image_size, image_channels, z_dim, filters, dtype=dtype, init=init),
      build_image_decoder(image_size, image_channels, z_dim, filters, dtype=dtype, init=init),
    )
  raise ValueError(f"`kind` must be 'mlp' or 'image', got {kind!r}")
