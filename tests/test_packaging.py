"""Installable package and first-hour command line: pyproject, packaged configs found from any
folder, grouped --help, console scripts, LICENSE and citation."""

import ast
import os
import re
import subprocess
import sys
import tomllib

import pytest
from absl import flags

from as_introvae_tf import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)


def _requirement_lines():
  with open(os.path.join(ROOT, "requirements.txt")) as f:
    return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def test_pyproject_dependencies_match_requirements_txt():
  project = _pyproject()["project"]
  assert project["name"] == "as-introvae-tf"
  assert project["requires-python"] == ">=3.10"
  import as_introvae_tf

  assert project["version"] == as_introvae_tf.__version__
  extras = project["optional-dependencies"]
  assert {"serving", "dev"} <= set(extras)
  declared = set(project["dependencies"]) | set(extras["serving"]) | set(extras["dev"])
  assert declared == set(_requirement_lines())
  assert "tensorflow-serving-api==2.21.0" in extras["serving"]
  assert "pytest" in extras["dev"]


def test_console_scripts_point_at_callables():
  scripts = _pyproject()["project"]["scripts"]
  assert set(scripts) == {"as-introvae-train", "as-introvae-evaluate", "as-introvae-export"}
  for target in scripts.values():  # (importing them all would define clashing flags)
    module, func = target.split(":")
    with open(os.path.join(ROOT, *module.split(".")) + ".py") as f:
      tree = ast.parse(f.read())
    assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_configs_are_packaged_with_the_code():
  tool = _pyproject()["tool"]["setuptools"]
  assert tool["package-dir"]["as_introvae_tf.configs"] == "configs"
  assert "as_introvae_tf.configs" in tool["packages"]
  assert _pyproject()["tool"]["setuptools"]["package-data"]["as_introvae_tf.configs"] == ["*.flags"]
  assert os.path.samefile(config_lib.configs_dir(), os.path.join(ROOT, "configs"))
  assert "quickstart" in config_lib.list_configs() and "base" not in config_lib.list_configs()
  assert config_lib.config_path("quickstart").endswith(os.path.join("configs", "quickstart.flags"))
  with pytest.raises(FileNotFoundError, match="available: .*quickstart"):
    config_lib.config_path("nope")


def test_packaged_flagfiles_and_their_include_resolve_from_any_folder(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # no configs/ here
  from_root = None
  for spelling in ("configs/quickstart.flags", "quickstart.flags", "quickstart"):
    config = config_lib.from_flagfile(spelling, "--train_steps=7")
    assert config.train_steps == 7 and config.method == "as_introvae"
    assert config.keep_checkpoints == 3  # from the configs/base.flags include
    from_root = from_root or config
    assert config == from_root
  with pytest.raises(flags.Error, match="nope.flags.*packaged configs: .*quickstart"):
    config_lib.from_flagfile("configs/nope.flags")


def test_a_configs_folder_in_the_working_directory_wins(tmp_path, monkeypatch):
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "quickstart.flags").write_text(
    "# mine\n--flagfile=configs/base.flags\n--z_dim=5\n"
  )
  (tmp_path / "configs" / "base.flags").write_text("--seed=42\n")
  monkeypatch.chdir(tmp_path)
  config = config_lib.from_flagfile("configs/quickstart.flags")
  assert config.z_dim == 5 and config.seed == 42 and config.keep_checkpoints == 3


def test_expand_flagfiles_keeps_order_and_finds_relative_includes(tmp_path, monkeypatch):
  folder = tmp_path / "elsewhere"
  folder.mkdir()
  (folder / "inner.flags").write_text("--z_dim=3\n// a comment\n\n--seed=1\n")
  (folder / "outer.flags").write_text("--flagfile=inner.flags\n--seed=2\n")
  monkeypatch.chdir(tmp_path)
  argv = config_lib.expand_flagfiles(
    [
      "prog",
      "--z_dim=9",
      "--flagfile",
      str(folder / "outer.flags"),
      "--lr=0.1",
      "--",
      "--flagfile=x",
    ]
  )
  assert argv == [
    "prog",
    "--z_dim=9",
    "--z_dim=3",
    "--seed=1",
    "--seed=2",
    "--lr=0.1",
    "--",
    "--flagfile=x",
  ]
  (folder / "loop.flags").write_text(f"--flagfile={folder / 'loop.flags'}\n")
  with pytest.raises(flags.Error, match="circular"):
    config_lib.expand_flagfiles(["prog", f"--flagfile={folder / 'loop.flags'}"])


def test_every_training_flag_is_in_exactly_one_help_group():
  fv = flags.FlagValues()
  config_lib.define_flags(fv)
  grouped = [name for _, names in config_lib.FLAG_GROUPS for name in names]
  assert len(grouped) == len(set(grouped))
  assert set(grouped) == set(fv)
  assert [g for g, _ in config_lib.FLAG_GROUPS] == [
    "Method and losses",
    "Data",
    "Network",
    "Training",
    "Distribution and precision",
    "Bookkeeping",
  ]
  assert set(config_lib.FLAG_SOURCES) <= set(grouped)


def test_help_lists_beta_neg_with_its_default_and_source_from_another_folder(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "as_introvae_tf.train",
      "--flagfile=configs/quickstart.flags",
      "--beta_neg=300",
      "--help",
    ],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=120,
    env=env,
  )
  assert proc.returncode == 0, proc.stderr
  out = proc.stdout
  assert out.splitlines()[0].startswith("Trains an introspective VAE")
  assert "as-introvae-train --flagfile=configs/quickstart.flags" in out
  assert "intentionally short" not in out
  for group in (
    "Method and losses:",
    "Data:",
    "Network:",
    "Training:",
    "Distribution and precision:",
    "Bookkeeping:",
  ):
    assert f"\n{group}\n" in out
  block = out[out.index("  --beta_neg\n") :]
  block = block[: block.index("\n  --", 5)]
  assert re.search(r"default: 256\.0; source: reference image settings", block)
  assert "now: 300.0" in block
  assert out.index("Method and losses:") < out.index("--beta_neg") < out.index("Data:")
  assert "--helpfull" in out and "quickstart" in out


def test_helpfull_keeps_absls_full_list(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.run(
    [sys.executable, "-m", "as_introvae_tf.train", "--helpfull"],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=120,
    env=env,
  )
  assert proc.returncode == 0, proc.stderr
  assert "--beta_neg" in proc.stdout and "--verbosity" in proc.stdout
  assert "as-introvae-train --flagfile=configs/quickstart.flags" in proc.stdout


def test_license_and_citation():
  with open(os.path.join(ROOT, "LICENSE")) as f:
    text = f.read()
  assert "Apache License" in text and "Version 2.0, January 2004" in text
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  citation = readme[readme.index("## Citation") :]
  for title in (
    "AS-IntroVAE",
    "Soft-IntroVAE",
    "IntroVAE: Introspective Variational Autoencoders for Photographic Image Synthesis",
  ):
    assert title in citation
  with open(os.path.join(ROOT, "CITATION.cff")) as f:
    cff = f.read()
  assert "cff-version" in cff and "AS-IntroVAE" in cff


def test_training_command_runs_the_packaged_quickstart_from_another_folder(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the command hides TensorFlow's notices itself
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "as_introvae_tf.train",
      "--flagfile=configs/quickstart.flags",
      "--workdir=q",
      "--train_steps=2",
      "--num_vae=2",  # one traced step: the AS-IntroVAE quickstart step is test_api.py's
      "--batch_size=8",
      "--filters=4",
      "--z_dim=4",
      "--log_every_steps=1",
      "--checkpoint_every_steps=2",
      "--image_every_steps=2",
    ],
    cwd=elsewhere,
    capture_output=True,
    text=True,
    timeout=600,
    env=env,
  )
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert lines[0].startswith("as_introvae on fashion_mnist (28x28x1), 2 steps")
  assert lines[1].startswith("step 1/2 (50%)") and "rec: " in lines[1]
  assert lines[2].startswith("step 2/2 (100%)") and "steps/s - ETA 0s" in lines[2]
  assert lines[3].startswith("step 2: saved checkpoint ")
  assert lines[4].startswith("Trained to step 2")
  for noise in ("oneDNN", "cuda", "absl::InitializeLog", "Sharding callback", "I0000"):
    assert noise not in proc.stderr, proc.stderr
  assert (elsewhere / "q" / "samples.png").exists()
  assert (elsewhere / "q" / "reconstructions.png").exists()
  # The README's Python one-liner on the result
  proc = subprocess.run(
    [sys.executable, "-c", "import as_introvae_tf as a; m=a.load('q'); print(m.sample(4).shape)"],
    cwd=elsewhere,
    capture_output=True,
    text=True,
    timeout=300,
    env=env,
  )
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == "(4, 28, 28, 1)"
  assert "oneDNN" not in proc.stderr


def test_every_package_declares_all_and_leaks_no_module_it_imports():
  """`__all__` in every package `__init__`, each name defined; `losses` re-exports its modules'
  `__all__` only (no `tf`, `tfp`, `math` from star imports)."""
  import importlib
  import pkgutil

  import as_introvae_tf

  packages = ["as_introvae_tf"] + [
    f"as_introvae_tf.{info.name}"
    for info in pkgutil.iter_modules(as_introvae_tf.__path__)
    if info.ispkg
  ]
  assert {"as_introvae_tf.losses", "as_introvae_tf.methods", "as_introvae_tf.data"} <= set(packages)
  for name in packages:
    package = importlib.import_module(name)
    assert isinstance(package.__all__, list), name
    assert [n for n in package.__all__ if not hasattr(package, n)] == [], name
  losses = importlib.import_module("as_introvae_tf.losses")
  assert not {"tf", "tfp", "math", "functools"} & set(vars(losses))
  for module in ("adversarial", "as_distance", "introspective"):
    names = importlib.import_module(f"as_introvae_tf.losses.{module}").__all__
    assert set(names) <= set(losses.__all__), module
