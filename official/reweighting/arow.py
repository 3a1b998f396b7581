"""ARoW: adversarial robust training with more regularisation on less robust samples.

Yang, Kong, Kim, "Improving adversarial robustness by putting more
regularizations on less robust samples", ICML 2023, arXiv 2206.03353.
Read in the official code, dyoony/ARoW @0039411 (`loss.py: ARoW_loss,
ARoW_CE_loss`, `main.py`) [code].

TRADES whose KL regulariser is weighted per example by how little the
adversarial example still believes the true class:

  loss = (1/B) Σ_i [ CE_α(f(x_i), y_i)
                     + λ · KL(p(x_i) ‖ p(x̃_i)) · (1 − p_{y_i}(x̃_i)) ]

with CE_α the label-smoothed cross-entropy (`objective.label_smoothing`
α = 0.2; `arow-ce`, the ablation, α = 0) and λ the objective's β. The weight
1 − p_y(x̃) is NOT detached: its gradient flows into the update, as in the
official code (the library's reweighting weights are constants, so ARoW
replaces the objective's `kl` term with the product instead of returning a
weight: `extra_terms`). The KL and p_y(x̃) are on the training-mode forward
of x̃, as `ARoW_loss` computes them; the official KL takes log(p + 1e-12),
the stable log-softmax here differs from it by < 1e-10 per class.

Where the code's numbers differ from the paper's: the official README says
the code's λ is twice the paper's ("for ARoW with λ = 3.5 in our paper, run
with λ = 7"); configs/arow.py uses the code's scale (β = 7, its README
command; the argparse default is 6). Other defaults (configs/arow.py): the
training attack is KL-PGD from a uniform start in [−ε, ε], step ε/4, 10
steps, BN frozen (`attacks/pgd.py: PGD_Linf`, criterion `kl`); SWA of the
epochs from the 51st (1-based) of 120, lr 0.1 ×0.1 at 60 and 100 (`--swa`).

Metrics: `weight_mean` / `weight_min` of 1 − p_y(x̃) over the global batch,
and its per-example histogram per epoch (`weight`).
"""
import tensorflow as tf

from official.attacks import losses
from official.reweighting import base
from official.reweighting import gairat


def robustness_weight(adv_logits, labels):
  """1 − p_y(x̃) per example (with gradient)."""
  probs = tf.nn.softmax(adv_logits, axis=-1)
  return 1.0 - tf.gather(probs, tf.cast(labels, tf.int32), axis=-1,
                         batch_dims=1)


class ARoW(base.Method):
  """TRADES with its KL term multiplied by the undetached 1 − p_y(x̃)."""
  name = "arow"
  metric_names = ("weight_mean", "weight_min")

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    if config.objective.name != "trades":
      raise ValueError("reweighting.name=arow weights TRADES' KL term: it "
                       "needs objective.name=trades, got "
                       f"{config.objective.name!r}")

  def build_state(self):
    # The last weight of every example: a histogram per epoch (NaN = unseen).
    self.memory = base.PerExampleMemory("arow_weight", self.data.num_ids,
                                        float("nan"))
    return {"weight": self.memory}

  def _weight(self, ctx):
    return robustness_weight(ctx.adversarial_logits[ctx.primary_attack],
                             ctx.labels)

  def extra_terms(self, ctx):
    kl = losses.kl_divergence(ctx.natural_logits,
                              ctx.adversarial_logits[ctx.primary_attack])
    return {"kl": kl * self._weight(ctx)}

  def metrics(self, ctx, weights):
    del weights
    w = tf.stop_gradient(self._weight(ctx))
    self.memory.update(ctx.ids, w)
    return {"weight_mean": base.global_sum(tf.reduce_sum(w))
                           / ctx.global_batch_size,
            "weight_min": tf.reduce_min(base.global_gather(w))}

  def epoch_summaries(self):
    values = gairat.visited(self.memory, self.data.train_ids)
    return {"weight": values} if values.size else {}
