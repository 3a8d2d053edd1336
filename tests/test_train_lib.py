"""End to end: the real training entry point on tiny real-data runs, resume, bad flags."""

import glob
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import hparams
from as_introvae_tf import methods
from as_introvae_tf import run as run_lib
from as_introvae_tf import train_lib

import harness


def test_fashion_mnist_run_writes_checkpoints_tensorboard_and_samples_then_resumes(
  tmp_path, monkeypatch
):
  written = []
  original = train_lib.write_pngs

  def spy(workdir, pictures):
    paths = original(workdir, pictures)
    written.append(sorted(paths))
    return paths

  monkeypatch.setattr(train_lib, "write_pngs", spy)
  config = harness.image_config(tmp_path)
  result = train_lib.train_and_evaluate(config)
  # samples.png / reconstructions.png at steps 2 and 4 while training, then the final ones
  assert written == [["real_vs_reconstruction", "samples"]] * 3
  pairs = tf.io.decode_png(tf.io.read_file(str(tmp_path / "reconstructions.png"))).numpy()
  assert pairs.shape == (2 * 4 * 28, 8 * 28, 1)  # 4 rows of 8 real images, each + its row
  _check_hparams(tmp_path, config)
  assert result["step"] == 4
  assert all(np.isfinite(v) for v in result["metrics"].values())
  assert {"as_distance", "c", "exp_elbo_fake", "kl_fake"} <= set(result["metrics"])
  ckpts = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints"))
  assert ckpts.model_checkpoint_path.endswith("ckpt-4")
  assert [os.path.basename(p) for p in ckpts.all_model_checkpoint_paths] == ["ckpt-2", "ckpt-4"]
  tags = harness.scalar_tags(str(tmp_path / "tensorboard" / "train"))
  assert {
    "train/rec",
    "train/kl_real",
    "train/as_distance",
    "train/c",
    "images/samples",
    "images/reconstruction",
    "images/real",
  } <= tags
  image = tf.io.decode_png(tf.io.read_file(result["samples_png"])).numpy()
  assert image.shape == (8 * 28, 8 * 28, 1)
  assert os.path.exists(tmp_path / "config.json")

  # Same command again: nothing to do, it does not start over; a longer budget would restore
  # step 4. (Its training on, bit for bit like an uninterrupted run, is
  # test_resumed_run_equals_uninterrupted_run's, on 2-D data: another trace here, 10 CPU s.)
  again = train_lib.train_and_evaluate(config)
  assert again["step"] == 4
  run = run_lib.build_run(config.replace(train_steps=6))
  assert int(run.model.step.numpy()) == 4


def test_resume_with_another_architecture_is_refused(image_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(image_run, workdir)  # a tiny Fashion-MNIST VAE with z_dim 4 (conftest.py)
  config = config_lib.load_config(str(workdir)).replace(workdir=str(workdir), train_steps=6)
  with pytest.raises(config_lib.ConfigError, match="--z_dim=4 .now 6."):
    train_lib.train_and_evaluate(config.replace(z_dim=6))


@pytest.mark.parametrize(
  "method",
  [n for n, c in methods.all_methods().items() if c.hparams_class is hparams.LossHParams],
)
def test_two_d_run_every_method(tmp_path, method):
  config = config_lib.ExperimentConfig(
    method=method,
    dataset="8gaussians",
    workdir=str(tmp_path),
    z_dim=2,
    num_hidden=16,
    num_layers=1,
    batch_size=64,
    train_steps=4,
    num_vae=2 if method != "vae" else 0,
    log_every_steps=2,
    checkpoint_every_steps=2,
    image_every_steps=4,
    beta_kl=0.3,
    beta_rec=0.2,
    beta_neg=0.9,
    margin=2.0,
    as_kernel="product",
    ema_decay=0.0,
    verbose="0",
  )
  result = train_lib.train_and_evaluate(config)
  assert result["step"] == 4
  assert all(np.isfinite(v) for v in result["metrics"].values())
  assert os.path.getsize(result["samples_png"]) > 1000


def test_image_size_without_a_channel_table_names_the_flag(tmp_path):
  config = harness.image_config(tmp_path, filters=None, image_size=40)
  with pytest.raises(config_lib.ConfigError, match="--image_size"):
    run_lib.build_run(config)


def test_command_line_stops_before_any_work_on_a_bad_flag(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "as_introvae_tf.train",
      "--flagfile=configs/quickstart.flags",
      f"--workdir={tmp_path}",
      "--batch_size=0",
    ],
    cwd=harness.ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 1
  assert "--batch_size must be a positive integer" in proc.stderr
  assert not os.path.exists(tmp_path / "checkpoints")


def test_command_line_rejects_a_missing_flagfile(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "as_introvae_tf.train",
      "--flagfile=configs/nope.flags",
      f"--workdir={tmp_path}",
    ],
    cwd=harness.ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode != 0
  assert "nope.flags" in proc.stderr


def test_resumed_run_equals_uninterrupted_run(tmp_path):
  # The interruption is simulated by a first segment with train_steps=2. AS-IntroVAE's c(i)
  # depends on T = train_steps from the first iteration on (--anneal_origin=start), so this
  # test counts from the warm-up's end, where c = 0 for the first segment's one step.
  straight = harness.two_d_config(tmp_path / "straight", train_steps=6, anneal_origin="warmup_end")
  train_lib.train_and_evaluate(straight)
  resumed = harness.two_d_config(tmp_path / "resumed", train_steps=2, anneal_origin="warmup_end")
  train_lib.train_and_evaluate(resumed)
  train_lib.train_and_evaluate(resumed.replace(train_steps=6))
  a = run_lib.build_run(straight).model
  b = run_lib.build_run(resumed.replace(train_steps=6)).model
  assert int(a.step.numpy()) == int(b.step.numpy()) == 6
  for va, vb in zip(
    a.encoder.weights + a.decoder.weights + a.encoder_optimizer.variables,
    b.encoder.weights + b.decoder.weights + b.encoder_optimizer.variables,
  ):
    np.testing.assert_array_equal(va.numpy(), vb.numpy())


def test_nan_stops_with_step_and_terms_and_keeps_the_last_good_checkpoint(run_copy):
  good = harness.two_d_config(run_copy)  # trained to step 4 (trained_2d)
  before = run_lib.build_run(good)
  weights = [v.numpy() for v in before.model.decoder.weights]
  with pytest.raises(train_lib.TrainingDivergedError) as info:
    train_lib.train_and_evaluate(good.replace(train_steps=40, lr=1e30))
  message = str(info.value)
  assert "non-finite values (NaN/inf) at step" in message
  assert "--beta_neg" in message and "ckpt-4" in message
  step = int(message.split("at step ")[1].split(" ")[0])
  assert 4 <= step < 40
  assert info.value.step == step and info.value.terms  # for tools (reproduce_2d's record)
  assert all(term in message for term in info.value.terms)
  ckpts = tf.train.get_checkpoint_state(str(run_copy / "checkpoints"))
  assert ckpts.model_checkpoint_path.endswith("ckpt-4")
  after = run_lib.build_run(good)
  for a, b in zip(weights, after.model.decoder.weights):
    np.testing.assert_array_equal(a, b.numpy())


def test_unwritable_workdir_is_named_before_any_work(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(config_lib.ConfigError, match="is not writable"):
    train_lib.train_and_evaluate(harness.two_d_config(blocker / "run"))


def test_failed_checkpoint_write_says_so_and_keeps_the_previous_one(run_copy, monkeypatch):
  config = harness.two_d_config(run_copy)  # trained to step 4 (trained_2d)

  def full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
  with pytest.raises(train_lib.CheckpointWriteError, match="No space left.*ckpt-4"):
    train_lib.train_and_evaluate(config.replace(train_steps=6))
  monkeypatch.undo()
  assert int(run_lib.build_run(config).model.step.numpy()) == 4


def _train_command(workdir, steps):
  return [
    sys.executable,
    "-m",
    "as_introvae_tf.train",
    "--method=soft_introvae",
    "--dataset=8gaussians",
    f"--workdir={workdir}",
    "--z_dim=2",
    "--num_hidden=32",
    "--num_layers=1",
    "--batch_size=64",
    f"--train_steps={steps}",
    "--num_vae=5",
    "--beta_kl=0.3",
    "--beta_rec=0.2",
    "--beta_neg=0.9",
    "--ema_decay=0.99",
    "--log_every_steps=5",
    "--checkpoint_every_steps=5",
    "--keep_checkpoints=100",
    "--image_every_steps=1000",
    "--verbose=2",
  ]


def test_sigkill_at_any_moment_then_resume_reaches_the_end_with_intact_checkpoints(tmp_path):
  """Kill a real training process twice (at random moments after a new checkpoint, mid-step or
  mid-write), resume with the same flags, and check every checkpoint. (Each killed process is
  a new TensorFlow start-up and trace: two kills keep the suite's time.)"""
  workdir = tmp_path / "run"
  steps = 400
  rng = np.random.default_rng(0)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  reached = []
  for _ in range(2):
    before = harness.latest_step(workdir)
    proc = subprocess.Popen(
      _train_command(workdir, steps),
      cwd=harness.ROOT,
      env=env,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while harness.latest_step(workdir) <= before and proc.poll() is None and time.time() < deadline:
      time.sleep(0.1)  # wait for a new checkpoint: the run is really training
    time.sleep(rng.uniform(0.0, 1.5))  # then kill mid-step or mid-write (every 5 steps)
    proc.kill()  # SIGKILL
    proc.wait()
    reached.append(harness.latest_step(workdir))
  assert 0 < reached[0] < reached[-1] < steps, reached  # progress survived every kill
  # The same command's flags once more, in this process (a third TensorFlow start-up would add
  # nothing: the command line's last line is test_packaging.py's and test_multi_worker.py's).
  config = harness.parse_flags(*_train_command(workdir, steps)[3:]).validate()
  assert harness.train(config)["step"] == steps
  state = tf.train.get_checkpoint_state(str(workdir / "checkpoints"))
  assert state.model_checkpoint_path.endswith(f"ckpt-{steps}")
  config = config_lib.load_config(str(workdir))
  run = run_lib.build_run(config, restore=False)  # one model, every checkpoint restored in turn
  for path in state.all_model_checkpoint_paths:  # every kept checkpoint restores
    run.checkpoint.restore(path).assert_existing_objects_matched()
    assert int(run.model.step.numpy()) == int(path.rsplit("-", 1)[1])


def _check_hparams(workdir, config):
  """The run's HParams (TensorBoard's HParams plugin) in WORKDIR/tensorboard."""
  from tensorboard.plugins.hparams import plugin_data_pb2

  hparams = None
  for path in glob.glob(str(workdir / "tensorboard" / "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == "_hparams_/session_start_info":
          data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
          hparams = data.session_start_info.hparams
  assert hparams is not None
  assert hparams["method"].string_value == config.method == "as_introvae"
  assert hparams["beta_neg"].number_value == config.beta_neg == 8.0
  assert hparams["as_kernel"].string_value == config.as_kernel
  assert hparams["filters"].string_value == "4"
