"""Flags and the frozen, validated experiment configuration.

`define_flags()` declares every absl flag (all optional, so tests and libraries can run without
them); `ExperimentConfig.from_flags()` reads them once and `validate()` checks every value
before any work starts, raising `ConfigError` with a message that names the flag and the
allowed values. Only the thin mains (`train.py`, ...) read flags; libraries take a config.

Flagfiles (`configs/*.flags`) start with `--flagfile=configs/base.flags` and list only what
differs; flags given on the command line after `--flagfile` override the file. The configs ship
inside the package (`configs_dir()`); `expand_flagfiles` resolves `--flagfile=configs/NAME.flags`
(and the `configs/base.flags` include) from any working directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap

from absl import flags

METHODS = ("vae", "introvae", "soft_introvae", "as_introvae", "avae", "wgan_gp")
STRATEGIES = ("default", "mirrored", "multi_worker")
AS_KERNELS = ("product", "per_dim")
AS_SQUASH = ("tanh", "none")
REDUCTIONS = ("mean", "sum")
ANNEAL = ("linear", "tanh")
ANNEAL_ORIGINS = ("start", "warmup_end")
INITS = ("torch", "keras")  # = networks.INITS (config does not import networks)
WARMUP_LOSSES = ("reference", "scaled")
ADAM_VARIANTS = ("torch", "keras")  # = optimizers.ADAM_VARIANTS
FUSE_PASSES = ("auto", "on", "off")  # = models.FUSE_PASSES
BAD_IMAGES = ("fail", "skip")
NAN_POLICIES = ("stop", "skip_batch")  # = models.NAN_POLICIES (config does not import models)
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")

FLAGS = flags.FLAGS


class ConfigError(ValueError):
  """A flag has a bad value; the message names the flag and what is allowed."""


class _Definer:
  """`flags` with every DEFINE_* bound to one FlagValues (for tests: a fresh FlagValues)."""

  def __init__(self, flag_values):
    self._flag_values = flag_values

  def __getattr__(self, name):
    define = getattr(flags, name)
    return lambda *args, **kwargs: define(*args, flag_values=self._flag_values, **kwargs)


def define_flags(flag_values=FLAGS):
  """Defines every flag of the training command in `flag_values` (idempotent)."""
  if "method" in flag_values:
    return
  f = _Definer(flag_values)
  f.DEFINE_enum("method", "as_introvae", METHODS, "Training method.")
  f.DEFINE_string("dataset", "fashion_mnist",
                  "8gaussians | 2spirals | checkerboard | rings (2-D toy data) | mnist | "
                  "fashion_mnist | cifar10 | cifar100 | svhn | celeb_a (found on disk, else "
                  "downloaded with TensorFlow Datasets into --data_dir on first use) | "
                  "folder:PATH (your image folder, e.g. CelebA's img_align_celeba) | tfds:NAME "
                  "(a dataset already prepared in --data_dir).")
  f.DEFINE_string("data_dir", None, "TensorFlow Datasets folder: where standard datasets are "
                  "looked for and downloaded (default the TFDS cache, ~/tensorflow_datasets); "
                  "required for --dataset=tfds:NAME.")
  f.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard logs and samples. "
                  "Running the same command again resumes from its last checkpoint.")
  f.DEFINE_integer("train_steps", 10000, "Total training steps (iterations), warm-up included.")
  f.DEFINE_integer("batch_size", 128, "GLOBAL batch size (split across replicas).")
  f.DEFINE_integer("z_dim", 32, "Latent dimension.")
  f.DEFINE_integer("image_size", None, "Image height = width in pixels (images are resized); "
                   "default: the dataset's own (28 for Fashion-MNIST, 32 for CIFAR-10).")
  f.DEFINE_integer("channels", None, "Image channels (1 grey, 3 RGB); default: the dataset's.")
  f.DEFINE_list("filters", None, "Conv channels per resolution, e.g. 64,128; default: the "
                "reference table for --image_size (networks.CHANNEL_TABLES).")
  f.DEFINE_integer("num_hidden", 256, "2-D MLP: hidden units (reference 256).")
  f.DEFINE_integer("num_layers", 3, "2-D MLP: hidden layers after the input layer (reference 3).")
  f.DEFINE_float("lr", 2e-4, "Adam learning rate of every optimizer (reference 2e-4; the "
                "avae and wgan_gp configs set their papers' 5e-5 and 1e-4).")
  f.DEFINE_list("lr_milestones", [], "Steps at which the learning rate is multiplied by "
                "--lr_gamma (MultiStepLR; 2-D reference: 10000,15000).")
  f.DEFINE_float("lr_gamma", 0.1, "Learning-rate decay factor at each milestone.")
  f.DEFINE_float("beta_rec", 1.0, "Weight of the reconstruction term.")
  f.DEFINE_float("beta_kl", 1.0, "Weight of the KL term of real data.")
  f.DEFINE_float("beta_neg", 256.0, "Weight of the KL of rec/fake samples inside expELBO.")
  f.DEFINE_float("gamma_r", 1e-8, "Weight of the rec/fake reconstruction in the decoder loss "
                 "(S-IntroVAE: 1e-8; must be > 0).")
  f.DEFINE_float("margin", 110.0, "IntroVAE hinge margin m (nats).")
  f.DEFINE_float("introvae_alpha", 0.25, "IntroVAE weight alpha of the adversarial terms.")
  f.DEFINE_enum("as_kernel", "per_dim", AS_KERNELS, "AS-Distance kernel: product = the paper's "
                "probability-product kernel (eq. 8 corrected); per_dim = the reference code.")
  f.DEFINE_enum("as_squash", "tanh", AS_SQUASH, "Squash mu/logvar of rec/fake posteriors "
                "before the AS-Distance (reference code: tanh; paper: none).")
  f.DEFINE_enum("as_reduction_encoder", "sum", REDUCTIONS,
                "AS-Distance reduction in the encoder phase (reference code: sum).")
  f.DEFINE_enum("as_reduction_decoder", "mean", REDUCTIONS,
                "AS-Distance reduction in the decoder phase (reference code: mean).")
  f.DEFINE_boolean("as_decoder_kl_squashed", True, "Decoder-phase KL of rec/fake from the "
                   "squashed mu/logvar (reference code: True).")
  f.DEFINE_enum("anneal", "tanh", ANNEAL, "Schedule of c: linear = paper eq. 9, "
                "min(5i/T, 1); tanh = reference code, min(tanh(5i/T), 1). See --anneal_origin "
                "for what i and T count.")
  f.DEFINE_enum("anneal_origin", "start", ANNEAL_ORIGINS, "Where AS-IntroVAE's annealing "
                "counts from: start = the paper's eq. 9 and A_VAE.py (i = the iteration from "
                "the first one, warm-up included; T = --train_steps); warmup_end = i and T "
                "count only the introspective steps after --num_vae.")
  f.DEFINE_boolean("rec_target_grad", True, "Encoder expELBO: let gradients flow through the "
                   "target x_r of rec(x_r, D(z_r)) as the reference code does (its "
                   "`calc_reconstruction_loss(rec, rec_rec)` does not detach `rec`); "
                   "--norec_target_grad uses sg(x_r) there.")
  f.DEFINE_enum("warmup_loss", "reference", WARMUP_LOSSES, "Loss of the --num_vae warm-up "
                "steps: reference = beta_rec * rec + beta_kl * kl, as the reference trainers' "
                "warm-up (no scale s; Adam's second moments carried into the introspective "
                "phase depend on it); scaled = s * (beta_rec * rec + beta_kl * kl), the VAE "
                "method's loss.")
  f.DEFINE_enum("init", "torch", INITS, "Weight initialization: torch = the reference's "
                "PyTorch defaults (weights and biases uniform in +-1/sqrt(fan_in)); keras = "
                "Glorot-uniform weights and zero biases.")
  f.DEFINE_float("adam_beta1", 0.9, "Adam beta_1 of every optimizer (reference 0.9; "
                 "WGAN-GP: 0.5, Gulrajani et al. 2017).")
  f.DEFINE_float("adam_beta2", 0.999, "Adam beta_2 of every optimizer (reference 0.999; "
                 "WGAN-GP: 0.9).")
  f.DEFINE_float("adam_epsilon", 1e-8, "Adam epsilon of every optimizer (reference: "
                 "PyTorch's 1e-8; Keras' default is 1e-7).")
  f.DEFINE_enum("adam_variant", "torch", ADAM_VARIANTS, "Adam's update: torch = PyTorch's "
                "(epsilon added after the second moment's bias correction, as the reference "
                "trainers); keras = keras.optimizers.Adam (epsilon added before it).")
  f.DEFINE_float("avae_alpha", 0.3, "avae: weight of L_v, the discriminator's reconstruction "
                 "error of VAE reconstructions (Khan et al. 2018, Sec. 4: 0.3).")
  f.DEFINE_float("avae_beta", 0.1, "avae: weight of the latent perceptual term L_s (0.1).")
  f.DEFINE_float("avae_gamma", 0.1, "avae: weight of the VAE reconstruction L_e (0.1).")
  f.DEFINE_float("avae_eta", 0.5, "avae: diversity ratio eta = (L_g + alpha L_v) / L_d "
                 "targeted by k_t (eq. 10; 0.5).")
  f.DEFINE_float("pid_ki", 1e-3, "avae: integral gain lambda_1 of the k_t update (eq. 12; "
                 "1e-3).")
  f.DEFINE_float("pid_kp", 1e-5, "avae: proportional gain lambda_2 of the k_t update (1e-5).")
  f.DEFINE_float("pid_kd", 1e-5, "avae: differential gain lambda_3 of the k_t update (1e-5).")
  f.DEFINE_boolean("avae_clip_k", True, "avae: clip k_t to [0, 1] as BEGAN does (the AVAE "
                   "paper does not say).")
  f.DEFINE_float("gp_lambda", 10.0, "wgan_gp: gradient-penalty weight (Gulrajani et al. 2017: "
                 "10; their 2-D toy code: 0.1).")
  f.DEFINE_integer("n_critic", 5, "wgan_gp: critic updates per generator update (5). Each "
                   "step splits its --batch_size real examples into n_critic slices, one per "
                   "critic update, so --batch_size = n_critic x the paper's batch.")
  f.DEFINE_integer("num_vae", 0, "Warm-up steps of plain VAE training before the "
                   "introspective steps (2-D reference: 2000).")
  f.DEFINE_float("ema_decay", 0.999, "EMA decay of the decoder weights used for sampling "
                 "(AS-IntroVAE reference: 0.999); 0 disables the EMA.")
  f.DEFINE_integer("seed", 0, "Random seed (weights, data order, noise).")
  f.DEFINE_enum("strategy", "default", STRATEGIES, "tf.distribute strategy: default (one "
                "device), mirrored (all local GPUs, else the CPU), multi_worker (TF_CONFIG).")
  f.DEFINE_integer("log_every_steps", 100, "Steps between TensorBoard scalar logs (and "
                   "between progress lines when the output is not a terminal).")
  f.DEFINE_integer("checkpoint_every_steps", 1000, "Steps between checkpoints.")
  f.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept in WORKDIR/checkpoints.")
  f.DEFINE_integer("image_every_steps", 1000, "Steps between TensorBoard image grids and "
                   "refreshes of WORKDIR/samples.png and reconstructions.png.")
  f.DEFINE_enum("bad_images", "fail", BAD_IMAGES, "Corrupt or non-image files in an image "
                "folder: fail (error naming the file) or skip (count and report them).")
  f.DEFINE_enum("nan_policy", "stop", NAN_POLICIES, "A batch whose losses or gradients are "
                "NaN/inf: stop (stop training naming the step and terms; the last good "
                "checkpoint is kept) or skip_batch (apply none of its updates, count it, go on; "
                "stop after --max_consecutive_skips such batches in a row).")
  f.DEFINE_integer("max_consecutive_skips", 100, "--nan_policy=skip_batch: stop (as with "
                   "--nan_policy=stop) once this many batches in a row were skipped.")
  f.DEFINE_enum("mixed_precision", "none", MIXED_PRECISION, "16-bit compute in the networks' "
                "hidden layers, float32 variables, inputs, outputs and losses (precision.py): "
                "mixed_float16 (with dynamic loss scaling) for GPUs with float16 units, "
                "mixed_bfloat16 for TPUs, recent GPUs and CPUs with AVX512-BF16/AMX (about 0.65x "
                "the CPU time there); on other CPUs both are slower (BUILD.md).")
  f.DEFINE_enum("fuse_passes", "auto", FUSE_PASSES, "Run the fakes and the reconstructions "
                "of a phase through each network as one concatenated batch: auto = for "
                "networks without BatchNorm (the 2-D MLP), where it is mathematically "
                "identical and faster; on = always (with BatchNorm the batch statistics then "
                "mix fakes and reconstructions, unlike the reference); off = never.")
  f.DEFINE_enum("as_distance_xla", "auto", ("auto", "on", "off"), "AS-IntroVAE: compute "
                "the AS-Distance's [B, B, D] pair terms (value and gradients) in one XLA-"
                "compiled function inside the normal step, also under MirroredStrategy (about "
                "3x faster than TF's one-op-at-a-time kernels on a CPU, BUILD.md): auto = on, "
                "except with --deterministic on a GPU; on; off = plain TF ops. Equal to "
                "float32 rounding.")
  f.DEFINE_boolean("jit_compile", False, "XLA-compile the train step (single device only). "
                   "XLA draws other random numbers than TF's kernels for the same seed, so a "
                   "run with it is reproducible but differs from one without.")
  f.DEFINE_integer("steps_per_execution", 1, "Train steps per tf.function call; "
                   "--log_every_steps, --train_steps and --num_vae must be multiples of it.")
  f.DEFINE_boolean("deterministic", False, "Enable TensorFlow op determinism "
                   "(tf.config.experimental.enable_op_determinism): with --seed, two runs give "
                   "identical losses and weights (slower on GPU).")
  f.DEFINE_integer("inter_op_threads", 0, "TensorFlow inter-op threads (0 = TF default). "
                   "On small CPUs 2 inter-op x 1 intra-op thread beat TF's defaults: 5-15% "
                   "on an idle 2-core machine, up to 2x when other processes share the cores "
                   "(BUILD.md).")
  f.DEFINE_integer("intra_op_threads", 0, "TensorFlow intra-op threads (0 = TF default).")
  f.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Progress output: 1 = one bar "
                "over the whole run (step/train_steps, steps/s, ETA, key metrics), 2 = one plain "
                "line per log window, 0 = silent; auto = the bar on a terminal, else lines.")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything a run needs; field names are the flag names (see `define_flags`)."""

  method: str = "as_introvae"
  dataset: str = "fashion_mnist"
  data_dir: str | None = None
  workdir: str | None = None
  train_steps: int = 10000
  batch_size: int = 128
  z_dim: int = 32
  image_size: int | None = None
  channels: int | None = None
  filters: tuple | None = None
  num_hidden: int = 256
  num_layers: int = 3
  lr: float = 2e-4
  lr_milestones: tuple = ()
  lr_gamma: float = 0.1
  beta_rec: float = 1.0
  beta_kl: float = 1.0
  beta_neg: float = 256.0
  gamma_r: float = 1e-8
  margin: float = 110.0
  introvae_alpha: float = 0.25
  as_kernel: str = "per_dim"
  as_squash: str = "tanh"
  as_reduction_encoder: str = "sum"
  as_reduction_decoder: str = "mean"
  as_decoder_kl_squashed: bool = True
  anneal: str = "tanh"
  anneal_origin: str = "start"
  rec_target_grad: bool = True
  warmup_loss: str = "reference"
  init: str = "torch"
  adam_beta1: float = 0.9
  adam_beta2: float = 0.999
  adam_epsilon: float = 1e-8
  adam_variant: str = "torch"
  avae_alpha: float = 0.3
  avae_beta: float = 0.1
  avae_gamma: float = 0.1
  avae_eta: float = 0.5
  pid_ki: float = 1e-3
  pid_kp: float = 1e-5
  pid_kd: float = 1e-5
  avae_clip_k: bool = True
  gp_lambda: float = 10.0
  n_critic: int = 5
  num_vae: int = 0
  ema_decay: float = 0.999
  seed: int = 0
  strategy: str = "default"
  log_every_steps: int = 100
  checkpoint_every_steps: int = 1000
  keep_checkpoints: int = 3
  image_every_steps: int = 1000
  bad_images: str = "fail"
  nan_policy: str = "stop"
  max_consecutive_skips: int = 100
  mixed_precision: str = "none"
  fuse_passes: str = "auto"
  as_distance_xla: str = "auto"
  jit_compile: bool = False
  steps_per_execution: int = 1
  deterministic: bool = False
  inter_op_threads: int = 0
  intra_op_threads: int = 0
  verbose: str = "auto"

  @classmethod
  def from_flags(cls, flag_values=FLAGS):
    """Builds a config from parsed absl flags; converts list flags and checks int lists."""
    values = {}
    for field in dataclasses.fields(cls):
      values[field.name] = flag_values[field.name].value
    for name in ("filters", "lr_milestones"):
      raw = values[name]
      if raw is None:
        continue
      try:
        values[name] = tuple(int(v) for v in raw)
      except ValueError:
        raise ConfigError(f"--{name} must be a comma-separated list of integers, "
                          f"got {','.join(raw)!r}") from None
    return cls(**values)

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  def to_dict(self):
    return dataclasses.asdict(self)

  def to_json(self):
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  def validate(self, num_replicas=None):
    """Checks every value; raises `ConfigError` naming the flag and what is allowed.

    Args:
      num_replicas: replicas of the strategy, to check that `--batch_size` divides evenly.

    Returns:
      self, for chaining.
    """
    def need(cond, message):
      if not cond:
        raise ConfigError(message)

    need(self.method in METHODS, f"--method must be one of {', '.join(METHODS)}; "
         f"got {self.method!r}")
    need(self.strategy in STRATEGIES, f"--strategy must be one of {', '.join(STRATEGIES)}; "
         f"got {self.strategy!r}")
    need(bool(self.workdir), "--workdir is required: the directory for checkpoints, "
         "TensorBoard logs and samples")
    for name in ("train_steps", "batch_size", "z_dim", "num_hidden", "num_layers",
                 "log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
                 "image_every_steps", "steps_per_execution"):
      value = getattr(self, name)
      need(isinstance(value, int) and value > 0, f"--{name} must be a positive integer; "
           f"got {value!r}")
    for name in ("inter_op_threads", "intra_op_threads"):
      value = getattr(self, name)
      need(value >= 0, f"--{name} must be >= 0 (0 = TensorFlow's default); got {value}")
    for name in ("image_size", "channels"):
      value = getattr(self, name)
      need(value is None or value > 0, f"--{name} must be a positive integer; got {value!r}")
    need(self.channels is None or self.channels in (1, 3, 4),
         f"--channels must be 1 (grey), 3 (RGB) or 4 (RGBA); got {self.channels}")
    need(self.filters is None or (len(self.filters) > 0 and min(self.filters) > 0),
         f"--filters must be positive integers, e.g. 64,128; got {self.filters}")
    need(self.lr > 0, f"--lr must be > 0; got {self.lr}")
    need(0 < self.lr_gamma <= 1, f"--lr_gamma must be in (0, 1]; got {self.lr_gamma}")
    need(list(self.lr_milestones) == sorted(set(self.lr_milestones))
         and all(m > 0 for m in self.lr_milestones),
         f"--lr_milestones must be increasing positive steps; got {self.lr_milestones}")
    for name in ("beta_rec", "beta_kl", "beta_neg", "margin", "introvae_alpha"):
      value = getattr(self, name)
      need(value >= 0, f"--{name} must be >= 0; got {value}")
    need(self.gamma_r > 0, f"--gamma_r must be > 0 (S-IntroVAE uses 1e-8; 0 is known to "
         f"hurt); got {self.gamma_r}")
    need(0 <= self.num_vae <= self.train_steps,
         f"--num_vae must be in [0, --train_steps={self.train_steps}]; got {self.num_vae}")
    need(0 <= self.ema_decay < 1, f"--ema_decay must be in [0, 1); got {self.ema_decay}")
    for name in ("adam_beta1", "adam_beta2"):
      value = getattr(self, name)
      need(0 <= value < 1, f"--{name} must be in [0, 1); got {value}")
    for name in ("avae_alpha", "avae_beta", "avae_gamma", "avae_eta", "pid_ki", "pid_kp",
                 "pid_kd", "gp_lambda"):
      value = getattr(self, name)
      need(value >= 0, f"--{name} must be >= 0; got {value}")
    need(isinstance(self.n_critic, int) and self.n_critic > 0,
         f"--n_critic must be a positive integer; got {self.n_critic!r}")
    if self.method == "wgan_gp":
      need(self.num_vae == 0, f"--method=wgan_gp has no VAE warm-up: --num_vae must be 0; "
           f"got {self.num_vae}")
      need(self.batch_size % (self.n_critic * (num_replicas or 1)) == 0,
           f"--batch_size={self.batch_size} must be divisible by --n_critic={self.n_critic} "
           f"x the number of replicas ({num_replicas or 1}) for --method=wgan_gp (each critic "
           "update takes one slice of the batch)")
    need(self.as_kernel in AS_KERNELS, f"--as_kernel must be one of {AS_KERNELS}")
    need(self.as_squash in AS_SQUASH, f"--as_squash must be one of {AS_SQUASH}")
    need(self.anneal in ANNEAL, f"--anneal must be one of {ANNEAL}")
    need(self.anneal_origin in ANNEAL_ORIGINS,
         f"--anneal_origin must be one of {ANNEAL_ORIGINS}; got {self.anneal_origin!r}")
    need(self.warmup_loss in WARMUP_LOSSES,
         f"--warmup_loss must be one of {WARMUP_LOSSES}; got {self.warmup_loss!r}")
    need(self.init in INITS, f"--init must be one of {INITS}; got {self.init!r}")
    need(self.adam_epsilon > 0, f"--adam_epsilon must be > 0; got {self.adam_epsilon}")
    need(self.adam_variant in ADAM_VARIANTS,
         f"--adam_variant must be one of {ADAM_VARIANTS}; got {self.adam_variant!r}")
    need(self.bad_images in BAD_IMAGES, f"--bad_images must be one of {BAD_IMAGES}")
    need(self.nan_policy in NAN_POLICIES,
         f"--nan_policy must be one of {NAN_POLICIES}; got {self.nan_policy!r}")
    need(isinstance(self.max_consecutive_skips, int) and self.max_consecutive_skips > 0,
         f"--max_consecutive_skips must be a positive integer; got "
         f"{self.max_consecutive_skips!r}")
    need(self.fuse_passes in FUSE_PASSES,
         f"--fuse_passes must be one of {FUSE_PASSES}; got {self.fuse_passes!r}")
    need(self.as_distance_xla in ("auto", "on", "off"),
         f"--as_distance_xla must be one of auto, on, off; got {self.as_distance_xla!r}")
    need(self.mixed_precision in MIXED_PRECISION,
         f"--mixed_precision must be one of {', '.join(MIXED_PRECISION)}; "
         f"got {self.mixed_precision!r}")
    spe = self.steps_per_execution
    if isinstance(spe, int) and spe > 1:
      # Keras runs whole executions: the callbacks (logs, checkpoints, the switch from the
      # VAE warm-up, the stop at --train_steps) only see every spe-th step.
      for name in ("log_every_steps", "train_steps", "num_vae"):
        need(getattr(self, name) % spe == 0,
             f"--{name}={getattr(self, name)} must be a multiple of --steps_per_execution="
             f"{spe}: logs, checkpoints, the end of the VAE warm-up and the end of training "
             "happen between executions")
    if num_replicas is not None:
      need(self.batch_size % num_replicas == 0,
           f"--batch_size={self.batch_size} must be divisible by the number of replicas "
           f"({num_replicas}) of --strategy={self.strategy}")
    if self.jit_compile:
      need(self.strategy == "default" and (num_replicas or 1) == 1,
           "--jit_compile needs --strategy=default (Keras does not use XLA under "
           "tf.distribute)")
    return self


def from_flagfile(path, *args):
  """The `ExperimentConfig` of a flagfile (and further `--flag=value` args), unvalidated.

  Reads a private `FlagValues`, so the process's own flags are untouched (tools that train
  many configs in one process use this). `path` is resolved as `resolve_flagfile` does, so
  `from_flagfile("configs/quickstart.flags")` works from any working directory.

  Raises:
    absl.flags.Error: a missing flagfile or a bad flag value.
  """
  values = flags.FlagValues()
  define_flags(values)
  values(expand_flagfiles(["config", f"--flagfile={path}", *args]))
  return ExperimentConfig.from_flags(values)


# === Packaged configs and flagfile resolution ================================================

CONFIGS_ENV = "AS_INTROVAE_CONFIGS"
"""Environment variable: a folder searched for flagfiles before the packaged configs."""


def configs_dir():
  """The folder of the packaged flagfiles (`quickstart.flags`, `base.flags`, ...).

  An installed package has them in `as_introvae_tf/configs/`; a source checkout (or an
  editable install) in `<repository>/configs/`.

  Raises:
    FileNotFoundError: neither exists (a broken installation).
  """
  here = os.path.dirname(os.path.abspath(__file__))
  for candidate in (os.path.join(here, "configs"), os.path.join(os.path.dirname(here), "configs")):
    if os.path.isfile(os.path.join(candidate, "base.flags")):
      return candidate
  raise FileNotFoundError(f"the packaged configs are missing (no base.flags in {here}/configs "
                          "or beside the package): reinstall as_introvae_tf")


def list_configs():
  """Names of the packaged configs (without `.flags`), sorted; `base` is only an include."""
  return sorted(f[:-len(".flags")] for f in os.listdir(configs_dir())
                if f.endswith(".flags") and f != "base.flags")


def config_path(name):
  """The path of packaged config `name` (`"quickstart"`, `"quickstart.flags"` or
  `"configs/quickstart.flags"`).

  Raises:
    FileNotFoundError: no such packaged config (the message lists the available ones).
  """
  base = os.path.basename(str(name))
  if not base.endswith(".flags"):
    base += ".flags"
  path = os.path.join(configs_dir(), base)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no packaged config {name!r}; available: {', '.join(list_configs())}")
  return path


def resolve_flagfile(path, including=None):
  """Where `--flagfile=PATH` points, from any working directory.

  Tried in order: PATH as given (absolute, or relative to the working directory); for a
  flagfile included by another one, PATH relative to the including file's folder and to its
  parent (the includes are written relative to the repository root: `configs/base.flags`);
  `$AS_INTROVAE_CONFIGS/NAME`; the packaged config `NAME` (`configs_dir()`), where NAME is
  PATH's file name when PATH is `NAME`, `NAME.flags` or `configs/NAME.flags`.

  Raises:
    absl.flags.Error: nothing found (the message lists where it looked and the packaged
      configs).
  """
  path = os.path.expanduser(str(path))
  tried = [os.path.abspath(path)]
  if os.path.isfile(path):
    return path
  if os.path.isabs(path):
    raise flags.Error(f"--flagfile={path}: no such file")
  candidates = []
  if including:
    folder = os.path.dirname(os.path.abspath(including))
    candidates += [os.path.join(folder, path), os.path.join(os.path.dirname(folder), path)]
  parts = os.path.normpath(path).split(os.sep)
  if len(parts) == 1 or (len(parts) == 2 and parts[0] == "configs"):
    name = parts[-1] if parts[-1].endswith(".flags") else parts[-1] + ".flags"
    if os.environ.get(CONFIGS_ENV):
      candidates.append(os.path.join(os.path.expanduser(os.environ[CONFIGS_ENV]), name))
    try:
      candidates.append(os.path.join(configs_dir(), name))
    except FileNotFoundError:
      pass
  for candidate in candidates:
    if os.path.isfile(candidate):
      return candidate
  tried += [os.path.abspath(c) for c in candidates]
  try:
    available = f"; packaged configs: {', '.join(list_configs())}"
  except FileNotFoundError:
    available = ""
  raise flags.Error(f"--flagfile={path}: file not found (looked for "
                    f"{', '.join(dict.fromkeys(tried))}){available}")


def _flagfile_lines(path, stack):
  """The flag lines of a flagfile with its includes expanded in place (absl's format: blank
  lines and lines starting with `#` or `//` are skipped)."""
  real = os.path.realpath(path)
  if real in stack:
    raise flags.Error(f"--flagfile={path}: circular include ({' -> '.join(stack + [real])})")
  try:
    with open(path) as f:
      lines = f.readlines()
  except OSError as e:
    raise flags.Error(f"--flagfile={path}: cannot read it ({e.strerror})") from None
  out = []
  for line in lines:
    text = line.strip()
    if not text or text.startswith("#") or text.startswith("//"):
      continue
    if text.startswith(("--flagfile=", "-flagfile=")):
      include = resolve_flagfile(text.split("=", 1)[1].strip(), including=path)
      out += _flagfile_lines(include, stack + [real])
    else:
      out.append(text)
  return out


def expand_flagfiles(argv):
  """`argv` with every `--flagfile=PATH` (or `--flagfile PATH`) replaced by the file's flags.

  Each flagfile and each include is found with `resolve_flagfile`, so the packaged configs
  work from any working directory while a `configs/X.flags` beside the working directory
  still wins. Order is kept: later flags override earlier ones, as in absl. Arguments after
  `--` are left alone.

  Raises:
    absl.flags.Error: a flagfile that cannot be found or read, or a circular include.
  """
  out = [argv[0]] if argv else []
  args = list(argv[1:])
  i = 0
  while i < len(args):
    arg = args[i]
    if arg == "--":
      out += args[i:]
      break
    path = None
    if arg.startswith(("--flagfile=", "-flagfile=")):
      path = arg.split("=", 1)[1]
    elif arg in ("--flagfile", "-flagfile") and i + 1 < len(args):
      i += 1
      path = args[i]
    if path is None:
      out.append(arg)
    elif path:  # absl ignores an empty --flagfile=
      out += _flagfile_lines(resolve_flagfile(path), [])
    i += 1
  return out


# === Help ====================================================================================

FLAG_GROUPS = (
    ("Method and losses", (
        "method", "beta_rec", "beta_kl", "beta_neg", "gamma_r", "num_vae", "margin",
        "introvae_alpha", "as_kernel", "as_squash", "as_reduction_encoder",
        "as_reduction_decoder", "as_decoder_kl_squashed", "anneal", "anneal_origin",
        "rec_target_grad", "warmup_loss", "avae_alpha", "avae_beta", "avae_gamma", "avae_eta",
        "pid_ki", "pid_kp", "pid_kd", "avae_clip_k", "gp_lambda", "n_critic")),
    ("Data", ("dataset", "data_dir", "image_size", "channels", "bad_images")),
    ("Network", ("z_dim", "filters", "num_hidden", "num_layers", "init")),
    ("Training", (
        "train_steps", "batch_size", "lr", "lr_milestones", "lr_gamma", "adam_beta1",
        "adam_beta2", "adam_epsilon", "adam_variant", "ema_decay", "seed", "nan_policy",
        "max_consecutive_skips")),
    ("Distribution and precision", (
        "strategy", "mixed_precision", "jit_compile", "steps_per_execution", "fuse_passes",
        "as_distance_xla", "deterministic", "inter_op_threads", "intra_op_threads")),
    ("Bookkeeping", (
        "workdir", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
        "image_every_steps", "verbose")),
)
"""The training flags by concern, in the order `--help` lists them (every flag exactly once)."""

_REF = "S-IntroVAE/AS-IntroVAE reference code"
FLAG_SOURCES = {
    "method": "AS-IntroVAE (Lu et al., ACML 2022), this project's main method",
    "beta_rec": "reference image settings (../shared/design/METHOD.md)",
    "beta_kl": "reference image settings",
    "beta_neg": "reference image settings (Fashion-MNIST, CIFAR-10)",
    "gamma_r": "S-IntroVAE paper and code",
    "num_vae": "AS-IntroVAE image code (no warm-up); the 2-D reference uses 2000",
    "introvae_alpha": "IntroVAE paper (Huang et al. 2018)",
    "as_kernel": "AS-IntroVAE reference code (A_VAE.py)",
    "as_squash": "AS-IntroVAE reference code",
    "as_reduction_encoder": "AS-IntroVAE reference code",
    "as_reduction_decoder": "AS-IntroVAE reference code",
    "as_decoder_kl_squashed": "AS-IntroVAE reference code",
    "anneal": "AS-IntroVAE reference code",
    "anneal_origin": "AS-IntroVAE paper eq. 9 and A_VAE.py",
    "rec_target_grad": _REF,
    "warmup_loss": _REF,
    "avae_alpha": "Khan et al. 2018, Sec. 4",
    "avae_beta": "Khan et al. 2018, Sec. 4",
    "avae_gamma": "Khan et al. 2018, Sec. 4",
    "avae_eta": "Khan et al. 2018, eq. 10",
    "pid_ki": "Khan et al. 2018, eq. 12",
    "pid_kp": "Khan et al. 2018, eq. 12",
    "pid_kd": "Khan et al. 2018, eq. 12",
    "avae_clip_k": "BEGAN (the AVAE paper does not say)",
    "gp_lambda": "Gulrajani et al. 2017",
    "n_critic": "Gulrajani et al. 2017",
    "filters": "reference channel table for --image_size",
    "z_dim": "reference Fashion-MNIST setting",
    "num_hidden": "S-IntroVAE 2-D reference",
    "num_layers": "S-IntroVAE 2-D reference",
    "init": "reference (PyTorch's default initialisation)",
    "lr": _REF,
    "lr_gamma": "S-IntroVAE 2-D reference (MultiStepLR)",
    "adam_beta1": "reference (PyTorch Adam defaults)",
    "adam_beta2": "reference (PyTorch Adam defaults)",
    "adam_epsilon": "reference (PyTorch Adam default)",
    "adam_variant": "reference (PyTorch Adam)",
    "ema_decay": "AS-IntroVAE reference code",
    "batch_size": "reference Fashion-MNIST setting",
    "image_size": "the dataset's own size",
    "channels": "the dataset's own channels",
}
"""Where each flag's default comes from; flags not listed are this project's choice."""


def _format_value(value):
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value) if value else "(empty)"
  if value is None:
    return "(unset)"
  return str(value)


def format_help(flag_values=FLAGS, width=100):
  """The grouped help of the training flags: one block per `FLAG_GROUPS` entry, each flag with
  its help text, default, the source of the default, and the value set by a flagfile or the
  command line (if any)."""
  lines = []
  wrap = textwrap.TextWrapper(width=width, initial_indent="      ", subsequent_indent="      ")
  for group, names in FLAG_GROUPS:
    lines += ["", f"{group}:"]
    for name in names:
      flag = flag_values[name]
      lines.append(f"  --{name}")
      lines += wrap.wrap(flag.help)
      info = f"default: {_format_value(flag.default)}"
      info += f"; source: {FLAG_SOURCES.get(name, 'project default')}"
      if flag.present:
        info += f"; now: {_format_value(flag.value)}"
      lines += wrap.wrap(f"[{info}]")
  return "\n".join(lines)


def save_config(config, workdir):
  """Writes WORKDIR/config.json (the flags of the run)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(config.to_json())
  os.replace(tmp, path)
  return path


def load_config(workdir):
  """Reads WORKDIR/config.json back into an `ExperimentConfig`.

  Raises:
    FileNotFoundError: no config.json in `workdir` (not a training run directory).
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: --workdir={workdir} is not a training run "
                            "directory (run as_introvae_tf.train first)")
  with open(path) as f:
    values = json.load(f)
  known = {f.name for f in dataclasses.fields(ExperimentConfig)}
  values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in known}
  return ExperimentConfig(**values)


ARCHITECTURE_KEYS = ("method", "dataset", "z_dim", "image_size", "channels", "filters",
                     "num_hidden", "num_layers")
"""Fields that must not change when a run is resumed from its checkpoint."""
