"""A mixed-precision run end to end: the loss scale checkpointed and restored bit for bit,
resume in another precision, evaluation and export in float32."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import data
from as_introvae_tf import eval_lib
from as_introvae_tf import export_lib
from as_introvae_tf import precision
from as_introvae_tf import run as run_lib
from as_introvae_tf import train_lib

import harness


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
  return harness.small_2d_config("as_introvae", **values)


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
  """A tiny 2-D AS-IntroVAE trained 6 steps with mixed_float16 from a loss scale of 2^40 (the
  first updates overflow and are skipped) and a decoder EMA: the uninterrupted run of the
  resume test, and the run evaluated and exported; a str."""
  workdir = tmp_path_factory.mktemp("mixed_run") / "straight"
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(precision, "INITIAL_LOSS_SCALE", 2.0**40)
    harness.train(_train_config(workdir))
  return str(workdir)


def test_resume_restores_the_loss_scale(mixed_run, no_pictures, tmp_path, monkeypatch):
  """mixed_float16: 6 steps straight (mixed_run) equal 2 steps + 4 resumed, bit for bit, loss
  scales and their growth counters included (a start at 2^40 makes the scales move during the
  run)."""
  monkeypatch.setattr(precision, "INITIAL_LOSS_SCALE", 2.0**40)
  straight = _train_config(mixed_run)
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
  scales = [float(o.dynamic_scale.numpy()) for o in harness.optimizers(a)]
  assert all(s < 2.0**40 for s in scales)
  for va, vb in zip(
    harness.weights(a) + [v for o in harness.optimizers(a) for v in o.variables],
    harness.weights(b) + [v for o in harness.optimizers(b) for v in o.variables],
  ):
    np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=va.path)


def test_a_mixed_float16_run_resumes_in_another_precision_but_not_the_reverse(
  mixed_run, no_pictures, tmp_path
):
  shutil.copytree(mixed_run, tmp_path / "fp16")  # mixed_float16, at step 6
  config = _train_config(tmp_path / "fp16")
  result = train_lib.train_and_evaluate(config.replace(train_steps=8, mixed_precision="none"))
  assert result["step"] == 8  # the loss scale is dropped, Adam's state restored

  plain = _train_config(tmp_path / "plain", train_steps=2, mixed_precision="mixed_bfloat16")
  train_lib.train_and_evaluate(plain)
  with pytest.raises(
    config_lib.ConfigError, match="--mixed_precision='mixed_bfloat16' .now 'mixed_float16'."
  ):
    train_lib.train_and_evaluate(plain.replace(train_steps=4, mixed_precision="mixed_float16"))


def test_evaluation_of_a_mixed_precision_run_is_float32(mixed_run):
  run = run_lib.restore_run(mixed_run)
  model = run.model
  assert int(model.step.numpy()) == 6 and run.config.mixed_precision == "none"
  assert not precision.is_loss_scaled(model.decoder_optimizer)
  for net in harness.networks(model):
    assert {layer.compute_dtype for layer in net.layers} == {"float32"}, net.name
  as_trained = run_lib.build_run(config_lib.load_config(mixed_run)).model  # mixed_float16
  assert precision.is_loss_scaled(as_trained.decoder_optimizer)
  for a, b in zip(harness.weights(model), harness.weights(as_trained)):
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
  assert card["training_step"] == 6 and card["weights_source"]
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
