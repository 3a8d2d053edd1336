"""Fault injection on whole runs (issues 12 and 26): resumed runs with other flags, runs that
fail before their first step, bad config.json and flagfiles, failed writes outside the
checkpoints, the workdir lock, SIGINT/SIGTERM on real training processes (the resumed run
bit-identical to an uninterrupted one)."""

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import checkpoints as checkpoints_lib
from as_introvae_tf import config as config_lib
from as_introvae_tf import export_lib
from as_introvae_tf import run as run_lib
from as_introvae_tf import train_lib
from as_introvae_tf import train_monitor
from as_introvae_tf import workdir as workdir_lib

import harness


# === The run's record =========================================================================


def test_resume_with_other_flags_keeps_config_json_and_records_the_changes(run_copy, tmp_path):
  original = (run_copy / "config.json").read_text()
  harness.train(
    harness.two_d_config(run_copy, train_steps=6, seed=1, batch_size=32, adam_beta1=0.5)
  )
  harness.train(
    harness.two_d_config(run_copy, train_steps=8, seed=1, batch_size=32, adam_beta1=0.5, lr=1e-3)
  )
  harness.train(
    harness.two_d_config(run_copy, train_steps=3)
  )  # lower than the step reached: nothing to train
  assert (run_copy / "config.json").read_text() == original
  changes = workdir_lib.RunRecord.load(str(run_copy)).changes()
  key = lambda c: (c["step"], c["flag"])  # noqa: E731
  assert sorted(changes, key=key) == sorted(
    [
      {"step": 4, "flag": "train_steps", "old": 4, "new": 6},
      {"step": 4, "flag": "batch_size", "old": 64, "new": 32},
      {"step": 4, "flag": "seed", "old": 0, "new": 1},
      {"step": 4, "flag": "adam_beta1", "old": 0.9, "new": 0.5},
      {"step": 6, "flag": "train_steps", "old": 6, "new": 8},
      {"step": 6, "flag": "lr", "old": 2e-4, "new": 1e-3},
    ],
    key=key,
  )
  result = export_lib.export_run(
    str(run_copy), str(tmp_path / "exports"), formats=["saved_model"], weights="raw"
  )
  card = result.model_card
  assert card["hyperparameters"]["seed"] == 0 and card["training_step"] == 8
  assert {"step": 6, "flag": "lr", "old": 2e-4, "new": 1e-3} in card["config_changes"]


# === A run that fails before its first step ===================================================


def test_run_that_fails_before_its_first_step_does_not_bind_the_workdir(tmp_path, monkeypatch):
  workdir = tmp_path / "run"

  def broken(*args, **kwargs):
    raise ValueError("the test's data failure")

  monkeypatch.setattr(train_lib, "_fixed_batch", broken)  # fails after the model is built
  with pytest.raises(ValueError, match="the test's data failure"):
    train_lib.train_and_evaluate(harness.two_d_config(workdir, z_dim=3))
  monkeypatch.undo()
  assert not os.path.exists(workdir / "config.json")
  assert not os.path.exists(workdir / workdir_lib.LOCK_FILE)
  # The corrected command (another architecture) trains.
  assert harness.train(harness.two_d_config(workdir, z_dim=2, train_steps=2))["step"] == 2
  assert config_lib.load_config(str(workdir)).z_dim == 2


def test_config_json_without_a_checkpoint_does_not_refuse_the_next_run(tmp_path):
  """A workdir left by the old code (config.json written, no checkpoint) is not bound."""
  workdir = tmp_path / "run"
  config_lib.save_config(harness.two_d_config(workdir, z_dim=5), str(workdir))
  assert harness.train(harness.two_d_config(workdir, train_steps=2))["step"] == 2
  assert config_lib.load_config(str(workdir)).z_dim == 2
  assert [n for n in os.listdir(workdir) if n.startswith("config.json.unused-")]


@pytest.mark.parametrize("content", ["not_an_object", "truncated"])
def test_bad_config_json_is_named_by_every_reader_and_by_training(run_copy, content, tmp_path):
  import as_introvae_tf  # pylint: disable=import-outside-toplevel

  path = run_copy / "config.json"
  text = path.read_text()
  path.write_text("[1, 2]" if content == "not_an_object" else text[: len(text) // 2])
  needle = "is not a JSON object" if content == "not_an_object" else "is not valid JSON"
  for read in (
    lambda: run_lib.restore_run(run_copy),
    lambda: as_introvae_tf.load(str(run_copy)),
    lambda: harness.train(harness.two_d_config(run_copy, train_steps=6)),
  ):
    with pytest.raises(config_lib.ConfigError) as info:
      read()
    assert str(path) in str(info.value) and needle in str(info.value)
  with pytest.raises(export_lib.ExportError, match=re.escape(str(path))):
    export_lib.export_run(str(run_copy), str(tmp_path / "exports"), formats=["saved_model"])


def test_unknown_flag_in_a_flagfile_names_the_file_and_line(tmp_path, capsys):
  from absl import flags  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import train as train_cli  # pylint: disable=import-outside-toplevel

  flagfile = tmp_path / "mine.flags"
  flagfile.write_text("# my run\n--flagfile=configs/base.flags\n--beta_negative=3\n")
  fv = flags.FlagValues()
  config_lib.define_flags(fv)
  with pytest.raises(SystemExit) as info:
    train_cli.parse_flags(["train", f"--flagfile={flagfile}"], fv)
  err = capsys.readouterr().err
  assert info.value.code == 1
  assert f"--flagfile={flagfile}, line 3: unknown flag --beta_negative" in err, err
  with pytest.raises(flags.Error, match="line 3: unknown flag --beta_negative"):
    config_lib.from_flagfile(str(flagfile))


@pytest.mark.parametrize(
  "content, message",
  [
    (b"--flagfile=configs/base.flags\ntrain_steps=100\n", "line 2: not a --flag=value line"),
    (b"--workdir=/tmp/x\n\xff\xfe\x00binary", "not a text file of --flag=value lines"),
  ],
  ids=["line_without_dashes", "not_utf8"],
)
def test_a_flagfile_that_is_not_flag_lines_is_named(tmp_path, capsys, content, message):
  # Both used to end elsewhere: absl's whole usage text and "Unexpected arguments", or a
  # UnicodeDecodeError traceback.
  from absl import flags  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import train as train_cli  # pylint: disable=import-outside-toplevel

  flagfile = tmp_path / "mine.flags"
  flagfile.write_bytes(content)
  fv = flags.FlagValues()
  config_lib.define_flags(fv)
  with pytest.raises(SystemExit) as info:
    train_cli.parse_flags(["train", f"--flagfile={flagfile}"], fv)
  err = capsys.readouterr().err
  assert info.value.code == 1 and f"--flagfile={flagfile}" in err and message in err, err
  assert err.startswith("error: ") and "Traceback" not in err and "Unexpected" not in err, err
  with pytest.raises(flags.Error, match=message):
    config_lib.from_flagfile(str(flagfile))


# === Writes outside the checkpoints ===========================================================


def _failing(monkeypatch, target, name, exception):
  def fail(*args, **kwargs):
    raise exception

  monkeypatch.setattr(target, name, fail)


@pytest.mark.parametrize("failure", ["samples_png", "tensorboard", "history", "config_json"])
def test_failed_write_outside_the_checkpoints_saves_the_steps_then_names_the_file(
  run_copy, tmp_path, failure, monkeypatch
):
  """A full disk at samples.png (or TensorBoard, config.json, config_history.jsonl) loses no
  step: the checkpoint of the step reached is saved, then one line names the file."""
  import errno  # pylint: disable=import-outside-toplevel

  from as_introvae_tf import visualize  # pylint: disable=import-outside-toplevel

  full = OSError(errno.ENOSPC, "No space left on device")
  workdir = run_copy
  # Pictures every 2 steps, checkpoints only at the end (step 8): the failure comes at step 6.
  config = harness.two_d_config(
    workdir, train_steps=8, image_every_steps=2, checkpoint_every_steps=100
  )
  saved_at = 6
  if failure == "samples_png":
    _failing(monkeypatch, visualize, "save_png", full)
    path = str(workdir / "samples.png")
  elif failure == "tensorboard":
    _failing(monkeypatch, tf.summary, "image", tf.errors.ResourceExhaustedError(None, None, "full"))
    path = str(workdir / "tensorboard" / "train")
  elif failure == "history":
    _failing(monkeypatch, workdir_lib.RunRecord, "append_segment", full)
    path = str(workdir / workdir_lib.HISTORY_FILE)
    config, saved_at = config.replace(image_every_steps=100, checkpoint_every_steps=2), 6
  else:  # a new run's first checkpoint: config.json cannot be written
    workdir = tmp_path / "fresh"
    config = harness.two_d_config(workdir, train_steps=2)
    _failing(monkeypatch, config_lib, "save_config", full)
    path, saved_at = str(workdir / "config.json"), 2
  segments = (
    len(harness.history(workdir)) if os.path.exists(workdir / workdir_lib.HISTORY_FILE) else 0
  )
  with pytest.raises(train_lib.OutputWriteError) as info:
    harness.train(config)
  message = str(info.value)
  assert len(message.splitlines()) == 1, message
  cause = "full" if failure == "tensorboard" else "No space left on device"
  assert message.startswith(f"cannot write {path} ({cause})"), message
  assert f"the checkpoint of step {saved_at} is saved" in message, message
  assert saved_at in [f.step for f in checkpoints_lib.on_disk(str(workdir / "checkpoints"))]
  history = harness.history(workdir) if os.path.exists(workdir / workdir_lib.HISTORY_FILE) else []
  expected = segments + (1 if failure in ("samples_png", "tensorboard", "config_json") else 0)
  assert len(history) == expected  # a line only for a segment that saved its checkpoint


def test_failed_checkpoint_save_leaves_no_history_line_and_no_temporary_folder(
  run_copy, monkeypatch
):
  def full_disk(manager, checkpoint_number=None, **kwargs):
    os.makedirs(os.path.join(manager.directory, f"ckpt-{checkpoint_number}_temp"))  # as TF
    raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

  monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
  segments = len(harness.history(run_copy))
  with pytest.raises(train_lib.CheckpointWriteError, match="No space left on device.*ckpt-4"):
    harness.train(harness.two_d_config(run_copy, train_steps=6))
  monkeypatch.undo()
  assert len(harness.history(run_copy)) == segments
  assert not [n for n in os.listdir(run_copy / "checkpoints") if n.endswith("_temp")]
  # A folder left by a process that died mid-save is removed by the next run.
  os.makedirs(run_copy / "checkpoints" / "ckpt-5_temp")
  assert harness.train(harness.two_d_config(run_copy, train_steps=6))["step"] == 6
  assert not os.path.exists(run_copy / "checkpoints" / "ckpt-5_temp")


# === The workdir lock =========================================================================


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(run_copy, caplog):
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  (run_copy / workdir_lib.LOCK_FILE).write_text(
    json.dumps(
      {"host": socket.gethostname(), "pid": dead.pid, "started": "2026-01-01T00:00:00+00:00"}
    )
  )
  caplog.set_level(logging.WARNING)
  assert harness.train(harness.two_d_config(run_copy, train_steps=6))["step"] == 6
  assert f"PID {dead.pid}" in caplog.text and "stale lock" in caplog.text
  assert not os.path.exists(run_copy / workdir_lib.LOCK_FILE)  # released on exit


def test_lock_in_one_process_refuses_a_second_at_once(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  with workdir_lib.WorkdirLock(str(workdir)) as lock:
    owner = json.loads((workdir / workdir_lib.LOCK_FILE).read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    assert owner["started"] and lock.owner == owner
    script = (
      "import sys; from as_introvae_tf import workdir as w\n"
      "try:\n  w.WorkdirLock(sys.argv[1]).acquire()\n"
      "except w.WorkdirLockedError as e:\n  print(e); sys.exit(3)\n"
    )
    proc = subprocess.run(
      [sys.executable, "-c", script, str(workdir)],
      cwd=harness.ROOT,
      env=harness.QUIET_ENV,
      capture_output=True,
      text=True,
      timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert f"PID {os.getpid()} on host {socket.gethostname()}" in proc.stdout
  assert not os.path.exists(workdir / workdir_lib.LOCK_FILE)


def test_second_ctrl_c_aborts_at_once():
  before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs in the background
  stop = train_monitor.StopOnSignals()
  with stop:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)
    assert stop.received == signal.SIGINT  # the first one only asks to stop
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(1)
  assert signal.getsignal(signal.SIGINT) is before  # the handler found is restored


# === Real training processes: lock, SIGINT, SIGTERM, resume ===================================

STEPS = 80


def _cli(workdir, steps=STEPS):
  """The command line of `_cli_config(workdir, steps)` (`harness.TWO_D`, logs every 5 steps)."""
  return [
    sys.executable,
    "-m",
    "as_introvae_tf.train",
    "--method=as_introvae",
    "--dataset=8gaussians",
    f"--workdir={workdir}",
    "--z_dim=2",
    "--num_hidden=16",
    "--num_layers=1",
    "--batch_size=64",
    f"--train_steps={steps}",
    "--num_vae=1",
    "--log_every_steps=5",
    "--checkpoint_every_steps=1000",
    "--image_every_steps=1000",
    "--keep_checkpoints=5",
    "--beta_kl=0.3",
    "--beta_rec=0.2",
    "--beta_neg=0.9",
    "--as_kernel=product",
    "--ema_decay=0",
    "--verbose=2",
  ]


def _cli_config(workdir, steps=STEPS):
  return harness.two_d_config(
    workdir,
    train_steps=steps,
    log_every_steps=5,
    checkpoint_every_steps=1000,
    image_every_steps=1000,
  )


def _start_and_wait_for_training(workdir):
  """Starts the CLI and returns once it has finished its first log window (step 5)."""
  proc = subprocess.Popen(
    _cli(workdir),
    cwd=harness.ROOT,
    env=harness.QUIET_ENV,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + 180
  for line in proc.stdout:  # --verbose=2: "step 5/40 (12%) - ..." at the end of each window
    if re.match(r"^step \d+/\d+ ", line) or time.time() > deadline:
      break
  assert proc.poll() is None, proc.stderr.read()
  return proc


def _stopped_step(stderr):
  match = re.search(r"Stopped by SIG(?:TERM|INT) at step (\d+) ", stderr)
  assert match, stderr[-3000:]
  return int(match.group(1))


def test_second_process_is_refused_and_sigint_stops_with_a_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  proc = _start_and_wait_for_training(workdir)
  owner = json.loads((workdir / workdir_lib.LOCK_FILE).read_text())
  assert owner["pid"] == proc.pid and owner["host"] == socket.gethostname()
  began = time.time()
  with pytest.raises(workdir_lib.WorkdirLockedError, match=f"PID {proc.pid} on host"):
    train_lib.train_and_evaluate(_cli_config(workdir))
  assert time.time() - began < 5  # at once, before building anything
  proc.send_signal(signal.SIGINT)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr[-3000:]
  step = _stopped_step(stderr)
  assert "Run the same command again to resume" in stderr and "Traceback" not in stderr
  state = tf.train.get_checkpoint_state(str(workdir / "checkpoints"))
  assert state.model_checkpoint_path.endswith(f"ckpt-{step}")
  assert not os.path.exists(workdir / workdir_lib.LOCK_FILE)


def test_sigterm_mid_run_saves_the_step_reached_and_the_resumed_run_equals_an_uninterrupted_one(
  tmp_path,
):
  workdir = tmp_path / "interrupted"
  proc = _start_and_wait_for_training(workdir)
  time.sleep(np.random.default_rng().uniform(0.0, 0.3))  # anywhere in a window
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 143, stderr[-3000:]
  step = _stopped_step(stderr)
  assert 5 <= step < STEPS
  run = run_lib.build_run(_cli_config(workdir))
  assert int(run.model.step.numpy()) == step  # the checkpoint holds the step reached
  assert run.restored.endswith(f"ckpt-{step}")
  del run
  assert harness.train(_cli_config(workdir))["step"] == STEPS  # the same command again
  harness.train(_cli_config(tmp_path / "straight"))
  a = run_lib.build_run(_cli_config(tmp_path / "straight")).model
  b = run_lib.build_run(_cli_config(workdir)).model
  for va, vb in zip(
    a.encoder.weights
    + a.decoder.weights
    + a.encoder_optimizer.variables
    + a.decoder_optimizer.variables,
    b.encoder.weights
    + b.decoder.weights
    + b.encoder_optimizer.variables
    + b.decoder_optimizer.variables,
  ):
    np.testing.assert_array_equal(va.numpy(), vb.numpy())


def test_a_first_checkpoint_being_written_names_the_writer_and_the_stale_lock_fix(tmp_path):
  """No complete checkpoint yet while a live run writes its first: `NoCheckpointError`
  naming the writer (PID, host, start) and how to clear a lock a dead run left."""
  (tmp_path / "ckpt-2.data-00000-of-00001").write_bytes(b"half")
  writer = {"host": "elsewhere", "pid": 7, "started": "2026-12-06T10:00:00"}
  with pytest.raises(checkpoints_lib.NoCheckpointError) as raised:
    checkpoints_lib.choose(str(tmp_path), writer=writer)
  text = str(raised.value)
  assert "writing its first one, ckpt-2 (PID 7 on elsewhere, since 2026-12-06T10:00:00)" in text
  assert "delete the workdir's train.lock" in text
