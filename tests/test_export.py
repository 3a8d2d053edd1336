"""Export: SavedModel (TF Serving layout) and ONNX round trips, 2-D exports (the REST/gRPC
client: test_export_serving.py; bad input: test_export_errors.py).

TF Serving itself cannot run here (Docker image / own apt repository only), so the tests use
TF's own loader (`tf.saved_model.load`, `saved_model_cli show --all`), an in-process emulation
of TF Serving's documented REST predict API (row `instances` -> `predictions`, columnar
`inputs` -> `outputs`, `_bytes` outputs as {"b64": ...}) behind a real HTTP server, and, when
`tensorflow-serving-api` is installed, a real gRPC PredictionService backed by the SavedModel.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import export_lib
from as_introvae_tf import run as run_lib


import harness

Z_DIM = 4
IMAGE_SHAPE = (28, 28, 1)
SEEDS = [0, 5, 11, 2**40 + 3]


@pytest.fixture(scope="module")
def in_memory(image_run):
  """The restored in-memory model of `image_run` (the project's own path; a checkpoint is
  already prepared for inference: EMA synced, BatchNorm statistics re-estimated)."""
  run = run_lib.build_run(config_lib.load_config(image_run))
  return run.model


# === SavedModel ===============================================================================


def test_layout_model_card_and_next_version(image_export, exports, image_run):
  result, _ = image_export
  model_dir = os.path.join(exports, "fm")
  assert result.version == 1 and result.version_dir == os.path.join(model_dir, "1")
  for name in ("saved_model.pb", "variables", "decoder.onnx", "model_card.json"):
    assert os.path.exists(os.path.join(result.version_dir, name)), name
  assert not [d for d in os.listdir(model_dir) if d.startswith(".tmp")]
  with open(os.path.join(result.version_dir, "model_card.json")) as f:
    card = json.load(f)
  assert card["method"] == "vae" and card["dataset"] == "fashion_mnist"
  assert card["example_shape"] == list(IMAGE_SHAPE) and card["z_dim"] == Z_DIM
  assert card["training_step"] == 4 and card["weights"] == "ema"
  assert card["hyperparameters"]["filters"] == [8, 16]
  assert card["hyperparameters"]["workdir"] == image_run
  assert card["signatures"] == list(export_lib.SIGNATURES_IMAGE)
  assert card["signature_defs"]["decode"]["inputs"] == {
    "z": {"dtype": "float32", "shape": [None, Z_DIM]}
  }
  assert card["onnx"]["opset"] == export_lib.ONNX_OPSET
  assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", card["export_time_utc"])
  assert {"tensorflow", "keras", "tf2onnx"} <= set(card["versions"])
  assert export_lib.next_version(model_dir) == 2


def test_every_signature_matches_the_in_memory_model(image_export, in_memory):
  _, loaded = image_export
  assert set(loaded.signatures) == set(export_lib.SIGNATURES_IMAGE)
  ema, encoder = in_memory.ema_decoder, in_memory.encoder
  seeds = tf.constant(SEEDS, tf.int64)
  want = np.clip(ema(harness.seeds_to_z(SEEDS, Z_DIM), training=False).numpy(), 0, 1)
  for name in ("serving_default", "generate"):
    got = harness.call_signature(loaded, name, seeds=seeds)
    assert list(got) == ["images"] and got["images"].shape == (len(SEEDS), *IMAGE_SHAPE)
    np.testing.assert_allclose(got["images"], want, atol=1e-5)
  z = np.random.default_rng(1).normal(size=(5, Z_DIM)).astype(np.float32) * 3
  decoded = harness.call_signature(loaded, "decode", z=tf.constant(z))["images"]
  np.testing.assert_allclose(decoded, np.clip(ema(z, training=False).numpy(), 0, 1), atol=1e-5)
  assert decoded.min() >= 0.0 and decoded.max() <= 1.0
  x = harness.uniform_images(3)
  mu, logvar = (t.numpy() for t in encoder(x, training=False))
  got = harness.call_signature(loaded, "encode", images=tf.constant(x))
  np.testing.assert_allclose(got["mu"], mu, atol=1e-5)
  np.testing.assert_allclose(got["logvar"], logvar, atol=1e-5)
  np.testing.assert_allclose(
    harness.call_signature(loaded, "reconstruct", images=tf.constant(x))["images"],
    np.clip(ema(mu, training=False).numpy(), 0, 1),
    atol=1e-5,
  )
  png = harness.call_signature(loaded, "generate_png", seeds=seeds)["png_bytes"]
  assert png.shape == (len(SEEDS),) and png[0][:8] == b"\x89PNG\r\n\x1a\n"
  pixels = np.stack([tf.io.decode_png(p).numpy() for p in png]).astype(np.int32)
  assert pixels.shape == (len(SEEDS), *IMAGE_SHAPE)
  assert np.abs(pixels - np.round(want * 255)).max() <= 1


def test_ema_and_raw_weights_are_the_chosen_decoders(image_export, raw_export, in_memory):
  z = tf.constant(harness.seeds_to_z(SEEDS, Z_DIM), tf.float32)
  ema_out = harness.call_signature(image_export[1], "decode", z=z)["images"]
  raw_out = harness.call_signature(raw_export[1], "decode", z=z)["images"]
  np.testing.assert_allclose(
    raw_out, np.clip(in_memory.decoder(z, training=False).numpy(), 0, 1), atol=1e-5
  )
  assert np.abs(ema_out - raw_out).max() > 1e-3  # lr 1e-2, EMA 0.5: clearly different decoders
  assert raw_export[0].model_card["weights"] == "raw"
  # The checkpoint's ema_decoder holds the restored optimizer EMA (not zeros, not the decoder).
  assert export_lib.ema_decoder_is_synced(in_memory)
  assert image_export[0].model_card["weights_source"].startswith("ema_decoder of the checkpoint")
  for variable, value in zip(in_memory.decoder.weights, export_lib.ema_decoder_weights(in_memory)):
    if variable.path.endswith("kernel"):
      assert np.abs(value).max() > 0, variable.path
  # The encoder is the trained one in both.
  x = tf.constant(harness.uniform_images(2))
  np.testing.assert_allclose(
    harness.call_signature(image_export[1], "encode", images=x)["mu"],
    harness.call_signature(raw_export[1], "encode", images=x)["mu"],
    atol=1e-6,
  )


def test_same_seed_same_image_across_calls_batches_and_reloads(image_export):
  result, loaded = image_export
  seeds = tf.constant(SEEDS, tf.int64)
  first = harness.call_signature(loaded, "generate", seeds=seeds)["images"]
  np.testing.assert_array_equal(
    first, harness.call_signature(loaded, "generate", seeds=seeds)["images"]
  )
  reloaded = tf.saved_model.load(result.version_dir)
  np.testing.assert_array_equal(
    first, harness.call_signature(reloaded, "generate", seeds=seeds)["images"]
  )
  alone = harness.call_signature(loaded, "generate", seeds=tf.constant([SEEDS[1]], tf.int64))[
    "images"
  ]
  np.testing.assert_allclose(alone[0], first[1], atol=1e-6)  # batch composition: rounding only
  other = harness.call_signature(loaded, "generate", seeds=tf.constant([SEEDS[1] + 1], tf.int64))[
    "images"
  ]
  assert np.abs(other[0] - first[1]).max() > 1e-4
  # The in-graph z rule is exactly the documented per-seed stateless draw.
  np.testing.assert_array_equal(
    tf.function(lambda s: export_lib.seeds_to_z(s, Z_DIM))(seeds).numpy(),
    harness.seeds_to_z(SEEDS, Z_DIM),
  )
  np.testing.assert_array_equal(
    export_lib.seeds_to_z_numpy(SEEDS, Z_DIM), harness.seeds_to_z(SEEDS, Z_DIM)
  )


@pytest.mark.parametrize(
  "signature,inputs,expected,spec",
  [
    ("decode", {"z": tf.zeros([2, Z_DIM + 1])}, "[?,4]", "(None, 4)"),
    ("encode", {"images": tf.zeros([2, 27, 28, 1])}, "[?,28,28,1]", "(None, 28, 28, 1)"),
    ("reconstruct", {"images": tf.zeros([2, 28, 28, 3])}, "[?,28,28,1]", "(None, 28, 28, 1)"),
    ("generate", {"seeds": tf.zeros([2, 1], tf.int64)}, "[?]", "(None,)"),
  ],
)
def test_signatures_reject_wrong_shapes_naming_the_expected_one(
  image_export, signature, inputs, expected, spec
):
  _, loaded = image_export
  # Signature functions (what TF Serving runs): tf.ensure_shape's InvalidArgumentError.
  with pytest.raises(
    tf.errors.InvalidArgumentError,
    match=re.escape(f"is not compatible with expected shape {expected}"),
  ):
    loaded.signatures[signature](**inputs)
  # The restored endpoint functions refuse them before running, with TF's binding error.
  with pytest.raises(TypeError, match=re.escape(f"TensorSpec(shape={spec}")):
    getattr(loaded, signature)(*inputs.values())


def test_saved_model_cli_lists_the_signatures(image_export):
  result, _ = image_export
  cli = shutil.which("saved_model_cli")
  command = [cli] if cli else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
  out = subprocess.run(
    command + ["show", "--all", "--dir", result.version_dir],
    capture_output=True,
    text=True,
    timeout=120,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
  )
  assert out.returncode == 0, out.stderr[-2000:]
  for name in export_lib.SIGNATURES_IMAGE:
    assert f"signature_def['{name}']" in out.stdout
  text = re.sub(r"\s+", " ", out.stdout)
  assert "inputs['seeds'] tensor_info: dtype: DT_INT64 shape: (-1)" in text
  assert "inputs['z'] tensor_info: dtype: DT_FLOAT shape: (-1, 4)" in text
  assert "outputs['png_bytes'] tensor_info: dtype: DT_STRING shape: (-1)" in text
  assert "outputs['logvar'] tensor_info: dtype: DT_FLOAT shape: (-1, 4)" in text


# === ONNX =====================================================================================


def test_onnx_decoder_matches_the_saved_model(image_export):
  import onnx
  import onnxruntime as ort

  result, loaded = image_export
  path = os.path.join(result.version_dir, "decoder.onnx")
  proto = onnx.load(path)
  assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [
    export_lib.ONNX_OPSET
  ]
  session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
  assert [i.name for i in session.get_inputs()] == ["z"]
  assert [o.name for o in session.get_outputs()] == ["images"]
  assert session.get_inputs()[0].shape[1] == Z_DIM
  z = np.concatenate(
    [
      export_lib.seeds_to_z_numpy(SEEDS, Z_DIM),
      np.random.default_rng(2).normal(size=(12, Z_DIM)).astype(np.float32),
    ]
  )
  onnx_out = session.run(["images"], {"z": z})[0]
  tf_out = harness.call_signature(loaded, "decode", z=tf.constant(z))["images"]
  assert np.abs(onnx_out - tf_out).max() <= 1e-5
  # An ONNX client reproduces `generate` by computing z from the seeds itself.
  generated = harness.call_signature(loaded, "generate", seeds=tf.constant(SEEDS, tf.int64))[
    "images"
  ]
  assert np.abs(onnx_out[: len(SEEDS)] - generated).max() <= 1e-5
  assert result.model_card["onnx"]["parity_max_abs_diff"] <= 1e-5


def test_checkpoint_flag_exports_the_named_step_and_onnx_only(image_run, exports):
  ckpt = os.path.join(image_run, "checkpoints", "ckpt-2")
  result = export_lib.export_run(
    image_run, os.path.join(exports, "fm_step2"), formats=["onnx"], checkpoint=ckpt, version=7
  )
  assert result.version == 7 and result.model_card["training_step"] == 2
  assert result.model_card["checkpoint"] == ckpt and result.model_card["signatures"] == []
  assert sorted(os.listdir(result.version_dir)) == ["decoder.onnx", "model_card.json"]


def test_onnx_generate_attempt_is_reported_not_fatal(image_run, exports):
  result = export_lib.export_run(
    image_run, os.path.join(exports, "fm_gen"), formats=["onnx"], onnx_generate=True
  )
  note = result.model_card["onnx_generate"]
  if isinstance(note, str):  # tf2onnx 1.17: stateless RNG ops have no ONNX mapping.
    assert "StatelessRandom" in note
    assert not os.path.exists(os.path.join(result.version_dir, "generate.onnx"))
  else:
    assert os.path.exists(os.path.join(result.version_dir, "generate.onnx"))


# === 2-D runs =================================================================================
