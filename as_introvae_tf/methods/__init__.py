"""The training methods, one file each, and their registry.

A method is a `keras.Model` subclass of `base.IntrospectiveVAE` in `methods/<name>.py`,
registered under `<name>` (`--method=<name>`) with `@register("<name>")`. It declares its
hyper-parameter dataclass (`hparams_class`), its metrics (`metric_names`), the advice printed
when it diverges (`divergence_hint`) and its `train_step` (`introspective_step`), written in
the public API of `base.IntrospectiveVAE`; its own checks of a config go in its
`validate_config` (called through `validate_config` here).

The registry finds the methods by their file names, without importing them (so `config.py`
lists `--method`'s values without TensorFlow); `get(name)` imports the file and returns the
class it registered.

  from as_introvae_tf import methods
  methods.names()             # ("vae", "introvae", "soft_introvae", "as_introvae", ...)
  methods.get("as_introvae")  # the ASIntroVAE class
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

__all__ = ["all_methods", "get", "names", "register", "validate_config"]

_NOT_METHODS = frozenset({"base"})
"""Modules of this package that hold no method."""

_LISTED_FIRST = ("vae", "introvae", "soft_introvae", "as_introvae", "avae", "wgan_gp")
"""The order `--help` lists the methods in (the papers' progression, then the baselines); a
method not named here needs no entry: it follows them, in alphabetical order."""

_REGISTRY = {}


def names():
  """The `--method` names: one per method file in this folder (no import), `_LISTED_FIRST`
  first."""
  folder = os.path.dirname(os.path.abspath(__file__))
  found = {
    m.name
    for m in pkgutil.iter_modules([folder])
    if not m.name.startswith("_") and m.name not in _NOT_METHODS
  }
  return tuple(n for n in _LISTED_FIRST if n in found) + tuple(sorted(found - set(_LISTED_FIRST)))


def register(name):
  """Class decorator: registers a method class under `name` (its file's name) and sets its
  `method` attribute.

  Raises:
    ValueError: `name` is already registered by another class, or is not the file's name.
  """

  def decorate(cls):
    module = cls.__module__.rsplit(".", 1)[-1]
    if module != name:
      raise ValueError(
        f"method {name!r} must be defined in methods/{name}.py, not in {cls.__module__}"
      )
    previous = _REGISTRY.get(name)
    if previous is not None and previous.__qualname__ != cls.__qualname__:
      raise ValueError(f"method {name!r} is already registered ({previous.__qualname__})")
    cls.method = name
    _REGISTRY[name] = cls
    return cls

  return decorate


def get(name):
  """The model class of method `name` (imports `methods/<name>.py`, and TensorFlow).

  Raises:
    ValueError: no such method (the message lists the available ones).
  """
  if name not in names():
    raise ValueError(f"unknown method {name!r}; available: {', '.join(names())}")
  importlib.import_module(f"{__name__}.{name}")
  return _REGISTRY[name]


def all_methods():
  """{name: model class} of every method (imports them all)."""
  return {name: get(name) for name in names()}


def validate_config(config, num_replicas=None):
  """Runs the checks of `config.method`'s own class (`IntrospectiveVAE.validate_config`) on
  `config` (`config.ExperimentConfig.validate` calls it after the common checks). Imports the
  method, and with it TensorFlow, quietly (`cli.import_tensorflow`) if it is not imported yet.

  Args:
    config: an `ExperimentConfig`.
    num_replicas: replicas of the strategy, or None when not known yet.

  Raises:
    ValueError: the method cannot run with `config` (the message names the flag), or an
      unknown method.
  """
  if "tensorflow" not in sys.modules:
    from as_introvae_tf import cli  # pylint: disable=import-outside-toplevel

    cli.import_tensorflow()
  get(config.method).validate_config(config, num_replicas)
