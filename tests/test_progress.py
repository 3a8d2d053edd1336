"""The whole-run progress display: one bar with step/train_steps, steps/s and ETA, plain lines
without a terminal, checkpoint lines, and the pictures refreshed while training."""

import io
import re

import pytest

from as_introvae_tf import methods
from as_introvae_tf import progress


class _Clock:
  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


@pytest.fixture
def clock(monkeypatch):
  c = _Clock()
  monkeypatch.setattr(progress.time, "time", c)
  # keras' Progbar reads the clock through its own module
  import keras.src.utils.progbar as progbar_module

  monkeypatch.setattr(progbar_module.time, "time", c)
  return c


def test_mode_follows_verbose_and_the_terminal():
  class Tty(io.StringIO):
    def isatty(self):
      return True

  assert progress.mode_for("auto", Tty()) == "bar"
  assert progress.mode_for("auto", io.StringIO()) == "lines"
  assert [progress.mode_for(v) for v in ("0", "1", "2")] == ["silent", "bar", "lines"]


def test_format_duration():
  assert progress.format_duration(42.4) == "42s"
  assert progress.format_duration(125) == "2:05"
  assert progress.format_duration(3 * 3600 + 61) == "3:01:01"


def test_lines_mode_counts_the_whole_run_from_a_resumed_step_and_excludes_the_first_step(clock):
  out = io.StringIO()
  p = progress.RunProgress(
    total_steps=1000, start_step=400, method="as_introvae", mode="lines", every=100, stream=out
  )
  p.on_train_begin()
  clock.now += 30.0  # the first step compiles: slow, and left out of the rate
  p.on_train_batch_end(0, {"loss": 5.0, "rec": 3.0, "kl_real": 2.0})
  for i in range(1, 100):
    clock.now += 0.5  # then 2 steps/s
    p.on_train_batch_end(
      i,
      {
        "loss_encoder": 1.0,
        "loss_decoder": 2.0,
        "rec": 3.0,
        "kl_real": 4.0,
        "as_distance": 0.5,
        "exp_elbo_fake": 9.0,
      },
    )
  p.on_epoch_end(
    0,
    {
      "loss_encoder": 1.5,
      "loss_decoder": 2.5,
      "rec": 3.5,
      "kl_real": 4.5,
      "as_distance": 0.25,
      "exp_elbo_fake": 9.0,
      "grad_norm_encoder": 1.0,
    },
  )
  line = out.getvalue().strip()
  assert line.startswith("step 500/1000 (50%) - 2.00 steps/s - ETA 4:10")
  assert "as_distance: 0.25" in line and "rec: 3.5" in line and "loss_encoder: 1.5" in line
  assert "exp_elbo_fake" not in line and "grad_norm" not in line  # TensorBoard only
  p.message("step 500: saved checkpoint /w/checkpoints/ckpt-500")
  assert out.getvalue().splitlines()[-1] == "step 500: saved checkpoint /w/checkpoints/ckpt-500"
  p.on_train_end()
  assert len(out.getvalue().splitlines()) == 2  # no bar without a terminal


def test_bar_mode_draws_one_bar_over_the_run_with_eta_and_speed(clock, capsys):
  p = progress.RunProgress(
    total_steps=200, start_step=0, method="soft_introvae", mode="bar", every=50
  )
  p.on_train_begin()
  for i in range(100):
    clock.now += 0.1 if i else 5.0
    p.on_train_batch_end(i, {"loss": 1.0, "rec": 2.0, "kl_real": 3.0})
  for i in range(100, 150):
    clock.now += 0.1
    p.on_train_batch_end(
      i, {"loss_encoder": 1.0, "loss_decoder": 2.0, "rec": 2.0, "kl_real": 3.0, "diff_kl": 7.0}
    )
  p.message("step 150: saved checkpoint ckpt-150")
  out = capsys.readouterr().out
  plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out)
  frames = [f for f in re.split(r"[\r\n\b]+", plain) if f.strip()]
  last = frames[-1]
  assert last.startswith("150/200")
  assert "10.00 steps/s" in last and " 5s " in last  # 50 steps left at 10 steps/s
  assert "diff_kl: 7.0000" in last
  assert " loss: " not in last  # the warm-up's metric left the bar when the method's began
  assert "step 150: saved checkpoint ckpt-150" in frames
  assert all(not f.startswith("Epoch") for f in frames)
  p.on_train_end()
  assert capsys.readouterr().out.endswith("\n")


def test_silent_mode_prints_nothing(capsys):
  p = progress.RunProgress(10, 0, "vae", mode="silent")
  p.on_train_begin()
  p.on_train_batch_end(0, {"loss": 1.0})
  p.on_epoch_end(0, {"loss": 1.0})
  p.message("saved")
  p.on_train_end()
  assert capsys.readouterr().out == ""


def test_bar_metrics_exist_for_every_method():
  for method in methods.names():
    shown = [k for k in methods.get(method).bar_metrics if k in methods.get(method).metric_names]
    assert 3 <= len(shown) <= 6, method
