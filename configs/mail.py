"""MAIL (Wang, Liu et al., NeurIPS 2021): probabilistic-margin instance weights.

Defaults follow the paper / official code (QizhouWang/MAIL train.py) on
CIFAR-10 [shared specs/methods.md + code]: ResNet-18, 120 epochs, lr 0.01
x0.1 at 75, 90 and 100, weight decay 3.5e-3, batch 128, beta 5, eps 8/255,
PGD-10 step 2/255 from x + 0.001 N(0, 1) (the official start for every
variant, AT's included), reweighting from epoch 75 (plain objective before).
bias / slope None = the objective's values (official/reweighting/mail.py:
at -0.5 / 10, trades 0 / 2, mart -1.5 / 1).

Presets: `at` (MAIL-AT, the default: weights the CE term), `trades`
(MAIL-TRADES: weights only the KL term), `mart` (MAIL-MART: weights only the
CE + BCE term); `digits` and `mnist10k` (shared specs/protocol.md: plain
objective for epochs 1-5; the protocol's uniform start). eval.attacks adds
pgd10, cw10 and kl10 (training settings) for the cross_attack report.

  python -m official.train --config=configs/mail.py:trades,mnist10k
"""
from configs import common


def at(c):
  c.objective.name = "at"


def trades(c):
  c.objective.name = "trades"


def mart(c):
  c.objective.name = "mart"


def small_scale(c):
  """shared specs/protocol.md: plain training for epochs 1-5."""
  c.reweighting.burn_in_epochs = 5


def get_config(arg=None):
  c = common.base()
  c.objective.name = "at"
  c.objective.beta = 5.0
  c.model = common.mlc.ConfigDict({"name": "resnet18"})
  c.epochs = 120
  c.optimizer.learning_rate = 0.01
  c.optimizer.weight_decay = 3.5e-3
  c.optimizer.lr_boundaries = (75, 90, 100)
  c.optimizer.lr_decay = 0.1
  c.attack.random_start = "gaussian"   # official: x + 0.001 N(0, 1)
  c.reweighting = common.mlc.ConfigDict({
      "name": "mail",
      # None = the objective's: at -0.5 / 10, trades 0 / 2, mart -1.5 / 1.
      "bias": common.mlc.config_dict.placeholder(float),
      "slope": common.mlc.config_dict.placeholder(float),
      "scale": 3.0,             # w = scale * sigmoid(-slope (PM - bias))
      "normalize": False,       # True: mean 1 over the global batch
      "burn_in_epochs": 75,     # plain objective before this (0-based) epoch
      "term": "",               # "" = at/mart: adv, trades: kl
  })
  c.eval.attacks = common.CROSS_ATTACK_EVAL
  return common.apply_presets(c, arg, {"at": at, "trades": trades,
                                       "mart": mart, "digits": small_scale,
                                       "mnist10k": small_scale})
