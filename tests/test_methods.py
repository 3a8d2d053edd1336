"""The method registry and the single declaration of every setting (issue 14)."""

import dataclasses
import os
import subprocess
import sys

import pytest
from absl import flags

from as_introvae_tf import config as config_lib
from as_introvae_tf import hparams
from as_introvae_tf import methods
from as_introvae_tf.methods import base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_method_file_registers_its_class_under_its_name():
  folder = os.path.join(ROOT, "as_introvae_tf", "methods")
  files = sorted(
    f[:-3]
    for f in os.listdir(folder)
    if f.endswith(".py") and not f.startswith("_") and f != "base.py"
  )
  assert sorted(methods.names()) == files
  # the listed order first (a method file not listed there follows them, alphabetically)
  listed = [n for n in methods._LISTED_FIRST if n in files]  # pylint: disable=protected-access
  assert list(methods.names()) == listed + sorted(set(files) - set(listed))
  assert config_lib.METHODS == methods.names()
  for name, cls in methods.all_methods().items():
    assert cls.method == name and issubclass(cls, base.IntrospectiveVAE)
    assert cls.__module__ == f"as_introvae_tf.methods.{name}"


@pytest.mark.parametrize("name", methods.names())
def test_every_method_declares_its_metrics_hint_and_hyper_parameters(name):
  cls = methods.get(name)
  assert cls.metric_names and len(set(cls.metric_names)) == len(cls.metric_names)
  assert any(m.startswith("grad_norm_") for m in cls.metric_names)
  assert cls.divergence_hint.strip()
  assert set(cls.bar_metrics) - {"loss", "rec", "kl_real"} <= set(cls.metric_names)
  assert cls.hparams_class in hparams.SECTIONS
  config = config_lib.ExperimentConfig()
  assert set(cls.tensorboard_hparams) <= set(config.to_dict())


def test_unknown_method_names_the_available_ones():
  with pytest.raises(ValueError, match="available: " + ", ".join(methods.names()) + "$"):
    methods.get("nope")


def test_registering_a_method_outside_its_file_is_refused():
  with pytest.raises(ValueError, match="must be defined in methods/other.py"):
    methods.register("other")(type("Other", (), {"__module__": "somewhere.else"}))


def test_every_setting_is_declared_once_with_help_and_generates_its_flag():
  names = [s.name for s in config_lib.SETTINGS]
  assert len(names) == len(set(names))
  assert [f.name for f in dataclasses.fields(config_lib.ExperimentConfig)] == names
  values = flags.FlagValues()
  config_lib.define_flags(values)
  for s in config_lib.SETTINGS:
    assert s.help and values[s.name].help.endswith(s.help)
    default = values[s.name].default
    assert (tuple(default) if isinstance(default, list) else default) == s.default, s.name
    if s.choices is not None:
      assert list(values[s.name].parser.enum_values) == list(s.choices)
  # beta_neg's reference default is written in one place only.
  assert config_lib.ExperimentConfig().beta_neg == hparams.LossHParams().beta_neg == 256.0


def test_sections_read_their_values_from_a_config_under_their_flag_names():
  config = config_lib.ExperimentConfig(
    avae_alpha=0.7, avae_clip_k=False, pid_kd=3.0, beta_neg=9.0, n_critic=2
  )
  assert hparams.AVAEHParams.from_config(config) == hparams.AVAEHParams(
    alpha=0.7, clip_k=False, pid_kd=3.0
  )
  assert hparams.LossHParams.from_config(config).beta_neg == 9.0
  assert hparams.WGANGPHParams.from_config(config).n_critic == 2


def test_an_enum_setting_outside_its_values_is_named():
  config = config_lib.ExperimentConfig(workdir="/tmp/w", as_kernel="gauss")
  with pytest.raises(
    config_lib.ConfigError, match="--as_kernel must be one of product, per_dim; got 'gauss'"
  ):
    config.validate()


def test_config_and_the_method_names_need_no_tensorflow():
  code = (
    "import sys; from as_introvae_tf import config, methods; "
    "assert methods.names() and config.ExperimentConfig().validate.__name__; "
    "assert 'tensorflow' not in sys.modules; print('ok')"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
  )
  assert proc.stdout.strip() == "ok", proc.stderr


def test_no_module_imports_the_training_loop_to_build_a_model():
  for module in ("run", "eval_lib", "export_lib", "api"):
    with open(os.path.join(ROOT, "as_introvae_tf", f"{module}.py")) as f:
      assert "import train_lib" not in f.read(), module


def test_method_files_call_only_the_public_api_of_the_base_class():
  """What a method may call is public (BUILD.md, "Adding a method"): no method file uses an
  underscore-named attribute that `base.IntrospectiveVAE` or its mixins define."""
  import ast  # pylint: disable=import-outside-toplevel

  private = {
    name
    for cls in base.IntrospectiveVAE.__mro__
    if cls.__module__.startswith("as_introvae_tf")
    for name in vars(cls)
    if name.startswith("_") and not name.startswith("__")
  }
  assert {"_report", "_record_non_finite", "_finite_checks"} <= private  # the check sees them
  for name in methods.names():
    with open(os.path.join(ROOT, "as_introvae_tf", "methods", f"{name}.py")) as f:
      tree = ast.parse(f.read())
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert used & private == set(), name


def test_validate_runs_the_methods_own_checks(monkeypatch):
  cls = methods.get("vae")

  def refuse(config, num_replicas=None):
    raise ValueError(f"--batch_size={config.batch_size} is no good for {num_replicas} replicas")

  monkeypatch.setattr(cls, "validate_config", refuse)
  config = config_lib.ExperimentConfig(workdir="/tmp/w", method="vae", batch_size=8)
  with pytest.raises(config_lib.ConfigError, match="--batch_size=8 is no good for 2 replicas"):
    config.validate(num_replicas=2)
  config.replace(method="introvae").validate(num_replicas=2)  # another method: no such check
