"""Tests for as_introvae_tf.networks: shapes, reference tables, parameter counts, config round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import networks


# ---------------------------------------------------------------------------
# Parameter counts of the PyTorch reference, by hand formula.
# Counted: every nn.Parameter of the reference modules, i.e. conv weights (+ bias
# where the reference has bias=True: only the decoder's final 'predict' conv),
# Linear weights + biases, BatchNorm2d gamma + beta. NOT counted: BatchNorm
# running_mean / running_var (PyTorch buffers; Keras stores them as non-trainable
# weights, checked separately below).
# ---------------------------------------------------------------------------


def _conv(k, cin, cout, bias):
  return k * k * cin * cout + (cout if bias else 0)


def _bn(c):
  return 2 * c  # gamma, beta


def _linear(cin, cout):
  return cin * cout + cout


def _res_block(cin, cout):
  # ResidualBlock(inc, outc, scale=1.0): conv_expand 1x1 (no bias) only if inc != outc,
  # conv1 3x3 (no bias), bn1, conv2 3x3 (no bias), bn2.
  expand = _conv(1, cin, cout, False) if cin != cout else 0
  return expand + _conv(3, cin, cout, False) + _bn(cout) + _conv(3, cout, cout, False) + _bn(cout)


def _ref_encoder_params(image_size, c, filters, z):
  s = image_size // 2 ** len(filters)
  n = _conv(5, c, filters[0], False) + _bn(filters[0])  # stem
  cc = filters[0]
  for ch in filters[1:]:
    n += _res_block(cc, ch)
    cc = ch
  n += _res_block(cc, cc)
  return n + _linear(cc * s * s, 2 * z)


def _ref_decoder_params(image_size, c, filters, z):
  s = image_size // 2 ** len(filters)
  cc = filters[-1]
  n = _linear(z, cc * s * s)
  for ch in filters[::-1]:
    n += _res_block(cc, ch)
    cc = ch
  n += _res_block(cc, cc)
  return n + _conv(5, cc, c, True)  # 'predict' conv has a bias


def _ref_bn_channels(filters, encoder):
  """Sum of BatchNorm channels (for the Keras moving statistics)."""
  total = filters[0] if encoder else 0
  seq = list(filters[1:]) if encoder else list(filters[::-1])
  cc = filters[0] if encoder else filters[-1]
  for ch in seq:
    total += 2 * ch
    cc = ch
  return total + 2 * cc


def _trainable(model):
  return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _non_trainable(model):
  return int(sum(np.prod(w.shape) for w in model.non_trainable_weights))


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def test_default_tables_equal_reference():
  # AS-IntroVAE utils.py get_dataset / Soft-IntroVAE train_soft_intro_vae.py
  assert networks.default_filters(28) == (64, 128)
  assert networks.default_filters(32) == (64, 128, 256)
  assert networks.default_filters(128) == (64, 128, 256, 512, 512)
  assert networks.default_filters(256) == (64, 128, 256, 512, 512, 512)
  assert networks.default_filters(1024) == (16, 32, 64, 128, 256, 512, 512, 512)
  for size in (28, 32, 64, 128, 256):
    assert size in networks.CHANNEL_TABLES
  # Every table must give an output of the input size.
  for size, filters in networks.CHANNEL_TABLES.items():
    assert size % 2 ** len(filters) == 0


@pytest.mark.parametrize("size", [48, 0, 100, "32"])
def test_default_filters_unknown_size_raises(size):
  with pytest.raises(ValueError, match="image_size") as info:
    networks.default_filters(size)
  assert "32" in str(info.value)  # lists the allowed sizes


def test_image_size_without_table_raises_in_builders():
  with pytest.raises(ValueError, match="image_size"):
    networks.build_image_encoder(48, 3, 8)
  # ... but works with explicit filters
  enc = networks.build_image_encoder(48, 3, 8, filters=(4, 8))
  assert enc.outputs[0].shape == (None, 8)


@pytest.mark.parametrize("size,filters", [(28, (8, 16, 32)), (30, (8, 16)), (20, (8, 16, 32))])
def test_image_size_not_divisible_raises(size, filters):
  with pytest.raises(ValueError, match="image_size"):
    networks.build_image_encoder(size, 1, 8, filters=filters)
  with pytest.raises(ValueError, match="image_size"):
    networks.build_image_decoder(size, 1, 8, filters=filters)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(image_size=32, image_channels=0, z_dim=8, filters=(4,)), "`image_channels` must be"),
    (dict(image_size=32, image_channels=3, z_dim=0, filters=(4,)), "`z_dim` must be"),
    (dict(image_size=32, image_channels=3, z_dim=8, filters=()), "`filters` must not be empty"),
    (dict(image_size=32, image_channels=3, z_dim=8, filters=(4, -1)), "`filters` must be"),
    (dict(image_size=-32, image_channels=3, z_dim=8, filters=(4,)), "`image_size` must be"),
  ],
)
def test_bad_image_arguments_raise(kwargs, match):
  # Our own check and message (Keras's Dense raises a ValueError of its own for units <= 0).
  with pytest.raises(ValueError, match=match):
    networks.build_image_encoder(**kwargs)


def test_build_networks_errors():
  with pytest.raises(ValueError, match="kind"):
    networks.build_networks("conv", z_dim=2)
  with pytest.raises(ValueError, match="image_size"):
    networks.build_networks("image", image_channels=3, z_dim=2)
  with pytest.raises(ValueError, match="image_channels"):
    networks.build_networks("image", image_size=32, z_dim=2)


# ---------------------------------------------------------------------------
# MLP
# ---------------------------------------------------------------------------


def test_mlp_shapes_and_reference_param_count():
  enc, dec = networks.build_networks("mlp", x_dim=2, z_dim=2)
  assert (enc.name, dec.name) == ("encoder", "decoder")
  x = np.random.default_rng(0).normal(size=(5, 2)).astype("float32")
  mu, logvar = enc(x)
  assert mu.shape == (5, 2) and logvar.shape == (5, 2)
  assert mu.dtype == tf.float32
  y = dec(mu)
  assert y.shape == (5, 2) and y.dtype == tf.float32
  # EncoderSimple(x_dim=2, zdim=2, n_layers=3, num_hidden=256):
  # input Linear(2, 256), 3 x Linear(256, 256), output Linear(256, 4)
  assert enc.count_params() == 2 * 256 + 256 + 3 * (256 * 256 + 256) + 256 * 4 + 4
  # DecoderSimple: Linear(2, 256), 3 x Linear(256, 256), Linear(256, 2)
  assert dec.count_params() == 2 * 256 + 256 + 3 * (256 * 256 + 256) + 256 * 2 + 2
  # mu / logvar are the first / second half of the last Dense (torch.chunk(2, dim=1)).
  full = enc.get_layer("fc_out").output
  sub = keras.Model(enc.input, full)
  np.testing.assert_allclose(np.concatenate([mu, logvar], axis=1), sub(x), rtol=1e-6, atol=1e-6)


def test_mlp_other_sizes():
  enc = networks.build_mlp_encoder(x_dim=3, z_dim=5, num_hidden=16, num_layers=1)
  dec = networks.build_mlp_decoder(x_dim=3, z_dim=5, num_hidden=16, num_layers=1)
  mu, logvar = enc(np.zeros((4, 3), "float32"))
  assert mu.shape == (4, 5) and logvar.shape == (4, 5)
  assert dec(mu).shape == (4, 3)
  assert enc.count_params() == 3 * 16 + 16 + (16 * 16 + 16) + 16 * 10 + 10


# ---------------------------------------------------------------------------
# Image networks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "size,channels,filters,z",
  [
    (28, 1, (8, 16), 4),  # MNIST layout, shrunk filters: 28 -> 14 -> 7
    (32, 3, (8, 16, 32), 6),  # CIFAR layout, shrunk: 32 -> 16 -> 8 -> 4
    (16, 3, (4, 8), 3),
    (64, 3, (4, 4, 8, 8), 3),
    (16, 4, (4, 8), 3),  # RGBA
  ],
)
def test_image_shapes(size, channels, filters, z):
  enc, dec = networks.build_networks(
    "image", image_size=size, image_channels=channels, z_dim=z, filters=filters
  )
  x = np.random.default_rng(1).uniform(size=(2, size, size, channels)).astype("float32")
  for training in (True, False):
    mu, logvar = enc(x, training=training)
    assert mu.shape == (2, z) and logvar.shape == (2, z)
    assert mu.dtype == tf.float32 and logvar.dtype == tf.float32
    y = dec(mu, training=training)
    assert y.shape == (2, size, size, channels) and y.dtype == tf.float32
    assert np.all(np.isfinite(y))
  # Parameter counts follow the reference architecture for any filters.
  assert _trainable(enc) == _ref_encoder_params(size, channels, filters, z)
  assert _trainable(dec) == _ref_decoder_params(size, channels, filters, z)


def test_image_default_filters_used_when_none():
  enc = networks.build_image_encoder(28, 1, 4)
  assert enc.get_layer("stem_conv").filters == 64
  assert enc.get_layer("res_in_7_conv1").filters == 128


@pytest.mark.parametrize(
  "size,channels,filters,z,enc_expected,dec_expected",
  [
    # FashionMNIST / MNIST reference: 28x28x1, channels (64, 128), z 32
    (28, 1, (64, 128), 32, 928_512, 697_025),
    # CIFAR-10 reference: 32x32x3, channels (64, 128, 256), z 128
    (32, 3, (64, 128, 256), 128, 3_382_848, 2_382_531),
  ],
)
def test_reference_param_counts(size, channels, filters, z, enc_expected, dec_expected):
  enc_formula = _ref_encoder_params(size, channels, filters, z)
  dec_formula = _ref_decoder_params(size, channels, filters, z)
  assert (enc_formula, dec_formula) == (enc_expected, dec_expected)
  enc = networks.build_image_encoder(size, channels, z, filters=filters)
  dec = networks.build_image_decoder(size, channels, z, filters=filters)
  assert _trainable(enc) == enc_formula
  assert _trainable(dec) == dec_formula
  # Keras keeps BN moving mean/variance as non-trainable weights (PyTorch buffers).
  assert _non_trainable(enc) == 2 * _ref_bn_channels(filters, encoder=True)
  assert _non_trainable(dec) == 2 * _ref_bn_channels(filters, encoder=False)


def test_image_structure_details():
  enc, dec = networks.build_networks(
    "image", image_size=32, image_channels=3, z_dim=8, filters=(8, 16, 32)
  )
  names = {layer.name for layer in enc.layers}
  # 1x1 conv on the identity only where channels change (8->16 at 16x16, 16->32 at 8x8).
  assert {"res_in_16_conv_expand", "res_in_8_conv_expand"} <= names
  assert "res_in_4_conv_expand" not in names
  assert not enc.get_layer("stem_conv").use_bias
  assert enc.get_layer("stem_conv").kernel_size == (5, 5)
  # Decoder output: linear 5x5 conv with bias; the reference has no sigmoid/tanh.
  predict = dec.get_layer("predict")
  assert predict.use_bias and predict.kernel_size == (5, 5)
  assert predict.get_config()["activation"] == "linear"
  assert dec.layers[-1] is predict
  # BatchNorm ported with PyTorch defaults (momentum 0.1 -> Keras 0.9, eps 1e-5).
  bns = [l for m in (enc, dec) for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert bns
  for bn in bns:
    assert bn.momentum == pytest.approx(0.9) and bn.epsilon == pytest.approx(1e-5)
  leaky = [l for m in (enc, dec) for l in m.layers if isinstance(l, keras.layers.LeakyReLU)]
  assert leaky
  for layer in leaky:
    assert layer.negative_slope == pytest.approx(0.2)


def test_decoder_output_is_unbounded():
  dec = networks.build_image_decoder(16, 1, 3, filters=(4, 8))
  predict = dec.get_layer("predict")
  kernel, bias = predict.get_weights()
  predict.set_weights([kernel, bias + 5.0])  # shift the linear output above 1
  y = dec(np.zeros((1, 3), "float32"), training=False)
  assert float(tf.reduce_min(y)) > 1.0


def test_gradients_reach_all_trainable_weights():
  enc, dec = networks.build_networks(
    "image", image_size=16, image_channels=1, z_dim=3, filters=(4, 8)
  )
  x = np.random.default_rng(2).uniform(size=(2, 16, 16, 1)).astype("float32")
  with tf.GradientTape() as tape:
    mu, logvar = enc(x, training=True)
    loss = tf.reduce_sum(dec(mu, training=True)) + tf.reduce_sum(logvar)
  weights = enc.trainable_weights + dec.trainable_weights
  grads = tape.gradient(loss, weights)
  assert all(g is not None for g in grads)


# ---------------------------------------------------------------------------
# Serialization
# ---------------------------------------------------------------------------


def _outputs(model, inp):
  out = model(inp, training=False)
  return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


@pytest.mark.parametrize("kind", ["mlp", "image"])
def test_config_round_trip(kind):
  if kind == "mlp":
    enc, dec = networks.build_networks("mlp", x_dim=2, z_dim=2)
    x = np.random.default_rng(3).normal(size=(3, 2)).astype("float32")
  else:
    enc, dec = networks.build_networks(
      "image", image_size=16, image_channels=3, z_dim=4, filters=(4, 8)
    )
    x = np.random.default_rng(3).uniform(size=(3, 16, 16, 3)).astype("float32")
  z = np.random.default_rng(4).normal(size=(3, enc.outputs[0].shape[-1])).astype("float32")
  for model, inp in ((enc, x), (dec, z)):
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    assert clone.name == model.name
    for a, b in zip(_outputs(model, inp), _outputs(clone, inp)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
