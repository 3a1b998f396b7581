"""WAT: worst-class adversarial training (Hedge weights over the classes).

Li and Liu, "WAT: Improve the Worst-class Robustness in Adversarial
Training", AAAI 2023, arXiv 2302.04025. Read in the official code,
boqili/WAT @62d1184, worst_class_adversarial_train.py (`train`, `validate`,
the update in the epoch loop) [code].

TRADES whose loss is a game against an adversary that picks a class: K + 1
weights, one per class and one (the last) for the average risk,

  loss = (1/B)·Σ_i w_{y_i}·(CE_i + β·KL_i) + w_{K+1}·(1/B)·Σ_i (CE_i + β·KL_i)

i.e. per-term weights w_{y_i} + w_{K+1} on both TRADES terms (`nat`, `kl`).
After each epoch (`on_epoch_end`), on the validation split
(data.validation_per_class) with TRADES' KL-PGD at the training settings
(x + 0.001·N(0, 1) start, BN frozen): per-class costs
c_k = mean CE_k(f(x)) + β·mean KL_k(p(x) ‖ p(x~)), c_{K+1} = the same over
all validation images, and Hedge (exponential weights) on the cumulative
costs:
  C ← C + c,    w = K·exp(η·C) / Σ_j exp(η·C_j)        (Σ w = K; η = 0.1)
Every weight starts at 1 (so the first WAT epoch is about 2× TRADES), as in
the code. C and w are state (checkpointed): a resumed run continues exactly.

Burn-in (`burn_in_epochs`, 0 in the paper's setting): plain TRADES (every
weight 1, no average-risk term) before it; WAT starts there exactly as the
code starts at epoch 0 (weights 1, C = 0), its first update after that epoch.

Defaults (configs/wat.py): the code's β = 6, η = 0.1, ResNet-18, 100 epochs,
lr 0.1 ×0.1 at 75 and ×0.01 at 90, wd 2e-4, batch 128; validation as FRL's.

Where this differs from the official code:
  - The code divides each class's summed losses by val_iter·batch_size
    (3,072 for its 3,000 validation images: costs ×0.977) and multiplies by
    K; here c_k is the class mean and c_{K+1} the mean over all images (the
    code's values up to that common factor, exactly so on a split whose size
    is a multiple of the batch).
  - exp(η·C) is computed as exp(η·C − max) (the same weights, no overflow).
  - Its validation loader is shuffled and every batch draws a random start;
    here the starts are keyed by (seed, epoch, batch).
"""
import json
import os

import numpy as np
import tensorflow as tf

from official.evaluation import validation as validation_lib
from official.reweighting import base


def costs(per_class_nat, per_class_kl, mean_nat, mean_kl, beta):
  """[K + 1] validation costs: CE_k + β·KL_k per class, then the average."""
  per_class = np.asarray(per_class_nat, np.float64) + beta * np.asarray(
      per_class_kl, np.float64)
  return np.append(per_class, mean_nat + beta * mean_kl)


def hedge_weights(cumulative, eta, num_classes):
  """K·softmax(η·C): the code's K·exp(η·C)/Σ exp(η·C) over K + 1 entries."""
  z = eta * np.asarray(cumulative, np.float64)
  u = np.exp(z - z.max())
  return num_classes * u / u.sum()


class WAT(base.Method):
  """Hedge class weights (+ an average-risk weight) on TRADES' terms."""
  name = "wat"

  @classmethod
  def needs_validation(cls, cfg):
    del cfg
    return True

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    if config.objective.name != "trades":
      raise ValueError(f"reweighting.name=wat needs objective.name 'trades' "
                       f"(its nat and kl terms), got '{config.objective.name}'")
    self.eta = float(cfg.get("eta", 0.1))
    self.burn_in = int(cfg.get("burn_in_epochs", 0))
    if not self.eta > 0 or self.burn_in < 0:
      raise ValueError(f"reweighting.eta must be > 0 and burn_in_epochs >= 0, "
                       f"got {cfg.get('eta')} and {cfg.get('burn_in_epochs')}")
    self.beta = float(config.objective.beta)
    self.num_classes = int(data.num_classes)
    self.val_spec = validation_lib.trades_spec(config, name="val_kl")

  def build_state(self):
    k = self.num_classes
    self.cumulative = tf.Variable(tf.zeros([k + 1], tf.float64),
                                  trainable=False, name="wat_cumulative_cost")
    self.class_weights = tf.Variable(tf.ones([k + 1]), trainable=False,
                                     name="wat_class_weights")
    return {"cumulative_cost": self.cumulative,
            "class_weights": self.class_weights}

  def on_epoch_end(self, epoch, run):
    if epoch < self.burn_in:
      return
    result = run.validation(self.val_spec, epoch + 1)
    cost = costs(result.losses["nat_ce"], result.losses["kl"],
                 result.mean_losses["nat_ce"], result.mean_losses["kl"],
                 self.beta)
    cumulative = self.cumulative.numpy() + cost
    self.cumulative.assign(cumulative)
    self.class_weights.assign(hedge_weights(cumulative, self.eta,
                                            self.num_classes).astype(np.float32))

  def weights(self, ctx):
    w = (tf.gather(self.class_weights[:-1], ctx.labels)
         + self.class_weights[-1])
    w = tf.where(ctx.epoch >= self.burn_in, w, tf.ones_like(w))
    return {"nat": w, "kl": w}

  def epoch_summaries(self):
    w = self.class_weights.numpy()
    return {"class_weights": w[:-1], "average_weight": w[-1],
            "class_weight_max": w[:-1].max()}

  def save_artifacts(self, workdir):
    """DIR/wat.json: the final weights and cumulative validation costs."""
    with open(os.path.join(workdir, "wat.json"), "w") as f:
      json.dump({"class_weights": self.class_weights.numpy().tolist(),
                 "cumulative_cost": self.cumulative.numpy().tolist()}, f,
                indent=2)
