"""Sums the per-test CPU seconds that `TEST_CPU_LOG=FOLDER bash tools/test.sh` wrote.

  TEST_CPU_LOG=/tmp/cpu bash tools/test.sh    # a new or empty folder: the logs are appended to
  python tools/test_cpu.py /tmp/cpu            # per file, then the 25 costliest tests

CPU seconds (user + system, the test's process plus the subprocesses it waited for) add up
to what the 2 cores must do whatever the worker count; the suite's wall time on 2 cores is
about their sum / 2 plus each worker's start (tests/conftest.py).
"""

import collections
import glob
import os
import sys


def read(folder):
  """[(cpu_s, own_s, children_s, nodeid)] from FOLDER/cpu_*.tsv."""
  rows = []
  for path in glob.glob(os.path.join(folder, "cpu_*.tsv")):
    with open(path) as f:
      for line in f:
        nodeid, own, children = line.rstrip("\n").split("\t")
        rows.append((float(own) + float(children), float(own), float(children), nodeid))
  return rows


def main(argv):
  if len(argv) != 2 or not os.path.isdir(argv[1]):
    print(f"usage: {argv[0]} FOLDER  (the folder given as TEST_CPU_LOG)", file=sys.stderr)
    return 2
  rows = read(argv[1])
  if not rows:
    print(f"error: no cpu_*.tsv in {argv[1]}", file=sys.stderr)
    return 1
  total = sum(r[0] for r in rows)
  children = sum(r[2] for r in rows)
  noun = "test" if len(rows) == 1 else "tests"
  print(f"{len(rows)} {noun}, {total:.0f} CPU s ({children:.0f} s in subprocesses)\n")
  per_file = collections.Counter()
  for cpu, _, _, nodeid in rows:
    per_file[nodeid.split("::")[0]] += cpu
  print("| file | CPU s | share |\n|---|---:|---:|")
  for name, cpu in per_file.most_common():
    print(f"| {name} | {cpu:.1f} | {100 * cpu / total:.0f}% |")
  print("\n| test | CPU s | of it in subprocesses |\n|---|---:|---:|")
  for cpu, _, sub, nodeid in sorted(rows, reverse=True)[:25]:
    print(f"| {nodeid} | {cpu:.1f} | {sub:.1f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
