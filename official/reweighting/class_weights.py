"""Class-level weights for long-tailed training, and the method that uses them.

Pure functions of the training counts n_c (DataBundle.class_counts):
  none       w_c = 1
  inverse    w_c ∝ 1 / n_c
  effective  w_c ∝ (1 − β) / (1 − β^{n_c}), β = 0.9999: the inverse "effective
             number of samples" (Cui et al., CVPR 2019, Eq. 3 and Sec. 4)
normalised to mean 1 over the classes (shared specs/methods.md, SRAT). A
class with no training example gets weight 0 and is left out of the mean.

Deferred re-weighting (DRW, Cao et al., NeurIPS 2019 "LDAM-DRW"): every weight
is 1 before `defer_epochs` and w_c from then on. LDAM-DRW switches at epoch 160
of 200, so `defer_epochs = -1` means 80% of `config.epochs`.

Per example, w_i = w_{y_i}. `normalize` says how they meet the loss:
  batch    w_i · B / Σ_j w_{y_j} over the GLOBAL batch: the loss becomes
           Σ_i w_i ℓ_i / Σ_i w_i, which is what PyTorch's
           `F.cross_entropy(..., weight=w)` computes in LDAM-DRW's code, and
           the loss keeps AT's scale after the switch (default).
  classes  w_i = w_{y_i} as they are: mean_i w_{y_i} ℓ_i, the spec's formula
           read literally; on long-tailed data the mean weight of a batch is
           then well below 1 (head classes dominate it and weigh little).

`ClassBalanced` is the reweighting method "class_balanced": the objective's
terms (AT: "adv"; TRADES: "nat", "kl"; MART: "adv", "kl"; or `terms`) weighted
by w_{y_i}. SRAT (srat.py) builds on it.
"""
import numpy as np
import tensorflow as tf
from absl import logging

from official.modeling import objectives
from official.reweighting import base

SCHEMES = ("none", "inverse", "effective")
NORMALIZE = ("batch", "classes")


def class_weights(counts, scheme="effective", beta=0.9999):
  """float32 [C] weights, mean 1 over the classes with n_c > 0."""
  if scheme not in SCHEMES:
    raise ValueError(f"unknown class-weight scheme '{scheme}'; valid: "
                     f"{', '.join(SCHEMES)}")
  counts = np.asarray(counts, np.float64)
  present = counts > 0
  if not present.any():
    raise ValueError("class weights: every class count is 0")
  n = np.where(present, counts, 1.0)
  if scheme == "none":
    w = np.ones_like(n)
  elif scheme == "inverse":
    w = 1.0 / n
  else:
    if not 0.0 < beta < 1.0:
      raise ValueError(f"class-weight beta must be in (0, 1), got {beta}")
    w = (1.0 - beta) / (1.0 - np.power(beta, n))
  w = np.where(present, w, 0.0)
  return (w / w[present].mean()).astype(np.float32)


def defer_epoch(defer_epochs, epochs):
  """The first (0-based) epoch with class weights; -1 means 80% of training."""
  defer_epochs = int(defer_epochs)
  return int(0.8 * int(epochs)) if defer_epochs < 0 else defer_epochs


def per_example(weights, labels, epoch, defer, normalize="batch",
                global_batch_size=None):
  """w_{y_i} per example, 1 before epoch `defer`, optionally batch-normalised.

  weights: [C] class weights; labels: [B]; epoch: int scalar (tensor or not).
  With normalize="batch" the weights have mean 1 over the global batch.
  """
  if normalize not in NORMALIZE:
    raise ValueError(f"unknown class-weight normalize '{normalize}'; valid: "
                     f"{', '.join(NORMALIZE)}")
  w = tf.gather(tf.constant(weights, tf.float32), labels)
  w = tf.where(tf.cast(epoch, tf.int32) >= defer, w, tf.ones_like(w))
  if normalize == "batch":
    if global_batch_size is None:
      global_batch_size = base.global_sum(tf.size(w))
    w = w * tf.cast(global_batch_size, tf.float32) / base.global_sum(
        tf.reduce_sum(w))
  return w


class ClassBalanced(base.Method):
  """The objective's terms weighted by the (deferred) class weights."""
  name = "class_balanced"
  metric_names = ("reweighting_on",)

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    self.class_weights = class_weights(
        data.class_counts, cfg.get("scheme", "effective"),
        float(cfg.get("beta", 0.9999)))
    self.defer = defer_epoch(cfg.get("defer_epochs", -1), config.epochs)
    self.normalize = cfg.get("normalize", "batch")
    base.check_choice("reweighting.normalize", self.normalize, NORMALIZE)
    objective = objectives.get_objective(config.objective.name)
    valid = tuple(objective.coefficients(config.objective))
    self.weighted_terms = tuple(cfg.get("terms", ()) or valid)
    for term in self.weighted_terms:
      if term not in valid:
        raise ValueError(f"reweighting.terms: objective '{objective.name}' has "
                         f"no term '{term}'; valid: {', '.join(valid)}")
    logging.info("%s: class weights %s on %s, from epoch %d (1-based)",
                 self.name, [round(float(w), 4) for w in self.class_weights],
                 ", ".join(self.weighted_terms), self.defer + 1)

  def weights(self, ctx):
    w = per_example(self.class_weights, ctx.labels, ctx.epoch, self.defer,
                    self.normalize, ctx.global_batch_size)
    return {term: w for term in self.weighted_terms if term in ctx.terms}

  def metrics(self, ctx, weights):
    del weights
    return {"reweighting_on": tf.cast(ctx.epoch >= self.defer, tf.float32)}
