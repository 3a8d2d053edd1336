"""Evaluation of a 2-D run: the S-IntroVAE reference's metrics and the papers' pictures.

KL and JSD of 100 x 100 histograms of 5000 data vs 5000 decoder samples on `[-R, R]^2`, the
grid-normalized ELBO on a 1024 x 1024 grid with 12,800 data points, each the mean (and std)
of `eval_draws` independent draws; mode coverage for 8gaussians; pictures: samples over data
and the density `exp(-e(x))` on the grid (`metrics.py`, docs/method.md "Metrics").
`eval_lib.evaluate` calls `evaluate_2d`.
"""

from __future__ import annotations

import io
import os

import numpy as np
import tensorflow as tf

from as_introvae_tf import data
from as_introvae_tf import losses
from as_introvae_tf import metrics
from as_introvae_tf import run as run_lib
from as_introvae_tf import visualize
from as_introvae_tf.eval_latent import decode_prior
from as_introvae_tf.eval_latent import encode
from as_introvae_tf.eval_latent import latent_metrics


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
      return decode_prior(model, z, images=False)

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
        mu, logvar = encode(model, gn_data)
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
    latent, latent_details = latent_metrics(mus, logvars)
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
