"""AS-IntroVAE (Lu et al., ACML 2022, https://proceedings.mlr.press/v189/changjie23a.html; eq. 5-9;
reference code `LOUEY233/AS-IntroVAE`, `A_VAE.py`)."""

from __future__ import annotations

import tensorflow as tf

from as_introvae_tf import distribute
from as_introvae_tf import losses
from as_introvae_tf.hparams import AS_XLA_MODES
from as_introvae_tf import methods
from as_introvae_tf.methods import soft_introvae


@methods.register("as_introvae")
class ASIntroVAE(soft_introvae.SoftIntroVAE):
  """AS-IntroVAE (Lu et al., ACML 2022; AS-IntroVAE eq. 5-9, reference `A_VAE.py`).

  In both phases the KL of the rec/fake posteriors inside the adversarial terms becomes
  `c * KL + (1 - c) * AS`, with `c` annealed from 0 to 1 over the first fifth of the run
  (`LossHParams.anneal`) and AS the AS-Distance over the global batch
  (`LossHParams.as_kernel`, `as_squash`, `as_reduction_*`).
  """

  metric_names = soft_introvae.SoftIntroVAE.metric_names + (
    "as_distance",
    "c",
    "as_share_rec",
    "as_share_fake",
    "as_factor",
  )
  """As S-IntroVAE's, plus `as_distance` = the encoder-phase AS-Distance (times `--as_scale`),
  `c` = the annealed KL weight, and whether the AS-Distance acts on the encoder:
  `as_share_rec`/`as_share_fake` = its share `(1 - c) AS / (c mean(KL) + (1 - c) AS)` of the
  divergence in the expELBO exponents of the reconstructions / fakes (in [0, 1]; 0 where both
  parts are 0), and `as_factor` = `exp(-2 s beta_neg (1 - c) AS)`, the factor it puts on both
  expELBOs of the encoder loss (in (0, 1]; near 0 switches the adversarial terms off)."""
  divergence_hint = (
    "AS-IntroVAE: raise --beta_neg (as for S-IntroVAE, the authors advise "
    "values near z_dim or larger), lower --lr, or use the reference AS "
    "options (--as_kernel=per_dim --as_squash=tanh)."
  )
  tensorboard_hparams = ("as_kernel", "as_squash", "anneal")
  bar_metrics = ("loss", "loss_encoder", "loss_decoder", "rec", "kl_real", "as_distance")

  def __init__(self, *args, as_distance_xla="auto", **kwargs):
    """`as_distance_xla`: one of `hparams.AS_XLA_MODES`, whether the AS-Distance's pair terms
    run as one XLA-compiled function inside the (uncompiled) step (`losses.as_distance`'s
    `xla`): "on", "off", or "auto" = on, except with op determinism on a machine with a GPU
    (XLA's GPU reductions are not promised deterministic there).

    Raises:
      ValueError: an unknown `as_distance_xla`.
    """
    super().__init__(*args, **kwargs)
    if as_distance_xla not in AS_XLA_MODES:
      raise ValueError(f"as_distance_xla must be one of {AS_XLA_MODES}; got {as_distance_xla!r}")
    self.as_distance_xla = as_distance_xla

  @classmethod
  def extra_model_kwargs(cls, config, spec):
    return {
      **super().extra_model_kwargs(config, spec),
      "as_distance_xla": config.as_distance_xla,
    }

  @property
  def xla_as_distance(self):
    """Whether `_as_distance` uses the XLA-compiled pair terms (see `__init__`)."""
    if self.as_distance_xla == "auto":
      from tensorflow.python.framework import config as tf_config  # pylint: disable=import-outside-toplevel

      return not (tf_config.is_op_determinism_enabled() and tf.config.list_logical_devices("GPU"))
    return self.as_distance_xla == "on"

  def _squash(self, mu, logvar):
    """`--as_squash`: the reference code's tanh on the posteriors before the AS-Distance."""
    if self.hparams.as_squash == "tanh":
      return tf.tanh(mu), tf.tanh(logvar)
    return mu, logvar

  def _coefficient(self):
    """`c(i)` of eq. 9 (`LossHParams.anneal`, `anneal_origin`, `anneal_steps`)."""
    horizon = self.hparams.anneal_steps or self.total_steps  # T (--anneal_steps, 0 = the run)
    if self.hparams.anneal_origin == "start":
      i, total = tf.cast(self.step, tf.int64), max(horizon, 1)
    else:
      i = tf.maximum(tf.cast(self.step, tf.int64) - self.num_vae, 0)
      total = max(horizon - self.num_vae, 1)
    return losses.annealing_coefficient(i, total, self.hparams.anneal)

  def _as_distance(self, mu_r, logvar_r, mu_f, logvar_f, reduction):
    """`--as_scale` times the AS-Distance over the global batch (`losses.as_distance`)."""

    def g(t):
      return distribute.gather_live(t, self.global_batch_size)

    return self.hparams.as_scale * losses.as_distance(
      g(mu_r),
      g(logvar_r),
      g(mu_f),
      g(logvar_f),
      kernel=self.hparams.as_kernel,
      reduction=reduction,
      xla=self.xla_as_distance,
    )

  def _as_logs(self, as_distance, c, kl_rec, kl_fake):
    """The AS metrics (see `metric_names`) from the encoder phase's scaled AS-Distance, `c`
    and the per-example KLs `[B]` of the reconstructions' and fakes' posteriors."""
    weighted = (1.0 - c) * as_distance
    return {
      "as_distance": as_distance,
      "c": c,
      "as_share_rec": tf.math.divide_no_nan(weighted, c * tf.reduce_mean(kl_rec) + weighted),
      "as_share_fake": tf.math.divide_no_nan(weighted, c * tf.reduce_mean(kl_fake) + weighted),
      "as_factor": tf.exp(-2.0 * self.scale * self.hparams.beta_neg * weighted),
    }


class ASDivergence(soft_introvae.KLDivergence):
  """AS-IntroVAE's adversarial divergence, eq. 9, in both phases: where S-IntroVAE has the KL
  of a reconstruction's or fake's posterior, `c * KL + (1 - c) * AS`, with `c` annealed from 0
  to 1 (`ASIntroVAE._coefficient`) and AS the AS-Distance between the posteriors of the
  reconstructions and the fakes over the global batch (`ASIntroVAE._as_distance`, after the
  optional squash; times `--as_scale`).

  * Encoder phase (eq. 6, `A_VAE.py`'s encoder loss): the exponents take
    `c * KL + (1 - c) * sg(AS)`; the AS-Distance's gradient enters through
    `losses.as_encoder_surrogate` (`encoder_loss_term`), exact over the global batch.
  * Decoder phase (eq. 9 with `A_VAE.py`'s weights): the decoder loss's KLs become `c * KL`
    (of the squashed posteriors with `--as_decoder_kl_squashed`), and
    `s * 0.5 * beta_kl * (1 - c) * AS` is added once (`losses.as_decoder_term`).
  """

  def encoder_phase(self, model, posterior_rec, posterior_fake, kl_rec, kl_fake):
    c = model._coefficient()
    squashed = model._squash(*posterior_rec) + model._squash(*posterior_fake)
    as_e = model._as_distance(*squashed, reduction=model.hparams.as_reduction_encoder)
    as_const = tf.stop_gradient(as_e)
    return soft_introvae.EncoderDivergence(
      rec=c * kl_rec + (1.0 - c) * as_const,
      fake=c * kl_fake + (1.0 - c) * as_const,
      state=(as_e, c),
    )

  def encoder_loss_term(self, model, div, exp_rec, exp_fake):
    """`sg(d loss_E / dAS) * AS`: the AS-Distance enters every example's expELBO exponent, so
    its gradient is the global-batch mean slope of `0.25 * (exp_rec + exp_fake)` times the
    AS-Distance, whose own slice is live on this replica (exact once replicas are summed)."""
    as_e, c = div.state
    return losses.as_encoder_surrogate(
      as_e,
      model.global_batch_mean(exp_rec + exp_fake),
      c=c,
      scale=model.scale,
      beta_neg=model.hparams.beta_neg,
    )

  def decoder_phase(self, model, posterior_rec, posterior_fake, encoder_div):
    hp, (_, c) = model.hparams, encoder_div.state  # c(i) of this step, as the encoder's
    squashed = model._squash(*posterior_rec) + model._squash(*posterior_fake)
    kl_inputs = squashed if hp.as_decoder_kl_squashed else posterior_rec + posterior_fake
    kl_rec, kl_fake = losses.gaussian_kl(*kl_inputs[:2]), losses.gaussian_kl(*kl_inputs[2:])
    as_d = model._as_distance(*squashed, reduction=hp.as_reduction_decoder)
    return soft_introvae.DecoderDivergence(
      rec=c * kl_rec,
      fake=c * kl_fake,
      loss_term=losses.as_decoder_term(as_d, c=c, scale=model.scale, beta_kl=hp.beta_kl),
      kl_rec=kl_rec,
      kl_fake=kl_fake,
    )

  def logs(self, model, div, kl_rec, kl_fake):
    as_e, c = div.state
    return model._as_logs(tf.stop_gradient(as_e), c, kl_rec, kl_fake)


ASIntroVAE.divergence_class = ASDivergence
