"""Flags and the frozen, validated experiment configuration, generated from `hparams.py`.

Every setting is declared once, as a field of a section dataclass in `hparams.py` (its type,
default, help, allowed values and source). From those sections this module generates the absl
flags (`define_flags`, all optional, so tests and libraries can run without them), the flat
`ExperimentConfig` (one field per flag, named as the flag; `config.json` holds these keys),
the checks of allowed values in `validate()` and the grouped `--help` (`format_help`).
`ExperimentConfig.from_flags()` reads the flags once and `validate()` checks every value before
any work starts, raising `ConfigError` with a message that names the flag and the allowed
values. Only the thin mains (`train.py`, ...) read flags; libraries take a config.

Flagfiles: `from_flagfile` here; their resolution and the packaged configs in `flagfiles.py`
(`list_configs`, `config_path`, `configs_dir`, `expand_flagfiles`, `resolve_flagfile`, also
importable from here).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import json
import os
import textwrap

from absl import flags

from as_introvae_tf import hparams
from as_introvae_tf import settings
from as_introvae_tf.flagfiles import CONFIGS_ENV  # noqa: F401  (re-exported: config.<name>)
from as_introvae_tf.flagfiles import config_path  # noqa: F401
from as_introvae_tf.flagfiles import configs_dir  # noqa: F401
from as_introvae_tf.flagfiles import expand_flagfiles
from as_introvae_tf.flagfiles import list_configs  # noqa: F401
from as_introvae_tf.flagfiles import resolve_flagfile  # noqa: F401
from as_introvae_tf import methods
from as_introvae_tf.hparams import ADAM_VARIANTS  # noqa: F401  (the allowed values, re-exported)
from as_introvae_tf.hparams import ANNEAL  # noqa: F401
from as_introvae_tf.hparams import ANNEAL_ORIGINS  # noqa: F401
from as_introvae_tf.hparams import AS_KERNELS  # noqa: F401
from as_introvae_tf.hparams import AS_SQUASH  # noqa: F401
from as_introvae_tf.hparams import BAD_IMAGES  # noqa: F401
from as_introvae_tf.hparams import FUSE_PASSES  # noqa: F401
from as_introvae_tf.hparams import INITS  # noqa: F401
from as_introvae_tf.hparams import MIXED_PRECISION  # noqa: F401
from as_introvae_tf.hparams import NAN_POLICIES  # noqa: F401
from as_introvae_tf.hparams import REDUCTIONS  # noqa: F401
from as_introvae_tf.hparams import STRATEGIES  # noqa: F401
from as_introvae_tf.hparams import WARMUP_LOSSES  # noqa: F401

METHODS = methods.names()
"""`--method`'s values: one per file in `methods/`."""

FLAGS = flags.FLAGS


class ConfigError(ValueError):
  """A flag has a bad value; the message names the flag and what is allowed."""


@dataclasses.dataclass(frozen=True)
class Setting:
  """One setting as the flags see it: a field of an `hparams.py` section."""

  name: str  # the flag's name = the `ExperimentConfig` field's
  type: str  # the annotation, e.g. "int | None"
  default: object
  help: str
  choices: tuple | None
  source: str | None
  group: str
  field: dataclasses.Field

  @property
  def is_list(self):
    """A comma-separated list flag (`--filters=64,128`), a tuple of ints in the config."""
    return self.type.startswith("tuple")


def _settings():
  out = []
  for section in hparams.SECTIONS:
    for field in dataclasses.fields(section):
      meta = field.metadata
      out.append(
        Setting(
          settings.flag_name(field),
          field.type,
          field.default,
          meta["help"],
          meta.get("choices"),
          meta.get("source"),
          settings.group_of(section, field),
          field,
        )
      )
  names = [s.name for s in out]
  duplicated = sorted({n for n in names if names.count(n) > 1})
  if duplicated:
    raise TypeError(f"settings declared twice in hparams.SECTIONS: {duplicated}")
  return tuple(out)


SETTINGS = _settings()
"""Every training setting, in the order of `hparams.SECTIONS`."""

_DEFINE = {
  "bool": "DEFINE_boolean",
  "int": "DEFINE_integer",
  "float": "DEFINE_float",
  "str": "DEFINE_string",
  "tuple": "DEFINE_list",
}


def define_flags(flag_values=FLAGS):
  """Defines every flag of the training command in `flag_values` (idempotent): one per
  `SETTINGS` entry, of the kind its type says (an enum where it has allowed values)."""
  if "method" in flag_values:
    return
  for s in SETTINGS:
    if s.choices is not None:
      flags.DEFINE_enum(s.name, s.default, s.choices, s.help, flag_values=flag_values)
      continue
    default = list(s.default) if s.is_list and s.default is not None else s.default
    define = getattr(flags, _DEFINE[s.type.split("|")[0].strip()])
    define(s.name, default, s.help, flag_values=flag_values)


class _ExperimentConfigMethods:
  """The methods of `ExperimentConfig` (its fields are generated from `SETTINGS`)."""

  @classmethod
  def from_flags(cls, flag_values=FLAGS):
    """Builds a config from parsed absl flags; converts list flags and checks int lists."""
    values = {}
    for s in SETTINGS:
      values[s.name] = flag_values[s.name].value
      raw = values[s.name]
      if not s.is_list or raw is None:
        continue
      try:
        values[s.name] = tuple(int(v) for v in raw)
      except ValueError:
        raise ConfigError(
          f"--{s.name} must be a comma-separated list of integers, got {','.join(raw)!r}"
        ) from None
    return cls(**values)

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  def to_dict(self):
    return dataclasses.asdict(self)

  def to_json(self):
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  def validate(self, num_replicas=None):
    """Checks every value; raises `ConfigError` naming the flag and what is allowed.

    Args:
      num_replicas: replicas of the strategy, to check that `--batch_size` divides evenly.

    Returns:
      self, for chaining.
    """

    def need(cond, message):
      if not cond:
        raise ConfigError(message)

    for s in SETTINGS:
      value = getattr(self, s.name)
      need(
        s.choices is None or value in s.choices,
        f"--{s.name} must be one of {', '.join(s.choices or ())}; got {value!r}",
      )
    need(
      bool(self.workdir),
      "--workdir is required: the directory for checkpoints, TensorBoard logs and samples",
    )
    need(
      isinstance(self.seed, numbers.Integral) and 0 <= self.seed < 2**32,
      f"--seed must be an integer in [0, 2**32 - 1]; got {self.seed!r}",
    )
    for name in (
      "train_steps",
      "batch_size",
      "z_dim",
      "num_hidden",
      "num_layers",
      "log_every_steps",
      "checkpoint_every_steps",
      "keep_checkpoints",
      "image_every_steps",
      "steps_per_execution",
      "max_image_pixels",
    ):
      value = getattr(self, name)
      need(
        isinstance(value, int) and value > 0, f"--{name} must be a positive integer; got {value!r}"
      )
    for name in ("inter_op_threads", "intra_op_threads"):
      value = getattr(self, name)
      need(value >= 0, f"--{name} must be >= 0 (0 = TensorFlow's default); got {value}")
    for name in ("image_size", "channels"):
      value = getattr(self, name)
      need(value is None or value > 0, f"--{name} must be a positive integer; got {value!r}")
    need(
      self.channels is None or self.channels in (1, 3, 4),
      f"--channels must be 1 (grey), 3 (RGB) or 4 (RGBA); got {self.channels}",
    )
    need(
      self.filters is None or (len(self.filters) > 0 and min(self.filters) > 0),
      f"--filters must be positive integers, e.g. 64,128; got {self.filters}",
    )
    need(self.lr > 0, f"--lr must be > 0; got {self.lr}")
    need(0 < self.lr_gamma <= 1, f"--lr_gamma must be in (0, 1]; got {self.lr_gamma}")
    need(
      list(self.lr_milestones) == sorted(set(self.lr_milestones))
      and all(m > 0 for m in self.lr_milestones),
      f"--lr_milestones must be increasing positive steps; got {self.lr_milestones}",
    )
    for name in ("beta_rec", "beta_kl", "beta_neg", "margin", "introvae_alpha"):
      value = getattr(self, name)
      need(value >= 0, f"--{name} must be >= 0; got {value}")
    need(
      self.gamma_r > 0,
      f"--gamma_r must be > 0 (S-IntroVAE uses 1e-8; 0 is known to hurt); got {self.gamma_r}",
    )
    need(
      math.isfinite(self.as_scale) and self.as_scale > 0,
      f"--as_scale must be a finite number > 0 (1 = the mean over pairs); got {self.as_scale}",
    )
    need(
      isinstance(self.anneal_steps, int) and self.anneal_steps >= 0,
      f"--anneal_steps must be an integer >= 0 (0 = --train_steps); got {self.anneal_steps!r}",
    )
    if self.anneal_origin == "warmup_end" and self.anneal_steps:
      need(
        self.anneal_steps > self.num_vae,
        f"--anneal_steps={self.anneal_steps} must exceed --num_vae={self.num_vae} with "
        "--anneal_origin=warmup_end (T counts the steps after the warm-up)",
      )
    need(
      0 <= self.num_vae <= self.train_steps,
      f"--num_vae must be in [0, --train_steps={self.train_steps}]; got {self.num_vae}",
    )
    need(0 <= self.ema_decay < 1, f"--ema_decay must be in [0, 1); got {self.ema_decay}")
    for name in ("adam_beta1", "adam_beta2"):
      value = getattr(self, name)
      need(0 <= value < 1, f"--{name} must be in [0, 1); got {value}")
    for name in (
      "avae_alpha",
      "avae_beta",
      "avae_gamma",
      "avae_eta",
      "pid_ki",
      "pid_kp",
      "pid_kd",
      "gp_lambda",
    ):
      value = getattr(self, name)
      need(value >= 0, f"--{name} must be >= 0; got {value}")
    need(
      isinstance(self.n_critic, int) and self.n_critic > 0,
      f"--n_critic must be a positive integer; got {self.n_critic!r}",
    )
    need(self.adam_epsilon > 0, f"--adam_epsilon must be > 0; got {self.adam_epsilon}")
    need(
      isinstance(self.max_consecutive_skips, int) and self.max_consecutive_skips > 0,
      f"--max_consecutive_skips must be a positive integer; got {self.max_consecutive_skips!r}",
    )
    spe = self.steps_per_execution
    if isinstance(spe, int) and spe > 1:
      # Keras runs whole executions: the callbacks (logs, checkpoints, the switch from the
      # VAE warm-up, the stop at --train_steps) only see every spe-th step.
      for name in ("log_every_steps", "train_steps", "num_vae"):
        need(
          getattr(self, name) % spe == 0,
          f"--{name}={getattr(self, name)} must be a multiple of --steps_per_execution="
          f"{spe}: logs, checkpoints, the end of the VAE warm-up and the end of training "
          "happen between executions",
        )
    if num_replicas is not None:
      need(
        self.batch_size % num_replicas == 0,
        f"--batch_size={self.batch_size} must be divisible by the number of replicas "
        f"({num_replicas}) of --strategy={self.strategy}",
      )
    if self.jit_compile:
      need(
        self.strategy == "default" and (num_replicas or 1) == 1,
        "--jit_compile needs --strategy=default (Keras does not use XLA under tf.distribute)",
      )
    for field in dataclasses.fields(self):  # inf passed every `> 0` / `>= 0` check above
      value = getattr(self, field.name)
      if str(field.type) == "float" and not isinstance(value, bool):
        need(
          isinstance(value, numbers.Real) and math.isfinite(value),
          f"--{field.name} must be a finite number; got {value!r}",
        )
    try:  # the method's own checks, last: they import TensorFlow (`methods.validate_config`)
      methods.validate_config(self, num_replicas)
    except ValueError as e:
      raise ConfigError(str(e)) from None
    return self


ExperimentConfig = dataclasses.make_dataclass(
  "ExperimentConfig",
  [
    (s.name, s.type, dataclasses.field(default=s.default, metadata=s.field.metadata))
    for s in SETTINGS
  ],
  bases=(_ExperimentConfigMethods,),
  frozen=True,
)
ExperimentConfig.__module__ = __name__
ExperimentConfig.__doc__ = """Everything a run needs: one field per setting of `hparams.py`, named
as its flag (see `define_flags`); `dataclasses.replace`-able, frozen, saved as config.json."""


def from_flagfile(path, *args):
  """The `ExperimentConfig` of a flagfile (and further `--flag=value` args), unvalidated.

  Reads a private `FlagValues`, so the process's own flags are untouched (tools that train
  many configs in one process use this). `path` is resolved as `resolve_flagfile` does, so
  `from_flagfile("configs/quickstart.flags")` works from any working directory.

  Raises:
    absl.flags.Error: a missing flagfile or a bad flag value.
    ConfigError: a list flag (`--filters`, `--lr_milestones`) that is not comma-separated
      integers.
  """
  values = flags.FlagValues()
  define_flags(values)
  values(expand_flagfiles(["config", f"--flagfile={path}", *args], known=values))
  return ExperimentConfig.from_flags(values)


# === Help ====================================================================================

FLAG_GROUPS = tuple(
  (group, tuple(s.name for s in SETTINGS if s.group == group)) for group in settings.GROUPS
)
"""The training flags by concern, in the order `--help` lists them (every flag exactly once)."""

FLAG_SOURCES = {s.name: s.source for s in SETTINGS if s.source}
"""Where each flag's default comes from; flags not listed are this project's choice."""


def _format_value(value):
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value) if value else "(empty)"
  if value is None:
    return "(unset)"
  return str(value)


def format_help(flag_values=FLAGS, width=100):
  """The grouped help of the training flags: one block per `FLAG_GROUPS` entry, each flag with
  its help text, default, the source of the default, and the value set by a flagfile or the
  command line (if any)."""
  lines = []
  wrap = textwrap.TextWrapper(width=width, initial_indent="      ", subsequent_indent="      ")
  for group, names in FLAG_GROUPS:
    lines += ["", f"{group}:"]
    for name in names:
      flag = flag_values[name]
      lines.append(f"  --{name}")
      lines += wrap.wrap(flag.help)
      info = f"default: {_format_value(flag.default)}"
      info += f"; source: {FLAG_SOURCES.get(name, 'project default')}"
      if flag.present:
        info += f"; now: {_format_value(flag.value)}"
      lines += wrap.wrap(f"[{info}]")
  return "\n".join(lines)


def save_config(config, workdir):
  """Writes WORKDIR/config.json (the flags of the run)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(config.to_json())
  os.replace(tmp, path)
  return path


def check_run_directory(workdir):
  """Checks that `workdir` is a training run directory (it has config.json), without
  importing TensorFlow, so that the evaluate and export commands name a wrong `--workdir` at
  once instead of after TensorFlow's start-up (seconds).

  Raises:
    FileNotFoundError: `workdir` does not exist, or has no config.json (the messages that
      `load_config` and `run.restore_run` give).
  """
  workdir = os.path.abspath(os.path.expanduser(str(workdir)))  # as `run.restore_run` does
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"--workdir={workdir} does not exist")
  _config_path(workdir)


def _config_path(workdir):
  """WORKDIR/config.json; FileNotFoundError (naming both) when it is missing."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} not found: --workdir={workdir} is not a training run "
      "directory (run as_introvae_tf.train first)"
    )
  return path


def load_config(workdir):
  """Reads WORKDIR/config.json back into an `ExperimentConfig`.

  Raises:
    FileNotFoundError: no config.json in `workdir` (not a training run directory).
    ConfigError: config.json cannot be read, is truncated or garbled (not JSON), is not a
      JSON object, or holds a value of the wrong kind for its flag (a string for `z_dim`, a
      list for `lr`, ...); the message names the file and the flag.
  """
  path = _config_path(workdir)
  try:
    with open(path, encoding="utf-8") as f:
      values = json.load(f)
  except OSError as e:
    raise ConfigError(f"{path} cannot be read ({e.strerror or e})") from None
  except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
    raise ConfigError(
      f"{path} is not valid JSON ({e}); it may be truncated. The flags the run started "
      "with are also in its TensorBoard text summary `config` (tensorboard/train)"
    ) from None
  if not isinstance(values, dict):
    raise ConfigError(f"{path} is not a JSON object of flags (it holds a {type(values).__name__})")
  kinds = {f.name: str(f.type) for f in dataclasses.fields(ExperimentConfig)}
  values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in kinds}
  for name, value in values.items():
    if not _has_kind(value, kinds[name]):
      raise ConfigError(
        f"{path} does not hold a valid run config: {name} is {value!r}, expected "
        f"{kinds[name].replace('tuple', 'list of ints')}"
      )
  try:
    return ExperimentConfig(**values)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"{path} does not hold a valid run config: {e}") from None


def _has_kind(value, kind):
  """Whether a config.json value fits an `ExperimentConfig` field's annotation `kind` ("int",
  "float", "str", "bool", "tuple" of ints, each possibly "| None"). JSON's 1 is a float too."""
  for name in kind.split("|"):
    name = name.strip()
    if name == "None" and value is None:
      return True
    if isinstance(value, bool):
      if name == "bool":
        return True
      continue
    if name == "int" and isinstance(value, int):
      return True
    if name == "float" and isinstance(value, (int, float)):
      return True
    if name == "str" and isinstance(value, str):
      return True
    if name == "tuple" and isinstance(value, tuple):
      return all(isinstance(v, int) and not isinstance(v, bool) for v in value)
  return False


ARCHITECTURE_KEYS = (
  "method",
  "dataset",
  "z_dim",
  "image_size",
  "channels",
  "filters",
  "num_hidden",
  "num_layers",
)
"""Fields that must not change when a run is resumed from its checkpoint."""
