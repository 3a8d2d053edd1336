"""tools/test_cpu.py: the per-file sums of the suite's per-test CPU log (tests/conftest.py)."""

import os
import subprocess
import sys

import pytest

from tools import test_cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _summary(folder, capsys):
  """`python tools/test_cpu.py FOLDER` in this process: (exit code, stdout, stderr)."""
  capsys.readouterr()
  code = test_cpu.main(["tools/test_cpu.py", str(folder)])
  out, err = capsys.readouterr()
  return code, out, err


def test_sums_per_file_over_workers_and_ranks_the_tests(tmp_path):
  """The command line itself (the other tests call its `main`)."""
  (tmp_path / "cpu_1.tsv").write_text("tests/a.py::t1\t3.00\t1.00\ntests/b.py::t2\t0.50\t0.00\n")
  (tmp_path / "cpu_2.tsv").write_text("tests/a.py::t3\t2.00\t0.00\n")
  proc = subprocess.run(
    [sys.executable, "tools/test_cpu.py", str(tmp_path)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("3 tests, 6 CPU s (1 s in subprocesses)")
  assert "| tests/a.py | 6.0 | 92% |" in proc.stdout and "| tests/b.py | 0.5 | 8% |" in proc.stdout
  ranked = [line for line in proc.stdout.splitlines() if line.startswith("| tests/a.py::")]
  assert ranked == ["| tests/a.py::t1 | 4.0 | 1.0 |", "| tests/a.py::t3 | 2.0 | 0.0 |"]


def _conftest():
  """The loaded tests/conftest.py (importing it again would set up the devices twice)."""
  path = os.path.join(ROOT, "tests", "conftest.py")
  return next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == path)


def test_the_conftest_hook_logs_the_cpu_of_a_test_and_its_subprocesses(
  tmp_path, monkeypatch, request, capsys
):
  folder = tmp_path / "cpu"
  hook = _conftest().pytest_runtest_protocol
  monkeypatch.delenv("TEST_CPU_LOG", raising=False)
  off = hook(request.node, None)
  next(off)
  with pytest.raises(StopIteration):
    next(off)
  assert not folder.exists()  # off unless asked for
  monkeypatch.setenv("TEST_CPU_LOG", str(folder))
  on = hook(request.node, None)
  next(on)
  subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
  with pytest.raises(StopIteration):
    next(on)
  (log,) = folder.iterdir()
  nodeid, own, children = log.read_text().splitlines()[0].split("\t")
  assert nodeid == request.node.nodeid and float(own) >= 0 and float(children) > 0.05
  code, out, _ = _summary(folder, capsys)
  assert code == 0 and out.startswith("1 test, ")


def test_names_an_empty_or_missing_folder(tmp_path, capsys):
  assert _summary(tmp_path / "none", capsys)[0] == 2
  code, _, err = _summary(tmp_path, capsys)
  assert code == 1 and "no cpu_*.tsv" in err
