"""Exports a trained generator for serving: SavedModel (TF Serving layout), ONNX, model card.

`export_run(workdir, export_dir)` restores a training run (the latest checkpoint of
`WORKDIR/checkpoints`, or a named one) and writes one TF Serving version directory:

  EXPORT_DIR/                 = BASE/MODEL_NAME, the `base_path` TF Serving watches
    VERSION/                  the next free integer (1, 2, ...) unless a version is given
      saved_model.pb          SavedModel written with `keras.export.ExportArchive`
      variables/              (inference mode: BatchNorm uses its moving statistics)
      decoder.onnx            the `decode` signature as ONNX (opset `ONNX_OPSET`)
      model_card.json         what was exported, from which run/step, with which versions
      web/                    with `web=True` (`--web`): a static page running decoder.onnx
                              in the browser (`as_introvae_tf.serving.web`)

The version directory is written under a hidden temporary name and renamed into place at the
end, so a TF Serving instance polling EXPORT_DIR never sees a half-written version.

Signatures (all batched; 0 <= N <= max_batch (`--max_batch`, default 256; more is an
INVALID_ARGUMENT error naming the limit); for 2-D toy data "images" are points [N, 2]):

  serving_default = generate
      seeds  int64 [N]  ->  images float32 [N, *example_shape]
      z_i = tf.random.stateless_normal([z_dim], seed=[seeds[i], 0]), decoded. The same seed
      always gives the same image, whatever the batch it is in.
  decode        z float32 [N, z_dim]              ->  images float32 [N, *example_shape]
  encode        images float32 [N, *example_shape] ->  mu, logvar float32 [N, z_dim]
  reconstruct   images float32 [N, *example_shape] ->  images: decode(mu) (posterior mean)
  generate_png  seeds int64 [N] -> png_bytes string [N] (8-bit PNG; image models only; TF
                Serving's REST API base64-encodes it as {"b64": ...} because the name ends
                in `_bytes`)

Image outputs are clipped to [0, 1] (the decoder's last conv is linear, see
`networks.build_image_decoder`); 2-D points are returned unclipped. Image inputs are float32
in [0, 1], NHWC: `encode`/`reconstruct` reject values outside [0, 1] and NaN/inf, `decode`
rejects NaN/inf codes, each with an INVALID_ARGUMENT error whose message TF Serving passes on. Every signature checks its input shape with `tf.ensure_shape`, so a wrong
z size or image shape fails with TF's own InvalidArgumentError naming the expected shape
("... is not compatible with expected shape [?,4]") -- in TF, and in TF Serving.

Weights: `weights="ema"` (default) exports the checkpoint's `ema_decoder`: the exponential
moving average of the decoder weights, with BatchNorm statistics re-estimated for it, which
training writes before every checkpoint (`IntrospectiveVAE.prepare_for_inference`) and samples
with; `weights="raw"` the trained decoder. The encoder is always the trained encoder.

ONNX: `tf2onnx.convert.from_function` on `decode` with input signature `z: [None, z_dim]`,
output `images`. `generate` does not convert with tf2onnx 1.17: it has no ONNX mapping for
`StatelessRandomGetKeyCounter` / `StatelessRandomNormalV2` (the per-seed normal draw); ONNX
clients compute `z` themselves (`seeds_to_z_numpy`) and call the decoder.

This module restores the run, chooses the decoder weights and writes the version folder; the
writers of its files (SavedModel archive, ONNX, version numbers) are in `export_files`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import sys

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from as_introvae_tf import checkpoints as checkpoints_lib
from as_introvae_tf import config as config_lib
from as_introvae_tf import run as run_lib
from as_introvae_tf import workdir as workdir_lib
from as_introvae_tf.export_files import MODEL_CARD_FILE
from as_introvae_tf.export_files import ONNX_DECODER_FILE
from as_introvae_tf.export_files import ONNX_GENERATE_FILE
from as_introvae_tf.export_files import ONNX_GENERATE_UNSUPPORTED
from as_introvae_tf.export_files import ONNX_OPSET  # noqa: F401  (export_lib.ONNX_OPSET)
from as_introvae_tf.export_files import ExportError
from as_introvae_tf.export_files import short
from as_introvae_tf.export_files import versions
from as_introvae_tf.export_files import build_archive
from as_introvae_tf.export_files import export_onnx_decoder
from as_introvae_tf.export_files import next_version
from as_introvae_tf.export_files import signature_defs
from as_introvae_tf.export_files import try_export_onnx_generate
from as_introvae_tf.serving.signatures import (  # noqa: F401  (also export_lib.<name>)
  MAX_BATCH,
  SEED_RULE,
  SIGNATURES_2D,
  SIGNATURES_IMAGE,
  ServingFunctions,
  seeds_to_z,
  seeds_to_z_numpy,
)

FORMATS = ("saved_model", "onnx")
WEIGHTS = ("ema", "raw")


@dataclasses.dataclass
class ExportResult:
  """What `export_run` wrote.

  Attributes:
    version_dir: BASE/MODEL_NAME/VERSION (absolute path).
    version: the integer version.
    files: paths written, relative to `version_dir` (SavedModel files listed as directories).
    model_card: the dict written to model_card.json.
  """

  version_dir: str
  version: int
  files: list
  model_card: dict


# === Restoring a run ==========================================================================


def _os_reason(error):
  """`[Errno 28] No space left on device: 'path'` -> 'No space left on device (path)'."""
  reason = error.strerror or short(error)
  return f"{reason} ({error.filename})" if error.filename else reason


def _architecture(config):
  return ", ".join(f"{k}={getattr(config, k)!r}" for k in config_lib.ARCHITECTURE_KEYS)


def restored_for_export(workdir, checkpoint=None):
  """`run.restore_run` (the one restore path, shared with evaluation and `load`) without
  reading data, its errors turned into `ExportError`s that say what to do.

  Args:
    workdir: a training run directory (config.json + checkpoints/), relative or absolute.
    checkpoint: optional checkpoint prefix or directory; default `checkpoints.choose`'s.

  Returns:
    `run.Run` (float32, one device; `run.restored` is the checkpoint prefix, `run.config`
    config.json's flags with the workdir made absolute).

  Raises:
    ExportError: missing workdir/config.json/checkpoint, a bad config.json (named), every
      checkpoint damaged or the one asked for damaged (named, with the intact ones), a
      checkpoint written by another method or architecture (its `run_info`), or one whose
      variables do not match config.json.
  """
  workdir = workdir_lib.resolve(workdir)
  try:
    return run_lib.restore_run(workdir, checkpoint, read_data=False)
  except run_lib.CheckpointMismatchError as e:
    saved_config = config_lib.load_config(workdir)
    raise ExportError(
      f"checkpoint {e.prefix} does not match the architecture in {workdir}/config.json "
      f"({_architecture(saved_config)}): {e.reason}. Was config.json edited, or the "
      "checkpoint taken from another run?"
    ) from None
  except checkpoints_lib.NoCheckpointError as e:
    raise ExportError(
      f"{e} (train it with python -m as_introvae_tf.train --workdir={workdir}, or pass "
      "--checkpoint)"
    ) from None
  except (checkpoints_lib.CheckpointError, FileNotFoundError) as e:
    raise ExportError(str(e)) from None
  except (config_lib.ConfigError, ValueError) as e:
    raise ExportError(f"cannot rebuild the model from {workdir}/config.json: {short(e)}") from None


def ema_decoder_weights(model):
  """The decoder EMA as `sync_ema_decoder` computes it, in `model.decoder.weights` order:
  `model.decoder_moving_averages()` for the trainable weights, the decoder's own values for
  the others (BatchNorm statistics).

  Returns:
    list of numpy arrays.

  Raises:
    ExportError: the run was trained without an EMA (`--ema_decay=0`).
  """
  try:
    averages = model.decoder_moving_averages() if model.ema_decoder is not None else None
  except ValueError as e:
    raise ExportError(f"{e}: use --weights=raw") from None
  if averages is None:
    raise ExportError(
      "the run has no EMA of the decoder weights (it was trained with "
      "--ema_decay=0): use --weights=raw"
    )
  return [np.asarray(averages.get(id(v), v).numpy()) for v in model.decoder.weights]


def ema_decoder_is_synced(model, atol=1e-6):
  """Whether the restored `ema_decoder` holds the optimizer's EMA weights.

  Training syncs it and re-estimates its BatchNorm statistics before every checkpoint
  (`IntrospectiveVAE.prepare_for_inference`), so a checkpoint's `ema_decoder` is the sampling
  decoder as is. Checkpoints written without that step fail this check.
  """
  expected = ema_decoder_weights(model)
  trainable = {id(v) for v in model.decoder.trainable_variables}
  for source, target, value in zip(model.decoder.weights, model.ema_decoder.weights, expected):
    if id(source) in trainable and (
      target.shape != value.shape or np.abs(target.numpy() - value).max() > atol
    ):
      return False
  return len(model.decoder.weights) == len(model.ema_decoder.weights)


def decoder_for_export(model, weights="ema"):
  """The decoder to export.

  Args:
    model: a restored `methods.base.IntrospectiveVAE`.
    weights: "raw": the trained decoder. "ema": the checkpoint's `ema_decoder` (the EMA of the
      decoder weights with its own re-estimated BatchNorm statistics: what the run samples
      with); if that checkpoint's `ema_decoder` was never synced with the optimizer's EMA, a
      clone holding the EMA weights and the decoder's BatchNorm statistics (the
      `sync_ema_decoder` rule) is used instead, with a warning.

  Returns:
    (keras.Model, str describing where the weights come from).

  Raises:
    ExportError: unknown `weights`, or "ema" for a run without EMA.
  """
  if weights not in WEIGHTS:
    raise ExportError(f"--weights must be one of {', '.join(WEIGHTS)}; got {weights!r}")
  if weights == "raw":
    return model.decoder, "decoder (raw trained weights)"
  if ema_decoder_is_synced(model):
    return model.ema_decoder, "ema_decoder of the checkpoint (EMA weights, own BatchNorm stats)"
  logging.warning(
    "The checkpoint's ema_decoder does not hold the optimizer's EMA (saved "
    "without prepare_for_inference); exporting the EMA weights with the "
    "decoder's BatchNorm statistics"
  )
  decoder = keras.models.clone_model(model.decoder)
  decoder.set_weights(ema_decoder_weights(model))
  decoder.trainable = False
  return decoder, "optimizer EMA weights + decoder BatchNorm stats (ema_decoder was not synced)"


def check_formats(formats):
  """Validates `formats` (iterable of str); returns them as a tuple without duplicates.

  Raises:
    ExportError: empty, or a format not in `FORMATS`.
  """
  formats = tuple(dict.fromkeys(f.strip() for f in formats if f.strip()))
  unknown = [f for f in formats if f not in FORMATS]
  if unknown or not formats:
    raise ExportError(
      f"--format must be a comma-separated subset of {','.join(FORMATS)}; "
      f"got {','.join(unknown) or 'nothing'}"
    )
  return formats


def _check_web(formats):
  """Raises ExportError unless the web demo can be written (ONNX exported, files installed)."""
  from as_introvae_tf.serving import web as web_lib  # pylint: disable=import-outside-toplevel

  if "onnx" not in formats:
    raise ExportError("--web needs the ONNX decoder: add onnx to --format")
  try:
    web_lib.check_ort_web()
  except web_lib.WebDemoError as e:
    raise ExportError(f"--web: {e}") from None


def _write_web(version_dir):
  from as_introvae_tf.serving import web as web_lib  # pylint: disable=import-outside-toplevel

  try:
    web_lib.write_web_demo(version_dir)
  except web_lib.WebDemoError as e:
    raise ExportError(f"--web: {e}") from None


def _plot_range(dataset):
  """Half-width of the 2-D data's plot square, or None for a dataset without one."""
  from as_introvae_tf import data as data_lib  # pylint: disable=import-outside-toplevel

  try:
    return float(data_lib.two_d_range(dataset))
  except ValueError:
    return None


def export_run(
  workdir,
  export_dir,
  formats=FORMATS,
  weights="ema",
  version=None,
  checkpoint=None,
  onnx_generate=False,
  max_batch=MAX_BATCH,
  web=False,
):
  """Exports a trained run into EXPORT_DIR/VERSION (see the module docstring).

  Args:
    workdir: the training run directory (config.json + checkpoints/).
    export_dir: BASE/MODEL_NAME; created if missing.
    formats: subset of `FORMATS`.
    weights: "ema" (default; the decoder EMA) or "raw".
    version: integer >= 1; default `next_version(export_dir)`.
    checkpoint: checkpoint prefix or directory; default the newest intact one in the workdir
      (`checkpoints.choose`: damaged ones and the one a live run is writing are skipped).
    onnx_generate: also try converting `generate` to ONNX (fails with tf2onnx 1.17; the reason
      is recorded in the model card, the export goes on).
    max_batch: the most examples one call of a signature accepts (checked in the graph).
    web: also write the web demo to VERSION/web/ (`serving.web.write_web_demo`; needs "onnx"
      in `formats` and the pinned onnxruntime-web files, checked before anything is done).

  Returns:
    `ExportResult`.

  Raises:
    ExportError: any bad input (unknown format/weights, bad version, version directory
      exists, missing workdir/config.json/checkpoint, architecture mismatch, no EMA with
      weights="ema", conversion failure, `web` without "onnx" or without the onnxruntime-web
      files (the message names the `npm ci` command), a damaged checkpoint, a folder that cannot be written:
      disk full, read-only, EXPORT_DIR under a file). Nothing is left in EXPORT_DIR on error
      (the hidden temporary version folder is removed on every failure).
  """
  formats = check_formats(formats)
  if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
    raise ExportError(f"--max_batch must be an integer >= 1; got {max_batch!r}")
  if weights not in WEIGHTS:
    raise ExportError(f"--weights must be one of {', '.join(WEIGHTS)}; got {weights!r}")
  if not export_dir:
    raise ExportError("--export_dir is required: BASE/MODEL_NAME, e.g. exports/fmnist")
  if web:
    _check_web(formats)
  model_dir = os.path.abspath(export_dir)
  if os.path.exists(model_dir) and not os.path.isdir(model_dir):
    raise ExportError(f"--export_dir={export_dir} exists and is not a directory")
  if version is not None:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
      raise ExportError(f"--version must be an integer >= 1; got {version!r}")
    version = int(version)
  else:
    version = next_version(model_dir)
  version_dir = os.path.join(model_dir, str(version))
  if os.path.exists(version_dir):
    raise ExportError(
      f"{version_dir} already exists: TF Serving versions are immutable; "
      f"omit --version to write version {next_version(model_dir)}, or remove it"
    )

  run = restored_for_export(workdir, checkpoint)
  workdir, checkpoint_path = run.config.workdir, run.restored
  saved_config = config_lib.load_config(workdir)  # as training saved it (the model card's)
  model, spec = run.model, run.spec
  decoder, weights_source = decoder_for_export(model, weights)
  functions = ServingFunctions(
    model.encoder, decoder, spec.shape, model.has_inference_encoder, max_batch
  )
  names = list(functions.input_signatures())
  step = int(model.step.numpy())

  tmp_dir = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}")
  try:
    os.makedirs(model_dir, exist_ok=True)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
  except OSError as e:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise ExportError(f"cannot create the export folder {tmp_dir}: {_os_reason(e)}") from None
  files = []
  card = {
    "name": os.path.basename(model_dir.rstrip(os.sep)),
    "version": version,
    "method": saved_config.method,
    "dataset": saved_config.dataset,
    "kind": "image" if functions.is_image else "2d",
    "example_shape": list(functions.example_shape),
    "z_dim": functions.z_dim,
    "training_step": step,
    "checkpoint": os.path.abspath(checkpoint_path),
    "weights": weights,
    "weights_source": weights_source,
    "ema_decay": saved_config.ema_decay,
    "hyperparameters": saved_config.to_dict(),
    # Flags changed when the run was resumed: [{"step", "flag", "old", "new"}] (the
    # hyperparameters above are the ones it was started with; workdir.RunRecord).
    "config_changes": workdir_lib.RunRecord.load(workdir).changes(),
    "export_time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "versions": versions(),
    "formats": list(formats),
    "signatures": names if "saved_model" in formats else [],
    "signature_defs": signature_defs(functions) if "saved_model" in formats else {},
    "seeds_to_z": SEED_RULE,
    "max_batch": functions.max_batch,
    "input_checks": (
      "every signature: N <= max_batch; encode/reconstruct: finite "
      + ("pixels in [0, 1]" if functions.is_image else "points")
      + "; decode: finite z (INVALID_ARGUMENT otherwise)"
    ),
    "output_range": (
      "images clipped to [0, 1], float32 NHWC" if functions.is_image else "2-D points, unclipped"
    ),
  }
  if not functions.is_image:  # the square [-R, R]^2 of the data's plots (the web demo's too)
    card["plot_range"] = _plot_range(saved_config.dataset)
  if web:
    card["web_demo"] = "web/index.html (serve web/ over http, e.g. python -m http.server -d web)"
  try:
    if "saved_model" in formats:
      build_archive(functions).write_out(tmp_dir, verbose=False)
      files += ["saved_model.pb", "variables/"]
    if "onnx" in formats:
      card["onnx"] = export_onnx_decoder(
        functions,
        os.path.join(tmp_dir, ONNX_DECODER_FILE),
        metadata={
          "z_dim": functions.z_dim,
          "example_shape": list(functions.example_shape),
          "seeds_to_z": SEED_RULE,
          "weights": weights,
          "training_step": step,
        },
      )
      files.append(ONNX_DECODER_FILE)
      if onnx_generate:
        ok, info = try_export_onnx_generate(functions, os.path.join(tmp_dir, ONNX_GENERATE_FILE))
        card["onnx_generate"] = info
        if ok:
          files.append(ONNX_GENERATE_FILE)
      else:
        card["onnx_generate"] = ONNX_GENERATE_UNSUPPORTED
    with open(os.path.join(tmp_dir, MODEL_CARD_FILE), "w") as f:
      json.dump(card, f, indent=2, sort_keys=False)
    files.append(MODEL_CARD_FILE)
    if web:
      _write_web(tmp_dir)
      files.append("web/")
    if os.path.exists(version_dir):
      raise ExportError(f"{version_dir} appeared during the export (another exporter?)")
    os.rename(tmp_dir, version_dir)
  except OSError as e:  # disk full, read-only, quota: one line, nothing left behind
    raise ExportError(
      f"cannot write the export to {tmp_dir} (for {version_dir}): {_os_reason(e)}"
    ) from None
  except tf.errors.OpError as e:  # TF's own file writes (SavedModel variables)
    raise ExportError(
      f"cannot write the export to {tmp_dir} (for {version_dir}): {short(e)}"
    ) from None
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
  logging.info("Exported %s (step %d, %s weights) to %s", workdir, step, weights, version_dir)
  return ExportResult(version_dir, version, files, card)


def describe(result):
  """A short human-readable summary of an `ExportResult` (printed by the CLI)."""
  card = result.model_card
  lines = [
    f"Exported {card['method']} / {card['dataset']} (step {card['training_step']}, "
    f"{card['weights']} weights) to {result.version_dir}",
    f"  files: {', '.join(result.files)}",
  ]
  if card["signatures"]:
    lines.append(f"  signatures: {', '.join(card['signatures'])}")
  if "onnx" in card:
    lines.append(
      f"  onnx: {card['onnx']['file']} (opset {card['onnx']['opset']}, z -> images, "
      f"max |onnx - tf| = {card['onnx']['parity_max_abs_diff']})"
    )
  if "web/" in result.files:
    web_dir = os.path.join(result.version_dir, "web")
    lines.append(f"  web demo: python -m http.server -d {web_dir}  (then http://localhost:8000/)")
  return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
  sys.exit("use python -m as_introvae_tf.export")
