"""README.md's rules and commands, checked without training anything.

Running every README command would train the quickstart (minutes) and needs Docker for TF
Serving, so most commands are checked rather than run: each `python -m MODULE` and `python
PATH` exists, each `--flag` it passes is a flag that command defines, each `--flagfile` exists,
and the Python blocks only call what the package has. The cheap ones run: the example script
from outside the checkout (without `pip install`), and the config listing. The trained-model
calls themselves run in test_api.py and test_packaging.py. The documentation pages' commands
are checked the same way.
"""

import ast
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from as_introvae_tf import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import results_summary  # noqa: E402

from tools import as_sweep  # noqa: E402

FRESH_MACHINE = (
  "bash tools/setup.sh && python -m as_introvae_tf.train --flagfile=configs/quickstart.flags && "
  "python -m as_introvae_tf.export --workdir=runs/quickstart --export_dir=exports/quickstart"
)
# Programs a README command may start with; anything else is a new kind of command: add it
# here with the check it needs.
PROGRAMS = {"bash", "python", "pip", "docker", "tensorboard", "mkdocs", "ruff", "curl", "cd"}
PROGRAMS |= {"as-introvae-train", "npm"}
ABSL_FLAGS = {"help", "helpfull", "helpshort", "flagfile"}


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def _blocks(text, language):
  return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def _commands(text):
  """Each shell command of the ```bash blocks: comments dropped, continuations joined, `&&`
  chains split."""
  commands = []
  for block in _blocks(text, "bash"):
    block = block.replace("\\\n", " ")
    for line in block.splitlines():
      line = line.split("  #")[0].strip()
      if line and not line.startswith("#"):
        commands += [c.strip() for c in line.split("&&") if c.strip()]
  return commands


def _defined_flags(path):
  """Names of the absl flags (DEFINE_*("name", ...)) and argparse options a file defines."""
  source = _read(path)
  names = set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", source))
  names |= set(re.findall(r"add_argument\(\s*\"--(\w+)\"", source))
  return names


def _check_command(command):
  args = shlex.split(command)
  while args and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", args[0]):  # VAR=value before a command
    args = args[1:]
  program = args[0]
  assert program in PROGRAMS, f"{command!r}: a new kind of command ({program})"
  if program == "bash":
    assert os.path.isfile(os.path.join(ROOT, args[1])), command
    return
  if program == "npm":  # npm ci --prefix DIR: DIR holds the package.json and its lock file
    assert args[1:3] == ["ci", "--prefix"], command
    for name in ("package.json", "package-lock.json"):
      assert os.path.isfile(os.path.join(ROOT, args[3], name)), f"{command!r}: no {name}"
    return
  if program == "as-introvae-train":
    flags, rest = {s.name for s in config_lib.SETTINGS} | ABSL_FLAGS, args[1:]
  elif program == "python" and args[1] == "-m":
    if not args[2].startswith("as_introvae_tf"):
      return  # pytest, pip, ...
    path = os.path.join(ROOT, *args[2].split(".")) + ".py"
    assert os.path.isfile(path), f"{command!r}: no module {args[2]}"
    flags, rest = _defined_flags(path) | ABSL_FLAGS, args[3:]
    if args[2] == "as_introvae_tf.train":
      flags |= {s.name for s in config_lib.SETTINGS}
  elif program == "python" and args[1] != "-c":
    path = os.path.join(ROOT, args[1])
    assert os.path.isfile(path), f"{command!r}: no file {args[1]}"
    flags, rest = _defined_flags(path) | ABSL_FLAGS, args[2:]
  else:
    return
  for arg in rest:
    if not arg.startswith("--"):
      continue
    name, _, value = arg[2:].partition("=")
    assert name in flags or (name.startswith("no") and name[2:] in flags), (
      f"{command!r}: --{name} is not a flag of it"
    )
    if name == "flagfile" and not re.search(r"[A-Z]{3,}", value):  # NAME: a placeholder
      assert os.path.isfile(os.path.join(ROOT, value)), f"{command!r}: no {value}"


def test_readme_size_and_rules():
  text = _read(README)
  lines = text.splitlines()
  assert len(lines) <= 250
  first_load = next(i for i, line in enumerate(lines, 1) if "as_introvae_tf.load" in line)
  assert first_load < 150
  assert "../shared" not in text and "shared/design" not in text
  assert not re.search(r"\bissues? #?\d+", text, flags=re.I)
  assert FRESH_MACHINE in text
  assert "bash tools/test.sh" in text
  assert len(_read(os.path.join(ROOT, "BUILD.md")).splitlines()) <= 350


def test_tools_test_sh_builds_the_documentation_strictly(tmp_path):
  """tools/test.sh's own `mkdocs build` flags fail a site with a broken link (`--strict
  --quiet` passed it: --quiet drops the warnings before --strict counts them)."""
  lines = [
    l
    for l in _read(os.path.join(ROOT, "tools", "test.sh")).splitlines()
    if "mkdocs build" in l and not l.lstrip().startswith("#")
  ]
  assert len(lines) == 1, lines
  words = shlex.split(lines[0].split("mkdocs build", 1)[1].split(">", 1)[0])
  assert "--strict" in words, lines[0]
  (tmp_path / "docs").mkdir()
  (tmp_path / "mkdocs.yml").write_text("site_name: t\nnav:\n  - index.md\n")
  (tmp_path / "docs" / "index.md").write_text("# T\n\n[a page that is not there](missing.md)\n")
  env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
  built = subprocess.run(
    [sys.executable, "-m", "mkdocs", "build", *words],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert built.returncode != 0, built.stdout + built.stderr
  assert "missing.md" in built.stdout + built.stderr


@pytest.mark.parametrize(
  "path",
  [README, os.path.join(ROOT, "BUILD.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))),
  ids=lambda p: os.path.relpath(p, ROOT),
)
def test_every_command_names_a_module_a_file_and_flags_that_exist(path):
  commands = _commands(_read(path))
  if path == README:
    assert len(commands) >= 10
  for command in commands:
    _check_command(command)


def test_the_python_blocks_call_only_what_the_package_has():
  blocks = _blocks(_read(README), "python")
  assert blocks
  api = ast.parse(_read(os.path.join(ROOT, "as_introvae_tf", "api.py")))
  model_class = next(
    n for n in api.body if isinstance(n, ast.ClassDef) and n.name == "TrainedModel"
  )
  model_methods = {n.name for n in model_class.body if isinstance(n, ast.FunctionDef)}
  settings = {s.name for s in config_lib.SETTINGS}
  tree = ast.parse("\n".join(blocks))  # the blocks run in order, as one session
  called = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
      owner = node.func.value
      if isinstance(owner, ast.Name) and owner.id == "model":
        called.add(node.func.attr)
        assert node.func.attr in model_methods, node.func.attr
      if isinstance(owner, ast.Name) and owner.id == "as_introvae_tf":
        assert node.func.attr in ("train", "load"), node.func.attr
        for keyword in node.keywords:
          if node.func.attr == "train":
            assert keyword.arg in settings, keyword.arg
      if node.func.attr == "ExperimentConfig":
        for keyword in node.keywords:
          assert keyword.arg in settings, keyword.arg
  assert {"sample", "encode", "reconstruct", "decode", "interpolate"} <= called


def test_the_example_script_runs_from_a_checkout_without_pip_install(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  proc = subprocess.run(
    [sys.executable, os.path.join(ROOT, "examples", "quickstart.py"), "--help"],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=300,
    env=env,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "--workdir" in proc.stdout


def test_the_config_listing_runs():
  command = next(c for c in _commands(_read(README)) if "list_configs" in c)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  proc = subprocess.run(
    shlex.split(command), cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "quickstart" in proc.stdout


def test_the_results_summary_block_is_what_the_result_files_give():
  text = _read(README)
  begin, end = f"<!-- BEGIN {results_summary.KEY} -->\n", f"\n<!-- END {results_summary.KEY} -->"
  block = text.split(begin, 1)[1].split(end, 1)[0]
  assert block == results_summary.summary(), (
    "README's results summary is stale: run python tools/results_summary.py --readme=README.md"
  )


def _result(folder, cell, method, seed, kl, tag="", steps=30000, modes=8.0):
  result = {
    "cell": cell,
    "method": method,
    "seed": seed,
    "train_steps": steps,
    "tag": tag,
    "dataset": "8gaussians",
    "cpu": "test CPU",
    "metrics": {"kl": kl, "jsd": kl / 4, "modes_covered": modes},
  }
  name = "_".join(p for p in (cell, method, tag, str(steps), f"seed{seed}") if p)
  with open(os.path.join(folder, f"{name}.json"), "w") as f:
    json.dump(result, f)


def test_the_results_summary_keeps_the_sweep_stage_2_rows_and_no_other_variant(tmp_path):
  folder = tmp_path / "c1c3"
  folder.mkdir()
  kls = [116.0, 120.5, 131.0]
  for seed, kl in enumerate(kls):
    _result(folder, "C1", "as_introvae", seed, kl, tag="sweep_s23_warm", modes=5.0 + seed)
  _result(folder, "C1", "as_introvae", 0, 69.5)
  _result(folder, "C1", "as_introvae", 0, 35.3, tag="ref_as")  # a variant: docs/results.md's
  _result(folder, "C1", "as_introvae", 1, 1.0, tag="sweep_s1_warm", steps=8000)  # a screen run
  _result(folder, "C1", "as_introvae", 0, 2.0, tag="sweep_s512_nowarm")
  _result(folder, "C1", "as_introvae", 0, 2.5, tag="sweep_s64_warm")  # 64 < 512 as numbers
  rows = {
    line.split(" | ")[1]: line
    for line in results_summary.summary(str(tmp_path)).split("\n")
    if line.startswith("| 8 Gaussians C1")
  }
  assert list(rows) == [
    "as_introvae",
    "as_introvae (sweep_s23_warm)",
    "as_introvae (sweep_s64_warm)",
    "as_introvae (sweep_s512_nowarm)",
  ]
  cells = rows["as_introvae (sweep_s23_warm)"].split(" | ")
  assert cells[2] == "0,1,2"
  # an independent mean and sample std (ddof=1)
  assert cells[3] == f"{np.mean(kls):.2f} +- {np.std(kls, ddof=1):.2f}"
  assert cells[5] == f"{np.mean([5, 6, 7]):.2f} +- {np.std([5, 6, 7], ddof=1):.2f}"
  assert rows["as_introvae"].split(" | ")[3] == "69.50"
  legend = " ".join(results_summary.summary(str(tmp_path)).split("\n\n")[-1].split())
  assert "`--as_scale=23` `--lr_milestones=` (sweep_s23_warm)" in legend
  assert "`--as_scale=512` `--lr_milestones=` `--num_vae=0` (sweep_s512_nowarm)" in legend
  # The legend's flags are the ones the sweep's runs were given (tools/as_sweep.py).
  command = as_sweep.stage2_command(("C1", "as_introvae", 0, "screen_s512_nowarm"))
  assert "--overrides=as_scale=512,lr_milestones=,num_vae=0 " in command + " "
  with pytest.raises(ValueError, match="ref_as"):
    results_summary.sweep_flags("ref_as")
