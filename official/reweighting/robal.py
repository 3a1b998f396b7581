"""RoBal: robust balanced training under long-tailed data.

Wu, Liu, Huang, Wang, Lin, "Adversarial Robustness under Long-Tailed
Distribution", CVPR 2021, arXiv 2104.02703. Read in the official code,
`wutong16/Adversarial_Long-Tail` @ab2f3a7 (methods/losses_inclass.py:
MultiMarginLoss; methods/train_modes.py: add_reg_train; models/classifiers/
basic_classifiers.py: CosPlus_Classifier, PostProc_Classifier; configs/
CIFAR10_LT/cifar10_LT0.02_pgdat_robal_{N,R}_{train,eval}.yaml).

Two logit scales. The network ends in the cosine head (modeling/heads.py,
`model.head: cosine`): its logits are z ∈ (−1, 1)^C (CosPlus with scale 1).
  - the training attack: PGD-5 on plain CE(z(x′), y) (scale 1), from the
    one-sided start x + ε·U[0, 1) (`attack.random_start: one_sided`);
  - the TRADES-like regulariser: KL(softmax z(x) ‖ softmax z(x̃)) (scale 1);
  - only the classification loss scales by s:

  loss_i = CE( s·(z(x̃_i) − m_{y_i}·e_{y_i}) + τ_b·log π ,  y_i )      ["adv"]
           + β · KL( softmax z(x_i) ‖ softmax z(x̃_i) )                 ["kl"]

  π_c = n_c / N           the training prior (class counts of the split)
  m_c = m0 + τ_m·log(n_c / n_min) / s
                          the class-aware margin, subtracted from the TRUE
                          class's cosine only. log(n_c/n_min) ≥ 0, so in this
                          code the HEAD classes get the LARGER margins (the
                          rarest class gets m0); the τ_b·log π bias, which
                          lowers the rare classes' logits by more, is what
                          favours the tail during training.
  β = 6 (beta_reg), the classification loss weighs 1 (beta_adv), the
  natural CE 0 (beta_nat).

Deployed logits (`inference_logits`, what evaluation attacks and the export
serves):
  RoBal-N  `inference: adjusted`   s·z − τ_p·log π   (PostProc_Classifier,
           posthoc, scale s = 10, τ_p = 0.1): the boundary adjustment
  RoBal-R  `inference: plain`      z                  (CosPlus, scale 1)

Defaults (the official configs, CIFAR-10-LT): s = 10, m0 = 0.1, β = 6;
N: τ_m = 0, τ_b = 1.2, τ_p = 0.1; R: τ_m = 0.3, τ_b = 1.5.

Where this differs from the official code:
  - its training step runs the network in train mode on x̃ twice and on x
    twice (the 0-weighted natural CE and the KL each call model(·) again);
    with batch norm that moves the running averages 4 times per step. Here
    x̃ and x have one training forward each (2 updates).
  - its KL takes log(p_adv + 1e-12); here the log-softmax (< 1e-10 apart).
  - its random start is not clipped to [0, 1] before the first gradient;
    here the start is clipped (as every attack of the library).
  - its learning-rate schedule multiplies the rate by 0.1 at EVERY epoch
    from 60 on (`adjust_learning_rate` rescales the current rate each
    epoch), so the rate is ~0 after epoch 62; configs/robal.py uses the
    stated schedule (÷10 at 60 and 75).
"""
import numpy as np
import tensorflow as tf
from absl import logging

from official.attacks import losses
from official.reweighting import base

INFERENCE = ("adjusted", "plain")


def log_prior(counts):
  """log π_c = log(n_c / N), float32 [C]; every class needs an example."""
  counts = np.asarray(counts, np.float64)
  if (counts <= 0).any():
    raise ValueError(f"robal / at_bsl need every class in the training split "
                     f"(log n_c); class counts {counts.astype(int).tolist()}")
  return np.log(counts / counts.sum()).astype(np.float32)


def margins(counts, m0, tau_m, scale):
  """m_c = m0 + τ_m·log(n_c / n_min) / s, float32 [C]."""
  counts = np.asarray(counts, np.float64)
  return (m0 + tau_m * np.log(counts / counts.min()) / scale).astype(np.float32)


def margin_loss(z, labels, margin, bias, scale):
  """[B] CE(s·(z − m_y·e_y) + bias, y): MultiMarginLoss per example."""
  onehot = tf.one_hot(labels, tf.shape(z)[-1], dtype=z.dtype)
  m = tf.gather(tf.constant(margin, z.dtype), labels)
  logits = scale * (z - onehot * m[:, None]) + tf.constant(bias, z.dtype)
  return losses.cross_entropy(logits, labels)


def _positive(key, value):
  value = float(value)
  if not value > 0:
    raise ValueError(f"{key} must be > 0, got {value}")
  return value


def _non_negative(key, value):
  value = float(value)
  if not value >= 0:
    raise ValueError(f"{key} must be >= 0, got {value}")
  return value


class RoBal(base.Method):
  """Cosine classifier + margin/bias CE at scale s + β·KL on the cosines."""
  name = "robal"
  needs_natural = True
  extra_term_names = ("kl",)

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    self.scale = _positive("reweighting.scale", cfg.get("scale", 10.0))
    self.m0 = _positive("reweighting.margin", cfg.get("margin", 0.1))
    self.tau_m = _non_negative("reweighting.tau_m", cfg.get("tau_m", 0.0))
    self.tau_b = _non_negative("reweighting.tau_b", cfg.get("tau_b", 1.2))
    self.tau_p = _non_negative("reweighting.tau_p", cfg.get("tau_p", 0.1))
    self.kl_weight = _non_negative("reweighting.kl_weight",
                                   cfg.get("kl_weight", 6.0))
    self.inference = base.check_choice(
        "reweighting.inference", cfg.get("inference", "adjusted"), INFERENCE)
    head = config.model.get("head", "linear")
    if head != "cosine":
      raise ValueError(f"reweighting.name 'robal' needs model.head 'cosine' "
                       f"(its scale-invariant classifier), got '{head}'")
    if config.objective.name != "at":
      raise ValueError(f"reweighting.name 'robal' replaces AT's 'adv' term; "
                       f"it needs objective.name 'at', got "
                       f"'{config.objective.name}'")
    self.log_prior = log_prior(data.class_counts)
    self.margins = margins(data.class_counts, self.m0, self.tau_m, self.scale)
    logging.info("robal: s %g, margins %s, tau_b %g, KL x %g, inference %s",
                 self.scale, np.round(self.margins, 4).tolist(), self.tau_b,
                 self.kl_weight, self.inference)

  def extra_terms(self, ctx):
    z_adv = ctx.adversarial_logits[ctx.primary_attack]
    return {
        "adv": margin_loss(z_adv, ctx.labels, self.margins,
                           self.tau_b * self.log_prior, self.scale),
        "kl": self.kl_weight * losses.kl_divergence(ctx.natural_logits,
                                                    z_adv),
    }

  def inference_logits(self, logits):
    if self.inference == "plain":
      return logits
    # Arithmetic only: `logits` may be a symbolic Keras tensor (the export).
    return logits * self.scale - self.tau_p * self.log_prior
