"""The README's results summary, written from the result files under results/2d/ alone.

  python tools/results_summary.py                     # print the block
  python tools/results_summary.py --readme=README.md  # replace <!-- BEGIN results_summary -->

One row per (data, method) over the runs at the papers' budget (30000 steps) with the default
flags of their flagfile and setting (no variant tag), and one per AS-IntroVAE configuration of
the sweep's stage 2 (tags `sweep_s<as_scale>_<warm|nowarm>`, results/2d/as_introvae_sweep/
PLAN.md): mean +- sample std over seeds of KL, JSD and 8 Gaussians' modes reached, as
tools/reproduce_2d.py computes them, beside the paper's KL and JSD. The full tables, variants
and narrative are docs/results.md. Importing this module has no side effects (no flags, no
TensorFlow); `tests/test_readme.py` checks that the README's block is what `summary()` gives.
"""

import argparse
import glob
import json
import os
import re
import statistics
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "results_summary"
STEPS = 30000  # the papers' budget (S-IntroVAE's 2-D code: 30000 iterations)

# The papers' numbers (KL, JSD): the AS-IntroVAE paper's Table 1 for the settings C1-C3 of
# 8 Gaussians (https://proceedings.mlr.press/v189/changjie23a.html) and the S-IntroVAE paper's
# Table 2 for the four 2-D sets (https://arxiv.org/abs/2012.13253); the same values as
# tools/reproduce_2d.py's PAPER.
PAPER = {
  ("C1", "soft_introvae"): (50.2, 16.9),
  ("C1", "as_introvae"): (3.4, 5.6),
  ("C2", "soft_introvae"): (136.5, 36.6),
  ("C2", "as_introvae"): (1.3, 4.4),
  ("C3", "soft_introvae"): (46.2, 9.6),
  ("C3", "as_introvae"): (2.0, 7.1),
  ("8gaussians", "soft_introvae"): (1.25, 0.96),
  ("2spirals", "soft_introvae"): (8.13, 3.37),
  ("checkerboard", "soft_introvae"): (20.27, 9.06),
  ("rings", "soft_introvae"): (9.18, 4.13),
}
_TABLES = ("datasets", "c1c3")  # the order of the rows: the four sets, then C1-C3
_CELL_ORDER = ("8gaussians", "2spirals", "checkerboard", "rings", "C1", "C2", "C3")
_METHOD_ORDER = ("vae", "introvae", "soft_introvae", "as_introvae", "avae", "wgan_gp")
_DATA = {c: f"8 Gaussians {c}" for c in ("C1", "C2", "C3")}
_DATA.update({"8gaussians": "8 Gaussians", "2spirals": "2 spirals"})
# The AS-IntroVAE sweep's stage-2 tags (tools/as_sweep.py's stage2_tag): the AS-Distance's
# factor on the mean over pairs (--as_scale), a fixed learning rate (--lr_milestones=), and the
# 2000-step VAE warm-up kept (warm) or off (nowarm: --num_vae=0).
SWEEP_TAG = re.compile(r"sweep_s(\d+)_(warm|nowarm)")


def sweep_flags(tag):
  """The flags a stage-2 sweep tag stands for (the runs' `--overrides`, from
  tools/as_sweep.py), as a string; ValueError for another tag."""
  from tools import as_sweep  # pylint: disable=import-outside-toplevel

  return " ".join(f"--{flag}" for flag in as_sweep.overrides(tag).split(","))


def _code(flags):
  """Each flag its own code span, so that wrapping never splits one."""
  return " ".join(f"`{flag}`" for flag in flags.split())


def load_results(results_dir):
  """{(cell, method, tag): [result, ...]} of the finished reference-budget runs.

  Kept: runs with train_steps == 30000 and a seed, untagged (tag "") or with a stage-2 sweep
  tag; other variants (tags such as ref_as) belong to docs/results.md, not to the summary.
  """
  rows = {}
  for table in _TABLES:
    for path in sorted(glob.glob(os.path.join(results_dir, table, "*.json"))):
      with open(path) as f:
        result = json.load(f)
      tag = result.get("tag") or ""
      if tag and not SWEEP_TAG.fullmatch(tag):
        continue
      if result.get("train_steps") != STEPS or "seed" not in result:
        continue
      rows.setdefault((result["cell"], result["method"], tag), []).append(result)
  for results in rows.values():
    results.sort(key=lambda r: r["seed"])
  return rows


def _fmt(values):
  if len(values) == 1:
    return f"{values[0]:.2f}"
  return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def _order(key):
  cell, method, tag = key
  match = SWEEP_TAG.fullmatch(tag)
  return (
    _CELL_ORDER.index(cell) if cell in _CELL_ORDER else len(_CELL_ORDER),
    cell,
    _METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER),
    method,
    (int(match.group(1)), match.group(2)) if match else (-1, ""),
  )


def summary(results_dir=os.path.join(ROOT, "results", "2d")):
  """The block's Markdown text (without the markers)."""
  rows = load_results(results_dir)
  if not rows:
    raise ValueError(f"no {STEPS}-step results under {results_dir}")
  cpus = sorted({r["cpu"] for results in rows.values() for r in results})
  head = (
    f"Budget: {STEPS} training steps per run, as the papers; KL and JSD as the S-IntroVAE "
    "code computes them (lower is better), each run the mean of its evaluation draws, then "
    "mean +- sample std over seeds; modes: of 8 Gaussians' 8, reached by samples. "
    f"Measured on {'; '.join(cpus)}."
  )
  lines = textwrap.wrap(head, width=79) + [
    "",
    "| data | method | seeds | KL | JSD | modes | paper KL / JSD |",
    "|---|---|---|---|---|---|---|",
  ]
  any_diverged = False
  for cell, method, tag in sorted(rows, key=_order):
    results = rows[(cell, method, tag)]
    diverged = [r["seed"] for r in results if r.get("diverged")]
    any_diverged = any_diverged or bool(diverged)
    metrics = [r["metrics"] for r in results if not r.get("diverged")]
    modes = (
      _fmt([m["modes_covered"] for m in metrics])
      if metrics
      and all("modes_covered" in m for m in metrics)
      and results[0]["dataset"] == "8gaussians"
      else ""
    )
    paper = PAPER.get((cell, method))
    seeds = ",".join(str(r["seed"]) + ("*" if r.get("diverged") else "") for r in results)
    kl, jsd = (
      (_fmt([m["kl"] for m in metrics]), _fmt([m["jsd"] for m in metrics]))
      if metrics
      else ("diverged", "diverged")
    )
    lines.append(
      f"| {_DATA.get(cell, cell)} | {method}{f' ({tag})' if tag else ''} | {seeds} | "
      f"{kl} | {jsd} | {modes} | {f'{paper[0]} / {paper[1]}' if paper else ''} |"
    )
  notes = []
  if any_diverged:
    notes.append("Seeds marked * diverged (NaN/inf; step in the result file): not averaged.")
  tags = sorted({tag for _, _, tag in rows if tag}, key=lambda t: _order(("", "", t)))
  if tags:
    notes.append(
      "Tagged rows: the AS-IntroVAE sweep's stage 2 (its PLAN.md), the setting's flags "
      + ("plus " + "; ".join(f"{_code(sweep_flags(tag))} ({tag})" for tag in tags) + ".")
    )
    from tools import as_sweep  # pylint: disable=import-outside-toplevel

    screen = os.path.join(results_dir, "as_introvae_sweep", "c1c3", as_sweep.SCREEN_GLOB)
    configs = as_sweep.stage2_configs(screen)
    dropped = [as_sweep.stage2_tag(c) for c in configs[as_sweep.FILLED_CONFIGS :]]
    if any(tag in dropped for tag in tags):
      notes.append(
        f"{', '.join(t for t in tags if t in dropped)}: a failed cell runs no more seeds "
        "(PLAN.md amendment 6)."
      )
  if notes:
    lines += [""] + textwrap.wrap(" ".join(notes), width=79)
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results_dir", default=os.path.join(ROOT, "results", "2d"))
  parser.add_argument("--readme", default=None, help="replace this file's block")
  args = parser.parse_args(argv)
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from readme_block import check_readme_block  # pylint: disable=import-outside-toplevel
  from readme_block import replace_readme_block  # pylint: disable=import-outside-toplevel

  try:
    if args.readme:
      check_readme_block(args.readme, KEY)
    text = summary(args.results_dir)
  except ValueError as e:
    sys.exit(f"error: {e}")
  if args.readme:
    replace_readme_block(args.readme, KEY, text)
  else:
    print(text)


if __name__ == "__main__":  # `python tools/results_summary.py`: the root on sys.path, for `tools`
  sys.path.insert(0, ROOT)
  main()
