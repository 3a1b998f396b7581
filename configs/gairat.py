"""GAIRAT (Zhang et al., ICLR 2021): geometry-aware instance weights on AT.

Defaults = preset `wrn32`, the paper's Table 1 setting (CIFAR-10):
  from shared specs/methods.md: WRN-32-10, 120 epochs, burn-in 60 epochs
    (plain AT before), λ = −1, tanh weights, κ = count;
  read in the official GAIRAT.py: lr 0.1 ×0.1 at epochs 60 and 90 (its
    "piecewise" schedule also halves at 110, lr/200, which one decay factor
    cannot express; here 0.001 to the end), weight decay 2e-4;
  library defaults (configs/common.py), equal to the official code's: batch
    128, SGD momentum 0.9, eps 8/255, PGD-10 step 2/255 (0.007 there) with a
    uniform random start, crop + flip augmentation.
The official code tests (epoch + 1) against its boundaries, so its lr drops
and its reweighting start one epoch earlier than these 0-based epochs.
"WRN-32-10" counts depth as Madry et al.; the library's wide_resnet calls the
same 5-blocks-per-group network depth 34. eval.attacks adds pgd10, cw10 and
kl10 (training settings) for the cross_attack report.
Presets: `resnet18` (official ResNet-18 setting: 100 epochs, lr 0.1 ×0.1 at
30 and 60, burn-in 30), `trades` (GAIRAT-TRADES: TRADES with the weights on
its KL term; κ counts the KL-PGD iterates), `digits` and `mnist10k` (shared specs/protocol.md:
plain AT for epochs 1-5, λ = −1), and the dataset presets of common.py.
λ = +inf is plain AT (--config.reweighting.lam=inf).

  python -m official.train --config=configs/gairat.py:mnist10k
"""
from configs import common

def wrn32(c):
  c.model = common.mlc.ConfigDict({"name": "wide_resnet", "depth": 34,
                                   "width": 10})
  c.epochs = 120
  c.optimizer.learning_rate = 0.1
  c.optimizer.lr_boundaries = (60, 90)
  c.optimizer.lr_decay = 0.1
  c.optimizer.weight_decay = 2e-4
  c.reweighting.burn_in_epochs = 60


def resnet18(c):
  c.model = common.mlc.ConfigDict({"name": "resnet18"})
  c.epochs = 100
  c.optimizer.lr_boundaries = (30, 60)
  c.reweighting.burn_in_epochs = 30


def trades(c):
  c.objective.name = "trades"


def small_scale(c):
  """shared specs/protocol.md: plain AT for epochs 1-5, then λ = -1."""
  c.reweighting.burn_in_epochs = 5
  c.reweighting.lam = -1.0


def get_config(arg=None):
  c = common.base()
  c.objective.name = "at"
  c.reweighting = common.mlc.ConfigDict({
      "name": "gairat",
      "function": "tanh",       # tanh | sigmoid | discrete
      "kappa": "count",         # count (official code) | first_hit (paper)
      "lam": -1.0,              # λ; +inf = plain AT
      "burn_in_epochs": 60,     # plain AT before this (0-based) epoch
      "term": "",               # "" = the objective's adversarial term
  })
  wrn32(c)
  c.eval.attacks = common.CROSS_ATTACK_EVAL
  return common.apply_presets(c, arg, {"wrn32": wrn32, "resnet18": resnet18,
                                       "trades": trades,
                                       "digits": small_scale,
                                       "mnist10k": small_scale})
