"""One-shot accelerator check: training steps/s of the reference networks on the GPUs present.

Called by `tools/device_check.sh` (which installs what is missing and runs the GPU-relevant
tests first); usable alone:

  python tools/device_check.py --out=runs/device_check            # on a GPU machine
  python tools/device_check.py --cpu_dry_run --out=/tmp/dc        # the same code path, tiny

Rows (each in its own subprocess, so precision policies, XLA and device setup do not leak):
  * AS-IntroVAE, CIFAR-10 reference network (32x32x3, filters 64,128,256, z 128, batch 32 as
    configs/cifar10_as_introvae.flags) and CelebA-128 (128x128x3, filters 64,128,256,512,512,
    z 256, batch 16 as configs/celeba128_as_introvae.flags), each in float32, mixed_float16,
    mixed_bfloat16 and float32 + XLA, on one device; float32 under MirroredStrategy over all
    visible GPUs (global batch x number of GPUs) when there is more than one;
  * S-IntroVAE and AS-IntroVAE on 8 Gaussians (MLP 3x256, z 2) at batch 512 and 8192.
The images are synthetic (uniform noise of the right shape: the device machine has no data
sets); that measures the step, not an input pipeline. Each row: warm-up windows dropped,
steps/s = steps per window / median window time, and examples/s.

Writes `OUT/device_check.json` (environment, every row) and `OUT/device_check.md` (a table
naming the GPU). `--cpu_dry_run` runs the rows on the CPU with tiny sizes and 2-step windows
(one image network; every image row except the float32 one with the plain VAE; the 2-D
S-IntroVAE at one batch size, see `plan`), all in one
process (the real run gives each row its own), so the script's path but the subprocess launch
is tested without a GPU (tests/test_device_check.py); the AS-IntroVAE image step under XLA and
on 2 replicas is not (it is tested on the 2-D networks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__":  # `python tools/device_check.py`: the root on sys.path, for `tools`
  sys.path.insert(0, ROOT)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from tools import machine  # noqa: E402


def define_flags(flag_values=flags.FLAGS):
  """The command line's flags, defined in `flag_values` (only the command line calls this:
  importing the module defines nothing)."""
  d = dict(flag_values=flag_values)
  flags.DEFINE_string("out", os.path.join(ROOT, "runs", "device_check"), "Output folder.", **d)
  flags.DEFINE_boolean("cpu_dry_run", False, "Tiny sizes on the CPU: tests the path.", **d)
  flags.DEFINE_integer("windows", 3, "Timed windows per row.", **d)
  flags.DEFINE_integer("window_steps", 20, "Steps per window.", **d)
  flags.DEFINE_integer("job_timeout_s", 240, "Time limit of one row.", **d)
  flags.DEFINE_string("job", None, "Internal: run one row (JSON), print its result.", **d)


RESULT_PREFIX = "DEVICE_CHECK_RESULT "
IMAGE_WORKLOADS = {
  "cifar10": dict(
    flagfile="configs/cifar10_as_introvae.flags",
    image_size=32,
    channels=3,
    filters=(64, 128, 256),
    z_dim=128,
    batch_size=32,
  ),
  "celeba128": dict(
    flagfile="configs/celeba128_as_introvae.flags",
    image_size=128,
    channels=3,
    filters=(64, 128, 256, 512, 512),
    z_dim=256,
    batch_size=16,
  ),
}
DRY_IMAGE = dict(image_size=8, filters=(4,), z_dim=4, batch_size=4)


def plan(dry_run, num_gpus):
  """The rows: a list of job dicts (see `run_job`)."""
  jobs = []
  # The dry run tests the path: one image workload, one 2-D batch size, and AS-IntroVAE only in
  # the float32 image row, the plain VAE in the others (on 2 CPU cores, tracing the AS-IntroVAE
  # image step takes ~10 s per precision, XLA-compiling it or tracing it on two replicas 25-30 s,
  # the VAE's a few; AS-IntroVAE's image step in 16 bits is tested in
  # tests/test_mixed_precision.py, under XLA in tests/test_xla_and_steps_per_execution.py, and on
  # 2 replicas on the 2-D networks in tests/test_mixed_precision.py and tests/test_models.py).
  workloads = list(IMAGE_WORKLOADS)[:1] if dry_run else list(IMAGE_WORKLOADS)
  for name in workloads:
    for precision, jit in (
      ("none", False),
      ("mixed_float16", False),
      ("mixed_bfloat16", False),
      ("none", True),
    ):
      jobs.append(
        dict(
          kind="image",
          workload=name,
          method="as_introvae" if not dry_run or (precision, jit) == ("none", False) else "vae",
          mixed_precision=precision,
          jit=jit,
          replicas=1,
        )
      )
    if num_gpus > 1 or dry_run:
      jobs.append(
        dict(
          kind="image",
          workload=name,
          method="vae" if dry_run else "as_introvae",
          mixed_precision="none",
          jit=False,
          replicas=max(num_gpus, 2),
        )
      )
  # The dry run's 2-D row: S-IntroVAE only (AS-IntroVAE's step is in its float32 image row; its
  # 2-D step, whose AS-Distance is XLA-compiled, is tested in tests/test_models.py).
  for method in ("soft_introvae",) if dry_run else ("soft_introvae", "as_introvae"):
    for batch in (512,) if dry_run else (512, 8192):
      jobs.append(
        dict(
          kind="2d",
          workload="8gaussians",
          method=method,
          batch_size=batch,
          mixed_precision="none",
          jit=False,
          replicas=1,
        )
      )
  return jobs


def _config(job, dry_run):
  from as_introvae_tf import config as config_lib  # pylint: disable=import-outside-toplevel

  if job["kind"] == "2d":
    config = config_lib.from_flagfile(f"configs/8gaussians_{job['method']}.flags")
    changes = dict(batch_size=job["batch_size"] if not dry_run else 64)
    if dry_run:
      changes.update(num_hidden=16, num_layers=1)
  else:
    workload = dict(IMAGE_WORKLOADS[job["workload"]])
    config = config_lib.from_flagfile(workload.pop("flagfile"))
    if dry_run:
      workload.update(DRY_IMAGE)
    changes = dict(workload, method=job["method"])
    changes["batch_size"] = workload["batch_size"] * job["replicas"]
  return config.replace(
    workdir="/tmp/as_introvae_device_check_unused",
    train_steps=10**6,
    num_vae=0,
    jit_compile=job["jit"],
    mixed_precision=job["mixed_precision"],
    strategy="mirrored" if job["replicas"] > 1 else "default",
    inter_op_threads=0,
    intra_op_threads=0,
    **changes,
  )


def _split_cpu(replicas):
  """Splits the CPU into `replicas` logical devices (before TensorFlow initialises them)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  cpu = tf.config.list_physical_devices("CPU")[0]
  if len(tf.config.get_logical_device_configuration(cpu) or []) < replicas:
    tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * replicas
    )


def run_job(job, dry_run, windows, window_steps):
  """Times one row in this process; returns a dict."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  if dry_run and job["replicas"] > 1:
    try:
      _split_cpu(job["replicas"])
    except RuntimeError:  # already initialised: the in-process dry run split it at the start
      pass
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import run as run_lib  # pylint: disable=import-outside-toplevel

  config = _config(job, dry_run)
  if job["replicas"] > 1:
    devices = (
      [f"/cpu:{i}" for i in range(job["replicas"])]
      if dry_run
      else [d.name for d in tf.config.list_logical_devices("GPU")]
    )
    strategy = tf.distribute.MirroredStrategy(devices)
  else:
    strategy = tf.distribute.get_strategy()
  if job["kind"] == "2d":
    spec = data.DatasetSpec("2d", "8gaussians", (2,))
    ds = data.build_dataset(spec, "train", config.batch_size, seed=0)
  else:
    shape = (config.image_size, config.image_size, config.channels)
    spec = data.DatasetSpec("folder", "synthetic", shape)
    images = np.random.default_rng(0).uniform(size=(config.batch_size, *shape))
    ds = tf.data.Dataset.from_tensors(images.astype(np.float32)).repeat()
  keras.utils.set_random_seed(0)
  model = run_lib.build_model(config, spec, strategy)
  model.vae_phase = False
  model.make_train_function(force=True)
  times = []

  class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      times.append(time.perf_counter() - self.start)

  warmup = 1
  model.fit(
    ds,
    epochs=warmup + windows,
    steps_per_epoch=window_steps,
    verbose=0,
    callbacks=[Timer()],
    shuffle=False,
  )
  median = float(np.median(times[warmup:]))
  return {
    "steps_per_s": window_steps / median,
    "examples_per_s": window_steps * config.batch_size / median,
    "global_batch": config.batch_size,
    "window_times_s": [round(t, 4) for t in times],
    "non_finite": model.non_finite_report(),
  }


def environment():
  """Devices, driver and versions."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  env = {"tensorflow": tf.__version__, "gpus": []}
  try:
    out = subprocess.run(
      ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
      capture_output=True,
      text=True,
      timeout=30,
    )
    env["gpus"] = [line.strip() for line in out.stdout.splitlines() if line.strip()]
  except (OSError, subprocess.SubprocessError):
    pass
  env["tf_gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
  env["cpu"] = machine.describe_cpu()
  return env


def _label(job):
  if job["kind"] == "2d":
    return f"2-D {job['method']}, batch {job['batch_size']}"
  precision = {"none": "float32"}.get(job["mixed_precision"], job["mixed_precision"])
  extra = " + XLA" if job["jit"] else ""
  if job["replicas"] > 1:
    extra += f", MirroredStrategy x{job['replicas']}"
  return f"{job['workload']} {job['method']}, {precision}{extra}"


def markdown(env, rows, dry_run):
  device = "; ".join(env["gpus"]) or ("CPU dry run: " + env["cpu"] if dry_run else "no GPU")
  lines = [
    f"Device: {device}. TensorFlow {env['tensorflow']}. Synthetic inputs; steps/s = "
    "steps per window / median window time after one warm-up window.",
    "",
    "| row | global batch | steps/s | examples/s | note |",
    "|---|---|---|---|---|",
  ]
  for row in rows:
    r = row["result"]
    if "error" in r:
      lines.append(f"| {_label(row['job'])} | | | | failed: {r['error'][:120]} |")
      continue
    note = f"non-finite at {r['non_finite']}" if r.get("non_finite") else ""
    lines.append(
      f"| {_label(row['job'])} | {r['global_batch']} | {r['steps_per_s']:.2f} | "
      f"{r['examples_per_s']:.0f} | {note} |"
    )
  return "\n".join(lines) + "\n"


def _record(rows, job, result, t0):
  """Appends a finished row (with its wall time since `t0`) to `rows` and prints it."""
  result["wall_s"] = round(time.time() - t0, 1)
  rows.append({"job": job, "result": result})
  done = f"{result['steps_per_s']:.2f} steps/s" if "steps_per_s" in result else result["error"]
  print(f"{_label(job)}: {done}", flush=True)


def main(argv):
  """The check from the parsed flags (`define_flags`)."""
  del argv
  opts = flags.FLAGS
  if opts.job:
    job = json.loads(opts.job)
    result = run_job(job, opts.cpu_dry_run, opts.windows, opts.window_steps)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return
  env = environment()
  num_gpus = len(env["tf_gpus"])
  if not num_gpus and not opts.cpu_dry_run:
    print(
      "error: no GPU is visible to TensorFlow (tf.config.list_physical_devices('GPU') is "
      "empty); pass --cpu_dry_run to test the script on a CPU",
      file=sys.stderr,
    )
    sys.exit(2)
  windows, steps = (1, 2) if opts.cpu_dry_run else (opts.windows, opts.window_steps)
  rows = []
  if opts.cpu_dry_run:
    # The dry run tests the code path, not speed: every row in this process (one TensorFlow
    # start instead of one per row; the precision policies are per layer, so rows do not
    # leak into each other), on 2 logical CPUs for the MirroredStrategy row.
    _split_cpu(2)
    for job in plan(True, num_gpus):
      t0 = time.time()
      try:
        result = run_job(job, True, windows, steps)
      except Exception as e:  # noqa: BLE001  (a failed row is reported, the others still run)
        result = {"error": f"{type(e).__name__}: {e}"}
      _record(rows, job, result, t0)
  for job in plan(opts.cpu_dry_run, num_gpus) if not opts.cpu_dry_run else []:
    cmd = [
      sys.executable,
      os.path.abspath(__file__),
      f"--job={json.dumps(job)}",
      f"--windows={windows}",
      f"--window_steps={steps}",
    ]
    if opts.cpu_dry_run:
      cmd += ["--cpu_dry_run"]
    env_vars = dict(os.environ, CUDA_VISIBLE_DEVICES="") if opts.cpu_dry_run else None
    t0 = time.time()
    try:
      proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=opts.job_timeout_s, env=env_vars
      )
      lines = [l for l in proc.stdout.splitlines() if l.startswith(RESULT_PREFIX)]
      result = (
        json.loads(lines[-1][len(RESULT_PREFIX) :])
        if lines
        else {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
      )
    except subprocess.TimeoutExpired:
      result = {"error": f"timed out after {opts.job_timeout_s} s"}
    _record(rows, job, result, t0)
  os.makedirs(opts.out, exist_ok=True)
  with open(os.path.join(opts.out, "device_check.json"), "w") as f:
    json.dump({"environment": env, "dry_run": opts.cpu_dry_run, "rows": rows}, f, indent=2)
  table = markdown(env, rows, opts.cpu_dry_run)
  with open(os.path.join(opts.out, "device_check.md"), "w") as f:
    f.write(table)
  print(table)
  if any("error" in row["result"] for row in rows):
    sys.exit(1)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  define_flags()
  app.run(main)
