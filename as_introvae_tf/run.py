"""Assembling a run from its config: networks, model, optimizers, checkpoint; and restoring one.

`build_run(config)` is what training, evaluation and export all start from: it validates the
config, picks the strategy, parses the dataset, builds the method's model
(`methods.get(config.method)`) with its networks and optimizers inside the strategy scope, and
wires the `tf.train.Checkpoint` and its manager (`make_checkpoint`). `restore_run(workdir)`
rebuilds a trained run from WORKDIR/config.json on one device in float32 and restores a
checkpoint into it: the one restore path of `as_introvae_tf.load`, evaluation and export.
The training loop (`train_lib`) is not imported here.

Checkpoint layout (object keys, unchanged): `encoder`, `decoder`, `ema_decoder`,
`encoder_optimizer`, `decoder_optimizer`, `skips`, what the method adds
(`extra_checkpoint_items()`), `<optimizer>_loss_scale` under mixed_float16, and `run_info`
(`checkpoints.py`).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import uuid

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from as_introvae_tf import checkpoints as checkpoints_lib
from as_introvae_tf import config as config_lib
from as_introvae_tf import data
from as_introvae_tf import distribute
from as_introvae_tf import hparams
from as_introvae_tf import methods
from as_introvae_tf import networks
from as_introvae_tf import optimizers
from as_introvae_tf import precision
from as_introvae_tf import workdir as workdir_lib
from as_introvae_tf.methods import base

SAMPLE_SEED = 20221


class CheckpointMismatchError(checkpoints_lib.CheckpointError):
  """A checkpoint's variables do not match the model rebuilt from config.json.

  Attributes:
    reason: the first line of the underlying error (TF messages can print whole tensors).
    prefix: the checkpoint.
  """

  def __init__(self, message, reason, prefix=None):
    super().__init__(message)
    self.reason, self.prefix = reason, prefix


@dataclasses.dataclass
class Run:
  """What `build_run` assembles: everything needed to train, restore or export a run."""

  config: config_lib.ExperimentConfig
  strategy: tf.distribute.Strategy
  spec: data.DatasetSpec
  model: base.IntrospectiveVAE
  checkpoint: tf.train.Checkpoint
  manager: tf.train.CheckpointManager
  restored: str | None = None  # the checkpoint prefix restored, if any
  run_info: tf.Variable | None = None  # JSON (checkpoints.run_info), saved in every checkpoint


def learning_rate(config):
  """`--lr`, or MultiStepLR: `lr * lr_gamma**k` from the k-th milestone on.

  PyTorch's `MultiStepLR(milestones=[m])`, stepped once per iteration, gives the decayed rate
  to the update of iteration m (0-based) and later ones. Keras evaluates the schedule at the
  optimizer's `iterations` (= the 0-based index of the update being applied), and
  `PiecewiseConstantDecay` switches AFTER a boundary (`step > boundary`), so the boundary is
  m - 1.
  """
  if not config.lr_milestones:
    return config.lr
  values = [config.lr * config.lr_gamma**k for k in range(len(config.lr_milestones) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(
    [m - 1 for m in config.lr_milestones], values
  )


def adam(config, learning_rate, **kwargs):
  """Adam with the run's variant, betas and epsilon (`--adam_variant`, `--adam_beta1/2`,
  `--adam_epsilon`; `optimizers.adam`)."""
  return optimizers.adam(
    config.adam_variant,
    learning_rate,
    beta_1=config.adam_beta1,
    beta_2=config.adam_beta2,
    epsilon=config.adam_epsilon,
    **kwargs,
  )


def build_encoder(config, spec, name="encoder"):
  """A fresh encoder of the run's architecture, `x -> [mu, logvar]` (`_build_network`)."""
  return _build_network(config, spec, "encoder", name)


def build_decoder(config, spec, name="decoder"):
  """A fresh decoder of the run's architecture, `z -> x` (`_build_network`)."""
  return _build_network(config, spec, "decoder", name)


_BUILDERS = {
  ("2d", "encoder"): networks.build_mlp_encoder,
  ("2d", "decoder"): networks.build_mlp_decoder,
  ("image", "encoder"): networks.build_image_encoder,
  ("image", "decoder"): networks.build_image_decoder,
}


def _build_network(config, spec, part, name):
  """The run's `part` ("encoder" or "decoder"), named `name`: the 2-D MLP or the IntroVAE
  residual network, with the hidden layers in the precision of `--mixed_precision`
  (`precision.layer_dtype`)."""
  dtype = precision.layer_dtype(config.mixed_precision)
  build = _BUILDERS[("2d" if spec.kind == "2d" else "image", part)]
  if spec.kind == "2d":
    return build(
      x_dim=spec.shape[0],
      z_dim=config.z_dim,
      num_hidden=config.num_hidden,
      num_layers=config.num_layers,
      name=name,
      dtype=dtype,
      init=config.init,
    )
  height, _, channels = spec.shape
  return build(
    height, channels, config.z_dim, filters=config.filters, name=name, dtype=dtype, init=config.init
  )


def build_networks(config, spec):
  """(encoder, decoder) of the run, built in this order (`build_encoder`, `build_decoder`)."""
  encoder = build_encoder(config, spec)
  return encoder, build_decoder(config, spec)


def build_model(config, spec, strategy):
  """Builds networks, model and optimizers inside `strategy.scope()` and compiles.

  The method is `methods.get(config.method)`; it may add networks and hyper-parameters
  (`extra_model_kwargs(config, spec)`) and optimizers (`extra_optimizers(config,
  learning_rate)`, passed to `compile`); see `methods/base.py`. With
  `--mixed_precision=mixed_float16` every optimizer is wrapped in a
  `precision.LossScaleOptimizer`.
  """
  cls = methods.get(config.method)
  with strategy.scope():
    encoder, decoder = build_networks(config, spec)
    ema_decoder = None
    if config.ema_decay > 0:
      ema_decoder = build_decoder(config, spec, name="ema_decoder")
      ema_decoder.set_weights(decoder.get_weights())
      ema_decoder.trainable = False
    extra = cls.extra_model_kwargs(config, spec)
    model = cls(
      encoder,
      decoder,
      ema_decoder=ema_decoder,
      example_shape=spec.shape,
      global_batch_size=config.batch_size,
      hparams=hparams.LossHParams.from_config(config),
      total_steps=config.train_steps,
      num_vae=config.num_vae,
      seed=config.seed,
      nan_policy=config.nan_policy,
      fuse_passes=config.fuse_passes,
      name=config.method,
      **extra,
    )
    encoder_optimizer = adam(config, learning_rate(config))
    decoder_optimizer = adam(
      config,
      learning_rate(config),
      use_ema=config.ema_decay > 0,
      ema_momentum=config.ema_decay or 0.99,
    )
    extra_optimizers = cls.extra_optimizers(config, learning_rate(config))
    encoder_optimizer, decoder_optimizer = (
      precision.wrap(o, config.mixed_precision) for o in (encoder_optimizer, decoder_optimizer)
    )
    extra_optimizers = {
      k: precision.wrap(o, config.mixed_precision) for k, o in extra_optimizers.items()
    }
    model.compile(
      encoder_optimizer,
      decoder_optimizer,
      jit_compile=config.jit_compile,
      steps_per_execution=config.steps_per_execution,
      **extra_optimizers,
    )
  return model


def make_checkpoint(model, run_info=None):
  """The tf.train.Checkpoint of a run: networks, EMA decoder and both optimizers, plus what
  the model adds (`extra_checkpoint_items()`: e.g. a discriminator, its optimizer, PID state),
  and `run_info` (a string tf.Variable, `checkpoints.run_info`) when given.

  A loss-scaled optimizer (mixed_float16) is saved as two items: `<name>` = the optimizer it
  wraps (the same keys as a run without loss scaling, so such a checkpoint also restores into
  a float32 model: evaluation and export build one) and `<name>_loss_scale` = the wrapper
  (its dynamic scale and growth counter, and the inner optimizer again, stored once).
  """
  items = dict(
    encoder=model.encoder,
    decoder=model.decoder,
    encoder_optimizer=model.encoder_optimizer,
    decoder_optimizer=model.decoder_optimizer,
  )
  if model.ema_decoder is not None:
    items["ema_decoder"] = model.ema_decoder
  # --nan_policy=skip_batch counters (a resumed run goes on counting)
  items["skips"] = tf.train.Checkpoint(
    skipped_batches=model.skipped_batches, consecutive_skipped=model.consecutive_skipped
  )
  items.update(model.extra_checkpoint_items())
  for name, item in list(items.items()):
    if precision.is_loss_scaled(item):
      items[name] = precision.unwrap(item)
      items[f"{name}_loss_scale"] = item
  if run_info is not None:
    items[checkpoints_lib.RUN_INFO] = run_info
  return tf.train.Checkpoint(**items)


def restore_checkpoint(run, prefix):
  """Restores checkpoint `prefix` into `run` (every object of the run must be matched).

  A checkpoint written before checkpoints carried `run_info` restores without it. A constant
  `--lr` given now wins over the checkpointed one.

  Raises:
    AssertionError / ValueError / tf.errors.OpError: the variables do not match.
  """
  model = run.model
  reader = tf.train.load_checkpoint(prefix)
  checkpoint = run.checkpoint
  if run.run_info is not None and (
    checkpoints_lib.RUN_INFO_KEY not in reader.get_variable_to_shape_map()
  ):
    checkpoint = make_checkpoint(model)  # the same objects, without run_info
  info = run.run_info.numpy() if run.run_info is not None else None
  status = checkpoint.restore(prefix)
  status.assert_existing_objects_matched()
  # Values only in the checkpoint are expected (the loss scales of a mixed_float16 run
  # restored without loss scaling: evaluation, export, a resume in another precision).
  status.expect_partial()
  if info is not None:
    run.run_info.assign(info)  # this workdir's path and run id, in the next checkpoints
  if not run.config.lr_milestones:  # a constant --lr given now wins over the checkpointed one
    for item in [
      model.encoder_optimizer,
      model.decoder_optimizer,
      *model.extra_checkpoint_items().values(),
    ]:
      if isinstance(item, keras.optimizers.Optimizer):
        item.learning_rate = run.config.lr
  run.restored = prefix
  logging.info("Restored %s (step %d)", prefix, int(model.step.numpy()))


def build_run(config, restore=True, run_id=None, check_run_id=False, strategy=None, spec=None):
  """Validates the config and assembles strategy, data spec, model and checkpoint.

  Args:
    config: the run's `ExperimentConfig`.
    restore: True: continue from the newest checkpoint that restores
      (`checkpoints.choose_for_training`: damaged newer ones are moved aside with a warning, a
      broken index is rebuilt); False: fresh variables (callers restore themselves with
      `restore_checkpoint`).
    run_id: the workdir's run id, stored in every checkpoint (`run_info`); None: a fresh one.
    check_run_id: refuse to restore a checkpoint of another run id (method and architecture
      are always checked).
    strategy: the `tf.distribute.Strategy` to use; default `distribute.get_strategy`.
    spec: the `data.DatasetSpec` when the caller knows it (`restore_run` without data);
      default `data.parse_dataset` of the config.

  Raises:
    ConfigError: a bad flag (named in the message).
    ValueError / FileNotFoundError: bad or missing data (named in the message).
    checkpoints.CheckpointError: checkpoints exist but none restores, or the newest intact one
      is from another method, architecture or run.
  """
  config.validate()
  strategy = strategy or distribute.get_strategy(config.strategy)
  config.validate(num_replicas=strategy.num_replicas_in_sync)
  if spec is None:
    spec = data.parse_dataset(
      config.dataset,
      config.image_size,
      config.channels,
      data_dir=config.data_dir,
      max_image_pixels=config.max_image_pixels,
    )
  if spec.kind != "2d" and config.filters is None:
    try:
      networks.default_filters(spec.shape[0])
    except ValueError as e:
      raise config_lib.ConfigError(f"--image_size: {e}; or give --filters") from None
  keras.utils.set_random_seed(config.seed)
  model = build_model(config, spec, strategy)
  run_info = tf.Variable(
    checkpoints_lib.run_info(config, spec.shape, run_id or uuid.uuid4().hex[:16]),
    dtype=tf.string,
    trainable=False,
    name="run_info",
  )
  checkpoint = make_checkpoint(model, run_info)
  workdir = workdir_lib.resolve(config.workdir)
  directory = os.path.join(workdir, "checkpoints")
  if not distribute.is_chief(strategy):
    directory = os.path.join(
      workdir, "tmp_worker_checkpoints", str(strategy.cluster_resolver.task_id)
    )
  prefix = None
  if restore:
    prefix = checkpoints_lib.choose_for_training(
      directory, config, run_id if check_run_id else None
    )
  manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=config.keep_checkpoints)
  run = Run(config, strategy, spec, model, checkpoint, manager, run_info=run_info)
  if prefix is not None:
    restore_checkpoint(run, prefix)
  return run


def restore_run(workdir, checkpoint=None, log=None, read_data=True):
  """THE restore path of a trained run, for `as_introvae_tf.load`, evaluation and export (on
  one device, whatever it was trained with).

  The checkpoint is `checkpoints.choose`'s (the rule training's resume uses too: the newest
  checkpoint that restores; its warnings go to `log`; a checkpoint the live training run is
  writing now is skipped, not called damaged). It is checked against WORKDIR/config.json
  (method, architecture; another run id only warns) before restoring, and the networks are
  rebuilt in float32 whatever `--mixed_precision` the run used (its variables are float32
  either way), so every reader computes in full precision.

  Args:
    workdir: the run directory (relative to the working directory, or absolute; `~` works).
    checkpoint: a checkpoint prefix (e.g. WORKDIR/checkpoints/ckpt-1000) or directory;
      default the choice above in WORKDIR/checkpoints.
    log: called with each warning (str); default `logging.warning`.
    read_data: False: no data file is opened when the example shape is known without it
      (`_spec_without_data`: the checkpoint's `run_info`, a 2-D dataset's name, or the
      checkpoint's variables); only otherwise is `--dataset` read. Evaluation needs the full
      `data.DatasetSpec` (True).

  Returns:
    `Run` with the checkpoint restored (`run.restored` names it, absolute;
    `run.config.workdir` is absolute).

  Raises:
    FileNotFoundError: no `workdir` or `config.json`; `checkpoints.NoCheckpointError` (also a
      FileNotFoundError and a CheckpointError) when the run has saved no checkpoint yet.
    checkpoints.CheckpointError: every checkpoint is damaged (each named), the one asked for
      is damaged (the message names the intact ones), or it was written by another method or
      architecture than config.json's; `CheckpointMismatchError` when its variables do not
      match the rebuilt model.
    config.ConfigError: config.json is unreadable, truncated or not a JSON object (named), or
      no longer valid; ValueError: its data are no longer valid. With `read_data=False`, a
      checkpoint whose shape nothing but the data gives and whose data cannot be read raises
      FileNotFoundError / ValueError naming the checkpoint, what is missing and what to do.
  """
  log = log or logging.warning
  workdir = workdir_lib.resolve(workdir)
  config_lib.check_run_directory(workdir)
  config = config_lib.load_config(workdir)
  directory = os.path.join(workdir, "checkpoints")
  prefix = checkpoints_lib.choose_for_reading(
    directory, checkpoint, log=log, writer=workdir_lib.live_writer(workdir)
  )
  info = checkpoints_lib.read_run_info(prefix)
  problem = checkpoints_lib.mismatch(info, config)
  if problem:
    raise checkpoints_lib.CheckpointError(
      f"{prefix} does not belong to the run in {workdir}/config.json: {problem}"
    )
  run_id = workdir_lib.RunRecord.load(workdir).run_id
  if info and run_id and info.get("run_id") != run_id:
    log(
      f"{prefix} was written by another run (run id {info.get('run_id')}, in "
      f"{info.get('workdir')}) with the same method and architecture"
    )
  config = config.replace(
    workdir=workdir,
    strategy="default",
    jit_compile=False,
    steps_per_execution=1,
    mixed_precision="none",
  )
  spec = None
  if not read_data:
    spec = _spec_without_data(config, info, prefix, workdir)
  run = build_run(config, restore=False, run_id=info and info.get("run_id"), spec=spec)
  try:
    restore_checkpoint(run, prefix)
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    reason = (reason if len(reason) <= 400 else reason[:400] + " ...").rstrip(".")
    # Drop the half-restored run now, quietly: otherwise TF logs every unrestored checkpoint
    # value when it is garbage collected, after the error message.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
      run = None
      gc.collect()
    finally:
      logger.setLevel(level)
    raise CheckpointMismatchError(
      f"{prefix} does not match the model rebuilt from {workdir}/config.json: {reason}",
      reason,
      prefix,
    ) from None
  return run


def _spec_without_data(config, info, prefix, workdir):
  """The `data.DatasetSpec` of a restored run without opening its data, when its example shape
  is known: from the checkpoint's `run_info`; for a 2-D dataset, `(2,)`; for an older image
  checkpoint whose `run_info` lacks it, from its variables (`shape_from_variables`).
  Otherwise `data.parse_dataset` reads the data.

  Raises:
    FileNotFoundError / ValueError: the shape needs the data and they cannot be read; the
      message names the checkpoint and the dataset.
  """
  name = config.dataset.strip().lower()
  shape = info.get("example_shape") if info else None
  if not shape and name in data.TWO_D_DATASETS:
    shape = (2,)
  if not shape:
    shape = shape_from_variables(prefix, config)
  if shape:
    shape = tuple(int(d) for d in shape)
    return data.DatasetSpec("2d" if len(shape) == 1 else "image", name, shape)
  try:
    return data.parse_dataset(
      config.dataset,
      config.image_size,
      config.channels,
      data_dir=config.data_dir,
      max_image_pixels=config.max_image_pixels,
    )
  except (FileNotFoundError, ValueError) as e:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    message = (
      f"{prefix} does not record the example shape (its run_info has no example_shape: "
      "written by an older version) and its variables do not determine it, so the data of "
      f"--dataset={config.dataset} ({workdir}/config.json) must be read, which failed: "
      f"{reason}. Make that data readable again to load the run"
    )
    raise (FileNotFoundError if isinstance(e, FileNotFoundError) else ValueError)(message) from None


def shape_from_variables(prefix, config):
  """The example shape `(H, H, C)` an image run's checkpoint implies, or None.

  The decoder's first Dense kernel is `[z_dim, s * s * filters[-1]]` (s = H / 2**len(filters))
  and the encoder's first and the decoder's last convolutions are `[5, 5, C, filters[0]]` and
  `[5, 5, filters[0], C]` (`networks.build_image_encoder` / `build_image_decoder`), with
  `filters` = `--filters` or, unset, the reference table of H (`networks.CHANNEL_TABLES`).
  Only a single `(H, H, C)` that fits every one of these (and `--image_size` / `--channels`
  when set) is returned.
  """
  shapes = {tuple(s) for s in tf.train.load_checkpoint(prefix).get_variable_to_shape_map().values()}
  tables = [tuple(config.filters)] if config.filters else list(networks.CHANNEL_TABLES.values())
  found = set()
  for filters in set(tables):
    for s in shapes:
      if len(s) != 2 or s[0] != config.z_dim or s[1] % filters[-1]:
        continue
      bottom = int(round((s[1] // filters[-1]) ** 0.5))
      size = bottom * 2 ** len(filters)
      if bottom < 1 or bottom * bottom * filters[-1] != s[1]:
        continue
      if config.image_size not in (None, size):
        continue
      if not config.filters and networks.CHANNEL_TABLES.get(size) != filters:
        continue
      for c in [config.channels] if config.channels else range(1, 5):
        if (5, 5, c, filters[0]) in shapes and (5, 5, filters[0], c) in shapes:
          found.add((size, size, c))
  return found.pop() if len(found) == 1 else None


def sample(model, num, seed=SAMPLE_SEED):
  """Generates `num` samples with the sampling (EMA) decoder from fixed prior noise.

  Call `model.prepare_for_inference` first (a restored checkpoint is already prepared).

  Returns:
    float32 numpy `[num, *example_shape]`; images are clipped to [0, 1].
  """
  z = tf.random.stateless_normal([num, model.z_dim], seed=[seed, 0])
  x = model.sampling_decoder()(z, training=False).numpy()
  return np.clip(x, 0.0, 1.0) if len(model.example_shape) == 3 else x
