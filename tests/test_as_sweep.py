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
