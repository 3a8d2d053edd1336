"""The AS-IntroVAE 2-D sweep's stage-1 screen and stage-2 cells: their tables and decision
rules, from the result files alone (results/2d/as_introvae_sweep/PLAN.md fixes the rules).

  python tools/as_sweep.py                         # prints the table and the rules' outcome
  python tools/as_sweep.py --out=results/2d/as_introvae_sweep/SCREEN.md
  python tools/as_sweep.py --next=3                # the next three stage-2 runs' commands
  python tools/as_sweep.py --doc=docs/results.md   # its `as_sweep screen` and `as_sweep stage2`
                                                   # blocks (`<!-- BEGIN as_sweep ... -->`)

For each configuration (a result file's `tag`): KL and modes per seed at the stop step, the
mean KL, and from the training trajectory the medians over the steps in (2000, 6000] of
`as_share_rec` (the AS-Distance's share of the reconstructions' expELBO exponent) and
`as_factor` (the factor it puts on the encoder's expELBOs), and the last `rec`.

Stage 2 (PLAN.md, amendment 3): rule 2's two configurations at C1, C2, C3 for 30000 steps,
seeds 0, 1, 2, tagged `sweep_<configuration without screen_>` in `results/2d/c1c3/`, against
S-IntroVAE's untagged files there. Each cell (configuration, setting) is `fails` as soon as one
seed has fewer than 8 modes or a KL of 30 or more, `passes` with 8 modes on 3 of 3 seeds, a
mean KL below 10 and every seed's KL below every S-IntroVAE seed's (3 of them), else `open`
with the runs it still needs; amendment 6 runs no more seeds of the second configuration's
failed cells ("not run"). Importable without side effects (no flags at import).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = os.path.join(ROOT, "results", "2d", "as_introvae_sweep", "c1c3")
TABLE = os.path.join(ROOT, "results", "2d", "c1c3")  # the 30000-step files, stage 2's among them
SETTINGS = ("C1", "C2", "C3")
STAGE2_SEEDS = (0, 1, 2)
STAGE2_STEPS = 30000
WINDOW = (2000, 6000)  # the introspective steps with c < 1 (T = 30000, linear: c = 1 at 6000)
COLLAPSED_REC = 1.9  # the data's second moment is 2.0: a decoder that outputs one point
SCREEN_GLOB = "C1_*_screen_*_seed*.json"  # the screen's result files, in SWEEP
FILLED_CONFIGS = 1  # amendment 6: only the first-ranked configuration's failed cells get seeds


def load(pattern=os.path.join(SWEEP, SCREEN_GLOB)):
  """{tag: [result, ...]} of the screen's result files, seeds in order."""
  runs = {}
  for path in sorted(glob.glob(pattern)):
    with open(path) as f:
      result = json.load(f)
    runs.setdefault(result["tag"], []).append(result)
  for rows in runs.values():
    rows.sort(key=lambda r: r["seed"])
  return runs


def window_median(result, name, window=WINDOW):
  """Median of the trajectory's `name` over the logged steps in (window[0], window[1]], or None
  when the run did not log it there."""
  t = result.get("trajectory", {})
  values = [
    v
    for step, v in zip(t.get("step", []), t.get(name, []))
    if window[0] < step <= window[1] and v is not None
  ]
  return statistics.median(values) if values else None


def summarize(runs):
  """One row per configuration: the numbers the rules read."""
  rows = []
  for tag, results in runs.items():
    kls = [_kl_and_modes(r)[0] for r in results]  # a diverged run: inf
    rows.append(
      {
        "tag": tag,
        "method": results[0]["method"],
        "seeds": [r["seed"] for r in results],
        "kl": kls,
        "mean_kl": statistics.fmean(kls),
        "modes": [0 if r.get("diverged") else r["metrics"].get("modes_covered") for r in results],
        "share_rec": [window_median(r, "as_share_rec") for r in results],
        "factor": [window_median(r, "as_factor") for r in results],
        "last_rec": [(r.get("trajectory", {}).get("rec") or [None])[-1] for r in results],
      }
    )
  return rows


def ranked(rows, seeds=(0, 1)):
  """PLAN.md rule 2: AS-IntroVAE configurations with every seed in `seeds` run, by mean KL;
  those with fewer than 8 modes on any seed after those with 8 on all."""
  complete = [
    r
    for r in rows
    if r["method"] == "as_introvae"
    and set(seeds) <= set(r["seeds"])
    and None not in r["modes"]  # 8 Gaussians only: the rules read the modes
  ]
  return sorted(complete, key=lambda r: (min(r["modes"]) < 8, r["mean_kl"], -sum(r["modes"])))


def stage2_configs(pattern=os.path.join(SWEEP, SCREEN_GLOB)):
  """Rule 2's two configurations (screen tags, ranked) from the screen files matching
  `pattern`; fewer while the screen is incomplete."""
  return [r["tag"] for r in ranked(summarize(load(pattern)))[:2]]


def h1(rows, seeds=(0, 1)):
  """PLAN.md rule 1: True/False once both end scales have every seed, else None."""
  by_tag = {r["tag"]: r for r in rows}
  mean_end, sum_end = by_tag.get("screen_s1_warm"), by_tag.get("screen_s262144_warm")
  if (
    not mean_end
    or not sum_end
    or not all(set(seeds) <= set(r["seeds"]) for r in (mean_end, sum_end))
  ):
    return None
  return all(s is not None and s < 0.01 for s in mean_end["share_rec"]) and all(
    f is not None and f < 0.01 for f in sum_end["factor"]
  )


def _fmt(values, spec):
  return ", ".join(
    "-" if v is None else "diverged" if v == math.inf else format(v, spec) for v in values
  )


def _kl_and_modes(result):
  """(KL, modes) of a result file; a run that diverged (`diverged` in its file, written
  by reproduce_2d) counts as KL inf and 0 modes: it fails an AS-IntroVAE cell and is no bar
  for AS-IntroVAE's seeds as an S-IntroVAE seed."""
  if result.get("diverged"):
    return math.inf, 0
  return result["metrics"]["kl"], result["metrics"]["modes_covered"]


def table(rows):
  """Markdown lines of the screen's table, best mean KL first."""
  lines = [
    "| configuration | method | seeds | KL per seed | mean KL | modes | AS share (2000-6000] "
    "| AS factor (2000-6000] | last rec |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in sorted(rows, key=lambda r: r["mean_kl"]):
    lines.append(
      f"| {r['tag']} | {r['method']} | {_fmt(r['seeds'], 'd')} | {_fmt(r['kl'], '.1f')} | "
      f"{r['mean_kl']:.1f} | {_fmt(r['modes'], '.3g')} | {_fmt(r['share_rec'], '.2g')} | "
      f"{_fmt(r['factor'], '.2g')} | {_fmt(r['last_rec'], '.2f')} |"
    )
  return lines


def decisions(rows):
  """The PLAN.md rules' outcome so far, as Markdown lines."""
  out = []
  verdict = h1(rows)
  out.append(
    "- Rule 1 (H1): "
    + (
      "not decidable yet (both end scales need seeds 0 and 1)"
      if verdict is None
      else "holds"
      if verdict
      else "rejected"
    )
  )
  best = ranked(rows)
  out.append(
    "- Rule 2 (to stage 2): "
    + (
      ", ".join(r["tag"] for r in best[:2])
      if best
      else "not decidable yet (no configuration has seeds 0 and 1)"
    )
  )
  nowarm = [r for r in rows if r["tag"].endswith("_nowarm") and {0, 1} <= set(r["seeds"])]
  if nowarm:
    collapsed = all(
      all(x is not None and x >= COLLAPSED_REC for x in r["last_rec"]) for r in nowarm
    )
    out.append(f"- Rule 3 (H3): every complete warm-up-off run collapsed: {collapsed}")
  passing = [r for r in best if min(r["modes"]) >= 8 and max(r["kl"]) < 20]
  if best:
    out.append(
      "- Rule 4 (screen failure: no configuration with 8 modes and KL < 20 on both seeds): "
      + ("no, " + ", ".join(r["tag"] for r in passing) if passing else "yes")
    )
  return out


def stage2_tag(config):
  """The stage-2 tag of a screen configuration: screen_s1_warm -> sweep_s1_warm."""
  return "sweep_" + config.removeprefix("screen_")


def _stage2_file(folder, cell, method, tag, seed):
  name = "_".join(p for p in (cell, method, tag, str(STAGE2_STEPS), f"seed{seed}") if p)
  path = os.path.join(folder, name + ".json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def stage2_cells(configs, folder=TABLE):
  """PLAN.md's stage-2 cells of `configs` (screen tags), in the plan's order (C1, C2, C3; the
  configurations in the given order): a list of dicts with `config`, `cell`, `kl` and `modes`
  per AS-IntroVAE seed found, `soft_kl` (S-IntroVAE's seeds found), `state` ("passes", "fails",
  "open"), `missing` (the runs still to run, as "method seed N") and `not_run` (amendment 6:
  the AS-IntroVAE seeds other than 0 that a failed cell of a configuration after the first
  `FILLED_CONFIGS` does not get)."""
  cells = []
  for cell in SETTINGS:
    soft = [_stage2_file(folder, cell, "soft_introvae", "", n) for n in STAGE2_SEEDS]
    soft_kl = [_kl_and_modes(r)[0] for r in soft if r]
    for rank, config in enumerate(configs):
      runs = {
        n: _stage2_file(folder, cell, "as_introvae", stage2_tag(config), n) for n in STAGE2_SEEDS
      }
      found = {n: r for n, r in runs.items() if r}
      kl = [_kl_and_modes(r)[0] for r in found.values()]
      modes = [_kl_and_modes(r)[1] for r in found.values()]
      missing = [f"as_introvae seed {n}" for n, r in runs.items() if not r] + [
        f"soft_introvae seed {n}" for n, r in zip(STAGE2_SEEDS, soft) if not r
      ]
      if any(m < 8 or k >= 30 for k, m in zip(kl, modes)):
        state = "fails"
      elif missing:
        state = "open"
      elif statistics.fmean(kl) < 10 and max(kl) < min(soft_kl):
        state = "passes"
      else:
        state = "fails"
      dropped = state == "fails" and rank >= FILLED_CONFIGS  # seed 0 always runs (step 1)
      not_run = [f"as_introvae seed {n}" for n, r in runs.items() if dropped and n and not r]
      missing = [m for m in missing if m not in not_run]
      cells.append(
        dict(
          config=config,
          cell=cell,
          kl=kl,
          modes=modes,
          soft_kl=soft_kl,
          state=state,
          missing=missing,
          not_run=not_run,
        )
      )
  return cells


def stage2_verdict(cells, screen_failed):
  """PLAN.md's stage-2 outcome from `cells` (`stage2_cells`) and the screen's rule 4: the
  configuration that passes in every setting, "failure", or what is known so far (and, once
  every configuration has a failed cell, that success is excluded)."""
  configs = dict.fromkeys(c["config"] for c in cells)
  for config in configs:
    own = [c for c in cells if c["config"] == config]
    if own and all(c["state"] == "passes" for c in own):
      return f"success: {stage2_tag(config)} passes at {', '.join(c['cell'] for c in own)}"
  if cells and all(c["state"] == "fails" for c in cells):
    if screen_failed:
      return "failure: every stage-2 cell fails and the screen failed"
    return "otherwise: every stage-2 cell fails, but the screen did not fail (failure needs both)"
  passing = [f"{stage2_tag(c['config'])} at {c['cell']}" for c in cells if c["state"] == "passes"]
  failing = [f"{stage2_tag(c['config'])} at {c['cell']}" for c in cells if c["state"] == "fails"]
  open_ = [f"{stage2_tag(c['config'])} at {c['cell']}" for c in cells if c["state"] == "open"]
  text = "not decided yet: " + "; ".join(
    f"{what}: {', '.join(names) if names else 'none'}"
    for what, names in (("pass", passing), ("fail", failing), ("open", open_))
  )
  if configs and all(
    any(c["state"] == "fails" for c in cells if c["config"] == k) for k in configs
  ):
    # Success needs one configuration passing in every setting: none can any more. What the
    # open cells still decide is failure (none passes) or otherwise (some pass).
    text += " (success is excluded: every configuration fails in at least one setting; " + (
      "the open cells decide between failure and a partial result)"
      if screen_failed
      else "the open cells decide which cells pass; not failure, as the screen did not fail)"
    )
  return text


def stage2_order(configs, folder=TABLE):
  """PLAN.md's order (amendments 3, 4 and 6) of the stage-2 runs still missing, as (setting,
  method, seed, screen configuration or None for S-IntroVAE): seed 0 of the six AS-IntroVAE
  cells, then seeds 1 and 2 of the cells not failed, S-IntroVAE's seeds 1 and 2, then the
  failed cells' remaining seeds of the first configuration (A's seed 1 at C1-C3, then A's
  seed 2; amendment 6 runs no more seeds of B's failed cells). A cell's state is read from the
  files as they are now."""
  cells = {(c["cell"], c["config"]): c for c in stage2_cells(configs, folder)}
  grid = [(cell, config) for cell in SETTINGS for config in configs]

  def missing(cell, method, seed, config=None):
    tag = stage2_tag(config) if config else ""
    return _stage2_file(folder, cell, method, tag, seed) is None

  order = [(cell, "as_introvae", 0, config) for cell, config in grid]
  order += [
    (cell, "as_introvae", seed, config)
    for seed in (1, 2)
    for cell, config in grid
    if cells[(cell, config)]["state"] != "fails"
  ]
  order += [(cell, "soft_introvae", seed, None) for cell in SETTINGS for seed in (1, 2)]
  order += [  # amendment 4: configuration by configuration; amendment 6: A's only
    (cell, "as_introvae", seed, config)
    for config in configs[:FILLED_CONFIGS]
    for seed in (1, 2)
    for cell in SETTINGS
    if cells[(cell, config)]["state"] == "fails"
  ]
  return [run for run in order if missing(*run)]


def overrides(config):
  """The `--overrides` value of a screen or stage-2 configuration (`screen_s<N>_<warm|nowarm>`
  or `sweep_...`): `as_scale=N,lr_milestones=` (a fixed rate), plus `num_vae=0` without the
  warm-up. Raises ValueError for another name."""
  match = re.fullmatch(r"(?:screen|sweep)_s(\d+)_(warm|nowarm)", config)
  if not match:
    raise ValueError(f"{config!r} is not a sweep configuration (expected sweep_s<N>_warm|nowarm)")
  scale, warm = match.groups()
  return f"as_scale={scale},lr_milestones=" + (",num_vae=0" if warm == "nowarm" else "")


def stage2_command(run):
  """The `tools/reproduce_2d.py` command line of one stage-2 run (`stage2_order`'s tuple)."""
  cell, method, seed, config = run
  command = (
    f"python tools/reproduce_2d.py --table=c1c3 --settings={cell} --methods={method} "
    f"--seeds={seed} --train_steps={STAGE2_STEPS}"
  )
  if config:
    command += f" --overrides={overrides(config)} --tag={stage2_tag(config)}"
  return command


def _missing_text(cell):
  text = ", ".join(cell["missing"])
  if cell.get("not_run"):
    seeds = [m.rsplit(" ", 1)[1] for m in cell["not_run"]]
    text += ("; " if text else "") + (
      f"as_introvae seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)} not run (amendment 6)"
    )
  return text or "-"


def stage2_table(cells):
  """Markdown lines of the stage-2 cells."""
  lines = [
    "| configuration | setting | AS-IntroVAE KL per seed | modes | S-IntroVAE KL per seed "
    "| state | runs missing |",
    "|---|---|---|---|---|---|---|",
  ]
  for c in cells:
    lines.append(
      f"| {stage2_tag(c['config'])} | {c['cell']} | {_fmt(c['kl'], '.1f') or '-'} | "
      f"{_fmt(c['modes'], '.3g') or '-'} | {_fmt(c['soft_kl'], '.1f') or '-'} | {c['state']} | "
      f"{_missing_text(c)} |"
    )
  return lines


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", help="also write the Markdown here")
  parser.add_argument(
    "--doc", help="also replace this Markdown file's <!-- BEGIN as_sweep screen --> block"
  )
  parser.add_argument("--pattern", default=os.path.join(SWEEP, SCREEN_GLOB))
  parser.add_argument("--table", default=TABLE, help="the folder of the stage-2 result files")
  parser.add_argument(
    "--next",
    type=int,
    default=0,
    help="print only the commands of the next N stage-2 runs, in PLAN.md's order",
  )
  args = parser.parse_args(argv)
  runs = load(args.pattern)
  if not runs:
    sys.exit(f"error: --pattern={args.pattern} matches no result file")
  if args.doc:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from readme_block import check_readme_block  # pylint: disable=import-outside-toplevel

    try:
      check_readme_block(args.doc, "as_sweep screen")
    except ValueError as e:
      sys.exit(f"error: --doc: {e}")
  rows = summarize(runs)
  cpus = sorted({r["cpu"] for results in runs.values() for r in results if r.get("cpu")})
  results = [r for rs in runs.values() for r in rs]
  budgets = sorted({(r["train_steps"], r.get("schedule_steps", r["train_steps"])) for r in results})
  draws = sorted({r.get("eval_draws") for r in results if r.get("eval_draws")})
  heading = (
    f"Stage 1 at C1: {len(results)} runs of "
    + ", ".join(f"{t} steps on the schedule of a {s}-step run" for t, s in budgets)
    + f"; {'/'.join(map(str, draws)) or '-'} evaluation draws per run; the AS columns are "
    f"medians over the logged steps in ({WINDOW[0]}, {WINDOW[1]}]. Measured on "
    + ("; ".join(cpus) or "-")
    + "."
  )
  text = "\n".join([heading, ""] + table(rows) + [""] + decisions(rows)) + "\n"
  best = ranked(rows)
  stage2 = ""
  if len(best) >= 2:
    cells = stage2_cells([r["tag"] for r in best[:2]], args.table)
    screen_failed = not any(min(r["modes"]) >= 8 and max(r["kl"]) < 20 for r in best)
    stage2 = (
      "\n".join(
        [
          f"Stage 2: rule 2's configurations at C1-C3, {STAGE2_STEPS} steps, seeds "
          f"{', '.join(map(str, STAGE2_SEEDS))} (files in results/2d/c1c3/).",
          "",
        ]
        + stage2_table(cells)
        + ["", "- Stage 2: " + stage2_verdict(cells, screen_failed)]
      )
      + "\n"
    )
  if args.next:
    if len(best) < 2:
      sys.exit("error: rule 2 names no two configurations yet: the screen is not complete")
    runs = stage2_order([r["tag"] for r in best[:2]], args.table)
    print("\n".join(stage2_command(run) for run in runs[: args.next]) or "stage 2 is complete")
    return
  print(text + ("\n" + stage2 if stage2 else ""), end="")
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + ("\n" + stage2 if stage2 else ""))
  if args.doc:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from readme_block import replace_readme_block  # pylint: disable=import-outside-toplevel

    replace_readme_block(args.doc, "as_sweep screen", text.rstrip("\n"))
    with open(args.doc) as f:
      has_stage2 = "<!-- BEGIN as_sweep stage2 -->" in f.read()
    if stage2 and has_stage2:
      replace_readme_block(args.doc, "as_sweep stage2", stage2.rstrip("\n"))


if __name__ == "__main__":
  main()
