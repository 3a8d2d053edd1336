"""AVAE: an adversarial VAE with an auto-encoder discriminator (Khan, Hayat & Barnes 2018,
"Adversarial Training of Variational Auto-encoders for High Fidelity Image Generation",
https://arxiv.org/abs/1804.10323, eq. 2-15, Algorithm 1).

Generator = the project's VAE (encoder E, decoder D); discriminator = a plain auto-encoder
(E', D') built by the same network builders. L1 losses normalized by the number of elements;
BEGAN-style equilibrium with a PID update of `k_t` (`losses/adversarial.py`). It shares the
machinery of `base.IntrospectiveVAE`: stateless noise drawn for the global batch and sliced per
replica, global-batch averaging, gradient norms, metric trackers, the NaN/inf record, the
decoder EMA used for sampling and `prepare_for_inference` (`inference.ForInference`).
"""

from __future__ import annotations

import tensorflow as tf

from as_introvae_tf import hparams
from as_introvae_tf import losses
from as_introvae_tf import methods
from as_introvae_tf import run as run_lib
from as_introvae_tf.methods import base


@methods.register("avae")
class AVAE(base.IntrospectiveVAE):
  """Adversarial VAE with an auto-encoder discriminator (Khan et al. 2018, Algorithm 1).

  One `train_step` = one iteration of Algorithm 1 (`# ===` blocks below): a single forward pass
  at the step's starting weights, then three updates, each from its own loss:
    E      <- L_enc = L_n + beta L_s + gamma L_e                       (eq. 15, line 8)
    D      <- L_gen = L_g + alpha L_v + beta L_s + gamma L_e           (eq. 14, line 11)
    k_t    <- PID(e_t), e_t = eta L_d - (L_g + alpha L_v) (batch means) (eq. 11-12, line 12)
    E', D' <- L_dis = L_d - k_{t-1} (L_g + alpha L_v)                  (eq. 13, line 13)
  with `x_v = D(z_v)`, `z_v = mu + sigma * eps` (eq. 4), `x_g = D(z_g)`, `z_g ~ N(0, I)`, and the
  discriminator's codes `z_d = E'(x)`, `z'_v = E'(x_v)`, `z'_g = E'(x_g)` decoded by D'.
  `L_g = |x_g - D'(E'(x_g))|`: eq. 7 prints `x - x'_g` but normalizes by `|x_g|` and the text
  (Sec. 3.2) and BEGAN reconstruct the fake itself.

  Discriminator networks: E' is the encoder builder's network and its code is the `mu` half of
  its output (`z_dim` wide; the `logvar` columns of the last Dense get zero gradient and stay
  at their initial values); D' is the decoder builder's network. Both use the generator's
  architecture, as the paper keeps the two auto-encoders' backbones identical (Sec. 4).

  PID state (`k_t`, `e_{t-1}`, `e_{t-2}`; `k_0 = e_0 = e_{-1} = 0`) lives in variables that are
  checkpointed (`extra_checkpoint_items`). They are updated from global-batch means, so every
  replica computes the same values (aggregation ONLY_FIRST_REPLICA).

  Args:
    encoder: the generator VAE's encoder (see `base.IntrospectiveVAE`).
    decoder: the generator VAE's decoder.
    discriminator_encoder: `keras.Model` `x -> [code, unused]`, each float32 `[B, z_dim]`.
    discriminator_decoder: `keras.Model` `code [B, z_dim] -> x [B, *example_shape]`.
    avae_hparams: `AVAEHParams`.
    **kwargs: as `base.IntrospectiveVAE`.
  """

  metric_names = (
    "loss_encoder",
    "loss_decoder",
    "loss_discriminator",
    "l_e",
    "l_n",
    "l_s",
    "l_d",
    "l_g",
    "l_v",
    "k_t",
    "e_t",
    "convergence",
    "grad_norm_encoder",
    "grad_norm_decoder",
    "grad_norm_discriminator",
  )
  """`loss_encoder` = L_enc (eq. 15), `loss_decoder` = L_gen (eq. 14), `loss_discriminator` =
  L_dis (eq. 13, with k_{t-1}); the terms `l_e`, `l_n` (nats), `l_s`, `l_d`, `l_g`, `l_v` (eq. 2,
  3, 7, 9; batch means); `k_t` after this step's PID update; `e_t` (eq. 11); `convergence` =
  `L_d + |eta L_d - L_g - alpha L_v|`; the gradient norms of E, D and (E', D')."""
  hparams_class = hparams.AVAEHParams
  divergence_hint = (
    "AVAE: lower --lr or the PID gains (--pid_ki, --pid_kp, --pid_kd), or keep --avae_clip_k."
  )
  tensorboard_hparams = ("avae_alpha", "avae_beta", "avae_gamma", "avae_eta")
  bar_metrics = ("loss_encoder", "loss_decoder", "loss_discriminator", "k_t")

  def __init__(
    self,
    encoder,
    decoder,
    *,
    discriminator_encoder,
    discriminator_decoder,
    avae_hparams=None,
    **kwargs,
  ):
    super().__init__(encoder, decoder, **kwargs)
    self.discriminator_encoder = discriminator_encoder
    self.discriminator_decoder = discriminator_decoder
    self.avae_hparams = avae_hparams or hparams.AVAEHParams()

    def state(name):
      return tf.Variable(
        0.0,
        dtype=tf.float32,
        trainable=False,
        name=name,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
      )

    self.k_t = state("k_t")
    self.e_prev = state("e_prev")
    self.e_prev2 = state("e_prev2")

  # --- Hooks for run.py --------------------------------------------------------------------

  @classmethod
  def extra_model_kwargs(cls, config, spec):
    """The discriminator auto-encoder (E', D': the run's architecture and precision) and
    `AVAEHParams` from the config (call in the scope)."""
    return dict(
      discriminator_encoder=run_lib.build_encoder(config, spec, "discriminator_encoder"),
      discriminator_decoder=run_lib.build_decoder(config, spec, "discriminator_decoder"),
      avae_hparams=cls.hparams_class.from_config(config),
    )

  @classmethod
  def extra_optimizers(cls, config, learning_rate):
    """The discriminator's Adam (same variant, learning rate, betas and epsilon as E and D)."""
    return dict(discriminator_optimizer=run_lib.adam(config, learning_rate))

  def extra_checkpoint_items(self):
    return dict(
      discriminator_encoder=self.discriminator_encoder,
      discriminator_decoder=self.discriminator_decoder,
      discriminator_optimizer=self.discriminator_optimizer,
      avae_k_t=self.k_t,
      avae_e_prev=self.e_prev,
      avae_e_prev2=self.e_prev2,
    )

  def compile(self, encoder_optimizer, decoder_optimizer, discriminator_optimizer=None, **kwargs):
    """Compiles with three optimizers: E, D, and the discriminator (E', D') together."""
    if discriminator_optimizer is None:
      raise ValueError("AVAE needs a discriminator_optimizer")
    super().compile(encoder_optimizer, decoder_optimizer, **kwargs)
    self.discriminator_optimizer = discriminator_optimizer
    self.discriminator_optimizer.build(self._discriminator_variables())

  def _discriminator_variables(self):
    return (
      self.discriminator_encoder.trainable_variables
      + self.discriminator_decoder.trainable_variables
    )

  def _code(self, x):
    """The discriminator's code `E'(x)`, float32 `[B, z_dim]`."""
    code, _ = self.discriminator_encoder(x, training=True)
    return code

  # --- The step -----------------------------------------------------------------------------

  def introspective_step(self, x):
    hp = self.avae_hparams
    z_g = self.normal_noise(0)
    eps = self.normal_noise(1)
    k_prev = tf.identity(self.k_t)  # k_{t-1} (eq. 13)
    e_vars = self.encoder.trainable_variables
    d_vars = self.decoder.trainable_variables
    a_vars = self._discriminator_variables()

    with tf.GradientTape(persistent=True) as tape:
      # === VAE (Algorithm 1, lines 3-7) ===
      mu, logvar = self.encoder(x, training=True)
      x_v = self.decoder(losses.reparameterize(mu, logvar, eps), training=True)
      x_g = self.decoder(z_g, training=True)
      z_d, z_v, z_gen = self._code(x), self._code(x_v), self._code(x_g)
      l_e = losses.l1_error(x, x_v)  # eq. 2
      l_n = losses.gaussian_kl(mu, logvar)  # eq. 3
      l_s = losses.l1_error(z_d, z_v)  # eq. 9
      # === Discriminator reconstructions (lines 9-10) ===
      l_d = losses.l1_error(x, self.discriminator_decoder(z_d, training=True))  # eq. 7
      l_g = losses.l1_error(x_g, self.discriminator_decoder(z_gen, training=True))
      l_v = losses.l1_error(x_v, self.discriminator_decoder(z_v, training=True))
      per_example_e = losses.avae_encoder_loss(l_n, l_s, l_e, beta=hp.beta, gamma=hp.gamma)
      per_example_d = losses.avae_generator_loss(
        l_g, l_v, l_s, l_e, alpha=hp.alpha, beta=hp.beta, gamma=hp.gamma
      )
      per_example_a = losses.avae_discriminator_loss(l_d, l_g, l_v, k=k_prev, alpha=hp.alpha)
      loss_e = self.loss_mean(per_example_e)
      loss_d = self.loss_mean(per_example_d)
      loss_a = self.loss_mean(per_example_a)
    grads_e = self.gradients(tape, loss_e, e_vars, self.encoder_optimizer)
    grads_d = self.gradients(tape, loss_d, d_vars, self.decoder_optimizer)
    grads_a = self.gradients(tape, loss_a, a_vars, self.discriminator_optimizer)
    del tape
    # skip_batch: the three updates and the PID state come from one pass: all or none.
    self.require_finite(
      (loss_e, grads_e, self.encoder_optimizer),
      (loss_d, grads_d, self.decoder_optimizer),
      (loss_a, grads_a, self.discriminator_optimizer),
    )

    # === Update E (line 8) ===
    self.apply_update(self.encoder_optimizer, grads_e, e_vars, "encoder", loss_e)
    # === Update D (line 11) ===
    self.apply_update(self.decoder_optimizer, grads_d, d_vars, "decoder", loss_d)
    # === PID update of k_t (line 12; eq. 11-12), from global-batch means ===
    m_d, m_g, m_v = (self.global_batch_mean(t) for t in (l_d, l_g, l_v))
    e_t = losses.avae_balance_error(m_d, m_g, m_v, eta=hp.eta, alpha=hp.alpha)
    e_prev, e_prev2 = tf.identity(self.e_prev), tf.identity(self.e_prev2)
    k_t = losses.pid_update(
      k_prev, e_t, e_prev, e_prev2, ki=hp.pid_ki, kp=hp.pid_kp, kd=hp.pid_kd, clip=hp.clip_k
    )
    ok = self.batch_ok  # always True with nan_policy="stop"
    self.k_t.assign(tf.where(ok, k_t, k_prev))
    self.e_prev2.assign(tf.where(ok, e_prev, e_prev2))
    self.e_prev.assign(tf.where(ok, e_t, e_prev))
    # === Update E', D' (line 13) ===
    self.apply_update(self.discriminator_optimizer, grads_a, a_vars, "discriminator", loss_a)

    return {
      "loss_encoder": tf.reduce_mean(per_example_e),
      "loss_decoder": tf.reduce_mean(per_example_d),
      "loss_discriminator": tf.reduce_mean(per_example_a),
      "l_e": tf.reduce_mean(l_e),
      "l_n": tf.reduce_mean(l_n),
      "l_s": tf.reduce_mean(l_s),
      "l_d": tf.reduce_mean(l_d),
      "l_g": tf.reduce_mean(l_g),
      "l_v": tf.reduce_mean(l_v),
      "k_t": k_t,
      "e_t": e_t,
      "convergence": losses.avae_convergence(m_d, m_g, m_v, eta=hp.eta, alpha=hp.alpha),
    }
