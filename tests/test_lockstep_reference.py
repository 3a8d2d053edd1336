"""tools/lockstep_reference.py: our S-IntroVAE step against a PyTorch port of the reference's,
one iteration at a time from the same state (tiny networks; the 512-batch, 256-unit run is the
tool's, its result in results/reference/)."""

import pytest

torch = pytest.importorskip(
  "torch",
  reason="PyTorch is not installed (the reference port needs it: pip install torch==2.13.0)",
  exc_type=ModuleNotFoundError,  # an installed but broken torch fails instead of skipping
)

from as_introvae_tf import config as config_lib  # noqa: E402
from tools import lockstep_reference  # noqa: E402
from tools import reference_2d  # noqa: E402


@pytest.fixture(scope="module")
def tool():
  return lockstep_reference


def _config(*extra):
  return config_lib.from_flagfile(
    "configs/8gaussians_soft_introvae.flags",
    "--train_steps=12",
    "--num_vae=4",
    "--lr_milestones=8",
    "--batch_size=64",
    "--num_hidden=16",
    "--num_layers=1",
    "--workdir=/tmp/unused",
    *extra,
  )


def test_our_step_matches_the_reference_port_through_warmup_switch_and_milestone(tool):
  """Default flags = the reference's choices: every iteration's update equals the port's to
  the float32 rounding floor (median ratio <= 2), in the warm-up and the introspective phase,
  across the learning-rate milestone."""
  config = _config()
  rows = tool.lockstep(config, config, steps=12, log=lambda _: None)
  verdict, worst, phases = tool.verdict(rows)
  assert set(phases) == {"warm-up", "introspective"}
  assert verdict == "match", phases
  assert worst <= 2.0
  # float32 rounding: about 3e-5 of the update, 5e-4 after the decay (smaller updates)
  assert all(r["encoder"] < 2e-3 and r["decoder"] < 2e-3 for r in rows), rows


@pytest.mark.parametrize(
  "override, network, phase",
  [
    ("--norec_target_grad", "encoder", "introspective"),  # one gradient path, E only
    ("--warmup_loss=scaled", "decoder", "warm-up"),  # the warm-up loss times s
  ],
)
def test_the_check_sees_a_one_path_difference(tool, override, network, phase):
  """A non-reference choice on our side shows as a deviation well above the floor in the
  network and phase it touches: the check can fail."""
  rows = tool.lockstep(_config(override), _config(), steps=8, log=lambda _: None)
  verdict, _, phases = tool.verdict(rows)
  assert verdict == "differ"
  assert phases[phase][f"{network}_median_ratio"] > 5.0, phases


def test_reference_run_samples_the_data_we_train_on():
  """tools/reference_2d.py's port of ToyDataset('8Gaussians').next_batch and our sampler: the
  same 8 centres, each about 1/8 of the points, the same spread around them."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import metrics  # pylint: disable=import-outside-toplevel

  np.random.seed(0)
  theirs = reference_2d.sample_8gaussians(40000)
  ours = data.sample_2d("8gaussians", 40000, np.random.default_rng(0))
  centres = metrics.eight_gaussians_modes()
  for points in (theirs, ours):
    d = np.linalg.norm(points[:, None, :] - centres[None], axis=-1)
    nearest = d.argmin(1)
    np.testing.assert_allclose(np.bincount(nearest, minlength=8) / len(points), 1 / 8, atol=0.01)
    np.testing.assert_allclose(d.min(1).std(), 0.02 / 1.414 * 0.655, rtol=0.05)
