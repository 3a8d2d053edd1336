"""Fault injection on image folders (issues 12 and 26): tiny and odd folders, channels, looping
symlinks, huge images, a skip pipeline whose files go bad, every listed image format."""

import logging
import os
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import eval_lib
from as_introvae_tf import export_lib
from as_introvae_tf import train_lib

import harness

CIFAR_DIR = harness.CIFAR_DIR
needs_cifar = harness.needs_cifar
pytestmark = pytest.mark.usefixtures("private_check_cache")


# === Small and odd image folders ==============================================================


def _jpegs(n, cls="dog"):
  folder = os.path.join(CIFAR_DIR, "train", cls)
  return [os.path.join(folder, f) for f in sorted(os.listdir(folder))[:n]]


def _image_config(workdir, folder, **overrides):
  values = dict(
    method="vae",
    dataset=f"folder:{folder}",
    workdir=str(workdir),
    filters=(4,),  # one scale: what these tests check is the folder, not the network
    z_dim=4,
    batch_size=4,
    train_steps=2,
    num_vae=0,
    log_every_steps=2,
    checkpoint_every_steps=2,
    image_every_steps=100,
    keep_checkpoints=5,
    ema_decay=0.9,
    image_size=8,
    verbose="0",
  )
  values.update(overrides)
  return config_lib.ExperimentConfig(**values)


@needs_cifar
def test_ten_images_with_batch_4_train_evaluate_and_export(tmp_path):
  folder = tmp_path / "ten"
  folder.mkdir()
  for i, f in enumerate(_jpegs(10)):
    shutil.copy(f, folder / f"{i:02d}.jpg")
  workdir = tmp_path / "run"
  result = harness.train(_image_config(workdir, folder))
  assert result["step"] == 2
  evaluation = eval_lib.evaluate(
    str(workdir), eval_lib.EvalOptions(feature_net="none"), log=lambda text: None
  )
  assert evaluation["details"]["num_images"] == 10
  assert np.isfinite(evaluation["metrics"]["psnr"])
  exported = export_lib.export_run(str(workdir), str(tmp_path / "exports"), formats=["saved_model"])
  assert exported.model_card["example_shape"] == [8, 8, 3]


@needs_cifar
def test_too_little_data_for_the_batch_is_named_with_the_numbers_and_binds_nothing(tmp_path):
  folder = tmp_path / "three"
  folder.mkdir()
  for i, f in enumerate(_jpegs(3)):
    shutil.copy(f, folder / f"{i}.jpg")
  workdir = tmp_path / "run"
  with pytest.raises(
    ValueError,
    match=r"has 3 training image\(s\), fewer than one batch of "
    r"--batch_size=4: lower --batch_size to at most 3",
  ):
    train_lib.train_and_evaluate(_image_config(workdir, folder))
  assert not os.path.exists(workdir / "config.json")
  # The corrected command, with another architecture too, is not refused.
  corrected = _image_config(workdir, folder, batch_size=3, image_size=16)
  assert harness.train(corrected)["step"] == 2


@needs_cifar
def test_channels_come_from_the_flag_or_the_majority_and_every_image_is_converted(tmp_path, caplog):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel

  folder = tmp_path / "mixed"
  folder.mkdir()
  sources = _jpegs(6)
  Image.open(sources[0]).convert("L").save(folder / "0_grey_sorts_first.png")
  for i, f in enumerate(sources[1:]):
    shutil.copy(f, folder / f"{i + 1}_rgb.jpg")
  caplog.set_level(logging.INFO)
  spec = data.parse_dataset(f"folder:{folder}", None, None)
  assert spec.shape == (32, 32, 3)
  assert "1 of 6 sampled images are grey and 5 colour" in caplog.text
  assert "--channels=3 (RGB)" in caplog.text
  batch = next(iter(data.build_dataset(spec, "train", 6, seed=0, shuffle=False))).numpy()
  assert batch.shape == (6, 32, 32, 3)
  grey = data.parse_dataset(f"folder:{folder}", None, 1)
  assert grey.shape == (32, 32, 1)
  batch = next(iter(data.build_dataset(grey, "train", 6, seed=0, shuffle=False))).numpy()
  assert batch.shape == (6, 32, 32, 1)


@needs_cifar
def test_symlinked_folders_that_loop_count_each_image_once(tmp_path):
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel

  root = tmp_path / "root"
  (root / "a").mkdir(parents=True)
  for i, f in enumerate(_jpegs(3)):
    shutil.copy(f, root / "a" / f"{i}.jpg")
  os.symlink(root, root / "a" / "back_to_root")  # a loop
  os.symlink(root / "a", root / "same_as_a")  # a second way to the same folder
  files = data.list_image_files(str(root), "train")
  assert len(files) == 3 and len({os.path.realpath(f) for f in files}) == 3


def _blank_png(path, width, height):
  """A grey PNG of width x height zero pixels, written row by row (a few hundred kB for
  10000 x 10000; never held in memory here)."""
  import struct  # pylint: disable=import-outside-toplevel
  import zlib  # pylint: disable=import-outside-toplevel

  def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

  packer, row, parts = zlib.compressobj(9), b"\0" * (width + 1), []
  for _ in range(height):
    parts.append(packer.compress(row))
  parts.append(packer.flush())
  header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
  with open(path, "wb") as fh:
    fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)))
    fh.write(chunk(b"IEND", b""))


def _peak_rss_mib():
  import resource  # pylint: disable=import-outside-toplevel

  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@needs_cifar
def test_huge_image_is_named_with_its_size_before_it_is_decoded(tmp_path):
  """A 10000 x 10000 PNG (about 100 kB on disk, 2 GB to decode): with the default
  --max_image_pixels the check names it and its size without decoding it (this process's peak
  memory does not grow by the 100 MB even its 8-bit pixels would take); skip drops it; a lower
  limit refuses a normal-sized image, a higher one takes it."""
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel

  folder = tmp_path / "huge"
  folder.mkdir()
  for i, f in enumerate(_jpegs(4)):
    shutil.copy(f, folder / f"{i}.jpg")
  huge = folder / "poster.png"
  _blank_png(huge, 10000, 10000)
  assert os.path.getsize(huge) < 1_000_000
  spec = data.parse_dataset(f"folder:{folder}", None, None)  # sampled without decoding it
  assert spec.shape == (32, 32, 3)
  before = _peak_rss_mib()
  with pytest.raises(ValueError) as err:
    data.build_dataset(spec, "train", 2, seed=0)
  assert _peak_rss_mib() - before < 80
  message = str(err.value)
  assert str(huge) in message and "10000x10000 = 100,000,000 pixels" in message
  assert "--max_image_pixels=50,000,000" in message and "--bad_images skip" in message
  ds = data.build_dataset(spec, "train", 2, seed=0, bad_images="skip", repeat=False)
  assert sum(int(b.shape[0]) for b in ds) == 4
  assert data.count_examples(spec, "train", bad_images="skip") == 4
  # The limit is a flag: 32 x 32 = 1024 pixels against 1000, then 1024.
  small = tmp_path / "small"
  small.mkdir()
  shutil.copy(_jpegs(1)[0], small / "0.jpg")
  small_spec = data.parse_dataset(f"folder:{small}", None, None)
  with pytest.raises(ValueError, match=r"32x32 = 1,024 pixels, more than --max_image_pixels=1,000"):
    data.build_dataset(small_spec, "train", 1, seed=0, max_image_pixels=1000)
  ok = data.build_dataset(small_spec, "train", 1, seed=0, max_image_pixels=1024, repeat=False)
  assert [b.shape for b in ok] == [(1, 32, 32, 3)]


@needs_cifar
def test_skip_pipeline_whose_files_all_go_bad_stops_naming_the_folder(tmp_path):
  """--bad_images=skip on a folder whose files all break after the check (an infinite,
  repeated pipeline): it used to drop every batch for ever; now it stops after
  MAX_CONSECUTIVE_BAD_BATCHES batches in a row with an error naming the folder, at once. A
  single file going bad only drops its batch."""
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel
  from as_introvae_tf.data import folders  # pylint: disable=import-outside-toplevel

  folder = tmp_path / "going_bad"
  folder.mkdir()
  for i, f in enumerate(_jpegs(6)):
    shutil.copy(f, folder / f"{i}.jpg")
  spec = data.parse_dataset(f"folder:{folder}", 16, 3)
  ds = data.build_dataset(spec, "train", 2, seed=0, bad_images="skip", shuffle=False)
  (folder / "1.jpg").write_bytes(b"broken after the check")
  first = [b.numpy() for b in ds.take(6)]  # batches 0-1 and 2-3... : the bad one is dropped
  assert all(b.shape == (2, 16, 16, 3) for b in first)
  assert not any(np.allclose(b, 0) for b in first)
  for i in range(6):
    (folder / f"{i}.jpg").write_bytes(b"broken after the check")
  began = time.time()
  seen = 0
  with pytest.raises(tf.errors.InvalidArgumentError) as err:
    for _ in ds:
      seen += 1
      assert seen < 1000, "the skip pipeline did not stop"
  assert time.time() - began < 60
  message = folders.pipeline_stop_message(err.value)
  assert message == (
    f"image folder {folder}: {data.MAX_CONSECUTIVE_BAD_BATCHES} batches in a row failed to "
    "load (files changed, removed or unreadable since the check at the start): stopping "
    "instead of skipping for ever; check the folder and run again"
  )
  assert folders.pipeline_stop_message(ValueError("other")) is None


def test_train_command_prints_the_stopped_folder_in_one_line(tmp_path, monkeypatch, capsys):
  """The train command prints the stopped skip pipeline's message as one `error:` line, exit 1
  (training replaced by a function raising what the pipeline raises; the flags live in a
  FlagValues of their own, so absl's global FLAGS stay untouched)."""
  from absl import flags  # pylint: disable=import-outside-toplevel

  from as_introvae_tf import cli  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import train as train_cli  # pylint: disable=import-outside-toplevel

  stop = "[image folder /data/x: 100 batches in a row failed to load (...): stopping]"

  def going_bad(config):
    raise tf.errors.InvalidArgumentError(None, None, f"assertion failed: {stop}")

  fv = flags.FlagValues()
  config_lib.define_flags(fv)
  fv(["train", f"--workdir={tmp_path / 'w'}", "--dataset=8gaussians", "--method=vae"])
  monkeypatch.setattr(flags, "FLAGS", fv)
  monkeypatch.setattr(train_lib, "train_and_evaluate", going_bad)
  monkeypatch.setattr(cli, "quiet_absl_logging", lambda flag_values: None)  # process-wide
  assert train_cli.main(["train"]) == 1
  err = capsys.readouterr().err
  assert err.strip() == "error: " + stop[1:-1]


@needs_cifar
def test_folder_of_every_listed_format_trains_with_fail_and_skip(tmp_path):
  """A folder holding every listed extension (WebP passed the check, then failed in the
  pipeline: a traceback under fail, an endless loop under skip) trains to the end either way."""
  from PIL import Image  # pylint: disable=import-outside-toplevel

  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel

  folder = tmp_path / "formats"
  folder.mkdir()
  sources = _jpegs(len(data.IMAGE_EXTENSIONS))
  for src, ext in zip(sources, data.IMAGE_EXTENSIONS):
    Image.open(src).convert("RGB").save(folder / f"img{ext}")
  for mode in ("fail", "skip"):
    result = harness.train(_image_config(tmp_path / mode, folder, bad_images=mode))
    assert result["step"] == 2
