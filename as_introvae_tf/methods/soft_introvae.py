"""S-IntroVAE (Daniel & Tamar, CVPR 2021; eq. 4, https://arxiv.org/abs/2012.13253, Algorithm 1)."""

from __future__ import annotations

import tensorflow as tf

from as_introvae_tf import losses
from as_introvae_tf import methods
from as_introvae_tf.methods import base


@methods.register("soft_introvae")
class SoftIntroVAE(base.IntrospectiveVAE):
  """S-IntroVAE (Daniel & Tamar, CVPR 2021; S-IntroVAE eq. 4, Algorithm 1).

  AS-IntroVAE subclasses it and replaces the KL of the rec/fake posteriors inside the
  adversarial terms by `c * KL + (1 - c) * AS` through the hooks `_squash`, `_coefficient`,
  `_as_distance`, `_encoder_as_term`, `_decoder_as_term` and `_as_logs`.
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

  def _squash(self, mu, logvar):
    return mu, logvar

  def _coefficient(self):
    return tf.constant(1.0)

  def _as_distance(self, mu_r, logvar_r, mu_f, logvar_f, reduction):
    del mu_r, logvar_r, mu_f, logvar_f, reduction
    return tf.constant(0.0)

  def _encoder_as_term(self, as_e, exp_rec, exp_fake, c):
    """Encoder loss term that carries the AS-Distance's gradient (none in S-IntroVAE)."""
    del as_e, exp_rec, exp_fake, c
    return 0.0

  def _decoder_as_term(self, squashed, c):
    """Decoder loss term of the AS-Distance (none in S-IntroVAE)."""
    del squashed, c
    return 0.0

  def _as_logs(self, as_distance, c, kl_rec, kl_fake):
    del as_distance, c, kl_rec, kl_fake
    return {}

  def introspective_step(self, x):
    hp, s = self.hparams, self.scale
    z_p = self._normal(0)
    eps, eps_r, eps_f = self._normal(1), self._normal(2), self._normal(3)
    eps_r_d, eps_f_d = self._normal(4), self._normal(5)
    c = self._coefficient()

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
      (mu_r, logvar_r, y_r), (mu_f, logvar_f, y_f) = self._encode_sample_decode_pair(
        x_r_in, eps_r, x_f, eps_f
      )
      rr_rec = losses.reconstruction_error(x_r if hp.rec_target_grad else x_r_in, y_r)
      rr_fake = losses.reconstruction_error(x_f, y_f)
      kl_rec = losses.gaussian_kl(mu_r, logvar_r)
      kl_fake = losses.gaussian_kl(mu_f, logvar_f)

      sq = self._squash(mu_r, logvar_r) + self._squash(mu_f, logvar_f)
      as_e = self._as_distance(*sq, reduction=hp.as_reduction_encoder)
      as_const = tf.stop_gradient(as_e)
      energy = dict(scale=s, beta_rec=hp.beta_rec, beta_neg=hp.beta_neg)
      exp_rec = losses.exp_elbo(rr_rec, c * kl_rec + (1.0 - c) * as_const, **energy)
      exp_fake = losses.exp_elbo(rr_fake, c * kl_fake + (1.0 - c) * as_const, **energy)
      per_example_e = losses.soft_introvae_encoder_loss(
        rec_real, kl_real, exp_rec, exp_fake, scale=s, beta_rec=hp.beta_rec, beta_kl=hp.beta_kl
      )
      loss_e = self._mean(per_example_e) + self._encoder_as_term(as_e, exp_rec, exp_fake, c)
    self._minimize(
      tape, loss_e, self.encoder.trainable_variables, self.encoder_optimizer, "encoder"
    )

    # === Update D === (encoder frozen: gradients flow through it, only D is updated)
    with tf.GradientTape() as tape:
      x_f, x_r = self._passes(self.decoder, [z_p, tf.stop_gradient(z)])
      rec_real_d = losses.reconstruction_error(x, x_r)
      (mu_r, logvar_r, y_r), (mu_f, logvar_f, y_f) = self._encode_sample_decode_pair(
        x_r, eps_r_d, x_f, eps_f_d, stop_z=True
      )
      rr_rec_d = losses.reconstruction_error(tf.stop_gradient(x_r), y_r)
      rr_fake_d = losses.reconstruction_error(tf.stop_gradient(x_f), y_f)
      sq = self._squash(mu_r, logvar_r) + self._squash(mu_f, logvar_f)
      if hp.as_decoder_kl_squashed:
        mu_r, logvar_r, mu_f, logvar_f = sq
      kl_rec_d = losses.gaussian_kl(mu_r, logvar_r)
      kl_fake_d = losses.gaussian_kl(mu_f, logvar_f)
      per_example_d = losses.soft_introvae_decoder_loss(
        rec_real_d,
        c * kl_rec_d,
        c * kl_fake_d,
        rr_rec_d,
        rr_fake_d,
        scale=s,
        beta_rec=hp.beta_rec,
        beta_kl=hp.beta_kl,
        gamma_r=hp.gamma_r,
      )
      as_term_d = self._decoder_as_term(sq, c)
      loss_d = self._mean(per_example_d) + as_term_d
    self._minimize(
      tape, loss_d, self.decoder.trainable_variables, self.decoder_optimizer, "decoder"
    )

    kl_real_mean = tf.reduce_mean(kl_real)
    kl_fake_mean = tf.reduce_mean(kl_fake_d)
    logs = {
      "loss_encoder": tf.reduce_mean(per_example_e),
      "loss_decoder": tf.reduce_mean(per_example_d) + as_term_d,
      "rec": tf.reduce_mean(rec_real),
      "kl_real": kl_real_mean,
      "kl_rec": tf.reduce_mean(kl_rec_d),
      "kl_fake": kl_fake_mean,
      "diff_kl": kl_fake_mean - kl_real_mean,
      "exp_elbo_rec": tf.reduce_mean(exp_rec),
      "exp_elbo_fake": tf.reduce_mean(exp_fake),
    }
    logs.update(self._as_logs(as_const, c, kl_rec, kl_fake))
    return logs
