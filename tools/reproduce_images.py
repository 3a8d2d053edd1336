"""Reproduces the image tables of the AS-IntroVAE paper at a budget that fits a small machine.

  as-introvae.md Table 3: reconstruction of held-out images, PSNR (dB) / SSIM / per-pixel MSE
  as-introvae.md Table 2: generation, FID between samples and real images

S-IntroVAE against AS-IntroVAE (and, with `--methods`, the baselines WGAN-GP and AVAE) on
Fashion-MNIST and CIFAR-10. Every method of a dataset gets the same budget: the same network
(`--filters`, default a quarter of the paper's channels), batch size, number of training steps
and evaluation set. The other hyper-parameters come from `configs/<dataset>_<method>.flags`
(the papers' settings). The budget is written above the table.

FID here is the offline "domain FID" (`fid_fmnist_cnn`, `fid_cifar10_cnn`: Frechet distance of
a small classifier's features, `tools/train_feature_net.py`), not the papers' Inception FID;
pass `--inception_weights=FILE` to add `fid_inception`. The papers' rows are MNIST (not
Fashion-MNIST) and CIFAR-10 at full budget; they are printed for reference, not comparison.

  python tools/reproduce_images.py --train_steps=1500 --out=results/images.md
  python tools/reproduce_images.py --datasets=cifar10 --methods=soft_introvae,as_introvae,wgan_gp

Each run trains in `--workroot/<dataset>_<method>/seed<k>` (an existing run resumes or is
reused, and its evaluation too when it was made with the same options), then is evaluated with
`eval_lib.evaluate` on `--num_samples` test images and as many samples. Writes the Markdown
table to stdout and `--out`, the raw numbers to `--out` + `.json`.
"""

import dataclasses
import json
import os
import sys
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__":  # `python tools/reproduce_images.py`: the package on sys.path
  sys.path.insert(0, ROOT)

from as_introvae_tf import config as config_lib  # noqa: E402
from tools import own_flags  # noqa: E402

DATASETS = ("fashion_mnist", "cifar10")
METHODS = ("soft_introvae", "as_introvae")
BUDGET_FILTERS = {"fashion_mnist": (16, 32), "cifar10": (16, 32, 64)}
"""A quarter of the paper's channels (64,128 and 64,128,256): about 1/16 of the FLOPs."""

PAPER = {  # as-introvae.md Table 3 (PSNR / SSIM / MSE) and Table 2 (FID, Inception)
  ("fashion_mnist", "soft_introvae"): "MNIST: 20.282 / 0.885 / 0.011; FID 98.84",
  ("fashion_mnist", "as_introvae"): "MNIST: 21.014 / 0.898 / 0.009; FID 96.16",
  ("fashion_mnist", "wgan_gp"): "MNIST: FID 139.02",
  ("cifar10", "soft_introvae"): "19.300 / 0.599 / 0.019; FID 275.20",
  ("cifar10", "as_introvae"): "19.445 / 0.620 / 0.019; FID 271.69",
  ("cifar10", "wgan_gp"): "FID 434.11",
}


def define_flags(flag_values=flags.FLAGS):
  """The command line's flags, defined in `flag_values` (only the command line and `parse`
  call this: importing the module defines nothing)."""
  d = dict(flag_values=flag_values)
  flags.DEFINE_list("datasets", list(DATASETS), "Datasets (table blocks).", **d)
  flags.DEFINE_list(
    "methods",
    list(METHODS),
    "Methods (rows): soft_introvae, as_introvae, and optionally wgan_gp, avae, vae, introvae.",
    **d,
  )
  flags.DEFINE_list("seeds", ["0"], "Training seeds (mean +- std over seeds).", **d)
  flags.DEFINE_integer("train_steps", 1500, "Training steps per run (every method).", **d)
  flags.DEFINE_integer(
    "batch_size",
    64,
    "Batch size of every run (WGAN-GP: per critic iteration, so its batch is this x --n_critic).",
    **d,
  )
  flags.DEFINE_list(
    "filters",
    None,
    "Encoder/decoder channels for every dataset "
    "(default: a quarter of the paper's, see BUDGET_FILTERS).",
    **d,
  )
  flags.DEFINE_integer(
    "num_samples", 5000, "Test images reconstructed, and samples generated, per evaluation.", **d
  )
  flags.DEFINE_string(
    "inception_weights", None, "InceptionV3 weights file: adds the papers' Inception FID.", **d
  )
  flags.DEFINE_string("workroot", "runs/reproduce_images", "Where the runs go.", **d)
  flags.DEFINE_string("out", None, "Markdown output file (default WORKROOT/images.md).", **d)


def parse(argv):
  """The flags of the command line `argv` (argv[0]: the program), in a FlagValues of their
  own (`tools.own_flags.parse`): what `run` takes, also in a process whose global flags hold
  others (tests). Raises absl.flags.Error on an unknown flag or a bad value."""
  return own_flags.parse(define_flags, argv)


def _config(opts, dataset, method, seed, workdir):
  """The run's config: the method's flagfile for `dataset` at the budget of the flags `opts`."""
  config = config_lib.from_flagfile(os.path.join(ROOT, "configs", f"{dataset}_{method}.flags"))
  steps = opts.train_steps
  filters = tuple(int(f) for f in opts.filters) if opts.filters else BUDGET_FILTERS[dataset]
  batch = opts.batch_size * (config.n_critic if method == "wgan_gp" else 1)
  return config.replace(
    seed=seed,
    workdir=workdir,
    train_steps=steps,
    batch_size=batch,
    filters=filters,
    num_vae=min(config.num_vae, steps // 2),
    lr_milestones=(),
    verbose="0",
    log_every_steps=max(1, min(100, steps // 10)),
    checkpoint_every_steps=max(1, steps // 3),
    image_every_steps=steps,
    nan_policy="skip_batch",
    inter_op_threads=2,
    intra_op_threads=1,
  )


def _check_before_training(opts):
  """The seeds, and every run's config (a typo in --datasets or --methods, bad --filters), checked
  before the first run trains; returns the seeds.

  Raises:
    app.UsageError: naming the flag and the problem.
  """
  try:
    seeds = [int(s) for s in opts.seeds if s.strip()]
    if opts.filters:
      [int(f) for f in opts.filters]  # pylint: disable=expression-not-assigned
  except ValueError:
    raise app.UsageError(
      f"--seeds and --filters take integers; got --seeds={','.join(opts.seeds)} "
      f"--filters={','.join(opts.filters or [])}"
    ) from None
  if not seeds or min(seeds) < 0:
    raise app.UsageError(f"--seeds must be integers >= 0; got {','.join(opts.seeds)}")
  for dataset in opts.datasets:
    if dataset not in BUDGET_FILTERS:
      raise app.UsageError(f"--datasets: unknown {dataset!r}; allowed: {', '.join(BUDGET_FILTERS)}")
    for method in opts.methods:
      if not os.path.isfile(os.path.join(ROOT, "configs", f"{dataset}_{method}.flags")):
        raise app.UsageError(
          f"--methods: no configs/{dataset}_{method}.flags (methods: "
          f"{', '.join(config_lib.METHODS)})"
        )
      for seed in seeds:
        try:
          _config(opts, dataset, method, seed, "workdir").validate()
        except (config_lib.ConfigError, flags.Error) as e:
          raise app.UsageError(f"{dataset} {method} seed {seed}: {e}") from None
  return seeds


def _saved_metrics(workdir, steps, options):
  """An earlier evaluation of the finished run with the same options and evaluation version,
  or None."""
  from as_introvae_tf import eval_lib  # pylint: disable=import-outside-toplevel

  path = os.path.join(workdir, "eval", "metrics.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f)
  if (
    saved.get("step") != steps
    or saved.get("options") != dataclasses.asdict(options)
    or saved.get("eval_version") != eval_lib.EVAL_VERSION
  ):
    return None
  return saved


def _fmt(values, digits):
  import numpy as np  # pylint: disable=import-outside-toplevel

  v = np.asarray([x for x in values if x is not None], dtype=np.float64)
  if not len(v):
    return "-"
  if len(v) == 1:
    return f"{v.mean():.{digits}f}"
  return f"{v.mean():.{digits}f} +- {v.std(ddof=1):.{digits}f}"


def main(argv):
  """The command line (`app.run`): `run` with the parsed global flags."""
  del argv
  run(flags.FLAGS)


def run(opts):
  """Trains (or reuses) and evaluates every run of the flags `opts` (`parse`), then writes
  the table and its JSON."""
  from as_introvae_tf import eval_lib  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import train_lib  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  try:
    tf.config.threading.set_inter_op_parallelism_threads(2)
    tf.config.threading.set_intra_op_parallelism_threads(1)
  except RuntimeError:  # called in a process whose TensorFlow has started (tests): its threads
    pass

  seeds = _check_before_training(opts)
  try:
    options = eval_lib.EvalOptions(
      num_samples=opts.num_samples, inception_weights=opts.inception_weights
    ).validate()
  except config_lib.ConfigError as e:
    raise app.UsageError(str(e)) from None
  results, budgets = {}, {}
  start = time.time()
  for dataset in opts.datasets:
    for method in opts.methods:
      for seed in seeds:
        workdir = os.path.join(opts.workroot, f"{dataset}_{method}", f"seed{seed}")
        config = _config(opts, dataset, method, seed, workdir)
        budgets[dataset] = (
          f"filters {','.join(map(str, config.filters))}, z {config.z_dim}, batch {opts.batch_size}"
        )
        saved = _saved_metrics(os.path.abspath(workdir), config.train_steps, options)
        if saved is None:
          t0 = time.time()
          train_lib.train_and_evaluate(config)
          train_seconds = time.time() - t0
          saved = eval_lib.evaluate(workdir, options, log=lambda *a: None)
          saved["train_seconds"] = train_seconds
          with open(os.path.join(workdir, "eval", "reproduce.json"), "w") as f:
            json.dump({"train_seconds": train_seconds}, f)
        metrics = saved["metrics"]
        results.setdefault(f"{dataset}/{method}", []).append(metrics)
        fids = {k: v for k, v in metrics.items() if k.startswith("fid_")}
        print(
          f"[{time.time() - start:.0f}s] {dataset} {method} seed {seed}: "
          + " ".join(
            f"{k} {v:.4g}"
            for k, v in sorted(metrics.items())
            if k in ("psnr", "ssim", "mse") or k in fids
          ),
          flush=True,
        )

  fid_keys = sorted(
    {k for rows in results.values() for r in rows for k in r if k.startswith("fid_")}
  )
  lines = [
    f"Budget: {opts.train_steps} training steps per run, seeds {','.join(map(str, seeds))}; "
    + "; ".join(f"{d}: {b}" for d, b in budgets.items())
    + f". Evaluation: {opts.num_samples} test images and {opts.num_samples} samples "
    "(EMA decoder where the config has one). fid_<net> is the domain FID of the "
    "project's feature net, not Inception FID; the paper's numbers are MNIST (not "
    "Fashion-MNIST) and CIFAR-10 at full budget with Inception FID.",
    "",
    "| dataset | method | PSNR (dB) | SSIM | MSE | "
    + " | ".join(fid_keys)
    + " | active units | paper (PSNR / SSIM / MSE; FID) |",
    "|---|---|---|---|---|" + "---|" * len(fid_keys) + "---|---|",
  ]
  for dataset in opts.datasets:
    for method in opts.methods:
      rows = results[f"{dataset}/{method}"]
      cells = [
        _fmt([r.get("psnr") for r in rows], 3),
        _fmt([r.get("ssim") for r in rows], 3),
        _fmt([r.get("mse") for r in rows], 4),
      ]
      cells += [_fmt([r.get(k) for r in rows], 2) for k in fid_keys]
      cells.append(_fmt([r.get("active_units") for r in rows], 1))
      lines.append(
        f"| {dataset} | {method} | "
        + " | ".join(cells)
        + f" | {PAPER.get((dataset, method), '')} |"
      )
  table = "\n".join(lines)
  print(table)
  out = opts.out or os.path.join(opts.workroot, "images.md")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    f.write(table + "\n")
  with open(out + ".json", "w") as f:
    json.dump(
      {
        "train_steps": opts.train_steps,
        "seeds": seeds,
        "budgets": budgets,
        "num_samples": opts.num_samples,
        "results": results,
      },
      f,
      indent=2,
    )


if __name__ == "__main__":
  define_flags()
  app.run(main)
