"""The training loop's callback (`TrainingMonitor`) and its stop on SIGTERM/SIGINT.

At each log window's end the monitor writes TensorBoard scalars and, every
--image_every_steps, the pictures; checks for NaN/inf; switches from the --num_vae warm-up to
the introspective phase; and saves checkpoints, with config.json just before a segment's
first checkpoint and the segment's config_history.jsonl line just after it. `train_lib`
builds it and runs `model.fit` with it.

A write that fails outside the checkpoints (`train_outputs.OutputWriteError`) is raised
after the checkpoint of the step reached is saved, whenever one can still be; a checkpoint
that cannot be written raises `CheckpointWriteError`.
"""

from __future__ import annotations

import math
import os
import signal
import threading

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from as_introvae_tf import checkpoints as checkpoints_lib
from as_introvae_tf.train_outputs import PNG_FILES
from as_introvae_tf.train_outputs import OutputWriteError
from as_introvae_tf.train_outputs import cause
from as_introvae_tf.train_outputs import render_samples
from as_introvae_tf.train_outputs import write_pngs
from as_introvae_tf.train_outputs import writing


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written (disk full, read-only); the previous one is intact.

  Attributes:
    cause: what the operating system or TensorFlow said, one line.
  """

  def __init__(self, message, cause=None):
    super().__init__(message)
    self.cause = cause


class TrainingMonitor(keras.callbacks.Callback):
  """Per log window ("epoch"): scalars, images, checkpoints, the NaN check, the phase switch.

  Runs only at window ends (and counts steps in Python in between), so the step itself stays
  a single `tf.function` with no host synchronisation.

  Args (beyond the run's pieces):
    before_first_save: called with the step once, just before the first checkpoint (writes
      config.json); an `OutputWriteError` it raises is raised after that checkpoint is saved.
    after_first_save: called with the step once, after the first checkpoint is saved (the
      segment's config_history.jsonl line: only a segment that saved a checkpoint gets one).
    stop: a `StopOnSignals`: stop after the current step when it has a signal.
    logdir: the TensorBoard folder `writer` writes to (named when a write fails).
    render: `(model, spec, fixed) -> {name: float32 [H, W, C] image}`, the pictures
      (default `train_outputs.render_samples`).
    write: `(workdir, pictures) -> {name: path}`, writes the PNG files (default
      `train_outputs.write_pngs`).
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
    render=render_samples,
    write=write_pngs,
  ):
    super().__init__()
    self.progress = progress
    self.run, self.writer, self.fixed, self.chief = run, writer, fixed, chief
    self.calibration = calibration
    self.before_first_save = before_first_save
    self.after_first_save = after_first_save
    self.stop = stop
    self.logdir = logdir
    self.render, self.write = render, write
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
      pictures = None
      if step - self.last_images >= config.image_every_steps or step >= config.train_steps:
        pictures = self.pictures(step)  # an error computing them is no write error: as itself
      scalars = dict(logs)
      if skipped is not None:
        scalars["skipped_batches"] = skipped
      scalars["learning_rate"] = float(np.asarray(model.encoder_optimizer.learning_rate))
      try:
        self.write_summaries(step, scalars, pictures)
      except OutputWriteError as e:
        self.raise_after_saving(step, e)
    if step - self.last_saved >= config.checkpoint_every_steps or step >= config.train_steps:
      self.save(step)

  def prepare(self, step):
    if self.prepared_at != step:
      self.run.model.prepare_for_inference(self.calibration)
      self.prepared_at = step

  def pictures(self, step):
    """The pictures of `step` (BatchNorm statistics re-estimated first): `render`'s dict.

    Raises whatever computing them raises (a model error is not a write error).
    """
    self.last_images = step
    self.prepare(step)
    return self.render(self.run.model, self.run.spec, self.fixed)

  def write_summaries(self, step, scalars, pictures=None):
    """TensorBoard scalars `train/<name>` and, with `pictures`, the image grids, then
    samples.png / reconstructions.png in the workdir.

    Raises:
      OutputWriteError: TensorBoard's files (the folder named) or a PNG file cannot be
        written; only write errors (`train_outputs.writing`).
    """
    with writing(self.logdir):
      with self.writer.as_default(step=step):
        for name, value in scalars.items():
          tf.summary.scalar(f"train/{name}", value)
        for name, image in (pictures or {}).items():
          if name in PNG_FILES and name != "samples":
            continue  # the pair grid is for the PNG file; TensorBoard has both halves
          tf.summary.image(f"images/{name}", image[None], step=step)
      self.writer.flush()
    if pictures is not None:
      self.write(self.config.workdir, pictures)

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
        was saved (the note says so), and the segment's history line written even when
        config.json was not.
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
        f"({cause(e)}). Is the disk full or the directory read-only? The previous checkpoint "
        f"is intact: {previous}.",
        cause(e),
      ) from e
    self.last_saved = step
    if self.progress is not None and self.chief:
      self.progress.message(f"step {step}: saved checkpoint {self.run.manager.latest_checkpoint}")
    # The segment saved a checkpoint, so it gets its history line, config.json or not.
    history_error = None
    if self.after_first_save is not None:
      after, self.after_first_save = self.after_first_save, None
      try:
        after(step)
      except OutputWriteError as e:
        history_error = e
    error = config_error or history_error
    if error is not None:
      error.note = self.saved_note(step)
      if config_error is not None and history_error is not None:
        error.note = (
          f"{history_error.path} could not be written either ({history_error.cause}); " + error.note
        )
      raise error


class StopOnSignals:
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
