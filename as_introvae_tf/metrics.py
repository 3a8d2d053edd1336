"""Evaluation metrics as pure functions: arrays in, numbers out; no models, no files.

2-D metrics follow the S-IntroVAE reference exactly (Daniel & Tamar 2021,
https://arxiv.org/abs/2012.13253, Sec. 6.1; code:
https://github.com/taldatech/soft-intro-vae-pytorch,
`soft_intro_vae_2d/train_soft_intro_vae_2d.py`, `calculate_sample_kl`,
`calculate_elbo_with_grid`, `setup_grid`):

* `histogram_kl` / `histogram_jsd`: 100 x 100 density histograms on `[-R, R]^2`
  (`np.histogram2d(..., density=True)`), compared with PyTorch's
  `kl_div(input, target, reduction="batchmean")` = `sum(target * (log target - input)) / 100`
  (the batch is the 100 histogram rows). Not the textbook KL/JS: the numbers are densities, the
  sum is divided by 100, and the "JSD" is `0.5 * [KL(M || P) + KL(M || Q)]` (unbounded).
* `grid_normalized_elbo`: the mean negative-ELBO score of data points normalized by the summed
  score over a 1024 x 1024 grid plus the data points.
* `mode_coverage_8gaussians`: modes hit and the fraction of samples near a mode.

Image metrics: `psnr`, `ssim`, `mse` of reconstructions (the AS-IntroVAE paper's Table 3,
https://proceedings.mlr.press/v189/changjie23a.html; TensorFlow's
`tf.image.psnr/ssim` on images in [0, 1]); `frechet_distance` / `fid_from_features` (Heusel et
al. 2017, computed as TF-GAN and pytorch-fid do) and `kid_from_features` (Binkowski et al. 2018,
unbiased MMD^2 with a cubic polynomial kernel) on features of any network.

Latent diagnostics: `active_units` (Burda et al. 2016) and `kl_per_dimension`.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import tensorflow as tf

HIST_BINS = 100
"""Bins per axis of the 2-D histograms (reference `hist_bins=100`)."""
LOG_EPS = 1e-14
"""Added inside the logs of the histogram densities (reference)."""
GRID_POINTS = 1024
"""Grid points per axis for the grid-normalized ELBO and the density plots (reference)."""
GNELBO_DATA_POINTS = 12800
"""Data points of the grid-normalized ELBO: 100 batches of 128 (reference)."""
KL_SAMPLES = 5000
"""Data and model samples per KL or JSD estimate (reference `num_samples=5000`)."""

# The 8 Gaussians as `data.sample_2d` draws them (reference `ToyDataset.next_batch`, scale 2,
# sig 0.02, everything divided by 1.414).
EIGHT_GAUSSIANS_SCALE = 2.0
EIGHT_GAUSSIANS_DIVISOR = 1.414
EIGHT_GAUSSIANS_STD = 0.02 / EIGHT_GAUSSIANS_DIVISOR


# ---------------------------------------------------------------------------------------------
# 2-D: histogram KL / JSD
# ---------------------------------------------------------------------------------------------


def histogram_density(points, plot_range, bins=HIST_BINS):
  """The reference's 2-D density histogram of a point set.

  `np.histogram2d(x, y, bins, range=[[-R, R], [-R, R]], density=True)`: points outside the
  square are dropped and the counts are divided by (points inside) x (bin area), so the values
  integrate to 1 over the square.

  Args:
    points: float `[N, 2]`, N >= 1.
    plot_range: R > 0, the half-width of the square.
    bins: bins per axis.

  Returns:
    float64 `[bins, bins]`, densities in 1 / (coordinate unit)^2; row = x bin, column = y bin.
    All NaN if no point lies inside the square (NumPy divides 0 by 0).

  Raises:
    ValueError: `points` not of shape `[N, 2]`.
  """
  points = np.asarray(points, np.float64)
  if points.ndim != 2 or points.shape[1] != 2:
    raise ValueError(f"points must be [N, 2], got shape {points.shape}")
  r = float(plot_range)
  with np.errstate(invalid="ignore", divide="ignore"):
    hist, _, _ = np.histogram2d(
      points[:, 0], points[:, 1], bins=bins, density=True, range=[[-r, r], [-r, r]]
    )
  return hist


def kl_div_batchmean(log_input, target):
  """NumPy port of PyTorch `F.kl_div(log_input, target, reduction="batchmean")`.

  `sum(xlogy(target, target) - target * log_input) / log_input.shape[0]`; entries with
  `target == 0` add 0 (PyTorch's `xlogy`), whatever `log_input` is.

  Args:
    log_input: float `[B, ...]`, the log of the second distribution.
    target: float, same shape, the first distribution (not in log space).

  Returns:
    float, `sum target * (log target - log_input)` divided by the first dimension B.
  """
  log_input = np.asarray(log_input, np.float64)
  target = np.asarray(target, np.float64)
  positive = target > 0
  terms = np.where(positive, target * (np.log(np.where(positive, target, 1.0)) - log_input), 0.0)
  return float(terms.sum() / log_input.shape[0])


def histogram_kl_from_densities(p, q):
  """KL term of the reference on two density histograms: `kl_div(log(q + 1e-14), p)`.

  Args:
    p: float `[bins, bins]`, data densities (`histogram_density`).
    q: float `[bins, bins]`, model densities.

  Returns:
    float, `(1 / bins) * sum p * (log p - log(q + 1e-14))` (bins with p = 0 add nothing).
  """
  return kl_div_batchmean(np.log(np.asarray(q, np.float64) + LOG_EPS), p)


def histogram_jsd_from_densities(p, q):
  """JSD term of the reference on two density histograms.

  `0.5 * [kl_div(log(p + 1e-14), M) + kl_div(log(q + 1e-14), M)]`, `M = (p + q) / 2`, i.e.
  `0.5 * [KL(M || P) + KL(M || Q)]` in the reference's scaling: the reverse of the textbook
  Jensen-Shannon divergence and unbounded; copied exactly so that numbers compare.

  Args:
    p: float `[bins, bins]` density histogram of the data.
    q: float `[bins, bins]` density histogram of the model.

  Returns:
    float, >= 0 up to the 1e-14 offset.
  """
  p = np.asarray(p, np.float64)
  q = np.asarray(q, np.float64)
  m = 0.5 * (p + q)
  return 0.5 * (kl_div_batchmean(np.log(p + LOG_EPS), m) + kl_div_batchmean(np.log(q + LOG_EPS), m))


def histogram_kl(data_points, model_points, plot_range, bins=HIST_BINS):
  """The S-IntroVAE 2-D "KL" between data samples and model samples.

  Source: reference `calculate_sample_kl(use_jsd=False)` with `xy_range=(-R, R)`, which uses
  5000 fresh data points and 5000 decoder samples (decoder mean, z ~ N(0, I)).

  Args:
    data_points: float `[N, 2]`, samples of the data distribution.
    model_points: float `[M, 2]`, samples of the model.
    plot_range: R (2 for 8gaussians, 4 for 2spirals, checkerboard, rings: `data.two_d_range`).
    bins: histogram bins per axis (reference 100).

  Returns:
    float, `(1/bins) * sum_bins p (log p - log(q + 1e-14))` with p, q the density histograms of
    data and model on `[-R, R]^2`: KL(data || model) scaled by 1 / (bins * bin area). 0 for
    identical histograms; lower is better. The true data generator against itself gives about
    0.68 on 8gaussians (a floor from sampling noise, measured here).

  Raises:
    ValueError: points not of shape `[N, 2]` (`histogram_density`).
  """
  p = histogram_density(data_points, plot_range, bins)
  q = histogram_density(model_points, plot_range, bins)
  return histogram_kl_from_densities(p, q)


def histogram_jsd(data_points, model_points, plot_range, bins=HIST_BINS):
  """The S-IntroVAE 2-D "JSD" between data samples and model samples.

  Source: reference `calculate_sample_kl(use_jsd=True)` (a separate fresh draw of 5000 + 5000
  points from the KL's). See `histogram_jsd_from_densities` for the exact (reverse) form.

  Args:
    data_points: float `[N, 2]`; model_points: float `[M, 2]`; plot_range: R; bins: per axis.

  Returns:
    float, 0 for identical histograms; lower is better (floor about 0.27 on 8gaussians).

  Raises:
    ValueError: points not of shape `[N, 2]` (`histogram_density`).
  """
  p = histogram_density(data_points, plot_range, bins)
  q = histogram_density(model_points, plot_range, bins)
  return histogram_jsd_from_densities(p, q)


# ---------------------------------------------------------------------------------------------
# 2-D: grid-normalized ELBO
# ---------------------------------------------------------------------------------------------


def setup_grid(plot_range, grid_points=GRID_POINTS):
  """The evaluation grid of the reference's `setup_grid(range_lim=R, n_pts)`.

  `x = linspace(-R, R, n)`; `xx, yy = meshgrid(x, x, indexing="ij")` (PyTorch's default), so
  point `k` is `(x[k // n], x[k % n])`.

  Returns:
    (xx, yy, points): float32 `[n, n]`, `[n, n]`, `[n * n, 2]`.
  """
  x = np.linspace(-float(plot_range), float(plot_range), int(grid_points), dtype=np.float32)
  xx, yy = np.meshgrid(x, x, indexing="ij")
  return xx, yy, np.stack([xx.ravel(), yy.ravel()], axis=1)


def batched_scores(score_fn, points, batch=8192):
  """Applies `score_fn` to `points` in batches.

  Args:
    score_fn: maps float32 `[b, 2]` to `[b]` (NumPy or a tensor).
    points: float `[N, 2]`.
    batch: points per call (the result does not depend on it up to float rounding).

  Returns:
    float64 `[N]`.
  """
  points = np.asarray(points, np.float32)
  out = [
    np.asarray(score_fn(points[i : i + batch]), np.float64).reshape(-1)
    for i in range(0, len(points), batch)
  ]
  return np.concatenate(out) if out else np.zeros([0], np.float64)


def grid_normalized_elbo_from_scores(data_scores, grid_scores):
  """gnELBO from precomputed scores: `mean(data) / (sum(grid) + sum(data))`.

  Args:
    data_scores: float `[N]`, scores e(x) >= 0 of data points.
    grid_scores: float `[G]`, scores of the grid points.

  Returns:
    float (dimensionless); lower is better.
  """
  data_scores = np.asarray(data_scores, np.float64)
  grid_scores = np.asarray(grid_scores, np.float64)
  return float(data_scores.mean() / (grid_scores.sum() + data_scores.sum()))


def grid_normalized_elbo(score_fn, data_points, plot_range, grid_points=GRID_POINTS, batch=8192):
  """The S-IntroVAE grid-normalized ELBO (gnELBO).

  Source: reference `calculate_elbo_with_grid` with `beta_kl = beta_recon = 1` and
  `setup_grid(range_lim=R, n_pts=1024)`. With the score (a negative ELBO without constants)
  `e(x) = kl(E(x)) + ||x - D(mu(x))||^2` (deterministic: z = mu, no 1/2 factor),
  `gnELBO = mean_{data} e / (sum_{grid} e + sum_{data} e)`. The reference uses 12,800 fresh
  data points (100 batches of 128); it prints about 6e-8 for a trained 8-Gaussians model (the
  S-IntroVAE paper's table is in units of 1e-7).

  Args:
    score_fn: float32 `[b, 2] -> [b]`, the score e(x) in nats.
    data_points: float `[N, 2]` data samples (the reference: N = 12,800).
    plot_range: R, the grid spans `[-R, R]^2`.
    grid_points: grid points per axis (reference 1024: 1,048,576 points).
    batch: points per `score_fn` call.

  Returns:
    float; lower is better.
  """
  _, _, grid = setup_grid(plot_range, grid_points)
  return grid_normalized_elbo_from_scores(
    batched_scores(score_fn, data_points, batch), batched_scores(score_fn, grid, batch)
  )


# ---------------------------------------------------------------------------------------------
# 2-D: mode coverage of 8 Gaussians
# ---------------------------------------------------------------------------------------------


def eight_gaussians_modes():
  """The 8 mode centres of `data.sample_2d("8gaussians")`: 2 * the 8 unit directions (axes,
  then diagonals, the reference's order) divided by 1.414. float64 `[8, 2]`."""
  d = 1.0 / np.sqrt(2.0)
  unit = np.array(
    [(1, 0), (-1, 0), (0, 1), (0, -1), (d, d), (d, -d), (-d, d), (-d, -d)], np.float64
  )
  return EIGHT_GAUSSIANS_SCALE * unit / EIGHT_GAUSSIANS_DIVISOR


def mode_coverage_8gaussians(points, num_std=3.0, min_samples=1):
  """Mode coverage of samples against the 8 Gaussians.

  A sample is "high quality" if it lies within `num_std` standard deviations
  (std = 0.02 / 1.414 per coordinate, Euclidean distance) of its nearest mode centre; a mode is
  covered if at least `min_samples` high-quality samples sit at it (the usual GAN mode-collapse
  counts, e.g. VEEGAN, with the data's own std). True data: about 98.9% high quality
  (P[chi^2_2 <= 9] = 1 - exp(-4.5)).

  Args:
    points: float `[N, 2]` samples.
    num_std: radius in standard deviations.
    min_samples: high-quality samples a mode needs to count as covered.

  Returns:
    dict: `modes_covered` int in [0, 8]; `high_quality_fraction` float in [0, 1];
    `mode_counts` list of 8 ints (high-quality samples per mode, modes in the reference's order).

  Raises:
    ValueError: `points` not of shape `[N, 2]`.
  """
  points = np.asarray(points, np.float64)
  if points.ndim != 2 or points.shape[1] != 2:
    raise ValueError(f"points must be [N, 2], got shape {points.shape}")
  centres = eight_gaussians_modes()
  dist = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=-1)  # [N, 8]
  nearest = np.argmin(dist, axis=1) if len(points) else np.zeros([0], np.int64)
  good = dist[np.arange(len(points)), nearest] <= num_std * EIGHT_GAUSSIANS_STD
  counts = np.bincount(nearest[good], minlength=len(centres))
  return {
    "modes_covered": int(np.sum(counts >= min_samples)),
    "high_quality_fraction": float(good.mean()) if len(points) else 0.0,
    "mode_counts": [int(c) for c in counts],
  }


# ---------------------------------------------------------------------------------------------
# Feature-distribution distances: FID, KID
# ---------------------------------------------------------------------------------------------


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
  """Frechet distance between two Gaussians N(mu1, sigma1) and N(mu2, sigma2).

  `d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))` (Heusel et al. 2017).
  Computed as pytorch-fid / TF-GAN's NumPy reference do: `scipy.linalg.sqrtm` of the product;
  if that is not finite (a singular product), `eps * I` is added to both covariances; a complex
  result with negligible imaginary diagonal (|imag| <= 1e-3) is replaced by its real part.

  Args:
    mu1: float `[D]` mean (a scalar allowed for D = 1).
    sigma1: float `[D, D]` covariance (a scalar allowed for D = 1: the variance).
    mu2: float `[D]` mean (a scalar allowed for D = 1).
    sigma2: float `[D, D]` covariance (a scalar allowed for D = 1: the variance).
    eps: diagonal offset for singular products.

  Returns:
    float64 >= 0 (up to rounding), in squared feature units.

  Raises:
    ValueError: shapes disagree, or the square root has a significant imaginary part.
  """
  mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if (
    mu1.shape != mu2.shape
    or sigma1.shape != sigma2.shape
    or sigma1.shape != (mu1.shape[0], mu1.shape[0])
  ):
    raise ValueError(
      f"shapes disagree: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}"
    )
  diff = mu1 - mu2
  with warnings.catch_warnings():  # singular products are handled below, as pytorch-fid does
    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
      offset = np.eye(sigma1.shape[0]) * eps
      covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"sqrtm has a significant imaginary part: {np.max(np.abs(covmean.imag))}")
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def feature_statistics(features):
  """Mean and covariance of features (pytorch-fid: `np.cov(rowvar=False)`, N - 1 normalizer).

  Args:
    features: float `[N, D]`, N >= 2.

  Returns:
    (mu float64 `[D]`, sigma float64 `[D, D]`).

  Raises:
    ValueError: `features` not of shape `[N, D]` with N >= 2.
  """
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f"features must be [N >= 2, D], got shape {features.shape}")
  return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def fid_from_features(features1, features2):
  """Frechet Inception Distance (or any feature network's FD) between two feature sets.

  Biased at small N (the estimate falls as N grows; compare numbers only at equal N and with
  the same feature network, TF-GAN's caveat).

  Args:
    features1: float `[N1, D]`, e.g. features of real test images.
    features2: float `[N2, D]`, e.g. features of generated images.

  Returns:
    float64, the Frechet distance of the two feature Gaussians; 0 for identical sets.

  Raises:
    ValueError: a feature set not of shape `[N, D]` with N >= 2 (`feature_statistics`).
  """
  mu1, sigma1 = feature_statistics(features1)
  mu2, sigma2 = feature_statistics(features2)
  return frechet_distance(mu1, sigma1, mu2, sigma2)


def polynomial_kernel(x, y, degree=3, gamma=None, coef0=1.0):
  """`k(x, y) = (gamma <x, y> + coef0)^degree`, gamma = 1/D by default. float64 `[N, M]`."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  gamma = 1.0 / x.shape[1] if gamma is None else gamma
  return (gamma * x.dot(y.T) + coef0) ** degree


def mmd2_unbiased(k_xx, k_yy, k_xy):
  """Unbiased MMD^2 from kernel matrices (diagonals of k_xx and k_yy excluded).

  Args:
    k_xx: `[m, m]`; k_yy: `[n, n]`; k_xy: `[m, n]`; m, n >= 2.

  Returns:
    float; can be slightly negative for equal distributions.
  """
  m, n = k_xx.shape[0], k_yy.shape[0]
  sum_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
  sum_yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
  return float(sum_xx + sum_yy - 2.0 * k_xy.mean())


def kid_from_features(
  features1, features2, num_subsets=100, subset_size=1000, degree=3, gamma=None, coef0=1.0, seed=0
):
  """Kernel Inception Distance (or any feature network's KID) between two feature sets.

  Binkowski et al. 2018 ("Demystifying MMD GANs"), as their reference code
  (`polynomial_mmd_averages`) and torch-fidelity compute it: the unbiased MMD^2 with the kernel
  `(<x, y> / D + 1)^3`, averaged over `num_subsets` random subsets of `subset_size` points drawn
  without replacement from each set (`subset_size` is capped at the smaller set size). Unbiased:
  its expectation is 0 for equal distributions, so estimates can be slightly negative.

  Args:
    features1: float `[N1, D]`; features2: float `[N2, D]`; N1, N2 >= 2.
    num_subsets: subsets averaged.
    subset_size: points per subset and per set.
    degree: the polynomial kernel's degree.
    gamma: its scale (None = 1 / D).
    coef0: its offset.
    seed: seed of the subset draws.

  Returns:
    (mean, std) floats over the subsets, in squared kernel units.

  Raises:
    ValueError: fewer than 2 features in a set.
  """
  f1 = np.asarray(features1, np.float64)
  f2 = np.asarray(features2, np.float64)
  size = int(min(subset_size, len(f1), len(f2)))
  if size < 2:
    raise ValueError(f"KID needs at least 2 features per set, got {len(f1)} and {len(f2)}")
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(int(num_subsets)):
    x = f1[rng.choice(len(f1), size, replace=False)]
    y = f2[rng.choice(len(f2), size, replace=False)]
    values.append(
      mmd2_unbiased(
        polynomial_kernel(x, x, degree, gamma, coef0),
        polynomial_kernel(y, y, degree, gamma, coef0),
        polynomial_kernel(x, y, degree, gamma, coef0),
      )
    )
  values = np.asarray(values)
  return float(values.mean()), float(values.std())


# ---------------------------------------------------------------------------------------------
# Reconstruction quality
# ---------------------------------------------------------------------------------------------


def _image_pair(images, reconstructions):
  a = tf.convert_to_tensor(images, tf.float32)
  b = tf.convert_to_tensor(reconstructions, tf.float32)
  if a.shape != b.shape or a.shape.rank != 4:
    raise ValueError(f"need two [B, H, W, C] batches of equal shape, got {a.shape} and {b.shape}")
  return a, b


def psnr(images, reconstructions):
  """Peak signal-to-noise ratio per image, `tf.image.psnr(max_val=1.0)`.

  `10 log10(1 / MSE)` with the MSE over all pixels and channels of an image (the AS-IntroVAE
  paper's Table 3 reports the mean over test images).

  Args:
    images: float `[B, H, W, C]` in [0, 1].
    reconstructions: float `[B, H, W, C]` in [0, 1] (clip decoder outputs first).

  Returns:
    float32 numpy `[B]` in dB; inf for identical images.

  Raises:
    ValueError: the two batches are not `[B, H, W, C]` of equal shape.
  """
  a, b = _image_pair(images, reconstructions)
  return tf.image.psnr(a, b, max_val=1.0).numpy()


def ssim(images, reconstructions, filter_size=11):
  """Structural similarity per image, `tf.image.ssim(max_val=1.0)`.

  TensorFlow's defaults (11 x 11 Gaussian window, sigma 1.5, k1 0.01, k2 0.03), averaged over
  the image and its channels; the window shrinks to the image size for images under 11 pixels.

  Args:
    images: float `[B, H, W, C]` in [0, 1].
    reconstructions: float `[B, H, W, C]` in [0, 1].
    filter_size: Gaussian window size (capped at min(H, W)).

  Returns:
    float32 numpy `[B]`, in [-1, 1]; 1 for identical images.

  Raises:
    ValueError: the two batches are not `[B, H, W, C]` of equal shape.
  """
  a, b = _image_pair(images, reconstructions)
  size = int(min(filter_size, a.shape[1], a.shape[2]))
  return tf.image.ssim(a, b, max_val=1.0, filter_size=size).numpy()


def mse(images, reconstructions):
  """Per-pixel mean squared error per image (mean over H, W and C).

  Args:
    images: float `[B, H, W, C]` in [0, 1].
    reconstructions: float `[B, H, W, C]` in [0, 1].

  Returns:
    float64 numpy `[B]`, in squared pixel units (pixels in [0, 1]).

  Raises:
    ValueError: the two arrays differ in shape.
  """
  a = np.asarray(images, np.float64)
  b = np.asarray(reconstructions, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"shapes disagree: {a.shape} vs {b.shape}")
  return np.mean(np.square(a - b).reshape(len(a), -1), axis=1)


# ---------------------------------------------------------------------------------------------
# Latent diagnostics
# ---------------------------------------------------------------------------------------------


def posterior_mean_variance(mu):
  """Variance over the data of the posterior mean, per latent dimension.

  Args:
    mu: float `[N, D]`, posterior means E_q(z|x)[z] of N data points.

  Returns:
    float64 `[D]` (population variance, normalizer N).

  Raises:
    ValueError: `mu` not of shape `[N, D]`.
  """
  mu = np.asarray(mu, np.float64)
  if mu.ndim != 2:
    raise ValueError(f"mu must be [N, D], got shape {mu.shape}")
  return mu.var(axis=0)


def active_units(mu, threshold=0.01):
  """Number of active latent units (Burda et al. 2016, "Importance Weighted Autoencoders").

  A unit u is active if `Cov_x(E_{q(u|x)}[u]) > threshold` (0.01 in the paper): its posterior
  mean varies across the data.

  Args:
    mu: float `[N, D]` posterior means of N data points.
    threshold: variance threshold.

  Returns:
    int in [0, D].

  Raises:
    ValueError: `mu` not of shape `[N, D]` (`posterior_mean_variance`).
  """
  return int(np.sum(posterior_mean_variance(mu) > threshold))


def kl_per_dimension(mu, logvar):
  """Mean over the data of KL(q(z_j|x) || N(0, 1)) per latent dimension j, in nats.

  `-0.5 * mean_x (1 + logvar_j - mu_j^2 - exp(logvar_j))`; the sum over j is the mean of
  `losses.gaussian_kl`.

  Args:
    mu: float `[N, D]`.
    logvar: float `[N, D]`.

  Returns:
    float64 `[D]`, nats.
  """
  mu = np.asarray(mu, np.float64)
  logvar = np.asarray(logvar, np.float64)
  return np.mean(-0.5 * (1.0 + logvar - np.square(mu) - np.exp(logvar)), axis=0)
