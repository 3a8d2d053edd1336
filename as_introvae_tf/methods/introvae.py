"""IntroVAE with the hinge margin (Huang et al., NeurIPS 2018, Algorithm 1)."""

from __future__ import annotations

import tensorflow as tf

from as_introvae_tf import losses
from as_introvae_tf import methods
from as_introvae_tf.methods import base


@methods.register("introvae")
class IntroVAE(base.IntrospectiveVAE):
  """IntroVAE with the hinge margin (Huang et al., NeurIPS 2018, Algorithm 1).

  Encoder: `beta_kl * kl_real + alpha * sum_s [m - kl_s]^+ + beta_rec * rec_real` with
  `kl_s` of `sg(x_r)` and `x_f = sg(D(z_p))`; decoder: `alpha * (kl_rec + kl_fake) +
  beta_rec * rec_real` through the frozen encoder. Ported from the IntroVAE paper (not the
  re-weighted `I_VAE.py` of the AS-IntroVAE reference).
  """

  metric_names = (
    "loss_encoder",
    "loss_decoder",
    "rec",
    "kl_real",
    "kl_rec",
    "kl_fake",
    "diff_kl",
  ) + base.GRAD_NORMS
  """`kl_*` in nats (`kl_rec`, `kl_fake` of the decoder phase); `diff_kl = kl_fake - kl_real`
  (the reference's diagnostic: negative means the encoder no longer tells fakes from real
  data)."""
  divergence_hint = (
    "IntroVAE is sensitive to --margin and --introvae_alpha: lower --lr or change --margin."
  )
  tensorboard_hparams = ("margin", "introvae_alpha")
  bar_metrics = ("loss", "loss_encoder", "loss_decoder", "rec", "kl_real", "diff_kl")

  def introspective_step(self, x):
    hp = self.hparams
    z_p = self.normal_noise(0)
    eps = self.normal_noise(1)

    # === Update E ===
    with tf.GradientTape() as tape:
      x_f = tf.stop_gradient(self.decoder(z_p, training=True))  # apart: see SoftIntroVAE
      mu, logvar = self.encoder(x, training=True)
      z = losses.reparameterize(mu, logvar, eps)
      x_r = self.decoder(z, training=True)
      rec_real = losses.reconstruction_error(x, x_r)
      kl_real = losses.gaussian_kl(mu, logvar)
      post_rec, post_fake = self.passes(self.encoder, [tf.stop_gradient(x_r), x_f])
      kl_rec = losses.gaussian_kl(*post_rec)
      kl_fake = losses.gaussian_kl(*post_fake)
      per_example_e = losses.introvae_encoder_loss(
        rec_real,
        kl_real,
        kl_rec,
        kl_fake,
        margin=hp.margin,
        alpha=hp.introvae_alpha,
        beta_rec=hp.beta_rec,
        beta_kl=hp.beta_kl,
      )
      loss_e = self.loss_mean(per_example_e)
    self.minimize(tape, loss_e, self.encoder.trainable_variables, self.encoder_optimizer, "encoder")

    # === Update D ===
    with tf.GradientTape() as tape:
      x_f, x_r = self.passes(self.decoder, [z_p, tf.stop_gradient(z)])
      rec_real_d = losses.reconstruction_error(x, x_r)
      post_rec, post_fake = self.passes(self.encoder, [x_r, x_f])
      kl_rec_d = losses.gaussian_kl(*post_rec)
      kl_fake_d = losses.gaussian_kl(*post_fake)
      per_example_d = losses.introvae_decoder_loss(
        rec_real_d, kl_rec_d, kl_fake_d, alpha=hp.introvae_alpha, beta_rec=hp.beta_rec
      )
      loss_d = self.loss_mean(per_example_d)
    self.minimize(tape, loss_d, self.decoder.trainable_variables, self.decoder_optimizer, "decoder")

    kl_real_mean, kl_fake_mean = tf.reduce_mean(kl_real), tf.reduce_mean(kl_fake_d)
    return {
      "loss_encoder": tf.reduce_mean(per_example_e),
      "loss_decoder": tf.reduce_mean(per_example_d),
      "rec": tf.reduce_mean(rec_real),
      "kl_real": kl_real_mean,
      "kl_rec": tf.reduce_mean(kl_rec_d),
      "kl_fake": kl_fake_mean,
      "diff_kl": kl_fake_mean - kl_real_mean,
    }
