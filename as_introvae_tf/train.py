"""Trains an introspective VAE: `python -m as_introvae_tf.train --flagfile=configs/NAME.flags`.

Flags given after `--flagfile` override the file, e.g.
  python -m as_introvae_tf.train --flagfile=configs/8gaussians_as_introvae.flags --train_steps=2000
Running the same command again resumes from the last checkpoint in --workdir.
SIGTERM or Ctrl-C stops after the current step and a checkpoint (exit status 143 / 130);
a second Ctrl-C aborts at once.
This file is intentionally short: the logic lives in `train_lib`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from as_introvae_tf import config as config_lib  # noqa: E402

config_lib.define_flags()


def apply_threading(config):
  """Sets TensorFlow's thread pools and determinism (before TensorFlow executes any op)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  if config.inter_op_threads:
    tf.config.threading.set_inter_op_parallelism_threads(config.inter_op_threads)
  if config.intra_op_threads:
    tf.config.threading.set_intra_op_parallelism_threads(config.intra_op_threads)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from as_introvae_tf import train_lib  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  config = None
  try:
    config = config_lib.ExperimentConfig.from_flags(flags.FLAGS).validate()
    apply_threading(config)
    result = train_lib.train_and_evaluate(config)
  except train_lib.TrainingInterrupted as e:
    logging.warning("%s", e)
    print(f"stopped: {e}", file=sys.stderr)
    return e.exit_status  # 143 (SIGTERM) or 130 (SIGINT), as the shell reports signals
  except KeyboardInterrupt:  # a second Ctrl-C during the stop
    print("aborted by a second Ctrl-C: the last checkpoint written is kept"
          + (f" in {config.workdir}/checkpoints" if config else ""), file=sys.stderr)
    return 130
  except (config_lib.ConfigError, FileNotFoundError, train_lib.TrainingDivergedError,
          train_lib.CheckpointWriteError, workdir_lib.WorkdirLockedError, ValueError) as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"Trained to step {result['step']}; samples: {result['samples_png']}; "
        f"TensorBoard: tensorboard --logdir {config.workdir}/tensorboard")
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
