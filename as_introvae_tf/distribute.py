"""`tf.distribute` for the library: the strategy factory behind `--strategy`, and the replica
helpers a method's step uses.

A step is written for one replica (`IntrospectiveVAE.train_step` runs in each replica's
context). The helpers below read the replica context once, so the step needs no
`tf.distribute.get_replica_context()` of its own: outside a strategy (or with one replica)
each is the identity.
"""

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


def num_replicas():
  """int: the replicas in sync in the current replica context (1 outside one)."""
  ctx = tf.distribute.get_replica_context()
  return 1 if ctx is None else ctx.num_replicas_in_sync


def _multi_replica_context():
  """The replica context when it has more than one replica, else None."""
  ctx = tf.distribute.get_replica_context()
  return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def global_sum(value):
  """`value` (any float tensor) summed over the replicas: the same result on every replica."""
  ctx = _multi_replica_context()
  return value if ctx is None else ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def replica_slice(full):
  """This replica's contiguous slice of a global-batch tensor `[B_global, ...]`:
  `[B_global / replicas, ...]`, replica k taking rows `k * B_local` onwards."""
  ctx = _multi_replica_context()
  if ctx is None:
    return full
  local = tf.shape(full)[0] // ctx.num_replicas_in_sync
  start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
  return full[start : start + local]


def gather_live(t, global_batch_size):
  """All replicas' `t` float32 `[B_local, D]` as `[global_batch_size, D]`, in replica order;
  only this replica's slice is differentiable (the others are constants).

  Gathered with one SUM all-reduce of zero-padded slices (float32 only).
  """
  ctx = _multi_replica_context()
  if ctx is None:
    return t
  n = tf.shape(t)[0]
  start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * n
  after = global_batch_size - start - n
  padded = tf.pad(tf.stop_gradient(t), [[start, after], [0, 0]])
  gathered = ctx.all_reduce(tf.distribute.ReduceOp.SUM, padded)
  return tf.concat([gathered[:start], t, gathered[start + n :]], axis=0)


def batch_axis_for_multi_worker(logs):
  """`logs` ({name: scalar}) with a batch axis `[1]` under a multi-worker
  `MultiWorkerMirroredStrategy`, unchanged otherwise: Keras 3.15.1's `fit` reduces
  `train_step`'s outputs with `reduce(MEAN, v, axis=0)` across workers, which fails on scalars
  (tensorflow/tensorflow#72388)."""
  strategy = tf.distribute.get_strategy()
  if (
    isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    and strategy.extended._in_multi_worker_mode()  # pylint: disable=protected-access
  ):
    return {k: tf.reshape(v, [1]) for k, v in logs.items()}
  return logs
