"""The result files of `tools/reproduce_2d.py` (one JSON per finished run) and what goes into
them beside the metrics: where a run's file lies, when an existing one is reused, the training
wall time and the training scalars from the run's TensorBoard events, and the papers' numbers
the tables cite."""

import json
import os

REFERENCE_GRID_POINTS = 1024  # as_introvae_tf.metrics.GRID_POINTS (not imported: TensorFlow)

PAPER = {  # AS-IntroVAE paper Table 1 (KL / JSD); S-IntroVAE paper Table 2 is added below
  ("C1", "vae"): "KL 220.2, JSD 110.1",
  ("C1", "introvae"): "KL 192.4, JSD 56.0",
  ("C1", "soft_introvae"): "KL 50.2, JSD 16.9",
  ("C1", "as_introvae"): "KL 3.4, JSD 5.6",
  ("C2", "vae"): "KL 220.3, JSD 110.0",
  ("C2", "introvae"): "KL 191.1, JSD 68.0",
  ("C2", "soft_introvae"): "KL 136.5, JSD 36.6",
  ("C2", "as_introvae"): "KL 1.3, JSD 4.4",
  ("C3", "vae"): "KL 220.2, JSD 109.8",
  ("C3", "introvae"): "KL 64.0, JSD 53.0",
  ("C3", "soft_introvae"): "KL 46.2, JSD 9.6",
  ("C3", "as_introvae"): "KL 2.0, JSD 7.1",
}
_SOFT_TABLE2 = {  # S-IntroVAE paper Table 2: gnELBO (1e-7), KL, JSD; 5 seeds, 30000 steps
  "8gaussians": {
    "vae": (7.42, 6.72, 16.04),
    "introvae": (1.29, 2.53, 1.67),
    "soft_introvae": (1.25, 1.25, 0.96),
  },
  "2spirals": {
    "vae": (6.19, 9.8, 4.89),
    "introvae": (5.87, 8.38, 3.58),
    "soft_introvae": (5.21, 8.13, 3.37),
  },
  "checkerboard": {
    "vae": (8.53, 20.91, 9.78),
    "introvae": (8.54, 19.03, 9.07),
    "soft_introvae": (4.47, 20.27, 9.06),
  },
  "rings": {
    "vae": (6.4, 13.16, 7.26),
    "introvae": (7.25, 10.21, 4.24),
    "soft_introvae": (6.3, 9.18, 4.13),
  },
}  # AS-IntroVAE's paper reports no 2-D set other than 8 Gaussians C1-C3.
PAPER.update(
  {
    (d, m): f"KL {kl}, JSD {jsd}, gnELBO {g}"
    for d, row in _SOFT_TABLE2.items()
    for m, (g, kl, jsd) in row.items()
  }
)


def result_path(results_dir, table, cell, method, steps, seed, tag=""):
  """`RESULTS/TABLE/CELL_METHOD[_TAG]_STEPS_seedK.json`."""
  name = "_".join(p for p in (cell, method, tag, str(steps), f"seed{seed}") if p)
  return os.path.join(results_dir, table, name + ".json")


def load_result(path, eval_draws=None, grid_points=None, schedule_steps=None):
  """The result of a finished run, or None (missing, or evaluated with other draws or another
  gnELBO grid, or trained on another schedule; a file without `grid_points` was evaluated on
  the reference grid, one without `schedule_steps` trained on its own `train_steps`)."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f)
  if schedule_steps is not None and saved.get("schedule_steps", saved["train_steps"]) != (
    schedule_steps
  ):
    return None
  if eval_draws is not None and saved.get("eval_draws") != eval_draws:
    return None
  if grid_points is not None and saved.get("grid_points", REFERENCE_GRID_POINTS) != grid_points:
    return None
  return saved


def training_wall_seconds(workdir):
  """Seconds from the first to the last TensorBoard event of the run in `workdir` (all
  segments of a resumed run, pauses between them included), or None without events."""
  import glob  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  times = []
  for path in glob.glob(os.path.join(workdir, "tensorboard", "train", "events.out.tfevents.*")):
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        if event.summary.value:
          times.append(event.wall_time)
    except tf.errors.DataLossError:  # a run killed while writing: keep what was read
      pass
  return max(times) - min(times) if len(times) > 1 else None


TRAJECTORY = (
  "rec",
  "kl_real",
  "kl_fake",
  "exp_elbo_rec",
  "exp_elbo_fake",
  "grad_norm_encoder",
  "as_distance",
  "c",
  "as_share_rec",
  "as_share_fake",
  "as_factor",
  "learning_rate",
)
"""The training scalars a result file keeps at every logged step (those the run logged), so
that the evidence of how a run trained outlives its workdir."""


def training_trajectory(workdir, names=TRAJECTORY):
  """`{"step": [...], NAME: [...]}`: the TensorBoard scalars `train/NAME` of the run in
  `workdir` at every step where the first of them was logged (the latest value per step when a
  resumed run logged a step twice; 4 significant digits); names the run never logged are
  left out. Empty without events."""
  import glob  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  values = {}
  paths = sorted(glob.glob(os.path.join(workdir, "tensorboard", "train", "events.out.tfevents.*")))
  for path in paths:
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          name = value.tag.removeprefix("train/")
          if name in names:
            number = (
              float(tf.make_ndarray(value.tensor))
              if value.HasField("tensor")
              else value.simple_value
            )
            values.setdefault(name, {})[int(event.step)] = float(f"{number:.4g}")
    except tf.errors.DataLossError:  # a run killed while writing: keep what was read
      pass
  logged = [n for n in names if n in values]
  if not logged:
    return {}
  steps = sorted(values[logged[0]])
  return {"step": steps, **{n: [values[n].get(k) for k in steps] for n in logged}}
