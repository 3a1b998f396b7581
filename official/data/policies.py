"""RandAugment and AutoAugment (CIFAR-10 policy), stateless, in TensorFlow.

What AT-BSL trains with (`NISPLab/AT-BSL`, train_at_bsl_cifar10.py): torchvision
v2 `RandAugment(2, 8)` or `AutoAugment(AutoAugmentPolicy.CIFAR10)` on the PIL
image, before RandomCrop(32, padding=4) + RandomHorizontalFlip. This module
reproduces torchvision's definition (transforms/autoaugment.py and v2's
_auto_augment.py: the op list, the magnitude bins, the random signs, the
policy table) with PIL's pixel semantics (8-bit values, ImageEnhance blends,
ImageOps, nearest-neighbour affine with a black fill):

  RandAugment(N=2, M=8, 31 bins): N times, one of 14 ops uniformly (Identity,
    ShearX/Y 0.08, TranslateX/Y int(150/331·W·8/30) px (3 px at 32),
    Rotate 8°, Brightness / Color / Contrast / Sharpness factor 1 ± 0.24,
    Posterize 7 bits, Solarize threshold 187, AutoContrast, Equalize), the
    signed ones negated with probability 1/2.
  AutoAugment CIFAR-10: one of 25 sub-policies uniformly; each of its two
    ops applied with its probability, at its level of 10 bins.

Why not Keras's layers: `keras.layers.RandAugment` (3.15) is another
algorithm (11 ops, no Identity / Invert, a random magnitude in [0, factor]
per op instead of a fixed one), and every Keras preprocessing layer draws its
randomness from a stateful SeedGenerator: `keras.random` accepts a Python int
or a SeedGenerator as `seed`, not a tensor, so a per-example key computed in
the tf.data graph cannot drive it, and a resumed run would draw other
augmentations. Keras has no AutoAugment; TF Model Garden's (which has one)
ships the package name `official` and cannot be installed beside this
project. So the ops are written here with tf.image / raw TF ops, every draw
from the example's stateless key (augment.example_key: seed, epoch, id).

Grayscale (MNIST, digits: 1 channel): every op applies except Color
(saturation), which is the identity on one channel as in PIL's mode "L";
Contrast blends with the image's mean. Images of another range (digits:
0..16, float npz: 0..1) are mapped to 0..255, augmented, and mapped back
(rounded to the source's levels for integer images).
"""
import math

import numpy as np
import tensorflow as tf

OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
       "Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize",
       "AutoContrast", "Equalize", "Invert")
RANDAUGMENT_OPS = OPS[:14]     # torchvision RandAugment: no Invert
SIGNED = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
          "Brightness", "Color", "Contrast", "Sharpness")
RANDAUGMENT = {"num_ops": 2, "magnitude": 8, "bins": 31}   # AT-BSL's (2, 8)
# torchvision AutoAugmentPolicy.CIFAR10: ((op, probability, level of 10), x2).
CIFAR10_POLICY = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)
POLICIES = ("randaugment", "autoaugment")


def _linspace(start, end, bins, level):
  """torch.linspace(start, end, bins)[level] in float32, as torchvision's
  magnitudes are (the PIL ops then see e.g. Solarize's threshold 170.0, not
  170.00000000000003; docs/measurements/policies_vs_torchvision.py checks
  the levels the policies use)."""
  start, end = np.float32(start), np.float32(end)
  step = np.float32((end - start) / np.float32(bins - 1))
  if level < bins // 2:
    return float(start + step * np.float32(level))
  return float(end - step * np.float32(bins - 1 - level))


def magnitude(op, level, bins, height, width):
  """torchvision's magnitude of `op` at `level` of `bins` (unsigned)."""
  if level is None or op in ("Identity", "AutoContrast", "Equalize", "Invert"):
    return 0.0
  if op in ("ShearX", "ShearY"):
    return _linspace(0.0, 0.3, bins, level)
  if op == "TranslateX":       # int(): whole pixels
    return float(int(_linspace(0.0, 150.0 / 331.0 * width, bins, level)))
  if op == "TranslateY":
    return float(int(_linspace(0.0, 150.0 / 331.0 * height, bins, level)))
  if op == "Rotate":
    return _linspace(0.0, 30.0, bins, level)
  if op in ("Brightness", "Color", "Contrast", "Sharpness"):
    return _linspace(0.0, 0.9, bins, level)
  if op == "Posterize":
    return float(8 - round(level / ((bins - 1) / 4)))  # bits kept
  if op == "Solarize":
    return _linspace(255.0, 0.0, bins, level)           # threshold
  raise ValueError(f"unknown augmentation op {op!r}")


# --- The ops: x float32 [H, W, C] with integer values in [0, 255]. ---------

def _blend(degenerate, x, factor):
  """PIL Image.blend(degenerate, x, factor) on 8-bit data (truncated)."""
  return tf.floor(tf.clip_by_value(degenerate + factor * (x - degenerate),
                                   0.0, 255.0))


def _gray(x):
  """PIL's convert("L"): the rounded ITU-R 601-2 luma, [H, W, 1]."""
  if x.shape[-1] == 1:
    return x
  luma = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
  return tf.floor(luma + 0.5)[..., None]


def _affine(x, matrix):
  """PIL's nearest affine with the inverse `matrix` (a0, a1, a2, b0, b1, b2)
  in PIL's continuous coordinates (pixel centres at +0.5): input(p) =
  floor(M·(p + 0.5)), written as TF's rounded transform of index coords."""
  a0, a1, a2, b0, b1, b2 = matrix
  transform = tf.stack([a0, a1, a2 + 0.5 * (a0 + a1) - 0.5,
                        b0, b1, b2 + 0.5 * (b0 + b1) - 0.5, 0.0, 0.0])
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=x[None], transforms=tf.cast(transform, tf.float32)[None],
      output_shape=tf.shape(x)[:2], fill_value=0.0, interpolation="NEAREST",
      fill_mode="CONSTANT")
  return out[0]


def _rotate(x, degrees):
  """PIL rotate (counter-clockwise) about the image centre (W/2, H/2)."""
  h, w = float(x.shape[0]), float(x.shape[1])
  phi = -degrees * math.pi / 180.0
  cos, sin = tf.cos(phi), tf.sin(phi)
  cx, cy = w / 2.0, h / 2.0
  return _affine(x, (cos, sin, cx - cos * cx - sin * cy,
                     -sin, cos, cy + sin * cx - cos * cy))


def _sharpness(x, factor):
  """Blend with PIL's SMOOTH filter (3x3, centre 5, /13); borders kept."""
  kernel = tf.constant([[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]]) / 13.0
  channels = x.shape[-1]
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
  smooth = tf.nn.depthwise_conv2d(x[None], kernel, [1, 1, 1, 1], "VALID")[0]
  smooth = tf.clip_by_value(tf.floor(smooth + 0.5), 0.0, 255.0)
  smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
  inner = tf.pad(tf.ones_like(smooth[1:-1, 1:-1]), [[1, 1], [1, 1], [0, 0]])
  degenerate = tf.where(inner > 0, smooth, x)
  return _blend(degenerate, x, factor)


def _autocontrast(x):
  """ImageOps.autocontrast (cutoff 0), per channel: min..max -> 0..255,
  int(x·scale + offset) in float64 as PIL's lookup table."""
  x64 = tf.cast(x, tf.float64)
  lo = tf.reduce_min(x64, axis=[0, 1], keepdims=True)
  hi = tf.reduce_max(x64, axis=[0, 1], keepdims=True)
  scale = 255.0 / tf.maximum(hi - lo, 1.0)
  out = tf.clip_by_value(tf.floor(x64 * scale + (-lo * scale)), 0.0, 255.0)
  return tf.cast(tf.where(hi > lo, out, x64), tf.float32)


def _equalize_channel(c):
  """ImageOps.equalize of one [H, W] channel (PIL's lookup table)."""
  values = tf.cast(c, tf.int32)
  hist = tf.math.bincount(tf.reshape(values, [-1]), minlength=256,
                          maxlength=256)
  last = tf.gather(hist, tf.reduce_max(tf.where(hist > 0)[:, 0]))
  step = (tf.reduce_sum(hist) - last) // 255
  lut = (step // 2 + tf.cumsum(hist, exclusive=True)) // tf.maximum(step, 1)
  out = tf.cast(tf.gather(tf.minimum(lut, 255), values), tf.float32)
  return tf.where(step > 0, out, c)


def _equalize(x):
  return tf.stack([_equalize_channel(x[..., i]) for i in range(x.shape[-1])],
                  axis=-1)


def apply_op(x, op, v):
  """One op (index into OPS, int32 scalar tensor) at signed magnitude v."""
  zero = tf.constant(0.0)
  one = tf.constant(1.0)
  branches = {
      "Identity": lambda: x,
      # torchvision shears about the top-left corner (centre [0, 0]).
      "ShearX": lambda: _affine(x, (one, v, zero, zero, one, zero)),
      "ShearY": lambda: _affine(x, (one, zero, zero, v, one, zero)),
      "TranslateX": lambda: _affine(x, (one, zero, -v, zero, one, zero)),
      "TranslateY": lambda: _affine(x, (one, zero, zero, zero, one, -v)),
      "Rotate": lambda: _rotate(x, v),
      "Brightness": lambda: _blend(tf.zeros_like(x), x, 1.0 + v),
      "Color": lambda: (x if x.shape[-1] == 1 else
                        _blend(tf.tile(_gray(x), [1, 1, 3]), x, 1.0 + v)),
      "Contrast": lambda: _blend(
          tf.fill(tf.shape(x), tf.floor(tf.reduce_mean(_gray(x)) + 0.5)), x,
          1.0 + v),
      "Sharpness": lambda: _sharpness(x, 1.0 + v),
      "Posterize": lambda: tf.floor(x / 2.0**(8.0 - v)) * 2.0**(8.0 - v),
      "Solarize": lambda: tf.where(x >= v, 255.0 - x, x),
      "AutoContrast": lambda: _autocontrast(x),
      "Equalize": lambda: _equalize(x),
      "Invert": lambda: 255.0 - x,
  }
  out = tf.switch_case(op, [branches[name] for name in OPS])
  return tf.ensure_shape(out, x.shape)


def randaugment(x, key, num_ops=2, level=8, bins=31):
  """torchvision RandAugment(num_ops, level, bins) on x (see `apply_op`)."""
  h, w = x.shape[0], x.shape[1]
  table = tf.constant([magnitude(n, level, bins, h, w)
                       for n in RANDAUGMENT_OPS], tf.float32)
  signed = tf.constant([n in SIGNED for n in RANDAUGMENT_OPS])
  keys = tf.random.experimental.stateless_split(key, num_ops, alg="philox")
  for i in range(num_ops):
    op_key, sign_key = tf.unstack(
        tf.random.experimental.stateless_split(keys[i], 2, alg="philox"))
    k = tf.random.stateless_uniform([], op_key, 0, len(RANDAUGMENT_OPS),
                                    dtype=tf.int32, alg="philox")
    negate = tf.logical_and(
        tf.gather(signed, k),
        tf.random.stateless_uniform([], sign_key, alg="philox") < 0.5)
    v = tf.gather(table, k)
    x = apply_op(x, k, tf.where(negate, -v, v))   # OPS[:14] == RA's order
  return x


def autoaugment(x, key, policy=CIFAR10_POLICY, bins=10):
  """torchvision AutoAugment with `policy` (default CIFAR-10) on x."""
  h, w = x.shape[0], x.shape[1]
  ops = tf.constant([[OPS.index(op) for op, _, _ in sub] for sub in policy])
  probs = tf.constant([[p for _, p, _ in sub] for sub in policy], tf.float32)
  mags = tf.constant([[magnitude(op, lv, bins, h, w) for op, _, lv in sub]
                      for sub in policy], tf.float32)
  signed = tf.constant([[op in SIGNED for op, _, _ in sub] for sub in policy])
  choice_key, *op_keys = tf.unstack(
      tf.random.experimental.stateless_split(key, 3, alg="philox"))
  j = tf.random.stateless_uniform([], choice_key, 0, len(policy),
                                  dtype=tf.int32, alg="philox")
  for i in range(2):
    u = tf.random.stateless_uniform([2], op_keys[i], alg="philox")
    negate = tf.logical_and(signed[j, i], u[1] < 0.5)
    v = tf.where(negate, -mags[j, i], mags[j, i])
    x = tf.cond(u[0] <= probs[j, i], lambda v=v, i=i: apply_op(x, ops[j, i], v),
                lambda: x)
  return x


def apply(policy, image, key, pixel_max=255.0):
  """`policy` (randaugment | autoaugment) on one [H, W, C] image of values in
  [0, pixel_max]; returns the image in its own dtype and range."""
  dtype = image.dtype
  x = tf.cast(image, tf.float32) * (255.0 / float(pixel_max))
  x = tf.clip_by_value(tf.round(x), 0.0, 255.0)   # 8-bit levels, as PIL
  if policy == "randaugment":
    x = randaugment(x, key, RANDAUGMENT["num_ops"], RANDAUGMENT["magnitude"],
                    RANDAUGMENT["bins"])
  elif policy == "autoaugment":
    x = autoaugment(x, key)
  else:
    raise ValueError(f"unknown augmentation policy {policy!r}; valid: "
                     f"{', '.join(POLICIES)}")
  x = x * (float(pixel_max) / 255.0)
  if dtype.is_integer:
    return tf.cast(tf.round(x), dtype)
  return tf.cast(x, dtype)
