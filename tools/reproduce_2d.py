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

import json
import os
import sys
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import machine  # noqa: E402  (tools/machine.py)
from readme_block import replace_readme_block  # noqa: E402  (tools/readme_block.py)
from as_introvae_tf import config as config_lib  # noqa: E402

METHODS = ("vae", "introvae", "soft_introvae", "as_introvae")
DATASETS = ("8gaussians", "2spirals", "checkerboard", "rings")
COMBOS = {"C1": (0.3, 0.1, 0.9), "C2": (0.5, 0.1, 0.9), "C3": (0.7, 0.2, 0.9)}
REFERENCE_STEPS = 30000

PAPER = {  # AS-IntroVAE paper Table 1 (KL / JSD); S-IntroVAE paper Table 2 is added below
  ("C1", "vae"): "KL 220.2, JSD 110.1",
  ("C1", "introvae"): "KL 192.4, JSD 56.0",
  ("C1", "soft_introvae"): "KL 50.2, JSD 16.9",
  ("C1", "as_introvae"): "KL 3.4, JSD 5.6",
  ("C2", "vae"): "KL 220.3, JSD 110.0",
  ("C2", "introvae"): "KL 191.1, JSD 68.0",
  ("C2", "soft_introvae"): "KL 136.5, JSD 36.6",
  ("C2", "as_introvae"): "KL 1.3, JSD 4.4",
  ("C3", "vae"): "KL 220.2, JSD 109.8",
  ("C3", "introvae"): "KL 64.0, JSD 53.0",
  ("C3", "soft_introvae"): "KL 46.2, JSD 9.6",
  ("C3", "as_introvae"): "KL 2.0, JSD 7.1",
}
_SOFT_TABLE2 = {  # S-IntroVAE paper Table 2: gnELBO (1e-7), KL, JSD; 5 seeds, 30000 steps
  "8gaussians": {
    "vae": (7.42, 6.72, 16.04),
    "introvae": (1.29, 2.53, 1.67),
    "soft_introvae": (1.25, 1.25, 0.96),
  },
  "2spirals": {
    "vae": (6.19, 9.8, 4.89),
    "introvae": (5.87, 8.38, 3.58),
    "soft_introvae": (5.21, 8.13, 3.37),
  },
  "checkerboard": {
    "vae": (8.53, 20.91, 9.78),
    "introvae": (8.54, 19.03, 9.07),
    "soft_introvae": (4.47, 20.27, 9.06),
  },
  "rings": {
    "vae": (6.4, 13.16, 7.26),
    "introvae": (7.25, 10.21, 4.24),
    "soft_introvae": (6.3, 9.18, 4.13),
  },
}  # AS-IntroVAE's paper reports no 2-D set other than 8 Gaussians C1-C3.
PAPER.update(
  {
    (d, m): f"KL {kl}, JSD {jsd}, gnELBO {g}"
    for d, row in _SOFT_TABLE2.items()
    for m, (g, kl, jsd) in row.items()
  }
)

_TABLE = flags.DEFINE_enum("table", "c1c3", ["c1c3", "datasets"], "Which table.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
_STEPS = flags.DEFINE_integer("train_steps", REFERENCE_STEPS, "Training steps per run.")
_STOP_AT = flags.DEFINE_integer(
  "stop_at",
  0,
  "Screening: stop each run at this step of a --train_steps run's schedule (the warm-up, the "
  "learning-rate milestones and AS-IntroVAE's annealing T = --anneal_steps stay those of "
  "--train_steps); 0 = train the whole run. The result files and the table carry this step "
  "count and the schedule's (`schedule_steps`).",
  lower_bound=0,
)
_FIRST_SEGMENT = flags.DEFINE_integer(
  "first_segment",
  0,
  "Basin check: train the first N steps with --first_segment_overrides, then resume to the "
  "end with the run's own config (the workdir's config_history.jsonl records both segments; "
  "the result file names the first's). 0 = one segment. Needs --tag.",
  lower_bound=0,
)
_FIRST_OVERRIDES = flags.DEFINE_list(
  "first_segment_overrides",
  [],
  "FLAG=VALUE changes for the first --first_segment steps only (e.g. beta_rec=0.2), typed "
  "as --overrides.",
)
_METHODS = flags.DEFINE_list("methods", list(METHODS), "Methods (rows).")
_DATASETS = flags.DEFINE_list("datasets", list(DATASETS), "Datasets (table=datasets).")
_SETTINGS = flags.DEFINE_list(
  "settings", list(COMBOS), "Hyper-parameter combinations (table=c1c3): C1, C2, C3."
)
_DRAWS = flags.DEFINE_integer("eval_draws", 3, "Evaluation draws per trained run.")
REFERENCE_GRID_POINTS = 1024  # as_introvae_tf.metrics.GRID_POINTS (not imported: TensorFlow)
_GRID = flags.DEFINE_integer(
  "grid_points",
  REFERENCE_GRID_POINTS,
  "Points per axis of the gnELBO's normalising grid (the reference's 1024: 1 M points scored "
  "per run). Fewer only to test the script; a result file records it, and a table of results "
  "with another grid says so.",
  lower_bound=2,
)
_WORKROOT = flags.DEFINE_string("workroot", "runs/reproduce_2d", "Where the runs go.")
_RESULTS = flags.DEFINE_string(
  "results_dir",
  os.path.join(ROOT, "results", "2d"),
  "One JSON per finished run (committed to git); runs with a result here are skipped.",
)
_OVERRIDES = flags.DEFINE_list(
  "overrides",
  [],
  "FLAG=VALUE changes to every run's config (e.g. init=keras,rec_target_grad=false); a list "
  "flag's integers are joined by ':' (lr_milestones=10000:15000; lr_milestones= for none). "
  "Their values are used as given, not scaled to --train_steps. Needs --tag.",
)
_TAG = flags.DEFINE_string(
  "tag",
  "",
  "Name of a variant (--overrides); part of the result file names and the table's heading.",
)
_ASSEMBLE = flags.DEFINE_boolean(
  "assemble_only",
  False,
  "Train nothing: build the table from the result files (cells show how many seeds).",
)
_OUT = flags.DEFINE_string("out", None, "Markdown output file (default WORKROOT/TABLE.md).")
_README = flags.DEFINE_string(
  "readme",
  None,
  "Also replace this file's block "
  "`<!-- BEGIN reproduce_2d TABLE STEPS[ TAG] -->` ... "
  "`<!-- END reproduce_2d TABLE STEPS[ TAG] -->` by the table.",
)

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


def _cells():
  if _TABLE.value == "c1c3":
    unknown = set(_SETTINGS.value) - set(COMBOS)
    if unknown:
      raise app.UsageError(f"--settings: unknown {sorted(unknown)}; allowed {list(COMBOS)}")
    return [
      (combo, "8gaussians", method, COMBOS[combo])
      for combo in _SETTINGS.value
      for method in _METHODS.value
    ]
  return [
    (dataset, dataset, method, None) for dataset in _DATASETS.value for method in _METHODS.value
  ]


def _fmt(values, scale=1.0):
  import numpy as np  # pylint: disable=import-outside-toplevel

  v = np.asarray(values, dtype=np.float64) * scale
  return f"{v.mean():.2f} +- {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def result_path(results_dir, table, cell, method, steps, seed, tag=""):
  """`RESULTS/TABLE/CELL_METHOD[_TAG]_STEPS_seedK.json`."""
  name = "_".join(p for p in (cell, method, tag, str(steps), f"seed{seed}") if p)
  return os.path.join(results_dir, table, name + ".json")


def load_result(path, eval_draws=None, grid_points=None, schedule_steps=None):
  """The result of a finished run, or None (missing, or evaluated with other draws or another
  gnELBO grid, or trained on another schedule; a file without `grid_points` was evaluated on
  the reference grid, one without `schedule_steps` trained on its own `train_steps`)."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f)
  if schedule_steps is not None and saved.get("schedule_steps", saved["train_steps"]) != (
    schedule_steps
  ):
    return None
  if eval_draws is not None and saved.get("eval_draws") != eval_draws:
    return None
  if grid_points is not None and saved.get("grid_points", REFERENCE_GRID_POINTS) != grid_points:
    return None
  return saved


def training_wall_seconds(workdir):
  """Seconds from the first to the last TensorBoard event of the run in `workdir` (all
  segments of a resumed run, pauses between them included), or None without events."""
  import glob  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  times = []
  for path in glob.glob(os.path.join(workdir, "tensorboard", "train", "events.out.tfevents.*")):
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        if event.summary.value:
          times.append(event.wall_time)
    except tf.errors.DataLossError:  # a run killed while writing: keep what was read
      pass
  return max(times) - min(times) if len(times) > 1 else None


TRAJECTORY = (
  "rec",
  "kl_real",
  "kl_fake",
  "exp_elbo_rec",
  "exp_elbo_fake",
  "grad_norm_encoder",
  "as_distance",
  "c",
  "as_share_rec",
  "as_share_fake",
  "as_factor",
  "learning_rate",
)
"""The training scalars a result file keeps at every logged step (those the run logged), so
that the evidence of how a run trained outlives its workdir."""


def training_trajectory(workdir, names=TRAJECTORY):
  """`{"step": [...], NAME: [...]}`: the TensorBoard scalars `train/NAME` of the run in
  `workdir` at every step where the first of them was logged (the latest value per step when a
  resumed run logged a step twice; 4 significant digits); names the run never logged are
  left out. Empty without events."""
  import glob  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  values = {}
  paths = sorted(glob.glob(os.path.join(workdir, "tensorboard", "train", "events.out.tfevents.*")))
  for path in paths:
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          name = value.tag.removeprefix("train/")
          if name in names:
            number = (
              float(tf.make_ndarray(value.tensor))
              if value.HasField("tensor")
              else value.simple_value
            )
            values.setdefault(name, {})[int(event.step)] = float(f"{number:.4g}")
    except tf.errors.DataLossError:  # a run killed while writing: keep what was read
      pass
  logged = [n for n in names if n in values]
  if not logged:
    return {}
  steps = sorted(values[logged[0]])
  return {"step": steps, **{n: [values[n].get(k) for k in steps] for n in logged}}


def _write_result(
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
):
  import datetime  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  result = {
    "table": _TABLE.value,
    "cell": cell,
    "dataset": dataset,
    "method": method,
    "seed": seed,
    "train_steps": steps,
    "schedule_steps": schedule_steps or steps,
    "tag": _TAG.value,
    "flagfile": f"configs/{dataset}_{method}.flags",
    "flags_changed": _flags_changed(config, dataset, method),
    "commit": machine.git_commit(ROOT),
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "cpu": machine.describe_cpu(),
    "tensorflow": tf.__version__,
    "train_wall_s": None if train_s is None else round(train_s, 1),
    "eval_wall_s": round(eval_s, 1),
    "eval_draws": _DRAWS.value,
    "grid_points": _GRID.value,
    "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
    "trajectory": training_trajectory(config.workdir),
  }
  if first_segment:
    result["first_segment"] = first_segment
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(path + ".tmp", path)
  return result


def _table(results, seeds, steps, schedule_steps=None):
  """Markdown lines of the table over `_cells()` from {cell/method: [result, ...]}."""
  schedule = (
    f" of a {schedule_steps}-step schedule (screening)"
    if schedule_steps and schedule_steps != steps
    else ""
  )
  tag = f", variant `{_TAG.value}` ({', '.join(_OVERRIDES.value)})" if _TAG.value else ""
  if _FIRST_SEGMENT.value:
    tag += (
      f", its first {_FIRST_SEGMENT.value} steps with {', '.join(_FIRST_OVERRIDES.value)} "
      "(basin check)"
    )
  cpus = sorted({r["cpu"] for rows in results.values() for r in rows})
  walls = [r["train_wall_s"] for rows in results.values() for r in rows if r.get("train_wall_s")]
  lines = [
    f"Budget: {steps} training steps per run{schedule} (reference: {REFERENCE_STEPS}){tag}, "
    f"seeds {','.join(map(str, seeds))}, {_DRAWS.value} evaluation draws per run; "
    "mean +- sample std over seeds of the per-run mean. gnELBO in units of 1e-7"
    + (
      "."
      if _GRID.value == REFERENCE_GRID_POINTS
      else f", on a {_GRID.value}x{_GRID.value} grid (reference {REFERENCE_GRID_POINTS}x"
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
    f"| {'setting' if _TABLE.value == 'c1c3' else 'dataset'} | method | KL | JSD | "
    "gnELBO (1e-7) | modes (of 8) | seeds | paper |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for cell, dataset, method, _ in _cells():
    rows = results.get(f"{cell}/{method}", [])
    if not rows:
      lines.append(f"| {cell} | {method} | not run | | | | | {PAPER.get((cell, method), '')} |")
      continue
    ms = [r["metrics"] for r in rows]
    modes = (
      _fmt([m["modes_covered"] for m in ms])
      if dataset == "8gaussians" and all("modes_covered" in m for m in ms)
      else ""
    )
    gnelbo = _fmt([m["gnelbo"] for m in ms], 1e7) if all("gnelbo" in m for m in ms) else ""
    per_seed = ", ".join(f"{r['seed']}: {r['metrics']['kl']:.2f}" for r in rows)
    lines.append(
      f"| {cell} | {method} | {_fmt([m['kl'] for m in ms])} | "
      f"{_fmt([m['jsd'] for m in ms])} | {gnelbo} | {modes} | "
      f"{len(rows)} (KL {per_seed}) | {PAPER.get((cell, method), '')} |"
    )
  return lines


def main(argv):
  del argv
  overrides = _parse_overrides(_OVERRIDES.value)
  if overrides and not _TAG.value:
    raise app.UsageError("--overrides needs --tag (the variant's name in its result files)")
  first_overrides = _parse_overrides(_FIRST_OVERRIDES.value)
  if (_FIRST_SEGMENT.value or first_overrides) and not (
    _TAG.value and _FIRST_SEGMENT.value and first_overrides
  ):
    raise app.UsageError(
      "--first_segment and --first_segment_overrides go together, with --tag (a two-segment "
      "run is a variant)"
    )
  if _GRID.value != REFERENCE_GRID_POINTS and os.path.abspath(_RESULTS.value) == os.path.abspath(
    _RESULTS.default
  ):
    raise app.UsageError(
      f"--grid_points={_GRID.value} with the default --results_dir would replace the "
      f"reference-grid ({REFERENCE_GRID_POINTS}) results there: give another --results_dir"
    )
  seeds = [int(s) for s in _SEEDS.value]
  schedule_steps = _STEPS.value
  if _STOP_AT.value and _STOP_AT.value >= schedule_steps:
    raise app.UsageError(
      f"--stop_at={_STOP_AT.value} must be below --train_steps={schedule_steps} (the schedule)"
    )
  steps = _STOP_AT.value or schedule_steps
  if _FIRST_SEGMENT.value >= steps:
    raise app.UsageError(f"--first_segment={_FIRST_SEGMENT.value} must be below {steps} steps")
  cells = _cells()
  results = {}
  start = time.time()
  for cell, dataset, method, betas in cells:
    for seed in seeds:
      path = result_path(_RESULTS.value, _TABLE.value, cell, method, steps, seed, _TAG.value)
      result = load_result(path, _DRAWS.value, _GRID.value, schedule_steps)
      if result is None and load_result(path) is not None:
        other = load_result(path)
        if other.get("schedule_steps", other["train_steps"]) != schedule_steps:
          raise app.UsageError(
            f"{path} holds a run on a {other.get('schedule_steps', other['train_steps'])}-step "
            f"schedule, not {schedule_steps}: give this variant its own --tag"
          )
      if result is None and _ASSEMBLE.value:
        continue
      if result is None:
        # pylint: disable=import-outside-toplevel
        from as_introvae_tf import eval_lib
        from as_introvae_tf import train_lib

        # pylint: enable=import-outside-toplevel
        tag = f"_{_TAG.value}" if _TAG.value else ""
        workdir = os.path.join(
          _WORKROOT.value, _TABLE.value, f"{cell}_{method}{tag}", f"{steps}_seed{seed}"
        )
        config = _config(
          dataset, method, seed, schedule_steps, workdir, betas, overrides, _STOP_AT.value
        )
        if _FIRST_SEGMENT.value:
          first = config.replace(  # the whole run's annealing T, not the segment's
            train_steps=_FIRST_SEGMENT.value,
            anneal_steps=config.anneal_steps or config.train_steps,
            **first_overrides,
          )
          train_lib.train_and_evaluate(first)  # returns at once when it is done already
        train_lib.train_and_evaluate(config)
        t1 = time.time()
        options = eval_lib.EvalOptions(eval_draws=_DRAWS.value, grid_points=_GRID.value)
        metrics = eval_lib.evaluate(workdir, options, log=lambda *a: None)["metrics"]
        result = _write_result(
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
          {"steps": _FIRST_SEGMENT.value, "overrides": _FIRST_OVERRIDES.value}
          if _FIRST_SEGMENT.value
          else None,
        )
      results.setdefault(f"{cell}/{method}", []).append(result)
      m = result["metrics"]
      print(
        f"[{time.time() - start:.0f}s] {cell} {method} seed {seed}: KL {m['kl']:.2f} "
        f"JSD {m['jsd']:.2f} gnELBO {m.get('gnelbo', float('nan')):.3e} -> {path}",
        flush=True,
      )

  table = "\n".join(_table(results, seeds, steps, schedule_steps))
  print(table)
  out = _OUT.value or os.path.join(_WORKROOT.value, f"{_TABLE.value}.md")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    f.write(table + "\n")
  with open(out + ".json", "w") as f:
    json.dump(
      {
        "train_steps": steps,
        "seeds": seeds,
        "tag": _TAG.value,
        "results": {k: [r["metrics"] for r in v] for k, v in results.items()},
      },
      f,
      indent=2,
    )
  if _README.value:
    key = " ".join(p for p in ("reproduce_2d", _TABLE.value, str(steps), _TAG.value) if p)
    replace_readme_block(_README.value, key, table)


if __name__ == "__main__":
  app.run(main)
