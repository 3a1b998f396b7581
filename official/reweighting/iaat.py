"""IAAT: instance-adaptive adversarial training (per-example radii).

Balaji, Goldstein, Hoffman, "Instance adaptive adversarial training: Improved
accuracy tradeoffs in neural nets", arXiv 1910.08051 (2019). Read in the
official code, yogeshbalaji/Instance_Adaptive_Adversarial_Training
(trainers/trainer_adaptive.py, `epsilon_select`) [code].

IAAT does not weight losses: it gives every training example its own radius
eps_i (a memory indexed by example id, initial 0, saved in checkpoints) and
trains on PGD at that radius. On every visit, before the training attack:

  warm-up (epoch < warmup_epochs):  eps_i = eps_max · 1[f(x_i) = y_i]
  after:  r_i  = f(PGD-K(x_i; eps_i)) = y_i          (robust at eps_i)
          r+_i = f(PGD-K(x_i; eps_i + γ)) = y_i      (robust one notch up)
          c_i  = eps_i + γ if r+_i, else eps_i if r_i, else eps_i − γ
          c_i  = 0 if f(x_i) ≠ y_i;  c_i = clip(c_i, 0, eps_cap)
          eps_i ← ema · c_i + (1 − ema) · eps_i
  train:  the objective's attack at eps_i, step max(2·eps_i / K, min_step);
          the objective's loss unweighted (plain CE with objective `at`).

The search attacks are CE-PGD-K with a uniform random start and the same step
rule at their own radius (official: clamp(eps / (0.5 K), min=attack_lr)).
Defaults as the official CIFAR-10 config: eps_max = attack.epsilon (8/255),
γ = 1.9/255, ema = 0.1 (its `beta`), K = attack.steps (10), min_step =
attack.step_size (2/255), 10 warm-up epochs, no cap. An example with eps_i = 0
trains on itself (PGD's projection keeps x).

Where this differs from the official code:
  - BN (`search_bn`): by default the clean check and the search attacks run
    with frozen BN (training=False), like every attack here. The official
    code runs them with the model in train mode: batch statistics, and every
    search forward also updates the running statistics. `search_bn: train`
    gives the batch statistics (AttackSpec bn="batch", a stateless forward)
    but leaves the running statistics to the training forwards: a variable
    write inside the XLA PGD loop is what this library never does. The
    training attack itself stays frozen, as in every method here.
  - `eps_cap` (default 0 = none) is an option the official code lacks; it also
    caps the warm-up value.
  - The library's WRN for "WRN-32-10" (Madry's counting, 5 blocks per group) is
    `wide_resnet` depth 34 (TRADES' counting of the same block layout).
"""
import json
import os

import numpy as np
import tensorflow as tf

from official.attacks import pgd
from official.reweighting import base

SEARCH_BN = {"frozen": "frozen", "train": "batch"}  # -> AttackSpec.bn


def update_rule(eps, robust_at_eps, robust_above, clean_correct, *, gamma,
                ema, cap=0.0):
  """The new eps_i after one post-warm-up visit (tensors [B]; cap 0 = none)."""
  eps = tf.cast(eps, tf.float32)
  candidate = tf.where(robust_above, eps + gamma,
                       tf.where(robust_at_eps, eps, eps - gamma))
  candidate = tf.maximum(tf.where(clean_correct, candidate, 0.0), 0.0)
  if cap > 0:
    candidate = tf.minimum(candidate, cap)
  return ema * candidate + (1.0 - ema) * eps


def warmup_rule(clean_correct, eps_max, cap=0.0):
  """eps_max where the clean input is classified correctly, else 0."""
  value = min(eps_max, cap) if cap > 0 else eps_max
  return tf.where(clean_correct, value, 0.0)


def step_sizes(eps, steps, min_step):
  """max(2 eps / K, min_step): the official clamp(eps / (0.5 K), min=lr)."""
  return tf.maximum(2.0 * tf.cast(eps, tf.float32) / steps, min_step)


def _correct(logits, labels):
  return tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels)


class IAAT(base.Method):
  """Per-example radius memory; sets the training attacks' budget."""
  name = "iaat"
  metric_names = ("eps_mean", "eps_zero_fraction")

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    search_bn = cfg.get("search_bn", "frozen")
    base.check_choice("reweighting.search_bn", search_bn, tuple(SEARCH_BN))
    bn = SEARCH_BN[search_bn]
    attack = config.attack
    self.eps_max = float(attack.epsilon)
    self.steps = int(attack.steps)
    self.gamma = float(cfg.get("gamma", 1.9 / 255))
    self.ema = float(cfg.get("ema", 0.1))
    self.cap = float(cfg.get("eps_cap", 0.0) or 0.0)
    min_step = cfg.get("min_step", None)
    self.min_step = float(attack.step_size if min_step is None else min_step)
    self.warmup_epochs = int(cfg.get("warmup_epochs", 10))
    for key, ok in (("gamma", self.gamma > 0), ("ema", 0 < self.ema <= 1),
                    ("eps_cap", self.cap >= 0), ("min_step", self.min_step > 0),
                    ("warmup_epochs", self.warmup_epochs >= 0)):
      if not ok:
        raise ValueError(f"reweighting.{key} out of range (gamma > 0, 0 < ema "
                         f"<= 1, eps_cap >= 0, min_step > 0, warmup_epochs >= "
                         f"0), got {cfg.get(key)}")
    # The spec's epsilon / step are placeholders: every call passes [B] ones.
    step = float(attack.step_size)
    self.search_specs = tuple(
        pgd.AttackSpec(name, "ce", self.eps_max, step, self.steps, "uniform",
                       bn=bn)
        for name in ("iaat_search_at_eps", "iaat_search_above_eps"))
    # f(x) for the clean check: a plain forward with the search's BN mode
    # (not an attack: no backward pass).
    self.clean_bn = bn

  def build_state(self):
    self.memory = base.PerExampleMemory("iaat_eps", self.data.num_ids, 0.0)
    return {"eps": self.memory}

  def attack_budget(self, ctx):
    eps = self.memory.gather(ctx.ids)
    clean_logits = ctx.attack_forward(self.clean_bn)(ctx.images)
    clean_correct = _correct(tf.cast(clean_logits, tf.float32), ctx.labels)

    def search():
      robust = []
      for spec, radius in zip(self.search_specs, (eps, eps + self.gamma)):
        _, stats = ctx.attack(spec, ctx.images, ctx.labels, epsilon=radius,
                              step_size=step_sizes(radius, self.steps,
                                                   self.min_step))
        robust.append(_correct(stats["logits"], ctx.labels))
      return update_rule(eps, *robust, clean_correct, gamma=self.gamma,
                         ema=self.ema, cap=self.cap)

    # tf.cond, not tf.where: the warm-up skips the two search attacks.
    new = tf.cond(ctx.epoch < self.warmup_epochs,
                  lambda: warmup_rule(clean_correct, self.eps_max, self.cap),
                  search)
    self.memory.update(ctx.ids, new)  # gathers the global batch (replicas)
    return new, step_sizes(new, self.steps, self.min_step)

  def metrics(self, ctx, weights):
    del weights
    eps = ctx.attack_stats[ctx.primary_attack]["epsilon"]
    n = float(ctx.global_batch_size)
    return {"eps_mean": base.global_sum(tf.reduce_sum(eps)) / n,
            "eps_zero_fraction": base.global_sum(
                tf.reduce_sum(tf.cast(eps <= 0.0, tf.float32))) / n}

  def epoch_summaries(self):
    eps = self.memory.numpy()[self.data.train_ids]
    q10, q50, q90 = np.quantile(eps, [0.1, 0.5, 0.9])
    return {"eps": eps, "eps_mean": eps.mean(), "eps_q10": q10,
            "eps_median": q50, "eps_q90": q90,
            "eps_zero_fraction": (eps <= 0).mean()}

  def save_artifacts(self, workdir):
    """DIR/eps.npy: the memory for every id of the original train split (ids
    left out of training, e.g. by long-tailing, stay 0); DIR/eps_train.npz:
    ids, eps and labels of the training examples; DIR/eps_summary.json."""
    os.makedirs(workdir, exist_ok=True)
    eps = self.memory.numpy()
    ids = np.asarray(self.data.train_ids)
    np.save(os.path.join(workdir, "eps.npy"), eps)
    np.savez(os.path.join(workdir, "eps_train.npz"), ids=ids, eps=eps[ids],
             labels=np.asarray(self.data.splits.y_train)[ids])
    summary = {k: float(v) for k, v in self.epoch_summaries().items()
               if np.ndim(v) == 0}
    with open(os.path.join(workdir, "eps_summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
