"""Accuracy against the test radius: the report `eps_curve` (any method).

For each radius eps of `eval.eps_curve` (default: `eval.eps_curve_points`
radii evenly spaced in [0, 2·eval.epsilon]), the accuracy under CE-PGD with
`eval.pgd_steps` steps (PGD-20), a uniform random start, `eval.restarts`
restarts and the step eval.pgd_step_size · eps / eval.epsilon: at the eval
radius this is the `pgd20` attack of eval.attacks, elsewhere its step scales
with the radius. eps = 0, always included, is the clean accuracy (no attack
is run). The curve uses the first `eval.eps_curve_max_examples` test examples
(default 1000; the smaller of it and eval.max_examples; 0 = no limit) to stay
affordable: it costs one PGD-20 evaluation per radius.

eval.json gets, under "eps_curve", {"epsilons": [...], "accuracy": [...],
"worst_class": [...], "clean_accuracy": a, "num_examples": n,
"train_epsilon": e, "eval_epsilon": e, "step_sizes": [...], "attack": {...}};
the same dict goes to DIR/eps_curve.json, and DIR/eps_curve.png plots
accuracy against eps with the training and eval radii marked. The radii are
checked when the report runs (after training): experiment.validate only checks
report names.
"""
import json
import os

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from official.attacks import pgd
from official.evaluation import robustness


def epsilons(eval_cfg):
  """The sorted test radii; raises a one-line ValueError on bad settings."""
  values = [float(e) for e in (eval_cfg.get("eps_curve", ()) or ())]
  if not values:
    points = int(eval_cfg.get("eps_curve_points", 9))
    if points < 2:
      raise ValueError(f"eval.eps_curve_points must be >= 2, got {points}")
    top = min(2.0 * float(eval_cfg.epsilon), 1.0)
    values = np.round(np.linspace(0.0, top, points), 12).tolist()
  for e in values:
    if not 0.0 <= e <= 1.0:
      raise ValueError(f"eval.eps_curve radii must be in [0, 1], got {e}")
  return sorted(set(values) | {0.0})  # 0: the clean accuracy, always


def example_limit(eval_cfg):
  limits = [int(eval_cfg.get(k, 0) or 0)
            for k in ("eps_curve_max_examples", "max_examples")]
  limits = [n for n in limits if n > 0]
  return min(limits) if limits else 0


def curve(logits_fn, dataset, eval_cfg, radii, num_classes, *, seed=0,
          jit_compile=False):
  """{radius: summary} (robustness.summarize) over the limited test set."""
  eval_eps = float(eval_cfg.epsilon)
  spec = pgd.AttackSpec("eps_curve", "ce", eval_eps,
                        float(eval_cfg.pgd_step_size), int(eval_cfg.pgd_steps),
                        "uniform", restarts=int(eval_cfg.restarts))
  attack = pgd.make_attack(logits_fn, spec, jit_compile, final_logits=False)
  step_per_eps = float(eval_cfg.pgd_step_size) / eval_eps

  def correct(x, labels):
    return tf.equal(tf.argmax(logits_fn(x), -1, output_type=tf.int32), labels)

  @tf.function
  def robust(images, labels, seed, eps):  # eps: a scalar tensor, one trace
    x, _ = attack(images, labels, seed, epsilon=eps,
                  step_size=eps * step_per_eps)
    return correct(x, labels)

  clean = tf.function(correct)
  limit = example_limit(eval_cfg)
  seen, labels_all = 0, []
  outcomes = {e: [] for e in radii}
  for index, batch in enumerate(dataset):
    if limit and seen >= limit:
      break
    take = limit - seen if limit else None
    images = tf.cast(batch["image"], tf.float32)[:take]
    labels = tf.cast(batch["label"], tf.int32)[:take]
    for k, eps in enumerate(radii):
      if eps == 0.0:
        out = clean(images, labels)
      else:
        batch_seed = tf.constant([int(seed) + 7919, index * 1000 + k], tf.int64)
        out = robust(images, labels, batch_seed, tf.constant(eps, tf.float32))
      outcomes[eps].append(out.numpy())
    labels_all.append(labels.numpy())
    seen += int(labels.shape[0])
  labels_all = np.concatenate(labels_all)
  tail = float(eval_cfg.get("tail_fraction", 0.3))
  return {e: robustness.summarize(np.concatenate(outcomes[e]), labels_all,
                                  num_classes, tail) for e in radii}, spec


def plot(result, path):
  fig = Figure(figsize=(5.0, 3.6))
  ax = fig.add_subplot()
  ax.plot(result["epsilons"], result["accuracy"], "o-", label="accuracy")
  ax.plot(result["epsilons"], result["worst_class"], "s--", alpha=0.6,
          label="worst class")
  marks = [(result["train_epsilon"], ":", "train ε"),
           (result["eval_epsilon"], "-.", "eval ε")]
  if marks[0][0] == marks[1][0]:
    marks = [(marks[0][0], ":", "train = eval ε")]
  for eps, style, name in marks:
    ax.axvline(eps, color="gray", linestyle=style, label=name)
  ax.set_ylim(0.0, 1.02)
  ax.set_xlabel("test ε (L∞)")
  ax.set_ylabel(f"PGD-{result['attack']['steps']} accuracy")
  ax.set_title(f"{result['num_examples']} test examples")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def report(ctx):
  eval_cfg = ctx.config.eval
  radii = epsilons(eval_cfg)
  summaries, spec = curve(ctx.logits_fn, ctx.data.test(), eval_cfg, radii,
                          ctx.data.num_classes, seed=ctx.seed,
                          jit_compile=ctx.jit_compile)
  attack = spec.to_dict()
  attack.update(epsilon="per point", step_size="eval.pgd_step_size * eps / "
                "eval.epsilon")
  out = {
      "epsilons": radii,
      "accuracy": [summaries[e]["accuracy"] for e in radii],
      "worst_class": [summaries[e]["worst_class"] for e in radii],
      "clean_accuracy": summaries[0.0]["accuracy"],
      "num_examples": summaries[radii[0]]["num_examples"],
      "train_epsilon": float(ctx.config.attack.epsilon),
      "eval_epsilon": float(eval_cfg.epsilon),
      "step_sizes": [float(eval_cfg.pgd_step_size) * e / float(eval_cfg.epsilon)
                     for e in radii],
      "attack": attack,
  }
  os.makedirs(ctx.workdir, exist_ok=True)
  with open(os.path.join(ctx.workdir, "eps_curve.json"), "w") as f:
    json.dump(out, f, indent=2)
  plot(out, os.path.join(ctx.workdir, "eps_curve.png"))
  return out
