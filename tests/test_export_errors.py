"""Export with bad input: clear errors, exit status 1, no traceback; the command line end to
end; EMA fallbacks; a generator without an inference encoder."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import export_lib
from as_introvae_tf import run as run_lib

import harness


Z_DIM = 4  # image_run's (tests/conftest.py)


# === Bad input: clear errors, exit status 1, no traceback ====================================


def _copy_run(run, tmp_path, **config_changes):
  workdir = tmp_path / "copy"
  shutil.copytree(run, workdir)
  path = workdir / "config.json"
  values = json.loads(path.read_text())
  values.update(config_changes)
  path.write_text(json.dumps(values))
  return str(workdir)


def _expect_error(capsys, argv, *needles):
  rc = harness.export_cli(argv)
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
    harness.export_cli(
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


def test_a_generator_without_inference_encoder_exports_generate_and_decode_only(wgan_2d, tmp_path):
  """WGAN-GP: its encoder is a critic, so there is no encode/reconstruct signature."""
  workdir = wgan_2d
  result = export_lib.export_run(workdir, str(tmp_path / "exports" / "wgan"), weights="raw")
  loaded = tf.saved_model.load(result.version_dir)
  assert set(loaded.signatures) == {"serving_default", "generate", "decode"}
  assert result.model_card["signatures"] == ["serving_default", "generate", "decode"]
