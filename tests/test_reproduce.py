"""The reproduction scripts end to end on a tiny budget (real data): table, JSON, reuse.

The tools run in this process (`tools.reproduce_2d.run(parse(argv))`, the same code as their
command line but TensorFlow's start-up); `test_the_command_lines_refuse_bad_flags` runs the
command lines themselves."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import app

from as_introvae_tf import metrics
from tools import reference_2d
from tools import reproduce_2d
from tools import reproduce_images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, capsys=None):
  """Runs `python ARGS` (ARGS[0]: tools/reproduce_2d.py or tools/reproduce_images.py) in this
  process; its stdout when `capsys` is given."""
  tool = {"tools/reproduce_2d.py": reproduce_2d, "tools/reproduce_images.py": reproduce_images}
  module = tool[args[0]]
  if capsys is not None:
    capsys.readouterr()
  module.run(module.parse(args))
  return capsys.readouterr().out if capsys is not None else None


def _refused(args):
  """The message of the `app.UsageError` that `python ARGS` stops with (what its command line
  prints to stderr)."""
  with pytest.raises(app.UsageError) as error:
    _run(args)
  return str(error.value)


def test_reproduce_2d_writes_the_table_over_seeds_and_reuses_finished_runs(tmp_path, capsys):
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
  stdout = _run(args, capsys)
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
  _run(args)
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
  assert "--results_dir" in _refused(
    ["tools/reproduce_2d.py", "--grid_points=32", "--assemble_only"]
  )
  # the README block is replaced by the table, the rest kept
  readme = tmp_path / "README.md"
  readme.write_text(
    "intro\n<!-- BEGIN reproduce_2d c1c3 4 -->\nold\n<!-- END reproduce_2d c1c3 4 -->\nrest\n"
  )
  _run(args + ["--assemble_only", f"--readme={readme}"])
  text = readme.read_text()
  assert text.startswith("intro\n") and text.endswith("rest\n") and "old" not in text
  assert "| C1 | as_introvae |" in text


def test_reproduce_2d_records_a_run_that_diverged(tmp_path, capsys, monkeypatch):
  """A run that diverges is a result: its file records the step, the terms and the message
  (no metrics), the table shows it per seed and averages the finished seeds, and a later call
  reuses the file instead of training again. Training is a stub here (the divergence itself:
  test_train_lib.py)."""
  from as_introvae_tf import eval_lib  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import train_lib  # pylint: disable=import-outside-toplevel

  calls = []

  def train(config):
    calls.append(config.seed)
    if config.seed == 1:
      raise train_lib.TrainingDivergedError(
        "Training stopped: non-finite values (NaN/inf) at step 7 in: grad_norm_decoder. The "
        f"last good checkpoint is kept: {os.path.abspath(config.workdir)}/checkpoints/ckpt-5.",
        step=7,
        terms=("grad_norm_decoder",),
      )
    return {"step": config.train_steps}

  def evaluate(workdir, options, log):
    del options, log
    seed = int(workdir.rsplit("seed", 1)[1])
    return {"metrics": {"kl": 10.0 + seed, "jsd": 1.0, "modes_covered": 8.0, "gnelbo": 1e-8}}

  monkeypatch.setattr(train_lib, "train_and_evaluate", train)
  monkeypatch.setattr(eval_lib, "evaluate", evaluate)
  args = ["tools/reproduce_2d.py", "--table=c1c3", "--settings=C3", "--methods=soft_introvae"]
  args += ["--seeds=0,1,2", "--train_steps=9", f"--workroot={tmp_path / 'runs'}"]
  args += [f"--results_dir={tmp_path / 'results'}", f"--out={tmp_path / 'table.md'}"]
  out = _run(args, capsys)
  assert "C3 soft_introvae seed 1: diverged at step 7" in out
  saved = json.loads((tmp_path / "results" / "c1c3" / "C3_soft_introvae_9_seed1.json").read_text())
  assert saved["diverged"]["step"] == 7 and saved["diverged"]["terms"] == ["grad_norm_decoder"]
  assert "at step 7" in saved["diverged"]["message"] and saved["metrics"] == {}
  assert "kept: WORKDIR/checkpoints/ckpt-5." in saved["diverged"]["message"]
  row = [line for line in (tmp_path / "table.md").read_text().splitlines() if "| C3 |" in line]
  assert row and "| 11.00 +- 1.41 |" in row[0]  # seeds 0 and 2: KL 10 and 12
  assert "3 (KL 0: 10.00, 1: diverged at step 7, 2: 12.00)" in row[0]
  _run(args, capsys)
  assert calls == [0, 1, 2]  # the diverged run is not trained again


def test_reproduce_2d_variant_needs_a_tag_and_is_named_by_it(tmp_path):
  """--overrides needs --tag; a variant's result file carries the tag, on either table. (A
  variant's training and its result file: test_reproduce_2d_basin_check_trains_two_segments.)"""
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
  opts = reproduce_2d.parse(
    base + ["--overrides=init=keras,rec_target_grad=false", "--tag=oldinit"]
  )
  assert reproduce_2d._cells(opts) == [("8gaussians", "8gaussians", "soft_introvae", None)]
  assert reproduce_2d.result_path(
    opts.results_dir, opts.table, "8gaussians", "soft_introvae", 3, 0, opts.tag
  ) == str(tmp_path / "results" / "datasets" / "8gaussians_soft_introvae_oldinit_3_seed0.json")


def test_reproduce_2d_types_list_overrides_and_names_a_bad_one(tmp_path):
  base = [
    "tools/reproduce_2d.py",
    "--table=c1c3",
    "--settings=C1",
    "--methods=as_introvae",
    "--assemble_only",  # parses the overrides, trains nothing
    "--tag=fixed_lr",
    f"--workroot={tmp_path}",
    f"--results_dir={tmp_path / 'results'}",
  ]
  _run(base + ["--overrides=lr_milestones=,num_vae=0"])
  assert "--overrides: lr_milestones" in _refused(base + ["--overrides=lr_milestones=100:x"])
  # the values themselves
  assert reproduce_2d._parse_overrides(["lr_milestones=10000:15000", "num_vae=0"]) == {
    "lr_milestones": (10000, 15000),
    "num_vae": 0,
  }
  assert reproduce_2d._parse_overrides(["lr_milestones="]) == {"lr_milestones": ()}
  # the tool's copy of the reference grid (it avoids TensorFlow)
  assert reproduce_2d.REFERENCE_GRID_POINTS == metrics.GRID_POINTS


def test_reproduce_2d_checks_every_run_before_training(tmp_path):
  """What used to fail only after earlier cells had trained (a typo in --methods found when its
  flagfile was read, --eval_draws=0 after the first run's training, --readme's block and an
  unwritable --out at the very end) or as a traceback (--seeds=0,x), refused before any run."""
  base = [
    "tools/reproduce_2d.py",
    "--table=c1c3",
    "--settings=C1",
    "--train_steps=3",
    f"--workroot={tmp_path / 'runs'}",
    f"--results_dir={tmp_path / 'results'}",
  ]
  assert "no configs/8gaussians_soft_intro.flags" in _refused(
    base + ["--methods=as_introvae,soft_intro"]
  )
  assert "--eval_draws must be >= 1" in _refused(base + ["--methods=vae", "--eval_draws=0"])
  assert "--seeds must be integers >= 0" in _refused(base + ["--methods=vae", "--seeds=0,x"])
  assert "--seeds must be integers >= 0" in _refused(base + ["--methods=vae", "--seeds=-1"])
  assert "--readme: " in _refused(base + ["--methods=vae", f"--readme={tmp_path / 'no.md'}"])
  (tmp_path / "file").write_text("")
  assert "--out: cannot write in" in _refused(
    base + ["--methods=vae", f"--out={tmp_path / 'file' / 'table.md'}"]
  )
  assert "C1 vae seed 0: --lr must be a finite number" in _refused(
    base + ["--methods=vae", "--overrides=lr=inf", "--tag=x"]
  )
  assert not (tmp_path / "runs" / "c1c3").exists()  # nothing trained
  # A flag whose default is None takes its field's type (was the raw string: a TypeError).
  assert reproduce_2d._parse_overrides(["image_size=32", "filters=8:16", "data_dir=/d"]) == {
    "image_size": 32,
    "filters": (8, 16),
    "data_dir": "/d",
  }


def test_the_command_lines_refuse_bad_flags(tmp_path):
  """The command line itself (`python tools/reproduce_2d.py`, absl's app.run): a bad flag
  value is named on stderr with a non-zero exit, before TensorFlow is imported."""
  for args, named in (
    (["--settings=C9", f"--workroot={tmp_path}"], "--settings"),
    (["--grid_points=32", "--assemble_only"], "--results_dir"),
  ):
    assert named in _command_line_error(["tools/reproduce_2d.py", *args])


def _command_line(argv):
  """`python ARGV` run from the repository root: the finished process (stdout, stderr)."""
  return subprocess.run(
    [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
  )


def _command_line_error(argv):
  """The stderr of `python ARGV` run from the repository root, which must exit non-zero."""
  proc = _command_line(argv)
  assert proc.returncode != 0, proc.stderr[-2000:]
  return proc.stderr


@pytest.mark.parametrize(
  "args, named",
  [
    (["--eval_draws=0"], "--eval_draws=0"),  # wrote a NaN result file, then skipped it as done
    (["--seeds=0,x"], "--seeds takes integers >= 0"),  # failed after seed 0's training
    (["--readme=README.md"], "--readme goes with --assemble_only"),  # was ignored
  ],
)
def test_reference_2d_refuses_bad_flags_before_training(args, named):
  assert named in _command_line_error(["tools/reference_2d.py", *args])


def test_reference_2d_assembles_its_table_from_the_command_line():
  # The documented `--assemble_only` command (docs/reproducing.md), with every flag it reads:
  # a flag definition once fell out of define_flags() and only this command noticed.
  proc = _command_line(["tools/reference_2d.py", "--assemble_only"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "| ours (reference defaults) |" in proc.stdout and "Mann-Whitney" in proc.stdout


def test_output_flags_are_checked_when_parsed(tmp_path):
  """Tools that write their result at the end (the benchmark from memory, the lock-step run,
  the serving benchmark, the feature net) refuse an output path that cannot be written when
  their flags are parsed, before the work."""
  from tools import own_flags  # pylint: disable=import-outside-toplevel

  (tmp_path / "file").write_text("")
  assert own_flags.output_problem(str(tmp_path / "new" / "deeper" / "out.json")) is None
  assert "is a folder" in own_flags.output_problem(str(tmp_path))
  assert "is a file, where a folder should be" in own_flags.output_problem(
    str(tmp_path / "file" / "out.json")
  )
  assert "cannot write --out=" in _command_line_error(
    ["-m", "tools.benchmark", "--quick", f"--out={tmp_path / 'file' / 'b.json'}"]
  )
  assert not (tmp_path / "new").exists()


def test_tools_import_without_flags_or_tensorflow():
  """Importing a tool defines no absl flag and imports no TensorFlow (so tests import them like
  the library); the parts that need no TensorFlow (device_check.plan, reproduce_images's
  configs) do not import it either. In a fresh process: this one has TensorFlow already."""
  code = """
import sys
from absl import app, flags  # absl's own flags (logging, app) first
before = set(flags.FLAGS)
from tools import as_sweep, benchmark, benchmark_serving, device_check, lockstep_reference
from tools import machine, reference_2d, reproduce_2d, reproduce_images, results_summary
from tools import test_cpu, train_feature_net
assert set(flags.FLAGS) == before, set(flags.FLAGS) - before
device_check.plan(False, 2)
opts = reproduce_images.parse(["reproduce_images"])
reproduce_images._config(opts, "cifar10", "soft_introvae", 0, "/tmp/x")
print("tensorflow" in sys.modules)
"""
  proc = subprocess.run(
    [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == "False"


# Large (43 CPU s in session 15's log): two real image runs and their evaluation, which are
# train_lib's and evaluate's, tested on Fashion-MNIST runs in test_train_lib.py and
# test_evaluate.py; the tool's own part (configs, table, JSON, reuse) is tested fast below
# with stub runs.
@pytest.mark.large
def test_reproduce_images_compares_both_methods_at_the_same_budget(tmp_path, monkeypatch):
  # A one-step feature net in a private cache: the test must not train (or read) the real one.
  from as_introvae_tf import feature_nets  # pylint: disable=import-outside-toplevel

  cache = tmp_path / "cache"
  feature_nets.train_feature_net(  # its test accuracy on 64 images: this test does not read it
    "fashion_mnist",
    str(cache / "feature_nets" / "fashion_mnist.keras"),
    max_steps=1,
    batch_size=32,
    eval_examples=64,
  )
  monkeypatch.setenv(feature_nets.CACHE_DIR_ENV, str(cache))
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
    ]
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


def test_reproduce_images_table_over_seeds_from_stub_runs(tmp_path, monkeypatch):
  """The tool's own part, fast: every (dataset, method, seed) run gets a valid config of its
  flagfile at the budget, and the table and its JSON give each cell's mean +- std (ddof 1) over
  the seeds; a second call reuses the saved evaluations. Training and evaluation are stubs
  here (what they do is tested in test_train_lib.py and test_evaluate.py; the real runs in
  the large test above)."""
  import dataclasses  # pylint: disable=import-outside-toplevel

  from as_introvae_tf import eval_lib  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import train_lib  # pylint: disable=import-outside-toplevel

  trained, steps = [], {}

  def train(config):
    config.validate()
    trained.append((config.method, config.seed, config.train_steps, config.filters))
    steps[os.path.abspath(config.workdir)] = config.train_steps
    return {"step": config.train_steps}

  def evaluate(workdir, options, log):
    del log
    seed = int(os.path.basename(workdir).removeprefix("seed"))
    psnr = 20.0 + seed + (0.5 if "as_introvae" in workdir else 0.0)
    saved = {
      "step": steps[os.path.abspath(workdir)],
      "options": dataclasses.asdict(options),
      "eval_version": eval_lib.EVAL_VERSION,
      "metrics": {"psnr": psnr, "ssim": 0.5, "mse": 0.01, "fid_net": 10.0 * (seed + 1)},
    }
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    with open(os.path.join(workdir, "eval", "metrics.json"), "w") as f:
      json.dump(saved, f)
    return saved

  monkeypatch.setattr(train_lib, "train_and_evaluate", train)
  monkeypatch.setattr(eval_lib, "evaluate", evaluate)
  out = tmp_path / "images.md"
  args = ["tools/reproduce_images.py", "--datasets=fashion_mnist", "--seeds=0,1,2"]
  args += ["--train_steps=10", f"--workroot={tmp_path}", f"--out={out}"]
  _run(args)
  assert sorted(trained) == [
    (m, s, 10, (16, 32)) for m in ("as_introvae", "soft_introvae") for s in (0, 1, 2)
  ]
  table = out.read_text()
  for method, offset in (("soft_introvae", 0.0), ("as_introvae", 0.5)):
    psnr = np.array([20.0, 21.0, 22.0]) + offset
    cell = f"{psnr.mean():.3f} +- {psnr.std(ddof=1):.3f}"
    assert f"| fashion_mnist | {method} | {cell} | 0.500 +- 0.000 |" in table, table
  assert "| fid_net |" in table and "20.00 +- 10.00" in table
  saved = json.loads((tmp_path / "images.md.json").read_text())
  assert saved["seeds"] == [0, 1, 2] and len(saved["results"]["fashion_mnist/as_introvae"]) == 3
  _run(args)  # the saved evaluations are reused: nothing is trained again
  assert len(trained) == 6


def test_reproduce_images_checks_every_run_before_training(tmp_path, monkeypatch):
  """A typo in --datasets or --methods, bad --seeds/--filters and a missing
  --inception_weights are refused before any run trains (they failed after the earlier
  runs, or as a KeyError/ValueError traceback)."""
  from as_introvae_tf import train_lib  # pylint: disable=import-outside-toplevel

  def train(config):
    raise AssertionError(f"trained {config.method} although a later run's flags are bad")

  monkeypatch.setattr(train_lib, "train_and_evaluate", train)
  base = ["tools/reproduce_images.py", "--train_steps=10", f"--workroot={tmp_path}"]
  assert "--datasets: unknown 'mnist'" in _refused(base + ["--datasets=fashion_mnist,mnist"])
  assert "--methods: no configs/fashion_mnist_soft_intro.flags" in _refused(
    base + ["--methods=as_introvae,soft_intro"]
  )
  assert "--seeds must be integers >= 0" in _refused(base + ["--seeds=-1"])
  assert "take integers" in _refused(base + ["--filters=16,x"])
  assert "--inception_weights=" in _refused(base + [f"--inception_weights={tmp_path / 'no.h5'}"])


def test_reproduce_images_defaults_to_the_budget_network():
  """Without --filters every method of a dataset gets BUDGET_FILTERS (a quarter of the paper's
  channels)."""
  opts = reproduce_images.parse(["reproduce_images"])
  assert reproduce_images._config(opts, "fashion_mnist", "as_introvae", 0, "/tmp/x").filters == (
    16,
    32,
  )
  assert reproduce_images._config(opts, "cifar10", "soft_introvae", 0, "/tmp/x").filters == (
    16,
    32,
    64,
  )


def test_reference_2d_table_sets_the_reference_runs_beside_ours(tmp_path):
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
  table = reference_2d.comparison_table(str(ref), str(ours))
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
  first segment anneals AS-IntroVAE's c on the whole run's T, not on its own length. The run
  is also a variant (`--overrides`): its result file carries the tag and the changed flags."""
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
  # a variant (--overrides, --tag) too: its own result file, its flags recorded
  variant = ["--overrides=init=keras,rec_target_grad=false", "--tag=basin"]
  _run(base + ["--first_segment=3", "--first_segment_overrides=beta_rec=0.5"] + variant)
  result = json.loads(
    (tmp_path / "results" / "c1c3" / "C1_as_introvae_basin_6_seed0.json").read_text()
  )
  assert result["tag"] == "basin"
  assert result["flags_changed"]["init"] == "keras"
  assert result["flags_changed"]["rec_target_grad"] is False
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
