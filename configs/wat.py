"""WAT (Li & Liu, AAAI 2023): worst-class adversarial training.

TRADES with K + 1 Hedge weights (classes + the average risk) from the
cumulative per-class TRADES costs on a held-out validation split
(official/reweighting/wat.py).

Defaults are the official code's (boqili/WAT, worst_class_adversarial_
train.py): β = 6, η = 0.1, ResNet-18, 100 epochs, lr 0.1 ×0.1 at 75 and ×0.01
at 90 (the code tests epoch + 1: its drops come one epoch earlier), wd 2e-4,
batch 128, eps 0.031 (8/255 here), TRADES KL-PGD-10 step 0.007 (2/255), the
last 300 images of each CIFAR-10 class held out (FRL's split), no burn-in.

Small-scale presets (digits, mnist10k; mnist10k_hard through mnist10k):
shared specs/protocol.md settings, plain TRADES for epochs 1-5 (burn-in 5),
WAT from epoch 6 (weights 1, as the code's first epoch);
validation_per_class 50 on mnist10k, 20 on digits.

  python -m official.train --config=configs/wat.py:mnist10k
"""
from configs import common


def digits(c):
  c.reweighting.burn_in_epochs = 5
  c.data.validation_per_class = 20


def mnist10k(c):
  c.reweighting.burn_in_epochs = 5
  c.data.validation_per_class = 50


def get_config(arg=None):
  c = common.base()
  c.objective.name = "trades"
  c.objective.beta = 6.0
  c.model = common.mlc.ConfigDict({"name": "resnet18"})
  c.epochs = 100
  c.optimizer.learning_rate = 0.1
  c.optimizer.lr_boundaries = (75, 90)
  c.optimizer.lr_decay = 0.1
  c.optimizer.weight_decay = 2e-4
  c.data.validation_per_class = 300
  c.reweighting = common.mlc.ConfigDict({
      "name": "wat",
      "eta": 0.1,               # Hedge rate: w ∝ exp(eta · cumulative cost)
      "burn_in_epochs": 0,      # plain TRADES before this (0-based) epoch
  })
  return common.apply_presets(c, arg, {"digits": digits,
                                       "mnist10k": mnist10k})
