"""SRAT: separable reweighted adversarial training on imbalanced data.

Wang, Xu, Liu, Li, Thuraisingham, Tang, "Imbalanced Adversarial Training with
Reweighting", arXiv 2107.13639 (2021).

Confirmed [abstract]: under strong imbalance, adversarially trained models
lose far more on under-represented classes than naturally trained ones;
upweighting those classes drastically hurts the well-represented ones; the
paper shows that poor separability of the classes' features is a key cause;
SRAT = reweighted adversarial training + learning features that separate the
classes. Nothing more of the paper was reachable here (the public copies found
stop after the abstract and the first lines of the introduction), so the
formula below is this library's reading (shared specs/methods.md, SRAT), with
each unverified choice an option:

  loss = mean_i w_{y_i} · ℓ(f(x̃_i), y_i)  +  λ · mean_i L_sep,i(z, y)

  x̃      the objective's training attack (AT: PGD-10 on CE)
  w_c     class weights (class_weights.py): effective number, β = 0.9999, mean
          1 over classes, deferred to 80% of training (DRW), batch-normalised
  ℓ       ce
          focal  (1 − p_y)^γ · CE                 (Lin et al. 2017; γ = 1 as in
                                                   LDAM-DRW's code)
          ldam   CE(s · (f − m_y·e_y), y),         (Cao et al. 2019)
                 m_c ∝ n_c^(−1/4) scaled to a largest margin of 0.5
  z       L2-normalised penultimate features of x̃ (the training-mode pass)
  L_sep   triplet  batch-hard (Hermans et al. 2017), per anchor i:
                   relu(max_{p: y_p = y_i, p ≠ i} ‖z_i − z_p‖
                        − min_{n: y_n ≠ y_i} ‖z_i − z_n‖ + margin)
          supcon   supervised contrastive (Khosla et al. 2020, L_out), per i:
                   −1/|P(i)| Σ_{p ∈ P(i)} log softmax_{a ≠ i}(z_i·z_a / τ)_p
          An anchor without a positive (or, for triplet, a negative) gives 0.

Anchors are compared with the GLOBAL batch: features and labels are gathered
from every replica (the gather's gradient sums what every replica's loss
sends back), each replica returns the terms of its own anchors, so 2 replicas
train exactly as 1 device. λ multiplies the "sep" term itself (coefficient 1).

Where this differs from LDAM-DRW's code: its focal loss puts the class weight
inside p = exp(−w·CE); here p is the model's probability and w multiplies the
loss. Its LDAM scale s = 30 goes with a cosine classifier; the networks here
have linear heads, so s defaults to 1. SupCon's code rescales the loss by
τ / 0.07; not done here.
"""
import functools

import numpy as np
import tensorflow as tf
from absl import logging

from official.attacks import losses
from official.common import replicas
from official.reweighting import base
from official.reweighting import class_weights

LOSSES = ("ce", "focal", "ldam")
SEPARATIONS = ("triplet", "supcon", "none")
_FAR = 1e6  # larger than any distance between vectors of norm <= 1


def focal(logits, labels, gamma):
  ce = losses.cross_entropy(logits, labels)
  return tf.pow(1.0 - tf.exp(-ce), gamma) * ce


def ldam_margins(counts, max_margin=0.5):
  """m_c = C / n_c^(1/4) with C such that the largest margin is max_margin."""
  m = np.maximum(np.asarray(counts, np.float64), 1.0) ** -0.25
  return (m * max_margin / m.max()).astype(np.float32)


def ldam(logits, labels, margins, scale):
  onehot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
  m = tf.gather(tf.constant(margins, logits.dtype), labels)
  return losses.cross_entropy(scale * (logits - onehot * m[:, None]), labels)


def pairwise_distances(z):
  sq = tf.reduce_sum(z * z, axis=-1)
  d2 = sq[:, None] + sq[None, :] - 2.0 * tf.matmul(z, z, transpose_b=True)
  # The floor keeps the gradient of sqrt finite for identical features.
  return tf.sqrt(tf.maximum(d2, 1e-12))


def _masks(labels):
  same = tf.equal(labels[:, None], labels[None, :])
  not_self = tf.logical_not(tf.eye(tf.shape(labels)[0], dtype=tf.bool))
  return tf.logical_and(same, not_self), tf.logical_not(same)


def batch_hard_triplet(z, labels, margin):
  """[N] per-anchor batch-hard triplet loss on features z [N, D]."""
  d = pairwise_distances(z)
  pos, neg = _masks(labels)
  hardest_pos = tf.reduce_max(tf.where(pos, d, 0.0), axis=1)
  hardest_neg = tf.reduce_min(tf.where(neg, d, _FAR), axis=1)
  valid = tf.logical_and(tf.reduce_any(pos, 1), tf.reduce_any(neg, 1))
  loss = tf.nn.relu(hardest_pos - hardest_neg + margin)
  return tf.where(valid, loss, 0.0)


def supervised_contrastive(z, labels, temperature):
  """[N] per-anchor supervised contrastive loss on features z [N, D]."""
  pos, _ = _masks(labels)
  n = tf.shape(labels)[0]
  logits = tf.matmul(z, z, transpose_b=True) / temperature
  logits = tf.where(tf.eye(n, dtype=tf.bool), -_FAR, logits)  # a != i
  log_prob = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
  num_pos = tf.reduce_sum(tf.cast(pos, z.dtype), axis=1)
  total = tf.reduce_sum(tf.where(pos, log_prob, 0.0), axis=1)
  return tf.where(num_pos > 0, -total / tf.maximum(num_pos, 1.0), 0.0)


def own_anchor_terms(fn, z, labels):
  """fn(z, labels) -> [N] over the global batch; this replica's rows of it.

  Batches are equal across replicas (drop_remainder), and all_gather
  concatenates them in replica order.
  """
  values = fn(base.global_gather(z), base.global_gather(labels))
  return replicas.local_rows(values, tf.shape(z)[0])


class SRAT(class_weights.ClassBalanced):
  """Class-weighted ℓ on the adversarial examples + λ · feature separability."""
  name = "srat"
  needs_features = True

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    self.loss = cfg.get("loss", "ce")
    self.sep = cfg.get("sep", "triplet")
    base.check_choice("reweighting.loss", self.loss, LOSSES)
    base.check_choice("reweighting.sep", self.sep, SEPARATIONS)
    if self.loss != "ce" and config.objective.name != "at":
      raise ValueError(f"reweighting.loss '{self.loss}' replaces AT's 'adv' "
                       f"term; it needs objective.name 'at', got "
                       f"'{config.objective.name}'")
    self.gamma = float(cfg.get("focal_gamma", 1.0))
    self.margins = ldam_margins(data.class_counts,
                                float(cfg.get("ldam_max_margin", 0.5)))
    self.scale = float(cfg.get("ldam_scale", 1.0))
    self.sep_weight = float(cfg.get("sep_weight", 1.0))
    if self.sep == "triplet":
      self.sep_fn = functools.partial(
          batch_hard_triplet, margin=float(cfg.get("triplet_margin", 0.3)))
    else:
      self.sep_fn = functools.partial(
          supervised_contrastive,
          temperature=float(cfg.get("supcon_temperature", 0.1)))
    self.extra_term_names = ("sep",) if self.sep != "none" else ()
    logging.info("srat: loss %s, separability %s x %g", self.loss, self.sep,
                 self.sep_weight)

  def extra_terms(self, ctx):
    terms = {}
    if self.loss == "focal":
      terms["adv"] = focal(ctx.adversarial_logits[ctx.primary_attack],
                           ctx.labels, self.gamma)
    elif self.loss == "ldam":
      terms["adv"] = ldam(ctx.adversarial_logits[ctx.primary_attack],
                          ctx.labels, self.margins, self.scale)
    if self.sep != "none":
      features = ctx.features[ctx.primary_attack]
      features = tf.reshape(features, [tf.shape(features)[0], -1])
      z = tf.math.l2_normalize(tf.cast(features, tf.float32), axis=-1)
      terms["sep"] = self.sep_weight * own_anchor_terms(self.sep_fn, z,
                                                        ctx.labels)
    return terms
