"""One image file of an image folder: its header without decoding it, and its decode.

`read_header` gives the size (as shown) and the EXIF orientation from the header alone (a
small JPEG marker parser, else Pillow); `decode_file` decodes a file as training reads it (to
8 bits, then float32 in [0, 1], EXIF orientation applied, as image viewers and
`PIL.ImageOps.exif_transpose` turn it); `load_image` converts it to the run's channels and
size. The up-front check (`image_scan`) and the pipeline (`folders`) both decode with these.
"""

from __future__ import annotations

import re
import warnings

import tensorflow as tf

from as_introvae_tf.data.common import resize_if_needed
from as_introvae_tf.data.common import to_channels

# EXIF orientation (tag 0x0112) -> how the stored pixels are turned to be shown upright, as
# image viewers and PIL's ImageOps.exif_transpose do (PIL's method names in the comments).
_ORIENTATION_TAG = 0x0112
_PIL_BOMB = re.compile(r"\((\d+) pixels\)")

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_HEAD_BYTES = 1 << 17


def _tiff_orientation(tiff: bytes) -> int:
  """The orientation tag (0x0112) of IFD0 of an EXIF TIFF block, 1 when absent or garbled."""
  order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
  if order is None or len(tiff) < 8:
    return 1
  ifd = int.from_bytes(tiff[4:8], order)
  if ifd + 2 > len(tiff):
    return 1
  for i in range(int.from_bytes(tiff[ifd : ifd + 2], order)):
    entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
    if len(entry) < 12:
      break
    if int.from_bytes(entry[0:2], order) == _ORIENTATION_TAG:
      kind = int.from_bytes(entry[2:4], order)
      value = int.from_bytes(entry[8:10] if kind == 3 else entry[8:12], order)  # SHORT / LONG
      return value if 1 <= value <= 8 else 1
  return 1


def _jpeg_header(head: bytes):
  """``(height, width, orientation)`` (as stored) from a JPEG's first bytes: its first EXIF
  APP1 segment and its frame header (SOFn), as Pillow reads them; None when ``head`` is not a
  JPEG or they are not in it (Pillow then reads the file)."""
  if head[:2] != b"\xff\xd8":
    return None
  pos, orientation, exif_seen = 2, 1, False
  while pos + 4 <= len(head):
    if head[pos] != 0xFF:
      return None
    marker = head[pos + 1]
    if marker == 0xFF:  # fill byte
      pos += 1
      continue
    if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length
      pos += 2
      continue
    length = int.from_bytes(head[pos + 2 : pos + 4], "big")
    segment = head[pos + 4 : pos + 2 + length]
    if marker == 0xE1 and not exif_seen and segment[:6] == b"Exif\0\0":
      exif_seen = True
      orientation = _tiff_orientation(segment[6:])
    elif marker in _SOF_MARKERS:
      if len(segment) < 5:
        return None
      height, width = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big")
      return (height, width, orientation) if height and width else None
    pos += 2 + length
  return None


def read_header(path):
  """``(height, width, orientation)`` of an image file from its header (no pixels are decoded),
  the size as shown after the EXIF orientation (1..8; 1 without EXIF); or None when the header
  cannot be read (the TensorFlow decode then decides whether the file is usable).

  JPEGs are read by a small parser of the markers (:func:`_jpeg_header`; about 10x faster than
  Pillow, the same answers, tested), other formats and JPEGs it cannot follow by Pillow.

  Raises:
    ImageTooLarge: Pillow refuses to open it as a decompression bomb (the pixel count is in
      the error, over 2 x ``PIL.Image.MAX_IMAGE_PIXELS``).
  """
  try:
    with open(path, "rb") as fh:
      fast = _jpeg_header(fh.read(_JPEG_HEAD_BYTES))
  except OSError:
    return None
  if fast is not None:
    height, width, orientation = fast
    return (width, height, orientation) if orientation >= 5 else fast
  from PIL import Image  # pylint: disable=import-outside-toplevel

  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      with Image.open(path) as im:
        width, height = im.size
        orientation = 1
        if "exif" in im.info:  # (getexif() without it would decode a PNG to look further)
          orientation = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
  except Image.DecompressionBombError as e:
    found = _PIL_BOMB.search(str(e))
    raise ImageTooLarge(int(found.group(1)) if found else None) from None
  except Exception:  # pylint: disable=broad-except  # any unreadable header: TF decides
    return None
  if orientation not in range(1, 9):
    orientation = 1
  if orientation >= 5:  # 5..8 swap the axes
    height, width = width, height
  return height, width, orientation


class ImageTooLarge(Exception):
  """Pillow refused to open a file as a decompression bomb (``pixels``, when it said)."""

  def __init__(self, pixels):
    super().__init__(pixels)
    self.pixels = pixels


def apply_orientation(img, orientation):
  """``[H, W, C]`` image stored with EXIF ``orientation`` (int32 scalar, 1..8) -> upright, as
  ``PIL.ImageOps.exif_transpose`` turns it (5..8 swap H and W; other values: unchanged)."""
  branches = [
    lambda: img,  # 1 (and anything unknown)
    lambda: tf.reverse(img, [1]),  # 2: FLIP_LEFT_RIGHT
    lambda: tf.reverse(img, [0, 1]),  # 3: ROTATE_180
    lambda: tf.reverse(img, [0]),  # 4: FLIP_TOP_BOTTOM
    lambda: tf.transpose(img, [1, 0, 2]),  # 5: TRANSPOSE
    lambda: tf.image.rot90(img, 3),  # 6: ROTATE_270 (90 degrees clockwise)
    lambda: tf.reverse(tf.transpose(img, [1, 0, 2]), [0, 1]),  # 7: TRANSVERSE
    lambda: tf.image.rot90(img, 1),  # 8: ROTATE_90 (90 degrees anticlockwise)
  ]
  index = tf.cast(orientation, tf.int32) - 1
  index = tf.where((index >= 0) & (index < 8), index, 0)
  return tf.switch_case(index, branches)


def decode_file(path, orientation=1):
  """One image file -> float32 ``[H, W, C]`` in [0, 1], C = 1..4 as stored (grey, grey+alpha,
  RGB, RGBA; a GIF's first frame), EXIF ``orientation`` applied (:func:`apply_orientation`).

  Every format is decoded to 8 bits first (``tf.io.decode_image``'s only dtype for WebP;
  16-bit PNGs are reduced to 8 bits), then scaled by 1/255. The training pipeline decodes with
  this function and the up-front check (:func:`scan_images`) with its decoding step (the one
  that can fail), so a file the check accepts trains.
  """
  img = tf.image.convert_image_dtype(_decode_8bit(path), tf.float32)
  return apply_orientation(img, orientation)


def _decode_8bit(path):
  """The decoding step of :func:`decode_file` (the only one that can fail): uint8 ``[H, W, C]``."""
  return tf.io.decode_image(tf.io.read_file(path), expand_animations=False)


def decoded_shape(path, orientation):
  """``[H, W, C]`` of ``decode_file(path, orientation)``: the same decode (the scaling and the
  turn cannot fail, and the turn only swaps H and W for orientations 5..8)."""
  shape = tf.shape(_decode_8bit(path))
  return tf.where(orientation >= 5, tf.gather(shape, [1, 0, 2]), shape)


def load_image(path, orientation, size: int, channels: int):
  """One image file -> float32 ``[size, size, channels]`` in [0, 1] (:func:`decode_file`,
  converted to ``channels``, resized)."""
  img = to_channels(decode_file(path, orientation), channels)
  return tf.ensure_shape(resize_if_needed(img, size), [size, size, channels])
