"""Training speed on this machine: the project's steps against plain hand-written steps,
interleaved; steps/s, examples/s, FLOPs, memory, input of every method.

  python tools/benchmark.py --quick                 # the interleaved comparison only
  python tools/benchmark.py                         # comparison + the per-method table
  python tools/benchmark.py --compare_threads=2x1,1x2,0x0 --table=false --compare=false
  python tools/benchmark.py --reference_step_only   # bound + project vs reference step (2-D)
  python tools/benchmark.py --methods=soft_introvae --workloads=2d --variants=lean,jit --trace
  python tools/benchmark.py --methods=soft_introvae --workloads=2d --replicas= \
      --mixed_precision=none,mixed_bfloat16,mixed_float16 --compare_jit --rounds=2

The interleaved comparison (`--compare`, on by default; `--compare_workloads=2d,cifar10`):
the project's step against a plain hand-written `tf.function` step (`build_plain_step`: the
reference's loop written out, closed-form KL, plain autodiff, each batch through each network
separately, no trackers, NaN records or gradient norms; the same networks from
`run_lib.build_networks`, the same optimizers, the same input pipeline, six normal noise
tensors of the same shapes). One process per workload times, in turn:
  2d       project S-IntroVAE, plain S-IntroVAE, project AS-IntroVAE, plain AS-IntroVAE
           (configs/8gaussians_*.flags, batch 512; the plain AS-IntroVAE adds the AS-Distance
           with the 2-D config's options: product kernel, no squash, mean reductions, linear
           annealing c = min(5 i / T, 1), written as a plain expression, `plain_product_as_
           distance`)
  cifar10  project S-IntroVAE, plain S-IntroVAE (configs/cifar10_soft_introvae.flags with the
           reference network 32x32x3, filters 64,128,256, z 128, batch 64)
  --compare_extra adds 2d steps with their speed ratio to the default project step:
           project:as_introvae:xla_off (--as_distance_xla=off: plain TF ops for the AS-
           Distance's pair terms), project:soft_introvae:unfused and project:as_introvae:
           unfused (--fuse_passes=off).
Interleaving: every step is built and traced first; then each ROUND runs one window of W steps
of every step in that order (A B C D A B C D ...), in the same process (same thread pools),
seconds apart, so that drift and outside load hit all steps alike; warm-up rounds are dropped.
Both kinds of step are called the same way, once per step from a Python loop: the project's as
`model.train_function(iterator)` (what `model.fit` calls per step with steps_per_execution 1;
fit's callbacks are not timed), the plain one as `step(next(iterator))`; each window ends by
reading a loss back (the steps are finished). Reported per step: steps/s (median window, min-
max), ms/step, CPU ms/step, MatMul+Conv GFLOP, % of the matmul bound; and the ratios taken
ROUND BY ROUND (the two windows of a round, seconds apart), median and min-max: project /
plain speed per pair (targets: 2-D S-IntroVAE >= 1.1, image >= 1.0) and the time of AS-IntroVAE
over S-IntroVAE (project: target <= 1.15; plain for comparison). Schedules (warm-up rounds,
timed rounds, steps per window): 2d 3 + 10 x 50 (--quick 1 + 5 x 20), cifar10 1 + 3 x 3
(--quick 1 + 2 x 1: one image step takes seconds on a CPU); --warmup_windows, --windows and
--window_steps override them. The CPU model and its vector extensions (AVX2, FMA, AVX-512,
AVX512-BF16, AVX512-FP16, AMX: the CPU flags, `tools/machine.py`) head the output.

Threads (`--compare_threads=2x1,1x2,0x0`, `--thread_rounds=2`): the 2-D project and plain
S-IntroVAE steps as above, once per thread setting (inter-op x intra-op; 0 = TF default), each
in a FRESH process (threads are fixed when TF starts), the settings interleaved round by round
(2x1 1x2 0x0 2x1 1x2 0x0); each setting's speed against the FIRST setting's in the same round,
plus its matmul throughput.

Workloads of the per-method table (`--table`; each method's own
`configs/<dataset>_<method>.flags` hyper-parameters, with these
sizes; `num_vae` is skipped: every timed step is an introspective step):
  2d             8 Gaussians, MLP 3x256, z 2, batch 512       (configs/8gaussians_*.flags)
  fashion_mnist  28x28x1, filters (64,128), z 32, batch 128   (configs/fashion_mnist_*.flags)
  cifar10        32x32x3, filters (64,128,256), z 128, batch 64 (configs/cifar10_*.flags)

Every configuration runs in a FRESH subprocess (`--job`), so its thread settings (set before
TensorFlow executes anything) and logical devices apply and its peak memory is its own. In
each one:
  * training speed: `model.fit(data.build_dataset(...), steps_per_epoch=W, epochs=K, verbose=0)`
    on the real input pipeline; each "epoch" is a timed window of W steps (a callback takes the
    time at the window's start and end, after Keras has fetched the window's logs, so the
    steps are finished). The first windows are warm-up (tracing, grappler, tf.data autotuning)
    and are dropped; steps/s = W / median(window time) (min-max over the timed windows).
    "CPU ms/step" is the process's CPU time (all threads) per step in the same windows: on a
    machine shared with other jobs the wall time depends on how many cores were free, the CPU
    time much less, so compare CPU ms/step between rows taken under different load.
  * input pipeline alone: the same dataset iterated in Python (no training), examples/s, and
    its ratio to what training consumes (it should be >= 5x: the step never waits for data).
  * FLOPs of one step: the train step traced as a graph (`tf.function(model.train_step)` on the
    workload's input shape); the ops that run (those that feed an output or a variable update:
    TF's runtime prunes the rest, e.g. the decoder's weight gradients in the encoder phase) are
    summed with TensorFlow's registered FLOP statistics (`ops.get_stats_for_node_def(...,
    "flops")`, the counts behind `tf.compat.v1.profiler`'s `float_operation`: MatMul 2*m*k*n,
    Conv2D and its gradients 2*K*K*Cin*Cout*Hout*Wout*B, element-wise ops 1 per element).
    "GFLOP" in the table is MatMul+Conv only (> 99% of the registered count). Element-wise
    work is not in it: AS-IntroVAE's batch-level AS-Distance (O(B^2 D) element-wise ops, no
    MatMul) costs as much CPU time as all the 2-D MatMuls, so its "% of bound" is low.
  * peak memory: `resource.getrusage(RUSAGE_SELF).ru_maxrss` of that subprocess (the whole
    process: TensorFlow itself is about 0.5-0.7 GB of it).
The bound: a `matmul` job times a float32 1024x1024 matmul, and two independent ones in one
`tf.function` (what 2 inter-op threads can overlap), in the same thread settings, 20 calls
each; the best call of the faster one is the machine's matmul throughput T (GFLOP/s) for
those settings (other processes can only slow a call down). A step's bound is
T / (its MatMul+Conv GFLOP) steps/s, and "% bound" = measured / bound.

Also:
  * `--replicas=1,2,4`: the 2-D S-IntroVAE under MirroredStrategy over that many LOGICAL CPU
    devices (configured before TF starts, in each subprocess). They share the 2 cores: this
    measures the strategy's overhead, not a speed-up.
  * `--tf_defaults`: the 2-D S-IntroVAE again with TensorFlow's default thread pools.
  * `--reference_step`: the plain 2-D S-IntroVAE step (`build_reference_step`:
    `build_plain_step` on fresh MLPs from `networks`, two Keras Adams) fed by the same 2-D
    pipeline in a Python loop, in its own process: the old reference row (the interleaved
    comparison above is the better measure).
  * `--variants`: the project's 2-D S-IntroVAE with parts switched off (patched in the
    subprocess only): no_trackers (train_step returns its values without keras Mean
    trackers), no_nan_check (no per-step NaN/inf bookkeeping), no_grad_norms, closed_form_kl
    (the closed form instead of TFP's kl_divergence), lean (all four), spe10
    (steps_per_execution=10), jit (jit_compile=True).
  * `--trace`: a `tf.profiler.experimental` trace of a few 2-D steps (the project's
    S-IntroVAE and AS-IntroVAE, when in --methods, and the reference step), self time per op
    type (TF's framework_op_stats tool), MatMul share.
  * `--mixed_precision=none,mixed_bfloat16,mixed_float16` and `--compare_jit`: every row of
    the main table is timed for each precision policy and, with `--compare_jit`, without and
    with XLA; `--rounds=N` repeats that grid N times, interleaved (policy by policy, then the
    next round), so that each configuration is compared with the float32 row of its own round
    under about the same outside load ("vs float32" table). GFLOP and "% of bound" count the
    same MatMul/Conv FLOPs for every policy against the FLOAT32 matmul bound.

`--quick`: the matmul bound and the interleaved comparison (2d and cifar10, the quick
schedules above), no per-method table (`--table` adds it: every method on the 2-D workload
with 1 warm-up + 3 timed windows of 20 steps, the image workloads for AS-IntroVAE only with 1
warm-up + 1 timed step, the replicas 1 + 2 x 10 steps, the TF-defaults row and the reference
step; that table alone took 236-248 s on the idle 2-core VM). The full run: the comparison
with the full schedules, then the table: 2-D 4 warm-up + 7 timed windows of 50 steps, images
every method with 1 warm-up + 3 timed windows of 3 steps, replicas 2 + 5 windows of 30 steps,
all variants and the trace.

Timings on a shared machine move with the load: the tables record the 1-minute load average
before each configuration (it includes the benchmark's own previous job) and "other cores",
the average number of cores OTHER processes kept busy during that configuration (/proc/stat
minus the job's own CPU time). Compare wall-clock numbers taken with other cores ~0 only; CPU
ms/step is steadier.

Prints Markdown tables; writes everything as JSON (`--out`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import machine as machine_lib  # noqa: E402  (tools/machine.py)

METHODS = ("vae", "introvae", "soft_introvae", "as_introvae")
WORKLOADS = {
  "2d": dict(
    config="8gaussians",
    dataset="8gaussians",
    batch_size=512,
    z_dim=2,
    num_hidden=256,
    num_layers=3,
    label="2-D MLP 3x256, z 2",
  ),
  "fashion_mnist": dict(
    config="fashion_mnist",
    dataset="fashion_mnist",
    batch_size=128,
    z_dim=32,
    filters=(64, 128),
    image_size=28,
    channels=1,
    label="Fashion-MNIST (64,128), z 32",
  ),
  "cifar10": dict(
    config="cifar10",
    dataset="cifar10",
    batch_size=64,
    z_dim=128,
    filters=(64, 128, 256),
    image_size=32,
    channels=3,
    label="CIFAR-10 (64,128,256), z 128",
  ),
}
# (warm-up windows, timed windows, steps per window, pipeline batches)
SCHEDULE = {
  "full": {"2d": (4, 7, 50, 300), "image": (1, 3, 3, 30), "replicas": (2, 5, 30, 0)},
  "quick": {"2d": (1, 3, 20, 100), "image": (1, 1, 1, 10), "replicas": (1, 2, 10, 0)},
}
# The interleaved comparison: per workload, the steps timed window by window in one process.
COMPARE_STEPS = {
  "2d": (
    "project:soft_introvae",
    "plain:soft_introvae",
    "project:as_introvae",
    "plain:as_introvae",
  ),
  "cifar10": ("project:soft_introvae", "plain:soft_introvae"),
}
# (warm-up rounds, timed rounds, steps per window)
COMPARE_SCHEDULE = {
  "full": {"2d": (3, 10, 50), "cifar10": (1, 3, 3)},
  "quick": {"2d": (1, 5, 20), "cifar10": (1, 2, 1)},
}
# Extra 2-D steps of the comparison (--compare_extra): label -> config changes.
EXTRA_STEPS = {
  "project:as_introvae:xla_off": dict(as_distance_xla="off"),
  "project:soft_introvae:unfused": dict(fuse_passes="off"),
  "project:as_introvae:unfused": dict(fuse_passes="off"),
}
THREAD_STEPS = ("project:soft_introvae", "plain:soft_introvae")
PRECISIONS = ("none", "mixed_bfloat16", "mixed_float16")
VARIANTS = (
  "no_trackers",
  "no_nan_check",
  "no_grad_norms",
  "closed_form_kl",
  "lean",
  "spe10",
  "jit",
)
MATMUL_N = 1024
RESULT_PREFIX = "BENCHMARK_RESULT "

FLAGS = flags.FLAGS


def define_flags():
  """The command-line flags (defined only when run as a script, so tests can import this)."""
  d = flags
  d.DEFINE_boolean("quick", False, "Short run (< 5 min on the 2-core VM): see the module doc.")
  d.DEFINE_boolean(
    "compare",
    True,
    "The interleaved comparison of the project's steps with "
    "plain hand-written ones (see the module doc).",
  )
  d.DEFINE_list(
    "compare_workloads",
    list(COMPARE_STEPS),
    f"Workloads of the comparison: {', '.join(COMPARE_STEPS)}.",
  )
  d.DEFINE_list(
    "compare_extra",
    [],
    "2-D comparison: more steps timed interleaved with the "
    f"others, with their ratio to the default project step: {', '.join(EXTRA_STEPS)}.",
  )
  d.DEFINE_list(
    "compare_threads",
    [],
    "Thread settings (inter x intra, 0 = TF default) "
    "compared interleaved on the 2-D S-IntroVAE steps, e.g. 2x1,1x2,0x0; the "
    "first is the baseline. Empty: no thread comparison.",
  )
  d.DEFINE_integer(
    "thread_rounds",
    2,
    "Rounds of --compare_threads (each round runs every "
    "setting once, in the listed order, each in a fresh process).",
  )
  d.DEFINE_boolean(
    "table",
    None,
    "The per-method table through model.fit (and replicas, TF "
    "defaults, reference row, variants, trace) (default: on; off with --quick).",
  )
  d.DEFINE_boolean(
    "tiny",
    False,
    "Tests only: the comparison at tiny sizes (meaningless numbers, seconds per job).",
  )
  d.DEFINE_list("methods", list(METHODS), "Methods timed on the 2-D workload.")
  d.DEFINE_list(
    "image_methods",
    None,
    "Methods timed on the image workloads (default: --methods; with --quick: as_introvae only).",
  )
  d.DEFINE_list("workloads", list(WORKLOADS), "Workloads: 2d, fashion_mnist, cifar10.")
  d.DEFINE_list(
    "replicas",
    ["1", "2", "4"],
    "MirroredStrategy over this many logical CPU devices (2-D S-IntroVAE); empty to skip.",
  )
  d.DEFINE_integer("inter_op_threads", 2, "TF inter-op threads (0 = TF default).")
  d.DEFINE_integer("intra_op_threads", 1, "TF intra-op threads (0 = TF default).")
  d.DEFINE_boolean(
    "tf_defaults", True, "Also time the 2-D S-IntroVAE with TensorFlow's default thread pools."
  )
  d.DEFINE_boolean("jit_compile", False, "XLA-compile the train step (rows without a strategy).")
  d.DEFINE_list(
    "mixed_precision",
    ["none"],
    "Precision policies timed for every row: none, "
    "mixed_bfloat16, mixed_float16 (--mixed_precision of the training command).",
  )
  d.DEFINE_boolean("compare_jit", False, "Time every row without and with --jit_compile.")
  d.DEFINE_integer(
    "rounds",
    1,
    "Repeat the grid of precisions (x XLA) this many times, "
    "interleaved, to compare them under the same outside load.",
  )
  d.DEFINE_integer("steps_per_execution", 1, "Keras steps_per_execution.")
  d.DEFINE_boolean(
    "reference_step", True, "Also time the minimal plain tf.function S-IntroVAE step (2-D)."
  )
  d.DEFINE_boolean(
    "reference_step_only",
    False,
    "Time only the matmul bound, the reference step and the project's 2-D S-IntroVAE.",
  )
  d.DEFINE_list(
    "variants",
    None,
    f"Ablations of the 2-D S-IntroVAE step: {', '.join(VARIANTS)}"
    " (default: all; none with --quick).",
  )
  d.DEFINE_boolean(
    "trace",
    None,
    "Profile a few 2-D S-IntroVAE steps (project and "
    "reference): time per op type (default: on; off with --quick).",
  )
  d.DEFINE_integer("windows", None, "Timed windows (overrides the schedule).")
  d.DEFINE_integer("window_steps", None, "Steps per window (overrides the schedule).")
  d.DEFINE_integer("warmup_windows", None, "Warm-up windows (overrides the schedule).")
  d.DEFINE_string("out", os.path.join(ROOT, "runs", "benchmark.json"), "JSON output.")
  d.DEFINE_integer("job_timeout_s", 900, "Time limit of one configuration's subprocess.")
  d.DEFINE_string("job", None, "Internal: run one configuration (JSON), print its result.")


# =============================================================================================
# Inside a job subprocess
# =============================================================================================


def _setup_tf(job):
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


def _job_config(job):
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


def _live_ops(graph):
  """Ops that run: ancestors of the outputs, control outputs and stateful ops."""
  roots = [t.op for t in graph.outputs] + list(getattr(graph, "control_outputs", []))
  roots += [op for op in graph.get_operations() if op._is_stateful]  # pylint: disable=protected-access
  seen, stack = set(), list(roots)
  while stack:
    op = stack.pop()
    if op.name in seen:
      continue
    seen.add(op.name)
    stack.extend(t.op for t in op.inputs)
    stack.extend(op.control_inputs)
  return [op for op in graph.get_operations() if op.name in seen]


def graph_flops(graph):
  """{"matmul_conv": FLOPs of MatMul/Conv ops that run, "total": all registered FLOPs,
  "ops": op count of the graph, "live_ops": ops that run}."""
  from tensorflow.python.framework import ops as tf_ops  # pylint: disable=import-outside-toplevel

  live = _live_ops(graph)
  total = heavy = 0
  for op in live:
    try:
      value = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value
    except (ValueError, KeyError, TypeError):
      value = None  # no registered statistics or an unknown shape
    if value:
      total += int(value)
      if "MatMul" in op.type or op.type.startswith("Conv"):
        heavy += int(value)
  return {
    "matmul_conv": heavy,
    "total": total,
    "ops": len(graph.get_operations()),
    "live_ops": len(live),
  }


def _step_flops(tf, model, batch_shape):
  concrete = tf.function(model.train_step).get_concrete_function(
    tf.TensorSpec(batch_shape, tf.float32)
  )
  return graph_flops(concrete.graph)


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


def _window_stats(times, cpu_times, window_steps, batch_size):
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


def _profile_op_types(tf, run_steps, steps, logdir):
  """Runs `run_steps()` under the TF profiler; self time per op type (ms per step)."""
  import glob  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  from tensorflow.python.profiler.internal import _pywrap_profiler_plugin  # pylint: disable=import-outside-toplevel

  shutil.rmtree(logdir, ignore_errors=True)
  tf.profiler.experimental.start(logdir)
  start = time.perf_counter()
  run_steps()
  wall = time.perf_counter() - start
  tf.profiler.experimental.stop()
  paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
  raw, ok = _pywrap_profiler_plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
  if not ok:
    return {"error": raw.decode(errors="replace")[:300]}
  table = json.loads(raw)[0]
  cols = [c["id"] for c in table["cols"]]
  by_type = {}
  for row in table["rows"]:
    r = dict(zip(cols, (c.get("v") for c in row["c"])))
    if r["type"] != "IDLE":
      by_type[r["type"]] = by_type.get(r["type"], 0.0) + r["total_self_time"]  # microseconds
  busy = sum(by_type.values())
  top = sorted(by_type.items(), key=lambda kv: -kv[1])
  matmul = sum(v for k, v in by_type.items() if "MatMul" in k or k.startswith("Conv"))
  return {
    "profiled_wall_ms_per_step": 1e3 * wall / steps,
    "busy_ms_per_step": busy / 1e3 / steps,
    "matmul_share_of_busy": matmul / busy if busy else None,
    "top_op_types_ms_per_step": [(k, round(v / 1e3 / steps, 3)) for k, v in top[:10]],
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
  tf = _setup_tf(job)
  import keras  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import run as run_lib  # pylint: disable=import-outside-toplevel

  if job.get("variant"):
    _apply_variant(job["variant"])
  config = _job_config(job)
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
    result["flops"] = _step_flops(tf, model, [config.batch_size, *spec.shape])
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
  result.update(_window_stats(times[warmup:], cpu_times[warmup:], window_steps, config.batch_size))
  if job.get("trace_steps"):
    n = job["trace_steps"]
    result["trace"] = _profile_op_types(
      tf,
      lambda: model.fit(ds, epochs=1, steps_per_epoch=n, verbose=0, shuffle=False),
      n,
      os.path.join("/tmp", f"as_introvae_benchmark_trace_{os.getpid()}"),
    )
  result["non_finite"] = model.non_finite_report()
  return result


def plain_product_as_distance(tf, mu_a, logvar_a, mu_b, logvar_b):
  """The AS-Distance as a plain autodiff expression: the probability-product kernel
  `k(a, b) = N(mu_a; mu_b, S_a + S_b)` in all D dimensions, mean reductions, no squash (the
  2-D AS-IntroVAE config's options), no log-max shift and no hand-written gradient.

  Args:
    mu_a, logvar_a: float32 `[Na, D]`; mu_b, logvar_b: float32 `[Nb, D]`.

  Returns:
    float32 scalar (density units of z).
  """
  var_a, var_b = tf.exp(logvar_a), tf.exp(logvar_b)

  def block(m1, v1, m2, v2):
    var = v1[:, None, :] + v2[None, :, :]  # [N1, N2, D]
    diff = m1[:, None, :] - m2[None, :, :]
    log_k = -0.5 * tf.reduce_sum(tf.math.log(2.0 * math.pi * var) + tf.square(diff) / var, axis=-1)
    return tf.reduce_mean(tf.exp(log_k))

  return (
    block(mu_a, var_a, mu_a, var_a)
    + block(mu_b, var_b, mu_b, var_b)
    - 2.0 * block(mu_a, var_a, mu_b, var_b)
  )


def build_plain_step(
  tf,
  enc,
  dec,
  opt_e,
  opt_d,
  hp,
  batch_size,
  z_dim,
  scale,
  *,
  as_introvae=False,
  total_steps=1,
  noise=None,
):
  """A plain hand-written `tf.function` S-IntroVAE (or AS-IntroVAE) step on given networks.

  The reference's training loop written out directly (`train_soft_intro_vae*.py`; AS-IntroVAE
  as the 2-D config runs it): closed-form KL, autodiff everywhere, each batch through each
  network separately, no metric trackers, no NaN records, no gradient norms, no distribution
  objects. With `as_introvae` the KL of the rec/fake posteriors inside the adversarial terms
  becomes `c * KL + (1 - c) * AS` (`plain_product_as_distance`, over the batch), with
  `c = min(5 i / T, 1)` (linear annealing from the start; `i` = `opt_e.iterations`,
  `T` = `total_steps`), and the decoder loss gets `s * 0.5 * beta_kl * (1 - c) * AS`.

  Args:
    tf: the tensorflow module. enc: x -> (mu, logvar); dec: z -> x (Keras models, called
      with `training=True`). opt_e, opt_d: built Keras optimizers for them.
    hp: dict with `beta_rec`, `beta_kl`, `beta_neg` and optionally `gamma_r` (1e-8) and
      `rec_target_grad` (True: the target `x_r` of the encoder's expELBO is not detached, as
      in the reference and the project's default).
    batch_size: examples per step; z_dim: latent size; scale: `s` = 1 / input dimension.
    noise: None (six `tf.random.normal([batch_size, z_dim])` per step) or a callable
      returning the six noise tensors `z_p, eps, eps_r, eps_f, eps_r_d, eps_f_d` (the order of
      the project's `normal_noise(0..5)`; tests pass the project's noise to compare the losses).

  Returns:
    step(x) -> (loss_e, loss_d), float32 scalars: the batch means of the two losses.
  """
  beta_rec, beta_kl, beta_neg = hp["beta_rec"], hp["beta_kl"], hp["beta_neg"]
  gamma_r = hp.get("gamma_r", 1e-8)
  target_grad = hp.get("rec_target_grad", True)
  if noise is None:

    def noise():
      return [tf.random.normal([batch_size, z_dim]) for _ in range(6)]

  def kl(mu, logvar):
    return -0.5 * tf.reduce_sum(1.0 + logvar - tf.square(mu) - tf.exp(logvar), axis=1)

  def rec(x, y):
    return tf.reduce_sum(tf.reshape(tf.square(x - y), [tf.shape(x)[0], -1]), axis=1)

  def sample(mu, logvar, eps):
    return mu + tf.exp(0.5 * logvar) * eps

  @tf.function
  def step(x):
    z_p, eps, eps_r, eps_f, eps_r_d, eps_f_d = noise()
    if as_introvae:
      i = tf.cast(opt_e.iterations, tf.float32)
      c = tf.minimum(5.0 * i / float(total_steps), 1.0)
    with tf.GradientTape() as tape:  # encoder
      mu, logvar = enc(x, training=True)
      z = sample(mu, logvar, eps)
      fake = tf.stop_gradient(dec(z_p, training=True))
      x_r = dec(z, training=True)
      rec_real = rec(x, x_r)
      kl_real = kl(mu, logvar)
      x_r_sg = tf.stop_gradient(x_r)
      mu_r, logvar_r = enc(x_r_sg, training=True)
      mu_f, logvar_f = enc(fake, training=True)
      rr = rec(x_r if target_grad else x_r_sg, dec(sample(mu_r, logvar_r, eps_r), training=True))
      rf = rec(fake, dec(sample(mu_f, logvar_f, eps_f), training=True))
      kl_r, kl_f = kl(mu_r, logvar_r), kl(mu_f, logvar_f)
      if as_introvae:
        as_e = plain_product_as_distance(tf, mu_r, logvar_r, mu_f, logvar_f)
        kl_r = c * kl_r + (1.0 - c) * as_e
        kl_f = c * kl_f + (1.0 - c) * as_e
      exp_rec = tf.exp(-2.0 * scale * (beta_rec * rr + beta_neg * kl_r))
      exp_fake = tf.exp(-2.0 * scale * (beta_rec * rf + beta_neg * kl_f))
      loss_e = tf.reduce_mean(
        scale * (beta_rec * rec_real + beta_kl * kl_real) + 0.25 * (exp_rec + exp_fake)
      )
    opt_e.apply_gradients(
      zip(tape.gradient(loss_e, enc.trainable_variables), enc.trainable_variables)
    )
    with tf.GradientTape() as tape:  # decoder (the encoder frozen: only D is updated)
      fake = dec(z_p, training=True)
      x_r = dec(tf.stop_gradient(z), training=True)
      rec_real = rec(x, x_r)
      mu_r, logvar_r = enc(x_r, training=True)
      mu_f, logvar_f = enc(fake, training=True)
      rr = rec(
        tf.stop_gradient(x_r), dec(tf.stop_gradient(sample(mu_r, logvar_r, eps_r_d)), training=True)
      )
      rf = rec(
        tf.stop_gradient(fake),
        dec(tf.stop_gradient(sample(mu_f, logvar_f, eps_f_d)), training=True),
      )
      kl_r, kl_f = kl(mu_r, logvar_r), kl(mu_f, logvar_f)
      if as_introvae:
        kl_r, kl_f = c * kl_r, c * kl_f
      loss_d = tf.reduce_mean(
        scale
        * (
          beta_rec * rec_real + 0.5 * beta_kl * (kl_r + kl_f) + gamma_r * 0.5 * beta_rec * (rr + rf)
        )
      )
      if as_introvae:
        loss_d += (
          scale
          * 0.5
          * beta_kl
          * (1.0 - c)
          * plain_product_as_distance(tf, mu_r, logvar_r, mu_f, logvar_f)
        )
    opt_d.apply_gradients(
      zip(tape.gradient(loss_d, dec.trainable_variables), dec.trainable_variables)
    )
    return loss_e, loss_d

  return step


def build_reference_step(
  tf, keras, networks, hp, batch_size, z_dim=2, num_hidden=256, num_layers=3, lr=2e-4
):
  """`build_plain_step` on fresh 2-D MLPs (`networks.build_mlp_*`) with two Keras Adams
  (S-IntroVAE's 2-D reference training loop, `train_soft_intro_vae_2d.py`).

  Returns:
    (step(x) -> (loss_e, loss_d), encoder, decoder).
  """
  enc = networks.build_mlp_encoder(2, z_dim, num_hidden, num_layers)
  dec = networks.build_mlp_decoder(2, z_dim, num_hidden, num_layers)
  opt_e = keras.optimizers.Adam(lr)
  opt_d = keras.optimizers.Adam(lr)
  opt_e.build(enc.trainable_variables)
  opt_d.build(dec.trainable_variables)
  step = build_plain_step(tf, enc, dec, opt_e, opt_d, hp, batch_size, z_dim, 0.5)
  return step, enc, dec


def run_reference_job(job):
  tf = _setup_tf(job)
  import keras  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import networks  # pylint: disable=import-outside-toplevel

  config = _job_config(dict(job, method="soft_introvae", workload="2d"))
  hp = {k: getattr(config, k) for k in ("beta_rec", "beta_kl", "beta_neg")}
  keras.utils.set_random_seed(0)
  batch = config.batch_size
  step, _, _ = build_reference_step(tf, keras, networks, hp, batch)
  spec = data.parse_dataset(config.dataset, None, None)
  ds = data.build_dataset(spec, "train", batch, seed=0)
  it = iter(ds)
  result = {
    "flops": graph_flops(step.get_concrete_function(tf.TensorSpec([batch, 2], tf.float32)).graph)
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
    _window_stats(times[job["warmup"] :], cpu_times[job["warmup"] :], job["window_steps"], batch)
  )
  result["final_loss_e"] = loss
  if job.get("trace_steps"):
    n = job["trace_steps"]
    result["trace"] = _profile_op_types(
      tf, lambda: run(n), n, os.path.join("/tmp", f"as_introvae_benchmark_trace_{os.getpid()}")
    )
  return result


TINY_SIZES = {
  "2d": dict(batch_size=32, num_hidden=16, num_layers=1),
  "cifar10": dict(batch_size=4, image_size=16, filters=(8, 16), z_dim=8),
}
"""`--tiny` (tests only): sizes at which a comparison job runs in seconds; its numbers mean
nothing."""


def _compare_config(job, method):
  """The config of one step of a comparison job: `_job_config`, with `TINY_SIZES` if asked."""
  config = _job_config(dict(job, method=method))
  if job.get("tiny"):
    config = config.replace(**TINY_SIZES[job["workload"]])
  return config


def _project_runner(tf, job, method, option=None):
  """The project's step as training runs it: `model.train_function(iterator)` once per step,
  what `model.fit` calls per step (steps_per_execution 1), on the real input pipeline.
  `option`: the config changes of `EXTRA_STEPS["project:<method>:<option>"]`."""
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import run as run_lib  # pylint: disable=import-outside-toplevel

  config = _compare_config(job, method)
  if option:
    config = config.replace(**EXTRA_STEPS[f"project:{method}:{option}"])
  spec = data.parse_dataset(config.dataset, config.image_size, config.channels)
  model = run_lib.build_model(config, spec, tf.distribute.get_strategy())
  model.vae_phase = False
  model.make_train_function(force=True)
  train_function = model.train_function
  it = iter(data.build_dataset(spec, "train", config.batch_size, seed=config.seed))

  def run(n):
    logs = None
    for _ in range(n):
      logs = train_function(it)
    return float(logs["loss_encoder"]) if logs is not None else None  # waits for the steps

  flops = _step_flops(tf, model, [config.batch_size, *spec.shape]) if job.get("flops") else None
  return run, flops, config.batch_size


def _plain_runner(tf, job, method, option=None):
  """`build_plain_step` on the same networks (`run_lib.build_networks`, same initialization)
  and the same optimizers (the config's Adam variant, learning-rate schedule and decoder EMA),
  fed by the same input pipeline in a Python loop."""
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import losses  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import run as run_lib  # pylint: disable=import-outside-toplevel

  del option
  config = _compare_config(job, method)
  if method == "as_introvae" and (
    config.as_kernel,
    config.as_squash,
    config.as_reduction_encoder,
    config.as_reduction_decoder,
    config.anneal,
    config.anneal_origin,
  ) != ("product", "none", "mean", "mean", "linear", "start"):
    raise ValueError(
      "the plain AS-IntroVAE step implements the 2-D config's options only "
      "(product kernel, no squash, mean reductions, linear annealing from the "
      f"start); {config.dataset} uses others"
    )
  spec = data.parse_dataset(config.dataset, config.image_size, config.channels)
  enc, dec = run_lib.build_networks(config, spec)
  lr = run_lib.learning_rate(config)
  opt_e = run_lib.adam(config, lr)
  opt_d = run_lib.adam(
    config, lr, use_ema=config.ema_decay > 0, ema_momentum=config.ema_decay or 0.99
  )
  opt_e.build(enc.trainable_variables)
  opt_d.build(dec.trainable_variables)
  hp = {
    k: getattr(config, k) for k in ("beta_rec", "beta_kl", "beta_neg", "gamma_r", "rec_target_grad")
  }
  step = build_plain_step(
    tf,
    enc,
    dec,
    opt_e,
    opt_d,
    hp,
    config.batch_size,
    config.z_dim,
    losses.input_scale(spec.shape),
    as_introvae=method == "as_introvae",
    total_steps=config.train_steps,
  )
  it = iter(data.build_dataset(spec, "train", config.batch_size, seed=config.seed))

  def run(n):
    out = None
    for _ in range(n):
      out = step(next(it))
    return float(out[0].numpy()) if out is not None else None  # waits for the last step

  flops = None
  if job.get("flops"):
    flops = graph_flops(
      step.get_concrete_function(tf.TensorSpec([config.batch_size, *spec.shape], tf.float32)).graph
    )
  return run, flops, config.batch_size


def run_compare_job(job):
  """Times several steps in ONE process, interleaved window by window.

  `job["steps"]`: labels "project:<method>" / "plain:<method>" on `job["workload"]`. Every
  step is built and traced first; then `warmup + windows` rounds, each running one window of
  `window_steps` steps of every step in the listed order (A B C A B C ...), so the steps share
  the process, its thread pools and whatever the machine did at that minute; the warm-up
  rounds are dropped. Returns per step the window statistics (`_window_stats`), the FLOPs and
  the raw window times, in the listed order (the driver takes round-by-round ratios).
  """
  tf = _setup_tf(job)
  import keras  # pylint: disable=import-outside-toplevel

  runners = {}
  for label in job["steps"]:
    kind, method, *option = label.split(":")
    keras.utils.set_random_seed(0)
    t0 = time.perf_counter()
    runners[label] = {"project": _project_runner, "plain": _plain_runner}[kind](
      tf, job, method, *option
    )
    runners[label] += (time.perf_counter() - t0,)
  times = {label: [] for label in job["steps"]}
  cpu_times = {label: [] for label in job["steps"]}
  last_loss = {}
  for _ in range(job["warmup"] + job["windows"]):
    for label, (run, _, _, _) in runners.items():
      start, cpu = time.perf_counter(), time.process_time()
      last_loss[label] = run(job["window_steps"])
      times[label].append(time.perf_counter() - start)
      cpu_times[label].append(time.process_time() - cpu)
  warmup = job["warmup"]
  steps = {}
  for label, (_, flops, batch, build_s) in runners.items():
    row = _window_stats(
      times[label][warmup:], cpu_times[label][warmup:], job["window_steps"], batch
    )
    row.update(
      flops=flops,
      batch_size=batch,
      build_s=build_s,
      final_loss_e=last_loss[label],
      warmup_window_times_s=[round(t, 4) for t in times[label][:warmup]],
    )
    steps[label] = row
  return {"steps": steps}


def run_matmul_job(job):
  """float32 NxN matmul throughput (GFLOP/s) in this thread setting: one matmul, and two
  independent ones in one tf.function (what the inter-op pool can overlap)."""
  tf = _setup_tf(job)
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


def run_job(job):
  os.chdir(ROOT)
  load = os.getloadavg()[0]
  start = time.perf_counter()
  kind = job["kind"]
  result = {
    "train": run_train_job,
    "reference": run_reference_job,
    "matmul": run_matmul_job,
    "compare": run_compare_job,
  }[kind](job)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  result.update(
    job=job,
    load_1min_before=load,
    load_1min_after=os.getloadavg()[0],
    wall_s=time.perf_counter() - start,
    peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
    intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
  )
  return result


# =============================================================================================
# The driver
# =============================================================================================


def _busy_cpu_s():
  """CPU seconds all processes have used since boot (/proc/stat), or None elsewhere."""
  try:
    with open("/proc/stat") as f:
      fields = [int(v) for v in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None
  user, nice, system, _, _, irq, softirq, steal = (fields + [0] * 8)[:8]
  return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s():
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _spawn(job, timeout):
  """Runs one job in a fresh Python process; its result dict, or {"error": ...}.

  Also measures `other_cores`: the average number of cores that OTHER processes kept busy
  while the job ran (all CPU time on the machine minus the job's own), a better measure of
  outside load than the load average, which counts the benchmark's own threads too.
  """
  cmd = [sys.executable, os.path.abspath(__file__), f"--job={json.dumps(job)}"]
  start, busy, own = time.perf_counter(), _busy_cpu_s(), _children_cpu_s()
  try:
    proc = subprocess.run(
      cmd,
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=timeout,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
  except subprocess.TimeoutExpired:
    return {"job": job, "error": f"timed out after {timeout} s"}
  wall = time.perf_counter() - start
  other = None
  if busy is not None:
    other = max(0.0, (_busy_cpu_s() - busy - (_children_cpu_s() - own)) / wall)
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith(RESULT_PREFIX):
      result = json.loads(line[len(RESULT_PREFIX) :])
      result.update(process_s=wall, other_cores=other)
      return result
  return {
    "job": job,
    "error": f"exit {proc.returncode}: {proc.stderr[-1500:]}",
    "other_cores": other,
  }


def _schedule(workload, quick):
  kind = workload if workload in ("2d", "replicas") else "image"
  warmup, windows, steps, batches = SCHEDULE["quick" if quick else "full"][kind]
  warmup = FLAGS.warmup_windows if FLAGS.warmup_windows is not None else warmup
  windows = FLAGS.windows if FLAGS.windows is not None else windows
  steps = FLAGS.window_steps if FLAGS.window_steps is not None else steps
  spe = max(1, FLAGS.steps_per_execution)
  steps = -(-steps // spe) * spe  # whole executions per window
  return dict(warmup=warmup, windows=windows, window_steps=steps, pipeline_batches=batches)


def _compare_schedule(workload, quick):
  """(warm-up rounds, timed rounds, steps per window) of a comparison job; --warmup_windows,
  --windows and --window_steps override the schedule."""
  warmup, windows, steps = COMPARE_SCHEDULE["quick" if quick else "full"][workload]
  warmup = FLAGS.warmup_windows if FLAGS.warmup_windows is not None else warmup
  windows = FLAGS.windows if FLAGS.windows is not None else windows
  steps = FLAGS.window_steps if FLAGS.window_steps is not None else steps
  return warmup, windows, steps


def parse_threads(text):
  """ "AxB" -> (inter-op threads A, intra-op threads B); 0 = TensorFlow's default.

  Raises:
    ValueError: not two non-negative integers joined by "x".
  """
  parts = text.strip().lower().split("x")
  if len(parts) != 2 or not all(p.isdigit() for p in parts):
    raise ValueError(f"{text!r} is not INTERxINTRA (e.g. 2x1, 0x0 = TF defaults)")
  return int(parts[0]), int(parts[1])


def describe_cpu(machine):
  """One line: the CPU model, its logical CPUs and which vector extensions it has."""
  ext = machine.get("extensions") or {}
  listed = ", ".join(f"{name} {'yes' if has else 'no'}" for name, has in ext.items())
  return (
    f"CPU: {machine['processor']}, {machine['cpu_count']} logical CPUs; "
    f"{listed or 'vector extensions unknown (no CPU flags)'}"
  )


def paired_ratios(times_a, times_b):
  """Round-by-round ratios `times_b[r] / times_a[r]` of two interleaved steps' window times
  (each pair of windows taken seconds apart): (median, min, max), or None if empty."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  ratios = [b / a for a, b in zip(times_a, times_b) if a > 0]
  if not ratios:
    return None
  return float(np.median(ratios)), float(min(ratios)), float(max(ratios))


STEP_NAMES = {
  "project:soft_introvae": "project S-IntroVAE",
  "plain:soft_introvae": "plain S-IntroVAE",
  "project:as_introvae": "project AS-IntroVAE",
  "plain:as_introvae": "plain AS-IntroVAE",
  "project:as_introvae:xla_off": "project AS-IntroVAE, --as_distance_xla=off",
  "project:soft_introvae:unfused": "project S-IntroVAE, --fuse_passes=off",
  "project:as_introvae:unfused": "project AS-IntroVAE, --fuse_passes=off",
}
# (workload, A, B, what the ratio is, target): speed A / speed B = time B / time A.
COMPARE_RATIOS = (
  (
    "2d",
    "project:soft_introvae",
    "plain:soft_introvae",
    "2-D S-IntroVAE, project / plain (speed)",
    ">= 1.1",
  ),
  (
    "2d",
    "project:as_introvae",
    "plain:as_introvae",
    "2-D AS-IntroVAE, project / plain (speed)",
    "",
  ),
  (
    "cifar10",
    "project:soft_introvae",
    "plain:soft_introvae",
    "CIFAR-10 S-IntroVAE, project / plain (speed)",
    ">= 1.0",
  ),
  (
    "2d",
    "project:as_introvae",
    "project:as_introvae:xla_off",
    "2-D AS-IntroVAE, project, --as_distance_xla auto / off (speed)",
    "",
  ),
  (
    "2d",
    "project:soft_introvae",
    "project:soft_introvae:unfused",
    "2-D S-IntroVAE, project, --fuse_passes auto / off (speed)",
    "",
  ),
  (
    "2d",
    "project:as_introvae",
    "project:as_introvae:unfused",
    "2-D AS-IntroVAE, project, --fuse_passes auto / off (speed)",
    "",
  ),
)
# (workload, AS step, S step, what, target): time AS / time S.
AS_OVER_S = (
  (
    "2d",
    "project:as_introvae",
    "project:soft_introvae",
    "2-D AS-IntroVAE / S-IntroVAE, project (time)",
    "<= 1.15",
  ),
  (
    "2d",
    "plain:as_introvae",
    "plain:soft_introvae",
    "2-D AS-IntroVAE / S-IntroVAE, plain (time)",
    "",
  ),
)


def compare_markdown(results):
  """Markdown lines of the interleaved comparison: every step's speed and bound, then the
  round-by-round ratios (project / plain; AS / S)."""
  rows = [r for r in results.get("compare", [])]
  if not rows:
    return []
  matmul = results.get("matmul", {})
  lines = [
    "Interleaved comparison (one process per workload; every round runs one window of "
    "each step in turn, A B A B ...; medians of the timed windows):",
    "",
    "| workload | step | batch | threads | steps/s (min-max) | ms/step | CPU ms/step | "
    "GFLOP/step | % of bound (bound steps/s) | other cores |",
    "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
  ]
  by_workload = {}
  for row in rows:
    job = row["job"]
    label = WORKLOADS[job["workload"]]["label"] + (" (tiny)" if job.get("tiny") else "")
    if "error" in row:
      lines.append(f"| {label} | error: {row['error'][-200:]!r} | | | | | | | | |")
      continue
    by_workload[job["workload"]] = row["steps"]
    for name, step in row["steps"].items():
      bound, frac = _bound(step, matmul.get(_thread_key(job)))
      flops = (step.get("flops") or {}).get("matmul_conv")
      lines.append(
        f"| {label} | {STEP_NAMES.get(name, name)} | {step['batch_size']} | "
        f"{_thread_key(job)} | {step['steps_per_s']:.2f} ({step['steps_per_s_min']:.2f}-"
        f"{step['steps_per_s_max']:.2f}) | {step['step_ms']:.1f} | "
        f"{step['cpu_ms_per_step']:.0f} | {_fmt(flops and flops / 1e9, '.2f')} | "
        f"{_fmt(frac and 100 * frac, '.0f')}% ({_fmt(bound, '.1f')}) | "
        f"{_fmt(row.get('other_cores'), '.2f')} |"
      )
  lines += [
    "",
    "Ratios, round by round (median, min-max over the timed rounds):",
    "",
    "| ratio | median (min-max) | target |",
    "|---|---:|---|",
  ]
  for workload, a, b, what, target in COMPARE_RATIOS + AS_OVER_S:
    steps = by_workload.get(workload)
    if not steps or a not in steps or b not in steps:
      continue
    if (workload, a, b, what, target) in AS_OVER_S:  # time of a over time of b
      r = paired_ratios(steps[b]["window_times_s"], steps[a]["window_times_s"])
    else:  # speed of a over speed of b = time of b over time of a
      r = paired_ratios(steps[a]["window_times_s"], steps[b]["window_times_s"])
    if r:
      lines.append(f"| {what} | {r[0]:.2f}x ({r[1]:.2f}-{r[2]:.2f}) | {target or '-'} |")
  return lines


def threads_markdown(results):
  """Markdown lines of the thread comparison: per setting and round the 2-D S-IntroVAE steps,
  and each one's speed against the first setting's in the same round."""
  rows = [r for r in results.get("threads", [])]
  if not rows:
    return []
  matmul = results.get("matmul", {})
  base_key = _thread_key(rows[0]["job"])
  base = {}
  for row in rows:
    if "error" not in row and _thread_key(row["job"]) == base_key:
      base[row["job"]["round"]] = row["steps"]
  lines = [
    "",
    f"Thread settings (inter x intra; 0 = TF default), interleaved: each round runs "
    f"every setting once in a fresh process; speed against {base_key} in the same "
    "round (> 1: faster):",
    "",
    "| threads | round | project S-IntroVAE steps/s | plain S-IntroVAE steps/s | "
    f"project vs {base_key} | plain vs {base_key} | matmul GFLOP/s | other cores |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  summary = {}
  for row in rows:
    job = row["job"]
    key = _thread_key(job)
    if "error" in row:
      lines.append(f"| {key} | {job['round']} | error: {row['error'][-200:]!r} | | | | | |")
      continue
    cells = []
    for label in THREAD_STEPS:
      ref = base.get(job["round"], {}).get(label)
      ratio = row["steps"][label]["steps_per_s"] / ref["steps_per_s"] if ref else None
      cells.append(ratio)
      if ratio is not None:
        summary.setdefault((key, label), []).append(ratio)
    gflops = (matmul.get(key) or {}).get("gflops")
    lines.append(
      f"| {key} | {job['round']} | "
      f"{row['steps'][THREAD_STEPS[0]]['steps_per_s']:.2f} | "
      f"{row['steps'][THREAD_STEPS[1]]['steps_per_s']:.2f} | "
      f"{_fmt(cells[0], '.2f')}x | {_fmt(cells[1], '.2f')}x | "
      f"{_fmt(gflops, '.1f')} | {_fmt(row.get('other_cores'), '.2f')} |"
    )
  keys = list(dict.fromkeys(k for k, _ in summary))
  if keys:
    lines += [
      "",
      f"Per setting, over the rounds (min-max of the same-round ratios to {base_key}):",
      "",
      "| threads | project | plain |",
      "|---|---:|---:|",
    ]
    for key in keys:
      cells = []
      for label in THREAD_STEPS:
        values = summary.get((key, label))
        cells.append(f"{min(values):.2f}-{max(values):.2f}x" if values else "-")
      lines.append(f"| {key} | {cells[0]} | {cells[1]} |")
  return lines


def _fmt(value, spec, missing="-"):
  return missing if value is None else format(value, spec)


def _bound(row, matmul):
  flops = (row.get("flops") or {}).get("matmul_conv")
  gflops = (matmul or {}).get("gflops")
  if not flops or not gflops or "steps_per_s" not in row:
    return None, None
  bound = gflops * 1e9 / flops
  return bound, row["steps_per_s"] / bound


def _threads(row):
  job = row["job"]
  if not job.get("inter") and not job.get("intra"):
    return f"TF default ({row.get('inter_op_threads', 0)}x{row.get('intra_op_threads', 0)})"
  return f"{job.get('inter') or 'def'}x{job.get('intra') or 'def'}"


def markdown(results):
  matmul = results["matmul"]
  lines = [describe_cpu(results["machine"]), ""]
  lines.append(
    "Matmul throughput (float32 %dx%d, GFLOP/s, best of 20 calls; bound = the faster "
    "of 1 matmul and 2 independent matmuls):" % (MATMUL_N, MATMUL_N)
  )
  lines.append("")
  lines.append("| threads (inter x intra) | 1 matmul | 2 independent | bound used |")
  lines.append("|---|---:|---:|---:|")
  for key, m in matmul.items():
    if "error" in m:
      lines.append(f"| {key} | error: {m['error'][:80]} | | |")
      continue
    lines.append(
      f"| {key} | {m['one_matmul_gflops']:.1f} | {m['two_matmuls_gflops']:.1f} | "
      f"{m['gflops']:.1f} |"
    )
  lines.append("")
  compare = compare_markdown(results)
  if compare:
    lines += compare + [""]
  lines += threads_markdown(results)
  if not results["rows"]:
    return "\n".join(lines).rstrip()
  if compare or results.get("threads"):
    lines += ["", "Per method, through model.fit (each row a fresh process):", ""]
  lines.append(
    "| method | workload | batch | threads | steps/s (min-max) | examples/s | "
    "ms/step | CPU ms/step | GFLOP/step | % of bound (bound steps/s) | "
    "input ex/s (x training) | peak RSS MiB | load | other cores |"
  )
  lines.append("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  for row in results["rows"]:
    job = row["job"]
    name = job.get("label") or job.get("method", "")
    workload = WORKLOADS[job.get("workload", "2d")]
    if "error" in row:
      lines.append(
        f"| {name} | {workload['label']} | {workload['batch_size']} | | error: "
        f"{row['error'][-200:]!r} | | | | | | | | | |"
      )
      continue
    bound, frac = _bound(row, matmul.get(_thread_key(job)))
    pipe = row.get("pipeline_examples_per_s")
    ratio = pipe / row["examples_per_s"] if pipe else None
    flops = (row.get("flops") or {}).get("matmul_conv")
    lines.append(
      f"| {name} | {workload['label']} | {workload['batch_size']} | {_threads(row)} | "
      f"{row['steps_per_s']:.2f} ({row['steps_per_s_min']:.2f}-{row['steps_per_s_max']:.2f})"
      f" | {row['examples_per_s']:.0f} | {row['step_ms']:.1f} | "
      f"{row['cpu_ms_per_step']:.0f} | {_fmt(flops and flops / 1e9, '.2f')} | "
      f"{_fmt(frac and 100 * frac, '.0f')}% ({_fmt(bound, '.1f')}) | "
      f"{_fmt(pipe, '.0f')} ({_fmt(ratio, '.0f')}x) | {row['peak_rss_mib']:.0f} | "
      f"{row['load_1min_before']:.2f} | {_fmt(row.get('other_cores'), '.2f')} |"
    )
  lines += _relative_table(results["rows"])
  if results.get("replicas"):
    lines.append("")
    lines.append(
      "MirroredStrategy over N LOGICAL CPU devices, 2-D S-IntroVAE, global batch 512 "
      "(all replicas share the same 2 cores: strategy overhead, not speed-up):"
    )
    lines.append("")
    lines.append(
      "| replicas | steps/s (min-max) | examples/s | CPU ms/step | vs 1 replica | "
      "peak RSS MiB | load | other cores |"
    )
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = next(
      (
        r["steps_per_s"]
        for r in results["replicas"]
        if r["job"].get("replicas") == 1 and "steps_per_s" in r
      ),
      None,
    )
    for row in results["replicas"]:
      if "error" in row:
        lines.append(f"| {row['job']['replicas']} | error: {row['error'][-200:]!r} | | | | | | |")
        continue
      rel = row["steps_per_s"] / base if base else None
      lines.append(
        f"| {row['job']['replicas']} | {row['steps_per_s']:.2f} "
        f"({row['steps_per_s_min']:.2f}-{row['steps_per_s_max']:.2f}) | "
        f"{row['examples_per_s']:.0f} | {row['cpu_ms_per_step']:.0f} | "
        f"{_fmt(rel, '.2f')}x | "
        f"{row['peak_rss_mib']:.0f} | {row['load_1min_before']:.2f} | "
        f"{_fmt(row.get('other_cores'), '.2f')} |"
      )
  if results.get("variants"):
    lines.append("")
    lines.append(
      "Ablations of the project's 2-D S-IntroVAE step (same process setup, parts "
      "patched out in the subprocess):"
    )
    lines.append("")
    lines.append(
      "| variant | steps/s (min-max) | ms/step | CPU ms/step | graph ops (run) | "
      "load | other cores |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for row in results["variants"]:
      if "error" in row:
        lines.append(f"| {row['job'].get('label')} | error: {row['error'][-200:]!r} | | | | | |")
        continue
      ops = row.get("flops") or {}
      lines.append(
        f"| {row['job'].get('label')} | {row['steps_per_s']:.2f} "
        f"({row['steps_per_s_min']:.2f}-{row['steps_per_s_max']:.2f}) | "
        f"{row['step_ms']:.1f} | {row['cpu_ms_per_step']:.0f} | "
        f"{ops.get('ops', '-')} ({ops.get('live_ops', '-')})"
        f" | {row['load_1min_before']:.2f} | {_fmt(row.get('other_cores'), '.2f')} |"
      )
  if results.get("traces"):
    lines.append("")
    lines.append("Profiled steps (tf.profiler, framework_op_stats; profiling slows small ops):")
    lines.append("")
    lines.append(
      "| step | wall ms/step (profiled) | busy ms/step (both threads) | MatMul share "
      "| top op types (self ms/step) |"
    )
    lines.append("|---|---:|---:|---:|---|")
    for label, tr in results["traces"].items():
      if not tr or "error" in tr:
        lines.append(f"| {label} | error | | | |")
        continue
      top = ", ".join(f"{k} {v:.2f}" for k, v in tr["top_op_types_ms_per_step"][:6])
      lines.append(
        f"| {label} | {tr['profiled_wall_ms_per_step']:.1f} | "
        f"{tr['busy_ms_per_step']:.1f} | "
        f"{100 * tr['matmul_share_of_busy']:.0f}% | {top} |"
      )
  return "\n".join(lines)


def _relative_table(rows):
  """Markdown lines: each precision/XLA row against the float32, no-XLA row of the same method,
  workload and round (taken minutes apart at most, under about the same outside load)."""
  timed = [r for r in rows if "round" in r["job"] and "steps_per_s" in r]
  if not timed:
    return []
  base = {
    (r["job"]["method"], r["job"]["workload"], r["job"]["round"]): r
    for r in timed
    if r["job"].get("mixed_precision") == "none" and not r["job"].get("jit")
  }
  lines = [
    "",
    "Precision and XLA against float32 without XLA, same method, workload and round "
    "(steps/s ratio > 1: faster; CPU ms/step ratio < 1: less CPU):",
    "",
    "| method | workload | precision | XLA | round | steps/s | CPU ms/step | "
    "vs float32: steps/s | vs float32: CPU ms | other cores |",
    "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
  ]
  for r in timed:
    job = r["job"]
    b = base.get((job["method"], job["workload"], job["round"]))
    speed = r["steps_per_s"] / b["steps_per_s"] if b else None
    cpu = r["cpu_ms_per_step"] / b["cpu_ms_per_step"] if b else None
    lines.append(
      f"| {job['method']} | {WORKLOADS[job['workload']]['label']} | "
      f"{job['mixed_precision']} | {'yes' if job.get('jit') else 'no'} | "
      f"{job['round']} | {r['steps_per_s']:.2f} | {r['cpu_ms_per_step']:.0f} | "
      f"{_fmt(speed, '.2f')}x | {_fmt(cpu, '.2f')}x | "
      f"{_fmt(r.get('other_cores'), '.2f')} |"
    )
  return lines


def _thread_key(job):
  return f"{job.get('inter', 0)}x{job.get('intra', 0)}"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.job:
    result = run_job(json.loads(FLAGS.job))
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    return 0
  quick = FLAGS.quick
  methods = [m for m in FLAGS.methods if m]
  workloads = [w for w in FLAGS.workloads if w]
  for m in methods:
    if m not in METHODS:
      raise app.UsageError(f"--methods: unknown {m!r}; allowed: {', '.join(METHODS)}")
  for w in workloads:
    if w not in WORKLOADS:
      raise app.UsageError(f"--workloads: unknown {w!r}; allowed: {', '.join(WORKLOADS)}")
  variants = FLAGS.variants if FLAGS.variants is not None else ([] if quick else list(VARIANTS))
  variants = [v for v in variants if v]
  for v in variants:
    if v not in VARIANTS:
      raise app.UsageError(f"--variants: unknown {v!r}; allowed: {', '.join(VARIANTS)}")
  trace = FLAGS.trace if FLAGS.trace is not None else not quick
  replicas = [int(r) for r in FLAGS.replicas if r]
  table = FLAGS.table if FLAGS.table is not None else not quick
  compare_workloads = [w for w in FLAGS.compare_workloads if w] if FLAGS.compare else []
  for w in compare_workloads:
    if w not in COMPARE_STEPS:
      raise app.UsageError(
        f"--compare_workloads: unknown {w!r}; allowed: {', '.join(COMPARE_STEPS)}"
      )
  for label in FLAGS.compare_extra:
    if label and label not in EXTRA_STEPS:
      raise app.UsageError(f"--compare_extra: unknown {label!r}; allowed: {', '.join(EXTRA_STEPS)}")
  try:
    thread_settings = [parse_threads(t) for t in FLAGS.compare_threads if t]
  except ValueError as e:
    raise app.UsageError(f"--compare_threads: {e}") from e
  if FLAGS.reference_step_only:
    methods, workloads, replicas, variants = ["soft_introvae"], ["2d"], [], []
    table, compare_workloads, thread_settings = True, [], []
  threads = dict(inter=FLAGS.inter_op_threads, intra=FLAGS.intra_op_threads)
  timeout = FLAGS.job_timeout_s
  started = time.time()
  busy_start, own_start = _busy_cpu_s(), _children_cpu_s()
  results = {
    "command": " ".join(["python", "tools/benchmark.py"] + sys.argv[1:]),
    "quick": quick,
    "load_1min_start": os.getloadavg()[0],
    "machine": {
      "platform": platform.platform(),
      "cpu_count": os.cpu_count(),
      "processor": machine_lib.cpu_model(),
      "extensions": machine_lib.cpu_extensions(),
    },
    "matmul": {},
    "compare": [],
    "threads": [],
    "rows": [],
    "replicas": [],
    "variants": [],
    "traces": {},
  }

  def log(message):
    print(
      f"[{time.time() - started:6.0f} s, load {os.getloadavg()[0]:.2f}] {message}",
      file=sys.stderr,
      flush=True,
    )

  def matmul_for(job):
    key = _thread_key(job)
    if key not in results["matmul"]:
      log(f"matmul throughput, threads {key}")
      results["matmul"][key] = _spawn(
        dict(kind="matmul", inter=job.get("inter", 0), intra=job.get("intra", 0)), timeout
      )

  def train(job, into):
    log(
      f"{job.get('label') or job['method']} / {job['workload']} "
      f"{'replicas=%d' % job['replicas'] if job.get('replicas') else ''}"
    )
    matmul_for(job)
    row = _spawn(job, timeout)
    if "error" in row:
      log(f"  ERROR {row['error'][-300:]}")
    else:
      log(f"  {row['steps_per_s']:.2f} steps/s ({row['wall_s']:.0f} s)")
    into.append(row)
    return row

  if compare_workloads:
    for workload in compare_workloads:
      warmup, windows, steps = _compare_schedule(workload, quick)
      steps_of = list(COMPARE_STEPS[workload])
      if workload == "2d":
        steps_of += [label for label in FLAGS.compare_extra if label]
      job = dict(
        kind="compare",
        workload=workload,
        steps=steps_of,
        warmup=warmup,
        windows=windows,
        window_steps=steps,
        flops=True,
        tiny=FLAGS.tiny,
        **threads,
      )
      matmul_for(job)
      log(f"interleaved comparison / {workload}: {', '.join(job['steps'])}")
      row = _spawn(job, timeout)
      log(f"  ERROR {row['error'][-300:]}" if "error" in row else f"  done ({row['wall_s']:.0f} s)")
      results["compare"].append(row)
  if thread_settings:
    warmup, windows, steps = _compare_schedule("2d", quick)
    for rnd in range(max(1, FLAGS.thread_rounds)):
      for inter, intra in thread_settings:
        job = dict(
          kind="compare",
          workload="2d",
          steps=list(THREAD_STEPS),
          warmup=warmup,
          windows=windows,
          window_steps=steps,
          flops=False,
          tiny=FLAGS.tiny,
          inter=inter,
          intra=intra,
          round=rnd,
        )
        matmul_for(job)
        log(f"threads {inter}x{intra}, round {rnd}")
        row = _spawn(job, timeout)
        if "error" in row:
          log(f"  ERROR {row['error'][-300:]}")
        results["threads"].append(row)
  if table:
    do_reference = FLAGS.reference_step or FLAGS.reference_step_only
    trace_steps = 10 if quick else 20
    image_methods = FLAGS.image_methods
    if image_methods is None:
      image_methods = [m for m in methods if m == "as_introvae"] if quick else methods
    policies = [p for p in FLAGS.mixed_precision if p]
    for p in policies:
      if p not in PRECISIONS:
        raise app.UsageError(f"--mixed_precision: unknown {p!r}; allowed: {', '.join(PRECISIONS)}")
    jits = [False, True] if FLAGS.compare_jit else [FLAGS.jit_compile]
    grid = [(r, p, j) for r in range(max(1, FLAGS.rounds)) for p in policies for j in jits]
    for workload in workloads:
      schedule = _schedule(workload, quick)
      for method in methods if workload == "2d" else image_methods:
        for rnd, policy, jit in grid:
          first = (rnd, policy, jit) == grid[0]
          job = dict(
            kind="train",
            method=method,
            workload=workload,
            flops=rnd == 0,
            jit=jit,
            spe=FLAGS.steps_per_execution,
            **threads,
            **schedule,
          )
          if not first:
            job["pipeline_batches"] = 0
          if len(grid) > 1:
            job.update(
              mixed_precision=policy, round=rnd, label=f"{method}, {policy}{', XLA' if jit else ''}"
            )
          if trace and workload == "2d" and method in ("soft_introvae", "as_introvae") and first:
            job["trace_steps"] = trace_steps
          row = train(job, results["rows"])
          if first:
            base_row = row
          if "trace" in row:
            results["traces"][f"project {method} (fit)"] = row.pop("trace")
        if (
          workload == "2d"
          and method == "soft_introvae"
          and FLAGS.tf_defaults
          and any(threads.values())
        ):
          job = dict(
            kind="train",
            method=method,
            workload=workload,
            jit=FLAGS.jit_compile,
            spe=FLAGS.steps_per_execution,
            **threads,
            **schedule,
          )
          default_row = train(
            dict(
              job,
              inter=0,
              intra=0,
              pipeline_batches=0,
              trace_steps=0,
              flops=False,
              label="soft_introvae, TF default threads",
            ),
            results["rows"],
          )
          default_row.setdefault("flops", base_row.get("flops"))  # the same graph
    if do_reference:
      schedule = _schedule("2d", quick)
      job = dict(
        kind="reference",
        workload="2d",
        method="soft_introvae",
        label="reference: minimal tf.function S-IntroVAE step",
        **threads,
        **schedule,
        trace_steps=trace_steps if trace else 0,
      )
      row = train(job, results["rows"])
      if "trace" in row:
        results["traces"]["reference minimal step"] = row.pop("trace")
    for n in replicas:
      train(
        dict(
          kind="train",
          method="soft_introvae",
          workload="2d",
          replicas=n,
          **threads,
          **_schedule("replicas", quick),
        ),
        results["replicas"],
      )
    schedule = _schedule("2d", quick)
    for variant in variants:
      job = dict(
        kind="train",
        method="soft_introvae",
        workload="2d",
        variant=variant,
        label=variant,
        flops=True,
        **threads,
        **dict(schedule, pipeline_batches=0),
      )
      if variant == "spe10":
        job.update(spe=10, window_steps=-(-schedule["window_steps"] // 10) * 10)
      if variant == "jit":
        job.update(jit=True)
      train(job, results["variants"])

  results["load_1min_end"] = os.getloadavg()[0]
  results["total_s"] = time.time() - started
  results["other_cores_mean"] = (
    None
    if busy_start is None
    else max(
      0.0, (_busy_cpu_s() - busy_start - (_children_cpu_s() - own_start)) / results["total_s"]
    )
  )
  table = markdown(results)
  results["markdown"] = table
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  with open(FLAGS.out, "w") as f:
    json.dump(results, f, indent=2, default=str)
  print(
    f"{results['command']}\nLoad average (1 min) "
    f"{results['load_1min_start']:.2f} at start, {results['load_1min_end']:.2f} at end "
    f"(it counts the benchmark's own threads); other processes kept "
    f"{_fmt(results['other_cores_mean'], '.2f')} cores busy on average; "
    f"{results['total_s']:.0f} s\n"
  )
  print(table)
  print(f"\nJSON: {FLAGS.out}")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
