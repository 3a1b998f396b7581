"""FRL: fair robust learning (Reweight, and Reweight + Remargin).

Xu, Liu, Li, Jain, Tang, "To be Robust or to be Fair: Towards Fairness in
Adversarial Training", ICML 2021, arXiv 2010.06121. Read in the official
code, hannxu123/fair_robust @a80547d [code]: Reweight = frlrw.py +
utils_frl.py, Reweight + Remargin = frlrmrw.py + utils_frl2.py
(`frl_train`, `normalize_lambda`, `cost_sensitive`, `match_weight`,
`trades_adv`, `train_model`).

TRADES with class weights that a Lagrangian update moves towards the
classes that break the fairness constraints. Before each epoch's first step
(`on_epoch_begin`), on the validation split (data.validation_per_class;
CE-PGD-`val_steps` at the training epsilon and step, uniform start, BN
frozen):
  e_c = 1 − clean accuracy of class c          ē = 1 − clean accuracy (all)
  b_c = clean − robust accuracy of class c     b̄ = the same over all images
  γ0_c = e_c − ē − τ0        γ1_c = b_c − b̄ − τ1          (constraint gaps)
  λ0 ← Π(λ0 + r1·γ0)    λ1 ← Π(λ1 + 2·r1·γ1)    (Remargin: λ2 ← λ2 + r2·γ1)
  Π(λ) = max(λ, 0), rescaled to sum `limit` if its sum exceeds it
  w_c = 1/K + λ_c − (1/K)·Σ_j λ_j      (w0 from λ0: clean term; w1 from λ1)
  loss = Σ_i w0_{y_i} CE_i / Σ_i w0_{y_i} + β·Σ_i w1_{y_i} KL_i / Σ_i w1_{y_i}
over the GLOBAL batch (per-term weights B·w_{y_i}/Σ_j w_{y_j}: `nat`, `kl`).
Σ_c w_c = 1 and w_c ≥ (1 − limit)/K > 0 (limit < 1).
Remargin: class c's training attack radius ε_c = ε·clip(exp(2·λ2_c), 0.98,
`eps_scale_max`) through the per-example budget (`attack_budget`, as IAAT);
every example of a batch steps by step_size·max_i ε_i/ε (the code's
max(new_eps)/4 with its 2/255 step at 8/255).
r1 halves every `rate_halving_epochs` FRL epochs (the code's `now_epoch % 40`).
λ are state (checkpointed): a resumed run continues exactly.

Burn-in: the official scripts start from a pre-trained robust model
(`hot_start.pt`, PreAct ResNet-18; no script of the repository trains it).
Here the first `burn_in_epochs` epochs are plain TRADES (λ = 0: every weight
1, radius ε) with the same β; the multipliers move from epoch burn_in_epochs
on (its first update sees the burnt-in model, like the code's first epoch).

Defaults (configs/frl.py) are the code's: β = 1.5, τ0 = τ1 = 0.1 (Reweight)
or 0.07 (Remargin), r1 = 0.05, r2 = 0.2 (Remargin; Reweight never moves λ2),
limit 0.5, ε-scale clip [0.98, 3.0] (utils_frl2; utils_frl's 2.5 is never
reached in Reweight, where λ2 stays 0), validation PGD-20 step 2/255.

The validation split (data/holdout.py: the last N images of each class) is
the code's rule (the last 300 of CIFAR-10's 5,000); ē, b̄ are over all
validation images, as the code's `evaluate` (the class means on a balanced
split). One epoch's update from the same per-class errors matches the
official `frl_train` to float32 precision
(docs/measurements/fairness_official_check.py).

Where this differs from the official code:
  - The code clamps γ at −1000 before the update (never active): omitted.
  - The burn-in above instead of a downloaded pre-trained model.
  - Remargin's step uses the global batch's largest ε_i (the code: its
    per-device batch of 128, one device).
"""
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from official.evaluation import validation as validation_lib
from official.reweighting import base
from official.reweighting import gairat


def constraint_gaps(per_class_clean, per_class_robust, clean_accuracy,
                    robust_accuracy, tau0, tau1):
  """(γ0, γ1): [K] clean-error and boundary-error gaps above the totals."""
  clean = np.asarray(per_class_clean, np.float64)
  robust = np.asarray(per_class_robust, np.float64)
  clean_error, boundary_error = 1.0 - clean, clean - robust
  total_clean, total_boundary = (1.0 - clean_accuracy,
                                 clean_accuracy - robust_accuracy)
  return (clean_error - total_clean - tau0,
          boundary_error - total_boundary - tau1)


def project(lam, limit):
  """Π: clamp at 0, then rescale to sum `limit` if the sum exceeds it."""
  lam = np.maximum(np.asarray(lam, np.float64), 0.0)
  total = lam.sum()
  return limit * lam / total if total > limit else lam


def update_multipliers(lam0, lam1, lam2, gap0, gap1, *, rate1, rate2, limit,
                       remargin):
  """One FRL epoch's (λ0, λ1, λ2) from the constraint gaps."""
  lam0 = project(np.asarray(lam0) + rate1 * np.asarray(gap0), limit)
  lam1 = project(np.asarray(lam1) + 2.0 * rate1 * np.asarray(gap1), limit)
  lam2 = np.asarray(lam2, np.float64)
  if remargin:
    lam2 = lam2 + rate2 * np.asarray(gap1)
  return lam0, lam1, lam2


def class_weights(lam):
  """w_c = 1/K + λ_c − (1/K)·Σ_j λ_j (the code's `cost_sensitive`)."""
  lam = np.asarray(lam, np.float64)
  k = len(lam)
  return 1.0 / k + lam - lam.sum() / k


def epsilon_scale(lam2, low=0.98, high=3.0):
  """ε_c / ε = clip(exp(2·λ2_c), low, high)."""
  return np.clip(np.exp(2.0 * np.asarray(lam2, np.float64)), low, high)


def rate_at(rate1, frl_epoch, halving_epochs):
  """r1 of the (0-based) FRL epoch: halved at FRL epochs 40, 80, ... (1-based)."""
  if not halving_epochs:
    return rate1
  return rate1 / 2.0**((frl_epoch + 1) // halving_epochs)


class FRL(base.Method):
  """Validation-driven class weights on TRADES' terms (and class radii)."""
  name = "frl"

  @classmethod
  def needs_validation(cls, cfg):
    del cfg
    return True

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    if config.objective.name != "trades":
      raise ValueError(f"reweighting.name=frl needs objective.name 'trades' "
                       f"(its nat and kl terms), got '{config.objective.name}'")
    self.remargin = bool(cfg.get("remargin", False))
    self.tau0 = float(cfg.get("tau0", 0.1))
    self.tau1 = float(cfg.get("tau1", 0.1))
    self.rate1 = float(cfg.get("rate1", 0.05))
    self.rate2 = float(cfg.get("rate2", 0.2))
    self.limit = float(cfg.get("limit", 0.5))
    self.halving = int(cfg.get("rate_halving_epochs", 40))
    self.scale_min = float(cfg.get("eps_scale_min", 0.98))
    self.scale_max = float(cfg.get("eps_scale_max", 3.0))
    self.burn_in = int(cfg.get("burn_in_epochs", 0))
    self.val_steps = int(cfg.get("val_steps", 20))
    for key, ok, valid in (
        ("tau0", 0 <= self.tau0 <= 1, "in [0, 1]"),
        ("tau1", 0 <= self.tau1 <= 1, "in [0, 1]"),
        ("rate1", self.rate1 >= 0, ">= 0"), ("rate2", self.rate2 >= 0, ">= 0"),
        ("limit", 0 <= self.limit < 1, "in [0, 1) (class weights >= (1 - "
         "limit)/K > 0)"),
        ("rate_halving_epochs", self.halving >= 0, ">= 0 (0 = never)"),
        ("eps_scale_min", 0 < self.scale_min <= 1, "in (0, 1]"),
        ("eps_scale_max", self.scale_max >= 1, ">= 1"),
        ("burn_in_epochs", self.burn_in >= 0, ">= 0"),
        ("val_steps", self.val_steps >= 1, ">= 1")):
      if not ok:
        raise ValueError(f"reweighting.{key} must be {valid}, got "
                         f"{cfg.get(key)}")
    self.epsilon = float(config.attack.epsilon)
    self.step_size = float(config.attack.step_size)
    self.val_spec = validation_lib.pgd_spec(config, self.val_steps)
    self.num_classes = int(data.num_classes)
    self.last_gaps = None  # (γ0, γ1) of the last update, for the summaries

  def build_state(self):
    k = self.num_classes
    self.lam = tf.Variable(tf.zeros([3, k]), trainable=False,
                           name="frl_lambda")  # λ0, λ1, λ2
    # Per class: w0 (clean term), w1 (boundary term), ε_c / ε.
    self.table = tf.Variable(tf.constant([[1.0 / k] * k, [1.0 / k] * k,
                                          [1.0] * k]), trainable=False,
                             name="frl_class_table")
    return {"lambda": self.lam, "class_table": self.table}

  def on_epoch_begin(self, epoch, run):
    if epoch < self.burn_in:
      return
    result = run.validation(self.val_spec, epoch)
    gap0, gap1 = constraint_gaps(result.clean, result.robust,
                                 result.clean_accuracy, result.robust_accuracy,
                                 self.tau0, self.tau1)
    lam0, lam1, lam2 = update_multipliers(
        *self.lam.numpy(), gap0, gap1,
        rate1=rate_at(self.rate1, epoch - self.burn_in, self.halving),
        rate2=self.rate2, limit=self.limit, remargin=self.remargin)
    self.lam.assign(np.stack([lam0, lam1, lam2]).astype(np.float32))
    self.table.assign(np.stack([
        class_weights(lam0), class_weights(lam1),
        epsilon_scale(lam2, self.scale_min, self.scale_max)]).astype(np.float32))
    self.last_gaps = (gap0, gap1)
    logging.info("frl epoch %d: validation clean %.4f robust %.4f; w0 %s; w1 "
                 "%s; eps scale %s", epoch + 1, result.clean_accuracy,
                 result.robust_accuracy, *np.round(self.table.numpy(), 4))

  def attack_budget(self, ctx):
    if not self.remargin:
      return None
    scale = tf.gather(self.table[2], ctx.labels)
    step = self.step_size * tf.reduce_max(base.global_gather(scale))
    return self.epsilon * scale, tf.fill(tf.shape(scale), step)

  def weights(self, ctx):
    w0 = tf.gather(self.table[0], ctx.labels)
    w1 = tf.gather(self.table[1], ctx.labels)
    return {"nat": gairat.normalise(w0, ctx.global_batch_size),
            "kl": gairat.normalise(w1, ctx.global_batch_size)}

  def epoch_summaries(self):
    table, lam = self.table.numpy(), self.lam.numpy()
    out = {"class_weight_clean": table[0], "class_weight_boundary": table[1],
           "lambda_clean_sum": lam[0].sum(), "lambda_boundary_sum": lam[1].sum()}
    if self.remargin:
      out.update(epsilon_scale=table[2], epsilon_scale_max=table[2].max())
    if self.last_gaps is not None:
      out.update(gap_clean=self.last_gaps[0], gap_boundary=self.last_gaps[1])
    return out

  def save_artifacts(self, workdir):
    """DIR/frl.json: the final multipliers, class weights and radii."""
    table, lam = self.table.numpy(), self.lam.numpy()
    with open(os.path.join(workdir, "frl.json"), "w") as f:
      json.dump({"lambda_clean": lam[0].tolist(),
                 "lambda_boundary": lam[1].tolist(),
                 "lambda_margin": lam[2].tolist(),
                 "class_weight_clean": table[0].tolist(),
                 "class_weight_boundary": table[1].tolist(),
                 "epsilon_scale": table[2].tolist()}, f, indent=2)
