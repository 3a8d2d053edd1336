"""Latency and throughput of an exported generator on this machine's CPU.

  python tools/benchmark_serving.py --version_dir=exports/quick/1 \
      [--batch_sizes=1,64] [--iters=200] [--warmup=20] [--json_out=PATH]

Measures, per batch size:
  * `generate` of the SavedModel (`tf.saved_model.load(...).signatures["generate"]`, the
    function TF Serving runs, without the network/JSON overhead): seeds -> images;
  * `decode` of the SavedModel: z -> images (the same computation as the ONNX decoder);
  * the ONNX decoder `decoder.onnx` in onnxruntime (CPUExecutionProvider), with z computed
    beforehand from the same seeds (`export_lib.seeds_to_z_numpy`), so it excludes the RNG.
Each call is timed separately (after `--warmup` untimed calls); p50/p99 are per-call latencies
in milliseconds, throughput = samples per second over all timed calls. Prints a Markdown
table and writes the numbers (and the machine/thread settings) as JSON.
"""

import json
import os
import platform
import sys
import time

if __name__ == "__main__":  # `python tools/benchmark_serving.py`: the package on sys.path
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from tools import own_flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(flag_values=flags.FLAGS):
  """The command line's flags, defined in `flag_values` (only the command line calls this:
  importing the module defines nothing)."""
  d = dict(flag_values=flag_values)
  flags.DEFINE_string(
    "version_dir",
    None,
    "Exported version directory (BASE/MODEL_NAME/VERSION with saved_model.pb, decoder.onnx).",
    **d,
  )
  flags.DEFINE_list("batch_sizes", ["1", "64"], "Batch sizes.", **d)
  flags.DEFINE_integer("iters", 200, "Timed calls per (engine, batch size).", **d)
  flags.DEFINE_integer("warmup", 20, "Untimed calls first.", **d)
  flags.DEFINE_string(
    "json_out",
    None,
    "Where to write the JSON; default VERSION_DIR/../benchmark_serving.json (beside the versions).",
    **d,
  )
  own_flags.require_writable_output("json_out", flag_values)  # written after the timed calls


def time_calls(fn, iters, warmup):
  """Per-call wall times in seconds (numpy [iters]) of `fn()` after `warmup` calls."""
  for _ in range(warmup):
    fn()
  times = np.empty(iters)
  for i in range(iters):
    start = time.perf_counter()
    fn()
    times[i] = time.perf_counter() - start
  return times


def summarize(engine, batch, times):
  return {
    "engine": engine,
    "batch": batch,
    "iters": len(times),
    "p50_ms": float(np.percentile(times, 50) * 1e3),
    "p99_ms": float(np.percentile(times, 99) * 1e3),
    "mean_ms": float(times.mean() * 1e3),
    "samples_per_s": float(batch * len(times) / times.sum()),
  }


def markdown(rows):
  lines = ["| engine | batch | p50 ms | p99 ms | samples/s |", "|---|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(
      f"| {r['engine']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
      f"{r['samples_per_s']:.0f} |"
    )
  return "\n".join(lines)


def main(argv):
  del argv
  import onnxruntime as ort  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import export_lib  # pylint: disable=import-outside-toplevel

  version_dir = FLAGS.version_dir
  if not version_dir or not os.path.exists(os.path.join(version_dir, "saved_model.pb")):
    print(f"error: --version_dir={version_dir} holds no saved_model.pb", file=sys.stderr)
    return 1
  with open(os.path.join(version_dir, export_lib.MODEL_CARD_FILE)) as f:
    card = json.load(f)
  z_dim = card["z_dim"]
  loaded = tf.saved_model.load(version_dir)
  generate, decode = loaded.signatures["generate"], loaded.signatures["decode"]
  onnx_path = os.path.join(version_dir, export_lib.ONNX_DECODER_FILE)
  session = None
  if os.path.exists(onnx_path):
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])

  rows = []
  for batch in [int(b) for b in FLAGS.batch_sizes]:
    seeds_np = np.arange(batch, dtype=np.int64)
    seeds = tf.constant(seeds_np)
    z_np = export_lib.seeds_to_z_numpy(seeds_np, z_dim)
    z = tf.constant(z_np)
    rows.append(
      summarize(
        "SavedModel generate (seeds -> images)",
        batch,
        time_calls(lambda: generate(seeds=seeds)["images"].numpy(), FLAGS.iters, FLAGS.warmup),
      )
    )
    rows.append(
      summarize(
        "SavedModel decode (z -> images)",
        batch,
        time_calls(lambda: decode(z=z)["images"].numpy(), FLAGS.iters, FLAGS.warmup),
      )
    )
    if session is not None:
      rows.append(
        summarize(
          "ONNX decoder, onnxruntime (z -> images)",
          batch,
          time_calls(lambda: session.run(["images"], {"z": z_np}), FLAGS.iters, FLAGS.warmup),
        )
      )

  info = {
    "version_dir": os.path.abspath(version_dir),
    "model": {
      k: card[k]
      for k in ("method", "dataset", "example_shape", "z_dim", "training_step", "weights")
    },
    "filters": card["hyperparameters"].get("filters"),
    "machine": {
      "platform": platform.platform(),
      "processor": platform.processor(),
      "cpu_count": os.cpu_count(),
      "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
      "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    },
    "versions": {"tensorflow": tf.__version__, "onnxruntime": ort.__version__},
    "iters": FLAGS.iters,
    "warmup": FLAGS.warmup,
    "results": rows,
  }
  json_out = FLAGS.json_out or os.path.join(
    os.path.dirname(os.path.abspath(version_dir)), "benchmark_serving.json"
  )
  with open(json_out, "w") as f:
    json.dump(info, f, indent=2)
  print(
    f"Model: {card['method']} {card['dataset']} {card['example_shape']} z_dim={z_dim} "
    f"filters={info['filters']}; {os.cpu_count()} CPUs; TF {tf.__version__}, onnxruntime "
    f"{ort.__version__}; {FLAGS.iters} timed calls after {FLAGS.warmup} warm-up\n"
  )
  print(markdown(rows))
  print(f"\nJSON: {json_out}")
  return 0


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
