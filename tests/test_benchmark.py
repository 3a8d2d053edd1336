"""tools/benchmark/ (`python -m tools.benchmark`): the FLOP count, the plain steps (the same losses and updates as the
project's steps), the interleaved comparison on tiny settings, the CPU and thread parsing, and
tiny end-to-end runs (large)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import data
from as_introvae_tf import hparams
from as_introvae_tf import methods
from as_introvae_tf import networks

from tools import benchmark
from tools import machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_graph_flops_counts_the_matmuls_that_run_and_skips_dead_ones():
  w = tf.Variable(tf.ones([32, 16]))
  v = tf.Variable(tf.ones([16, 16]))

  @tf.function
  def f(x):
    tf.matmul(x, tf.ones([32, 1000]))  # its result is unused: pruned, not counted
    y = tf.matmul(x, w)  # 2 * 64 * 32 * 16
    v.assign(tf.matmul(tf.transpose(y), y))  # a variable update: 2 * 16 * 64 * 16
    return tf.reduce_sum(y)

  flops = benchmark.graph_flops(f.get_concrete_function(tf.TensorSpec([64, 32])).graph)
  assert flops["matmul_conv"] == 2 * 64 * 32 * 16 + 2 * 16 * 64 * 16
  assert flops["total"] >= flops["matmul_conv"]
  assert flops["live_ops"] < flops["ops"]


def test_reference_step_trains_the_mlps_with_finite_losses():
  keras.utils.set_random_seed(0)
  hp = dict(beta_rec=0.2, beta_kl=0.3, beta_neg=0.9)
  step, enc, dec = benchmark.build_reference_step(
    tf, keras, networks, hp, batch_size=32, num_hidden=16, num_layers=1
  )
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
    [
      sys.executable,
      "-m",
      "tools.benchmark",
      "--reference_step_only",
      "--tf_defaults=false",
      "--trace=false",
      "--warmup_windows=1",
      "--windows=1",
      "--window_steps=3",
      f"--out={out}",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "| soft_introvae |" in proc.stdout and "| reference" in proc.stdout
  results = json.loads(out.read_text())
  assert results["matmul"]["2x1"]["gflops"] > 0
  rows = results["rows"]
  assert [r["job"]["kind"] for r in rows] == ["train", "reference"]
  for row in rows:
    assert row["steps_per_s"] > 0 and row["peak_rss_mib"] > 100
  # same networks, the same MatMul work (see test_compare_job_times_every_step_interleaved)
  assert rows[0]["flops"]["matmul_conv"] == rows[1]["flops"]["matmul_conv"]
  assert rows[0]["pipeline_examples_per_s"] > 0


# --- The plain steps compute what the project's steps compute --------------------------------


def _project_and_plain(method, kind):
  """The project's model and the plain step on identical networks, with SGD (so that a
  gradient difference shows in the weights), the 2-D AS-IntroVAE config's loss options."""
  batch, z_dim = (32, 2) if kind == "mlp" else (4, 4)
  if kind == "mlp":
    build = lambda: (
      networks.build_mlp_encoder(z_dim=z_dim, num_hidden=16, num_layers=2),
      networks.build_mlp_decoder(z_dim=z_dim, num_hidden=16, num_layers=2),
    )
    shape = (2,)
  else:
    build = lambda: networks.build_networks(
      "image", image_size=8, image_channels=3, z_dim=z_dim, filters=(4, 8)
    )
    shape = (8, 8, 3)
  hp = hparams.LossHParams(
    beta_rec=0.2,
    beta_kl=0.3,
    beta_neg=0.9,
    as_kernel="product",
    as_squash="none",
    as_reduction_encoder="mean",
    as_reduction_decoder="mean",
    as_decoder_kl_squashed=False,
    anneal="linear",
  )
  keras.utils.set_random_seed(0)
  enc, dec = build()
  for w in enc.weights + dec.weights:  # larger weights: rec and fake posteriors that differ
    w.assign(2.0 * w)
  head = enc.get_layer("fc_out" if kind == "mlp" else "fc")
  head.bias.assign(tf.concat([head.bias[:z_dim], tf.fill([z_dim], -4.0)], 0))  # small
  # variances: a large AS-Distance, whose terms then weigh in the losses and the gradients
  model = methods.get(method)(
    enc, dec, example_shape=shape, global_batch_size=batch, hparams=hp, total_steps=10, seed=3
  )
  model.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01))
  model.vae_phase = False
  model.make_train_function(force=True)
  plain_enc, plain_dec = build()
  plain_enc.set_weights(enc.get_weights())
  plain_dec.set_weights(dec.get_weights())
  opt_e, opt_d = keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01)
  opt_e.build(plain_enc.trainable_variables)
  opt_d.build(plain_dec.trainable_variables)
  return model, (plain_enc, plain_dec, opt_e, opt_d), hp, batch, z_dim, shape


@pytest.mark.parametrize(
  "method,kind",
  [
    ("soft_introvae", "mlp"),
    ("as_introvae", "mlp"),
    pytest.param("soft_introvae", "image", marks=pytest.mark.large),
  ],
)
def test_plain_step_gives_the_project_steps_losses_and_updates(method, kind):
  model, (enc, dec, opt_e, opt_d), hp, batch, z_dim, shape = _project_and_plain(method, kind)
  rng = np.random.default_rng(1)
  if kind == "mlp":
    x = data.sample_2d("8gaussians", batch, rng).astype(np.float32)
  else:
    x = rng.uniform(size=(batch, *shape)).astype(np.float32)
  it = iter(tf.data.Dataset.from_tensors(x).repeat())
  noise, project_logs = [], []
  for _ in range(2):  # step 1 has c = 0.5 (linear annealing over 10 steps): KL and AS mixed
    noise.append(tf.stack([model.normal_noise(i) for i in range(6)]))  # the project's noise
    project_logs.append({k: float(v) for k, v in model.train_function(it).items()})
  table = tf.stack(noise)
  step = benchmark.build_plain_step(
    tf,
    enc,
    dec,
    opt_e,
    opt_d,
    dict(beta_rec=hp.beta_rec, beta_kl=hp.beta_kl, beta_neg=hp.beta_neg),
    batch,
    z_dim,
    1.0 / np.prod(shape),
    as_introvae=method == "as_introvae",
    total_steps=10,
    noise=lambda: tf.unstack(tf.gather(table, opt_e.iterations)),
  )
  for logs in project_logs:
    loss_e, loss_d = step(tf.constant(x))
    # the project logs running means over its steps: step 2's value = 2 * mean - step 1's
    if logs is project_logs[1]:
      logs = {k: 2 * v - project_logs[0][k] for k, v in logs.items()}
    np.testing.assert_allclose(loss_e.numpy(), logs["loss_encoder"], rtol=1e-4)
    np.testing.assert_allclose(loss_d.numpy(), logs["loss_decoder"], rtol=1e-4)
  if method == "as_introvae":
    assert project_logs[0]["as_distance"] > 0.02  # the AS-Distance weighs in
  for a, b in zip(
    model.encoder.trainable_weights + model.decoder.trainable_weights,
    enc.trainable_weights + dec.trainable_weights,
  ):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.name)


def test_plain_as_distance_and_its_gradient_equal_the_projects():
  from as_introvae_tf import losses  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(2)
  args = [
    tf.constant(rng.normal(loc=m, scale=s, size=(16, 2)), tf.float32)  # mu, logvar
    for m, s in ((0.0, 1.0), (-2.0, 0.3), (1.0, 1.0), (-2.0, 0.3))
  ]
  values, grads = [], []
  for fn in (
    lambda *a: losses.as_distance(*a, kernel="product", reduction="mean"),
    lambda *a: benchmark.plain_product_as_distance(tf, *a),
  ):
    with tf.GradientTape() as tape:
      tape.watch(args)
      values.append(fn(*args))
    grads.append(tape.gradient(values[-1], args))
  np.testing.assert_allclose(values[1].numpy(), values[0].numpy(), rtol=1e-5)
  assert values[0].numpy() > 0.01
  for ours, plain in zip(*grads):
    np.testing.assert_allclose(plain.numpy(), ours.numpy(), rtol=1e-4, atol=1e-6)


# --- The interleaved comparison --------------------------------------------------------------


@pytest.fixture(scope="module")
def compare_2d():
  """A real comparison job on the 2-D steps at tiny sizes, run in this process (22 CPU s: its
  one user, the job's test, is large)."""
  job = dict(
    kind="compare",
    workload="2d",
    steps=list(benchmark.COMPARE_STEPS["2d"]),
    warmup=1,
    windows=3,
    window_steps=2,
    flops=True,
    tiny=True,
  )
  row = benchmark.run_compare_job(job)
  row["job"] = job
  return row


@pytest.fixture
def compare_row():
  """A comparison row as `run_compare_job` makes it (`jobs.window_stats` of each step's window
  times), from made-up times: what the reports read, without training."""
  from tools.benchmark import jobs  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(3)
  steps = {}
  for i, name in enumerate(benchmark.COMPARE_STEPS["2d"]):
    times = 0.01 * (1 + i) * (1 + 0.1 * rng.random(3))
    steps[name] = dict(
      jobs.window_stats(times, 0.9 * times, 2, 32),
      flops={"matmul_conv": 1e6},
      batch_size=32,
      build_s=1.0,
      final_loss_e=0.5,
      warmup_window_times_s=[0.1],
    )
  job = dict(
    kind="compare",
    workload="2d",
    steps=list(steps),
    warmup=1,
    windows=3,
    window_steps=2,
    flops=True,
    tiny=True,
  )
  return {"steps": steps, "job": job}


# Large (22 CPU s, the compare job's 4 traced steps): a speed tool's job; what its reports
# make of a row is tested fast below from `compare_row`.
@pytest.mark.large
def test_compare_job_times_every_step_interleaved(compare_2d):
  row = compare_2d
  steps = row["steps"]
  assert list(steps) == list(benchmark.COMPARE_STEPS["2d"])  # in the listed order
  flops = {name: step["flops"]["matmul_conv"] for name, step in steps.items()}
  # The AS-Distance adds no MatMul, and the project's (fused) passes do the plain steps'
  # MatMul work exactly: the encoder phase decodes the fakes apart, so its backward pass does
  # not run through the decoder for the fakes' rows.
  assert flops["project:soft_introvae"] == flops["project:as_introvae"]
  assert flops["plain:soft_introvae"] == flops["plain:as_introvae"] > 0
  assert flops["project:soft_introvae"] == flops["plain:soft_introvae"]
  for step in steps.values():
    assert len(step["window_times_s"]) == 3 and len(step["warmup_window_times_s"]) == 1
    assert step["steps_per_s"] > 0 and step["batch_size"] == 32
    assert np.isfinite(step["final_loss_e"])


def test_compare_markdown_reports_each_pair_and_the_as_over_s_ratio(compare_row):
  row, matmul = compare_row, benchmark.run_matmul_job(dict(n=64, reps=2))
  extensions = machine.cpu_extensions(["fpu", "avx2", "fma"])
  described = dict(processor="test CPU", cpu_count=2, extensions=extensions)
  results = dict(machine=described, matmul={"0x0": matmul}, compare=[row], rows=[])
  text = benchmark.markdown(results)
  assert text.startswith("CPU: test CPU, 2 logical CPUs; AVX2 yes, FMA yes, AVX-512 no")
  steps = row["steps"]
  for name in benchmark.COMPARE_STEPS["2d"]:
    assert f"| {benchmark.STEP_NAMES[name]} | 32 | 0x0 | {steps[name]['steps_per_s']:.2f}" in text
  times = {k: v["window_times_s"] for k, v in steps.items()}
  soft = benchmark.paired_ratios(times["project:soft_introvae"], times["plain:soft_introvae"])
  as_s = benchmark.paired_ratios(times["project:soft_introvae"], times["project:as_introvae"])
  assert (
    f"| 2-D S-IntroVAE, project / plain (speed) | {soft[0]:.2f}x ({soft[1]:.2f}-"
    f"{soft[2]:.2f}) | >= 1.1 |"
  ) in text
  assert (
    f"| 2-D AS-IntroVAE / S-IntroVAE, project (time) | {as_s[0]:.2f}x ({as_s[1]:.2f}-"
    f"{as_s[2]:.2f}) | <= 1.15 |"
  ) in text
  assert "CIFAR-10" not in text  # no image job, no image ratio


def test_threads_markdown_compares_each_setting_with_the_first_of_its_round(compare_row):
  row = compare_row
  steps = {k: row["steps"][k] for k in benchmark.THREAD_STEPS}
  faster = {k: dict(v, steps_per_s=2 * v["steps_per_s"]) for k, v in steps.items()}
  rows = [
    dict(job=dict(inter=2, intra=1, round=0), steps=steps),
    dict(job=dict(inter=0, intra=0, round=0), steps=faster),
    dict(job=dict(inter=2, intra=1, round=1), steps=faster),
    dict(job=dict(inter=0, intra=0, round=1), steps=faster),
  ]
  text = "\n".join(benchmark.threads_markdown(dict(threads=rows, matmul={})))
  assert "| 0x0 | 0 |" in text and "| 2.00x | 2.00x |" in text.split("| 0x0 | 0 |")[1]
  assert "| 0x0 | 1.00-2.00x | 1.00-2.00x |" in text  # round 0: 2x, round 1: 1x
  assert "| 2x1 | 1.00-1.00x | 1.00-1.00x |" in text


def test_cpu_extensions_thread_settings_and_paired_ratios():
  ext = machine.cpu_extensions("fpu sse avx2 fma avx512f avx512_bf16".split())
  assert ext == {
    "AVX2": True,
    "FMA": True,
    "AVX-512": True,
    "AVX512-BF16": True,
    "AVX512-FP16": False,
    "AMX": False,
  }
  assert machine.cpu_extensions(["avx2", "amx_tile", "amx_bf16"])["AMX"]
  assert machine.cpu_extensions([]) == {}
  assert machine.describe_cpu("X", ext, 2) == "X (AVX2, FMA, AVX-512, AVX512-BF16; 2 logical CPUs)"
  assert (
    machine.describe_cpu("X", machine.cpu_extensions(["sse"]), 4) == "X (no AVX2; 4 logical CPUs)"
  )
  here = machine.describe_cpu()  # this machine, through py-cpuinfo
  assert here.endswith(f"; {os.cpu_count()} logical CPUs)") and not here.startswith("unknown")
  assert benchmark.parse_threads("2x1") == (2, 1) and benchmark.parse_threads("0X0") == (0, 0)
  for bad in ("2", "2x", "ax1", "2x1x1", "-1x2"):
    with pytest.raises(ValueError):
      benchmark.parse_threads(bad)
  assert benchmark.paired_ratios([1.0, 2.0, 4.0], [2.0, 2.0, 2.0]) == (1.0, 0.5, 2.0)
  assert benchmark.paired_ratios([], []) is None


@pytest.mark.large
def test_tiny_comparison_and_thread_run_end_to_end(tmp_path):
  out = tmp_path / "bench.json"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "tools.benchmark",
      "--tiny",
      "--compare_workloads=2d",
      "--compare_threads=1x1,0x0",
      "--thread_rounds=1",
      "--table=false",
      "--warmup_windows=1",
      "--windows=1",
      "--window_steps=2",
      f"--out={out}",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "\nCPU: " in proc.stdout and "project / plain (speed)" in proc.stdout
  assert "Thread settings" in proc.stdout and "| 0x0 | 0 |" in proc.stdout
  results = json.loads(out.read_text())
  assert [r["job"]["workload"] for r in results["compare"]] == ["2d"]
  threads = results["threads"]
  assert [(r["job"]["inter"], r["job"]["intra"]) for r in threads] == [(1, 1), (0, 0)]
  # each setting was applied in its own process (TF reports 0 for its defaults)
  assert [(r["inter_op_threads"], r["intra_op_threads"]) for r in threads] == [(1, 1), (0, 0)]
  assert set(results["matmul"]) == {"2x1", "1x1", "0x0"}


def test_the_scheduler_runs_a_whole_default_plan_with_stub_jobs(monkeypatch):
  """`scheduler.run` over the default plan (per-method table, reference step, replicas,
  variants, comparison and thread jobs), each job replaced by a stub row: the scheduling code
  itself, which the large end-to-end tests are the only other users of (a local variable that
  shadowed `schedule()` crashed every full run after its comparison jobs)."""
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel

  from tools.benchmark import cli  # pylint: disable=import-outside-toplevel
  from tools.benchmark import scheduler  # pylint: disable=import-outside-toplevel

  fv = flags.FlagValues()
  cli.define_flags(fv)
  fv(["benchmark", "--reference_step", "--replicas=1,2"])
  plan = cli._plan(fv)  # pylint: disable=protected-access
  assert plan["table"] and plan["variants"] and plan["compare_workloads"]
  jobs = []

  def stub(job, timeout):
    jobs.append(dict(job))
    return {"steps_per_s": 1.0, "wall_s": 1.0}

  monkeypatch.setattr(scheduler, "spawn", stub)
  results = {k: [] for k in ("compare", "threads", "rows", "replicas", "variants")}
  results.update(matmul={}, traces={})
  scheduler.run(fv, plan, results, log=lambda message: None)
  kinds = {job["kind"] for job in jobs}
  assert {"train", "reference", "compare"} <= kinds, kinds
  trained = {(j["method"], j["workload"]) for j in jobs if j["kind"] == "train"}
  assert {(m, w) for m in plan["methods"] for w in plan["workloads"]} <= trained
  assert [r["replicas"] for r in jobs if r.get("replicas")] == [1, 2]
  assert {j.get("variant") for j in jobs if j.get("variant")} == set(plan["variants"])
  assert all(j["window_steps"] > 0 for j in jobs if j["kind"] == "train")
  assert len(results["rows"]) >= len(plan["methods"]) and results["variants"]
  for bad, named in (
    ("--replicas=x", "--replicas takes integers"),
    ("--image_methods=foo", "--image_methods: unknown 'foo'"),
  ):
    fv = flags.FlagValues()
    cli.define_flags(fv)
    fv(["benchmark", bad])
    with pytest.raises(app.UsageError, match=named):
      cli._plan(fv)  # pylint: disable=protected-access
