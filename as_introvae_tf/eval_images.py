"""Evaluation of an image run: reconstructions, FID/KID of samples, and pictures.

PSNR / SSIM / per-pixel MSE of reconstructions `D(mu(x))` of held-out images; FID and KID of
generated samples vs real held-out images with a feature network (`feature_nets.py`:
`fid_<netname>` from a small classifier trained on the dataset, `fid_inception` with an
InceptionV3 weights file); pictures: real/reconstruction pairs, samples, latent
interpolations. `eval_lib.evaluate` calls `evaluate_images`.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from as_introvae_tf import data
from as_introvae_tf import feature_nets
from as_introvae_tf import metrics
from as_introvae_tf import run as run_lib
from as_introvae_tf import visualize
from as_introvae_tf.eval_latent import decode_prior
from as_introvae_tf.eval_latent import encode
from as_introvae_tf.eval_latent import latent_metrics

DEFAULT_IMAGE_SAMPLES = 10000
"""Held-out images (and generated samples) for image metrics: the whole Fashion-MNIST /
CIFAR-10 test set."""


def _feature_nets(run, options, log):
  nets, notes = [], []
  choice = options.feature_net
  if choice is None:
    net = feature_nets.get_default_feature_net(run.spec, log=log)
    if net is None:
      notes.append(
        f"no domain feature net: {run.spec.kind} data has no labels to train one "
        "(pass --feature_net=PATH)"
      )
    else:
      nets.append(net)
  elif str(choice).lower() != "none":
    nets.append(feature_nets.load_feature_net(choice))
  if options.inception_weights:
    nets.append(feature_nets.load_inception(options.inception_weights))
  else:
    notes.append("fid_inception skipped: no --inception_weights (nothing can be downloaded)")
  return nets, notes


def _interpolation_grid(model, images, rows=8, steps=8):
  """Rows `[x_a, D(mu_a + t (mu_b - mu_a)) for t in linspace(0, 1, steps), x_b]`."""
  rows = min(rows, len(images) // 2)
  a, b = images[:rows], images[rows : 2 * rows]
  mu_a, _ = encode(model, a)
  mu_b, _ = encode(model, b)
  cells = []
  for i in range(rows):
    t = tf.linspace(0.0, 1.0, steps)[:, None]
    z = mu_a[i][None] + t * (mu_b[i] - mu_a[i])[None]
    decoded = np.clip(model.decoder(z, training=False).numpy(), 0.0, 1.0)
    cells.extend([a[i], *decoded, b[i]])
  return visualize.image_grid(np.stack(cells), columns=steps + 2)


def held_out_dataset(
  spec, options, batch, bad_images="fail", data_dir=None, max_image_pixels=50_000_000
):
  """The held-out images of `options.split`, in a seeded random order, one pass.

  Image metrics use the first `num_samples` images of this dataset, so the order must not
  follow the files: an image folder lists `<class>/` folders in order, and CIFAR-10's first
  5000 test files are its first five classes. Shuffling every file of the split with
  `options.seed` makes any prefix a uniform random subset (the same one for every run and
  method evaluated with that seed); with all of the split it changes nothing but the order.

  Args:
    spec: an image `data.DatasetSpec`.
    options: `EvalOptions` (`split`, `seed`).
    batch: images per element.
    bad_images, data_dir, max_image_pixels: as the run's config (`--bad_images`,
      `--data_dir`, `--max_image_pixels`).

  Returns:
    tf.data.Dataset of float32 [batch, H, W, C] in [0, 1] (last batch may be smaller).
  """
  return data.build_dataset(
    spec,
    options.split,
    batch,
    seed=options.seed,
    shuffle=True,
    repeat=False,
    bad_images=bad_images,
    data_dir=data_dir,
    max_image_pixels=max_image_pixels,
  )


def evaluate_images(run, options, outdir, log=print):
  """Image metrics and pictures (see the module docstring).

  Returns:
    (scalars dict, details dict, pictures {name: float32 [H, W, C]}).
  """
  model, spec, config = run.model, run.spec, run.config
  n = options.num_samples or DEFAULT_IMAGE_SAMPLES
  available = data.count_examples(
    spec,
    options.split,
    bad_images=config.bad_images,
    max_image_pixels=config.max_image_pixels,
    data_dir=config.data_dir,
  )
  batch = min(options.batch_size, n, max(available, 1))  # a split smaller than a batch
  nets, notes = _feature_nets(run, options, log)
  ds = held_out_dataset(
    spec,
    options,
    batch,
    bad_images=config.bad_images,
    max_image_pixels=config.max_image_pixels,
    data_dir=config.data_dir,
  )
  has_encoder = model.has_inference_encoder
  if not has_encoder:
    notes.append(
      "no inference encoder (the encoder is a critic): no reconstruction or latent metrics"
    )
  per_image = {"psnr": [], "ssim": [], "mse": []}
  mus, logvars = [], []
  real_features = {net.name: [] for net in nets}
  shown = ([], [])  # the first 32 real images and reconstructions, for the pictures
  count = 0
  for x in ds:
    x = x.numpy()[: n - count]
    rec = x
    if has_encoder:
      mu, logvar = encode(model, x)
      rec = np.clip(model.decoder(mu, training=False).numpy(), 0.0, 1.0)
      per_image["psnr"].append(metrics.psnr(x, rec))
      per_image["ssim"].append(metrics.ssim(x, rec))
      per_image["mse"].append(metrics.mse(x, rec))
      mus.append(mu.numpy())
      logvars.append(logvar.numpy())
    for net in nets:
      real_features[net.name].append(net.features(x, options.batch_size))
    if len(shown[0]) < 32:
      shown[0].extend(x[: 32 - len(shown[0])])
      shown[1].extend(rec[: 32 - len(shown[1])])
    count += len(x)
    if count >= n:
      break
  if count < 2:
    raise ValueError(
      f"the {options.split!r} split of {config.dataset} gave {count} image(s) in "
      f"batches of {batch}; need at least 2"
    )
  if count < n:
    notes.append(f"{options.split} split has {count} images (< --num_samples={n}): used all")
  log(f"reconstructed {count} {options.split} images")

  scalars = {k: float(np.mean(np.concatenate(v))) for k, v in per_image.items() if v}
  rng = np.random.default_rng([options.seed, 1])
  sample_features = {net.name: [] for net in nets}
  for start in range(0, count, batch):
    z = rng.standard_normal((min(batch, count - start), model.z_dim)).astype(np.float32)
    x = decode_prior(model, z, images=True)
    for net in nets:
      sample_features[net.name].append(net.features(x, options.batch_size))
  details = {"split": options.split, "num_images": count, "feature_nets": {}}
  for net in nets:
    real = np.concatenate(real_features[net.name])
    fake = np.concatenate(sample_features[net.name])
    scalars[f"fid_{net.name}"] = metrics.fid_from_features(real, fake)
    kid, kid_std = metrics.kid_from_features(
      real, fake, options.kid_subsets, options.kid_subset_size, seed=options.seed
    )
    scalars[f"kid_{net.name}"] = kid
    scalars[f"kid_{net.name}_std"] = kid_std
    details["feature_nets"][net.name] = {"path": net.path, "feature_dim": int(real.shape[1])}
    log(f"fid_{net.name} {scalars[f'fid_{net.name}']:.4f} ({count} real vs {count} samples)")
  if has_encoder:
    latent, latent_details = latent_metrics(mus, logvars)
    scalars.update(latent)
    details.update(latent_details)
  details["notes"] = notes

  real, rec = np.stack(shown[0]), np.stack(shown[1])
  columns = min(8, len(real))
  k = min(32, len(real)) // columns * columns
  pairs = np.concatenate(
    [
      np.stack([real[i : i + columns], rec[i : i + columns]]).reshape(-1, *real.shape[1:])
      for i in range(0, k, columns)
    ]
  )
  samples = run_lib.sample(model, 64)
  pictures = {"samples": visualize.image_grid(samples, columns=8)}
  if has_encoder:
    pictures["pairs"] = visualize.image_grid(pairs, columns=columns)
  if has_encoder and len(real) >= 2:
    pictures["interpolations"] = _interpolation_grid(model, real)
  for name, image in pictures.items():
    visualize.save_png(os.path.join(outdir, f"{name}.png"), image)
  return scalars, details, pictures
