"""Metrics against hand values and independent NumPy/SciPy computations."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import tensorflow as tf

from as_introvae_tf import data
from as_introvae_tf import losses
from as_introvae_tf import metrics


def _torch_kl_div_batchmean(log_input, target):
  """PyTorch `F.kl_div(log_input, target, reduction="batchmean")`, written from its docs:
  pointwise `xlogy(target, target) - target * log_input`, summed, divided by the batch size."""
  return float(
    np.sum(scipy.special.xlogy(target, target) - target * log_input) / log_input.shape[0]
  )


def _reference_kl_jsd(data_points, model_points, r, bins=100):
  """The reference's `calculate_sample_kl` (both modes) with NumPy in place of torch."""
  rng = [[-r, r], [-r, r]]
  p, _, _ = np.histogram2d(data_points[:, 0], data_points[:, 1], bins=bins, density=True, range=rng)
  q, _, _ = np.histogram2d(
    model_points[:, 0], model_points[:, 1], bins=bins, density=True, range=rng
  )
  kl = _torch_kl_div_batchmean(np.log(q + 1e-14), p)
  m = 0.5 * (q + p)
  jsd = 0.5 * (
    _torch_kl_div_batchmean(np.log(p + 1e-14), m) + _torch_kl_div_batchmean(np.log(q + 1e-14), m)
  )
  return kl, jsd


# --- 2-D: KL / JSD ---------------------------------------------------------------------------


def test_identical_histograms_give_zero_kl_and_jsd():
  points = data.sample_2d("8gaussians", 3000, np.random.default_rng(0))
  assert abs(metrics.histogram_kl(points, points, 2.0)) < 1e-9
  assert abs(metrics.histogram_jsd(points, points, 2.0)) < 1e-9


def test_hand_computed_two_by_two_histogram():
  # R = 1, 2 x 2 bins of area 1. Data: all in bin (0, 0) -> p = [[1, 0], [0, 0]].
  # Model: half in (0, 0), half in (1, 1) -> q = [[.5, 0], [0, .5]].
  data_points = np.array([[-0.5, -0.5]] * 4)
  model_points = np.array([[-0.5, -0.5], [-0.5, -0.5], [0.5, 0.5], [0.5, 0.5]])
  kl = metrics.histogram_kl(data_points, model_points, 1.0, bins=2)
  assert kl == pytest.approx(0.5 * math.log(2.0), rel=1e-12)  # (1/2) * 1 * log(1 / .5)
  # M = [[.75, 0], [0, .25]].
  eps = 1e-14
  kl_mp = 0.5 * (
    0.75 * (math.log(0.75) - math.log(1 + eps)) + 0.25 * (math.log(0.25) - math.log(eps))
  )
  kl_mq = 0.5 * (
    0.75 * (math.log(0.75) - math.log(0.5 + eps)) + 0.25 * (math.log(0.25) - math.log(0.5 + eps))
  )
  jsd = metrics.histogram_jsd(data_points, model_points, 1.0, bins=2)
  assert jsd == pytest.approx(0.5 * (kl_mp + kl_mq), rel=1e-12)
  # The reverse-of-textbook form is unbounded: the empty bin of P costs log(1e-14).
  assert jsd > math.log(2.0)


def test_kl_jsd_match_a_numpy_port_of_the_reference():
  rng = np.random.default_rng(1)
  data_points = data.sample_2d("8gaussians", 5000, rng)
  model_points = rng.normal(0.0, 0.8, size=(5000, 2))
  kl, jsd = _reference_kl_jsd(data_points, model_points, 2.0)
  assert metrics.histogram_kl(data_points, model_points, 2.0) == pytest.approx(kl, rel=1e-10)
  assert metrics.histogram_jsd(data_points, model_points, 2.0) == pytest.approx(jsd, rel=1e-10)
  assert kl > 1.0 and jsd > 1.0


def test_points_outside_the_range_are_dropped():
  rng = np.random.default_rng(2)
  inside = rng.uniform(-1.9, 1.9, size=(400, 2))
  outside = np.concatenate([inside, [[5.0, 0.0], [0.0, -7.0], [3.0, 3.0]]])
  np.testing.assert_allclose(
    metrics.histogram_density(outside, 2.0), metrics.histogram_density(inside, 2.0)
  )
  # Densities integrate to 1 over the square: sum * bin area = 1.
  assert metrics.histogram_density(inside, 2.0).sum() * (4.0 / 100) ** 2 == pytest.approx(1.0)


def test_data_against_itself_gives_the_documented_floor():
  # METHOD.md: the 8-Gaussians generator against itself gives KL 0.68, JSD 0.27 (+- noise).
  rng = np.random.default_rng(3)
  kls = [
    metrics.histogram_kl(
      data.sample_2d("8gaussians", 5000, rng), data.sample_2d("8gaussians", 5000, rng), 2.0
    )
    for _ in range(3)
  ]
  assert 0.3 < np.mean(kls) < 1.1


# --- 2-D: gnELBO -------------------------------------------------------------------------------


def test_setup_grid_matches_torch_meshgrid_order():
  xx, yy, points = metrics.setup_grid(2.0, 5)
  x = np.linspace(-2, 2, 5)
  np.testing.assert_allclose(xx[:, 0], x, rtol=1e-6)
  np.testing.assert_allclose(yy[0, :], x, rtol=1e-6)
  np.testing.assert_allclose(points[7], [x[7 // 5], x[7 % 5]], rtol=1e-6)


def test_grid_normalized_elbo_on_a_toy_score():
  # Constant score: gnELBO = 1 / (G + N).
  data_points = np.zeros((10, 2), np.float32)
  assert metrics.grid_normalized_elbo(
    lambda x: np.ones(len(x)), data_points, 1.0, grid_points=4
  ) == pytest.approx(1.0 / 26.0)
  # e(x) = |x|^2 on the 3 x 3 grid {-1, 0, 1}^2: the grid sums to 2 * 3 * (1 + 0 + 1) = 12;
  # data scores 2 and 0: gnELBO = mean 1 / (12 + 2).
  points = np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)
  value = metrics.grid_normalized_elbo(
    lambda x: np.sum(np.square(x), axis=1), points, 1.0, grid_points=3, batch=4
  )
  assert value == pytest.approx(1.0 / 14.0, rel=1e-6)


# --- 2-D: mode coverage ------------------------------------------------------------------------


def test_mode_coverage_of_points_at_the_modes():
  modes = metrics.eight_gaussians_modes()
  np.testing.assert_allclose(modes, data.two_d._gaussian_centres() / 1.414)
  at_modes = np.repeat(modes, 10, axis=0)
  far = np.zeros((20, 2))  # the origin is far from every mode
  result = metrics.mode_coverage_8gaussians(np.concatenate([at_modes, far]))
  assert result["modes_covered"] == 8
  assert result["high_quality_fraction"] == pytest.approx(80 / 100)
  assert result["mode_counts"] == [10] * 8
  three = metrics.mode_coverage_8gaussians(modes[[0, 2, 5]] + 1e-3)
  assert three["modes_covered"] == 3 and three["mode_counts"][2] == 1
  # 3.5 standard deviations away: not high quality.
  off = modes + [3.5 * metrics.EIGHT_GAUSSIANS_STD, 0.0]
  assert metrics.mode_coverage_8gaussians(off)["high_quality_fraction"] == 0.0
  assert metrics.mode_coverage_8gaussians(modes, min_samples=2)["modes_covered"] == 0


def test_mode_coverage_of_true_data():
  points = data.sample_2d("8gaussians", 5000, np.random.default_rng(4))
  result = metrics.mode_coverage_8gaussians(points)
  assert result["modes_covered"] == 8
  assert result["high_quality_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.006)


# --- FID / KID ---------------------------------------------------------------------------------


def _expected_fid(f1, f2):
  """Independent: Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2), a symmetric PSD root by eigh."""
  m1, m2 = f1.mean(0), f2.mean(0)
  s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
  w, v = np.linalg.eigh(s1)
  root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
  return float(
    np.sum((m1 - m2) ** 2)
    + np.trace(s1)
    + np.trace(s2)
    - 2 * np.sum(np.sqrt(np.clip(inner, 0, None)))
  )


def test_fid_of_a_set_with_itself_is_zero():
  f = np.random.default_rng(5).normal(size=(300, 8))
  assert abs(metrics.fid_from_features(f, f)) < 1e-6


def test_fid_matches_an_independent_computation():
  rng = np.random.default_rng(6)
  f1 = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
  f2 = rng.normal(0.3, 1.5, size=(500, 6))
  assert metrics.fid_from_features(f1, f2) == pytest.approx(_expected_fid(f1, f2), rel=1e-6)


def test_frechet_distance_of_one_dimensional_gaussians():
  m1, s1, m2, s2 = 1.0, 4.0, -0.5, 0.25
  expected = (m1 - m2) ** 2 + s1 + s2 - 2 * math.sqrt(s1 * s2)
  assert metrics.frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-12)
  assert metrics.frechet_distance([m1], [[s1]], [m2], [[s2]]) == pytest.approx(expected)


def test_frechet_distance_with_singular_covariances_is_finite():
  rng = np.random.default_rng(7)
  f1 = np.concatenate([rng.normal(size=(50, 3)), np.zeros((50, 2))], axis=1)
  f2 = np.concatenate([rng.normal(size=(50, 3)), np.zeros((50, 2))], axis=1)
  value = metrics.fid_from_features(f1, f2)
  assert math.isfinite(value)
  assert value == pytest.approx(_expected_fid(f1, f2), abs=1e-4)
  with pytest.raises(ValueError, match="shapes"):
    metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_mmd2_unbiased_matches_explicit_sums():
  rng = np.random.default_rng(8)
  x, y = rng.normal(size=(7, 4)), rng.normal(1.0, size=(9, 4))

  def k(a, b):
    return (a @ b / 4 + 1) ** 3

  xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
  yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
  xy = sum(k(x[i], y[j]) for i in range(7) for j in range(9)) / (7 * 9)
  y7 = y[:7]
  yy7 = sum(k(y7[i], y7[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
  xy7 = sum(k(x[i], y7[j]) for i in range(7) for j in range(7)) / 49
  assert metrics.mmd2_unbiased(
    metrics.polynomial_kernel(x, x),
    metrics.polynomial_kernel(y, y),
    metrics.polynomial_kernel(x, y),
  ) == pytest.approx(xx + yy - 2 * xy)
  assert metrics.mmd2_unbiased(
    metrics.polynomial_kernel(x, x),
    metrics.polynomial_kernel(y7, y7),
    metrics.polynomial_kernel(x, y7),
  ) == pytest.approx(xx + yy7 - 2 * xy7)
  # One subset holding every point (subset_size capped at 7): the full unbiased estimate.
  mean, std = metrics.kid_from_features(x, y7, num_subsets=1, subset_size=100)
  assert mean == pytest.approx(xx + yy7 - 2 * xy7) and std == 0.0


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
  rng = np.random.default_rng(9)
  a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
  same, same_std = metrics.kid_from_features(a, b, num_subsets=20, subset_size=200)
  shifted, _ = metrics.kid_from_features(a, b + 0.5, num_subsets=20, subset_size=200)
  assert abs(same) < 0.02 and abs(same) < 3 * same_std + 1e-3
  assert shifted > 0.3
  # The mean is over subsets: reproducible with the seed.
  assert metrics.kid_from_features(a, b, num_subsets=20, subset_size=200) == (same, same_std)


# --- Reconstructions ---------------------------------------------------------------------------


def test_psnr_ssim_mse_hand_values():
  x = np.full((3, 16, 16, 1), 0.5, np.float32)
  x[:, ::2] = 0.2
  y = x + 0.1
  np.testing.assert_allclose(metrics.psnr(x, y), 20.0, rtol=1e-4)  # 10 log10(1 / 0.01)
  np.testing.assert_allclose(metrics.mse(x, y), 0.01, rtol=1e-5)
  np.testing.assert_allclose(metrics.ssim(x, x), 1.0, rtol=1e-6)
  assert np.all(np.isinf(metrics.psnr(x, x)))
  assert np.all(
    metrics.ssim(
      x, np.clip(x + np.random.default_rng(0).normal(0, 0.3, x.shape), 0, 1).astype(np.float32)
    )
    < 0.9
  )
  small = np.random.default_rng(1).uniform(size=(2, 8, 8, 3)).astype(np.float32)
  np.testing.assert_allclose(metrics.ssim(small, small), 1.0, rtol=1e-6)  # window shrinks
  with pytest.raises(ValueError):
    metrics.psnr(x, y[:, :8])


# --- Latents -----------------------------------------------------------------------------------


def test_active_units_on_constructed_means():
  n = 1000
  sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
  mu = np.stack(
    [
      np.random.default_rng(0).normal(size=n),  # variance ~1: active
      np.full(n, 3.0),  # constant: inactive
      0.05 * sign,  # variance 0.0025: inactive
      0.2 * sign,
    ],
    axis=1,
  )  # variance 0.04: active
  assert metrics.active_units(mu) == 2
  assert metrics.active_units(mu, threshold=0.001) == 3
  np.testing.assert_allclose(metrics.posterior_mean_variance(mu)[2:], [0.0025, 0.04])


def test_kl_per_dimension_sums_to_the_mean_gaussian_kl():
  rng = np.random.default_rng(10)
  mu = rng.normal(size=(50, 4)).astype(np.float32)
  logvar = rng.normal(scale=0.5, size=(50, 4)).astype(np.float32)
  per_dim = metrics.kl_per_dimension(mu, logvar)
  assert per_dim.shape == (4,)
  assert per_dim.sum() == pytest.approx(
    float(tf.reduce_mean(losses.gaussian_kl(tf.constant(mu), tf.constant(logvar)))), rel=1e-5
  )
  np.testing.assert_allclose(metrics.kl_per_dimension(np.zeros((3, 2)), np.zeros((3, 2))), 0.0)


def test_sqrtm_is_what_frechet_distance_uses():
  # Guard for the SciPy API: sqrtm returns the matrix (no disp tuple) in this version.
  root = scipy.linalg.sqrtm(np.diag([4.0, 9.0]))
  np.testing.assert_allclose(np.real(root), np.diag([2.0, 3.0]))
