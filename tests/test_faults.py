"""Fault injection: damaged checkpoints and index files, two processes on one workdir,
SIGTERM/SIGINT, resumed runs with other flags, checkpoints of another run, runs that fail
before their first step, small and odd image folders, serving limits (issue 12).

Each test breaks something the way an accident would (truncating, corrupting or deleting
files, signals to a real training process, copying a checkpoint between runs) and checks
what the user is told and that no work is lost or mixed. Tiny 2-D runs are trained once per
module and copied per test.
"""

import json
import logging
import os
import re
import shutil
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
from as_introvae_tf import eval_lib
from as_introvae_tf import export_lib
from as_introvae_tf import run as run_lib
from as_introvae_tf import train_lib
from as_introvae_tf import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _config(workdir, **overrides):
  values = dict(
    method="as_introvae",
    dataset="8gaussians",
    workdir=str(workdir),
    z_dim=2,
    num_hidden=16,
    num_layers=1,
    batch_size=64,
    train_steps=4,
    num_vae=1,
    log_every_steps=2,
    checkpoint_every_steps=2,
    image_every_steps=100,
    keep_checkpoints=5,
    beta_kl=0.3,
    beta_rec=0.2,
    beta_neg=0.9,
    as_kernel="product",
    ema_decay=0.0,
    verbose="0",
  )
  values.update(overrides)
  return config_lib.ExperimentConfig(**values)


def _no_pictures(model, spec, fixed):
  del model, spec, fixed
  return {"samples": np.zeros([4, 4, 3], np.float32)}


def _train(config):
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(train_lib, "render_samples", _no_pictures)  # the scatter plot: slow, unused
    return train_lib.train_and_evaluate(config)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A 2-D AS-IntroVAE run with ckpt-2 and ckpt-4 (and config.json, history)."""
  workdir = tmp_path_factory.mktemp("trained") / "run"
  _train(_config(workdir))
  return workdir


@pytest.fixture
def run_copy(trained, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  return workdir


def _ckpt(workdir, step):
  return str(workdir / "checkpoints" / f"ckpt-{step}")


def _data_file(prefix):
  return prefix + ".data-00000-of-00001"


def _bytes(prefix):
  return {
    suffix: open(prefix + suffix, "rb").read() for suffix in (".index", ".data-00000-of-00001")
  }


def _history(workdir):
  with open(workdir / workdir_lib.HISTORY_FILE) as f:
    return [json.loads(line) for line in f if line.strip()]


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
  before = {s: _bytes(_ckpt(run_copy, s)) for s in (2, 4)}
  caplog.set_level(logging.WARNING)
  run = run_lib.build_run(_config(run_copy, keep_checkpoints=1))
  assert int(run.model.step.numpy()) == 4 and run.restored == _ckpt(run_copy, 4)
  assert "ckpt-2, ckpt-4" in caplog.text and "Rebuilt the index" in caplog.text
  for step in (5, 6, 7):  # the run writes checkpoints: only its own ones rotate
    run.manager.save(checkpoint_number=step)
  for step, files in before.items():
    assert _bytes(_ckpt(run_copy, step)) == files, step
  assert [f.step for f in checkpoints_lib.on_disk(str(run_copy / "checkpoints"))] == [2, 4, 7]
  state = tf.train.get_checkpoint_state(str(run_copy / "checkpoints"))
  assert state.model_checkpoint_path.endswith("ckpt-7")


def test_broken_index_end_to_end_training_continues(run_copy):
  (run_copy / "checkpoints" / "checkpoint").write_text("")
  assert _train(_config(run_copy, train_steps=6, keep_checkpoints=1))["step"] == 6
  assert _history(run_copy)[-1]["step"] == 4  # resumed at 4, not restarted at 0
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
  config = _config("runs/q", train_steps=12, keep_checkpoints=2)
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(train_lib.TrainingMonitor, "on_epoch_end", preempted_after_the_window)
    for _ in range(3):  # the same command: a first segment, then two resumes, preempted
      with pytest.raises(train_lib.TrainingInterrupted):
        _train(config)
  assert _train(config)["step"] == 12  # the third resume reaches the end
  assert warnings() == []
  assert checkpoints_lib.read_index(os.path.join("runs", "q", "checkpoints"))[1] is None
  directory = tmp_path / "runs" / "q" / "checkpoints"
  steps = [s["step"] for s in _history(tmp_path / "runs" / "q")]
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
  data = _data_file(prefix)
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
  _damage(_ckpt(run_copy, 4), how)
  caplog.set_level(logging.WARNING)
  if how == "truncated_data":  # once end to end
    assert _train(_config(run_copy, train_steps=6))["step"] == 6
    assert _history(run_copy)[-1]["step"] == 2  # continued from the intact ckpt-2
  else:  # what training restores
    run = run_lib.build_run(_config(run_copy, train_steps=6))
    assert int(run.model.step.numpy()) == 2 and run.restored == _ckpt(run_copy, 2)
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
    _damage(_ckpt(run_copy, 4), case)
    expected, needle = 2, "Checkpoint ckpt-4 is damaged"
  caplog.set_level(logging.WARNING)
  chosen = _readers_choose(run_copy, tmp_path / "exports", caplog)
  for reader, (prefix, notes) in chosen.items():
    assert prefix == _ckpt(run_copy, expected), reader
    mine = [n for n in notes if needle in n]
    assert len(mine) == 1 and f"ckpt-{expected} (step {expected})" in mine[0], (reader, notes)
    if expected == 2:
      assert "reading the newest intact checkpoint, ckpt-2" in mine[0]
  if expected == 2:
    with pytest.raises(checkpoints_lib.CheckpointError) as info:
      run_lib.restore_run(run_copy, checkpoint=_ckpt(run_copy, 4))
    message = str(info.value)
    assert "ckpt-4 is damaged" in message and "Intact checkpoints: ckpt-2" in message
    assert f"--checkpoint={_ckpt(run_copy, 2)}" in message and "architecture" not in message
  caplog.clear()
  run = run_lib.build_run(_config(run_copy, train_steps=6))  # training's resume: the same
  assert run.restored == _ckpt(run_copy, expected)
  assert needle in caplog.text.replace("resuming from", "reading")


def test_half_written_checkpoint_of_a_live_run_is_not_called_damaged(run_copy):
  """While train.lock names a live process, the newest incomplete checkpoint is being
  written: the readers skip it with a note that says so, not "damaged"."""
  shutil.copy(_data_file(_ckpt(run_copy, 4)), _data_file(_ckpt(run_copy, 6)))  # no .index yet
  live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    owner = {"host": socket.gethostname(), "pid": live.pid, "started": "now", "command": "x"}
    (run_copy / workdir_lib.LOCK_FILE).write_text(json.dumps(owner))
    notes = []
    assert run_lib.restore_run(run_copy, log=notes.append).restored == _ckpt(run_copy, 4)
    assert len(notes) == 1 and "damaged" not in notes[0], notes
    assert (
      f"ckpt-6 is still being written by the training run in progress (PID {live.pid}" in (notes[0])
    )
    assert ", since now)" in notes[0] and "delete the workdir's train.lock" in notes[0]
  finally:
    live.kill()
    live.wait()
  notes = []  # the same files once that process is gone: a damaged checkpoint
  assert run_lib.restore_run(run_copy, log=notes.append).restored == _ckpt(run_copy, 4)
  assert "Checkpoint ckpt-6 is damaged (ckpt-6.index is missing)" in notes[0]


def test_read_only_checkpoints_folder_while_moving_a_damaged_checkpoint_aside(
  run_copy, monkeypatch
):
  import errno  # pylint: disable=import-outside-toplevel

  _damage(_ckpt(run_copy, 4), "truncated_data")

  def read_only(source, destination, *args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system", str(source))

  monkeypatch.setattr(shutil, "move", read_only)  # as root, chmod would not stop the move
  with pytest.raises(checkpoints_lib.CheckpointError) as info:
    run_lib.build_run(_config(run_copy, train_steps=6))
  message = str(info.value)
  assert "ckpt-4 is damaged and could not be moved aside" in message
  assert "Read-only file system" in message and "Nothing was deleted" in message
  assert len(message.splitlines()) == 1
  assert os.path.exists(_ckpt(run_copy, 4) + ".index")


def test_no_intact_checkpoint_stops_training_and_keeps_the_files(run_copy):
  for step in (2, 4):
    _damage(_ckpt(run_copy, step), "truncated_data")
  with pytest.raises(checkpoints_lib.CheckpointError, match="none of them restores.*ckpt-4"):
    _train(_config(run_copy, train_steps=6))
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
  _train(
    _config(
      base / "vae",
      method="vae",
      num_vae=0,
      train_steps=6,
      checkpoint_every_steps=6,
      log_every_steps=6,
    )
  )
  _train(_config(base / "twin", train_steps=6, checkpoint_every_steps=6, log_every_steps=6))
  return {"vae": base / "vae", "twin": base / "twin"}


def _plant(source, workdir, step=6):
  for suffix in (".index", ".data-00000-of-00001"):
    shutil.copy(_ckpt(source, step) + suffix, _ckpt(workdir, step) + suffix)


def test_checkpoint_of_another_method_is_refused_by_train_evaluate_and_export(
  run_copy, other_runs, tmp_path
):
  _plant(other_runs["vae"], run_copy)
  with pytest.raises(checkpoints_lib.CheckpointError, match="--method=vae run"):
    run_lib.restore_run(run_copy)
  with pytest.raises(export_lib.ExportError, match="--method=vae run"):
    export_lib.export_run(str(run_copy), str(tmp_path / "exports"), formats=["saved_model"])
  with pytest.raises(checkpoints_lib.CheckpointError, match="--method=vae run"):
    _train(_config(run_copy, train_steps=8))
  assert os.path.exists(_ckpt(run_copy, 6) + ".index")  # refused, not moved or deleted


def test_checkpoint_of_another_run_is_refused_by_training(run_copy, other_runs):
  _plant(other_runs["twin"], run_copy)
  with pytest.raises(checkpoints_lib.CheckpointError, match="belongs to another run"):
    _train(_config(run_copy, train_steps=8))


# === The run's record =========================================================================


def test_resume_with_other_flags_keeps_config_json_and_records_the_changes(run_copy, tmp_path):
  original = (run_copy / "config.json").read_text()
  _train(_config(run_copy, train_steps=6, seed=1, batch_size=32, adam_beta1=0.5))
  _train(_config(run_copy, train_steps=8, seed=1, batch_size=32, adam_beta1=0.5, lr=1e-3))
  _train(_config(run_copy, train_steps=3))  # lower than the step reached: nothing to train
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
    train_lib.train_and_evaluate(_config(workdir, z_dim=3))
  monkeypatch.undo()
  assert not os.path.exists(workdir / "config.json")
  assert not os.path.exists(workdir / workdir_lib.LOCK_FILE)
  # The corrected command (another architecture) trains.
  assert _train(_config(workdir, z_dim=2, train_steps=2))["step"] == 2
  assert config_lib.load_config(str(workdir)).z_dim == 2


def test_config_json_without_a_checkpoint_does_not_refuse_the_next_run(tmp_path):
  """A workdir left by the old code (config.json written, no checkpoint) is not bound."""
  workdir = tmp_path / "run"
  config_lib.save_config(_config(workdir, z_dim=5), str(workdir))
  assert _train(_config(workdir, train_steps=2))["step"] == 2
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
    lambda: _train(_config(run_copy, train_steps=6)),
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
  config = _config(workdir, train_steps=8, image_every_steps=2, checkpoint_every_steps=100)
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
    config = _config(workdir, train_steps=2)
    _failing(monkeypatch, config_lib, "save_config", full)
    path, saved_at = str(workdir / "config.json"), 2
  segments = len(_history(workdir)) if os.path.exists(workdir / workdir_lib.HISTORY_FILE) else 0
  with pytest.raises(train_lib.OutputWriteError) as info:
    _train(config)
  message = str(info.value)
  assert len(message.splitlines()) == 1, message
  cause = "full" if failure == "tensorboard" else "No space left on device"
  assert message.startswith(f"cannot write {path} ({cause})"), message
  assert f"the checkpoint of step {saved_at} is saved" in message, message
  assert saved_at in [f.step for f in checkpoints_lib.on_disk(str(workdir / "checkpoints"))]
  history = _history(workdir) if os.path.exists(workdir / workdir_lib.HISTORY_FILE) else []
  expected = segments + (1 if failure in ("samples_png", "tensorboard") else 0)
  assert len(history) == expected  # a line only for a segment that saved its checkpoint


def test_failed_checkpoint_save_leaves_no_history_line_and_no_temporary_folder(
  run_copy, monkeypatch
):
  def full_disk(manager, checkpoint_number=None, **kwargs):
    os.makedirs(os.path.join(manager.directory, f"ckpt-{checkpoint_number}_temp"))  # as TF
    raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

  monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
  segments = len(_history(run_copy))
  with pytest.raises(train_lib.CheckpointWriteError, match="No space left on device.*ckpt-4"):
    _train(_config(run_copy, train_steps=6))
  monkeypatch.undo()
  assert len(_history(run_copy)) == segments
  assert not [n for n in os.listdir(run_copy / "checkpoints") if n.endswith("_temp")]
  # A folder left by a process that died mid-save is removed by the next run.
  os.makedirs(run_copy / "checkpoints" / "ckpt-5_temp")
  assert _train(_config(run_copy, train_steps=6))["step"] == 6
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
  assert _train(_config(run_copy, train_steps=6))["step"] == 6
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
      cwd=ROOT,
      env=ENV,
      capture_output=True,
      text=True,
      timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert f"PID {os.getpid()} on host {socket.gethostname()}" in proc.stdout
  assert not os.path.exists(workdir / workdir_lib.LOCK_FILE)


def test_second_ctrl_c_aborts_at_once():
  before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs in the background
  stop = train_lib._StopOnSignals()  # pylint: disable=protected-access
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
  """The command line of `_config(workdir, train_steps=steps, log_every_steps=5, ...)`."""
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
  return _config(
    workdir,
    train_steps=steps,
    log_every_steps=5,
    checkpoint_every_steps=1000,
    image_every_steps=1000,
  )


def _start_and_wait_for_training(workdir):
  """Starts the CLI and returns once it has finished its first log window (step 5)."""
  proc = subprocess.Popen(
    _cli(workdir), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
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
  assert _train(_cli_config(workdir))["step"] == STEPS  # the same command again
  _train(_cli_config(tmp_path / "straight"))
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


# === Small and odd image folders ==============================================================

CIFAR_DIR = os.path.join(ROOT, "..", "shared", "data", "cifar10")
needs_cifar = pytest.mark.skipif(
  not os.path.isdir(os.path.join(CIFAR_DIR, "train", "dog")),
  reason="CIFAR-10 JPEGs missing in ../shared/data/cifar10",
)


@pytest.fixture(autouse=True)
def _private_check_cache(tmp_path_factory, monkeypatch):
  """Keep find_bad_images' on-disk cache out of the user's ~/.cache during tests."""
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel

  monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path_factory.mktemp("check_cache")))


def _jpegs(n, cls="dog"):
  folder = os.path.join(CIFAR_DIR, "train", cls)
  return [os.path.join(folder, f) for f in sorted(os.listdir(folder))[:n]]


def _image_config(workdir, folder, **overrides):
  values = dict(
    method="vae",
    dataset=f"folder:{folder}",
    workdir=str(workdir),
    filters=(4, 8),
    z_dim=4,
    batch_size=4,
    train_steps=2,
    num_vae=0,
    log_every_steps=2,
    checkpoint_every_steps=2,
    image_every_steps=100,
    keep_checkpoints=5,
    ema_decay=0.9,
    image_size=8,
    verbose="0",
  )
  values.update(overrides)
  return config_lib.ExperimentConfig(**values)


@needs_cifar
def test_ten_images_with_batch_4_train_evaluate_and_export(tmp_path):
  folder = tmp_path / "ten"
  folder.mkdir()
  for i, f in enumerate(_jpegs(10)):
    shutil.copy(f, folder / f"{i:02d}.jpg")
  workdir = tmp_path / "run"
  result = _train(_image_config(workdir, folder))
  assert result["step"] == 2
  evaluation = eval_lib.evaluate(
    str(workdir), eval_lib.EvalOptions(feature_net="none"), log=lambda text: None
  )
  assert evaluation["details"]["num_images"] == 10
  assert np.isfinite(evaluation["metrics"]["psnr"])
  exported = export_lib.export_run(str(workdir), str(tmp_path / "exports"), formats=["saved_model"])
  assert exported.model_card["example_shape"] == [8, 8, 3]


@needs_cifar
def test_too_little_data_for_the_batch_is_named_with_the_numbers_and_binds_nothing(tmp_path):
  folder = tmp_path / "three"
  folder.mkdir()
  for i, f in enumerate(_jpegs(3)):
    shutil.copy(f, folder / f"{i}.jpg")
  workdir = tmp_path / "run"
  with pytest.raises(
    ValueError,
    match=r"has 3 training image\(s\), fewer than one batch of "
    r"--batch_size=4: lower --batch_size to at most 3",
  ):
    train_lib.train_and_evaluate(_image_config(workdir, folder))
  assert not os.path.exists(workdir / "config.json")
  # The corrected command, with another architecture too, is not refused.
  corrected = _image_config(workdir, folder, batch_size=3, image_size=16)
  assert _train(corrected)["step"] == 2


@needs_cifar
def test_channels_come_from_the_flag_or_the_majority_and_every_image_is_converted(tmp_path, caplog):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel

  folder = tmp_path / "mixed"
  folder.mkdir()
  sources = _jpegs(6)
  Image.open(sources[0]).convert("L").save(folder / "0_grey_sorts_first.png")
  for i, f in enumerate(sources[1:]):
    shutil.copy(f, folder / f"{i + 1}_rgb.jpg")
  caplog.set_level(logging.INFO)
  spec = data.parse_dataset(f"folder:{folder}", None, None)
  assert spec.shape == (32, 32, 3)
  assert "1 of 6 sampled images are grey and 5 colour" in caplog.text
  assert "--channels=3 (RGB)" in caplog.text
  batch = next(iter(data.build_dataset(spec, "train", 6, seed=0, shuffle=False))).numpy()
  assert batch.shape == (6, 32, 32, 3)
  grey = data.parse_dataset(f"folder:{folder}", None, 1)
  assert grey.shape == (32, 32, 1)
  batch = next(iter(data.build_dataset(grey, "train", 6, seed=0, shuffle=False))).numpy()
  assert batch.shape == (6, 32, 32, 1)


@needs_cifar
def test_symlinked_folders_that_loop_count_each_image_once(tmp_path):
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel

  root = tmp_path / "root"
  (root / "a").mkdir(parents=True)
  for i, f in enumerate(_jpegs(3)):
    shutil.copy(f, root / "a" / f"{i}.jpg")
  os.symlink(root, root / "a" / "back_to_root")  # a loop
  os.symlink(root / "a", root / "same_as_a")  # a second way to the same folder
  files = data.list_image_files(str(root), "train")
  assert len(files) == 3 and len({os.path.realpath(f) for f in files}) == 3


def _blank_png(path, width, height):
  """A grey PNG of width x height zero pixels, written row by row (a few hundred kB for
  10000 x 10000; never held in memory here)."""
  import struct  # pylint: disable=import-outside-toplevel
  import zlib  # pylint: disable=import-outside-toplevel

  def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

  packer, row, parts = zlib.compressobj(9), b"\0" * (width + 1), []
  for _ in range(height):
    parts.append(packer.compress(row))
  parts.append(packer.flush())
  header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
  with open(path, "wb") as fh:
    fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)))
    fh.write(chunk(b"IEND", b""))


def _peak_rss_mib():
  import resource  # pylint: disable=import-outside-toplevel

  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@needs_cifar
def test_huge_image_is_named_with_its_size_before_it_is_decoded(tmp_path):
  """A 10000 x 10000 PNG (about 100 kB on disk, 2 GB to decode): with the default
  --max_image_pixels the check names it and its size without decoding it (this process's peak
  memory does not grow by the 100 MB even its 8-bit pixels would take); skip drops it; a lower
  limit refuses a normal-sized image, a higher one takes it."""
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel

  folder = tmp_path / "huge"
  folder.mkdir()
  for i, f in enumerate(_jpegs(4)):
    shutil.copy(f, folder / f"{i}.jpg")
  huge = folder / "poster.png"
  _blank_png(huge, 10000, 10000)
  assert os.path.getsize(huge) < 1_000_000
  spec = data.parse_dataset(f"folder:{folder}", None, None)  # sampled without decoding it
  assert spec.shape == (32, 32, 3)
  before = _peak_rss_mib()
  with pytest.raises(ValueError) as err:
    data.build_dataset(spec, "train", 2, seed=0)
  assert _peak_rss_mib() - before < 80
  message = str(err.value)
  assert str(huge) in message and "10000x10000 = 100,000,000 pixels" in message
  assert "--max_image_pixels=50,000,000" in message and "--bad_images skip" in message
  ds = data.build_dataset(spec, "train", 2, seed=0, bad_images="skip", repeat=False)
  assert sum(int(b.shape[0]) for b in ds) == 4
  assert data.count_examples(spec, "train", bad_images="skip") == 4
  # The limit is a flag: 32 x 32 = 1024 pixels against 1000, then 1024.
  small = tmp_path / "small"
  small.mkdir()
  shutil.copy(_jpegs(1)[0], small / "0.jpg")
  small_spec = data.parse_dataset(f"folder:{small}", None, None)
  with pytest.raises(ValueError, match=r"32x32 = 1,024 pixels, more than --max_image_pixels=1,000"):
    data.build_dataset(small_spec, "train", 1, seed=0, max_image_pixels=1000)
  ok = data.build_dataset(small_spec, "train", 1, seed=0, max_image_pixels=1024, repeat=False)
  assert [b.shape for b in ok] == [(1, 32, 32, 3)]


@needs_cifar
def test_skip_pipeline_whose_files_all_go_bad_stops_naming_the_folder(tmp_path):
  """--bad_images=skip on a folder whose files all break after the check (an infinite,
  repeated pipeline): it used to drop every batch for ever; now it stops after
  MAX_CONSECUTIVE_BAD_BATCHES batches in a row with an error naming the folder, at once. A
  single file going bad only drops its batch."""
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel
  from as_introvae_tf.data import folders  # pylint: disable=import-outside-toplevel

  folder = tmp_path / "going_bad"
  folder.mkdir()
  for i, f in enumerate(_jpegs(6)):
    shutil.copy(f, folder / f"{i}.jpg")
  spec = data.parse_dataset(f"folder:{folder}", 16, 3)
  ds = data.build_dataset(spec, "train", 2, seed=0, bad_images="skip", shuffle=False)
  (folder / "1.jpg").write_bytes(b"broken after the check")
  first = [b.numpy() for b in ds.take(6)]  # batches 0-1 and 2-3... : the bad one is dropped
  assert all(b.shape == (2, 16, 16, 3) for b in first)
  assert not any(np.allclose(b, 0) for b in first)
  for i in range(6):
    (folder / f"{i}.jpg").write_bytes(b"broken after the check")
  began = time.time()
  seen = 0
  with pytest.raises(tf.errors.InvalidArgumentError) as err:
    for _ in ds:
      seen += 1
      assert seen < 1000, "the skip pipeline did not stop"
  assert time.time() - began < 60
  message = folders.pipeline_stop_message(err.value)
  assert message == (
    f"image folder {folder}: {data.MAX_CONSECUTIVE_BAD_BATCHES} batches in a row failed to "
    "load (files changed, removed or unreadable since the check at the start): stopping "
    "instead of skipping for ever; check the folder and run again"
  )
  assert folders.pipeline_stop_message(ValueError("other")) is None


def test_train_command_prints_the_stopped_folder_in_one_line(tmp_path, monkeypatch, capsys):
  """The train command prints the stopped skip pipeline's message as one `error:` line, exit 1
  (training replaced by a function raising what the pipeline raises; the flags live in a
  FlagValues of their own, so absl's global FLAGS stay untouched)."""
  from absl import flags  # pylint: disable=import-outside-toplevel

  from as_introvae_tf import cli  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import train as train_cli  # pylint: disable=import-outside-toplevel

  stop = "[image folder /data/x: 100 batches in a row failed to load (...): stopping]"

  def going_bad(config):
    raise tf.errors.InvalidArgumentError(None, None, f"assertion failed: {stop}")

  fv = flags.FlagValues()
  config_lib.define_flags(fv)
  fv(["train", f"--workdir={tmp_path / 'w'}", "--dataset=8gaussians", "--method=vae"])
  monkeypatch.setattr(flags, "FLAGS", fv)
  monkeypatch.setattr(train_lib, "train_and_evaluate", going_bad)
  monkeypatch.setattr(cli, "quiet_absl_logging", lambda flag_values: None)  # process-wide
  assert train_cli.main(["train"]) == 1
  err = capsys.readouterr().err
  assert err.strip() == "error: " + stop[1:-1]


@needs_cifar
def test_folder_of_every_listed_format_trains_with_fail_and_skip(tmp_path):
  """A folder holding every listed extension (WebP passed the check, then failed in the
  pipeline: a traceback under fail, an endless loop under skip) trains to the end either way."""
  from PIL import Image  # pylint: disable=import-outside-toplevel

  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel

  folder = tmp_path / "formats"
  folder.mkdir()
  sources = _jpegs(len(data.IMAGE_EXTENSIONS))
  for src, ext in zip(sources, data.IMAGE_EXTENSIONS):
    Image.open(src).convert("RGB").save(folder / f"img{ext}")
  for mode in ("fail", "skip"):
    result = _train(_image_config(tmp_path / mode, folder, bad_images=mode))
    assert result["step"] == 2


# === Serving limits ===========================================================================

MAX_BATCH = 4


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
  """(ExportResult, loaded SavedModel) of a tiny Fashion-MNIST VAE exported with
  --max_batch=4."""
  base = tmp_path_factory.mktemp("serving")
  config = config_lib.ExperimentConfig(
    method="vae",
    dataset="fashion_mnist",
    workdir=str(base / "run"),
    filters=(4, 8),
    z_dim=4,
    batch_size=8,
    train_steps=2,
    num_vae=0,
    log_every_steps=2,
    checkpoint_every_steps=2,
    image_every_steps=100,
    ema_decay=0.5,
    verbose="0",
  )
  _train(config)
  result = export_lib.export_run(
    str(base / "run"), str(base / "exports" / "fm"), formats=["saved_model"], max_batch=MAX_BATCH
  )
  return result, tf.saved_model.load(result.version_dir)


def _sig(loaded, name, **inputs):
  return {k: v.numpy() for k, v in loaded.signatures[name](**inputs).items()}


def _pixels(n, low=0.0, high=1.0):
  return np.random.default_rng(0).uniform(low, high, (n, 28, 28, 1)).astype(np.float32)


def test_max_batch_is_checked_inside_every_signature(small_export):
  result, loaded = small_export
  assert result.model_card["max_batch"] == MAX_BATCH
  seeds = tf.range(MAX_BATCH + 1, dtype=tf.int64)
  calls = {
    "serving_default": dict(seeds=seeds),
    "generate": dict(seeds=seeds),
    "generate_png": dict(seeds=seeds),
    "decode": dict(z=tf.zeros([MAX_BATCH + 1, 4])),
    "encode": dict(images=_pixels(MAX_BATCH + 1)),
    "reconstruct": dict(images=_pixels(MAX_BATCH + 1)),
  }
  for name, inputs in calls.items():
    with pytest.raises(
      tf.errors.InvalidArgumentError, match=f"at most max_batch={MAX_BATCH} examples per request"
    ):
      loaded.signatures[name](**inputs)
  assert _sig(loaded, "generate", seeds=seeds[:MAX_BATCH])["images"].shape == (4, 28, 28, 1)


def test_encode_and_reconstruct_reject_pixels_outside_0_1_and_nan_decode_rejects_nan(small_export):
  _, loaded = small_export
  bad_inputs = {"above 1": _pixels(2, 0.0, 255.0), "below 0": _pixels(2, -1.0, 0.5)}
  nan = _pixels(2)
  nan[1, 3, 4, 0] = np.nan
  for name in ("encode", "reconstruct"):
    for what, images in bad_inputs.items():
      with pytest.raises(tf.errors.InvalidArgumentError, match="pixel values in \\[0, 1\\]"):
        loaded.signatures[name](images=images)
    with pytest.raises(tf.errors.InvalidArgumentError, match="images must be finite"):
      loaded.signatures[name](images=nan)
  z = np.zeros([2, 4], np.float32)
  z[0, 1] = np.nan
  with pytest.raises(tf.errors.InvalidArgumentError, match="z must be finite"):
    loaded.signatures["decode"](z=z)
  assert np.isfinite(_sig(loaded, "encode", images=_pixels(2))["mu"]).all()


def test_empty_requests_return_empty_batches(small_export):
  _, loaded = small_export
  empty = tf.zeros([0], tf.int64)
  assert _sig(loaded, "generate", seeds=empty)["images"].shape == (0, 28, 28, 1)
  assert _sig(loaded, "serving_default", seeds=empty)["images"].shape == (0, 28, 28, 1)
  assert _sig(loaded, "generate_png", seeds=empty)["png_bytes"].shape == (0,)
  assert _sig(loaded, "decode", z=tf.zeros([0, 4]))["images"].shape == (0, 28, 28, 1)
  assert _sig(loaded, "encode", images=_pixels(0))["mu"].shape == (0, 4)
  assert _sig(loaded, "reconstruct", images=_pixels(0))["images"].shape == (0, 28, 28, 1)


def test_load_honours_the_exports_max_batch_and_checks_inputs_as_for_a_workdir(small_export):
  import as_introvae_tf  # pylint: disable=import-outside-toplevel

  result, _ = small_export
  workdir = os.path.dirname(os.path.dirname(result.model_card["checkpoint"]))
  exported = as_introvae_tf.load(os.path.dirname(result.version_dir))
  assert exported.batch_size == MAX_BATCH
  assert exported.sample(5 * MAX_BATCH, seed=0).shape == (20, 28, 28, 1)  # batches of 4
  from_workdir = as_introvae_tf.load(workdir)
  nan = _pixels(2)
  nan[1, 3, 4, 0] = np.nan
  z = np.zeros([2, 4], np.float32)
  z[0, 1] = np.inf
  for model in (from_workdir, exported):
    with pytest.raises(ValueError, match="images must be finite"):
      model.encode(nan)
    with pytest.raises(ValueError, match="images must be finite"):
      model.reconstruct(nan)
    with pytest.raises(ValueError, match=r"pixel values in \[0, 1\]"):
      model.encode(_pixels(2, 0.0, 255.0))
    with pytest.raises(ValueError, match="z must be finite"):
      model.decode(z)


def test_broken_newest_export_version_falls_back_with_a_warning(small_export, tmp_path, caplog):
  import as_introvae_tf  # pylint: disable=import-outside-toplevel

  result, _ = small_export
  export_dir = tmp_path / "fm"
  shutil.copytree(result.version_dir, export_dir / "1")
  shutil.copytree(result.version_dir, export_dir / "2")
  pb = export_dir / "2" / "saved_model.pb"
  pb.write_bytes(pb.read_bytes()[:100])  # truncated
  shutil.copytree(result.version_dir, export_dir / "3")
  shutil.rmtree(export_dir / "3" / "variables")
  caplog.set_level(logging.WARNING)
  model = as_introvae_tf.load(str(export_dir))
  assert model.path == str(export_dir / "1")
  for version in (3, 2):
    assert f"Export version {version} in {export_dir} is broken" in caplog.text
  assert "loading the newest intact version, 1" in caplog.text
  shutil.rmtree(export_dir / "1")
  with pytest.raises(ValueError, match="no version of the export .* loads: version 3: .*version 2"):
    as_introvae_tf.load(str(export_dir))


def _client(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel

  # pylint: disable-next=import-outside-toplevel
  from as_introvae_tf.serving import client as serving_client

  fv = flags.FlagValues()
  serving_client.define_flags(fv)
  fv(["serving_client"] + argv)
  return serving_client.main(["serving_client"], fv)


def test_client_refuses_more_than_max_batch_before_building_anything(monkeypatch, capsys, tmp_path):
  # pylint: disable-next=import-outside-toplevel
  from as_introvae_tf.serving import client as serving_client

  def must_not_run(*args, **kwargs):
    raise AssertionError("the request was built")

  monkeypatch.setattr(serving_client, "build_rest_request", must_not_run)
  monkeypatch.setattr(serving_client, "grpc_predict", must_not_run)
  began = time.time()
  # 10^12 seeds: building the seed list alone would exhaust the memory.
  assert _client(["--model=fm", "--num=1000000000000", f"--out={tmp_path / 'g.png'}"]) == 1
  assert "more than --max_batch=256" in capsys.readouterr().err
  assert _client(["--model=fm", "--num=5", "--max_batch=4", "--grpc=localhost:1"]) == 1
  assert "5 samples requested, more than --max_batch=4" in capsys.readouterr().err
  assert time.time() - began < 5
  with pytest.raises(ValueError, match="more than --max_batch=256"):
    serving_client.fetch_samples(list(range(257)), url="http://localhost:1", model="fm")


# === The serving client against wrong answers ================================================


class _RawHTTP:
  """A local HTTP server on 127.0.0.1 answering every POST with the raw bytes `reply(body)`
  (status line, headers and body as given, garbage included), then closing the connection.
  It serves at most 50 requests and stops itself after 60 s (or on leaving the `with`)."""

  def __init__(self, reply):
    import threading  # pylint: disable=import-outside-toplevel

    self.reply, self.requests = reply, []
    self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    self.sock.bind(("127.0.0.1", 0))
    self.sock.listen(8)
    self.sock.settimeout(0.1)
    self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
    self.stop = threading.Event()
    self.thread = threading.Thread(target=self._serve, daemon=True)

  def _serve(self):
    deadline = time.time() + 60
    while not self.stop.is_set() and time.time() < deadline and len(self.requests) < 50:
      try:
        conn, _ = self.sock.accept()
      except OSError:
        continue
      with conn:
        conn.settimeout(5)
        try:
          raw = b""
          while b"\r\n\r\n" not in raw:
            raw += conn.recv(65536) or b"\r\n\r\n"
          head, _, body = raw.partition(b"\r\n\r\n")
          length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
          while len(body) < length:
            body += conn.recv(65536)
          self.requests.append(json.loads(body))
          conn.sendall(self.reply(self.requests[-1]))
        except (OSError, ValueError, AttributeError):
          pass

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, *exc):
    self.stop.set()
    self.thread.join(10)
    self.sock.close()


def _http(body, status="200 OK", length=None):
  body = body if isinstance(body, bytes) else json.dumps(body).encode()
  length = len(body) if length is None else length
  head = (
    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    "Connection: close\r\n\r\n"
  )
  return head.encode() + body


def _images(n, shape=(8, 8, 1), value=0.5):
  return np.full((n, *shape), value, np.float32).tolist()


def _png_b64(value=128, shape=(8, 8)):
  import base64  # pylint: disable=import-outside-toplevel
  import io  # pylint: disable=import-outside-toplevel

  from PIL import Image  # pylint: disable=import-outside-toplevel

  buf = io.BytesIO()
  Image.fromarray(np.full(shape, value, np.uint8), "L").save(buf, format="PNG")
  return {"b64": base64.b64encode(buf.getvalue()).decode()}


_WRONG_ANSWERS = {
  "too_few": (_http({"predictions": _images(3)}), "3 predictions for 4 seeds"),
  "too_many": (_http({"predictions": _images(5)}), "5 predictions for 4 seeds"),
  "shape": (_http({"predictions": _images(4, (8, 8, 3))}), "the model card says [8, 8, 1]"),
  "nan": (
    _http(json.dumps({"predictions": _images(4)}).replace("0.5", "NaN", 1).encode()),
    "1 non-finite values (NaN/inf)",
  ),
  "inf": (
    _http(json.dumps({"predictions": _images(4)}).replace("0.5", "Infinity", 2).encode()),
    "2 non-finite values",
  ),
  "range": (
    _http({"predictions": _images(4, value=1.5)}),
    "pixels are outside [0, 1] (min 1.5, max 1.5)",
  ),
  "negative": (_http({"predictions": _images(4, value=-0.25)}), "outside [0, 1] (min -0.25"),
  "not_a_list": (_http({"predictions": 5}), "'predictions' is a JSON int, not a list"),
  "a_string": (_http({"predictions": "images"}), "'predictions' is a JSON str, not a list"),
  "not_an_object": (_http([1, 2, 3, 4]), "not a predict answer: a JSON list"),
  "no_key": (_http({"answers": []}), "no 'predictions' or 'outputs'"),
  "ragged": (
    _http({"predictions": [*_images(3), [0.5]]}),
    "not a regular array of numbers",
  ),
  "strings": (_http({"predictions": ["a", "b", "c", "d"]}), "not a regular array of numbers"),
  "bad_png": (
    _http({"predictions": [{"b64": "bm90IGEgcG5n"}] * 4}),
    "PNG 0 of the answer does not decode",
  ),
  "empty": (_http({"predictions": []}), "0 predictions for 4 seeds"),
  "error": (_http({"error": "Servable not found"}, "404 Not Found"), "HTTP 404"),
  "error_list": (_http([1, 2], "500 Internal Server Error"), "HTTP 500 from"),
  "garbage_status": (b"GARBAGE 200 maybe\r\n\r\n{}", "did not answer in HTTP"),
  "no_answer": (b"", "did not answer in HTTP"),
  "short_body": (
    _http(b'{"predictions": [', length=1000),
    "was cut short (17 bytes received, 983 more expected)",
  ),
  "not_json": (_http(b"<html>busy</html>"), "is not JSON"),
}


def _one_error_line(err):
  assert "Traceback" not in err, err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  return lines[0]


@pytest.fixture
def model_card(tmp_path):
  path = tmp_path / "export" / "1" / "model_card.json"
  path.parent.mkdir(parents=True)
  path.write_text(json.dumps({"kind": "image", "example_shape": [8, 8, 1], "max_batch": 16}))
  return path


@pytest.mark.parametrize("case", sorted(_WRONG_ANSWERS))
def test_client_refuses_each_wrong_answer_in_one_line(case, tmp_path, model_card, capsys):
  reply, expected = _WRONG_ANSWERS[case]
  out_dir = tmp_path / "out"
  out_dir.mkdir()
  with _RawHTTP(lambda body: reply) as server:
    rc = _client(
      [
        f"--url={server.url}",
        "--model=fm",
        "--num=4",
        f"--out={out_dir / 'grid.png'}",
        f"--model_card={model_card}",
        "--timeout=10",
      ]
    )
  assert rc == 1
  line = _one_error_line(capsys.readouterr().err)
  assert expected in line, line
  assert os.listdir(out_dir) == []  # no grid, no temporary file
  assert server.requests[0]["instances"] == [0, 1, 2, 3]


def test_client_writes_a_checked_answer_and_refuses_what_it_cannot_reach_or_write(
  tmp_path, model_card, capsys
):
  from PIL import Image  # pylint: disable=import-outside-toplevel

  out_dir = tmp_path / "out"
  out_dir.mkdir()
  good = _http({"predictions": _images(4, value=0.25)})
  with _RawHTTP(lambda body: good) as server:
    args = [f"--url={server.url}", "--model=fm", "--num=4", "--timeout=10"]
    assert _client(args + [f"--out={out_dir / 'grid.png'}", f"--model_card={model_card}"]) == 0
    assert os.listdir(out_dir) == ["grid.png"]
    grid = np.asarray(Image.open(out_dir / "grid.png"))
    assert grid.shape == (16, 16) and (grid == 64).all()  # 2 x 2 cells of 0.25 * 255
    capsys.readouterr()
    # An --out it cannot write: under a file, a folder; nothing is left behind.
    (out_dir / "a_file").write_text("x")
    for out, why in (
      (out_dir / "a_file" / "grid.png", "cannot write --out"),
      (out_dir, "Is a directory"),
    ):
      assert _client(args + [f"--out={out}"]) == 1
      assert why in _one_error_line(capsys.readouterr().err)
    assert sorted(os.listdir(out_dir)) == ["a_file", "grid.png"]
    # A model card that is missing or not a card.
    assert _client(args + [f"--out={out_dir / 'g.png'}", "--model_card=/nonexistent.json"]) == 1
    assert "cannot read --model_card /nonexistent.json" in _one_error_line(capsys.readouterr().err)
    # The card's max_batch (16) is the default limit.
    assert _client(args[:-2] + ["--num=17", f"--model_card={model_card}"]) == 1
    assert "more than --max_batch=16" in _one_error_line(capsys.readouterr().err)
  # Nothing listening there any more: refused.
  assert _client(args + [f"--out={out_dir / 'g.png'}"]) == 1
  assert "cannot reach" in _one_error_line(capsys.readouterr().err)
  assert sorted(os.listdir(out_dir)) == ["a_file", "grid.png"]


def test_client_checks_points_and_pngs_without_a_model_card(tmp_path, capsys):
  from as_introvae_tf.serving import client  # pylint: disable=import-outside-toplevel

  points = np.array([[3.0, -4.0], [0.0, 1.0]], np.float32)
  np.testing.assert_array_equal(client.check_samples(points, 2, [2], "2d"), points)
  np.testing.assert_array_equal(client.check_samples(points, 2), points)  # unbounded: fine
  with pytest.raises(client.ServingError, match="non-finite"):
    client.check_samples(np.array([[np.nan, 0.0]]), 1)
  with pytest.raises(client.ServingError, match="neither an image"):
    client.check_samples(np.zeros([2, 5]), 2)
  with pytest.raises(client.ServingError, match="not numbers"):
    client.check_samples(np.array([["a", "b"]]), 1)
  pngs = _http({"predictions": [_png_b64(255)] * 3})
  with _RawHTTP(lambda body: pngs) as server:
    args = [f"--url={server.url}", "--model=fm", "--signature=generate_png", "--timeout=10"]
    assert _client(args + ["--num=3", f"--out={tmp_path / 'p.png'}"]) == 0
    assert _client(args + ["--num=2", f"--out={tmp_path / 'q.png'}"]) == 1
    assert "3 predictions for 2 seeds" in _one_error_line(capsys.readouterr().err)
  assert not (tmp_path / "q.png").exists()


def test_the_running_client_imports_no_tensorflow(tmp_path):
  """The client run end to end in a fresh interpreter (images, PNGs, 2-D points) writes its
  pictures without importing TensorFlow, Keras or the training code."""
  answers = {
    "images": _http({"predictions": _images(2, (8, 8, 3))}),
    "pngs": _http({"predictions": [_png_b64(7)] * 2}),
    "points": _http({"predictions": [[0.5, -1.0], [2.0, 3.0]]}),
  }
  code = (
    "import sys\n"
    "from absl import flags\n"
    "from as_introvae_tf.serving import client\n"
    "fv = flags.FlagValues(); client.define_flags(fv); fv(sys.argv)\n"
    "rc = client.main(sys.argv[:1], fv)\n"
    "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', "
    "'tf_keras') or m.startswith(('as_introvae_tf.data', 'as_introvae_tf.visualize', "
    "'as_introvae_tf.train', 'as_introvae_tf.methods')))\n"
    "print(rc, bad)\n"
  )
  for name, answer in answers.items():
    with _RawHTTP(lambda body, answer=answer: answer) as server:
      out = tmp_path / f"{name}.png"
      run = subprocess.run(
        [sys.executable, "-c", code, f"--url={server.url}", "--model=m", "--num=2", f"--out={out}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
      )
    assert run.stdout.strip().splitlines()[-1] == "0 []", (name, run.stdout, run.stderr)
    assert out.stat().st_size > 0


def _export_cli(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import export as export_cli  # pylint: disable=import-outside-toplevel

  fv = flags.FlagValues()
  export_cli.define_flags(fv)
  fv(["export"] + argv)
  return export_cli.main(["export"], fv)


@pytest.mark.parametrize("failure", ["export_dir_under_a_file", "read_only", "disk_full"])
def test_export_io_failures_give_one_line_and_leave_no_temporary_folder(
  small_export, failure, tmp_path, monkeypatch, capsys
):
  import errno  # pylint: disable=import-outside-toplevel

  result, _ = small_export
  workdir = os.path.dirname(result.model_card["checkpoint"]).rsplit(os.sep, 1)[0]
  export_dir = tmp_path / "exports" / "fm"
  if failure == "export_dir_under_a_file":
    (tmp_path / "exports").write_text("a file, not a folder")
    needle = "Not a directory"
  elif failure == "read_only":  # as root chmod does not stop writes: the OS error is injected
    real = os.makedirs

    def read_only(path, *args, **kwargs):
      if ".tmp-" in str(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))
      return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", read_only)
    needle = "Read-only file system"
  else:

    class FullDisk:
      def write_out(self, filepath, **kwargs):
        del kwargs
        os.makedirs(os.path.join(filepath, "variables"))  # a half-written export
        raise OSError(errno.ENOSPC, "No space left on device", filepath)

    monkeypatch.setattr(export_lib, "build_archive", lambda functions: FullDisk())
    needle = "No space left on device"
  rc = _export_cli([f"--workdir={workdir}", f"--export_dir={export_dir}", "--format=saved_model"])
  err = capsys.readouterr().err
  assert rc == 1, err
  assert err.startswith("error: ") and needle in err and "Traceback" not in err, err
  assert len(err.strip().splitlines()) == 1, err
  if os.path.isdir(export_dir):
    assert os.listdir(export_dir) == []  # no hidden .tmp-* folder, no version


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
