"""Flags and configs: every flagfile parses and validates; bad flags are named."""

import json
import glob
import os
import re

import pytest
from absl import flags

from as_introvae_tf import config as config_lib

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.flags")))


def test_there_is_a_config_per_paper_setting():
  names = {os.path.basename(p)[: -len(".flags")] for p in CONFIGS}
  for ds in ("8gaussians", "2spirals", "checkerboard", "rings", "fashion_mnist", "cifar10"):
    for method in config_lib.METHODS:
      assert f"{ds}_{method}" in names
  assert {"quickstart", "base", "celeba128_as_introvae", "celeba256_as_introvae"} <= names


@pytest.mark.parametrize(
  "path", [p for p in CONFIGS if not p.endswith("base.flags")], ids=os.path.basename
)
def test_every_flagfile_parses_validates_and_says_where_its_values_come_from(path, monkeypatch):
  monkeypatch.chdir(ROOT)  # flagfiles include configs/base.flags relative to the repo root
  config = harness.parse_flags(f"--flagfile={path}").validate(num_replicas=1)
  name = os.path.basename(path)[: -len(".flags")]
  if name != "quickstart":
    dataset, method = config.dataset, config.method
    assert name.endswith(method) and method in config_lib.METHODS
    assert name.startswith(dataset.replace("folder:data/celeba/img_align_celeba", "celeba"))
  with open(path) as f:
    assert "source" in f.read().lower()


def test_command_line_overrides_the_flagfile(monkeypatch):
  monkeypatch.chdir(ROOT)
  config = harness.parse_flags(
    "--flagfile=configs/8gaussians_as_introvae.flags", "--train_steps=2000"
  )
  assert config.train_steps == 2000 and config.beta_neg == 0.9


@pytest.mark.parametrize(
  "args,flag",
  [
    (["--batch_size=0"], "--batch_size"),
    (["--train_steps=-5"], "--train_steps"),
    (["--z_dim=0"], "--z_dim"),
    (["--gamma_r=0"], "--gamma_r"),
    (["--num_vae=50", "--train_steps=10"], "--num_vae"),
    (["--ema_decay=1.0"], "--ema_decay"),
    (["--channels=2"], "--channels"),
    (["--lr=0"], "--lr"),
    (["--lr_milestones=300,200"], "--lr_milestones"),
    (["--beta_neg=-1"], "--beta_neg"),
    (["--image_size=0"], "--image_size"),
  ],
)
def test_bad_values_name_the_flag(args, flag):
  config = harness.parse_flags("--workdir=/tmp/x", *args)
  with pytest.raises(config_lib.ConfigError, match=flag):
    config.validate()


def test_batch_must_divide_across_replicas():
  config = harness.parse_flags("--workdir=/tmp/x", "--batch_size=3")
  with pytest.raises(config_lib.ConfigError, match="--batch_size=3 must be divisible"):
    config.validate(num_replicas=2)


def test_workdir_is_required():
  with pytest.raises(config_lib.ConfigError, match="--workdir"):
    harness.parse_flags().validate()


def test_unknown_method_is_rejected_by_absl_with_the_allowed_values():
  with pytest.raises(
    flags.IllegalFlagValueError, match="method.*vae\\|introvae\\|soft_introvae\\|as_introvae"
  ):
    harness.parse_flags("--method=gan")


@pytest.mark.parametrize(
  "flag, message",
  [
    ("--adam_epsilon=inf", "--adam_epsilon must be a finite number; got inf"),
    ("--lr=nan", "--lr must be .*got nan"),
    ("--beta_neg=inf", "--beta_neg must be a finite number; got inf"),
    ("--seed=-1", r"--seed must be an integer in \[0, 2\*\*32 - 1\]; got -1"),
    ("--seed=4294967296", r"--seed must be an integer in \[0, 2\*\*32 - 1\]"),
  ],
)
def test_non_finite_numbers_and_out_of_range_seeds_are_named(flag, message):
  # inf passed every `> 0` check (--adam_epsilon=inf trained with no update and no message);
  # a negative seed failed inside TensorFlow after the workdir was made.
  with pytest.raises(config_lib.ConfigError, match=message):
    harness.parse_flags("--workdir=/tmp/x", flag).validate()
  harness.parse_flags("--workdir=/tmp/x", "--seed=4294967295").validate()


def test_bad_integer_list():
  with pytest.raises(config_lib.ConfigError, match="--filters"):
    harness.parse_flags("--filters=64,abc")


def test_config_round_trips_through_the_workdir(tmp_path):
  config = harness.parse_flags(f"--workdir={tmp_path}", "--filters=8,16", "--lr_milestones=5,9")
  config_lib.save_config(config, str(tmp_path))
  assert config_lib.load_config(str(tmp_path)) == config


@pytest.mark.parametrize(
  "key, value",
  [
    ("z_dim", "abc"),
    ("filters", "x"),
    ("filters", [8, "a"]),
    ("lr", [1]),
    ("jit_compile", 1),
    ("train_steps", 2.5),
    ("workdir", 3),
  ],
)
def test_load_config_names_a_value_of_the_wrong_kind(tmp_path, key, value):
  config = harness.parse_flags(f"--workdir={tmp_path}", "--filters=8,16")
  config_lib.save_config(config, str(tmp_path))
  path = tmp_path / "config.json"
  values = json.loads(path.read_text())
  values[key] = value
  path.write_text(json.dumps(values))
  with pytest.raises(
    config_lib.ConfigError,
    match=f"config.json .*{key} is {re.escape(repr(value if not isinstance(value, list) else tuple(value)))}",
  ):
    config_lib.load_config(str(tmp_path))
  values[key] = None if key in ("workdir", "filters") else getattr(config, key)
  path.write_text(json.dumps(values))
  assert config_lib.load_config(str(tmp_path)).z_dim == config.z_dim


def test_load_config_names_a_workdir_that_is_not_a_run(tmp_path):
  with pytest.raises(FileNotFoundError, match="not a training run directory"):
    config_lib.load_config(str(tmp_path))


def test_from_flagfile_reads_a_flagfile_without_touching_the_process_flags(monkeypatch):
  monkeypatch.chdir(ROOT)
  path = "configs/8gaussians_as_introvae.flags"
  config = config_lib.from_flagfile(path, "--train_steps=2000")
  assert config == harness.parse_flags(f"--flagfile={path}", "--train_steps=2000")
  assert config.train_steps == 2000 and config.method == "as_introvae"
  with pytest.raises(flags.Error):
    config_lib.from_flagfile("configs/nope.flags")
