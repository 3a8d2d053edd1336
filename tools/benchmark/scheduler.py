"""The driver's scheduling: each job in a fresh process, the load it ran under, the schedules,
and the order of a whole run (comparison, thread settings, per-method table, replicas,
variants), interleaved where the numbers are compared."""

import json
import os
import resource
import subprocess
import sys
import time

from .settings import COMPARE_SCHEDULE
from .settings import COMPARE_STEPS
from .settings import RESULT_PREFIX
from .settings import ROOT
from .settings import SCHEDULE
from .settings import THREAD_STEPS
from .settings import thread_key


def busy_cpu_s():
  """CPU seconds all processes have used since boot (/proc/stat), or None elsewhere."""
  try:
    with open("/proc/stat") as f:
      fields = [int(v) for v in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None
  user, nice, system, _, _, irq, softirq, steal = (fields + [0] * 8)[:8]
  return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s():
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def spawn(job, timeout):
  """Runs one job in a fresh Python process; its result dict, or {"error": ...}.

  Also measures `other_cores`: the average number of cores that OTHER processes kept busy
  while the job ran (all CPU time on the machine minus the job's own), a better measure of
  outside load than the load average, which counts the benchmark's own threads too.
  """
  cmd = [sys.executable, "-m", "tools.benchmark", f"--job={json.dumps(job)}"]
  start, busy, own = time.perf_counter(), busy_cpu_s(), children_cpu_s()
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
    other = max(0.0, (busy_cpu_s() - busy - (children_cpu_s() - own)) / wall)
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


def schedule(workload, quick, opts):
  """The schedule of a training job; `opts`: the flags (--warmup_windows, --windows,
  --window_steps override it; --steps_per_execution rounds the window up)."""
  kind = workload if workload in ("2d", "replicas") else "image"
  warmup, windows, steps, batches = SCHEDULE["quick" if quick else "full"][kind]
  warmup = opts.warmup_windows if opts.warmup_windows is not None else warmup
  windows = opts.windows if opts.windows is not None else windows
  steps = opts.window_steps if opts.window_steps is not None else steps
  spe = max(1, opts.steps_per_execution)
  steps = -(-steps // spe) * spe  # whole executions per window
  return dict(warmup=warmup, windows=windows, window_steps=steps, pipeline_batches=batches)


def compare_schedule(workload, quick, opts):
  """(warm-up rounds, timed rounds, steps per window) of a comparison job; --warmup_windows,
  --windows and --window_steps override the schedule."""
  warmup, windows, steps = COMPARE_SCHEDULE["quick" if quick else "full"][workload]
  warmup = opts.warmup_windows if opts.warmup_windows is not None else warmup
  windows = opts.windows if opts.windows is not None else windows
  steps = opts.window_steps if opts.window_steps is not None else steps
  return warmup, windows, steps


def run(opts, plan, results, log):
  """Runs a whole benchmark, each job in a fresh process (`spawn`), and fills `results`.

  Args:
    opts: the flags (`cli.define_flags`), read for what `plan` does not decide.
    plan: dict of what `cli.main` decided from them: quick, methods, workloads, variants,
      trace, replicas, table, compare_workloads, thread_settings, threads (dict(inter,
      intra)), timeout, policies, image_methods, do_reference.
    results: the run's record (`cli.main`'s dict): its lists and dicts are filled in.
    log: log(message), progress to stderr.
  """
  quick, methods, workloads = plan["quick"], plan["methods"], plan["workloads"]
  variants, trace, replicas = plan["variants"], plan["trace"], plan["replicas"]
  compare_workloads, thread_settings = plan["compare_workloads"], plan["thread_settings"]
  threads, timeout = plan["threads"], plan["timeout"]

  def matmul_for(job):
    key = thread_key(job)
    if key not in results["matmul"]:
      log(f"matmul throughput, threads {key}")
      results["matmul"][key] = spawn(
        dict(kind="matmul", inter=job.get("inter", 0), intra=job.get("intra", 0)), timeout
      )

  def train(job, into):
    log(
      f"{job.get('label') or job['method']} / {job['workload']} "
      f"{'replicas=%d' % job['replicas'] if job.get('replicas') else ''}"
    )
    matmul_for(job)
    row = spawn(job, timeout)
    if "error" in row:
      log(f"  ERROR {row['error'][-300:]}")
    else:
      log(f"  {row['steps_per_s']:.2f} steps/s ({row['wall_s']:.0f} s)")
    into.append(row)
    return row

  if compare_workloads:
    for workload in compare_workloads:
      warmup, windows, steps = compare_schedule(workload, quick, opts)
      steps_of = list(COMPARE_STEPS[workload])
      if workload == "2d":
        steps_of += [label for label in opts.compare_extra if label]
      job = dict(
        kind="compare",
        workload=workload,
        steps=steps_of,
        warmup=warmup,
        windows=windows,
        window_steps=steps,
        flops=True,
        tiny=opts.tiny,
        **threads,
      )
      matmul_for(job)
      log(f"interleaved comparison / {workload}: {', '.join(job['steps'])}")
      row = spawn(job, timeout)
      log(f"  ERROR {row['error'][-300:]}" if "error" in row else f"  done ({row['wall_s']:.0f} s)")
      results["compare"].append(row)
  if thread_settings:
    warmup, windows, steps = compare_schedule("2d", quick, opts)
    for rnd in range(max(1, opts.thread_rounds)):
      for inter, intra in thread_settings:
        job = dict(
          kind="compare",
          workload="2d",
          steps=list(THREAD_STEPS),
          warmup=warmup,
          windows=windows,
          window_steps=steps,
          flops=False,
          tiny=opts.tiny,
          inter=inter,
          intra=intra,
          round=rnd,
        )
        matmul_for(job)
        log(f"threads {inter}x{intra}, round {rnd}")
        row = spawn(job, timeout)
        if "error" in row:
          log(f"  ERROR {row['error'][-300:]}")
        results["threads"].append(row)
  if plan["table"]:
    do_reference, policies = plan["do_reference"], plan["policies"]
    trace_steps = 10 if quick else 20
    image_methods = plan["image_methods"]
    jits = [False, True] if opts.compare_jit else [opts.jit_compile]
    grid = [(r, p, j) for r in range(max(1, opts.rounds)) for p in policies for j in jits]
    for workload in workloads:
      sched = schedule(workload, quick, opts)
      for method in methods if workload == "2d" else image_methods:
        for rnd, policy, jit in grid:
          first = (rnd, policy, jit) == grid[0]
          job = dict(
            kind="train",
            method=method,
            workload=workload,
            flops=rnd == 0,
            jit=jit,
            spe=opts.steps_per_execution,
            **threads,
            **sched,
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
          and opts.tf_defaults
          and any(threads.values())
        ):
          job = dict(
            kind="train",
            method=method,
            workload=workload,
            jit=opts.jit_compile,
            spe=opts.steps_per_execution,
            **threads,
            **sched,
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
      sched = schedule("2d", quick, opts)
      job = dict(
        kind="reference",
        workload="2d",
        method="soft_introvae",
        label="reference: minimal tf.function S-IntroVAE step",
        **threads,
        **sched,
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
          **schedule("replicas", quick, opts),
        ),
        results["replicas"],
      )
    sched = schedule("2d", quick, opts)
    for variant in variants:
      job = dict(
        kind="train",
        method="soft_introvae",
        workload="2d",
        variant=variant,
        label=variant,
        flops=True,
        **threads,
        **dict(sched, pipeline_batches=0),
      )
      if variant == "spe10":
        job.update(spe=10, window_steps=-(-sched["window_steps"] // 10) * 10)
      if variant == "jit":
        job.update(jit=True)
      train(job, results["variants"])
