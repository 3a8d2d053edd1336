"""Evaluates a trained run: `as-introvae-evaluate --workdir=DIR`.

  as-introvae-evaluate --workdir=runs/quickstart
  as-introvae-evaluate --workdir=runs/8gaussians_soft_introvae --eval_draws=5
  python -m as_introvae_tf.evaluate --workdir=runs/quickstart --num_samples=10000 \
      [--feature_net=PATH | --feature_net=none] [--inception_weights=inception_v3_notop.h5]

Writes DIR/eval/metrics.json, pictures in DIR/eval/, TensorBoard scalars `eval/<name>` in
DIR/tensorboard/eval (step = training step), and prints a short table. Exit status 1 with a
message on bad input (no run or no checkpoint in --workdir, bad flags).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from as_introvae_tf import config as config_lib  # noqa: E402

_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Training run directory (config.json and checkpoints/); results go to WORKDIR/eval.",
)
_SPLIT = flags.DEFINE_enum(
  "split",
  "test",
  ["test", "train"],
  "Held-out image split for reconstructions and the real side of FID/KID.",
)
_NUM_SAMPLES = flags.DEFINE_integer(
  "num_samples",
  None,
  "2-D: data and model samples per KL/JSD histogram (default 5000, the "
  "S-IntroVAE reference). Images: held-out images (a uniform random subset, seeded by "
  "--seed) and generated samples (default 10000, capped at the split size).",
)
_EVAL_DRAWS = flags.DEFINE_integer(
  "eval_draws",
  3,
  "2-D: independent evaluation draws; KL/JSD/gnELBO are reported as their mean and std.",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the evaluation draws.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 100, "Images per forward pass.")
_GRID_POINTS = flags.DEFINE_integer(
  "grid_points",
  1024,
  "2-D: grid points per axis of the gnELBO and the density plot (reference 1024).",
)
_INCEPTION_WEIGHTS = flags.DEFINE_string(
  "inception_weights",
  None,
  "Keras InceptionV3 weights file without the top "
  "(inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5) for fid_inception; slow on a "
  "CPU (about 6 GFLOPs per image).",
)
_CHECKPOINT = flags.DEFINE_string(
  "checkpoint",
  None,
  "Checkpoint prefix to evaluate (e.g. WORKDIR/checkpoints/ckpt-1000); "
  "default: the newest in WORKDIR/checkpoints.",
)
_FEATURE_NET = flags.DEFINE_string(
  "feature_net",
  None,
  "Saved classifier (.keras, tools/train_feature_net.py) for "
  "fid_<netname>; default ~/.cache/as_introvae_tf/feature_nets/<dataset>.keras, trained on "
  "first use; 'none' skips it.",
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if not _WORKDIR.value:
    print("error: --workdir is required (a training run directory)", file=sys.stderr)
    return 1
  try:
    config_lib.check_run_directory(_WORKDIR.value)  # before TensorFlow's start-up
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  from as_introvae_tf import cli  # pylint: disable=import-outside-toplevel

  cli.import_tensorflow()  # its start-up notices hidden
  from as_introvae_tf import eval_lib  # pylint: disable=import-outside-toplevel

  cli.quiet_absl_logging(flags.FLAGS)
  try:
    options = eval_lib.EvalOptions(
      split=_SPLIT.value,
      num_samples=_NUM_SAMPLES.value,
      eval_draws=_EVAL_DRAWS.value,
      seed=_SEED.value,
      batch_size=_BATCH_SIZE.value,
      grid_points=_GRID_POINTS.value,
      inception_weights=_INCEPTION_WEIGHTS.value,
      feature_net=_FEATURE_NET.value,
      checkpoint=_CHECKPOINT.value,
    ).validate()
    _apply_threading(_WORKDIR.value)
    result = eval_lib.evaluate(_WORKDIR.value, options)
  except (config_lib.ConfigError, OSError, ValueError) as e:  # OSError: missing or unwritable
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(eval_lib.format_table(result))
  print(
    f"Wrote {result['metrics_json']}; TensorBoard: tensorboard --logdir "
    f"{result['workdir']}/tensorboard"
  )
  return 0


def _apply_threading(workdir):
  """The run's CPU thread settings (before TensorFlow runs any op); a missing config.json (the
  command checks for it first) is a no-op."""
  try:
    config = config_lib.load_config(workdir)
  except FileNotFoundError:
    return
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  if config.inter_op_threads:
    tf.config.threading.set_inter_op_parallelism_threads(config.inter_op_threads)
  if config.intra_op_threads:
    tf.config.threading.set_intra_op_parallelism_threads(config.intra_op_threads)


def run(argv=None):
  """Console-script entry point (and `python -m`): TensorFlow's start-up notices hidden."""
  from as_introvae_tf import cli  # pylint: disable=import-outside-toplevel

  cli.run_main(main, __doc__, argv)


if __name__ == "__main__":
  run()
