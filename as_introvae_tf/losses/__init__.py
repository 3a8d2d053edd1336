"""Loss terms of every method, as pure per-example functions.

* `introspective`: reconstruction error, KL, reparameterization, expELBO and the VAE,
  IntroVAE and S-IntroVAE encoder/decoder losses.
* `as_distance`: AS-IntroVAE's AS-Distance, the annealing of `c` and the AS terms of the
  encoder/decoder losses.
* `adversarial`: the baselines' terms, AVAE (auto-encoder discriminator, PID equilibrium) and
  WGAN-GP (critic, generator, gradient penalty).

Every public name (each module's `__all__`) is also importable from here: `from as_introvae_tf
import losses; losses.exp_elbo(...)`; nothing else leaks into this namespace.
"""

from as_introvae_tf.losses import adversarial
from as_introvae_tf.losses import introspective
from as_introvae_tf.losses.adversarial import l1_error
from as_introvae_tf.losses.adversarial import avae_encoder_loss
from as_introvae_tf.losses.adversarial import avae_generator_loss
from as_introvae_tf.losses.adversarial import avae_discriminator_loss
from as_introvae_tf.losses.adversarial import avae_balance_error
from as_introvae_tf.losses.adversarial import avae_convergence
from as_introvae_tf.losses.adversarial import pid_update
from as_introvae_tf.losses.adversarial import interpolate
from as_introvae_tf.losses.adversarial import critic_input_gradient_norm
from as_introvae_tf.losses.adversarial import gradient_penalty
from as_introvae_tf.losses.adversarial import wasserstein_critic_loss
from as_introvae_tf.losses.adversarial import wasserstein_generator_loss
from as_introvae_tf.losses.as_distance import AS_KERNELS
from as_introvae_tf.losses.as_distance import AS_XLA_MODES
from as_introvae_tf.losses.as_distance import ANNEAL_MODES
from as_introvae_tf.losses.as_distance import REDUCTIONS
from as_introvae_tf.losses.as_distance import annealing_coefficient
from as_introvae_tf.losses.as_distance import as_distance
from as_introvae_tf.losses.as_distance import as_encoder_surrogate
from as_introvae_tf.losses.as_distance import as_decoder_term
from as_introvae_tf.losses.introspective import reconstruction_error
from as_introvae_tf.losses.introspective import posterior
from as_introvae_tf.losses.introspective import standard_prior
from as_introvae_tf.losses.introspective import gaussian_kl
from as_introvae_tf.losses.introspective import reparameterize
from as_introvae_tf.losses.introspective import input_scale
from as_introvae_tf.losses.introspective import exp_elbo
from as_introvae_tf.losses.introspective import soft_introvae_encoder_loss
from as_introvae_tf.losses.introspective import soft_introvae_decoder_loss
from as_introvae_tf.losses.introspective import vae_loss
from as_introvae_tf.losses.introspective import introvae_encoder_loss
from as_introvae_tf.losses.introspective import introvae_decoder_loss

__all__ = ["adversarial", "introspective"] + [
  "l1_error",
  "avae_encoder_loss",
  "avae_generator_loss",
  "avae_discriminator_loss",
  "avae_balance_error",
  "avae_convergence",
  "pid_update",
  "interpolate",
  "critic_input_gradient_norm",
  "gradient_penalty",
  "wasserstein_critic_loss",
  "wasserstein_generator_loss",
  "AS_KERNELS",
  "AS_XLA_MODES",
  "ANNEAL_MODES",
  "REDUCTIONS",
  "annealing_coefficient",
  "as_distance",
  "as_encoder_surrogate",
  "as_decoder_term",
  "reconstruction_error",
  "posterior",
  "standard_prior",
  "gaussian_kl",
  "reparameterize",
  "input_scale",
  "exp_elbo",
  "soft_introvae_encoder_loss",
  "soft_introvae_decoder_loss",
  "vae_loss",
  "introvae_encoder_loss",
  "introvae_decoder_loss",
]
