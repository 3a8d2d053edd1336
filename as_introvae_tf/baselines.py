"""The papers' other baselines: an adversarial VAE with an auto-encoder discriminator, and WGAN-GP.

* `AVAE` (`--method=avae`): Khan, Hayat & Barnes 2018, "Adversarial Training of Variational
  Auto-encoders for High Fidelity Image Generation" (`../shared/papers/avae-khan2018.md`, eq. 2-15,
  Algorithm 1). Generator = the project's VAE (encoder E, decoder D); discriminator = a plain
  auto-encoder (E', D') built by the same network builders. L1 losses normalized by the
  number of elements; BEGAN-style equilibrium with a PID update of `k_t`.
* `WGANGP` (`--method=wgan_gp`): Gulrajani et al. 2017, "Improved Training of Wasserstein GANs"
  (Algorithm 1; authors' code `igul222/improved_wgan_training`, `gan_mnist.py`, `gan_cifar.py`,
  `gan_toy.py`), the comparison row of as-introvae.md Table 2. Generator = the project's
  decoder; critic = the project's encoder body with a `Dense(1)` head.

Both are `models.IntrospectiveVAE` subclasses and share its machinery: stateless noise drawn for
the global batch and sliced per replica (`_normal`), global-batch averaging (`_mean`), gradient
norms (`_apply`), metric trackers, the NaN/inf record, the decoder EMA used for sampling, and
`prepare_for_inference`. One `train_step` on 1 or N replicas gives the same weights.

Loss terms are pure functions (top of this file), each with its formula and source equation;
they return one value per example, float32 `[B]`, except the PID update and the balance terms,
which act on batch means (scalars).

Integration hooks read by `train_lib` (each model class may define them):
  `extra_model_kwargs(config, spec)`   networks beyond (encoder, decoder) and hyper-parameters,
                                        built inside the strategy scope;
  `extra_optimizers(config, learning_rate)`  optimizers beyond the encoder's and decoder's,
                                        passed to `compile`;
  `extra_checkpoint_items()`           what else the checkpoint must hold (AVAE: the
                                        discriminator, its optimizer and the PID state);
  `has_inference_encoder`              False for WGAN-GP: its encoder is a critic, so encoder
                                        metrics (reconstructions, gnELBO, latents) do not apply.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from as_introvae_tf import losses
from as_introvae_tf import models
from as_introvae_tf import networks
from as_introvae_tf import optimizers
from as_introvae_tf import precision

# =============================================================================================
# Pure loss functions
# =============================================================================================


def l1_error(x, y):
  """Mean absolute error per example: `(1 / |x|) * ||x - y||_1`.

  The normalized L1 distance of avae-khan2018.md eq. 2 (`L_e`), eq. 7 (`L_d`, `L_g`, `L_v`)
  and eq. 9 (`L_s`), where `|x|` is the number of elements of one example.

  Args:
    x: float32 `[B, ...]` (images in [0, 1], 2-D points, or latent codes).
    y: float32, same shape as `x`.

  Returns:
    float32 `[B]`: the mean over every non-batch element of `|x - y|`, in the units of `x`
    (pixel intensity, coordinate or code units).
  """
  diff = tf.reshape(x - y, [tf.shape(x)[0], -1])
  return tf.reduce_mean(tf.abs(diff), axis=1)


def avae_encoder_loss(l_n, l_s, l_e, *, beta, gamma):
  """Encoder loss per example: `L_enc = L_n + beta * L_s + gamma * L_e` (avae-khan2018.md eq. 15).

  Args:
    l_n: float32 `[B]`, KL(q(z|x) || N(0, I)) in nats (`L_n`, eq. 3).
    l_s: float32 `[B]`, latent perceptual term `|E'(x) - E'(x_v)|` (eq. 9).
    l_e: float32 `[B]`, VAE reconstruction `|x - x_v|` (eq. 2).
    beta, gamma: weights (paper: 0.1, 0.1).

  Returns:
    float32 `[B]`.
  """
  return l_n + beta * l_s + gamma * l_e


def avae_generator_loss(l_g, l_v, l_s, l_e, *, alpha, beta, gamma):
  """Generator (decoder) loss per example:
  `L_gen = L_g + alpha * L_v + beta * L_s + gamma * L_e` (avae-khan2018.md eq. 14).

  Args:
    l_g: float32 `[B]`, the discriminator's reconstruction error of fakes `|x_g - D'(E'(x_g))|`.
    l_v: float32 `[B]`, its reconstruction error of VAE reconstructions `|x_v - D'(E'(x_v))|`.
    l_s, l_e: as in `avae_encoder_loss`.
    alpha, beta, gamma: weights (paper: 0.3, 0.1, 0.1).

  Returns:
    float32 `[B]`.
  """
  return l_g + alpha * l_v + beta * l_s + gamma * l_e


def avae_discriminator_loss(l_d, l_g, l_v, *, k, alpha):
  """Discriminator loss per example: `L_dis = L_d - k_{t-1} * (L_g + alpha * L_v)`
  (avae-khan2018.md eq. 13).

  Args:
    l_d: float32 `[B]`, the discriminator's reconstruction error of real data `|x - D'(E'(x))|`.
    l_g, l_v: as in `avae_generator_loss`.
    k: float32 scalar, the equilibrium weight of the PREVIOUS step, `k_{t-1}`.
    alpha: weight of `L_v` (paper: 0.3).

  Returns:
    float32 `[B]`.
  """
  return l_d - k * (l_g + alpha * l_v)


def avae_balance_error(l_d, l_g, l_v, *, eta, alpha):
  """Equilibrium error `e_t = eta * L_d - (L_g + alpha * L_v)` (avae-khan2018.md eq. 11).

  Eq. 11 is printed `eta L_d - L_g + alpha L_v`; the bracket is restored from eq. 10 (the target
  ratio `eta = (E[L_g] + alpha E[L_v]) / E[L_d]`, at which `e_t = 0`) and from the paper's
  convergence measure `L_d + |eta L_d - L_g - alpha L_v|`. With BEGAN's sign convention, `e_t > 0`
  (fakes reconstructed too well) raises `k_t`.

  Args:
    l_d, l_g, l_v: float32 scalars (global-batch means) or `[B]` tensors.
    eta: the diversity ratio (paper: 0.5).
    alpha: weight of `L_v` (paper: 0.3).

  Returns:
    float32, the shape of the inputs.
  """
  return eta * l_d - (l_g + alpha * l_v)


def avae_convergence(l_d, l_g, l_v, *, eta, alpha):
  """Convergence measure `L_d + |eta * L_d - L_g - alpha * L_v|` (avae-khan2018.md Sec. 3.4;
  BEGAN's `M_global`). Lower is better.

  Args:
    l_d, l_g, l_v, eta, alpha: as in `avae_balance_error`.

  Returns:
    float32, the shape of the inputs.
  """
  return l_d + tf.abs(avae_balance_error(l_d, l_g, l_v, eta=eta, alpha=alpha))


def pid_update(k_prev, e_t, e_prev, e_prev2, *, ki, kp, kd, clip=True):
  """The PID update of the equilibrium weight (avae-khan2018.md eq. 12), velocity form:

    k_t = k_{t-1} + ki * e_t + kp * (e_t - e_{t-1}) + kd * (e_t - 2 e_{t-1} + e_{t-2})

  The paper names lambda_1, lambda_2, lambda_3 the integral, proportional and differential
  gains and sets them to 1e-3, 1e-5, 1e-5 (Sec. 4); here `ki` = lambda_1, `kp` = lambda_2,
  `kd` = lambda_3. `k_t` itself is the accumulated (integral) state.

  Args:
    k_prev: float32 scalar, `k_{t-1}`.
    e_t, e_prev, e_prev2: float32 scalars, the errors of steps t, t-1, t-2 (`avae_balance_error`).
    ki, kp, kd: gains (paper: 1e-3, 1e-5, 1e-5).
    clip: clip `k_t` to [0, 1] as BEGAN does (the AVAE paper extends BEGAN's equilibrium and
      does not say; `--avae_clip_k`).

  Returns:
    float32 scalar `k_t`.
  """
  k_t = (k_prev + ki * e_t + kp * (e_t - e_prev)
         + kd * (e_t - 2.0 * e_prev + e_prev2))
  return tf.clip_by_value(k_t, 0.0, 1.0) if clip else k_t


def interpolate(x_real, x_fake, eps):
  """Random points on the lines between real and fake examples:
  `x_hat = eps * x_real + (1 - eps) * x_fake` (Gulrajani et al. 2017, Algorithm 1 line 6).

  Args:
    x_real, x_fake: float32 `[B, ...]`, the same shape.
    eps: float32 `[B]`, one U[0, 1] draw per example.

  Returns:
    float32 `[B, ...]`.
  """
  eps = tf.reshape(eps, [-1] + [1] * (len(x_real.shape) - 1))
  return eps * x_real + (1.0 - eps) * x_fake


def critic_input_gradient_norm(critic, x_hat):
  """Per-example L2 norm of the critic's input gradient, `||grad_x f(x_hat_i)||_2`.

  Computed as the gradient of `sum_i f(x_hat_i)`, which equals the per-example gradients only if
  each score depends on its own example alone (no batch statistics in the critic: `WGANGP` runs
  its critic in inference mode). Differentiable (second order) when called under an outer tape.
  `sqrt(sum g^2 + 1e-12)`: the 1e-12 keeps the gradient of the norm finite at g = 0 (the
  reference takes a plain sqrt); it moves the value by at most 1e-6.

  Args:
    critic: callable float32 `[B, ...]` -> float32 `[B]` scores (no variables of its own here).
    x_hat: float32 `[B, ...]`.

  Returns:
    float32 `[B]`, in score units per input unit.
  """
  with tf.GradientTape() as tape:
    tape.watch(x_hat)
    scores = critic(x_hat)
  grads = tape.gradient(scores, x_hat)
  flat = tf.reshape(grads, [tf.shape(grads)[0], -1])
  return tf.sqrt(tf.reduce_sum(tf.square(flat), axis=1) + 1e-12)


def gradient_penalty(grad_norm):
  """Two-sided gradient penalty per example: `(||grad_x f(x_hat)||_2 - 1)^2`
  (Gulrajani et al. 2017, eq. 3 / Algorithm 1 line 7, before the weight lambda).

  Args:
    grad_norm: float32 `[B]` (`critic_input_gradient_norm`).

  Returns:
    float32 `[B]`.
  """
  return tf.square(grad_norm - 1.0)


def wasserstein_critic_loss(score_real, score_fake):
  """Critic loss per example without the penalty: `f(x_fake) - f(x_real)`
  (Gulrajani et al. 2017, Algorithm 1 line 7; `disc_cost` in the authors' code).

  Args:
    score_real, score_fake: float32 `[B]` critic scores.

  Returns:
    float32 `[B]`; its negative batch mean estimates the Wasserstein-1 distance.
  """
  return score_fake - score_real


def wasserstein_generator_loss(score_fake):
  """Generator loss per example: `-f(G(z))` (Gulrajani et al. 2017, Algorithm 1 line 11).

  Args:
    score_fake: float32 `[B]` critic scores of generated examples.

  Returns:
    float32 `[B]`.
  """
  return -score_fake


# =============================================================================================
# Metric names (registered with the base class) and the NaN/inf check
# =============================================================================================

METRIC_NAMES = {
    "avae": ("loss_encoder", "loss_decoder", "loss_discriminator", "l_e", "l_n", "l_s", "l_d",
             "l_g", "l_v", "k_t", "e_t", "convergence", "grad_norm_encoder",
             "grad_norm_decoder", "grad_norm_discriminator"),
    "wgan_gp": ("loss_critic", "loss_generator", "wasserstein", "gradient_penalty",
                "score_real", "score_fake", "grad_norm_critic", "grad_norm_generator"),
}
"""Metrics each baseline reports (TensorBoard `train/<name>`).

AVAE: `loss_encoder` = L_enc (eq. 15), `loss_decoder` = L_gen (eq. 14), `loss_discriminator` =
L_dis (eq. 13, with k_{t-1}); the terms `l_e`, `l_n` (nats), `l_s`, `l_d`, `l_g`, `l_v` (eq. 2,
3, 7, 9; batch means); `k_t` after this step's PID update; `e_t` (eq. 11); `convergence` =
`L_d + |eta L_d - L_g - alpha L_v|`; the gradient norms of E, D and (E', D').
WGAN-GP (means over the n_critic critic iterations of a step): `loss_critic` (with the
penalty), `wasserstein` = mean f(x) - mean f(G(z)) (the critic's Wasserstein estimate),
`gradient_penalty` = mean (||grad|| - 1)^2 (before lambda), `score_real`, `score_fake`;
`loss_generator` = -mean f(G(z)); gradient norms of the last critic update and of G."""

# The base class builds its trackers from `models.METRIC_NAMES[method]`: register ours there.
models.METRIC_NAMES.update(METRIC_NAMES)
CHECKED_TERMS = models.CHECKED_TERMS + tuple(sorted(
    set().union(*METRIC_NAMES.values()) - set(models.CHECKED_TERMS)))
"""Terms checked for NaN/inf (bit i of `non_finite_terms` = CHECKED_TERMS[i]); the base
class's terms keep their bits (the AVAE's `--num_vae` warm-up reports the VAE's terms)."""


class _Baseline(models.IntrospectiveVAE):
  """Shared pieces of the baselines: the NaN/inf record over `CHECKED_TERMS`, noise helpers."""

  has_inference_encoder = True
  checked_terms = CHECKED_TERMS

  @staticmethod
  def _replica_slice(full):
    """This replica's contiguous slice of a global-batch tensor `[B_global, ...]`."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
      return full
    local = tf.shape(full)[0] // ctx.num_replicas_in_sync
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
    return full[start:start + local]

  def _uniform(self, index):
    """U[0, 1) noise `[local_batch]`, drawn for the global batch from (seed, step, index) like
    `_normal` (use indices that `_normal` does not use in the same step)."""
    seed = tf.stack([tf.constant(self.seed, tf.int64),
                     tf.cast(self.step, tf.int64) * 16 + index])
    return self._replica_slice(tf.random.stateless_uniform([self.global_batch_size], seed=seed))

  def _global_batch_mean(self, per_example):
    """The global-batch mean of a `[B_local]` term, the same value on every replica."""
    return self._global_sum(tf.reduce_sum(per_example)) / self.global_batch_size

  @classmethod
  def extra_model_kwargs(cls, config, spec):
    del config, spec
    return {}

  @classmethod
  def extra_optimizers(cls, config, learning_rate):
    del config, learning_rate
    return {}

  def extra_checkpoint_items(self):
    return {}


def _build_autoencoder(config, spec, prefix):
  """(E', D') with the run's architecture and precision (`--mixed_precision`): the 2-D MLPs or
  the residual image networks."""
  dtype = precision.layer_dtype(config.mixed_precision)
  if spec.kind == "2d":
    sizes = dict(x_dim=spec.shape[0], z_dim=config.z_dim, num_hidden=config.num_hidden,
                 num_layers=config.num_layers, dtype=dtype, init=config.init)
    return (networks.build_mlp_encoder(name=f"{prefix}_encoder", **sizes),
            networks.build_mlp_decoder(name=f"{prefix}_decoder", **sizes))
  height, _, channels = spec.shape
  return (networks.build_image_encoder(height, channels, config.z_dim, filters=config.filters,
                                       name=f"{prefix}_encoder", dtype=dtype,
                                       init=config.init),
          networks.build_image_decoder(height, channels, config.z_dim, filters=config.filters,
                                       name=f"{prefix}_decoder", dtype=dtype, init=config.init))


# =============================================================================================
# Adversarial VAE with an auto-encoder discriminator
# =============================================================================================


@dataclasses.dataclass(frozen=True)
class AVAEHParams:
  """Hyper-parameters of `AVAE` (flags `--avae_alpha`, ...; defaults: avae-khan2018.md Sec. 4).

  Attributes:
    alpha, beta, gamma: weights of `L_v`, `L_s`, `L_e` (0.3, 0.1, 0.1).
    eta: the diversity ratio of eq. 10 (0.5).
    pid_ki, pid_kp, pid_kd: gains lambda_1 (integral), lambda_2 (proportional), lambda_3
      (differential) of eq. 12 (1e-3, 1e-5, 1e-5).
    clip_k: clip `k_t` to [0, 1] (BEGAN; the AVAE paper is silent).
  """
  alpha: float = 0.3
  beta: float = 0.1
  gamma: float = 0.1
  eta: float = 0.5
  pid_ki: float = 1e-3
  pid_kp: float = 1e-5
  pid_kd: float = 1e-5
  clip_k: bool = True


class AVAE(_Baseline):
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
    encoder, decoder: the generator VAE (see `models.IntrospectiveVAE`).
    discriminator_encoder: `keras.Model` `x -> [code, unused]`, each float32 `[B, z_dim]`.
    discriminator_decoder: `keras.Model` `code [B, z_dim] -> x [B, *example_shape]`.
    avae_hparams: `AVAEHParams`.
    **kwargs: as `models.IntrospectiveVAE`.
  """

  method = "avae"

  def __init__(self, encoder, decoder, *, discriminator_encoder, discriminator_decoder,
               avae_hparams=None, **kwargs):
    super().__init__(encoder, decoder, **kwargs)
    self.discriminator_encoder = discriminator_encoder
    self.discriminator_decoder = discriminator_decoder
    self.avae_hparams = avae_hparams or AVAEHParams()

    def state(name):
      return tf.Variable(0.0, dtype=tf.float32, trainable=False, name=name,
                         aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.k_t = state("k_t")
    self.e_prev = state("e_prev")
    self.e_prev2 = state("e_prev2")

  # --- Hooks for train_lib ------------------------------------------------------------------

  @classmethod
  def extra_model_kwargs(cls, config, spec):
    """The discriminator auto-encoder and `AVAEHParams` from the config (call in the scope)."""
    disc_encoder, disc_decoder = _build_autoencoder(config, spec, "discriminator")
    return dict(discriminator_encoder=disc_encoder, discriminator_decoder=disc_decoder,
                avae_hparams=AVAEHParams(
                    alpha=config.avae_alpha, beta=config.avae_beta, gamma=config.avae_gamma,
                    eta=config.avae_eta, pid_ki=config.pid_ki, pid_kp=config.pid_kp,
                    pid_kd=config.pid_kd, clip_k=config.avae_clip_k))

  @classmethod
  def extra_optimizers(cls, config, learning_rate):
    """The discriminator's Adam (same variant, learning rate, betas and epsilon as E and D)."""
    return dict(discriminator_optimizer=optimizers.adam(
        config.adam_variant, learning_rate, beta_1=config.adam_beta1, beta_2=config.adam_beta2,
        epsilon=config.adam_epsilon))

  def extra_checkpoint_items(self):
    return dict(discriminator_encoder=self.discriminator_encoder,
                discriminator_decoder=self.discriminator_decoder,
                discriminator_optimizer=self.discriminator_optimizer,
                avae_k_t=self.k_t, avae_e_prev=self.e_prev, avae_e_prev2=self.e_prev2)

  def compile(self, encoder_optimizer, decoder_optimizer, discriminator_optimizer=None,
              **kwargs):
    """Compiles with three optimizers: E, D, and the discriminator (E', D') together."""
    if discriminator_optimizer is None:
      raise ValueError("AVAE needs a discriminator_optimizer")
    super().compile(encoder_optimizer, decoder_optimizer, **kwargs)
    self.discriminator_optimizer = discriminator_optimizer
    self.discriminator_optimizer.build(self._discriminator_variables())

  def _discriminator_variables(self):
    return (self.discriminator_encoder.trainable_variables
            + self.discriminator_decoder.trainable_variables)

  def _code(self, x):
    """The discriminator's code `E'(x)`, float32 `[B, z_dim]`."""
    code, _ = self.discriminator_encoder(x, training=True)
    return code

  # --- The step -----------------------------------------------------------------------------

  def introspective_step(self, x):
    hp = self.avae_hparams
    z_g = self._normal(0)
    eps = self._normal(1)
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
      l_e = l1_error(x, x_v)                                   # eq. 2
      l_n = losses.gaussian_kl(mu, logvar)                     # eq. 3
      l_s = l1_error(z_d, z_v)                                 # eq. 9
      # === Discriminator reconstructions (lines 9-10) ===
      l_d = l1_error(x, self.discriminator_decoder(z_d, training=True))       # eq. 7
      l_g = l1_error(x_g, self.discriminator_decoder(z_gen, training=True))
      l_v = l1_error(x_v, self.discriminator_decoder(z_v, training=True))
      per_example_e = avae_encoder_loss(l_n, l_s, l_e, beta=hp.beta, gamma=hp.gamma)
      per_example_d = avae_generator_loss(l_g, l_v, l_s, l_e, alpha=hp.alpha, beta=hp.beta,
                                          gamma=hp.gamma)
      per_example_a = avae_discriminator_loss(l_d, l_g, l_v, k=k_prev, alpha=hp.alpha)
      loss_e = self._mean(per_example_e)
      loss_d = self._mean(per_example_d)
      loss_a = self._mean(per_example_a)
    grads_e = self._gradients(tape, loss_e, e_vars, self.encoder_optimizer)
    grads_d = self._gradients(tape, loss_d, d_vars, self.decoder_optimizer)
    grads_a = self._gradients(tape, loss_a, a_vars, self.discriminator_optimizer)
    del tape
    # skip_batch: the three updates and the PID state come from one pass: all or none.
    self._require_finite(
        self._finite_checks(loss_e, grads_e, self.encoder_optimizer)
        + self._finite_checks(loss_d, grads_d, self.decoder_optimizer)
        + self._finite_checks(loss_a, grads_a, self.discriminator_optimizer))

    # === Update E (line 8) ===
    self._apply(self.encoder_optimizer, grads_e, e_vars, "encoder", loss_e)
    # === Update D (line 11) ===
    self._apply(self.decoder_optimizer, grads_d, d_vars, "decoder", loss_d)
    # === PID update of k_t (line 12; eq. 11-12), from global-batch means ===
    m_d, m_g, m_v = (self._global_batch_mean(t) for t in (l_d, l_g, l_v))
    e_t = avae_balance_error(m_d, m_g, m_v, eta=hp.eta, alpha=hp.alpha)
    e_prev, e_prev2 = tf.identity(self.e_prev), tf.identity(self.e_prev2)
    k_t = pid_update(k_prev, e_t, e_prev, e_prev2, ki=hp.pid_ki, kp=hp.pid_kp, kd=hp.pid_kd,
                     clip=hp.clip_k)
    ok = self._batch_ok  # always True with nan_policy="stop"
    self.k_t.assign(tf.where(ok, k_t, k_prev))
    self.e_prev2.assign(tf.where(ok, e_prev, e_prev2))
    self.e_prev.assign(tf.where(ok, e_t, e_prev))
    # === Update E', D' (line 13) ===
    self._apply(self.discriminator_optimizer, grads_a, a_vars, "discriminator", loss_a)

    return {
        "loss_encoder": tf.reduce_mean(per_example_e),
        "loss_decoder": tf.reduce_mean(per_example_d),
        "loss_discriminator": tf.reduce_mean(per_example_a),
        "l_e": tf.reduce_mean(l_e), "l_n": tf.reduce_mean(l_n), "l_s": tf.reduce_mean(l_s),
        "l_d": tf.reduce_mean(l_d), "l_g": tf.reduce_mean(l_g), "l_v": tf.reduce_mean(l_v),
        "k_t": k_t, "e_t": e_t,
        "convergence": avae_convergence(m_d, m_g, m_v, eta=hp.eta, alpha=hp.alpha),
    }


# =============================================================================================
# WGAN-GP
# =============================================================================================


@dataclasses.dataclass(frozen=True)
class WGANGPHParams:
  """Hyper-parameters of `WGANGP` (flags `--gp_lambda`, `--n_critic`).

  Attributes:
    gp_lambda: weight of the gradient penalty (Gulrajani et al.: 10; their toy code: 0.1).
    n_critic: critic updates per generator update (5).
  """
  gp_lambda: float = 10.0
  n_critic: int = 5


class WGANGP(_Baseline):
  """WGAN with gradient penalty (Gulrajani et al. 2017, Algorithm 1).

  Generator G = the project's decoder. Critic f = the project's encoder network (the same
  builder, `encoder` in checkpoints) followed by a linear head: `f(x) = Dense(1)([mu, logvar])`
  on the encoder's whole `2 * z_dim` output (`critic_head`, checkpointed as such).

  The critic runs in inference mode (`training=False`): its BatchNorm layers (image networks)
  keep their initial statistics (mean 0, variance 1) and act as learned per-channel affine maps,
  so each score depends on its own example only, as the per-example gradient penalty requires
  (the paper drops batch normalization from the critic, Sec. 4). `prepare_for_inference` never
  touches them.

  One `train_step` = one iteration of Algorithm 1: `n_critic` critic updates, then one
  generator update. The step's global batch of B real examples is split into `n_critic`
  interleaved slices (`x[j::n_critic]`, the same examples for any replica count); critic update
  j uses slice j with B / n_critic fresh fakes and per-example `eps ~ U[0, 1]`; the generator
  update uses B / n_critic fresh fakes. So `--batch_size` = n_critic x the paper's batch m, each
  step consumes n_critic fresh real batches of m (as the authors' code, which draws a new batch
  per critic iteration), and `--train_steps` counts generator iterations. The model's `step` is
  the generator optimizer's count; the critic optimizer counts n_critic per step (so
  `--lr_milestones` count the critic's own updates for the critic).

  Noise per step (stateless, from (seed, step, index)): `_normal(0)` rows j::n for the fakes of
  critic update j, `_normal(1)` rows 0::n for the generator update, `_uniform(2)` rows j::n for
  the interpolation weights of critic update j.

  Args:
    encoder: the critic body, `x -> [mu, logvar]` (`models.IntrospectiveVAE`).
    decoder: the generator.
    critic_head: optional `keras.layers.Dense(1)`; built here if not given.
    wgan_hparams: `WGANGPHParams`.
    **kwargs: as `models.IntrospectiveVAE`.
  """

  method = "wgan_gp"
  has_inference_encoder = False

  def __init__(self, encoder, decoder, *, critic_head=None, wgan_hparams=None, **kwargs):
    super().__init__(encoder, decoder, **kwargs)
    self.wgan_hparams = wgan_hparams or WGANGPHParams()
    n = self.wgan_hparams.n_critic
    if n < 1 or self.global_batch_size % n:
      raise ValueError(f"the global batch ({self.global_batch_size}) must be a positive "
                       f"multiple of n_critic ({n})")
    self.critic_head = critic_head or keras.layers.Dense(1, name="critic_head", dtype="float32")
    if not self.critic_head.built:
      width = sum(int(t.shape[-1]) for t in encoder.outputs)
      self.critic_head.build((None, width))

  # --- Hooks for train_lib ------------------------------------------------------------------

  @classmethod
  def extra_model_kwargs(cls, config, spec):
    del spec
    return dict(critic_head=keras.layers.Dense(1, name="critic_head", dtype="float32"),
                wgan_hparams=WGANGPHParams(gp_lambda=config.gp_lambda, n_critic=config.n_critic))

  def extra_checkpoint_items(self):
    return dict(critic_head=self.critic_head)

  def compile(self, encoder_optimizer, decoder_optimizer, **kwargs):
    """Compiles with the critic's optimizer (`encoder_optimizer`: encoder body and head) and
    the generator's (`decoder_optimizer`)."""
    keras.Model.compile(self, optimizer=None, **kwargs)  # pylint: disable=bad-super-call
    self.encoder_optimizer = encoder_optimizer
    self.decoder_optimizer = decoder_optimizer
    self.encoder_optimizer.build(self.critic_variables())
    self.decoder_optimizer.build(self.decoder.trainable_variables)
    self._add_loss_scale_trackers(encoder_optimizer)

  @property
  def step(self):
    """int64 scalar: completed training steps = generator updates."""
    return self.decoder_optimizer.iterations

  def critic_variables(self):
    return self.encoder.trainable_variables + self.critic_head.trainable_variables

  def critic(self, x):
    """Critic scores `f(x)`, float32 `[B]` (inference-mode encoder body + linear head)."""
    mu, logvar = self.encoder(x, training=False)
    return self.critic_head(tf.concat([mu, logvar], axis=-1))[:, 0]

  def call(self, x, training=False):
    """The critic's scores `f(x)`, float32 `[B]` (there is no reconstruction)."""
    del training
    return self.critic(x)

  def vae_step(self, x):
    raise ValueError("wgan_gp has no VAE warm-up: use --num_vae=0")

  def prepare_for_inference(self, batches):
    """Copies the decoder EMA and re-estimates the generator's (and EMA generator's) BatchNorm
    statistics on prior samples `z ~ N(0, I)`, one `[len(batch), z_dim]` draw per batch of
    `batches`. The critic's statistics stay fixed (see the class docstring)."""
    self.sync_ema_decoder()
    latents = [tf.random.stateless_normal([len(x), self.z_dim], seed=[self.seed, 7919 + k])
               for k, x in enumerate(batches)]
    for decoder in (self.decoder, self.ema_decoder):
      if decoder is not None:
        models._average_batchnorm(  # pylint: disable=protected-access
            models._batchnorm_layers(decoder),  # pylint: disable=protected-access
            [lambda z=z, d=decoder: d(z, training=True) for z in latents])

  # --- The step -----------------------------------------------------------------------------

  def introspective_step(self, x):
    hp = self.wgan_hparams
    n = hp.n_critic
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    if self.global_batch_size % (n * replicas):
      raise ValueError(f"the global batch ({self.global_batch_size}) must be a multiple of "
                       f"n_critic x replicas ({n} x {replicas}): each replica splits its batch "
                       "into n_critic slices")
    slice_batch = self.global_batch_size // n
    z_critic = self._normal(0)
    z_gen = self._normal(1)[0::n]
    eps_all = self._uniform(2)
    c_vars = self.critic_variables()
    g_vars = self.decoder.trainable_variables

    def mean(per_example):
      return tf.nn.compute_average_loss(per_example, global_batch_size=slice_batch)

    sums = {k: 0.0 for k in ("loss_critic", "wasserstein", "gradient_penalty", "score_real",
                             "score_fake")}
    for j in range(n):  # unrolled: n_critic is a small constant
      # === Update the critic (Algorithm 1, lines 2-9), slice j ===
      x_real = x[j::n]
      x_fake = tf.stop_gradient(self.decoder(z_critic[j::n], training=True))
      x_hat = interpolate(x_real, x_fake, eps_all[j::n])
      with tf.GradientTape() as tape:
        score_real = self.critic(x_real)
        score_fake = self.critic(x_fake)
        penalty = gradient_penalty(critic_input_gradient_norm(self.critic, x_hat))
        per_example_c = (wasserstein_critic_loss(score_real, score_fake)
                         + hp.gp_lambda * penalty)
        loss_c = mean(per_example_c)
      self._apply(self.encoder_optimizer,
                  self._gradients(tape, loss_c, c_vars, self.encoder_optimizer), c_vars, "critic",
                  loss_c)
      sums["loss_critic"] += tf.reduce_mean(per_example_c)
      sums["wasserstein"] += tf.reduce_mean(score_real) - tf.reduce_mean(score_fake)
      sums["gradient_penalty"] += tf.reduce_mean(penalty)
      sums["score_real"] += tf.reduce_mean(score_real)
      sums["score_fake"] += tf.reduce_mean(score_fake)

    # === Update the generator (lines 10-11) ===
    with tf.GradientTape() as tape:
      per_example_g = wasserstein_generator_loss(self.critic(self.decoder(z_gen, training=True)))
      loss_g = mean(per_example_g)
    self._apply(self.decoder_optimizer,
                self._gradients(tape, loss_g, g_vars, self.decoder_optimizer), g_vars, "generator",
                loss_g)

    logs = {k: v / n for k, v in sums.items()}
    logs["loss_generator"] = tf.reduce_mean(per_example_g)
    return logs


METHODS = {cls.method: cls for cls in (AVAE, WGANGP)}
"""`--method` name -> model class, for the baselines (train_lib merges it with models.METHODS)."""
