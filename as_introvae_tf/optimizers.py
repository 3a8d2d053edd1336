"""Adam as PyTorch computes it (the reference trainers' `torch.optim.Adam`).

Keras' Adam adds `epsilon` to `sqrt(v)` BEFORE the bias correction of the second moment:

  keras: p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
  torch: p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

(`torch.optim.Adam`, single-tensor path: `denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt)
.add_(eps)`; `step_size = lr / bias_correction1`). In PyTorch's terms Keras' epsilon is
`eps / sqrt(1 - b2^t)`: with eps = 1e-8 and b2 = 0.999 that is 3.2e-7 at t = 1 and 1e-8 only
after a few thousand steps, so the first steps of small gradients differ. `TorchAdam` is
`keras.optimizers.Adam` with PyTorch's update; its variables (and checkpoints) are Adam's.
"""

from __future__ import annotations

import keras
from keras import ops

from as_introvae_tf.hparams import ADAM_VARIANTS


@keras.saving.register_keras_serializable(package="as_introvae_tf")
class TorchAdam(keras.optimizers.Adam):
  """`keras.optimizers.Adam` with `torch.optim.Adam`'s update (see the module docstring).

  Same arguments as `keras.optimizers.Adam` (no `amsgrad`); `epsilon` defaults to PyTorch's
  1e-8. Works under `tf.distribute`, `LossScaleOptimizer` and `use_ema` like Adam.

  Raises:
    ValueError: `amsgrad=True` (not ported).
  """

  def __init__(
    self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, name="torch_adam", **kwargs
  ):
    if kwargs.get("amsgrad"):
      raise ValueError("TorchAdam does not implement amsgrad")
    super().__init__(
      learning_rate=learning_rate,
      beta_1=beta_1,
      beta_2=beta_2,
      epsilon=epsilon,
      name=name,
      **kwargs,
    )

  def update_step(self, gradient, variable, learning_rate):
    lr = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    step = ops.cast(self.iterations + 1, variable.dtype)
    bias_correction1 = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), step)
    bias_correction2 = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), step)
    m = self._momentums[self._get_variable_index(variable)]
    v = self._velocities[self._get_variable_index(variable)]
    self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
    self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
    denom = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_correction2)), self.epsilon)
    self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias_correction1), denom))


def adam(variant, learning_rate, *, beta_1=0.9, beta_2=0.999, epsilon=1e-8, **kwargs):
  """An Adam optimizer: `TorchAdam` for `variant="torch"`, else `keras.optimizers.Adam`.

  Raises:
    ValueError: unknown `variant`.
  """
  if variant not in ADAM_VARIANTS:
    raise ValueError(f"adam variant must be one of {ADAM_VARIANTS}; got {variant!r}")
  cls = TorchAdam if variant == "torch" else keras.optimizers.Adam
  return cls(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kwargs)
