"""The tests' shared builders: tiny configs, models, batches, trainings and log readers.

One place for what many test files need, so that a test reads as its check (keras-hub's
`src/tests/test_case.py` plays this part there). The shared trained runs and exports built
from these are fixtures in `tests/conftest.py`. Test files `import harness` (pytest puts
tests/ on `sys.path`: the folder has no `__init__.py`).
"""

import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from as_introvae_tf import config as config_lib
from as_introvae_tf import data
from as_introvae_tf import run as run_lib
from as_introvae_tf import train_lib
from as_introvae_tf import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The repository root (the commands of the README run from here)."""

QUIET_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
"""The environment of the training processes tests start: TensorFlow's C++ notices off."""

CIFAR_DIR = data.shared_data_dir() / "cifar10"
"""CIFAR-10 as JPEG folders (train/ and test/, one folder per class), where the project keeps it."""

FMNIST_FILES = [
  os.path.join(data.FASHION_MNIST_DIR, f"{p}-images-idx3-ubyte.gz") for p in ("train", "t10k")
]
"""The Fashion-MNIST image files of the Debian package `dataset-fashion-mnist`."""

REQUIRE_DATA = (
  os.environ.get("CI", "").lower() in ("1", "true")
  or os.environ.get("AS_INTROVAE_REQUIRE_DATA") == "1"
)
"""Under CI (CI=true) or AS_INTROVAE_REQUIRE_DATA=1 (tools/test.sh sets it) the real-data tests
run whatever is on disk, so missing data fail them instead of skipping them unnoticed."""

needs_cifar = pytest.mark.skipif(
  not REQUIRE_DATA
  and (not (CIFAR_DIR / "test").is_dir() or not (CIFAR_DIR / "train" / "dog").is_dir()),
  reason=f"CIFAR-10 image folder {CIFAR_DIR} is missing (under AS_INTROVAE_REQUIRE_DATA=1 the test fails instead)",
)
"""Skips a test without the CIFAR-10 JPEGs, except under `REQUIRE_DATA`."""

needs_fmnist = pytest.mark.skipif(
  not REQUIRE_DATA and not all(os.path.isfile(f) for f in FMNIST_FILES),
  reason="Fashion-MNIST IDX files missing: apt-get install -y dataset-fashion-mnist",
)
"""Skips a test without the Fashion-MNIST files."""

TWO_D = dict(
  method="as_introvae",
  dataset="8gaussians",
  z_dim=2,
  num_hidden=16,
  num_layers=1,
  batch_size=64,
  train_steps=4,
  num_vae=1,
  log_every_steps=2,
  checkpoint_every_steps=2,
  image_every_steps=100,
  beta_kl=0.3,
  beta_rec=0.2,
  beta_neg=0.9,
  as_kernel="product",
  keep_checkpoints=5,
  ema_decay=0.0,
  verbose="0",
)
"""A tiny 2-D AS-IntroVAE run: 8 Gaussians, one hidden layer of 16, batch 64, 4 steps, a
checkpoint every 2 steps (5 kept), no scatter plots during training."""

TINY_IMAGES = dict(
  method="as_introvae",
  dataset="fashion_mnist",
  filters=(4,),
  z_dim=4,
  batch_size=8,
  train_steps=4,
  num_vae=1,
  log_every_steps=2,
  checkpoint_every_steps=2,
  image_every_steps=2,
  beta_neg=8.0,
  ema_decay=0.9,
  verbose="0",
)
"""A tiny Fashion-MNIST AS-IntroVAE run: one residual scale of 4 filters, z 4, batch 8."""


EXPORTED_VAE = dict(
  method="vae",
  train_steps=4,
  log_every_steps=2,
  checkpoint_every_steps=2,
  image_every_steps=1000,
  ema_decay=0.5,
  lr=1e-2,
  verbose="0",
)
"""The settings of the runs the export tests train (`train_run`): a VAE, 4 steps, a checkpoint
every 2, a decoder EMA; the dataset and network come from the caller."""


SMALL_EXPORT_MAX_BATCH = 4
"""The `--max_batch` of the `small_export` fixture (tests/conftest.py)."""


def method_params(names):
  """NAMES (method names) as pytest params, S-IntroVAE's marked `large` when AS-IntroVAE is
  among them: AS-IntroVAE's step is S-IntroVAE's (`introspective_step`, the same two phases
  and updates) with the AS-Distance terms added, so the fast suite runs the superset and
  `--run_large` runs both."""
  covered = "as_introvae" in names
  return [
    pytest.param(n, marks=pytest.mark.large) if covered and n == "soft_introvae" else n
    for n in names
  ]


def two_d_config(workdir="/tmp/as_introvae_unused", **overrides):
  """`ExperimentConfig` of `TWO_D` with OVERRIDES (any setting, `method` included)."""
  return config_lib.ExperimentConfig(**dict(TWO_D, workdir=str(workdir), **overrides))


def small_2d_config(method="soft_introvae", **overrides):
  """`two_d_config` of a model to step by hand: batch 16, no warm-up, 100 steps, margin 2,
  a decoder EMA of 0.9, 2 critic steps, the defaults' cadences (workdir unused)."""
  values = dict(
    method=method,
    batch_size=16,
    train_steps=100,
    num_vae=0,
    margin=2.0,
    ema_decay=0.9,
    n_critic=2,
    seed=0,
    log_every_steps=100,
    checkpoint_every_steps=1000,
    image_every_steps=1000,
    keep_checkpoints=3,
  )
  values.update(overrides)
  return two_d_config(values.pop("workdir", "/tmp/as_introvae_unused"), **values)


def image_config(workdir, **overrides):
  """`ExperimentConfig` of `TINY_IMAGES` with OVERRIDES."""
  return config_lib.ExperimentConfig(**dict(TINY_IMAGES, workdir=str(workdir), **overrides))


def no_pictures(model, spec, fixed):
  """A stand-in for `train_lib.render_samples` (the matplotlib scatter plot: slow, and not
  what the tests that use it look at): one blank 4x4x1 picture."""
  del model, spec, fixed
  return {"samples": np.zeros([4, 4, 1], np.float32)}


def train(config):
  """`train_lib.train_and_evaluate(config)` without the scatter plots (`no_pictures`)."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(train_lib, "render_samples", no_pictures)
    return train_lib.train_and_evaluate(config)


def train_run(workdir, **overrides):
  """Trains `EXPORTED_VAE` with OVERRIDES in WORKDIR (`train`); returns WORKDIR as a str."""
  train(config_lib.ExperimentConfig(**dict(EXPORTED_VAE, workdir=str(workdir), **overrides)))
  return str(workdir)


def export_cli(argv):
  """`python -m as_introvae_tf.export ARGV` in this process (fresh flag values); its exit
  status (0, or 1 after one `error:` line)."""
  from as_introvae_tf import export as export_main  # pylint: disable=import-outside-toplevel

  fv = flags.FlagValues()
  export_main.define_flags(fv)
  fv(["export"] + list(argv))
  return export_main.main(["export"], fv)


def build_model(config, strategy=None):
  """The compiled model of CONFIG (not restored), seeded with `config.seed`, in STRATEGY's
  scope (default: the current strategy)."""
  spec = data.parse_dataset(config.dataset, config.image_size, config.channels)
  keras.utils.set_random_seed(config.seed)
  return run_lib.build_model(config, spec, strategy or tf.distribute.get_strategy())


def first_batch(ds):
  """The first element of the dataset DS, as a NumPy array."""
  return next(iter(ds)).numpy()


def batch_2d(size, seed=0):
  """[size, 2] float32 points of the 8 Gaussians, drawn with NumPy seed SEED."""
  return data.sample_2d("8gaussians", size, np.random.default_rng(seed))


def batches_2d(n, size=16, seed=0):
  """[n, size, 2]: N batches of `batch_2d`, one generator."""
  rng = np.random.default_rng(seed)
  return np.stack([data.sample_2d("8gaussians", size, rng) for _ in range(n)])


def fit(model, batch, steps=1, epochs=1):
  """`model.fit` on BATCH repeated (one batch) for STEPS steps; its Keras history (a dict of
  lists, one value per epoch)."""
  ds = tf.data.Dataset.from_tensors(batch).repeat()
  return model.fit(ds, steps_per_epoch=steps, epochs=epochs, verbose=0, shuffle=False).history


def fit_batches(model, batches, steps):
  """`model.fit` on BATCHES ([n, batch, ...]) in turn, repeated, for STEPS steps; the last
  value of each logged metric (floats)."""
  ds = tf.data.Dataset.from_tensor_slices(batches).repeat()
  history = model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False).history
  return {k: float(v[-1]) for k, v in history.items()}


NETWORKS = ("encoder", "decoder", "ema_decoder", "discriminator_encoder", "discriminator_decoder")


def networks(model):
  """The model's Keras networks that exist: encoder, decoder, EMA decoder, AVAE's
  discriminator pair."""
  return [getattr(model, n) for n in NETWORKS if getattr(model, n, None) is not None]


def weights(model):
  """Every network variable (`networks`, and WGAN-GP's critic head)."""
  extra = [model.critic_head] if hasattr(model, "critic_head") else []
  return [v for net in networks(model) + extra for v in net.weights]


def optimizers(model):
  """The model's optimizers: encoder, decoder and (AVAE) discriminator."""
  names = ("encoder_optimizer", "decoder_optimizer", "discriminator_optimizer")
  return [getattr(model, n) for n in names if getattr(model, n, None) is not None]


def set_lr(model, lr):
  """Sets every optimizer's learning rate to LR."""
  for optimizer in optimizers(model):
    optimizer.learning_rate = lr


def scalar_tags(logdir):
  """The set of summary tags in LOGDIR's event files."""
  return set(tag_steps(logdir))


def tag_steps(logdir):
  """{tag: the last step it was written at} over LOGDIR's event files."""
  tags = {}
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tags[value.tag] = event.step
  return tags


def event_steps(logdir, tag):
  """The sorted steps at which TAG was written in LOGDIR's event files."""
  steps = []
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      steps += [event.step for value in event.summary.value if value.tag == tag]
  return sorted(steps)


def latest_step(workdir):
  """The step of the checkpoint WORKDIR/checkpoints' index names (0 without an index)."""
  state = tf.train.get_checkpoint_state(os.path.join(str(workdir), "checkpoints"))
  return int(state.model_checkpoint_path.rsplit("-", 1)[1]) if state else 0


def checkpoint_names(workdir):
  """The basenames (`ckpt-N`) of every checkpoint WORKDIR/checkpoints' index lists."""
  state = tf.train.get_checkpoint_state(os.path.join(str(workdir), "checkpoints"))
  return [os.path.basename(p) for p in state.all_model_checkpoint_paths]


def seeds_to_z(seeds, z_dim):
  """[len(SEEDS), z_dim] float32: the z each seed gives by the serving seed rule
  (`stateless_normal` with seed [s, 0]), computed here independently of the package."""
  return np.stack([tf.random.stateless_normal([z_dim], seed=[int(s), 0]).numpy() for s in seeds])


def uniform_images(n, seed=0, shape=(28, 28, 1)):
  """[n, *shape] float32 pixels uniform in [0, 1), NumPy seed SEED."""
  return np.random.default_rng(seed).uniform(size=(n, *shape)).astype(np.float32)


def call_signature(loaded, name, **inputs):
  """The outputs of LOADED's signature NAME on INPUTS, as {name: NumPy array}."""
  return {k: v.numpy() for k, v in loaded.signatures[name](**inputs).items()}


def ckpt(workdir, step):
  """The prefix WORKDIR/checkpoints/ckpt-STEP (a str)."""
  return os.path.join(str(workdir), "checkpoints", f"ckpt-{step}")


def data_file(prefix):
  """The data file of the checkpoint PREFIX (one shard)."""
  return prefix + ".data-00000-of-00001"


def checkpoint_bytes(prefix):
  """{".index": bytes, ".data-00000-of-00001": bytes} of the checkpoint PREFIX."""
  return {suffix: open(prefix + suffix, "rb").read() for suffix in (".index", data_file(""))}


def history(workdir):
  """The segments WORKDIR/config_history.jsonl records, as dicts, oldest first."""
  with open(os.path.join(str(workdir), workdir_lib.HISTORY_FILE)) as f:
    return [json.loads(line) for line in f if line.strip()]


def parse_flags(*args):
  """`ExperimentConfig` of the training command line `train ARGS` (not validated)."""
  fv = flags.FlagValues()
  config_lib.define_flags(fv)
  fv(["train"] + list(args))
  return config_lib.ExperimentConfig.from_flags(fv)


def run_module(module, *args, cwd=ROOT, timeout=600, env=None):
  """`python -m MODULE ARGS` in a new process (CWD, captured text output, `QUIET_ENV` by
  default); the `subprocess.CompletedProcess`, whatever its exit status."""
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    cwd=cwd,
    env=env or QUIET_ENV,
    capture_output=True,
    text=True,
    timeout=timeout,
  )
