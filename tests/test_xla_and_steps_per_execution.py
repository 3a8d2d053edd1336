"""--jit_compile: the same steps as without it (given the same noise), refused with 2 replicas;
--steps_per_execution 1/2/4: bit-identical runs, checkpoints and log steps."""

import os

import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import run as run_lib
from as_introvae_tf import train_lib
from as_introvae_tf.methods import base

import harness

BATCH = 16
TOLERANCE = {
  "mixed_float16": (1e-2, 1e-4),
  "mixed_bfloat16": (5e-2, 1e-3),
}  # test_mixed_precision.py


# === XLA (--jit_compile) =======================================================================


def test_xla_draws_other_random_numbers_than_the_tf_kernels():
  """Why the XLA tests below feed both runs the same noise table: for the same seed, XLA's
  stateless RNG gives other numbers than TensorFlow's kernels (so a --jit_compile run is
  reproducible with itself, not equal to a run without it). If this ever fails, the noise
  table can go."""
  seed = tf.constant([3, 17], tf.int64)
  plain = tf.random.stateless_normal([64, 2], seed=seed)
  xla = tf.function(lambda s: tf.random.stateless_normal([64, 2], seed=s), jit_compile=True)
  assert np.abs(plain.numpy() - xla(seed).numpy()).max() > 0.1


@pytest.fixture
def noise_table(monkeypatch):
  """Replaces the stateless noise by a fixed table indexed by (step, index): the same numbers
  with and without XLA."""
  table = tf.constant(np.random.default_rng(7).standard_normal((8, 8, BATCH, 2)), tf.float32)

  def normal(self, index):
    return tf.gather(table, tf.cast(self.step, tf.int32))[index]

  monkeypatch.setattr(base.IntrospectiveVAE, "normal_noise", normal)


@pytest.mark.parametrize(
  "method,policy",
  # AS-IntroVAE's step is S-IntroVAE's (the same `introspective_step`) plus the AS-Distance
  # terms, so it covers S-IntroVAE's ops under XLA too. Float16 under XLA (20 CPU s) is
  # large: each half is checked on its own (float16 compute in test_mixed_precision.py, XLA
  # here in float32), and tools/device_check.sh runs it on a GPU.
  [("as_introvae", "none"), pytest.param("as_introvae", "mixed_float16", marks=pytest.mark.large)],
)
def test_jit_compile_gives_the_same_steps(method, policy, noise_table):
  """3 Adam steps (lr 1e-3) with and without XLA from the same weights, data and noise. XLA
  fuses element-wise ops and has its own exp/log/tanh, so results differ in the last bits.
  Measured: weights <= 9e-8 (float32) and 9.1e-7 (float16 compute); terms <= 4.3e-7 relative,
  except the AS-Distance, a difference of kernel sums: 1.7e-6 absolute (7.8e-4 relative), and
  <= 3.8e-4 relative with float16 compute. Tolerances: weights 1e-5; terms 1e-4 relative +
  1e-5 absolute (float32), `TOLERANCE` (float16)."""
  config = harness.small_2d_config(method, mixed_precision=policy, lr=1e-3)
  plain, xla = harness.build_model(config), harness.build_model(config.replace(jit_compile=True))
  assert xla.jit_compile and not plain.jit_compile
  for src, dst in zip(harness.weights(plain), harness.weights(xla)):
    dst.assign(src.numpy())
  batches = harness.batches_2d(3, seed=5)
  logs_plain, logs_xla = (
    harness.fit_batches(plain, batches, 3),
    harness.fit_batches(xla, batches, 3),
  )
  rtol_terms, atol_terms = (1e-4, 1e-5) if policy == "none" else TOLERANCE[policy]
  for a, b in zip(harness.weights(plain), harness.weights(xla)):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
  for name, value in logs_plain.items():
    # The AS-Distance's share of the exponent, w / (c KL + w), carries the AS-Distance's
    # relative difference times (1 - share): up to 7.8e-4 (measured: 4.3e-4).
    rtol = max(rtol_terms, 1e-3) if name.startswith("as_share") else rtol_terms
    np.testing.assert_allclose(logs_xla[name], value, rtol=rtol, atol=atol_terms, err_msg=name)
  assert xla.non_finite_report() is None


def test_jit_compile_is_refused_with_more_than_one_replica():
  with pytest.raises(config_lib.ConfigError, match="--jit_compile needs --strategy=default"):
    harness.small_2d_config(jit_compile=True, strategy="mirrored").validate()
  with pytest.raises(config_lib.ConfigError, match="--jit_compile needs --strategy=default"):
    harness.small_2d_config(jit_compile=True).validate(num_replicas=2)
  assert harness.small_2d_config(jit_compile=True).validate(num_replicas=1).jit_compile


# === --steps_per_execution =====================================================================


def test_steps_per_execution_gives_the_same_run(no_pictures, tmp_path):
  """k = 1 and 4 steps per tf.function call: the same weights (bit for bit), the same
  checkpoints, logs at the same steps, and the switch from the VAE warm-up at the same step
  (k = 2 adds nothing that 4 does not: both split the 12 steps into several calls)."""
  runs = {}
  for k in (1, 4):
    config = harness.small_2d_config(
      "soft_introvae",
      workdir=str(tmp_path / f"spe{k}"),
      batch_size=64,
      train_steps=12,
      num_vae=4,
      log_every_steps=4,
      checkpoint_every_steps=8,
      image_every_steps=100,
      ema_decay=0.0,
      steps_per_execution=k,
    )
    result = train_lib.train_and_evaluate(config)
    assert result["step"] == 12
    state = tf.train.get_checkpoint_state(str(tmp_path / f"spe{k}" / "checkpoints"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-8", "ckpt-12"]
    logdir = str(tmp_path / f"spe{k}" / "tensorboard" / "train")
    assert harness.event_steps(logdir, "train/rec") == [4, 8, 12]
    assert harness.event_steps(logdir, "train/kl_fake") == [8, 12]  # introspective from step 4 on
    runs[k] = [v.numpy() for v in harness.weights(run_lib.build_run(config).model)]
  for a, b in zip(runs[1], runs[4]):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["log_every_steps", "train_steps", "num_vae"])
def test_steps_per_execution_must_divide_the_step_counts(name):
  config = harness.small_2d_config(
    steps_per_execution=4, log_every_steps=8, train_steps=16, num_vae=4
  )
  config.validate()
  with pytest.raises(
    config_lib.ConfigError, match=f"--{name}=6 must be a multiple of --steps_per_execution=4"
  ):
    config.replace(**{name: 6}).validate()
