"""Reproduces the 2-D tables of the papers: KL, JSD, gnELBO, mean +- std over seeds.

Tables:
  c1c3      as-introvae.md Table 1: 8 Gaussians, VAE / IntroVAE / S-IntroVAE / AS-IntroVAE with
            (beta_kl, beta_rec, beta_neg) = C1 (0.3, 0.1, 0.9), C2 (0.5, 0.1, 0.9), C3 (0.7, 0.2, 0.9)
  datasets  soft-introvae.md Table 2: the four 2-D sets with the reference hyper-parameters
            (configs/<dataset>_<method>.flags)

Each cell trains `configs/<dataset>_<method>.flags` with the overrides below in
`--workroot/<table>/<cell>/seed<k>` (an existing run resumes or is reused), then evaluates it
with `eval_lib.evaluate` (`--eval_draws` evaluation draws per run). A smaller `--train_steps`
than the reference 30000 scales the warm-up (2000) and the learning-rate milestones
(10000, 15000) by the same factor; the table states the budget.

  python tools/reproduce_2d.py --table=c1c3 --seeds=0,1,2 --train_steps=30000
  python tools/reproduce_2d.py --table=datasets --seeds=0,1,2 --train_steps=5000 --out=results/2d.md

Writes a Markdown table to stdout and to `--out`, and the raw numbers to `--out` + `.json`.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from as_introvae_tf import config as config_lib  # noqa: E402

METHODS = ("vae", "introvae", "soft_introvae", "as_introvae")
DATASETS = ("8gaussians", "2spirals", "checkerboard", "rings")
COMBOS = {"C1": (0.3, 0.1, 0.9), "C2": (0.5, 0.1, 0.9), "C3": (0.7, 0.2, 0.9)}
REFERENCE_STEPS = 30000

PAPER = {  # as-introvae.md Table 1 (KL / JSD); soft-introvae.md Table 2 is added below
    ("C1", "vae"): "KL 220.2, JSD 110.1", ("C1", "introvae"): "KL 192.4, JSD 56.0",
    ("C1", "soft_introvae"): "KL 50.2, JSD 16.9", ("C1", "as_introvae"): "KL 3.4, JSD 5.6",
    ("C2", "vae"): "KL 220.3, JSD 110.0", ("C2", "introvae"): "KL 191.1, JSD 68.0",
    ("C2", "soft_introvae"): "KL 136.5, JSD 36.6", ("C2", "as_introvae"): "KL 1.3, JSD 4.4",
    ("C3", "vae"): "KL 220.2, JSD 109.8", ("C3", "introvae"): "KL 64.0, JSD 53.0",
    ("C3", "soft_introvae"): "KL 46.2, JSD 9.6", ("C3", "as_introvae"): "KL 2.0, JSD 7.1",
}
_SOFT_TABLE2 = {  # soft-introvae.md Table 2: gnELBO (1e-7), KL, JSD; 5 seeds, 30000 steps
    "8gaussians": {"vae": (7.42, 6.72, 16.04), "introvae": (1.29, 2.53, 1.67),
                   "soft_introvae": (1.25, 1.25, 0.96)},
    "2spirals": {"vae": (6.19, 9.8, 4.89), "introvae": (5.87, 8.38, 3.58),
                 "soft_introvae": (5.21, 8.13, 3.37)},
    "checkerboard": {"vae": (8.53, 20.91, 9.78), "introvae": (8.54, 19.03, 9.07),
                     "soft_introvae": (4.47, 20.27, 9.06)},
    "rings": {"vae": (6.4, 13.16, 7.26), "introvae": (7.25, 10.21, 4.24),
              "soft_introvae": (6.3, 9.18, 4.13)},
}  # AS-IntroVAE's paper reports no 2-D set other than 8 Gaussians C1-C3.
PAPER.update({(d, m): f"KL {kl}, JSD {jsd}, gnELBO {g}"
              for d, row in _SOFT_TABLE2.items() for m, (g, kl, jsd) in row.items()})

_TABLE = flags.DEFINE_enum("table", "c1c3", ["c1c3", "datasets"], "Which table.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
_STEPS = flags.DEFINE_integer("train_steps", REFERENCE_STEPS, "Training steps per run.")
_METHODS = flags.DEFINE_list("methods", list(METHODS), "Methods (rows).")
_DATASETS = flags.DEFINE_list("datasets", list(DATASETS), "Datasets (table=datasets).")
_SETTINGS = flags.DEFINE_list("settings", list(COMBOS), "Hyper-parameter combinations "
                              "(table=c1c3): C1, C2, C3.")
_DRAWS = flags.DEFINE_integer("eval_draws", 3, "Evaluation draws per trained run.")
_WORKROOT = flags.DEFINE_string("workroot", "runs/reproduce_2d", "Where the runs go.")
_ASSEMBLE = flags.DEFINE_boolean("assemble_only", False, "Train nothing: build the table from "
                                 "the runs already evaluated (cells show how many seeds).")
_OUT = flags.DEFINE_string("out", None, "Markdown output file (default WORKROOT/TABLE.md).")


def _config(dataset, method, seed, steps, workdir, betas=None):
  config = config_lib.from_flagfile(os.path.join(ROOT, "configs", f"{dataset}_{method}.flags"))
  ratio = steps / REFERENCE_STEPS
  changes = dict(seed=seed, train_steps=steps, workdir=workdir, verbose="0",
                 num_vae=int(round(config.num_vae * ratio)),
                 lr_milestones=tuple(max(1, int(round(m * ratio))) for m in config.lr_milestones),
                 log_every_steps=max(1, min(config.log_every_steps, steps // 10 or 1)),
                 checkpoint_every_steps=max(1, steps // 5), image_every_steps=steps)
  if betas is not None:
    changes.update(beta_kl=betas[0], beta_rec=betas[1], beta_neg=betas[2])
  return config.replace(**changes)


def _cells():
  if _TABLE.value == "c1c3":
    unknown = set(_SETTINGS.value) - set(COMBOS)
    if unknown:
      raise app.UsageError(f"--settings: unknown {sorted(unknown)}; allowed {list(COMBOS)}")
    return [(combo, "8gaussians", method, COMBOS[combo]) for combo in _SETTINGS.value
            for method in _METHODS.value]
  return [(dataset, dataset, method, None) for dataset in _DATASETS.value
          for method in _METHODS.value]


def _fmt(values, scale=1.0):
  import numpy as np  # pylint: disable=import-outside-toplevel
  v = np.asarray(values, dtype=np.float64) * scale
  return f"{v.mean():.2f} +- {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def _saved_metrics(workdir, steps):
  """The metrics of an earlier evaluation of the finished run in `workdir`, or None.

  Reused only when it evaluated step `steps` with the same `--eval_draws`, so that a table can
  be assembled from runs trained by several invocations (e.g. one per seed, in parallel).
  """
  path = os.path.join(workdir, "eval", "metrics.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f)
  if saved.get("step") != steps or saved.get("options", {}).get("eval_draws") != _DRAWS.value:
    return None
  return saved["metrics"]


def main(argv):
  del argv
  from as_introvae_tf import eval_lib  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import train_lib  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_inter_op_parallelism_threads(2)
  tf.config.threading.set_intra_op_parallelism_threads(1)

  seeds = [int(s) for s in _SEEDS.value]
  steps = _STEPS.value
  results = {}
  start = time.time()
  for cell, dataset, method, betas in _cells():
    for seed in seeds:
      workdir = os.path.join(_WORKROOT.value, _TABLE.value, f"{cell}_{method}", f"seed{seed}")
      config = _config(dataset, method, seed, steps, workdir, betas)
      metrics = _saved_metrics(workdir, steps)
      if metrics is None and _ASSEMBLE.value:
        continue
      if metrics is None:
        train_lib.train_and_evaluate(config)
        options = eval_lib.EvalOptions(eval_draws=_DRAWS.value)
        metrics = eval_lib.evaluate(workdir, options, log=lambda *a: None)["metrics"]
      results.setdefault(f"{cell}/{method}", []).append(
          {k: metrics[k] for k in ("kl", "jsd", "gnelbo", "modes_covered",
                                   "high_quality_fraction") if k in metrics})
      print(f"[{time.time() - start:.0f}s] {cell} {method} seed {seed}: "
            f"KL {metrics['kl']:.2f} JSD {metrics['jsd']:.2f} gnELBO {metrics['gnelbo']:.3e}",
            flush=True)

  lines = [f"Budget: {steps} training steps per run (reference: {REFERENCE_STEPS}), "
           f"seeds {','.join(map(str, seeds))}, {_DRAWS.value} evaluation draws per run; "
           "mean +- sample std over seeds of the per-run mean. gnELBO in units of 1e-7.", "",
           f"| {'setting' if _TABLE.value == 'c1c3' else 'dataset'} | method | KL | JSD | "
           "gnELBO (1e-7) | modes (of 8) | paper |",
           "|---|---|---|---|---|---|---|"]
  for cell, dataset, method, _ in _cells():
    rows = results.get(f"{cell}/{method}", [])
    if not rows:  # --assemble_only with no finished run in this cell
      lines.append(f"| {cell} | {method} | not run | | | | {PAPER.get((cell, method), '')} |")
      continue
    seeds_note = f" (n={len(rows)})" if len(rows) != len(seeds) else ""
    modes = (_fmt([r["modes_covered"] for r in rows])
             if dataset == "8gaussians" and all("modes_covered" in r for r in rows) else "")
    lines.append(f"| {cell} | {method} | {_fmt([r['kl'] for r in rows])}{seeds_note} | "
                 f"{_fmt([r['jsd'] for r in rows])} | {_fmt([r['gnelbo'] for r in rows], 1e7)} "
                 f"| {modes} | {PAPER.get((cell, method), '')} |")
  table = "\n".join(lines)
  print(table)
  out = _OUT.value or os.path.join(_WORKROOT.value, f"{_TABLE.value}.md")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    f.write(table + "\n")
  with open(out + ".json", "w") as f:
    json.dump({"train_steps": steps, "seeds": seeds, "results": results}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
