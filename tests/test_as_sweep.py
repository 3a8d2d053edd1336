"""tools/as_sweep.py: the stage-1 screen's table and PLAN.md's decision rules, on result
files written here with known numbers."""

import json

import pytest

from tools import as_sweep


def _result(tmp_path, tag, seed, kl, modes, share, factor, rec, method="as_introvae"):
  steps = list(range(500, 8001, 500))
  result = {
    "tag": tag,
    "seed": seed,
    "method": method,
    "metrics": {"kl": kl, "modes_covered": modes},
    "train_steps": 8000,
    "schedule_steps": 30000,
    "eval_draws": 3,
    "trajectory": {
      "step": steps,
      "as_share_rec": [share] * len(steps),
      "as_factor": [factor] * len(steps),
      "rec": [rec] * len(steps),
    },
  }
  # the window's median must ignore steps outside (2000, 6000]
  result["trajectory"]["as_factor"][0] = 123.0
  path = tmp_path / f"C1_{method}_{tag}_8000_seed{seed}.json"
  path.write_text(json.dumps(result))


@pytest.fixture
def screen(tmp_path):
  for seed in (0, 1):
    _result(tmp_path, "screen_s1_warm", seed, 60.0 + seed, 7, 0.001, 1.0, 1.0)
    _result(tmp_path, "screen_s262144_warm", seed, 40.0, 8, 0.99, 1e-5, 1.0)
    _result(tmp_path, "screen_s512_warm", seed, 8.0 + seed, 8, 0.3, 0.5, 0.5)
    _result(tmp_path, "screen_s512_nowarm", seed, 5.0, 6, 0.3, 0.5, 2.0)
    _result(tmp_path, "screen_fixedlr", seed, 50.0, 8, None, None, 1.0, method="soft_introvae")
  _result(tmp_path, "screen_s23_warm", 0, 1.0, 8, 0.1, 0.9, 0.4)  # seed 1 not run yet
  return as_sweep.summarize(as_sweep.load(str(tmp_path / "C1_*_screen_*_seed*.json")))


def test_rules_rank_h1_and_failure_follow_the_plan(screen):
  by_tag = {r["tag"]: r for r in screen}
  assert by_tag["screen_s1_warm"]["kl"] == [60.0, 61.0]
  assert by_tag["screen_s262144_warm"]["factor"] == [1e-5, 1e-5]  # step 500's 123 is outside
  assert as_sweep.h1(screen) is True
  # 8 modes on both seeds first (by mean KL), fewer modes after, incomplete configurations out
  assert [r["tag"] for r in as_sweep.ranked(screen)] == [
    "screen_s512_warm",
    "screen_s262144_warm",
    "screen_s512_nowarm",
    "screen_s1_warm",
  ]
  text = "\n".join(as_sweep.decisions(screen))
  assert "Rule 2 (to stage 2): screen_s512_warm, screen_s262144_warm" in text
  assert "every complete warm-up-off run collapsed: True" in text
  assert "no, screen_s512_warm" in text  # 8 modes and KL < 20 on both seeds


def test_h1_waits_for_both_seeds_and_can_be_rejected(tmp_path):
  _result(tmp_path, "screen_s1_warm", 0, 60.0, 7, 0.001, 1.0, 1.0)
  _result(tmp_path, "screen_s262144_warm", 0, 40.0, 8, 0.99, 1e-5, 1.0)
  rows = as_sweep.summarize(as_sweep.load(str(tmp_path / "C1_*_screen_*_seed*.json")))
  assert as_sweep.h1(rows) is None
  _result(tmp_path, "screen_s1_warm", 1, 60.0, 7, 0.05, 1.0, 1.0)  # the mean's share is 5%
  _result(tmp_path, "screen_s262144_warm", 1, 40.0, 8, 0.99, 1e-5, 1.0)
  rows = as_sweep.summarize(as_sweep.load(str(tmp_path / "C1_*_screen_*_seed*.json")))
  assert as_sweep.h1(rows) is False
  assert "Rule 1 (H1): rejected" in "\n".join(as_sweep.decisions(rows))


def test_main_writes_the_markdown_and_the_doc_block(tmp_path, capsys):
  _result(tmp_path, "screen_s512_warm", 0, 8.0, 8, 0.3, 0.5, 0.5)
  out, doc = tmp_path / "SCREEN.md", tmp_path / "results.md"
  doc.write_text("a\n<!-- BEGIN as_sweep screen -->\nold\n<!-- END as_sweep screen -->\nb\n")
  pattern = tmp_path / "C1_*_screen_*_seed*.json"
  as_sweep.main([f"--pattern={pattern}", f"--out={out}", f"--doc={doc}"])
  text = out.read_text()
  assert text == capsys.readouterr().out
  assert text.startswith(
    "Stage 1 at C1: 1 runs of 8000 steps on the schedule of a 30000-step run; 3 evaluation"
  )
  assert "| screen_s512_warm | as_introvae | 0 | 8.0 | 8.0 | 8 | 0.3 | 0.5 | 0.50 |" in text
  block = doc.read_text()
  assert block.startswith("a\n<!-- BEGIN as_sweep screen -->\nStage 1") and "old" not in block
  assert block.endswith("<!-- END as_sweep screen -->\nb\n")


def test_main_names_a_pattern_without_files_and_a_doc_without_the_block(tmp_path):
  # Both used to pass: a "0 runs" table with exit 0, and a traceback after printing the table.
  with pytest.raises(SystemExit, match="--pattern=.* matches no result file"):
    as_sweep.main([f"--pattern={tmp_path / '*.json'}"])
  _result(tmp_path, "screen_s512_warm", 0, 8.0, 8, 0.3, 0.5, 0.5)
  doc = tmp_path / "results.md"
  doc.write_text("no markers\n")
  pattern = tmp_path / "C1_*_screen_*_seed*.json"
  with pytest.raises(SystemExit, match="--doc: .* has no block <!-- BEGIN as_sweep screen -->"):
    as_sweep.main([f"--pattern={pattern}", f"--doc={doc}"])
  assert doc.read_text() == "no markers\n"


def test_a_diverged_run_fails_its_as_cell_and_bars_no_as_seed(tmp_path):
  # reproduce_2d writes `diverged` (and no metrics) for a run that stopped on NaN/inf.
  for seed, kl in ((0, 5.0), (1, None), (2, 6.0)):
    name = f"C1_soft_introvae_30000_seed{seed}.json"
    result = {"seed": seed, "method": "soft_introvae", "metrics": {}}
    if kl is None:
      result["diverged"] = {"step": 9, "terms": ["loss"], "message": "..."}
    else:
      result["metrics"] = {"kl": kl, "modes_covered": 8.0}
    (tmp_path / name).write_text(json.dumps(result))
  for seed in (0, 1, 2):
    _final(tmp_path, "C1", "as_introvae", seed, 1.0, 8.0, tag="sweep_s1_warm")
  (tmp_path / "C1_as_introvae_sweep_s23_warm_30000_seed0.json").write_text(
    json.dumps({"seed": 0, "method": "as_introvae", "metrics": {}, "diverged": {"step": 3}})
  )
  cells = {
    c["config"]: c
    for c in as_sweep.stage2_cells(["screen_s1_warm", "screen_s23_warm"], str(tmp_path))
    if c["cell"] == "C1"
  }
  assert cells["screen_s1_warm"]["state"] == "passes"  # 1.0 < 5.0, 6.0 and the diverged seed
  assert cells["screen_s23_warm"]["state"] == "fails"
  lines = as_sweep.stage2_table(list(cells.values()))
  assert any("| 5.0, diverged, 6.0 |" in line for line in lines), lines


def test_a_diverged_screen_run_counts_as_kl_inf_and_no_mode():
  diverged = {"seed": 1, "method": "as_introvae", "metrics": {}, "diverged": {"step": 3}}
  finished = {"seed": 0, "method": "as_introvae", "metrics": {"kl": 9.0, "modes_covered": 8.0}}
  (row,) = as_sweep.summarize({"screen_s1_warm": [finished, diverged]})
  assert row["kl"] == [9.0, float("inf")] and row["modes"] == [8.0, 0]
  assert row["mean_kl"] == float("inf")


def test_results_summary_marks_a_diverged_seed_and_averages_the_others(tmp_path):
  from tools import results_summary  # pylint: disable=import-outside-toplevel

  (tmp_path / "c1c3").mkdir()
  for seed, kl in ((0, 50.0), (1, None), (2, 70.0)):
    result = {"table": "c1c3", "cell": "C1", "method": "soft_introvae", "dataset": "8gaussians"}
    result.update(seed=seed, train_steps=30000, tag="", cpu="a CPU", metrics={})
    if kl is None:
      result["diverged"] = {"step": 9, "terms": ["loss"], "message": "..."}
    else:
      result["metrics"] = {"kl": kl, "jsd": kl / 10, "modes_covered": 8.0}
    (tmp_path / "c1c3" / f"C1_soft_introvae_30000_seed{seed}.json").write_text(json.dumps(result))
  text = results_summary.summary(str(tmp_path))
  row = [line for line in text.splitlines() if "soft_introvae" in line][0]
  assert "| 0,1*,2 | 60.00 +- 14.14 | 6.00 +- 1.41 | 8.00 +- 0.00 |" in row, row
  assert "Seeds marked * diverged (NaN/inf; step in the result file): not averaged." in text


def test_results_summary_names_a_bad_readme_or_results_dir(tmp_path):
  from tools import results_summary  # pylint: disable=import-outside-toplevel

  with pytest.raises(SystemExit, match="no such file"):
    results_summary.main([f"--readme={tmp_path / 'none.md'}"])
  with pytest.raises(SystemExit, match="no 30000-step results under"):
    results_summary.main([f"--results_dir={tmp_path}"])


def _final(folder, cell, method, seed, kl, modes, tag=""):
  name = "_".join(p for p in (cell, method, tag, "30000", f"seed{seed}") if p)
  result = {"metrics": {"kl": kl, "modes_covered": modes}, "seed": seed, "method": method}
  (folder / f"{name}.json").write_text(json.dumps(result))


def test_stage2_cells_follow_the_plans_rules(tmp_path):
  configs = ["screen_s1_warm", "screen_s23_warm"]
  a, b = (as_sweep.stage2_tag(c) for c in configs)
  assert (a, b) == ("sweep_s1_warm", "sweep_s23_warm")
  for cell, soft in (("C1", (12.0, 11.0, 15.0)), ("C2", (50.0, 60.0, 55.0))):
    for seed, kl in enumerate(soft):
      _final(tmp_path, cell, "soft_introvae", seed, kl, 8)
  for seed, kl in enumerate((3.0, 4.0, 5.0)):  # A at C1: passes (mean 4 < 10, all below 11)
    _final(tmp_path, "C1", "as_introvae", seed, kl, 8, a)
  for seed, kl in enumerate((3.0, 9.0, 12.0)):  # B at C1: mean 8, but 12 > S-IntroVAE's 11
    _final(tmp_path, "C1", "as_introvae", seed, kl, 8, b)
  _final(tmp_path, "C2", "as_introvae", 0, 5.0, 23 / 3, a)  # 7.67 modes (3 draws): fails
  _final(tmp_path, "C2", "as_introvae", 0, 30.0, 8, b)  # KL 30: the mean cannot be below 10
  _final(tmp_path, "C3", "as_introvae", 0, 2.0, 8, a)  # open: two AS seeds and S-IntroVAE's
  cells = {(c["config"], c["cell"]): c for c in as_sweep.stage2_cells(configs, str(tmp_path))}
  assert [k[1] for k in cells] == ["C1", "C1", "C2", "C2", "C3", "C3"]
  state = {k: c["state"] for k, c in cells.items()}
  assert state == {
    (configs[0], "C1"): "passes",
    (configs[1], "C1"): "fails",
    (configs[0], "C2"): "fails",
    (configs[1], "C2"): "fails",
    (configs[0], "C3"): "open",
    (configs[1], "C3"): "open",
  }
  assert cells[(configs[0], "C3")]["missing"] == [
    "as_introvae seed 1",
    "as_introvae seed 2",
    "soft_introvae seed 0",
    "soft_introvae seed 1",
    "soft_introvae seed 2",
  ]
  # Amendment 6: B's failed cells get no more seeds (C2: seed 0 only); A's failed ones do.
  assert cells[(configs[1], "C2")]["missing"] == []
  assert cells[(configs[1], "C2")]["not_run"] == ["as_introvae seed 1", "as_introvae seed 2"]
  assert cells[(configs[0], "C2")]["missing"] == ["as_introvae seed 1", "as_introvae seed 2"]
  assert cells[(configs[1], "C1")]["not_run"] == []  # failed with its three seeds
  assert cells[(configs[1], "C3")]["not_run"] == []  # open: its seeds still run
  verdict = as_sweep.stage2_verdict(list(cells.values()), screen_failed=True)
  assert verdict.startswith("not decided yet: pass: sweep_s1_warm at C1; fail: ")
  assert "open: sweep_s1_warm at C3, sweep_s23_warm at C3" in verdict
  lines = as_sweep.stage2_table(list(cells.values()))
  assert lines[2].startswith("| sweep_s1_warm | C1 | 3.0, 4.0, 5.0 | 8, 8, 8 | 12.0, 11.0, 15.0 |")
  assert lines[4].startswith("| sweep_s1_warm | C2 | 5.0 | 7.67 | ")  # not rounded up to 8
  assert lines[4].endswith("| fails | as_introvae seed 1, as_introvae seed 2 |")
  assert lines[5].endswith("| fails | as_introvae seeds 1, 2 not run (amendment 6) |")


def test_stage2_verdict_success_and_failure():
  def cell(config, name, state):
    return dict(config=config, cell=name, state=state)

  passes = [cell("screen_s1_warm", c, "passes") for c in ("C1", "C2", "C3")]
  mixed = [cell("screen_s23_warm", c, s) for c, s in (("C1", "passes"), ("C2", "fails"))]
  assert as_sweep.stage2_verdict(mixed + passes, True) == (
    "success: sweep_s1_warm passes at C1, C2, C3"
  )
  fails = [cell(c, s, "fails") for c in ("screen_s1_warm", "screen_s23_warm") for s in "AB"]
  assert as_sweep.stage2_verdict(fails, True) == (
    "failure: every stage-2 cell fails and the screen failed"
  )
  assert as_sweep.stage2_verdict(fails, False) == (
    "otherwise: every stage-2 cell fails, but the screen did not fail (failure needs both)"
  )
  # Each configuration fails somewhere, other cells open: success is out, the rest undecided.
  excluded = [cell("screen_s1_warm", "C1", "fails"), cell("screen_s1_warm", "C2", "open")]
  excluded += [cell("screen_s23_warm", "C1", "open"), cell("screen_s23_warm", "C2", "fails")]
  verdict = as_sweep.stage2_verdict(excluded, True)
  assert verdict.startswith("not decided yet: pass: none; fail: sweep_s1_warm at C1, ")
  assert "(success is excluded: every configuration fails in at least one setting;" in verdict
  assert verdict.endswith("the open cells decide between failure and a partial result)")
  assert as_sweep.stage2_verdict(excluded, False).endswith("as the screen did not fail)")
  assert "success is excluded" not in as_sweep.stage2_verdict(excluded[1:], True)  # s1: no fail


def test_stage2_order_follows_amendments_3_4_and_6_and_gives_the_commands(tmp_path):
  configs = ["screen_s1_warm", "screen_s512_nowarm"]
  a, b = (as_sweep.stage2_tag(c) for c in configs)
  order = as_sweep.stage2_order(configs, str(tmp_path))
  assert order[:6] == [
    (cell, "as_introvae", 0, config) for cell in ("C1", "C2", "C3") for config in configs
  ]
  assert len(order) == 18 + 6
  # Seed 0 everywhere; A fails at C1 (7 modes): its seeds 1, 2 there go after S-IntroVAE's.
  for cell in ("C1", "C2", "C3"):
    for config, tag in zip(configs, (a, b)):
      _final(tmp_path, cell, "as_introvae", 0, 5.0, 7 if (cell, tag) == ("C1", a) else 8, tag)
  order = as_sweep.stage2_order(configs, str(tmp_path))
  assert order[0] == ("C1", "as_introvae", 1, configs[1])
  assert order[10:16] == [
    (cell, "soft_introvae", seed, None) for cell in ("C1", "C2", "C3") for seed in (1, 2)
  ]
  assert order[16:] == [("C1", "as_introvae", 1, configs[0]), ("C1", "as_introvae", 2, configs[0])]
  assert as_sweep.stage2_command(order[0]) == (
    "python tools/reproduce_2d.py --table=c1c3 --settings=C1 --methods=as_introvae --seeds=1 "
    "--train_steps=30000 --overrides=as_scale=512,lr_milestones=,num_vae=0 "
    "--tag=sweep_s512_nowarm"
  )
  assert as_sweep.stage2_command(order[10]) == (
    "python tools/reproduce_2d.py --table=c1c3 --settings=C1 --methods=soft_introvae --seeds=1 "
    "--train_steps=30000"
  )
  # Amendment 4: every cell fails at seed 0; the failed cells' seeds go configuration by
  # configuration, A's seed 1 at C1-C3, then A's seed 2, after S-IntroVAE's seeds; amendment 6:
  # B's failed cells get no more seeds.
  for cell in ("C1", "C2", "C3"):
    for tag in (a, b):
      _final(tmp_path, cell, "as_introvae", 0, 5.0, 7, tag)
  order = as_sweep.stage2_order(configs, str(tmp_path))
  assert order[:6] == [(c, "soft_introvae", s, None) for c in ("C1", "C2", "C3") for s in (1, 2)]
  assert order[6:] == [
    (cell, "as_introvae", seed, configs[0]) for seed in (1, 2) for cell in ("C1", "C2", "C3")
  ]


def test_amendment_6_drops_only_the_later_seeds_of_the_second_configurations_failed_cells(
  tmp_path,
):
  configs = ["screen_s1_warm", "screen_s23_warm"]
  a, b = (as_sweep.stage2_tag(c) for c in configs)
  for seed in (0, 1):  # S-IntroVAE's seed 2 missing at C1
    _final(tmp_path, "C1", "soft_introvae", seed, 50.0, 8)
  _final(tmp_path, "C1", "as_introvae", 0, 5.0, 8, b)  # B at C1: seed 1 fails it
  _final(tmp_path, "C1", "as_introvae", 1, 40.0, 8, b)
  _final(tmp_path, "C2", "as_introvae", 1, 40.0, 8, b)  # B at C2 failed without seed 0
  _final(tmp_path, "C2", "as_introvae", 1, 40.0, 8, a)  # A at C2 failed: keeps its seeds
  cells = {(c["config"], c["cell"]): c for c in as_sweep.stage2_cells(configs, str(tmp_path))}
  assert cells[(configs[1], "C1")]["not_run"] == ["as_introvae seed 2"]
  assert cells[(configs[1], "C1")]["missing"] == ["soft_introvae seed 2"]
  assert cells[(configs[1], "C2")]["not_run"] == ["as_introvae seed 2"]  # seed 0 always runs
  assert "as_introvae seed 0" in cells[(configs[1], "C2")]["missing"]
  assert cells[(configs[0], "C2")]["not_run"] == []
  lines = as_sweep.stage2_table(list(cells.values()))
  assert lines[3].endswith(
    "| fails | soft_introvae seed 2; as_introvae seed 2 not run (amendment 6) |"
  )
  order = as_sweep.stage2_order(configs, str(tmp_path))
  assert ("C2", "as_introvae", 0, configs[1]) in order  # what the table lists, --next runs
  assert not [r for r in order if r[0] != "C3" and r[3] == configs[1] and r[2] > 0]
  assert ("C3", "as_introvae", 2, configs[1]) in order  # an open cell of B keeps its seeds
  assert ("C2", "as_introvae", 2, configs[0]) in order


def test_results_summary_legend_names_the_configuration_amendment_6_stops(tmp_path):
  from tools import results_summary  # pylint: disable=import-outside-toplevel

  screen = tmp_path / "as_introvae_sweep" / "c1c3"
  screen.mkdir(parents=True)
  for seed in (0, 1):  # here rule 2 ranks scale 23 first (lower mean KL): not the repo's order
    _result(screen, "screen_s1_warm", seed, 70.0 + seed, 7, 0.001, 1.0, 1.0)
    _result(screen, "screen_s23_warm", seed, 60.0 + seed, 7, 0.001, 1.0, 1.0)
  (tmp_path / "c1c3").mkdir()
  for tag in ("sweep_s1_warm", "sweep_s23_warm"):
    result = {"table": "c1c3", "cell": "C1", "method": "as_introvae", "dataset": "8gaussians"}
    result.update(seed=0, train_steps=30000, tag=tag, cpu="a CPU")
    result["metrics"] = {"kl": 100.0, "jsd": 10.0, "modes_covered": 2.0}
    (tmp_path / "c1c3" / f"C1_as_introvae_{tag}_30000_seed0.json").write_text(json.dumps(result))
  text = " ".join(results_summary.summary(str(tmp_path)).split())
  assert "sweep_s1_warm: a failed cell runs no more seeds (PLAN.md amendment 6)." in text
  assert "sweep_s23_warm: a failed cell" not in text
