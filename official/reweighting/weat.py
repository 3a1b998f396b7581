"""WEAT: weighted energy adversarial training.

Mirza, Briglia, Beadini, Masi, "Shedding More Light on Robust Classifiers
under the lens of Energy-based Models", ECCV 2024. Read in the official code,
OmnAI-Lab/Robust-Classifiers-under-the-lens-of-EBM @b58e362
(`Adversarial ML/WEAT_loss.py: energy_x, compute_weights, WEAT_nat,
WEAT_adv`; `main.py`, `parser.py`, `utils.py`) [code].

TRADES whose two terms are weighted per example by the energy of the natural
input, E(x) = −logsumexp_k f_k(x) (the training-mode natural logits, detached):

  w_i = 1 / log(1 + exp(|E(x_i)|))              (not normalised)
  nat (WEAT_nat, the default):
    loss = (1/B) Σ_i w_i·CE(f(x_i), y_i) + β·(1/B) Σ_i w_i·KL(p(x_i) ‖ p(x̃_i))
  adv (WEAT_adv):
    loss = (1/B) Σ_i w_i·CE(f(x̃_i), y_i) + β·(1/B) Σ_i w_i·KL(p(x_i) ‖ p(x̃_i))

Low-energy (confident, |E| large) examples get small weights; examples near
E = 0 get up to 1/log 2. With `variant: adv` the objective's `nat` term is
replaced by CE(f(x̃), y) (the training-mode forward of x̃), so the term named
`nat` holds the adversarial CE in the logs.

Defaults (configs/weat.py, from the code): β = 6 for both variants (the
`--beta` default, which main.py passes to either loss; the function default
of WEAT_adv, 7, is never used by main.py); TRADES' KL-PGD from
x + 0.001·N(0, I), step 2/255, ε 8/255, 10 steps, BN in eval mode; ResNet-18,
100 epochs, batch 128, SGD momentum 0.9, wd 5e-4, OneCycleLR with max lr 0.1
(pct_start 0.25, stepped per batch; its momentum cycling 0.85-0.95 is not
reproduced: momentum stays 0.9); the official code keeps the model best on a
validation set of synthesised images after epoch 90 (not reproduced: the
last weights are evaluated). The weights act from the first step (no burn-in).
softplus(|E|) is log(1 + exp(|E|)) computed without overflow.

`normalize: true` (not in the paper; off by default) rescales the weights to
mean 1 over the global batch: the official weights average ~1/log(1 + K)
while the logits are small (0.42 for K = 10 at a zero-initialised head), so
they also scale the learning rate down; normalised, only their relative
sizes act (an ablation that separates the two).
"""
import tensorflow as tf

from official.attacks import losses
from official.reweighting import base
from official.reweighting import gairat

VARIANTS = ("nat", "adv")


def energy(logits):
  """E(x) = −logsumexp f(x) per example."""
  return -tf.reduce_logsumexp(logits, axis=-1)


def energy_weights(logits):
  """w = 1 / log(1 + exp(|E(x)|)) per example (no normalisation)."""
  return 1.0 / tf.math.softplus(tf.abs(energy(logits)))


class WEAT(base.Method):
  """Energy weights on both TRADES terms (WEAT_nat) or on CE(x̃) + KL (WEAT_adv)."""
  name = "weat"
  metric_names = ("weight_mean", "energy_mean")

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    if config.objective.name != "trades":
      raise ValueError("reweighting.name=weat weights TRADES' terms: it needs "
                       f"objective.name=trades, got {config.objective.name!r}")
    self.variant = base.check_choice("reweighting.variant",
                                     cfg.get("variant", "nat"), VARIANTS)
    self.normalize = bool(cfg.get("normalize", False))

  def build_state(self):
    # The last energy of every example: a histogram per epoch (NaN = unseen).
    self.energy = base.PerExampleMemory("weat_energy", self.data.num_ids,
                                        float("nan"))
    return {"energy": self.energy}

  def extra_terms(self, ctx):
    if self.variant == "nat":
      return {}
    return {"nat": losses.cross_entropy(
        ctx.adversarial_logits[ctx.primary_attack], ctx.labels)}

  def weights(self, ctx):
    w = energy_weights(ctx.natural_logits)  # the step stops its gradient
    if self.normalize:
      w = gairat.normalise(w, ctx.global_batch_size)
    return {"nat": w, "kl": w}

  def metrics(self, ctx, weights):
    e = tf.stop_gradient(energy(ctx.natural_logits))
    self.energy.update(ctx.ids, e)
    total = lambda v: base.global_sum(tf.reduce_sum(v)) / ctx.global_batch_size  # noqa: E731
    return {"weight_mean": total(weights["kl"]), "energy_mean": total(e)}

  def epoch_summaries(self):
    values = gairat.visited(self.energy, self.data.train_ids)
    return {"energy": values} if values.size else {}
