"""The README's results summary, written from the result files under results/2d/ alone.

  python tools/results_summary.py                     # print the block
  python tools/results_summary.py --readme=README.md  # replace <!-- BEGIN results_summary -->

One row per (data, method) over the runs at the papers' budget (30000 steps) with the default
flags of their flagfile and setting (no variant tag): mean +- sample std over seeds of KL, JSD
and 8 Gaussians' modes reached, as tools/reproduce_2d.py computes them, beside the paper's KL
and JSD. The full tables, variants and narrative are docs/results.md. Importing this module
has no side effects (no flags, no TensorFlow); `tests/test_readme.py` checks that the README's
block is what `summary()` gives.
"""

import argparse
import glob
import json
import os
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


def load_results(results_dir):
  """{(cell, method): [result, ...]} of the finished reference-budget runs without a tag."""
  rows = {}
  for table in _TABLES:
    for path in sorted(glob.glob(os.path.join(results_dir, table, "*.json"))):
      with open(path) as f:
        result = json.load(f)
      if result.get("tag") or result.get("train_steps") != STEPS or "seed" not in result:
        continue
      rows.setdefault((result["cell"], result["method"]), []).append(result)
  for results in rows.values():
    results.sort(key=lambda r: r["seed"])
  return rows


def _fmt(values):
  if len(values) == 1:
    return f"{values[0]:.2f}"
  return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def _order(key):
  cell, method = key
  return (
    _CELL_ORDER.index(cell) if cell in _CELL_ORDER else len(_CELL_ORDER),
    cell,
    _METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER),
    method,
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
  for cell, method in sorted(rows, key=_order):
    results = rows[(cell, method)]
    metrics = [r["metrics"] for r in results]
    modes = (
      _fmt([m["modes_covered"] for m in metrics])
      if all("modes_covered" in m for m in metrics) and results[0]["dataset"] == "8gaussians"
      else ""
    )
    paper = PAPER.get((cell, method))
    lines.append(
      f"| {_DATA.get(cell, cell)} | {method} | {','.join(str(r['seed']) for r in results)} | "
      f"{_fmt([m['kl'] for m in metrics])} | {_fmt([m['jsd'] for m in metrics])} | {modes} | "
      f"{f'{paper[0]} / {paper[1]}' if paper else ''} |"
    )
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results_dir", default=os.path.join(ROOT, "results", "2d"))
  parser.add_argument("--readme", default=None, help="replace this file's block")
  args = parser.parse_args(argv)
  text = summary(args.results_dir)
  if args.readme:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from readme_block import replace_readme_block  # pylint: disable=import-outside-toplevel

    replace_readme_block(args.readme, KEY, text)
  else:
    print(text)


if __name__ == "__main__":
  main()
