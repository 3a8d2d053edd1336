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
and generate_png (PNG bytes, base64 `{"b64": ...}` over REST). Image results are tiled as
`visualize.image_grid` tiles them and written with Pillow; 2-D points are drawn with
matplotlib. The same seeds always give the same samples.

The client trusts nothing in the answer (`check_samples`): one prediction per seed asked, one
example shape (the model card's with `--model_card=VERSION_DIR/model_card.json`), finite
values, pixels in [0, 1]. A wrong answer, an HTTP error, a garbled or cut-short response, an
unreachable server or an `--out` it cannot write end with one `error: ...` line and exit
status 1; the PNG is written under a temporary name and renamed, so no partial or temporary
file is left. Over REST it imports neither TensorFlow nor the training code (numpy, Pillow,
matplotlib for 2-D points); `--grpc` needs `tensorflow-serving-api`, which imports TensorFlow.

Request building (`build_rest_request`) and response parsing (`parse_rest_response`) are pure
functions of `serving.protocol`, tested against a SavedModel without a TF Serving binary; they
are importable from here too.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import tempfile

import numpy as np

from as_introvae_tf.serving import MAX_BATCH  # the client refuses larger requests up front
from as_introvae_tf.serving.protocol import FORMS
from as_introvae_tf.serving.protocol import SEED_SIGNATURES
from as_introvae_tf.serving.protocol import SEEDS_INPUT  # noqa: F401  (client.<name>)
from as_introvae_tf.serving.protocol import ServingError
from as_introvae_tf.serving.protocol import shorten
from as_introvae_tf.serving.protocol import build_rest_request
from as_introvae_tf.serving.protocol import decode_pngs  # noqa: F401
from as_introvae_tf.serving.protocol import grpc_predict
from as_introvae_tf.serving.protocol import parse_rest_outputs  # noqa: F401
from as_introvae_tf.serving.protocol import parse_rest_response
from as_introvae_tf.serving.protocol import predict_url  # noqa: F401
from as_introvae_tf.serving.protocol import rest_predict
from as_introvae_tf.serving.protocol import samples_from_outputs


def check_samples(samples, num, example_shape=None, kind=None):
  """Checks an answer's samples before anything is drawn; returns them as float32.

  Args:
    samples: the parsed answer, `[N, *example_shape]`.
    num: the number of seeds asked for.
    example_shape: the model card's `example_shape` (`[H, W, C]` or `[2]`); None accepts an
      image shape `[H, W, C]` with C in 1, 3, 4 or the 2-D `[2]`.
    kind: the model card's `kind` ("image" or "2d"); None: images when 3 dimensions per example.

  Returns:
    float32 numpy `[num, *example_shape]`: images in [0, 1], or finite 2-D points.

  Raises:
    ServingError: naming what is wrong: another number of predictions than seeds, another
      example shape, NaN/inf values, pixels outside [0, 1].
  """
  samples = np.asarray(samples)
  if samples.dtype.kind not in "fiu":
    raise ServingError(f"the answer's samples are not numbers (dtype {samples.dtype})")
  samples = samples.astype(np.float32)
  if samples.ndim < 1 or samples.shape[0] != num:
    got = samples.shape[0] if samples.ndim else "no"
    raise ServingError(f"the answer has {got} predictions for {num} seeds")
  shape = list(samples.shape[1:])
  if example_shape is not None:
    if shape != [int(d) for d in example_shape]:
      raise ServingError(
        f"the answer's examples have shape {shape}; the model card says {list(example_shape)}"
      )
  elif not (shape == [2] or (len(shape) == 3 and shape[2] in (1, 3, 4) and min(shape) > 0)):
    raise ServingError(
      f"the answer's examples have shape {shape}: neither an image [H, W, C] (C = 1, 3, 4) "
      "nor a 2-D point [2]"
    )
  bad = int(np.size(samples) - np.count_nonzero(np.isfinite(samples)))
  if bad:
    raise ServingError(f"the answer has {bad} non-finite values (NaN/inf)")
  image = kind == "image" if kind is not None else len(shape) == 3
  if image and samples.size and (samples.min() < 0.0 or samples.max() > 1.0):
    raise ServingError(
      f"the answer's pixels are outside [0, 1] (min {samples.min():.4g}, max {samples.max():.4g})"
    )
  return samples


def image_grid(images, columns=None):
  """Tiles float `[N, H, W, C]` images (clipped to [0, 1]) into one `[rows * H, columns * W, C]`
  image, as `visualize.image_grid` does (empty cells black), without TensorFlow."""
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  n, h, w, c = images.shape
  columns = columns or max(1, int(math.ceil(math.sqrt(n))))
  rows = max(1, int(math.ceil(n / columns)))
  grid = np.zeros((rows * h, columns * w, c), np.float32)
  for i in range(n):
    r, col = divmod(i, columns)
    grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = images[i]
  return grid


def _scatter_png(points):
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  limit = max(2.0, float(np.abs(points).max()) * 1.1) if points.size else 2.0
  fig, ax = plt.subplots(figsize=(6, 6), dpi=80)
  ax.scatter(points[:, 0], points[:, 1], s=4, c="g", label="samples")
  ax.set_xlim(-limit, limit)
  ax.set_ylim(-limit, limit)
  ax.set_aspect("equal")
  ax.set_title("TF Serving samples")
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=80)
  plt.close(fig)
  return buf.getvalue()


def _grid_png(images):
  from PIL import Image  # pylint: disable=import-outside-toplevel

  grid = np.round(image_grid(images) * 255.0).astype(np.uint8)
  mode = {1: "L", 3: "RGB", 4: "RGBA"}[grid.shape[-1]]
  buf = io.BytesIO()
  Image.fromarray(grid[..., 0] if mode == "L" else grid, mode).save(buf, format="PNG")
  return buf.getvalue()


def write_atomically(path, payload):
  """Writes bytes to `path` under a temporary name in its folder, then renames it.

  Missing folders are created.

  Raises:
    ServingError: naming `path` and the reason (a folder in the way, a file where a folder
      should be, no permission, disk full); the temporary file is removed.
  """
  path = os.path.abspath(path)
  folder = os.path.dirname(path)
  tmp = None
  try:
    if os.path.isdir(path):
      raise IsADirectoryError(21, os.strerror(21))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "wb") as fh:
      fh.write(payload)
    os.replace(tmp, path)
    tmp = None
  except OSError as e:
    raise ServingError(f"cannot write --out {path}: {e.strerror or e}") from None
  finally:
    if tmp is not None:
      try:
        os.unlink(tmp)
      except OSError:
        pass
  return path


def render(samples, path):
  """Writes samples as a PNG: `[N, H, W, C]` images as a grid (Pillow), `[N, 2]` points as a
  scatter plot (matplotlib); returns the path. No TensorFlow.

  Raises:
    ServingError: samples of another shape, or a path that cannot be written.
  """
  samples = np.asarray(samples, np.float32)
  if samples.ndim == 4 and samples.shape[-1] in (1, 3, 4):
    payload = _grid_png(samples)
  elif samples.ndim == 2 and samples.shape[1] == 2:
    payload = _scatter_png(samples)
  else:
    raise ServingError(f"cannot draw samples of shape {list(samples.shape)}")
  return write_atomically(path, payload)


def read_model_card(path):
  """`model_card.json` (or its version folder) -> the card dict.

  Raises:
    ServingError: missing, unreadable, not JSON, or without a list `example_shape`.
  """
  if os.path.isdir(path):
    path = os.path.join(path, "model_card.json")
  try:
    with open(path, encoding="utf-8") as fh:
      card = json.load(fh)
  except (OSError, ValueError) as e:
    raise ServingError(f"cannot read --model_card {path}: {shorten(e)}") from None
  if not isinstance(card, dict) or not isinstance(card.get("example_shape"), list):
    raise ServingError(f"--model_card {path} has no example_shape list: not a model card")
  return card


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
  example_shape=None,
  kind=None,
):
  """Samples for `seeds` from TF Serving, over REST (`url`) or gRPC (`grpc_target`), checked
  by `check_samples`.

  Args:
    seeds: int seeds, one sample each (the export's `seeds` input, int64).
    url: TF Serving's REST address (`http://HOST:8501`); used when `grpc_target` is None.
    model: the model name (MODEL_NAME of TF Serving's BASE/MODEL_NAME).
    signature: one of `SEED_SIGNATURES` ("serving_default", "generate", "generate_png").
    form: the REST body's format, "instances" (row) or "inputs" (columnar).
    grpc_target: `HOST:8500` for gRPC instead of REST (needs `tensorflow-serving-api`).
    version: the model version; None: the one TF Serving serves.
    timeout: seconds to wait for the answer.
    max_batch: more seeds than this are refused before any request is built.
    example_shape: the model card's `example_shape`, to check the answer against (None: any
      image or 2-D shape).
    kind: the model card's `kind` ("image" or "2d"; None: from the answer's shape).

  Returns:
    float32 numpy `[N, *example_shape]` (N = len(seeds); images in [0, 1], or 2-D points).

  Raises:
    ServingError, ValueError: bad arguments (e.g. more than `max_batch` seeds), transport or
      serving errors, a wrong answer (see `check_samples`).
  """
  check_batch(len(seeds), max_batch)
  if signature not in SEED_SIGNATURES:
    raise ValueError(
      f"--signature must be one of {', '.join(SEED_SIGNATURES)} (the client "
      f"sends seeds); got {signature!r}"
    )
  if grpc_target:
    samples = samples_from_outputs(
      grpc_predict(grpc_target, model, seeds, signature, version, timeout)
    )
  else:
    if not url:
      raise ValueError("give --url=http://HOST:8501 (REST) or --grpc=HOST:8500")
    body = build_rest_request(seeds, form, signature)
    samples = parse_rest_response(rest_predict(url, model, body, version, timeout))
  return check_samples(samples, len(seeds), example_shape, kind)


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
  flags.DEFINE_string(
    "model_card",
    None,
    "The export's model_card.json (or its version folder): the answer must have its "
    "example_shape, and its max_batch is the default --max_batch.",
    flag_values=fv,
  )
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
  if not fv.timeout > 0:
    print(f"error: --timeout must be > 0 seconds; got {fv.timeout}", file=sys.stderr)
    return 1
  try:
    card = read_model_card(fv.model_card) if fv.model_card else {}
    max_batch = fv.max_batch
    if card.get("max_batch") and not fv["max_batch"].present:
      max_batch = int(card["max_batch"])
    check_batch(fv.num, max_batch)  # before the seed list or the request is built
    seeds = list(range(fv.seed_start, fv.seed_start + fv.num))
    samples = fetch_samples(
      seeds,
      url=fv.url,
      model=fv.model,
      signature=fv.signature,
      form=fv.format,
      grpc_target=fv.grpc,
      version=fv.version,
      timeout=fv.timeout,
      max_batch=max_batch,
      example_shape=card.get("example_shape"),
      kind=card.get("kind"),
    )
    path = render(samples, fv.out)
  except (ServingError, ValueError, OSError) as e:
    print(f"error: {shorten(e, 1000)}", file=sys.stderr)
    return 1
  except Exception as e:  # pylint: disable=broad-except  # the client trusts no answer
    print(f"error: unexpected {type(e).__name__}: {shorten(e, 1000)}", file=sys.stderr)
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
