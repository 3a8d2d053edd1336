"""Asks a TF Serving instance for generated samples and writes them as one PNG grid.

    python -m as_introvae_tf.serving.client --url=http://localhost:8501 --model=fmnist \
        --num=16 --out=grid.png [--signature=serving_default] [--format=instances|inputs] \
        [--seed_start=0] [--grpc=localhost:8500]

REST (default; standard library only): POST URL/v1/models/MODEL[/versions/V]:predict with the
seeds `seed_start .. seed_start + num - 1`, either in the row format
`{"signature_name": S, "instances": [0, 1, ...]}` (answer: `{"predictions": [...]}`) or in the
columnar format `{"signature_name": S, "inputs": {"seeds": [0, 1, ...]}}` (answer:
`{"outputs": ...}`), as TF Serving's REST API documents. gRPC (`--grpc=HOST:8500`): the
PredictionService of the `tensorflow-serving-api` package (imported only then).

Signatures that take seeds: serving_default / generate (float images in [0, 1], or 2-D points)
and generate_png (PNG bytes, base64 `{"b64": ...}` over REST). Image results are tiled with
`visualize.image_grid`; 2-D points are drawn with `visualize.scatter_2d`. The same seeds always
give the same samples.

Request building (`build_rest_request`) and response parsing (`parse_rest_response`) are pure
functions, tested against a SavedModel without a TF Serving binary.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request

import numpy as np

from as_introvae_tf.serving import MAX_BATCH  # the client refuses larger requests up front

SEED_SIGNATURES = ("serving_default", "generate", "generate_png")
FORMS = ("instances", "inputs")
SEEDS_INPUT = "seeds"


class ServingError(RuntimeError):
  """TF Serving answered with an error, or the answer is not what the signature returns."""


# === Pure request / response helpers ==========================================================


def build_rest_request(seeds, form="instances", signature="serving_default"):
  """The JSON body of a REST predict request for a seed-taking signature.

  Args:
    seeds: int sequence `[N]` (sent as JSON numbers; TF Serving casts them to int64).
    form: "instances" (row format: one value per example, since the signature has the single
      named input `seeds`) or "inputs" (columnar format: `{"seeds": [...]}`).
    signature: signature name (`signature_name` in the body).

  Returns:
    dict, ready for `json.dumps`.

  Raises:
    ValueError: unknown form.
  """
  values = [int(s) for s in np.asarray(seeds).reshape(-1)]
  if form == "instances":
    return {"signature_name": signature, "instances": values}
  if form == "inputs":
    return {"signature_name": signature, "inputs": {SEEDS_INPUT: values}}
  raise ValueError(f"form must be one of {FORMS}; got {form!r}")


def _decode_b64(value):
  if isinstance(value, dict) and set(value) == {"b64"}:
    return base64.b64decode(value["b64"])
  if isinstance(value, list):
    return [_decode_b64(v) for v in value]
  return value


def _to_array(name, value):
  """A JSON value of output `name` as numpy: bytes (object array) for `*_bytes`, else float32."""
  value = _decode_b64(value)
  if name.endswith("_bytes") or (isinstance(value, list) and value and isinstance(value[0], bytes)):
    array = np.empty(len(value), dtype=object)
    array[:] = value
    return array
  return np.asarray(value, dtype=np.float32)


def parse_rest_outputs(response):
  """All named outputs of a REST predict answer, `{name: numpy array}` (batch first).

  Handles both documented answer formats: `{"predictions": [row, ...]}` (rows are values when
  the signature has one output, else `{name: value}` objects) and `{"outputs": value}` /
  `{"outputs": {name: value}}`. A single unnamed output is returned as `{"output": ...}`.
  `{"b64": ...}` values (outputs named `*_bytes`) are decoded to bytes.

  Raises:
    ServingError: an `{"error": ...}` answer, or neither key present.
  """
  if isinstance(response, (str, bytes)):
    response = json.loads(response)
  if "error" in response:
    raise ServingError(f"TF Serving error: {response['error']}")
  if "predictions" in response:
    rows = response["predictions"]
    if rows and isinstance(rows[0], dict) and not set(rows[0]) == {"b64"}:
      return {k: _to_array(k, [row[k] for row in rows]) for k in rows[0]}
    return {"output": _to_array("output", rows)}
  if "outputs" in response:
    outputs = response["outputs"]
    if isinstance(outputs, dict) and not set(outputs) == {"b64"}:
      return {k: _to_array(k, v) for k, v in outputs.items()}
    return {"output": _to_array("output", outputs)}
  raise ServingError(f"not a predict answer (no 'predictions' or 'outputs'): {str(response)[:200]}")


def decode_pngs(png_bytes):
  """PNG bytes `[N]` -> float32 `[N, H, W, C]` in [0, 1] (all PNGs must share one size)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  images = [tf.io.decode_png(b).numpy() for b in png_bytes]
  if not images:
    return np.zeros([0, 0, 0, 0], np.float32)
  return np.stack(images).astype(np.float32) / 255.0


def parse_rest_response(response, output=None):
  """The samples of a REST predict answer as one numpy array.

  Args:
    response: the answer, as a dict or JSON text.
    output: the output to return; default `images`, else `png_bytes`, else the only output.

  Returns:
    float32 `[N, *example_shape]`: images (from `images`, or decoded from `png_bytes`; in
    [0, 1]) or 2-D points; for another named output, that output (float32, or an object
    array of bytes for `*_bytes`).

  Raises:
    ServingError: an error answer, a malformed answer, or several outputs and none chosen.
  """
  outputs = parse_rest_outputs(response)
  if output is None:
    for candidate in ("images", "png_bytes", "output"):
      if candidate in outputs:
        output = candidate
        break
    else:
      if len(outputs) != 1:
        raise ServingError(f"the answer has outputs {sorted(outputs)}; choose one")
      output = next(iter(outputs))
  if output not in outputs:
    raise ServingError(f"the answer has no output {output!r} (has {sorted(outputs)})")
  value = outputs[output]
  if value.dtype == object:
    return decode_pngs(value)
  return value


def predict_url(url, model, version=None):
  """`URL/v1/models/MODEL[/versions/VERSION]:predict`."""
  base = url.rstrip("/")
  if "://" not in base:
    base = "http://" + base
  path = f"/v1/models/{model}" + (f"/versions/{int(version)}" if version else "")
  return f"{base}{path}:predict"


# === Transports ===============================================================================


def rest_predict(url, model, body, version=None, timeout=60.0):
  """POSTs `body` to TF Serving's REST predict endpoint; returns the decoded JSON answer.

  Raises:
    ServingError: HTTP error (with TF Serving's `error` message) or unreachable server.
  """
  request = urllib.request.Request(
    predict_url(url, model, version),
    data=json.dumps(body).encode("utf-8"),
    headers={"Content-Type": "application/json"},
    method="POST",
  )
  try:
    with urllib.request.urlopen(request, timeout=timeout) as answer:
      return json.loads(answer.read().decode("utf-8"))
  except urllib.error.HTTPError as e:
    text = e.read().decode("utf-8", "replace")
    try:
      text = json.loads(text).get("error", text)
    except ValueError:
      pass
    raise ServingError(f"HTTP {e.code} from {request.full_url}: {text}") from None
  except (urllib.error.URLError, OSError) as e:
    raise ServingError(f"cannot reach {request.full_url}: {e}") from None


def grpc_predict(target, model, seeds, signature="serving_default", version=None, timeout=60.0):
  """Predict over gRPC (`tensorflow-serving-api`); returns `{output name: numpy array}`.

  Raises:
    ServingError: the package is missing, or the RPC fails.
  """
  try:
    import grpc  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tensorflow_serving.apis import predict_pb2  # pylint: disable=import-outside-toplevel
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ServingError(
      f"--grpc needs the tensorflow-serving-api package ({e}); "
      "pip install tensorflow-serving-api==2.21.0, or use REST"
    ) from None
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model
  request.model_spec.signature_name = signature
  if version:
    request.model_spec.version.value = int(version)
  request.inputs[SEEDS_INPUT].CopyFrom(
    tf.make_tensor_proto(np.asarray(seeds, np.int64).reshape(-1), dtype=tf.int64)
  )
  with grpc.insecure_channel(target) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
      answer = stub.Predict(request, timeout=timeout)
    except grpc.RpcError as e:
      raise ServingError(f"gRPC {e.code().name} from {target}: {e.details()}") from None
  return {name: tf.make_ndarray(proto) for name, proto in answer.outputs.items()}


def samples_from_outputs(outputs):
  """`{name: array}` -> the samples (as `parse_rest_response` chooses them)."""
  for name in ("images", "png_bytes"):
    if name in outputs:
      value = outputs[name]
      return decode_pngs(value) if value.dtype == object else value.astype(np.float32)
  raise ServingError(f"the answer has outputs {sorted(outputs)}; expected images or png_bytes")


def render(samples, path):
  """Writes samples as a PNG: `[N, H, W, C]` images as a grid, `[N, 2]` points as a scatter."""
  from as_introvae_tf import visualize  # pylint: disable=import-outside-toplevel

  samples = np.asarray(samples, np.float32)
  if samples.ndim == 4:
    picture = visualize.image_grid(samples)
  elif samples.ndim == 2 and samples.shape[1] == 2:
    limit = max(2.0, float(np.abs(samples).max()) * 1.1) if samples.size else 2.0
    picture = visualize.scatter_2d(samples, plot_range=limit, title="TF Serving samples")
  else:
    raise ServingError(f"cannot draw samples of shape {samples.shape}")
  return visualize.save_png(path, picture)


def check_batch(num, max_batch=MAX_BATCH):
  """Raises ValueError if `num` seeds exceed `max_batch` (the export's `--max_batch`)."""
  if num > max_batch:
    raise ValueError(
      f"{num} samples requested, more than --max_batch={max_batch} per request "
      "(the exported model refuses larger batches; ask in several requests, or "
      "pass --max_batch as exported)"
    )


def fetch_samples(
  seeds,
  *,
  url=None,
  model,
  signature="serving_default",
  form="instances",
  grpc_target=None,
  version=None,
  timeout=60.0,
  max_batch=MAX_BATCH,
):
  """Samples for `seeds` from TF Serving, over REST (`url`) or gRPC (`grpc_target`).

  Args:
    max_batch: more seeds than this are refused before any request is built.

  Returns:
    float32 numpy `[N, *example_shape]` (images in [0, 1], or 2-D points).

  Raises:
    ServingError, ValueError: bad arguments (e.g. more than `max_batch` seeds), transport or
      serving errors.
  """
  check_batch(len(seeds), max_batch)
  if signature not in SEED_SIGNATURES:
    raise ValueError(
      f"--signature must be one of {', '.join(SEED_SIGNATURES)} (the client "
      f"sends seeds); got {signature!r}"
    )
  if grpc_target:
    return samples_from_outputs(
      grpc_predict(grpc_target, model, seeds, signature, version, timeout)
    )
  if not url:
    raise ValueError("give --url=http://HOST:8501 (REST) or --grpc=HOST:8500")
  body = build_rest_request(seeds, form, signature)
  return parse_rest_response(rest_predict(url, model, body, version, timeout))


# === Command line =============================================================================


def define_flags(flag_values=None):
  """Defines the client's flags in `flag_values` (default absl's FLAGS; idempotent)."""
  from absl import flags  # pylint: disable=import-outside-toplevel

  fv = flags.FLAGS if flag_values is None else flag_values
  if "model" in fv:
    return
  flags.DEFINE_string("url", "http://localhost:8501", "TF Serving REST address.", flag_values=fv)
  flags.DEFINE_string(
    "model", None, "Model name (the MODEL_NAME of BASE/MODEL_NAME).", flag_values=fv
  )
  flags.DEFINE_integer(
    "version", None, "Model version; default: the one TF Serving serves.", flag_values=fv
  )
  flags.DEFINE_integer("num", 16, "Number of samples (seeds seed_start .. +num-1).", flag_values=fv)
  flags.DEFINE_integer("seed_start", 0, "First seed.", flag_values=fv)
  flags.DEFINE_string("out", "grid.png", "Output PNG.", flag_values=fv)
  flags.DEFINE_enum(
    "signature", "serving_default", list(SEED_SIGNATURES), "Signature.", flag_values=fv
  )
  flags.DEFINE_enum(
    "format",
    "instances",
    list(FORMS),
    "REST body format: instances (row) or inputs (columnar).",
    flag_values=fv,
  )
  flags.DEFINE_string(
    "grpc",
    None,
    "HOST:8500: use gRPC instead of REST (needs tensorflow-serving-api).",
    flag_values=fv,
  )
  flags.DEFINE_float("timeout", 60.0, "Request timeout in seconds.", flag_values=fv)
  flags.DEFINE_integer(
    "max_batch",
    MAX_BATCH,
    "The export's --max_batch: larger --num is refused before anything is built or sent.",
    flag_values=fv,
  )


def main(argv, flag_values=None):
  """Runs the client from parsed flags; returns the exit status (0 ok, 1 error)."""
  from absl import flags  # pylint: disable=import-outside-toplevel

  fv = flags.FLAGS if flag_values is None else flag_values
  if len(argv) > 1:
    print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    return 1
  if not fv.model:
    print("error: --model is required", file=sys.stderr)
    return 1
  if fv.num < 1:
    print(f"error: --num must be >= 1; got {fv.num}", file=sys.stderr)
    return 1
  try:
    check_batch(fv.num, fv.max_batch)  # before the seed list or the request is built
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  seeds = list(range(fv.seed_start, fv.seed_start + fv.num))
  try:
    samples = fetch_samples(
      seeds,
      url=fv.url,
      model=fv.model,
      signature=fv.signature,
      form=fv.format,
      grpc_target=fv.grpc,
      version=fv.version,
      timeout=fv.timeout,
      max_batch=fv.max_batch,
    )
    path = render(samples, fv.out)
  except (ServingError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(
    f"{len(samples)} samples {list(samples.shape[1:])} for seeds {seeds[0]}..{seeds[-1]} "
    f"from {fv.grpc or fv.url} ({fv.signature}) -> {path}"
  )
  return 0


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from absl import app  # pylint: disable=import-outside-toplevel

  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
