"""A tool's command line parsed into flags of its own (`parse`), so that its `run` can be called
from a process whose global absl flags hold others (the tests, another tool)."""

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
