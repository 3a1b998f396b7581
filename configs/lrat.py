"""LRAT (Gao et al. 2021): local reweighting inside (instance, variants) pairs.

Only the paper's abstract was available (shared specs/methods.md); the
formula is this library's reading (official/reweighting/lrat.py). Defaults
are LIBRARY choices, the PGD-AT baseline of configs/at.py so the two compare
directly: CIFAR-10, ResNet-18, 100 epochs, lr 0.1 x0.1 at 75 and 90, wd 5e-4,
batch 128, eps 8/255, PGD-10 step 2/255 (uniform start) as the primary attack
plus a PGD-10 CW variant (confidence 50, same eps / step / start); plain AT
for the first half (50 epochs, "burn-in as GAIRAT"), then λ = -1 tanh
safeness from each attack's κ (count).

`pair_trades`: GAIR-RST's {KL-PGD, CW} pair inside TRADES (β 6). One attack
only (no CW variant): --config.reweighting.variants='()'. Presets `digits`
and `mnist10k` (shared specs/protocol.md: plain AT for epochs 1-5, λ = -1,
the default pair). eval.attacks adds pgd10, cw10 and kl10 (training
settings); the cross_attack report in eval.json sorts every eval attack into
seen / unseen by the losses the run trained with.

  python -m official.train --config=configs/lrat.py
  python -m official.train --config=configs/lrat.py:mnist10k
"""
from configs import common


def pair_trades(c):
  c.objective.name = "trades"
  c.objective.beta = 6.0
  c.reweighting.form = "pair_trades"


def small_scale(c):
  """shared specs/protocol.md: plain AT for epochs 1-5, then λ = -1."""
  c.reweighting.burn_in_epochs = 5
  c.reweighting.lam = -1.0


def get_config(arg=None):
  c = common.base()
  c.objective.name = "at"
  c.reweighting = common.mlc.ConfigDict({
      "name": "lrat",
      "form": "local",          # local (objective at) | pair_trades (trades)
      "variants": ("cw",),      # extra training attacks: cw | fgsm
      "cw_confidence": 50.0,
      "safeness": "gairat",     # gairat (tanh of kappa) | mail (margin)
      "kappa": "count",         # count (official GAIRAT) | first_hit (paper)
      "lam": -1.0,
      "mail_bias": -0.5,        # safeness: mail
      "mail_slope": 10.0,
      "burn_in_epochs": 50,     # plain AT before this (0-based) epoch
  })
  c.eval.attacks = common.CROSS_ATTACK_EVAL
  return common.apply_presets(c, arg, {"pair_trades": pair_trades,
                                       "digits": small_scale,
                                       "mnist10k": small_scale})
