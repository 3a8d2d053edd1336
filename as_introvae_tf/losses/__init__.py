"""Loss terms of every method, as pure per-example functions.

* `introspective`: reconstruction error, KL, reparameterization, expELBO and the VAE,
  IntroVAE and S-IntroVAE encoder/decoder losses.
* `as_distance`: AS-IntroVAE's AS-Distance, the annealing of `c` and the AS terms of the
  encoder/decoder losses.
* `adversarial`: the baselines' terms, AVAE (auto-encoder discriminator, PID equilibrium) and
  WGAN-GP (critic, generator, gradient penalty).

Every public name (each module's `__all__`) is also importable from here: `from as_introvae_tf
import losses; losses.exp_elbo(...)`; nothing else leaks into this namespace (the star imports
take each module's `__all__` only). `losses.as_distance` is the function; its module is
`importlib.import_module("as_introvae_tf.losses.as_distance")`.
"""

from as_introvae_tf.losses import adversarial
from as_introvae_tf.losses import as_distance as _as_distance_module
from as_introvae_tf.losses import introspective
from as_introvae_tf.losses.adversarial import *  # noqa: F401,F403
from as_introvae_tf.losses.as_distance import *  # noqa: F401,F403
from as_introvae_tf.losses.introspective import *  # noqa: F401,F403

__all__ = [
  "adversarial",
  "introspective",
  *adversarial.__all__,
  *_as_distance_module.__all__,
  *introspective.__all__,
]
