"""SRAT on long-tailed data (Wang et al. 2021, arXiv 2107.13639), and its baselines.

Every preset here is LONG-TAILED (exp profile, official/data/long_tail.py):
  cifar10 / cifar10_lt     CIFAR-10-LT, ρ = 100 (default; 12,406 examples)
  cifar100 / cifar100_lt   CIFAR-100-LT, ρ = 100
  svhn / svhn_lt           SVHN-LT, ρ = 100, n_max 4,659 (its smallest class)
  mnist10k / mnist10k_lt   the protocol's long-tailed variant: n_max 600, ρ = 100
  mnist10k_hard_lt         the capacity-limited protocol's (width 6, ε 0.3),
                           50 epochs: mnist10k_hard's number of steps
  (cifar10_lt, mnist10k_lt and mnist10k_hard_lt are the shared presets of
  configs/common.py, which every method config accepts: robal.py:mnist10k_lt
  is the same data and schedule as the arms below.)
  digits                   the embedded digits, n_max 139, ρ = 10 (demo)
  balanced                 switch the imbalance off (the original split)
ρ by flag: --config.data.imbalance.ratio=10. The three arms on the same data:
  srat.py:mnist10k_lt,at       plain AT                  (reweighting none)
  srat.py:mnist10k_lt,at_cb    AT + class-balanced weights (class_balanced)
  srat.py:mnist10k_lt          SRAT
Options: focal / ldam (the classification loss), supcon (instead of triplet).

Defaults are the AT settings of configs/at.py (ResNet-18, 100 epochs, lr 0.1
x0.1 at 75/90): the paper's schedule was not available. Class weights switch
on at 80% of training (defer_epochs -1; LDAM-DRW's 160 of 200), i.e. epoch 9
of 10 on mnist10k. eval.reports = ("groups",): head/tail accuracy and
per_class.png (official/evaluation/groups.py).

  python -m official.train --config=configs/srat.py:digits
"""
from configs import common

# The head-class size of each dataset's long-tailed version: 0 = the largest
# class (the balanced CIFARs); else a size every class of the split has.
N_MAX = {"cifar10": 0, "cifar100": 0, "svhn_cropped": 4659, "mnist": 5421,
         "npz": 600, "digits": 139}
RATIO = {"digits": 10.0}  # ρ per dataset; 100 otherwise


def at(c):
  c.reweighting.name = "none"


def at_cb(c):
  c.reweighting.name = "class_balanced"


def balanced(c):
  c.data.imbalance.profile = "none"


def get_config(arg=None):
  c = common.base()
  c.objective.name = "at"
  c.data.imbalance.profile = "exp"
  c.reweighting = common.mlc.ConfigDict({
      "name": "srat",
      # Class weights (class_weights.py; also used by class_balanced).
      "scheme": "effective",      # effective | inverse | none
      "beta": 0.9999,
      "defer_epochs": -1,         # -1 = 80% of epochs (DRW); 0 = from the start
      "normalize": "batch",       # batch (Σ w ℓ / Σ w, global) | classes
      "terms": (),                # () = every term of the objective
      # SRAT (srat.py).
      "loss": "ce",               # ce | focal | ldam (needs objective at)
      "focal_gamma": 1.0,
      "ldam_max_margin": 0.5,
      "ldam_scale": 1.0,          # LDAM-DRW: 30 with a cosine classifier
      "sep": "triplet",           # triplet | supcon | none
      "sep_weight": 1.0,          # λ
      "triplet_margin": 0.3,
      "supcon_temperature": 0.1,
  })
  c.eval.reports = ("groups",)
  c.eval.head_fraction = 0.5      # head = the most frequent half of classes
  presets = {
      "cifar100_lt": common.cifar100, "svhn_lt": common.svhn,
      "balanced": balanced, "at": at, "at_cb": at_cb,
      "focal": lambda c: setattr(c.reweighting, "loss", "focal"),
      "ldam": lambda c: setattr(c.reweighting, "loss", "ldam"),
      "supcon": lambda c: setattr(c.reweighting, "sep", "supcon"),
  }
  common.apply_presets(c, arg, presets)
  # The long-tailed version of whichever dataset the presets chose.
  c.data.imbalance.n_max = N_MAX.get(c.data.name, 0)
  c.data.imbalance.ratio = RATIO.get(c.data.name, 100.0)
  return c
