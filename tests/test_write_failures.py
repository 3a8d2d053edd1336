"""Fault injection for the files a run writes and reads besides its checkpoints (issue 26):
an error computing a picture is not a write error, the history gains a line exactly for each
segment that saved a checkpoint (config.json written or not), and `load` of a workdir whose
checkpoints lack `example_shape`.

Tiny 2-D runs, trained per test (a few steps each), and one tiny image-folder run shared by
the two `load` tests.
"""

import errno
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import run as run_lib
from as_introvae_tf import train_lib
from as_introvae_tf import train_outputs
from as_introvae_tf import workdir as workdir_lib

FULL = OSError(errno.ENOSPC, "No space left on device")


def _config(workdir, **overrides):
  values = dict(
    method="vae",
    dataset="8gaussians",
    workdir=str(workdir),
    z_dim=2,
    num_hidden=16,
    num_layers=1,
    batch_size=64,
    train_steps=2,
    num_vae=0,
    log_every_steps=2,
    checkpoint_every_steps=2,
    image_every_steps=100,
    ema_decay=0.0,
    verbose="0",
  )
  values.update(overrides)
  return config_lib.ExperimentConfig(**values)


def _no_pictures(model, spec, fixed):
  del model, spec, fixed
  return {"samples": np.zeros([4, 4, 3], np.float32)}


def _train(config, monkeypatch):
  monkeypatch.setattr(train_lib, "render_samples", _no_pictures)  # the scatter plot: slow
  return train_lib.train_and_evaluate(config)


def _fail(monkeypatch, target, name, exception):
  def fail(*args, **kwargs):
    raise exception

  monkeypatch.setattr(target, name, fail)


def _history(workdir):
  path = os.path.join(workdir, workdir_lib.HISTORY_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _steps(workdir):
  return sorted(
    int(n[len("ckpt-") : -len(".index")])
    for n in os.listdir(os.path.join(workdir, "checkpoints"))
    if n.startswith("ckpt-") and n.endswith(".index")
  )


# === TensorBoard pictures: compute errors are not write errors ================================


def test_an_error_computing_the_pictures_propagates_as_itself(tmp_path, monkeypatch):
  """The model failing while the pictures are computed (here its sampler, an OpError like a
  failed write) is raised as itself, not as "cannot write tensorboard/train"."""
  _fail(
    monkeypatch,
    run_lib,
    "sample",
    tf.errors.InvalidArgumentError(None, None, "the decoder failed"),
  )
  config = _config(tmp_path / "run", train_steps=4, image_every_steps=2)
  with pytest.raises(tf.errors.InvalidArgumentError, match="the decoder failed") as info:
    train_lib.train_and_evaluate(config)  # the real render_samples calls run.sample
  assert not isinstance(info.value, train_outputs.OutputWriteError)


def test_a_failed_tensorboard_image_write_is_still_a_write_error(tmp_path, monkeypatch):
  """The narrowed `writing` still names TensorBoard's folder when the image write fails."""
  _fail(monkeypatch, tf.summary, "image", tf.errors.ResourceExhaustedError(None, None, "full"))
  workdir = tmp_path / "run"
  config = _config(workdir, train_steps=4, image_every_steps=2, checkpoint_every_steps=100)
  with pytest.raises(train_outputs.OutputWriteError) as info:
    _train(config, monkeypatch)
  message = str(info.value)
  assert message.startswith(f"cannot write {workdir / 'tensorboard' / 'train'} (full)"), message
  assert "the checkpoint of step 2 is saved" in message
  assert _steps(workdir) == [2]


# === config_history.jsonl: one line per segment that saved a checkpoint =======================


def test_a_failed_config_json_write_still_records_the_segment_that_saved(tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  with monkeypatch.context() as mp:
    _fail(mp, config_lib, "save_config", FULL)
    with pytest.raises(train_outputs.OutputWriteError) as info:
      _train(_config(workdir), mp)
  message = str(info.value)
  assert message.startswith(f"cannot write {workdir / 'config.json'} (No space left"), message
  assert "the checkpoint of step 2 is saved" in message
  assert _steps(workdir) == [2]
  assert not os.path.exists(workdir / "config.json")
  assert [(s["segment"], s["step"]) for s in _history(workdir)] == [(0, 0)]
  # The same command resumes; the next segment gets the next line, config.json is written.
  assert _train(_config(workdir, train_steps=4), monkeypatch)["step"] == 4
  assert [(s["segment"], s["step"]) for s in _history(workdir)] == [(0, 0), (1, 2)]
  assert config_lib.load_config(str(workdir)).train_steps == 4
  assert _steps(workdir) == [2, 4]


def test_config_json_and_history_both_failing_name_both(tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  _fail(monkeypatch, config_lib, "save_config", FULL)
  _fail(monkeypatch, workdir_lib.RunRecord, "append_segment", FULL)
  with pytest.raises(train_outputs.OutputWriteError) as info:
    _train(_config(workdir), monkeypatch)
  message = str(info.value)
  assert len(message.splitlines()) == 1, message
  assert message.startswith(f"cannot write {workdir / 'config.json'}"), message
  assert f"{workdir / workdir_lib.HISTORY_FILE} could not be written either" in message
  assert "the checkpoint of step 2 is saved" in message
  assert _history(workdir) == []


def test_a_segment_that_saved_nothing_gets_no_line(tmp_path, monkeypatch):
  """A resume whose only checkpoint write fails leaves the history as it was."""
  workdir = tmp_path / "run"
  _train(_config(workdir), monkeypatch)
  assert len(_history(workdir)) == 1

  def full_disk(manager, checkpoint_number=None, **kwargs):
    raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

  with monkeypatch.context() as mp:
    mp.setattr(tf.train.CheckpointManager, "save", full_disk)
    with pytest.raises(train_lib.CheckpointWriteError):
      _train(_config(workdir, train_steps=4), mp)
  assert len(_history(workdir)) == 1


# === load() of a workdir whose checkpoints lack `example_shape` ===============================


def _image_folder(root, num=8, size=8):
  from PIL import Image  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  os.makedirs(root)
  for i in range(num):
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(os.path.join(root, f"{i}.png"))
  return str(root)


def _drop_example_shape(workdir):
  """Rewrites the newest checkpoint with a `run_info` without `example_shape` (as checkpoints
  of an older version); returns its prefix."""
  run = run_lib.restore_run(str(workdir), read_data=False)
  info = json.loads(run.run_info.numpy().decode("utf-8"))
  del info["example_shape"]
  run.run_info.assign(json.dumps(info, sort_keys=True))
  run.checkpoint.write(run.restored)
  from as_introvae_tf import checkpoints as checkpoints_lib  # pylint: disable=import-outside-toplevel

  assert "example_shape" not in checkpoints_lib.read_run_info(run.restored)
  return run.restored


@pytest.fixture(scope="module")
def image_run_without_shape(tmp_path_factory):
  """A tiny image-folder run (8x8 RGB, --filters=4,8) whose checkpoint lacks `example_shape`,
  its data folder then removed (and metrics_train.json, which also records the shape); trained
  once for the tests that only read it."""
  tmp_path = tmp_path_factory.mktemp("without_shape")
  folder = _image_folder(tmp_path / "images")
  workdir = tmp_path / "run"
  config = _config(
    workdir,
    dataset=f"folder:{folder}",
    filters=(4, 8),
    batch_size=4,
    z_dim=2,
    image_every_steps=100,
  )
  with pytest.MonkeyPatch.context() as monkeypatch:
    _train(config, monkeypatch)
  prefix = _drop_example_shape(workdir)
  os.rename(folder, folder + ".gone")
  os.remove(workdir / "metrics_train.json")
  return workdir, prefix


def test_load_derives_the_shape_from_the_checkpoint_variables_without_the_data(
  image_run_without_shape,
):
  import as_introvae_tf  # pylint: disable=import-outside-toplevel

  workdir, prefix = image_run_without_shape
  model = as_introvae_tf.load(str(workdir))
  assert model.example_shape == (8, 8, 3)
  assert model.path == prefix
  assert model.sample(3, seed=0).shape == (3, 8, 8, 3)
  assert run_lib.shape_from_variables(prefix, config_lib.load_config(str(workdir))) == (8, 8, 3)


def test_load_without_the_shape_or_the_data_names_the_checkpoint_in_one_line(
  image_run_without_shape, monkeypatch
):
  import as_introvae_tf  # pylint: disable=import-outside-toplevel

  workdir, prefix = image_run_without_shape
  monkeypatch.setattr(run_lib, "shape_from_variables", lambda prefix, config: None)
  with pytest.raises(FileNotFoundError) as info:
    as_introvae_tf.load(str(workdir))
  message = str(info.value)
  assert len(message.splitlines()) == 1, message
  assert message.startswith(f"{prefix} does not record the example shape"), message
  assert "run_info has no example_shape" in message and "Make that data readable" in message
  assert "images.gone" not in message and str(workdir / "config.json") in message
