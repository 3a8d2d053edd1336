"""The S-IntroVAE reference's 2-D training, run as its script runs it, evaluated as we evaluate ours.

Trains the PyTorch port of `train_soft_intro_vae_toy` (taldatech/soft-intro-vae-pytorch,
soft_intro_vae_2d/train_soft_intro_vae_2d.py) that tools/lockstep_reference.py checks against
our step, with what the reference's script takes from PyTorch and NumPy rather than from us:

- weights: PyTorch's default initialization (the `nn.Linear` constructors), after
  `torch.manual_seed(seed)`;
- batches: `ToyDataset('8Gaussians', scale=2).next_batch(batch, sig=0.02)`: one of the 8
  centres per point, N(0, 0.02^2) per coordinate, all divided by 1.414 (NumPy's global RNG
  after `np.random.seed(seed)`; drawn as one array per batch instead of point by point: the
  same distribution, another stream);
- noise: `torch.randn` in the reference's places (the fakes' prior samples and every
  reparameterization);
- schedule: Adam(2e-4) for E and D, `MultiStepLR(milestones, 0.1)` stepped every iteration,
  `num_vae` warm-up iterations of the plain ELBO.

It is then evaluated with `eval_2d.evaluate_2d`'s code path for KL, JSD and modes (`--eval_draws`
draws of 5000 points, histograms of 100 x 100 bins on [-2, 2]^2, each draw seeded
`[eval seed, draw]`), so that its numbers compare with ours in results/2d without the
evaluation's own noise differing (the reference's script evaluates one draw; gnELBO is left
out here). Both sides are then samples of the same stochastic process if, besides the step,
the data and initialization distributions agree (tests/test_data.py,
tests/test_reference_defaults.py).

Needs PyTorch (CPU): `pip install torch==2.13.0`.

  python tools/reference_2d.py --seeds=0,1,2 --train_steps=5000 --num_vae=2000

Writes one JSON per seed to `--results_dir` (default results/2d/reference_port), named
`8gaussians_<steps>_seed<k>.json`, and skips seeds whose file exists.

  python tools/reference_2d.py --assemble_only --readme=docs/results.md

trains nothing: it prints, for each budget with reference runs, the reference runs next to
ours at the same budget (results/2d/datasets: the `official5000` variant at 5000 steps, the
reference defaults at 30000) with a two-sided exact Mann-Whitney test of the KLs, and with
`--readme` replaces the block `<!-- BEGIN reference_2d -->` ... `<!-- END reference_2d -->`.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__":  # `python tools/reference_2d.py`: the root on sys.path, for `tools`
  sys.path.insert(0, ROOT)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from tools import lockstep_port  # noqa: E402  (the PyTorch port)
from tools import machine  # noqa: E402
from tools.readme_block import replace_readme_block  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
  """The command line (defined only when run as a script)."""
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds (the reference's `seed`).")
  flags.DEFINE_integer(
    "train_steps", 30000, "Iterations (the reference's `n_iter`).", lower_bound=1
  )
  flags.DEFINE_integer("num_vae", 2000, "Warm-up iterations.", lower_bound=0)
  flags.DEFINE_list("lr_milestones", ["10000", "15000"], "MultiStepLR milestones.")
  flags.DEFINE_integer("batch_size", 512, "Batch size.", lower_bound=1)
  flags.DEFINE_float("beta_kl", 0.3, "beta_kl (the reference's choice for 8Gaussians).")
  flags.DEFINE_float("beta_rec", 0.2, "beta_rec.")
  flags.DEFINE_float("beta_neg", 0.9, "beta_neg.")
  flags.DEFINE_integer(
    "eval_draws", 3, "Evaluation draws (as --eval_draws of evaluate).", lower_bound=1
  )
  flags.DEFINE_integer(
    "eval_seed", 0, "Seed of the evaluation draws (as eval_lib's).", lower_bound=0
  )
  flags.DEFINE_string(
    "results_dir", os.path.join(ROOT, "results", "2d", "reference_port"), "Where results go."
  )
  flags.DEFINE_bool("assemble_only", False, "Train nothing: print the comparison table.")
  flags.DEFINE_string("readme", "", "With --assemble_only: replace the README's block.")
  flags.DEFINE_string(
    "ours_dir", os.path.join(ROOT, "results", "2d", "datasets"), "Our results (reproduce_2d)."
  )
  # Checked when the flags are parsed, before any training (--eval_draws=0 used to write a NaN
  # result file that later calls then skipped as done; --seeds=0,x failed after seed 0).
  for name, minimum in (("seeds", 0), ("lr_milestones", 1)):
    flags.register_validator(
      name,
      lambda values, minimum=minimum: all(_is_int(v, minimum) for v in values if v),
      message=f"--{name} takes integers >= {minimum}, comma-separated",
    )
  flags.register_validator(
    "seeds", lambda values: any(v for v in values), message="--seeds: give at least one seed"
  )
  flags.register_multi_flags_validator(
    ["readme", "assemble_only"],
    lambda values: not values["readme"] or values["assemble_only"],
    message="--readme goes with --assemble_only (training writes no table)",
  )


def _is_int(text, minimum):
  try:
    return int(text) >= minimum
  except ValueError:
    return False


def sample_8gaussians(batch):
  """`ToyDataset('8Gaussians', scale=2).next_batch(batch, sig=0.02)`: float32 [batch, 2], from
  NumPy's global RNG as the reference draws it (our sampler's centres, in the reference's
  order: `data.two_d`)."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from as_introvae_tf.data import two_d  # pylint: disable=import-outside-toplevel

  centres = two_d._gaussian_centres()  # pylint: disable=protected-access
  points = (
    np.random.randn(batch, 2) * 0.02 + centres[np.random.randint(0, len(centres), size=batch)]
  )
  return (points / 1.414).astype(np.float32)


def train(seed, steps, num_vae, milestones, batch, betas, log=print):
  """Trains the port from the reference's start; returns the decoder (`nn.Sequential`)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel

  random.seed(seed)
  np.random.seed(seed)
  torch.manual_seed(seed)
  encoder, decoder = lockstep_port.reference_port(torch, num_hidden=256, num_layers=3, z_dim=2)
  hp = dict(beta_kl=betas[0], beta_rec=betas[1], beta_neg=betas[2], gamma_r=1e-8)
  step = lockstep_port.ReferenceStep(
    torch, encoder, decoder, 2e-4, list(milestones), 0.1, hp, num_vae
  )
  t0 = time.time()
  for it in range(steps):
    x = torch.from_numpy(sample_8gaussians(batch))
    if it < num_vae:
      noise = {"eps": torch.randn(batch, 2)}
    else:
      noise = {
        k: torch.randn(batch, 2) for k in ("z_p", "eps", "eps_f", "eps_r", "eps_r_d", "eps_f_d")
      }
    step(it, x, noise)
    if (it + 1) % 1000 == 0:
      log(f"seed {seed}: iteration {it + 1}/{steps} ({time.time() - t0:.0f} s)")
  return decoder


def evaluate(decoder, draws, eval_seed):
  """KL, JSD (mean and std over draws), their data-against-itself floors, and mode coverage,
  by `eval_2d.evaluate_2d`'s code path (`eval_2d.sample_metrics_draw`, draw d seeded
  `[eval_seed, d]`)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel

  from as_introvae_tf import eval_2d  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import metrics  # pylint: disable=import-outside-toplevel

  values = {k: [] for k in ("kl", "jsd", "kl_floor", "jsd_floor", "modes_covered")}
  decoder.eval()
  for d in range(draws):
    rng = np.random.default_rng([eval_seed, d])

    def model_points(num, rng=rng):
      z = rng.standard_normal((num, 2)).astype(np.float32)
      with torch.no_grad():
        return decoder(torch.from_numpy(z)).numpy()

    draw, samples = eval_2d.sample_metrics_draw("8gaussians", model_points, rng, metrics.KL_SAMPLES)
    for key, value in draw.items():
      values[key].append(value)
    values["modes_covered"].append(metrics.mode_coverage_8gaussians(samples)["modes_covered"])
  out = {}
  for k, v in values.items():
    # mean and sample std, as eval_lib reports them
    out[k], out[f"{k}_std"] = float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
  out["draws"] = {k: [float(x) for x in v] for k, v in values.items()}
  return out


OURS = {  # budget -> (our result files' prefix, what the row says)
  5000: (
    "8gaussians_soft_introvae_official5000_5000_seed",
    "ours (`--tag=official5000`: 2000 warm-up steps, no decay)",
  ),
  30000: ("8gaussians_soft_introvae_30000_seed", "ours (reference defaults)"),
}


def _load(folder, prefix):
  """{seed: metrics} of the result files `folder/prefix<seed>.json`."""
  import glob  # pylint: disable=import-outside-toplevel

  out = {}
  for path in glob.glob(os.path.join(folder, f"{prefix}*.json")):
    tail = os.path.basename(path)[len(prefix) : -len(".json")]
    if tail.isdigit():
      with open(path) as f:
        out[int(tail)] = json.load(f)["metrics"]
  return dict(sorted(out.items()))


def comparison_table(results_dir, ours_dir):
  """Markdown: per budget, the reference runs and ours (KL per seed, KL / JSD mean +- sample
  std, modes) and the exact two-sided Mann-Whitney p of the KLs."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from scipy import stats  # pylint: disable=import-outside-toplevel

  def stat(values):
    v = np.asarray(values, np.float64)
    return f"{v.mean():.2f} +- {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"

  lines = [
    "| steps | run | seeds | KL per seed | KL | JSD | modes (of 8) |",
    "|---:|---|---:|---|---|---|---|",
  ]
  tests = []
  for steps, (prefix, label) in OURS.items():
    ref = _load(results_dir, f"8gaussians_{steps}_seed")
    if not ref:
      continue
    ours = _load(ours_dir, prefix)
    for name, runs in (("reference (PyTorch port, `tools/reference_2d.py`)", ref), (label, ours)):
      if not runs:
        continue
      kls = [m["kl"] for m in runs.values()]
      lines.append(
        f"| {steps} | {name} | {len(runs)} | "
        + ", ".join(f"{k}: {m['kl']:.1f}" for k, m in runs.items())
        + f" | {stat(kls)} | {stat([m['jsd'] for m in runs.values()])} | "
        + f"{stat([m['modes_covered'] for m in runs.values()])} |"
      )
    if len(ref) > 1 and len(ours) > 1:
      p = stats.mannwhitneyu(
        [m["kl"] for m in ours.values()],
        [m["kl"] for m in ref.values()],
        alternative="two-sided",
        method="exact",
      ).pvalue
      tests.append(f"{steps} steps: p = {p:.2f} ({len(ours)} vs {len(ref)} runs)")
  text = "\n".join(lines)
  if tests:
    text += (
      "\n\nKL of ours against the reference's, exact two-sided Mann-Whitney test: "
      + "; ".join(tests)
      + ". KL/JSD: mean of 3 evaluation draws per run (eval_lib's code path for both), then "
      "mean +- sample std over runs."
    )
  return text


def main(argv):
  del argv
  if FLAGS.assemble_only:
    table = comparison_table(FLAGS.results_dir, FLAGS.ours_dir)
    print(table)
    if FLAGS.readme:
      replace_readme_block(FLAGS.readme, "reference_2d", table)
    return
  import torch  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(max(1, os.cpu_count() or 1))
  milestones = [int(m) for m in FLAGS.lr_milestones if m]
  betas = (FLAGS.beta_kl, FLAGS.beta_rec, FLAGS.beta_neg)
  os.makedirs(FLAGS.results_dir, exist_ok=True)
  for seed in (int(s) for s in FLAGS.seeds):
    path = os.path.join(FLAGS.results_dir, f"8gaussians_{FLAGS.train_steps}_seed{seed}.json")
    if os.path.exists(path):
      print(f"seed {seed}: {path} exists, skipped")
      continue
    t0 = time.time()
    decoder = train(
      seed,
      FLAGS.train_steps,
      FLAGS.num_vae,
      milestones,
      FLAGS.batch_size,
      betas,
      log=lambda m: print(m, flush=True),
    )
    train_s = time.time() - t0
    t0 = time.time()
    result = evaluate(decoder, FLAGS.eval_draws, FLAGS.eval_seed)
    record = {
      "tool": "tools/reference_2d.py",
      "reference": "taldatech/soft-intro-vae-pytorch soft_intro_vae_2d/train_soft_intro_vae_2d.py"
      " (PyTorch port of tools/lockstep_reference.py; PyTorch init, ToyDataset sampler, torch.randn)",
      "dataset": "8gaussians",
      "seed": seed,
      "train_steps": FLAGS.train_steps,
      "num_vae": FLAGS.num_vae,
      "lr_milestones": milestones,
      "batch_size": FLAGS.batch_size,
      "betas_kl_rec_neg": list(betas),
      "eval_draws": FLAGS.eval_draws,
      "metrics": {k: v for k, v in result.items() if k != "draws"},
      "draws": result["draws"],
      "train_wall_s": round(train_s, 1),
      "eval_wall_s": round(time.time() - t0, 1),
      "torch": torch.__version__,
      "cpu": machine.describe_cpu(),
      "python": platform.python_version(),
      "commit": machine.git_commit(ROOT),
      "date": time.strftime("%Y-%m-%d"),
    }
    with open(path, "w") as f:
      json.dump(record, f, indent=1)
      f.write("\n")
    m = record["metrics"]
    print(
      f"seed {seed}: KL {m['kl']:.2f} +- {m['kl_std']:.2f}, JSD {m['jsd']:.2f}, modes "
      f"{m['modes_covered']:.1f} ({train_s:.0f} s training) -> {path}",
      flush=True,
    )


if __name__ == "__main__":
  define_flags()
  app.run(main)
