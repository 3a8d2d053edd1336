"""The plain (beta-)VAE baseline (docs/method.md, VAE): every step is the ELBO step on E and D.

`L = s * mean(beta_rec * rec + beta_kl * kl)`. The introspective methods run the same ELBO step
during their `--num_vae` warm-up (`base.IntrospectiveVAE.vae_step`), without `s` unless
`--warmup_loss=scaled` (the reference's warm-up is unscaled).
"""

from __future__ import annotations

from as_introvae_tf import methods
from as_introvae_tf.methods import base


@methods.register("vae")
class VAE(base.IntrospectiveVAE):
  """The plain (beta-)VAE baseline: every step is `vae_step`."""

  metric_names = base.VAE_METRIC_NAMES
  divergence_hint = "Lower --lr."
  bar_metrics = ("loss", "rec", "kl_real")
  scaled_elbo = True

  def introspective_step(self, x):
    return self.vae_step(x)
