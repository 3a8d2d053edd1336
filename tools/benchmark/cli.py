"""The command line: its flags, their checks, the run and its output (JSON and Markdown).

python -m tools.benchmark --quick        (from the repository root; see the package doc)
"""

import functools
import json
import os
import resource
import platform
import sys
import time
import types

from absl import app
from absl import flags

from tools import machine as machine_lib
from tools import own_flags

from . import compare
from . import jobs
from . import report
from . import scheduler
from .settings import COMPARE_STEPS
from .settings import EXTRA_STEPS
from .settings import METHODS
from .settings import PRECISIONS
from .settings import RESULT_PREFIX
from .settings import ROOT
from .settings import VARIANTS
from .settings import WORKLOADS

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """The command-line flags, in `flag_values` (defined only when run as a script, so tests can
  import this; a test passes its own `flags.FlagValues()`)."""
  d = types.SimpleNamespace(
    **{
      name: functools.partial(getattr(flags, name), flag_values=flag_values)
      for name in ("DEFINE_boolean", "DEFINE_integer", "DEFINE_list", "DEFINE_string")
    }
  )
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
  own_flags.require_writable_output("out", flag_values)  # written at the end, from memory
  d.DEFINE_integer("job_timeout_s", 900, "Time limit of one configuration's subprocess.")
  d.DEFINE_string("job", None, "Internal: run one configuration (JSON), print its result.")


def parse_threads(text):
  """ "AxB" -> (inter-op threads A, intra-op threads B); 0 = TensorFlow's default.

  Raises:
    ValueError: not two non-negative integers joined by "x".
  """
  parts = text.strip().lower().split("x")
  if len(parts) != 2 or not all(p.isdigit() for p in parts):
    raise ValueError(f"{text!r} is not INTERxINTRA (e.g. 2x1, 0x0 = TF defaults)")
  return int(parts[0]), int(parts[1])


def run_job(job):
  """Runs one job (`--job`, in the subprocess `scheduler.spawn` started) in this process;
  its result with the load, wall time, peak memory and thread pools it ran with."""
  os.chdir(ROOT)
  load = os.getloadavg()[0]
  start = time.perf_counter()
  kind = job["kind"]
  result = {
    "train": jobs.run_train_job,
    "reference": jobs.run_reference_job,
    "matmul": jobs.run_matmul_job,
    "compare": compare.run_compare_job,
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


def main(argv):
  """The benchmark (see the package doc) from the parsed flags; 0 when it ran."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.job:
    result = run_job(json.loads(FLAGS.job))
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    return 0
  plan = _plan(FLAGS)
  started = time.time()
  busy_start, own_start = scheduler.busy_cpu_s(), scheduler.children_cpu_s()
  results = {
    "command": " ".join(["python", "-m", "tools.benchmark"] + sys.argv[1:]),
    "quick": plan["quick"],
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

  scheduler.run(FLAGS, plan, results, log)
  results["load_1min_end"] = os.getloadavg()[0]
  results["total_s"] = time.time() - started
  busy_end, own_end = scheduler.busy_cpu_s(), scheduler.children_cpu_s()
  results["other_cores_mean"] = (
    None
    if busy_start is None
    else max(0.0, (busy_end - busy_start - (own_end - own_start)) / results["total_s"])
  )
  table = report.markdown(results)
  results["markdown"] = table
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  with open(FLAGS.out, "w") as f:
    json.dump(results, f, indent=2, default=str)
  print(
    f"{results['command']}\nLoad average (1 min) "
    f"{results['load_1min_start']:.2f} at start, {results['load_1min_end']:.2f} at end "
    f"(it counts the benchmark's own threads); other processes kept "
    f"{report.fmt(results['other_cores_mean'], '.2f')} cores busy on average; "
    f"{results['total_s']:.0f} s\n"
  )
  print(table)
  print(f"\nJSON: {FLAGS.out}")
  return 0


def _plan(opts):
  """What to run, from the flags `opts`, checked.

  Raises:
    app.UsageError: an unknown method, workload, variant, comparison workload or step,
      precision policy, or a bad thread setting.
  """
  quick = opts.quick
  methods = [m for m in opts.methods if m]
  workloads = [w for w in opts.workloads if w]
  for m in methods:
    if m not in METHODS:
      raise app.UsageError(f"--methods: unknown {m!r}; allowed: {', '.join(METHODS)}")
  for w in workloads:
    if w not in WORKLOADS:
      raise app.UsageError(f"--workloads: unknown {w!r}; allowed: {', '.join(WORKLOADS)}")
  variants = opts.variants if opts.variants is not None else ([] if quick else list(VARIANTS))
  variants = [v for v in variants if v]
  for v in variants:
    if v not in VARIANTS:
      raise app.UsageError(f"--variants: unknown {v!r}; allowed: {', '.join(VARIANTS)}")
  compare_workloads = [w for w in opts.compare_workloads if w] if opts.compare else []
  for w in compare_workloads:
    if w not in COMPARE_STEPS:
      raise app.UsageError(
        f"--compare_workloads: unknown {w!r}; allowed: {', '.join(COMPARE_STEPS)}"
      )
  for label in opts.compare_extra:
    if label and label not in EXTRA_STEPS:
      raise app.UsageError(f"--compare_extra: unknown {label!r}; allowed: {', '.join(EXTRA_STEPS)}")
  try:
    thread_settings = [parse_threads(t) for t in opts.compare_threads if t]
  except ValueError as e:
    raise app.UsageError(f"--compare_threads: {e}") from e
  try:
    replicas = [int(r) for r in opts.replicas if r]
  except ValueError:
    raise app.UsageError(f"--replicas takes integers; got {','.join(opts.replicas)}") from None
  if any(r < 1 for r in replicas):
    raise app.UsageError(f"--replicas must be >= 1; got {','.join(opts.replicas)}")
  for m in opts.image_methods or []:
    if m not in METHODS:
      raise app.UsageError(f"--image_methods: unknown {m!r}; allowed: {', '.join(METHODS)}")
  policies = [p for p in opts.mixed_precision if p]
  for p in policies:
    if p not in PRECISIONS:
      raise app.UsageError(f"--mixed_precision: unknown {p!r}; allowed: {', '.join(PRECISIONS)}")
  plan = dict(
    quick=quick,
    methods=methods,
    workloads=workloads,
    variants=variants,
    trace=opts.trace if opts.trace is not None else not quick,
    replicas=replicas,
    table=opts.table if opts.table is not None else not quick,
    compare_workloads=compare_workloads,
    thread_settings=thread_settings,
    threads=dict(inter=opts.inter_op_threads, intra=opts.intra_op_threads),
    timeout=opts.job_timeout_s,
    policies=policies,
    do_reference=opts.reference_step or opts.reference_step_only,
  )
  if opts.reference_step_only:
    plan.update(methods=["soft_introvae"], workloads=["2d"], replicas=[], variants=[])
    plan.update(table=True, compare_workloads=[], thread_settings=[])
  image_methods = opts.image_methods
  if image_methods is None:
    image_methods = [m for m in plan["methods"] if m == "as_introvae"] if quick else plan["methods"]
  plan["image_methods"] = image_methods
  return plan


def run():
  """`python -m tools.benchmark`: defines the flags, parses the command line, runs `main`."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
