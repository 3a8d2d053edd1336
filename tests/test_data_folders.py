"""Tests of as_introvae_tf.data on image folders: real CIFAR-10 JPEGs, broken and mixed
folders, every listed extension, EXIF orientation, the JPEG header reader, --max_image_pixels."""

import json
import logging
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from as_introvae_tf import data


import harness

CIFAR_DIR = harness.CIFAR_DIR
needs_cifar = harness.needs_cifar
needs_fmnist = harness.needs_fmnist
pytestmark = pytest.mark.usefixtures("private_check_cache")


# ---------------------------------------------------------------------------------------------
# CIFAR-10 image folder
# ---------------------------------------------------------------------------------------------


@needs_cifar
def test_cifar10_folder_pipeline():
  spec = data.parse_dataset("cifar10", None, None)
  ds = data.build_dataset(spec, "test", 64, seed=0)
  assert ds.element_spec.shape == (64, 32, 32, 3)
  b = harness.first_batch(ds)
  assert b.dtype == np.float32 and b.shape == (64, 32, 32, 3)
  assert b.min() >= 0.0 and b.max() <= 1.0 and b.std() > 0.1
  # Unshuffled: sorted file order, pixels = decoded JPEG / 255.
  first_file = sorted((CIFAR_DIR / "test" / "airplane").glob("*.jpg"))[0]
  ref = tf.io.decode_jpeg(tf.io.read_file(str(first_file))).numpy() / 255.0
  b0 = harness.first_batch(data.build_dataset(spec, "test", 4, seed=0, shuffle=False))
  np.testing.assert_allclose(b0[0], ref, atol=1e-6)

  grey = harness.first_batch(
    data.build_dataset(data.parse_dataset("cifar10", None, 1), "test", 4, seed=0, shuffle=False)
  )
  assert grey.shape == (4, 32, 32, 1)
  np.testing.assert_allclose(grey[0], tf.image.rgb_to_grayscale(ref).numpy(), atol=1e-5)

  small = harness.first_batch(
    data.build_dataset(data.parse_dataset("cifar10", 16, None), "test", 8, seed=0)
  )
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
    b = harness.first_batch(data.build_dataset(spec, split, 2, seed=0))
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
  b = harness.first_batch(data.build_dataset(spec, "train", 1, seed=0))
  assert b.shape == (1, 16, 16, 3)
  np.testing.assert_allclose(b[0, 8, 8], [200 / 255, 10 / 255, 10 / 255], atol=1e-5)


def test_folder_size_sampling_honours_max_image_pixels(tmp_path):
  """The default `--image_size` is sampled only from images within `--max_image_pixels`."""
  from PIL import Image

  for i in range(3):
    Image.new("RGB", (40, 40), (10 * i, 0, 0)).save(tmp_path / f"{i}.png")
  spec = data.parse_dataset(f"folder:{tmp_path}", None, None, max_image_pixels=1600)
  assert spec.shape == (40, 40, 3)
  with pytest.raises(ValueError, match="decodes within --max_image_pixels=1599"):
    data.parse_dataset(f"folder:{tmp_path}", None, None, max_image_pixels=1599)
