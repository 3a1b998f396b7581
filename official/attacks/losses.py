"""Per-example attack objectives on logits. Every function returns a [B] vector.

The PGD loop *maximises* these, so each is written as "larger = more adversarial".
"""
import tensorflow as tf


def cross_entropy(logits, labels):
  return tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(labels, tf.int32), logits=logits)


def cw_margin(logits, labels, confidence=50.0):
  """Carlini-Wagner margin loss as in the MART / GAIRAT code (`cwloss`).

  loss = -max(z_y - max_{j != y} z_j + confidence, 0): maximising it pushes the
  best wrong logit above the true one by `confidence` and then stops (clamp).
  """
  num_classes = tf.shape(logits)[-1]
  onehot = tf.one_hot(labels, num_classes, dtype=logits.dtype)
  true_logit = tf.reduce_sum(onehot * logits, axis=-1)
  # -1000 keeps the true class out of the max, as the official code does.
  other_logit = tf.reduce_max((1.0 - onehot) * logits - onehot * 1000.0, axis=-1)
  return -tf.nn.relu(true_logit - other_logit + confidence)


def kl_divergence(nat_logits, adv_logits):
  """KL(p_nat || p_adv) per example: the TRADES inner objective and regulariser."""
  log_p_nat = tf.nn.log_softmax(nat_logits, axis=-1)
  log_p_adv = tf.nn.log_softmax(adv_logits, axis=-1)
  return tf.reduce_sum(tf.exp(log_p_nat) * (log_p_nat - log_p_adv), axis=-1)


def attack_loss(name, logits, labels, nat_logits=None, confidence=50.0):
  """Dispatches on the attack objective name: ce | cw | kl."""
  if name == "ce":
    return cross_entropy(logits, labels)
  if name == "cw":
    return cw_margin(logits, labels, confidence)
  if name == "kl":
    return kl_divergence(nat_logits, logits)
  raise ValueError(f"unknown attack loss '{name}'; valid: ce, cw, kl")
