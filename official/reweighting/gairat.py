"""GAIRAT: geometry-aware instance-reweighted adversarial training.

Zhang, Zhu, Niu, Han, Sugiyama, Kankanhalli, "Geometry-aware
Instance-reweighted Adversarial Training", ICLR 2021, arXiv 2010.01736.
Read in the official code, zjfheart/Geometry-aware-Instance-reweighted-
Adversarial-Training (GAIR.py `GAIR`, GAIRAT.py) [code].

An example whose PGD iterates stay correctly classified for many steps is far
from the decision boundary ("guarded") and gets a small weight; one the
attack breaks at once gets a large weight. With κ_i the example's geometry
value and K the number of PGD steps of the training attack:

  tanh      ω_i = (1 + tanh(λ + 5·(1 − 2κ_i/K))) / 2        (the default)
  sigmoid   ω_i = sigmoid(λ + 5·(1 − 2κ_i/K))
  discrete  ω_i = (K + 1 − κ_i) / (K + 1)                  (no λ)
  w_i = ω_i · B / Σ_j ω_j   over the GLOBAL batch of B examples,

so that the step's loss Σ_i w_i CE_i / B = Σ_i ω_i CE_i / Σ_i ω_i. λ = −1
(default); λ = +∞ makes every ω_i = 1: plain AT. Before `burn_in_epochs`
(0-based epochs) every w_i = 1: plain AT (official: 60 of 120 epochs on
WRN-32-10, 30 of 100 on ResNet-18).

κ (`kappa`):
  count      the official GA_PGD: how many PGD iterates, the random start
             included and the last iterate excluded, are still classified
             correctly (attack stats "correct_count"). The default.
  first_hit  the paper's definition: the least number of steps after which
             the iterate is misclassified, K if never ("kappa_first").
Both come from the objective's training attack (frozen BN), so with TRADES κ
counts the KL-PGD iterates, as the official GAIR_TRADES.py does.

The weighted term is the objective's adversarial term: `adv` for at and mart
(MART's CE + BCE), `kl` for trades (`term` overrides it, e.g. `nat`). The
official GAIR_TRADES.py reweights through its own GAIRLoss (by default
boosting the natural term); that variant is not reproduced here.

Where this differs from the official code:
  - K/2 is exact here; the official code uses int(K/2) (the same for even K).
  - The official code switches at (epoch + 1) >= begin_epoch, i.e. it
    reweights from the 60th epoch (59 plain epochs); here burn_in_epochs=60
    means 60 plain epochs.
  - Its linear / piecewise λ schedules are not implemented (`fixed`, its
    default, is).
  - tanh is evaluated as sigmoid(2z) = (1 + tanh z)/2, which does not cancel
    to 0 in float32 for z << 0; Σω is floored at 1e-30 (weights 0 rather than
    NaN if every ω underflows).
  - With `discrete`, which has no λ, λ = +∞ also switches the weights off.
"""
import math

import numpy as np
import tensorflow as tf

from official.modeling import objectives
from official.reweighting import base

FUNCTIONS = ("tanh", "sigmoid", "discrete")
# kappa option -> the attack statistic (official/attacks/pgd.py).
KAPPAS = {"count": "correct_count", "first_hit": "kappa_first"}
# The term an instance weight multiplies, per objective (MAIL uses it too).
ADVERSARIAL_TERM = {"at": "adv", "mart": "adv", "trades": "kl"}


def geometry_weights(kappa, steps, lam, function="tanh"):
  """Unnormalised ω_i from κ_i (any shape) for K = `steps`."""
  kappa = tf.cast(kappa, tf.float32)
  steps = float(steps)
  if function == "discrete":
    return (steps + 1.0 - kappa) / (steps + 1.0)
  z = lam + 5.0 * (1.0 - 2.0 * kappa / steps)
  if function == "tanh":
    return tf.sigmoid(2.0 * z)  # = (1 + tanh z) / 2
  if function == "sigmoid":
    return tf.sigmoid(z)
  raise ValueError(f"unknown reweighting.function '{function}'; valid: "
                   f"{', '.join(FUNCTIONS)}")


def normalise(w, global_batch_size):
  """w · B / Σ w over the global batch: mean 1, so the loss is Σ ω ℓ / Σ ω."""
  total = base.global_sum(tf.reduce_sum(w))
  return w * (float(global_batch_size) / tf.maximum(total, 1e-30))


def weighted_term(cfg, config):
  """The objective's term the instance weights multiply (cfg.term overrides)."""
  objective = objectives.get_objective(config.objective.name)
  term = cfg.get("term", "") or ADVERSARIAL_TERM[objective.name]
  valid = tuple(objective.coefficients(config.objective))
  if term not in valid:
    raise ValueError(f"reweighting.term '{term}' is not a term of objective "
                     f"'{objective.name}'; valid: {', '.join(valid)}")
  return term


def check_kappa(name):
  if name not in KAPPAS:
    raise ValueError(f"unknown reweighting.kappa '{name}'; valid: "
                     f"{', '.join(KAPPAS)}")
  return KAPPAS[name]


def visited(memory, train_ids):
  """Values of a NaN-initialised memory for the training ids seen so far."""
  values = memory.numpy()[np.asarray(train_ids)]
  return values[np.isfinite(values)]


class GAIRAT(base.Method):
  """Normalised geometry-aware weights on the objective's adversarial term."""
  name = "gairat"
  metric_names = ("kappa_mean", "reweighting_on")

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    self.function = cfg.get("function", "tanh")
    if self.function not in FUNCTIONS:
      raise ValueError(f"unknown reweighting.function '{self.function}'; "
                       f"valid: {', '.join(FUNCTIONS)}")
    self.kappa_stat = check_kappa(cfg.get("kappa", "count"))
    self.lam = float(cfg.get("lam", -1.0))
    if math.isnan(self.lam) or self.lam == -math.inf:
      raise ValueError(f"reweighting.lam must be a number or +inf, got "
                       f"{self.lam}")
    self.burn_in = int(cfg.get("burn_in_epochs", 0))
    if self.burn_in < 0:
      raise ValueError(f"reweighting.burn_in_epochs must be >= 0, got "
                       f"{self.burn_in}")
    self.steps = int(config.attack.steps)
    self.term = weighted_term(cfg, config)
    # λ = +∞ is plain AT by definition (also for `discrete`, which has no λ).
    self.enabled = self.lam != math.inf

  def build_state(self):
    # The last κ of every example: histograms per epoch (NaN = not seen yet).
    self.kappa = base.PerExampleMemory("gairat_kappa", self.data.num_ids,
                                       float("nan"))
    return {"kappa": self.kappa}

  def _kappa(self, ctx):
    return ctx.attack_stats[ctx.primary_attack][self.kappa_stat]

  def _on(self, ctx):
    return tf.logical_and(ctx.epoch >= self.burn_in, self.enabled)

  def weights(self, ctx):
    omega = geometry_weights(self._kappa(ctx), self.steps, self.lam,
                             self.function)
    w = normalise(omega, ctx.global_batch_size)
    return {self.term: tf.where(self._on(ctx), w, tf.ones_like(w))}

  def metrics(self, ctx, weights):
    del weights
    kappa = tf.cast(self._kappa(ctx), tf.float32)
    self.kappa.update(ctx.ids, kappa)
    return {"kappa_mean": base.global_sum(tf.reduce_sum(kappa))
                          / ctx.global_batch_size,
            "reweighting_on": tf.cast(self._on(ctx), tf.float32)}

  def epoch_summaries(self):
    kappa = visited(self.kappa, self.data.train_ids)
    if not kappa.size:
      return {}
    return {"kappa": kappa, "kappa_mean": kappa.mean()}
