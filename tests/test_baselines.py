"""The baselines (AVAE with an auto-encoder discriminator, WGAN-GP): loss terms against NumPy,
the PID update against a hand-computed sequence, the gradient penalty against finite
differences and forward-mode autodiff, each network's update against the gradient of its
loss written out plainly, 1 vs 2 replicas, and tiny end-to-end runs with resume."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import hparams
from as_introvae_tf import losses
from as_introvae_tf import methods
from as_introvae_tf import networks
from as_introvae_tf import run as run_lib
from as_introvae_tf import train_lib

import harness

GLOBAL_BATCH = 16
SEED = 3
RNG = np.random.default_rng(0)


def _mlp(name, kind, z_dim=2):
  build = networks.build_mlp_encoder if kind == "encoder" else networks.build_mlp_decoder
  return build(z_dim=z_dim, num_hidden=16, num_layers=1, name=name)


def _build(method, strategy, lr=(0.05, 0.05, 0.05), avae_hparams=None, n_critic=2, gp_lambda=10.0):
  """A tiny 2-D model compiled with SGD (encoder/critic, decoder, discriminator)."""
  with strategy.scope():
    encoder, decoder = _mlp("encoder", "encoder"), _mlp("decoder", "decoder")
    common = dict(example_shape=(2,), global_batch_size=GLOBAL_BATCH, seed=SEED)
    if method == "avae":
      model = methods.get("avae")(
        encoder,
        decoder,
        discriminator_encoder=_mlp("d_enc", "encoder"),
        discriminator_decoder=_mlp("d_dec", "decoder"),
        avae_hparams=avae_hparams,
        **common,
      )
      model.compile(
        keras.optimizers.SGD(lr[0]),
        keras.optimizers.SGD(lr[1]),
        discriminator_optimizer=keras.optimizers.SGD(lr[2]),
      )
    else:
      model = methods.get("wgan_gp")(
        encoder,
        decoder,
        wgan_hparams=hparams.WGANGPHParams(gp_lambda=gp_lambda, n_critic=n_critic),
        **common,
      )
      model.compile(keras.optimizers.SGD(lr[0]), keras.optimizers.SGD(lr[1]))
  return model


def _noise(k, step=0):
  return tf.random.stateless_normal([GLOBAL_BATCH, 2], seed=[SEED, step * 16 + k]).numpy()


def _np_mlp(h, ws, split=False):
  for i in range(0, len(ws) - 2, 2):
    h = np.maximum(h @ ws[i] + ws[i + 1], 0.0)
  h = h @ ws[-2] + ws[-1]
  return np.split(h, 2, axis=1) if split else h


def _variables(model):
  """Every network variable of a model: E, D and E', D' (AVAE) or the critic head (WGAN-GP)."""
  nets = [model.encoder, model.decoder]
  if model.method == "avae":
    nets += [model.discriminator_encoder, model.discriminator_decoder]
  else:
    nets += [model.critic_head]
  return [v for net in nets for v in net.weights]


def _all_weights(model):
  return [v.numpy() for v in _variables(model)]


# --- Pure loss functions -----------------------------------------------------------------------


def test_avae_loss_terms_match_numpy():
  x = RNG.uniform(size=(3, 4, 5, 2)).astype(np.float32)
  y = RNG.uniform(size=(3, 4, 5, 2)).astype(np.float32)
  want = [
    sum(abs(float(a) - float(b)) for a, b in zip(x[i].ravel(), y[i].ravel())) / 40.0
    for i in range(3)
  ]
  np.testing.assert_allclose(losses.l1_error(x, y).numpy(), want, rtol=1e-6)
  l_n, l_s, l_e, l_d, l_g, l_v = (
    np.array(v, np.float32)
    for v in ([2.0, 3.5], [0.2, 0.1], [0.4, 0.05], [0.3, 0.6], [0.25, 0.1], [0.5, 0.2])
  )
  a, b, g, eta, k = 0.3, 0.1, 0.1, 0.5, 0.25
  np.testing.assert_allclose(
    losses.avae_encoder_loss(l_n, l_s, l_e, beta=b, gamma=g),
    [2.0 + 0.02 + 0.04, 3.5 + 0.01 + 0.005],
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    losses.avae_generator_loss(l_g, l_v, l_s, l_e, alpha=a, beta=b, gamma=g),
    [0.25 + 0.15 + 0.02 + 0.04, 0.1 + 0.06 + 0.01 + 0.005],
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    losses.avae_discriminator_loss(l_d, l_g, l_v, k=k, alpha=a),
    [0.3 - 0.25 * (0.25 + 0.15), 0.6 - 0.25 * (0.1 + 0.06)],
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    losses.avae_balance_error(l_d, l_g, l_v, eta=eta, alpha=a), [0.15 - 0.4, 0.3 - 0.16], rtol=1e-6
  )
  np.testing.assert_allclose(
    losses.avae_convergence(l_d, l_g, l_v, eta=eta, alpha=a), [0.3 + 0.25, 0.6 + 0.14], rtol=1e-6
  )


def test_pid_update_follows_a_hand_computed_sequence():
  """eq. 12 with ki = 0.1, kp = 0.01, kd = 0.001 and errors 0.2, -0.1, 0.4 from k = e = 0:
  k1 = 0.02 + 0.002 + 0.0002 = 0.0222
  k2 = 0.0222 - 0.01 - 0.003 - 0.0005 = 0.0087         (e_t - e_{t-1} = -0.3; -0.1 - 0.4 + 0)
  k3 = 0.0087 + 0.04 + 0.005 + 0.0008 = 0.0545         (0.5; 0.4 + 0.2 + 0.2)"""
  k, e1, e2 = 0.0, 0.0, 0.0
  got = []
  for e in (0.2, -0.1, 0.4):
    k = float(losses.pid_update(k, e, e1, e2, ki=0.1, kp=0.01, kd=0.001))
    e1, e2 = e, e1
    got.append(k)
  np.testing.assert_allclose(got, [0.0222, 0.0087, 0.0545], rtol=1e-5)
  gains = dict(ki=0.1, kp=0.0, kd=0.0)
  assert float(losses.pid_update(0.99, 0.5, 0.0, 0.0, **gains)) == 1.0
  assert float(losses.pid_update(0.01, -0.5, 0.0, 0.0, **gains)) == 0.0
  np.testing.assert_allclose(
    float(losses.pid_update(0.01, -0.5, 0.0, 0.0, clip=False, **gains)), -0.04, rtol=1e-5
  )


def test_wasserstein_losses_interpolation_and_penalty_match_numpy():
  real, fake = np.array([1.0, -2.0], np.float32), np.array([0.5, 3.0], np.float32)
  np.testing.assert_allclose(losses.wasserstein_critic_loss(real, fake), [-0.5, 5.0])
  np.testing.assert_allclose(losses.wasserstein_generator_loss(fake), [-0.5, -3.0])
  np.testing.assert_allclose(
    losses.gradient_penalty(np.array([0.0, 1.0, 3.0], np.float32)), [1.0, 0.0, 4.0]
  )
  xr = RNG.normal(size=(3, 2, 2, 1)).astype(np.float32)
  xf = RNG.normal(size=(3, 2, 2, 1)).astype(np.float32)
  eps = np.array([0.0, 0.25, 1.0], np.float32)
  want = np.stack([e * a + (1 - e) * b for e, a, b in zip(eps, xr, xf)])
  np.testing.assert_allclose(losses.interpolate(xr, xf, eps), want, rtol=1e-6)


def _one_sided_differences(critic, x, h):
  """Forward and backward differences of each example's score along each input coordinate,
  each of shape (batch, num_coordinates), in float64 from float32 scores."""
  flat = x.astype(np.float64).reshape(len(x), -1)
  score = lambda v: (
    critic(tf.constant(v.reshape(x.shape), tf.float32)).numpy().astype(np.float64).reshape(len(x))
  )
  at = score(flat)
  forward, backward = np.zeros_like(flat), np.zeros_like(flat)
  for c in range(flat.shape[1]):
    step = np.zeros_like(flat)
    step[:, c] = h
    forward[:, c] = (score(flat + step) - at) / h
    backward[:, c] = (at - score(flat - step)) / h
  return forward, backward


def _assert_matches_finite_differences(critic, x, rtol, h):
  """The critics are piecewise linear (ReLU / LeakyReLU). Along a coordinate with no kink
  within h, forward and backward differences both equal the derivative; with one kink, the
  central difference (their mean) is off by at most half their gap. Examples where some
  coordinate's gap exceeds the tolerance sit on a kink and are left out; at least half must
  remain, and for those the autodiff norm must match the central differences'."""
  got = losses.critic_input_gradient_norm(critic, tf.constant(x)).numpy()
  forward, backward = _one_sided_differences(critic, x, h)
  central = np.sqrt((((forward + backward) / 2) ** 2).sum(axis=1))
  smooth = np.abs(forward - backward).max(axis=1) <= rtol * central
  assert 2 * smooth.sum() >= len(x), (forward, backward)
  np.testing.assert_allclose(got[smooth], central[smooth], rtol=rtol)


def _forward_mode_norms(critic, x):
  """Each example's input-gradient norm from forward-mode autodiff: one Jacobian-vector
  product per input coordinate (`tf.autodiff.ForwardAccumulator`), independent of the
  reverse-mode tape `critic_input_gradient_norm` uses, and exact at any point."""
  x = tf.constant(x)
  flat_size = int(np.prod(x.shape[1:]))
  columns = []
  for c in range(flat_size):
    tangent = tf.reshape(tf.tile(tf.one_hot([c], flat_size), [x.shape[0], 1]), x.shape)
    with tf.autodiff.ForwardAccumulator(primals=x, tangents=tangent) as acc:
      scores = critic(x)
    columns.append(acc.jvp(scores).numpy().reshape(-1))
  return np.sqrt((np.stack(columns, axis=1).astype(np.float64) ** 2).sum(axis=1))


def test_gradient_penalty_norm_matches_finite_differences_and_forward_mode():
  """The 2-D critic (2 coordinates) against central differences; the image critic (64
  coordinates, where float32 rounding and ReLU kinks make differences too coarse) against
  forward-mode autodiff."""
  keras.utils.set_random_seed(5)
  rng = np.random.default_rng(11)
  mlp = _build("wgan_gp", tf.distribute.get_strategy())
  x = rng.normal(size=(5, 2)).astype(np.float32)
  _assert_matches_finite_differences(mlp.critic, x, rtol=2e-3, h=1e-3)
  np.testing.assert_allclose(
    losses.critic_input_gradient_norm(mlp.critic, tf.constant(x)),
    _forward_mode_norms(mlp.critic, x),
    rtol=1e-5,
  )

  encoder = networks.build_image_encoder(8, 1, 2, filters=(4,))
  decoder = networks.build_image_decoder(8, 1, 2, filters=(4,))
  image = methods.get("wgan_gp")(
    encoder, decoder, example_shape=(8, 8, 1), global_batch_size=10, seed=0
  )
  x = rng.uniform(size=(3, 8, 8, 1)).astype(np.float32)
  np.testing.assert_allclose(
    losses.critic_input_gradient_norm(image.critic, tf.constant(x)),
    _forward_mode_norms(image.critic, x),
    rtol=1e-5,
  )
  # Inference-mode critic: an example's score does not depend on the rest of the batch.
  other = np.concatenate([x[:1], rng.uniform(size=(4, 8, 8, 1)).astype(np.float32)])
  np.testing.assert_allclose(image.critic(other).numpy()[0], image.critic(x).numpy()[0], rtol=1e-6)


# --- AVAE step -------------------------------------------------------------------------------


def test_avae_step_terms_and_updates_match_an_independent_computation():
  """Reported terms against NumPy; with SGD(lr=1) each network moves by minus the gradient of
  its own loss (L_enc for E, L_gen for D, L_dis with k_{t-1} for E', D'), written out plainly."""
  hp = hparams.AVAEHParams(pid_ki=0.1, pid_kp=0.05, pid_kd=0.02)
  model = _build("avae", tf.distribute.get_strategy(), lr=(1.0, 1.0, 1.0), avae_hparams=hp)
  model.k_t.assign(0.3)  # k_{t-1}: the discriminator loss must use this value
  model.e_prev.assign(0.05)
  model.e_prev2.assign(-0.02)
  x = harness.batch_2d(GLOBAL_BATCH, 4)
  nets = [model.encoder, model.decoder, model.discriminator_encoder, model.discriminator_decoder]
  before = [[v.numpy() for v in n.trainable_variables] for n in nets]
  enc_w, dec_w, de_w, dd_w = before

  # NumPy forward pass of the reported terms.
  z_g, eps = _noise(0), _noise(1)
  mu, lv = _np_mlp(x, enc_w, split=True)
  x_v = _np_mlp(mu + np.exp(0.5 * lv) * eps, dec_w)
  x_g = _np_mlp(z_g, dec_w)
  code = [_np_mlp(t, de_w, split=True)[0] for t in (x, x_v, x_g)]
  l1 = lambda a, b: np.abs(a - b).mean(axis=1)  # noqa: E731
  want = {
    "l_e": l1(x, x_v),
    "l_n": -0.5 * np.sum(1 + lv - mu**2 - np.exp(lv), axis=1),
    "l_s": l1(code[0], code[1]),
    "l_d": l1(x, _np_mlp(code[0], dd_w)),
    "l_v": l1(x_v, _np_mlp(code[1], dd_w)),
    "l_g": l1(x_g, _np_mlp(code[2], dd_w)),
  }
  m = {k: v.mean() for k, v in want.items()}
  e_t = 0.5 * m["l_d"] - (m["l_g"] + 0.3 * m["l_v"])
  k_t = 0.3 + 0.1 * e_t + 0.05 * (e_t - 0.05) + 0.02 * (e_t - 0.1 - 0.02)

  # The same losses in TF, differentiated independently.
  tv = [[tf.constant(w) for w in ws] for ws in before]

  def tf_mlp(h, ws, split=False):
    for i in range(0, len(ws) - 2, 2):
      h = tf.nn.relu(h @ ws[i] + ws[i + 1])
    h = h @ ws[-2] + ws[-1]
    return tf.split(h, 2, axis=1) if split else h

  with tf.GradientTape(persistent=True) as tape:
    tape.watch(tv)
    t_mu, t_lv = tf_mlp(x, tv[0], True)
    t_xv = tf_mlp(t_mu + tf.exp(0.5 * t_lv) * eps, tv[1])
    t_xg = tf_mlp(z_g, tv[1])
    c_x, c_v, c_g = (tf_mlp(t, tv[2], True)[0] for t in (x, t_xv, t_xg))
    t_l1 = lambda a, b: tf.reduce_mean(tf.abs(a - b), axis=1)  # noqa: E731
    l_e, l_s = t_l1(x, t_xv), t_l1(c_x, c_v)
    l_n = -0.5 * tf.reduce_sum(1 + t_lv - t_mu**2 - tf.exp(t_lv), axis=1)
    l_d, l_v, l_g = (
      t_l1(x, tf_mlp(c_x, tv[3])),
      t_l1(t_xv, tf_mlp(c_v, tv[3])),
      t_l1(t_xg, tf_mlp(c_g, tv[3])),
    )
    loss_enc = tf.reduce_mean(l_n + 0.1 * l_s + 0.1 * l_e)
    loss_gen = tf.reduce_mean(l_g + 0.3 * l_v + 0.1 * l_s + 0.1 * l_e)
    loss_dis = tf.reduce_mean(l_d - 0.3 * (l_g + 0.3 * l_v))
  grads = [
    tape.gradient(loss_enc, tv[0]),
    tape.gradient(loss_gen, tv[1]),
    tape.gradient(loss_dis, tv[2] + tv[3]),
  ]

  hist = harness.fit(model, x)
  for name, value in m.items():
    np.testing.assert_allclose(hist[name][-1], value, rtol=1e-4, atol=1e-6, err_msg=name)
  np.testing.assert_allclose(hist["e_t"][-1], e_t, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(hist["k_t"][-1], k_t, rtol=1e-4)
  np.testing.assert_allclose(model.k_t.numpy(), k_t, rtol=1e-4)
  np.testing.assert_allclose(model.e_prev.numpy(), e_t, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(model.e_prev2.numpy(), 0.05, rtol=1e-6)
  np.testing.assert_allclose(hist["convergence"][-1], m["l_d"] + abs(e_t), rtol=1e-4)
  np.testing.assert_allclose(
    hist["loss_discriminator"][-1], m["l_d"] - 0.3 * (m["l_g"] + 0.3 * m["l_v"]), rtol=1e-4
  )
  after = [[v.numpy() for v in n.trainable_variables] for n in nets]
  moved = [after[0], after[1], after[2] + after[3]]
  start = [before[0], before[1], before[2] + before[3]]
  for name, b, a, g in zip(("encoder", "decoder", "discriminator"), start, moved, grads):
    for w0, w1, gw in zip(b, a, g):
      np.testing.assert_allclose(w0 - w1, gw.numpy(), rtol=2e-3, atol=2e-6, err_msg=name)


def test_avae_pid_state_follows_the_reported_errors_over_steps():
  hp = hparams.AVAEHParams(pid_ki=0.5, pid_kp=0.2, pid_kd=0.1, clip_k=False)
  model = _build("avae", tf.distribute.get_strategy(), avae_hparams=hp)
  hist = harness.fit(
    model, harness.batch_2d(GLOBAL_BATCH, 5), steps=1, epochs=4
  )  # one step per epoch: per-step values
  k, e1, e2 = 0.0, 0.0, 0.0
  for e, reported_k in zip(hist["e_t"], hist["k_t"]):
    k = k + 0.5 * e + 0.2 * (e - e1) + 0.1 * (e - 2 * e1 + e2)
    e1, e2 = e, e1
    np.testing.assert_allclose(reported_k, k, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(model.k_t.numpy(), k, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose([model.e_prev.numpy(), model.e_prev2.numpy()], [e1, e2], rtol=1e-6)
  assert abs(k) > 1e-3


# --- WGAN-GP step ----------------------------------------------------------------------------


def test_wgan_gp_critic_update_equals_the_gradient_of_the_reference_formula():
  """n_critic = 1, SGD(lr=1) on the critic, generator frozen: the critic moves by minus the
  gradient of mean f(G(z)) - mean f(x) + lambda mean (||grad f(x_hat)|| - 1)^2 (gan_toy.py),
  with x_hat = eps x + (1 - eps) G(z), written out plainly with the same noise."""
  model = _build("wgan_gp", tf.distribute.get_strategy(), lr=(1.0, 0.0), n_critic=1, gp_lambda=3.0)
  x = tf.constant(harness.batch_2d(GLOBAL_BATCH, 6))
  c_vars = model.critic_variables()
  before = [tf.identity(v) for v in c_vars]
  fake = model.decoder(_noise(0), training=True)
  eps = tf.random.stateless_uniform([GLOBAL_BATCH], seed=[SEED, 2])[:, None]
  interpolates = eps * x + (1 - eps) * fake

  def critic(t):
    mu, logvar = model.encoder(t, training=False)
    return tf.reshape(model.critic_head(tf.concat([mu, logvar], 1)), [-1])

  with tf.GradientTape() as tape:
    with tf.GradientTape() as inner:
      inner.watch(interpolates)
      d_hat = critic(interpolates)
    slopes = tf.sqrt(tf.reduce_sum(tf.square(inner.gradient(d_hat, interpolates)), axis=1))
    cost = (
      tf.reduce_mean(critic(fake))
      - tf.reduce_mean(critic(x))
      + 3.0 * tf.reduce_mean((slopes - 1.0) ** 2)
    )
  grads = tape.gradient(cost, c_vars)
  hist = harness.fit(model, x.numpy())
  np.testing.assert_allclose(hist["loss_critic"][-1], cost.numpy(), rtol=1e-4)
  for b, g, v in zip(before, grads, c_vars):
    np.testing.assert_allclose((b - v).numpy(), g.numpy(), rtol=2e-3, atol=2e-6)


def test_wgan_gp_step_counts_generator_updates_and_rejects_a_bad_batch():
  model = _build("wgan_gp", tf.distribute.get_strategy(), n_critic=4)
  gen_before = [v.numpy() for v in model.decoder.trainable_variables]
  hist = harness.fit(model, harness.batch_2d(GLOBAL_BATCH, 7), steps=2)
  assert set(hist) == set(methods.get("wgan_gp").metric_names)
  assert all(np.isfinite(v[-1]) for v in hist.values())
  assert int(model.step.numpy()) == 2
  assert int(model.encoder_optimizer.iterations.numpy()) == 8
  assert any(
    not np.allclose(a, b.numpy()) for a, b in zip(gen_before, model.decoder.trainable_variables)
  )
  with pytest.raises(ValueError, match="multiple of n_critic"):
    _build("wgan_gp", tf.distribute.get_strategy(), n_critic=3)


@pytest.mark.parametrize("method", ["avae", "wgan_gp"])
def test_one_and_two_replicas_give_the_same_weights(method, two_replicas):
  """Same global batch, same initial weights, SGD: the global-batch averaging, the noise slicing
  (and WGAN-GP's interleaved critic slices) make 2 replicas equal 1 replica."""
  hp = hparams.AVAEHParams(pid_ki=0.2, pid_kp=0.1, pid_kd=0.05)
  m1 = _build(method, tf.distribute.get_strategy(), avae_hparams=hp)
  m2 = _build(method, two_replicas, avae_hparams=hp)
  for src, dst in zip(_all_weights(m1), _variables(m2)):
    dst.assign(src)
  batch = harness.batch_2d(GLOBAL_BATCH, 1)
  h1 = harness.fit(m1, batch, steps=2)
  h2 = harness.fit(m2, batch, steps=2)
  for w1, w2 in zip(_all_weights(m1), _all_weights(m2)):
    np.testing.assert_allclose(w1, w2, atol=1e-5)
  for name in h1:
    if not name.startswith("grad_norm"):  # per-replica partial gradients
      np.testing.assert_allclose(h1[name][-1], h2[name][-1], rtol=1e-4, atol=1e-5, err_msg=name)
  if method == "avae":
    np.testing.assert_allclose(m1.k_t.numpy(), m2.k_t.numpy(), rtol=1e-5)
    assert m1.k_t.numpy() > 0


# --- End to end --------------------------------------------------------------------------------


def _two_d_config(workdir, method, **overrides):
  values = dict(
    method=method,
    dataset="8gaussians",
    workdir=str(workdir),
    z_dim=2,
    num_hidden=16,
    num_layers=1,
    batch_size=20,
    train_steps=4,
    log_every_steps=2,
    checkpoint_every_steps=2,
    image_every_steps=4,
    ema_decay=0.0,
    n_critic=2,
    verbose="0",
  )
  values.update(overrides)
  return config_lib.ExperimentConfig(**values)


@pytest.mark.parametrize("method", ["avae", "wgan_gp"])
def test_fashion_mnist_run_with_tiny_filters(tmp_path, method):
  config = config_lib.ExperimentConfig(
    method=method,
    dataset="fashion_mnist",
    workdir=str(tmp_path),
    filters=(4,),
    z_dim=4,
    batch_size=10,
    train_steps=2,
    log_every_steps=2,
    checkpoint_every_steps=2,
    image_every_steps=2,
    ema_decay=0.9,
    n_critic=2,
    verbose="0",
  )
  result = train_lib.train_and_evaluate(config)
  assert result["step"] == 2
  assert all(np.isfinite(v) for v in result["metrics"].values())
  tags = harness.scalar_tags(str(tmp_path / "tensorboard" / "train"))
  assert {"images/samples", "images/real"} <= tags
  assert ("images/reconstruction" in tags) == (method == "avae")
  image = tf.io.decode_png(tf.io.read_file(result["samples_png"])).numpy()
  assert image.shape == (8 * 28, 8 * 28, 1)


TAGS = {
  "avae": {
    "train/k_t",
    "train/e_t",
    "train/convergence",
    "train/l_d",
    "train/l_g",
    "train/loss_discriminator",
    "train/grad_norm_discriminator",
  },
  "wgan_gp": {
    "train/wasserstein",
    "train/gradient_penalty",
    "train/loss_critic",
    "train/loss_generator",
    "train/grad_norm_critic",
  },
}


@pytest.mark.parametrize("method", ["avae", "wgan_gp"])
def test_two_d_run_logs_and_resumes_like_an_uninterrupted_run(tmp_path, method):
  """8gaussians end to end (TensorBoard scalars, samples), then 2 + 2 steps with a restart in
  between equal 4 steps straight: weights, optimizer slots and the AVAE's PID state."""
  gains = dict(pid_ki=0.3, pid_kp=0.1, pid_kd=0.05, avae_clip_k=False)
  straight = _two_d_config(tmp_path / "straight", method, **gains)
  result = train_lib.train_and_evaluate(straight)
  assert result["step"] == 4
  assert all(np.isfinite(v) for v in result["metrics"].values())
  assert TAGS[method] <= harness.scalar_tags(str(tmp_path / "straight" / "tensorboard" / "train"))
  assert os.path.getsize(result["samples_png"]) > 1000

  half = _two_d_config(tmp_path / "resumed", method, train_steps=2, **gains)
  train_lib.train_and_evaluate(half)
  restored = run_lib.build_run(half).model
  assert int(restored.step.numpy()) == 2
  if method == "avae":  # the PID state comes back from the checkpoint
    assert restored.k_t.numpy() != 0.0 and restored.e_prev2.numpy() != 0.0
  train_lib.train_and_evaluate(half.replace(train_steps=4))
  a = run_lib.build_run(straight).model
  b = run_lib.build_run(half.replace(train_steps=4)).model
  assert int(a.step.numpy()) == int(b.step.numpy()) == 4

  def state(m):
    extra = (
      [m.k_t, m.e_prev, m.e_prev2] + m.discriminator_optimizer.variables if method == "avae" else []
    )
    return _variables(m) + m.encoder_optimizer.variables + m.decoder_optimizer.variables + extra

  for va, vb in zip(state(a), state(b)):
    np.testing.assert_array_equal(va.numpy(), vb.numpy())


def test_wgan_gp_batch_must_split_into_critic_slices():
  config = _two_d_config("/tmp/x", "wgan_gp", batch_size=20, n_critic=3)
  with pytest.raises(config_lib.ConfigError, match="--n_critic=3"):
    config.validate()
  config = _two_d_config("/tmp/x", "wgan_gp", batch_size=20, n_critic=4)
  config.validate(num_replicas=1)
  with pytest.raises(config_lib.ConfigError, match="--n_critic=4 x the number of replicas .2."):
    config.validate(num_replicas=2)
  with pytest.raises(config_lib.ConfigError, match="--num_vae must be 0"):
    _two_d_config("/tmp/x", "wgan_gp", num_vae=1).validate()
