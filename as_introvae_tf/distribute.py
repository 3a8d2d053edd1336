"""The `tf.distribute` strategy factory behind `--strategy`."""

from __future__ import annotations

import tensorflow as tf


def get_strategy(name: str) -> tf.distribute.Strategy:
  """Returns the strategy for `--strategy`.

  Args:
    name: `default` (the default strategy: one device, no replicas to sync), `mirrored`
      (`MirroredStrategy` over all local GPUs, or the CPU when there is none, the TF Model
      Garden's fallback), or `multi_worker` (`MultiWorkerMirroredStrategy`, configured by the
      `TF_CONFIG` environment variable).

  Returns:
    A `tf.distribute.Strategy`; `num_replicas_in_sync` tells how the global batch is split.

  Raises:
    ValueError: unknown `name`.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or ["/cpu:0"]
    return tf.distribute.MirroredStrategy(devices)
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"--strategy must be one of default, mirrored, multi_worker; got {name!r}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the worker that writes checkpoints, summaries and samples (task 0, or alone)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return (
    task_type is None
    or task_type == "chief"
    or (task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict())
  )
