"""How a method's step applies its updates: gradients under loss scaling, the NaN/inf policy
(`--nan_policy`: record and stop, or skip the batch) and the per-step records behind the
`grad_norm_*` and `loss_scale_*` metrics.

`UpdatePolicy` is a mixin of `methods.base.IntrospectiveVAE`. A method's step calls its public
part: `minimize` for one update from one loss, or `gradients` + `require_finite` + `apply_update`
when several updates come from one pass and must be applied or skipped together (AVAE, the VAE
step), and reads `batch_ok` for state it updates itself (AVAE's PID state). `train_step`
(`base.py`) wraps the method's step in `_begin_updates` / `_end_updates`.

Mixed precision (`precision.py`): with mixed_float16 the optimizers are `LossScaleOptimizer`s:
gradients are taken of the scaled loss (`precision.gradients`), the reported `grad_norm_*` are
the unscaled norms, and an update skipped because its scaled gradients overflowed is not a
divergence (see `apply_update`).
"""

from __future__ import annotations

import threading

import keras
import tensorflow as tf

from as_introvae_tf import distribute
from as_introvae_tf import precision


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


class UpdatePolicy:
  """The update machinery of a model (a mixin of `IntrospectiveVAE`, which calls
  `_init_update_policy` in its `__init__` and defines `checked_terms`).

  Attributes (int64 scalar variables, one value for all replicas):
    first_non_finite_step: the first step whose losses or gradients were NaN/inf (-1: none).
    non_finite_terms: which terms then: bit i = `checked_terms[i]`.
    skipped_batches: `nan_policy="skip_batch"`: batches skipped so far.
    consecutive_skipped: how many of them in a row up to the last step.
  """

  # What `apply_update` records during one replica's step, read back by `_end_updates`:
  # gradient norms, loss-scale overflow flags, loss scales and the skip_batch flag. Per
  # replica thread because MirroredStrategy traces the replicas' steps in threads that take
  # turns at every cross-replica call (each optimizer update), so plain attributes would be
  # reset and overwritten by the other replicas mid-step.
  _grad_norms = _PerReplica(dict)
  _overflow = _PerReplica(dict)
  _loss_scales = _PerReplica(dict)
  batch_ok = _PerReplica(lambda: tf.constant(True))
  """bool scalar: whether this batch's updates may still be applied (always True with
  `nan_policy="stop"`; False once `require_finite` found a non-finite value on any replica)."""

  def _init_update_policy(self, nan_policy):
    self.nan_policy = nan_policy

    def counter(name, value):
      return tf.Variable(
        value,
        dtype=tf.int64,
        trainable=False,
        name=name,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
      )

    self.first_non_finite_step = counter("first_non_finite_step", -1)
    self.non_finite_terms = counter("non_finite_terms", 0)
    self.skipped_batches = counter("skipped_batches", 0)
    self.consecutive_skipped = counter("consecutive_skipped", 0)
    self._replica_records = threading.local()

  # --- What a method's step calls ------------------------------------------------------------

  def gradients(self, tape, loss, variables, optimizer):
    """`d loss / d variables` (a list like `variables`) for `optimizer`, taken of the loss
    times its loss scale under mixed_float16 (`apply_update` divides the reported norm by it).

    Args:
      tape: the `tf.GradientTape` that recorded `loss` (persistent if used again).
      loss: float32 scalar, this replica's share of the global-batch loss (`loss_mean`).
      variables: the trainable variables `optimizer` updates.
      optimizer: a Keras optimizer, possibly a `LossScaleOptimizer`.
    """
    return precision.gradients(tape, loss, variables, optimizer)

  def minimize(self, tape, loss, variables, optimizer, name):
    """One update of `variables` by `optimizer` from `d loss / d variables` (`gradients`),
    recorded as `grad_norm_<name>` (`apply_update`; `name` a str such as "encoder")."""
    self.apply_update(
      optimizer, self.gradients(tape, loss, variables, optimizer), variables, name, loss
    )

  def require_finite(self, *updates):
    """`nan_policy="skip_batch"`: the rest of this batch's updates, these included, are
    applied only if every one of `updates` is finite on every replica; each is a tuple
    `(loss, grads, optimizer)`: `loss` a float32 scalar or None, `grads` from `gradients`
    (checked unless `optimizer` is a `LossScaleOptimizer`, whose overflows it handles itself).
    Call it before the `apply_update`s of updates that come from one pass and must be applied
    or skipped together. No work with `nan_policy="stop"`."""
    checks = []
    for loss, grads, optimizer in updates:
      checks += self._finite_checks(loss, grads, optimizer)
    self._require_finite(checks)

  def apply_update(self, optimizer, grads, variables, name, loss=None):
    """Applies one network's gradients and records their global norm (`grad_norm_<name>`).

    Args:
      optimizer: the Keras optimizer of `variables`.
      grads: gradients from `gradients`, one per variable (None for none).
      variables: the variables to update.
      name: str, the metric's suffix (`grad_norm_<name>`, `loss_scale_<name>`).
      loss: optional float32 scalar whose finiteness `skip_batch` also requires.

    With a `LossScaleOptimizer` (mixed_float16), `grads` carry the loss scale: the norm is
    divided by it, so `grad_norm_<name>` is the norm of the true gradients. If any gradient is
    NaN/inf the optimizer skips the update and halves the scale; such a step is an overflow
    (recorded in `_overflow`, not a divergence) while the scale is > 1. At a scale <= 1 the
    gradients are non-finite without amplification (TF 2's own dynamic loss scale stopped at
    1), and the NaN/inf record reports `grad_norm_<name>`. Under MirroredStrategy, Keras'
    `LossScaleOptimizer` decides from the first replica's gradients alone, so the replicas
    first agree (any non-finite replica makes every replica's gradients NaN) and all skip
    together instead of summing an inf into the update.

    With `nan_policy="skip_batch"` the update is applied only if this batch's updates so far,
    `loss` and (without loss scaling, whose overflows are the optimizer's business) `grads`
    are finite on every replica (`require_finite`); otherwise the optimizer only counts the
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
      if distribute.num_replicas() > 1:
        finite = distribute.global_sum(tf.cast(tf.logical_not(finite), tf.float32)) == 0
        poison = tf.where(finite, 1.0, float("nan"))
        grads = [None if g is None else g * tf.cast(poison, g.dtype) for g in grads]
      self._grad_norms[key] = tf.linalg.global_norm(grads) / scale
      self._overflow[key] = tf.logical_and(tf.logical_not(finite), scale > 1.0)
    if self.nan_policy == "skip_batch":
      self._require_finite(self._finite_checks(loss, grads, optimizer, norm))
      _apply_if(self.batch_ok, optimizer, list(zip(grads, variables)))
    else:
      optimizer.apply_gradients(zip(grads, variables))
    if scaled:
      self._loss_scales[f"loss_scale_{name}"] = tf.convert_to_tensor(optimizer.dynamic_scale)

  def non_finite_report(self):
    """(step, [term names]) of the first non-finite step, or None. Call outside train_step."""
    step = int(self.first_non_finite_step.numpy())
    if step < 0:
      return None
    bits = int(self.non_finite_terms.numpy())
    return step, [name for i, name in enumerate(self.checked_terms) if bits >> i & 1]

  # --- The step's frame (`train_step`) and its records ---------------------------------------

  def _add_loss_scale_trackers(self, optimizer, tracker_dicts):
    """With loss scaling, a `loss_scale_<network>` metric for every `grad_norm_<network>` of
    each dict of `tracker_dicts` ({name: keras.metrics.Mean}; the first one's are shared)."""
    if not precision.is_loss_scaled(optimizer):
      return
    first = tracker_dicts[0]
    for trackers in tracker_dicts:
      for name in list(trackers):
        if name.startswith("grad_norm_"):
          scale_name = "loss_scale_" + name[len("grad_norm_") :]
          trackers[scale_name] = first.get(scale_name) or keras.metrics.Mean(name=scale_name)

  def _begin_updates(self):
    self._grad_norms, self._overflow, self._loss_scales = {}, {}, {}
    self.batch_ok = tf.constant(True)

  def _end_updates(self, step, logs, trackers):
    """The step's metrics (`logs` of the method's step plus the records of its updates) after
    the NaN/inf policy: the running means of `trackers` ({name: keras.metrics.Mean})."""
    logs.update(self._grad_norms)
    if self.nan_policy == "skip_batch":
      ok = self.batch_ok
      self.skipped_batches.assign_add(tf.cast(tf.logical_not(ok), tf.int64))
      self.consecutive_skipped.assign(
        tf.where(ok, tf.constant(0, tf.int64), self.consecutive_skipped + 1)
      )
      # Terms that are non-finite although every update of the batch was applied (a log-only
      # term) cannot be skipped: they are recorded, and training stops as with "stop".
      self._record_non_finite(step, {k: tf.where(ok, v, tf.zeros_like(v)) for k, v in logs.items()})
      logs.update(self._loss_scales)
      return self._report(trackers, logs, weight=tf.cast(ok, tf.float32))
    self._record_non_finite(step, logs)
    logs.update(self._loss_scales)
    return self._report(trackers, logs)

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
    bad = distribute.global_sum(bad)
    self.batch_ok = tf.logical_and(self.batch_ok, bad == 0)

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
    bad = distribute.global_sum(bad)  # > 0: bad on some replica
    weights = tf.constant([2 ** self.checked_terms.index(name) for name in logs], tf.int64)
    bits = tf.reduce_sum(tf.cast(bad > 0, tf.int64) * weights)
    first = (self.first_non_finite_step < 0) & (bits > 0)
    self.first_non_finite_step.assign(
      tf.where(first, tf.cast(step, tf.int64), self.first_non_finite_step)
    )
    self.non_finite_terms.assign(tf.where(first, bits, self.non_finite_terms))

  def _report(self, trackers, values, weight=None):
    """Updates the running means `trackers` with `values` ({name: scalar}); returns them."""
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
