"""WEAT (Mirza et al., ECCV 2024): energy-weighted TRADES
(official/reweighting/weat.py).

Defaults from the official code, OmnAI-Lab/Robust-Classifiers-under-the-
lens-of-EBM @b58e362 (`Adversarial ML/parser.py`, `main.py`, `WEAT_loss.py`)
[code]: variant WEAT_nat (`--adv-loss` default), β = 6 (`--beta`, passed to
either variant), ResNet-18, 100 epochs, batch 128, SGD momentum 0.9, wd 5e-4,
OneCycleLR to lr 0.1 (pct_start 0.25, per step; momentum cycling not
reproduced), TRADES' KL-PGD from x + 0.001·N(0, I), step 2/255, ε 8/255,
10 steps. Not reproduced: its model selection on synthesised validation
images after epoch 90 (the last weights are evaluated).

Presets: `adv` (WEAT_adv: CE on x̃ instead of x), and the dataset presets
of configs/common.py; `digits`, `mnist10k` (and `mnist10k_hard`): the
protocol's training settings (shared specs/protocol.md: constant lr 0.01,
uniform start), the weights from the first step (WEAT has no burn-in).

  python -m official.train --config=configs/weat.py:mnist10k
"""
from configs import common


def adv(c):
  c.reweighting.variant = "adv"


def small_scale(c):
  """The protocol's schedule (a constant rate), not the OneCycle of CIFAR-10."""
  c.optimizer.schedule = "piecewise"


def get_config(arg=None):
  c = common.base()
  c.objective.name = "trades"
  c.objective.beta = 6.0
  c.model = common.mlc.ConfigDict({"name": "resnet18"})
  c.epochs = 100
  c.optimizer.learning_rate = 0.1
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "onecycle"
  c.optimizer.onecycle_pct_start = 0.25
  c.optimizer.lr_boundaries = ()
  c.reweighting = common.mlc.ConfigDict({
      "name": "weat",
      "variant": "nat",       # nat (WEAT_nat) | adv (WEAT_adv)
      "normalize": False,     # True: mean 1 over the batch (an ablation)
  })
  return common.apply_presets(c, arg, {"adv": adv, "digits": small_scale,
                                       "mnist10k": small_scale})
