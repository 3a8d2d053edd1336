"""Lock-step check of our 2-D step against the S-IntroVAE reference's, ported to PyTorch.

Our Keras model and a PyTorch port of `train_soft_intro_vae_toy`
(taldatech/soft-intro-vae-pytorch, soft_intro_vae_2d/train_soft_intro_vae_2d.py: its
`EncoderSimple`/`DecoderSimple`, `reparameterize`, `calc_reconstruction_loss`, `calc_kl`, the
`num_vae` loop, the E and D updates of one iteration, `torch.optim.Adam` and `MultiStepLR`) start
from the same weights (ours, copied into the port), train on the same batches and draw the same
noise (our model's own `normal_noise(k)` at that step, handed to the port in the reference's
places). At every iteration the port is first set to OUR state (weights, Adam's
moments and step count), then both take one iteration, and the tool compares the updates:

  deviation = ||delta_ours - delta_ref|| / ||delta_ref||    (per network, L2 over all its weights
                                                             and biases; delta = the iteration's
                                                             change of the weights)

with the port in float64 as `delta_ref`. Its float32 twin gives the rounding floor of the same
quantity (`floor`: the port in float32 against the port in float64). The same arithmetic gives a
deviation near that floor (1e-6 to 1e-3, larger after each learning-rate decay, when the updates
shrink towards the rounding of the weights); a term, a gradient path, an optimizer detail or a
learning-rate boundary that differs gives many times the floor at the iterations it touches
(measured, results/reference/: the encoder's target `x_r` detached, the smallest difference we
know of, 76x the floor in the median, up to 4e-3; the warm-up loss times `s`, up to 0.43;
Keras' Adam, up to 0.16). The run crosses
the warm-up's end and both learning-rate milestones (`--num_vae`, `--lr_milestones`, scaled down
from 2000 and 10000/15000 so that a few hundred iterations cover every phase).

Why step by step: two free-running float32 runs of this model separate within tens of
iterations, even two runs of the port whose starts differ by 1e-7 relative (measured with
`--separation_steps=300`, same batches and noise, AMD EPYC with AVX-512: the decoders' distance,
relative to how far they moved, 3e-5 after one iteration, 6e-3 after 50, 9e-2 after 100,
0.16-0.17 from 200 on; when the growth sets in depends on the draw: with the noise of our step
instead of `torch.randn`, 2e-3 after 25 iterations, 7e-2 after 50, 0.2-0.26 from 100 on).
So runs can only be matched one iteration at a time; two runs with different seeds, machines or
libraries are different samples of the same process, and two runs with the same seed but one
changed choice are not paired samples after the first hundred iterations.

The port is written from the reference's lines, with the noise passed in instead of drawn. A
second reader checked it against the reference line by line. What the deviation cannot see:
the decoder-phase terms weighted by `gamma_r` (1e-8; the D phase's reparameterization noise
and the detaches of `rec_rec`/`rec_fake` enter only through them) move the update by about
1e-8 relative, far below the floor, so they rest on that reading and on the unit tests of the
loss terms. And what both sides take as given: the data sampler and the initialization's
distribution (tested apart: tests/test_data.py, tests/test_reference_defaults.py), and the
evaluation (tests/test_metrics.py).

Needs PyTorch (CPU): `pip install torch==2.13.0` (not in requirements.txt; this is a tool).

  python tools/lockstep_reference.py                         # S-IntroVAE, the reference's defaults
  python tools/lockstep_reference.py --override=rec_target_grad=false --expect=differ
  python tools/lockstep_reference.py --out=results/reference/lockstep_soft_introvae.json

Prints one line per reported iteration, a summary per phase and a verdict: `match` when in
every phase, for both networks, the median over iterations of deviation / floor is at most
`--max_ratio` (2), else `differ`. Exits 1 when the verdict is not the `--expect`ed one.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__":  # `python tools/lockstep_reference.py`: the root on sys.path
  sys.path.insert(0, ROOT)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from tools import machine  # noqa: E402
from tools import own_flags  # noqa: E402
from tools.lockstep_port import ReferenceStep  # noqa: E402
from tools.lockstep_port import flat  # noqa: E402
from tools.lockstep_port import keras_flat  # noqa: E402
from tools.lockstep_port import load_our_state  # noqa: E402
from tools.lockstep_port import reference_port  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
  """The command line (defined only when run as a script, so that tests can import it)."""
  flags.DEFINE_string("flagfile_config", "configs/8gaussians_soft_introvae.flags", "Our config.")
  flags.DEFINE_integer("steps", 300, "Iterations to run in lock-step.")
  flags.DEFINE_integer("num_vae", 50, "Warm-up iterations (both sides).")
  flags.DEFINE_list("lr_milestones", ["150", "250"], "MultiStepLR milestones (both sides).")
  flags.DEFINE_integer("batch_size", 512, "Batch size (both sides).")
  flags.DEFINE_integer("num_hidden", 256, "Hidden units of the MLPs (both sides).")
  flags.DEFINE_integer("seed", 0, "Our seed: weights, noise and batches.")
  flags.DEFINE_list(
    "override",
    [],
    "FLAG=VALUE changes to OUR side only (e.g. rec_target_grad=false, adam_variant=keras, "
    "warmup_loss=scaled), to show that the check sees a difference.",
  )
  flags.DEFINE_float(
    "max_ratio",
    2.0,
    "Match: in every phase, for both networks, the median over iterations of deviation / float32 "
    "floor is at most this.",
  )
  flags.DEFINE_enum("expect", "match", ["match", "differ"], "The verdict that exits 0.")
  flags.DEFINE_integer(
    "report_every", 25, "Print every this many iterations (and at phase changes)."
  )
  flags.DEFINE_string("out", "", "Write the result as JSON here.")
  own_flags.require_writable_output("out")  # written after the lock-step run
  flags.DEFINE_integer(
    "separation_steps",
    0,
    "Also run two free float32 runs of the port from starts 1e-7 apart for this many "
    "iterations and print how fast they separate (the module docstring's 'why step by step').",
  )


NOISE_INDEX = {"z_p": 0, "eps": 1, "eps_r": 2, "eps_f": 3, "eps_r_d": 4, "eps_f_d": 5}
"""Our `normal_noise(k)` index of each noise tensor, by the reference's place: the fakes' prior
sample, the real data's reparameterization, then the rec and fake ones of the E and D phases."""


def _our_model(config):
  """Our compiled model of `config` (S-IntroVAE on a 2-D dataset), seeded as `build_run` does."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import run as run_lib  # pylint: disable=import-outside-toplevel

  if config.method != "soft_introvae":
    raise ValueError(f"the port is of S-IntroVAE, not --method={config.method}")
  spec = data.parse_dataset(config.dataset, config.image_size, config.channels)
  if spec.kind != "2d":
    raise ValueError(f"the port is of the 2-D trainer, not --dataset={config.dataset}")
  tf.keras.utils.set_random_seed(config.seed)
  return run_lib.build_model(config, spec, tf.distribute.get_strategy())


def _our_noise(model, it):
  """The noise our step draws at iteration `it`, {name: float32 [B, z]}: `model.normal_noise(k)`
  itself (NOISE_INDEX), read before the step (the model's step counter must be `it`)."""
  step = int(model.step.numpy())
  if step != it:
    raise ValueError(f"our model is at step {step}, not at iteration {it}")
  return {k: model.normal_noise(i).numpy() for k, i in NOISE_INDEX.items()}


def _port(torch, config, reference, dtype=None):
  """A `ReferenceStep` with the architecture of `config` and the hyper-parameters of
  `reference` (betas, gamma_r, lr, milestones, gamma, num_vae), in `dtype`."""
  enc_t, dec_t = reference_port(torch, config.num_hidden, config.num_layers, config.z_dim)
  if dtype is not None:
    enc_t, dec_t = enc_t.to(dtype), dec_t.to(dtype)
  hp = dict(
    beta_rec=reference.beta_rec,
    beta_kl=reference.beta_kl,
    beta_neg=reference.beta_neg,
    gamma_r=reference.gamma_r,
  )
  return ReferenceStep(
    torch,
    enc_t,
    dec_t,
    reference.lr,
    list(reference.lr_milestones),
    reference.lr_gamma,
    hp,
    reference.num_vae,
  )


def lockstep(config, reference, steps, report_every=25, log=print):
  """Runs our model (`config`) and the port (`reference`'s hyper-parameters) in lock-step.

  Args:
    config: our `ExperimentConfig` (S-IntroVAE on a 2-D dataset).
    reference: the config whose betas, gamma_r, learning rate, milestones and num_vae the port
      uses (the same as `config` unless our side has overrides).
    steps: iterations.
    report_every: `log` a line every this many iterations and at phase and rate changes.
    log: where report lines go.

  Returns:
    One dict per iteration: iteration, phase ("warm-up" / "introspective"), and per network
    ("encoder", "decoder") the deviation and its float32 floor (module docstring).

  Raises:
    ValueError: `config` is not S-IntroVAE on a 2-D dataset.
  """
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel

  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel

  model = _our_model(config)
  milestones = list(reference.lr_milestones)
  ports = {
    dtype: _port(torch, config, reference, dtype) for dtype in (torch.float64, torch.float32)
  }
  rng = np.random.default_rng(config.seed)
  pairs = (
    ("encoder", model.encoder, model.encoder_optimizer, "encoder", "opt_e"),
    ("decoder", model.decoder, model.decoder_optimizer, "decoder", "opt_d"),
  )
  model.vae_phase = config.num_vae > 0
  model.make_train_function(force=True)
  rows = []
  for it in range(steps):
    if model.vae_phase and it >= config.num_vae:
      model.vae_phase = False
      model.make_train_function(force=True)
    x = data.sample_2d(config.dataset, config.batch_size, rng).astype(np.float32)
    noise = _our_noise(model, it)
    before = {name: keras_flat(torch, net) for name, net, *_ in pairs}
    deltas = {}
    for dtype, port in ports.items():
      for _, net, opt, port_net, port_opt in pairs:
        load_our_state(torch, net, opt, getattr(port, port_net), getattr(port, port_opt))
      port(
        it,
        torch.from_numpy(x).to(dtype),
        {k: torch.from_numpy(v).to(dtype) for k, v in noise.items()},
      )
      deltas[dtype] = {
        name: flat(torch, getattr(port, port_net)) - before[name]
        for name, _, _, port_net, _ in pairs
      }
    model.train_on_batch(x)
    row = {"iteration": it, "phase": "warm-up" if it < config.num_vae else "introspective"}
    for name, net, *_ in pairs:
      ref = deltas[torch.float64][name]
      size = float(torch.linalg.norm(ref)) or 1.0
      row[name] = float(torch.linalg.norm(keras_flat(torch, net) - before[name] - ref)) / size
      row[f"{name}_floor"] = float(torch.linalg.norm(deltas[torch.float32][name] - ref)) / size
    rows.append(row)
    boundary = it in (config.num_vae - 1, config.num_vae, *[m - 1 for m in milestones], *milestones)
    if it % report_every == 0 or boundary or it == steps - 1:
      lr = ports[torch.float64].opt_e.param_groups[0]["lr"]
      log(
        f"iteration {it:5d} ({row['phase']}, lr after it {lr:.1e}): deviation encoder "
        f"{row['encoder']:.1e} (floor {row['encoder_floor']:.1e}), decoder {row['decoder']:.1e}"
        f" (floor {row['decoder_floor']:.1e})"
      )
  return rows


def separation(config, steps, perturbation=1e-7, log=print):
  """How fast two free-running float32 runs of the port separate: one from our initial weights,
  one from the same weights times (1 + perturbation * N(0, 1)); same batches (our sampler) and
  the same noise (`torch.randn` from one generator, shared by both runs).

  Returns [(iteration, ||theta_a - theta_b|| / ||theta_a - theta_0||)] for the decoder (the
  distance relative to how far run a has moved).
  """
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel

  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel

  model = _our_model(config)
  gen = torch.Generator().manual_seed(config.seed)
  runs = []
  for scale in (0.0, perturbation):
    step = _port(torch, config, config)
    for keras_net, keras_opt, port_net, opt in (
      (model.encoder, model.encoder_optimizer, step.encoder, step.opt_e),
      (model.decoder, model.decoder_optimizer, step.decoder, step.opt_d),
    ):
      load_our_state(torch, keras_net, keras_opt, port_net, opt)
      with torch.no_grad():
        for p in port_net.parameters():
          p.mul_(1 + scale * torch.randn(p.shape, generator=gen))
    runs.append(step)
  start = flat(torch, runs[0].decoder)
  rng = np.random.default_rng(config.seed)
  out = []
  for it in range(steps):
    x = torch.from_numpy(data.sample_2d(config.dataset, config.batch_size, rng).astype(np.float32))
    shape = (config.batch_size, config.z_dim)
    noise = {k: torch.randn(shape, generator=gen) for k in NOISE_INDEX}
    for step in runs:
      step(it, x, noise)
    a, b = flat(torch, runs[0].decoder), flat(torch, runs[1].decoder)
    out.append((it, float(torch.linalg.norm(a - b) / torch.linalg.norm(a - start))))
    log(
      f"free runs, start {perturbation:g} apart: iteration {it:4d}: decoder separation {out[-1][1]:.1e}"
    )
  return out


def verdict(rows, max_ratio=2.0):
  """("match" | "differ", the largest median ratio, `by_phase(rows)`): match when in every phase,
  for both networks, the median over iterations of deviation / floor is <= `max_ratio`."""
  phases = by_phase(rows)
  worst = max(p[f"{n}_median_ratio"] for p in phases.values() for n in ("encoder", "decoder"))
  return ("match" if worst <= max_ratio else "differ"), worst, phases


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel

  from as_introvae_tf import config as config_lib  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(max(1, os.cpu_count() or 1))
  milestones = [int(m) for m in FLAGS.lr_milestones if m]
  common = [
    f"--train_steps={max(FLAGS.steps, FLAGS.separation_steps)}",
    f"--num_vae={FLAGS.num_vae}",
    f"--lr_milestones={','.join(map(str, milestones))}",
    f"--batch_size={FLAGS.batch_size}",
    f"--num_hidden={FLAGS.num_hidden}",
    f"--seed={FLAGS.seed}",
    "--workdir=/tmp/lockstep_unused",
  ]
  ours = [f"--{o}" for o in FLAGS.override]  # absl takes --name=false for booleans
  config = config_lib.from_flagfile(FLAGS.flagfile_config, *common, *ours)
  reference = config_lib.from_flagfile(FLAGS.flagfile_config, *common)
  config.validate()
  if FLAGS.separation_steps:
    separation(config, FLAGS.separation_steps, log=lambda m: print(m, flush=True))
  t0 = time.time()
  rows = lockstep(
    config, reference, FLAGS.steps, FLAGS.report_every, lambda m: print(m, flush=True)
  )
  result, worst, phases = verdict(rows, FLAGS.max_ratio)
  for phase, p in phases.items():
    print(
      f"{phase} ({p['iterations']} iterations): median deviation / floor: encoder "
      f"{p['encoder_median_ratio']:.2f}, decoder {p['decoder_median_ratio']:.2f}; largest "
      f"deviation: encoder {p['encoder_max']:.1e} (floor {p['encoder_floor_max']:.1e}), "
      f"decoder {p['decoder_max']:.1e} (floor {p['decoder_floor_max']:.1e})"
    )
  print(
    f"verdict: {result} (largest median ratio {worst:.2f}, --max_ratio {FLAGS.max_ratio:g}) "
    f"[{time.time() - t0:.0f} s; {machine.describe_cpu()}]"
  )
  if FLAGS.out:
    record = {
      "tool": "tools/lockstep_reference.py",
      "reference": "taldatech/soft-intro-vae-pytorch soft_intro_vae_2d/train_soft_intro_vae_2d.py"
      " (PyTorch port, noise passed in, float64)",
      "config": FLAGS.flagfile_config,
      "steps": FLAGS.steps,
      "num_vae": config.num_vae,
      "lr_milestones": milestones,
      "batch_size": config.batch_size,
      "num_hidden": config.num_hidden,
      "seed": config.seed,
      "override_ours": list(FLAGS.override),
      "max_ratio": FLAGS.max_ratio,
      "largest_median_ratio": worst,
      "verdict": result,
      "by_phase": phases,
      "wall_s": round(time.time() - t0, 1),
      "torch": torch.__version__,
      "tensorflow": tf.__version__,
      "cpu": machine.describe_cpu(),
      "python": platform.python_version(),
      "commit": machine.git_commit(ROOT),
    }
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
      json.dump(record, f, indent=1)
      f.write("\n")
  if result != FLAGS.expect:
    print(f"expected {FLAGS.expect}, got {result}")
    sys.exit(1)


def by_phase(rows):
  """{phase: iterations, and per network the median of deviation / floor and the largest
  deviation and floor}."""
  import statistics  # pylint: disable=import-outside-toplevel

  out = {}
  for phase in dict.fromkeys(r["phase"] for r in rows):
    sel = [r for r in rows if r["phase"] == phase]
    p = out[phase] = {"iterations": len(sel)}
    for n in ("encoder", "decoder"):
      p[f"{n}_median_ratio"] = statistics.median(r[n] / max(r[f"{n}_floor"], 1e-30) for r in sel)
      p[f"{n}_max"] = max(r[n] for r in sel)
      p[f"{n}_floor_max"] = max(r[f"{n}_floor"] for r in sel)
  return out


if __name__ == "__main__":
  define_flags()
  app.run(main)
