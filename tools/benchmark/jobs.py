"""What runs inside a job's subprocess: the thread pools and devices, the job's config, the
training-speed job through `model.fit`, the reference step's job and the matmul bound."""

import os
import time

from . import flops as flops_lib
from . import plain_step
from .settings import MATMUL_N
from .settings import WORKLOADS


def setup_tf(job):
  """Thread pools and logical devices, before TensorFlow runs anything."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  if job.get("inter"):
    tf.config.threading.set_inter_op_parallelism_threads(job["inter"])
  if job.get("intra"):
    tf.config.threading.set_intra_op_parallelism_threads(job["intra"])
  replicas = job.get("replicas")
  if replicas:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * replicas
    )
  return tf


def job_config(job):
  """The method's own flagfile for the workload's dataset, resized to the workload."""
  from as_introvae_tf import config as config_lib  # pylint: disable=import-outside-toplevel

  workload = WORKLOADS[job["workload"]]
  config = config_lib.from_flagfile(f"configs/{workload['config']}_{job['method']}.flags")
  changes = {
    k: workload[k]
    for k in (
      "dataset",
      "batch_size",
      "z_dim",
      "num_hidden",
      "num_layers",
      "filters",
      "image_size",
      "channels",
    )
    if k in workload
  }
  return config.replace(
    workdir="/tmp/as_introvae_benchmark_unused",
    strategy="default",
    train_steps=10**6,
    num_vae=0,
    jit_compile=bool(job.get("jit")),
    steps_per_execution=job.get("spe", 1),
    mixed_precision=job.get("mixed_precision", "none"),
    **changes,
  )


def _apply_variant(variant):
  """Switches parts of the project's step off (in this subprocess only)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import losses  # pylint: disable=import-outside-toplevel
  from as_introvae_tf.methods import base  # pylint: disable=import-outside-toplevel

  parts = {"lean": ("no_trackers", "no_nan_check", "no_grad_norms", "closed_form_kl")}.get(
    variant, (variant,)
  )
  if "no_trackers" in parts:
    base.IntrospectiveVAE._report = lambda self, trackers, values: dict(values)
  if "no_nan_check" in parts:
    base.IntrospectiveVAE._record_non_finite = lambda self, step, logs: None
  if "no_grad_norms" in parts:

    def apply(self, optimizer, grads, variables, name, loss=None):
      del name, loss
      optimizer.apply_gradients(zip(grads, variables))

    base.IntrospectiveVAE.apply_update = apply
  if "closed_form_kl" in parts:

    def kl(mu, logvar):
      return -0.5 * tf.reduce_sum(1.0 + logvar - tf.square(mu) - tf.exp(logvar), axis=-1)

    losses.gaussian_kl = kl


def _pipeline_rate(ds, batches, batch_size):
  """Examples/s of the input pipeline alone (Python iteration, after a warm-up)."""
  it = iter(ds)
  for _ in range(max(3, batches // 10)):
    next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  elapsed = time.perf_counter() - start
  del it
  return batches * batch_size / elapsed


def window_stats(times, cpu_times, window_steps, batch_size):
  """Median window -> steps/s etc.; `cpu_times`: process CPU seconds (all threads) per window."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  times = np.asarray(times, dtype=np.float64)
  med = float(np.median(times))
  return {
    "steps_per_s": window_steps / med,
    "examples_per_s": window_steps * batch_size / med,
    "step_ms": 1e3 * med / window_steps,
    "cpu_ms_per_step": 1e3 * float(np.median(cpu_times)) / window_steps,
    "steps_per_s_min": window_steps / float(times.max()),
    "steps_per_s_max": window_steps / float(times.min()),
    "window_times_s": [round(float(t), 4) for t in times],
  }


def _timer_callback(keras, times, cpu_times):
  class WindowTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      self.start, self.cpu = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
      times.append(time.perf_counter() - self.start)
      cpu_times.append(time.process_time() - self.cpu)

  return WindowTimer()


def run_train_job(job):
  tf = setup_tf(job)
  import keras  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import run as run_lib  # pylint: disable=import-outside-toplevel

  if job.get("variant"):
    _apply_variant(job["variant"])
  config = job_config(job)
  spec = data.parse_dataset(config.dataset, config.image_size, config.channels)
  replicas = job.get("replicas")
  if replicas:
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
  else:
    strategy = tf.distribute.get_strategy()
  keras.utils.set_random_seed(config.seed)
  t0 = time.perf_counter()
  model = run_lib.build_model(config, spec, strategy)
  model.vae_phase = False
  model.make_train_function(force=True)
  result = {"build_s": time.perf_counter() - t0}
  ds = data.build_dataset(spec, "train", config.batch_size, seed=config.seed)
  if job.get("flops"):
    t0 = time.perf_counter()
    result["flops"] = flops_lib.step_flops(tf, model, [config.batch_size, *spec.shape])
    result["flops_trace_s"] = time.perf_counter() - t0
  if job.get("pipeline_batches"):
    result["pipeline_examples_per_s"] = _pipeline_rate(
      ds, job["pipeline_batches"], config.batch_size
    )
  times, cpu_times = [], []
  warmup, windows, window_steps = job["warmup"], job["windows"], job["window_steps"]
  t0 = time.perf_counter()
  model.fit(
    ds,
    epochs=warmup + windows,
    steps_per_epoch=window_steps,
    verbose=0,
    callbacks=[_timer_callback(keras, times, cpu_times)],
    shuffle=False,
  )
  result["fit_s"] = time.perf_counter() - t0
  result["warmup_window_times_s"] = [round(t, 4) for t in times[:warmup]]
  result.update(window_stats(times[warmup:], cpu_times[warmup:], window_steps, config.batch_size))
  if job.get("trace_steps"):
    n = job["trace_steps"]
    result["trace"] = flops_lib.profile_op_types(
      tf,
      lambda: model.fit(ds, epochs=1, steps_per_epoch=n, verbose=0, shuffle=False),
      n,
      os.path.join("/tmp", f"as_introvae_benchmark_trace_{os.getpid()}"),
    )
  result["non_finite"] = model.non_finite_report()
  return result


def run_reference_job(job):
  tf = setup_tf(job)
  import keras  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import networks  # pylint: disable=import-outside-toplevel

  config = job_config(dict(job, method="soft_introvae", workload="2d"))
  hp = {k: getattr(config, k) for k in ("beta_rec", "beta_kl", "beta_neg")}
  keras.utils.set_random_seed(0)
  batch = config.batch_size
  step, _, _ = plain_step.build_reference_step(tf, keras, networks, hp, batch)
  spec = data.parse_dataset(config.dataset, None, None)
  ds = data.build_dataset(spec, "train", batch, seed=0)
  it = iter(ds)
  result = {
    "flops": flops_lib.graph_flops(
      step.get_concrete_function(tf.TensorSpec([batch, 2], tf.float32)).graph
    )
  }

  def run(n):
    out = None
    for _ in range(n):
      out = step(next(it))
    return float(out[0].numpy()) if out is not None else None  # waits for the last step

  times, cpu_times = [], []
  for _ in range(job["warmup"] + job["windows"]):
    start, cpu = time.perf_counter(), time.process_time()
    loss = run(job["window_steps"])
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu)
  result["warmup_window_times_s"] = [round(t, 4) for t in times[: job["warmup"]]]
  result.update(
    window_stats(times[job["warmup"] :], cpu_times[job["warmup"] :], job["window_steps"], batch)
  )
  result["final_loss_e"] = loss
  if job.get("trace_steps"):
    n = job["trace_steps"]
    result["trace"] = flops_lib.profile_op_types(
      tf, lambda: run(n), n, os.path.join("/tmp", f"as_introvae_benchmark_trace_{os.getpid()}")
    )
  return result


def run_matmul_job(job):
  """float32 NxN matmul throughput (GFLOP/s) in this thread setting: one matmul, and two
  independent ones in one tf.function (what the inter-op pool can overlap)."""
  tf = setup_tf(job)
  import numpy as np  # pylint: disable=import-outside-toplevel

  n = job.get("n", MATMUL_N)
  a, b, c, d = (tf.random.normal([n, n], seed=k) for k in range(4))
  one = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
  two = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)) + tf.reduce_sum(tf.matmul(c, d)))
  out = {"n": n}
  for name, fn, count in (("one_matmul", one, 1), ("two_matmuls", two, 2)):
    fn().numpy()
    times = []
    for _ in range(job.get("reps", 20)):
      start = time.perf_counter()
      fn().numpy()
      times.append(time.perf_counter() - start)
    # The best call: the capacity of the cores (other processes only ever slow a call down).
    out[f"{name}_gflops"] = count * 2 * n**3 / float(np.min(times)) / 1e9
    out[f"{name}_gflops_median"] = count * 2 * n**3 / float(np.median(times)) / 1e9
  out["gflops"] = max(out["one_matmul_gflops"], out["two_matmuls_gflops"])
  return out
