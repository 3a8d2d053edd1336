"""The interleaved comparison's job: the project's steps and the plain ones built in one
process and timed window by window, in turn."""

import time

from . import flops as flops_lib
from . import jobs
from . import plain_step
from .settings import EXTRA_STEPS
from .settings import TINY_SIZES


def _compare_config(job, method):
  """The config of one step of a comparison job: `jobs.job_config`, with `TINY_SIZES` if asked."""
  config = jobs.job_config(dict(job, method=method))
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

  flops = (
    flops_lib.step_flops(tf, model, [config.batch_size, *spec.shape]) if job.get("flops") else None
  )
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
  step = plain_step.build_plain_step(
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
    flops = flops_lib.graph_flops(
      step.get_concrete_function(tf.TensorSpec([config.batch_size, *spec.shape], tf.float32)).graph
    )
  return run, flops, config.batch_size


def run_compare_job(job):
  """Times several steps in ONE process, interleaved window by window.

  `job["steps"]`: labels "project:<method>" / "plain:<method>" on `job["workload"]`. Every
  step is built and traced first; then `warmup + windows` rounds, each running one window of
  `window_steps` steps of every step in the listed order (A B C A B C ...), so the steps share
  the process, its thread pools and whatever the machine did at that minute; the warm-up
  rounds are dropped. Returns per step the window statistics (`jobs.window_stats`), the FLOPs and
  the raw window times, in the listed order (the driver takes round-by-round ratios).
  """
  tf = jobs.setup_tf(job)
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
    row = jobs.window_stats(
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
