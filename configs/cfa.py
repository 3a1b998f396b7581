"""CFA (Wei et al., CVPR 2023): class-wise calibrated fair adversarial training.

Class-wise radii (CCM) and TRADES β (CCR) from each class's training robust
accuracy, and fairness-aware weight averaging (FAWA: the library's EMA,
config.averaging, fed only the epochs whose worst-class validation robust
accuracy reaches a threshold); official/reweighting/cfa.py.
Presets `trades` (the default; CCM + CCR + FAWA) and `at` (CCM + FAWA).

Defaults are the official code's (PKU-ML/CFA train.py), where the paper
differs (docstring of cfa.py): λ1 = λ2 = 0.5, begin = 10, EMA decay 0.88,
threshold 0.24, TRADES normalised by 1 + β_y; PreAct ResNet-18, 200 epochs,
lr 0.1 ÷10 at 100 and 150 (the code's 50% / 75%), wd 5e-4, β = 6, batch 128,
eps 8/255, PGD-10 step 2/255; the validation split: 100 images per class
(the code: the first 100 of each class; here the last, data/holdout.py).
The paper reports the checkpoint best on average + worst-class robustness:
eval.select = best_val here (validation PGD-10, official/core/selection.py).

Small-scale presets (digits, mnist10k; mnist10k_hard through mnist10k):
shared specs/protocol.md settings; CCM / CCR from epoch 6 (begin 5) and the
average from epoch 6 (averaging_start_epoch 5: at MNIST's radii the gate
opens at epoch 1, and a per-epoch EMA of 10 epochs would be dominated by the
first weak ones); eval.select = last as every protocol run;
validation_per_class 50 on mnist10k, 20 on digits.

  python -m official.train --config=configs/cfa.py:at,mnist10k
"""
from configs import common


def at(c):
  c.objective.name = "at"
  c.reweighting.ccr = False


def trades(c):
  c.objective.name = "trades"
  c.reweighting.ccr = True


def small_scale(c, per_class):
  c.reweighting.begin = 5
  c.averaging_start_epoch = 5
  c.data.validation_per_class = per_class
  c.eval.select = "last"


def get_config(arg=None):
  c = common.base()
  c.objective.name = "trades"
  c.objective.beta = 6.0
  c.model = common.mlc.ConfigDict({"name": "preact_resnet18"})
  c.epochs = 200
  c.optimizer.learning_rate = 0.1
  c.optimizer.lr_boundaries = (100, 150)
  c.optimizer.lr_decay = 0.1
  c.optimizer.weight_decay = 5e-4
  c.data.validation_per_class = 100
  c.eval.select = "best_val"
  # FAWA: the library's per-epoch EMA, gated by the method (accept_average).
  c.averaging = "ema"
  c.averaging_decay = 0.88
  c.averaging_start_epoch = 0
  c.reweighting = common.mlc.ConfigDict({
      "name": "cfa",
      "ccm": True,              # class-wise radii (λ1 + t_k) ε
      "ccr": True,              # class-wise TRADES β (λ2 + t_k) β
      "fawa": True,             # gate the average on the validation worst class
      "normalise": True,        # TRADES loss / (1 + β_y), as the code
      "lambda1": 0.5,
      "lambda2": 0.5,
      "begin": 10,              # CCM / CCR from this (0-based) epoch
      "threshold": 0.24,        # FAWA: worst-class validation robust acc
  })
  return common.apply_presets(
      c, arg, {"at": at, "trades": trades,
               "digits": lambda c: small_scale(c, 20),
               "mnist10k": lambda c: small_scale(c, 50)})
