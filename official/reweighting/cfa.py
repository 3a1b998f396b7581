"""CFA: class-wise calibrated fair adversarial training.

Wei, Wang, Guo, Wang, "CFA: Class-Wise Calibrated Fair Adversarial
Training", CVPR 2023, arXiv 2303.14460. Read in the official code,
PKU-ML/CFA @071f333 (train.py: the epoch loop, `CW_log`; attack.py:
`cw_pgd_loss`, `cw_trades_loss`; utils.py: `weight_average`) [code]; the
paper's values from shared specs/wave3_methods.md [paper].

Three class-wise calibrations, on AT or TRADES (objective.name at | trades):

CCM, class-wise calibrated margin (`ccm`): from epoch `begin` on, class k's
  training radius ε_k = (λ1 + t_k)·ε, where t_k is class k's robust accuracy
  on the PREVIOUS epoch's training adversarial batches (the training forward
  on the training attack's final iterate, augmentation on). Through the
  per-example budget (`attack_budget`, as IAAT); the step stays the
  configured one (the code's fixed 2/255), the uniform start scales with ε_k.
CCR, class-wise calibrated regularisation (`ccr`, TRADES only): β_k =
  (λ2 + t_k)·β from `begin` on, and every example's TRADES loss normalised
  by 1 + β_y (`normalise`):
    loss = (1/B)·Σ_i [CE_i + β_{y_i}·KL_i] / (1 + β_{y_i})
  as per-term weights nat: 1/(1 + β_y), kl: (β_y/β)/(1 + β_y). The code
  normalises in EVERY TRADES epoch (β_y = β before `begin`, and without
  CCR): its TRADES(-CFA) trains on TRADES/(1 + β) throughout, so does this
  with `normalise: True` (the default); `normalise: False` keeps TRADES'
  scale (weights 1 and β_y/β).
FAWA, fairness-aware weight averaging (`fawa`): after each epoch
  (`on_epoch_end`), R_min = the worst class's robust accuracy on the
  validation split (CE-PGD-10 at the training ε and step, uniform start, BN
  frozen: the code's `eval_epoch(valid_loader, pgd_loss, 8/255, 2/255, 10)`);
  the epoch's weights join the average only if R_min ≥ `threshold`
  (`accept_average`). The average itself is the library's
  (config.averaging = ema, averaging_decay: θ̄ ← α·θ̄ + (1 − α)·θ, the first
  accepted epoch copied, the whole network state, BN statistics too),
  exported and evaluated.

t_k is accumulated over the epoch's steps in state variables (per-class
correct counts and totals, summed over the GLOBAL batch: 2 replicas = 1
device) and becomes t at the epoch's end; t, the counts and the gate are
checkpointed, so a resumed run continues exactly.

Defaults are the code's (configs/cfa.py): λ1 = λ2 = 0.5, begin = 10,
α = 0.88, δ = 0.24, PreAct ResNet-18, 200 epochs, lr 0.1 ÷10 at 100 and 150,
wd 5e-4, β = 6, batch 128, eps 8/255, PGD-10 step 2/255.

Where the paper and the code differ (the code is followed):
  - α: paper 0.85, code 0.88; δ: paper 0.2, code 0.24 (the README's AT
    example: 0.2).
  - λ1: paper 0.5 (AT), 0.3 (TRADES), 0.7 (FAT); code 0.5 for every mode.
  - FAWA starts: the code gates every epoch from the first (no start epoch);
    CCM / CCR start at `begin` = 10.
  - The code normalises TRADES by 1 + β (above), which the paper does not
    mention for plain TRADES.
Where this differs from the official code:
  - t_k = correct_k / n_k, the class's accuracy; the code's K·correct_k / N
    is the same on its balanced training split, not on a long-tailed one.
  - In AT mode the code's attack runs with BN in train mode (and updates the
    running statistics); the library's training attacks run BN frozen.
  - The code keeps the checkpoint best on TEST robust + worst-class
    accuracy from mid-training on; use eval.select=best_val (validation)
    instead.
  - Validation: the last N images of each class (the code: the first 100 of
    each CIFAR-10 class; data/holdout.py).
"""
import numpy as np
import tensorflow as tf

from official.evaluation import validation as validation_lib
from official.reweighting import base

GATE_STEPS = 10  # FAWA's validation PGD-10


def class_epsilon(train_robust, lam1, epsilon):
  """CCM: ε_k = (λ1 + t_k)·ε."""
  return (lam1 + np.asarray(train_robust, np.float64)) * epsilon


def class_beta(train_robust, lam2, beta):
  """CCR: β_k = (λ2 + t_k)·β."""
  return (lam2 + np.asarray(train_robust, np.float64)) * beta


def trades_weights(beta_y, beta, normalise=True):
  """(w_nat, w_kl) per example with loss Σ_k c_k·w_k·term_k, c = (1, β):
  [CE + β_y·KL]/(1 + β_y) normalised, CE + β_y·KL otherwise."""
  beta_y = tf.cast(beta_y, tf.float32)
  scale = 1.0 / (1.0 + beta_y) if normalise else tf.ones_like(beta_y)
  return scale, scale * beta_y / beta


def fawa_gate(per_class_robust, threshold):
  """Whether the epoch's weights join the average: min_k R_k ≥ δ."""
  return bool(np.min(per_class_robust) >= threshold)


class CFA(base.Method):
  """Class-wise radii (CCM), β (CCR) and a validation-gated average (FAWA)."""
  name = "cfa"
  metric_names = ("calibrated",)

  @classmethod
  def needs_validation(cls, cfg):
    return bool(cfg.get("fawa", True))  # the gate's validation check

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    self.objective = config.objective.name
    if self.objective not in ("at", "trades"):
      raise ValueError(f"reweighting.name=cfa needs objective.name 'at' or "
                       f"'trades', got '{self.objective}'")
    self.ccm = bool(cfg.get("ccm", True))
    self.ccr = bool(cfg.get("ccr", self.objective == "trades"))
    self.fawa = bool(cfg.get("fawa", True))
    self.normalise = bool(cfg.get("normalise", True))
    self.lam1 = float(cfg.get("lambda1", 0.5))
    self.lam2 = float(cfg.get("lambda2", 0.5))
    self.begin = int(cfg.get("begin", 10))
    self.threshold = float(cfg.get("threshold", 0.24))
    for key, ok, valid in (
        ("lambda1", self.lam1 > 0, "> 0"), ("lambda2", self.lam2 >= 0, ">= 0"),
        ("begin", self.begin >= 0, ">= 0"),
        ("threshold", 0 <= self.threshold <= 1, "[0, 1]")):
      if not ok:
        raise ValueError(f"reweighting.{key} must be {valid}, got "
                         f"{cfg.get(key)}")
    if self.ccr and self.objective != "trades":
      raise ValueError("reweighting.ccr needs objective.name 'trades' (it "
                       "calibrates TRADES' beta), got 'at'; set "
                       "reweighting.ccr=False")
    averaging = config.get("averaging", "none")
    if self.fawa and averaging != "ema":
      raise ValueError(f"reweighting.fawa needs averaging 'ema' (the average "
                       f"it gates), got {averaging!r}; or set "
                       f"reweighting.fawa=False")
    self.epsilon = float(config.attack.epsilon)
    self.step_size = float(config.attack.step_size)
    self.beta = float(config.objective.get("beta", 6.0))
    self.num_classes = int(data.num_classes)
    self.gate_spec = validation_lib.pgd_spec(config, GATE_STEPS)
    self.last_gate = None  # the last validation summary, for the summaries

  def build_state(self):
    k = self.num_classes
    only_first = tf.VariableAggregation.ONLY_FIRST_REPLICA
    # This epoch's robust correct counts and examples per class (replica
    # context, the same global sums on every replica: ONLY_FIRST_REPLICA).
    self.correct = tf.Variable(tf.zeros([k]), trainable=False,
                               name="cfa_correct", aggregation=only_first)
    self.seen = tf.Variable(tf.zeros([k]), trainable=False, name="cfa_seen",
                            aggregation=only_first)
    # t_k of the last completed epoch; the FAWA gate of the last epoch.
    self.train_robust = tf.Variable(tf.zeros([k]), trainable=False,
                                    name="cfa_train_robust")
    self.accept = tf.Variable(0.0, trainable=False, name="cfa_accept")
    return {"correct": self.correct, "seen": self.seen,
            "train_robust": self.train_robust, "accept": self.accept}

  def _on(self, ctx):
    return ctx.epoch >= self.begin

  def attack_budget(self, ctx):
    if not self.ccm:
      return None
    t = tf.gather(self.train_robust, ctx.labels)
    eps = tf.where(self._on(ctx), (self.lam1 + t) * self.epsilon,
                   tf.fill(tf.shape(t), self.epsilon))
    return eps, tf.fill(tf.shape(t), self.step_size)

  def weights(self, ctx):
    if self.objective != "trades":
      return {}
    beta_y = tf.fill(tf.shape(ctx.labels), self.beta)
    if self.ccr:
      t = tf.gather(self.train_robust, ctx.labels)
      beta_y = tf.where(self._on(ctx), (self.lam2 + t) * self.beta, beta_y)
    w_nat, w_kl = trades_weights(beta_y, self.beta, self.normalise)
    return {"nat": w_nat, "kl": w_kl}

  def metrics(self, ctx, weights):
    del weights
    logits = ctx.adversarial_logits[ctx.primary_attack]
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                               ctx.labels), tf.float32)
    onehot = tf.one_hot(ctx.labels, self.num_classes)
    self.correct.assign_add(base.global_sum(
        tf.reduce_sum(onehot * correct[:, None], 0)))
    self.seen.assign_add(base.global_sum(tf.reduce_sum(onehot, 0)))
    return {"calibrated": tf.cast(self._on(ctx), tf.float32)}

  def on_epoch_begin(self, epoch, run):
    del epoch, run
    self.correct.assign(tf.zeros_like(self.correct))
    self.seen.assign(tf.zeros_like(self.seen))

  def on_epoch_end(self, epoch, run):
    seen, correct = self.seen.numpy(), self.correct.numpy()
    # A class absent from the epoch keeps its last t.
    t = np.where(seen > 0, correct / np.maximum(seen, 1),
                 self.train_robust.numpy())
    self.train_robust.assign(t.astype(np.float32))
    self.correct.assign(tf.zeros_like(self.correct))
    self.seen.assign(tf.zeros_like(self.seen))
    if self.fawa:
      result = run.validation(self.gate_spec, epoch + 1)
      self.accept.assign(float(fawa_gate(result.robust, self.threshold)))
      self.last_gate = result

  def accept_average(self, epoch):
    del epoch
    return bool(self.accept.numpy() > 0) if self.fawa else True

  def epoch_summaries(self):
    t = self.train_robust.numpy()
    out = {"train_robust": t, "train_robust_min": t.min()}
    if self.ccm:
      out["epsilon_scale"] = self.lam1 + t
    if self.ccr:
      out["beta_scale"] = self.lam2 + t
    if self.last_gate is not None:
      out.update(fawa_accept=float(self.accept.numpy()),
                 validation_worst_class=float(np.min(self.last_gate.robust)))
    return out
