"""AT-BSL (Yue et al., CVPR 2024): PGD-AT with the balanced softmax loss.

official/reweighting/at_bsl.py has the loss and where the official code
differs. Defaults are the official CIFAR-10-LT run (`NISPLab/AT-BSL`
@23f433e, train_at_bsl_cifar10.py, `--arch res`):
  data       CIFAR-10-LT, exp, ρ = 50 (imbalance_ratio 0.02; the common
             `cifar10_lt` preset is ρ = 100), crop + flip, no extra
             augmentation (README's "AT-BSL"; the script's argparse default
             is `--aug aua`: preset `aua`)
  model      ResNet-18
  schedule   100 epochs, batch 128, SGD momentum 0.9, lr 0.1 ÷10 at 75,
             ÷100 at 90, wd 5e-4 (its ÷1000 "at 100" runs the last epoch)
  attack     PGD-10, step 2/255, ε 8/255, start x + 0.001·N(0, I)
Presets: `ra` (RandAugment(2, 8) before crop/flip: AT-BSL-RA), `aua`
(AutoAugment's CIFAR-10 policy: AT-BSL-AuA); `digits` (long-tailed as SRAT's:
n_max 139, ρ = 10); the shared `mnist10k_lt`, `mnist10k_hard_lt`,
`cifar10_lt` (configs/common.py) and every other dataset preset. ρ by flag:
--config.data.imbalance.ratio=10. The repository picks its best epoch by
TEST PGD-20; here the last epoch is evaluated (a held-out split,
data.validation_per_class + eval.select=best_val, is the way to pick one).

  python -m official.train --config=configs/at_bsl.py:ra,digits
"""
from configs import common


def digits(c):
  common.long_tailed(c, 10.0, 139)


def get_config(arg=None):
  c = common.base()
  c.objective.name = "at"
  c.model = common.mlc.ConfigDict({"name": "resnet18"})
  c.epochs = 100
  c.batch_size = 128
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.lr_boundaries = (75, 90)
  c.optimizer.lr_decay = 0.1
  c.attack.epsilon = 8 / 255
  c.attack.step_size = 2 / 255
  c.attack.steps = 10
  c.attack.random_start = "gaussian"
  c.reweighting = common.mlc.ConfigDict({"name": "at_bsl"})
  presets = {"ra": lambda c: setattr(c.data, "augment", "randaugment"),
             "aua": lambda c: setattr(c.data, "augment", "autoaugment"),
             "digits": digits}
  common.apply_presets(c, arg, presets)
  if not any(t in common.DATASET_PRESETS for t in common.parse_arg(arg)):
    common.long_tailed(c, 50.0, 0)   # the official CIFAR-10-LT (ρ = 50)
  return c
