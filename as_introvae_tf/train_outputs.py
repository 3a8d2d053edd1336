"""What a training run writes besides its checkpoints, and the error of a failed write.

The pictures (`render_samples`: the sample grid or 2-D scatter, real images and their
reconstructions; `write_pngs`: WORKDIR/samples.png and reconstructions.png), the run's
hyper-parameters for TensorBoard's HParams table (`write_hparams`), and `OutputWriteError`,
raised when one of these files (or config.json, config_history.jsonl, metrics_train.json,
TensorBoard's event files) cannot be written. `writing(path)` turns an operating-system or
TensorFlow write error into that error, and nothing else: an error while computing a picture
(the model raising) is not a write failure and propagates as itself.

`train_lib` (the loop) and `train_monitor` (its callback) use these.
"""

from __future__ import annotations

import contextlib
import math
import os

import numpy as np
import tensorflow as tf

from as_introvae_tf import data
from as_introvae_tf import methods
from as_introvae_tf import run as run_lib
from as_introvae_tf import visualize

SAMPLE_GRID_SIZE = 64


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


def cause(error):
  """One line of what went wrong in a write (an OSError's strerror, an OpError's message)."""
  if isinstance(error, OSError) and error.strerror:
    return error.strerror
  text = getattr(error, "message", None) or str(error)
  text = text.strip().splitlines()[0] if text.strip() else type(error).__name__
  return text.split(" [Op:")[0][:300]


@contextlib.contextmanager
def writing(path):
  """Turns an OSError or tf.errors.OpError inside the block into `OutputWriteError(path)`."""
  try:
    yield
  except (OSError, tf.errors.OpError) as e:
    raise OutputWriteError(path, cause(e)) from e


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
      with writing(path):
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
