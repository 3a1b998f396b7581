"""Training augmentation of one image, stateless so that a resumed run matches.

The randomness of an example is a function of a key derived from
(seed, epoch, id) only, never of a global or per-iterator generator state.
"""
import tensorflow as tf

AUGMENTS = ("none", "crop", "crop_flip")
PAD = 4  # torchvision RandomCrop(32, padding=4), as in the papers' code.


def example_key(seed, epoch, example_id):
  """A stateless seed (int64 [2]) unique to (seed, epoch, example id)."""
  key = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
  return tf.random.experimental.stateless_fold_in(
      key, tf.cast(example_id, tf.int64), alg="philox")


def apply(image, kind, key):
  """Augments one [H, W, C] image (uint8 or float) according to `kind`."""
  if kind == "none":
    return image
  crop_key, flip_key = tf.unstack(
      tf.random.experimental.stateless_split(key, 2, alg="philox"))
  # Zero padding, like RandomCrop(padding=4) (its padding_mode is "constant").
  padded = tf.pad(image, [[PAD, PAD], [PAD, PAD], [0, 0]])
  image = tf.image.stateless_random_crop(padded, image.shape, crop_key)
  if kind == "crop_flip":
    image = tf.image.stateless_random_flip_left_right(image, flip_key)
  return image
