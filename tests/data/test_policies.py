"""RandAugment / AutoAugment ops on tiny images by hand (PIL's semantics),
the magnitudes of torchvision's bins, and stateless draws."""
import numpy as np
import pytest
import tensorflow as tf

from official.data import augment
from official.data import policies


def _op(name, image, v=0.0):
  x = tf.constant(np.asarray(image, np.float32))
  return policies.apply_op(x, tf.constant(policies.OPS.index(name)),
                           tf.constant(float(v))).numpy()


def _gray(rows):
  return np.asarray(rows, np.float32)[..., None]


def test_magnitudes_are_torchvision_bins():
  m = lambda op, level=8, bins=31: policies.magnitude(op, level, bins, 32, 32)  # noqa: E731
  # RandAugment(2, 8) of 31 bins on 32x32 images.
  assert m("ShearX") == pytest.approx(0.08)
  assert m("TranslateX") == 3.0          # int(150/331 · 32 · 8/30) = int(3.87)
  assert m("Rotate") == pytest.approx(8.0)
  assert m("Brightness") == pytest.approx(0.24)
  assert m("Posterize") == 7.0           # 8 - round(8 / 7.5)
  assert m("Solarize") == pytest.approx(187.0)  # 255 - 8 · 8.5
  # AutoAugment's 10 bins: ShearY level 8 = 0.3 · 8/9, Posterize 7 -> 5 bits.
  assert m("ShearY", 8, 10) == pytest.approx(0.266667, abs=1e-6)
  assert m("Posterize", 7, 10) == 5.0     # 8 - round(7 / 2.25)
  assert m("Solarize", 2, 10) == pytest.approx(198.333333, abs=1e-5)
  assert m("Equalize", None, 10) == 0.0


def test_pixel_ops_by_hand():
  np.testing.assert_array_equal(
      _op("Posterize", _gray([[0, 1, 2, 3, 254, 255]]), 7)[..., 0],
      [[0, 0, 2, 2, 254, 254]])
  np.testing.assert_array_equal(
      _op("Posterize", _gray([[17, 255, 100]]), 4)[..., 0], [[16, 240, 96]])
  np.testing.assert_array_equal(
      _op("Solarize", _gray([[186, 187, 200, 10]]), 187)[..., 0],
      [[186, 68, 55, 10]])
  np.testing.assert_array_equal(_op("Invert", _gray([[0, 55]]))[..., 0],
                                [[255, 200]])
  # AutoContrast: 50..150 -> 0..255, floor((x - 50) · 2.55).
  np.testing.assert_array_equal(
      _op("AutoContrast", _gray([[50, 100, 150]]))[..., 0], [[0, 127, 255]])
  np.testing.assert_array_equal(                # constant image: unchanged
      _op("AutoContrast", _gray([[9, 9]]))[..., 0], [[9, 9]])
  # Brightness factor 1.24 / 0.76: floor(x · f), clipped.
  np.testing.assert_array_equal(
      _op("Brightness", _gray([[100, 250]]), 0.24)[..., 0], [[124, 255]])
  np.testing.assert_array_equal(
      _op("Brightness", _gray([[100, 250]]), -0.24)[..., 0], [[76, 190]])


def test_equalize_by_hand():
  # 1,020 pixels: 255 of 0, 255 of 50, 510 of 100. PIL: step = (1020 - 510)
  # // 255 = 2; lut[i] = (1 + #pixels below i) // 2: 0 -> 0, 50 -> 128,
  # 100 -> 255.
  image = np.array([0] * 255 + [50] * 255 + [100] * 510, np.float32)
  out = _op("Equalize", image.reshape(30, 34, 1))
  np.testing.assert_array_equal(np.unique(out.reshape(-1)[:255]), [0])
  np.testing.assert_array_equal(np.unique(out.reshape(-1)[255:510]), [128])
  np.testing.assert_array_equal(np.unique(out.reshape(-1)[510:]), [255])
  # Fewer than 256 pixels beside the last level: step 0, unchanged (PIL).
  small = _gray([[0, 0], [0, 255]])
  np.testing.assert_array_equal(_op("Equalize", small), small)


def test_blend_ops_by_hand():
  # Contrast (gray): mean 100; 1.24: 100 + 1.24 (x - 100), floored, clipped.
  np.testing.assert_array_equal(
      _op("Contrast", _gray([[0, 100], [200, 100]]), 0.24)[..., 0],
      [[0, 100], [224, 100]])
  # Color on RGB (255, 0, 0): luma floor(76.245 + .5) = 76; factor 0.76:
  # R = floor(76 + .76 · 179) = 212, G = B = floor(76 - .76 · 76) = 18.
  np.testing.assert_array_equal(
      _op("Color", [[[255, 0, 0]]], -0.24)[0, 0], [212, 18, 18])
  # Color on one channel: the identity (PIL mode "L").
  np.testing.assert_array_equal(_op("Color", _gray([[3, 200]]), 0.9),
                                _gray([[3, 200]]))
  # Sharpness: 3x3, centre 13 on 0: smooth centre round(65 / 13) = 5;
  # 1.24: floor(5 + 1.24 · 8) = 14; the border keeps its pixels.
  image = _gray([[0, 0, 0], [0, 13, 0], [0, 0, 0]])
  np.testing.assert_array_equal(
      _op("Sharpness", image, 0.24)[..., 0], [[0, 0, 0], [0, 14, 0], [0, 0, 0]])


def test_geometric_ops_by_hand():
  row = _gray([[1, 2, 3, 4, 5]])
  np.testing.assert_array_equal(_op("TranslateX", row, 3)[..., 0],
                                [[0, 0, 0, 1, 2]])
  np.testing.assert_array_equal(_op("TranslateX", row, -3)[..., 0],
                                [[4, 5, 0, 0, 0]])
  column = _gray([[1], [2], [3]])
  np.testing.assert_array_equal(_op("TranslateY", column, 1)[:, 0, 0],
                                [0, 1, 2])
  # ShearX 0.5 about the top-left corner: input x = floor(x + .5 + .5 (y + .5)):
  # row 0 stays, row 1 moves left by one pixel (black fill).
  np.testing.assert_array_equal(
      _op("ShearX", _gray([[1, 2, 3, 4], [5, 6, 7, 8]]), 0.5)[..., 0],
      [[1, 2, 3, 4], [6, 7, 8, 0]])
  # Rotate +90 degrees: counter-clockwise, as PIL.
  np.testing.assert_array_equal(
      _op("Rotate", _gray([[1, 2, 3], [4, 5, 6], [7, 8, 9]]), 90)[..., 0],
      [[3, 6, 9], [2, 5, 8], [1, 4, 7]])


def _random_image(shape, high=256, seed=0):
  return np.random.RandomState(seed).randint(0, high, shape).astype(np.uint8)


@pytest.mark.parametrize("kind", ["randaugment+crop_flip", "autoaugment+crop",
                                  "randaugment+none"])
def test_policies_are_keyed_and_keep_dtype_and_range(kind):
  image = tf.constant(_random_image((32, 32, 3)))
  key = augment.example_key(3, 1, 7)
  a = augment.apply(image, kind, key).numpy()
  np.testing.assert_array_equal(a, augment.apply(image, kind, key).numpy())
  assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
  outs = {augment.apply(image, kind, augment.example_key(3, 1, i)).numpy()
          .tobytes() for i in range(12)}
  assert len(outs) > 6


def test_grayscale_and_digit_levels():
  """1 channel, values 0..16 (digits): every op runs, levels stay 0..16."""
  image = tf.constant(_random_image((8, 8, 1), high=17))
  for i in range(40):
    out = augment.apply(image, "randaugment+none", augment.example_key(0, 0, i),
                        pixel_max=16.0).numpy()
    assert out.dtype == np.uint8 and out.shape == (8, 8, 1) and out.max() <= 16
  x = tf.constant(_random_image((8, 8, 1)).astype(np.float32))
  for k, name in enumerate(policies.OPS):   # every op on one channel
    v = policies.magnitude(name, 8, 31, 8, 8)
    out = policies.apply_op(x, tf.constant(k), tf.constant(v)).numpy()
    assert out.shape == (8, 8, 1) and 0 <= out.min() and out.max() <= 255
  # float images in [0, 1] (npz) come back as float32 in [0, 1].
  f = tf.constant(_random_image((8, 8, 1)).astype(np.float32) / 255.0)
  out = augment.apply(f, "autoaugment+none", augment.example_key(0, 0, 1),
                      pixel_max=1.0).numpy()
  assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0


def test_policy_leaves_the_crop_and_flip_draws_alone():
  """randaugment+crop_flip = crop_flip (same key, same crop and flip) of the
  policy's image, whose draws come from their own fold of the key."""
  image = tf.constant(_random_image((16, 16, 3)))
  for i in range(10):
    key = augment.example_key(0, 2, i)
    policy_key = tf.random.experimental.stateless_fold_in(
        key, augment._POLICY_SALT, alg="philox")
    expected = augment.apply(policies.apply("randaugment", image, policy_key),
                             "crop_flip", key)
    np.testing.assert_array_equal(
        augment.apply(image, "randaugment+crop_flip", key), expected)


def test_resolve_and_unknown_policy():
  assert augment.resolve("randaugment", "crop_flip") == "randaugment+crop_flip"
  assert augment.resolve("crop", "crop_flip") == "crop"
  with pytest.raises(ValueError, match="unknown augmentation policy 'mix'"):
    policies.apply("mix", tf.zeros([4, 4, 1], tf.uint8), augment.example_key(
        0, 0, 0))
