"""The machine a number was measured on, named one way by every tool.

`benchmark`, `reproduce_2d.py` (each result file's "cpu") and `device_check.py` write the CPU
beside their numbers, because a time or a thread setting measured on one CPU does not hold on
another (docs/benchmark.md). The CPU's model and flags come from py-cpuinfo (`cpuinfo.get_cpu_info()`:
/proc/cpuinfo on Linux, CPUID elsewhere); without py-cpuinfo (a bare GPU image running
`device_check.sh`) the model is `platform.processor()` and the extensions are unknown.

  from tools import machine      # from the repository root (the tools put it on sys.path)
  machine.describe_cpu()         # "AMD EPYC (AVX2, FMA, AVX-512, AVX512-BF16; 2 logical CPUs)"
"""

from __future__ import annotations

import functools
import os
import platform

CPU_EXTENSIONS = (
  ("AVX2", ("avx2",)),
  ("FMA", ("fma",)),
  ("AVX-512", ("avx512f",)),
  ("AVX512-BF16", ("avx512_bf16", "avx512bf16")),
  ("AVX512-FP16", ("avx512_fp16", "avx512fp16")),
  ("AMX", ("amx_tile", "amx_bf16", "amx_int8")),
)
"""The vector extensions that decide which TensorFlow (oneDNN) CPU kernels run: (name, the CPU
flags that mean it)."""


@functools.lru_cache(maxsize=1)
def _cpu_info():
  try:
    import cpuinfo  # pylint: disable=import-outside-toplevel  (about 1 s: only when asked)

    return cpuinfo.get_cpu_info()
  except Exception:  # noqa: BLE001  (not installed, e.g. on a GPU image; or an unknown platform)
    return {}


def cpu_model():
  """The CPU's model name (e.g. "AMD EPYC"), or "unknown"."""
  return _cpu_info().get("brand_raw") or platform.processor() or "unknown"


def cpu_extensions(flags=None):
  """{name: True/False} for each of `CPU_EXTENSIONS`, from the CPU's flags (or from `flags`, an
  iterable of flag names such as those of /proc/cpuinfo); {} where no flags are known."""
  flags = set(_cpu_info().get("flags", ()) if flags is None else flags)
  if not flags:
    return {}
  return {name: any(f in flags for f in needed) for name, needed in CPU_EXTENSIONS}


def describe_cpu(model=None, extensions=None, cpu_count=None):
  """One line naming the CPU: "MODEL (EXT, EXT, ...; N logical CPUs)", listing the extensions
  it has ("no AVX2" when it has none of them); the arguments default to this machine's."""
  model = cpu_model() if model is None else model
  extensions = cpu_extensions() if extensions is None else extensions
  cpu_count = os.cpu_count() if cpu_count is None else cpu_count
  has = [name for name, present in extensions.items() if present]
  listed = ", ".join(has) if has else ("no AVX2" if extensions else "extensions unknown")
  return f"{model} ({listed}; {cpu_count} logical CPUs)"


def git_commit(root):
  """The commit checked out at `root`, "+dirty" when its package, configs or tools have
  uncommitted changes; "unknown" without git."""
  import subprocess  # pylint: disable=import-outside-toplevel

  try:
    commit = subprocess.run(
      ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
      [
        "git",
        "status",
        "--porcelain",
        "--untracked-files=no",
        "as_introvae_tf",
        "configs",
        "tools",
      ],
      cwd=root,
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"
  return commit + ("+dirty" if dirty else "")
