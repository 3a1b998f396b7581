"""Training augmentation of one image, stateless so that a resumed run matches.

The randomness of an example is a function of a key derived from
(seed, epoch, id) only, never of a global or per-iterator generator state.

Kinds (`data.augment`; DataBundle.augment holds the resolved one):
  none, crop (pad 4 + random crop), crop_flip (+ horizontal flip);
  randaugment+G, autoaugment+G: the policy (official/data/policies.py:
  torchvision's RandAugment(2, 8) / AutoAugment CIFAR-10, as AT-BSL) and
  then G, the dataset's own crop/flip (`data.augment: randaugment` resolves
  to randaugment+crop_flip on CIFAR, randaugment+none on MNIST). The crop and
  flip draw from the same key as without the policy, which draws from its
  own fold of it: the policy is the only difference to the plain run.
"""
import tensorflow as tf

from official.data import policies

GEOMETRIC = ("none", "crop", "crop_flip")
AUGMENTS = GEOMETRIC + policies.POLICIES   # what data.augment accepts
PAD = 4  # torchvision RandomCrop(32, padding=4), as in the papers' code.
_POLICY_SALT = 0x5eed  # fold of the example key for the policy's draws


def example_key(seed, epoch, example_id):
  """A stateless seed (int64 [2]) unique to (seed, epoch, example id)."""
  key = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
  return tf.random.experimental.stateless_fold_in(
      key, tf.cast(example_id, tf.int64), alg="philox")


def resolve(kind, default):
  """data.augment -> the kind `apply` takes: a policy gets `+default`."""
  if kind in policies.POLICIES:
    return f"{kind}+{default}"
  return kind


def apply(image, kind, key, pixel_max=255.0):
  """Augments one [H, W, C] image (uint8 or float) according to `kind`.

  pixel_max: the images' largest value (255, digits' 16, 1 for floats); the
  policies work on 8-bit levels and need it.
  """
  policy, _, kind = kind.rpartition("+")
  if policy:
    policy_key = tf.random.experimental.stateless_fold_in(
        key, _POLICY_SALT, alg="philox")
    image = policies.apply(policy, image, policy_key, pixel_max)
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
