"""`IntrospectiveVAE`, the base class of every method: a `keras.Model` with an encoder, a
decoder, two (or more) optimizers, the VAE step, and the extension API a method is written in.

A method (`methods/<name>.py`, BUILD.md "Adding a method") subclasses `IntrospectiveVAE`,
declares `metric_names`, `hparams_class` and `divergence_hint`, and writes
`introspective_step(x)`, which reads top to bottom like its paper's Algorithm 1: "Update E" with
one `GradientTape`, then "Update D" with another, with `tf.stop_gradient` (`sg`) exactly where
the paper and the authors' code put it (docs/method.md writes each step out). What the step may
call is public and documented here and in the mixins:
  noise        `normal_noise(i)`, `uniform_noise(i)`;
  averages     `loss_mean(per_example)` (a loss), `global_batch_mean(per_example)` (a value);
  passes       `passes(network, inputs)`, `encode_sample_decode_pair(...)` (`fused_passes`);
  updates      `minimize(...)`, or `gradients` + `require_finite` + `apply_update`, and
               `batch_ok` (`update_policy.UpdatePolicy`: loss scaling, the NaN/inf policy);
  replicas     `distribute.replica_slice`, `distribute.gather_live`, `distribute.global_sum`.
The EMA decoder and BatchNorm re-estimation for inference are `inference.ForInference`'s.

Distribution: the step is written for one replica. Per-example terms are averaged over the
GLOBAL batch (`loss_mean`); Keras' optimizers sum gradients across replicas. Noise is drawn
statelessly from `(seed, step)` for the whole global batch and each replica takes its own
slice, so a step gives the same result with 1 or N replicas and after a resume. Batch-level
terms (the AS-Distance) gather the other replicas' rows as constants and keep their own live
(`distribute.gather_live`): exact gradients once the replicas' gradients are summed.

The `num_vae` warm-up runs the plain VAE step (`vae_step`): set `model.vae_phase = True` and
rebuild the train function (`model.make_train_function(force=True)`); `train_lib` does this at
the start, its callback `train_monitor.TrainingMonitor` at the end of the warm-up.
Mixed precision (`precision.py`): the networks take and return float32, so every loss term is.

Hooks a method may override (read by `run.py` and `config.py`; see each one's docstring):
`extra_model_kwargs`, `extra_optimizers`, `extra_checkpoint_items`, `validate_config`,
`encoder_variables`, and the class attributes `has_inference_encoder` and `scaled_elbo`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from as_introvae_tf import distribute
from as_introvae_tf import inference
from as_introvae_tf import losses
from as_introvae_tf import precision
from as_introvae_tf import update_policy
from as_introvae_tf.hparams import FUSE_PASSES
from as_introvae_tf.hparams import NAN_POLICIES
from as_introvae_tf.hparams import LossHParams

GRAD_NORMS = ("grad_norm_encoder", "grad_norm_decoder")
"""Global norms of this replica's gradients, one per optimizer (every method; unscaled under
loss scaling, and averaged over the updates that were applied). With mixed_float16,
`loss_scale_<network>` (one per `grad_norm_<network>`) = the optimizer's dynamic loss scale
after the step, averaged over the log window."""

VAE_METRIC_NAMES = ("loss", "rec", "kl_real") + GRAD_NORMS
"""Metrics of `vae_step` (the `vae` method and every method's `--num_vae` warm-up): `rec` =
batch mean of `rec(x, x_r)`, `kl_real` in nats."""


class IntrospectiveVAE(update_policy.UpdatePolicy, inference.ForInference, keras.Model):
  """Base class: an encoder, a decoder, two optimizers and the shared step machinery.

  Args:
    encoder: `keras.Model`, `x [B, *example_shape] -> [mu, logvar]`, each float32 `[B, z_dim]`.
    decoder: `keras.Model`, `z [B, z_dim] -> x [B, *example_shape]`.
    ema_decoder: optional `keras.Model` with the decoder's architecture that holds the
      exponential moving average of the decoder weights (used for sampling). Its weights are
      filled by `sync_ema_decoder()` from the decoder optimizer's EMA (`use_ema=True`).
    example_shape: shape of one example, e.g. `(2,)` or `(28, 28, 1)`.
    global_batch_size: batch size summed over replicas; losses are averaged over it.
    hparams: `LossHParams`.
    total_steps: the run's `--train_steps`.
    num_vae: the run's VAE warm-up steps (`LossHParams.warmup_loss`); with
      `LossHParams.anneal_origin="warmup_end"` AS-IntroVAE's annealing runs over the
      introspective steps only: `i = step - num_vae`, `T = total_steps - num_vae`.
    seed: int, seed of the stateless noise.
    nan_policy: one of `NAN_POLICIES` (`update_policy`).
    fuse_passes: one of `FUSE_PASSES`: run the independent batches of a phase (the fakes and
      the reconstructions) through each network as one concatenated batch: "auto" (default)
      for networks without BatchNorm (the 2-D MLP; identical results), "on" always (with
      BatchNorm the batch statistics then mix the batches: not the reference), "off" never.

  Raises:
    ValueError: unknown `nan_policy` or `fuse_passes`.
  """

  method = None  # set by `methods.register`
  metric_names = ()
  """Metrics the method's `introspective_step` reports (train_step returns them; TensorBoard
  logs them as `train/<name>`), its gradient norms included."""
  hparams_class = LossHParams
  """The dataclass of the method's own hyper-parameters (`hparams.py`)."""
  divergence_hint = "Lower --lr."
  """Advice added to the error message when the method's losses become NaN/inf."""
  tensorboard_hparams = ()
  """The method's own flags shown in TensorBoard's HParams table (beside the common ones)."""
  bar_metrics = ("loss",)
  """Metrics on the progress bar, those present in the logs (the VAE warm-up reports `loss`,
  `rec`, `kl_real` only); the others go to TensorBoard only."""
  has_inference_encoder = True
  """False where the encoder is no inference network (WGAN-GP: a critic), so encoder metrics
  (reconstructions, gnELBO, latents) and the export's `encode` do not apply."""
  scaled_elbo = False
  """Whether `vae_step` always multiplies the ELBO by the input scale `s` (the `vae` method,
  whose every step it is); the introspective methods' warm-up scales it only with
  `LossHParams.warmup_loss="scaled"`."""

  @property
  def checked_terms(self):
    """Terms checked for NaN/inf at every step (the method's metrics and the warm-up's);
    bit i of `non_finite_terms` = checked_terms[i]."""
    return tuple(sorted(set(self.metric_names) | set(VAE_METRIC_NAMES)))

  def __init__(
    self,
    encoder,
    decoder,
    *,
    example_shape,
    global_batch_size,
    hparams=None,
    total_steps=1,
    num_vae=0,
    seed=0,
    ema_decoder=None,
    nan_policy="stop",
    fuse_passes="auto",
    **kwargs,
  ):
    super().__init__(**kwargs)
    if nan_policy not in NAN_POLICIES:
      raise ValueError(f"nan_policy must be one of {NAN_POLICIES}; got {nan_policy!r}")
    if fuse_passes not in FUSE_PASSES:
      raise ValueError(f"fuse_passes must be one of {FUSE_PASSES}; got {fuse_passes!r}")
    self.fuse_passes = fuse_passes
    self.encoder = encoder
    self.decoder = decoder
    self.ema_decoder = ema_decoder
    self.example_shape = tuple(int(d) for d in example_shape)
    self.z_dim = int(decoder.inputs[0].shape[-1])
    self.global_batch_size = int(global_batch_size)
    self.hparams = hparams or LossHParams()
    self.total_steps = int(total_steps)
    self.num_vae = int(num_vae)
    self.seed = int(seed)
    self.scale = losses.input_scale(self.example_shape)
    self.vae_phase = False
    self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}
    self._init_update_policy(nan_policy)
    self._vae_trackers = {
      name: self.trackers.get(name) or keras.metrics.Mean(name=name) for name in VAE_METRIC_NAMES
    }

  # --- The Keras model contract ----------------------------------------------------------------

  def compile(self, encoder_optimizer, decoder_optimizer, **kwargs):
    """Compiles with one optimizer per network (built here, inside the strategy scope):
    `encoder_optimizer` for `encoder_variables()`, `decoder_optimizer` for the decoder's.

    Optimizers may be `keras.optimizers.LossScaleOptimizer`s (mixed_float16; all or none).
    """
    super().compile(optimizer=None, **kwargs)
    self.encoder_optimizer = encoder_optimizer
    self.decoder_optimizer = decoder_optimizer
    self.encoder_optimizer.build(self.encoder_variables())
    self.decoder_optimizer.build(self.decoder.trainable_variables)
    self._add_loss_scale_trackers(encoder_optimizer, (self.trackers, self._vae_trackers))

  @property
  def metrics(self):
    if self.vae_phase:
      return list(self._vae_trackers.values())
    return list(self.trackers.values())

  def call(self, x, training=False):
    """Deterministic reconstruction `D(mu(x))`, float32 `[B, *example_shape]`."""
    mu, _ = self.encoder(x, training=training)
    return self.decoder(mu, training=training)

  @property
  def step(self):
    """int64 scalar: the number of completed training steps (the encoder optimizer's count)."""
    return self.encoder_optimizer.iterations

  def train_step(self, data):
    x = data[0] if isinstance(data, (tuple, list)) else data
    step = tf.identity(self.step)
    self._begin_updates()
    logs = self.vae_step(x) if self.vae_phase else self.introspective_step(x)
    trackers = self._vae_trackers if self.vae_phase else self.trackers
    logs = self._end_updates(step, logs, trackers)
    return distribute.batch_axis_for_multi_worker(logs)

  # --- The steps -----------------------------------------------------------------------------

  def vae_step(self, x):
    """One ELBO step on E and D; returns `VAE_METRIC_NAMES`' values but the gradient norms.

    The `vae` method (`scaled_elbo`): `L = s * mean(beta_rec * rec + beta_kl * kl)`. The warm-up
    of the introspective methods (`vae_phase`) with `warmup_loss="reference"`:
    `L = mean(beta_rec * rec + beta_kl * kl)` (no `s`), as the reference's `num_vae` loop
    (`train_soft_intro_vae_2d.py`: `loss = beta_rec * loss_rec + beta_kl * loss_kl`).
    """
    hp = self.hparams
    scale = self.scale if (self.scaled_elbo or hp.warmup_loss == "scaled") else 1.0
    eps = self.normal_noise(1)
    e_vars = self.encoder.trainable_variables
    d_vars = self.decoder.trainable_variables
    # Loss scaling: each optimizer has its own scale, so one backward pass per optimizer.
    scaled = precision.is_loss_scaled(self.encoder_optimizer)
    # === Update E, D ===
    with tf.GradientTape(persistent=scaled) as tape:
      mu, logvar = self.encoder(x, training=True)
      x_r = self.decoder(losses.reparameterize(mu, logvar, eps), training=True)
      rec = losses.reconstruction_error(x, x_r)
      kl = losses.gaussian_kl(mu, logvar)
      loss = self.loss_mean(
        losses.vae_loss(rec, kl, scale=scale, beta_rec=hp.beta_rec, beta_kl=hp.beta_kl)
      )
    if scaled:
      grads_e = self.gradients(tape, loss, e_vars, self.encoder_optimizer)
      grads_d = self.gradients(tape, loss, d_vars, self.decoder_optimizer)
      del tape
    else:
      grads = tape.gradient(loss, e_vars + d_vars)
      grads_e, grads_d = grads[: len(e_vars)], grads[len(e_vars) :]
    # skip_batch: one joint update, all or none
    self.require_finite(
      (loss, grads_e, self.encoder_optimizer), (None, grads_d, self.decoder_optimizer)
    )
    self.apply_update(self.encoder_optimizer, grads_e, e_vars, "encoder", loss)
    self.apply_update(self.decoder_optimizer, grads_d, d_vars, "decoder")
    return {
      "loss": tf.reduce_mean(
        losses.vae_loss(rec, kl, scale=scale, beta_rec=hp.beta_rec, beta_kl=hp.beta_kl)
      ),
      "rec": tf.reduce_mean(rec),
      "kl_real": tf.reduce_mean(kl),
    }

  def introspective_step(self, x):
    """The method's training step on this replica's batch `x` float32 `[B_local,
    *example_shape]`: its updates (`minimize`, `apply_update`) and {metric name: float32
    scalar} for `metric_names` but the gradient norms (`apply_update` records those)."""
    raise NotImplementedError  # Each method defines its own.

  # --- What a method's step calls --------------------------------------------------------------

  def normal_noise(self, index):
    """Standard normal noise, float32 `[B_local, z_dim]` for this replica: its slice of a draw
    for the global batch from (seed, step, `index`), so that it does not depend on the number
    of replicas. Use each `index` (an int in [0, 16)) once per step."""
    seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.step, tf.int64) * 16 + index])
    full = tf.random.stateless_normal([self.global_batch_size, self.z_dim], seed=seed)
    return distribute.replica_slice(full)

  def uniform_noise(self, index):
    """U[0, 1) noise, float32 `[B_local]`, drawn for the global batch from (seed, step, `index`)
    like `normal_noise` (use indices that `normal_noise` does not use in the same step)."""
    seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.step, tf.int64) * 16 + index])
    return distribute.replica_slice(
      tf.random.stateless_uniform([self.global_batch_size], seed=seed)
    )

  def loss_mean(self, per_example):
    """This replica's share of the global-batch mean of a float32 `[B_local]` term (its sum
    over this replica / the global batch): the loss to differentiate, since Keras' optimizers
    sum the replicas' gradients."""
    return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)

  def global_batch_mean(self, per_example):
    """The global-batch mean of a float32 `[B_local]` term: a scalar, the same value on every
    replica (one all-reduce)."""
    return distribute.global_sum(tf.reduce_sum(per_example)) / self.global_batch_size

  @property
  def fused_passes(self):
    """Whether independent batches go through a network as one concatenated batch
    (`fuse_passes`: "auto" = only for networks without BatchNorm, whose per-example outputs do
    not depend on the rest of the batch; there the result is mathematically identical)."""
    if self.fuse_passes == "auto":
      return not (
        inference.batchnorm_layers(self.encoder) or inference.batchnorm_layers(self.decoder)
      )
    return self.fuse_passes == "on"

  def passes(self, network, inputs):
    """`[network(x, training=True) for x in inputs]` (a list of tensors, or of tuples for a
    network with several outputs), as one pass over the concatenated `inputs` when
    `fused_passes`. The inputs share every dimension but the first."""
    if not self.fused_passes or len(inputs) == 1:
      return [network(x, training=True) for x in inputs]
    sizes = [tf.shape(x)[0] for x in inputs]
    out = network(tf.concat(inputs, axis=0), training=True)
    if isinstance(out, (list, tuple)):
      parts = [tf.split(o, sizes, axis=0) for o in out]
      return [tuple(p[i] for p in parts) for i in range(len(inputs))]
    return tf.split(out, sizes, axis=0)

  def encode_sample_decode_pair(self, x_a, eps_a, x_b, eps_b, stop_z=False):
    """Encodes two batches `x_a`, `x_b` float32 `[B, *example_shape]` (a phase's
    reconstructions and fakes), samples `z = mu + exp(logvar / 2) * eps` with `eps_a`, `eps_b`
    `[B, z_dim]` (`tf.stop_gradient` on z if `stop_z`) and decodes them, each stage fused when
    `fused_passes`. Returns `((mu_a, logvar_a, y_a), (mu_b, logvar_b, y_b))`."""
    (mu_a, logvar_a), (mu_b, logvar_b) = self.passes(self.encoder, [x_a, x_b])
    z_a = losses.reparameterize(mu_a, logvar_a, eps_a)
    z_b = losses.reparameterize(mu_b, logvar_b, eps_b)
    if stop_z:
      z_a, z_b = tf.stop_gradient(z_a), tf.stop_gradient(z_b)
    y_a, y_b = self.passes(self.decoder, [z_a, z_b])
    return (mu_a, logvar_a, y_a), (mu_b, logvar_b, y_b)

  # --- Hooks (see the module docstring) --------------------------------------------------------

  def encoder_variables(self):
    """The variables `encoder_optimizer` updates: the encoder's trainable variables (WGAN-GP:
    its critic's, the head included)."""
    return self.encoder.trainable_variables

  @classmethod
  def validate_config(cls, config, num_replicas=None):
    """The method's own checks of a `config.ExperimentConfig` (called by `config.validate`
    after the common ones, through `methods.validate_config`); none here.

    Args:
      config: the `ExperimentConfig` with `method` = this method.
      num_replicas: replicas of the strategy, or None when not known yet.

    Raises:
      ValueError: a value the method cannot run with (the message names the flag).
    """
    del config, num_replicas

  @classmethod
  def extra_model_kwargs(cls, config, spec):
    """{keyword: value} passed to the constructor beyond (encoder, decoder) and the common
    arguments: networks and the method's hyper-parameters, built inside the strategy scope
    from the `ExperimentConfig` and the dataset's `spec`."""
    del config, spec
    return {}

  @classmethod
  def extra_optimizers(cls, config, learning_rate):
    """{keyword: optimizer} passed to `compile` beyond the encoder's and decoder's."""
    del config, learning_rate
    return {}

  def extra_checkpoint_items(self):
    """{name: trackable} the checkpoint must hold beyond the networks and the optimizers
    (AVAE: the discriminator, its optimizer and the PID state)."""
    return {}
