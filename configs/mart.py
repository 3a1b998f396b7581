"""MART (Wang et al., ICLR 2020): boosted CE + beta * KL(p(x) || p(x~)) (1 - p_y(x)).

Defaults follow the official ResNet-18 CIFAR-10 setting: beta 5, 120 epochs,
lr 0.01 x0.1 at 75, 90 and 100, weight decay 3.5e-3, batch 128, eps 8/255,
PGD-10 (CE) from x + 0.001 N(0, 1), step 2/255. `wrn34`: WRN-34-10 with beta 6,
weight decay 7e-4 as in the paper's wide-network runs.
"""
from configs import common


def wrn34(c):
  c.model = common.mlc.ConfigDict({"name": "wide_resnet", "depth": 34, "width": 10})
  c.objective.beta = 6.0
  c.optimizer.weight_decay = 7e-4


def get_config(arg=None):
  c = common.base()
  c.objective.name = "mart"
  c.objective.beta = 5.0
  c.epochs = 120
  c.optimizer.learning_rate = 0.01
  c.optimizer.weight_decay = 3.5e-3
  c.optimizer.lr_boundaries = (75, 90, 100)
  return common.apply_presets(c, arg, {"wrn34": wrn34})
