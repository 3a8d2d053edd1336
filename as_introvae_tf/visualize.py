"""Pictures of a run: image grids and 2-D scatter plots, as arrays and PNG files."""

from __future__ import annotations

import io
import math
import os

import numpy as np
import tensorflow as tf


def image_grid(images, columns=None):
  """Tiles a batch of images into one image.

  Args:
    images: float `[N, H, W, C]`, pixels nominally in [0, 1] (values outside are clipped).
    columns: images per row; default ceil(sqrt(N)).

  Returns:
    float32 numpy `[rows * H, columns * W, C]` in [0, 1]; empty cells are black.
  """
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  if images.ndim != 4:
    raise ValueError(f"image_grid expects [N, H, W, C] images, got shape {images.shape}")
  n, h, w, c = images.shape
  columns = columns or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / columns))
  grid = np.zeros((rows * h, columns * w, c), np.float32)
  for i in range(n):
    r, col = divmod(i, columns)
    grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = images[i]
  return grid


def pair_grid(real, reconstructed, columns=8):
  """Rows of real images, each followed by the row of their reconstructions.

  Args:
    real, reconstructed: float `[N, H, W, C]` in [0, 1], the same shape.
    columns: images per row.

  Returns:
    float32 numpy `[2 * ceil(N / columns) * H, columns * W, C]` in [0, 1].

  Raises:
    ValueError: the two batches differ in shape.
  """
  real = np.asarray(real, np.float32)
  reconstructed = np.asarray(reconstructed, np.float32)
  if real.shape != reconstructed.shape:
    raise ValueError(
      f"pair_grid: real {real.shape} and reconstructed {reconstructed.shape} differ in shape"
    )
  cells = []
  for start in range(0, len(real), columns):
    for batch in (real, reconstructed):
      row = batch[start : start + columns]
      pad = np.zeros((columns - len(row), *real.shape[1:]), np.float32)
      cells.append(np.concatenate([row, pad]))
  return image_grid(np.concatenate(cells), columns=columns)


def save_png(path, image):
  """Writes a float `[H, W, C]` image in [0, 1] (C = 1, 3 or 4) as an 8-bit PNG."""
  image = np.asarray(image, np.float32)
  if image.ndim == 2:
    image = image[..., None]
  data = tf.io.encode_png(tf.cast(tf.round(np.clip(image, 0, 1) * 255.0), tf.uint8))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  tf.io.write_file(tmp, data)
  os.replace(tmp, path)
  return path


def scatter_2d(points, data_points=None, plot_range=2.0, title=None, size_px=480):
  """Renders 2-D model samples (green) over data samples (blue), like the papers' figures.

  Args:
    points: float `[N, 2]` model samples.
    data_points: optional float `[M, 2]` data samples drawn underneath.
    plot_range: the axes span [-plot_range, plot_range] on both axes.
    title: optional title.
    size_px: output width = height in pixels.

  Returns:
    float32 numpy `[size_px, size_px, 3]` RGB image in [0, 1].
  """
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  dpi = 80
  fig, ax = plt.subplots(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
  if data_points is not None:
    ax.scatter(data_points[:, 0], data_points[:, 1], s=4, c="tab:blue", alpha=0.4, label="data")
  ax.scatter(points[:, 0], points[:, 1], s=4, c="g", label="samples")
  ax.set_xlim(-plot_range, plot_range)
  ax.set_ylim(-plot_range, plot_range)
  ax.set_aspect("equal")
  ax.legend(loc="upper right", fontsize=8)
  if title:
    ax.set_title(title)
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi)
  plt.close(fig)
  image = tf.io.decode_png(buf.getvalue(), channels=3).numpy().astype(np.float32) / 255.0
  return image
