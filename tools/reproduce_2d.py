"""Reproduces the 2-D tables of the papers: KL, JSD, gnELBO, mean +- std over seeds.

Tables:
  c1c3      AS-IntroVAE paper Table 1: 8 Gaussians, VAE / IntroVAE / S-IntroVAE / AS-IntroVAE with
            (beta_kl, beta_rec, beta_neg) = C1 (0.3, 0.1, 0.9), C2 (0.5, 0.1, 0.9), C3 (0.7, 0.2, 0.9)
  datasets  S-IntroVAE paper Table 2: the four 2-D sets with the reference hyper-parameters
            (configs/<dataset>_<method>.flags)

Each run trains `configs/<dataset>_<method>.flags` with the overrides below in
`--workroot/<table>/<cell>/seed<k>` (an existing run resumes or is reused), evaluates it with
`eval_lib.evaluate` (`--eval_draws` evaluation draws per run), and writes one small JSON per
finished run to `--results_dir` (default `results/2d`): method, dataset, cell, seed, steps,
every flag that differs from the flagfile, the commit, the CPU, wall times, the evaluation
draws and gnELBO grid, and the metrics. A run whose result file exists with the same
`--eval_draws` and `--grid_points` is skipped (a file without `grid_points` was evaluated on
the reference grid), so a table grows a few runs at a time, across
days and machines; tables are assembled from those files alone (`--assemble_only` trains
nothing). A smaller `--train_steps` than the reference 30000 scales the warm-up (2000) and the
learning-rate milestones (10000, 15000) by the same factor; the table states the budget.
`--overrides=init=keras,rec_target_grad=false --tag=NAME` runs a variant (A/B experiments);
its results carry the tag and form their own table.

  python tools/reproduce_2d.py --table=datasets --datasets=8gaussians --methods=soft_introvae --seeds=0,1,2
  python tools/reproduce_2d.py --table=c1c3 --methods=soft_introvae,as_introvae --seeds=0
  python tools/reproduce_2d.py --table=c1c3 --assemble_only --readme=docs/results.md

Writes a Markdown table to stdout and to `--out` (default WORKROOT/TABLE.md), the raw numbers
to `--out` + `.json`, and with `--readme` replaces the README block between
`<!-- BEGIN reproduce_2d TABLE STEPS[ TAG] -->` and `<!-- END reproduce_2d ... -->`.
"""

import dataclasses
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__":  # `python tools/reproduce_2d.py`: the root on sys.path, for `tools`
  sys.path.insert(0, ROOT)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from as_introvae_tf import config as config_lib  # noqa: E402
from tools import own_flags  # noqa: E402
from tools import machine  # noqa: E402
from tools.readme_block import check_readme_block  # noqa: E402
from tools.readme_block import replace_readme_block  # noqa: E402
from tools.reproduce_2d_results import PAPER  # noqa: E402
from tools.reproduce_2d_results import REFERENCE_GRID_POINTS  # noqa: E402
from tools.reproduce_2d_results import load_result  # noqa: E402
from tools.reproduce_2d_results import result_path  # noqa: E402
from tools.reproduce_2d_results import training_trajectory  # noqa: E402
from tools.reproduce_2d_results import training_wall_seconds  # noqa: E402

METHODS = ("vae", "introvae", "soft_introvae", "as_introvae")
DATASETS = ("8gaussians", "2spirals", "checkerboard", "rings")
COMBOS = {"C1": (0.3, 0.1, 0.9), "C2": (0.5, 0.1, 0.9), "C3": (0.7, 0.2, 0.9)}
REFERENCE_STEPS = 30000


def define_flags(flag_values=flags.FLAGS):
  """The command line's flags, defined in `flag_values` (only the command line and `parse`
  call this: importing the module defines nothing)."""
  d = dict(flag_values=flag_values)
  flags.DEFINE_enum("table", "c1c3", ["c1c3", "datasets"], "Which table.", **d)
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.", **d)
  flags.DEFINE_integer("train_steps", REFERENCE_STEPS, "Training steps per run.", **d)
  flags.DEFINE_integer(
    "stop_at",
    0,
    "Screening: stop each run at this step of a --train_steps run's schedule (the warm-up, the "
    "learning-rate milestones and AS-IntroVAE's annealing T = --anneal_steps stay those of "
    "--train_steps); 0 = train the whole run. The result files and the table carry this step "
    "count and the schedule's (`schedule_steps`).",
    lower_bound=0,
    **d,
  )
  flags.DEFINE_integer(
    "first_segment",
    0,
    "Basin check: train the first N steps with --first_segment_overrides, then resume to the "
    "end with the run's own config (the workdir's config_history.jsonl records both segments; "
    "the result file names the first's). 0 = one segment. Needs --tag.",
    lower_bound=0,
    **d,
  )
  flags.DEFINE_list(
    "first_segment_overrides",
    [],
    "FLAG=VALUE changes for the first --first_segment steps only (e.g. beta_rec=0.2), typed "
    "as --overrides.",
    **d,
  )
  flags.DEFINE_list("methods", list(METHODS), "Methods (rows).", **d)
  flags.DEFINE_list("datasets", list(DATASETS), "Datasets (table=datasets).", **d)
  flags.DEFINE_list(
    "settings",
    list(COMBOS),
    "Hyper-parameter combinations (table=c1c3): C1, C2, C3.",
    **d,
  )
  flags.DEFINE_integer("eval_draws", 3, "Evaluation draws per trained run.", **d)
  flags.DEFINE_integer(
    "grid_points",
    REFERENCE_GRID_POINTS,
    "Points per axis of the gnELBO's normalising grid (the reference's 1024: 1 M points scored "
    "per run). Fewer only to test the script; a result file records it, and a table of results "
    "with another grid says so.",
    lower_bound=2,
    **d,
  )
  flags.DEFINE_string("workroot", "runs/reproduce_2d", "Where the runs go.", **d)
  flags.DEFINE_string(
    "results_dir",
    os.path.join(ROOT, "results", "2d"),
    "One JSON per finished run (committed to git); runs with a result here are skipped.",
    **d,
  )
  flags.DEFINE_list(
    "overrides",
    [],
    "FLAG=VALUE changes to every run's config (e.g. init=keras,rec_target_grad=false); a list "
    "flag's integers are joined by ':' (lr_milestones=10000:15000; lr_milestones= for none). "
    "Their values are used as given, not scaled to --train_steps. Needs --tag.",
    **d,
  )
  flags.DEFINE_string(
    "tag",
    "",
    "Name of a variant (--overrides); part of the result file names and the table's heading.",
    **d,
  )
  flags.DEFINE_boolean(
    "assemble_only",
    False,
    "Train nothing: build the table from the result files (cells show how many seeds).",
    **d,
  )
  flags.DEFINE_string("out", None, "Markdown output file (default WORKROOT/TABLE.md).", **d)
  flags.DEFINE_string(
    "readme",
    None,
    "Also replace this file's block "
    "`<!-- BEGIN reproduce_2d TABLE STEPS[ TAG] -->` ... "
    "`<!-- END reproduce_2d TABLE STEPS[ TAG] -->` by the table.",
    **d,
  )


def parse(argv):
  """The flags of the command line `argv` (argv[0]: the program), in a FlagValues of their
  own (`tools.own_flags.parse`): what `run` takes, also in a process whose global flags hold
  others (tests). Raises absl.flags.Error on an unknown flag or a bad value."""
  return own_flags.parse(define_flags, argv)


METRIC_KEYS = ("kl", "jsd", "gnelbo", "modes_covered", "high_quality_fraction")


def _parse_overrides(items):
  """{field: value} from FLAG=VALUE strings, typed like the config's fields."""
  defaults = config_lib.ExperimentConfig()
  out = {}
  for item in items:
    name, sep, raw = item.partition("=")
    name = name.strip().lstrip("-")
    if not sep or not hasattr(defaults, name):
      raise app.UsageError(f"--overrides: {item!r} is not FLAG=VALUE with a known flag")
    current = getattr(defaults, name)
    if current is None:  # `int | None` (image_size), `tuple | None` (filters), `str | None`
      kind = str(next(f.type for f in dataclasses.fields(defaults) if f.name == name))
      current = {"int": 0, "tuple": ()}.get(kind.split("|")[0].strip(), "")
    try:
      out[name] = _typed(name, current, raw)
    except ValueError:
      raise app.UsageError(
        f"--overrides: {name} takes a value of type {type(current).__name__}; got {raw!r}"
      ) from None
  return out


def _typed(name, current, raw):
  """`raw` (a string) as the type of the config field `name` (current value `current`)."""
  if isinstance(current, tuple):  # a list of integers: items joined by ":" ("" = empty)
    return tuple(int(v) for v in raw.split(":") if v.strip())
  if isinstance(current, bool):
    if raw.lower() not in ("true", "false", "1", "0"):
      raise app.UsageError(f"--overrides: {name} takes true or false; got {raw!r}")
    return raw.lower() in ("true", "1")
  if isinstance(current, int):
    return int(raw)
  if isinstance(current, float):
    return float(raw)
  return raw


def _config(dataset, method, seed, steps, workdir, betas=None, overrides=None, stop_at=0):
  """The run's config: the flagfile's, its warm-up and learning-rate milestones scaled to
  `steps` (the schedule's length), trained to `stop_at` when given (0: to `steps`), with
  AS-IntroVAE's annealing T = `steps` then (`--anneal_steps`)."""
  config = config_lib.from_flagfile(os.path.join(ROOT, "configs", f"{dataset}_{method}.flags"))
  ratio = steps / REFERENCE_STEPS
  trained = stop_at or steps
  changes = dict(
    seed=seed,
    train_steps=trained,
    workdir=workdir,
    verbose="0",
    num_vae=int(round(config.num_vae * ratio)),
    lr_milestones=tuple(max(1, int(round(m * ratio))) for m in config.lr_milestones),
    log_every_steps=max(1, min(config.log_every_steps, trained // 10 or 1)),
    checkpoint_every_steps=max(1, trained // 5),
    image_every_steps=trained,
  )
  if stop_at and method == "as_introvae":
    changes.update(anneal_steps=steps)
  if betas is not None:
    changes.update(beta_kl=betas[0], beta_rec=betas[1], beta_neg=betas[2])
  changes.update(overrides or {})
  return config.replace(**changes)


def _flags_changed(config, dataset, method):
  """{flag: value} where `config` differs from its flagfile (bookkeeping flags left out)."""
  base = config_lib.from_flagfile(os.path.join(ROOT, "configs", f"{dataset}_{method}.flags"))
  skip = {"workdir", "verbose", "log_every_steps", "checkpoint_every_steps", "image_every_steps"}
  return {
    k: (list(v) if isinstance(v, tuple) else v)
    for k, v in config.to_dict().items()
    if k not in skip and v != base.to_dict()[k]
  }


def _cells(opts):
  if opts.table == "c1c3":
    unknown = set(opts.settings) - set(COMBOS)
    if unknown:
      raise app.UsageError(f"--settings: unknown {sorted(unknown)}; allowed {list(COMBOS)}")
    return [
      (combo, "8gaussians", method, COMBOS[combo])
      for combo in opts.settings
      for method in opts.methods
    ]
  return [(dataset, dataset, method, None) for dataset in opts.datasets for method in opts.methods]


def _fmt(values, scale=1.0):
  import numpy as np  # pylint: disable=import-outside-toplevel

  v = np.asarray(values, dtype=np.float64) * scale
  return f"{v.mean():.2f} +- {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def _write_result(
  opts,
  path,
  config,
  dataset,
  method,
  cell,
  seed,
  steps,
  metrics,
  train_s,
  eval_s,
  schedule_steps=None,
  first_segment=None,
  diverged=None,
):
  import datetime  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  result = {
    "table": opts.table,
    "cell": cell,
    "dataset": dataset,
    "method": method,
    "seed": seed,
    "train_steps": steps,
    "schedule_steps": schedule_steps or steps,
    "tag": opts.tag,
    "flagfile": f"configs/{dataset}_{method}.flags",
    "flags_changed": _flags_changed(config, dataset, method),
    "commit": machine.git_commit(ROOT),
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "cpu": machine.describe_cpu(),
    "tensorflow": tf.__version__,
    "train_wall_s": None if train_s is None else round(train_s, 1),
    "eval_wall_s": round(eval_s, 1),
    "eval_draws": opts.eval_draws,
    "grid_points": opts.grid_points,
    "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
    "trajectory": training_trajectory(config.workdir),
  }
  if first_segment:
    result["first_segment"] = first_segment
  if diverged:
    result["diverged"] = diverged  # no metrics: the run has no finite final state
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(path + ".tmp", path)
  return result


def _table(opts, results, seeds, steps, schedule_steps=None):
  """Markdown lines of the table over `_cells(opts)` from {cell/method: [result, ...]}."""
  schedule = (
    f" of a {schedule_steps}-step schedule (screening)"
    if schedule_steps and schedule_steps != steps
    else ""
  )
  tag = f", variant `{opts.tag}` ({', '.join(opts.overrides)})" if opts.tag else ""
  if opts.first_segment:
    tag += (
      f", its first {opts.first_segment} steps with {', '.join(opts.first_segment_overrides)} "
      "(basin check)"
    )
  cpus = sorted({r["cpu"] for rows in results.values() for r in rows})
  walls = [r["train_wall_s"] for rows in results.values() for r in rows if r.get("train_wall_s")]
  lines = [
    f"Budget: {steps} training steps per run{schedule} (reference: {REFERENCE_STEPS}){tag}, "
    f"seeds {','.join(map(str, seeds))}, {opts.eval_draws} evaluation draws per run; "
    "mean +- sample std over seeds of the per-run mean. gnELBO in units of 1e-7"
    + (
      "."
      if opts.grid_points == REFERENCE_GRID_POINTS
      else f", on a {opts.grid_points}x{opts.grid_points} grid (reference {REFERENCE_GRID_POINTS}x"
      f"{REFERENCE_GRID_POINTS}: not comparable)."
    ),
    "",
  ]
  if cpus:
    lines[0] += f" Measured on {'; '.join(cpus)}"
    lines[0] += (
      f"; training took {min(walls) / 60:.0f}-{max(walls) / 60:.0f} min per run "
      "(first to last TensorBoard event, with other jobs sharing the cores)."
      if walls
      else "."
    )
  lines += [
    f"| {'setting' if opts.table == 'c1c3' else 'dataset'} | method | KL | JSD | "
    "gnELBO (1e-7) | modes (of 8) | seeds | paper |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for cell, dataset, method, _ in _cells(opts):
    rows = results.get(f"{cell}/{method}", [])
    if not rows:
      lines.append(f"| {cell} | {method} | not run | | | | | {PAPER.get((cell, method), '')} |")
      continue
    ms = [r["metrics"] for r in rows if not r.get("diverged")]  # the finished runs
    modes = (
      _fmt([m["modes_covered"] for m in ms])
      if ms and dataset == "8gaussians" and all("modes_covered" in m for m in ms)
      else ""
    )
    gnelbo = _fmt([m["gnelbo"] for m in ms], 1e7) if ms and all("gnelbo" in m for m in ms) else ""
    per_seed = ", ".join(
      f"{r['seed']}: diverged at step {r['diverged']['step']}"
      if r.get("diverged")
      else f"{r['seed']}: {r['metrics']['kl']:.2f}"
      for r in rows
    )
    kl, jsd = (
      (_fmt([m["kl"] for m in ms]), _fmt([m["jsd"] for m in ms])) if ms else ("diverged", "")
    )
    lines.append(
      f"| {cell} | {method} | {kl} | {jsd} | {gnelbo} | {modes} | "
      f"{len(rows)} (KL {per_seed}) | {PAPER.get((cell, method), '')} |"
    )
  return lines


def main(argv):
  """The command line (`app.run`): `run` with the parsed global flags."""
  del argv
  run(flags.FLAGS)


def run(opts):
  """Trains (or reuses) and evaluates the runs of the flags `opts` (`parse`), then writes the
  table, its JSON and the README block.

  Raises:
    app.UsageError: flags that do not go together (the message names them).
  """
  overrides = _parse_overrides(opts.overrides)
  if overrides and not opts.tag:
    raise app.UsageError("--overrides needs --tag (the variant's name in its result files)")
  first_overrides = _parse_overrides(opts.first_segment_overrides)
  if (opts.first_segment or first_overrides) and not (
    opts.tag and opts.first_segment and first_overrides
  ):
    raise app.UsageError(
      "--first_segment and --first_segment_overrides go together, with --tag (a two-segment "
      "run is a variant)"
    )
  if opts.grid_points != REFERENCE_GRID_POINTS and os.path.abspath(
    opts.results_dir
  ) == os.path.abspath(opts["results_dir"].default):
    raise app.UsageError(
      f"--grid_points={opts.grid_points} with the default --results_dir would replace the "
      f"reference-grid ({REFERENCE_GRID_POINTS}) results there: give another --results_dir"
    )
  seeds = _seeds(opts.seeds)
  schedule_steps = opts.train_steps
  if opts.stop_at and opts.stop_at >= schedule_steps:
    raise app.UsageError(
      f"--stop_at={opts.stop_at} must be below --train_steps={schedule_steps} (the schedule)"
    )
  steps = opts.stop_at or schedule_steps
  if opts.first_segment >= steps:
    raise app.UsageError(f"--first_segment={opts.first_segment} must be below {steps} steps")
  cells = _cells(opts)
  _check_before_training(opts, cells, seeds, schedule_steps, steps, overrides)
  results = {}
  start = time.time()
  for cell, dataset, method, betas in cells:
    for seed in seeds:
      path = result_path(opts.results_dir, opts.table, cell, method, steps, seed, opts.tag)
      result = load_result(path, opts.eval_draws, opts.grid_points, schedule_steps)
      if result is None and load_result(path) is not None:
        other = load_result(path)
        if other.get("schedule_steps", other["train_steps"]) != schedule_steps:
          raise app.UsageError(
            f"{path} holds a run on a {other.get('schedule_steps', other['train_steps'])}-step "
            f"schedule, not {schedule_steps}: give this variant its own --tag"
          )
      if result is None and opts.assemble_only:
        continue
      if result is None:
        # pylint: disable=import-outside-toplevel
        from as_introvae_tf import eval_lib
        from as_introvae_tf import train_lib

        # pylint: enable=import-outside-toplevel
        tag = f"_{opts.tag}" if opts.tag else ""
        workdir = os.path.join(
          opts.workroot, opts.table, f"{cell}_{method}{tag}", f"{steps}_seed{seed}"
        )
        config = _config(
          dataset, method, seed, schedule_steps, workdir, betas, overrides, opts.stop_at
        )
        if opts.first_segment:
          first = config.replace(  # the whole run's annealing T, not the segment's
            train_steps=opts.first_segment,
            anneal_steps=config.anneal_steps or config.train_steps,
            **first_overrides,
          )
        diverged = None
        try:
          if opts.first_segment:
            train_lib.train_and_evaluate(first)  # returns at once when it is done already
          train_lib.train_and_evaluate(config)
        except train_lib.TrainingDivergedError as e:  # a result too: recorded, not retried
          diverged = divergence_record(e, workdir)
        t1 = time.time()
        if diverged:
          metrics = {}
        else:
          options = eval_lib.EvalOptions(eval_draws=opts.eval_draws, grid_points=opts.grid_points)
          metrics = eval_lib.evaluate(workdir, options, log=lambda *a: None)["metrics"]
        result = _write_result(
          opts,
          path,
          config,
          dataset,
          method,
          cell,
          seed,
          steps,
          metrics,
          training_wall_seconds(workdir),
          time.time() - t1,
          schedule_steps,
          {"steps": opts.first_segment, "overrides": opts.first_segment_overrides}
          if opts.first_segment
          else None,
          diverged,
        )
      results.setdefault(f"{cell}/{method}", []).append(result)
      m = result["metrics"]
      if result.get("diverged"):
        print(
          f"[{time.time() - start:.0f}s] {cell} {method} seed {seed}: diverged at step "
          f"{result['diverged']['step']} -> {path}",
          flush=True,
        )
        continue
      print(
        f"[{time.time() - start:.0f}s] {cell} {method} seed {seed}: KL {m['kl']:.2f} "
        f"JSD {m['jsd']:.2f} gnELBO {m.get('gnelbo', float('nan')):.3e} -> {path}",
        flush=True,
      )

  table = "\n".join(_table(opts, results, seeds, steps, schedule_steps))
  print(table)
  out = opts.out or os.path.join(opts.workroot, f"{opts.table}.md")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    f.write(table + "\n")
  with open(out + ".json", "w") as f:
    json.dump(
      {
        "train_steps": steps,
        "seeds": seeds,
        "tag": opts.tag,
        "results": {k: [r["metrics"] for r in v] for k, v in results.items()},
      },
      f,
      indent=2,
    )
  if opts.readme:
    replace_readme_block(opts.readme, _readme_key(opts, steps), table)


def divergence_record(error, workdir):
  """The `diverged` entry of a result file from a `train_lib.TrainingDivergedError`: the step,
  the non-finite terms and the message (which names the last good checkpoint, its `workdir`
  written as WORKDIR: result files hold no machine's paths)."""
  return {
    "step": getattr(error, "step", None),
    "terms": list(getattr(error, "terms", ())),
    "message": str(error).replace(os.path.abspath(workdir), "WORKDIR"),
  }


def _readme_key(opts, steps):
  return " ".join(p for p in ("reproduce_2d", opts.table, str(steps), opts.tag) if p)


def _seeds(values):
  """--seeds as integers >= 0.

  Raises:
    app.UsageError: a seed that is not an integer >= 0, or none.
  """
  try:
    seeds = [int(s) for s in values if s.strip()]
  except ValueError:
    raise app.UsageError(f"--seeds must be integers >= 0, e.g. 0,1,2; got {','.join(values)}")
  if not seeds or min(seeds) < 0:
    raise app.UsageError(f"--seeds must be integers >= 0, e.g. 0,1,2; got {','.join(values)}")
  return seeds


def _check_before_training(opts, cells, seeds, schedule_steps, steps, overrides):
  """Everything a long run could otherwise fail on at its end or half-way, checked first:
  each cell's flagfile (a typo in --methods or --datasets), each run's config with the
  overrides, the evaluation options, the --readme block and that --out and --results_dir can
  be written.

  Raises:
    app.UsageError: naming the flag and the problem.
  """
  for cell, dataset, method, betas in cells:
    flagfile = os.path.join(ROOT, "configs", f"{dataset}_{method}.flags")
    if not os.path.isfile(flagfile):
      raise app.UsageError(
        f"--methods/--datasets: no configs/{dataset}_{method}.flags (methods: "
        f"{', '.join(config_lib.METHODS)})"
      )
    for seed in seeds:
      try:
        config = _config(
          dataset, method, seed, schedule_steps, "workdir", betas, overrides, opts.stop_at
        )
        config.validate()
      except (config_lib.ConfigError, flags.Error, TypeError, ValueError) as e:
        raise app.UsageError(f"{cell} {method} seed {seed}: {e}") from None
  if opts.readme:
    try:
      check_readme_block(opts.readme, _readme_key(opts, steps))
    except ValueError as e:
      raise app.UsageError(f"--readme: {e}") from None
  if opts.assemble_only:  # trains and evaluates nothing, and stays without TensorFlow
    return
  from as_introvae_tf import eval_lib  # pylint: disable=import-outside-toplevel

  try:
    eval_lib.EvalOptions(eval_draws=opts.eval_draws, grid_points=opts.grid_points).validate()
  except config_lib.ConfigError as e:
    raise app.UsageError(str(e)) from None
  out = opts.out or os.path.join(opts.workroot, f"{opts.table}.md")
  for flag, folder in (
    ("--out", os.path.dirname(os.path.abspath(out))),
    ("--results_dir", os.path.abspath(opts.results_dir)),
  ):
    try:
      os.makedirs(folder, exist_ok=True)
      with open(os.path.join(folder, f".write_probe_{os.getpid()}"), "w") as f:
        f.write("")
      os.remove(os.path.join(folder, f".write_probe_{os.getpid()}"))
    except OSError as e:
      raise app.UsageError(f"{flag}: cannot write in {folder} ({e.strerror or e})") from None


if __name__ == "__main__":
  define_flags()
  app.run(main)
