"""Per-example attack objectives on logits. Every function returns a [B] vector.

The PGD loop *maximises* these, so each is written as "larger = more adversarial".
"""
import tensorflow as tf


def cross_entropy(logits, labels, label_smoothing=0.0):
  """CE per example; with label smoothing α the target is (1 − α)·onehot +
  α/K: (1 − α)·(−log p_y) + α·mean_k(−log p_k), the form of ARoW's
  `LabelSmoothingCrossEntropy` (and of torch's label_smoothing)."""
  labels = tf.cast(labels, tf.int32)
  if not label_smoothing:
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                          logits=logits)
  log_p = tf.nn.log_softmax(logits, axis=-1)
  nll = -tf.gather(log_p, labels, axis=-1, batch_dims=1)
  return ((1.0 - label_smoothing) * nll
          - label_smoothing * tf.reduce_mean(log_p, axis=-1))


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


def dlr(logits, labels):
  """Difference of Logits Ratio (Croce & Hein 2020, eq. 5), untargeted.

  loss = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), with z_pi the logits
  sorted in decreasing order. Dividing by a logit difference makes the loss
  invariant to shifting and rescaling the logits, so a model cannot hide
  behind large or saturated logits as it can with cross-entropy. Needs at
  least 3 classes. 1e-12 keeps constant logits finite, as in the reference.
  """
  labels = tf.cast(labels, tf.int32)
  top = tf.math.top_k(logits, 3).values
  true_logit = tf.gather(logits, labels, axis=-1, batch_dims=1)
  # The best wrong logit: the 2nd largest if the top one is the true class.
  top_is_true = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels)
  other = tf.where(top_is_true, top[:, 1], top[:, 0])
  return -(true_logit - other) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(logits, labels, target):
  """Targeted DLR (Croce & Hein 2020, eq. 6) towards class `target`.

  loss = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2). Needs at least 4
  classes.
  """
  labels = tf.cast(labels, tf.int32)
  top = tf.math.top_k(logits, 4).values
  true_logit = tf.gather(logits, labels, axis=-1, batch_dims=1)
  target_logit = tf.gather(logits, tf.cast(target, tf.int32), axis=-1,
                           batch_dims=1)
  return -(true_logit - target_logit) / (
      top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)
