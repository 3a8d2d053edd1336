"""Mixed precision (`--mixed_precision`): 16-bit compute in the networks, float32 everywhere else.

Policies (Keras dtype policies, set per layer by the network builders, never globally, so that
models of different precisions can live in one process):

  none            float32 compute and variables (the default).
  mixed_bfloat16  bfloat16 compute, float32 variables. bfloat16 has float32's exponent range,
                  so gradients neither underflow nor overflow: no loss scaling.
  mixed_float16   float16 compute, float32 variables, and dynamic loss scaling: every optimizer
                  is wrapped in `LossScaleOptimizer`.

What stays float32 under both mixed policies: every variable (so checkpoints are the same as a
float32 run's, and a mixed-precision run restores into a float32 model), the encoder's
`mu`/`logvar` head and the decoder's output layer (their layers have the float32 policy), so the
networks take and return float32; hence everything computed from their outputs: the
reparameterization noise and `z`, reconstruction errors, the KLs (TFP), the AS-Distance kernels,
expELBO, the baselines' L1 terms, the WGAN-GP critic head, its input gradient and penalty, every
loss sum and every logged metric. Only the hidden layers (matmuls/convolutions, BatchNorm
outputs, activations) run in 16 bits.

Loss scaling (mixed_float16): each tape's backward pass is seeded with the optimizer's current
scale (`gradients`), which equals differentiating `optimizer.scale_loss(loss)`; the optimizer
divides the gradients by the scale, skips the update if any gradient is NaN/inf (halving the
scale) and doubles the scale after 2000 finite steps (Keras' dynamic loss scaling).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from as_introvae_tf import config as config_lib

POLICIES = config_lib.MIXED_PRECISION
"""Values of `--mixed_precision`: none, mixed_float16, mixed_bfloat16."""

INITIAL_LOSS_SCALE = 2.0**15
"""Keras' default initial dynamic loss scale."""


def layer_dtype(mixed_precision):
  """The dtype policy to give the networks' hidden layers.

  Args:
    mixed_precision: one of `POLICIES`.

  Returns:
    None for "none" (Keras' global policy: float32), else the policy name.

  Raises:
    ValueError: an unknown value (the message lists `POLICIES`).
  """
  if mixed_precision not in POLICIES:
    raise ValueError(
      f"mixed_precision must be one of {', '.join(POLICIES)}; got {mixed_precision!r}"
    )
  return None if mixed_precision == "none" else mixed_precision


def needs_loss_scaling(mixed_precision):
  """True for mixed_float16: float16's range (6e-8 to 65504) needs dynamic loss scaling."""
  return mixed_precision == "mixed_float16"


class LossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
  """Keras' dynamic `LossScaleOptimizer`, except that a skipped update still counts as an
  iteration (`iterations` += 1).

  The project's step counter is the optimizer's `iterations`: it drives the noise seeds, the
  AS-IntroVAE annealing, the position in the data on resume and the checkpoint numbers, and the
  training loop stops at `--train_steps` by it. Keras' wrapper does not count a step whose
  update it skipped (non-finite gradients), which would make every overflow step repeat the
  previous step's noise and run the training past its budget.
  """

  def _stateful_handle_non_finite_grads(self):
    super()._stateful_handle_non_finite_grads()
    self.inner_optimizer.iterations.assign_add(1)


def wrap(optimizer, mixed_precision, initial_scale=None):
  """`optimizer` in a `LossScaleOptimizer` for mixed_float16, else `optimizer` itself.

  Args:
    optimizer: a `keras.optimizers.Optimizer` (not yet built).
    mixed_precision: one of `POLICIES`.
    initial_scale: initial loss scale; default `INITIAL_LOSS_SCALE`.
  """
  if not needs_loss_scaling(mixed_precision):
    return optimizer
  scale = INITIAL_LOSS_SCALE if initial_scale is None else initial_scale
  return LossScaleOptimizer(optimizer, initial_scale=scale)


def is_loss_scaled(optimizer):
  return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def unwrap(optimizer):
  """The optimizer that holds the update rule and its state (Adam's moments, the EMA)."""
  return optimizer.inner_optimizer if is_loss_scaled(optimizer) else optimizer


def gradients(tape, loss, variables, optimizer):
  """`d loss / d variables`, multiplied by the optimizer's loss scale if it has one.

  The backward pass is seeded with the scale instead of 1, which gives exactly the gradients
  of `optimizer.scale_loss(loss)` (a multiplication by the scale is the first op of that
  backward pass) without recording the product inside the tape. `optimizer.apply_gradients`
  divides them by the same scale.

  Args:
    tape: a `tf.GradientTape` that recorded `loss` (persistent if it is used again).
    loss: float32 scalar.
    variables: list of variables.
    optimizer: the optimizer that will apply the gradients.

  Returns:
    list of gradients (float32, like the variables), scaled by the loss scale for mixed_float16.
  """
  if not is_loss_scaled(optimizer):
    return tape.gradient(loss, variables)
  scale = tf.cast(tf.convert_to_tensor(optimizer.dynamic_scale), loss.dtype)
  return tape.gradient(loss, variables, output_gradients=scale)
