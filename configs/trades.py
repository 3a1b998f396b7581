"""TRADES (Zhang et al., ICML 2019): CE(f(x), y) + beta * KL(p(x) || p(x~)).

Defaults follow the official CIFAR-10 code: WRN-34-10, beta 6, 76 epochs,
lr 0.1 x0.1 at 75, weight decay 2e-4, batch 128, eps 8/255, PGD-10 on the KL
from x + 0.001 N(0, 1), step 2/255. `resnet18` swaps the network.
"""
from configs import common


def resnet18(c):
  c.model = common.mlc.ConfigDict({"name": "resnet18"})


def get_config(arg=None):
  c = common.base()
  c.objective.name = "trades"
  c.objective.beta = 6.0
  c.model = common.mlc.ConfigDict({"name": "wide_resnet", "depth": 34, "width": 10})
  c.epochs = 76
  c.optimizer.weight_decay = 2e-4
  c.optimizer.lr_boundaries = (75,)
  return common.apply_presets(c, arg, {"resnet18": resnet18})
