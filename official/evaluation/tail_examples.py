"""Accuracy on the hardest test examples: the report `tail_examples`.

RA-Tail-k of DONE (Sow et al., ICLR 2024) read per example instead of per
class: the k% test examples with the highest loss under a REFERENCE model,
k = eval.tail_fraction (0.3). The reference is a SavedModel with `serve`
(images -> logits), e.g. DIR/export of a plain AT run
(`eval.reference_export`); a fixed reference gives every compared method the
same subset. The ranking loss (`eval.reference_loss`) is the reference's CE on
its own PGD-20 example (`pgd20`, default) or on the clean image (`natural`).
On that subset the report gives the evaluated model's natural and PGD-20
accuracy (eval.pgd_* settings, its own random starts: not the draws of the
`pgd20` attack summary). The class-based RA-Tail (`tail` of every attack in
eval.json, robustness.summarize) stays the default metric.

eval.json gets {"reference_export", "reference_loss", "fraction",
"num_examples", "num_tail", "loss_threshold" (smallest ranking loss in the
subset), "natural": acc, "pgd20": acc, "attack": {...}}; TensorBoard gets
`eval/tail_examples/natural` and `.../pgd20`; DIR/tail_examples.npz holds the
test indices of the subset and every example's reference loss.
"""
import os

import numpy as np
import tensorflow as tf

from official.attacks import losses
from official.attacks import pgd
from official.evaluation import robustness

REFERENCE_LOSSES = ("pgd20", "natural")


def check(eval_cfg):
  """One-line ValueErrors for the report's settings (run before training)."""
  kind = eval_cfg.get("reference_loss", "pgd20")
  if kind not in REFERENCE_LOSSES:
    raise ValueError(f"unknown eval.reference_loss '{kind}'; valid: "
                     f"{', '.join(REFERENCE_LOSSES)}")
  path = eval_cfg.get("reference_export", "") or ""
  if not path:
    raise ValueError("report tail_examples needs eval.reference_export (a "
                     "SavedModel directory, e.g. RUN/export of a plain AT run)")
  if not tf.saved_model.contains_saved_model(path):
    raise ValueError(f"eval.reference_export: no SavedModel in {path}")


def hardest(losses_, fraction):
  """Sorted indices of the round(fraction·n) largest losses (at least 1);
  ties go to the lower index."""
  losses_ = np.asarray(losses_)
  k = min(max(1, int(round(fraction * losses_.size))), losses_.size)
  return np.sort(np.argsort(-losses_, kind="stable")[:k])


def per_example(logits_fn, reference_fn, dataset, eval_cfg, *, seed=0,
                jit_compile=False):
  """(reference loss, natural correct, PGD-20 correct), each [n] numpy."""
  spec = robustness.EVAL_ATTACKS["pgd20"](eval_cfg)
  attack = pgd.make_attack(logits_fn, spec, jit_compile, final_logits=False)
  by_reference = eval_cfg.get("reference_loss", "pgd20") == "pgd20"
  reference_attack = (pgd.make_attack(reference_fn, spec, jit_compile,
                                      final_logits=False)
                      if by_reference else None)

  def correct(x, labels):
    return tf.equal(tf.argmax(logits_fn(x), -1, output_type=tf.int32), labels)

  @tf.function
  def batch(images, labels, index):
    stream = tf.stack([tf.constant(int(seed) + 7919, tf.int64), index * 1000])
    x_ref = images
    if by_reference:
      x_ref, _ = reference_attack(images, labels, stream + [0, 501])
    loss = losses.cross_entropy(reference_fn(x_ref), labels)
    x_adv, _ = attack(images, labels, stream + [0, 500])
    return loss, correct(images, labels), correct(x_adv, labels)

  limit = int(eval_cfg.get("max_examples", 0) or 0)
  out, seen = [], 0
  for index, data in enumerate(dataset):
    if limit and seen >= limit:
      break
    labels = tf.cast(data["label"], tf.int32)
    out.append([v.numpy() for v in batch(tf.cast(data["image"], tf.float32),
                                         labels, tf.constant(index, tf.int64))])
    seen += int(labels.shape[0])
  return tuple(np.concatenate(parts)[:limit or None] for parts in zip(*out))


def report(ctx):
  eval_cfg = ctx.config.eval
  check(eval_cfg)
  path = eval_cfg.reference_export
  reference = tf.saved_model.load(path)
  loss, natural, robust = per_example(
      ctx.logits_fn, reference.serve, ctx.data.test(), eval_cfg,
      seed=ctx.seed, jit_compile=ctx.jit_compile)
  fraction = float(eval_cfg.get("tail_fraction", 0.3))
  tail = hardest(loss, fraction)
  out = {
      "reference_export": path,
      "reference_loss": eval_cfg.get("reference_loss", "pgd20"),
      "fraction": fraction,
      "num_examples": int(loss.size),
      "num_tail": int(tail.size),
      "loss_threshold": float(loss[tail].min()),
      "natural": float(natural[tail].mean()),
      "pgd20": float(robust[tail].mean()),
      "attack": robustness.EVAL_ATTACKS["pgd20"](eval_cfg).to_dict(),
  }
  os.makedirs(ctx.workdir, exist_ok=True)
  np.savez(os.path.join(ctx.workdir, "tail_examples.npz"), indices=tail,
           reference_loss=loss)
  writer = tf.summary.create_file_writer(os.path.join(ctx.workdir, "tb",
                                                      "eval"))
  with writer.as_default():
    for name in ("natural", "pgd20"):
      tf.summary.scalar(f"eval/tail_examples/{name}", out[name], step=0)
  writer.flush()
  return out
