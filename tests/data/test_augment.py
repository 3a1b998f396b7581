"""Stateless crop / flip of one image."""
import numpy as np
import pytest
import tensorflow as tf

from official.data import augment


def _image(h=8, w=8, c=3, seed=0):
  # No zeros, so zero padding that enters a crop is visible.
  rng = np.random.RandomState(seed)
  return rng.randint(1, 256, size=(h, w, c)).astype(np.uint8)


def _candidates(image, flips):
  """Every crop of the zero-padded image (and its mirror if flips)."""
  h, w, _ = image.shape
  padded = np.pad(image, [(4, 4), (4, 4), (0, 0)])
  crops = [padded[y:y + h, x:x + w] for y in range(9) for x in range(9)]
  return crops + [c[:, ::-1] for c in crops] if flips else crops


def test_none_is_identity():
  image = _image()
  out = augment.apply(tf.constant(image), "none", augment.example_key(0, 0, 0))
  np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("kind", ["crop", "crop_flip"])
def test_output_is_a_padded_crop(kind):
  image = _image()
  outs = []
  for i in range(40):
    out = augment.apply(tf.constant(image), kind,
                        augment.example_key(3, 1, i)).numpy()
    assert out.shape == image.shape and out.dtype == np.uint8
    flip = kind == "crop_flip"
    assert any(np.array_equal(out, c) for c in _candidates(image, flip))
    outs.append(out)
  # 40 keys give several distinct results, some of them not the original.
  assert len({o.tobytes() for o in outs}) > 5
  assert any(not np.array_equal(o, image) for o in outs)
  if kind == "crop":  # Never mirrored: a crop only, not in the mirror set.
    mirrors = _candidates(image, True)[81:]
    assert not any(np.array_equal(o, m) for o in outs for m in mirrors)


def test_key_is_a_function_of_seed_epoch_id():
  key = lambda s, e, i: augment.example_key(s, e, i).numpy().tolist()
  assert key(1, 2, 3) == key(1, 2, 3)
  assert len({str(key(1, 2, 3)), str(key(2, 2, 3)), str(key(1, 3, 3)),
              str(key(1, 2, 4))}) == 4
  image = tf.constant(_image())
  a = augment.apply(image, "crop_flip", augment.example_key(1, 2, 3))
  b = augment.apply(image, "crop_flip", augment.example_key(1, 2, 3))
  np.testing.assert_array_equal(a, b)
