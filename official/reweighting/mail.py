"""MAIL: margin-aware instance reweighting with probabilistic margins.

Wang, Liu, Han, Liu, Gong, Niu, Zhou, Sugiyama, "Probabilistic Margins for
Instance Reweighting in Adversarial Training", NeurIPS 2021, arXiv
2106.07904. Read in the official code, QizhouWang/MAIL (mail_loss.py
`PM`, `weight_assign`, `mail_loss`; train.py) [code].

The probabilistic margin of the adversarial example, on the softmax of its
training-mode logits (the objective's training attack),

  PM_i = p_y(x~_i) − max_{j≠y} p_j(x~_i)            in [−1, 1],
  ω_i  = scale · sigmoid(−slope · (PM_i − bias)),   scale = 3,

is large for examples the attack pushes across (or near) the boundary.
ω is NOT normalised (official: the factor 3 is fixed); `normalize: True`
rescales it to mean 1 over the GLOBAL batch (an option, off by default).
Which term ω multiplies follows the objective:
  MAIL-AT      at      the CE term "adv"            bias −0.5, slope 10
  MAIL-TRADES  trades  only the KL term "kl"        bias 0,    slope 2
  MAIL-MART    mart    only the CE + BCE term "adv" bias −1.5, slope 1
bias / slope None = the objective's values above. The AT and TRADES values
are the paper's (shared specs/methods.md); MART's are the official train.py
argparse defaults [code; unverified as the paper's MART setting]. Before
`burn_in_epochs` (0-based) every weight is 1: the plain objective (official:
75 of 120 ResNet-18 epochs).

Where this differs from the official code:
  - The official code reaches the burn-in by loading the plain method's
    checkpoint saved after epoch 70 and continuing at epoch 75 (and stops
    after epoch 101); here the run is continuous: plain for burn_in_epochs
    epochs, then MAIL.
  - The official PM uses torch.eye(10) (10 classes); here any number.
  - The official code starts every training attack, AT's included, from
    x + 0.001·N(0, 1): configs/mail.py sets attack.random_start = gaussian.
"""
import tensorflow as tf

from official.reweighting import base
from official.reweighting import gairat

# objective -> (bias, slope) when reweighting.bias / slope are None.
DEFAULTS = {"at": (-0.5, 10.0), "trades": (0.0, 2.0), "mart": (-1.5, 1.0)}


def probabilistic_margin(logits, labels):
  """p_y − max_{j≠y} p_j on softmax(logits): [B]."""
  probs = tf.nn.softmax(tf.cast(logits, tf.float32))
  onehot = tf.one_hot(labels, tf.shape(probs)[-1])
  true = tf.reduce_sum(probs * onehot, axis=-1)
  best_wrong = tf.reduce_max(probs - 2.0 * onehot, axis=-1)  # skips y
  return true - best_wrong


def margin_weights(margin, bias, slope, scale=3.0):
  """scale · sigmoid(−slope · (PM − bias))."""
  return scale * tf.sigmoid(-slope * (tf.cast(margin, tf.float32) - bias))


class MAIL(base.Method):
  """Probabilistic-margin weights on the objective's adversarial term."""
  name = "mail"
  metric_names = ("margin_mean", "reweighting_on")

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    bias, slope = DEFAULTS[config.objective.name]
    self.bias = float(bias if cfg.get("bias", None) is None else cfg.bias)
    self.slope = float(slope if cfg.get("slope", None) is None else cfg.slope)
    self.scale = float(cfg.get("scale", 3.0))
    self.normalize = bool(cfg.get("normalize", False))
    self.burn_in = int(cfg.get("burn_in_epochs", 0))
    if self.scale <= 0 or self.burn_in < 0:
      raise ValueError(f"reweighting.scale must be > 0 and burn_in_epochs >= "
                       f"0, got {self.scale} and {self.burn_in}")
    self.term = gairat.weighted_term(cfg, config)

  def build_state(self):
    # The last margin of every example: histograms per epoch (NaN = unseen).
    self.margin = base.PerExampleMemory("mail_margin", self.data.num_ids,
                                        float("nan"))
    return {"margin": self.margin}

  def _margin(self, ctx):
    return probabilistic_margin(ctx.adversarial_logits[ctx.primary_attack],
                                ctx.labels)

  def weights(self, ctx):
    w = margin_weights(self._margin(ctx), self.bias, self.slope, self.scale)
    if self.normalize:
      w = gairat.normalise(w, ctx.global_batch_size)
    on = ctx.epoch >= self.burn_in
    return {self.term: tf.where(on, w, tf.ones_like(w))}

  def metrics(self, ctx, weights):
    del weights
    margin = tf.stop_gradient(self._margin(ctx))
    self.margin.update(ctx.ids, margin)
    return {"margin_mean": base.global_sum(tf.reduce_sum(margin))
                           / ctx.global_batch_size,
            "reweighting_on": tf.cast(ctx.epoch >= self.burn_in, tf.float32)}

  def epoch_summaries(self):
    margin = gairat.visited(self.margin, self.data.train_ids)
    if not margin.size:
      return {}
    return {"margin": margin, "margin_mean": margin.mean()}
