"""WGAN-GP (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs",
https://arxiv.org/abs/1704.00028, Algorithm 1; authors' code
https://github.com/igul222/improved_wgan_training, `gan_mnist.py`, `gan_cifar.py`,
`gan_toy.py`), the comparison row of the AS-IntroVAE paper's Table 2
(https://proceedings.mlr.press/v189/changjie23a.html).

Generator = the project's decoder; critic = the project's encoder body with a `Dense(1)` head.
Loss terms: `losses/adversarial.py`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from as_introvae_tf import distribute
from as_introvae_tf import hparams
from as_introvae_tf import inference
from as_introvae_tf import losses
from as_introvae_tf import methods
from as_introvae_tf.methods import base


@methods.register("wgan_gp")
class WGANGP(base.IntrospectiveVAE):
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

  Noise per step (stateless, from (seed, step, index)): `normal_noise(0)` rows j::n for the
  fakes of critic update j, `normal_noise(1)` rows 0::n for the generator update,
  `uniform_noise(2)` rows j::n for the interpolation weights of critic update j.

  Args:
    encoder: the critic body, `x -> [mu, logvar]` (`base.IntrospectiveVAE`).
    decoder: the generator.
    critic_head: optional `keras.layers.Dense(1)`; built here if not given.
    wgan_hparams: `WGANGPHParams`.
    **kwargs: as `base.IntrospectiveVAE`.
  """

  metric_names = (
    "loss_critic",
    "loss_generator",
    "wasserstein",
    "gradient_penalty",
    "score_real",
    "score_fake",
    "grad_norm_critic",
    "grad_norm_generator",
  )
  """Means over the n_critic critic iterations of a step: `loss_critic` (with the penalty),
  `wasserstein` = mean f(x) - mean f(G(z)) (the critic's Wasserstein estimate),
  `gradient_penalty` = mean (||grad|| - 1)^2 (before lambda), `score_real`, `score_fake`;
  `loss_generator` = -mean f(G(z)); gradient norms of the last critic update and of G."""
  hparams_class = hparams.WGANGPHParams
  divergence_hint = "WGAN-GP: lower --lr, or raise --gp_lambda."
  tensorboard_hparams = ("gp_lambda", "n_critic")
  bar_metrics = ("loss_critic", "loss_generator", "wasserstein")
  has_inference_encoder = False

  def __init__(self, encoder, decoder, *, critic_head=None, wgan_hparams=None, **kwargs):
    super().__init__(encoder, decoder, **kwargs)
    self.wgan_hparams = wgan_hparams or hparams.WGANGPHParams()
    n = self.wgan_hparams.n_critic
    if n < 1 or self.global_batch_size % n:
      raise ValueError(
        f"the global batch ({self.global_batch_size}) must be a positive multiple of n_critic ({n})"
      )
    self.critic_head = critic_head or keras.layers.Dense(1, name="critic_head", dtype="float32")
    if not self.critic_head.built:
      width = sum(int(t.shape[-1]) for t in encoder.outputs)
      self.critic_head.build((None, width))

  # --- Hooks for run.py and config.py ---------------------------------------------------------

  @classmethod
  def validate_config(cls, config, num_replicas=None):
    """No VAE warm-up (`--num_vae=0`), and `--batch_size` splits into `--n_critic` slices on
    every replica.

    Raises:
      ValueError: `num_vae` > 0, or `batch_size` not a multiple of `n_critic` x replicas.
    """
    if config.num_vae != 0:
      raise ValueError(
        f"--method=wgan_gp has no VAE warm-up: --num_vae must be 0; got {config.num_vae}"
      )
    if config.batch_size % (config.n_critic * (num_replicas or 1)):
      raise ValueError(
        f"--batch_size={config.batch_size} must be divisible by --n_critic={config.n_critic} "
        f"x the number of replicas ({num_replicas or 1}) for --method=wgan_gp (each critic "
        "update takes one slice of the batch)"
      )

  @classmethod
  def extra_model_kwargs(cls, config, spec):
    del spec
    return dict(
      critic_head=keras.layers.Dense(1, name="critic_head", dtype="float32"),
      wgan_hparams=cls.hparams_class.from_config(config),
    )

  def extra_checkpoint_items(self):
    return dict(critic_head=self.critic_head)

  @property
  def step(self):
    """int64 scalar: completed training steps = generator updates."""
    return self.decoder_optimizer.iterations

  def critic_variables(self):
    """The critic's trainable variables: the encoder body's and the head's."""
    return self.encoder.trainable_variables + self.critic_head.trainable_variables

  def encoder_variables(self):
    """`encoder_optimizer` is the critic's (`compile`): body and head; `decoder_optimizer`
    the generator's."""
    return self.critic_variables()

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
    latents = [
      tf.random.stateless_normal([len(x), self.z_dim], seed=[self.seed, 7919 + k])
      for k, x in enumerate(batches)
    ]
    for decoder in (self.decoder, self.ema_decoder):
      if decoder is not None:
        inference.average_batchnorm(
          inference.batchnorm_layers(decoder),
          [lambda z=z, d=decoder: d(z, training=True) for z in latents],
        )

  # --- The step -----------------------------------------------------------------------------

  def introspective_step(self, x):
    hp = self.wgan_hparams
    n = hp.n_critic
    replicas = distribute.num_replicas()
    if self.global_batch_size % (n * replicas):
      raise ValueError(
        f"the global batch ({self.global_batch_size}) must be a multiple of "
        f"n_critic x replicas ({n} x {replicas}): each replica splits its batch "
        "into n_critic slices"
      )
    slice_batch = self.global_batch_size // n
    z_critic = self.normal_noise(0)
    z_gen = self.normal_noise(1)[0::n]
    eps_all = self.uniform_noise(2)
    c_vars = self.critic_variables()
    g_vars = self.decoder.trainable_variables

    def mean(per_example):
      return tf.nn.compute_average_loss(per_example, global_batch_size=slice_batch)

    sums = {
      k: 0.0 for k in ("loss_critic", "wasserstein", "gradient_penalty", "score_real", "score_fake")
    }
    for j in range(n):  # unrolled: n_critic is a small constant
      # === Update the critic (Algorithm 1, lines 2-9), slice j ===
      x_real = x[j::n]
      x_fake = tf.stop_gradient(self.decoder(z_critic[j::n], training=True))
      x_hat = losses.interpolate(x_real, x_fake, eps_all[j::n])
      with tf.GradientTape() as tape:
        score_real = self.critic(x_real)
        score_fake = self.critic(x_fake)
        penalty = losses.gradient_penalty(losses.critic_input_gradient_norm(self.critic, x_hat))
        per_example_c = (
          losses.wasserstein_critic_loss(score_real, score_fake) + hp.gp_lambda * penalty
        )
        loss_c = mean(per_example_c)
      self.minimize(tape, loss_c, c_vars, self.encoder_optimizer, "critic")
      sums["loss_critic"] += tf.reduce_mean(per_example_c)
      sums["wasserstein"] += tf.reduce_mean(score_real) - tf.reduce_mean(score_fake)
      sums["gradient_penalty"] += tf.reduce_mean(penalty)
      sums["score_real"] += tf.reduce_mean(score_real)
      sums["score_fake"] += tf.reduce_mean(score_fake)

    # === Update the generator (lines 10-11) ===
    with tf.GradientTape() as tape:
      per_example_g = losses.wasserstein_generator_loss(
        self.critic(self.decoder(z_gen, training=True))
      )
      loss_g = mean(per_example_g)
    self.minimize(tape, loss_g, g_vars, self.decoder_optimizer, "generator")

    logs = {k: v / n for k, v in sums.items()}
    logs["loss_generator"] = tf.reduce_mean(per_example_g)
    return logs
