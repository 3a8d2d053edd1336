"""A tool's command line parsed into flags of its own (`parse`), so that its `run` can be called
from a process whose global absl flags hold others (the tests, another tool)."""

import os

from absl import flags


def parse(define_flags, argv):
  """A new `flags.FlagValues` with DEFINE_FLAGS(flag_values) applied, then the command line
  ARGV (argv[0]: the program) parsed into it.

  Raises:
    absl.flags.Error: an unknown flag or a bad value.
  """
  opts = flags.FlagValues()
  define_flags(opts)
  opts(argv)
  return opts


def output_problem(path):
  """Why a file cannot be written at `path` (once its missing folders are made), or None.

  Checked when the flags are parsed, so a tool that writes its result only at its end stops
  before the work: a folder where the file should go, a file where a folder should be, no
  write permission in the nearest existing folder."""
  if not path:
    return None
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.isdir(path):
    return f"{path} is a folder, not a file"
  folder = os.path.dirname(path)
  while not os.path.exists(folder):
    folder = os.path.dirname(folder)
  if not os.path.isdir(folder):
    return f"{folder} is a file, where a folder should be"
  if not os.access(folder, os.W_OK):
    return f"no permission to write in {folder}"
  return None


def require_writable_output(name, flag_values=flags.FLAGS):
  """Registers a validator: the file flag `--name` must be writable (`output_problem`)."""

  def check(path):
    problem = output_problem(path)
    if problem:
      raise flags.ValidationError(f"cannot write --{name}={path}: {problem}")
    return True

  flags.register_validator(name, check, flag_values=flag_values)
