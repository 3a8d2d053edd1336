"""Training speed on this machine: the project's steps against plain hand-written steps,
interleaved; steps/s, examples/s, FLOPs, memory, input of every method.

  python -m tools.benchmark --quick                 # the interleaved comparison only
  python -m tools.benchmark                         # comparison + the per-method table
  python -m tools.benchmark --compare_threads=2x1,1x2,0x0 --table=false --compare=false
  python -m tools.benchmark --reference_step_only   # bound + project vs reference step (2-D)
  python -m tools.benchmark --methods=soft_introvae --workloads=2d --variants=lean,jit --trace
  python -m tools.benchmark --methods=soft_introvae --workloads=2d --replicas= \
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

Run it from the repository root (`python -m tools.benchmark`; each job is such a process too).
The package, one module per job: `settings` (workloads, schedules, the compared steps),
`plain_step` (the plain steps), `jobs` (inside a job's process: training speed, reference
step, matmul bound), `compare` (the interleaved comparison's job), `flops` (FLOP count,
profiles), `scheduler` (a run's jobs in order, each in a fresh process), `report` and
`report_compare` (the Markdown tables), `cli` (the flags and `main`). Importing it defines no
flags and imports no TensorFlow.
"""

from .cli import parse_threads
from .compare import run_compare_job
from .flops import graph_flops
from .jobs import run_matmul_job
from .plain_step import build_plain_step
from .plain_step import build_reference_step
from .plain_step import plain_product_as_distance
from .report import markdown
from .report_compare import compare_markdown
from .report_compare import describe_cpu
from .report_compare import paired_ratios
from .report_compare import threads_markdown
from .settings import COMPARE_STEPS
from .settings import STEP_NAMES
from .settings import THREAD_STEPS
from .settings import TINY_SIZES

__all__ = [
  "COMPARE_STEPS",
  "STEP_NAMES",
  "THREAD_STEPS",
  "TINY_SIZES",
  "build_plain_step",
  "build_reference_step",
  "compare_markdown",
  "describe_cpu",
  "graph_flops",
  "markdown",
  "paired_ratios",
  "parse_threads",
  "plain_product_as_distance",
  "run_compare_job",
  "run_matmul_job",
  "threads_markdown",
]
