"""Loss terms of VAE, IntroVAE and S-IntroVAE, as pure per-example functions.

Every function here is pure: tensors in, tensors out, no variables, no randomness. Per-example
terms return float32 `[B]` (batch axis first). Averaging over the GLOBAL batch and the replica
scaling happen once, in the methods' `train_step` (`methods/base.py`).

Notation (docs/method.md writes every term out):

* `rec(x, y)`: sum over all pixels/coordinates of `(x - y)^2`.
* `kl(mu, logvar)`: KL(N(mu, diag(exp(logvar))) || N(0, I)) in nats, via TFP.
* `s`: the scale 1 / input dimension (S-IntroVAE, Algorithm 1; `scale` in the reference code).
* expELBO: `exp(alpha * s * ELBO)` with `ELBO = -(beta_rec * rec + beta_neg * kl)`, alpha = 2.

Sources: S-IntroVAE = Daniel & Tamar, CVPR 2021, https://arxiv.org/abs/2012.13253 (eq. 4,
Algorithm 1), and the reference code https://github.com/taldatech/soft-intro-vae-pytorch;
IntroVAE = Huang et al., NeurIPS 2018, https://arxiv.org/abs/1807.06358 (Algorithm 1).
"""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp

__all__ = [
  "reconstruction_error",
  "posterior",
  "standard_prior",
  "gaussian_kl",
  "reparameterize",
  "input_scale",
  "exp_elbo",
  "soft_introvae_encoder_loss",
  "soft_introvae_decoder_loss",
  "vae_loss",
  "introvae_encoder_loss",
  "introvae_decoder_loss",
]


tfd = tfp.distributions


def reconstruction_error(x, y):
  """Sum of squared errors per example: `rec(x, y)`.

  The reference's `calc_reconstruction_loss(..., loss_type="mse", reduction="none")`
  followed by a sum over every non-batch axis.

  Args:
    x: float32 `[B, ...]`, targets (pixels in [0, 1], or 2-D points).
    y: float32, same shape as `x`, reconstructions.

  Returns:
    float32 `[B]`, in squared pixel units (summed, not averaged, over pixels).
  """
  diff = tf.reshape(x - y, [tf.shape(x)[0], -1])
  return tf.reduce_sum(tf.square(diff), axis=1)


def posterior(mu, logvar):
  """The diagonal Gaussian posterior `q(z|x) = N(mu, diag(exp(logvar)))` as a TFP distribution.

  Args:
    mu: float32 `[B, D]`, posterior means.
    logvar: float32 `[B, D]`, posterior log-variances (natural log).

  Returns:
    `tfd.Independent(tfd.Normal)` with batch shape `[B]` and event shape `[D]`.
  """
  return tfd.Independent(tfd.Normal(loc=mu, scale=tf.exp(0.5 * logvar)), 1)


def standard_prior(z_dim, dtype=tf.float32):
  """The prior `p(z) = N(0, I)` with event shape `[z_dim]`."""
  return tfd.Independent(tfd.Normal(loc=tf.zeros([z_dim], dtype), scale=tf.ones([z_dim], dtype)), 1)


def gaussian_kl(mu, logvar):
  """KL(q(z|x) || p(z)) per example, in nats, computed by TFP.

  Equals the closed form `-0.5 * sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))` of the
  reference's `calc_kl(logvar, mu, reduce="none")`.

  Args:
    mu: float32 `[B, D]`.
    logvar: float32 `[B, D]`.

  Returns:
    float32 `[B]`, non-negative, in nats.
  """
  return tfd.kl_divergence(posterior(mu, logvar), standard_prior(mu.shape[-1], mu.dtype))


def reparameterize(mu, logvar, eps):
  """`z = mu + exp(0.5 * logvar) * eps` (the reparameterization trick).

  Args:
    mu: float32 `[B, D]`.
    logvar: float32 `[B, D]`.
    eps: float32 `[B, D]`, standard normal noise (drawn by the caller, so that the step is
      reproducible and independent of the number of replicas).

  Returns:
    float32 `[B, D]`, a sample of the posterior differentiable in `mu` and `logvar`.
  """
  return mu + tf.exp(0.5 * logvar) * eps


def input_scale(example_shape):
  """The scale `s = 1 / input dimension` (S-IntroVAE Algorithm 1).

  Args:
    example_shape: shape of one example without the batch axis: `(2,)` for 2-D data (s = 0.5,
      as the 2-D reference's `dim_scale`), `(H, W, C)` for images (s = 1 / (C * H * W), the
      image reference's `scale = 1 / (ch * image_size ** 2)`).

  Returns:
    Python float.
  """
  return 1.0 / float(math.prod(example_shape))


def exp_elbo(rec, kl, *, scale, beta_rec, beta_neg, alpha=2.0):
  """expELBO per example: `exp(-alpha * s * (beta_rec * rec + beta_neg * kl))`.

  S-IntroVAE eq. 4 with alpha = 2 (the reference's `(-2 * scale * (...)).exp()`); for
  AS-IntroVAE pass `kl = c * kl_s + (1 - c) * AS` (the AS-IntroVAE paper's eq. 9).

  Args:
    rec: float32 `[B]`, `rec(x_s, D(z_s))`.
    kl: float32 `[B]` (or broadcastable), the KL (or KL/AS mix) in nats.
    scale: `s`, Python float.
    beta_rec: non-negative weight of `rec`.
    beta_neg: non-negative weight of `kl`.
    alpha: the exponent factor, 2 in both papers.

  Returns:
    float32 `[B]` in (0, 1] for non-negative energies; underflows to 0 for large energies
    exactly as the reference does.
  """
  return tf.exp(-alpha * scale * (beta_rec * rec + beta_neg * kl))


# ---------------------------------------------------------------------------------------------
# S-IntroVAE (the S-IntroVAE paper's eq. 4, Algorithm 1)
# ---------------------------------------------------------------------------------------------


def soft_introvae_encoder_loss(
  rec_real, kl_real, exp_elbo_rec, exp_elbo_fake, *, scale, beta_rec, beta_kl
):
  """S-IntroVAE encoder loss per example.

  `L_E = s * (beta_rec * rec_real + beta_kl * kl_real) + 0.25 * (exp_elbo_rec + exp_elbo_fake)`
  (reference `lossE = lossE_real + lossE_fake`); its batch mean is the reference's scalar.

  Args:
    rec_real: float32 `[B]`, the real batch's reconstruction error.
    kl_real: float32 `[B]`, the real batch's KL.
    exp_elbo_rec: float32 `[B]`, expELBO of the reconstructions.
    exp_elbo_fake: float32 `[B]`, expELBO of the fakes.
    scale: see `exp_elbo`.
    beta_rec: see `exp_elbo`.
    beta_kl: see `exp_elbo`.

  Returns:
    float32 `[B]`.
  """
  return scale * (beta_rec * rec_real + beta_kl * kl_real) + 0.25 * (exp_elbo_rec + exp_elbo_fake)


def soft_introvae_decoder_loss(
  rec_real, kl_rec, kl_fake, rr_rec, rr_fake, *, scale, beta_rec, beta_kl, gamma_r
):
  """S-IntroVAE decoder loss per example.

  `L_D = s * (beta_rec * rec_real + 0.5 * beta_kl * (kl_rec + kl_fake)
              + gamma_r * 0.5 * beta_rec * (rr_rec + rr_fake))`
  (reference `lossD`, Algorithm 1). `gamma_r` is 1e-8 in the reference, never 0.

  Args:
    rec_real: float32 `[B]`, `rec(x, D(sg(z)))`.
    kl_rec: float32 `[B]`, KL of the posteriors of the reconstructions.
    kl_fake: float32 `[B]`, KL of the posteriors of the fakes.
    rr_rec: float32 `[B]`, `rec(sg(x_s), D(sg(z_s)))` of the reconstructions.
    rr_fake: float32 `[B]`, the same of the fakes.

  Returns:
    float32 `[B]`.
  """
  return scale * (
    beta_rec * rec_real
    + 0.5 * beta_kl * (kl_rec + kl_fake)
    + gamma_r * 0.5 * beta_rec * (rr_rec + rr_fake)
  )


def vae_loss(rec, kl, *, scale, beta_rec, beta_kl):
  """(Negative, beta-weighted, scaled) ELBO per example: `s * (beta_rec * rec + beta_kl * kl)`.

  The plain VAE and the `num_vae` warm-up of the introspective methods (docs/method.md, VAE).

  Returns:
    float32 `[B]`.
  """
  return scale * (beta_rec * rec + beta_kl * kl)


# ---------------------------------------------------------------------------------------------
# IntroVAE (Huang et al. 2018, Algorithm 1; the S-IntroVAE paper's eq. 2)
# ---------------------------------------------------------------------------------------------


def introvae_encoder_loss(rec_real, kl_real, kl_rec, kl_fake, *, margin, alpha, beta_rec, beta_kl):
  """IntroVAE encoder loss per example, with the hinge `[m - KL]^+`.

  `L_E = beta_kl * kl_real + alpha * (relu(m - kl_rec) + relu(m - kl_fake)) + beta_rec * rec_real`
  (IntroVAE Algorithm 1; no `s` scaling, as in the IntroVAE paper).

  Args:
    rec_real: float32 `[B]`.
    kl_real: float32 `[B]`.
    kl_rec: float32 `[B]`, KL of the posteriors of `sg(x_r)`, in nats.
    kl_fake: float32 `[B]`, KL of the posteriors of `x_f`, in nats.
    margin: the hinge margin `m` in nats.
    alpha: weight of the adversarial terms (0.25 in the IntroVAE paper).

  Returns:
    float32 `[B]`.
  """
  hinge = tf.nn.relu(margin - kl_rec) + tf.nn.relu(margin - kl_fake)
  return beta_kl * kl_real + alpha * hinge + beta_rec * rec_real


def introvae_decoder_loss(rec_real, kl_rec, kl_fake, *, alpha, beta_rec):
  """IntroVAE decoder loss per example: `alpha * (kl_rec + kl_fake) + beta_rec * rec_real`.

  The KL terms are taken through the frozen encoder (IntroVAE Algorithm 1).

  Returns:
    float32 `[B]`.
  """
  return alpha * (kl_rec + kl_fake) + beta_rec * rec_real
