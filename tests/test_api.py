"""The Python API: `as_introvae_tf.train(config)` and `as_introvae_tf.load(path)` for a workdir
or an export, NumPy in and out."""

import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import as_introvae_tf
from as_introvae_tf import config as config_lib
from as_introvae_tf import export_lib
from as_introvae_tf import run as run_lib


def _two_d(workdir, **overrides):
  values = dict(
    method="as_introvae",
    dataset="8gaussians",
    workdir=str(workdir),
    z_dim=2,
    num_hidden=8,
    num_layers=1,
    batch_size=32,
    train_steps=4,
    num_vae=2,
    log_every_steps=2,
    checkpoint_every_steps=4,
    image_every_steps=100,
    beta_kl=0.3,
    beta_rec=0.2,
    beta_neg=0.9,
    ema_decay=0.9,
    verbose="0",
  )
  values.update(overrides)
  return values


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny image run (trained through the library form of the CLI) and its export."""
  root = tmp_path_factory.mktemp("api")
  workdir = root / "run"
  result = as_introvae_tf.train(
    "configs/quickstart.flags",
    workdir=str(workdir),
    train_steps=2,
    num_vae=1,
    batch_size=8,
    filters=[4],
    z_dim=4,
    log_every_steps=2,
    checkpoint_every_steps=2,
    image_every_steps=2,
    verbose="0",
  )
  export = export_lib.export_run(str(workdir), str(root / "export"), formats=["saved_model"])
  return result, workdir, root / "export", export


def test_train_is_the_library_form_of_the_command(trained):
  result, workdir, _, _ = trained
  assert result["step"] == 2 and result["workdir"] == str(workdir)
  assert os.path.exists(result["samples_png"])
  saved = config_lib.load_config(str(workdir))
  assert saved.filters == (4,) and saved.beta_neg == 256 and saved.lr_milestones == (1200,)
  with pytest.raises(config_lib.ConfigError, match="unknown flag.*beta_negative"):
    as_introvae_tf.train(config_lib.ExperimentConfig(workdir="/tmp/x"), beta_negative=1.0)
  with pytest.raises(config_lib.ConfigError, match="--workdir is required"):
    as_introvae_tf.train({"method": "vae"})
  with pytest.raises(config_lib.ConfigError, match="unknown flag.*beta_negative.*config dict"):
    as_introvae_tf.train({"method": "vae", "beta_negative": 1.0}, workdir="/tmp/x")
  with pytest.raises(TypeError, match="config must be"):
    as_introvae_tf.train(3)


def test_workdir_model_samples_encodes_decodes_and_interpolates(trained):
  _, workdir, _, _ = trained
  model = as_introvae_tf.load(str(workdir))
  assert (model.method, model.z_dim, model.example_shape, model.step, model.source) == (
    "as_introvae",
    4,
    (28, 28, 1),
    2,
    "workdir",
  )
  x = model.sample(5, seed=1)
  assert x.shape == (5, 28, 28, 1) and x.dtype == np.float32
  assert 0.0 <= x.min() and x.max() <= 1.0
  np.testing.assert_array_equal(x, model.sample(5, seed=1))
  assert not np.array_equal(x, model.sample(5, seed=2))
  assert model.sample(0).shape == (0, 28, 28, 1)
  mu, logvar = model.encode(x)
  assert mu.shape == logvar.shape == (5, 4) and mu.dtype == np.float32
  rec = model.reconstruct(x)
  np.testing.assert_allclose(rec, model.decode(mu), atol=1e-6)
  frames = model.interpolate(x[0], x[1], steps=6)
  assert frames.shape == (6, 28, 28, 1)
  np.testing.assert_allclose(frames[0], rec[0], atol=1e-5)
  np.testing.assert_allclose(frames[-1], rec[1], atol=1e-5)
  assert model.interpolate(x[:2], x[2:4], steps=3).shape == (2, 3, 28, 28, 1)
  z = np.stack([np.zeros(4), np.ones(4)]).astype(np.float32)
  np.testing.assert_allclose(
    model.interpolate(z[0], z[1], steps=3, latent=True)[1],
    model.decode(np.full((1, 4), 0.5, np.float32))[0],
    atol=1e-5,
  )
  with pytest.raises(ValueError, match=r"images must have shape \[N, 28, 28, 1\]"):
    model.encode(np.zeros((2, 32, 32, 3)))
  with pytest.raises(ValueError, match=r"z must have shape \[N, 4\]"):
    model.decode(np.zeros((2, 5)))
  with pytest.raises(ValueError, match="steps"):
    model.interpolate(x[0], x[1], steps=1)


def test_workdir_and_export_give_the_same_model(trained):
  _, workdir, export_dir, export = trained
  from_workdir = as_introvae_tf.load(str(workdir))
  for path in (export_dir, export.version_dir):
    from_export = as_introvae_tf.load(str(path))
    assert from_export.source == "export" and from_export.example_shape == (28, 28, 1)
    assert from_export.step == 2 and from_export.method == "as_introvae"
    z = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(from_export.decode(z), from_workdir.decode(z), atol=1e-5)
    x = from_workdir.sample(3, seed=0)
    np.testing.assert_allclose(from_export.encode(x)[0], from_workdir.encode(x)[0], atol=1e-4)
    np.testing.assert_allclose(from_export.sample(3, seed=0), x, atol=1e-5)


def test_load_uses_the_checkpointed_ema_decoder_or_the_raw_one(run_2d):
  workdir = pathlib.Path(run_2d)  # a tiny 2-D VAE with a decoder EMA (tests/conftest.py)
  run = run_lib.build_run(config_lib.load_config(str(workdir)))
  z = np.random.default_rng(1).standard_normal((7, 2)).astype(np.float32)
  ema = as_introvae_tf.load(str(workdir)).decode(z)
  raw = as_introvae_tf.load(str(workdir), decoder="raw").decode(z)
  np.testing.assert_allclose(ema, run.model.ema_decoder(z, training=False).numpy(), atol=1e-6)
  np.testing.assert_allclose(raw, run.model.decoder(z, training=False).numpy(), atol=1e-6)
  assert not np.allclose(ema, raw)
  # the shape comes from metrics_train.json, then the config; no data are read
  with open(workdir / "metrics_train.json") as f:
    assert json.load(f)["example_shape"] == [2]


def test_wgan_gp_model_samples_but_has_no_encoder(wgan_2d):
  model = as_introvae_tf.load(wgan_2d)  # a tiny 2-D WGAN-GP (tests/conftest.py)
  assert model.sample(3, seed=0).shape == (3, 2) and not model.has_encoder
  with pytest.raises(ValueError, match="encode needs an encoder"):
    model.encode(np.zeros((1, 2)))


def test_load_names_what_it_expected(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    as_introvae_tf.load(str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match="neither a training workdir"):
    as_introvae_tf.load(str(tmp_path))
  config_lib.save_config(config_lib.ExperimentConfig(**_two_d(tmp_path / "w")), tmp_path / "w")
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    as_introvae_tf.load(str(tmp_path / "w"))
  with pytest.raises(ValueError, match="decoder must be one of"):
    as_introvae_tf.load(str(tmp_path), decoder="best")


def test_importing_the_package_defines_no_flags_and_imports_no_tensorflow():
  import subprocess
  import sys

  code = (
    "import sys, as_introvae_tf as a; from absl import flags; "
    "assert 'tensorflow' not in sys.modules; assert 'method' not in flags.FLAGS; "
    "assert callable(a.load); print('ok')"
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
    [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
  )
  assert proc.stdout.strip() == "ok", proc.stderr
  assert tf.__version__  # (this process has TensorFlow; the child did not need it)


@pytest.mark.large
def test_the_example_script_trains_loads_samples_and_interpolates(tmp_path):
  import subprocess
  import sys

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(root, "examples", "quickstart.py"),
      f"--workdir={tmp_path / 'q'}",
      "--train_steps=5",
    ],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=900,
    env=dict(os.environ, PYTHONPATH=root),
  )
  assert proc.returncode == 0, proc.stderr
  assert "16 samples (16, 28, 28, 1)" in proc.stdout
  assert "interpolation (8, 28, 28, 1)" in proc.stdout
  grid = tf.io.decode_png(tf.io.read_file(str(tmp_path / "q" / "example_interpolation.png")))
  assert grid.shape == (28, 8 * 28, 1)
