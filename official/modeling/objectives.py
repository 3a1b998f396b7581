"""Base adversarial-training objectives as named per-example loss terms.

An objective says which attack generates its training variant and splits its
loss into named per-example terms with fixed coefficients. The training step
computes `sum_k coefficient_k * weight_k,i * term_k,i` averaged over the global
batch, where the per-term, per-example weights come from the reweighting method
(1 where a method is silent). Naming the terms is what lets MAIL weight only the
KL term of TRADES, or only the CE+BCE term of MART, without a special case.

Formulas follow the official codes (shared specs/methods.md, tagged [code]):
  at      Madry et al. 2018:  adv = CE(f(x~), y)
  trades  Zhang et al. 2019:  nat = CE(f(x), y);  kl = KL(p(x) || p(x~));  β·kl
  mart    Wang et al. 2020:   adv = CE(f(x~), y) - log(1.0001 - max_{j≠y} p_j(x~))
                              kl  = KL(p(x) || p(x~)) · (1.0000001 - p_y(x));  β·kl
"""
import dataclasses
from typing import Callable

import tensorflow as tf

from official.attacks import losses


@dataclasses.dataclass(frozen=True)
class Objective:
  name: str
  attack_loss: str           # objective of the training attack: ce | kl
  random_start: str          # the official code's PGD start
  needs_natural: bool        # whether the loss uses f(x) in training mode
  terms: Callable            # (labels, nat_logits, adv_logits) -> {name: [B]}
  coefficients: Callable     # (objective_cfg) -> {name: float}


def _at_terms(labels, nat_logits, adv_logits):
  del nat_logits
  return {"adv": losses.cross_entropy(adv_logits, labels)}


def _trades_terms(labels, nat_logits, adv_logits):
  return {"nat": losses.cross_entropy(nat_logits, labels),
          "kl": losses.kl_divergence(nat_logits, adv_logits)}


def mart_terms(labels, nat_logits, adv_logits):
  adv_probs = tf.nn.softmax(adv_logits)
  num_classes = tf.shape(adv_logits)[-1]
  onehot = tf.one_hot(labels, num_classes)
  # The most probable wrong class on the adversarial example.
  best_wrong = tf.reduce_max(adv_probs - 2.0 * onehot, axis=-1)
  boosted = losses.cross_entropy(adv_logits, labels) - tf.math.log(
      1.0001 - best_wrong + 1e-12)
  nat_probs = tf.nn.softmax(nat_logits)
  true_probs = tf.reduce_sum(nat_probs * onehot, axis=-1)
  # MART's code takes log(adv_probs + 1e-12) inside the KL; the stable
  # log-softmax form differs from it by < 1e-10 per class.
  kl = losses.kl_divergence(nat_logits, adv_logits)
  return {"adv": boosted, "kl": kl * (1.0000001 - true_probs)}


OBJECTIVES = {
    "at": Objective("at", "ce", "uniform", False, _at_terms,
                    lambda cfg: {"adv": 1.0}),
    "trades": Objective("trades", "kl", "gaussian", True, _trades_terms,
                        lambda cfg: {"nat": 1.0, "kl": float(cfg.beta)}),
    "mart": Objective("mart", "ce", "gaussian", True, mart_terms,
                      lambda cfg: {"adv": 1.0, "kl": float(cfg.beta)}),
}


def get_objective(name):
  if name not in OBJECTIVES:
    raise ValueError(f"unknown objective.name '{name}'; valid: "
                     f"{', '.join(sorted(OBJECTIVES))}")
  return OBJECTIVES[name]
