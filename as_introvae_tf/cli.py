"""What the command-line entry points share: a quiet TensorFlow start-up and absl's logging.

TensorFlow 2.21 writes its start-up notices (oneDNN, CUDA stubs, CPU features, "failed call
to cuInit" on a machine without a GPU) straight to file descriptor 2 before its logging is
configured, so `TF_CPP_MIN_LOG_LEVEL` does not hide them. `import_tensorflow()` imports
TensorFlow and lists its devices with descriptor 2 redirected to a temporary file, then
prints back every captured line that is not such a notice (real errors stay visible, once).
Set `AS_INTROVAE_TF_LOGS=1` to see everything.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

SHOW_TF_LOGS_ENV = "AS_INTROVAE_TF_LOGS"

_NOISE = re.compile(
  r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
  r"|[IW]\d{4} "  # C++ INFO/WARNING lines of the start-up
  r"|E\d{4} .*(cuda_platform|cuda_dnn|cuda_fft|cuda_blas|cuda_executor|cuda_diagnostics)"
  r"\.cc:\d+\]"  # no GPU or no CUDA libraries: expected on a CPU machine
  r"|To enable the following instructions: .*rebuild TensorFlow"
  r"|WARNING: Logging before InitGoogleLogging)"
)


def filter_startup_noise(text):
  """`text` without TensorFlow's start-up notices (see the module docstring); lines kept."""
  kept = [line for line in text.splitlines(keepends=True) if not _NOISE.match(line)]
  return "".join(kept)


@contextlib.contextmanager
def quiet_native_stderr(enabled=True):
  """Redirects file descriptor 2 (C++ and Python stderr) to a temporary file for the body,
  then writes back what `filter_startup_noise` keeps. A no-op when not `enabled` or when
  descriptor 2 cannot be duplicated."""
  if not enabled:
    yield
    return
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError, AttributeError):
    yield
    return
  with tempfile.TemporaryFile() as tmp:
    os.dup2(tmp.fileno(), 2)
    try:
      yield
    finally:
      try:
        sys.stderr.flush()
      except (OSError, ValueError):
        pass
      os.dup2(saved, 2)
      os.close(saved)
      tmp.seek(0)
      kept = filter_startup_noise(tmp.read().decode("utf-8", errors="replace"))
      if kept:
        sys.stderr.write(kept)
        sys.stderr.flush()


def show_tf_logs():
  """Whether `AS_INTROVAE_TF_LOGS` asks for TensorFlow's own start-up output."""
  return os.environ.get(SHOW_TF_LOGS_ENV, "").strip().lower() in ("1", "true", "yes")


def import_tensorflow():
  """Imports TensorFlow (and initialises its device list) without its start-up notices.

  Does not initialise the runtime context, so thread and device settings can still be made.
  Returns the `tensorflow` module.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  with quiet_native_stderr(enabled=not show_tf_logs()):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import keras  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import

    tf.config.list_physical_devices()
  return tf


def quiet_absl_logging(flag_values):
  """absl INFO lines (TensorFlow's checkpoint chatter, our own bookkeeping) would cut through
  the progress bar: show WARNING and above unless `--verbosity` was given."""
  from absl import logging  # pylint: disable=import-outside-toplevel

  if "verbosity" in flag_values and not flag_values["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def run_main(main, usage, argv=None):
  """Runs an absl `main(argv) -> exit status` as a console script (and `python -m`): `usage`
  becomes absl's usage text (unless `__main__` has its own docstring). TensorFlow is not
  imported here: `main` checks its flags first, then calls `import_tensorflow()`, so that
  `--help` and a wrong flag answer at once, and TensorFlow's start-up notices stay hidden."""
  from absl import app  # pylint: disable=import-outside-toplevel

  main_module = sys.modules.get("__main__")
  if main_module is not None and not main_module.__doc__:
    main_module.__doc__ = usage  # absl's --help prints it as the usage
  app.run(lambda args: sys.exit(main(args)), argv=argv)
