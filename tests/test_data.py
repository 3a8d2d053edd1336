"""Tests of as_introvae_tf.data: 2-D samplers against the reference formulas, real Fashion-MNIST
and CIFAR-10 data, broken image folders, and --dataset parsing."""

import gzip
import json
import logging
import os
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from as_introvae_tf import data

CIFAR_DIR = data.shared_data_dir() / "cifar10"
FMNIST_FILES = [
  os.path.join(data.FASHION_MNIST_DIR, f"{p}-images-idx3-ubyte.gz") for p in ("train", "t10k")
]

needs_cifar = pytest.mark.skipif(
  not (CIFAR_DIR / "test").is_dir(), reason=f"CIFAR-10 image folder {CIFAR_DIR} is missing"
)
needs_fmnist = pytest.mark.skipif(
  not all(os.path.isfile(f) for f in FMNIST_FILES),
  reason="Fashion-MNIST IDX files missing: apt-get install -y dataset-fashion-mnist",
)


@pytest.fixture(autouse=True)
def _private_check_cache(tmp_path_factory, monkeypatch):
  """Keep find_bad_images' on-disk cache out of the user's ~/.cache during tests."""
  monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path_factory.mktemp("check_cache")))


def _first(ds):
  return next(iter(ds)).numpy()


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
  assert not np.array_equal(batches[0], _first(data.build_dataset(spec, "train", 64, seed=12)))
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
  b = _first(ds)
  assert b.min() >= 0.0 and b.max() <= 1.0 and b.max() > 0.9
  np.testing.assert_array_equal(b, _first(data.build_dataset(spec, "train", 128, seed=0)))
  assert not np.array_equal(b, _first(data.build_dataset(spec, "train", 128, seed=1)))
  # Unshuffled test split = t10k in file order.
  t = _first(data.build_dataset(spec, "test", 16, seed=0, shuffle=False))
  np.testing.assert_allclose(t[..., 0], data.load_fashion_mnist("test")[:16] / 255.0, atol=1e-6)
  # A finite epoch drops the remainder: 10000 // 96 batches.
  n = sum(1 for _ in data.build_dataset(spec, "test", 96, seed=0, repeat=False))
  assert n == 10000 // 96
  spec3 = data.parse_dataset("fashion_mnist", 32, 3)
  b3 = _first(data.build_dataset(spec3, "test", 8, seed=0))
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
# CIFAR-10 image folder
# ---------------------------------------------------------------------------------------------


@needs_cifar
def test_cifar10_folder_pipeline():
  spec = data.parse_dataset("cifar10", None, None)
  ds = data.build_dataset(spec, "test", 64, seed=0)
  assert ds.element_spec.shape == (64, 32, 32, 3)
  b = _first(ds)
  assert b.dtype == np.float32 and b.shape == (64, 32, 32, 3)
  assert b.min() >= 0.0 and b.max() <= 1.0 and b.std() > 0.1
  # Unshuffled: sorted file order, pixels = decoded JPEG / 255.
  first_file = sorted((CIFAR_DIR / "test" / "airplane").glob("*.jpg"))[0]
  ref = tf.io.decode_jpeg(tf.io.read_file(str(first_file))).numpy() / 255.0
  b0 = _first(data.build_dataset(spec, "test", 4, seed=0, shuffle=False))
  np.testing.assert_allclose(b0[0], ref, atol=1e-6)

  grey = _first(
    data.build_dataset(data.parse_dataset("cifar10", None, 1), "test", 4, seed=0, shuffle=False)
  )
  assert grey.shape == (4, 32, 32, 1)
  np.testing.assert_allclose(grey[0], tf.image.rgb_to_grayscale(ref).numpy(), atol=1e-5)

  small = _first(data.build_dataset(data.parse_dataset("cifar10", 16, None), "test", 8, seed=0))
  assert small.shape == (8, 16, 16, 3) and small.min() >= 0 and small.max() <= 1


# ---------------------------------------------------------------------------------------------
# Broken and mixed image folders
# ---------------------------------------------------------------------------------------------


def _cifar_files(n):
  return sorted((CIFAR_DIR / "train" / "dog").glob("*.jpg"))[:n]


def _make_mixed_folder(root: pathlib.Path):
  """root/train/{a,b}/ with 4 real RGB JPEGs, a grey PNG, an RGBA PNG, a 200x120 PNG, an 8x8 JPEG,
  a truncated JPEG, a text file named .jpg, and a README (ignored). Returns the bad file paths."""
  a, b = root / "train" / "a", root / "train" / "b"
  a.mkdir(parents=True)
  b.mkdir(parents=True)
  src = _cifar_files(6)
  for i, f in enumerate(src[:4]):
    shutil.copy(f, a / f"rgb{i}.jpg")
  rgb = Image.open(src[4]).convert("RGB")
  rgb.convert("L").save(b / "grey.png")
  rgba = rgb.convert("RGBA")
  rgba.putalpha(128)
  rgba.save(b / "rgba.png")
  rgb.resize((200, 120)).save(b / "big.png")
  rgb.resize((8, 8)).save(b / "tiny.jpg")
  raw = src[5].read_bytes()
  (b / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
  (b / "text.jpg").write_text("this is not an image\n")
  (b / "README.txt").write_text("ignored\n")
  return sorted([str(b / "text.jpg"), str(b / "truncated.jpg")])


@needs_cifar
def test_bad_images_fail_names_files(tmp_path):
  bad = _make_mixed_folder(tmp_path)
  assert data.find_bad_images(data.list_image_files(tmp_path, "train")) == bad
  spec = data.parse_dataset(f"folder:{tmp_path}", 32, 3)
  with pytest.raises(ValueError) as err:
    data.build_dataset(spec, "train", 2, seed=0)
  msg = str(err.value)
  assert "2 unreadable" in msg and bad[0] in msg and bad[1] in msg and "skip" in msg


@needs_cifar
def test_bad_images_skip_counts_and_converts(tmp_path, caplog):
  _make_mixed_folder(tmp_path)
  spec = data.parse_dataset(f"folder:{tmp_path}", 32, 3)
  with caplog.at_level(logging.WARNING, logger="as_introvae_tf.data"):
    ds = data.build_dataset(
      spec, "train", 1, seed=0, bad_images="skip", shuffle=False, repeat=False
    )
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert any(
    "skipped 2 unreadable" in w and "truncated.jpg" in w and "text.jpg" in w for w in warnings
  ), warnings
  batches = [x.numpy()[0] for x in ds]
  # Sorted good files: a/rgb0..3.jpg, b/big.png, b/grey.png, b/rgba.png, b/tiny.jpg.
  assert len(batches) == 8
  for x in batches:
    assert x.shape == (32, 32, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
  big, grey, rgba = batches[4], batches[5], batches[6]
  np.testing.assert_array_equal(grey[..., 0], grey[..., 1])  # grey tiled to RGB
  np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
  src = np.asarray(Image.open(tmp_path / "train" / "b" / "rgba.png"))
  np.testing.assert_allclose(rgba, src[..., :3] / 255.0, atol=1e-6)  # alpha dropped
  assert big.std() > 0.05 and batches[7].std() > 0.01
  # Grey output: every input reduced to one channel.
  spec1 = data.parse_dataset(f"folder:{tmp_path}", 24, 1)
  ds1 = data.build_dataset(spec1, "train", 8, seed=0, bad_images="skip", repeat=False)
  (only,) = [x.numpy() for x in ds1]
  assert only.shape == (8, 24, 24, 1) and 0 <= only.min() and only.max() <= 1
  # No test/ subfolder beside train/: asking for the test split names the missing folder.
  with pytest.raises(FileNotFoundError, match="test"):
    data.build_dataset(spec, "test", 1, seed=0, bad_images="skip")


@needs_cifar
def test_flat_and_class_folders_serve_both_splits(tmp_path):
  for i, f in enumerate(_cifar_files(3)):
    shutil.copy(f, tmp_path / f"{i}.jpg")
  spec = data.parse_dataset(f"folder:{tmp_path}", None, None)
  assert spec.shape == (32, 32, 3)  # read from the images
  for split in ("train", "test"):
    b = _first(data.build_dataset(spec, split, 2, seed=0))
    assert b.shape == (2, 32, 32, 3)
  # One grey image sorting first no longer makes the folder grey: the majority decides.
  Image.open(_cifar_files(1)[0]).convert("L").save(tmp_path / "0.jpg")
  assert data.parse_dataset(f"folder:{tmp_path}", None, None).shape == (32, 32, 3)
  for i in (1, 2):
    Image.open(_cifar_files(3)[i]).convert("L").save(tmp_path / f"{i}.jpg")
  assert data.parse_dataset(f"folder:{tmp_path}", None, None).shape == (32, 32, 1)


@needs_cifar
def test_bad_image_check_cache(tmp_path, monkeypatch):
  cache = tmp_path / "cache"
  monkeypatch.setenv(data.CACHE_DIR_ENV, str(cache))
  root = tmp_path / "imgs"
  root.mkdir()
  src = _cifar_files(3)
  for i, f in enumerate(src):
    shutil.copy(f, root / f"{i}.jpg")
  broken = root / "1.jpg"
  broken.write_bytes(src[1].read_bytes()[:300])
  files = data.list_image_files(root, "train")
  assert data.find_bad_images(files) == [str(broken)]
  (entry,) = cache.glob("image_check-*.json")
  # Unchanged files: the answer comes from the disk cache (planted here), not from decoding.
  planted = {"version": 2, "num_files": 3, "bad": {"planted": "why"}, "orientation": {}}
  entry.write_text(json.dumps(planted))
  data.image_scan._SCAN_CACHE.clear()
  assert data.find_bad_images(files) == ["planted"]
  assert data.find_bad_images(files, cache=False) == [str(broken)]
  # A changed file (size/mtime) is checked again.
  shutil.copy(src[1], broken)
  assert data.find_bad_images(files) == []
  # "" disables the disk cache.
  monkeypatch.setenv(data.CACHE_DIR_ENV, "")
  data.image_scan._SCAN_CACHE.clear()
  assert data.find_bad_images(files) == []
  assert len(list(cache.glob("image_check-*.json"))) == 2


@needs_cifar
def test_every_listed_extension_passes_the_check_and_trains_as_stored(tmp_path):
  """One file per IMAGE_EXTENSIONS entry (WebP included, which TensorFlow decodes to uint8
  only): the check accepts each, and the pipeline (default --bad_images=fail) yields it with
  the pixels Pillow reads (lossless formats exactly, JPEG within its decoders' rounding)."""
  src = Image.open(_cifar_files(1)[0]).convert("RGB")
  saved = {}
  for ext in data.IMAGE_EXTENSIONS:
    path = tmp_path / f"img{ext}"
    options = {"lossless": True} if ext == ".webp" else {}
    src.save(path, **options)
    saved[str(path)] = ext
  files = data.list_image_files(tmp_path, "train")
  assert sorted(files) == sorted(saved)
  scan = data.scan_images(files, cache=False)
  assert scan.bad == {} and scan.orientation == {}
  spec = data.parse_dataset(f"folder:{tmp_path}", None, None)
  assert spec.shape == (32, 32, 3)
  ds = data.build_dataset(spec, "train", 1, seed=0, shuffle=False, repeat=False)
  got = [b.numpy()[0] for b in ds]
  assert len(got) == len(files)
  for path, image in zip(files, got):
    want = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
    tolerance = 0.1 if saved[path] in (".jpg", ".jpeg") else 1e-6
    assert np.abs(image - want).max() <= tolerance, path
  # A grey 16-bit PNG is read at 8 bits, in [0, 1].
  deep = tmp_path / "deep" / "grey16.png"
  deep.parent.mkdir()
  values = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32, 1) * 64).astype(np.uint16)
  tf.io.write_file(str(deep), tf.io.encode_png(values))
  assert data.scan_images([str(deep)], cache=False).bad == {}
  grey = data.decode_file(str(deep)).numpy()
  np.testing.assert_allclose(grey, values / 65535.0, atol=1 / 255)


def _exif(orientation):
  exif = Image.Exif()
  exif[0x0112] = orientation
  return exif.tobytes()


@needs_cifar
@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_exif_orientation_is_applied_as_pil_exif_transpose(tmp_path, ext):
  """Every EXIF orientation 1..8 of a non-square real image: upright as
  PIL.ImageOps.exif_transpose (and image viewers) show it, in the check, the decoder and the
  training pipeline; the folder's size is sampled upright too."""
  from PIL import ImageOps  # pylint: disable=import-outside-toplevel

  src = Image.open(_cifar_files(2)[1]).convert("RGB").resize((32, 16))
  for orientation in range(1, 9):
    src.save(tmp_path / f"o{orientation}{ext}", exif=_exif(orientation), quality=95)
  files = data.list_image_files(tmp_path, "train")
  scan = data.scan_images(files, cache=False)
  assert scan.bad == {}
  assert scan.orientation == {str(tmp_path / f"o{o}{ext}"): o for o in range(2, 9)}
  tolerance = 1e-6 if ext == ".png" else 0.1
  for orientation in range(1, 9):
    path = str(tmp_path / f"o{orientation}{ext}")
    want = np.asarray(ImageOps.exif_transpose(Image.open(path)), np.float32) / 255.0
    got = data.decode_file(path, scan.orientation.get(path, 1)).numpy()
    assert got.shape == want.shape == ((16, 32, 3) if orientation < 5 else (32, 16, 3))
    assert np.abs(got - want).max() <= tolerance, orientation
  # Training: upright images, resized to the square; orientation 6 (a camera turned right).
  spec = data.parse_dataset(f"folder:{tmp_path}", 16, 3)
  batches = data.build_dataset(spec, "train", 1, seed=0, shuffle=False, repeat=False)
  by_file = dict(zip(files, (b.numpy()[0] for b in batches)))
  for orientation in (1, 6, 8):
    path = str(tmp_path / f"o{orientation}{ext}")
    upright = ImageOps.exif_transpose(Image.open(path))
    want = tf.image.resize(
      np.asarray(upright, np.float32)[None] / 255.0, [16, 16], antialias=True
    ).numpy()[0]
    assert np.abs(by_file[path] - np.clip(want, 0, 1)).max() <= tolerance + 1e-5, orientation
  assert (
    np.abs(by_file[str(tmp_path / f"o6{ext}")] - by_file[str(tmp_path / f"o8{ext}")]).max() > 0.1
  )


@needs_cifar
def test_fast_jpeg_header_agrees_with_pillow(tmp_path, monkeypatch):
  """read_header's own JPEG parser (size and EXIF orientation, little- and big-endian EXIF,
  a COM segment first) gives Pillow's answer; what it cannot parse goes to Pillow."""
  from PIL import ImageOps  # pylint: disable=import-outside-toplevel

  files = [str(f) for f in _cifar_files(40)]
  src = Image.open(files[0]).convert("RGB").resize((24, 10))
  for orientation in range(1, 9):
    little = tmp_path / f"ii{orientation}.jpg"
    src.save(little, exif=_exif(orientation), comment=b"a comment first")
    entry = (0x0112).to_bytes(2, "big") + (3).to_bytes(2, "big") + (1).to_bytes(4, "big")
    entry += orientation.to_bytes(2, "big") + b"\0\0"
    tiff = b"MM\0\x2a" + (8).to_bytes(4, "big") + (1).to_bytes(2, "big") + entry + b"\0" * 4
    big = tmp_path / f"mm{orientation}.jpg"
    src.save(big, exif=b"Exif\0\0" + tiff)
    assert (
      ImageOps.exif_transpose(Image.open(big)).size
      == ImageOps.exif_transpose(Image.open(little)).size
    )
    files += [str(little), str(big)]
  (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff")  # a JPEG start, then nothing
  files.append(str(tmp_path / "cut.jpg"))
  fast = [data.image_files.read_header(f) for f in files]
  assert fast[-1] is None
  monkeypatch.setattr(data.image_files, "_jpeg_header", lambda head: None)
  assert fast == [data.image_files.read_header(f) for f in files]
  assert fast[40:56:2] == [(10, 24, o) if o < 5 else (24, 10, o) for o in range(1, 9)]


def test_max_image_pixels_is_validated():
  spec = data.DatasetSpec("folder", "/nonexistent", (8, 8, 3))
  for bad in (0, -1, 1.5, True, "1000", None):
    with pytest.raises(ValueError, match="--max_image_pixels must be a positive integer"):
      data.build_dataset(spec, "train", 1, seed=0, max_image_pixels=bad)
    with pytest.raises(ValueError, match="--max_image_pixels"):
      data.scan_images(["x.png"], bad)
  assert data.DEFAULT_MAX_IMAGE_PIXELS == 50_000_000
  from as_introvae_tf import config as config_lib  # pylint: disable=import-outside-toplevel

  assert config_lib.ExperimentConfig().max_image_pixels == data.DEFAULT_MAX_IMAGE_PIXELS
  for bad in (0, -5):
    with pytest.raises(config_lib.ConfigError, match="--max_image_pixels"):
      config_lib.ExperimentConfig(workdir="/tmp/w", max_image_pixels=bad).validate()


def test_empty_and_missing_folders(tmp_path):
  empty = tmp_path / "empty"
  (empty / "train" / "cls").mkdir(parents=True)
  (empty / "train" / "cls" / "notes.txt").write_text("no images here")
  spec = data.DatasetSpec("folder", str(empty), (32, 32, 3))
  with pytest.raises(ValueError, match=f"no image files .* under {empty / 'train'}"):
    data.build_dataset(spec, "train", 4, seed=0)
  with pytest.raises(ValueError, match=str(empty)):
    data.parse_dataset(f"folder:{empty}", None, None)  # needs an image for the shape
  missing = tmp_path / "missing"
  with pytest.raises(FileNotFoundError, match=str(missing)):
    data.build_dataset(data.DatasetSpec("folder", str(missing), (32, 32, 3)), "train", 4, seed=0)


def test_folder_of_only_bad_files(tmp_path):
  (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
  (tmp_path / "y.png").write_text("nope")
  spec = data.DatasetSpec("folder", str(tmp_path), (8, 8, 3))
  with pytest.raises(ValueError, match="x.jpg"):
    data.build_dataset(spec, "train", 1, seed=0)
  with pytest.raises(ValueError, match="no readable image files"):
    data.build_dataset(spec, "train", 1, seed=0, bad_images="skip")


def test_non_square_folder_needs_image_size(tmp_path):
  Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "r.png")
  with pytest.raises(ValueError, match="--image_size"):
    data.parse_dataset(f"folder:{tmp_path}", None, None)
  spec = data.parse_dataset(f"folder:{tmp_path}", 16, None)
  b = _first(data.build_dataset(spec, "train", 1, seed=0))
  assert b.shape == (1, 16, 16, 3)
  np.testing.assert_allclose(b[0, 8, 8], [200 / 255, 10 / 255, 10 / 255], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# TFDS (offline: mock data, and the error without prepared data)
# ---------------------------------------------------------------------------------------------


def test_tfds_path(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
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
    b = _first(data.build_dataset(spec3, "train", 4, seed=0, data_dir=str(tmp_path)))
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


def test_folder_size_sampling_honours_max_image_pixels(tmp_path):
  """The default `--image_size` is sampled only from images within `--max_image_pixels`."""
  from PIL import Image

  for i in range(3):
    Image.new("RGB", (40, 40), (10 * i, 0, 0)).save(tmp_path / f"{i}.png")
  spec = data.parse_dataset(f"folder:{tmp_path}", None, None, max_image_pixels=1600)
  assert spec.shape == (40, 40, 3)
  with pytest.raises(ValueError, match="decodes within --max_image_pixels=1599"):
    data.parse_dataset(f"folder:{tmp_path}", None, None, max_image_pixels=1599)
