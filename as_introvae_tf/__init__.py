"""as_introvae_tf: AS-IntroVAE, S-IntroVAE, IntroVAE and VAE in Keras 3 / TensorFlow.

Importing the package has no side effects; see `as_introvae_tf.train` for the command line.
"""

__version__ = "0.1.0"
