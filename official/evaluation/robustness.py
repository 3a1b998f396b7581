"""Robust accuracy of a classifier under a set of named attacks.

`eval.json` maps each attack name to
  {"accuracy": fraction, "per_class": [fraction per class], "worst_class":
   min of per_class, "tail": mean accuracy of the weakest `tail_fraction` of
   classes (RA-Tail-30 with the default 0.3), "num_examples": n,
   "attack": the attack's settings (epsilon, steps, step_size, restarts, ...)}.
The attacks are looked up by name in EVAL_ATTACKS; a new one is one entry.
The AutoAttack family (apgd-ce, apgd-dlr, apgd-t, fab-t, square, autoattack,
autoattack-fast) runs on the first eval.autoattack_max_examples examples
(its summary's `same_images` holds the per-batch attacks' accuracy on those
same examples, e.g. PGD-20 on the first 500);
its summaries add "clean_accuracy" (on those examples) and, for ensembles,
"members": {member: robust accuracy after it, cumulative, reference order}.

Every per-batch attack's summary also has "margin": statistics of the logit
margin z_y − max_{k≠y} z_k of the attacked points (`margin_summary`; Kanai
et al., arXiv 2207.10283: its distribution tells a two-peaked, plain-AT-like
model from one whose points sit at the boundary). With `keep_margins`, the
per-example margins are also returned (summary["margin_values"], numpy) for
the caller to store (evaluation/margins.py).

`pgd20-lsa` is PGD-20 on CE(α·z) for each α of eval.lsa_scales (Hitaj et al.,
arXiv 2103.01914; default 0.1 and 10): a point counts as robust only if it
survives every α; "per_scale" holds each α's accuracy.
"""
import dataclasses
import weakref

import numpy as np
import tensorflow as tf
import keras

from official.attacks import autoattack
from official.attacks import pgd


def _pgd20(c):
  return pgd.AttackSpec("pgd20", "ce", c.epsilon, c.pgd_step_size, c.pgd_steps,
                        "uniform", restarts=c.restarts)


def _cw(c):
  return pgd.AttackSpec("cw", "cw", c.epsilon, c.cw_step_size, c.cw_steps,
                        "uniform", confidence=c.cw_confidence,
                        restarts=c.restarts)


def _lsa(c):
  """PGD-20 on CE(α·z) per α of eval.lsa_scales: a tuple of AttackSpecs."""
  scales = tuple(float(a) for a in c.get("lsa_scales", (0.1, 10.0)))
  if not scales:
    raise ValueError("eval.lsa_scales is empty; give logit scales, e.g. (0.1, 10.0)")
  return tuple(pgd.AttackSpec(f"pgd20-lsa-x{a:g}", "ce", c.epsilon,
                              c.pgd_step_size, c.pgd_steps, "uniform",
                              restarts=c.restarts, logit_scale=a)
               for a in scales)


# name -> eval config -> AttackSpec (None: no attack; a tuple: a per-example
# worst case over several attacks).
EVAL_ATTACKS = {
    "natural": lambda c: None,
    "fgsm": lambda c: pgd.fgsm(c.epsilon),
    "pgd20": _pgd20,
    "cw": _cw,
    # The training attacks (AT / LRAT's CW / TRADES) at training settings:
    # K = 10, the training step (eval.train_step_size), their own starts.
    "pgd10": lambda c: pgd.AttackSpec("pgd10", "ce", c.epsilon,
                                      c.train_step_size, 10, "uniform",
                                      restarts=c.restarts),
    "cw10": lambda c: pgd.AttackSpec("cw10", "cw", c.epsilon,
                                     c.train_step_size, 10, "uniform",
                                     confidence=c.cw_confidence,
                                     restarts=c.restarts),
    "kl10": lambda c: pgd.AttackSpec("kl10", "kl", c.epsilon,
                                     c.train_step_size, 10, "gaussian",
                                     restarts=c.restarts),
    "pgd20-lsa": _lsa,
}


# The attack loss of an AutoAttack name, for reports that group by loss
# (cross_attack): apgd-ce attacks CE, seen by CE-trained runs; every other
# name counts as its own attack.
AUTOATTACK_LOSS = {"apgd-ce": "ce"}


@dataclasses.dataclass(frozen=True)
class AutoAttackSpec:
  """An AutoAttack-family evaluation: run at the dataset level, after the
  per-batch attacks, on the first eval.autoattack_max_examples examples."""
  name: str
  members: tuple
  epsilon: float
  loss: str
  norm: str = "linf"

  def to_dict(self):
    d = dataclasses.asdict(self)
    d["members"] = list(self.members)
    return d


def _autoattack(name):
  # members_of raises a one-line error for a member that is not registered.
  return lambda c: AutoAttackSpec(name, autoattack.members_of(name),
                                  float(c.epsilon),
                                  AUTOATTACK_LOSS.get(name, name))


# The AutoAttack family (attacks/autoattack.py): apgd-ce, apgd-dlr, apgd-t,
# fab-t, square, and the ensembles autoattack, autoattack-fast.
EVAL_ATTACKS.update({name: _autoattack(name) for name in autoattack.names()})


def attack_specs(eval_cfg):
  """{name: AttackSpec | AutoAttackSpec | None} for eval.attacks, in order."""
  specs = {}
  for name in eval_cfg.attacks:
    if name not in EVAL_ATTACKS:
      raise ValueError(f"unknown eval attack '{name}' in eval.attacks; valid: "
                       f"{', '.join(sorted(EVAL_ATTACKS))}")
    specs[name] = EVAL_ATTACKS[name](eval_cfg)
  return specs


def summarize(correct, labels, num_classes, tail_fraction=0.3):
  """Accuracy, per-class, worst-class and weakest-classes accuracy."""
  correct = np.asarray(correct, bool)
  labels = np.asarray(labels)
  per_class = []
  for c in range(num_classes):
    mask = labels == c
    per_class.append(float(correct[mask].mean()) if mask.any() else float("nan"))
  present = np.array([p for p in per_class if not np.isnan(p)])
  k = max(1, int(round(tail_fraction * len(present))))
  return {
      "accuracy": float(correct.mean()),
      "per_class": per_class,
      "worst_class": float(present.min()),
      "tail": float(np.sort(present)[:k].mean()),
      "tail_fraction": tail_fraction,
      "num_examples": int(correct.size),
  }


def logit_margins(logits, labels):
  """z_y − max_{k≠y} z_k per example (> 0: correct)."""
  onehot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
  true_logit = tf.reduce_sum(onehot * logits, -1)
  other = tf.reduce_max(logits - onehot * 1e30, -1)
  return true_logit - other


MARGIN_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def margin_summary(margins, bins=40):
  """Mean, quantiles, the fraction below 0 and within ±1 of 0, a histogram."""
  m = np.asarray(margins, np.float64)
  lo, hi = np.quantile(m, [0.005, 0.995])
  counts, edges = np.histogram(np.clip(m, lo, hi), bins=bins, range=(lo, hi))
  return {"mean": float(m.mean()),
          "quantiles": {f"{q:g}": float(v) for q, v in
                        zip(MARGIN_QUANTILES, np.quantile(m, MARGIN_QUANTILES))},
          "fraction_negative": float((m < 0).mean()),
          "fraction_within_1": float((np.abs(m) < 1).mean()),
          "histogram": {"edges": edges.tolist(), "counts": counts.tolist(),
                        "clipped_to": [float(lo), float(hi)]}}


def _limit(value):
  value = int(value or 0)
  return value if value > 0 else None


def _pad_rows(t, size):
  """t with its rows repeated cyclically up to `size` rows."""
  n = tf.shape(t)[0]
  return tf.gather(t, tf.range(size) % n)


def evaluate(logits_fn, dataset, eval_cfg, num_classes, *, seed=0,
             jit_compile=False, verbose=1, strategy=None, keep_margins=False):
  """Runs every attack of `eval_cfg.attacks` over `dataset`.

  logits_fn: images -> logits (training=False). dataset yields dicts with
  "image" and "label". Returns {attack name: summary} (see module docstring),
  in the order of eval.attacks.

  Per-batch attacks (EVAL_ATTACKS) run batch by batch on the first
  eval.max_examples examples. Every batch is padded to the size of the first
  (repeating its rows; the copies are dropped) so that XLA compiles one
  shape and replicas split it evenly. The AutoAttack family runs after the
  batch loop on the first eval.autoattack_max_examples collected images
  (0 = as eval.max_examples), each member on the points still robust, as
  the reference does. strategy: a tf.distribute strategy; each batch is cut
  into per-replica slices (strategy.run), with the same numbers as 1 device.
  """
  all_specs = attack_specs(eval_cfg)
  aa_specs = {n: s for n, s in all_specs.items()
              if isinstance(s, AutoAttackSpec)}
  aa_names = list(aa_specs)
  specs = {n: s for n, s in all_specs.items() if n not in aa_specs}
  seed_base = int(seed) + 7919  # eval noise independent of the training draws
  call = _batch_function(logits_fn, specs, seed_base, jit_compile, strategy)

  replicas = strategy.num_replicas_in_sync if strategy is not None else 1
  limit = _limit(eval_cfg.get("max_examples", 0))
  aa_limit = _limit(eval_cfg.get("autoattack_max_examples", 0)) or limit
  if not aa_names:
    aa_limit = 0
  # Read the dataset only as far as the limits of the paths in use.
  limits = ([limit] if specs else []) + ([aa_limit] if aa_names else [])
  needed = None if None in limits else max(limits, default=0)
  correct = {name: [] for name in specs}
  margins = {name: [] for name in specs}
  members = {name: {s.name: [] for s in spec} for name, spec in specs.items()
             if isinstance(spec, tuple)}
  labels_all, images_aa, labels_aa = [], [], []
  seen = size = 0
  progress = keras.utils.Progbar(
      _num_batches(dataset), verbose=verbose, unit_name="batch",
      stateful_metrics=list(specs))
  for index, batch in enumerate(dataset):
    if needed is not None and seen >= needed:
      break
    images = tf.cast(batch["image"], tf.float32)
    labels = tf.cast(batch["label"], tf.int32)
    real = int(labels.shape[0])
    if not size:  # the first batch fixes the shape
      size = -(-real // replicas) * replicas
      if needed is not None:
        progress.target = min(progress.target or np.inf, -(-needed // real))
    if aa_names and (aa_limit is None or seen < aa_limit):
      images_aa.append(images.numpy())
      labels_aa.append(labels.numpy())
    if specs and (limit is None or seen < limit):
      out = call((_pad_rows(images, size), _pad_rows(labels, size)),
                 (tf.constant(index, tf.int64),))
      for name in specs:
        correct[name].append(out[name]["correct"].numpy()[:real])
        margins[name].append(out[name]["margin"].numpy()[:real])
        for member in members.get(name, ()):
          members[name][member].append(
              out[name]["members"][member].numpy()[:real])
      labels_all.append(labels.numpy())
    seen += real
    running = [(name, float(np.concatenate(correct[name]).mean()))
               for name in specs if correct[name]]
    progress.add(1, values=running)
  tail = float(eval_cfg.get("tail_fraction", 0.3))
  results = {}
  if specs:
    labels_all = np.concatenate(labels_all)[:limit]
    for name, spec in specs.items():
      summary = summarize(np.concatenate(correct[name])[:limit], labels_all,
                          num_classes, tail)
      if isinstance(spec, tuple):
        summary["attack"] = {"members": [s.to_dict() for s in spec]}
        summary["per_scale"] = {
            f"{s.logit_scale:g}": float(np.concatenate(
                members[name][s.name])[:limit].mean()) for s in spec}
      else:
        summary["attack"] = spec.to_dict() if spec is not None else {}
      values = np.concatenate(margins[name])[:limit]
      summary["margin"] = margin_summary(values)
      if keep_margins:
        summary["margin_values"] = values
      results[name] = summary
  if aa_names:
    labels_aa = np.concatenate(labels_aa)[:aa_limit]
    results.update(_evaluate_autoattack(
        logits_fn, np.concatenate(images_aa)[:aa_limit], labels_aa, aa_specs,
        eval_cfg, num_classes, seed=seed_base, batch_size=size,
        jit_compile=jit_compile, strategy=strategy, verbose=verbose))
    # The per-batch attacks' accuracy on the same (first) images: a
    # PGD-20 − AutoAttack gap measured on one image set.
    n_aa = len(labels_aa)
    same = {name: float(np.concatenate(correct[name])[:n_aa].mean())
            for name in specs if sum(map(len, correct[name])) >= n_aa}
    for name in aa_names:
      if same:
        results[name]["same_images"] = same
  return {name: results[name] for name in eval_cfg.attacks}


# logits_fn -> {(specs, seed, xla, strategy): the traced per-batch function}.
# Evaluating the same model again (tools.evaluate calls evaluate once per
# batch; a benchmark repeats it) reuses the trace instead of retracing (and,
# with XLA, recompiling) every attack. Weak keys: a dropped model is freed.
_BATCH_FUNCTIONS = weakref.WeakKeyDictionary()


def _batch_function(logits_fn, specs, seed_base, jit_compile, strategy):
  """call((images, labels), (index,)) -> {name: correct [B]} for `specs`."""
  key = (tuple(specs.items()), seed_base, bool(jit_compile), id(strategy))
  try:
    cache = _BATCH_FUNCTIONS.setdefault(logits_fn, {})
  except TypeError:  # not weak-referenceable: no cache
    cache = {}
  if key in cache:
    return cache[key]
  # No statistics forward in the attacks: the batch's own forward follows.
  # A tuple spec (pgd20-lsa) is several attacks, each with its own seed.
  attacks = {name: [(s.name, pgd.make_attack(logits_fn, s, jit_compile,
                                             final_logits=False))
                    for s in (spec if isinstance(spec, tuple) else (spec,))]
             for name, spec in specs.items() if spec is not None}

  def judged(x, labels):
    # Correct = argmax is the label (ties go to the first index, as always).
    logits = tf.cast(logits_fn(x), tf.float32)
    return (tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels),
            logit_margins(logits, labels))

  def batch_correct(images, labels, index):
    out = {}
    for name in specs:
      if name not in attacks:
        correct, margin = judged(images, labels)
        out[name] = {"correct": correct, "margin": margin}
        continue
      results = {}
      for member, attack in attacks[name]:
        # (seed, batch, attack name): independent of the other attacks.
        x, _ = attack(images, labels,
                      pgd.stateless_seed(seed_base, index, member))
        results[member] = judged(x, labels)
      # The per-example worst case over the members.
      out[name] = {
          "correct": tf.reduce_all(tf.stack([c for c, _ in results.values()]), 0),
          "margin": tf.reduce_min(tf.stack([m for _, m in results.values()]), 0)}
      if isinstance(specs[name], tuple):
        out[name]["members"] = {m: c for m, (c, _) in results.items()}
    return out

  cache[key] = autoattack.replicated(batch_correct, strategy, function=True)
  return cache[key]


def _num_batches(dataset):
  n = int(dataset.cardinality())
  return n if n >= 0 else None


def _evaluate_autoattack(logits_fn, images, labels, specs, eval_cfg,
                         num_classes, *, seed, batch_size, jit_compile,
                         strategy, verbose):
  """Summaries of the AutoAttack specs on (images, labels)."""
  results = {}
  tail = float(eval_cfg.get("tail_fraction", 0.3))
  for name, spec in specs.items():
    members = spec.members
    bars = {}

    def progress(member, b, num_batches, accuracy, bars=bars):
      if member not in bars:  # one bar per member, with its robust accuracy
        print(f"{name}: {member} on the points still robust")
        bars[member] = keras.utils.Progbar(
            num_batches, verbose=verbose, unit_name="batch",
            stateful_metrics=["robust"])
      bars[member].update(b + 1, values=[("robust", accuracy)])

    result = autoattack.run(logits_fn, images, labels, spec.epsilon, members,
                            seed=seed, batch_size=batch_size,
                            jit_compile=jit_compile, strategy=strategy,
                            progress=progress if verbose else None)
    summary = summarize(result.robust, labels, num_classes, tail)
    summary["clean_accuracy"] = result.clean_accuracy
    summary["attack"] = dict(spec.to_dict(), max_examples=int(len(labels)))
    if name in autoattack.ENSEMBLES:
      summary["members"] = result.members
    results[name] = summary
  return results


def write_summaries(results, logdir):
  """Scalars per attack into TensorBoard (`eval/<attack>/<metric>`)."""
  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default():
    for name, r in results.items():
      if "per_class" not in r:  # a report's dict, not an attack summary
        continue
      for key in ("accuracy", "worst_class", "tail"):
        tf.summary.scalar(f"eval/{name}/{key}", r[key], step=0)
      for c, acc in enumerate(r["per_class"]):
        tf.summary.scalar(f"eval_per_class/{name}/class_{c}", acc, step=0)
  writer.flush()
