"""The base config every method config starts from, and the dataset presets.

A method config is `get_config(arg)`: `common.base()`, then the method's paper
defaults (CIFAR-10), then the presets named in `arg` (comma-separated, e.g.
`configs/at.py:digits` or `configs/mail.py:trades,mnist10k`). Values that
depend on other values are derived in code or linked with FieldReferences, so
`--config.a.b=v` overrides are followed.
"""
import os

import ml_collections as mlc
from ml_collections import config_dict  # noqa: F401  (mlc.config_dict)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST10K = os.path.normpath(
    os.path.join(REPO_ROOT, "..", "shared", "data", "mnist10k.npz"))
# eval.attacks with the training attacks at training settings (pgd10, cw10,
# kl10) beside the standard ones, for the cross_attack report (GAIRAT, MAIL,
# LRAT configs).
CROSS_ATTACK_EVAL = ("natural", "fgsm", "pgd10", "pgd20", "cw10", "cw", "kl10")


def base():
  c = mlc.ConfigDict()
  c.seed = 0
  c.epochs = 100
  c.batch_size = 128
  # multi_worker: the TF_CONFIG cluster, every worker runs the same command.
  c.distribute = "default"      # default (one device) | mirrored (all local GPUs, else CPU)
  c.xla = "auto"                # XLA for the PGD loop: auto | on | off
  # Keras dtype policy: float32 | mixed_float16 (GPU tensor cores; loss
  # scaling) | mixed_bfloat16. No speed-up on CPUs (README, Speed).
  c.precision = "float32"
  c.checkpoints_to_keep = 3
  # Weight averaging (official/core/averaging.py), evaluated and exported in
  # place of the last weights: none | swa (mean of the epochs' end weights,
  # BN statistics recomputed) | ema (per-epoch decay; gated by the method,
  # e.g. CFA). The start epoch is 0-based: its end weights are the first in.
  c.averaging = "none"
  c.averaging_start_epoch = 0
  c.averaging_decay = 0.88            # ema: θ̄ ← decay·θ̄ + (1 − decay)·θ per epoch

  c.data = mlc.ConfigDict()
  c.data.name = "cifar10"       # cifar10 | cifar100 | svhn_cropped | mnist | digits | npz
  c.data.path = ""              # the .npz file for name=npz
  c.data.data_dir = ""          # tfds data_dir ("" = tfds default)
  # default (per dataset) | crop_flip | crop | none | randaugment |
  # autoaugment (each of the last two followed by the dataset's crop/flip, as
  # in AT-BSL; official/data/augment.py)
  c.data.augment = "default"
  c.data.eval_batch_size = 500
  c.data.imbalance = mlc.ConfigDict()
  c.data.imbalance.profile = "none"   # none | exp | step (long-tailed training split)
  c.data.imbalance.ratio = 1.0        # n_max / n_min
  c.data.imbalance.seed = 0
  c.data.imbalance.n_max = 0          # 0 = the largest class of the split
  # Validation split: the last N images of every class held out of training,
  # before any long-tailing (official/data/holdout.py; docs/class_fairness.md).
  c.data.validation_per_class = 0

  c.model = mlc.ConfigDict({"name": "resnet18"})

  c.optimizer = mlc.ConfigDict()
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 5e-4     # coupled (added to gradients, PyTorch style)
  c.optimizer.lr_boundaries = (75, 90)  # epochs at which the rate is multiplied
  c.optimizer.lr_decay = 0.1
  # piecewise (lr_boundaries, lr_decay) | onecycle (PyTorch's OneCycleLR to
  # learning_rate over `epochs`, warm-up fraction onecycle_pct_start; WEAT).
  c.optimizer.schedule = "piecewise"
  c.optimizer.onecycle_pct_start = 0.25

  # name: at | trades | mart; label_smoothing: of the objective's
  # classification CE (TRADES' natural term; modeling/objectives.py).
  c.objective = mlc.ConfigDict({"name": "at", "beta": 6.0,
                                "label_smoothing": 0.0})

  c.attack = mlc.ConfigDict()         # the training attack
  c.attack.epsilon = 8 / 255
  c.attack.step_size = 2 / 255
  c.attack.steps = 10
  # default (the objective's) | uniform | gaussian | none | one_sided
  # (x + eps·U[0, 1), RoBal's start)
  c.attack.random_start = "default"
  # Linear ramp of epsilon and step size from ~0 to full over these first
  # epochs (0 = none): lets narrow networks start at a large epsilon.
  c.attack.epsilon_warmup_epochs = 0

  c.reweighting = mlc.ConfigDict({"name": "none"})

  c.eval = mlc.ConfigDict()
  c.eval.attacks = ("natural", "fgsm", "pgd20", "cw")
  # None = the training epsilon, resolved in code (experiment.resolve): a
  # FieldReference would make an eval override change the training budget too.
  c.eval.epsilon = mlc.config_dict.placeholder(float)
  c.eval.pgd_steps = 20
  c.eval.pgd_step_size = 2 / 255
  # Step of pgd10 / cw10 / kl10 (the training attacks at training settings):
  # None = attack.step_size, resolved in code (experiment.resolve).
  c.eval.train_step_size = mlc.config_dict.placeholder(float)
  c.eval.cw_steps = 20
  c.eval.cw_step_size = 2 / 255
  c.eval.cw_confidence = 50.0
  c.eval.restarts = 1
  # pgd20-lsa: PGD-20 on CE(α·logits) for each α (Hitaj et al. 2021).
  c.eval.lsa_scales = (0.1, 10.0)
  c.eval.tail_fraction = 0.3          # RA-Tail-30: the 30% weakest classes
  c.eval.max_examples = 0             # 0 = the whole test split
  # The AutoAttack family (apgd-ce, apgd-dlr, apgd-t, fab-t, square,
  # autoattack, autoattack-fast in eval.attacks) costs hundreds of forward and
  # backward passes per example: it runs on the first N test examples only.
  c.eval.autoattack_max_examples = 0  # 0 = as eval.max_examples
  # Extra reports (official/evaluation/reports.py); cross_attack: seen vs
  # unseen attacks (cheap: it only groups the results of eval.attacks).
  c.eval.reports = ("cross_attack",)
  # Report eps_curve: test radii (() = eps_curve_points evenly in [0, 2 eps]).
  c.eval.eps_curve = ()
  c.eval.eps_curve_points = 9
  c.eval.eps_curve_max_examples = 1000  # 0 = as eval.max_examples
  # Report tail_examples: the k% test examples (k = tail_fraction) with the
  # highest loss under this SavedModel (e.g. RUN/export of plain AT).
  c.eval.reference_export = ""
  c.eval.reference_loss = "pgd20"    # pgd20 | natural: the ranking loss
  # Which weights are exported and evaluated: last (the final epoch's) |
  # best_val (the epoch best on validation PGD-10 at the training epsilon;
  # needs data.validation_per_class > 0; official/core/selection.py).
  c.eval.select = "last"
  return c


def _small_cnn(c, **options):
  # Every option spelled out (the builder's defaults first), so that
  # `--config.model.filters=...` / `dense_units` overrides find their key.
  c.model = mlc.ConfigDict({"name": "small_cnn", "filters": (32, 32, 64, 64),
                            "dense_units": (200, 200), "padding": "valid",
                            "dropout": 0.5, **options})


def digits(c):
  """scikit-learn's bundled 8x8 digits: the offline demo, about a minute on 2 CPUs."""
  c.data.name = "digits"
  _small_cnn(c, filters=(32, 32, 64, 64), dense_units=(128, 128), padding="same",
             dropout=0.0)
  c.epochs = 15
  c.batch_size = 64
  c.optimizer.learning_rate = 0.05
  c.optimizer.weight_decay = 2e-4
  c.optimizer.lr_boundaries = (12,)
  c.attack.epsilon = 0.1
  c.attack.step_size = 0.02
  c.eval.pgd_step_size = 0.01
  c.eval.cw_step_size = 0.01


def mnist10k(c):
  """The small-scale protocol (shared specs/protocol.md): real MNIST subset."""
  c.data.name = "npz"
  c.data.path = MNIST10K
  # protocol.md lists SmallCNN's layers without TRADES' dropout(0.5).
  _small_cnn(c, dropout=0.0)
  c.epochs = 10
  c.batch_size = 128
  c.optimizer.learning_rate = 0.01
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 2e-4
  c.optimizer.lr_boundaries = ()
  c.attack.epsilon = 0.1
  c.attack.step_size = 0.02
  c.attack.steps = 10
  c.attack.random_start = "uniform"
  c.eval.pgd_step_size = 0.01
  c.eval.cw_step_size = 0.01
  # AutoAttack's quick pair (APGD-CE + APGD-T) on the first 500 test images
  # in every protocol run: PGD-20 alone overstated GAIRAT by several points.
  # The standard ensemble (with FAB-T and Square) is ~10x dearer here: run it
  # on finished runs with `tools.protocol --evaluate=autoattack:500`.
  c.eval.attacks = tuple(c.eval.attacks) + ("autoattack-fast",)
  c.eval.autoattack_max_examples = 500


def mnist10k_hard(c):
  """The capacity-limited protocol: mnist10k's data, evaluation and schedule
  with a narrow SmallCNN at eps 0.3, where plain AT fits only ~2/3 of its
  training set adversarially (CIFAR-10 PGD-AT's regime). Chosen with plain AT
  only (docs/mnist10k_hard_selection.md): width 6 (filters 6-6-12-12, dense
  100-100), eps 0.3 (the standard MNIST radius) ramped linearly over the
  first 5 epochs, i.e. over the burn-in of the reweighting methods, which then
  reweight at the full eps from epoch 6 as in mnist10k. Steps follow eps as in
  mnist10k (training eps / 5, evaluation eps / 10).
  """
  mnist10k(c)
  c.model.filters = (6, 6, 12, 12)
  c.model.dense_units = (100, 100)
  c.attack.epsilon = 0.3
  c.attack.step_size = 0.06
  c.attack.epsilon_warmup_epochs = 5
  c.eval.pgd_step_size = 0.03
  c.eval.cw_step_size = 0.03


def mnist(c):
  """tfds MNIST with TRADES' MNIST settings (eps 0.3, PGD-40 step 0.01)."""
  c.data.name = "mnist"
  _small_cnn(c, dropout=0.5)  # TRADES' SmallCNN as released
  c.epochs = 100
  c.optimizer.learning_rate = 0.01
  c.optimizer.weight_decay = 0.0
  c.optimizer.lr_boundaries = (55, 75, 90)
  c.attack.epsilon = 0.3
  c.attack.step_size = 0.01
  c.attack.steps = 40
  c.eval.pgd_step_size = 0.01
  c.eval.cw_step_size = 0.01


def cifar10(c):
  c.data.name = "cifar10"


def cifar100(c):
  c.data.name = "cifar100"


def svhn(c):
  """SVHN: the usual AT settings (lr 0.01, eps 8/255, step 1/255)."""
  c.data.name = "svhn_cropped"
  c.optimizer.learning_rate = 0.01
  c.attack.step_size = 1 / 255


def long_tailed(c, ratio=100.0, n_max=0):
  """The exp long-tailed version of the chosen dataset (data/long_tail.py):
  n_c = int(n_max · ρ^(−c/(C−1))), ρ = `ratio` (by flag:
  --config.data.imbalance.ratio=10), n_max 0 = the largest class."""
  c.data.imbalance.profile = "exp"
  c.data.imbalance.ratio = float(ratio)
  c.data.imbalance.n_max = int(n_max)
  c.data.imbalance.seed = 0


def mnist10k_lt(c):
  """mnist10k's long-tailed version: n_max 600 (every class of the 8,000
  training images has more), ρ = 100: 1,485 images. SRAT's arms
  (configs/srat.py) and every other method on the same data and schedule.

  mnist10k's 10 epochs are 110 steps of this split: short for every method
  (with 30 epochs each arm gains 18-37 AutoAttack-fast points and the order
  changes; docs/results_long_tailed.md). Kept at 10 so that the published
  10-epoch tables reproduce; pass --config.epochs=30 to train longer."""
  mnist10k(c)
  long_tailed(c, 100.0, 600)


def mnist10k_hard_lt(c):
  """The long-tailed version of the capacity-limited mnist10k_hard.

  Its training split has 1,485 of the 8,000 images (11 steps of 128 an epoch,
  not 62): with mnist10k_hard's 10 epochs the narrow network barely leaves
  its start (AT: 23% natural accuracy, measured). 50 epochs and a 25-epoch
  warm-up keep mnist10k_hard's number of steps (~600) and warm-up (~300).
  """
  mnist10k_hard(c)
  c.epochs = 50
  c.attack.epsilon_warmup_epochs = 25
  long_tailed(c, 100.0, 600)


def cifar10_lt(c):
  """CIFAR-10-LT, ρ = 100 (LDAM-DRW / RoBal builder: 12,406 images,
  5000 2997 1796 1077 645 387 232 139 83 50). RoBal's and AT-BSL's codes
  train at ρ = 50: their configs' defaults."""
  cifar10(c)
  long_tailed(c, 100.0, 0)


DATASET_PRESETS = {"cifar10": cifar10, "cifar100": cifar100, "svhn": svhn,
                   "mnist": mnist, "mnist10k": mnist10k,
                   "mnist10k_hard": mnist10k_hard, "digits": digits,
                   "mnist10k_lt": mnist10k_lt,
                   "mnist10k_hard_lt": mnist10k_hard_lt,
                   "cifar10_lt": cifar10_lt}
# A variant -> the preset whose method presets (burn-in, ...) it shares,
# followed as a chain: mnist10k_hard_lt gets a method's mnist10k_hard preset
# if it has one (DONE's r, IAAT's γ: the same network and ε), else mnist10k's.
PRESET_FAMILY = {"mnist10k_hard": "mnist10k", "mnist10k_lt": "mnist10k",
                 "mnist10k_hard_lt": "mnist10k_hard"}


def parse_arg(arg):
  return [t.strip() for t in (arg or "").split(",") if t.strip()]


def apply_presets(c, arg, method_presets=None):
  """Applies dataset presets, then method presets, from the `:arg` tokens.

  method_presets: {token: fn(config)} of the method's own presets (e.g. MAIL's
  `trades`). Method presets run after the dataset ones so that they can adapt
  to the dataset (e.g. the burn-in epoch of `mnist10k`).
  """
  method_presets = method_presets or {}
  tokens = parse_arg(arg)
  valid = sorted(set(DATASET_PRESETS) | set(method_presets))
  for t in tokens:
    if t not in valid:
      raise ValueError(f"unknown config preset '{t}'; valid: {', '.join(valid)}")
  for t in tokens:
    if t in DATASET_PRESETS:
      DATASET_PRESETS[t](c)
  for t in tokens:
    # A variant of a dataset preset (mnist10k_hard) gets the method's preset
    # of its family (mnist10k: burn-in etc.) unless the method has its own.
    while t not in method_presets and t in PRESET_FAMILY:
      t = PRESET_FAMILY[t]
    if t in method_presets:
      method_presets[t](c)
  # Every config can switch the classifier head (modeling/registry.py):
  # the dataset presets replace c.model, so the keys are added here, last.
  if "head" not in c.model:
    c.model.head = "linear"           # linear | cosine (RoBal's)
  if "cosine_gamma" not in c.model:
    c.model.cosine_gamma = 0.03125    # cosine: w_j / (‖w_j‖ + γ)
  # Your own keras.Model: --config.model.name=custom
  # --config.model.builder=FILE.py:FUNCTION (official/modeling/custom.py);
  # empty, it is dropped from the recorded config (experiment.resolve).
  if "builder" not in c.model:
    c.model.builder = ""
  return c
