"""Training progress on the terminal: one bar over the whole run, or plain periodic lines.

`RunProgress` is a Keras callback. Training runs `fit` with one "epoch" per log window, so
Keras' own progress bar would restart every `--log_every_steps`; this one spans the run:

  1234/1500 ━━━━━━━━━━━━━━━━╺━━━ 0:42 6.3 steps/s - loss_encoder: 0.25 - rec: 171.6 - ...

(step / --train_steps, time left, speed, and a handful of metrics; TensorBoard has them all).
The bar is `keras.utils.Progbar` counting absolute steps, so a resumed run continues it where
it stopped; speed and time left are measured from this process's first step (excluding it,
as Keras does, since it includes the graph compilation). Without a terminal (a log file, CI)
it prints one plain line per log window instead. `message()` prints a line (e.g. "saved a
checkpoint") above the bar without breaking it.
"""

from __future__ import annotations

import sys
import time

import keras

from as_introvae_tf import methods

MODES = ("bar", "lines", "silent")


def mode_for(verbose, stream=None):
  """`--verbose` -> a mode: "1" bar, "2" lines, "0" silent, "auto": bar on a terminal, else
  lines."""
  if verbose == "auto":
    stream = stream or sys.stdout
    return "bar" if hasattr(stream, "isatty") and stream.isatty() else "lines"
  return {"0": "silent", "1": "bar", "2": "lines"}[str(verbose)]


def format_duration(seconds):
  """`h:mm:ss`, `m:ss` or `Ns` (as Keras' Progbar writes its ETA)."""
  seconds = max(0, int(round(seconds)))
  if seconds >= 3600:
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
  if seconds >= 60:
    return f"{seconds // 60}:{seconds % 60:02d}"
  return f"{seconds}s"


class _Rate:
  """Steps per second since the first observed step (that step, with its compilation, is
  excluded once a second one is seen)."""

  def __init__(self, start_step, start_time):
    self.start = (start_step, start_time)
    self.first = None

  def seconds_per_step(self, step, now):
    if step <= self.start[0]:
      return 0.0
    if self.first is None:
      self.first = (step, now)
    if step > self.first[0]:
      return (now - self.first[1]) / (step - self.first[0])
    return (now - self.start[1]) / (step - self.start[0])


class _RunProgbar(keras.utils.Progbar):
  """`keras.utils.Progbar` over absolute steps: rate from this process's steps, shown as
  steps/s."""

  def __init__(self, target, start_step, **kwargs):
    super().__init__(target, **kwargs)
    self._rate = _Rate(start_step, self._start)

  def _estimate_step_duration(self, current, now):
    return self._rate.seconds_per_step(current, now)

  def _format_time(self, time_per_unit, unit_name):
    if time_per_unit <= 0:
      return ""
    return f" {1.0 / time_per_unit:.2f} {unit_name}s/s"


class RunProgress(keras.callbacks.Callback):
  """One progress display for a whole training run (see the module docstring).

  Args:
    total_steps: --train_steps.
    start_step: the step training starts (or resumes) from.
    method: --method (chooses the metrics shown: the method's `bar_metrics`).
    mode: "bar", "lines" (one line per `every` steps) or "silent".
    every: steps between lines in "lines" mode (--log_every_steps).
    steps_per_execution: steps per `on_train_batch_end` call.
    stream: where to write (default sys.stdout).
  """

  def __init__(
    self, total_steps, start_step, method, mode="bar", every=100, steps_per_execution=1, stream=None
  ):
    super().__init__()
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    self.total, self.step, self.mode = int(total_steps), int(start_step), mode
    self.start_step = int(start_step)
    self.keys = methods.get(method).bar_metrics
    self.every, self.spe = int(every), int(steps_per_execution)
    self.stream = stream or sys.stdout
    self.bar = None
    self.rate = None
    self.values = {}

  def _shown(self, logs):
    return [(k, float(logs[k])) for k in self.keys if k in (logs or {})]

  def on_train_begin(self, logs=None):
    now = time.time()
    self.rate = _Rate(self.start_step, now)
    if self.mode == "bar":
      self.bar = _RunProgbar(
        self.total, self.start_step, verbose=1, stateful_metrics=set(self.keys), unit_name="step"
      )
      self.bar.update(self.step)

  def on_train_batch_end(self, batch, logs=None):
    self.step = min(self.step + self.spe, self.total)
    if self.rate.first is None:
      self.rate.seconds_per_step(self.step, time.time())  # marks the first step
    values = dict(self._shown(logs))
    if self.bar is not None and set(values) != set(self.values):
      # The metrics changed (end of the VAE warm-up): drop the old ones from the bar.
      self.bar._values, self.bar._values_order = {}, []  # pylint: disable=protected-access
    self.values = values
    if self.bar is not None:
      self.bar.update(self.step, values=list(self.values.items()), finalize=False)

  def on_epoch_end(self, epoch, logs=None):
    if self.mode == "lines":
      self.values = dict(self._shown(logs)) or self.values
      self._write(self.line())

  def on_train_end(self, logs=None):
    if self.bar is not None:
      self.bar.update(self.step, values=list(self.values.items()), finalize=True)
      self.bar = None

  def line(self, now=None):
    """The plain progress line: `step S/T (P%) - R steps/s - ETA D - name: value ...`."""
    now = time.time() if now is None else now
    seconds = self.rate.seconds_per_step(self.step, now) if self.rate else 0.0
    text = f"step {self.step}/{self.total} ({100.0 * self.step / self.total:.0f}%)"
    if seconds > 0:
      text += (
        f" - {1.0 / seconds:.2f} steps/s - ETA "
        f"{format_duration(seconds * (self.total - self.step))}"
      )
    for k, v in self.values.items():
      text += f" - {k}: {v:.4g}"
    return text

  def _write(self, text):
    self.stream.write(text + "\n")
    self.stream.flush()

  def message(self, text):
    """Prints `text` on its own line (above the bar, which is then redrawn)."""
    if self.mode == "silent":
      return
    if self.bar is None:
      self._write(text)
      return
    self.stream.write("\r\x1b[2K" + text + "\n")
    self.stream.flush()
    self.bar._prev_total_width = 0  # pylint: disable=protected-access
    self.bar._last_update = 0  # pylint: disable=protected-access
    self.bar.update(self.step, values=list(self.values.items()), finalize=False)
