"""The reproduction scripts end to end on a tiny budget (real data): table, JSON, reuse."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout=600, env=None):
  proc = subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_reproduce_2d_writes_the_table_over_seeds_and_reuses_finished_runs(tmp_path):
  out = tmp_path / "c1.md"
  args = ["tools/reproduce_2d.py", "--table=c1c3", "--settings=C1", "--methods=as_introvae",
          "--seeds=0,1", "--train_steps=4", "--eval_draws=1", f"--workroot={tmp_path}",
          f"--out={out}"]
  stdout = _run(args)
  table = out.read_text()
  assert "Budget: 4 training steps per run (reference: 30000), seeds 0,1" in table
  row = [line for line in table.splitlines() if line.startswith("| C1 | as_introvae |")]
  assert len(row) == 1 and "+-" in row[0] and "KL 3.4" in row[0]  # the paper's number
  saved = json.loads((tmp_path / "c1.md.json").read_text())
  kls = [r["kl"] for r in saved["results"]["C1/as_introvae"]]
  per_run = [json.loads((tmp_path / "c1c3" / "C1_as_introvae" / f"seed{s}" / "eval" /
                         "metrics.json").read_text())["metrics"]["kl"] for s in (0, 1)]
  assert kls == per_run
  assert stdout.count("C1 as_introvae seed") == 2
  # a second invocation reuses both trained and evaluated runs: same numbers
  _run(args)
  assert json.loads((tmp_path / "c1.md.json").read_text()) == saved


def test_reproduce_2d_names_an_unknown_setting(tmp_path):
  proc = subprocess.run([sys.executable, "tools/reproduce_2d.py", "--settings=C9",
                         f"--workroot={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode != 0 and "--settings" in proc.stderr


def test_reproduce_images_compares_both_methods_at_the_same_budget(tmp_path):
  # A one-step feature net in a private cache: the test must not train (or read) the real one.
  from as_introvae_tf import feature_nets  # pylint: disable=import-outside-toplevel
  cache = tmp_path / "cache"
  feature_nets.train_feature_net("fashion_mnist", str(cache / "feature_nets" /
                                                      "fashion_mnist.keras"),
                                 max_steps=1, batch_size=32)
  env = dict(os.environ, **{feature_nets.CACHE_DIR_ENV: str(cache)})
  out = tmp_path / "images.md"
  _run(["tools/reproduce_images.py", "--datasets=fashion_mnist", "--train_steps=2",
        "--num_samples=64", "--batch_size=16", f"--workroot={tmp_path}", f"--out={out}"],
       env=env)
  table = out.read_text()
  assert "Budget: 2 training steps per run" in table and "filters 16,32" in table
  for method in ("soft_introvae", "as_introvae"):
    row = [line for line in table.splitlines()
           if line.startswith(f"| fashion_mnist | {method} |")]
    assert len(row) == 1
    config = json.loads((tmp_path / f"fashion_mnist_{method}" / "seed0" / "config.json")
                        .read_text())
    assert (config["train_steps"], config["batch_size"], config["filters"]) == (2, 16, [16, 32])
    metrics = json.loads((tmp_path / f"fashion_mnist_{method}" / "seed0" / "eval" /
                          "metrics.json").read_text())["metrics"]
    assert f"{metrics['psnr']:.3f}" in row[0] and "fid_fmnist_cnn" in table
