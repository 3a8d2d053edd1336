"""The machinery every method shares: `IntrospectiveVAE`, a `keras.Model` with an encoder, a
decoder, two (or more) optimizers and the alternating-update step plumbing.

A method (`methods/<name>.py`) subclasses `IntrospectiveVAE`, declares `metric_names`,
`hparams_class` and `divergence_hint`, and writes `introspective_step(x)`, which reads top to
bottom like its paper's Algorithm 1: "Update E" with one `GradientTape`, then "Update D" with
another, with `tf.stop_gradient` (`sg`) exactly where the paper and the authors' code put it
(docs/method.md writes each step out).
Everything else lives here: per-replica records, the NaN/inf policy, loss scaling, the decoder
EMA, BatchNorm re-estimation, the fused passes, the noise and the global-batch reductions.

Distribution: the step is written for one replica. Per-example terms are averaged over the
GLOBAL batch (`tf.nn.compute_average_loss`); Keras' optimizers sum gradients across replicas.
Noise is drawn statelessly from `(seed, step)` for the whole global batch and each replica takes
its own slice, so a step gives the same result with 1 or N replicas and after a resume. The
AS-Distance (a batch-level MMD) is computed over the global batch: each replica gathers the
other replicas' posteriors (as constants) and keeps its own slice differentiable, which gives
exactly the gradient of the global-batch AS-Distance once the replicas' gradients are summed.

The `num_vae` warm-up runs the plain VAE step (`vae_step`): set `model.vae_phase = True` and
rebuild the train function (`model.make_train_function(force=True)`); `train_lib` does this.

Mixed precision (`precision.py`): the networks may compute in float16/bfloat16, but they take
and return float32, so every loss term here is float32. With mixed_float16 the optimizers are
`LossScaleOptimizer`s: gradients are taken of the scaled loss (`precision.gradients`), the
reported `grad_norm_*` are the unscaled norms, and an update skipped because its scaled
gradients overflowed is not a divergence (see `_apply`).

Hooks a method may override (read by `run.py`, which assembles a run from a config):
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

import threading

import keras
import tensorflow as tf

from as_introvae_tf import losses
from as_introvae_tf import precision
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


class _PerReplica:
  """A model attribute kept per thread (`model._replica_records`): each replica's step,
  traced in its own thread, sees its own value. Unset, it reads as `default()`."""

  def __init__(self, default):
    self.default = default

  def __set_name__(self, owner, name):
    self.name = name

  def __get__(self, model, owner=None):
    if model is None:
      return self
    records = model._replica_records  # pylint: disable=protected-access
    if not hasattr(records, self.name):
      setattr(records, self.name, self.default())
    return getattr(records, self.name)

  def __set__(self, model, value):
    setattr(model._replica_records, self.name, value)  # pylint: disable=protected-access


class IntrospectiveVAE(keras.Model):
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
    nan_policy: one of `NAN_POLICIES`.
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
    self.nan_policy = nan_policy
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
    # The first step whose losses or gradients were NaN/inf (-1: none yet) and which terms.
    self.first_non_finite_step = tf.Variable(
      -1,
      dtype=tf.int64,
      trainable=False,
      name="first_non_finite_step",
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )
    self.non_finite_terms = tf.Variable(
      0,
      dtype=tf.int64,
      trainable=False,
      name="non_finite_terms",
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )
    # skip_batch: batches skipped so far, and how many in a row up to the last step.
    self.skipped_batches = tf.Variable(
      0,
      dtype=tf.int64,
      trainable=False,
      name="skipped_batches",
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )
    self.consecutive_skipped = tf.Variable(
      0,
      dtype=tf.int64,
      trainable=False,
      name="consecutive_skipped",
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )
    self._replica_records = threading.local()
    self._vae_trackers = {
      name: self.trackers.get(name) or keras.metrics.Mean(name=name) for name in VAE_METRIC_NAMES
    }

  # --- Keras plumbing ------------------------------------------------------------------------

  def compile(self, encoder_optimizer, decoder_optimizer, **kwargs):
    """Compiles with one optimizer per network (built here, inside the strategy scope).

    Optimizers may be `keras.optimizers.LossScaleOptimizer`s (mixed_float16; all or none).
    """
    super().compile(optimizer=None, **kwargs)
    self.encoder_optimizer = encoder_optimizer
    self.decoder_optimizer = decoder_optimizer
    self.encoder_optimizer.build(self.encoder.trainable_variables)
    self.decoder_optimizer.build(self.decoder.trainable_variables)
    self._add_loss_scale_trackers(encoder_optimizer)

  def _add_loss_scale_trackers(self, optimizer):
    """With loss scaling, a `loss_scale_<network>` metric for every `grad_norm_<network>`."""
    if not precision.is_loss_scaled(optimizer):
      return
    for trackers in (self.trackers, self._vae_trackers):
      for name in list(trackers):
        if name.startswith("grad_norm_"):
          scale_name = "loss_scale_" + name[len("grad_norm_") :]
          trackers[scale_name] = self.trackers.get(scale_name) or keras.metrics.Mean(
            name=scale_name
          )

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

  def sampling_decoder(self):
    """The decoder used for samples: the EMA decoder if there is one, else the decoder."""
    return self.ema_decoder if self.ema_decoder is not None else self.decoder

  def decoder_moving_averages(self):
    """The EMA of the decoder's trainable weights that the decoder optimizer keeps (Keras
    `use_ema=True`): {id(decoder trainable variable): its moving-average variable}. The one
    place that reads Keras' private attribute for it (`sync_ema_decoder`, the export).

    Raises:
      ValueError: the decoder optimizer keeps no EMA (the run has `--ema_decay=0`), or none
        for one of the decoder's trainable variables (named).
    """
    optimizer = precision.unwrap(self.decoder_optimizer)
    averages = getattr(optimizer, "_model_variables_moving_average", None)
    if not averages:
      raise ValueError(
        "the decoder optimizer keeps no EMA of the decoder weights (use_ema=False: the run "
        "was trained with --ema_decay=0)"
      )
    variables = optimizer._trainable_variables  # pylint: disable=protected-access
    by_id = {id(v): a for v, a in zip(variables, averages)}
    missing = [v.path for v in self.decoder.trainable_variables if id(v) not in by_id]
    if missing:
      raise ValueError(f"the decoder optimizer holds no EMA for {missing[:3]}")
    return by_id

  def sync_ema_decoder(self):
    """Copies the EMA of the decoder weights (`decoder_moving_averages`) and the current
    BatchNorm statistics into `ema_decoder`. Call outside `train_step` (cross-replica
    context) before sampling."""
    if self.ema_decoder is None:
      return
    averages = self.decoder_moving_averages()
    targets = self.ema_decoder.variables
    sources = self.decoder.variables
    if [v.shape for v in targets] != [v.shape for v in sources]:
      raise ValueError(
        "ema_decoder and decoder have different variables; build both with the same builder"
      )
    for target, source in zip(targets, sources):
      target.assign(averages.get(id(source), source))

  def prepare_for_inference(self, batches):
    """Makes the model ready for inference (`training=False`) and for a checkpoint.

    1. Copies the decoder EMA into `ema_decoder` (`sync_ema_decoder`).
    2. Re-estimates every BatchNorm's moving mean/variance as the plain average over `batches`
       of real data: the encoder on the images, the decoder and the EMA decoder on posterior
       samples of them. Training never reads these statistics (every training pass uses batch
       statistics, as the PyTorch reference in train mode), but each of its passes (on real,
       reconstructed and fake inputs) overwrites them, so without this step inference-mode
       outputs depend on whichever pass ran last (fakes, for the encoder).

    Args:
      batches: list of float32 `[B, *example_shape]` arrays of real training data (a few
        batches; more give steadier statistics). Call outside `train_step`.
    """
    self.sync_ema_decoder()
    encoder_bn = batchnorm_layers(self.encoder)
    decoders = [d for d in (self.decoder, self.ema_decoder) if d is not None]
    if not encoder_bn and not any(batchnorm_layers(d) for d in decoders):
      return
    average_batchnorm(encoder_bn, [lambda x=x: self.encoder(x, training=True) for x in batches])
    latents = []
    for k, x in enumerate(batches):
      mu, logvar = self.encoder(x, training=False)
      eps = tf.random.stateless_normal(tf.shape(mu), seed=[self.seed, 7919 + k])
      latents.append(losses.reparameterize(mu, logvar, eps))
    for decoder in decoders:
      average_batchnorm(
        batchnorm_layers(decoder), [lambda z=z, d=decoder: d(z, training=True) for z in latents]
      )

  # --- Step helpers ---------------------------------------------------------------------------

  # What `_apply` records during one replica's step, read back by `train_step`: gradient norms,
  # loss-scale overflow flags, loss scales and the skip_batch flag. Per replica thread because
  # MirroredStrategy traces the replicas' steps in threads that take turns at every
  # cross-replica call (each optimizer update), so plain attributes would be reset and
  # overwritten by the other replicas mid-step.
  _grad_norms = _PerReplica(dict)
  _overflow = _PerReplica(dict)
  _loss_scales = _PerReplica(dict)
  _batch_ok = _PerReplica(lambda: tf.constant(True))  # skip_batch: may this batch still apply?

  def _normal(self, index):
    """Standard normal noise `[local_batch, z_dim]` for this replica, a function of
    (seed, step, index) drawn for the global batch so that it does not depend on the number
    of replicas."""
    seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.step, tf.int64) * 16 + index])
    full = tf.random.stateless_normal([self.global_batch_size, self.z_dim], seed=seed)
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
      return full
    local = self.global_batch_size // ctx.num_replicas_in_sync
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
    return full[start : start + local]

  def _mean(self, per_example):
    """Global-batch mean of a `[B_local]` term (sum over this replica / global batch)."""
    return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)

  @staticmethod
  def _global_sum(value):
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
      return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)

  def _gather_live(self, t):
    """`[B_global, D]`: all replicas' `t [B_local, D]`, only this replica's slice differentiable.

    Gathered with a SUM all-reduce of zero-padded slices (float32 only, one collective).
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
      return t
    n = tf.shape(t)[0]
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * n
    after = self.global_batch_size - start - n
    padded = tf.pad(tf.stop_gradient(t), [[start, after], [0, 0]])
    gathered = ctx.all_reduce(tf.distribute.ReduceOp.SUM, padded)
    return tf.concat([gathered[:start], t, gathered[start + n :]], axis=0)

  @property
  def fused_passes(self):
    """Whether independent batches go through a network as one concatenated batch
    (`fuse_passes`: "auto" = only for networks without BatchNorm, whose per-example outputs do
    not depend on the rest of the batch; there the result is mathematically identical)."""
    if self.fuse_passes == "auto":
      return not (batchnorm_layers(self.encoder) or batchnorm_layers(self.decoder))
    return self.fuse_passes == "on"

  def _passes(self, network, inputs):
    """`[network(x, training=True) for x in inputs]`, as one pass when `fused_passes`."""
    if not self.fused_passes or len(inputs) == 1:
      return [network(x, training=True) for x in inputs]
    sizes = [tf.shape(x)[0] for x in inputs]
    out = network(tf.concat(inputs, axis=0), training=True)
    if isinstance(out, (list, tuple)):
      parts = [tf.split(o, sizes, axis=0) for o in out]
      return [tuple(p[i] for p in parts) for i in range(len(inputs))]
    return tf.split(out, sizes, axis=0)

  def _encode_sample_decode_pair(self, x_a, eps_a, x_b, eps_b, stop_z=False):
    """`_encode_sample_decode` of two batches (rec and fake), fused when `fused_passes`."""
    (mu_a, logvar_a), (mu_b, logvar_b) = self._passes(self.encoder, [x_a, x_b])
    z_a = losses.reparameterize(mu_a, logvar_a, eps_a)
    z_b = losses.reparameterize(mu_b, logvar_b, eps_b)
    if stop_z:
      z_a, z_b = tf.stop_gradient(z_a), tf.stop_gradient(z_b)
    y_a, y_b = self._passes(self.decoder, [z_a, z_b])
    return (mu_a, logvar_a, y_a), (mu_b, logvar_b, y_b)

  def _report(self, trackers, values, weight=None):
    for name, value in values.items():
      if name in self._overflow:  # loss scaling: skipped updates do not enter the mean
        ok = tf.math.is_finite(value)
        if weight is not None:
          ok = tf.logical_and(ok, weight > 0)
        trackers[name].update_state(
          tf.where(ok, value, 0.0), sample_weight=tf.cast(ok, value.dtype)
        )
      elif weight is not None:  # a skipped batch (weight 0) leaves the running means as they were
        trackers[name].update_state(
          tf.where(weight > 0, value, tf.zeros_like(value)), sample_weight=weight
        )
      else:
        trackers[name].update_state(value)
    return {name: tracker.result() for name, tracker in trackers.items()}

  # --- The steps ------------------------------------------------------------------------------

  def train_step(self, data):
    x = data[0] if isinstance(data, (tuple, list)) else data
    step = tf.identity(self.step)
    self._grad_norms, self._overflow, self._loss_scales = {}, {}, {}
    self._batch_ok = tf.constant(True)
    logs = self.vae_step(x) if self.vae_phase else self.introspective_step(x)
    logs.update(self._grad_norms)
    trackers = self._vae_trackers if self.vae_phase else self.trackers
    if self.nan_policy == "skip_batch":
      ok = self._batch_ok
      self.skipped_batches.assign_add(tf.cast(tf.logical_not(ok), tf.int64))
      self.consecutive_skipped.assign(
        tf.where(ok, tf.constant(0, tf.int64), self.consecutive_skipped + 1)
      )
      # Terms that are non-finite although every update of the batch was applied (a log-only
      # term) cannot be skipped: they are recorded, and training stops as with "stop".
      self._record_non_finite(step, {k: tf.where(ok, v, tf.zeros_like(v)) for k, v in logs.items()})
      logs.update(self._loss_scales)
      logs = self._report(trackers, logs, weight=tf.cast(ok, tf.float32))
    else:
      self._record_non_finite(step, logs)
      logs.update(self._loss_scales)
      logs = self._report(trackers, logs)
    strategy = tf.distribute.get_strategy()
    if (
      isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
      and strategy.extended._in_multi_worker_mode()
    ):  # pylint: disable=protected-access
      # Keras 3.15.1's fit reduces train_step outputs with reduce(MEAN, v, axis=0) across
      # workers, which fails on scalars (tensorflow/tensorflow#72388): give them a batch axis.
      logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
    return logs

  def _gradients(self, tape, loss, variables, optimizer):
    """`d loss / d variables` for `optimizer` (scaled by its loss scale under mixed_float16)."""
    return precision.gradients(tape, loss, variables, optimizer)

  def _minimize(self, tape, loss, variables, optimizer, name):
    """One update of `variables` by `optimizer` from `d loss / d variables` (`_gradients`),
    recorded as `grad_norm_<name>` (`_apply`)."""
    self._apply(optimizer, self._gradients(tape, loss, variables, optimizer), variables, name, loss)

  def _apply(self, optimizer, grads, variables, name, loss=None):
    """Applies one network's gradients and records their global norm (`grad_norm_<name>`).

    With a `LossScaleOptimizer` (mixed_float16), `grads` carry the loss scale (`_gradients`):
    the norm is divided by it, so `grad_norm_<name>` is the norm of the true gradients. If any
    gradient is NaN/inf the optimizer skips the update and halves the scale; such a step is an
    overflow (recorded in `_overflow`, not a divergence) while the scale is > 1. At a scale
    <= 1 the gradients are non-finite without amplification (TF 2's own dynamic loss scale
    stopped at 1), and the NaN/inf record reports `grad_norm_<name>`. Under MirroredStrategy,
    Keras' `LossScaleOptimizer` decides from the first replica's gradients alone, so the
    replicas first agree (any non-finite replica makes every replica's gradients NaN) and all
    skip together instead of summing an inf into the update.

    With `nan_policy="skip_batch"` the update is applied only if this batch's updates so far,
    `loss` and (without loss scaling, whose overflows are the optimizer's business) `grads`
    are finite on every replica (`_require_finite`); otherwise the optimizer only counts the
    step (`iterations` + 1, so the step counter and learning-rate schedule stay on the batch
    count) and leaves weights, moments, loss scale and EMA untouched. Once a phase of a batch is
    skipped, the later phases of that batch are skipped too; a phase applied before the bad one
    stays applied (it was finite).
    """
    key = f"grad_norm_{name}"
    scaled = precision.is_loss_scaled(optimizer)
    norm = None
    if not scaled:
      norm = self._grad_norms[key] = tf.linalg.global_norm(grads)
    else:
      scale = tf.convert_to_tensor(optimizer.dynamic_scale)
      finite = optimizer.check_finite(grads)
      ctx = tf.distribute.get_replica_context()
      if ctx is not None and ctx.num_replicas_in_sync > 1:
        bad = ctx.all_reduce(
          tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.float32)
        )
        finite = bad == 0
        poison = tf.where(finite, 1.0, float("nan"))
        grads = [None if g is None else g * tf.cast(poison, g.dtype) for g in grads]
      self._grad_norms[key] = tf.linalg.global_norm(grads) / scale
      self._overflow[key] = tf.logical_and(tf.logical_not(finite), scale > 1.0)
    if self.nan_policy == "skip_batch":
      self._require_finite(self._finite_checks(loss, grads, optimizer, norm))
      _apply_if(self._batch_ok, optimizer, list(zip(grads, variables)))
    else:
      optimizer.apply_gradients(zip(grads, variables))
    if scaled:
      self._loss_scales[f"loss_scale_{name}"] = tf.convert_to_tensor(optimizer.dynamic_scale)

  def _finite_checks(self, loss, grads, optimizer, norm=None):
    """What `skip_batch` requires finite for one update: the loss, and the gradients (their
    global norm `norm`, computed if None) unless a `LossScaleOptimizer` handles their overflow
    (skip and halve the scale) itself. Nothing (no work) under `nan_policy="stop"`."""
    if self.nan_policy != "skip_batch":
      return []
    checks = [] if loss is None else [loss]
    if not precision.is_loss_scaled(optimizer):
      checks.append(tf.linalg.global_norm(grads) if norm is None else norm)
    return checks

  def _require_finite(self, tensors):
    """`skip_batch`: the rest of this batch's updates need `tensors` finite on every replica."""
    if not tensors:  # nothing to check, or nan_policy="stop" (`_finite_checks`)
      return
    bad = tf.cast(
      tf.logical_not(
        tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]))
      ),
      tf.float32,
    )
    bad = self._global_sum(bad)
    self._batch_ok = tf.logical_and(self._batch_ok, bad == 0)

  def _record_non_finite(self, step, logs):
    """Remembers the first step at which any loss term or gradient norm was NaN/inf.

    A gradient norm that is non-finite because a loss-scaled update overflowed (`_overflow`:
    skipped by the optimizer, scale > 1) does not count: that is dynamic loss scaling at work.
    """

    def bad_term(name):
      bad = tf.logical_not(tf.reduce_all(tf.math.is_finite(logs[name])))
      if name in self._overflow:
        bad = tf.logical_and(bad, tf.logical_not(self._overflow[name]))
      return bad

    bad = tf.cast(tf.stack([bad_term(name) for name in logs]), tf.float32)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, bad)  # > 0: bad on some replica
    weights = tf.constant([2 ** self.checked_terms.index(name) for name in logs], tf.int64)
    bits = tf.reduce_sum(tf.cast(bad > 0, tf.int64) * weights)
    first = (self.first_non_finite_step < 0) & (bits > 0)
    self.first_non_finite_step.assign(
      tf.where(first, tf.cast(step, tf.int64), self.first_non_finite_step)
    )
    self.non_finite_terms.assign(tf.where(first, bits, self.non_finite_terms))

  def non_finite_report(self):
    """(step, [term names]) of the first non-finite step, or None. Call outside train_step."""
    step = int(self.first_non_finite_step.numpy())
    if step < 0:
      return None
    bits = int(self.non_finite_terms.numpy())
    return step, [name for i, name in enumerate(self.checked_terms) if bits >> i & 1]

  def vae_step(self, x):
    """One ELBO step on E and D.

    The `vae` method: `L = s * mean(beta_rec * rec + beta_kl * kl)`. The warm-up
    of the introspective methods (`vae_phase`) with `warmup_loss="reference"`:
    `L = mean(beta_rec * rec + beta_kl * kl)` (no `s`), as the reference's `num_vae` loop
    (`train_soft_intro_vae_2d.py`: `loss = beta_rec * loss_rec + beta_kl * loss_kl`).
    """
    hp = self.hparams
    scale = self.scale if (self.method == "vae" or hp.warmup_loss == "scaled") else 1.0
    eps = self._normal(1)
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
      loss = self._mean(
        losses.vae_loss(rec, kl, scale=scale, beta_rec=hp.beta_rec, beta_kl=hp.beta_kl)
      )
    if scaled:
      grads_e = self._gradients(tape, loss, e_vars, self.encoder_optimizer)
      grads_d = self._gradients(tape, loss, d_vars, self.decoder_optimizer)
      del tape
    else:
      grads = tape.gradient(loss, e_vars + d_vars)
      grads_e, grads_d = grads[: len(e_vars)], grads[len(e_vars) :]
    # skip_batch: one joint update, all or none
    self._require_finite(
      self._finite_checks(loss, grads_e, self.encoder_optimizer)
      + self._finite_checks(None, grads_d, self.decoder_optimizer)
    )
    self._apply(self.encoder_optimizer, grads_e, e_vars, "encoder", loss)
    self._apply(self.decoder_optimizer, grads_d, d_vars, "decoder")
    return {
      "loss": tf.reduce_mean(
        losses.vae_loss(rec, kl, scale=scale, beta_rec=hp.beta_rec, beta_kl=hp.beta_kl)
      ),
      "rec": tf.reduce_mean(rec),
      "kl_real": tf.reduce_mean(kl),
    }

  def introspective_step(self, x):
    raise NotImplementedError  # Each method defines its own.

  # --- Helpers of the baselines' steps ------------------------------------------------------

  @staticmethod
  def _replica_slice(full):
    """This replica's contiguous slice of a global-batch tensor `[B_global, ...]`."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
      return full
    local = tf.shape(full)[0] // ctx.num_replicas_in_sync
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
    return full[start : start + local]

  def _uniform(self, index):
    """U[0, 1) noise `[local_batch]`, drawn for the global batch from (seed, step, index) like
    `_normal` (use indices that `_normal` does not use in the same step)."""
    seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.step, tf.int64) * 16 + index])
    return self._replica_slice(tf.random.stateless_uniform([self.global_batch_size], seed=seed))

  def _global_batch_mean(self, per_example):
    """The global-batch mean of a `[B_local]` term, the same value on every replica."""
    return self._global_sum(tf.reduce_sum(per_example)) / self.global_batch_size

  # --- Hooks for run.py (see the module docstring) -------------------------------------------

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


"""`--method` name -> model class."""


def _apply_if(ok, optimizer, grads_and_vars):
  """`optimizer.apply_gradients(grads_and_vars)` if `ok` (a bool scalar, equal on every
  replica), else `optimizer.iterations += 1` only.

  Under a strategy that needs `merge_call` (MirroredStrategy on CPUs/GPUs without XLA), a
  `tf.cond` in replica context cannot contain the optimizer's `merge_call`, so the condition is
  taken in cross-replica context and the update re-entered per replica, as Keras'
  `LossScaleOptimizer` skips non-finite steps.
  """

  def apply():
    optimizer.apply_gradients(grads_and_vars)

  def skip():
    optimizer.iterations.assign_add(1)

  if tf.__internal__.distribute.strategy_supports_no_merge_call():
    tf.cond(ok, apply, skip)
    return

  def cross_replica(distribution, ok, grads_and_vars):
    ok = distribution.experimental_local_results(ok)[0]

    def apply_each():
      distribution.extended.call_for_each_replica(
        lambda gv: optimizer.apply_gradients(gv), args=(grads_and_vars,)
      )

    tf.cond(ok, apply_each, skip)

  tf.distribute.get_replica_context().merge_call(cross_replica, args=(ok, grads_and_vars))


def batchnorm_layers(network):
  return [
    layer
    for layer in network._flatten_layers()  # pylint: disable=protected-access
    if isinstance(layer, keras.layers.BatchNormalization)
  ]


def average_batchnorm(layers, calls):
  """Sets the moving statistics of `layers` to the average over `calls` (forward passes in
  training mode), using momentum k / (k + 1) at the k-th pass; restores the momentum after."""
  if not layers:
    return
  momentum = [layer.momentum for layer in layers]
  try:
    for k, call in enumerate(calls):
      for layer in layers:
        layer.momentum = k / (k + 1.0)
      call()
  finally:
    for layer, m in zip(layers, momentum):
      layer.momentum = m
