"""Exports a trained run for serving (TF Serving SavedModel, ONNX decoder, model card).

  as-introvae-export --workdir=runs/quickstart --export_dir=exports/quickstart
  python -m as_introvae_tf.export --workdir=runs/fmnist --export_dir=exports/fmnist \
      [--format=saved_model,onnx] [--weights=ema|raw] [--version=N] [--checkpoint=PATH] \
      [--max_batch=256] [--web]

writes exports/fmnist/VERSION/{saved_model.pb, variables/, decoder.onnx, model_card.json}
(VERSION = the next free integer unless --version); with --web also VERSION/web/, a static
page that samples and interpolates with decoder.onnx in the browser (as_introvae_tf.serving.web;
serve it with `python -m http.server -d exports/fmnist/VERSION/web`). Serve it with
  docker run -p 8501:8501 -p 8500:8500 -v $PWD/exports:/models -e MODEL_NAME=fmnist \
      tensorflow/serving:2.21.0
(see export/README.md). Bad input (no config.json or checkpoint, unknown format, existing
version, a checkpoint that does not match config.json, --weights=ema without EMA) prints
`error: ...` and exits with status 1.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from as_introvae_tf import config as config_lib  # noqa: E402
from as_introvae_tf.serving import MAX_BATCH  # noqa: E402

FORMATS = ("saved_model", "onnx")


def define_flags(flag_values=flags.FLAGS):
  """Defines the export flags in `flag_values` (idempotent; tests pass a fresh FlagValues)."""
  if "export_dir" in flag_values:
    return
  flags.DEFINE_string(
    "workdir", None, "Training run directory (config.json, checkpoints/).", flag_values=flag_values
  )
  flags.DEFINE_string(
    "export_dir",
    None,
    "BASE/MODEL_NAME: TF Serving's model base path; the export goes to BASE/MODEL_NAME/VERSION/.",
    flag_values=flag_values,
  )
  flags.DEFINE_list(
    "format",
    list(FORMATS),
    "What to write: saved_model, onnx (both by default; ONNX = the decoder, opset 17).",
    flag_values=flag_values,
  )
  flags.DEFINE_enum(
    "weights",
    "ema",
    ["ema", "raw"],
    "Decoder weights: ema (the moving average used for sampling) or raw (the trained decoder).",
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    "version",
    None,
    "Version directory (integer >= 1); default: the next "
    "free one. An existing version is never overwritten.",
    flag_values=flag_values,
  )
  flags.DEFINE_string(
    "checkpoint",
    None,
    "Checkpoint prefix (e.g. WORKDIR/checkpoints/"
    "ckpt-1000) or directory; default: the latest in WORKDIR/checkpoints.",
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    "max_batch",
    MAX_BATCH,
    "The most examples (seeds, codes, images) one "
    "call of a signature accepts; more is refused inside the graph with an "
    "INVALID_ARGUMENT error naming the limit.",
    flag_values=flag_values,
  )
  flags.DEFINE_boolean(
    "onnx_generate",
    False,
    "Also try to convert `generate` (seeds -> "
    "images) to ONNX; tf2onnx 1.17 cannot (stateless RNG ops), the reason "
    "is recorded in model_card.json.",
    flag_values=flag_values,
  )
  flags.DEFINE_boolean(
    "web",
    False,
    "Also write VERSION/web/: a static page running decoder.onnx in the browser with "
    "onnxruntime-web (samples, latent sliders, interpolation); needs `npm ci --prefix "
    "as_introvae_tf/serving/web_page` (tools/setup.sh).",
    flag_values=flag_values,
  )


define_flags()


def main(argv, flag_values=flags.FLAGS):
  """Runs the export from parsed flags; returns the exit status (0 ok, 1 bad input)."""
  if len(argv) > 1:
    print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    return 1
  fv = flag_values
  for name in ("workdir", "export_dir"):
    if not fv[name].value:
      print(f"error: --{name} is required", file=sys.stderr)
      return 1
  try:
    config_lib.check_run_directory(fv.workdir)  # before TensorFlow's start-up
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  if "verbosity" in fv and not fv["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # TF/tf2onnx INFO chatter; --verbosity=0 shows it
  from as_introvae_tf import cli  # pylint: disable=import-outside-toplevel

  cli.import_tensorflow()  # its start-up notices hidden
  from as_introvae_tf import export_lib  # pylint: disable=import-outside-toplevel

  try:
    result = export_lib.export_run(
      fv.workdir,
      fv.export_dir,
      formats=fv.format,
      weights=fv.weights,
      version=fv.version,
      checkpoint=fv.checkpoint,
      onnx_generate=fv.onnx_generate,
      max_batch=fv.max_batch,
      web=fv.web,
    )
  except export_lib.ExportError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(export_lib.describe(result))
  return 0


def run(argv=None):
  """Console-script entry point (and `python -m`): TensorFlow's start-up notices hidden."""
  from as_introvae_tf import cli  # pylint: disable=import-outside-toplevel

  cli.run_main(main, __doc__, argv)


if __name__ == "__main__":
  run()
