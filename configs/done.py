"""DONE: doubly robust instance-reweighted AT (Sow et al., ICLR 2024).

KL-DRO weights W_i = exp(ℓ_i / r − log_u) with an SCGD running normaliser
(official/reweighting/done.py). The paper's settings were not reachable
(shared specs/done.md): every value below is a LIBRARY DEFAULT, chosen as
the ResNet-18 CIFAR-10 setting of the reweighting papers:
ResNet-18, eps 8/255, PGD-10 step 2/255, SGD momentum 0.9, lr 0.1 x0.1 at
epochs 50 and 75 of 100 (50% and 75%), wd 5e-4, batch 128; r = 1 (the
adversarial CE is of order 1-2.5), beta = 0.1, no burn-in, no implicit term.

Presets: digits and mnist10k (shared specs/protocol.md settings, plain AT for
epochs 1-5, but r = 5, not the protocol's r = 1: at r = 1 every protocol run
collapsed to a constant classifier at the first reweighted epoch; r = 5 is the
smallest r of {1, 2, 5, 10} whose final-epoch TRAINING adversarial accuracy
matches AT's (seed 0; no test data used to choose); the protocol's value is
`--config.reweighting.r=1.0`. mnist10k_hard (the capacity-limited protocol):
the same rule gives r = 2 (seed 0, final-epoch training adversarial accuracy:
AT 66.0%, r = 1 63.7%, r = 2 66.0%; README). svhn (configs/common.py: lr 0.01, step
1/255), cifar10_lt (long-tailed CIFAR-10, exp profile, ratio 100, with the
head/tail report), and the other dataset presets of configs/common.py. The
worst-class and RA-Tail-30 robust accuracies are in every eval.json
(`worst_class`, `tail`).

r sets how far the weights stray from uniform: W_i / W_j = exp((l_i - l_j)/r).
With r = 1 a loss 5 nats above the batch's typical one gets ~150x the weight.
Watch `method/effective_fraction` (1 = uniform) and `method/weight_max` in
TensorBoard; if the fraction falls far below 1 and the adversarial accuracy
drops, raise r. The CIFAR-10 default r = 1 was not run here.

  python -m official.train --config=configs/done.py:mnist10k
"""
from configs import common


def small_scale(c):
  """Protocol settings (plain AT for epochs 1-5) with r = 5 (see above)."""
  c.reweighting.r = 5.0
  c.reweighting.burn_in_epochs = 5


def hard(c):
  """mnist10k_hard: r = 2 by the same training-accuracy rule (docstring)."""
  small_scale(c)
  c.reweighting.r = 2.0


def cifar10_lt(c):
  """Long-tailed CIFAR-10 (exp profile, n_max / n_min = 100: 12,406 images)."""
  c.data.name = "cifar10"
  c.data.imbalance.profile = "exp"
  c.data.imbalance.ratio = 100.0
  c.eval.reports = tuple(c.eval.reports) + ("groups",)


def get_config(arg=None):
  c = common.base()
  c.objective.name = "at"
  c.model = common.mlc.ConfigDict({"name": "resnet18"})
  c.epochs = 100
  c.batch_size = 128
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.lr_boundaries = (50, 75)
  c.optimizer.lr_decay = 0.1
  c.reweighting = common.mlc.ConfigDict({
      "name": "done",
      "r": 1.0,                   # KL regularisation: W ∝ exp(loss / r)
      "beta": 0.1,                # SCGD: u <- (1 - beta) u + beta mean exp(l/r)
      "normaliser": "ema",        # ema (SCGD estimate) | batch (softmax)
      "clip": 0.0,                # 0 = off; else W_i = min(B w_i, clip)
      "burn_in_epochs": 0,        # plain AT before this (0-based) epoch
      "implicit": "none",         # none | lambda_identity | barrier_diag
      "implicit_lambda": 0.0,     # 0 = 1 / attack.step_size (Fast-BAT)
      "barrier_c": 0.0,           # 0 = implicit_lambda * eps^2 / 2
  })
  return common.apply_presets(c, arg, {"digits": small_scale,
                                       "mnist10k": small_scale,
                                       "mnist10k_hard": hard,
                                       "cifar10_lt": cifar10_lt})
