"""Accelerator options on CPU: --mixed_precision, --jit_compile and --steps_per_execution.

Mixed precision: every method trains with 16-bit compute in the hidden layers and float32
variables, network outputs and loss terms; the terms at the initial weights are close to the
float32 run's; mixed_float16's dynamic loss scaling skips overflowing updates without tripping
the NaN/inf record, while a NaN loss term still stops training; the loss scale is checkpointed
and restored; evaluation and export of a mixed-precision run are float32; 1 and 2 replicas
agree. XLA: the same steps as without it (given the same noise). steps_per_execution: the same
weights, logs and checkpoints as one step per call.
"""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from as_introvae_tf import config as config_lib
from as_introvae_tf import data
from as_introvae_tf import eval_lib
from as_introvae_tf import export_lib
from as_introvae_tf import hparams
from as_introvae_tf import methods
from as_introvae_tf import precision
from as_introvae_tf import run as run_lib
from as_introvae_tf import train_lib
from as_introvae_tf.methods import base

METHODS = list(methods.names())  # the four introspective VAEs and the two baselines
MIXED = ("mixed_float16", "mixed_bfloat16")
COMPUTE = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
BATCH = 16
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


def _config(method="soft_introvae", **overrides):
  values = dict(
    method=method,
    dataset="8gaussians",
    workdir="/tmp/as_introvae_mp_unused",
    z_dim=2,
    num_hidden=16,
    num_layers=1,
    batch_size=BATCH,
    train_steps=100,
    beta_rec=0.2,
    beta_kl=0.3,
    beta_neg=0.9,
    margin=2.0,
    as_kernel="product",
    ema_decay=0.9,
    n_critic=2,
    seed=0,
    verbose="0",
  )
  values.update(overrides)
  return config_lib.ExperimentConfig(**values)


def _build(config, strategy=None):
  spec = data.parse_dataset(config.dataset, config.image_size, config.channels)
  keras.utils.set_random_seed(config.seed)
  return run_lib.build_model(config, spec, strategy or tf.distribute.get_strategy())


def _networks(model):
  names = ("encoder", "decoder", "ema_decoder", "discriminator_encoder", "discriminator_decoder")
  return [getattr(model, n) for n in names if getattr(model, n, None) is not None]


def _weights(model):
  extra = [model.critic_head] if hasattr(model, "critic_head") else []
  return [v for net in _networks(model) + extra for v in net.weights]


def _optimizers(model):
  return [model.encoder_optimizer, model.decoder_optimizer] + (
    [model.discriminator_optimizer] if hasattr(model, "discriminator_optimizer") else []
  )


def _set_lr(model, lr):
  for optimizer in _optimizers(model):
    optimizer.learning_rate = lr


def _fit(model, batches, steps):
  ds = tf.data.Dataset.from_tensor_slices(batches).repeat()
  history = model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False).history
  return {k: float(v[-1]) for k, v in history.items()}


def _batches(n=8, seed=0, batch=BATCH):
  rng = np.random.default_rng(seed)
  return np.stack([data.sample_2d("8gaussians", batch, rng) for _ in range(n)])


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
    model = _build(_config(method))
    weights = [v.numpy() for v in _weights(model)]
    _set_lr(model, 0.0)
    _FLOAT32_REFERENCE[method] = weights, _fit(model, _batches(1), 1)
  return _FLOAT32_REFERENCE[method]


def _check_dtypes(model, policy):
  compute = COMPUTE[policy]
  assert all(v.dtype == "float32" for v in _weights(model))
  for net in _networks(model):
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


@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_with_16_bit_compute_and_float32_terms(method, policy):
  """Variables, network outputs and every reported term are float32, the hidden layers compute
  in 16 bits; the terms of the first step (learning rate 0: every term is a forward value at
  the initial weights, the gradient norms are unscaled) are close to float32's; a few real
  steps stay finite."""
  weights32, logs32 = _float32_reference(method)
  model = _build(_config(method, mixed_precision=policy))
  for v, w in zip(_weights(model), weights32):
    v.assign(w)
  assert all(precision.is_loss_scaled(o) == (policy == "mixed_float16") for o in _optimizers(model))
  _check_dtypes(model, policy)
  seen = _spy_on_terms(model)
  _set_lr(model, 0.0)
  logs = _fit(model, _batches(1), 1)
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
  _set_lr(model, 1e-3)
  logs = _fit(model, _batches(4, seed=1), 4)
  assert all(np.isfinite(v) for v in logs.values()), logs
  assert int(model.step.numpy()) == 5 and model.non_finite_report() is None
  assert any(not np.array_equal(v.numpy(), w) for v, w in zip(model.encoder.weights, weights32))


def test_image_networks_on_fashion_mnist():
  """The residual networks (convolutions, BatchNorm, pooling) in 16 bits on real images, both
  policies against float32 from the same weights."""
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
  reference = _build(_config("as_introvae", **common))
  _set_lr(reference, 0.0)
  logs32 = _fit(reference, images, 1)
  for policy in MIXED:
    model = _build(_config("as_introvae", mixed_precision=policy, **common))
    for v, w in zip(_weights(model), _weights(reference)):
      v.assign(w)
    _check_dtypes(model, policy)
    seen = _spy_on_terms(model)
    _set_lr(model, 0.0)
    logs = _fit(model, images, 1)
    assert set(seen.values()) == {"float32"}, seen
    _assert_close_to_float32(logs, logs32, policy)
    _set_lr(model, 2e-4)
    logs = _fit(model, images, 2)
    assert all(np.isfinite(v) for v in logs.values()) and model.non_finite_report() is None
    # Two scales add the channel-changing blocks (1x1 shortcut) and the pooling/upsampling
    # between scales: built (not trained) in 16 bits too.
    two_scales = dict(common, filters=(4, 8))
    _check_dtypes(_build(_config("as_introvae", mixed_precision=policy, **two_scales)), policy)


# === Dynamic loss scaling (mixed_float16) ======================================================


@pytest.fixture
def no_pictures(monkeypatch):
  """Training runs without the matplotlib scatter plots (not what these tests look at)."""
  monkeypatch.setattr(
    train_lib,
    "render_samples",
    lambda model, spec, fixed: {"samples": np.zeros([4, 4, 1], np.float32)},
  )


def test_an_overflowing_step_is_skipped_and_training_goes_on(monkeypatch):
  """A loss scale of 2^40 makes the float16 backward pass overflow: the first updates are
  skipped (weights unchanged, scale halved each time, the step still counted), none of it is
  recorded as a divergence, and once the scale is low enough training proceeds."""
  monkeypatch.setattr(precision, "INITIAL_LOSS_SCALE", 2.0**40)
  model = _build(_config("as_introvae", mixed_precision="mixed_float16"))
  before = [v.numpy() for v in _weights(model)]
  logs = _fit(model, _batches(1), 1)
  for v, b in zip(_weights(model), before):
    np.testing.assert_array_equal(v.numpy(), b)
  for optimizer in _optimizers(model):
    assert float(optimizer.dynamic_scale.numpy()) == 2.0**39
    assert int(optimizer.iterations.numpy()) == 1
  assert model.non_finite_report() is None
  assert all(np.isfinite(v) for v in logs.values()), logs
  assert logs["grad_norm_encoder"] == 0.0  # no applied update in the window to average

  logs = _fit(model, _batches(8, seed=2), 40)
  assert int(model.step.numpy()) == 41 and model.non_finite_report() is None
  assert all(np.isfinite(v) for v in logs.values()), logs
  scale = float(model.encoder_optimizer.dynamic_scale.numpy())
  assert scale <= 2.0**30  # at least ten more overflows were skipped on the way down
  assert 0 < logs["grad_norm_encoder"] < 100  # unscaled norms of the applied updates
  for v, b in zip(model.encoder.weights + model.decoder.weights, before):
    assert not np.array_equal(v.numpy(), b)


def test_overflows_in_a_real_training_run_do_not_stop_it(no_pictures, tmp_path, monkeypatch):
  monkeypatch.setattr(precision, "INITIAL_LOSS_SCALE", 2.0**40)
  config = _config(
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
  model = _build(_config("soft_introvae", mixed_precision="mixed_float16"))
  batch = _batches(1)
  batch[0, 3] = np.nan  # a corrupt example: its reconstruction error is NaN
  _fit(model, batch, 1)
  step, terms = model.non_finite_report()
  assert step == 0 and {"rec", "loss_encoder", "loss_decoder"} <= set(terms), terms

  config = _config(
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
  model = _build(_config("soft_introvae", mixed_precision="mixed_float16"), two_replicas)
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
    ("soft_introvae", "mixed_float16"),
    ("as_introvae", "mixed_float16"),
    ("as_introvae", "mixed_bfloat16"),
  ],
)
def test_one_and_two_replicas_agree(method, policy, two_replicas):
  """Same global batch and initial weights, SGD: 2 replicas give the weights of 1 replica up to
  the 16-bit rounding of each replica's partial weight gradients (measured after 3 steps of
  SGD 0.05: float16 <= 3.0e-6, bfloat16 <= 4.0e-5; tolerance 2e-5 and 2e-4)."""
  config = _config(method, mixed_precision=policy)
  one, two = _build_sgd(config, tf.distribute.get_strategy()), _build_sgd(config, two_replicas)
  for src, dst in zip(_weights(one), _weights(two)):
    dst.assign(src.numpy())
  batches = _batches(3, seed=4)
  logs1, logs2 = _fit(one, batches, 3), _fit(two, batches, 3)
  atol = {"mixed_float16": 2e-5, "mixed_bfloat16": 2e-4}[policy]
  for a, b in zip(_weights(one), _weights(two)):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=atol)
  for name in logs1:
    if not name.startswith("grad_norm"):  # per-replica norms: partial sums
      np.testing.assert_allclose(
        logs1[name], logs2[name], rtol=TOLERANCE[policy][0], atol=TOLERANCE[policy][1], err_msg=name
      )


# === Checkpoints, evaluation and export of a mixed-precision run ===============================


def _train_config(workdir, **overrides):
  values = dict(
    workdir=str(workdir),
    batch_size=64,
    train_steps=6,
    num_vae=1,
    log_every_steps=2,
    checkpoint_every_steps=2,
    image_every_steps=100,
    mixed_precision="mixed_float16",
  )
  values.update(overrides)
  return _config("as_introvae", **values)


def test_resume_restores_the_loss_scale(no_pictures, tmp_path, monkeypatch):
  """mixed_float16: 6 steps straight equal 2 steps + 4 resumed, bit for bit, loss scales and
  their growth counters included (a start at 2^40 makes the scales move during the run)."""
  monkeypatch.setattr(precision, "INITIAL_LOSS_SCALE", 2.0**40)
  straight = _train_config(tmp_path / "straight")
  train_lib.train_and_evaluate(straight)
  resumed = _train_config(tmp_path / "resumed", train_steps=2)
  train_lib.train_and_evaluate(resumed)
  at_2 = run_lib.build_run(resumed).model
  scale_2 = float(at_2.decoder_optimizer.dynamic_scale.numpy())
  assert int(at_2.step.numpy()) == 2 and scale_2 <= 2.0**38  # two overflows at least
  reader = tf.train.load_checkpoint(str(tmp_path / "resumed" / "checkpoints"))
  assert (
    reader.get_tensor("decoder_optimizer_loss_scale/dynamic_scale/.ATTRIBUTES/VARIABLE_VALUE")
    == scale_2
  )
  train_lib.train_and_evaluate(resumed.replace(train_steps=6))

  a = run_lib.build_run(straight).model
  b = run_lib.build_run(resumed.replace(train_steps=6)).model
  assert int(a.step.numpy()) == int(b.step.numpy()) == 6
  scales = [float(o.dynamic_scale.numpy()) for o in _optimizers(a)]
  assert all(s < 2.0**40 for s in scales)
  for va, vb in zip(
    _weights(a) + [v for o in _optimizers(a) for v in o.variables],
    _weights(b) + [v for o in _optimizers(b) for v in o.variables],
  ):
    np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=va.path)


def test_a_mixed_float16_run_resumes_in_another_precision_but_not_the_reverse(
  no_pictures, tmp_path
):
  config = _train_config(tmp_path / "fp16", train_steps=2)
  train_lib.train_and_evaluate(config)
  result = train_lib.train_and_evaluate(config.replace(train_steps=4, mixed_precision="none"))
  assert result["step"] == 4  # the loss scale is dropped, Adam's state restored

  plain = _train_config(tmp_path / "plain", train_steps=2, mixed_precision="mixed_bfloat16")
  train_lib.train_and_evaluate(plain)
  with pytest.raises(
    config_lib.ConfigError, match="--mixed_precision='mixed_bfloat16' .now 'mixed_float16'."
  ):
    train_lib.train_and_evaluate(plain.replace(train_steps=4, mixed_precision="mixed_float16"))


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
  """A tiny 2-D AS-IntroVAE trained 4 steps with mixed_float16 and a decoder EMA."""
  workdir = tmp_path_factory.mktemp("mixed_run")
  train_lib.train_and_evaluate(_train_config(workdir, train_steps=4, ema_decay=0.5))
  return str(workdir)


def test_evaluation_of_a_mixed_precision_run_is_float32(mixed_run):
  run = run_lib.restore_run(mixed_run)
  model = run.model
  assert int(model.step.numpy()) == 4 and run.config.mixed_precision == "none"
  assert not precision.is_loss_scaled(model.decoder_optimizer)
  for net in _networks(model):
    assert {layer.compute_dtype for layer in net.layers} == {"float32"}, net.name
  as_trained = run_lib.build_run(config_lib.load_config(mixed_run)).model  # mixed_float16
  assert precision.is_loss_scaled(as_trained.decoder_optimizer)
  for a, b in zip(_weights(model), _weights(as_trained)):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  x = data.sample_2d("8gaussians", 8, np.random.default_rng(0))
  mu, logvar = model.encoder(x, training=False)
  assert mu.dtype == logvar.dtype == model.decoder(mu).dtype == tf.float32
  options = eval_lib.EvalOptions(num_samples=500, eval_draws=1, grid_points=64, gnelbo_points=256)
  result = eval_lib.evaluate(mixed_run, options, log=lambda *_: None)
  assert all(np.isfinite(v) for v in result["metrics"].values()), result["metrics"]


def test_export_of_a_mixed_precision_run_is_float32(mixed_run, tmp_path):
  result = export_lib.export_run(mixed_run, str(tmp_path / "export"))
  card = result.model_card
  assert card["training_step"] == 4 and card["weights_source"]
  for name, signature in card["signature_defs"].items():
    for spec in list(signature["inputs"].values()) + list(signature["outputs"].values()):
      assert spec["dtype"] in ("float32", "int64", "string"), (name, spec)
  loaded = tf.saved_model.load(result.version_dir)
  run = run_lib.restore_run(mixed_run)
  x = data.sample_2d("8gaussians", 8, np.random.default_rng(1))
  z = np.random.default_rng(2).standard_normal((8, 2)).astype(np.float32)
  outputs = {
    "decode": loaded.signatures["decode"](z=tf.constant(z)),
    "encode": loaded.signatures["encode"](images=tf.constant(x)),
    "reconstruct": loaded.signatures["reconstruct"](images=tf.constant(x)),
    "generate": loaded.signatures["generate"](seeds=tf.constant([1, 2], tf.int64)),
  }
  for name, out in outputs.items():
    assert all(v.dtype == tf.float32 for v in out.values()), name
  mu, _ = run.model.encoder(x, training=False)
  np.testing.assert_allclose(outputs["encode"]["mu"].numpy(), mu.numpy(), atol=1e-6)
  import onnx  # pylint: disable=import-outside-toplevel

  graph = onnx.load(os.path.join(result.version_dir, export_lib.ONNX_DECODER_FILE)).graph
  float32 = onnx.TensorProto.FLOAT
  assert [i.type.tensor_type.elem_type for i in graph.input] == [float32]
  assert [o.type.tensor_type.elem_type for o in graph.output] == [float32]
  assert card["onnx"]["parity_max_abs_diff"] <= 1e-5


# === Flags =====================================================================================


def _parse(*args):
  fv = flags.FlagValues()
  config_lib.define_flags(fv)
  fv(["train", "--workdir=/tmp/x"] + list(args))
  return config_lib.ExperimentConfig.from_flags(fv)


def test_mixed_precision_flag_values():
  assert _parse().mixed_precision == "none"
  for value in config_lib.MIXED_PRECISION:
    assert _parse(f"--mixed_precision={value}").validate().mixed_precision == value
  with pytest.raises(
    config_lib.ConfigError,
    match="--mixed_precision must be one of none, mixed_float16, mixed_bfloat16; got 'float16'",
  ):
    _parse().replace(mixed_precision="float16").validate()
  with pytest.raises(flags.IllegalFlagValueError, match="none\\|mixed_float16\\|mixed_bfloat16"):
    _parse("--mixed_precision=fp16")
  with pytest.raises(ValueError, match="mixed_precision must be one of"):
    precision.layer_dtype("float16")


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
  # terms, so it covers S-IntroVAE's ops under XLA too.
  [("as_introvae", "none"), ("as_introvae", "mixed_float16")],
)
def test_jit_compile_gives_the_same_steps(method, policy, noise_table):
  """3 Adam steps (lr 1e-3) with and without XLA from the same weights, data and noise. XLA
  fuses element-wise ops and has its own exp/log/tanh, so results differ in the last bits.
  Measured: weights <= 9e-8 (float32) and 9.1e-7 (float16 compute); terms <= 4.3e-7 relative,
  except the AS-Distance, a difference of kernel sums: 1.7e-6 absolute (7.8e-4 relative), and
  <= 3.8e-4 relative with float16 compute. Tolerances: weights 1e-5; terms 1e-4 relative +
  1e-5 absolute (float32), `TOLERANCE` (float16)."""
  config = _config(method, mixed_precision=policy, lr=1e-3)
  plain, xla = _build(config), _build(config.replace(jit_compile=True))
  assert xla.jit_compile and not plain.jit_compile
  for src, dst in zip(_weights(plain), _weights(xla)):
    dst.assign(src.numpy())
  batches = _batches(3, seed=5)
  logs_plain, logs_xla = _fit(plain, batches, 3), _fit(xla, batches, 3)
  rtol_terms, atol_terms = (1e-4, 1e-5) if policy == "none" else TOLERANCE[policy]
  for a, b in zip(_weights(plain), _weights(xla)):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
  for name, value in logs_plain.items():
    # The AS-Distance's share of the exponent, w / (c KL + w), carries the AS-Distance's
    # relative difference times (1 - share): up to 7.8e-4 (measured: 4.3e-4).
    rtol = max(rtol_terms, 1e-3) if name.startswith("as_share") else rtol_terms
    np.testing.assert_allclose(logs_xla[name], value, rtol=rtol, atol=atol_terms, err_msg=name)
  assert xla.non_finite_report() is None


def test_jit_compile_is_refused_with_more_than_one_replica():
  with pytest.raises(config_lib.ConfigError, match="--jit_compile needs --strategy=default"):
    _config(jit_compile=True, strategy="mirrored").validate()
  with pytest.raises(config_lib.ConfigError, match="--jit_compile needs --strategy=default"):
    _config(jit_compile=True).validate(num_replicas=2)
  assert _config(jit_compile=True).validate(num_replicas=1).jit_compile


# === --steps_per_execution =====================================================================


def _event_steps(logdir, tag):
  steps = []
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      steps += [event.step for value in event.summary.value if value.tag == tag]
  return sorted(steps)


def test_steps_per_execution_gives_the_same_run(no_pictures, tmp_path):
  """k = 1, 2, 4 steps per tf.function call: the same weights (bit for bit), the same
  checkpoints, logs at the same steps, and the switch from the VAE warm-up at the same step."""
  runs = {}
  for k in (1, 2, 4):
    config = _config(
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
    assert _event_steps(logdir, "train/rec") == [4, 8, 12]
    assert _event_steps(logdir, "train/kl_fake") == [8, 12]  # introspective from step 4 on
    runs[k] = [v.numpy() for v in _weights(run_lib.build_run(config).model)]
  for k in (2, 4):
    for a, b in zip(runs[1], runs[k]):
      np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["log_every_steps", "train_steps", "num_vae"])
def test_steps_per_execution_must_divide_the_step_counts(name):
  config = _config(steps_per_execution=4, log_every_steps=8, train_steps=16, num_vae=4)
  config.validate()
  with pytest.raises(
    config_lib.ConfigError, match=f"--{name}=6 must be a multiple of --steps_per_execution=4"
  ):
    config.replace(**{name: 6}).validate()
