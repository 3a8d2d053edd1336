"""Every loss term against an independent computation.

The references here are NumPy ports of the authors' formulas (`calc_kl`,
`calc_reconstruction_loss`, the expELBO lines of `train_soft_intro_vae*.py`, `Gaussian_Distance`
/ `reduce_with_choice` of AS-IntroVAE's `utils.py`, `get_coef`), written with explicit loops
where the TF code is vectorised, plus TFP/SciPy where a distribution gives the answer.
"""

import functools
import importlib
import math

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

from as_introvae_tf import losses

# The module (the package's `as_distance` is the function of the same name).
as_distance_lib = importlib.import_module("as_introvae_tf.losses.as_distance")

tfd = tfp.distributions
RNG = np.random.default_rng(0)


def _np(*shape, scale=1.0):
  return (RNG.standard_normal(shape) * scale).astype(np.float32)


def np_calc_kl(logvar, mu):
  """Reference `calc_kl(logvar, mu, reduce='none')`."""
  return -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar), axis=1)


def np_rec(x, y):
  """Reference `calc_reconstruction_loss(x, y, 'mse', 'none')` summed per example."""
  b = x.shape[0]
  return np.sum((x.reshape(b, -1) - y.reshape(b, -1)) ** 2, axis=1)


def test_reconstruction_error_matches_reference_on_images():
  x, y = _np(4, 5, 5, 3), _np(4, 5, 5, 3)
  got = losses.reconstruction_error(tf.constant(x), tf.constant(y))
  assert got.shape == (4,)
  np.testing.assert_allclose(got, np_rec(x, y), rtol=1e-5)


def test_gaussian_kl_matches_closed_form_and_tfp_mvn():
  mu, logvar = _np(6, 3), _np(6, 3, scale=0.5)
  got = losses.gaussian_kl(tf.constant(mu), tf.constant(logvar)).numpy()
  np.testing.assert_allclose(got, np_calc_kl(logvar, mu), rtol=1e-5, atol=1e-6)
  mvn = tfd.MultivariateNormalDiag(loc=mu, scale_diag=np.exp(0.5 * logvar))
  prior = tfd.MultivariateNormalDiag(loc=np.zeros(3, np.float32), scale_diag=np.ones(3, np.float32))
  np.testing.assert_allclose(got, tfd.kl_divergence(mvn, prior).numpy(), rtol=1e-5, atol=1e-6)
  assert np.all(got >= 0)


def test_gaussian_kl_is_zero_at_the_prior():
  z = tf.zeros([2, 4])
  np.testing.assert_allclose(losses.gaussian_kl(z, z), [0.0, 0.0], atol=1e-7)


def test_reparameterize():
  mu, logvar, eps = _np(3, 2), _np(3, 2), _np(3, 2)
  got = losses.reparameterize(tf.constant(mu), tf.constant(logvar), tf.constant(eps))
  np.testing.assert_allclose(got, mu + np.sqrt(np.exp(logvar)) * eps, rtol=1e-5)


def test_input_scale():
  assert losses.input_scale((2,)) == 0.5  # the 2-D reference's dim_scale
  assert losses.input_scale((28, 28, 1)) == 1 / 784
  assert losses.input_scale((32, 32, 3)) == 1 / (3 * 32**2)  # scale = 1/(ch*image_size**2)


def test_soft_introvae_encoder_loss_matches_reference_batch_formula():
  # Reference (train_soft_intro_vae.py): lossE = scale * (beta_rec * loss_rec.mean +
  # beta_kl * kl.mean) + 0.25 * (exp_elbo_fake + exp_elbo_rec), the expELBOs being
  # (-2 * scale * (beta_rec * rec_s + beta_neg * kl_s)).exp().mean().
  b, s, beta_rec, beta_kl, beta_neg = 5, 1 / 12, 0.7, 0.3, 2.0
  rec_real, kl_real = np.abs(_np(b)) * 4, np.abs(_np(b))
  rr = [np.abs(_np(b)) * 3 for _ in range(2)]
  kls = [np.abs(_np(b)) for _ in range(2)]
  expected_exp = [np.mean(np.exp(-2 * s * (beta_rec * r + beta_neg * k))) for r, k in zip(rr, kls)]
  expected = s * (beta_rec * rec_real.mean() + beta_kl * kl_real.mean()) + 0.25 * (
    expected_exp[0] + expected_exp[1]
  )
  e = [
    losses.exp_elbo(r, k, scale=s, beta_rec=beta_rec, beta_neg=beta_neg) for r, k in zip(rr, kls)
  ]
  for got_e, want in zip(e, expected_exp):
    np.testing.assert_allclose(np.mean(got_e), want, rtol=1e-5)
  per_example = losses.soft_introvae_encoder_loss(
    rec_real, kl_real, e[0], e[1], scale=s, beta_rec=beta_rec, beta_kl=beta_kl
  )
  assert per_example.shape == (b,)
  np.testing.assert_allclose(np.mean(per_example), expected, rtol=1e-5)


def test_soft_introvae_decoder_loss_matches_reference_batch_formula():
  # Reference: lossD = scale * (beta_rec * loss_rec + 0.5 * beta_kl * (fake_kl + rec_kl)
  #                             + gamma_r * 0.5 * beta_rec * (loss_rec_rec + loss_rec_fake))
  b, s, beta_rec, beta_kl, gamma_r = 4, 0.5, 0.2, 0.3, 1e-8
  terms = [np.abs(_np(b)) * 3 for _ in range(5)]
  rec_real, kl_rec, kl_fake, rr_rec, rr_fake = terms
  expected = s * (
    beta_rec * rec_real.mean()
    + 0.5 * beta_kl * (kl_fake.mean() + kl_rec.mean())
    + gamma_r * 0.5 * beta_rec * (rr_rec.mean() + rr_fake.mean())
  )
  got = losses.soft_introvae_decoder_loss(
    *terms, scale=s, beta_rec=beta_rec, beta_kl=beta_kl, gamma_r=gamma_r
  )
  np.testing.assert_allclose(np.mean(got), expected, rtol=1e-5)


def test_vae_loss():
  rec, kl = np.abs(_np(3)), np.abs(_np(3))
  got = losses.vae_loss(rec, kl, scale=0.25, beta_rec=2.0, beta_kl=0.5)
  np.testing.assert_allclose(got, 0.25 * (2.0 * rec + 0.5 * kl), rtol=1e-6)


def test_introvae_losses_hinge():
  rec_real, kl_real = np.array([3.0, 1.0], np.float32), np.array([0.5, 2.0], np.float32)
  kl_rec, kl_fake = np.array([1.0, 9.0], np.float32), np.array([12.0, 4.0], np.float32)
  m, alpha = 5.0, 0.25
  # Hand values: [m - kl]^+ = (4, 0) for rec and (0, 1) for fake.
  want_e = 1.0 * kl_real + alpha * np.array([4.0 + 0.0, 0.0 + 1.0]) + 0.5 * rec_real
  got_e = losses.introvae_encoder_loss(
    rec_real, kl_real, kl_rec, kl_fake, margin=m, alpha=alpha, beta_rec=0.5, beta_kl=1.0
  )
  np.testing.assert_allclose(got_e, want_e, rtol=1e-6)
  got_d = losses.introvae_decoder_loss(rec_real, kl_rec, kl_fake, alpha=alpha, beta_rec=0.5)
  np.testing.assert_allclose(got_d, alpha * (kl_rec + kl_fake) + 0.5 * rec_real, rtol=1e-6)


@pytest.mark.parametrize("mode", ["linear", "tanh"])
def test_annealing_matches_reference_get_coef(mode):
  def get_coef(it, total, mode):  # port of AS-IntroVAE utils.get_coef
    x = it * 5 / total
    if mode == "tanh":
      x = math.tanh(x)
    return x if x <= 1 else 1

  for it in [0, 1, 50, 199, 200, 201, 999]:
    got = float(losses.annealing_coefficient(it, 1000, mode))
    assert got == pytest.approx(get_coef(it, 1000, mode), abs=1e-6)


def test_annealing_rejects_unknown_mode():
  with pytest.raises(ValueError, match="anneal"):
    losses.annealing_coefficient(1, 10, "cosine")


def np_reduce_with_choice(mu1, mu2, var1, var2, choice):
  """Port of the AS-IntroVAE reference `reduce_with_choice` (eta = 0), explicit loops."""
  na, nb, d = mu1.shape[0], mu2.shape[0], mu1.shape[1]
  out = np.zeros((na, nb, d))
  for i in range(na):
    for j in range(nb):
      for k in range(d):
        v = var1[i, k] + var2[j, k]
        out[i, j, k] = np.exp(-0.5 * (mu1[i, k] - mu2[j, k]) ** 2 / v) / np.sqrt(v)
  return out.mean() if choice == "mean" else out.sum()


def np_gaussian_distance(mu_a, logvar_a, mu_b, logvar_b, reduce):
  """Port of the reference `Gaussian_Distance.forward` (vaa + vbb - 2 vab)."""
  va, vb = np.exp(logvar_a.astype(np.float64)), np.exp(logvar_b.astype(np.float64))
  mu_a, mu_b = mu_a.astype(np.float64), mu_b.astype(np.float64)
  vaa = np_reduce_with_choice(mu_a, mu_a, va, va, reduce)
  vab = np_reduce_with_choice(mu_a, mu_b, va, vb, reduce)
  vbb = np_reduce_with_choice(mu_b, mu_b, vb, vb, reduce)
  return vaa + vbb - 2 * vab


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_as_distance_per_dim_matches_reference_gaussian_distance(reduction):
  mu_a, lv_a, mu_b, lv_b = _np(4, 3), _np(4, 3, scale=0.3), _np(5, 3), _np(5, 3, scale=0.3)
  got = losses.as_distance(mu_a, lv_a, mu_b, lv_b, kernel="per_dim", reduction=reduction)
  want = np_gaussian_distance(mu_a, lv_a, mu_b, lv_b, reduction)
  np.testing.assert_allclose(float(got), want, rtol=1e-4, atol=1e-5)


def np_product_mmd(mu_a, var_a, mu_b, var_b, reduction):
  """Squared MMD with k(a, b) = N(mu_a; mu_b, S_a + S_b), from SciPy densities (float64)."""

  def k(mu1, v1, mu2, v2):
    return np.array(
      [
        [
          scipy.stats.multivariate_normal.pdf(mu1[i], mean=mu2[j], cov=np.diag(v1[i] + v2[j]))
          for j in range(len(mu2))
        ]
        for i in range(len(mu1))
      ]
    )

  red = np.mean if reduction == "mean" else np.sum
  return (
    red(k(mu_a, var_a, mu_a, var_a))
    + red(k(mu_b, var_b, mu_b, var_b))
    - 2 * red(k(mu_a, var_a, mu_b, var_b))
  )


@pytest.mark.parametrize("dim,reduction", [(2, "mean"), (2, "sum"), (6, "mean")])
def test_as_distance_product_matches_scipy(dim, reduction):
  mu_a, lv_a = _np(4, dim, scale=0.5), _np(4, dim, scale=0.3) - 1.0
  mu_b, lv_b = _np(3, dim, scale=0.5) + 0.3, _np(3, dim, scale=0.3) - 1.0
  got = losses.as_distance(mu_a, lv_a, mu_b, lv_b, kernel="product", reduction=reduction)
  want = np_product_mmd(
    mu_a.astype(np.float64),
    np.exp(lv_a.astype(np.float64)),
    mu_b.astype(np.float64),
    np.exp(lv_b.astype(np.float64)),
    reduction,
  )
  np.testing.assert_allclose(float(got), want, rtol=2e-4)
  if reduction == "mean":
    assert float(got) >= 0.0  # a squared MMD with a positive-definite kernel


def test_as_distance_product_is_zero_for_identical_batches_and_has_finite_gradient_in_128d():
  mu, lv = tf.constant(_np(8, 128, scale=0.1)), tf.constant(_np(8, 128, scale=0.1))
  with tf.GradientTape() as tape:
    tape.watch(mu)
    d = losses.as_distance(mu, lv, mu, lv, kernel="product")
  grad = tape.gradient(d, mu)
  assert float(d) == pytest.approx(0.0, abs=1e-12)
  assert np.all(np.isfinite(grad.numpy()))


def test_as_distance_rejects_unknown_kernel_and_reduction():
  z = tf.zeros([2, 2])
  with pytest.raises(ValueError, match="kernel"):
    losses.as_distance(z, z, z, z, kernel="rbf")
  with pytest.raises(ValueError, match="reduction"):
    losses.as_distance(z, z, z, z, kernel="per_dim", reduction="max")
  with pytest.raises(ValueError, match="reduction"):
    losses.as_distance(z, z, z, z, kernel="product", reduction="max")


def _autodiff_as_distance(mu_a, lv_a, mu_b, lv_b, kernel, reduction):
  """The AS-Distance from the plain kernel expressions (`_per_dim_kernel`, TFP's
  `_product_log_kernel`) with TF's own autodiff: the independent form of the fused one."""
  red = tf.reduce_mean if reduction == "mean" else tf.reduce_sum
  va, vb = tf.exp(lv_a), tf.exp(lv_b)
  if kernel == "per_dim":
    k = as_distance_lib._per_dim_kernel  # pylint: disable=protected-access
    return red(k(mu_a, va, mu_a, va)) + red(k(mu_b, vb, mu_b, vb)) - 2 * red(k(mu_a, va, mu_b, vb))
  lk = as_distance_lib._product_log_kernel  # pylint: disable=protected-access
  return (
    red(tf.exp(lk(mu_a, va, mu_a, va)))
    + red(tf.exp(lk(mu_b, vb, mu_b, vb)))
    - 2 * red(tf.exp(lk(mu_a, va, mu_b, vb)))
  )


@pytest.mark.parametrize(
  "kernel,reduction,dim",
  [
    ("per_dim", "mean", 3),
    ("per_dim", "sum", 2),
    ("product", "mean", 2),
    ("product", "sum", 2),
    ("product", "mean", 6),
  ],
)
def test_as_distance_fused_gradient_equals_autodiff_of_the_plain_kernel(kernel, reduction, dim):
  """The hand-written gradient of the fused kernel blocks against TF's autodiff of the plain
  expressions, for every input (including a batch passed on both sides of a block)."""
  args = [
    tf.constant(_np(5, dim, scale=0.5)),
    tf.constant(_np(5, dim, scale=0.3) - 0.5),
    tf.constant(_np(4, dim, scale=0.5) + 0.2),
    tf.constant(_np(4, dim, scale=0.3) - 0.5),
  ]
  grads = {}
  for name, fn in (("fused", losses.as_distance), ("autodiff", _autodiff_as_distance)):
    with tf.GradientTape() as tape:
      tape.watch(args)
      value = (
        fn(*args, kernel=kernel, reduction=reduction)
        if name == "fused"
        else fn(*args, kernel, reduction)
      )
    grads[name] = (float(value), tape.gradient(value, args))
  np.testing.assert_allclose(grads["fused"][0], grads["autodiff"][0], rtol=1e-5)
  for g_fused, g_auto in zip(grads["fused"][1], grads["autodiff"][1]):
    scale = float(np.abs(g_auto.numpy()).max())
    assert scale > 0
    np.testing.assert_allclose(g_fused.numpy(), g_auto.numpy(), rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("kernel", losses.AS_KERNELS)
@pytest.mark.parametrize("reduction", losses.REDUCTIONS)
@pytest.mark.parametrize("dim,same", [(2, False), (6, False), (2, True)])
def test_as_distance_xla_equals_the_plain_blocks(kernel, reduction, dim, same):
  """`as_distance(..., xla=True)` (value and gradients from one XLA-compiled function, the
  symmetric blocks reduced over one axis) against the plain `_kernel_block` path, inside a
  traced step as in training: equal to float32 rounding, relative to the magnitude of the
  blocks (the AS-Distance itself is a difference of them)."""
  n_a, n_b = 64, 48
  args = [
    tf.constant(_np(n_a, dim, scale=0.7)),
    tf.constant(_np(n_a, dim, scale=0.3) - 0.5),
    tf.constant(_np(n_b, dim, scale=0.7) + 0.2),
    tf.constant(_np(n_b, dim, scale=0.3) - 0.5),
  ]
  if same:  # one batch on both sides (the symmetric blocks only)
    args[2], args[3] = args[0], args[1]

  @tf.function
  def value_and_grads(xla, *args):
    with tf.GradientTape() as tape:
      tape.watch(args)
      value = losses.as_distance(*args, kernel=kernel, reduction=reduction, xla=xla)
    return value, tape.gradient(value, args)

  plain_value, plain_grads = value_and_grads(False, *args)
  xla_value, xla_grads = value_and_grads(True, *args)
  with tf.GradientTape() as tape:  # the blocks' sum: the magnitude of values and gradients
    tape.watch(args)
    va, vb = tf.exp(args[1]), tf.exp(args[3])
    block = functools.partial(
      as_distance_lib._kernel_block,
      kernel=kernel,
      reduction=reduction,  # pylint: disable=protected-access
      log_shift=tf.constant(0.0),
    )
    magnitude = (
      block(args[0], va, args[0], va)
      + block(args[2], vb, args[2], vb)
      + 2.0 * block(args[0], va, args[2], vb)
    )
  magnitude_grads = tape.gradient(magnitude, args)
  assert float(magnitude) > 0
  np.testing.assert_allclose(
    float(xla_value), float(plain_value), rtol=0, atol=2e-6 * float(magnitude)
  )
  for g_xla, g_plain, g_mag in zip(xla_grads, plain_grads, magnitude_grads):
    scale = float(np.abs(g_mag.numpy()).max())
    assert scale > 0
    np.testing.assert_allclose(g_xla.numpy(), g_plain.numpy(), rtol=0, atol=2e-5 * scale)
    if not same:  # a = b: the AS-Distance and its gradient are 0
      assert float(np.abs(g_plain.numpy()).max()) > 1e-3 * scale
