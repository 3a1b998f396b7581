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
