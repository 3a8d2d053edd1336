"""Training: the loop (`fit`), from the workdir's lock to the final pictures.

The run itself (strategy, data spec, model, optimizers, checkpoint) is assembled by
`run.build_run`, which evaluation and export use too; this module only trains it, with the
callback of `train_monitor` (TensorBoard, images, checkpoints, NaN checks) and the writers of
`train_outputs` (pictures, HParams, `OutputWriteError`).

`train_and_evaluate(config)` is the whole job behind `python -m as_introvae_tf.train` (and
`as_introvae_tf.train(config)`). It resumes automatically from the latest checkpoint in
`WORKDIR/checkpoints`, logs scalars and image grids to `WORKDIR/tensorboard/train`, shows one
progress bar over the whole run (`progress.RunProgress`), and rewrites `WORKDIR/samples.png`
(and `reconstructions.png`) every --image_every_steps and at the end.

Layout of a workdir:
  config.json          the flags the run was started with (checked on resume)
  config_history.jsonl one line per training segment: its start step and changed flags
  train.lock           host, PID and start time of the process training here (`workdir.py`)
  checkpoints/         tf.train.CheckpointManager: encoder, decoder, EMA decoder, optimizers,
                       `run_info` (method, architecture, run id; `checkpoints.py`)
  tensorboard/         the run's HParams (method, dataset, betas, ...) for TensorBoard's HParams
                       table; its metrics are the scalars of the subfolders below
  tensorboard/train/   scalars `train/<metric>` every --log_every_steps, image grids
  samples.png          a grid of generated images (or a 2-D scatter) from the current model
  reconstructions.png  images only: rows of real test images, each followed by a row of their
                       reconstructions D(mu(x))
  metrics_train.json   the final step and the last log window's metrics
"""

from __future__ import annotations

import json
import math
import os
import signal
import time

import numpy as np
import tensorflow as tf
from absl import logging

from as_introvae_tf import checkpoints as checkpoints_lib
from as_introvae_tf import config as config_lib
from as_introvae_tf import data
from as_introvae_tf import distribute
from as_introvae_tf import methods
from as_introvae_tf import precision
from as_introvae_tf import progress as progress_lib
from as_introvae_tf import run as run_lib
from as_introvae_tf import workdir as workdir_lib
from as_introvae_tf.train_monitor import CheckpointWriteError
from as_introvae_tf.train_monitor import StopOnSignals
from as_introvae_tf.train_monitor import TrainingMonitor
from as_introvae_tf.train_outputs import OutputWriteError
from as_introvae_tf.train_outputs import render_samples
from as_introvae_tf.train_outputs import write_hparams
from as_introvae_tf.train_outputs import write_pngs
from as_introvae_tf.train_outputs import writing

__all__ = [
  "CheckpointWriteError",
  "OutputWriteError",
  "TrainingDivergedError",
  "TrainingInterrupted",
  "TrainingMonitor",
  "render_samples",
  "train_and_evaluate",
  "write_pngs",
]


class TrainingDivergedError(RuntimeError):
  """A loss went NaN or infinite; the last good checkpoint is kept.

  Attributes:
    step: the training step whose values were not finite (None when not known).
    terms: the names of the non-finite logged terms (losses, gradient norms), a tuple.
  """

  def __init__(self, message, step=None, terms=()):
    super().__init__(message)
    self.step, self.terms = step, tuple(terms)


class TrainingInterrupted(RuntimeError):
  """SIGTERM/SIGINT stopped training after the current step and its checkpoint.

  Attributes:
    signum: the signal; `exit_status` = 128 + signum (143 for SIGTERM, 130 for SIGINT).
    step: the step reached (= the step of the checkpoint written).
  """

  def __init__(self, message, signum, step):
    super().__init__(message)
    self.signum, self.step = signum, step
    self.exit_status = 128 + signum


def _check_workdir_writable(workdir):
  """Creates `workdir` and checks that files can be written there, before any work."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test.{os.getpid()}")  # one per worker process
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise config_lib.ConfigError(
      f"--workdir={workdir} is not writable ({e.strerror}): choose a directory where "
      "checkpoints and logs can be written"
    ) from None


def _check_resume_compatible(config, workdir, previous=None):
  """Refuses flags the checkpoints of `workdir` cannot be resumed with (naming them).

  Args:
    previous: the flags the run last trained with (`RunRecord.effective_config`); default
      WORKDIR/config.json.
  """
  if previous is None:
    if not os.path.exists(os.path.join(workdir, "config.json")):
      return
    previous = config_lib.load_config(workdir)
  changed = [k for k in config_lib.ARCHITECTURE_KEYS if getattr(previous, k) != getattr(config, k)]
  if (previous.ema_decay > 0) != (config.ema_decay > 0):  # the EMA decoder is checkpointed
    changed.append("ema_decay")
  if precision.needs_loss_scaling(config.mixed_precision) and not precision.needs_loss_scaling(
    previous.mixed_precision
  ):
    changed.append("mixed_precision")  # the checkpoint has no loss-scale state to restore
  if changed:
    details = ", ".join(
      f"--{k}={getattr(previous, k)!r} (now {getattr(config, k)!r})" for k in changed
    )
    raise config_lib.ConfigError(
      f"--workdir={workdir} holds a run with a different architecture: {details}. "
      "Use a new --workdir, or the same flags to resume."
    )


def _fixed_batch(spec, config, num):
  """A fixed batch for the image grids: up to `num` test images (fewer if the split has
  fewer), or fresh 2-D data points."""
  if spec.kind == "2d":
    return data.sample_2d(spec.name, 2048, np.random.default_rng(config.seed + 1))
  ds = data.build_dataset(
    spec,
    "test",
    1,
    seed=config.seed,
    shuffle=False,
    repeat=False,
    bad_images=config.bad_images,
    max_image_pixels=config.max_image_pixels,
    data_dir=config.data_dir,
  )
  images = [b.numpy() for b in ds.take(num)]
  if not images:
    raise ValueError(f"--dataset={config.dataset}: the test split has no readable image")
  return np.concatenate(images)


def _calibration_batches(spec, config, num_batches=8, batch_size=64):
  """Fixed real training batches for `prepare_for_inference` (BatchNorm statistics): 8
  batches of min(64, training examples), drawn again from the start when the split is small."""
  if spec.kind == "2d":
    rng = np.random.default_rng(config.seed + 2)
    return [data.sample_2d(spec.name, batch_size, rng) for _ in range(num_batches)]
  available = data.count_examples(
    spec,
    "train",
    bad_images=config.bad_images,
    max_image_pixels=config.max_image_pixels,
    data_dir=config.data_dir,
  )
  ds = data.build_dataset(
    spec,
    "train",
    min(batch_size, available),
    seed=config.seed + 2,
    shuffle=True,
    repeat=True,
    bad_images=config.bad_images,
    max_image_pixels=config.max_image_pixels,
    data_dir=config.data_dir,
  )
  return [b.numpy() for b in ds.take(num_batches)]


def _check_enough_data(spec, config):
  """Raises ValueError (with the numbers) when the training split has fewer examples than
  one --batch_size."""
  if spec.kind == "2d":
    return
  available = data.count_examples(
    spec,
    "train",
    bad_images=config.bad_images,
    max_image_pixels=config.max_image_pixels,
    data_dir=config.data_dir,
  )
  if available < config.batch_size:
    raise ValueError(
      f"--dataset={config.dataset} has {available} training image(s), fewer than one batch "
      f"of --batch_size={config.batch_size}: lower --batch_size to at most {available} or "
      "add images"
    )


def _lock_name(strategy):
  """One lock per task: the chief takes train.lock, multi-worker workers their own file."""
  if distribute.is_chief(strategy):
    return workdir_lib.LOCK_FILE
  return f"{workdir_lib.LOCK_FILE}.worker{strategy.cluster_resolver.task_id}"


def _set_aside_unused_record(workdir):
  """A config.json/history without any checkpoint is from a run that never saved one: it
  must not bind the new run, so it is renamed (never deleted)."""
  suffix = f".unused-{int(time.time())}"
  for name in (workdir_lib.CONFIG_FILE, workdir_lib.HISTORY_FILE):
    path = os.path.join(workdir, name)
    if os.path.exists(path):
      with writing(path):  # before any step: nothing to save yet
        os.replace(path, path + suffix)
      logging.warning(
        "%s is from a run that wrote no checkpoint: renamed it to %s; this run starts afresh",
        path,
        path + suffix,
      )


def train_and_evaluate(config):
  """Trains (or resumes) the run described by `config`.

  Holds the workdir lock (`workdir.WorkdirLock`) from before any file is written to the end.
  On SIGTERM/SIGINT, finishes the current step, writes a checkpoint and raises
  `TrainingInterrupted`. config.json is written just before the segment's first checkpoint
  and its history line just after it (`workdir.RunRecord`): only a segment that saved a
  checkpoint is recorded.

  Returns:
    dict with `step` (final step), `metrics` (last log window's metrics), `samples_png`.

  Raises:
    ConfigError, ValueError, FileNotFoundError: bad flags or data, before any training.
    workdir.WorkdirLockedError: another process trains in the workdir (nothing was written).
    checkpoints.CheckpointError: checkpoint files exist but none restores, or one from
      another method/architecture/run.
    TrainingDivergedError: a metric became NaN/inf; the last good checkpoint is kept.
    TrainingInterrupted: SIGTERM/SIGINT; the checkpoint of the step reached is written.
    CheckpointWriteError: a checkpoint cannot be written; the previous one is intact.
    OutputWriteError: a picture, TensorBoard, config.json, config_history.jsonl or
      metrics_train.json write failed (named, with the cause); the checkpoint of the step
      reached was saved first whenever one could be.
  """
  config.validate()
  # One absolute path below this point: the checkpoint index, run_info, messages and resumes
  # from another working directory all agree (a relative --workdir is the README's form).
  config = config.replace(workdir=workdir_lib.resolve(config.workdir))
  workdir = config.workdir
  _check_workdir_writable(workdir)
  strategy = distribute.get_strategy(config.strategy)
  with workdir_lib.WorkdirLock(workdir, _lock_name(strategy)), StopOnSignals() as stop:
    return _train_locked(config, strategy, stop)


def _train_locked(config, strategy, stop):
  workdir = config.workdir
  has_checkpoints = bool(checkpoints_lib.on_disk(os.path.join(workdir, "checkpoints")))
  record = workdir_lib.RunRecord.load(workdir)
  if not has_checkpoints and record.original is not None and distribute.is_chief(strategy):
    _set_aside_unused_record(workdir)
    record = workdir_lib.RunRecord(workdir, None, [])
  if has_checkpoints:
    _check_resume_compatible(config, workdir, record.effective_config())
  run_id = record.new_run_id(config)
  run = run_lib.build_run(
    config, run_id=run_id, check_run_id=record.run_id is not None, strategy=strategy
  )
  model, spec = run.model, run.spec
  chief = distribute.is_chief(strategy)
  start = int(model.step.numpy())
  _check_enough_data(spec, config)
  if config.method != "vae" and config.num_vae >= config.train_steps:
    logging.warning(
      "--num_vae=%d >= --train_steps=%d: the whole run is plain-VAE warm-up; "
      "lower --num_vae to train %s",
      config.num_vae,
      config.train_steps,
      config.method,
    )
  logging.info(
    "method=%s dataset=%s example_shape=%s replicas=%d start_step=%d",
    config.method,
    config.dataset,
    spec.shape,
    strategy.num_replicas_in_sync,
    start,
  )
  mode = progress_lib.mode_for(config.verbose) if chief else "silent"
  if mode != "silent":
    shape = "x".join(str(d) for d in spec.shape)
    what = (
      f"resuming at step {start} of {config.train_steps}"
      if start
      else f"{config.train_steps} steps"
    )
    print(
      f"{config.method} on {config.dataset} ({shape}), {what}, "
      f"{strategy.num_replicas_in_sync} replica(s); workdir {workdir}",
      flush=True,
    )
  fixed = _fixed_batch(spec, config, 64)
  calibration = _calibration_batches(spec, config)
  logdir = os.path.join(workdir, "tensorboard", "train")
  if not chief:  # only the chief writes summaries; the others write to a scratch directory
    logdir = os.path.join(workdir, "tmp_worker_tensorboard", str(strategy.cluster_resolver.task_id))
  with writing(logdir):  # before any step: nothing to save yet
    writer = tf.summary.create_file_writer(logdir)
    if chief and start == 0:
      with writer.as_default(step=0):
        tf.summary.text("config", "```\n" + config.to_json() + "\n```")
      writer.flush()
  if chief:
    with writing(os.path.join(workdir, "tensorboard")):
      write_hparams(config, os.path.join(workdir, "tensorboard"))

  bar = progress_lib.RunProgress(
    config.train_steps,
    start,
    config.method,
    mode=mode,
    every=config.log_every_steps,
    steps_per_execution=config.steps_per_execution,
  )

  def write_config(_):
    if chief:
      with writing(os.path.join(workdir, workdir_lib.CONFIG_FILE)):
        record.save_config(config)

  def record_segment(_):
    if chief:
      history = os.path.join(workdir, workdir_lib.HISTORY_FILE)
      with writing(history):
        changes = record.append_segment(config, start, run_id)
      for c in changes:
        logging.warning(
          "Resumed at step %d with --%s=%r (was %r); recorded in %s",
          start,
          c["flag"],
          c["new"],
          c["old"],
          history,
        )

  monitor = TrainingMonitor(
    run,
    writer,
    fixed,
    calibration,
    chief,
    progress=bar,
    before_first_save=write_config,
    stop=stop,
    after_first_save=record_segment,
    logdir=logdir,
    render=render_samples,
    write=write_pngs,
  )
  last_metrics = {}
  if start < config.train_steps and stop.received is None:
    model.vae_phase = start < config.num_vae
    model.make_train_function(force=True)
    ds = data.build_dataset(
      spec,
      "train",
      config.batch_size,
      seed=config.seed,
      bad_images=config.bad_images,
      max_image_pixels=config.max_image_pixels,
      data_dir=config.data_dir,
    )
    if start:
      ds = ds.skip(start)  # the data order continues where the checkpointed run stopped
    window = config.log_every_steps
    history = model.fit(
      ds,
      initial_epoch=start // window,
      epochs=int(math.ceil(config.train_steps / window)),
      steps_per_epoch=window,
      callbacks=[bar, monitor],
      verbose=0,
      shuffle=False,
    )  # the dataset is shuffled (seeded) by data/pipeline.py
    last_metrics = {k: float(v[-1]) for k, v in history.history.items() if v}
    if monitor.diverged:
      step, terms = monitor.diverged
      raise TrainingDivergedError(
        _divergence_message(config, step, terms, run.manager), step=int(step), terms=terms
      )
  final_step = int(model.step.numpy())
  if final_step > start and monitor.last_saved != final_step:
    monitor.save(final_step)
  if stop.received is not None:
    raise TrainingInterrupted(
      _interrupted_message(config, stop.received, start, final_step, run.manager),
      stop.received,
      final_step,
    )
  monitor.prepare(final_step)
  samples_png = os.path.join(workdir, "samples.png")
  if chief:
    metrics_json = os.path.join(workdir, "metrics_train.json")
    try:
      write_pngs(workdir, render_samples(model, spec, fixed))
      with writing(metrics_json), open(metrics_json, "w") as f:
        json.dump(
          {"step": final_step, "metrics": last_metrics, "example_shape": list(spec.shape)},
          f,
          indent=2,
        )
    except OutputWriteError as e:
      if final_step > start:
        e.note = monitor.saved_note(final_step)
      raise
  logging.info("Done at step %d; samples in %s", final_step, samples_png)
  return {"step": final_step, "metrics": last_metrics, "samples_png": samples_png}


def _interrupted_message(config, signum, start, step, manager):
  name = signal.Signals(signum).name
  if step > start:
    saved = f"checkpoint {manager.latest_checkpoint} written"
  else:
    saved = f"no step was trained, the last checkpoint is {manager.latest_checkpoint or 'none'}"
  return (
    f"Stopped by {name} at step {step} of --train_steps={config.train_steps} ({saved}). "
    f"Run the same command again to resume from step {step}."
  )


def _divergence_message(config, step, terms, manager):
  kept = manager.latest_checkpoint or "none (no checkpoint was written before)"
  precision_hint = ""
  if config.mixed_precision == "mixed_float16":
    precision_hint = (
      " With --mixed_precision=mixed_float16, any value beyond float16's range "
      "(65504) inside the networks becomes inf/NaN (e.g. a posterior sample of "
      "a reconstruction with a large log-variance): mixed_bfloat16 has "
      "float32's range."
    )
  return (
    f"Training stopped: non-finite values (NaN/inf) at step {step} in: "
    f"{', '.join(terms)}. Hyper-parameters: beta_rec={config.beta_rec}, "
    f"beta_kl={config.beta_kl}, beta_neg={config.beta_neg}, lr={config.lr}. "
    f"{methods.get(config.method).divergence_hint}{precision_hint} The bad state was not "
    f"saved; the last good checkpoint is kept: {kept}. Running the same command again "
    "resumes from it."
  )
