"""The reproduction scripts end to end on a tiny budget (real data): table, JSON, reuse."""

import json
import os
import subprocess
import sys

import numpy as np

from as_introvae_tf import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout=600, env=None):
  proc = subprocess.run(
    [sys.executable] + args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def _refused(args, timeout=300):
  """The stderr of `python ARGS`, which must fail."""
  proc = subprocess.run(
    [sys.executable] + args, cwd=ROOT, capture_output=True, text=True, timeout=timeout
  )
  assert proc.returncode != 0, proc.stdout[-2000:]
  return proc.stderr


def test_reproduce_2d_writes_the_table_over_seeds_and_reuses_finished_runs(tmp_path):
  out = tmp_path / "c1.md"
  args = [
    "tools/reproduce_2d.py",
    "--table=c1c3",
    "--settings=C1",
    "--methods=as_introvae",
    "--seeds=0,1",
    "--train_steps=4",
    "--eval_draws=1",
    "--grid_points=32",  # the gnELBO grid: 1 M points per run at the reference's 1024
    f"--workroot={tmp_path}",
    f"--out={out}",
    f"--results_dir={tmp_path / 'results'}",
  ]
  stdout = _run(args)
  table = out.read_text()
  assert "Budget: 4 training steps per run (reference: 30000), seeds 0,1" in table
  assert "on a 32x32 grid (reference 1024x1024: not comparable)" in table
  row = [line for line in table.splitlines() if line.startswith("| C1 | as_introvae |")]
  assert len(row) == 1 and "+-" in row[0] and "KL 3.4" in row[0]  # the paper's number
  saved = json.loads((tmp_path / "c1.md.json").read_text())
  kls = [r["kl"] for r in saved["results"]["C1/as_introvae"]]
  per_run = [
    json.loads(
      (tmp_path / "c1c3" / "C1_as_introvae" / f"4_seed{s}" / "eval" / "metrics.json").read_text()
    )["metrics"]["kl"]
    for s in (0, 1)
  ]
  assert kls == per_run
  assert stdout.count("C1 as_introvae seed") == 2
  # one result file per run, with what a reader needs to trust and redo it
  result = json.loads((tmp_path / "results" / "c1c3" / "C1_as_introvae_4_seed1.json").read_text())
  assert result["metrics"]["kl"] == kls[1] and result["seed"] == 1
  assert result["grid_points"] == 32
  assert result["train_steps"] == 4 and result["flagfile"] == "configs/8gaussians_as_introvae.flags"
  assert result["flags_changed"]["beta_rec"] == 0.1 and result["flags_changed"]["seed"] == 1
  assert result["flags_changed"]["num_vae"] == 0  # the warm-up scaled to the budget
  assert len(result["commit"]) >= 40 and result["cpu"] and result["train_wall_s"] > 0
  # a second invocation trains nothing: the table comes from the result files alone
  (tmp_path / "c1c3").rename(tmp_path / "moved")
  stdout = _run(args)
  assert json.loads((tmp_path / "c1.md.json").read_text()) == saved
  assert not (tmp_path / "c1c3").exists()
  # a result evaluated on another gnELBO grid is not reused; a file without the field counts
  # as the reference grid (the files written before --grid_points)
  reference_grid = [a for a in args if a != "--grid_points=32"] + ["--assemble_only"]
  _run(reference_grid)
  assert json.loads((tmp_path / "c1.md.json").read_text())["results"] == {}
  path = tmp_path / "results" / "c1c3" / "C1_as_introvae_4_seed1.json"
  path.write_text(json.dumps({k: v for k, v in result.items() if k != "grid_points"}))
  _run(reference_grid)
  assert json.loads((tmp_path / "c1.md.json").read_text())["results"] == {
    "C1/as_introvae": [result["metrics"]]
  }
  assert "not comparable" not in (tmp_path / "c1.md").read_text()
  path.write_text(json.dumps(result))
  # and the default --results_dir (the committed reference-grid results) is refused
  refused = subprocess.run(
    [sys.executable, "tools/reproduce_2d.py", "--grid_points=32", "--assemble_only"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert refused.returncode != 0 and "--results_dir" in refused.stderr
  # the README block is replaced by the table, the rest kept
  readme = tmp_path / "README.md"
  readme.write_text(
    "intro\n<!-- BEGIN reproduce_2d c1c3 4 -->\nold\n<!-- END reproduce_2d c1c3 4 -->\nrest\n"
  )
  _run(args + ["--assemble_only", f"--readme={readme}"])
  text = readme.read_text()
  assert text.startswith("intro\n") and text.endswith("rest\n") and "old" not in text
  assert "| C1 | as_introvae |" in text


def test_reproduce_2d_variant_needs_a_tag_and_writes_its_own_results(tmp_path):
  base = [
    "tools/reproduce_2d.py",
    "--table=datasets",
    "--datasets=8gaussians",
    "--methods=soft_introvae",
    "--seeds=0",
    "--train_steps=3",
    "--eval_draws=1",
    "--grid_points=32",
    f"--workroot={tmp_path}",
    f"--results_dir={tmp_path / 'results'}",
  ]
  assert "--tag" in _refused(base + ["--overrides=init=keras"])
  _run(base + ["--overrides=init=keras,rec_target_grad=false", "--tag=oldinit"])
  result = json.loads(
    (
      tmp_path / "results" / "datasets" / "8gaussians_soft_introvae_oldinit_3_seed0.json"
    ).read_text()
  )
  assert result["tag"] == "oldinit"
  assert result["flags_changed"]["init"] == "keras"
  assert result["flags_changed"]["rec_target_grad"] is False


def test_reproduce_2d_types_list_overrides_and_names_a_bad_one(tmp_path, in_tool):
  base = [
    sys.executable,
    "tools/reproduce_2d.py",
    "--table=c1c3",
    "--settings=C1",
    "--methods=as_introvae",
    "--assemble_only",  # parses the overrides, trains nothing
    "--tag=fixed_lr",
    f"--workroot={tmp_path}",
    f"--results_dir={tmp_path / 'results'}",
  ]
  ok = subprocess.run(
    base + ["--overrides=lr_milestones=,num_vae=0"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert ok.returncode == 0, ok.stderr[-2000:]
  bad = subprocess.run(
    base + ["--overrides=lr_milestones=100:x"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert bad.returncode != 0 and "--overrides: lr_milestones" in bad.stderr
  # the values themselves
  parsed = in_tool(
    "tools/reproduce_2d.py",
    "m._parse_overrides(['lr_milestones=10000:15000', 'num_vae=0']), "
    "m._parse_overrides(['lr_milestones=']), m.REFERENCE_GRID_POINTS",
  )
  assert parsed.split() == [
    "{'lr_milestones':",
    "(10000,",
    "15000),",
    "'num_vae':",
    "0}",
    "{'lr_milestones':",
    "()}",
    str(metrics.GRID_POINTS),  # the tool's copy of the reference grid (it avoids TensorFlow)
  ]


def test_reproduce_2d_names_an_unknown_setting(tmp_path):
  proc = subprocess.run(
    [sys.executable, "tools/reproduce_2d.py", "--settings=C9", f"--workroot={tmp_path}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode != 0 and "--settings" in proc.stderr


def test_reproduce_images_compares_both_methods_at_the_same_budget(tmp_path):
  # A one-step feature net in a private cache: the test must not train (or read) the real one.
  from as_introvae_tf import feature_nets  # pylint: disable=import-outside-toplevel

  cache = tmp_path / "cache"
  feature_nets.train_feature_net(
    "fashion_mnist", str(cache / "feature_nets" / "fashion_mnist.keras"), max_steps=1, batch_size=32
  )
  env = dict(os.environ, **{feature_nets.CACHE_DIR_ENV: str(cache)})
  out = tmp_path / "images.md"
  _run(
    [
      "tools/reproduce_images.py",
      "--datasets=fashion_mnist",
      "--train_steps=2",
      "--num_samples=64",
      "--batch_size=16",
      "--filters=8",  # the default budget network (16,32) takes longer to trace and train
      f"--workroot={tmp_path}",
      f"--out={out}",
    ],
    env=env,
  )
  table = out.read_text()
  assert "Budget: 2 training steps per run" in table and "filters 8," in table
  for method in ("soft_introvae", "as_introvae"):
    row = [line for line in table.splitlines() if line.startswith(f"| fashion_mnist | {method} |")]
    assert len(row) == 1
    config = json.loads(
      (tmp_path / f"fashion_mnist_{method}" / "seed0" / "config.json").read_text()
    )
    assert (config["train_steps"], config["batch_size"], config["filters"]) == (2, 16, [8])
    metrics = json.loads(
      (tmp_path / f"fashion_mnist_{method}" / "seed0" / "eval" / "metrics.json").read_text()
    )["metrics"]
    assert f"{metrics['psnr']:.3f}" in row[0] and "fid_fmnist_cnn" in table


def test_reproduce_images_defaults_to_the_budget_network(in_tool):
  """Without --filters every method of a dataset gets BUDGET_FILTERS (a quarter of the paper's
  channels)."""
  out = in_tool(
    "tools/reproduce_images.py",
    "m._config('fashion_mnist', 'as_introvae', 0, '/tmp/x').filters, "
    "m._config('cifar10', 'soft_introvae', 0, '/tmp/x').filters, tf_imported()",
    parse_flags=True,
  )
  assert out == "(16, 32) (16, 32, 64) False"


def test_reference_2d_table_sets_the_reference_runs_beside_ours(tmp_path, in_tool):
  """tools/reference_2d.py --assemble_only: per budget, the reference runs and ours from their
  result files, and an exact Mann-Whitney test that separates 3 vs 3 fully at p = 0.1."""
  ref, ours = tmp_path / "ref", tmp_path / "ours"
  ref.mkdir()
  ours.mkdir()

  def write(path, kl):
    path.write_text(json.dumps({"metrics": {"kl": kl, "jsd": kl / 2, "modes_covered": 8.0}}))

  for seed, kl in enumerate([4.0, 5.0, 6.0]):
    write(ref / f"8gaussians_5000_seed{seed}.json", kl)
    write(ours / f"8gaussians_soft_introvae_official5000_5000_seed{seed}.json", kl - 3.0)
  write(ours / "8gaussians_soft_introvae_official5000_kerasadam_5000_seed0.json", 99.0)
  table = in_tool("tools/reference_2d.py", f"m.comparison_table({str(ref)!r}, {str(ours)!r})")
  rows = [line for line in table.splitlines() if line.startswith("| 5000 |")]
  assert len(rows) == 2, table
  assert "| 3 | 0: 4.0, 1: 5.0, 2: 6.0 | 5.00 +- 1.00 | 2.50 +- 0.50 | 8.00 +- 0.00 |" in rows[0]
  assert "0: 1.0, 1: 2.0, 2: 3.0" in rows[1] and "99" not in table  # a variant's file is not ours
  assert "5000 steps: p = 0.10 (3 vs 3 runs)" in table
  assert "30000" not in table  # no reference runs at that budget: no rows


def test_reproduce_2d_screening_stops_early_on_the_long_runs_schedule(tmp_path):
  """`--stop_at`: 8 steps of a 40-step run's schedule (warm-up 3 and milestones 13, 20 scaled
  to 40 steps, the annealing's T = 40), with the training scalars kept in the result file."""
  base = [
    "tools/reproduce_2d.py",
    "--table=c1c3",
    "--settings=C1",
    "--methods=as_introvae",
    "--seeds=0",
    "--train_steps=40",
    "--eval_draws=1",
    "--grid_points=32",
    "--overrides=as_scale=64,anneal=linear",
    "--tag=screen",
    f"--workroot={tmp_path}",
    f"--out={tmp_path / 'screen.md'}",
    f"--results_dir={tmp_path / 'results'}",
  ]
  _run(base + ["--stop_at=8"])
  result = json.loads(
    (tmp_path / "results" / "c1c3" / "C1_as_introvae_screen_8_seed0.json").read_text()
  )
  assert result["train_steps"] == 8 and result["schedule_steps"] == 40
  changed = result["flags_changed"]
  assert changed["num_vae"] == 3 and changed["lr_milestones"] == [13, 20]
  assert changed["anneal_steps"] == 40 and changed["as_scale"] == 64.0
  trajectory = result["trajectory"]
  assert trajectory["step"] == list(range(1, 9))  # logged every step at this budget
  # the step-k log is the k-th iteration's (i = k - 1): c = min(5 i / 40, 1), not T = 8's
  np.testing.assert_allclose(trajectory["c"][3:], [5 * i / 40 for i in range(3, 8)], rtol=1e-3)
  assert all(0 < f <= 1 for f in trajectory["as_factor"][3:])
  assert "of a 40-step schedule (screening)" in (tmp_path / "screen.md").read_text()
  # a run of the same name on another schedule is refused, not replaced
  other = [a if a != "--train_steps=40" else "--train_steps=8" for a in base]
  assert "40-step schedule" in _refused(other)


def test_reproduce_2d_basin_check_trains_two_segments(tmp_path):
  """`--first_segment`: the first steps with other flags, then resumed with the run's own; the
  first segment anneals AS-IntroVAE's c on the whole run's T, not on its own length."""
  base = [
    "tools/reproduce_2d.py",
    "--table=c1c3",
    "--settings=C1",
    "--methods=as_introvae",
    "--seeds=0",
    "--train_steps=6",
    "--eval_draws=1",
    "--grid_points=32",
    f"--workroot={tmp_path}",
    f"--out={tmp_path / 'basin.md'}",
    f"--results_dir={tmp_path / 'results'}",
  ]
  assert "go together" in _refused(base + ["--first_segment=3"])
  _run(base + ["--first_segment=3", "--first_segment_overrides=beta_rec=0.5", "--tag=basin"])
  result = json.loads(
    (tmp_path / "results" / "c1c3" / "C1_as_introvae_basin_6_seed0.json").read_text()
  )
  assert result["first_segment"] == {"steps": 3, "overrides": ["beta_rec=0.5"]}
  assert result["trajectory"]["step"][-1] == 6
  workdir = tmp_path / "c1c3" / "C1_as_introvae_basin" / "6_seed0"
  history = [
    json.loads(line) for line in (workdir / "config_history.jsonl").read_text().splitlines()
  ]
  assert len(history) == 2, history
  assert {"flag": "beta_rec", "new": 0.1, "old": 0.5} in history[1]["changes"]
  first = json.loads((workdir / "config.json").read_text())  # the first segment's flags
  assert first["train_steps"] == 3 and first["anneal_steps"] == 6
  # c = min(5 i / 6, 1) over the whole run: i = 0, 1 logged at steps 1, 2 (linear, T = 6)
  np.testing.assert_allclose(result["trajectory"]["c"][:2], [0.0, 5 / 6], rtol=1e-3)
  assert "its first 3 steps with beta_rec=0.5" in (tmp_path / "basin.md").read_text()
