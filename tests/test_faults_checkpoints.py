"""Fault injection on checkpoints (issues 12 and 26): a missing, empty or garbled `checkpoint`
index, a relative workdir, truncated/corrupted/missing checkpoint files, and checkpoints of
another method or run. Each test breaks something the way an accident would and checks what
the user is told and that no work is lost or mixed; the tiny 2-D run they damage is trained once
(`trained_2d`, tests/conftest.py) and copied per test (`run_copy`)."""

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import tensorflow as tf

from as_introvae_tf import checkpoints as checkpoints_lib
from as_introvae_tf import eval_lib
from as_introvae_tf import export_lib
from as_introvae_tf import run as run_lib
from as_introvae_tf import train_lib
from as_introvae_tf import workdir as workdir_lib

import harness


# === The `checkpoint` index file ==============================================================


@pytest.mark.parametrize("damage", ["missing", "empty", "garbled", "names_a_missing_checkpoint"])
def test_broken_index_resumes_from_the_newest_checkpoint_and_deletes_none(run_copy, damage, caplog):
  """What training restores (`build_run`, as `train_and_evaluate` calls it) and what its
  CheckpointManager deletes afterwards (`--keep_checkpoints=1`)."""
  index = run_copy / "checkpoints" / "checkpoint"
  if damage == "missing":
    index.unlink()
  elif damage == "empty":
    index.write_text("")
  elif damage == "garbled":
    index.write_bytes(b"\x00\xffmodel_checkpoint_path: {{{ not a proto")
  else:
    index.write_text('model_checkpoint_path: "ckpt-9"\nall_model_checkpoint_paths: "ckpt-9"\n')
  before = {s: harness.checkpoint_bytes(harness.ckpt(run_copy, s)) for s in (2, 4)}
  caplog.set_level(logging.WARNING)
  run = run_lib.build_run(harness.two_d_config(run_copy, keep_checkpoints=1))
  assert int(run.model.step.numpy()) == 4 and run.restored == harness.ckpt(run_copy, 4)
  assert "ckpt-2, ckpt-4" in caplog.text and "Rebuilt the index" in caplog.text
  for step in (5, 6, 7):  # the run writes checkpoints: only its own ones rotate
    run.manager.save(checkpoint_number=step)
  for step, files in before.items():
    assert harness.checkpoint_bytes(harness.ckpt(run_copy, step)) == files, step
  assert [f.step for f in checkpoints_lib.on_disk(str(run_copy / "checkpoints"))] == [2, 4, 7]
  state = tf.train.get_checkpoint_state(str(run_copy / "checkpoints"))
  assert state.model_checkpoint_path.endswith("ckpt-7")


def test_broken_index_end_to_end_training_continues(run_copy):
  (run_copy / "checkpoints" / "checkpoint").write_text("")
  assert (
    harness.train(harness.two_d_config(run_copy, train_steps=6, keep_checkpoints=1))["step"] == 6
  )
  assert harness.history(run_copy)[-1]["step"] == 4  # resumed at 4, not restarted at 0
  assert [f.step for f in checkpoints_lib.on_disk(str(run_copy / "checkpoints"))] == [2, 4, 6]


# === Relative paths ===========================================================================


def test_relative_workdir_resumes_exports_and_loads_without_warnings_and_keeps_pruning(
  tmp_path, monkeypatch, caplog
):
  """The README's form (`--workdir=runs/quickstart`): three resumes print no warning and
  `--keep_checkpoints` still prunes; from another working directory, evaluation, export and
  load read the same checkpoint through relative paths, silently."""
  import as_introvae_tf  # pylint: disable=import-outside-toplevel

  def warnings():  # ours (absl), but the preemption notices this test sends
    return [
      r.getMessage()
      for r in caplog.records
      if r.name == "absl"
      and r.levelno >= logging.WARNING
      and not r.getMessage().startswith("Received SIGTERM")
    ]

  real_epoch_end = train_lib.TrainingMonitor.on_epoch_end

  def preempted_after_the_window(self, epoch, logs=None):
    real_epoch_end(self, epoch, logs)
    if self.step < self.config.train_steps and self.stop.received is None:
      os.kill(os.getpid(), signal.SIGTERM)  # stops after the next step, with a checkpoint

  monkeypatch.chdir(tmp_path)
  caplog.set_level(logging.WARNING)
  config = harness.two_d_config("runs/q", train_steps=12, keep_checkpoints=2)
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(train_lib.TrainingMonitor, "on_epoch_end", preempted_after_the_window)
    for _ in range(3):  # the same command: a first segment, then two resumes, preempted
      with pytest.raises(train_lib.TrainingInterrupted):
        harness.train(config)
  assert harness.train(config)["step"] == 12  # the third resume reaches the end
  assert warnings() == []
  assert checkpoints_lib.read_index(os.path.join("runs", "q", "checkpoints"))[1] is None
  directory = tmp_path / "runs" / "q" / "checkpoints"
  steps = [s["step"] for s in harness.history(tmp_path / "runs" / "q")]
  assert len(steps) == 4 and steps[0] == 0, steps
  kept = [f.step for f in checkpoints_lib.on_disk(str(directory))]
  assert len(kept) == 2 and kept[0] >= steps[-1] and kept[-1] == 12, (kept, steps)  # pruned
  state = tf.train.get_checkpoint_state(str(directory))
  assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
    f"ckpt-{k}" for k in kept
  ]

  (tmp_path / "elsewhere").mkdir()
  monkeypatch.chdir(tmp_path / "elsewhere")
  ckpt12 = str(directory / "ckpt-12")
  notes = []
  options = eval_lib.EvalOptions(num_samples=200, eval_draws=1, grid_points=32, gnelbo_points=64)
  assert eval_lib.evaluate("../runs/q", options, log=notes.append)["checkpoint"] == ckpt12
  notes = [n for n in notes if n.startswith("warning")]
  result = export_lib.export_run("../runs/q", "exports/q", formats=["saved_model"], weights="raw")
  assert result.model_card["checkpoint"] == ckpt12
  assert os.path.realpath(result.version_dir) == os.path.realpath(
    tmp_path / "elsewhere" / "exports" / "q" / "1"
  )
  assert as_introvae_tf.load("../runs/q").path == ckpt12
  assert as_introvae_tf.load("exports/q").step == 12
  relative = f"../runs/q/checkpoints/ckpt-{kept[0]}"  # a checkpoint named by a relative path
  assert as_introvae_tf.load("../runs/q", checkpoint=relative).step == kept[0]
  assert os.path.realpath(
    run_lib.restore_run("../runs/q", checkpoint=relative).restored
  ) == os.path.realpath(os.path.join(str(directory), f"ckpt-{kept[0]}"))
  assert notes == [] and warnings() == []


# === A damaged newest checkpoint ==============================================================


def _damage(prefix, how):
  data = harness.data_file(prefix)
  if how == "truncated_data":
    raw = open(data, "rb").read()
    open(data, "wb").write(raw[: len(raw) // 2])
  elif how == "corrupted_data":
    raw = bytearray(open(data, "rb").read())
    for i in range(64, len(raw), 97):
      raw[i] ^= 0x5A
    open(data, "wb").write(bytes(raw))
  elif how == "truncated_index":
    raw = open(prefix + ".index", "rb").read()
    open(prefix + ".index", "wb").write(raw[: len(raw) // 2])
  elif how == "missing_data":
    os.remove(data)
  elif how == "missing_index":
    os.remove(prefix + ".index")
  else:
    raise ValueError(how)


# Every kind of damage is tested once for training and once for evaluate/export, half each
# way (each training costs seconds); both paths go through `checkpoints.verify`.
@pytest.mark.parametrize("how", ["truncated_data", "corrupted_data", "missing_index"])
def test_damaged_newest_checkpoint_training_falls_back_with_a_warning(run_copy, how, caplog):
  _damage(harness.ckpt(run_copy, 4), how)
  caplog.set_level(logging.WARNING)
  if how == "truncated_data":  # once end to end
    assert harness.train(harness.two_d_config(run_copy, train_steps=6))["step"] == 6
    assert harness.history(run_copy)[-1]["step"] == 2  # continued from the intact ckpt-2
  else:  # what training restores
    run = run_lib.build_run(harness.two_d_config(run_copy, train_steps=6))
    assert int(run.model.step.numpy()) == 2 and run.restored == harness.ckpt(run_copy, 2)
  warning = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
  assert warning and "ckpt-4" in warning[0] and "ckpt-2" in warning[0], caplog.text
  damaged = os.listdir(run_copy / "checkpoints" / checkpoints_lib.DAMAGED_DIR)
  assert damaged and all(name.startswith("ckpt-4.") for name in damaged)  # kept, not deleted


def _readers_choose(workdir, export_dir, caplog):
  """The checkpoint each reader uses (evaluation's restore, export, load) and the warnings
  each gave, as {reader: (prefix, [warning, ...])}."""
  import as_introvae_tf  # pylint: disable=import-outside-toplevel

  chosen = {}
  caplog.clear()
  notes = []
  chosen["evaluate"] = (run_lib.restore_run(workdir, log=notes.append).restored, notes)
  caplog.clear()
  card = export_lib.export_run(
    str(workdir), str(export_dir), formats=["saved_model"], weights="raw"
  ).model_card
  chosen["export"] = (card["checkpoint"], [r.getMessage() for r in caplog.records])
  caplog.clear()
  chosen["load"] = (
    as_introvae_tf.load(str(workdir)).path,
    [r.getMessage() for r in caplog.records],
  )
  return chosen


@pytest.mark.parametrize(
  "case",
  ["index_names_older", "index_deleted", "truncated_index", "missing_data", "corrupted_data"],
)
def test_every_reader_chooses_the_checkpoint_training_resumes_from(
  run_copy, case, caplog, tmp_path
):
  """One rule (`checkpoints.choose`) for evaluate, export, load and training's resume: the
  newest checkpoint that restores, with the same warning naming the damaged one and the one
  read. A damaged one asked for by name is refused, naming the intact ones."""
  index = run_copy / "checkpoints" / "checkpoint"
  if case == "index_names_older":
    index.write_text('model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n')
    expected, needle = 4, "names ckpt-2 but ckpt-4 is newer and intact"
  elif case == "index_deleted":
    index.unlink()
    expected, needle = 4, "is missing; checkpoints found: ckpt-2, ckpt-4"
  else:
    _damage(harness.ckpt(run_copy, 4), case)
    expected, needle = 2, "Checkpoint ckpt-4 is damaged"
  caplog.set_level(logging.WARNING)
  chosen = _readers_choose(run_copy, tmp_path / "exports", caplog)
  for reader, (prefix, notes) in chosen.items():
    assert prefix == harness.ckpt(run_copy, expected), reader
    mine = [n for n in notes if needle in n]
    assert len(mine) == 1 and f"ckpt-{expected} (step {expected})" in mine[0], (reader, notes)
    if expected == 2:
      assert "reading the newest intact checkpoint, ckpt-2" in mine[0]
  if expected == 2:
    with pytest.raises(checkpoints_lib.CheckpointError) as info:
      run_lib.restore_run(run_copy, checkpoint=harness.ckpt(run_copy, 4))
    message = str(info.value)
    assert "ckpt-4 is damaged" in message and "Intact checkpoints: ckpt-2" in message
    assert f"--checkpoint={harness.ckpt(run_copy, 2)}" in message and "architecture" not in message
  caplog.clear()
  run = run_lib.build_run(
    harness.two_d_config(run_copy, train_steps=6)
  )  # training's resume: the same
  assert run.restored == harness.ckpt(run_copy, expected)
  assert needle in caplog.text.replace("resuming from", "reading")


def test_half_written_checkpoint_of_a_live_run_is_not_called_damaged(run_copy):
  """While train.lock names a live process, the newest incomplete checkpoint is being
  written: the readers skip it with a note that says so, not "damaged"."""
  shutil.copy(
    harness.data_file(harness.ckpt(run_copy, 4)), harness.data_file(harness.ckpt(run_copy, 6))
  )  # no .index yet
  live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    owner = {"host": socket.gethostname(), "pid": live.pid, "started": "now", "command": "x"}
    (run_copy / workdir_lib.LOCK_FILE).write_text(json.dumps(owner))
    notes = []
    assert run_lib.restore_run(run_copy, log=notes.append).restored == harness.ckpt(run_copy, 4)
    assert len(notes) == 1 and "damaged" not in notes[0], notes
    assert (
      f"ckpt-6 is still being written by the training run in progress (PID {live.pid}" in (notes[0])
    )
    assert ", since now)" in notes[0] and "delete the workdir's train.lock" in notes[0]
  finally:
    live.kill()
    live.wait()
  notes = []  # the same files once that process is gone: a damaged checkpoint
  assert run_lib.restore_run(run_copy, log=notes.append).restored == harness.ckpt(run_copy, 4)
  assert "Checkpoint ckpt-6 is damaged (ckpt-6.index is missing)" in notes[0]


def test_read_only_checkpoints_folder_while_moving_a_damaged_checkpoint_aside(
  run_copy, monkeypatch
):
  import errno  # pylint: disable=import-outside-toplevel

  _damage(harness.ckpt(run_copy, 4), "truncated_data")

  def read_only(source, destination, *args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system", str(source))

  monkeypatch.setattr(shutil, "move", read_only)  # as root, chmod would not stop the move
  with pytest.raises(checkpoints_lib.CheckpointError) as info:
    run_lib.build_run(harness.two_d_config(run_copy, train_steps=6))
  message = str(info.value)
  assert "ckpt-4 is damaged and could not be moved aside" in message
  assert "Read-only file system" in message and "Nothing was deleted" in message
  assert len(message.splitlines()) == 1
  assert os.path.exists(harness.ckpt(run_copy, 4) + ".index")


def test_no_intact_checkpoint_stops_training_and_keeps_the_files(run_copy):
  for step in (2, 4):
    _damage(harness.ckpt(run_copy, step), "truncated_data")
  with pytest.raises(checkpoints_lib.CheckpointError, match="none of them restores.*ckpt-4"):
    harness.train(harness.two_d_config(run_copy, train_steps=6))
  assert sorted(os.listdir(run_copy / "checkpoints")) == [
    "checkpoint",
    "ckpt-2.data-00000-of-00001",
    "ckpt-2.index",
    "ckpt-4.data-00000-of-00001",
    "ckpt-4.index",
  ]


# === Checkpoints of another method or run =====================================================


@pytest.fixture(scope="module")
def other_runs(tmp_path_factory):
  """Newest checkpoints of a VAE run and of a second AS-IntroVAE run (same flags)."""
  base = tmp_path_factory.mktemp("other")
  harness.train(
    harness.two_d_config(
      base / "vae",
      method="vae",
      num_vae=0,
      train_steps=6,
      checkpoint_every_steps=6,
      log_every_steps=6,
    )
  )
  harness.train(
    harness.two_d_config(base / "twin", train_steps=6, checkpoint_every_steps=6, log_every_steps=6)
  )
  return {"vae": base / "vae", "twin": base / "twin"}


def _plant(source, workdir, step=6):
  for suffix in (".index", ".data-00000-of-00001"):
    shutil.copy(harness.ckpt(source, step) + suffix, harness.ckpt(workdir, step) + suffix)


def test_checkpoint_of_another_method_is_refused_by_train_evaluate_and_export(
  run_copy, other_runs, tmp_path
):
  _plant(other_runs["vae"], run_copy)
  with pytest.raises(checkpoints_lib.CheckpointError, match="--method=vae run"):
    run_lib.restore_run(run_copy)
  with pytest.raises(export_lib.ExportError, match="--method=vae run"):
    export_lib.export_run(str(run_copy), str(tmp_path / "exports"), formats=["saved_model"])
  with pytest.raises(checkpoints_lib.CheckpointError, match="--method=vae run"):
    harness.train(harness.two_d_config(run_copy, train_steps=8))
  assert os.path.exists(harness.ckpt(run_copy, 6) + ".index")  # refused, not moved or deleted


def test_checkpoint_of_another_run_is_refused_by_training(run_copy, other_runs):
  _plant(other_runs["twin"], run_copy)
  with pytest.raises(checkpoints_lib.CheckpointError, match="belongs to another run"):
    harness.train(harness.two_d_config(run_copy, train_steps=8))
