"""tools/benchmark.py: the FLOP count, the reference step, and a tiny end-to-end run (large)."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import networks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("benchmark",
                                               os.path.join(ROOT, "tools", "benchmark.py"))
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


def test_graph_flops_counts_the_matmuls_that_run_and_skips_dead_ones():
  w = tf.Variable(tf.ones([32, 16]))
  v = tf.Variable(tf.ones([16, 16]))

  @tf.function
  def f(x):
    tf.matmul(x, tf.ones([32, 1000]))  # its result is unused: pruned, not counted
    y = tf.matmul(x, w)                 # 2 * 64 * 32 * 16
    v.assign(tf.matmul(tf.transpose(y), y))  # a variable update: 2 * 16 * 64 * 16
    return tf.reduce_sum(y)

  flops = benchmark.graph_flops(f.get_concrete_function(tf.TensorSpec([64, 32])).graph)
  assert flops["matmul_conv"] == 2 * 64 * 32 * 16 + 2 * 16 * 64 * 16
  assert flops["total"] >= flops["matmul_conv"]
  assert flops["live_ops"] < flops["ops"]


def test_reference_step_trains_the_mlps_with_finite_losses():
  keras.utils.set_random_seed(0)
  hp = dict(beta_rec=0.2, beta_kl=0.3, beta_neg=0.9)
  step, enc, dec = benchmark.build_reference_step(tf, keras, networks, hp, batch_size=32,
                                                  num_hidden=16, num_layers=1)
  before = [w.numpy().copy() for w in enc.weights + dec.weights]
  x = tf.random.normal([32, 2])
  for _ in range(2):
    loss_e, loss_d = step(x)
  assert np.isfinite(loss_e.numpy()) and np.isfinite(loss_d.numpy())
  after = [w.numpy() for w in enc.weights + dec.weights]
  assert all(not np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.large
def test_reference_only_run_writes_json_and_a_table(tmp_path):
  out = tmp_path / "bench.json"
  proc = subprocess.run(
      [sys.executable, "tools/benchmark.py", "--reference_step_only", "--tf_defaults=false",
       "--trace=false", "--warmup_windows=1", "--windows=1", "--window_steps=3",
       f"--out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "| soft_introvae |" in proc.stdout and "| reference" in proc.stdout
  results = json.loads(out.read_text())
  assert results["matmul"]["2x1"]["gflops"] > 0
  rows = results["rows"]
  assert [r["job"]["kind"] for r in rows] == ["train", "reference"]
  for row in rows:
    assert row["steps_per_s"] > 0 and row["peak_rss_mib"] > 100
    assert row["flops"]["matmul_conv"] == rows[0]["flops"]["matmul_conv"]  # same networks
  assert rows[0]["pipeline_examples_per_s"] > 0
