"""Flagfiles: the packaged configs and `--flagfile` resolution from any working directory.

Flagfiles (`configs/*.flags`) start with `--flagfile=configs/base.flags` and list only what
differs; flags given on the command line after `--flagfile` override the file. The configs ship
inside the package (`configs_dir()`); `expand_flagfiles` resolves `--flagfile=configs/NAME.flags`
(and the `configs/base.flags` include) from any working directory, and names the file and line
of an unknown flag. `config.from_flagfile` reads a flagfile into an `ExperimentConfig`.

Imports neither TensorFlow nor the rest of the package (only absl's flags).
"""

from __future__ import annotations

import os

from absl import flags

CONFIGS_ENV = "AS_INTROVAE_CONFIGS"
"""Environment variable: a folder searched for flagfiles before the packaged configs."""


def configs_dir():
  """The folder of the packaged flagfiles (`quickstart.flags`, `base.flags`, ...).

  An installed package has them in `as_introvae_tf/configs/`; a source checkout (or an
  editable install) in `<repository>/configs/`.

  Raises:
    FileNotFoundError: neither exists (a broken installation).
  """
  here = os.path.dirname(os.path.abspath(__file__))
  for candidate in (os.path.join(here, "configs"), os.path.join(os.path.dirname(here), "configs")):
    if os.path.isfile(os.path.join(candidate, "base.flags")):
      return candidate
  raise FileNotFoundError(
    f"the packaged configs are missing (no base.flags in {here}/configs "
    "or beside the package): reinstall as_introvae_tf"
  )


def list_configs():
  """Names of the packaged configs (without `.flags`), sorted; `base` is only an include."""
  return sorted(
    f[: -len(".flags")]
    for f in os.listdir(configs_dir())
    if f.endswith(".flags") and f != "base.flags"
  )


def config_path(name):
  """The path of packaged config `name` (`"quickstart"`, `"quickstart.flags"` or
  `"configs/quickstart.flags"`).

  Raises:
    FileNotFoundError: no such packaged config (the message lists the available ones).
  """
  base = os.path.basename(str(name))
  if not base.endswith(".flags"):
    base += ".flags"
  path = os.path.join(configs_dir(), base)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no packaged config {name!r}; available: {', '.join(list_configs())}")
  return path


def resolve_flagfile(path, including=None):
  """Where `--flagfile=PATH` points, from any working directory.

  Tried in order: PATH as given (absolute, or relative to the working directory); for a
  flagfile included by another one, PATH relative to the including file's folder and to its
  parent (the includes are written relative to the repository root: `configs/base.flags`);
  `$AS_INTROVAE_CONFIGS/NAME`; the packaged config `NAME` (`configs_dir()`), where NAME is
  PATH's file name when PATH is `NAME`, `NAME.flags` or `configs/NAME.flags`.

  Raises:
    absl.flags.Error: nothing found (the message lists where it looked and the packaged
      configs).
  """
  path = os.path.expanduser(str(path))
  tried = [os.path.abspath(path)]
  if os.path.isfile(path):
    return path
  if os.path.isabs(path):
    raise flags.Error(f"--flagfile={path}: no such file")
  candidates = []
  if including:
    folder = os.path.dirname(os.path.abspath(including))
    candidates += [os.path.join(folder, path), os.path.join(os.path.dirname(folder), path)]
  parts = os.path.normpath(path).split(os.sep)
  if len(parts) == 1 or (len(parts) == 2 and parts[0] == "configs"):
    name = parts[-1] if parts[-1].endswith(".flags") else parts[-1] + ".flags"
    if os.environ.get(CONFIGS_ENV):
      candidates.append(os.path.join(os.path.expanduser(os.environ[CONFIGS_ENV]), name))
    try:
      candidates.append(os.path.join(configs_dir(), name))
    except FileNotFoundError:
      pass
  for candidate in candidates:
    if os.path.isfile(candidate):
      return candidate
  tried += [os.path.abspath(c) for c in candidates]
  try:
    available = f"; packaged configs: {', '.join(list_configs())}"
  except FileNotFoundError:
    available = ""
  raise flags.Error(
    f"--flagfile={path}: file not found (looked for {', '.join(dict.fromkeys(tried))}){available}"
  )


def _unknown_flag(text, known):
  """The name of the flag on flagfile line `text` if `known` (a FlagValues) lacks it."""
  if known is None or not text.startswith("-"):
    return None
  name = text.lstrip("-").split("=", 1)[0].strip()
  if not name or name in known or (name.startswith("no") and name[2:] in known):
    return None
  return name


def _flagfile_lines(path, stack, known=None):
  """The flag lines of a flagfile with its includes expanded in place (absl's format: blank
  lines and lines starting with `#` or `//` are skipped). With `known` (a FlagValues), a line
  whose flag it does not define raises `flags.Error` naming the file and the line."""
  real = os.path.realpath(path)
  if real in stack:
    raise flags.Error(f"--flagfile={path}: circular include ({' -> '.join(stack + [real])})")
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.readlines()
  except OSError as e:
    raise flags.Error(f"--flagfile={path}: cannot read it ({e.strerror})") from None
  except UnicodeDecodeError as e:
    raise flags.Error(
      f"--flagfile={path}: not a text file of --flag=value lines (byte {e.start} is not UTF-8)"
    ) from None
  out = []
  for number, line in enumerate(lines, 1):
    text = line.strip()
    if not text or text.startswith("#") or text.startswith("//"):
      continue
    if known is not None and not text.startswith("-"):
      raise flags.Error(
        f"--flagfile={path}, line {number}: not a --flag=value line ({text[:80]}); "
        "comments start with #"
      )
    if text.startswith(("--flagfile=", "-flagfile=")):
      include = resolve_flagfile(text.split("=", 1)[1].strip(), including=path)
      out += _flagfile_lines(include, stack + [real], known)
    elif _unknown_flag(text, known):
      raise flags.Error(
        f"--flagfile={path}, line {number}: unknown flag --{_unknown_flag(text, known)} "
        f"({text[:80]})"
      )
    else:
      out.append(text)
  return out


def expand_flagfiles(argv, known=None):
  """`argv` with every `--flagfile=PATH` (or `--flagfile PATH`) replaced by the file's flags.

  With `known` (the FlagValues the command line will be parsed into), a flagfile line naming
  a flag it does not define is an error naming the flagfile and the line (absl's own message
  would name only the flag).

  Each flagfile and each include is found with `resolve_flagfile`, so the packaged configs
  work from any working directory while a `configs/X.flags` beside the working directory
  still wins. Order is kept: later flags override earlier ones, as in absl. Arguments after
  `--` are left alone.

  Raises:
    absl.flags.Error: a flagfile that cannot be found or read, a circular include, or an
      unknown flag in a flagfile (with `known`).
  """
  out = [argv[0]] if argv else []
  args = list(argv[1:])
  i = 0
  while i < len(args):
    arg = args[i]
    if arg == "--":
      out += args[i:]
      break
    path = None
    if arg.startswith(("--flagfile=", "-flagfile=")):
      path = arg.split("=", 1)[1]
    elif arg in ("--flagfile", "-flagfile") and i + 1 < len(args):
      i += 1
      path = args[i]
    if path is None:
      out.append(arg)
    elif path:  # absl ignores an empty --flagfile=
      out += _flagfile_lines(resolve_flagfile(path), [], known)
    i += 1
  return out
