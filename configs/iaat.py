"""IAAT: instance-adaptive adversarial training (Balaji et al. 2019).

Defaults: the official CIFAR-10 config (configs/train_adaptive.json of
yogeshbalaji/Instance_Adaptive_Adversarial_Training): WRN-32-10 (Madry's
counting; here wide_resnet depth 34, the same 5 blocks per group), 110 epochs,
lr 0.1 x0.2 at 70/90/100, wd 5e-4, batch 256, PGD-10 at eps_max = 8/255 with
step max(2 eps_i / 10, 2/255), warm-up 10 epochs, gamma 1.9/255, ema 0.1.
Presets: digits and mnist10k (warm-up 5 epochs, gamma 0.024 ~ 0.1 x 1.9/8, as
shared specs/protocol.md; min_step = the training step 0.02); mnist10k_hard
(gamma 0.071 = 0.3 x 1.9/8 for its eps 0.3).
gamma does not follow --config.attack.epsilon: set both.

eval.reports = ("eps_curve",): clean and PGD-20 accuracy over test radii
0..2 eps (official/evaluation/eps_curve.py). After training DIR/eps.npy holds
every example's radius (official/reweighting/iaat.py).

  python -m official.train --config=configs/iaat.py:mnist10k
"""
from configs import common


def _small_scale(c):
  c.reweighting.warmup_epochs = 5
  c.reweighting.gamma = 0.024


def hard(c):
  """mnist10k_hard (eps 0.3): gamma scaled with eps as under mnist10k."""
  _small_scale(c)
  c.reweighting.gamma = 0.3 * 1.9 / 8


def digits(c):
  _small_scale(c)
  c.optimizer.lr_decay = 0.1  # the digits demo's schedule, as other methods


def get_config(arg=None):
  c = common.base()
  c.objective.name = "at"
  c.model = common.mlc.ConfigDict({"name": "wide_resnet", "depth": 34,
                                   "width": 10})
  c.epochs = 110
  c.batch_size = 256
  c.optimizer.learning_rate = 0.1
  c.optimizer.lr_boundaries = (70, 90, 100)
  c.optimizer.lr_decay = 0.2
  c.optimizer.weight_decay = 5e-4
  c.reweighting = common.mlc.ConfigDict({
      "name": "iaat",
      "warmup_epochs": 10,      # eps_i = eps_max if f(x_i) = y_i, else 0
      "gamma": 1.9 / 255,       # search notch
      "ema": 0.1,               # eps_i <- ema * candidate + (1 - ema) * eps_i
      "eps_cap": 0.0,           # 0 = no cap (official); else eps_i <= eps_cap
      # Floor of the per-example step; None = attack.step_size.
      "min_step": common.mlc.config_dict.placeholder(float),
      # BN in the clean check and search: frozen (training=False) | train
      # (batch statistics, as the official code; running stats not updated).
      "search_bn": "frozen",
  })
  c.eval.reports = ("eps_curve",)
  return common.apply_presets(c, arg, {"digits": digits,
                                       "mnist10k": _small_scale,
                                       "mnist10k_hard": hard})
