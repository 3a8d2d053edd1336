"""Train the quickstart, load it, draw samples and an interpolation: the library in 30 lines.

  python examples/quickstart.py                        # about 5 minutes on a 2-core CPU
  python examples/quickstart.py --workdir=/tmp/q --train_steps=300   # a shorter try

Trains configs/quickstart.flags (AS-IntroVAE on Fashion-MNIST; found from any folder) into
--workdir, or resumes it there, then writes WORKDIR/example_samples.png (a 4x4 grid of samples)
and WORKDIR/example_interpolation.png (8 steps between two samples' latent codes).
"""

import argparse
import os
import sys

import numpy as np

# `python examples/quickstart.py` puts examples/ on sys.path, not the checkout: run from a
# checkout without `pip install`, the package is the one beside this folder (an installed one
# is used when there is no checkout around the script).
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_CHECKOUT, "as_introvae_tf")) and _CHECKOUT not in sys.path:
  sys.path.insert(0, _CHECKOUT)

import as_introvae_tf  # noqa: E402
from as_introvae_tf import visualize  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/quickstart")
  parser.add_argument(
    "--train_steps",
    type=int,
    default=None,
    help="default: the config's 1500 (the first 1200 are VAE warm-up)",
  )
  args = parser.parse_args()

  overrides = {"workdir": args.workdir}
  if args.train_steps:
    overrides.update(
      train_steps=args.train_steps,
      num_vae=min(1200, args.train_steps * 4 // 5),
      lr_milestones=(max(1, min(1200, args.train_steps * 4 // 5)),),
    )
  result = as_introvae_tf.train("configs/quickstart.flags", **overrides)
  print(f"trained to step {result['step']}: {result['metrics']}")

  model = as_introvae_tf.load(args.workdir)  # or an export directory
  samples = model.sample(16, seed=0)  # float32 [16, 28, 28, 1] in [0, 1]
  path = os.path.join(args.workdir, "example_samples.png")
  visualize.save_png(path, visualize.image_grid(samples, columns=4))
  print(f"{model}: 16 samples {samples.shape} -> {path}")

  frames = model.interpolate(samples[0], samples[1], steps=8)  # [8, 28, 28, 1]
  path = os.path.join(args.workdir, "example_interpolation.png")
  visualize.save_png(path, visualize.image_grid(frames, columns=8))
  mu, logvar = model.encode(samples[:2])  # [2, z_dim] each
  print(
    f"interpolation {frames.shape} -> {path}; |mu_a - mu_b| = "
    f"{float(np.linalg.norm(mu[0] - mu[1])):.2f}"
  )


if __name__ == "__main__":
  main()
