"""The files of an export: the SavedModel archive, the ONNX decoder, the version folders.

`build_archive` (the signatures as a `keras.export.ExportArchive`) and `signature_defs` (their
inputs and outputs, for the model card); `export_onnx_decoder` (`decode` as ONNX, with its
parity against TensorFlow) and `try_export_onnx_generate`; `next_version` (TF Serving's
integer version folders); `ExportError`, raised for anything an export cannot do.
`export_lib.export_run` writes these into one version folder.
"""

from __future__ import annotations

import os
import platform
import re

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from as_introvae_tf.serving.signatures import seeds_to_z_numpy

ONNX_OPSET = 17
"""ONNX opset of `decoder.onnx` (onnxruntime 1.31 runs opsets 7..23; 17 is widely served)."""
ONNX_DECODER_FILE = "decoder.onnx"
ONNX_GENERATE_FILE = "generate.onnx"
MODEL_CARD_FILE = "model_card.json"
ONNX_GENERATE_UNSUPPORTED = (
  "generate is not exported to ONNX: tf2onnx 1.17 has no ONNX mapping for "
  "StatelessRandomGetKeyCounter/StatelessRandomNormalV2; compute z from the seeds "
  "(export_lib.seeds_to_z_numpy) and run decoder.onnx"
)


class ExportError(Exception):
  """The export cannot be done; the message names the problem and what to do."""


def short(error, limit=400):
  """The first line of an exception message, shortened (TF messages can print whole tensors)."""
  text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  text = text if len(text) <= limit else text[:limit] + " ..."
  return text.rstrip(".")


def build_archive(functions):
  """A `keras.export.ExportArchive` with every signature of `functions` (inference mode).

  `serving_default` is added first, then `generate`, `decode`, `encode`, `reconstruct` and,
  for images, `generate_png`. Inputs are named by their TensorSpecs; outputs are dicts.
  """
  archive = keras.export.ExportArchive()
  archive.track(functions.encoder)
  archive.track(functions.decoder)
  for name, signature in functions.input_signatures().items():
    archive.add_endpoint(name, functions.function(name), input_signature=signature)
  return archive


def _spec_json(spec):
  return {"dtype": spec.dtype.name, "shape": [None if d is None else int(d) for d in spec.shape]}


def signature_defs(functions):
  """{name: {"inputs": {..}, "outputs": {..}}} with dtype/shape of each named tensor (JSON)."""
  image_out = tf.TensorSpec([None, *functions.example_shape], tf.float32)
  z_out = tf.TensorSpec([None, functions.z_dim], tf.float32)
  outputs = {
    "serving_default": {"images": image_out},
    "generate": {"images": image_out},
    "decode": {"images": image_out},
    "encode": {"mu": z_out, "logvar": z_out},
    "reconstruct": {"images": image_out},
    "generate_png": {"png_bytes": tf.TensorSpec([None], tf.string)},
  }
  return {
    name: {
      "inputs": {s.name: _spec_json(s) for s in signature},
      "outputs": {k: _spec_json(v) for k, v in outputs[name].items()},
    }
    for name, signature in functions.input_signatures().items()
  }


def _rename_onnx_io(model_proto, input_name, output_name):
  """Makes the graph's single input/output carry the given names (tf2onnx may append ':0')."""
  graph = model_proto.graph
  renames = {graph.input[0].name: input_name, graph.output[0].name: output_name}
  renames = {k: v for k, v in renames.items() if k != v}
  if not renames:
    return model_proto
  for node in graph.node:
    node.input[:] = [renames.get(n, n) for n in node.input]
    node.output[:] = [renames.get(n, n) for n in node.output]
  graph.input[0].name = renames.get(graph.input[0].name, graph.input[0].name)
  graph.output[0].name = renames.get(graph.output[0].name, graph.output[0].name)
  return model_proto


def export_onnx_decoder(functions, path, opset=ONNX_OPSET, metadata=None):
  """Writes `decode` as ONNX: input `z` float32 `[N, z_dim]`, output `images`.

  Args:
    functions: `ServingFunctions`.
    path: output .onnx file.
    opset: ONNX opset (default `ONNX_OPSET`).
    metadata: optional {str: str} stored as the model's metadata_props.

  Returns:
    dict describing the file (opset, input/output names and shapes, parity with TF on 8 z).

  Raises:
    ExportError: tf2onnx fails to convert.
  """
  import tf2onnx  # pylint: disable=import-outside-toplevel
  import onnx  # pylint: disable=import-outside-toplevel

  signature = [tf.TensorSpec([None, functions.z_dim], tf.float32, name="z")]
  fn = tf.function(functions.decode_unchecked, input_signature=signature, autograph=False)
  try:
    model_proto, _ = tf2onnx.convert.from_function(fn, input_signature=signature, opset=opset)
  except Exception as e:  # pylint: disable=broad-except
    raise ExportError(
      f"tf2onnx {tf2onnx.__version__} could not convert the decoder to ONNX "
      f"opset {opset}: {short(e)}"
    ) from None
  model_proto = _rename_onnx_io(model_proto, "z", "images")
  if metadata:
    onnx.helper.set_model_props(model_proto, {k: str(v) for k, v in metadata.items()})
  onnx.checker.check_model(model_proto)
  with open(path, "wb") as f:
    f.write(model_proto.SerializeToString())
  info = {
    "file": os.path.basename(path),
    "opset": opset,
    "converter": f"tf2onnx {tf2onnx.__version__} (convert.from_function)",
    "inputs": {"z": {"dtype": "float32", "shape": [None, functions.z_dim]}},
    "outputs": {"images": {"dtype": "float32", "shape": [None, *functions.example_shape]}},
  }
  info["parity_max_abs_diff"] = _onnx_parity(functions, path)
  return info


def _onnx_parity(functions, path):
  """Max |onnxruntime - TF| of `decode` on 8 fixed z, or None without onnxruntime."""
  try:
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
  z = seeds_to_z_numpy(np.arange(8), functions.z_dim)
  onnx_out = session.run(["images"], {"z": z})[0]
  tf_out = functions.decode(z)["images"].numpy()
  diff = float(np.max(np.abs(onnx_out - tf_out)))
  if diff > 1e-4:
    logging.warning("ONNX decoder differs from TF by %g (max abs) on 8 test codes", diff)
  return diff


def try_export_onnx_generate(functions, path, opset=ONNX_OPSET):
  """Tries to convert `generate` (seeds -> images) to ONNX and to load it in onnxruntime.

  Returns:
    (True, info) when it converts and loads; (False, reason) otherwise (the file is removed).
    With tf2onnx 1.17 it fails: see `ONNX_GENERATE_UNSUPPORTED`.
  """
  import tf2onnx  # pylint: disable=import-outside-toplevel

  signature = [tf.TensorSpec([None], tf.int64, name="seeds")]
  fn = tf.function(functions.generate, input_signature=signature, autograph=False)
  try:
    tf2onnx.convert.from_function(fn, input_signature=signature, opset=opset, output_path=path)
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel

    ort.InferenceSession(path, providers=["CPUExecutionProvider"])
  except Exception as e:  # pylint: disable=broad-except
    if os.path.exists(path):
      os.remove(path)
    return False, f"{ONNX_GENERATE_UNSUPPORTED} ({short(e, 200)})"
  return True, {
    "file": os.path.basename(path),
    "opset": opset,
    "inputs": {"seeds": {"dtype": "int64", "shape": [None]}},
  }


def existing_versions(model_dir):
  """Sorted integer versions (numeric subdirectories) in BASE/MODEL_NAME."""
  if not os.path.isdir(model_dir):
    return []
  return sorted(
    int(d)
    for d in os.listdir(model_dir)
    if re.fullmatch(r"\d+", d) and os.path.isdir(os.path.join(model_dir, d))
  )


def next_version(model_dir):
  """1 + the highest existing version in BASE/MODEL_NAME (1 if none): TF Serving serves the
  highest version, so a new export becomes the served one."""
  versions = existing_versions(model_dir)
  return versions[-1] + 1 if versions else 1


def versions():
  """The versions of what wrote the export ({package: version}), for the model card."""
  import tf2onnx  # pylint: disable=import-outside-toplevel
  import onnx  # pylint: disable=import-outside-toplevel

  return {
    "tensorflow": tf.__version__,
    "keras": keras.__version__,
    "tf2onnx": tf2onnx.__version__,
    "onnx": onnx.__version__,
    "numpy": np.__version__,
    "python": platform.python_version(),
  }
