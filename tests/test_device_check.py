"""The one-shot GPU check runs its whole path on the CPU (`--cpu_dry_run`)."""

import json
import os
import subprocess

import pytest

from tools import device_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.large  # 60 CPU s, 5% of the suite: run it before a device session (docs/gpu-check.md)
def test_device_check_dry_run_times_every_row_and_writes_json_and_table(tmp_path):
  proc = subprocess.run(
    ["bash", "tools/device_check.sh", "--cpu_dry_run", "--out", str(tmp_path)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  report = json.loads((tmp_path / "device_check.json").read_text())
  rows = report["rows"]
  labels = {
    (r["job"]["kind"], r["job"]["mixed_precision"], r["job"]["jit"], r["job"]["replicas"])
    for r in rows
  }
  assert {
    ("image", "none", False, 1),
    ("image", "mixed_float16", False, 1),
    ("image", "mixed_bfloat16", False, 1),
    ("image", "none", True, 1),
    ("image", "none", False, 2),
    ("2d", "none", False, 1),
  } <= labels
  for row in rows:
    assert row["result"]["steps_per_s"] > 0, row
  table = (tmp_path / "device_check.md").read_text()
  assert "CPU dry run" in table and "| cifar10 vae, mixed_bfloat16 |" in table
  assert "| cifar10 as_introvae, float32 |" in table
  assert "passed" in (tmp_path / "tests.log").read_text()


def test_device_check_names_an_unknown_argument():
  proc = subprocess.run(
    ["bash", "tools/device_check.sh", "--gpu=7"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert proc.returncode == 2 and "--gpu=7" in proc.stderr


def test_the_real_run_times_as_introvae_in_every_image_row_and_the_dry_run_in_one():
  """The dry run trades AS-IntroVAE for the plain VAE in its image rows but float32; the GPU
  run never does. (That `plan` imports no TensorFlow: tests/test_reproduce.py,
  test_tools_import_without_flags_or_tensorflow.)"""
  real, dry = (
    [
      [j["method"], j["mixed_precision"], j["jit"], j["replicas"]]
      for j in device_check.plan(*a)
      if j["kind"] == "image"
    ]
    for a in ((False, 2), (True, 0))
  )
  assert len(real) == 10 and {r[0] for r in real} == {"as_introvae"}  # 2 networks x 5 rows
  assert [r for r in dry if r[0] == "as_introvae"] == [["as_introvae", "none", False, 1]]
  assert len(dry) == 5
