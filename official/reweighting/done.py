"""DONE: doubly robust instance-reweighted AT (KL-regularised DRO weights).

Sow, Lin, Wang, Liang, "Doubly Robust Instance-Reweighted Adversarial
Training", ICLR 2024, arXiv 2308.00311. Only the abstract and the ICLR reviews
were reachable, and no official code was public (shared specs/done.md; the
tags below are its tags). [review] Eq. 5, the KL-regularised DRO problem over
the examples, and Eq. 6, its compositional form:

  min_θ max_{w ∈ Δ} Σ_i w_i ℓ_i − r·KL(w ‖ uniform)
  = min_θ r·log(mean_i exp(ℓ_i / r)),    w_i = softmax(ℓ / r)_i = ∂Φ/∂ℓ_i

with ℓ_i the loss on the adversarial example x_i + δ_i* (the attack is the
lower level of a bilevel problem, after Fast-BAT). r → ∞ gives uniform
weights (plain AT); r → 0 puts all the weight on the largest loss.

[review] The algorithm (CID) follows SCGD: a running estimate u of the inner
mean mean_i exp(ℓ_i / r). Here it is kept in log space, because exp(ℓ / r)
overflows float32 past ℓ / r = 88 [derived]:

  m_t   = logmeanexp_i(ℓ_i / r)               over the GLOBAL batch
  log_u = m_t on the first reweighted step, then
          logaddexp(log(1 − β) + log_u, log β + m_t)    (u ← (1 − β)u + β e^m_t)
  W_i   = exp(ℓ_i / r − log_u) = B · w_i       (no gradient; Σ_B w ≈ 1)
  loss  = Σ_i W_i ℓ_i / B = Σ_i w_i ℓ_i

Because log_u ≥ log β + m_t ≥ log β + max_i ℓ_i / r − log B, W_i ≤ B / β: the
weights cannot overflow. `normaliser: batch` uses log_u = m_t (W = B · the
plain softmax over the global batch: biased but simple). `clip` > 0 caps W.
log_u and the number of SCGD updates are state (checkpointed); the first
reweighted step initialises log_u. Before `burn_in_epochs`, plain AT (W = 1,
no update).

ℓ_i per objective: at -> "adv" (CE of the PGD example); mart -> "adv"
(MART's CE + BCE; its KL term keeps weight 1, as MAIL-MART); trades -> the
whole per-example TRADES loss nat + β·kl (TRADES has no adversarial CE), and
both terms get W.

Implicit term [open; `implicit`, default none]. The bilevel hypergradient adds
per example ∇²_θδ ℓ · H⁻¹ · ∇_δ ℓ_i at δ* (H: Hessian of the lower level's
minimisation objective −ℓ), weighted by the same w_i. With H⁻¹ = D diagonal
and D no function of θ this is the gradient of the term

  implicit_i = ½ ⟨g_i, D_i g_i⟩,   g_i = ∇_δ CE(f(x_i + δ_i*), y_i)

(one double backprop; CE through the frozen-BN forward the attack uses):
  lambda_identity  D = M / λ, M = 1 on coordinates strictly inside the box
                   [max(x − ε, 0), min(x + ε, 1)], else 0: Fast-BAT's H = λI
                   and mask (OPTML-Group/Fast-BAT, trainer.py `fast_bat`; λ
                   default 1 / attack.step_size, its default).
  barrier_diag     D = 1 / (c[(hi − δ)⁻² + (δ − lo)⁻²]) on the same box: the
                   Hessian of a log barrier (Eq. 7's penalty), 0 on the
                   boundary; c default λ ε² / 2, so D = 1/λ at the centre.
The loss Hessian itself is dropped in both. Fast-BAT's code takes the
attack-loss gradient at its linearisation point (the step before δ*) with BN
in train mode; here both gradients are at δ*, BN frozen. The barrier covers
the pixel range too (done.md wrote only the ε-ball). PGD's sign steps leave most
coordinates on the box boundary, where D = 0, so the term is small. It needs
objective `at` (attack loss = upper loss = CE), and is computed (weight 0)
during burn-in too. Neither option is the paper's exact CID update (not
available here).
"""
import math

import tensorflow as tf
from absl import logging

from official.attacks import losses
from official.modeling import objectives
from official.reweighting import base

NORMALISERS = ("ema", "batch")
IMPLICIT = ("none", "lambda_identity", "barrier_diag")
# The terms whose per-example sum is ℓ_i, and that get the DRO weight.
WEIGHTED_TERMS = {"at": ("adv",), "mart": ("adv",), "trades": ("nat", "kl")}
MASK_TOLERANCE = 1e-7  # Fast-BAT's: a coordinate this close to a bound is on it


def log_mean_exp(z):
  """log(mean(exp(z))) over a vector, stably."""
  z = tf.cast(z, tf.float32)
  return tf.reduce_logsumexp(z) - tf.math.log(tf.cast(tf.size(z), tf.float32))


def scgd_update(log_u, batch_value, beta, first):
  """log((1 − β)·u + β·exp(batch_value)); batch_value itself when `first`."""
  mixed = tf.reduce_logsumexp(tf.stack([
      tf.math.log1p(-beta) + log_u, math.log(beta) + batch_value]))
  return tf.where(first, batch_value, mixed)


def dro_weights(losses_, r, log_u):
  """W_i = exp(ℓ_i / r − log_u) = B · w_i."""
  return tf.exp(tf.cast(losses_, tf.float32) / r - log_u)


def box(x, x_adv, epsilon):
  """(lower, upper): the feasible box of x_adv, as pgd.py clips to it."""
  eps = tf.reshape(tf.cast(epsilon, tf.float32),
                   [-1] + [1] * (x.shape.rank - 1))
  return tf.maximum(x - eps, 0.0), tf.minimum(x + eps, 1.0)


def lambda_identity_inverse(x_adv, lower, upper, lam):
  """Fast-BAT's masked H⁻¹ = M / λ: 1/λ strictly inside the box, else 0."""
  inside = (x_adv > lower + MASK_TOLERANCE) & (x_adv < upper - MASK_TOLERANCE)
  return tf.cast(inside, tf.float32) / lam


def barrier_inverse(x_adv, lower, upper, c):
  """1 / (c[a⁻² + b⁻²]) = a²b² / (c(a² + b²)), a, b: distances to the bounds."""
  a2, b2 = tf.square(upper - x_adv), tf.square(x_adv - lower)
  return tf.math.divide_no_nan(a2 * b2, c * (a2 + b2))


class DONE(base.Method):
  """KL-DRO weights on the objective's loss, SCGD normaliser, implicit term."""
  name = "done"

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    self.r = float(cfg.get("r", 1.0))
    self.beta = float(cfg.get("beta", 0.1))
    self.normaliser = cfg.get("normaliser", "ema")
    self.clip = float(cfg.get("clip", 0.0) or 0.0)
    self.burn_in = int(cfg.get("burn_in_epochs", 0))
    self.implicit = cfg.get("implicit", "none")
    base.check_choice("reweighting.normaliser", self.normaliser, NORMALISERS)
    base.check_choice("reweighting.implicit", self.implicit, IMPLICIT)
    for key, ok in (("r", self.r > 0), ("beta", 0 < self.beta <= 1),
                    ("clip", self.clip >= 0),
                    ("burn_in_epochs", self.burn_in >= 0)):
      if not ok:
        raise ValueError(f"reweighting.{key} out of range (r > 0, 0 < beta <= "
                         f"1, clip >= 0, burn_in_epochs >= 0), got "
                         f"{cfg.get(key)}")
    objective = objectives.get_objective(config.objective.name)
    self.coefficients = objective.coefficients(config.objective)
    self.weighted_terms = WEIGHTED_TERMS[objective.name]
    if self.implicit != "none" and objective.name != "at":
      raise ValueError(f"reweighting.implicit '{self.implicit}' needs "
                       f"objective.name 'at' (attack loss = training loss = "
                       f"CE), got '{objective.name}'")
    lam = float(cfg.get("implicit_lambda", 0.0) or 0.0)
    self.lam = lam if lam > 0 else 1.0 / float(config.attack.step_size)
    c = float(cfg.get("barrier_c", 0.0) or 0.0)
    eps = float(config.attack.epsilon)
    self.barrier_c = c if c > 0 else self.lam * eps**2 / 2
    self.extra_term_names = ("implicit",) if self.implicit != "none" else ()
    self.metric_names = ("reweighting_on", "log_u", "batch_log_mean_exp",
                         "weight_max", "weight_mean", "effective_fraction")
    logging.info("done: r %g, %s normaliser (beta %g), clip %g, burn-in %d "
                 "epochs, implicit %s, weighting %s", self.r, self.normaliser,
                 self.beta, self.clip, self.burn_in, self.implicit,
                 ", ".join(self.weighted_terms))

  def build_state(self):
    # Replica context assigns the same (globally reduced) value on every
    # replica; ONLY_FIRST_REPLICA keeps one of them.
    only_first = tf.VariableAggregation.ONLY_FIRST_REPLICA
    self.log_u = tf.Variable(0.0, trainable=False, name="done_log_u",
                             aggregation=only_first)
    self.updates = tf.Variable(0, dtype=tf.int64, trainable=False,
                               name="done_updates", aggregation=only_first)
    return {"log_u": self.log_u, "updates": self.updates}

  def example_loss(self, terms):
    """ℓ_i: the weighted terms with their coefficients, no gradient."""
    return tf.stop_gradient(tf.add_n([
        self.coefficients[k] * tf.cast(terms[k], tf.float32)
        for k in self.weighted_terms]))

  def _on(self, ctx):
    return ctx.epoch >= self.burn_in

  def extra_terms(self, ctx):
    if self.implicit == "none":
      return {}
    x_adv = ctx.adversarial_inputs[ctx.primary_attack]
    lower, upper = box(ctx.images, x_adv,
                       ctx.attack_stats[ctx.primary_attack]["epsilon"])
    if self.implicit == "lambda_identity":
      d = lambda_identity_inverse(x_adv, lower, upper, self.lam)
    else:
      d = barrier_inverse(x_adv, lower, upper, self.barrier_c)
    # Inside the step's tape: the tape records this gradient, so the loss
    # gradient differentiates it once more (∇²_θδ CE · D g).
    with tf.GradientTape() as tape:
      tape.watch(x_adv)
      ce = losses.cross_entropy(ctx.forward(x_adv), ctx.labels)
    # Frozen BN: examples do not interact, so this is per-example g_i.
    g = tape.gradient(ce, x_adv)
    axes = list(range(1, g.shape.rank))
    return {"implicit": 0.5 * tf.reduce_sum(tf.stop_gradient(d) * g * g, axes)}

  def weights(self, ctx):
    z = self.example_loss(ctx.terms) / self.r
    batch_value = log_mean_exp(base.global_gather(z))  # same on every replica
    on = self._on(ctx)
    if self.normaliser == "ema":
      log_u = scgd_update(self.log_u, batch_value, self.beta,
                          tf.equal(self.updates, 0))
    else:
      log_u = batch_value
    self.log_u.assign(tf.where(on, log_u, self.log_u))
    self.updates.assign_add(tf.cast(on, tf.int64))
    w = tf.exp(z - log_u)
    if self.clip > 0:
      w = tf.minimum(w, self.clip)
    w = tf.where(on, w, tf.ones_like(w))
    out = {k: w for k in self.weighted_terms}
    if self.implicit != "none":
      out["implicit"] = tf.where(on, w, tf.zeros_like(w))
    return out

  def metrics(self, ctx, weights):
    w = weights[self.weighted_terms[0]]
    z = self.example_loss(ctx.terms) / self.r
    all_w = base.global_gather(w)
    return {
        "reweighting_on": tf.cast(self._on(ctx), tf.float32),
        "log_u": tf.identity(self.log_u),
        "batch_log_mean_exp": log_mean_exp(base.global_gather(z)),
        "weight_max": tf.reduce_max(all_w),
        "weight_mean": tf.reduce_mean(all_w),
        # Kish's effective sample size over B: 1 = uniform, 1/B = one example.
        "effective_fraction": tf.square(tf.reduce_sum(all_w)) / (
            tf.cast(tf.size(all_w), tf.float32) * tf.reduce_sum(all_w * all_w)),
    }
