"""The plain hand-written steps the project's steps are compared with: S-IntroVAE (and
AS-IntroVAE with the 2-D config's options) written out as the reference's loop, with plain
autodiff, closed-form KL and no bookkeeping."""

import math


def plain_product_as_distance(tf, mu_a, logvar_a, mu_b, logvar_b):
  """The AS-Distance as a plain autodiff expression: the probability-product kernel
  `k(a, b) = N(mu_a; mu_b, S_a + S_b)` in all D dimensions, mean reductions, no squash (the
  2-D AS-IntroVAE config's options), no log-max shift and no hand-written gradient.

  Args:
    mu_a, logvar_a: float32 `[Na, D]`; mu_b, logvar_b: float32 `[Nb, D]`.

  Returns:
    float32 scalar (density units of z).
  """
  var_a, var_b = tf.exp(logvar_a), tf.exp(logvar_b)

  def block(m1, v1, m2, v2):
    var = v1[:, None, :] + v2[None, :, :]  # [N1, N2, D]
    diff = m1[:, None, :] - m2[None, :, :]
    log_k = -0.5 * tf.reduce_sum(tf.math.log(2.0 * math.pi * var) + tf.square(diff) / var, axis=-1)
    return tf.reduce_mean(tf.exp(log_k))

  return (
    block(mu_a, var_a, mu_a, var_a)
    + block(mu_b, var_b, mu_b, var_b)
    - 2.0 * block(mu_a, var_a, mu_b, var_b)
  )


def build_plain_step(
  tf,
  enc,
  dec,
  opt_e,
  opt_d,
  hp,
  batch_size,
  z_dim,
  scale,
  *,
  as_introvae=False,
  total_steps=1,
  noise=None,
):
  """A plain hand-written `tf.function` S-IntroVAE (or AS-IntroVAE) step on given networks.

  The reference's training loop written out directly (`train_soft_intro_vae*.py`; AS-IntroVAE
  as the 2-D config runs it): closed-form KL, autodiff everywhere, each batch through each
  network separately, no metric trackers, no NaN records, no gradient norms, no distribution
  objects. With `as_introvae` the KL of the rec/fake posteriors inside the adversarial terms
  becomes `c * KL + (1 - c) * AS` (`plain_product_as_distance`, over the batch), with
  `c = min(5 i / T, 1)` (linear annealing from the start; `i` = `opt_e.iterations`,
  `T` = `total_steps`), and the decoder loss gets `s * 0.5 * beta_kl * (1 - c) * AS`.

  Args:
    tf: the tensorflow module. enc: x -> (mu, logvar); dec: z -> x (Keras models, called
      with `training=True`). opt_e, opt_d: built Keras optimizers for them.
    hp: dict with `beta_rec`, `beta_kl`, `beta_neg` and optionally `gamma_r` (1e-8) and
      `rec_target_grad` (True: the target `x_r` of the encoder's expELBO is not detached, as
      in the reference and the project's default).
    batch_size: examples per step; z_dim: latent size; scale: `s` = 1 / input dimension.
    noise: None (six `tf.random.normal([batch_size, z_dim])` per step) or a callable
      returning the six noise tensors `z_p, eps, eps_r, eps_f, eps_r_d, eps_f_d` (the order of
      the project's `normal_noise(0..5)`; tests pass the project's noise to compare the losses).

  Returns:
    step(x) -> (loss_e, loss_d), float32 scalars: the batch means of the two losses.
  """
  beta_rec, beta_kl, beta_neg = hp["beta_rec"], hp["beta_kl"], hp["beta_neg"]
  gamma_r = hp.get("gamma_r", 1e-8)
  target_grad = hp.get("rec_target_grad", True)
  if noise is None:

    def noise():
      return [tf.random.normal([batch_size, z_dim]) for _ in range(6)]

  def kl(mu, logvar):
    return -0.5 * tf.reduce_sum(1.0 + logvar - tf.square(mu) - tf.exp(logvar), axis=1)

  def rec(x, y):
    return tf.reduce_sum(tf.reshape(tf.square(x - y), [tf.shape(x)[0], -1]), axis=1)

  def sample(mu, logvar, eps):
    return mu + tf.exp(0.5 * logvar) * eps

  @tf.function
  def step(x):
    z_p, eps, eps_r, eps_f, eps_r_d, eps_f_d = noise()
    if as_introvae:
      i = tf.cast(opt_e.iterations, tf.float32)
      c = tf.minimum(5.0 * i / float(total_steps), 1.0)
    with tf.GradientTape() as tape:  # encoder
      mu, logvar = enc(x, training=True)
      z = sample(mu, logvar, eps)
      fake = tf.stop_gradient(dec(z_p, training=True))
      x_r = dec(z, training=True)
      rec_real = rec(x, x_r)
      kl_real = kl(mu, logvar)
      x_r_sg = tf.stop_gradient(x_r)
      mu_r, logvar_r = enc(x_r_sg, training=True)
      mu_f, logvar_f = enc(fake, training=True)
      rr = rec(x_r if target_grad else x_r_sg, dec(sample(mu_r, logvar_r, eps_r), training=True))
      rf = rec(fake, dec(sample(mu_f, logvar_f, eps_f), training=True))
      kl_r, kl_f = kl(mu_r, logvar_r), kl(mu_f, logvar_f)
      if as_introvae:
        as_e = plain_product_as_distance(tf, mu_r, logvar_r, mu_f, logvar_f)
        kl_r = c * kl_r + (1.0 - c) * as_e
        kl_f = c * kl_f + (1.0 - c) * as_e
      exp_rec = tf.exp(-2.0 * scale * (beta_rec * rr + beta_neg * kl_r))
      exp_fake = tf.exp(-2.0 * scale * (beta_rec * rf + beta_neg * kl_f))
      loss_e = tf.reduce_mean(
        scale * (beta_rec * rec_real + beta_kl * kl_real) + 0.25 * (exp_rec + exp_fake)
      )
    opt_e.apply_gradients(
      zip(tape.gradient(loss_e, enc.trainable_variables), enc.trainable_variables)
    )
    with tf.GradientTape() as tape:  # decoder (the encoder frozen: only D is updated)
      fake = dec(z_p, training=True)
      x_r = dec(tf.stop_gradient(z), training=True)
      rec_real = rec(x, x_r)
      mu_r, logvar_r = enc(x_r, training=True)
      mu_f, logvar_f = enc(fake, training=True)
      rr = rec(
        tf.stop_gradient(x_r), dec(tf.stop_gradient(sample(mu_r, logvar_r, eps_r_d)), training=True)
      )
      rf = rec(
        tf.stop_gradient(fake),
        dec(tf.stop_gradient(sample(mu_f, logvar_f, eps_f_d)), training=True),
      )
      kl_r, kl_f = kl(mu_r, logvar_r), kl(mu_f, logvar_f)
      if as_introvae:
        kl_r, kl_f = c * kl_r, c * kl_f
      loss_d = tf.reduce_mean(
        scale
        * (
          beta_rec * rec_real + 0.5 * beta_kl * (kl_r + kl_f) + gamma_r * 0.5 * beta_rec * (rr + rf)
        )
      )
      if as_introvae:
        loss_d += (
          scale
          * 0.5
          * beta_kl
          * (1.0 - c)
          * plain_product_as_distance(tf, mu_r, logvar_r, mu_f, logvar_f)
        )
    opt_d.apply_gradients(
      zip(tape.gradient(loss_d, dec.trainable_variables), dec.trainable_variables)
    )
    return loss_e, loss_d

  return step


def build_reference_step(
  tf, keras, networks, hp, batch_size, z_dim=2, num_hidden=256, num_layers=3, lr=2e-4
):
  """`build_plain_step` on fresh 2-D MLPs (`networks.build_mlp_*`) with two Keras Adams
  (S-IntroVAE's 2-D reference training loop, `train_soft_intro_vae_2d.py`).

  Returns:
    (step(x) -> (loss_e, loss_d), encoder, decoder).
  """
  enc = networks.build_mlp_encoder(2, z_dim, num_hidden, num_layers)
  dec = networks.build_mlp_decoder(2, z_dim, num_hidden, num_layers)
  opt_e = keras.optimizers.Adam(lr)
  opt_d = keras.optimizers.Adam(lr)
  opt_e.build(enc.trainable_variables)
  opt_d.build(dec.trainable_variables)
  step = build_plain_step(tf, enc, dec, opt_e, opt_d, hp, batch_size, z_dim, 0.5)
  return step, enc, dec
