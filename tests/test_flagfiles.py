"""Layered flagfiles: configs/<dataset>_<method>.flags = configs/base.flags + the dataset layer
configs/data/<dataset>.flags + the method's own lines. Every file parses; a per-method file does
not repeat what its dataset layer sets; the layers are packaged and found from any folder."""

import glob
import os
import re
import tomllib

import pytest
from absl import flags

from as_introvae_tf import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.flags")))
LAYERS = sorted(glob.glob(os.path.join(ROOT, "configs", "data", "*.flags")))
BASE_INCLUDE = "--flagfile=configs/base.flags"
# Keys a method sets itself over its dataset layer, with another value: WGAN-GP's budget (its
# paper's batch, split into --n_critic slices, and generator iterations).
OWN_BUDGET = {"wgan_gp": {"batch_size", "train_steps"}}


def _flag_lines(path):
  with open(path) as f:
    return [line.strip() for line in f if line.strip().startswith("-")]


def _settings(path):
  """{flag name: line} of a flagfile's own lines (includes not expanded); `--noX` is X."""
  names = flags.FlagValues()
  config_lib.define_flags(names)
  out = {}
  for line in _flag_lines(path):
    if line.startswith("--flagfile="):
      continue
    name = line.lstrip("-").split("=", 1)[0]
    if name not in names and name.startswith("no") and name[2:] in names:
      name = name[2:]
    assert name in names, f"{path}: unknown flag in {line!r}"
    assert name not in out, f"{path}: {name} set twice"
    out[name] = line
  return out


def _layer_of(path):
  """The dataset layer a per-method flagfile includes (None for e.g. quickstart)."""
  includes = [
    line.split("=", 1)[1]
    for line in _flag_lines(path)
    if line.startswith("--flagfile=configs/data/")
  ]
  assert len(includes) <= 1, path
  return os.path.join(ROOT, includes[0]) if includes else None


def test_there_are_dataset_layers_and_every_one_is_used():
  assert {os.path.basename(p)[: -len(".flags")] for p in LAYERS} >= {
    "8gaussians",
    "2spirals",
    "checkerboard",
    "rings",
    "fashion_mnist",
    "cifar10",
  }
  used = {_layer_of(p) for p in CONFIGS}
  assert set(LAYERS) <= used


@pytest.mark.parametrize("path", CONFIGS + LAYERS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_flagfile_parses(path, monkeypatch):
  monkeypatch.chdir(ROOT)
  config = config_lib.from_flagfile(path)
  if path in LAYERS:
    assert not {"method", "workdir"} & set(_settings(path)), "a dataset layer sets data only"
    assert config.dataset == _settings(path)["dataset"].split("=", 1)[1]


@pytest.mark.parametrize("path", [p for p in CONFIGS if _layer_of(p)], ids=os.path.basename)
def test_a_per_method_flagfile_takes_its_data_lines_from_its_dataset_layer(path):
  layer = _layer_of(path)
  name = os.path.basename(path)[: -len(".flags")]
  assert name.startswith(os.path.basename(layer)[: -len(".flags")] + "_")
  lines = _flag_lines(path)
  assert lines[:2] == [BASE_INCLUDE, f"--flagfile={os.path.relpath(layer, ROOT)}"]
  own, data = _settings(path), _settings(layer)
  method = own["method"].split("=", 1)[1]
  allowed = OWN_BUDGET.get(method, set())
  repeated = set(own) & set(data)
  assert repeated <= allowed, f"{name} repeats {sorted(repeated - allowed)} of its dataset layer"
  for key in repeated:
    assert own[key] != data[key], f"{name}: {own[key]} is already its dataset layer's"
  with open(path) as f:
    assert re.search(r"^# source:", f.read(), re.M), f"{name}: its method lines need a source"


@pytest.mark.parametrize("name", ["cifar10_wgan_gp", "rings_as_introvae"])
def test_dataset_layers_are_found_from_any_folder(name, tmp_path, monkeypatch):
  monkeypatch.chdir(ROOT)
  in_repo = config_lib.from_flagfile(f"configs/{name}.flags")
  monkeypatch.chdir(tmp_path)  # no configs/ here: the include is found beside the flagfile
  assert config_lib.from_flagfile(name) == in_repo


def test_dataset_layers_are_packaged():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    tool = tomllib.load(f)["tool"]["setuptools"]
  assert "as_introvae_tf.configs.data" in tool["packages"]
  assert tool["package-dir"]["as_introvae_tf.configs.data"] == "configs/data"
  assert tool["package-data"]["as_introvae_tf.configs.data"] == ["*.flags"]
