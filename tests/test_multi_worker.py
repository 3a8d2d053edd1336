"""MultiWorkerMirroredStrategy end to end: 2 real worker processes of the training command.

Two `python -m as_introvae_tf.train --strategy=multi_worker` processes on 127.0.0.1 (TF_CONFIG
with two free ports) train a tiny 2-D S-IntroVAE for a few steps. Checked: both exit 0, both
end with the same weights and optimizer states (the chief's final checkpoint in
WORKDIR/checkpoints and worker 1's scratch checkpoint in WORKDIR/tmp_worker_checkpoints/1 both
restore with `run_lib.build_run` and hold identical tensors), and the shared outputs
(checkpoints, TensorBoard, samples) come from the chief only. About 15-30 s on 2 cores.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import run as run_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6
TIMEOUT_S = 240


def _free_ports(n):
  socks = []
  try:
    for _ in range(n):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind(("127.0.0.1", 0))
      socks.append(s)
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def _command(workdir):
  return [
    sys.executable,
    "-m",
    "as_introvae_tf.train",
    "--strategy=multi_worker",
    "--method=soft_introvae",
    "--dataset=8gaussians",
    f"--workdir={workdir}",
    "--z_dim=2",
    "--num_hidden=16",
    "--num_layers=1",
    "--batch_size=32",
    f"--train_steps={STEPS}",
    "--num_vae=2",
    "--beta_kl=0.3",
    "--beta_rec=0.2",
    "--beta_neg=0.9",
    "--ema_decay=0.9",
    "--log_every_steps=3",
    "--checkpoint_every_steps=3",
    "--keep_checkpoints=5",
    "--image_every_steps=1000",
    "--inter_op_threads=2",
    "--intra_op_threads=1",
    "--verbose=2",
  ]


def _run_workers(workdir, logdir):
  """Starts both workers, waits (TIMEOUT_S); kills both on timeout or error.

  Returns:
    [(pid, returncode, stdout, stderr)] for task 0 (chief) and task 1.
  """
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs, files = [], []
  try:
    for index in range(2):
      env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="2",
        TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
      )
      out = open(logdir / f"worker{index}.out", "w+")
      err = open(logdir / f"worker{index}.err", "w+")
      files.append((out, err))
      # Output to files, not pipes: a full pipe of one worker would block it inside a
      # collective and hang the other.
      procs.append(subprocess.Popen(_command(workdir), cwd=ROOT, env=env, stdout=out, stderr=err))
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline and any(p.poll() is None for p in procs):
      if any(p.poll() not in (None, 0) for p in procs):
        time.sleep(5)  # one failed: give the other a moment to fail too, then stop it
        break
      time.sleep(0.2)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  results = []
  for p, (out, err) in zip(procs, files):
    out.seek(0)
    err.seek(0)
    results.append((p.pid, p.returncode, out.read(), err.read()))
    out.close()
    err.close()
  return results


def _checkpoint_tensors(path):
  reader = tf.train.load_checkpoint(path)
  return {
    key: reader.get_tensor(key)
    for key in reader.get_variable_to_shape_map()
    if not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")
  }


# Large (31 CPU s, two TensorFlow processes): `--strategy=multi_worker` is opt-in; the
# replicated step (global-batch losses, replicas in step, skipping together) is the same
# under MirroredStrategy, which the fast suite runs on two replicas in-process.
@pytest.mark.large
def test_two_workers_train_in_sync_and_only_the_chief_writes_the_shared_outputs(tmp_path):
  workdir = tmp_path / "run"
  logdir = tmp_path / "logs"
  logdir.mkdir()
  start = time.time()
  results = _run_workers(workdir, logdir)
  elapsed = time.time() - start
  for index, (_, code, out, err) in enumerate(results):
    assert code == 0, f"worker {index} exited {code} after {elapsed:.0f} s:\n{err[-3000:]}"
    assert f"Trained to step {STEPS}" in out, out[-2000:]
  chief_pid, worker_pid = results[0][0], results[1][0]

  # Shared outputs: one checkpoint chain, one event file (named with the chief's pid).
  chief_dir = workdir / "checkpoints"
  worker_dir = workdir / "tmp_worker_checkpoints" / "1"
  steps = list(range(3, STEPS + 1, 3))
  expected = {"checkpoint"} | {
    f"ckpt-{s}.{ext}" for s in steps for ext in ("index", "data-00000-of-00001")
  }
  assert set(os.listdir(chief_dir)) == expected
  assert set(os.listdir(worker_dir)) == expected
  assert os.listdir(workdir / "tmp_worker_checkpoints") == ["1"]  # the chief never goes there
  events = os.listdir(workdir / "tensorboard" / "train")
  assert len(events) == 1 and f".{chief_pid}." in events[0], (events, chief_pid)
  worker_events = os.listdir(workdir / "tmp_worker_tensorboard" / "1")
  assert len(worker_events) == 1 and f".{worker_pid}." in worker_events[0]
  assert (workdir / "samples.png").exists() and (workdir / "metrics_train.json").exists()

  # Both final checkpoints restore into the run's model and hold identical tensors.
  chief_state = tf.train.get_checkpoint_state(str(chief_dir))
  worker_state = tf.train.get_checkpoint_state(str(worker_dir))
  assert os.path.dirname(chief_state.model_checkpoint_path) == str(chief_dir)
  chief_path, worker_path = chief_state.model_checkpoint_path, worker_state.model_checkpoint_path
  assert chief_path.endswith(f"ckpt-{STEPS}") and worker_path.endswith(f"ckpt-{STEPS}")
  config = config_lib.load_config(str(workdir)).replace(strategy="default")
  weights = []
  for path in (chief_path, worker_path):
    run = run_lib.build_run(config, restore=False)
    run.checkpoint.restore(path).assert_existing_objects_matched()
    assert int(run.model.step.numpy()) == STEPS
    weights.append(
      [
        v.numpy()
        for v in run.model.encoder.weights
        + run.model.decoder.weights
        + run.model.ema_decoder.weights
      ]
    )
  for a, b in zip(*weights):
    np.testing.assert_array_equal(a, b)
  chief_tensors, worker_tensors = _checkpoint_tensors(chief_path), _checkpoint_tensors(worker_path)
  assert chief_tensors.keys() == worker_tensors.keys()
  assert any("optimizer" in key for key in chief_tensors)  # Adam moments and EMA included
  for key in chief_tensors:
    np.testing.assert_array_equal(chief_tensors[key], worker_tensors[key], err_msg=key)
  # ... and training really moved the weights away from their initial values.
  initial = run_lib.build_run(config, restore=False).model
  assert not np.array_equal(
    initial.decoder.weights[0].numpy(), weights[0][len(initial.encoder.weights)]
  )
