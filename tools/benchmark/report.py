"""The report: the machine, the matmul bound, the comparison and thread tables
(`report_compare`), the per-method table, precision/XLA against float32, replicas, variants
and profiles, as Markdown."""

from .report_compare import bound_of
from .report_compare import compare_markdown
from .report_compare import describe_cpu
from .report_compare import fmt
from .report_compare import threads_markdown
from .settings import MATMUL_N
from .settings import WORKLOADS
from .settings import thread_key


def _threads(row):
  job = row["job"]
  if not job.get("inter") and not job.get("intra"):
    return f"TF default ({row.get('inter_op_threads', 0)}x{row.get('intra_op_threads', 0)})"
  return f"{job.get('inter') or 'def'}x{job.get('intra') or 'def'}"


def markdown(results):
  matmul = results["matmul"]
  lines = [describe_cpu(results["machine"]), ""]
  lines.append(
    "Matmul throughput (float32 %dx%d, GFLOP/s, best of 20 calls; bound = the faster "
    "of 1 matmul and 2 independent matmuls):" % (MATMUL_N, MATMUL_N)
  )
  lines.append("")
  lines.append("| threads (inter x intra) | 1 matmul | 2 independent | bound used |")
  lines.append("|---|---:|---:|---:|")
  for key, m in matmul.items():
    if "error" in m:
      lines.append(f"| {key} | error: {m['error'][:80]} | | |")
      continue
    lines.append(
      f"| {key} | {m['one_matmul_gflops']:.1f} | {m['two_matmuls_gflops']:.1f} | "
      f"{m['gflops']:.1f} |"
    )
  lines.append("")
  compare = compare_markdown(results)
  if compare:
    lines += compare + [""]
  lines += threads_markdown(results)
  if not results["rows"]:
    return "\n".join(lines).rstrip()
  if compare or results.get("threads"):
    lines += ["", "Per method, through model.fit (each row a fresh process):", ""]
  lines.append(
    "| method | workload | batch | threads | steps/s (min-max) | examples/s | "
    "ms/step | CPU ms/step | GFLOP/step | % of bound (bound steps/s) | "
    "input ex/s (x training) | peak RSS MiB | load | other cores |"
  )
  lines.append("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  for row in results["rows"]:
    job = row["job"]
    name = job.get("label") or job.get("method", "")
    workload = WORKLOADS[job.get("workload", "2d")]
    if "error" in row:
      lines.append(
        f"| {name} | {workload['label']} | {workload['batch_size']} | | error: "
        f"{row['error'][-200:]!r} | | | | | | | | | |"
      )
      continue
    bound, frac = bound_of(row, matmul.get(thread_key(job)))
    pipe = row.get("pipeline_examples_per_s")
    ratio = pipe / row["examples_per_s"] if pipe else None
    flops = (row.get("flops") or {}).get("matmul_conv")
    lines.append(
      f"| {name} | {workload['label']} | {workload['batch_size']} | {_threads(row)} | "
      f"{row['steps_per_s']:.2f} ({row['steps_per_s_min']:.2f}-{row['steps_per_s_max']:.2f})"
      f" | {row['examples_per_s']:.0f} | {row['step_ms']:.1f} | "
      f"{row['cpu_ms_per_step']:.0f} | {fmt(flops and flops / 1e9, '.2f')} | "
      f"{fmt(frac and 100 * frac, '.0f')}% ({fmt(bound, '.1f')}) | "
      f"{fmt(pipe, '.0f')} ({fmt(ratio, '.0f')}x) | {row['peak_rss_mib']:.0f} | "
      f"{row['load_1min_before']:.2f} | {fmt(row.get('other_cores'), '.2f')} |"
    )
  lines += _relative_table(results["rows"])
  if results.get("replicas"):
    lines.append("")
    lines.append(
      "MirroredStrategy over N LOGICAL CPU devices, 2-D S-IntroVAE, global batch 512 "
      "(all replicas share the same 2 cores: strategy overhead, not speed-up):"
    )
    lines.append("")
    lines.append(
      "| replicas | steps/s (min-max) | examples/s | CPU ms/step | vs 1 replica | "
      "peak RSS MiB | load | other cores |"
    )
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = next(
      (
        r["steps_per_s"]
        for r in results["replicas"]
        if r["job"].get("replicas") == 1 and "steps_per_s" in r
      ),
      None,
    )
    for row in results["replicas"]:
      if "error" in row:
        lines.append(f"| {row['job']['replicas']} | error: {row['error'][-200:]!r} | | | | | | |")
        continue
      rel = row["steps_per_s"] / base if base else None
      lines.append(
        f"| {row['job']['replicas']} | {row['steps_per_s']:.2f} "
        f"({row['steps_per_s_min']:.2f}-{row['steps_per_s_max']:.2f}) | "
        f"{row['examples_per_s']:.0f} | {row['cpu_ms_per_step']:.0f} | "
        f"{fmt(rel, '.2f')}x | "
        f"{row['peak_rss_mib']:.0f} | {row['load_1min_before']:.2f} | "
        f"{fmt(row.get('other_cores'), '.2f')} |"
      )
  if results.get("variants"):
    lines.append("")
    lines.append(
      "Ablations of the project's 2-D S-IntroVAE step (same process setup, parts "
      "patched out in the subprocess):"
    )
    lines.append("")
    lines.append(
      "| variant | steps/s (min-max) | ms/step | CPU ms/step | graph ops (run) | "
      "load | other cores |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for row in results["variants"]:
      if "error" in row:
        lines.append(f"| {row['job'].get('label')} | error: {row['error'][-200:]!r} | | | | | |")
        continue
      ops = row.get("flops") or {}
      lines.append(
        f"| {row['job'].get('label')} | {row['steps_per_s']:.2f} "
        f"({row['steps_per_s_min']:.2f}-{row['steps_per_s_max']:.2f}) | "
        f"{row['step_ms']:.1f} | {row['cpu_ms_per_step']:.0f} | "
        f"{ops.get('ops', '-')} ({ops.get('live_ops', '-')})"
        f" | {row['load_1min_before']:.2f} | {fmt(row.get('other_cores'), '.2f')} |"
      )
  if results.get("traces"):
    lines.append("")
    lines.append("Profiled steps (tf.profiler, framework_op_stats; profiling slows small ops):")
    lines.append("")
    lines.append(
      "| step | wall ms/step (profiled) | busy ms/step (both threads) | MatMul share "
      "| top op types (self ms/step) |"
    )
    lines.append("|---|---:|---:|---:|---|")
    for label, tr in results["traces"].items():
      if not tr or "error" in tr:
        lines.append(f"| {label} | error | | | |")
        continue
      top = ", ".join(f"{k} {v:.2f}" for k, v in tr["top_op_types_ms_per_step"][:6])
      lines.append(
        f"| {label} | {tr['profiled_wall_ms_per_step']:.1f} | "
        f"{tr['busy_ms_per_step']:.1f} | "
        f"{100 * tr['matmul_share_of_busy']:.0f}% | {top} |"
      )
  return "\n".join(lines)


def _relative_table(rows):
  """Markdown lines: each precision/XLA row against the float32, no-XLA row of the same method,
  workload and round (taken minutes apart at most, under about the same outside load)."""
  timed = [r for r in rows if "round" in r["job"] and "steps_per_s" in r]
  if not timed:
    return []
  base = {
    (r["job"]["method"], r["job"]["workload"], r["job"]["round"]): r
    for r in timed
    if r["job"].get("mixed_precision") == "none" and not r["job"].get("jit")
  }
  lines = [
    "",
    "Precision and XLA against float32 without XLA, same method, workload and round "
    "(steps/s ratio > 1: faster; CPU ms/step ratio < 1: less CPU):",
    "",
    "| method | workload | precision | XLA | round | steps/s | CPU ms/step | "
    "vs float32: steps/s | vs float32: CPU ms | other cores |",
    "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
  ]
  for r in timed:
    job = r["job"]
    b = base.get((job["method"], job["workload"], job["round"]))
    speed = r["steps_per_s"] / b["steps_per_s"] if b else None
    cpu = r["cpu_ms_per_step"] / b["cpu_ms_per_step"] if b else None
    lines.append(
      f"| {job['method']} | {WORKLOADS[job['workload']]['label']} | "
      f"{job['mixed_precision']} | {'yes' if job.get('jit') else 'no'} | "
      f"{job['round']} | {r['steps_per_s']:.2f} | {r['cpu_ms_per_step']:.0f} | "
      f"{fmt(speed, '.2f')}x | {fmt(cpu, '.2f')}x | "
      f"{fmt(r.get('other_cores'), '.2f')} |"
    )
  return lines
