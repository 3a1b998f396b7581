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

`objective.label_smoothing` α (default 0) smooths the objective's
classification cross-entropy: TRADES' natural CE(f(x), y) (ARoW's α = 0.2),
AT's CE(f(x~), y), the CE part of MART's adv term. Its KL terms are untouched.
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
  # (labels, nat_logits, adv_logits, label_smoothing=0.) -> {name: [B]}
  terms: Callable
  coefficients: Callable     # (objective_cfg) -> {name: float}


def _at_terms(labels, nat_logits, adv_logits, label_smoothing=0.0):
  del nat_logits
  return {"adv": losses.cross_entropy(adv_logits, labels, label_smoothing)}


def _trades_terms(labels, nat_logits, adv_logits, label_smoothing=0.0):
  return {"nat": losses.cross_entropy(nat_logits, labels, label_smoothing),
          "kl": losses.kl_divergence(nat_logits, adv_logits)}


def mart_terms(labels, nat_logits, adv_logits, label_smoothing=0.0):
  adv_probs = tf.nn.softmax(adv_logits)
  num_classes = tf.shape(adv_logits)[-1]
  onehot = tf.one_hot(labels, num_classes)
  # The most probable wrong class on the adversarial example.
  best_wrong = tf.reduce_max(adv_probs - 2.0 * onehot, axis=-1)
  boosted = losses.cross_entropy(adv_logits, labels, label_smoothing) - tf.math.log(
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


def check_label_smoothing(objective_cfg):
  """objective.label_smoothing in [0, 1), or one error line."""
  value = float(objective_cfg.get("label_smoothing", 0.0))
  if not 0.0 <= value < 1.0:
    raise ValueError(f"objective.label_smoothing must be in [0, 1), got {value}")
  return value


def get_objective(name):
  if name not in OBJECTIVES:
    raise ValueError(f"unknown objective.name '{name}'; valid: "
                     f"{', '.join(sorted(OBJECTIVES))}")
  return OBJECTIVES[name]
