"""The report's tables of the interleaved comparison and of the thread settings, and the
helpers every table uses."""

from .settings import AS_OVER_S
from .settings import COMPARE_RATIOS
from .settings import STEP_NAMES
from .settings import THREAD_STEPS
from .settings import WORKLOADS
from .settings import thread_key


def describe_cpu(machine):
  """One line: the CPU model, its logical CPUs and which vector extensions it has."""
  ext = machine.get("extensions") or {}
  listed = ", ".join(f"{name} {'yes' if has else 'no'}" for name, has in ext.items())
  return (
    f"CPU: {machine['processor']}, {machine['cpu_count']} logical CPUs; "
    f"{listed or 'vector extensions unknown (no CPU flags)'}"
  )


def paired_ratios(times_a, times_b):
  """Round-by-round ratios `times_b[r] / times_a[r]` of two interleaved steps' window times
  (each pair of windows taken seconds apart): (median, min, max), or None if empty."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  ratios = [b / a for a, b in zip(times_a, times_b) if a > 0]
  if not ratios:
    return None
  return float(np.median(ratios)), float(min(ratios)), float(max(ratios))


def compare_markdown(results):
  """Markdown lines of the interleaved comparison: every step's speed and bound, then the
  round-by-round ratios (project / plain; AS / S)."""
  rows = [r for r in results.get("compare", [])]
  if not rows:
    return []
  matmul = results.get("matmul", {})
  lines = [
    "Interleaved comparison (one process per workload; every round runs one window of "
    "each step in turn, A B A B ...; medians of the timed windows):",
    "",
    "| workload | step | batch | threads | steps/s (min-max) | ms/step | CPU ms/step | "
    "GFLOP/step | % of bound (bound steps/s) | other cores |",
    "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
  ]
  by_workload = {}
  for row in rows:
    job = row["job"]
    label = WORKLOADS[job["workload"]]["label"] + (" (tiny)" if job.get("tiny") else "")
    if "error" in row:
      lines.append(f"| {label} | error: {row['error'][-200:]!r} | | | | | | | | |")
      continue
    by_workload[job["workload"]] = row["steps"]
    for name, step in row["steps"].items():
      bound, frac = bound_of(step, matmul.get(thread_key(job)))
      flops = (step.get("flops") or {}).get("matmul_conv")
      lines.append(
        f"| {label} | {STEP_NAMES.get(name, name)} | {step['batch_size']} | "
        f"{thread_key(job)} | {step['steps_per_s']:.2f} ({step['steps_per_s_min']:.2f}-"
        f"{step['steps_per_s_max']:.2f}) | {step['step_ms']:.1f} | "
        f"{step['cpu_ms_per_step']:.0f} | {fmt(flops and flops / 1e9, '.2f')} | "
        f"{fmt(frac and 100 * frac, '.0f')}% ({fmt(bound, '.1f')}) | "
        f"{fmt(row.get('other_cores'), '.2f')} |"
      )
  lines += [
    "",
    "Ratios, round by round (median, min-max over the timed rounds):",
    "",
    "| ratio | median (min-max) | target |",
    "|---|---:|---|",
  ]
  for workload, a, b, what, target in COMPARE_RATIOS + AS_OVER_S:
    steps = by_workload.get(workload)
    if not steps or a not in steps or b not in steps:
      continue
    if (workload, a, b, what, target) in AS_OVER_S:  # time of a over time of b
      r = paired_ratios(steps[b]["window_times_s"], steps[a]["window_times_s"])
    else:  # speed of a over speed of b = time of b over time of a
      r = paired_ratios(steps[a]["window_times_s"], steps[b]["window_times_s"])
    if r:
      lines.append(f"| {what} | {r[0]:.2f}x ({r[1]:.2f}-{r[2]:.2f}) | {target or '-'} |")
  return lines


def threads_markdown(results):
  """Markdown lines of the thread comparison: per setting and round the 2-D S-IntroVAE steps,
  and each one's speed against the first setting's in the same round."""
  rows = [r for r in results.get("threads", [])]
  if not rows:
    return []
  matmul = results.get("matmul", {})
  base_key = thread_key(rows[0]["job"])
  base = {}
  for row in rows:
    if "error" not in row and thread_key(row["job"]) == base_key:
      base[row["job"]["round"]] = row["steps"]
  lines = [
    "",
    f"Thread settings (inter x intra; 0 = TF default), interleaved: each round runs "
    f"every setting once in a fresh process; speed against {base_key} in the same "
    "round (> 1: faster):",
    "",
    "| threads | round | project S-IntroVAE steps/s | plain S-IntroVAE steps/s | "
    f"project vs {base_key} | plain vs {base_key} | matmul GFLOP/s | other cores |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  summary = {}
  for row in rows:
    job = row["job"]
    key = thread_key(job)
    if "error" in row:
      lines.append(f"| {key} | {job['round']} | error: {row['error'][-200:]!r} | | | | | |")
      continue
    cells = []
    for label in THREAD_STEPS:
      ref = base.get(job["round"], {}).get(label)
      ratio = row["steps"][label]["steps_per_s"] / ref["steps_per_s"] if ref else None
      cells.append(ratio)
      if ratio is not None:
        summary.setdefault((key, label), []).append(ratio)
    gflops = (matmul.get(key) or {}).get("gflops")
    lines.append(
      f"| {key} | {job['round']} | "
      f"{row['steps'][THREAD_STEPS[0]]['steps_per_s']:.2f} | "
      f"{row['steps'][THREAD_STEPS[1]]['steps_per_s']:.2f} | "
      f"{fmt(cells[0], '.2f')}x | {fmt(cells[1], '.2f')}x | "
      f"{fmt(gflops, '.1f')} | {fmt(row.get('other_cores'), '.2f')} |"
    )
  keys = list(dict.fromkeys(k for k, _ in summary))
  if keys:
    lines += [
      "",
      f"Per setting, over the rounds (min-max of the same-round ratios to {base_key}):",
      "",
      "| threads | project | plain |",
      "|---|---:|---:|",
    ]
    for key in keys:
      cells = []
      for label in THREAD_STEPS:
        values = summary.get((key, label))
        cells.append(f"{min(values):.2f}-{max(values):.2f}x" if values else "-")
      lines.append(f"| {key} | {cells[0]} | {cells[1]} |")
  return lines


def fmt(value, spec, missing="-"):
  """`format(value, spec)`, or `missing` for None."""
  return missing if value is None else format(value, spec)


def bound_of(row, matmul):
  """(bound steps/s, measured / bound) of a timed row against the matmul throughput of its
  thread setting, or (None, None) without FLOPs, throughput or speed."""
  flops = (row.get("flops") or {}).get("matmul_conv")
  gflops = (matmul or {}).get("gflops")
  if not flops or not gflops or "steps_per_s" not in row:
    return None, None
  bound = gflops * 1e9 / flops
  return bound, row["steps_per_s"] / bound
