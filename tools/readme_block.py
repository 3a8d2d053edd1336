"""Generated blocks of a Markdown file (README.md, docs/results.md): the text between
`<!-- BEGIN key -->` and `<!-- END key -->` (written by tools/reproduce_2d.py,
tools/reference_2d.py and tools/results_summary.py)."""

import os


def check_readme_block(path, key):
  """Checks, before a long run, that `path` exists and has the block `key`.

  Raises:
    ValueError: no such file, or the markers are missing (the message names them).
  """
  begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such file (the Markdown file for the block {begin})")
  with open(path) as f:
    content = f.read()
  if begin not in content or end not in content:
    raise ValueError(
      f"{path} has no block {begin} ... {end}: add both markers where the table belongs"
    )


def replace_readme_block(path, key, text):
  """Replaces the text between `<!-- BEGIN {key} -->` and `<!-- END {key} -->` in `path`.

  Raises:
    ValueError: the markers are missing (the message names them).
  """
  begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
  with open(path) as f:
    content = f.read()
  if begin not in content or end not in content:
    raise ValueError(
      f"{path} has no block {begin} ... {end}: add both markers where the table belongs"
    )
  head, rest = content.split(begin, 1)
  _, tail = rest.split(end, 1)
  with open(path + ".tmp", "w") as f:
    f.write(f"{head}{begin}\n{text}\n{end}{tail}")
  os.replace(path + ".tmp", path)
