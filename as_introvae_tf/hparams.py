"""Every setting of a run, declared once: frozen dataclasses, one per concern.

Each field is one setting: its name (the flag's, unless `flag=` says otherwise), type,
default, help text, allowed values and the source of the default, given with `setting(...)`
(`dataclasses.field(metadata=...)`, `settings.py`). `config.py` generates from these sections
the absl flags, the grouped `--help`, the flat `config.ExperimentConfig` (whose field names,
defaults and config.json keys are the flag names) and the checks of allowed values. The methods
take their own section (`LossHParams`, `AVAEHParams`, `WGANGPHParams`) built from a config with
`Section.from_config(config)`.

The allowed values of every enum setting are defined here and imported by the library
(`losses`, `networks`, `optimizers`, `precision`, `methods/base.py`). This module imports
neither TensorFlow nor absl, so the flags, `--help` and config errors come before TensorFlow
starts.
"""

from __future__ import annotations

import dataclasses
import typing

from as_introvae_tf import methods
from as_introvae_tf.settings import Section
from as_introvae_tf.settings import setting

STRATEGIES = ("default", "mirrored", "multi_worker")
AS_KERNELS = ("product", "per_dim")
AS_SQUASH = ("tanh", "none")
REDUCTIONS = ("mean", "sum")
ANNEAL = ("linear", "tanh")
ANNEAL_ORIGINS = ("start", "warmup_end")
INITS = ("torch", "keras")
"""Weight initializations (`--init`; `networks.py` documents them)."""
WARMUP_LOSSES = ("reference", "scaled")
ADAM_VARIANTS = ("torch", "keras")
"""`--adam_variant`: `torch` = `optimizers.TorchAdam` (the reference's), `keras` =
`keras.optimizers.Adam`."""
FUSE_PASSES = ("auto", "on", "off")
AS_XLA_MODES = ("auto", "on", "off")
"""`--as_distance_xla`: whether AS-IntroVAE's AS-Distance pair terms run as one XLA-compiled
function inside the (uncompiled) step (`losses.as_distance`'s `xla`)."""
BAD_IMAGES = ("fail", "skip")
NAN_POLICIES = ("stop", "skip_batch")
"""What a step does with a batch whose losses or gradients are NaN/inf (`--nan_policy`):
`stop`: record it (`first_non_finite_step`); `train_lib` stops training and keeps the last good
checkpoint. `skip_batch`: apply none of the batch's remaining updates (see
`update_policy.UpdatePolicy.apply_update`), count it in `skipped_batches`, and go on."""
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")
VERBOSITY = ("auto", "0", "1", "2")

_REF = "S-IntroVAE/AS-IntroVAE reference code"
_AS_REF = "AS-IntroVAE reference code"
_KHAN = "Khan et al. 2018, Sec. 4"


@dataclasses.dataclass(frozen=True)
class MethodConfig(Section):
  """Which method trains, and its VAE warm-up."""

  method: str = setting(
    "as_introvae",
    "Training method.",
    choices=methods.names(),
    source="AS-IntroVAE (Lu et al., ACML 2022), this project's main method",
  )
  num_vae: int = setting(
    0,
    "Warm-up steps of plain VAE training before the introspective steps (2-D reference: 2000).",
    source="AS-IntroVAE image code (no warm-up); the 2-D reference uses 2000",
  )


@dataclasses.dataclass(frozen=True)
class LossHParams(Section):
  """Hyper-parameters of the introspective methods' losses (vae, introvae, soft_introvae,
  as_introvae); the field names are the flag names.

  Attributes:
    beta_rec: ELBO weight of the reconstruction error (S-IntroVAE Algorithm 1).
    beta_kl: ELBO weight of the real data's KL.
    beta_neg: ELBO weight of the KL of reconstructions and fakes in the encoder's expELBO.
    gamma_r: weight of the reconstruction terms of the reconstructions and fakes in the
      decoder loss (1e-8, never 0).
    margin: IntroVAE's hinge margin `m` (nats).
    introvae_alpha: IntroVAE's adversarial weight.
    as_kernel: `"product"` (paper) or `"per_dim"` (reference code).
    as_squash: `"tanh"` (reference code squashes mu and logvar of rec/fake posteriors before
      the AS-Distance) or `"none"`.
    as_reduction_encoder: `"sum"` (reference code) or `"mean"`: the AS-Distance's reduction
      over pairs in the encoder phase.
    as_reduction_decoder: `"sum"` or `"mean"` (reference code) in the decoder phase.
    as_decoder_kl_squashed: the reference computes the decoder-phase `kl_rec`, `kl_fake` from
      the squashed values too.
    as_scale: the factor on the reduced AS-Distance in both phases (eq. 6 and 9 weight it by
      `1 - c` only, and neither paper nor code normalises it): with `mean` reductions 1 is the
      MMD estimate, `B*B` the sum over pairs (`B*B*D` for `per_dim`), as the reference's encoder
      phase.
    anneal: `"linear"` (paper eq. 9) or `"tanh"` (reference code) schedule of `c`.
    anneal_steps: `T` of the annealing; 0 = `--train_steps`. A shorter run with a longer
      run's `T` follows that run's `c` up to where it stops (screening).
    anneal_origin: `"start"` (paper eq. 9 and `A_VAE.py`: `i` = the iteration counted from the
      first, warm-up included, `T` = all iterations) or `"warmup_end"` (`i`, `T` count only the
      steps after `num_vae`).
    rec_target_grad: True = the reference code (`calc_reconstruction_loss(rec, rec_rec)` in
      `train_soft_intro_vae*.py` and `A_VAE.py`): the target `x_r` inside
      `rec(x_r, D(z_r))` of the encoder's expELBO is not detached, so part of the encoder's
      gradient flows through `x_r = D(z)`; False = `rec(sg(x_r), D(z_r))`.
    warmup_loss: the `num_vae` warm-up's loss: `"reference"` = `beta_rec * rec + beta_kl * kl`
      as the reference trainers (no scale `s`); `"scaled"` = `s * (...)`. The `vae` method's
      own steps always use `s * (...)` (S-IntroVAE, Algorithm 1).
  """

  beta_rec: float = setting(
    1.0,
    "Weight of the reconstruction term.",
    source="reference image settings (soft_intro_vae/train_soft_intro_vae.py)",
  )
  beta_kl: float = setting(
    1.0, "Weight of the KL term of real data.", source="reference image settings"
  )
  beta_neg: float = setting(
    256.0,
    "Weight of the KL of rec/fake samples inside expELBO.",
    source="reference image settings (Fashion-MNIST, CIFAR-10)",
  )
  gamma_r: float = setting(
    1e-8,
    "Weight of the rec/fake reconstruction in the decoder loss (S-IntroVAE: 1e-8; must be > 0).",
    source="S-IntroVAE paper and code",
  )
  margin: float = setting(110.0, "IntroVAE hinge margin m (nats).")
  introvae_alpha: float = setting(
    0.25,
    "IntroVAE weight alpha of the adversarial terms.",
    source="IntroVAE paper (Huang et al. 2018)",
  )
  as_kernel: str = setting(
    "per_dim",
    "AS-Distance kernel: product = the paper's "
    "probability-product kernel (eq. 8 corrected); per_dim = the "
    "reference code.",
    choices=AS_KERNELS,
    source="AS-IntroVAE reference code (A_VAE.py)",
  )
  as_squash: str = setting(
    "tanh",
    "Squash mu/logvar of rec/fake posteriors before the "
    "AS-Distance (reference code: tanh; paper: none).",
    choices=AS_SQUASH,
    source=_AS_REF,
  )
  as_reduction_encoder: str = setting(
    "sum",
    "AS-Distance reduction in the encoder phase (reference code: sum).",
    choices=REDUCTIONS,
    source=_AS_REF,
  )
  as_reduction_decoder: str = setting(
    "mean",
    "AS-Distance reduction in the decoder phase (reference code: mean).",
    choices=REDUCTIONS,
    source=_AS_REF,
  )
  as_decoder_kl_squashed: bool = setting(
    True,
    "Decoder-phase KL of rec/fake from the squashed mu/logvar (reference code: True).",
    source=_AS_REF,
  )
  as_scale: float = setting(
    1.0,
    "Factor on AS-IntroVAE's reduced AS-Distance in both phases (the encoder's expELBO "
    "exponents and the decoder's AS term): with mean reductions 1 = the mean over pairs (the "
    "MMD estimate), B*B = the sum over the B x B pairs of the batch (times z_dim for "
    "--as_kernel=per_dim), as the reference's encoder phase sums.",
    source="project flag (neither the paper nor the reference code scales it)",
  )
  anneal: str = setting(
    "tanh",
    "Schedule of c: linear = paper eq. 9, min(5i/T, 1); tanh = "
    "reference code, min(tanh(5i/T), 1). See --anneal_origin for what i "
    "and T count.",
    choices=ANNEAL,
    source=_AS_REF,
  )
  anneal_origin: str = setting(
    "start",
    "Where AS-IntroVAE's annealing counts from: start = the paper's eq. 9 and "
    "A_VAE.py (i = the iteration from the first one, warm-up included; T = --train_steps); "
    "warmup_end = i and T count only the introspective steps after --num_vae.",
    choices=ANNEAL_ORIGINS,
    source="AS-IntroVAE paper eq. 9 and A_VAE.py",
  )
  anneal_steps: int = setting(
    0,
    "T of AS-IntroVAE's annealing of c (eq. 9); 0 = --train_steps. Screening a long run at "
    "a shorter budget: --train_steps=8000 --anneal_steps=30000 follows the 30000-step run's "
    "c until step 8000 (the learning-rate milestones are absolute steps already).",
    source="project flag (the paper's T is the run's length)",
  )
  rec_target_grad: bool = setting(
    True,
    "Encoder expELBO: let gradients flow through the target x_r of rec(x_r, D(z_r)) "
    "as the reference code does (its `calc_reconstruction_loss(rec, rec_rec)` does not "
    "detach `rec`); --norec_target_grad uses sg(x_r) there.",
    source=_REF,
  )
  warmup_loss: str = setting(
    "reference",
    "Loss of the --num_vae warm-up steps: reference = beta_rec * rec + beta_kl "
    "* kl, as the reference trainers' warm-up (no scale s; Adam's second moments carried "
    "into the introspective phase depend on it); scaled = s * (beta_rec * rec + beta_kl * "
    "kl), the VAE method's loss.",
    choices=WARMUP_LOSSES,
    source=_REF,
  )


@dataclasses.dataclass(frozen=True)
class AVAEHParams(Section):
  """Hyper-parameters of `methods.avae.AVAE` (flags `--avae_alpha`, ...; defaults:
  Khan et al. 2018, https://arxiv.org/abs/1804.10323, Sec. 4).

  Attributes:
    alpha: weight of `L_v` (0.3).
    beta: weight of `L_s` (0.1).
    gamma: weight of `L_e` (0.1).
    eta: the diversity ratio of eq. 10 (0.5).
    pid_ki: gain lambda_1 (integral) of eq. 12 (1e-3).
    pid_kp: gain lambda_2 (proportional) of eq. 12 (1e-5).
    pid_kd: gain lambda_3 (differential) of eq. 12 (1e-5).
    clip_k: clip `k_t` to [0, 1] (BEGAN; the AVAE paper is silent).
  """

  alpha: float = setting(
    0.3,
    "avae: weight of L_v, the discriminator's reconstruction error "
    "of VAE reconstructions (Khan et al. 2018, Sec. 4: 0.3).",
    flag="avae_alpha",
    source=_KHAN,
  )
  beta: float = setting(
    0.1, "avae: weight of the latent perceptual term L_s (0.1).", flag="avae_beta", source=_KHAN
  )
  gamma: float = setting(
    0.1, "avae: weight of the VAE reconstruction L_e (0.1).", flag="avae_gamma", source=_KHAN
  )
  eta: float = setting(
    0.5,
    "avae: diversity ratio eta = (L_g + alpha L_v) / L_d targeted by k_t (eq. 10; 0.5).",
    flag="avae_eta",
    source="Khan et al. 2018, eq. 10",
  )
  pid_ki: float = setting(
    1e-3,
    "avae: integral gain lambda_1 of the k_t update (eq. 12; 1e-3).",
    source="Khan et al. 2018, eq. 12",
  )
  pid_kp: float = setting(
    1e-5,
    "avae: proportional gain lambda_2 of the k_t update (1e-5).",
    source="Khan et al. 2018, eq. 12",
  )
  pid_kd: float = setting(
    1e-5,
    "avae: differential gain lambda_3 of the k_t update (1e-5).",
    source="Khan et al. 2018, eq. 12",
  )
  clip_k: bool = setting(
    True,
    "avae: clip k_t to [0, 1] as BEGAN does (the AVAE paper does not say).",
    flag="avae_clip_k",
    source="BEGAN (the AVAE paper does not say)",
  )


@dataclasses.dataclass(frozen=True)
class WGANGPHParams(Section):
  """Hyper-parameters of `methods.wgan_gp.WGANGP` (flags `--gp_lambda`, `--n_critic`).

  Attributes:
    gp_lambda: weight of the gradient penalty (Gulrajani et al.: 10; their toy code: 0.1).
    n_critic: critic updates per generator update (5).
  """

  gp_lambda: float = setting(
    10.0,
    "wgan_gp: gradient-penalty weight (Gulrajani et al. 2017: 10; their 2-D toy code: 0.1).",
    source="Gulrajani et al. 2017",
  )
  n_critic: int = setting(
    5,
    "wgan_gp: critic updates per generator update (5). Each step "
    "splits its --batch_size real examples into n_critic slices, one per "
    "critic update, so --batch_size = n_critic x the paper's batch.",
    source="Gulrajani et al. 2017",
  )


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
  """The dataset and how it is read."""

  GROUP: typing.ClassVar[str] = "Data"

  dataset: str = setting(
    "fashion_mnist",
    "8gaussians | 2spirals | checkerboard | rings (2-D toy data) | mnist | "
    "fashion_mnist | cifar10 | cifar100 | svhn | celeb_a (found on disk, else downloaded "
    "with TensorFlow Datasets into --data_dir on first use) | folder:PATH (your image "
    "folder, e.g. CelebA's img_align_celeba) | tfds:NAME (a dataset already prepared in "
    "--data_dir).",
  )
  data_dir: str | None = setting(
    None,
    "TensorFlow Datasets folder: where standard datasets are looked for and downloaded "
    "(default the TFDS cache, ~/tensorflow_datasets); required for --dataset=tfds:NAME.",
  )
  image_size: int | None = setting(
    None,
    "Image height = width in pixels (images are resized); default: the dataset's own "
    "(28 for Fashion-MNIST, 32 for CIFAR-10).",
    source="the dataset's own size",
  )
  channels: int | None = setting(
    None,
    "Image channels (1 grey, 3 RGB); default: the dataset's.",
    source="the dataset's own channels",
  )
  bad_images: str = setting(
    "fail",
    "Corrupt or non-image files in an image folder: fail "
    "(error naming the file) or skip (count and report them).",
    choices=BAD_IMAGES,
  )
  max_image_pixels: int = setting(
    50_000_000,
    "Image folders: most decoded pixels (width x height) per image file; a larger file is "
    "a bad image (named with its size, before it is decoded; see --bad_images). An image "
    "takes about 20 bytes per pixel while it decodes (estimated: 1 GiB at 50 MP).",
  )


@dataclasses.dataclass(frozen=True)
class NetworkConfig(Section):
  """The architecture of the networks."""

  GROUP: typing.ClassVar[str] = "Network"

  z_dim: int = setting(32, "Latent dimension.", source="reference Fashion-MNIST setting")
  filters: tuple | None = setting(
    None,
    "Conv channels per resolution, e.g. 64,128; default: the reference table for "
    "--image_size (networks.CHANNEL_TABLES).",
    source="reference channel table for --image_size",
  )
  num_hidden: int = setting(
    256, "2-D MLP: hidden units (reference 256).", source="S-IntroVAE 2-D reference"
  )
  num_layers: int = setting(
    3,
    "2-D MLP: hidden layers after the input layer (reference 3).",
    source="S-IntroVAE 2-D reference",
  )
  init: str = setting(
    "torch",
    "Weight initialization: torch = the reference's PyTorch "
    "defaults (weights and biases uniform in +-1/sqrt(fan_in)); keras = "
    "Glorot-uniform weights and zero biases.",
    choices=INITS,
    source="reference (PyTorch's default initialisation)",
  )


@dataclasses.dataclass(frozen=True)
class TrainerConfig(Section):
  """The optimization: steps, batch, optimizers, EMA, seed, NaN policy."""

  GROUP: typing.ClassVar[str] = "Training"

  train_steps: int = setting(10000, "Total training steps (iterations), warm-up included.")
  batch_size: int = setting(
    128, "GLOBAL batch size (split across replicas).", source="reference Fashion-MNIST setting"
  )
  lr: float = setting(
    2e-4,
    "Adam learning rate of every optimizer (reference 2e-4; the avae "
    "and wgan_gp configs set their papers' 5e-5 and 1e-4).",
    source=_REF,
  )
  lr_milestones: tuple = setting(
    (),
    "Steps at which the learning rate is multiplied by "
    "--lr_gamma (MultiStepLR; 2-D reference: 10000,15000).",
  )
  lr_gamma: float = setting(
    0.1,
    "Learning-rate decay factor at each milestone.",
    source="S-IntroVAE 2-D reference (MultiStepLR)",
  )
  adam_beta1: float = setting(
    0.9,
    "Adam beta_1 of every optimizer (reference 0.9; WGAN-GP: 0.5, Gulrajani et al. 2017).",
    source="reference (PyTorch Adam defaults)",
  )
  adam_beta2: float = setting(
    0.999,
    "Adam beta_2 of every optimizer (reference 0.999; WGAN-GP: 0.9).",
    source="reference (PyTorch Adam defaults)",
  )
  adam_epsilon: float = setting(
    1e-8,
    "Adam epsilon of every optimizer (reference: PyTorch's 1e-8; Keras' default is 1e-7).",
    source="reference (PyTorch Adam default)",
  )
  adam_variant: str = setting(
    "torch",
    "Adam's update: torch = PyTorch's (epsilon added after the second moment's bias "
    "correction, as the reference trainers); keras = keras.optimizers.Adam (epsilon added "
    "before it).",
    choices=ADAM_VARIANTS,
    source="reference (PyTorch Adam)",
  )
  ema_decay: float = setting(
    0.999,
    "EMA decay of the decoder weights used for sampling "
    "(AS-IntroVAE reference: 0.999); 0 disables the EMA.",
    source=_AS_REF,
  )
  seed: int = setting(0, "Random seed (weights, data order, noise).")
  nan_policy: str = setting(
    "stop",
    "A batch whose losses or gradients are NaN/inf: stop (stop training naming the "
    "step and terms; the last good checkpoint is kept) or skip_batch (apply none of its "
    "updates, count it, go on; stop after --max_consecutive_skips such batches in a row).",
    choices=NAN_POLICIES,
  )
  max_consecutive_skips: int = setting(
    100,
    "--nan_policy=skip_batch: stop (as with "
    "--nan_policy=stop) once this many batches in a row "
    "were skipped.",
  )


@dataclasses.dataclass(frozen=True)
class RuntimeConfig(Section):
  """Where and how the steps run: distribution, precision, XLA, threads."""

  GROUP: typing.ClassVar[str] = "Distribution and precision"

  strategy: str = setting(
    "default",
    "tf.distribute strategy: default (one device), mirrored "
    "(all local GPUs, else the CPU), multi_worker (TF_CONFIG).",
    choices=STRATEGIES,
  )
  mixed_precision: str = setting(
    "none",
    "16-bit compute in the networks' hidden layers, float32 variables, inputs, "
    "outputs and losses (precision.py): mixed_float16 (with dynamic loss scaling) for GPUs "
    "with float16 units, mixed_bfloat16 for TPUs, recent GPUs and CPUs with AVX512-BF16/AMX "
    "(about 0.65x the CPU time there); on other CPUs both are slower (docs/benchmark.md).",
    choices=MIXED_PRECISION,
  )
  jit_compile: bool = setting(
    False,
    "XLA-compile the train step (single device only). XLA "
    "draws other random numbers than TF's kernels for the same "
    "seed, so a run with it is reproducible but differs from one "
    "without.",
  )
  steps_per_execution: int = setting(
    1,
    "Train steps per tf.function call; --log_every_steps, "
    "--train_steps and --num_vae must be multiples of it.",
  )
  fuse_passes: str = setting(
    "auto",
    "Run the fakes and the reconstructions of a phase through each network as one "
    "concatenated batch: auto = for networks without BatchNorm (the 2-D MLP), where it is "
    "mathematically identical and faster; on = always (with BatchNorm the batch statistics "
    "then mix fakes and reconstructions, unlike the reference); off = never.",
    choices=FUSE_PASSES,
  )
  as_distance_xla: str = setting(
    "auto",
    "AS-IntroVAE: compute the AS-Distance's [B, B, D] pair terms (value and "
    "gradients) in one XLA-compiled function inside the normal step, also under "
    "MirroredStrategy (about 3x faster than TF's one-op-at-a-time kernels on a CPU, "
    "docs/benchmark.md): auto = on, except with --deterministic on a GPU; on; off = plain TF ops. "
    "Equal to float32 rounding.",
    choices=AS_XLA_MODES,
  )
  deterministic: bool = setting(
    False,
    "Enable TensorFlow op determinism "
    "(tf.config.experimental.enable_op_determinism): with --seed, "
    "two runs give identical losses and weights (slower on GPU).",
  )
  inter_op_threads: int = setting(
    0,
    "TensorFlow inter-op threads (0 = TF default). The 2-D configs set 2 inter-op x 1 "
    "intra-op: on a 2-core CPU without AVX-512 it beat TF's defaults by 5-15% idle (up to 2x "
    "under load); on one with AVX-512 TF's defaults were about 7% faster in the one clean "
    "round measured (docs/benchmark.md, Threads).",
  )
  intra_op_threads: int = setting(0, "TensorFlow intra-op threads (0 = TF default).")


@dataclasses.dataclass(frozen=True)
class BookkeepingConfig(Section):
  """The workdir and what is written there, and when."""

  GROUP: typing.ClassVar[str] = "Bookkeeping"

  workdir: str | None = setting(
    None,
    "Directory for checkpoints, TensorBoard logs and "
    "samples. Running the same command again resumes from its "
    "last checkpoint.",
  )
  log_every_steps: int = setting(
    100,
    "Steps between TensorBoard scalar logs (and between "
    "progress lines when the output is not a terminal).",
  )
  checkpoint_every_steps: int = setting(1000, "Steps between checkpoints.")
  keep_checkpoints: int = setting(3, "Checkpoints kept in WORKDIR/checkpoints.")
  image_every_steps: int = setting(
    1000,
    "Steps between TensorBoard image grids and refreshes "
    "of WORKDIR/samples.png and reconstructions.png.",
  )
  verbose: str = setting(
    "auto",
    "Progress output: 1 = one bar over the whole run "
    "(step/train_steps, steps/s, ETA, key metrics), 2 = one plain line "
    "per log window, 0 = silent; auto = the bar on a terminal, else "
    "lines.",
    choices=VERBOSITY,
  )


SECTIONS = (
  MethodConfig,
  DataConfig,
  NetworkConfig,
  TrainerConfig,
  LossHParams,
  AVAEHParams,
  WGANGPHParams,
  RuntimeConfig,
  BookkeepingConfig,
)
"""Every section of a run's settings; `config.ExperimentConfig` has all their fields."""
