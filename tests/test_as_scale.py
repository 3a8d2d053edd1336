"""AS-IntroVAE's sweep knobs: `--as_scale` (the AS-Distance between the mean and the sum over
pairs), `--anneal_steps` (a short run on a long run's schedule) and the scalars that show
whether the AS-Distance acts (`as_share_rec`, `as_share_fake`, `as_factor`)."""

import dataclasses
import math

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import data
from as_introvae_tf import hparams
from as_introvae_tf import methods
from as_introvae_tf import networks
from as_introvae_tf import run

B, D = 8, 2
BASE = hparams.LossHParams(
  beta_rec=0.2,
  beta_kl=0.3,
  beta_neg=0.9,
  as_kernel="product",
  as_squash="none",
  as_reduction_encoder="mean",
  as_reduction_decoder="mean",
  anneal="linear",
)


def _model(hp, total=10, lr=0.05):
  encoder = networks.build_mlp_encoder(z_dim=D, num_hidden=16, num_layers=1)
  decoder = networks.build_mlp_decoder(z_dim=D, num_hidden=16, num_layers=1)
  model = methods.get("as_introvae")(
    encoder,
    decoder,
    example_shape=(2,),
    global_batch_size=B,
    hparams=hp,
    total_steps=total,
    seed=3,
  )
  model.compile(keras.optimizers.SGD(lr), keras.optimizers.SGD(lr))
  return model


def _posteriors(seed=0):
  rng = np.random.default_rng(seed)
  mu_r, mu_f = rng.normal(size=(B, D)), rng.normal(size=(B, D)) + 0.5
  lv_r, lv_f = rng.normal(scale=0.3, size=(B, D)) - 1.0, rng.normal(scale=0.3, size=(B, D)) - 1.0
  return [a.astype(np.float32) for a in (mu_r, lv_r, mu_f, lv_f)]


def _np_pair_sum(mu_a, lv_a, mu_b, lv_b, kernel):
  """The AS-Distance SUMMED over all pairs (and dimensions for per_dim), float64, from SciPy
  densities (product) or the reference's 1-D kernel written out (per_dim)."""
  va, vb = np.exp(lv_a.astype(np.float64)), np.exp(lv_b.astype(np.float64))
  mu_a, mu_b = mu_a.astype(np.float64), mu_b.astype(np.float64)

  def block(m1, v1, m2, v2):
    total = 0.0
    for i in range(len(m1)):
      for j in range(len(m2)):
        if kernel == "product":
          total += scipy.stats.multivariate_normal.pdf(
            m1[i], mean=m2[j], cov=np.diag(v1[i] + v2[j])
          )
        else:
          v = v1[i] + v2[j]
          total += np.sum(np.exp(-0.5 * (m1[i] - m2[j]) ** 2 / v) / np.sqrt(v))
    return total

  return block(mu_a, va, mu_a, va) + block(mu_b, vb, mu_b, vb) - 2 * block(mu_a, va, mu_b, vb)


@pytest.mark.parametrize("kernel", ["product", "per_dim"])
def test_as_scale_multiplies_the_mean_and_at_b_squared_gives_the_numpy_sum(kernel):
  post = _posteriors()
  want_sum = _np_pair_sum(*post, kernel)
  pairs = B * B * (D if kernel == "per_dim" else 1)  # what the mean divides by
  for scale, want in ((1.0, want_sum / pairs), (7.5, 7.5 * want_sum / pairs), (pairs, want_sum)):
    hp = dataclasses.replace(BASE, as_kernel=kernel, as_scale=float(scale))
    got = _model(hp)._as_distance(*post, reduction="mean")
    np.testing.assert_allclose(float(got), want, rtol=2e-4)


def _one_step_weights(hp, batch, lr=0.05):
  keras.utils.set_random_seed(0)
  model = _model(hp, lr=lr)
  ds = tf.data.Dataset.from_tensors(batch).repeat()
  hist = model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False).history
  return [v.numpy() for v in model.encoder.weights + model.decoder.weights], hist


def test_as_scale_b_squared_with_mean_reductions_trains_as_the_sum_reductions():
  """A whole step (both phases, AS live: c = 0 at step 0) with the mean times B*B equals the
  step with sum reductions in both phases; and the scale really moves the weights (at a
  fresh network's nearly equal posteriors the AS-Distance is small: SGD with rate 1 makes
  its part of the update visible)."""
  batch = data.sample_2d("8gaussians", B, np.random.default_rng(1))
  hp_sum = dataclasses.replace(BASE, as_reduction_encoder="sum", as_reduction_decoder="sum")
  hp_scaled = dataclasses.replace(BASE, as_scale=float(B * B))
  w_sum, h_sum = _one_step_weights(hp_sum, batch, lr=1.0)
  w_scaled, h_scaled = _one_step_weights(hp_scaled, batch, lr=1.0)
  w_mean, _ = _one_step_weights(BASE, batch, lr=1.0)
  np.testing.assert_allclose(h_scaled["as_distance"], h_sum["as_distance"], rtol=1e-5)
  moved = max(np.abs(a - b).max() for a, b in zip(w_sum, w_mean))
  assert moved > 1e-5
  for a, b in zip(w_scaled, w_sum):
    np.testing.assert_allclose(a, b, rtol=0, atol=0.01 * moved)


def test_as_logs_match_their_formulas_in_numpy():
  model = _model(BASE)
  kl_rec, kl_fake = np.array([0.5, 1.5], np.float32), np.array([2.0, 4.0], np.float32)
  for c, as_d in ((0.3, 0.8), (0.0, 0.0), (1.0, 5.0), (0.0, 2.0)):
    got = {
      k: float(v)
      for k, v in model._as_logs(tf.constant(as_d), tf.constant(c), kl_rec, kl_fake).items()
    }
    weighted = (1 - c) * as_d
    share = lambda kl: weighted / (c * kl.mean() + weighted) if weighted else 0.0  # noqa: E731
    np.testing.assert_allclose(got["as_share_rec"], share(kl_rec), rtol=1e-6)
    np.testing.assert_allclose(got["as_share_fake"], share(kl_fake), rtol=1e-6)
    # s = 1/2 for 2-D data (losses.input_scale): exp(-2 * s * beta_neg * (1 - c) * AS)
    np.testing.assert_allclose(got["as_factor"], math.exp(-2 * 0.5 * 0.9 * weighted), rtol=1e-6)
    assert got["as_distance"] == pytest.approx(as_d) and got["c"] == pytest.approx(c)


def test_a_training_step_reports_the_as_scalars():
  batch = data.sample_2d("8gaussians", B, np.random.default_rng(2))
  _, hist = _one_step_weights(dataclasses.replace(BASE, as_scale=100.0), batch)
  c, as_d = hist["c"][0], hist["as_distance"][0]
  assert c == 0.0 and as_d > 0  # step 0: c = 0, the AS-Distance alone in the exponents
  assert hist["as_share_rec"][0] == pytest.approx(1.0) == hist["as_share_fake"][0]
  assert hist["as_factor"][0] == pytest.approx(math.exp(-0.9 * as_d), rel=1e-5)


def _config(**changes):
  config = config_lib.from_flagfile("configs/8gaussians_as_introvae.flags")
  return config.replace(workdir="unused", **changes).validate()


@pytest.mark.parametrize(
  "anneal,origin", [("linear", "start"), ("tanh", "start"), ("linear", "warmup_end")]
)
def test_a_short_run_with_anneal_steps_follows_the_long_runs_c_and_learning_rate(anneal, origin):
  """`--train_steps=8000 --anneal_steps=30000` = the 30000-step schedule, stopped at 8000."""
  long_run = _config(train_steps=30000, anneal=anneal, anneal_origin=origin)
  short_run = _config(train_steps=8000, anneal_steps=30000, anneal=anneal, anneal_origin=origin)
  spec = data.parse_dataset("8gaussians", None, None)
  strategy = tf.distribute.get_strategy()
  models = [run.build_model(cfg, spec, strategy) for cfg in (long_run, short_run)]
  rates = [run.learning_rate(cfg) for cfg in (long_run, short_run)]
  plain = run.build_model(long_run.replace(train_steps=8000), spec, strategy)
  for step in (0, 1999, 2000, 3001, 5999, 6000, 7999):
    cs = []
    for model in models + [plain]:
      model.encoder_optimizer.iterations.assign(step)
      cs.append(float(model._coefficient()))
    assert cs[0] == cs[1], (step, cs)
    if 2000 < step < 6000:  # the 8000-step run's own T anneals faster
      assert cs[2] > cs[1]
    assert float(rates[0](step)) == float(rates[1](step))
  assert float(rates[1](7999)) == pytest.approx(long_run.lr)  # both decay only at 10000
  assert float(rates[0](10000)) == pytest.approx(0.1 * long_run.lr)


@pytest.mark.parametrize(
  "changes,message",
  [
    (dict(as_scale=0.0), "--as_scale must be a finite number > 0"),
    (dict(as_scale=float("inf")), "--as_scale must be a finite number > 0"),
    (dict(anneal_steps=-1), "--anneal_steps must be an integer >= 0"),
    (
      dict(anneal_steps=1000, anneal_origin="warmup_end"),
      "--anneal_steps=1000 must exceed --num_vae=2000",
    ),
  ],
)
def test_bad_as_scale_and_anneal_steps_are_config_errors(changes, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    _config(**changes)
