"""Fused passes (issue 15): the fakes and reconstructions of a phase through each network as one
concatenated batch give the same step as separate passes (networks without BatchNorm)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import data
from as_introvae_tf import hparams
from as_introvae_tf import methods
from as_introvae_tf import networks

import harness

BATCH = 32
HP = hparams.LossHParams(
  beta_rec=0.2,
  beta_kl=0.3,
  beta_neg=0.9,
  margin=2.0,
  as_kernel="product",
  as_squash="none",
  as_reduction_encoder="mean",
  anneal="linear",
)


def _model(method, fuse, weights=None):
  encoder = networks.build_mlp_encoder(z_dim=2, num_hidden=32, num_layers=2)
  decoder = networks.build_mlp_decoder(z_dim=2, num_hidden=32, num_layers=2)
  if weights is not None:
    encoder.set_weights(weights[0])
    decoder.set_weights(weights[1])
  model = methods.get(method)(
    encoder,
    decoder,
    example_shape=(2,),
    global_batch_size=BATCH,
    hparams=HP,
    total_steps=10,
    seed=5,
    fuse_passes=fuse,
  )
  model.compile(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1))
  return model


METHODS = [n for n, c in methods.all_methods().items() if c.hparams_class is hparams.LossHParams]
"""The methods built from (encoder, decoder) and `LossHParams` alone (the registry's)."""


def _spy_on_passes(model):
  """Records, while tracing, how many batches each `model.passes` call was given and the batch
  size of every network call it made: `(joint, sizes)`, two lists."""
  joint, sizes = [], []
  passes = model.passes

  def recording_passes(network, inputs):
    joint.append(len(inputs))

    def call(x, training):
      sizes.append(x.shape[0])
      return network(x, training=training)

    return passes(call, inputs)

  model.passes = recording_passes
  return joint, sizes


@pytest.mark.parametrize("method", harness.method_params(METHODS))
def test_fused_and_separate_passes_give_the_same_steps(method):
  keras.utils.set_random_seed(0)
  separate = _model(method, "off")
  fused = _model(
    method, "on", weights=(separate.encoder.get_weights(), separate.decoder.get_weights())
  )
  assert fused.fused_passes and not separate.fused_passes
  (_, fused_sizes), (separate_joint, separate_sizes) = (
    _spy_on_passes(fused),
    _spy_on_passes(separate),
  )
  start = [w.copy() for w in separate.encoder.get_weights()]
  x = data.sample_2d("8gaussians", BATCH, np.random.default_rng(1)).astype(np.float32)
  ds = tf.data.Dataset.from_tensors(x).repeat()
  fit = fused.fit(ds, steps_per_epoch=3, epochs=1, verbose=0).history
  logs = [separate.fit(ds, steps_per_epoch=3, epochs=1, verbose=0).history, fit]
  # The networks really see one joined batch when fused (where the step hands passes() two
  # batches at once: every method but the VAE), and never when not.
  assert set(separate_sizes) <= {BATCH}, separate_sizes
  if any(n > 1 for n in separate_joint):
    assert 2 * BATCH in fused_sizes, fused_sizes
  else:
    assert set(fused_sizes) <= {BATCH}, fused_sizes
  for name in logs[0]:
    np.testing.assert_allclose(logs[1][name], logs[0][name], rtol=1e-5, atol=1e-6, err_msg=name)
  for a, b in zip(
    separate.encoder.weights + separate.decoder.weights,
    fused.encoder.weights + fused.decoder.weights,
  ):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)
  assert any(
    not np.allclose(w0, w.numpy())
    for w0, w in zip(start, fused.encoder.weights)  # the steps did train
  )


def test_auto_fuses_only_networks_without_batchnorm():
  mlp = _model("soft_introvae", "auto")
  assert mlp.fused_passes
  encoder, decoder = networks.build_networks(
    "image", image_size=16, image_channels=1, z_dim=4, filters=(4, 8)
  )
  soft_introvae = methods.get("soft_introvae")
  image = soft_introvae(encoder, decoder, example_shape=(16, 16, 1), global_batch_size=4)
  assert not image.fused_passes
  with pytest.raises(ValueError, match="fuse_passes"):
    soft_introvae(
      encoder, decoder, example_shape=(16, 16, 1), global_batch_size=4, fuse_passes="maybe"
    )
