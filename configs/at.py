"""Standard PGD adversarial training (Madry et al., ICLR 2018).

Defaults: CIFAR-10, ResNet-18, eps 8/255, PGD-10 step 2/255 with a uniform
random start, SGD momentum 0.9, lr 0.1 x0.1 at epochs 75 and 90 of 100,
weight decay 5e-4, batch 128: the ResNet-18 PGD-AT baseline the reweighting
papers compare with (library default; Madry et al. trained a wide ResNet).
Presets: see configs/common.py (digits, mnist10k, mnist, cifar100, svhn) and
`wrn34` (WRN-34-10).

AT is the reference every method is compared with, so it evaluates what those
comparisons need: the cross-attack set (PGD-10 / CW-10 / KL-10 beside FGSM,
PGD-20, CW) that GAIRAT, MAIL and LRAT use, and the accuracy-vs-eps curve
IAAT is judged by.

  python -m official.train --config=configs/at.py:digits
"""
from configs import common


def wrn34(c):
  c.model = common.mlc.ConfigDict({"name": "wide_resnet", "depth": 34, "width": 10})
  c.optimizer.weight_decay = 2e-4


def get_config(arg=None):
  c = common.base()
  c.objective.name = "at"
  c.eval.attacks = common.CROSS_ATTACK_EVAL
  c.eval.reports = ("cross_attack", "eps_curve")
  return common.apply_presets(c, arg, {"wrn34": wrn34})
