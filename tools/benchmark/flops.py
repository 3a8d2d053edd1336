"""FLOP counting of a traced step (TensorFlow's registered statistics of the ops that run) and
the profiler's self time per op type."""

import json
import os
import time


def _live_ops(graph):
  """Ops that run: ancestors of the outputs, control outputs and stateful ops."""
  roots = [t.op for t in graph.outputs] + list(getattr(graph, "control_outputs", []))
  roots += [op for op in graph.get_operations() if op._is_stateful]  # pylint: disable=protected-access
  seen, stack = set(), list(roots)
  while stack:
    op = stack.pop()
    if op.name in seen:
      continue
    seen.add(op.name)
    stack.extend(t.op for t in op.inputs)
    stack.extend(op.control_inputs)
  return [op for op in graph.get_operations() if op.name in seen]


def graph_flops(graph):
  """{"matmul_conv": FLOPs of MatMul/Conv ops that run, "total": all registered FLOPs,
  "ops": op count of the graph, "live_ops": ops that run}."""
  from tensorflow.python.framework import ops as tf_ops  # pylint: disable=import-outside-toplevel

  live = _live_ops(graph)
  total = heavy = 0
  for op in live:
    try:
      value = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value
    except (ValueError, KeyError, TypeError):
      value = None  # no registered statistics or an unknown shape
    if value:
      total += int(value)
      if "MatMul" in op.type or op.type.startswith("Conv"):
        heavy += int(value)
  return {
    "matmul_conv": heavy,
    "total": total,
    "ops": len(graph.get_operations()),
    "live_ops": len(live),
  }


def step_flops(tf, model, batch_shape):
  concrete = tf.function(model.train_step).get_concrete_function(
    tf.TensorSpec(batch_shape, tf.float32)
  )
  return graph_flops(concrete.graph)


def profile_op_types(tf, run_steps, steps, logdir):
  """Runs `run_steps()` under the TF profiler; self time per op type (ms per step)."""
  import glob  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  from tensorflow.python.profiler.internal import _pywrap_profiler_plugin  # pylint: disable=import-outside-toplevel

  shutil.rmtree(logdir, ignore_errors=True)
  tf.profiler.experimental.start(logdir)
  start = time.perf_counter()
  run_steps()
  wall = time.perf_counter() - start
  tf.profiler.experimental.stop()
  paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
  raw, ok = _pywrap_profiler_plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
  if not ok:
    return {"error": raw.decode(errors="replace")[:300]}
  table = json.loads(raw)[0]
  cols = [c["id"] for c in table["cols"]]
  by_type = {}
  for row in table["rows"]:
    r = dict(zip(cols, (c.get("v") for c in row["c"])))
    if r["type"] != "IDLE":
      by_type[r["type"]] = by_type.get(r["type"], 0.0) + r["total_self_time"]  # microseconds
  busy = sum(by_type.values())
  top = sorted(by_type.items(), key=lambda kv: -kv[1])
  matmul = sum(v for k, v in by_type.items() if "MatMul" in k or k.startswith("Conv"))
  return {
    "profiled_wall_ms_per_step": 1e3 * wall / steps,
    "busy_ms_per_step": busy / 1e3 / steps,
    "matmul_share_of_busy": matmul / busy if busy else None,
    "top_op_types_ms_per_step": [(k, round(v / 1e3 / steps, 3)) for k, v in top[:10]],
  }
