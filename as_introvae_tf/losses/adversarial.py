"""The baselines' loss terms, as pure functions in generator/discriminator pairs (TF-GAN's
`losses_impl.py` is the model).

* AVAE: Khan, Hayat & Barnes 2018, "Adversarial Training of Variational Auto-encoders for High
  Fidelity Image Generation" (https://arxiv.org/abs/1804.10323, eq. 2-15): the normalized L1
  errors, the encoder/generator/discriminator losses, the equilibrium error and the PID update
  of `k_t`.
* WGAN-GP: Gulrajani et al. 2017, "Improved Training of Wasserstein GANs"
  (https://arxiv.org/abs/1704.00028, Algorithm 1; authors' code
  https://github.com/igul222/improved_wgan_training): interpolates, the gradient penalty, the
  critic and generator losses.

Each function gives its formula and source equation; they return one value per example,
float32 `[B]`, except the PID update and the balance terms, which act on batch means (scalars).
"""

from __future__ import annotations

import tensorflow as tf

__all__ = [
  "l1_error",
  "avae_encoder_loss",
  "avae_generator_loss",
  "avae_discriminator_loss",
  "avae_balance_error",
  "avae_convergence",
  "pid_update",
  "interpolate",
  "critic_input_gradient_norm",
  "gradient_penalty",
  "wasserstein_critic_loss",
  "wasserstein_generator_loss",
]


def l1_error(x, y):
  """Mean absolute error per example: `(1 / |x|) * ||x - y||_1`.

  The normalized L1 distance of eq. 2 (`L_e`), eq. 7 (`L_d`, `L_g`, `L_v`)
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
  """Encoder loss per example: `L_enc = L_n + beta * L_s + gamma * L_e` (eq. 15).

  Args:
    l_n: float32 `[B]`, KL(q(z|x) || N(0, I)) in nats (`L_n`, eq. 3).
    l_s: float32 `[B]`, latent perceptual term `|E'(x) - E'(x_v)|` (eq. 9).
    l_e: float32 `[B]`, VAE reconstruction `|x - x_v|` (eq. 2).
    beta: weight of `L_s` (paper: 0.1).
    gamma: weight of `L_e` (paper: 0.1).

  Returns:
    float32 `[B]`.
  """
  return l_n + beta * l_s + gamma * l_e


def avae_generator_loss(l_g, l_v, l_s, l_e, *, alpha, beta, gamma):
  """Generator (decoder) loss per example:
  `L_gen = L_g + alpha * L_v + beta * L_s + gamma * L_e` (eq. 14).

  Args:
    l_g: float32 `[B]`, the discriminator's reconstruction error of fakes `|x_g - D'(E'(x_g))|`.
    l_v: float32 `[B]`, its reconstruction error of VAE reconstructions `|x_v - D'(E'(x_v))|`.
    l_s: as in `avae_encoder_loss`.
    l_e: as in `avae_encoder_loss`.
    alpha: weight of `L_v` (paper: 0.3).
    beta: weight of `L_s` (paper: 0.1).
    gamma: weight of `L_e` (paper: 0.1).

  Returns:
    float32 `[B]`.
  """
  return l_g + alpha * l_v + beta * l_s + gamma * l_e


def avae_discriminator_loss(l_d, l_g, l_v, *, k, alpha):
  """Discriminator loss per example: `L_dis = L_d - k_{t-1} * (L_g + alpha * L_v)`
  (eq. 13).

  Args:
    l_d: float32 `[B]`, the discriminator's reconstruction error of real data `|x - D'(E'(x))|`.
    l_g: as in `avae_generator_loss`.
    l_v: as in `avae_generator_loss`.
    k: float32 scalar, the equilibrium weight of the PREVIOUS step, `k_{t-1}`.
    alpha: weight of `L_v` (paper: 0.3).

  Returns:
    float32 `[B]`.
  """
  return l_d - k * (l_g + alpha * l_v)


def avae_balance_error(l_d, l_g, l_v, *, eta, alpha):
  """Equilibrium error `e_t = eta * L_d - (L_g + alpha * L_v)` (eq. 11).

  Eq. 11 is printed `eta L_d - L_g + alpha L_v`; the bracket is restored from eq. 10 (the target
  ratio `eta = (E[L_g] + alpha E[L_v]) / E[L_d]`, at which `e_t = 0`) and from the paper's
  convergence measure `L_d + |eta L_d - L_g - alpha L_v|`. With BEGAN's sign convention, `e_t > 0`
  (fakes reconstructed too well) raises `k_t`.

  Args:
    l_d: float32 scalar (a global-batch mean) or `[B]` tensor, `L_d`.
    l_g: the same for `L_g`.
    l_v: the same for `L_v`.
    eta: the diversity ratio (paper: 0.5).
    alpha: weight of `L_v` (paper: 0.3).

  Returns:
    float32, the shape of the inputs.
  """
  return eta * l_d - (l_g + alpha * l_v)


def avae_convergence(l_d, l_g, l_v, *, eta, alpha):
  """Convergence measure `L_d + |eta * L_d - L_g - alpha * L_v|` (Sec. 3.4;
  BEGAN's `M_global`). Lower is better.

  Args:
    l_d: as in `avae_balance_error`.
    l_g: as in `avae_balance_error`.
    l_v: as in `avae_balance_error`.
    eta: as in `avae_balance_error`.
    alpha: as in `avae_balance_error`.

  Returns:
    float32, the shape of the inputs.
  """
  return l_d + tf.abs(avae_balance_error(l_d, l_g, l_v, eta=eta, alpha=alpha))


def pid_update(k_prev, e_t, e_prev, e_prev2, *, ki, kp, kd, clip=True):
  """The PID update of the equilibrium weight (eq. 12), velocity form:

    k_t = k_{t-1} + ki * e_t + kp * (e_t - e_{t-1}) + kd * (e_t - 2 e_{t-1} + e_{t-2})

  The paper names lambda_1, lambda_2, lambda_3 the integral, proportional and differential
  gains and sets them to 1e-3, 1e-5, 1e-5 (Sec. 4); here `ki` = lambda_1, `kp` = lambda_2,
  `kd` = lambda_3. `k_t` itself is the accumulated (integral) state.

  Args:
    k_prev: float32 scalar, `k_{t-1}`.
    e_t: float32 scalar, the error of step t (`avae_balance_error`).
    e_prev: the same of step t-1.
    e_prev2: the same of step t-2.
    ki: integral gain (paper: 1e-3).
    kp: proportional gain (paper: 1e-5).
    kd: derivative gain (paper: 1e-5).
    clip: clip `k_t` to [0, 1] as BEGAN does (the AVAE paper extends BEGAN's equilibrium and
      does not say; `--avae_clip_k`).

  Returns:
    float32 scalar `k_t`.
  """
  k_t = k_prev + ki * e_t + kp * (e_t - e_prev) + kd * (e_t - 2.0 * e_prev + e_prev2)
  return tf.clip_by_value(k_t, 0.0, 1.0) if clip else k_t


def interpolate(x_real, x_fake, eps):
  """Random points on the lines between real and fake examples:
  `x_hat = eps * x_real + (1 - eps) * x_fake` (Gulrajani et al. 2017, Algorithm 1 line 6).

  Args:
    x_real: float32 `[B, ...]`.
    x_fake: float32, the shape of `x_real`.
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
    score_real: float32 `[B]` critic scores of real data.
    score_fake: float32 `[B]` critic scores of fakes.

  Returns:
    float32 `[B]`; its negative batch mean estimates the Wasserstein-1 distance.
  """
  return score_fake - score_real


def wasserstein_generator_loss(score_fake):
  """Generator loss per example: `-f(G(z))` (Gulrajani et al. 2017, Algorithm 1 line 12, the
  generator update; line 11 samples its z).

  Args:
    score_fake: float32 `[B]` critic scores of generated examples.

  Returns:
    float32 `[B]`.
  """
  return -score_fake
