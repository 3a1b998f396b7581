"""RoBal (Wu et al., CVPR 2021): cosine classifier, margins and balanced bias.

official/reweighting/robal.py has the loss, the two logit scales and where
the official code differs. Defaults are the official CIFAR-10-LT configs
(`wutong16/Adversarial_Long-Tail` @ab2f3a7, configs/CIFAR10_LT/
cifar10_LT0.02_pgdat_robal_{N,R}_{train,eval}.yaml):
  data       CIFAR-10-LT, exp, ρ = 50 (imbalance_ratio 0.02; the common
             `cifar10_lt` preset is ρ = 100), crop + flip
  model      WRN-34-10, cosine head, γ = 0.03125 (classifier_opt)
  schedule   80 epochs, batch 64, SGD momentum 0.9, lr 0.1 ÷10 at 60 and 75,
             wd 2e-4 (the code's schedule in fact multiplies by 0.1 at every
             epoch from 60: robal.py's docstring)
  attack     PGD-5, step 0.0078, ε 0.031, start x + ε·U[0, 1) (add_reg_train)
  loss       s = 10, m0 = 0.1, KL weight 6 (beta_reg), beta_adv 1, beta_nat 0
  N (default)  τ_m 0, τ_b 1.2; deployed s·z − τ_p·log π with τ_p 0.1
  R            τ_m 0.3, τ_b 1.5; deployed z (scale 1)
  eval       PGD-20 step 0.0078 at the training ε (test_* keys)
Presets: `N`, `R`; `digits` (long-tailed as SRAT's: n_max 139, ρ = 10;
RoBal's PGD-5 and one-sided start at digits' ε; lr 0.01: `digits` below); the
shared `mnist10k_lt`,
`mnist10k_hard_lt`, `cifar10_lt` (configs/common.py: the data, schedule and
attack of SRAT's arms, so the protocol's uniform start; the official start is
`--config.attack.random_start=one_sided`), and every other dataset preset.
ρ by flag: --config.data.imbalance.ratio=10.

  python -m official.train --config=configs/robal.py:N,digits
  python -m official.train --config=configs/robal.py:R,mnist10k_lt
"""
from configs import common


def robal_n(c):
  c.reweighting.update({"tau_m": 0.0, "tau_b": 1.2, "tau_p": 0.1,
                        "inference": "adjusted"})


def robal_r(c):
  c.reweighting.update({"tau_m": 0.3, "tau_b": 1.5, "tau_p": 0.0,
                        "inference": "plain"})


def digits(c):
  """SRAT's long-tailed digits; lr 0.01, not digits' 0.05: at 0.05 the
  BN-free SmallCNN's ReLU features die under the cosine head (its gradient
  grows as s/‖x‖): all-zero features, z = 0, 10% accuracy (measured,
  RoBal-N seed 0); at 0.01 natural 90%, PGD-20 63%."""
  common.long_tailed(c, 10.0, 139)
  c.optimizer.learning_rate = 0.01


def get_config(arg=None):
  c = common.base()
  c.objective.name = "at"
  c.model = common.mlc.ConfigDict({"name": "wide_resnet", "depth": 34,
                                   "width": 10})
  c.epochs = 80
  c.batch_size = 64
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 2e-4
  c.optimizer.lr_boundaries = (60, 75)
  c.optimizer.lr_decay = 0.1
  c.attack.epsilon = 0.031
  c.attack.step_size = 0.0078
  c.attack.steps = 5
  c.attack.random_start = "one_sided"
  c.eval.pgd_step_size = 0.0078
  c.reweighting = common.mlc.ConfigDict({
      "name": "robal",
      "scale": 10.0,              # s: the loss's (and RoBal-N's deployed) scale
      "margin": 0.1,              # m0 (> 0)
      "tau_m": 0.0,               # class-aware margin: + τ_m·log(n_c/n_min)/s
      "tau_b": 1.2,               # balanced-softmax bias τ_b·log π in the loss
      "tau_p": 0.1,               # deployed bias −τ_p·log π (adjusted only)
      "kl_weight": 6.0,           # β: KL(p(x) ‖ p(x̃)) on the cosines
      "inference": "adjusted",    # adjusted (RoBal-N: s·z − τ_p·log π) | plain (R: z)
  })
  presets = {"N": robal_n, "R": robal_r, "digits": digits}
  common.apply_presets(c, arg, presets)
  if not any(t in common.DATASET_PRESETS for t in common.parse_arg(arg)):
    common.long_tailed(c, 50.0, 0)   # the official CIFAR-10-LT (ρ = 50)
  # The scale-invariant classifier (dataset presets replace c.model).
  c.model.head = "cosine"
  c.model.cosine_gamma = 0.03125
  return c
