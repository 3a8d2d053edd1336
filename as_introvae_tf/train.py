"""Trains an introspective VAE (AS-IntroVAE, S-IntroVAE, IntroVAE, VAE; AVAE and WGAN-GP).

  as-introvae-train --flagfile=configs/quickstart.flags --workdir=runs/quickstart
  as-introvae-train --flagfile=configs/8gaussians_as_introvae.flags --train_steps=2000
  python -m as_introvae_tf.train --flagfile=configs/cifar10_as_introvae.flags --batch_size=64

`--flagfile=configs/NAME.flags` names one of the packaged configs (found from any folder; a
configs/NAME.flags in the working directory wins); flags after it override the file. Running
the same command again resumes from the last checkpoint in --workdir. --help lists the
training flags by concern, --helpfull every flag (absl's own too).

In Python, `as_introvae_tf.train(config)` does the same (this module is callable).

SIGTERM or Ctrl-C stops after the current step and a checkpoint (exit status 143 / 130);
a second Ctrl-C aborts at once.
"""

import dataclasses
import os
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from as_introvae_tf import config as config_lib  # noqa: E402
from as_introvae_tf import flagfiles  # noqa: E402

_HELP_ARGS = ("--help", "-help", "-h", "--h", "-?", "--helpshort", "-helpshort")
USAGE = __doc__


def apply_threading(config):
  """Sets TensorFlow's thread pools and determinism (before TensorFlow executes any op).

  In a process where TensorFlow already runs (a notebook that trained before), thread pools can
  no longer change: the settings are skipped there.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  try:
    if config.inter_op_threads:
      tf.config.threading.set_inter_op_parallelism_threads(config.inter_op_threads)
    if config.intra_op_threads:
      tf.config.threading.set_intra_op_parallelism_threads(config.intra_op_threads)
  except RuntimeError:  # "... cannot be modified after initialization"
    pass


def train(config=None, /, **overrides):
  """Trains (or resumes) a run: the library form of `as-introvae-train`.

  Args:
    config: an `ExperimentConfig`; a dict of flag values; a flagfile (a path, or a packaged
      config name such as "quickstart" or "configs/quickstart.flags"); or None (the flag
      defaults).
    **overrides: flag values replacing the config's, e.g. `workdir="/tmp/q", train_steps=100`
      (lists such as `filters` as tuples).

  Returns:
    dict: `step` (the final step), `metrics` (the last log window's metrics), `samples_png`
    (path of WORKDIR/samples.png), `workdir`.

  Raises:
    config.ConfigError: a bad value (named in the message), e.g. no `workdir`, or an unknown
      flag name (in the dict or the overrides).
    TypeError: `config` of another type than those above.
    absl.flags.Error: a flagfile that cannot be found or parsed.
    train_lib.TrainingInterrupted: SIGINT/SIGTERM (Ctrl-C) stopped the run after a checkpoint
      (the same call resumes it).
    as_introvae_tf.workdir.WorkdirLockedError: another process is training in `workdir`.
    FileNotFoundError / ValueError: missing or bad data.
    train_lib.TrainingDivergedError: NaN/inf losses (the last good checkpoint is kept).
  """
  if config is None:
    config = config_lib.ExperimentConfig()
  elif isinstance(config, dict):
    unknown = sorted(
      set(config) - {f.name for f in dataclasses.fields(config_lib.ExperimentConfig)}
    )
    if unknown:
      raise config_lib.ConfigError(
        f"unknown flag(s) {', '.join(unknown)} in the config dict; see as-introvae-train --help"
      )
    config = config_lib.ExperimentConfig(**config)
  elif isinstance(config, (str, os.PathLike)):
    config = config_lib.from_flagfile(os.fspath(config))
  elif not isinstance(config, config_lib.ExperimentConfig):
    raise TypeError(
      "config must be an ExperimentConfig, a dict, a flagfile path or None; got "
      f"{type(config).__name__}"
    )
  known = {f for f in config.to_dict()}
  unknown = sorted(set(overrides) - known)
  if unknown:
    raise config_lib.ConfigError(
      f"unknown flag(s) {', '.join(unknown)}; see as-introvae-train --help"
    )
  overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
  config = config.replace(**overrides).validate()
  from as_introvae_tf import cli  # pylint: disable=import-outside-toplevel

  cli.import_tensorflow()
  apply_threading(config)
  from as_introvae_tf import train_lib  # pylint: disable=import-outside-toplevel

  result = train_lib.train_and_evaluate(config)
  return {**result, "workdir": config.workdir}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from as_introvae_tf import cli  # pylint: disable=import-outside-toplevel

  cli.quiet_absl_logging(flags.FLAGS)
  from as_introvae_tf import workdir as workdir_lib  # pylint: disable=import-outside-toplevel

  config = None
  try:
    config = config_lib.ExperimentConfig.from_flags(flags.FLAGS).validate()
  except config_lib.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  cli.import_tensorflow()
  from as_introvae_tf import train_lib  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import train_monitor  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import train_outputs  # pylint: disable=import-outside-toplevel

  try:
    apply_threading(config)
    result = train_lib.train_and_evaluate(config)
  except train_lib.TrainingInterrupted as e:
    logging.warning("%s", e)
    print(f"stopped: {e}", file=sys.stderr)
    return e.exit_status  # 143 (SIGTERM) or 130 (SIGINT), as the shell reports signals
  except KeyboardInterrupt:  # a second Ctrl-C during the stop
    print(
      "aborted by a second Ctrl-C: the last checkpoint written is kept"
      + (f" in {config.workdir}/checkpoints" if config else ""),
      file=sys.stderr,
    )
    return 130
  except (
    config_lib.ConfigError,
    FileNotFoundError,
    train_lib.TrainingDivergedError,
    train_monitor.CheckpointWriteError,
    train_outputs.OutputWriteError,
    workdir_lib.WorkdirLockedError,
    ValueError,
  ) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except Exception as e:  # pylint: disable=broad-except
    from as_introvae_tf.data import folders  # pylint: disable=import-outside-toplevel

    message = folders.pipeline_stop_message(e)  # an image folder whose files all went bad
    if message is None:
      raise
    print(f"error: {message}", file=sys.stderr)
    return 1
  print(
    f"Trained to step {result['step']}; samples: {result['samples_png']}; "
    f"TensorBoard: tensorboard --logdir {config.workdir}/tensorboard"
  )
  return 0


def print_help(argv, flag_values=flags.FLAGS, stream=None):
  """`--help`: the usage, then the training flags grouped by concern with their defaults and
  the source of each default (values a flagfile or the command line set are shown as "now")."""
  stream = stream or sys.stdout
  rest = [a for a in argv if a not in _HELP_ARGS]
  try:
    flag_values(rest)
  except flags.Error:
    pass  # show the help anyway; the bad flag is reported when training is started
  stream.write(
    USAGE.strip() + "\n" + config_lib.format_help(flag_values) + "\n\n"
    "--helpfull lists every flag, absl's own (--verbosity, ...) too. "
    f"Packaged configs (--flagfile=configs/NAME.flags): "
    f"{', '.join(flagfiles.list_configs())}\n"
  )


def parse_flags(argv, flag_values=flags.FLAGS):
  """absl's flag parsing with `flagfiles.expand_flagfiles` first; `--help` prints `print_help`
  and exits with status 0; a bad flag or flagfile prints `error: ...` and exits with 1."""
  try:
    argv = flagfiles.expand_flagfiles(argv, known=flag_values)
    if any(a in _HELP_ARGS for a in argv[1:]):
      print_help(argv, flag_values)
      sys.exit(0)
    if any(a in ("--helpfull", "-helpfull") for a in argv[1:]):
      app.usage(shorthelp=False, writeto_stdout=True)  # absl's own, exiting with 0, not 1
      sys.exit(0)
    return flag_values(argv)
  except flags.Error as e:
    sys.stderr.write(f"error: {e}\nPass --help to see the flags.\n")
    sys.exit(1)


def run(argv=None):
  """Console-script entry point of `as-introvae-train` (and `python -m as_introvae_tf.train`)."""
  config_lib.define_flags()
  main_module = sys.modules.get("__main__")
  if main_module is not None:
    main_module.__doc__ = USAGE  # absl's --helpfull prints it as the usage
  app.run(lambda args: sys.exit(main(args)), argv=argv, flags_parser=parse_flags)


class _CallableModule(types.ModuleType):
  """Makes `as_introvae_tf.train(config)` work although `as_introvae_tf.train` is this module."""

  def __call__(self, config=None, /, **overrides):
    return train(config, **overrides)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
  run()
