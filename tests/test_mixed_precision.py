"""--mixed_precision on CPU: every method trains with 16-bit compute in the hidden layers and
float32 variables, network outputs and loss terms; the terms at the initial weights are close to
the float32 run's; mixed_float16's dynamic loss scaling skips overflowing updates without
tripping the NaN/inf record, while a NaN loss term still stops training; 1 and 2 replicas
agree; the flag's values. (The loss scale across a resume, evaluation and export:
test_mixed_precision_runs.py; --jit_compile and --steps_per_execution:
test_xla_and_steps_per_execution.py.)
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from as_introvae_tf import config as config_lib
from as_introvae_tf import data
from as_introvae_tf import hparams
from as_introvae_tf import methods
from as_introvae_tf import precision
from as_introvae_tf import run as run_lib
from as_introvae_tf import train_lib

import harness

METHODS = list(methods.names())  # the four introspective VAEs and the two baselines
MIXED = ("mixed_float16", "mixed_bfloat16")
COMPUTE = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
# |term_16 - term_32| <= RTOL * |term_32| + ATOL at the same initial weights, data and noise.
# The unit roundoff is 2^-11 = 4.9e-4 for float16 and 2^-8 = 3.9e-3 for bfloat16; a term comes
# out of 2-3 rounded layers, and differences such as `diff_kl` or `e_t` lose the relative
# precision of their operands, hence the absolute part. Measured on the 2-D MLPs (every method):
# float16 <= 3.4e-3 relative (as_distance), bfloat16 <= 1.2e-2 (kl_fake, kl_rec).
TOLERANCE = {"mixed_float16": (1e-2, 1e-4), "mixed_bfloat16": (5e-2, 1e-3)}
# Gradient norms: a ReLU whose input rounds across 0 switches a whole gradient path, so they
# move more: measured <= 2.0% (float16, the WGAN-GP generator, also without loss scaling) and
# <= 1.3% (bfloat16). A norm left scaled by the loss scale (2^15) would be far outside.
GRAD_NORM_RTOL = 5e-2


def _spy_on_terms(model):
  """Records the dtype of every raw term `train_step` reports (before the Mean trackers)."""
  seen = {}
  report = model._report

  def spy(trackers, values):
    seen.update({name: tf.as_dtype(value.dtype).name for name, value in values.items()})
    return report(trackers, values)

  model._report = spy
  return seen


# === Every method, both policies ===============================================================

_FLOAT32_REFERENCE = {}


def _float32_reference(method):
  """(initial weights, the logs of one step at learning rate 0) of the float32 model."""
  if method not in _FLOAT32_REFERENCE:
    model = harness.build_model(harness.small_2d_config(method))
    weights = [v.numpy() for v in harness.weights(model)]
    harness.set_lr(model, 0.0)
    _FLOAT32_REFERENCE[method] = weights, harness.fit_batches(model, harness.batches_2d(1), 1)
  return _FLOAT32_REFERENCE[method]


def _check_dtypes(model, policy):
  compute = COMPUTE[policy]
  assert all(v.dtype == "float32" for v in harness.weights(model))
  for net in harness.networks(model):
    head = net.layers[-2:] if "encoder" in net.name else net.layers[-1:]
    for layer in net.layers[1:]:
      expected = "float32" if layer in head else compute
      assert layer.compute_dtype == expected, (net.name, layer.name, layer.compute_dtype)
      assert layer.variable_dtype == "float32"
    inputs = np.zeros([2, *net.inputs[0].shape[1:]], np.float32)
    outputs = tf.nest.flatten(net(inputs, training=False))
    assert [o.dtype for o in outputs] == [tf.float32] * len(outputs), net.name


def _assert_close_to_float32(logs, logs32, policy):
  for name, value in logs32.items():
    rtol, atol = (GRAD_NORM_RTOL, 0.0) if name.startswith("grad_norm") else TOLERANCE[policy]
    np.testing.assert_allclose(logs[name], value, rtol=rtol, atol=atol, err_msg=name)


def _large_unless(keep):
  """pytest.param marks: `large` (run with --run_large) unless KEEP."""
  return () if keep else (pytest.mark.large,)


# No method looks at the policy's name: mixed_bfloat16 differs from mixed_float16 in the
# compute dtype and in taking the optimizers' unscaled path (no LossScaleOptimizer), which
# float32 runs for every method. The fast suite runs bfloat16 for AS-IntroVAE (every term of the
# introspective step, the AS-Distance's kernel included), the other methods with --run_large
# (about 21 CPU s in session 14's CPU log, docs/measurements.md), and S-IntroVAE, whose terms
# are AS-IntroVAE's without the AS-Distance (harness.method_params), with --run_large in both.
_EVERY_METHOD = [
  pytest.param(
    m,
    p,
    marks=_large_unless(m == "as_introvae" or (p == "mixed_float16" and m != "soft_introvae")),
  )
  for m in METHODS
  for p in MIXED
]


@pytest.mark.parametrize("method,policy", _EVERY_METHOD)
def test_every_method_trains_with_16_bit_compute_and_float32_terms(method, policy):
  """Variables, network outputs and every reported term are float32, the hidden layers compute
  in 16 bits; the terms of the first step (learning rate 0: every term is a forward value at
  the initial weights, the gradient norms are unscaled) are close to float32's; a few real
  steps stay finite."""
  weights32, logs32 = _float32_reference(method)
  model = harness.build_model(harness.small_2d_config(method, mixed_precision=policy))
  for v, w in zip(harness.weights(model), weights32):
    v.assign(w)
  assert all(
    precision.is_loss_scaled(o) == (policy == "mixed_float16") for o in harness.optimizers(model)
  )
  _check_dtypes(model, policy)
  seen = _spy_on_terms(model)
  harness.set_lr(model, 0.0)
  logs = harness.fit_batches(model, harness.batches_2d(1), 1)
  assert set(seen) == set(logs) and set(seen.values()) == {"float32"}, seen
  _assert_close_to_float32(logs, logs32, policy)
  scales = {k: v for k, v in logs.items() if k.startswith("loss_scale_")}
  if policy == "mixed_float16":
    assert set(scales) == {
      "loss_scale_" + k[len("grad_norm_") :] for k in logs32 if k.startswith("grad_norm_")
    }
    optimizers = dict(
      encoder=model.encoder_optimizer,
      critic=model.encoder_optimizer,
      decoder=model.decoder_optimizer,
      generator=model.decoder_optimizer,
      discriminator=getattr(model, "discriminator_optimizer", None),
    )
    for name, value in scales.items():  # WGAN-GP's critic starts with an overflow or two
      scale = float(optimizers[name[len("loss_scale_") :]].dynamic_scale.numpy())
      assert value == scale and 1 < scale <= precision.INITIAL_LOSS_SCALE, (name, value)
  else:
    assert not scales
  harness.set_lr(model, 1e-3)
  logs = harness.fit_batches(model, harness.batches_2d(4, seed=1), 4)
  assert all(np.isfinite(v) for v in logs.values()), logs
  assert int(model.step.numpy()) == 5 and model.non_finite_report() is None
  assert any(not np.array_equal(v.numpy(), w) for v, w in zip(model.encoder.weights, weights32))


@pytest.mark.parametrize(
  "policy",
  [
    "mixed_float16",
    # bfloat16 on these networks (17 CPU s) is large: the fast suite runs bfloat16 through
    # AS-IntroVAE's step on the 2-D networks (test_every_method_...[as_introvae-mixed_bfloat16]),
    # and tools/device_check.sh runs this case on a GPU.
    pytest.param("mixed_bfloat16", marks=pytest.mark.large),
  ],
)
def test_image_networks_on_fashion_mnist(policy):
  """The residual networks (convolutions, BatchNorm, pooling) in 16 bits on real images,
  against float32 from the same weights."""
  common = dict(
    dataset="fashion_mnist",
    filters=(4,),  # stem (convolution, BatchNorm, pooling), one residual block, head
    z_dim=4,
    batch_size=8,
    beta_neg=8.0,
    as_kernel="per_dim",
  )
  spec = data.parse_dataset("fashion_mnist", None, None)
  images = next(iter(data.build_dataset(spec, "test", 8, seed=0, shuffle=False))).numpy()[None]
  reference = harness.build_model(harness.small_2d_config("as_introvae", **common))
  harness.set_lr(reference, 0.0)
  logs32 = harness.fit_batches(reference, images, 1)
  model = harness.build_model(
    harness.small_2d_config("as_introvae", mixed_precision=policy, **common)
  )
  for v, w in zip(harness.weights(model), harness.weights(reference)):
    v.assign(w)
  _check_dtypes(model, policy)
  seen = _spy_on_terms(model)
  harness.set_lr(model, 0.0)
  logs = harness.fit_batches(model, images, 1)
  assert set(seen.values()) == {"float32"}, seen
  _assert_close_to_float32(logs, logs32, policy)
  harness.set_lr(model, 2e-4)
  logs = harness.fit_batches(model, images, 2)
  assert all(np.isfinite(v) for v in logs.values()) and model.non_finite_report() is None
  # Two scales add the channel-changing blocks (1x1 shortcut) and the pooling/upsampling
  # between scales: built (not trained) in 16 bits too.
  two_scales = dict(common, filters=(4, 8))
  _check_dtypes(
    harness.build_model(
      harness.small_2d_config("as_introvae", mixed_precision=policy, **two_scales)
    ),
    policy,
  )


def test_an_overflowing_step_is_skipped_and_training_goes_on(monkeypatch):
  """A loss scale of 2^40 makes the float16 backward pass overflow: the first updates are
  skipped (weights unchanged, scale halved each time, the step still counted), none of it is
  recorded as a divergence, and once the scale is low enough training proceeds."""
  monkeypatch.setattr(precision, "INITIAL_LOSS_SCALE", 2.0**40)
  model = harness.build_model(
    harness.small_2d_config("as_introvae", mixed_precision="mixed_float16")
  )
  before = [v.numpy() for v in harness.weights(model)]
  logs = harness.fit_batches(model, harness.batches_2d(1), 1)
  for v, b in zip(harness.weights(model), before):
    np.testing.assert_array_equal(v.numpy(), b)
  for optimizer in harness.optimizers(model):
    assert float(optimizer.dynamic_scale.numpy()) == 2.0**39
    assert int(optimizer.iterations.numpy()) == 1
  assert model.non_finite_report() is None
  assert all(np.isfinite(v) for v in logs.values()), logs
  assert logs["grad_norm_encoder"] == 0.0  # no applied update in the window to average

  logs = harness.fit_batches(model, harness.batches_2d(8, seed=2), 40)
  assert int(model.step.numpy()) == 41 and model.non_finite_report() is None
  assert all(np.isfinite(v) for v in logs.values()), logs
  scale = float(model.encoder_optimizer.dynamic_scale.numpy())
  assert scale <= 2.0**30  # at least ten more overflows were skipped on the way down
  assert 0 < logs["grad_norm_encoder"] < 100  # unscaled norms of the applied updates
  for v, b in zip(model.encoder.weights + model.decoder.weights, before):
    assert not np.array_equal(v.numpy(), b)


def test_overflows_in_a_real_training_run_do_not_stop_it(no_pictures, tmp_path, monkeypatch):
  monkeypatch.setattr(precision, "INITIAL_LOSS_SCALE", 2.0**40)
  config = harness.small_2d_config(
    "soft_introvae",
    mixed_precision="mixed_float16",
    workdir=str(tmp_path),
    batch_size=64,
    train_steps=8,
    log_every_steps=4,
    checkpoint_every_steps=4,
    image_every_steps=100,
    num_vae=2,
  )
  result = train_lib.train_and_evaluate(config)
  assert result["step"] == 8 and all(np.isfinite(v) for v in result["metrics"].values())
  assert result["metrics"]["loss_scale_encoder"] <= 2.0**34


def test_a_nan_loss_term_still_stops_training(no_pictures, tmp_path):
  model = harness.build_model(
    harness.small_2d_config("soft_introvae", mixed_precision="mixed_float16")
  )
  batch = harness.batches_2d(1)
  batch[0, 3] = np.nan  # a corrupt example: its reconstruction error is NaN
  harness.fit_batches(model, batch, 1)
  step, terms = model.non_finite_report()
  assert step == 0 and {"rec", "loss_encoder", "loss_decoder"} <= set(terms), terms

  config = harness.small_2d_config(
    "soft_introvae",
    mixed_precision="mixed_float16",
    workdir=str(tmp_path),
    batch_size=64,
    train_steps=40,
    log_every_steps=4,
    checkpoint_every_steps=4,
    image_every_steps=100,
    lr=1e30,
  )
  with pytest.raises(
    train_lib.TrainingDivergedError,
    match="non-finite values .NaN/inf. at(.|\n)*mixed_bfloat16 has float32's",
  ):
    train_lib.train_and_evaluate(config)


def _step_with_gradients(strategy, model, bad_replica):
  """One `apply_update` of the encoder optimizer under `strategy` with (scaled) gradients all equal
  to `replica + 1`, or NaN on replica `bad_replica`, then the NaN/inf record; returns each
  replica's recorded gradient norm."""
  variables = model.encoder.trainable_variables

  def replica_fn():
    ctx = tf.distribute.get_replica_context()
    replica = ctx.replica_id_in_sync_group
    grads = [
      tf.where(
        tf.equal(replica, bad_replica),
        float("nan"),
        tf.cast(replica + 1, tf.float32) * tf.ones_like(v),
      )
      for v in variables
    ]
    model._grad_norms, model._overflow, model._loss_scales = {}, {}, {}
    step = tf.identity(model.step)
    model.apply_update(model.encoder_optimizer, grads, variables, "encoder")
    model._record_non_finite(step, dict(model._grad_norms))
    return model._grad_norms["grad_norm_encoder"]

  return strategy.experimental_local_results(tf.function(lambda: strategy.run(replica_fn))())


def test_replicas_skip_together_when_one_overflows(two_replicas):
  """Keras' LossScaleOptimizer reads the finiteness of the first replica only; a NaN on the
  second replica alone must still skip the update everywhere (no NaN summed into the
  weights). At a loss scale <= 1 a non-finite gradient is reported as a divergence."""
  model = harness.build_model(
    harness.small_2d_config("soft_introvae", mixed_precision="mixed_float16"), two_replicas
  )
  optimizer = model.encoder_optimizer
  before = [v.numpy() for v in model.encoder.weights]
  _step_with_gradients(two_replicas, model, bad_replica=1)
  for v, b in zip(model.encoder.weights, before):
    np.testing.assert_array_equal(v.numpy(), b)
  assert float(optimizer.dynamic_scale.numpy()) == precision.INITIAL_LOSS_SCALE / 2
  assert int(optimizer.iterations.numpy()) == 1 and model.non_finite_report() is None

  # All finite: applied. The gradients given carry the scale (2^14 now): the recorded norms are
  # unscaled, each replica's own.
  norms = _step_with_gradients(two_replicas, model, bad_replica=-1)
  assert all(not np.array_equal(v.numpy(), b) for v, b in zip(model.encoder.weights, before))
  n = sum(int(np.prod(v.shape)) for v in model.encoder.trainable_variables)
  np.testing.assert_allclose(
    np.array(norms, np.float64), np.sqrt(n) * np.array([1, 2]) / 2**14, rtol=1e-6
  )

  optimizer.dynamic_scale.assign(1.0)
  _step_with_gradients(two_replicas, model, bad_replica=0)
  assert model.non_finite_report() == (2, ["grad_norm_encoder"])


def _build_sgd(config, strategy, lr=0.05):
  """The run's networks in its precision, compiled with (loss-scaled) SGD: unlike Adam's
  normalized first steps, SGD moves each weight in proportion to its gradient, so rounding
  differences stay proportionally small."""
  spec = data.parse_dataset(config.dataset, None, None)
  with strategy.scope():
    encoder, decoder = run_lib.build_networks(config, spec)
    model = methods.get(config.method)(
      encoder,
      decoder,
      example_shape=spec.shape,
      global_batch_size=config.batch_size,
      hparams=hparams.LossHParams(
        beta_rec=config.beta_rec,
        beta_kl=config.beta_kl,
        beta_neg=config.beta_neg,
        as_kernel=config.as_kernel,
      ),
      total_steps=config.train_steps,
      seed=config.seed,
    )
    model.compile(
      *(precision.wrap(keras.optimizers.SGD(lr), config.mixed_precision) for _ in range(2))
    )
  return model


@pytest.mark.parametrize(
  "method,policy",
  [
    # S-IntroVAE's step is AS-IntroVAE's without the AS terms (8 CPU s): large.
    pytest.param("soft_introvae", "mixed_float16", marks=pytest.mark.large),
    ("as_introvae", "mixed_float16"),
    # bfloat16 takes the unscaled optimizer path, whose replica agreement float32 checks
    # (test_models.py, test_baselines.py); bfloat16 adds coarser rounding (12 CPU s): large.
    pytest.param("as_introvae", "mixed_bfloat16", marks=pytest.mark.large),
  ],
)
def test_one_and_two_replicas_agree(method, policy, two_replicas):
  """Same global batch and initial weights, SGD: 2 replicas give the weights of 1 replica up to
  the 16-bit rounding of each replica's partial weight gradients (measured after 3 steps of
  SGD 0.05: float16 <= 3.0e-6, bfloat16 <= 4.0e-5; tolerance 2e-5 and 2e-4)."""
  config = harness.small_2d_config(method, mixed_precision=policy)
  one, two = _build_sgd(config, tf.distribute.get_strategy()), _build_sgd(config, two_replicas)
  for src, dst in zip(harness.weights(one), harness.weights(two)):
    dst.assign(src.numpy())
  batches = harness.batches_2d(3, seed=4)
  logs1, logs2 = harness.fit_batches(one, batches, 3), harness.fit_batches(two, batches, 3)
  atol = {"mixed_float16": 2e-5, "mixed_bfloat16": 2e-4}[policy]
  for a, b in zip(harness.weights(one), harness.weights(two)):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=atol)
  for name in logs1:
    if not name.startswith("grad_norm"):  # per-replica norms: partial sums
      np.testing.assert_allclose(
        logs1[name], logs2[name], rtol=TOLERANCE[policy][0], atol=TOLERANCE[policy][1], err_msg=name
      )


# === Flags =====================================================================================


def test_mixed_precision_flag_values():
  assert harness.parse_flags("--workdir=/tmp/x").mixed_precision == "none"
  for value in config_lib.MIXED_PRECISION:
    assert (
      harness.parse_flags("--workdir=/tmp/x", f"--mixed_precision={value}")
      .validate()
      .mixed_precision
      == value
    )
  with pytest.raises(
    config_lib.ConfigError,
    match="--mixed_precision must be one of none, mixed_float16, mixed_bfloat16; got 'float16'",
  ):
    harness.parse_flags("--workdir=/tmp/x").replace(mixed_precision="float16").validate()
  with pytest.raises(flags.IllegalFlagValueError, match="none\\|mixed_float16\\|mixed_bfloat16"):
    harness.parse_flags("--workdir=/tmp/x", "--mixed_precision=fp16")
  with pytest.raises(ValueError, match="mixed_precision must be one of"):
    precision.layer_dtype("float16")
