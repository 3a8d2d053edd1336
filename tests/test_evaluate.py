"""Evaluation end to end on tiny runs trained here; feature networks; bad input."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import config as config_lib
from as_introvae_tf import data
from as_introvae_tf import eval_images
from as_introvae_tf import eval_lib
from as_introvae_tf import feature_nets

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_feature_net(tmp_path_factory):
  """A Fashion-MNIST feature net trained for 1 step with the tool's library function."""
  path = tmp_path_factory.mktemp("feature_net") / "fashion_mnist.keras"
  info = feature_nets.train_feature_net(
    "fashion_mnist", str(path), max_steps=1, batch_size=32, eval_examples=200, log=lambda *_: None
  )
  assert info["name"] == "fmnist_cnn" and info["steps"] == 1
  assert 0.0 <= info["test_accuracy"] <= 1.0
  assert json.load(open(str(path) + ".json"))["input_shape"] == [28, 28, 1]
  return str(path)


# --- Feature networks --------------------------------------------------------------------------


def test_feature_net_features_and_name(tiny_feature_net):
  net = feature_nets.load_feature_net(tiny_feature_net)
  assert net.name == "fmnist_cnn" and net.input_shape == (28, 28, 1)
  x = np.random.default_rng(0).uniform(size=(5, 28, 28, 1)).astype(np.float32)
  features = net.features(x, batch_size=2)
  assert features.shape == (5, 128) and np.all(np.isfinite(features))
  # Other sizes and RGB are adapted to the net's input.
  rgb = np.random.default_rng(1).uniform(size=(3, 32, 32, 3)).astype(np.float32)
  assert net.features(rgb).shape == (3, 128)


def test_default_feature_net_is_taken_from_the_cache(tiny_feature_net, tmp_path, monkeypatch):
  monkeypatch.setenv(feature_nets.CACHE_DIR_ENV, str(tmp_path))
  spec = data.parse_dataset("fashion_mnist", None, None)
  path = feature_nets.default_feature_net_path("fashion_mnist")
  assert path == tmp_path / "feature_nets" / "fashion_mnist.keras"
  os.makedirs(path.parent)
  shutil.copy(tiny_feature_net, path)
  messages = []
  net = feature_nets.get_default_feature_net(spec, log=messages.append)
  assert net.name == "fmnist_cnn" and not messages  # found: nothing trained
  assert feature_nets.get_default_feature_net(data.parse_dataset("8gaussians", None, None)) is None


def test_fashion_mnist_labels_align_with_images():
  labels = feature_nets.load_fashion_mnist_labels("test")
  assert labels.shape == (10000,) and labels.dtype == np.uint8
  assert set(np.unique(labels)) == set(range(10))
  assert len(data.load_fashion_mnist("test")) == len(labels)
  assert np.all(np.bincount(labels) == 1000)


def test_folder_labels_come_from_class_folders(tmp_path):
  for split in ("train", "test"):
    for cls, value in (("cat", 0), ("dog", 255)):
      os.makedirs(tmp_path / split / cls)
      for i in range(2):
        img = tf.fill([6, 6, 3], tf.constant(value, tf.uint8))
        tf.io.write_file(str(tmp_path / split / cls / f"{i}.png"), tf.io.encode_png(img))
  spec = data.parse_dataset(f"folder:{tmp_path}", None, None)
  images, labels, names = feature_nets.load_labeled(spec, "train")
  assert names == ("cat", "dog") and list(labels) == [0, 0, 1, 1]
  assert images.shape == (4, 6, 6, 3) and images[2].min() == 255
  with pytest.raises(ValueError, match="no class labels"):
    feature_nets.load_labeled(data.parse_dataset("8gaussians", None, None), "train")


def test_held_out_subset_is_a_seeded_uniform_sample_not_the_first_class_folders(tmp_path):
  """Real CIFAR-10 test images in `<class>/` folders: in file order the first half of the split
  is one class; `held_out_dataset` (what image metrics read) mixes both, is a permutation of
  the split, and depends on the seed alone."""
  source = data.shared_data_dir() / "cifar10" / "test"
  for cls in ("airplane", "truck"):
    os.makedirs(tmp_path / "test" / cls)
    for name in sorted(os.listdir(source / cls))[:6]:
      shutil.copy(source / cls / name, tmp_path / "test" / cls / name)
  spec = data.parse_dataset(f"folder:{tmp_path}", None, None)
  in_file_order = np.concatenate(
    list(
      data.build_dataset(spec, "test", 6, seed=0, shuffle=False, repeat=False).as_numpy_iterator()
    )
  )
  assert np.abs(in_file_order[:6] - in_file_order[6:]).mean() > 0.05  # distinct images

  def file_index_of_each(seed):
    options = eval_lib.EvalOptions(split="test", seed=seed)
    images = np.concatenate(
      list(eval_images.held_out_dataset(spec, options, 6).as_numpy_iterator())
    )
    return [int(np.flatnonzero((in_file_order == x).all(axis=(1, 2, 3)))[0]) for x in images]

  order = file_index_of_each(0)
  assert sorted(order) == list(range(12))  # every image once
  assert {i // 6 for i in order[:6]} == {0, 1}  # the first half has airplanes and trucks
  assert file_index_of_each(0) == order and file_index_of_each(1) != order


def test_inception_preprocessing():
  grey = np.stack([np.zeros((8, 8, 1)), np.ones((8, 8, 1))]).astype(np.float32)
  x = feature_nets.inception_preprocess(grey).numpy()
  assert x.shape == (2, 299, 299, 3)
  np.testing.assert_allclose(x[0], -1.0, atol=1e-6)
  np.testing.assert_allclose(x[1], 1.0, atol=1e-6)
  half = feature_nets.inception_preprocess(np.full((1, 299, 299, 3), 0.5, np.float32)).numpy()
  np.testing.assert_allclose(half, 0.0, atol=1e-6)


def test_missing_inception_weights_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.h5"):
    feature_nets.load_inception(tmp_path / "nope.h5")


def test_inception_from_a_weights_file(tmp_path):
  # Random weights (about 8 s here): checks loading from a file and the preprocessing wiring.
  import keras  # pylint: disable=import-outside-toplevel

  model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None)
  path = str(tmp_path / "random_inception.weights.h5")
  model.save_weights(path)
  net = feature_nets.load_inception(path)
  assert net.name == "inception"
  images = np.random.default_rng(0).uniform(size=(2, 28, 28, 1)).astype(np.float32)
  features = net.features(images)
  assert features.shape == (2, 2048)
  expected = model(feature_nets.inception_preprocess(images), training=False).numpy()
  np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)


# --- End to end --------------------------------------------------------------------------------


def test_evaluate_a_tiny_2d_run(run_copy):
  # The tiny 2-D AS-IntroVAE trained once for the session (trained_2d): 4 steps, no EMA.
  tmp_path = run_copy
  options = eval_lib.EvalOptions(num_samples=500, eval_draws=2, grid_points=64, gnelbo_points=256)
  result = eval_lib.evaluate(str(tmp_path), options, log=lambda *_: None)
  expected = {
    "kl",
    "kl_std",
    "jsd",
    "jsd_std",
    "gnelbo",
    "gnelbo_std",
    "kl_floor",
    "jsd_floor",
    "modes_covered",
    "high_quality_fraction",
    "active_units",
    "kl_posterior",
  }
  assert expected <= set(result["metrics"])
  saved = json.load(open(tmp_path / "eval" / "metrics.json"))
  assert saved["metrics"] == pytest.approx(result["metrics"])
  assert saved["step"] == 4 and saved["sampling_decoder"] == "decoder"
  assert len(saved["details"]["draws"]["kl"]) == 2
  assert saved["metrics"]["kl"] == pytest.approx(np.mean(saved["details"]["draws"]["kl"]))
  assert 0 < saved["metrics"]["gnelbo"] < 1
  assert 0 <= saved["metrics"]["modes_covered"] <= 8
  assert len(saved["details"]["kl_per_dimension"]) == 2
  for name in ("samples_over_data", "density"):
    assert os.path.getsize(tmp_path / "eval" / f"{name}.png") > 1000
  tags = harness.tag_steps(str(tmp_path / "tensorboard" / "eval"))
  assert tags["eval/kl"] == 4 and tags["eval/gnelbo"] == 4 and "eval/density" in tags
  # Same seed, same numbers.
  again = eval_lib.evaluate(str(tmp_path), options, log=lambda *_: None)
  assert again["metrics"] == result["metrics"]


def test_evaluate_a_tiny_image_run(image_run, tmp_path, tiny_feature_net):
  # The evaluation reads the decoders and the encoder, whatever trained them: the tiny
  # Fashion-MNIST VAE of the export tests (image_run: 4 steps, a decoder EMA), copied, as the
  # evaluation writes into the workdir (an AS-IntroVAE image run is evaluated end to end by
  # test_reproduce.py::test_reproduce_images_compares_both_methods_at_the_same_budget, with
  # --run_large).
  tmp_path = tmp_path / "run"
  shutil.copytree(image_run, tmp_path)
  options = eval_lib.EvalOptions(
    num_samples=48, batch_size=16, feature_net=tiny_feature_net, kid_subsets=5, kid_subset_size=32
  )
  result = eval_lib.evaluate(str(tmp_path), options, log=lambda *_: None)
  m = result["metrics"]
  assert {
    "psnr",
    "ssim",
    "mse",
    "fid_fmnist_cnn",
    "kid_fmnist_cnn",
    "kid_fmnist_cnn_std",
    "active_units",
    "kl_posterior",
  } <= set(m)
  assert "fid_inception" not in m
  assert 0 < m["mse"] < 1 and -1 <= m["ssim"] <= 1 and m["psnr"] > 0
  assert m["psnr"] == pytest.approx(np.mean(10 * np.log10(1 / m["mse"])), rel=0.3)
  assert m["fid_fmnist_cnn"] > 0 and 0 <= m["active_units"] <= 4
  saved = json.load(open(tmp_path / "eval" / "metrics.json"))
  assert saved["details"]["num_images"] == 48 and saved["sampling_decoder"] == "ema_decoder"
  assert any("fid_inception skipped" in n for n in saved["details"]["notes"])
  shapes = {
    "pairs": (8 * 28, 8 * 28, 1),
    "samples": (8 * 28, 8 * 28, 1),
    "interpolations": (8 * 28, 10 * 28, 1),
  }
  for name, shape in shapes.items():
    image = tf.io.decode_png(tf.io.read_file(str(tmp_path / "eval" / f"{name}.png"))).numpy()
    assert image.shape == shape, name
  tags = harness.tag_steps(str(tmp_path / "tensorboard" / "eval"))
  assert tags["eval/fid_fmnist_cnn"] == 4 and tags["eval/psnr"] == 4


def test_workdir_without_a_checkpoint_is_refused(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    eval_lib.evaluate(str(tmp_path))
  config_lib.save_config(
    config_lib.ExperimentConfig(dataset="8gaussians", workdir=str(tmp_path)), str(tmp_path)
  )
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    eval_lib.evaluate(str(tmp_path))
  with pytest.raises(config_lib.ConfigError, match="--eval_draws"):
    eval_lib.EvalOptions(eval_draws=0).validate()
  with pytest.raises(config_lib.ConfigError, match=r"--seed must be an integer in \[0, 2\*\*32"):
    eval_lib.EvalOptions(seed=-1).validate()
  with pytest.raises(config_lib.ConfigError, match="--inception_weights=.*no such file"):
    eval_lib.EvalOptions(inception_weights=str(tmp_path / "missing.h5")).validate()


def test_command_line_exits_1_on_a_bad_workdir(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      "-X",
      "importtime",
      "-m",
      "as_introvae_tf.evaluate",
      f"--workdir={tmp_path / 'none'}",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 1
  assert "does not exist" in proc.stderr
  assert not os.path.exists(tmp_path / "none")
  # named before TensorFlow's start-up (seconds): the import log has no `tensorflow` line,
  # at any nesting depth
  assert not [
    line for line in proc.stderr.splitlines() if line.rsplit("|", 1)[-1].strip() == "tensorflow"
  ]


def test_evaluate_a_model_without_inference_encoder_skips_encoder_metrics(wgan_2d, tmp_path):
  """WGAN-GP's encoder is a critic: no gnELBO, density, reconstruction or latent metrics."""
  tmp_path = tmp_path / "wgan"
  shutil.copytree(wgan_2d, tmp_path)  # the shared run (tests/conftest.py), copied: eval writes
  options = eval_lib.EvalOptions(num_samples=500, eval_draws=1, grid_points=64, gnelbo_points=256)
  result = eval_lib.evaluate(str(tmp_path), options, log=lambda *_: None)
  assert {"kl", "jsd", "modes_covered"} <= set(result["metrics"])
  assert not {"gnelbo", "active_units", "kl_posterior"} & set(result["metrics"])
  assert "density" not in result["pictures"]


def test_the_early_workdir_check_expands_the_home_folder(tmp_path, monkeypatch):
  """`--workdir=~/run` (the shell leaves `~` after `=` alone) is found, as training finds it."""
  monkeypatch.setenv("HOME", str(tmp_path))
  (tmp_path / "run").mkdir()
  with pytest.raises(FileNotFoundError, match="config.json not found"):
    config_lib.check_run_directory("~/run")
  (tmp_path / "run" / "config.json").write_text("{}")
  config_lib.check_run_directory("~/run")
  with pytest.raises(FileNotFoundError, match=f"--workdir={tmp_path / 'none'} does not exist"):
    config_lib.check_run_directory("~/none")
