"""FRL (Xu et al., ICML 2021): fair robust learning, Reweight and Remargin.

TRADES with class weights from Lagrange multipliers of per-class fairness
constraints, measured on a held-out validation split before every epoch
(official/reweighting/frl.py). Variants (presets): `reweight` (the default:
frlrw.py) and `remargin` (Reweight + Remargin: frlrmrw.py, class radii).

Defaults are the official code's (hannxu123/fair_robust): β = 1.5; τ = 0.1
(Reweight) / 0.07 (Remargin); r1 = 0.05 (halved every 40 FRL epochs); r2 =
0.2; limit 0.5; ε-scale clip [0.98, 3.0]; validation CE-PGD-20 at the
training ε and step; the last 300 images of each CIFAR-10 class held out
(data.validation_per_class); PreAct ResNet-18, SGD lr 1e-3 momentum 0.9,
wd 5e-4, batch 128, 40 FRL epochs, eps 8/255, TRADES KL-PGD-10 step 2/255.
The official runs start from a pre-trained robust model that no script of
the repository trains; here `burn_in_epochs` of plain TRADES (same β) come
first: 100 epochs at lr 0.1, ×0.1 at 75 and 90, so that the 40 FRL epochs
(100-139) run at the code's 1e-3 (LIBRARY DEFAULT for the burn-in).

Small-scale presets (digits, mnist10k; mnist10k_hard through mnist10k):
shared specs/protocol.md settings, plain TRADES for epochs 1-5 (burn-in 5),
FRL from epoch 6; validation_per_class 50 on mnist10k (of ~800 per class;
docs/class_fairness.md), 20 on digits (of ~143).

  python -m official.train --config=configs/frl.py:remargin,mnist10k
"""
from configs import common


def reweight(c):
  """FRL-Reweight (frlrw.py): τ0 = τ1 = 0.1, no radius change."""
  c.reweighting.remargin = False
  c.reweighting.tau0 = 0.1
  c.reweighting.tau1 = 0.1


def remargin(c):
  """FRL-Reweight+Remargin (frlrmrw.py): τ = 0.07, r2 = 0.2, clip 3.0."""
  c.reweighting.remargin = True
  c.reweighting.tau0 = 0.07
  c.reweighting.tau1 = 0.07
  c.reweighting.rate2 = 0.2
  c.reweighting.eps_scale_max = 3.0


def digits(c):
  c.reweighting.burn_in_epochs = 5
  c.data.validation_per_class = 20


def mnist10k(c):
  c.reweighting.burn_in_epochs = 5
  c.data.validation_per_class = 50


def get_config(arg=None):
  c = common.base()
  c.objective.name = "trades"
  c.objective.beta = 1.5
  c.model = common.mlc.ConfigDict({"name": "preact_resnet18"})
  c.epochs = 140
  c.optimizer.learning_rate = 0.1
  c.optimizer.lr_boundaries = (75, 90)
  c.optimizer.lr_decay = 0.1
  c.optimizer.weight_decay = 5e-4
  c.data.validation_per_class = 300
  c.reweighting = common.mlc.ConfigDict({
      "name": "frl",
      "remargin": False,        # Reweight+Remargin: per-class radii
      "tau0": 0.1,              # clean-error constraint slack
      "tau1": 0.1,              # boundary-error constraint slack
      "rate1": 0.05,            # λ0 step (λ1: 2·rate1)
      "rate2": 0.2,             # λ2 step (Remargin)
      "limit": 0.5,             # Σλ ≤ limit (each of λ0, λ1)
      "rate_halving_epochs": 40,  # rate1 halves every N FRL epochs (0 never)
      "eps_scale_min": 0.98,    # ε_c / ε = clip(exp(2 λ2_c), min, max)
      "eps_scale_max": 3.0,
      "burn_in_epochs": 100,    # plain TRADES before this (0-based) epoch
      "val_steps": 20,          # validation CE-PGD steps
  })
  return common.apply_presets(c, arg, {"reweight": reweight,
                                       "remargin": remargin,
                                       "digits": digits,
                                       "mnist10k": mnist10k})
