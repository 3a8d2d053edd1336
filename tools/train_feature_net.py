"""Trains the small classifier whose features give the domain FID/KID (`fid_<netname>`).

  python tools/train_feature_net.py --dataset=fashion_mnist \
      --out=~/.cache/as_introvae_tf/feature_nets/fashion_mnist.keras
  python tools/train_feature_net.py --dataset=cifar10 --out=/tmp/cifar10_cnn.keras --epochs=3

`python -m as_introvae_tf.evaluate` uses `--feature_net=PATH`, or the cached default
`~/.cache/as_introvae_tf/feature_nets/<dataset>.keras` (trained on first use). The logic lives in
`as_introvae_tf.feature_nets.train_feature_net`; this file only reads flags.
"""

import os
import sys

if __name__ == "__main__":  # `python tools/train_feature_net.py`: the package on sys.path
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from tools import own_flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(flag_values=flags.FLAGS):
  """The command line's flags, defined in `flag_values` (only the command line calls this:
  importing the module defines nothing)."""
  d = dict(flag_values=flag_values)
  flags.DEFINE_string(
    "dataset",
    "fashion_mnist",
    "fashion_mnist | cifar10 | folder:PATH (an image folder with class subfolders).",
    **d,
  )
  flags.DEFINE_string(
    "out",
    None,
    "Output .keras file (a .json description is written "
    "next to it). Default: the cache path evaluate looks for.",
    **d,
  )
  own_flags.require_writable_output("out", flag_values)  # written after the training
  flags.DEFINE_integer("epochs", 2, "Passes over the training split.", lower_bound=1, **d)
  flags.DEFINE_integer("max_steps", None, "Stop after this many steps (tests).", **d)
  flags.DEFINE_integer("batch_size", 128, "Batch size.", **d)
  flags.DEFINE_integer("seed", 0, "Random seed.", **d)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import feature_nets  # pylint: disable=import-outside-toplevel

  try:
    out = FLAGS.out
    if out is None:
      key = feature_nets.dataset_key(data.parse_dataset(FLAGS.dataset, None, None))
      if key is None:
        raise ValueError(f"--dataset={FLAGS.dataset} has no class labels")
      out = str(feature_nets.default_feature_net_path(key))
    info = feature_nets.train_feature_net(
      FLAGS.dataset,
      os.path.expanduser(out),
      epochs=FLAGS.epochs,
      max_steps=FLAGS.max_steps,
      batch_size=FLAGS.batch_size,
      seed=FLAGS.seed,
    )
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"{info['name']}: test accuracy {info['test_accuracy']:.4f}; saved {info['path']}")
  return 0


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
