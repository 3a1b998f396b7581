"""Robust accuracy of a classifier under a set of named attacks.

`eval.json` maps each attack name to
  {"accuracy": fraction, "per_class": [fraction per class], "worst_class":
   min of per_class, "tail": mean accuracy of the weakest `tail_fraction` of
   classes (RA-Tail-30 with the default 0.3), "num_examples": n,
   "attack": the attack's settings (epsilon, steps, step_size, restarts, ...)}.
The attacks are looked up by name in EVAL_ATTACKS; a new one is one entry.
"""
import numpy as np
import tensorflow as tf
import keras

from official.attacks import pgd


def _pgd20(c):
  return pgd.AttackSpec("pgd20", "ce", c.epsilon, c.pgd_step_size, c.pgd_steps,
                        "uniform", restarts=c.restarts)


def _cw(c):
  return pgd.AttackSpec("cw", "cw", c.epsilon, c.cw_step_size, c.cw_steps,
                        "uniform", confidence=c.cw_confidence,
                        restarts=c.restarts)


# name -> eval config -> AttackSpec (None: no attack).
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
}


def attack_specs(eval_cfg):
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


def evaluate(logits_fn, dataset, eval_cfg, num_classes, *, seed=0,
             jit_compile=False, verbose=1):
  """Runs every attack of `eval_cfg.attacks` over `dataset`.

  logits_fn: images -> logits (training=False). dataset yields dicts with
  "image" and "label". Returns {attack name: summary} (see module docstring).
  """
  specs = attack_specs(eval_cfg)
  attacks = {name: pgd.make_attack(logits_fn, spec, jit_compile)
             for name, spec in specs.items() if spec is not None}

  @tf.function
  def batch_correct(images, labels, index):
    out = {}
    for name in specs:
      x = images
      if name in attacks:
        # (seed, batch, attack name): independent of the other attacks.
        seed = pgd.stateless_seed(seed_base, index, name)
        x, _ = attacks[name](images, labels, seed)
      out[name] = tf.equal(
          tf.argmax(logits_fn(x), -1, output_type=tf.int32), labels)
    return out

  seed_base = int(seed) + 7919  # eval noise independent of the training draws
  correct = {name: [] for name in specs}
  labels_all = []
  limit = int(eval_cfg.get("max_examples", 0) or 0)
  seen = 0
  progress = keras.utils.Progbar(None, verbose=verbose, unit_name="batch")
  for index, batch in enumerate(dataset):
    if limit and seen >= limit:
      break
    labels = tf.cast(batch["label"], tf.int32)
    out = batch_correct(tf.cast(batch["image"], tf.float32), labels,
                        tf.constant(index, tf.int64))
    for name in specs:
      correct[name].append(out[name].numpy())
    labels_all.append(labels.numpy())
    seen += int(labels.shape[0])
    progress.add(1)
  labels_all = np.concatenate(labels_all)[:limit or None]
  tail = float(eval_cfg.get("tail_fraction", 0.3))
  results = {}
  for name, spec in specs.items():
    summary = summarize(np.concatenate(correct[name])[:limit or None],
                        labels_all, num_classes, tail)
    summary["attack"] = spec.to_dict() if spec is not None else {}
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
