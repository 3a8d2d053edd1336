"""as_introvae_tf: AS-IntroVAE, S-IntroVAE, IntroVAE and VAE in Keras 3 / TensorFlow.

  import as_introvae_tf
  as_introvae_tf.train("configs/quickstart.flags", workdir="/tmp/q")   # = as-introvae-train
  model = as_introvae_tf.load("/tmp/q")           # a workdir or an export directory
  images = model.sample(16, seed=0)                # float32 [16, 28, 28, 1] in [0, 1]

Importing the package has no side effects (TensorFlow is imported on first use, no absl flags
are defined): `train` is `as_introvae_tf.train.train` (the module of the `as-introvae-train`
command, callable), `load` is `as_introvae_tf.api.load`.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "load", "train"]


def load(path, decoder="ema", checkpoint=None):
  """Loads a trained model for inference: see `as_introvae_tf.api.load`."""
  from as_introvae_tf import api  # pylint: disable=import-outside-toplevel

  return api.load(path, decoder=decoder, checkpoint=checkpoint)


def __getattr__(name):
  if name == "train":  # the submodule, callable: as_introvae_tf.train(config, **overrides)
    import importlib  # pylint: disable=import-outside-toplevel

    return importlib.import_module("as_introvae_tf.train")
  raise AttributeError(f"module 'as_introvae_tf' has no attribute {name!r}")
