import numpy as np
import tensorflow as tf

from official.attacks import losses


def test_cw_margin_matches_hand_computation():
  logits = tf.constant([[3.0, 1.0, 2.5], [0.0, 4.0, 1.0]])
  labels = tf.constant([0, 2])
  # Example 0: z_y=3, best other=2.5 -> -(3-2.5+1)= -1.5 with confidence 1.
  # Example 1: z_y=1, best other=4 -> 1-4+1=-2 < 0 -> clamp -> 0.
  got = losses.cw_margin(logits, labels, confidence=1.0).numpy()
  np.testing.assert_allclose(got, [-1.5, 0.0], atol=1e-6)


def test_kl_matches_hand_computation():
  nat = np.array([[1.0, 0.0, -1.0]])
  adv = np.array([[0.0, 0.5, 0.2]])
  p = np.exp(nat) / np.exp(nat).sum()
  q = np.exp(adv) / np.exp(adv).sum()
  expected = (p * np.log(p / q)).sum()
  got = losses.kl_divergence(tf.constant(nat, tf.float32),
                             tf.constant(adv, tf.float32)).numpy()
  np.testing.assert_allclose(got, [expected], rtol=1e-5)
  assert expected > 0.05


def test_cross_entropy_is_per_example():
  logits = tf.constant([[2.0, 0.0], [0.0, 2.0]])
  got = losses.cross_entropy(logits, tf.constant([0, 0])).numpy()
  np.testing.assert_allclose(got, [np.log(1 + np.exp(-2)), np.log(1 + np.exp(2))],
                             rtol=1e-6)


def test_dlr_by_hand():
  logits = tf.constant([[3.0, 1.0, 2.0, 0.0], [3.0, 1.0, 2.0, 0.0]])
  # Sorted 3 > 2 > 1 > 0. Row 0 (y = 0, the top): -(3 - 2) / (3 - 1);
  # row 1 (y = 1): the best wrong logit is the top, -(1 - 3) / (3 - 1).
  np.testing.assert_allclose(
      losses.dlr(logits, tf.constant([0, 1])).numpy(), [-0.5, 1.0], rtol=1e-6)
  # Targeted towards 3: -(z_y - z_3) / (3 - (1 + 0) / 2).
  np.testing.assert_allclose(
      losses.dlr_targeted(logits, tf.constant([0, 1]),
                          tf.constant([3, 3])).numpy(),
      [-3.0 / 2.5, -1.0 / 2.5], rtol=1e-6)
  # Shift and scale invariant (the point of DLR), unlike cross-entropy.
  np.testing.assert_allclose(
      losses.dlr(7.0 * logits + 5.0, tf.constant([0, 1])).numpy(),
      [-0.5, 1.0], rtol=1e-5)


def test_label_smoothed_cross_entropy_by_hand():
  # logits (2, 0) with y = 0 and α = 0.2: (1 - α)·log(1 + e^-2)
  # + α·mean(log(1 + e^-2), log(1 + e^2)).
  logits = tf.constant([[2.0, 0.0]])
  a, b = np.log(1 + np.exp(-2.0)), np.log(1 + np.exp(2.0))
  got = losses.cross_entropy(logits, tf.constant([0]), label_smoothing=0.2)
  np.testing.assert_allclose(got.numpy(), [0.8 * a + 0.2 * (a + b) / 2],
                             rtol=1e-6)
  # α = 0 is the plain CE; smoothing raises the loss of a confident example.
  plain = losses.cross_entropy(logits, tf.constant([0]), 0.0).numpy()
  np.testing.assert_allclose(plain, [a], rtol=1e-6)
  assert got.numpy()[0] > plain[0]
