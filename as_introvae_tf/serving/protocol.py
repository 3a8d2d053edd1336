"""TF Serving's predict API as the client speaks it: request bodies, answers, transports.

REST (standard library only): `build_rest_request` builds the body of
POST URL/v1/models/MODEL[/versions/V]:predict with seeds, in the row format
`{"signature_name": S, "instances": [0, 1, ...]}` (answer: `{"predictions": [...]}`) or the
columnar format `{"signature_name": S, "inputs": {"seeds": [0, 1, ...]}}` (answer:
`{"outputs": ...}`), as TF Serving's REST API documents; `parse_rest_response` turns either
answer into a numpy array (PNG bytes, base64 `{"b64": ...}`, decoded with Pillow);
`rest_predict` sends it. gRPC: `grpc_predict` (the PredictionService of
`tensorflow-serving-api`, imported only then; it imports TensorFlow).

Request building and response parsing are pure functions, tested against a SavedModel
without a TF Serving binary. Imports neither TensorFlow nor the training code. The client
(`serving.client`) checks what these return.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import io
import json
import urllib.error
import urllib.request

import numpy as np

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
    ServingError: an `{"error": ...}` answer, text that is not JSON, an answer that is not a
      JSON object with 'predictions' (a list) or 'outputs', rows of different keys or shapes,
      values that are not numbers (or `{"b64": ...}` bytes).
  """
  if isinstance(response, (str, bytes)):
    try:
      response = json.loads(response)
    except ValueError as e:
      raise ServingError(f"the answer is not JSON ({e})") from None
  if not isinstance(response, dict):
    raise ServingError(
      f"not a predict answer: a JSON {type(response).__name__}, not an object with "
      f"'predictions' or 'outputs': {shorten(response)}"
    )
  if "error" in response:
    raise ServingError(f"TF Serving error: {response['error']}")
  try:
    if "predictions" in response:
      rows = response["predictions"]
      if not isinstance(rows, list):
        raise ServingError(
          f"'predictions' is a JSON {type(rows).__name__}, not a list: {shorten(rows)}"
        )
      if rows and isinstance(rows[0], dict) and not set(rows[0]) == {"b64"}:
        keys = set(rows[0])
        if not all(isinstance(row, dict) and set(row) == keys for row in rows):
          raise ServingError("the 'predictions' rows do not all have the same outputs")
        return {k: _to_array(k, [row[k] for row in rows]) for k in rows[0]}
      return {"output": _to_array("output", rows)}
    if "outputs" in response:
      outputs = response["outputs"]
      if isinstance(outputs, dict) and not set(outputs) == {"b64"}:
        return {k: _to_array(k, v) for k, v in outputs.items()}
      return {"output": _to_array("output", outputs)}
  except (TypeError, ValueError, KeyError, AttributeError, binascii.Error) as e:
    raise ServingError(
      f"the answer's values are not a regular array of numbers or b64 bytes ({e})"
    ) from None
  raise ServingError(f"not a predict answer (no 'predictions' or 'outputs'): {shorten(response)}")


def shorten(value, limit=120):
  """`value` as one line of at most `limit` characters (for error messages)."""
  text = " ".join(str(value).split())
  return text if len(text) <= limit else text[:limit] + "..."


def decode_pngs(png_bytes):
  """PNG bytes `[N]` -> float32 `[N, H, W, C]` in [0, 1] (Pillow; C = 1 grey, 3 RGB, 4 RGBA).

  Raises:
    ServingError: a value that is not a PNG, or PNGs of different shapes.
  """
  from PIL import Image  # pylint: disable=import-outside-toplevel

  images = []
  for i, data in enumerate(png_bytes):
    try:
      with Image.open(io.BytesIO(data), formats=["PNG"]) as picture:
        if picture.mode not in ("L", "RGB", "RGBA"):
          picture = picture.convert("RGBA" if "A" in picture.mode else "RGB")
        array = np.asarray(picture, np.uint8)
    except Exception as e:  # pylint: disable=broad-except  # Pillow raises many kinds
      raise ServingError(f"PNG {i} of the answer does not decode ({shorten(e)})") from None
    images.append(array[..., None] if array.ndim == 2 else array)
  if not images:
    return np.zeros([0, 0, 0, 0], np.float32)
  if len({a.shape for a in images}) != 1:
    raise ServingError(f"the answer's PNGs differ in shape: {sorted({a.shape for a in images})}")
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
  where = request.full_url
  try:
    with urllib.request.urlopen(request, timeout=timeout) as answer:
      raw = answer.read()
  except urllib.error.HTTPError as e:
    try:
      text = e.read().decode("utf-8", "replace")
    except (http.client.HTTPException, OSError):
      text = ""
    try:
      parsed = json.loads(text)
      if isinstance(parsed, dict) and "error" in parsed:
        text = str(parsed["error"])
    except ValueError:
      pass
    raise ServingError(f"HTTP {e.code} from {where}: {shorten(text or e.reason, 300)}") from None
  except http.client.IncompleteRead as e:
    raise ServingError(
      f"the answer from {where} was cut short ({len(e.partial)} bytes received, "
      f"{e.expected} more expected)"
    ) from None
  except http.client.HTTPException as e:  # a garbled status line or headers
    raise ServingError(
      f"{where} did not answer in HTTP ({type(e).__name__}: {shorten(e)})"
    ) from None
  except urllib.error.URLError as e:
    raise ServingError(f"cannot reach {where}: {shorten(e.reason)}") from None
  except OSError as e:  # refused, reset, timed out
    raise ServingError(f"cannot reach {where}: {shorten(e)}") from None
  try:
    return json.loads(raw.decode("utf-8"))
  except ValueError as e:
    raise ServingError(
      f"the answer from {where} is not JSON ({shorten(e)}): {shorten(raw[:80])}"
    ) from None


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
