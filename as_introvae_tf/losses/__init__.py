"""Loss terms of every method, as pure per-example functions.

* `introspective`: reconstruction error, KL, reparameterization, expELBO and the VAE,
  IntroVAE and S-IntroVAE encoder/decoder losses.
* `as_distance`: AS-IntroVAE's AS-Distance, the annealing of `c` and the AS terms of the
  encoder/decoder losses.
* `adversarial`: the baselines' terms, AVAE (auto-encoder discriminator, PID equilibrium) and
  WGAN-GP (critic, generator, gradient penalty).

Every name is also importable from here: `from as_introvae_tf import losses;
losses.exp_elbo(...)`.
"""

from as_introvae_tf.losses.adversarial import *  # noqa: F401,F403
from as_introvae_tf.losses.as_distance import *  # noqa: F401,F403
from as_introvae_tf.losses.as_distance import _kernel_block  # noqa: F401
from as_introvae_tf.losses.as_distance import _per_dim_kernel  # noqa: F401
from as_introvae_tf.losses.as_distance import _product_log_kernel  # noqa: F401
from as_introvae_tf.losses.introspective import *  # noqa: F401,F403
