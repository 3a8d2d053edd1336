"""Training: the loop (`fit`) and its callbacks: TensorBoard, images, checkpoints, NaN checks.

The run itself (strategy, data spec, model, optimizers, checkpoint) is assembled by
`run.build_run`, which evaluation and export use too; this module only trains it.

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

import contextlib
import json
import math
import os
import signal
import threading
import time

import keras
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
from as_introvae_tf import visualize
from as_introvae_tf import workdir as workdir_lib

SAMPLE_GRID_SIZE = 64


class TrainingDivergedError(RuntimeError):
  """A loss went NaN or infinite; the last good checkpoint is kept."""


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written (disk full, read-only); the previous one is intact.

  Attributes:
    cause: what the operating system or TensorFlow said, one line.
  """

  def __init__(self, message, cause=None):
    super().__init__(message)
    self.cause = cause


class OutputWriteError(RuntimeError):
  """A file outside the checkpoints could not be written: samples.png, reconstructions.png,
  TensorBoard's event files, config.json, config_history.jsonl or metrics_train.json.

  Its message is one line naming the file and the cause, and what happened to the steps
  trained: training saves the checkpoint of the step reached before raising it whenever a
  checkpoint can still be written (`note`).

  Attributes:
    path: the file (or TensorBoard folder) that could not be written.
    cause: what the operating system or TensorFlow said, one line.
    note: what was saved, and how to continue.
  """

  def __init__(self, path, cause, note=None):
    super().__init__(path, cause)
    self.path, self.cause, self.note = path, cause, note

  def __str__(self):
    text = f"cannot write {self.path} ({self.cause})"
    return f"{text}; {self.note}" if self.note else text


def _cause(error):
  """One line of what went wrong in a write (an OSError's strerror, an OpError's message)."""
  if isinstance(error, OSError) and error.strerror:
    return error.strerror
  text = getattr(error, "message", None) or str(error)
  text = text.strip().splitlines()[0] if text.strip() else type(error).__name__
  return text.split(" [Op:")[0][:300]


@contextlib.contextmanager
def _writing(path):
  """Turns an OSError or tf.errors.OpError inside the block into `OutputWriteError(path)`."""
  try:
    yield
  except (OSError, tf.errors.OpError) as e:
    raise OutputWriteError(path, _cause(e)) from e


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


def render_samples(model, spec, fixed):
  """The pictures of a run: {name: float32 [H, W, C] image in [0, 1]}."""
  if spec.kind == "2d":
    points = run_lib.sample(model, 2048)
    limit = data.two_d_range(spec.name)
    return {
      "samples": visualize.scatter_2d(
        points, fixed, plot_range=limit, title=f"{model.method}: samples over data"
      )
    }
  n = min(len(fixed), 32)
  real = fixed[:n]
  columns = int(math.ceil(math.sqrt(SAMPLE_GRID_SIZE)))
  pictures = {"real": visualize.image_grid(real, columns=8)}
  if model.has_inference_encoder:  # WGAN-GP: the encoder is a critic
    rec = np.clip(model(real, training=False).numpy(), 0.0, 1.0)
    pictures["reconstruction"] = visualize.image_grid(rec, columns=8)
  pictures["samples"] = visualize.image_grid(
    run_lib.sample(model, SAMPLE_GRID_SIZE), columns=columns
  )
  if "reconstruction" in pictures:
    pictures["real_vs_reconstruction"] = visualize.pair_grid(real, rec, columns=8)
  return pictures


PNG_FILES = {"samples": "samples.png", "real_vs_reconstruction": "reconstructions.png"}
"""Pictures written into the workdir (name in `render_samples` -> file name)."""


def write_pngs(workdir, pictures):
  """Writes the `PNG_FILES` pictures into `workdir` (each file replaced atomically, so a viewer
  never sees a half-written one). Returns {name: path}.

  Raises:
    OutputWriteError: a file cannot be written (named, with the cause).
  """
  paths = {}
  for name, file in PNG_FILES.items():
    if name in pictures:
      path = os.path.join(workdir, file)
      with _writing(path):
        paths[name] = visualize.save_png(path, pictures[name])
  return paths


HPARAM_KEYS = (
  "method",
  "dataset",
  "z_dim",
  "batch_size",
  "train_steps",
  "num_vae",
  "lr",
  "seed",
  "ema_decay",
  "beta_rec",
  "beta_kl",
  "beta_neg",
  "gamma_r",
)


def hparams_of(config):
  """The run's hyper-parameters for TensorBoard's HParams plugin: {name: str|float|int|bool}
  (`HPARAM_KEYS` plus the method's own `tensorboard_hparams`, `filters` as text)."""
  keys = HPARAM_KEYS + methods.get(config.method).tensorboard_hparams
  values = {k: getattr(config, k) for k in keys}
  values["filters"] = ",".join(str(f) for f in config.filters) if config.filters else "default"
  return values


def write_hparams(config, logdir):
  """Records the run's hyper-parameters in `logdir` (= WORKDIR/tensorboard) with
  `tensorboard.plugins.hparams.api`. TensorBoard's HParams tab then lists the run with its
  method, betas, ... and, as metrics, the last values of the scalars in `logdir`'s subfolders
  (`train/*`, and `eval/*` once evaluated), so `tensorboard --logdir runs` compares runs."""
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=import-outside-toplevel

  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default():
    hp.hparams(hparams_of(config), trial_id=os.path.basename(os.path.abspath(config.workdir)))
  writer.close()


class TrainingMonitor(keras.callbacks.Callback):
  """Per log window ("epoch"): scalars, images, checkpoints, the NaN check, the phase switch.

  Runs only at window ends (and counts steps in Python in between), so the step itself stays
  a single `tf.function` with no host synchronisation.

  Args (beyond the run's pieces):
    before_first_save: called with the step once, just before the first checkpoint (writes
      config.json); an `OutputWriteError` it raises is raised after that checkpoint is saved.
    after_first_save: called with the step once, after the first checkpoint is saved (the
      segment's config_history.jsonl line: only a segment that saved a checkpoint gets one).
    stop: a `_StopOnSignals`: stop after the current step when it has a signal.
    logdir: the TensorBoard folder `writer` writes to (named when a write fails).
  """

  def __init__(
    self,
    run,
    writer,
    fixed,
    calibration,
    chief,
    progress=None,
    before_first_save=None,
    stop=None,
    after_first_save=None,
    logdir=None,
  ):
    super().__init__()
    self.progress = progress
    self.run, self.writer, self.fixed, self.chief = run, writer, fixed, chief
    self.calibration = calibration
    self.before_first_save = before_first_save
    self.after_first_save = after_first_save
    self.stop = stop
    self.logdir = logdir
    self.prepared_at = None
    self.config = run.config
    self.diverged = None
    self.last_saved = None
    self.last_images = None

  def on_train_begin(self, logs=None):
    self.step = int(self.run.model.step.numpy())
    self.last_saved = self.step
    self.last_images = self.step
    self.skipped = int(self.run.model.skipped_batches.numpy())

  def on_train_batch_end(self, batch, logs=None):
    model, config = self.run.model, self.config
    self.step += config.steps_per_execution
    if model.vae_phase and self.step >= config.num_vae:
      model.vae_phase = False
      model.make_train_function(force=True)
    if self.step >= config.train_steps:
      model.stop_training = True
    if self.stop is not None and self.stop.received is not None:
      model.stop_training = True  # the step is done; train_and_evaluate writes the checkpoint

  def on_epoch_end(self, epoch, logs=None):
    model, config = self.run.model, self.config
    step = int(model.step.numpy())
    self.step = step
    logs = {k: float(v) for k, v in (logs or {}).items()}
    report = model.non_finite_report()
    if report is None and any(not math.isfinite(v) for v in logs.values()):
      report = (step, sorted(k for k, v in logs.items() if not math.isfinite(v)))
    if report is not None:
      self.diverged = report  # never checkpointed: the last good checkpoint stays the latest
      model.stop_training = True
      return
    skipped = None
    if config.nan_policy == "skip_batch":
      skipped = int(model.skipped_batches.numpy())
      if skipped > self.skipped:
        logging.warning(
          "--nan_policy=skip_batch: skipped %d batch(es) with NaN/inf losses or "
          "gradients up to step %d (%d in all)",
          skipped - self.skipped,
          step,
          skipped,
        )
      self.skipped = skipped
      in_a_row = int(model.consecutive_skipped.numpy())
      if in_a_row >= config.max_consecutive_skips:
        self.diverged = (
          step,
          [
            f"every batch of the last {in_a_row} "
            f"(--max_consecutive_skips={config.max_consecutive_skips})"
          ],
        )
        model.stop_training = True
        return
    if self.chief:
      try:
        with _writing(self.logdir):
          with self.writer.as_default(step=step):
            for name, value in logs.items():
              tf.summary.scalar(f"train/{name}", value)
            if skipped is not None:
              tf.summary.scalar("train/skipped_batches", skipped)
            lr = model.encoder_optimizer.learning_rate
            tf.summary.scalar("train/learning_rate", float(np.asarray(lr)))
            if step - self.last_images >= config.image_every_steps or step >= config.train_steps:
              self.write_images(step)
          self.writer.flush()
      except OutputWriteError as e:
        self.raise_after_saving(step, e)
    if step - self.last_saved >= config.checkpoint_every_steps or step >= config.train_steps:
      self.save(step)

  def prepare(self, step):
    if self.prepared_at != step:
      self.run.model.prepare_for_inference(self.calibration)
      self.prepared_at = step

  def write_images(self, step):
    """TensorBoard image grids, and samples.png / reconstructions.png in the workdir.

    Raises:
      OutputWriteError: a PNG file cannot be written (TensorBoard's failures show when the
        writer flushes).
    """
    self.last_images = step
    self.prepare(step)
    pictures = render_samples(self.run.model, self.run.spec, self.fixed)
    for name, image in pictures.items():
      if name in PNG_FILES and name != "samples":
        continue  # the pair grid is for the PNG file; TensorBoard has both halves
      tf.summary.image(f"images/{name}", image[None], step=step)
    write_pngs(self.config.workdir, pictures)

  def raise_after_saving(self, step, error):
    """Saves the checkpoint of `step` unless it is saved already, then raises `error`
    (an `OutputWriteError`) with a note saying what was saved and how to continue."""
    if self.last_saved != step:
      try:
        self.save(step)
      except CheckpointWriteError as e:
        previous = self.run.manager.latest_checkpoint or "none"
        error.note = (
          f"the checkpoint of step {step} could not be written either ({e.cause}); the last "
          f"checkpoint is {previous}"
        )
        raise error from None
      except OutputWriteError as e:  # config.json / config_history.jsonl after the save
        error.note = str(e)  # its note included (OutputWriteError.__str__)
        raise error from None
    error.note = self.saved_note(step)
    raise error

  def saved_note(self, step):
    return (
      f"the checkpoint of step {step} is saved ({self.run.manager.latest_checkpoint}): "
      f"fix this and run the same command again to resume from step {step}"
    )

  def save(self, step):
    """Writes the checkpoint of `step` (with config.json and the segment's history line
    around the first one).

    Raises:
      CheckpointWriteError: the checkpoint cannot be written (the previous one is intact; a
        `ckpt-STEP_temp/` folder TF left is removed).
      OutputWriteError: config.json or config_history.jsonl cannot be written; the checkpoint
        was saved (the note says so).
    """
    self.prepare(step)
    config_error = None
    if self.before_first_save is not None:
      try:
        self.before_first_save(step)
      except OutputWriteError as e:
        config_error = e  # save the steps first, then say so
      self.before_first_save = None
    try:
      self.run.manager.save(checkpoint_number=step)
    except (OSError, tf.errors.OpError) as e:
      checkpoints_lib.remove_temporary_folders(self.run.manager.directory)
      previous = self.run.manager.latest_checkpoint or "none"
      raise CheckpointWriteError(
        f"Could not write the checkpoint of step {step} to {self.run.manager.directory} "
        f"({_cause(e)}). Is the disk full or the directory read-only? The previous checkpoint "
        f"is intact: {previous}.",
        _cause(e),
      ) from e
    self.last_saved = step
    if self.progress is not None and self.chief:
      self.progress.message(f"step {step}: saved checkpoint {self.run.manager.latest_checkpoint}")
    if config_error is not None:
      config_error.note = self.saved_note(step)
      raise config_error
    if self.after_first_save is not None:
      after, self.after_first_save = self.after_first_save, None
      try:
        after(step)
      except OutputWriteError as e:
        e.note = self.saved_note(step)
        raise


class _StopOnSignals:
  """SIGTERM/SIGINT -> stop after the current step (`received` holds the signal number).

  A second signal aborts at once: SIGINT raises KeyboardInterrupt, SIGTERM gets its default
  action. Installed only in the main thread (Python delivers signals there); the previous
  handlers come back on exit.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received = None
    self._previous = {}

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.received is not None:
      signal.signal(signum, signal.SIG_DFL)
      if signum == signal.SIGINT:
        raise KeyboardInterrupt
      os.kill(os.getpid(), signum)
      return
    self.received = signum
    logging.warning(
      "Received %s: finishing the current step, then writing a checkpoint "
      "(send it again to abort at once)",
      signal.Signals(signum).name,
    )

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}
    return False


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
      with _writing(path):  # before any step: nothing to save yet
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
  with workdir_lib.WorkdirLock(workdir, _lock_name(strategy)), _StopOnSignals() as stop:
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
  with _writing(logdir):  # before any step: nothing to save yet
    writer = tf.summary.create_file_writer(logdir)
    if chief and start == 0:
      with writer.as_default(step=0):
        tf.summary.text("config", "```\n" + config.to_json() + "\n```")
      writer.flush()
  if chief:
    with _writing(os.path.join(workdir, "tensorboard")):
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
      with _writing(os.path.join(workdir, workdir_lib.CONFIG_FILE)):
        record.save_config(config)

  def record_segment(_):
    if chief:
      history = os.path.join(workdir, workdir_lib.HISTORY_FILE)
      with _writing(history):
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
      raise TrainingDivergedError(_divergence_message(config, step, terms, run.manager))
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
      with _writing(metrics_json), open(metrics_json, "w") as f:
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
