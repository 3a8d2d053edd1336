"""S-IntroVAE (Daniel & Tamar, CVPR 2021; eq. 4, https://arxiv.org/abs/2012.13253, Algorithm 1)."""

from __future__ import annotations

import typing

import tensorflow as tf

from as_introvae_tf import losses
from as_introvae_tf import methods
from as_introvae_tf.methods import base


@methods.register("soft_introvae")
class SoftIntroVAE(base.IntrospectiveVAE):
  """S-IntroVAE (Daniel & Tamar, CVPR 2021; S-IntroVAE eq. 4, Algorithm 1).

  The adversarial terms' divergence (the KL of the posteriors of the reconstructions and
  fakes, eq. 4) comes from `divergence_class`: `KLDivergence` here; AS-IntroVAE's
  `ASDivergence` replaces it by `c * KL + (1 - c) * AS` (its eq. 9), with the same step.
  """

  metric_names = (
    "loss_encoder",
    "loss_decoder",
    "rec",
    "kl_real",
    "kl_rec",
    "kl_fake",
    "diff_kl",
    "exp_elbo_rec",
    "exp_elbo_fake",
  ) + base.GRAD_NORMS
  """As IntroVAE's, plus the batch means of the encoder phase's expELBOs."""
  divergence_hint = (
    "S-IntroVAE usually diverges when --beta_neg is too small for the latent "
    "size: raise --beta_neg (the authors advise values near z_dim or larger) "
    "or lower --lr."
  )
  bar_metrics = ("loss", "loss_encoder", "loss_decoder", "rec", "kl_real", "diff_kl")
  divergence_class = None  # KLDivergence, set below the class
  """The adversarial divergence (`KLDivergence`'s interface), built once per model."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.divergence = self.divergence_class()

  def introspective_step(self, x):
    hp, s = self.hparams, self.scale
    z_p = self.normal_noise(0)
    eps, eps_r, eps_f = self.normal_noise(1), self.normal_noise(2), self.normal_noise(3)
    eps_r_d, eps_f_d = self.normal_noise(4), self.normal_noise(5)
    divergence = self.divergence

    # === Update E === (decoder frozen: only encoder variables are updated)
    with tf.GradientTape() as tape:
      # The fakes apart from x_r: fused, the encoder's backward pass would run through the
      # decoder for the fakes' rows too (zero gradient, 2 * B * decoder weights FLOPs).
      x_f = tf.stop_gradient(self.decoder(z_p, training=True))
      mu, logvar = self.encoder(x, training=True)
      z = losses.reparameterize(mu, logvar, eps)
      x_r = self.decoder(z, training=True)
      rec_real = losses.reconstruction_error(x, x_r)
      kl_real = losses.gaussian_kl(mu, logvar)

      x_r_in = tf.stop_gradient(x_r)
      (mu_r, logvar_r, y_r), (mu_f, logvar_f, y_f) = self.encode_sample_decode_pair(
        x_r_in, eps_r, x_f, eps_f
      )
      rr_rec = losses.reconstruction_error(x_r if hp.rec_target_grad else x_r_in, y_r)
      rr_fake = losses.reconstruction_error(x_f, y_f)
      kl_rec = losses.gaussian_kl(mu_r, logvar_r)
      kl_fake = losses.gaussian_kl(mu_f, logvar_f)

      div = divergence.encoder_phase(self, (mu_r, logvar_r), (mu_f, logvar_f), kl_rec, kl_fake)
      energy = dict(scale=s, beta_rec=hp.beta_rec, beta_neg=hp.beta_neg)
      exp_rec = losses.exp_elbo(rr_rec, div.rec, **energy)
      exp_fake = losses.exp_elbo(rr_fake, div.fake, **energy)
      per_example_e = losses.soft_introvae_encoder_loss(
        rec_real, kl_real, exp_rec, exp_fake, scale=s, beta_rec=hp.beta_rec, beta_kl=hp.beta_kl
      )
      loss_e = self.loss_mean(per_example_e) + divergence.encoder_loss_term(
        self, div, exp_rec, exp_fake
      )
    self.minimize(tape, loss_e, self.encoder.trainable_variables, self.encoder_optimizer, "encoder")

    # === Update D === (encoder frozen: gradients flow through it, only D is updated)
    with tf.GradientTape() as tape:
      x_f, x_r = self.passes(self.decoder, [z_p, tf.stop_gradient(z)])
      rec_real_d = losses.reconstruction_error(x, x_r)
      (mu_r, logvar_r, y_r), (mu_f, logvar_f, y_f) = self.encode_sample_decode_pair(
        x_r, eps_r_d, x_f, eps_f_d, stop_z=True
      )
      rr_rec_d = losses.reconstruction_error(tf.stop_gradient(x_r), y_r)
      rr_fake_d = losses.reconstruction_error(tf.stop_gradient(x_f), y_f)
      div_d = divergence.decoder_phase(self, (mu_r, logvar_r), (mu_f, logvar_f), div)
      per_example_d = losses.soft_introvae_decoder_loss(
        rec_real_d,
        div_d.rec,
        div_d.fake,
        rr_rec_d,
        rr_fake_d,
        scale=s,
        beta_rec=hp.beta_rec,
        beta_kl=hp.beta_kl,
        gamma_r=hp.gamma_r,
      )
      loss_d = self.loss_mean(per_example_d) + div_d.loss_term
    self.minimize(tape, loss_d, self.decoder.trainable_variables, self.decoder_optimizer, "decoder")

    kl_real_mean = tf.reduce_mean(kl_real)
    kl_fake_mean = tf.reduce_mean(div_d.kl_fake)
    logs = {
      "loss_encoder": tf.reduce_mean(per_example_e),
      "loss_decoder": tf.reduce_mean(per_example_d) + div_d.loss_term,
      "rec": tf.reduce_mean(rec_real),
      "kl_real": kl_real_mean,
      "kl_rec": tf.reduce_mean(div_d.kl_rec),
      "kl_fake": kl_fake_mean,
      "diff_kl": kl_fake_mean - kl_real_mean,
      "exp_elbo_rec": tf.reduce_mean(exp_rec),
      "exp_elbo_fake": tf.reduce_mean(exp_fake),
    }
    logs.update(divergence.logs(self, div, kl_rec, kl_fake))
    return logs


class EncoderDivergence(typing.NamedTuple):
  """The encoder phase's divergences: `rec`, `fake` float32 `[B]` (nats) in the expELBO
  exponents of the reconstructions and fakes; `state`, what the divergence's loss term and
  logs need (the method's own)."""

  rec: tf.Tensor
  fake: tf.Tensor
  state: object = None


class DecoderDivergence(typing.NamedTuple):
  """The decoder phase's divergences: `rec`, `fake` float32 `[B]` in place of the KLs of the
  decoder loss; `loss_term`, a scalar added to its global-batch mean; `kl_rec`, `kl_fake`
  float32 `[B]`, the KLs the step logs."""

  rec: tf.Tensor
  fake: tf.Tensor
  loss_term: object
  kl_rec: tf.Tensor
  kl_fake: tf.Tensor


class KLDivergence:
  """S-IntroVAE's adversarial divergence (eq. 4): the KL of the posterior of a reconstruction
  or fake from the prior, in both phases. The interface `SoftIntroVAE`'s step calls; a method
  that changes the divergence subclasses it (AS-IntroVAE's `ASDivergence`). Each method takes
  the model (for its hyper-parameters, scale `s` and replica helpers); posteriors are
  `(mu, logvar)` pairs of float32 `[B, z_dim]`."""

  def encoder_phase(self, model, posterior_rec, posterior_fake, kl_rec, kl_fake):
    """`EncoderDivergence` for the expELBOs, given the posteriors and their KLs `[B]`."""
    del model, posterior_rec, posterior_fake
    return EncoderDivergence(kl_rec, kl_fake)

  def encoder_loss_term(self, model, div, exp_rec, exp_fake):
    """A scalar added to the encoder's global-batch mean loss (none here)."""
    del model, div, exp_rec, exp_fake
    return 0.0

  def decoder_phase(self, model, posterior_rec, posterior_fake, encoder_div):
    """`DecoderDivergence` of the posteriors the decoder phase re-encodes; `encoder_div` is
    the same step's `encoder_phase` result (whatever the step shares, such as AS-IntroVAE's
    `c`, comes from there: the encoder update has already advanced the step counter)."""
    del model, encoder_div
    kl_rec, kl_fake = losses.gaussian_kl(*posterior_rec), losses.gaussian_kl(*posterior_fake)
    return DecoderDivergence(kl_rec, kl_fake, 0.0, kl_rec, kl_fake)

  def logs(self, model, div, kl_rec, kl_fake):
    """Metrics of the divergence (the method's `metric_names` beyond S-IntroVAE's)."""
    del model, div, kl_rec, kl_fake
    return {}


SoftIntroVAE.divergence_class = KLDivergence
