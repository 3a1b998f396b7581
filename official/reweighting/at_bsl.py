"""AT-BSL: adversarial training with the balanced softmax loss.

Yue, Mou, Wang, Zhao, "Revisiting Adversarial Training under Long-Tailed
Distributions", CVPR 2024, arXiv 2403.10073. Read in the official code,
`NISPLab/AT-BSL` @23f433e (at_bsl_loss.py: BSL, pgd_loss;
train_at_bsl_cifar10.py):

  x̃      = PGD-10 on the plain CE(f(x′), y) of the raw logits, from
           x + 0.001·N(0, I) (`attack.random_start: gaussian`), BN frozen
  loss_i = CE( f(x̃_i) + log n , y_i )          ["adv", replacing AT's CE]

n = the training class counts (softmax is shift-invariant: log n and log π
give the same loss). Inference uses the raw logits f(x): the bias is a
training-time balanced softmax only (the official eval.py attacks model(x)).

Its augmentation options (`--aug none | ra | aua`: torchvision v2
RandAugment(2, 8) or AutoAugment(CIFAR10 policy), before the crop/flip) are
the library's `data.augment: randaugment | autoaugment` for every method
(official/data/augment.py; configs/at_bsl.py presets `ra`, `aua`).

Where this differs from the official code: the repository picks the best
epoch (from epoch 75 on) by PGD-20 on the TEST set. That is test-set model
selection; here the last epoch is evaluated. A held-out split for the choice
(`data.validation_per_class` with `eval.select: best_val`) is being added
beside this; use it for a best-epoch number. The official start is not
clipped to [0, 1] before the first gradient; here it is.
"""
from absl import logging

from official.attacks import losses
from official.reweighting import base
from official.reweighting import robal


class ATBSL(base.Method):
  """AT's adversarial CE with the balanced-softmax bias log n_c."""
  name = "at_bsl"

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    if config.objective.name != "at":
      raise ValueError(f"reweighting.name 'at_bsl' replaces AT's 'adv' term; "
                       f"it needs objective.name 'at', got "
                       f"'{config.objective.name}'")
    # log π = log n − log N: the same loss as log n, bounded constants.
    self.log_prior = robal.log_prior(data.class_counts)
    logging.info("at_bsl: balanced softmax, log prior %s",
                 self.log_prior.round(4).tolist())

  def extra_terms(self, ctx):
    logits = ctx.adversarial_logits[ctx.primary_attack]
    return {"adv": balanced_softmax(logits, ctx.labels, self.log_prior)}


def balanced_softmax(logits, labels, log_prior):
  """[B] CE(logits + log π, y): the BSL of at_bsl_loss.py per example."""
  return losses.cross_entropy(logits + log_prior, labels)
