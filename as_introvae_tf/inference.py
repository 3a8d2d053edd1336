"""Making a trained model ready for inference: the decoder EMA and BatchNorm re-estimation.

`ForInference` is a mixin of `methods.base.IntrospectiveVAE`: `sampling_decoder` (the EMA
decoder if there is one), `decoder_moving_averages` (the one place that reads the EMA the
decoder optimizer keeps), `sync_ema_decoder` and `prepare_for_inference`, which the training
callback (`train_monitor.TrainingMonitor`) calls before every image summary and checkpoint.
`batchnorm_layers` and `average_batchnorm` serve methods that re-estimate other networks
(WGAN-GP's generator on prior samples).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from as_introvae_tf import losses
from as_introvae_tf import precision


class ForInference:
  """The EMA decoder and BatchNorm statistics of a model (a mixin of `IntrospectiveVAE`,
  whose `encoder`, `decoder`, `ema_decoder`, `decoder_optimizer` and `seed` it reads)."""

  def sampling_decoder(self):
    """The decoder used for samples: the EMA decoder if there is one, else the decoder."""
    return self.ema_decoder if self.ema_decoder is not None else self.decoder

  def decoder_moving_averages(self):
    """The EMA of the decoder's trainable weights that the decoder optimizer keeps (Keras
    `use_ema=True`): {id(decoder trainable variable): its moving-average variable}. The one
    place that reads Keras' private attribute for it (`sync_ema_decoder`, the export).

    Raises:
      ValueError: the decoder optimizer keeps no EMA (the run has `--ema_decay=0`), or none
        for one of the decoder's trainable variables (named).
    """
    optimizer = precision.unwrap(self.decoder_optimizer)
    averages = getattr(optimizer, "_model_variables_moving_average", None)
    if not averages:
      raise ValueError(
        "the decoder optimizer keeps no EMA of the decoder weights (use_ema=False: the run "
        "was trained with --ema_decay=0)"
      )
    variables = optimizer._trainable_variables  # pylint: disable=protected-access
    by_id = {id(v): a for v, a in zip(variables, averages)}
    missing = [v.path for v in self.decoder.trainable_variables if id(v) not in by_id]
    if missing:
      raise ValueError(f"the decoder optimizer holds no EMA for {missing[:3]}")
    return by_id

  def sync_ema_decoder(self):
    """Copies the EMA of the decoder weights (`decoder_moving_averages`) and the current
    BatchNorm statistics into `ema_decoder`. Call outside `train_step` (cross-replica
    context) before sampling.

    Raises:
      ValueError: `ema_decoder` and `decoder` have different variables.
    """
    if self.ema_decoder is None:
      return
    averages = self.decoder_moving_averages()
    targets = self.ema_decoder.variables
    sources = self.decoder.variables
    if [v.shape for v in targets] != [v.shape for v in sources]:
      raise ValueError(
        "ema_decoder and decoder have different variables; build both with the same builder"
      )
    for target, source in zip(targets, sources):
      target.assign(averages.get(id(source), source))

  def prepare_for_inference(self, batches):
    """Makes the model ready for inference (`training=False`) and for a checkpoint.

    1. Copies the decoder EMA into `ema_decoder` (`sync_ema_decoder`).
    2. Re-estimates every BatchNorm's moving mean/variance as the plain average over `batches`
       of real data: the encoder on the images, the decoder and the EMA decoder on posterior
       samples of them. Training never reads these statistics (every training pass uses batch
       statistics, as the PyTorch reference in train mode), but each of its passes (on real,
       reconstructed and fake inputs) overwrites them, so without this step inference-mode
       outputs depend on whichever pass ran last (fakes, for the encoder).

    Args:
      batches: list of float32 `[B, *example_shape]` arrays of real training data (a few
        batches; more give steadier statistics). Call outside `train_step`.
    """
    self.sync_ema_decoder()
    encoder_bn = batchnorm_layers(self.encoder)
    decoders = [d for d in (self.decoder, self.ema_decoder) if d is not None]
    if not encoder_bn and not any(batchnorm_layers(d) for d in decoders):
      return
    average_batchnorm(encoder_bn, [lambda x=x: self.encoder(x, training=True) for x in batches])
    latents = []
    for k, x in enumerate(batches):
      mu, logvar = self.encoder(x, training=False)
      eps = tf.random.stateless_normal(tf.shape(mu), seed=[self.seed, 7919 + k])
      latents.append(losses.reparameterize(mu, logvar, eps))
    for decoder in decoders:
      average_batchnorm(
        batchnorm_layers(decoder), [lambda z=z, d=decoder: d(z, training=True) for z in latents]
      )


def batchnorm_layers(network):
  """The `keras.layers.BatchNormalization` layers of `network` (a `keras.Model`), nested
  models included, in layer order."""
  return [
    layer
    for layer in network._flatten_layers()  # pylint: disable=protected-access
    if isinstance(layer, keras.layers.BatchNormalization)
  ]


def average_batchnorm(layers, calls):
  """Sets the moving statistics of `layers` to the average over `calls` (forward passes in
  training mode), using momentum k / (k + 1) at the k-th pass; restores the momentum after."""
  if not layers:
    return
  momentum = [layer.momentum for layer in layers]
  try:
    for k, call in enumerate(calls):
      for layer in layers:
        layer.momentum = k / (k + 1.0)
      call()
  finally:
    for layer, m in zip(layers, momentum):
      layer.momentum = m
