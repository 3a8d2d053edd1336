"""AS-IntroVAE's loss terms: the AS-Distance, the annealing of `c`, and the surrogates that
carry the AS-Distance's gradient into the encoder and decoder losses (AS-IntroVAE eq. 5-9).

Pure functions: tensors in, tensors out, no variables, no randomness. The AS-Distance (a squared
MMD over the whole batch) returns a scalar. Sources: AS-IntroVAE = Lu et al., ACML 2022
(eq. 5-9, https://proceedings.mlr.press/v189/changjie23a.html) and the reference code
`LOUEY233/AS-IntroVAE` (`A_VAE.py`, `utils.py`).
"""

from __future__ import annotations

import functools
import math

import tensorflow as tf
import tensorflow_probability as tfp

from as_introvae_tf.config import ANNEAL as ANNEAL_MODES
from as_introvae_tf.config import AS_KERNELS
from as_introvae_tf.hparams import AS_XLA_MODES  # noqa: F401  (losses.AS_XLA_MODES)
from as_introvae_tf.config import REDUCTIONS

__all__ = [
  "AS_KERNELS",
  "AS_XLA_MODES",
  "ANNEAL_MODES",
  "REDUCTIONS",
  "annealing_coefficient",
  "as_distance",
  "as_encoder_surrogate",
  "as_decoder_term",
]


tfd = tfp.distributions


def annealing_coefficient(step, total_steps, mode="linear"):
  """The KL weight `c` of AS-IntroVAE; the AS-Distance weight is `1 - c`.

  * `linear` (paper eq. 9): `c = min(5 i / T, 1)`;
  * `tanh` (reference `get_coef(..., mode='tanh')`, what `A_VAE.py` runs): `min(tanh(5 i / T), 1)`.

  Args:
    step: the annealing iteration `i` (int or scalar tensor, >= 0); the caller picks its
      origin (AS-IntroVAE: the run's first step, or the warm-up's end with
      `--anneal_origin=warmup_end`).
    total_steps: `T`, the annealing horizon in iterations (> 0): the run's length (or
      `--anneal_steps` when set), less the warm-up with `--anneal_origin=warmup_end`.
    mode: `"linear"` or `"tanh"`.

  Returns:
    float32 scalar in [0, 1].

  Raises:
    ValueError: unknown `mode`.
  """
  if mode not in ANNEAL_MODES:
    raise ValueError(f"anneal mode must be one of {ANNEAL_MODES}, got {mode!r}")
  x = 5.0 * tf.cast(step, tf.float32) / float(total_steps)
  if mode == "tanh":
    x = tf.tanh(x)
  return tf.minimum(x, 1.0)


def _per_dim_kernel(mu_a, var_a, mu_b, var_b):
  """`[Na, Nb, D]` 1-D kernels `exp(-0.5 (mu_a - mu_b)^2 / (v_a + v_b)) / sqrt(v_a + v_b)`.

  The plain expression, kept as the independent form the tests differentiate."""
  var = var_a[:, None, :] + var_b[None, :, :]
  diff = mu_a[:, None, :] - mu_b[None, :, :]
  return tf.exp(-0.5 * tf.square(diff) / var) * tf.math.rsqrt(var)


def _product_log_kernel(mu_a, var_a, mu_b, var_b):
  """`[Na, Nb]` log of `N(mu_a; mu_b, S_a + S_b)`, the probability-product kernel (TFP).

  The distribution-object form, kept as the independent form the tests differentiate."""
  scale = tf.sqrt(var_a[:, None, :] + var_b[None, :, :])
  kernel = tfd.Independent(tfd.Normal(loc=mu_b[None, :, :], scale=scale), 1)
  return kernel.log_prob(mu_a[:, None, :])


def _pair_count(mu_a, mu_b, *, kernel, reduction):
  """The divisor of a kernel block's reduction: `Na * Nb` (times `D` for `per_dim`) for
  `mean`, 1 for `sum`; float32 scalar."""
  if reduction != "mean":
    return tf.constant(1.0)
  count = tf.cast(tf.shape(mu_a)[0] * tf.shape(mu_b)[0], tf.float32)
  if kernel == "per_dim":
    count *= tf.cast(tf.shape(mu_a)[1], tf.float32)
  return count


def _pair_terms(mu_a, var_a, mu_b, var_b, log_shift, *, kernel):
  """The per-pair terms of a kernel block and of its gradient (see `_kernel_block`).

  Returns:
    `(k, d / V, d^2 / V, 1 / V)`: the kernel, `[Na, Nb, D]` for `per_dim` or `[Na, Nb, 1]`
    for `product` (times `exp(-log_shift)`), and the `[Na, Nb, D]` pair terms, with
    `d = mu_a - mu_b` and `V = v_a + v_b` per dimension.
  """
  inv = 1.0 / (var_a[:, None, :] + var_b[None, :, :])  # 1 / V          [Na, Nb, D]
  diff = mu_a[:, None, :] - mu_b[None, :, :]  # d
  ratio = diff * inv  # d / V
  sq = diff * ratio  # d^2 / V
  if kernel == "per_dim":
    return tf.exp(-0.5 * sq) * tf.sqrt(inv), ratio, sq, inv  # k: [Na, Nb, D]
  dim = tf.cast(tf.shape(mu_a)[1], tf.float32)
  log_k = (
    0.5 * tf.reduce_sum(tf.math.log(inv) - sq, axis=-1)
    - 0.5 * dim * math.log(2.0 * math.pi)
    - log_shift
  )
  return tf.exp(log_k)[:, :, None], ratio, sq, inv  # k: [Na, Nb, 1]


def _kernel_block(mu_a, var_a, mu_b, var_b, log_shift, *, kernel, reduction):
  """`R_ij k(a_i, b_j)` (times `exp(-log_shift)` for `product`) with a hand-fused gradient.

  One pass over the `[Na, Nb, D]` pairs computes the kernel values and keeps what the gradient
  needs; the gradient is written out (d = mu_a - mu_b, V = v_a + v_b, per dimension):
  `dk/dmu_a = -k d / V = -dk/dmu_b`, `dk/dv_a = dk/dv_b = 0.5 k (d^2 / V - 1) / V`, with k the
  1-D kernel (`per_dim`, summed over d) or the whole D-dimensional kernel (`product`). The same
  values as autodiff of `_per_dim_kernel` / `_product_log_kernel` (tested), in about a third
  of the elementwise passes, and no distribution objects inside the `[Na, Nb, D]` work.

  Args:
    mu_a: float32 `[Na, D]`, the means of the first set of posteriors.
    var_a: float32 `[Na, D]`, their variances (> 0).
    mu_b: float32 `[Nb, D]`, the means of the second set.
    var_b: float32 `[Nb, D]`, their variances (> 0).
    log_shift: float32 scalar subtracted from every log-kernel (`product` only; a constant,
      no gradient).
    kernel: `"per_dim"` or `"product"`.
    reduction: `"mean"` or `"sum"` over i, j (and d for `per_dim`).

  Returns:
    float32 scalar.
  """
  count = _pair_count(mu_a, mu_b, kernel=kernel, reduction=reduction)

  @tf.custom_gradient
  def block(mu_a, var_a, mu_b, var_b):
    k, ratio, sq, inv = _pair_terms(mu_a, var_a, mu_b, var_b, log_shift, kernel=kernel)
    value = tf.reduce_sum(k) / count

    def grad(upstream):
      w = (upstream / count) * k
      g_mu = w * ratio  # d value / d mu_b; -that for mu_a
      g_var = 0.5 * w * (sq - 1.0) * inv  # d value / d v_a = d / d v_b
      return (
        -tf.reduce_sum(g_mu, axis=1),
        tf.reduce_sum(g_var, axis=1),
        tf.reduce_sum(g_mu, axis=0),
        tf.reduce_sum(g_var, axis=0),
      )

    return value, grad

  return block(mu_a, var_a, mu_b, var_b)


def _blocks_value_and_grads(mu_a, var_a, mu_b, var_b, log_shift, *, kernel, reduction):
  """`AS = R k(a, a) + R k(b, b) - 2 R k(a, b)` (times `exp(-log_shift)` for `product`) and
  its gradients with respect to `mu_a, var_a, mu_b, var_b`, in one pass over each block.

  The same terms as `_kernel_block` (its docstring has the gradient formulas). The gradients
  are computed with the value, since training always needs them: XLA (`_xla_blocks`) then
  fuses each block's kernel, value and gradient reductions into a few loops over the pairs,
  without writing any `[Na, Nb, D]` tensor to memory. The two symmetric blocks use
  `k(a_i, a_j) = k(a_j, a_i)`: their kernel is symmetric and `g_mu` antisymmetric, so the
  gradient of a batch passed on both sides is twice the reduction over one axis (one
  reduction instead of two, exact).

  Returns:
    (value, (d/dmu_a, d/dvar_a, d/dmu_b, d/dvar_b)), all float32.
  """
  pairs = ((mu_a, var_a), (mu_b, var_b))
  value = tf.constant(0.0)
  grads = [tf.zeros_like(mu_a), tf.zeros_like(var_a), tf.zeros_like(mu_b), tf.zeros_like(var_b)]
  for i, j, weight in ((0, 0, 1.0), (1, 1, 1.0), (0, 1, -2.0)):
    (m_i, v_i), (m_j, v_j) = pairs[i], pairs[j]
    count = _pair_count(m_i, m_j, kernel=kernel, reduction=reduction)
    k, ratio, sq, inv = _pair_terms(m_i, v_i, m_j, v_j, log_shift, kernel=kernel)
    w = (weight / count) * k
    value += tf.reduce_sum(w)
    g_mu = w * ratio  # d / d mu_j; -that for mu_i
    g_var = 0.5 * w * (sq - 1.0) * inv  # d / d v_i = d / d v_j
    if i == j:
      grads[2 * i] += -2.0 * tf.reduce_sum(g_mu, axis=1)
      grads[2 * i + 1] += 2.0 * tf.reduce_sum(g_var, axis=1)
    else:
      grads[2 * i] += -tf.reduce_sum(g_mu, axis=1)
      grads[2 * i + 1] += tf.reduce_sum(g_var, axis=1)
      grads[2 * j] += tf.reduce_sum(g_mu, axis=0)
      grads[2 * j + 1] += tf.reduce_sum(g_var, axis=0)
  return value, tuple(grads)


@functools.lru_cache(maxsize=None)
def _xla_blocks(kernel, reduction):
  """`_blocks_value_and_grads` for one kernel and reduction as an XLA-compiled `tf.function`
  (one per process; it compiles once per input shape). Without autograph: the function has no
  tensor-dependent Python control flow (its loop is over three Python tuples, its branches on
  the string arguments), and converting it cost about 0.3 CPU s at every process start."""
  return tf.function(
    functools.partial(_blocks_value_and_grads, kernel=kernel, reduction=reduction),
    jit_compile=True,
    reduce_retracing=True,
    autograph=False,
  )


def _xla_as_blocks(mu_a, var_a, mu_b, var_b, log_shift, *, kernel, reduction):
  """The three blocks of `as_distance` computed by `_xla_blocks`, differentiable (the
  gradients come with the value; the backward pass only scales them)."""

  @tf.custom_gradient
  def blocks(mu_a, var_a, mu_b, var_b):
    value, grads = _xla_blocks(kernel, reduction)(mu_a, var_a, mu_b, var_b, log_shift)

    def grad(upstream):
      return tuple(upstream * g for g in grads)

    return value, grad

  return blocks(mu_a, var_a, mu_b, var_b)


def as_distance(mu_a, logvar_a, mu_b, logvar_b, *, kernel="per_dim", reduction="mean", xla=False):
  """The AS-Distance between two batches of Gaussian posteriors (AS-IntroVAE eq. 7).

  A squared MMD with a kernel on Gaussians:
  `AS = R_ij k(a_i, a_j) + R_ij k(b_i, b_j) - 2 R_ij k(a_i, b_j)`, R the reduction.

  Kernels:
    * `product` (the paper, eq. 8 with its missing exponential restored): the probability-
      product kernel `k(a, b) = N(mu_a; mu_b, S_a + S_b)` in all D dimensions. Computed from
      log-densities with the largest one factored out; exact where float32 can represent the
      kernel (small latents such as the 2-D models; it underflows to 0 near D = 128).
      With `mean` it is >= 0 (the kernel is positive definite).
    * `per_dim` (the reference code's `Gaussian_Distance`/`reduce_with_choice`): a 1-D kernel
      per latent dimension without the `sqrt(2 pi)`,
      `exp(-0.5 (mu_a - mu_b)^2 / (v_a + v_b)) / sqrt(v_a + v_b)`, reduced over i, j and d.

  Args:
    mu_a: float32 `[Na, D]`, posterior means of the reconstructions.
    logvar_a: float32 `[Na, D]`, their posterior log-variances.
    mu_b: float32 `[Nb, D]`, posterior means of the fakes.
    logvar_b: float32 `[Nb, D]`, their posterior log-variances.
    kernel: `"product"` or `"per_dim"`.
    reduction: `"mean"` (decoder phase of the reference; the MMD estimate) or `"sum"` (the
      reference's encoder phase, a sum over all pairs and dimensions).
    xla: compute the `[Na, Nb, D]` pair terms, value and gradients, in one XLA-compiled
      function (`_xla_blocks`; the caller's step need not be compiled) instead of
      `_kernel_block`'s TF ops. The same formulas; XLA fuses the elementwise passes, which
      TF's CPU kernels run one by one through memory (about 3x faster on a CPU at
      B = 512, D = 2; docs/benchmark.md). Equal to float32 rounding
      (`test_as_distance_xla_equals_the_plain_blocks`).

  Returns:
    float32 scalar (density units of z for `product`; dimensionless sums for `per_dim`).

  Raises:
    ValueError: unknown `kernel` or `reduction`.
  """
  if kernel not in AS_KERNELS:
    raise ValueError(f"kernel must be one of {AS_KERNELS}, got {kernel!r}")
  if reduction not in REDUCTIONS:
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
  var_a, var_b = tf.exp(logvar_a), tf.exp(logvar_b)
  blocks = functools.partial(_kernel_block, kernel=kernel, reduction=reduction)
  if kernel == "per_dim":
    zero = tf.constant(0.0)
    if xla:
      return _xla_as_blocks(mu_a, var_a, mu_b, var_b, zero, kernel=kernel, reduction=reduction)
    return (
      blocks(mu_a, var_a, mu_a, var_a, zero)
      + blocks(mu_b, var_b, mu_b, var_b, zero)
      - 2.0 * blocks(mu_a, var_a, mu_b, var_b, zero)
    )
  # product: factor out the largest log-kernel, exp(m) * sum exp(l - m) (exact in value and
  # gradient). By Cauchy-Schwarz (the kernel is positive definite) k(a, b) <=
  # sqrt(k(a, a) k(b, b)), so the largest is on a diagonal: log k(a, a) =
  # -0.5 sum_d log(4 pi v_a,d), found in O(N D) instead of over all pairs.
  diagonal = -0.5 * tf.reduce_sum(
    tf.math.log(4.0 * math.pi * tf.concat([var_a, var_b], 0)), axis=-1
  )
  m = tf.stop_gradient(tf.reduce_max(diagonal))
  if xla:
    return tf.exp(m) * _xla_as_blocks(
      mu_a, var_a, mu_b, var_b, m, kernel=kernel, reduction=reduction
    )
  total = (
    blocks(mu_a, var_a, mu_a, var_a, m)
    + blocks(mu_b, var_b, mu_b, var_b, m)
    - 2.0 * blocks(mu_a, var_a, mu_b, var_b, m)
  )
  return tf.exp(m) * total


def as_encoder_surrogate(as_distance_value, mean_exp_elbo, *, c, scale, beta_neg):
  """The encoder-phase term that carries the AS-Distance's gradient: `0.25 * slope * AS`.

  In the encoder loss the AS-Distance (a batch-level scalar) enters every example's expELBO
  exponent, `exp(-2 s beta_neg (1 - c) AS + ...)`, whose batch mean is weighted by 0.25 (two
  expELBOs, each 0.5 * 0.5 in `soft_introvae_encoder_loss`). Its derivative in AS is
  `0.25 * slope` with `slope = -2 s beta_neg (1 - c) * mean(exp_rec + exp_fake)`; the slope is
  held constant (`sg`), so `d(0.25 * slope * AS) / dAS` is that derivative while the expELBOs
  themselves take `sg(AS)` (A_VAE.py's encoder loss, differentiated through AS).

  Args:
    as_distance_value: float32 scalar, the encoder-phase AS-Distance (differentiable).
    mean_exp_elbo: float32 scalar, the global-batch mean of `exp_elbo_rec + exp_elbo_fake`.
    c: float32 scalar, the annealed KL weight (`annealing_coefficient`).
    scale: `s`, Python float (`input_scale`).
    beta_neg: the expELBO's KL weight.

  Returns:
    float32 scalar, to add to the encoder's global-batch mean loss.
  """
  slope = -2.0 * scale * beta_neg * (1.0 - c) * tf.stop_gradient(mean_exp_elbo)
  return 0.25 * slope * as_distance_value


def as_decoder_term(as_distance_value, *, c, scale, beta_kl):
  """The decoder-phase AS-Distance term `s * 0.5 * beta_kl * (1 - c) * AS`: the AS term of the
  decoder loss of AS-IntroVAE eq. 9 with `A_VAE.py`'s weight `0.5 * beta_kl` (linear in AS, so
  its gradient needs no surrogate).

  Args:
    as_distance_value: float32 scalar, the decoder-phase AS-Distance.
    c: float32 scalar, the annealed KL weight (`annealing_coefficient`).
    scale: `s`, Python float (`input_scale`).
    beta_kl: the KL weight of the decoder loss.

  Returns:
    float32 scalar, to add to the decoder's global-batch mean loss.
  """
  return scale * 0.5 * beta_kl * (1.0 - c) * as_distance_value
