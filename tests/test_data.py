"""Tests of as_introvae_tf.data: 2-D samplers against the reference formulas, --dataset parsing,
real Fashion-MNIST, TFDS (offline) and the autotune switch (image folders:
test_data_folders.py)."""

import gzip
import shutil

import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import data


import harness

CIFAR_DIR = harness.CIFAR_DIR
needs_cifar = harness.needs_cifar
needs_fmnist = harness.needs_fmnist
pytestmark = pytest.mark.usefixtures("private_check_cache")


def _draw(impl, name, num, seed):
  """num points from the NumPy reference port or its TensorFlow twin used by the pipeline."""
  if impl == "numpy":
    return data.sample_2d(name, num, np.random.default_rng(seed)).astype(np.float64)
  return data.sample_2d_tf(name, num, [seed, 0]).numpy().astype(np.float64)


both = pytest.mark.parametrize("impl", ["numpy", "tf"])


def _assert_same_distribution(x, y, r, bins=16):
  """Two-sample chi-square test on a bins x bins histogram of [-r, r]^2 (equal sample sizes):
  under equal distributions the statistic is about chi2(k - 1) for k occupied bins; allow 6
  standard deviations. A wrong constant or formula gives a statistic in the thousands."""
  hist = [np.histogram2d(a[:, 0], a[:, 1], bins=bins, range=[[-r, r], [-r, r]])[0] for a in (x, y)]
  total = hist[0] + hist[1]
  used = total > 0
  stat = np.sum((hist[0][used] - hist[1][used]) ** 2 / total[used])
  k = used.sum()
  assert stat < k + 6 * np.sqrt(2 * k), (stat, k)


# ---------------------------------------------------------------------------------------------
# 2-D samplers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", data.TWO_D_DATASETS)
@pytest.mark.parametrize("num", [0, 1, 7, 512])
def test_sample_2d_shape_dtype_seeding(name, num):
  x = data.sample_2d(name, num, np.random.default_rng(3))
  assert x.shape == (num, 2) and x.dtype == np.float32
  assert np.all(np.isfinite(x))
  np.testing.assert_array_equal(x, data.sample_2d(name, num, np.random.default_rng(3)))
  if num > 1:
    assert not np.array_equal(x, data.sample_2d(name, num, np.random.default_rng(4)))
  assert np.all(np.abs(x) < data.two_d_range(name))
  t = data.sample_2d_tf(name, num, [3, 1])
  assert t.shape == (num, 2) and t.dtype == tf.float32
  np.testing.assert_array_equal(t.numpy(), data.sample_2d_tf(name, num, [3, 1]).numpy())
  if num > 1:
    assert not np.array_equal(t.numpy(), data.sample_2d_tf(name, num, [3, 2]).numpy())
  assert np.all(np.abs(t.numpy()) < data.two_d_range(name))


@pytest.mark.parametrize("name", data.TWO_D_DATASETS)
def test_tf_port_matches_numpy_port(name):
  n = 200_000
  _assert_same_distribution(
    _draw("numpy", name, n, 0), _draw("tf", name, n, 0), data.two_d_range(name), bins=32
  )


def test_sample_2d_bad_input():
  with pytest.raises(ValueError, match="--dataset"):
    data.sample_2d("25gaussians", 4, np.random.default_rng(0))
  with pytest.raises(ValueError, match="num"):
    data.sample_2d("rings", -1, np.random.default_rng(0))
  # The reference's own spelling is accepted.
  assert data.sample_2d("8Gaussians", 3, np.random.default_rng(0)).shape == (3, 2)


def test_two_d_range():
  assert data.two_d_range("8gaussians") == 2.0
  for name in ("2spirals", "checkerboard", "rings"):
    assert data.two_d_range(name) == 4.0
  with pytest.raises(ValueError, match="--dataset"):
    data.two_d_range("moons")


@both
def test_8gaussians_matches_reference(impl):
  # ToyDataset('8Gaussians').next_batch: centres 2 * unit directions, noise 0.02, then / 1.414.
  x = _draw(impl, "8gaussians", 200_000, 0)
  angles = np.arange(8) * np.pi / 4
  centres = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1) / 1.414
  dist = np.linalg.norm(x[:, None, :] - centres[None], axis=-1)
  mode = dist.argmin(axis=1)
  assert dist.min(axis=1).max() < 0.1
  freq = np.bincount(mode, minlength=8) / len(x)
  np.testing.assert_allclose(freq, 1 / 8, atol=0.005)
  resid = x - centres[mode]
  for k in range(8):
    r = resid[mode == k]
    np.testing.assert_allclose(r.mean(axis=0), 0.0, atol=0.001)
    np.testing.assert_allclose(r.std(axis=0), 0.02 / 1.414, rtol=0.03)


@both
def test_checkerboard_matches_reference(impl):
  x = _draw(impl, "checkerboard", 200_000, 1)
  assert x.min() >= -4 and x.max() < 4
  cell = np.floor(x / 2).astype(int)  # cells of side 2 in [-4, 4)^2
  # Every point lies in a "black" square: the cell indices sum to an even number.
  assert np.all((cell[:, 0] + cell[:, 1]) % 2 == 0)
  # The 8 black squares are equally likely and uniformly filled.
  counts = {}
  for c in map(tuple, cell):
    counts[c] = counts.get(c, 0) + 1
  assert len(counts) == 8
  np.testing.assert_allclose(np.array(list(counts.values())) / len(x), 1 / 8, atol=0.005)
  frac = x / 2 - cell
  np.testing.assert_allclose(frac.mean(axis=0), 0.5, atol=0.005)
  np.testing.assert_allclose(frac.var(axis=0), 1 / 12, atol=0.002)


@both
def test_rings_matches_reference(impl):
  x = _draw(impl, "rings", 100_000, 2)
  radii = 3.0 * np.array([1.0, 0.75, 0.5, 0.25])
  r = np.linalg.norm(x, axis=1)
  ring = np.abs(r[:, None] - radii[None]).argmin(axis=1)
  assert np.abs(r - radii[ring]).max() < 0.6  # noise 0.08 per coordinate, rings 0.75 apart
  np.testing.assert_allclose(np.bincount(ring, minlength=4) / len(x), 0.25, atol=0.01)
  for k in range(4):
    np.testing.assert_allclose(np.mean(r[ring == k]), radii[k], atol=0.02)
  # Noise N(0, 0.08^2) per coordinate: the tangential residual of the outer ring.
  outer = x[ring == 0]
  tangential = outer[:, 0] * -np.sin(np.arctan2(outer[:, 1], outer[:, 0])) + outer[:, 1] * np.cos(
    np.arctan2(outer[:, 1], outer[:, 0])
  )
  assert abs(tangential.mean()) < 0.005
  np.testing.assert_allclose(np.std(r[ring == 0] - radii[0]), 0.08, rtol=0.05)


@both
def test_rings_uses_num_over_4_evenly_spaced_angles(impl):
  # num=8: every circle gets 2 angles, linspace(0, 2pi, 3)[:-1] = {0, pi}: all points on the
  # x axis (up to noise). num=12: angles k * 2pi/3 on every circle.
  for seed in range(20):
    x = _draw(impl, "rings", 8, seed)
    assert np.all(np.abs(x[:, 1]) < 0.5)
  x = np.concatenate([_draw(impl, "rings", 12, s) for s in range(50)])
  x = x[np.linalg.norm(x, axis=1) > 2.5]  # outer ring, radius 3
  ang = np.arctan2(x[:, 1], x[:, 0]) % (2 * np.pi)
  off = np.abs(((ang + np.pi / 3) % (2 * np.pi / 3)) - np.pi / 3)
  assert off.max() < 0.2


def _spirals_polar(num, rng):
  """Independent restatement of BNAF's 2spirals: radius t = 3 pi sqrt(u) (540 degrees),
  position t * (-cos t, sin t) plus U(0, 0.5)^2 jitter; the other arm is the point reflection;
  / 3 and N(0, 0.1^2) noise."""
  t = 3 * np.pi * np.sqrt(rng.random(num))
  arm = np.where(rng.random(num) < 0.5, 1.0, -1.0)[:, None]
  p = t[:, None] * np.stack([-np.cos(t), np.sin(t)], axis=1) + 0.5 * rng.random((num, 2))
  return arm * p / 3 + 0.1 * rng.standard_normal((num, 2))


@both
def test_2spirals_matches_reference(impl):
  n = 200_000
  x = _draw(impl, "2spirals", n, 7)
  # First half is one arm, second half its point reflection.
  a, b = x[: n // 2], -x[n // 2 :]
  for q in (0.05, 0.25, 0.5, 0.75, 0.95):
    np.testing.assert_allclose(np.quantile(a, q, axis=0), np.quantile(b, q, axis=0), atol=0.03)
  np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=0.01)
  # Same distribution as the polar restatement: compare 2-D histograms.
  _assert_same_distribution(x, _spirals_polar(n, np.random.default_rng(8)), 4.0, bins=32)
  # Odd sizes work (the reference crashes on them).
  assert _draw(impl, "2spirals", 5, 0).shape == (5, 2)


@pytest.mark.parametrize("name", data.TWO_D_DATASETS)
def test_two_d_pipeline_fresh_seeded_batches(name):
  spec = data.parse_dataset(name, None, None)
  assert spec == data.DatasetSpec("2d", name, (2,))
  ds = data.build_dataset(spec, "train", 64, seed=11)
  assert ds.element_spec.shape == (64, 2)
  batches = [b.numpy() for b in ds.take(3)]
  again = [b.numpy() for b in data.build_dataset(spec, "train", 64, seed=11).take(3)]
  for b, c in zip(batches, again):
    np.testing.assert_array_equal(b, c)
  assert not np.array_equal(batches[0], batches[1])
  assert not np.array_equal(
    batches[0], harness.first_batch(data.build_dataset(spec, "train", 64, seed=12))
  )
  # Batch i is sample_2d_tf(name, B, seed=(seed, i)); 2spirals rows are mixed so that each
  # replica's contiguous share of the global batch holds both arms.
  for i in range(3):
    ref = data.sample_2d_tf(name, 64, [11, i]).numpy()
    if name == "2spirals":
      assert not np.array_equal(batches[i], ref)
      np.testing.assert_array_equal(np.sort(batches[i], axis=0), np.sort(ref, axis=0))
    else:
      np.testing.assert_array_equal(batches[i], ref)


# ---------------------------------------------------------------------------------------------
# --dataset parsing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "bad", ["", "   ", "mnist2", "8gaussian", "folder:", "tfds:", "cifar1000", "Folder", None, 3]
)
def test_bad_dataset_strings(bad):
  with pytest.raises(ValueError, match="--dataset"):
    data.parse_dataset(bad, None, None)


@pytest.mark.parametrize("size", [0, -4, "28", True, 2.5])
def test_bad_image_size(size):
  with pytest.raises(ValueError, match="--image_size"):
    data.parse_dataset("fashion_mnist", size, None)


@pytest.mark.parametrize("channels", [0, 2, 4, "3", True])
def test_bad_channels(channels):
  with pytest.raises(ValueError, match="--channels"):
    data.parse_dataset("fashion_mnist", None, channels)


def test_parse_dataset_specs(tmp_path):
  assert data.parse_dataset("8Gaussians", None, None) == data.DatasetSpec("2d", "8gaussians", (2,))
  with pytest.raises(ValueError, match="--image_size"):
    data.parse_dataset("rings", 32, None)
  assert data.parse_dataset("fashion_mnist", None, None).shape == (28, 28, 1)
  assert data.parse_dataset("fashion_mnist", 32, 3) == data.DatasetSpec(
    "fashion_mnist", "fashion_mnist", (32, 32, 3)
  )
  missing = tmp_path / "nowhere"
  with pytest.raises(FileNotFoundError, match=str(missing)):
    data.parse_dataset(f"folder:{missing}", 32, 3)
  with pytest.raises(ValueError, match="--data_dir"):
    data.parse_dataset("tfds:mnist", None, None)


@needs_cifar
def test_parse_cifar10_shortcut_and_env(tmp_path, monkeypatch):
  spec = data.parse_dataset("cifar10", None, None)
  assert spec == data.DatasetSpec("folder", str(CIFAR_DIR), (32, 32, 3))
  assert data.parse_dataset("cifar10", 16, 1).shape == (16, 16, 1)
  assert data.parse_dataset(f"folder:{CIFAR_DIR}", None, None) == spec
  # $AS_INTROVAE_SHARED_DATA moves the shared data folder.
  own = tmp_path / "cifar10" / "train" / "cat"
  own.mkdir(parents=True)
  shutil.copy(CIFAR_DIR / "train" / "cat" / "0000.jpg", own / "a.jpg")
  monkeypatch.setenv(data.SHARED_DATA_ENV, str(tmp_path))
  assert data.parse_dataset("cifar10", None, None).name == str(tmp_path / "cifar10")
  monkeypatch.setenv(data.SHARED_DATA_ENV, str(tmp_path / "none"))
  monkeypatch.setattr(data.standard, "network_available", lambda *a, **k: False)  # no download here
  with pytest.raises(FileNotFoundError, match="AS_INTROVAE_SHARED_DATA"):
    data.parse_dataset("cifar10", None, None)


def test_build_dataset_bad_arguments():
  spec = data.parse_dataset("rings", None, None)
  with pytest.raises(ValueError, match="global_batch_size"):
    data.build_dataset(spec, "train", 0, seed=0)
  with pytest.raises(ValueError, match="--bad_images"):
    data.build_dataset(spec, "train", 8, seed=0, bad_images="ignore")
  with pytest.raises(ValueError, match="split"):
    data.build_dataset(data.parse_dataset("fashion_mnist", None, None), "val", 8, seed=0)


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST
# ---------------------------------------------------------------------------------------------


@needs_fmnist
def test_load_fashion_mnist_real():
  train, test = data.load_fashion_mnist("train"), data.load_fashion_mnist("test")
  assert train.shape == (60000, 28, 28) and test.shape == (10000, 28, 28)
  assert train.dtype == np.uint8 and test.dtype == np.uint8
  assert train.max() == 255 and train.min() == 0
  assert 50 < train.mean() < 100  # ~72.9 for Fashion-MNIST


@needs_fmnist
def test_fashion_mnist_pipeline():
  spec = data.parse_dataset("fashion_mnist", None, None)
  ds = data.build_dataset(spec, "train", 128, seed=0)
  assert ds.element_spec.shape == (128, 28, 28, 1) and ds.element_spec.dtype == tf.float32
  b = harness.first_batch(ds)
  assert b.min() >= 0.0 and b.max() <= 1.0 and b.max() > 0.9
  np.testing.assert_array_equal(
    b, harness.first_batch(data.build_dataset(spec, "train", 128, seed=0))
  )
  assert not np.array_equal(b, harness.first_batch(data.build_dataset(spec, "train", 128, seed=1)))
  # Unshuffled test split = t10k in file order.
  t = harness.first_batch(data.build_dataset(spec, "test", 16, seed=0, shuffle=False))
  np.testing.assert_allclose(t[..., 0], data.load_fashion_mnist("test")[:16] / 255.0, atol=1e-6)
  # A finite epoch drops the remainder: 10000 // 96 batches.
  n = sum(1 for _ in data.build_dataset(spec, "test", 96, seed=0, repeat=False))
  assert n == 10000 // 96
  spec3 = data.parse_dataset("fashion_mnist", 32, 3)
  b3 = harness.first_batch(data.build_dataset(spec3, "test", 8, seed=0))
  assert b3.shape == (8, 32, 32, 3) and b3.min() >= 0 and b3.max() <= 1
  np.testing.assert_array_equal(b3[..., 0], b3[..., 2])


def _idx_bytes(arr):
  header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
  return header + arr.astype(np.uint8).tobytes()


def test_fashion_mnist_idx_parsing_and_errors(tmp_path):
  imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
  good = tmp_path / "good"
  good.mkdir()
  (good / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(imgs)))
  np.testing.assert_array_equal(data.load_fashion_mnist("test", path=good), imgs)

  with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
    data.load_fashion_mnist("train", path=good)  # no train file there
  with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
    data.load_fashion_mnist("test", path=tmp_path / "missing")

  cases = {
    "magic": gzip.compress(_idx_bytes(imgs.reshape(5, 784))),  # idx2, not idx3
    "short": gzip.compress(_idx_bytes(imgs)[:-100]),  # size mismatch
    "gzip": gzip.compress(_idx_bytes(imgs))[:200],  # truncated gzip stream
    "noise": b"not an idx file at all",
  }
  for label, payload in cases.items():
    d = tmp_path / label
    d.mkdir()
    f = d / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(payload)
    with pytest.raises(ValueError, match=str(f)):
      data.load_fashion_mnist("test", path=d)
  with pytest.raises(ValueError, match="split"):
    data.load_fashion_mnist("validation")


# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# TFDS (offline: mock data, and the error without prepared data)
# ---------------------------------------------------------------------------------------------


def test_tfds_path(tmp_path):
  import tensorflow_datasets as tfds  # a pin of requirements.txt: missing or broken fails

  with pytest.raises(ValueError, match="--dataset"):
    data.parse_dataset("tfds:no_such_dataset_xyz", None, None, data_dir=str(tmp_path))
  spec = data.parse_dataset("tfds:mnist", None, None, data_dir=str(tmp_path))
  assert spec == data.DatasetSpec("tfds", "mnist", (28, 28, 1))
  with pytest.raises(FileNotFoundError, match=f"mnist.*{tmp_path}"):
    data.build_dataset(spec, "train", 4, seed=0, data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="--data_dir"):
    data.build_dataset(spec, "train", 4, seed=0)
  with tfds.testing.mock_data(num_examples=16):
    spec3 = data.parse_dataset("tfds:mnist", 32, 3, data_dir=str(tmp_path))
    b = harness.first_batch(data.build_dataset(spec3, "train", 4, seed=0, data_dir=str(tmp_path)))
  assert b.shape == (4, 32, 32, 3) and b.dtype == np.float32 and 0 <= b.min() and b.max() <= 1


@needs_fmnist
@pytest.mark.parametrize("value,autotune", [("0", False), ("1", None), (None, None)])
def test_pipeline_autotune_switch_keeps_the_data(value, autotune, monkeypatch):
  """AS_INTROVAE_DATA_AUTOTUNE=0 turns tf.data's autotuning off (the tests run so); unset or
  any other value leaves TensorFlow's default. The batches are the same either way."""
  spec = data.parse_dataset("fashion_mnist", None, None)
  if value is None:
    monkeypatch.delenv(data.DATA_AUTOTUNE_ENV, raising=False)
  else:
    monkeypatch.setenv(data.DATA_AUTOTUNE_ENV, value)
  ds = data.build_dataset(spec, "test", 16, seed=3)
  assert ds.options().autotune.enabled is autotune
  two_d = data.build_dataset(data.parse_dataset("8gaussians", None, None), "train", 8, seed=1)
  assert two_d.options().autotune.enabled is autotune
  monkeypatch.setenv(data.DATA_AUTOTUNE_ENV, "1")
  tuned = data.build_dataset(spec, "test", 16, seed=3)
  assert tuned.options().autotune.enabled is None
  for a, b in zip(ds.take(2), tuned.take(2)):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  with pytest.raises(TypeError, match="ds must be a tf.data.Dataset, got list"):
    data.with_pipeline_options([1, 2])
