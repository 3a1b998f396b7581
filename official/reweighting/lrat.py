"""LRAT: locally reweighted adversarial training.

Gao, Liu, Zhou, Niu, Han, Cheng, "Local Reweighting for Adversarial
Training", arXiv 2106.15776 (2021). Only the abstract was readable here and
no official code was found (shared specs/methods.md: [abstract; formula
unverified]).

From the abstract: instance-reweighted AT (GAIRAT, MAIL) weights an example
by how safe it is under the ONE attack simulated in training, and loses
robustness to other attacks; safeness should be attack-dependent. LRAT pairs
each instance with its adversarial variants, reweights locally inside each
pair, and does no global reweighting (every pair keeps the same total
weight); an instance immune to the attacks is fitted itself, not skipped.
Claim: trained with an attack and tested on different attacks, LRAT beats
global reweighting and plain AT.

This library's reading (`form: local`, objective `at`), every choice an option:

  variants   a = 0: the objective's PGD-CE (the primary attack, term "adv");
             a = 1..: `variants`, default ("cw",): PGD-K on the CW margin loss
             (confidence 50), the same eps / step / K / random start (term
             "adv_cw"); "fgsm" is also available (term "adv_fgsm").
  safeness   measured per variant as s_ia ∈ (0, 1), the share the variant
             claims (low = safe): `safeness: gairat` (default) s_ia = (1 +
             tanh(λ + 5·(1 − 2κ_ia/K_a)))/2, GAIRAT's tanh weight of that
             attack's κ: near 1 when the attack breaks the instance at once,
             near 0 when the variant is safe (κ = K); `safeness: mail` s_ia =
             sigmoid(−slope·(PM_ia − bias)), MAIL's weight without its factor
             3, PM the probabilistic margin of the variant's training logits.
  weights    w_ia = s_ia / m over the m variants (primary included),
             w_i0 = 1 − Σ_a w_ia on the natural instance (term "nat" =
             CE(f(x_i), y_i), training mode):
             loss_i = w_i0·CE(x_i) + Σ_a w_ia·CE(x~_ia), loss = mean_i loss_i.
             Every pair sums to 1; nothing is normalised across instances.
             When every variant is safe, w_i0 = 1 − O(e^-12) ~ 1.
  burn-in    before `burn_in_epochs` (0-based): plain AT (w = 1 on "adv", 0 on
             the others), as GAIRAT. λ default −1. λ = +∞ is NOT plain AT here
             (s = 1: the variants share the weight equally, w_i0 = 0).

`form: pair_trades` (objective `trades`): the two-member pair of the same
group's GAIR-RST code (zjfheart/Geometry-aware-Instance-reweighted-
Adversarial-Training, GAIR_RST/losses.py `GAIR_trades_loss`) [code]:
{x~_PGD (TRADES' KL attack), x~_CW} with weights w and 1 − w on the KL term,

  w_i = (1 + tanh(λ + K/2 − κ_i))/2,   κ_i: correct KL-PGD iterates (count),
  loss = CE(f(x), y)
         + β·mean_i [w_i·KL(p(x)‖p(x~_PGD)) + (1 − w_i)·KL(p(x)‖p(x~_CW))].

The CW member is the term "kl_cw", which carries its β itself (a term a
method adds has coefficient 1). λ = +∞ gives w = 1: plain TRADES.
`safeness` and variants other than ("cw",) apply to the local form only.
GAIR-RST's defaults differ from this library's: λ = 0, and plain TRADES
(Λ = 100) for the first half of training.
The CW attack starts from the objective's start (TRADES: x + 0.001·N(0, 1)),
as GAIR-RST's `pgd_generate(category="trades")`.

Cost: every variant is one more PGD-K and one more training-mode forward per
step, and the local form adds the natural forward. During the burn-in, where
all of those have weight 0, the trainer skips them (`extra_passes_on`): a
burn-in step costs what a plain AT (or TRADES) step costs, and every step is
bit-identical to running them all along (tests/reweighting/test_lrat.py). With batch-norm networks the skipped training forwards no
longer feed the moving averages during the burn-in, as in plain AT. The κ
memory keeps each example's last measured κ; `kappa_mean_<variant>` logs 0
while the variant does not run.
"""
import numpy as np
import tensorflow as tf

from official.attacks import losses
from official.attacks import pgd
from official.modeling import objectives
from official.reweighting import base
from official.reweighting import gairat
from official.reweighting import mail

FORMS = ("local", "pair_trades")
SAFENESS = ("gairat", "mail")
VARIANTS = ("cw", "fgsm")
FORM_OBJECTIVE = {"local": "at", "pair_trades": "trades"}


def variant_spec(variant, config, confidence=50.0):
  """The training attack of one variant, from the config's training attack."""
  a = config.attack
  objective = objectives.get_objective(config.objective.name)
  start = (objective.random_start if a.random_start == "default"
           else a.random_start)
  if variant == "cw":
    return pgd.AttackSpec("lrat_pgd_cw", "cw", float(a.epsilon),
                          float(a.step_size), int(a.steps), start,
                          confidence=float(confidence))
  if variant == "fgsm":
    return pgd.fgsm(float(a.epsilon), name="lrat_fgsm")
  raise ValueError(f"unknown reweighting.variants entry '{variant}'; valid: "
                   f"{', '.join(VARIANTS)}")


def local_weights(safeness):
  """[B, m] safeness -> ([B] natural weight, [B, m] variant weights)."""
  s = tf.cast(safeness, tf.float32)
  w = s / tf.cast(tf.shape(s)[-1], tf.float32)
  return 1.0 - tf.reduce_sum(w, axis=-1), w


def pair_weight(kappa, steps, lam):
  """GAIR-RST's w = (1 + tanh(λ + K/2 − κ))/2, as sigmoid(2z)."""
  return tf.sigmoid(2.0 * (lam + steps / 2.0 - tf.cast(kappa, tf.float32)))


class LRAT(base.Method):
  """Weights inside each (instance, adversarial variants) pair."""
  name = "lrat"
  needs_natural = True

  def __init__(self, cfg, *, config, data):
    super().__init__(cfg, config=config, data=data)
    self.form = cfg.get("form", "local")
    self.safeness = cfg.get("safeness", "gairat")
    base.check_choice("reweighting.form", self.form, FORMS)
    base.check_choice("reweighting.safeness", self.safeness, SAFENESS)
    needed = FORM_OBJECTIVE[self.form]
    if config.objective.name != needed:
      raise ValueError(f"reweighting.form '{self.form}' needs objective.name "
                       f"'{needed}', got '{config.objective.name}'")
    self.kappa_stat = gairat.check_kappa(cfg.get("kappa", "count"))
    self.lam = float(cfg.get("lam", -1.0))
    self.burn_in = int(cfg.get("burn_in_epochs", 0))
    self.mail_bias = float(cfg.get("mail_bias", -0.5))
    self.mail_slope = float(cfg.get("mail_slope", 10.0))
    self.steps = int(config.attack.steps)
    self.variants = tuple(cfg.get("variants", ("cw",)))
    if len(set(self.variants)) != len(self.variants):
      raise ValueError(f"reweighting.variants has duplicates: {self.variants}")
    if self.form == "pair_trades" and self.variants != ("cw",):
      raise ValueError(f"reweighting.form 'pair_trades' pairs the KL attack "
                       f"with one CW attack: variants must be ('cw',), got "
                       f"{self.variants}")
    self.extra_attacks = tuple(
        variant_spec(v, config, float(cfg.get("cw_confidence", 50.0)))
        for v in self.variants)
    prefix = "adv" if self.form == "local" else "kl"
    self.variant_terms = tuple(f"{prefix}_{v}" for v in self.variants)
    self.extra_term_names = (("nat",) if self.form == "local" else ()) + (
        self.variant_terms)
    self.beta = float(config.objective.beta)
    kappas = ("kappa_mean",) + tuple(f"kappa_mean_{v}" for v in self.variants)
    if self.form == "local":
      self.metric_names = ("natural_weight_fraction",
                           "adversarial_weight_fraction") + kappas + (
                               "reweighting_on",)
    else:
      self.metric_names = ("pgd_weight_mean",) + kappas + ("reweighting_on",)

  def build_state(self):
    # The last κ of every example under each attack (primary first): per-epoch
    # histograms. NaN = not seen yet.
    self.kappa = base.PerExampleMemory(
        "lrat_kappa", self.data.num_ids, float("nan"),
        shape=(1 + len(self.variants),))
    return {"kappa": self.kappa}

  def _attacks(self, ctx):
    """Names of the member attacks, primary first, and their K."""
    names = (ctx.primary_attack,) + tuple(s.name for s in self.extra_attacks)
    steps = (self.steps,) + tuple(s.steps for s in self.extra_attacks)
    return names, steps

  def _kappas(self, ctx):
    names, _ = self._attacks(ctx)
    return [tf.cast(ctx.attack_stats[n][self.kappa_stat], tf.float32)
            for n in names]

  def _on(self, ctx):
    return ctx.epoch >= self.burn_in

  def extra_passes_epoch(self):
    # Burn-in: weight 0 on the variants and the natural term (plain AT).
    return self.burn_in

  def extra_terms(self, ctx):
    names, _ = self._attacks(ctx)
    variant_logits = [ctx.adversarial_logits[n] for n in names[1:]]
    if self.form == "pair_trades":
      return {t: self.beta * losses.kl_divergence(ctx.natural_logits, z)
              for t, z in zip(self.variant_terms, variant_logits)}
    terms = {"nat": losses.cross_entropy(ctx.natural_logits, ctx.labels)}
    for t, z in zip(self.variant_terms, variant_logits):
      terms[t] = losses.cross_entropy(z, ctx.labels)
    return terms

  def _safeness(self, ctx):
    """[B, m]: s_ia for the primary attack and every variant."""
    names, steps = self._attacks(ctx)
    if self.safeness == "mail":
      return tf.stack([mail.margin_weights(
          mail.probabilistic_margin(ctx.adversarial_logits[n], ctx.labels),
          self.mail_bias, self.mail_slope, scale=1.0) for n in names], -1)
    return tf.stack([gairat.geometry_weights(k, K, self.lam, "tanh")
                     for k, K in zip(self._kappas(ctx), steps)], -1)

  def weights(self, ctx):
    on = self._on(ctx)
    if self.form == "pair_trades":
      w = pair_weight(self._kappas(ctx)[0], self.steps, self.lam)
      return {"kl": tf.where(on, w, 1.0),
              self.variant_terms[0]: tf.where(on, 1.0 - w, 0.0)}
    natural, adversarial = local_weights(self._safeness(ctx))
    out = {"nat": tf.where(on, natural, 0.0),
           "adv": tf.where(on, adversarial[:, 0], 1.0)}
    for a, t in enumerate(self.variant_terms, start=1):
      out[t] = tf.where(on, adversarial[:, a], 0.0)
    return out

  def metrics(self, ctx, weights):
    kappas = self._kappas(ctx)
    on = self._on(ctx)
    if self.burn_in > 0:  # skipped variants: keep the last measured κ
      last = self.kappa.gather(ctx.ids)
      kappas = kappas[:1] + [tf.where(on, k, last[:, a])
                             for a, k in enumerate(kappas[1:], start=1)]
    self.kappa.update(ctx.ids, tf.stack(kappas, -1))
    n = float(ctx.global_batch_size)
    mean = lambda v: base.global_sum(tf.reduce_sum(v)) / n  # noqa: E731
    out = {"kappa_mean": mean(kappas[0]),
           "reweighting_on": tf.cast(on, tf.float32)}
    for v, k in zip(self.variants, kappas[1:]):
      out[f"kappa_mean_{v}"] = tf.where(on, mean(tf.where(on, k, 0.0)), 0.0)
    if self.form == "pair_trades":
      out["pgd_weight_mean"] = mean(weights["kl"])
      return out
    natural = base.global_sum(tf.reduce_sum(weights["nat"]))
    adversarial = base.global_sum(tf.add_n([
        tf.reduce_sum(weights[t]) for t in ("adv",) + self.variant_terms]))
    out["natural_weight_fraction"] = natural / (natural + adversarial)
    out["adversarial_weight_fraction"] = adversarial / (natural + adversarial)
    return out

  def epoch_summaries(self):
    values = self.kappa.numpy()[np.asarray(self.data.train_ids)]
    values = values[np.isfinite(values).all(axis=-1)]
    if not values.size:
      return {}
    names = ("primary",) + self.variants
    out = {}
    for a, name in enumerate(names):
      out[f"kappa/{name}"] = values[:, a]
      out[f"kappa_mean/{name}"] = values[:, a].mean()
    return out
