"""Export: SavedModel (TF Serving layout) and ONNX round trips, the REST/gRPC client, bad input.

TF Serving itself cannot run here (Docker image / own apt repository only), so the tests use
TF's own loader (`tf.saved_model.load`, `saved_model_cli show --all`), an in-process emulation
of TF Serving's documented REST predict API (row `instances` -> `predictions`, columnar
`inputs` -> `outputs`, `_bytes` outputs as {"b64": ...}) behind a real HTTP server, and, when
`tensorflow-serving-api` is installed, a real gRPC PredictionService backed by the SavedModel.
"""

import base64
import concurrent.futures
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from as_introvae_tf import config as config_lib
from as_introvae_tf import export as export_cli
from as_introvae_tf import export_lib
from as_introvae_tf import run as run_lib
from as_introvae_tf.serving import client as serving_client
from as_introvae_tf import train_lib
from as_introvae_tf import visualize

Z_DIM = 4
IMAGE_SHAPE = (28, 28, 1)
SEEDS = [0, 5, 11, 2**40 + 3]


# === Tiny trained runs ========================================================================


def _no_pictures(model, spec, fixed):
  del model, spec, fixed
  return {"samples": np.zeros([4, 4, 1], np.float32)}


def _train(workdir, **overrides):
  """Trains a tiny run with train_lib.train_and_evaluate (TensorBoard pictures stubbed out)."""
  values = dict(
    method="vae",
    train_steps=4,
    log_every_steps=2,
    checkpoint_every_steps=2,
    image_every_steps=1000,
    ema_decay=0.5,
    lr=1e-2,
    verbose="0",
    workdir=str(workdir),
  )
  values.update(overrides)
  config = config_lib.ExperimentConfig(**values)
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(train_lib, "render_samples", _no_pictures)
    train_lib.train_and_evaluate(config)
  return str(workdir)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
  return _train(
    tmp_path_factory.mktemp("image_run"),
    dataset="fashion_mnist",
    filters=(8, 16),
    z_dim=Z_DIM,
    batch_size=8,
  )


@pytest.fixture(scope="module")
def run_2d(tmp_path_factory):
  return _train(
    tmp_path_factory.mktemp("run_2d"),
    dataset="8gaussians",
    z_dim=2,
    batch_size=64,
    num_hidden=16,
    num_layers=1,
  )


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
  return str(tmp_path_factory.mktemp("exports"))


@pytest.fixture(scope="module")
def image_export(image_run, exports):
  """(ExportResult, loaded SavedModel) of the image run, EMA weights, SavedModel + ONNX."""
  result = export_lib.export_run(image_run, os.path.join(exports, "fm"))
  return result, tf.saved_model.load(result.version_dir)


@pytest.fixture(scope="module")
def raw_export(image_run, exports):
  result = export_lib.export_run(
    image_run, os.path.join(exports, "fm_raw"), weights="raw", formats=["saved_model"]
  )
  return result, tf.saved_model.load(result.version_dir)


@pytest.fixture(scope="module")
def in_memory(image_run):
  """The restored in-memory model (the project's own path; a checkpoint is already prepared
  for inference: EMA synced, BatchNorm statistics re-estimated)."""
  run = run_lib.build_run(config_lib.load_config(image_run))
  return run.model


def _z_per_seed(seeds, z_dim):
  return np.stack([tf.random.stateless_normal([z_dim], seed=[int(s), 0]).numpy() for s in seeds])


def _images(n, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, *IMAGE_SHAPE)).astype(np.float32)


def _call(loaded, signature, **inputs):
  return {k: v.numpy() for k, v in loaded.signatures[signature](**inputs).items()}


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
  want = np.clip(ema(_z_per_seed(SEEDS, Z_DIM), training=False).numpy(), 0, 1)
  for name in ("serving_default", "generate"):
    got = _call(loaded, name, seeds=seeds)
    assert list(got) == ["images"] and got["images"].shape == (len(SEEDS), *IMAGE_SHAPE)
    np.testing.assert_allclose(got["images"], want, atol=1e-5)
  z = np.random.default_rng(1).normal(size=(5, Z_DIM)).astype(np.float32) * 3
  decoded = _call(loaded, "decode", z=tf.constant(z))["images"]
  np.testing.assert_allclose(decoded, np.clip(ema(z, training=False).numpy(), 0, 1), atol=1e-5)
  assert decoded.min() >= 0.0 and decoded.max() <= 1.0
  x = _images(3)
  mu, logvar = (t.numpy() for t in encoder(x, training=False))
  got = _call(loaded, "encode", images=tf.constant(x))
  np.testing.assert_allclose(got["mu"], mu, atol=1e-5)
  np.testing.assert_allclose(got["logvar"], logvar, atol=1e-5)
  np.testing.assert_allclose(
    _call(loaded, "reconstruct", images=tf.constant(x))["images"],
    np.clip(ema(mu, training=False).numpy(), 0, 1),
    atol=1e-5,
  )
  png = _call(loaded, "generate_png", seeds=seeds)["png_bytes"]
  assert png.shape == (len(SEEDS),) and png[0][:8] == b"\x89PNG\r\n\x1a\n"
  pixels = np.stack([tf.io.decode_png(p).numpy() for p in png]).astype(np.int32)
  assert pixels.shape == (len(SEEDS), *IMAGE_SHAPE)
  assert np.abs(pixels - np.round(want * 255)).max() <= 1


def test_ema_and_raw_weights_are_the_chosen_decoders(image_export, raw_export, in_memory):
  z = tf.constant(_z_per_seed(SEEDS, Z_DIM), tf.float32)
  ema_out = _call(image_export[1], "decode", z=z)["images"]
  raw_out = _call(raw_export[1], "decode", z=z)["images"]
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
  x = tf.constant(_images(2))
  np.testing.assert_allclose(
    _call(image_export[1], "encode", images=x)["mu"],
    _call(raw_export[1], "encode", images=x)["mu"],
    atol=1e-6,
  )


def test_same_seed_same_image_across_calls_batches_and_reloads(image_export):
  result, loaded = image_export
  seeds = tf.constant(SEEDS, tf.int64)
  first = _call(loaded, "generate", seeds=seeds)["images"]
  np.testing.assert_array_equal(first, _call(loaded, "generate", seeds=seeds)["images"])
  reloaded = tf.saved_model.load(result.version_dir)
  np.testing.assert_array_equal(first, _call(reloaded, "generate", seeds=seeds)["images"])
  alone = _call(loaded, "generate", seeds=tf.constant([SEEDS[1]], tf.int64))["images"]
  np.testing.assert_allclose(alone[0], first[1], atol=1e-6)  # batch composition: rounding only
  other = _call(loaded, "generate", seeds=tf.constant([SEEDS[1] + 1], tf.int64))["images"]
  assert np.abs(other[0] - first[1]).max() > 1e-4
  # The in-graph z rule is exactly the documented per-seed stateless draw.
  np.testing.assert_array_equal(
    tf.function(lambda s: export_lib.seeds_to_z(s, Z_DIM))(seeds).numpy(), _z_per_seed(SEEDS, Z_DIM)
  )
  np.testing.assert_array_equal(
    export_lib.seeds_to_z_numpy(SEEDS, Z_DIM), _z_per_seed(SEEDS, Z_DIM)
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
  tf_out = _call(loaded, "decode", z=tf.constant(z))["images"]
  assert np.abs(onnx_out - tf_out).max() <= 1e-5
  # An ONNX client reproduces `generate` by computing z from the seeds itself.
  generated = _call(loaded, "generate", seeds=tf.constant(SEEDS, tf.int64))["images"]
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


# === REST (TF Serving's documented JSON API, emulated over the loaded SavedModel) ============


def _json_value(name, array):
  if name.endswith("_bytes"):
    return [{"b64": base64.b64encode(b).decode("ascii")} for b in array.tolist()]
  return array.tolist()


def tf_serving_rest_predict(loaded, body):
  """What TF Serving's `POST /v1/models/NAME:predict` answers, per its REST API docs."""
  try:
    signature = loaded.signatures[body.get("signature_name", "serving_default")]
  except KeyError:
    return {"error": f"Serving signature name: \"{body.get('signature_name')}\" not found"}
  if ("instances" in body) == ("inputs" in body):
    return {"error": "JSON Value: ... Excactly one of 'instances' or 'inputs' must be set"}
  specs = signature.structured_input_signature[1]
  if "instances" in body:
    rows = body["instances"]
    if len(specs) == 1 and not (rows and isinstance(rows[0], dict)):
      columns = {next(iter(specs)): rows}
    else:
      columns = {name: [row[name] for row in rows] for name in specs}
  else:
    inputs = body["inputs"]
    columns = inputs if isinstance(inputs, dict) else {next(iter(specs)): inputs}
  try:
    outputs = signature(
      **{name: tf.constant(value, dtype=specs[name].dtype) for name, value in columns.items()}
    )
  except (tf.errors.OpError, TypeError, ValueError) as e:
    return {"error": str(e).strip()}
  outputs = {k: v.numpy() for k, v in outputs.items()}
  if "instances" in body:
    if len(outputs) == 1:
      ((name, value),) = outputs.items()
      return {"predictions": _json_value(name, value)}
    n = len(next(iter(outputs.values())))
    columns = {k: _json_value(k, v) for k, v in outputs.items()}
    return {"predictions": [{k: columns[k][i] for k in columns} for i in range(n)]}
  if len(outputs) == 1:
    ((name, value),) = outputs.items()
    return {"outputs": _json_value(name, value)}
  return {"outputs": {k: _json_value(k, v) for k, v in outputs.items()}}


def _over_the_wire(obj):
  return json.loads(json.dumps(obj))


@pytest.mark.parametrize("form", serving_client.FORMS)
@pytest.mark.parametrize("signature", ["serving_default", "generate_png"])
def test_rest_request_and_response_round_trip(image_export, form, signature):
  _, loaded = image_export
  body = _over_the_wire(serving_client.build_rest_request(SEEDS, form, signature))
  assert body["signature_name"] == signature
  assert (body["instances"] if form == "instances" else body["inputs"]["seeds"]) == SEEDS
  answer = _over_the_wire(tf_serving_rest_predict(loaded, body))
  assert set(answer) == {"predictions" if form == "instances" else "outputs"}
  got = serving_client.parse_rest_response(answer)
  want = _call(loaded, "generate", seeds=tf.constant(SEEDS, tf.int64))["images"]
  assert got.shape == want.shape and got.dtype == np.float32
  atol = 0.5 / 255 + 1e-6 if signature == "generate_png" else 1e-6
  np.testing.assert_allclose(got, want, atol=atol)


def test_rest_multi_output_and_error_answers(image_export):
  _, loaded = image_export
  x = _images(2)
  want = _call(loaded, "encode", images=tf.constant(x))
  rows = _over_the_wire(
    tf_serving_rest_predict(loaded, {"signature_name": "encode", "instances": x.tolist()})
  )
  assert set(rows["predictions"][0]) == {"mu", "logvar"}
  columns = _over_the_wire(
    tf_serving_rest_predict(loaded, {"signature_name": "encode", "inputs": {"images": x.tolist()}})
  )
  for answer in (rows, columns):
    outputs = serving_client.parse_rest_outputs(answer)
    for k in ("mu", "logvar"):
      np.testing.assert_allclose(outputs[k], want[k], atol=1e-6)
    with pytest.raises(serving_client.ServingError, match="choose one"):
      serving_client.parse_rest_response(answer)
    np.testing.assert_allclose(
      serving_client.parse_rest_response(answer, output="mu"), want["mu"], atol=1e-6
    )
  bad = tf_serving_rest_predict(loaded, {"signature_name": "decode", "inputs": [[0.0] * 5]})
  with pytest.raises(serving_client.ServingError, match=re.escape("[?,4]")):
    serving_client.parse_rest_response(bad)
  with pytest.raises(ValueError, match="form"):
    serving_client.build_rest_request([1], "rows")


class _FakeTFServing:
  """A local HTTP server answering `/v1/models/NAME[/versions/V]:predict` like TF Serving."""

  def __init__(self, models):
    fake = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def log_message(self, *args):  # keep test output quiet
        pass

      def do_POST(self):  # noqa: N802
        match = re.fullmatch(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:predict", self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not match or match.group(1) not in fake.models:
          code, answer = 404, {"error": f"Servable not found for request: {self.path}"}
        else:
          answer = tf_serving_rest_predict(fake.models[match.group(1)], body)
          code = 400 if "error" in answer else 200
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    self.models = models
    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
    self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, *exc):
    self.server.shutdown()
    self.server.server_close()


def test_the_client_imports_neither_tensorflow_nor_the_training_code():
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  code = (
    "import sys, as_introvae_tf.serving.client; print(sorted(m for m in sys.modules "
    "if m.startswith(('tensorflow', 'keras', 'as_introvae_tf'))))"
  )
  out = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo
  ).stdout
  assert out.strip() == str(
    [
      "as_introvae_tf",
      "as_introvae_tf.serving",
      "as_introvae_tf.serving.client",
      "as_introvae_tf.serving.protocol",
    ]
  )


def _client(argv):
  fv = flags.FlagValues()
  serving_client.define_flags(fv)
  fv(["serving_client"] + argv)
  return serving_client.main(["serving_client"], fv)


@pytest.mark.parametrize(
  "form,signature", [("instances", "serving_default"), ("inputs", "generate_png")]
)
def test_client_over_http_writes_the_grid(image_export, tmp_path, capsys, form, signature):
  _, loaded = image_export
  out = tmp_path / "grid.png"
  with _FakeTFServing({"fm": loaded}) as server:
    rc = _client(
      [
        f"--url={server.url}",
        "--model=fm",
        "--num=6",
        f"--out={out}",
        f"--format={form}",
        f"--signature={signature}",
        "--seed_start=3",
      ]
    )
    assert rc == 0, capsys.readouterr().err
    rc = _client([f"--url={server.url}", "--model=nope", "--num=2", f"--out={out}"])
    assert rc == 1 and "Servable not found" in capsys.readouterr().err
  grid = tf.io.decode_png(tf.io.read_file(str(out))).numpy().astype(np.float32) / 255
  want = visualize.image_grid(
    _call(loaded, "generate", seeds=tf.range(3, 9, dtype=tf.int64))["images"]
  )
  assert grid.shape == want.shape == (2 * 28, 3 * 28, 1)  # 6 images: 2 rows x 3
  assert np.abs(grid - want).max() <= 1 / 255 + 1e-6


def test_client_over_grpc(image_export, tmp_path):
  pytest.importorskip(
    "tensorflow_serving.apis", reason="tensorflow-serving-api not installed: gRPC path not tested"
  )
  import grpc
  from tensorflow_serving.apis import predict_pb2
  from tensorflow_serving.apis import prediction_service_pb2_grpc

  _, loaded = image_export

  class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request, context):  # noqa: N802
      if request.model_spec.name != "fm":
        context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found: {request.model_spec.name}")
      fn = loaded.signatures[request.model_spec.signature_name or "serving_default"]
      outputs = fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
      answer = predict_pb2.PredictResponse()
      answer.model_spec.CopyFrom(request.model_spec)
      for k, v in outputs.items():
        answer.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
      return answer

  server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
  port = server.add_insecure_port("127.0.0.1:0")
  server.start()
  try:
    target = f"127.0.0.1:{port}"
    want = _call(loaded, "generate", seeds=tf.constant(SEEDS, tf.int64))["images"]
    got = serving_client.fetch_samples(SEEDS, model="fm", grpc_target=target)
    np.testing.assert_allclose(got, want, atol=1e-6)
    png = serving_client.fetch_samples(
      SEEDS, model="fm", grpc_target=target, signature="generate_png"
    )
    np.testing.assert_allclose(png, want, atol=0.5 / 255 + 1e-6)
    with pytest.raises(serving_client.ServingError, match="NOT_FOUND"):
      serving_client.fetch_samples([1], model="other", grpc_target=target)
    assert (
      _client([f"--grpc={target}", "--model=fm", "--num=4", f"--out={tmp_path / 'g.png'}"]) == 0
    )
    assert (tmp_path / "g.png").exists()
  finally:
    server.stop(None)


# === 2-D runs =================================================================================


def test_2d_export_returns_raw_points_and_onnx_matches(run_2d, exports, tmp_path):
  import onnxruntime as ort

  result = export_lib.export_run(run_2d, os.path.join(exports, "gauss"))
  loaded = tf.saved_model.load(result.version_dir)
  assert set(loaded.signatures) == set(export_lib.SIGNATURES_2D)
  assert result.model_card["kind"] == "2d" and result.model_card["example_shape"] == [2]
  run = run_lib.build_run(config_lib.load_config(run_2d))
  z = _z_per_seed(SEEDS, 2)
  want = run.model.ema_decoder(z, training=False).numpy()
  got = _call(loaded, "generate", seeds=tf.constant(SEEDS, tf.int64))["images"]
  np.testing.assert_allclose(got, want, atol=1e-5)
  x = np.array([[3.0, -2.5], [0.1, 0.2]], np.float32)
  mu = run.model.encoder(x, training=False)[0].numpy()
  np.testing.assert_allclose(
    _call(loaded, "reconstruct", images=tf.constant(x))["images"],
    run.model.ema_decoder(mu, training=False).numpy(),
    atol=1e-5,
  )
  session = ort.InferenceSession(
    os.path.join(result.version_dir, "decoder.onnx"), providers=["CPUExecutionProvider"]
  )
  assert np.abs(session.run(["images"], {"z": z})[0] - got).max() <= 1e-5
  with _FakeTFServing({"gauss": loaded}) as server:
    assert (
      _client(
        [f"--url={server.url}", "--model=gauss", "--num=64", f"--out={tmp_path / 'points.png'}"]
      )
      == 0
    )
  assert (tmp_path / "points.png").exists()


# === Bad input: clear errors, exit status 1, no traceback ====================================


def _export(argv):
  fv = flags.FlagValues()
  export_cli.define_flags(fv)
  fv(["export"] + argv)
  return export_cli.main(["export"], fv)


def _copy_run(run, tmp_path, **config_changes):
  workdir = tmp_path / "copy"
  shutil.copytree(run, workdir)
  path = workdir / "config.json"
  values = json.loads(path.read_text())
  values.update(config_changes)
  path.write_text(json.dumps(values))
  return str(workdir)


def _expect_error(capsys, argv, *needles):
  rc = _export(argv)
  err = capsys.readouterr().err
  assert rc == 1, err
  assert "Traceback" not in err
  for needle in needles:
    assert needle in err, err


def test_no_config_json(tmp_path, capsys):
  _expect_error(
    capsys,
    [f"--workdir={tmp_path}", f"--export_dir={tmp_path / 'out'}"],
    "config.json not found",
    "not a training run directory",
  )
  assert not (tmp_path / "out").exists()


def test_no_checkpoint(image_run, tmp_path, capsys):
  shutil.copy(os.path.join(image_run, "config.json"), tmp_path)
  _expect_error(
    capsys,
    [f"--workdir={tmp_path}", f"--export_dir={tmp_path / 'out'}"],
    "no checkpoint in",
    "checkpoints",
  )
  _expect_error(
    capsys,
    [
      f"--workdir={image_run}",
      f"--export_dir={tmp_path / 'out'}",
      f"--checkpoint={tmp_path / 'ckpt-9'}",
    ],
    "is not a checkpoint prefix",
  )


def test_unknown_format_and_missing_flags(image_run, tmp_path, capsys):
  _expect_error(
    capsys,
    [f"--workdir={image_run}", f"--export_dir={tmp_path / 'out'}", "--format=saved_model,tflite"],
    "--format",
    "tflite",
    "onnx",
  )
  _expect_error(capsys, [f"--export_dir={tmp_path / 'out'}"], "--workdir is required")
  _expect_error(
    capsys,
    [f"--workdir={image_run}", f"--export_dir={tmp_path / 'out'}", "--version=0"],
    "--version must be an integer >= 1",
  )


def test_existing_version_is_never_overwritten(image_export, image_run, exports, capsys):
  result, _ = image_export
  before = os.path.getmtime(os.path.join(result.version_dir, "saved_model.pb"))
  _expect_error(
    capsys,
    [f"--workdir={image_run}", f"--export_dir={os.path.join(exports, 'fm')}", "--version=1"],
    "already exists",
    "omit --version",
  )
  assert os.path.getmtime(os.path.join(result.version_dir, "saved_model.pb")) == before


def test_checkpoint_from_another_architecture(image_run, tmp_path, capsys):
  workdir = _copy_run(image_run, tmp_path, z_dim=Z_DIM + 1)
  _expect_error(
    capsys,
    [f"--workdir={workdir}", f"--export_dir={tmp_path / 'out'}"],
    "its architecture differs",
    f"--z_dim={Z_DIM} (config.json: {Z_DIM + 1})",
  )
  assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_ema_weights_of_a_run_without_ema(image_run, tmp_path, capsys):
  # A run trained with --ema_decay=0 has no EMA (its step-0 checkpoint suffices here).
  config = config_lib.load_config(image_run).replace(
    workdir=str(tmp_path / "no_ema"), ema_decay=0.0
  )
  config_lib.save_config(config, config.workdir)
  run = run_lib.build_run(config, restore=False)
  run.manager.save(checkpoint_number=0)
  _expect_error(
    capsys,
    [f"--workdir={config.workdir}", f"--export_dir={tmp_path / 'out'}"],
    "--ema_decay=0",
    "use --weights=raw",
  )
  assert (
    _export(
      [
        f"--workdir={config.workdir}",
        f"--export_dir={tmp_path / 'out'}",
        "--weights=raw",
        "--format=onnx",
      ]
    )
    == 0
  )
  assert "Exported vae" in capsys.readouterr().out


def test_command_line_exit_status_without_traceback(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      "-X",
      "importtime",
      "-m",
      "as_introvae_tf.export",
      f"--workdir={tmp_path}",
      f"--export_dir={tmp_path / 'out'}",
    ],
    capture_output=True,
    text=True,
    timeout=120,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
  )
  assert out.returncode == 1
  assert "Traceback" not in out.stderr
  assert "error:" in out.stderr and "config.json not found" in out.stderr
  # named before TensorFlow's start-up (seconds): the import log has no `tensorflow` line,
  # at any nesting depth
  assert not [
    line for line in out.stderr.splitlines() if line.rsplit("|", 1)[-1].strip() == "tensorflow"
  ]


@pytest.mark.large
def test_command_line_export_and_client_end_to_end(image_run, tmp_path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  model_dir = tmp_path / "exports" / "fm"
  for expected in ("1", "2"):
    out = subprocess.run(
      [
        sys.executable,
        "-m",
        "as_introvae_tf.export",
        f"--workdir={image_run}",
        f"--export_dir={model_dir}",
      ],
      capture_output=True,
      text=True,
      timeout=300,
      cwd=repo,
      env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"to {model_dir / expected}" in out.stdout
  loaded = tf.saved_model.load(str(model_dir / "2"))
  with _FakeTFServing({"fm": loaded}) as server:
    out = subprocess.run(
      [
        sys.executable,
        "-m",
        "as_introvae_tf.serving.client",
        f"--url={server.url}",
        "--model=fm",
        "--num=16",
        f"--out={tmp_path / 'grid.png'}",
      ],
      capture_output=True,
      text=True,
      timeout=300,
      cwd=repo,
      env=env,
    )
  assert out.returncode == 0, out.stderr[-3000:]
  assert (tmp_path / "grid.png").exists()


def test_unsynced_ema_decoder_falls_back_to_the_optimizer_ema(image_run):
  model = run_lib.build_run(config_lib.load_config(image_run)).model
  decoder, source = export_lib.decoder_for_export(model, "ema")
  assert decoder is model.ema_decoder and source.startswith("ema_decoder of the checkpoint")
  model.ema_decoder.weights[0].assign(model.ema_decoder.weights[0] + 1.0)  # never synced
  assert not export_lib.ema_decoder_is_synced(model)
  decoder, source = export_lib.decoder_for_export(model, "ema")
  assert decoder is not model.ema_decoder and "not synced" in source
  for got, want in zip(decoder.get_weights(), export_lib.ema_decoder_weights(model)):
    np.testing.assert_array_equal(got, want)
  assert export_lib.decoder_for_export(model, "raw")[0] is model.decoder


def test_a_generator_without_inference_encoder_exports_generate_and_decode_only(tmp_path):
  """WGAN-GP: its encoder is a critic, so there is no encode/reconstruct signature."""
  workdir = _train(
    tmp_path / "wgan",
    method="wgan_gp",
    dataset="8gaussians",
    z_dim=2,
    num_hidden=16,
    num_layers=1,
    batch_size=40,
    train_steps=2,
    num_vae=0,
    ema_decay=0.0,
  )
  result = export_lib.export_run(workdir, str(tmp_path / "exports" / "wgan"), weights="raw")
  loaded = tf.saved_model.load(result.version_dir)
  assert set(loaded.signatures) == {"serving_default", "generate", "decode"}
  assert result.model_card["signatures"] == ["serving_default", "generate", "decode"]
