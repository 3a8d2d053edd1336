"""Evaluation of a trained run: metrics, pictures, `metrics.json` and TensorBoard scalars.

`evaluate(workdir, options)` is the whole job behind `python -m as_introvae_tf.evaluate`. It
restores the run's latest checkpoint (config from `WORKDIR/config.json`; checkpoints are saved
ready for inference: BatchNorm statistics re-estimated, EMA decoder filled) and writes

  WORKDIR/eval/metrics.json        every number below (see `evaluate` for the keys)
  WORKDIR/eval/*.png               pictures
  WORKDIR/tensorboard/eval/        scalars `eval/<name>` and the pictures, step = training step

2-D data (S-IntroVAE reference metrics, `metrics.py` and docs/method.md "Metrics"): KL and JSD of
100 x 100 histograms of 5000 data vs 5000 decoder samples on `[-R, R]^2`, the grid-normalized
ELBO on a 1024 x 1024 grid with 12,800 data points, each the mean (and std) of `eval_draws`
independent draws; mode coverage for 8gaussians; pictures: samples over data and the density
`exp(-e(x))` on the grid (the papers' figures).

Images: PSNR / SSIM / per-pixel MSE of reconstructions `D(mu(x))` of held-out images; FID and
KID of generated samples vs real held-out images with a feature network (`feature_nets.py`:
`fid_<netname>` from a small classifier trained on the dataset, `fid_inception` with an
InceptionV3 weights file); pictures: real/reconstruction pairs, samples, latent interpolations.

Every run: active units (Burda et al. 2016) and the KL per latent dimension of the posterior.

Decoders: samples (KL/JSD, FID/KID, sample grids) come from `model.sampling_decoder()` (the EMA
decoder if the run has one, as `run.sample`); scores, reconstructions and interpolations
use the encoder with the decoder it was trained with (`model.decoder`, as `model.call`).

This module holds the options and the entry point; the 2-D metrics are in `eval_2d`, the image
metrics in `eval_images`, what both compute from the latent space in `eval_latent`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os

import numpy as np
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import data
from as_introvae_tf import metrics
from as_introvae_tf import run as run_lib
from as_introvae_tf import workdir as workdir_lib
from as_introvae_tf.eval_2d import evaluate_2d
from as_introvae_tf.eval_2d import sample_metrics_draw  # noqa: F401  (its former home)
from as_introvae_tf.eval_images import evaluate_images

EVAL_VERSION = 2
"""Written to `metrics.json` as `eval_version`, so that saved evaluations made by an older
method can be told apart and redone (`tools/reproduce_images.py` reuses only this version).
1: held-out images taken in file order (a class-biased subset for image folders whenever
`num_samples` was below the split's size); 2: a seeded uniform subset (`held_out_dataset`)."""


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """What to evaluate (the flags of `evaluate.py`).

  split: held-out image split ("test" or "train"; 2-D data is sampled afresh).
  num_samples: 2-D: data and model samples per KL/JSD histogram (default 5000, the reference);
    images: held-out images (a uniform subset seeded by `seed`, `held_out_dataset`) and
    generated samples (default 10000, capped at the split's size).
  eval_draws: independent 2-D evaluation draws averaged (mean and std reported).
  seed: seed of every evaluation draw (data, prior noise, KID subsets).
  batch_size: images per forward pass.
  grid_points: 2-D grid points per axis (reference 1024).
  gnelbo_points: 2-D data points of the gnELBO (reference 12,800 = 100 x 128).
  inception_weights: InceptionV3 weights file for `fid_inception` (None: skipped).
  feature_net: saved classifier for `fid_<netname>`; None: the cached default for the dataset
    (trained on first use); "none": skipped.
  kid_subsets, kid_subset_size: KID subsets (Binkowski et al.: 100 of 1000).
  checkpoint: checkpoint prefix to evaluate; None: the newest in WORKDIR/checkpoints.
  """

  split: str = "test"
  num_samples: int | None = None
  eval_draws: int = 3
  seed: int = 0
  batch_size: int = 100
  grid_points: int = metrics.GRID_POINTS
  gnelbo_points: int = metrics.GNELBO_DATA_POINTS
  inception_weights: str | None = None
  feature_net: str | None = None
  kid_subsets: int = 100
  kid_subset_size: int = 1000
  checkpoint: str | None = None

  def validate(self):
    def need(cond, message):
      if not cond:
        raise config_lib.ConfigError(message)

    need(self.split in data.SPLITS, f"--split must be one of {data.SPLITS}; got {self.split!r}")
    need(
      self.num_samples is None or self.num_samples >= 2,
      f"--num_samples must be >= 2; got {self.num_samples}",
    )
    need(self.eval_draws >= 1, f"--eval_draws must be >= 1; got {self.eval_draws}")
    need(
      isinstance(self.seed, numbers.Integral) and 0 <= self.seed < 2**32,
      f"--seed must be an integer in [0, 2**32 - 1]; got {self.seed!r}",
    )
    need(
      self.inception_weights is None or os.path.isfile(os.path.expanduser(self.inception_weights)),
      f"--inception_weights={self.inception_weights}: no such file (an InceptionV3 weights "
      "file, or leave the flag out to skip fid_inception)",
    )
    for name in ("batch_size", "grid_points", "gnelbo_points", "kid_subsets", "kid_subset_size"):
      need(getattr(self, name) >= 1, f"--{name} must be >= 1; got {getattr(self, name)}")
    return self


def format_table(result):
  """A short text table of `result["metrics"]`."""
  lines = [
    f"{result['method']} on {result['dataset']} at step {result['step']} ({result['workdir']})"
  ]
  width = max(len(k) for k in result["metrics"]) if result["metrics"] else 0
  for key, value in result["metrics"].items():
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    lines.append(f"  {key:<{width}}  {text}")
  return "\n".join(lines)


def write_tensorboard(workdir, step, scalars, pictures):
  """Scalars `eval/<name>` and images `eval/<picture>` in `WORKDIR/tensorboard/eval`."""
  writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", "eval"))
  with writer.as_default(step=step):
    for name, value in scalars.items():
      if value is not None and math.isfinite(float(value)):
        tf.summary.scalar(f"eval/{name}", float(value))
    for name, image in pictures.items():
      tf.summary.image(f"eval/{name}", np.asarray(image, np.float32)[None])
  writer.flush()
  writer.close()


def evaluate(workdir, options=None, log=print):
  """Evaluates a checkpoint of a run and writes `WORKDIR/eval/metrics.json`.

  The checkpoint is the one `run.restore_run` picks (`checkpoints.choose`, as training's
  resume, export and `load` do: the newest that restores; its warnings go to `log` as
  "warning: ...").

  Args:
    workdir: a training run directory (`config.json`, `checkpoints/`), relative or absolute.
    options: `EvalOptions`.
    log: called with progress strings.

  Returns:
    dict, also written as `metrics.json`:
      `workdir`, `method`, `dataset`, `step` (training step), `eval_version`, `checkpoint`,
      `sampling_decoder` ("ema_decoder" or "decoder"), `options` (the `EvalOptions`),
      `metrics` (scalars only, also in TensorBoard as `eval/<name>`):
        2-D: `kl`, `kl_std`, `jsd`, `jsd_std`, `gnelbo`, `gnelbo_std`, `kl_floor(_std)`,
          `jsd_floor(_std)` (data vs data), for 8gaussians `modes_covered` (of 8, mean over
          draws) and `high_quality_fraction`;
        images: `psnr` (dB), `ssim`, `mse` (per pixel), `fid_<net>`, `kid_<net>`,
          `kid_<net>_std` per feature net (`fmnist_cnn`, `cifar10_cnn`, `inception`, ...);
        both: `active_units` (of z_dim), `kl_posterior` (nats, mean KL(q(z|x) || N(0, I)));
      `details` (per-draw values, KL per dimension, mode counts, notes, ...),
      `pictures` {name: PNG path}.

  Raises:
    FileNotFoundError: not a run directory, or no checkpoint (`checkpoints.NoCheckpointError`).
    checkpoints.CheckpointError: no checkpoint restores, the one asked for is damaged, or it
      does not match config.json (see `run.restore_run`).
    ConfigError / ValueError: bad options, config.json or data.
  """
  options = (options or EvalOptions()).validate()
  run = run_lib.restore_run(workdir, options.checkpoint, log=lambda text: log(f"warning: {text}"))
  model, spec, config = run.model, run.spec, run.config
  workdir = config.workdir
  outdir = os.path.join(workdir, "eval")
  os.makedirs(outdir, exist_ok=True)
  step = int(model.step.numpy())
  log(f"evaluating {config.method} on {config.dataset} at step {step} ({run.restored})")
  if spec.kind == "2d":
    scalars, details, pictures = evaluate_2d(run, options, outdir, log)
  else:
    scalars, details, pictures = evaluate_images(run, options, outdir, log)
  result = {
    "workdir": workdir,
    "method": config.method,
    "dataset": config.dataset,
    "step": step,
    "eval_version": EVAL_VERSION,
    "checkpoint": run.restored,
    "config_changes": workdir_lib.RunRecord.load(workdir).changes(),
    "sampling_decoder": "ema_decoder" if model.ema_decoder is not None else "decoder",
    "options": dataclasses.asdict(options),
    "metrics": scalars,
    "details": details,
    "pictures": {name: os.path.join(outdir, f"{name}.png") for name in pictures},
  }
  path = os.path.join(outdir, "metrics.json")
  with open(path + ".tmp", "w") as f:
    json.dump(result, f, indent=2)
  os.replace(path + ".tmp", path)
  write_tensorboard(workdir, step, scalars, pictures)
  result["metrics_json"] = path
  return result
