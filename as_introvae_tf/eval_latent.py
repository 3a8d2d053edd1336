"""What every evaluation computes from the model's latent space, whatever the data.

The posterior of the encoder (`encode`, with the decoder it was trained with), samples of the
prior through the sampling (EMA) decoder (`decode_prior`, as `run.sample`), and the latent
metrics (`latent_metrics`: active units, Burda et al. 2016, and the KL per latent dimension of
the posterior). `eval_2d` and `eval_images` use them.
"""

from __future__ import annotations

import numpy as np

from as_introvae_tf import metrics


def encode(model, x):
  """The posterior `(mu, logvar)` of examples `x`, float32 tensors `[B, z_dim]` each."""
  mu, logvar = model.encoder(x, training=False)
  return mu, logvar


def decode_prior(model, z, images):
  """Codes `z` `[B, z_dim]` through the sampling decoder: float32 numpy `[B, *example_shape]`,
  clipped to [0, 1] when `images`."""
  x = model.sampling_decoder()(z, training=False).numpy()
  return np.clip(x, 0.0, 1.0) if images else x


def latent_metrics(mus, logvars):
  """The latent metrics of posteriors given in batches (lists of float `[b, z_dim]` arrays).

  Returns:
    ({"active_units", "kl_posterior"}, {"kl_per_dimension", "posterior_mean_variance",
    "latent_examples"}).
  """
  mu = np.concatenate(mus, 0)
  logvar = np.concatenate(logvars, 0)
  per_dim = metrics.kl_per_dimension(mu, logvar)
  variance = metrics.posterior_mean_variance(mu)
  scalars = {"active_units": metrics.active_units(mu), "kl_posterior": float(per_dim.sum())}
  details = {
    "kl_per_dimension": [float(v) for v in per_dim],
    "posterior_mean_variance": [float(v) for v in variance],
    "latent_examples": int(len(mu)),
  }
  return scalars, details
