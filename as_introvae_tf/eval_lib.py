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
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os

import numpy as np
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import data
from as_introvae_tf import feature_nets
from as_introvae_tf import losses
from as_introvae_tf import metrics
from as_introvae_tf import run as run_lib
from as_introvae_tf import visualize
from as_introvae_tf import workdir as workdir_lib

EVAL_VERSION = 2
"""Written to `metrics.json` as `eval_version`, so that saved evaluations made by an older
method can be told apart and redone (`tools/reproduce_images.py` reuses only this version).
1: held-out images taken in file order (a class-biased subset for image folders whenever
`num_samples` was below the split's size); 2: a seeded uniform subset (`held_out_dataset`)."""

DEFAULT_IMAGE_SAMPLES = 10000
"""Held-out images (and generated samples) for image metrics: the whole Fashion-MNIST /
CIFAR-10 test set."""


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
    for name in ("batch_size", "grid_points", "gnelbo_points", "kid_subsets", "kid_subset_size"):
      need(getattr(self, name) >= 1, f"--{name} must be >= 1; got {getattr(self, name)}")
    return self


def _mean_std(values):
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _figure_png(fig, path):
  """Saves a matplotlib figure as PNG; returns the float32 `[H, W, 3]` image."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  plt.close(fig)
  with open(path, "wb") as f:
    f.write(buf.getvalue())
  return tf.io.decode_png(buf.getvalue(), channels=3).numpy().astype(np.float32) / 255.0


def density_figure(xx, yy, density, path, title=None, size_px=480):
  """The papers' density plot: `pcolormesh` of `density` on the grid, jet colormap.

  Args:
    xx, yy: float `[n, n]` grid coordinates (`metrics.setup_grid`).
    density: float `[n, n]`, e.g. `exp(-e(x))`.
    path: PNG file to write.

  Returns:
    float32 `[size_px, size_px, 3]` image in [0, 1].
  """
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  dpi = 80
  fig, ax = plt.subplots(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
  ax.pcolormesh(xx, yy, density, cmap=plt.cm.jet, shading="auto", rasterized=True)
  ax.set_facecolor(plt.cm.jet(0.0))
  ax.set_xlim(xx.min(), xx.max())
  ax.set_ylim(yy.min(), yy.max())
  ax.set_aspect("equal")
  ax.set_axis_off()
  if title:
    ax.set_title(title)
  fig.tight_layout()
  return _figure_png(fig, path)


# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------


def _encode(model, x):
  mu, logvar = model.encoder(x, training=False)
  return mu, logvar


def _decode_prior(model, z, images):
  x = model.sampling_decoder()(z, training=False).numpy()
  return np.clip(x, 0.0, 1.0) if images else x


def _latent_metrics(mus, logvars):
  mu = np.concatenate(mus, 0)
  logvar = np.concatenate(logvars, 0)
  per_dim = metrics.kl_per_dimension(mu, logvar)
  variance = metrics.posterior_mean_variance(mu)
  scalars = {"active_units": metrics.active_units(mu), "kl_posterior": float(per_dim.sum())}
  details = {
    "kl_per_dimension": [float(v) for v in per_dim],
    "posterior_mean_variance": [float(v) for v in variance],
    "latent_examples": int(len(mu)),
  }
  return scalars, details


# ---------------------------------------------------------------------------------------------
# 2-D data
# ---------------------------------------------------------------------------------------------


def score_fn_2d(model):
  """The reference's score `e(x) = kl(E(x)) + ||x - D(mu(x))||^2` (beta 1, z = mu), nats.

  Returns:
    callable float32 `[b, 2]` -> float32 numpy `[b]`.
  """

  @tf.function(reduce_retracing=True)
  def score(x):
    mu, logvar = model.encoder(x, training=False)
    y = model.decoder(mu, training=False)
    return losses.gaussian_kl(mu, logvar) + losses.reconstruction_error(x, y)

  return lambda x: score(tf.convert_to_tensor(x, tf.float32)).numpy()


def sample_metrics_draw(name, model_points, rng, num):
  """One evaluation draw of the 2-D sample metrics, as the reference computes them.

  KL and JSD (`metrics.histogram_kl`, `metrics.histogram_jsd`, in nats) of `num` model points
  against `num` fresh data points each (separate draws, as the reference calls
  `calculate_sample_kl` twice), and their floors: the same data against a fresh draw of the
  data generator.

  Args:
    name: a 2-D dataset name (`data.TWO_D_DATASETS`).
    model_points: `num -> float32 [num, 2]` samples of the model.
    rng: `np.random.Generator` for the data draws (advanced).
    num: points per histogram (the reference: 5000).

  Returns:
    ({"kl", "jsd", "kl_floor", "jsd_floor": float}, the KL draw's model points [num, 2]).
  """
  plot_range = data.two_d_range(name)
  data_kl, samples_kl = data.sample_2d(name, num, rng), model_points(num)
  data_jsd, samples_jsd = data.sample_2d(name, num, rng), model_points(num)
  values = {
    "kl": metrics.histogram_kl(data_kl, samples_kl, plot_range),
    "jsd": metrics.histogram_jsd(data_jsd, samples_jsd, plot_range),
    "kl_floor": metrics.histogram_kl(data_kl, data.sample_2d(name, num, rng), plot_range),
    "jsd_floor": metrics.histogram_jsd(data_jsd, data.sample_2d(name, num, rng), plot_range),
  }
  return values, samples_kl


def evaluate_2d(run, options, outdir, log=print):
  """2-D metrics and pictures (see the module docstring).

  Returns:
    (scalars dict, details dict, pictures {name: float32 [H, W, 3]}).
  """
  model, name = run.model, run.spec.name
  plot_range = data.two_d_range(name)
  n = options.num_samples or metrics.KL_SAMPLES
  # Without an inference encoder (WGAN-GP's encoder is a critic) there is no ELBO: no gnELBO,
  # density or latent metrics.
  has_encoder = model.has_inference_encoder
  if has_encoder:
    score = score_fn_2d(model)
    xx, yy, grid = metrics.setup_grid(plot_range, options.grid_points)
    log(
      f"scoring the {options.grid_points}x{options.grid_points} grid on [-{plot_range}, "
      f"{plot_range}]^2"
    )
    grid_scores = metrics.batched_scores(score, grid)

  draws = {k: [] for k in ("kl", "jsd", "gnelbo", "kl_floor", "jsd_floor")}
  if not has_encoder:
    del draws["gnelbo"]
  coverage = []
  mus, logvars = [], []
  for d in range(options.eval_draws):
    rng = np.random.default_rng([options.seed, d])

    def model_points(num, rng=rng):
      z = rng.standard_normal((num, model.z_dim)).astype(np.float32)
      return _decode_prior(model, z, images=False)

    values, samples_kl = sample_metrics_draw(name, model_points, rng, n)
    for key, value in values.items():
      draws[key].append(value)
    if name == "8gaussians":
      coverage.append(metrics.mode_coverage_8gaussians(samples_kl))
    if has_encoder:
      gn_data = data.sample_2d(name, options.gnelbo_points, rng)
      draws["gnelbo"].append(
        metrics.grid_normalized_elbo_from_scores(
          metrics.batched_scores(score, gn_data), grid_scores
        )
      )
      if d == 0:
        mu, logvar = _encode(model, gn_data)
        mus.append(mu.numpy())
        logvars.append(logvar.numpy())
    log(
      f"draw {d + 1}/{options.eval_draws}: kl {draws['kl'][-1]:.4f} jsd {draws['jsd'][-1]:.4f}"
      + (f" gnelbo {draws['gnelbo'][-1]:.4g}" if has_encoder else "")
    )

  scalars = {}
  for key, values in draws.items():
    scalars[key], scalars[f"{key}_std"] = _mean_std(values)
  details = {
    "draws": {k: [float(v) for v in vals] for k, vals in draws.items()},
    "plot_range": plot_range,
    "samples_per_histogram": n,
    "gnelbo_data_points": options.gnelbo_points,
    "grid_points": options.grid_points,
  }
  if coverage:
    scalars["modes_covered"] = float(np.mean([c["modes_covered"] for c in coverage]))
    scalars["high_quality_fraction"] = float(
      np.mean([c["high_quality_fraction"] for c in coverage])
    )
    details["mode_counts"] = [c["mode_counts"] for c in coverage]
  if has_encoder:
    latent, latent_details = _latent_metrics(mus, logvars)
    scalars.update(latent)
    details.update(latent_details)
  else:
    details["notes"] = [
      "no inference encoder (the encoder is a critic): no gnELBO, density or latent metrics"
    ]

  rng = np.random.default_rng([options.seed, 10**6])
  pictures = {
    "samples_over_data": visualize.scatter_2d(
      run_lib.sample(model, 2048),
      data.sample_2d(name, 2048, rng),
      plot_range=plot_range,
      title=f"{model.method}: samples over data",
    ),
  }
  visualize.save_png(os.path.join(outdir, "samples_over_data.png"), pictures["samples_over_data"])
  if has_encoder:
    density = np.exp(-grid_scores).reshape(options.grid_points, options.grid_points)
    pictures["density"] = density_figure(
      xx, yy, density, os.path.join(outdir, "density.png"), title=f"{model.method}: exp(-e(x))"
    )
  return scalars, details, pictures


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def _feature_nets(run, options, log):
  nets, notes = [], []
  choice = options.feature_net
  if choice is None:
    net = feature_nets.get_default_feature_net(run.spec, log=log)
    if net is None:
      notes.append(
        f"no domain feature net: {run.spec.kind} data has no labels to train one "
        "(pass --feature_net=PATH)"
      )
    else:
      nets.append(net)
  elif str(choice).lower() != "none":
    nets.append(feature_nets.load_feature_net(choice))
  if options.inception_weights:
    nets.append(feature_nets.load_inception(options.inception_weights))
  else:
    notes.append("fid_inception skipped: no --inception_weights (nothing can be downloaded)")
  return nets, notes


def _interpolation_grid(model, images, rows=8, steps=8):
  """Rows `[x_a, D(mu_a + t (mu_b - mu_a)) for t in linspace(0, 1, steps), x_b]`."""
  rows = min(rows, len(images) // 2)
  a, b = images[:rows], images[rows : 2 * rows]
  mu_a, _ = _encode(model, a)
  mu_b, _ = _encode(model, b)
  cells = []
  for i in range(rows):
    t = tf.linspace(0.0, 1.0, steps)[:, None]
    z = mu_a[i][None] + t * (mu_b[i] - mu_a[i])[None]
    decoded = np.clip(model.decoder(z, training=False).numpy(), 0.0, 1.0)
    cells.extend([a[i], *decoded, b[i]])
  return visualize.image_grid(np.stack(cells), columns=steps + 2)


def held_out_dataset(
  spec, options, batch, bad_images="fail", data_dir=None, max_image_pixels=50_000_000
):
  """The held-out images of `options.split`, in a seeded random order, one pass.

  Image metrics use the first `num_samples` images of this dataset, so the order must not
  follow the files: an image folder lists `<class>/` folders in order, and CIFAR-10's first
  5000 test files are its first five classes. Shuffling every file of the split with
  `options.seed` makes any prefix a uniform random subset (the same one for every run and
  method evaluated with that seed); with all of the split it changes nothing but the order.

  Args:
    spec: an image `data.DatasetSpec`.
    options: `EvalOptions` (`split`, `seed`).
    batch: images per element.
    bad_images, data_dir, max_image_pixels: as the run's config (`--bad_images`,
      `--data_dir`, `--max_image_pixels`).

  Returns:
    tf.data.Dataset of float32 [batch, H, W, C] in [0, 1] (last batch may be smaller).
  """
  return data.build_dataset(
    spec,
    options.split,
    batch,
    seed=options.seed,
    shuffle=True,
    repeat=False,
    bad_images=bad_images,
    data_dir=data_dir,
    max_image_pixels=max_image_pixels,
  )


def evaluate_images(run, options, outdir, log=print):
  """Image metrics and pictures (see the module docstring).

  Returns:
    (scalars dict, details dict, pictures {name: float32 [H, W, C]}).
  """
  model, spec, config = run.model, run.spec, run.config
  n = options.num_samples or DEFAULT_IMAGE_SAMPLES
  available = data.count_examples(
    spec,
    options.split,
    bad_images=config.bad_images,
    max_image_pixels=config.max_image_pixels,
    data_dir=config.data_dir,
  )
  batch = min(options.batch_size, n, max(available, 1))  # a split smaller than a batch
  nets, notes = _feature_nets(run, options, log)
  ds = held_out_dataset(
    spec,
    options,
    batch,
    bad_images=config.bad_images,
    max_image_pixels=config.max_image_pixels,
    data_dir=config.data_dir,
  )
  has_encoder = model.has_inference_encoder
  if not has_encoder:
    notes.append(
      "no inference encoder (the encoder is a critic): no reconstruction or latent metrics"
    )
  per_image = {"psnr": [], "ssim": [], "mse": []}
  mus, logvars = [], []
  real_features = {net.name: [] for net in nets}
  shown = ([], [])  # the first 32 real images and reconstructions, for the pictures
  count = 0
  for x in ds:
    x = x.numpy()[: n - count]
    rec = x
    if has_encoder:
      mu, logvar = _encode(model, x)
      rec = np.clip(model.decoder(mu, training=False).numpy(), 0.0, 1.0)
      per_image["psnr"].append(metrics.psnr(x, rec))
      per_image["ssim"].append(metrics.ssim(x, rec))
      per_image["mse"].append(metrics.mse(x, rec))
      mus.append(mu.numpy())
      logvars.append(logvar.numpy())
    for net in nets:
      real_features[net.name].append(net.features(x, options.batch_size))
    if len(shown[0]) < 32:
      shown[0].extend(x[: 32 - len(shown[0])])
      shown[1].extend(rec[: 32 - len(shown[1])])
    count += len(x)
    if count >= n:
      break
  if count < 2:
    raise ValueError(
      f"the {options.split!r} split of {config.dataset} gave {count} image(s) in "
      f"batches of {batch}; need at least 2"
    )
  if count < n:
    notes.append(f"{options.split} split has {count} images (< --num_samples={n}): used all")
  log(f"reconstructed {count} {options.split} images")

  scalars = {k: float(np.mean(np.concatenate(v))) for k, v in per_image.items() if v}
  rng = np.random.default_rng([options.seed, 1])
  sample_features = {net.name: [] for net in nets}
  for start in range(0, count, batch):
    z = rng.standard_normal((min(batch, count - start), model.z_dim)).astype(np.float32)
    x = _decode_prior(model, z, images=True)
    for net in nets:
      sample_features[net.name].append(net.features(x, options.batch_size))
  details = {"split": options.split, "num_images": count, "feature_nets": {}}
  for net in nets:
    real = np.concatenate(real_features[net.name])
    fake = np.concatenate(sample_features[net.name])
    scalars[f"fid_{net.name}"] = metrics.fid_from_features(real, fake)
    kid, kid_std = metrics.kid_from_features(
      real, fake, options.kid_subsets, options.kid_subset_size, seed=options.seed
    )
    scalars[f"kid_{net.name}"] = kid
    scalars[f"kid_{net.name}_std"] = kid_std
    details["feature_nets"][net.name] = {"path": net.path, "feature_dim": int(real.shape[1])}
    log(f"fid_{net.name} {scalars[f'fid_{net.name}']:.4f} ({count} real vs {count} samples)")
  if has_encoder:
    latent, latent_details = _latent_metrics(mus, logvars)
    scalars.update(latent)
    details.update(latent_details)
  details["notes"] = notes

  real, rec = np.stack(shown[0]), np.stack(shown[1])
  columns = min(8, len(real))
  k = min(32, len(real)) // columns * columns
  pairs = np.concatenate(
    [
      np.stack([real[i : i + columns], rec[i : i + columns]]).reshape(-1, *real.shape[1:])
      for i in range(0, k, columns)
    ]
  )
  samples = run_lib.sample(model, 64)
  pictures = {"samples": visualize.image_grid(samples, columns=8)}
  if has_encoder:
    pictures["pairs"] = visualize.image_grid(pairs, columns=columns)
  if has_encoder and len(real) >= 2:
    pictures["interpolations"] = _interpolation_grid(model, real)
  for name, image in pictures.items():
    visualize.save_png(os.path.join(outdir, f"{name}.png"), image)
  return scalars, details, pictures


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


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
