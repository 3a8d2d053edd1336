"""The defaults follow the reference code (issue 11): initialization, the encoder's gradient
through the reconstruction target, the warm-up loss, Adam's epsilon, MultiStepLR, annealing.

Each check compares against an independent computation: the PyTorch bound written out, a
Kolmogorov-Smirnov test, or the gradient of the reference formula written plainly in TF.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from as_introvae_tf import config as config_lib
from as_introvae_tf import data
from as_introvae_tf import hparams
from as_introvae_tf import methods
from as_introvae_tf import networks
from as_introvae_tf import optimizers
from as_introvae_tf import run as run_lib

import harness

GLOBAL_BATCH = 16


def _layers_with_kernels(model):
  return [
    layer
    for layer in model._flatten_layers()  # pylint: disable=protected-access
    if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))
  ]


def _fan_in(kernel):
  return int(np.prod(kernel.shape[:-1]))  # Dense [in, out]; Conv2D [kh, kw, in, out]


def _reference_networks(init):
  keras.utils.set_random_seed(0)
  return [
    networks.build_mlp_encoder(init=init),
    networks.build_mlp_decoder(init=init),
    *networks.build_networks(
      "image", image_size=28, image_channels=1, z_dim=8, filters=(8, 16), init=init
    ),
  ]


def test_torch_init_draws_weights_and_biases_uniform_in_one_over_sqrt_fan_in():
  """PyTorch's nn.Linear / nn.Conv2d defaults: kaiming_uniform(a=sqrt(5)) weights and
  biases, both U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  checked = 0
  for model in _reference_networks("torch"):
    for layer in _layers_with_kernels(model):
      kernel = layer.kernel.numpy().ravel()
      bound = 1.0 / np.sqrt(_fan_in(layer.kernel))
      tensors = [kernel] + ([layer.bias.numpy()] if layer.use_bias else [])
      for values in tensors:
        assert np.abs(values).max() <= bound * (1 + 1e-6), layer.name
        if values.size >= 200:  # enough draws for a distribution test
          assert stats.kstest(values, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-4, (
            layer.name,
            values.size,
          )
          assert np.abs(values).max() > 0.9 * bound, layer.name
      if layer.use_bias:
        assert np.abs(layer.bias.numpy()).max() > 0, layer.name  # biases are not zero
      checked += 1
  assert checked >= 10


def test_keras_init_keeps_glorot_weights_and_zero_biases():
  for model in _reference_networks("keras"):
    for layer in _layers_with_kernels(model):
      if layer.use_bias:
        np.testing.assert_array_equal(layer.bias.numpy(), 0.0)
      fan_in, fan_out = _fan_in(layer.kernel), int(layer.kernel.shape[-1])
      receptive = int(np.prod(layer.kernel.shape[:-2]))
      glorot = np.sqrt(6.0 / (fan_in + fan_out * receptive))
      assert np.abs(layer.kernel.numpy()).max() <= glorot * (1 + 1e-6), layer.name


def test_torch_init_is_seeded_and_layers_differ():
  first = [w.copy() for w in _reference_networks("torch")[0].get_weights()]
  second = _reference_networks("torch")[0].get_weights()
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)
  hidden = [w for w in first if w.shape == (256, 256)]
  assert len(hidden) == 3 and not np.array_equal(hidden[0], hidden[1])


def test_unknown_init_is_named():
  with pytest.raises(ValueError, match="init"):
    networks.build_mlp_encoder(init="xavier")
  with pytest.raises(config_lib.ConfigError, match="--init"):
    config_lib.ExperimentConfig(workdir="w", init="xavier").validate()


def test_defaults_follow_the_reference():
  config = config_lib.ExperimentConfig()
  assert config.init == "torch"
  assert config.rec_target_grad is True
  assert config.warmup_loss == "reference"
  assert config.adam_epsilon == 1e-8
  assert config.anneal_origin == "start"
  hp = hparams.LossHParams()
  assert hp.rec_target_grad is True and hp.warmup_loss == "reference"
  assert hp.anneal_origin == "start"
  flag_values = config_lib.flags.FlagValues()
  config_lib.define_flags(flag_values)
  for name in ("init", "rec_target_grad", "warmup_loss", "adam_epsilon", "anneal_origin"):
    assert flag_values[name].default == getattr(config, name), name
  values = config_lib.from_flagfile("configs/8gaussians_soft_introvae.flags")
  assert (values.init, values.rec_target_grad, values.warmup_loss, values.adam_epsilon) == (
    "torch",
    True,
    "reference",
    1e-8,
  )


def test_multistep_lr_decays_at_the_milestone_iteration_itself():
  """torch MultiStepLR(milestones=[m]), stepped after every iteration: the update of
  0-based iteration m is the first with the decayed rate."""
  config = config_lib.ExperimentConfig(lr=2e-4, lr_milestones=(10, 15), lr_gamma=0.1)
  schedule = run_lib.learning_rate(config)  # pylint: disable=protected-access
  torch_rate = lambda it: 2e-4 * 0.1 ** sum(it >= m for m in (10, 15))  # noqa: E731
  for it in (0, 9, 10, 11, 14, 15, 16, 100):
    np.testing.assert_allclose(float(schedule(it)), torch_rate(it), rtol=1e-6, err_msg=str(it))


def test_every_optimizer_uses_the_reference_epsilon(tmp_path):
  config = config_lib.from_flagfile(
    "configs/8gaussians_soft_introvae.flags",
    f"--workdir={tmp_path}",
    "--num_hidden=8",
    "--num_layers=1",
    "--batch_size=8",
  )
  run = run_lib.build_run(config, restore=False)
  for optimizer in (run.model.encoder_optimizer, run.model.decoder_optimizer):
    assert optimizer.epsilon == 1e-8
  config = config.replace(method="avae", adam_epsilon=3e-6, workdir=str(tmp_path / "avae"))
  run = run_lib.build_run(config, restore=False)
  assert run.model.discriminator_optimizer.epsilon == 3e-6
  assert run.model.encoder_optimizer.epsilon == 3e-6


# --- Gradients against the reference formulas -----------------------------------------------


def _build(method, hparams, lr_e, lr_d, total=10, num_vae=0):
  keras.utils.set_random_seed(1)
  encoder = networks.build_mlp_encoder(z_dim=2, num_hidden=16, num_layers=1)
  decoder = networks.build_mlp_decoder(z_dim=2, num_hidden=16, num_layers=1)
  model = methods.get(method)(
    encoder,
    decoder,
    example_shape=(2,),
    global_batch_size=GLOBAL_BATCH,
    hparams=hparams,
    total_steps=total,
    num_vae=num_vae,
    seed=3,
  )
  model.compile(keras.optimizers.SGD(lr_e), keras.optimizers.SGD(lr_d))
  return model


def _batch(seed):
  return data.sample_2d("8gaussians", GLOBAL_BATCH, np.random.default_rng(seed)).astype(np.float32)


def _noise(k):
  return tf.random.stateless_normal([GLOBAL_BATCH, 2], seed=[3, k])


def _kl(mu, lv):
  return -0.5 * tf.reduce_sum(1 + lv - mu**2 - tf.exp(lv), 1)


def _soft_introvae_encoder_loss(enc, dec, x, hp, detach_target):
  """lossE of train_soft_intro_vae_2d.py, written plainly (s = 0.5 for 2-D data)."""
  s = 0.5
  fake = tf.stop_gradient(dec(_noise(0)))
  mu, lv = enc(x)
  rec = dec(mu + tf.exp(0.5 * lv) * _noise(1))
  loss_rec = tf.reduce_mean(tf.reduce_sum((x - rec) ** 2, 1))
  loss_kl = tf.reduce_mean(_kl(mu, lv))
  rec_mu, rec_lv = enc(tf.stop_gradient(rec))
  rec_rec = dec(rec_mu + tf.exp(0.5 * rec_lv) * _noise(2))
  fake_mu, fake_lv = enc(fake)
  rec_fake = dec(fake_mu + tf.exp(0.5 * fake_lv) * _noise(3))
  target = tf.stop_gradient(rec) if detach_target else rec
  loss_rec_rec = tf.reduce_sum((target - rec_rec) ** 2, 1)
  loss_fake_rec = tf.reduce_sum((fake - rec_fake) ** 2, 1)
  exp_rec = tf.reduce_mean(
    tf.exp(-2 * s * (hp.beta_rec * loss_rec_rec + hp.beta_neg * _kl(rec_mu, rec_lv)))
  )
  exp_fake = tf.reduce_mean(
    tf.exp(-2 * s * (hp.beta_rec * loss_fake_rec + hp.beta_neg * _kl(fake_mu, fake_lv)))
  )
  return s * (hp.beta_rec * loss_rec + hp.beta_kl * loss_kl) + 0.25 * (exp_rec + exp_fake)


def _assert_update_is_gradient(before, after, grads):
  for b, v, g in zip(before, after, grads):
    np.testing.assert_allclose(
      (b - v.numpy()), g.numpy(), rtol=2e-3, atol=1e-3 * float(np.abs(g.numpy()).max()) + 1e-7
    )


@pytest.mark.parametrize("rec_target_grad", [True, False])
def test_soft_introvae_encoder_update_follows_the_reference_target_gradient(rec_target_grad):
  """Default (True): the encoder's gradient includes the path through the target x_r of
  rec(x_r, D(z_r)), as the reference's undetached `rec`; False: sg(x_r). The two written-out
  gradients differ, so the test tells them apart."""
  hp = hparams.LossHParams(beta_rec=1.0, beta_kl=0.3, beta_neg=0.9, rec_target_grad=rec_target_grad)
  model = _build("soft_introvae", hp, lr_e=1.0, lr_d=0.0)
  x = tf.constant(_batch(5))
  enc, dec = model.encoder, model.decoder
  before = [v.numpy() for v in enc.trainable_variables]
  grads = {}
  for detach in (True, False):
    with tf.GradientTape() as tape:
      loss = _soft_introvae_encoder_loss(enc, dec, x, hp, detach_target=detach)
    grads[detach] = tape.gradient(loss, enc.trainable_variables)
  gap = max(float(np.abs((a - b).numpy()).max()) for a, b in zip(grads[True], grads[False]))
  assert gap > 1e-4  # the path through x_r matters at these weights
  harness.fit(model, x.numpy())
  _assert_update_is_gradient(before, enc.trainable_variables, grads[not rec_target_grad])


@pytest.mark.parametrize("warmup_loss, scale", [("reference", 1.0), ("scaled", 0.5)])
def test_warmup_step_minimizes_the_reference_elbo_without_the_scale(warmup_loss, scale):
  """The num_vae loop of the reference: loss = beta_rec * loss_rec + beta_kl * loss_kl."""
  hp = hparams.LossHParams(beta_rec=0.2, beta_kl=0.3, warmup_loss=warmup_loss)
  model = _build("soft_introvae", hp, lr_e=1.0, lr_d=1.0)
  model.vae_phase = True
  model.make_train_function(force=True)
  x = tf.constant(_batch(7))
  variables = model.encoder.trainable_variables + model.decoder.trainable_variables
  before = [v.numpy() for v in variables]
  with tf.GradientTape() as tape:
    mu, lv = model.encoder(x)
    rec = model.decoder(mu + tf.exp(0.5 * lv) * _noise(1))
    loss = hp.beta_rec * tf.reduce_mean(
      tf.reduce_sum((x - rec) ** 2, 1)
    ) + hp.beta_kl * tf.reduce_mean(_kl(mu, lv))
  grads = [scale * g for g in tape.gradient(loss, variables)]
  hist = harness.fit(model, x.numpy())
  np.testing.assert_allclose(hist["loss"][-1], scale * float(loss), rtol=1e-5)
  _assert_update_is_gradient(before, variables, grads)


def test_vae_method_keeps_the_scaled_elbo():
  hp = hparams.LossHParams(beta_rec=0.2, beta_kl=0.3)
  model = _build("vae", hp, lr_e=0.0, lr_d=0.0)
  x = tf.constant(_batch(8))
  mu, lv = model.encoder(x)
  rec = model.decoder(mu + tf.exp(0.5 * lv) * _noise(1))
  want = 0.5 * (
    0.2 * tf.reduce_mean(tf.reduce_sum((x - rec) ** 2, 1)) + 0.3 * tf.reduce_mean(_kl(mu, lv))
  )
  np.testing.assert_allclose(harness.fit(model, x.numpy())["loss"][-1], float(want), rtol=1e-5)


@pytest.mark.parametrize(
  "origin, step, want",
  [
    ("start", 2, 5 * 2 / 20),
    ("start", 6, 1.0),
    ("warmup_end", 2, 0.0),
    ("warmup_end", 6, 5 * 2 / 16),
  ],
)
def test_annealing_counts_from_the_first_iteration_by_default(origin, step, want):
  """as-introvae.md eq. 9 and A_VAE.py: c = min(5 i / T, 1), i over the whole run."""
  hp = hparams.LossHParams(anneal="linear", anneal_origin=origin)
  model = _build("as_introvae", hp, lr_e=0.0, lr_d=0.0, total=20, num_vae=4)
  model.encoder_optimizer.iterations.assign(step)
  np.testing.assert_allclose(float(model._coefficient()), want, rtol=1e-6)  # pylint: disable=protected-access


# --- Adam as PyTorch computes it -------------------------------------------------------------


def _torch_adam_numpy(params, grads_per_step, lr, b1, b2, eps, lr_at=None):
  """`torch.optim.Adam` (single-tensor path, amsgrad off, no weight decay) in NumPy float64."""
  p = params.astype(np.float64).copy()
  m = np.zeros_like(p)
  v = np.zeros_like(p)
  for t, g in enumerate(grads_per_step, start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    step_size = (lr_at(t - 1) if lr_at else lr) / (1 - b1**t)
    denom = np.sqrt(v) / np.sqrt(1 - b2**t) + eps
    p = p - step_size * m / denom
  return p


@pytest.mark.parametrize("scale", [1.0, 1e-6])
def test_torch_adam_follows_pytorchs_update(scale):
  """Tiny gradients (scale 1e-6) are where the epsilon placement matters."""
  rng = np.random.default_rng(0)
  start = rng.normal(size=(5, 3)).astype(np.float32)
  grads = [scale * rng.normal(size=(5, 3)) for _ in range(6)]
  want = _torch_adam_numpy(start, grads, 1e-3, 0.9, 0.999, 1e-8)
  results = {}
  for variant in ("torch", "keras"):
    var = tf.Variable(start)
    opt = optimizers.adam(variant, 1e-3, epsilon=1e-8)
    for g in grads:
      opt.apply_gradients([(tf.constant(g, tf.float32), var)])
    results[variant] = var.numpy()
  np.testing.assert_allclose(results["torch"], want, rtol=1e-5, atol=1e-9)
  if scale < 1e-3:  # Keras' epsilon placement is measurably different here
    assert np.abs(results["keras"] - want).max() > 1e-5


def test_run_optimizers_are_torch_adam_with_the_multistep_schedule():
  """The run's optimizer (`run_lib.adam`) follows torch Adam + MultiStepLR step by step."""
  config = config_lib.ExperimentConfig(lr=1e-2, lr_milestones=(2,), lr_gamma=0.1)
  start = np.linspace(-1, 1, 6).astype(np.float32)
  var = tf.Variable(start)
  opt = run_lib.adam(config, run_lib.learning_rate(config))  # pylint: disable=protected-access
  grads = [np.full(6, 0.5 * k, np.float32) for k in range(1, 5)]
  for g in grads:
    opt.apply_gradients([(tf.constant(g), var)])
  want = _torch_adam_numpy(
    start, grads, 1e-2, 0.9, 0.999, 1e-8, lr_at=lambda it: 1e-2 * (0.1 if it >= 2 else 1.0)
  )
  np.testing.assert_allclose(var.numpy(), want, rtol=1e-5)
  assert isinstance(opt, optimizers.TorchAdam)
