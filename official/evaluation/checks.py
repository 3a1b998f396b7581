"""Sanity checks of a robustness evaluation (after AutoAttack's `checks.py`).

A robust accuracy is only as good as the attacks' view of the model. Croce &
Hein (ICML 2020, arXiv 2003.01690; `autoattack/checks.py` of fra31/auto-attack)
warn when that view is broken; these are the same checks, as functions that
return {"ok": bool, "value": number, "message": str} for the report:

  probabilities   serve's outputs look like a softmax (rows in [0, 1] summing
                  to 1): CE on them is not the loss the attacks assume.
  deterministic   two forwards of one batch differ (dropout or noise at
                  inference): one attack run then measures one random draw.
  gradients       the input gradient of the CE loss is zero or NaN on many
                  points (stop_gradient, quantisation, saturated softmax):
                  gradient attacks stall there, so their robustness is masked.
  square          the black-box Square breaks points the white-box attacks
                  left robust: the white-box attacks were not working.
  epsilon         robust accuracy rises with a larger epsilon (several radii).
  collapse        the model predicts one class for most images, far beyond
                  that class's share of the labels: a network that never
                  learned (or collapsed); its "robust accuracy" is that
                  class's share, not robustness. (Not in the reference.)

Differences from the reference: the gradient check flags a fraction of points
above `max_fraction` (the reference warns on any single point: one saturated
point of a confident, honest model would then be noise), and a forward that is
not connected to its input at all counts as zero gradient everywhere.
"""
import numpy as np
import tensorflow as tf


def _result(ok, value, message):
  return {"ok": bool(ok), "value": value, "message": message}


def probabilities(logits_fn, images, tolerance=1e-5):
  """Flags outputs whose rows are all in [0, 1] and sum to 1 (a softmax)."""
  out = np.asarray(logits_fn(tf.convert_to_tensor(images, tf.float32)),
                   np.float64)
  deviation = float(np.abs(out.sum(-1) - 1.0).max())
  looks = (out.min() > -tolerance and out.max() < 1 + tolerance
           and deviation < tolerance)
  message = ("serve's outputs look like probabilities (rows in [0, 1] summing "
             f"to 1, max |sum - 1| = {deviation:.1e}): export the logits, the "
             "attacks' losses assume them" if looks else
             "outputs are not probabilities")
  return _result(not looks, deviation, message)


def deterministic(logits_fn, images, tolerance=1e-4):
  """Flags a forward whose outputs differ between two calls on one batch.

  Compares the L2-normalised outputs (as the reference does), so the tolerance
  does not depend on the logits' scale.
  """
  x = tf.convert_to_tensor(images, tf.float32)
  first, second = (np.asarray(logits_fn(x), np.float64) for _ in range(2))
  normalise = lambda a: a / (np.linalg.norm(a, axis=-1, keepdims=True) + 1e-10)  # noqa: E731
  diff = float(np.linalg.norm(normalise(first) - normalise(second),
                              axis=-1).max())
  changed = int((first.argmax(-1) != second.argmax(-1)).sum())
  ok = diff <= tolerance and changed == 0
  message = ("the forward is not deterministic: two passes over one batch "
             f"differ (max normalised L2 distance {diff:.2e}, {changed} "
             "predictions changed); a randomised defence needs an attack "
             "that averages over its randomness (EOT)" if not ok else
             "the forward is deterministic")
  return _result(ok, diff, message)


def input_gradients(logits_fn, images, labels):
  """Per-example input gradient of the CE loss, [B, ...] (zeros if unconnected)."""
  x = tf.convert_to_tensor(images, tf.float32)
  labels = tf.convert_to_tensor(labels, tf.int32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels, logits_fn(x)))
  return tape.gradient(loss, x,
                       unconnected_gradients=tf.UnconnectedGradients.ZERO)


def gradients(logits_fn, images, labels, max_fraction=0.01):
  """Flags more than `max_fraction` of points with a zero or NaN input gradient."""
  grad = np.asarray(input_gradients(logits_fn, images, labels))
  grad = grad.reshape(len(grad), -1)
  bad = ~np.isfinite(grad).all(-1) | (np.abs(grad).sum(-1) == 0)
  fraction = float(bad.mean())
  ok = fraction <= max_fraction
  message = (f"{int(bad.sum())} of {len(bad)} points ({fraction:.1%}) have a "
             "zero or NaN input gradient: gradient-based attacks cannot move "
             "them, their robust accuracy may be masked (trust black-box "
             "square more)" if not ok else
             f"{int(bad.sum())} of {len(bad)} points with a zero or NaN input "
             "gradient")
  return _result(ok, fraction, message)


def _white_box(summary):
  """Robust accuracy left by the white-box part of an attack summary, or None.

  An ensemble's `members` are cumulative accuracies in run order: its white-box
  part ends before its first `square`.
  """
  members = summary.get("members")
  if not members:
    return summary["accuracy"]
  names = list(members)
  if "square" in names:
    names = names[:names.index("square")]
  return members[names[-1]] if names else None


def square(results, alpha=0.002):
  """Flags Square (black-box) breaking points the white-box attacks left robust.

  results: {attack name: summary} as `robustness.evaluate` returns. Within an
  ensemble, compares the cumulative accuracy after `square` with the one
  before it; across separate entries, the stand-alone `square` with the lowest
  white-box accuracy (every entry but natural and square). `alpha` (0.2%, the
  reference's) absorbs one or two points of noise.
  """
  drops = []
  for name, r in results.items():
    if not isinstance(r, dict) or "accuracy" not in r:
      continue
    members = r.get("members") or {}
    if "square" in members:
      before = _white_box(r)
      if before is not None:
        drops.append((before - members["square"], f"in {name}"))
  white = [a for n, r in results.items()
           if isinstance(r, dict) and "accuracy" in r
           and n not in ("natural", "square")
           for a in [_white_box(r)] if a is not None]
  if "square" in results and white:
    drops.append((min(white) - results["square"]["accuracy"],
                  "against the white-box attacks"))
  if not drops:
    return _result(True, None, "no square result to compare")
  drop, where = max(drops)
  ok = drop <= alpha
  message = (f"square (black-box) lowers the robust accuracy by {drop:.2%} "
             f"{where}: the white-box attacks missed those points, so the "
             "evaluation is unreliable (gradient masking?); run square with "
             "more queries or an adaptive attack" if not ok else
             f"square finds no more than the white-box attacks ({drop:+.2%})")
  return _result(ok, float(drop), message)


def epsilon(epsilons, accuracy, alpha=0.002, name="robust accuracy"):
  """Flags `accuracy` rising by more than `alpha` from a radius to a larger one.

  A stronger threat model can only break more points; a rise means the attack
  is failing at the larger radius (or its randomness dominates).
  """
  order = np.argsort(epsilons)
  eps = np.asarray(epsilons, float)[order]
  acc = np.asarray(accuracy, float)[order]
  if len(acc) < 2:
    return _result(True, None, "one radius: nothing to compare")
  rises = acc[1:] - np.minimum.accumulate(acc[:-1])
  worst = int(np.argmax(rises))
  rise = float(rises[worst])
  ok = rise <= alpha
  message = (f"{name} rises by {rise:.2%} at epsilon {eps[worst + 1]:g} over "
             "a smaller radius: the attack fails at the larger radius"
             if not ok else f"{name} does not rise with epsilon")
  return _result(ok, rise, message)


def _effective_classes(classes, num_classes):
  """exp(entropy) of the class distribution: K when uniform over K, 1 for one."""
  p = np.bincount(classes, minlength=num_classes) / len(classes)
  p = p[p > 0]
  return float(np.exp(-(p * np.log(p)).sum()))


def collapse(logits_fn, images, labels, max_share=0.9, min_excess=0.5,
             min_ratio=0.3):
  """Flags predictions concentrated on one or a few classes the labels are not:

  one class takes at least `max_share` of the predictions and at least
  `min_excess` more than its share of the labels, or the predictions'
  effective number of classes (exp of their entropy) is below `min_ratio`
  times the labels'. The label terms keep a test set that really is mostly
  one class (and a model right about it) from firing; a long-tailed model
  that rarely predicts its tail classes keeps more than half the effective
  classes of a balanced test set.
  """
  logits = np.asarray(logits_fn(tf.convert_to_tensor(images, tf.float32)))
  num_classes = logits.shape[-1]
  predicted = logits.argmax(-1)
  labels = np.asarray(labels).reshape(-1)
  counts = np.bincount(predicted, minlength=num_classes)
  top = int(counts.argmax())
  share = float(counts[top] / len(predicted))
  label_share = float((labels == top).mean())
  effective = _effective_classes(predicted, num_classes)
  label_effective = _effective_classes(labels, num_classes)
  ok = not ((share >= max_share and share - label_share >= min_excess)
            or effective < min_ratio * label_effective)
  message = (f"the model predicts class {top} for {share:.0%} of the images "
             f"(its share of the labels: {label_share:.0%}; effective classes "
             f"predicted {effective:.1f} of the labels' {label_effective:.1f}): "
             "a collapsed network; its robust accuracies are those classes' "
             "share, not robustness" if not ok else
             f"predictions are not collapsed (largest class share {share:.0%}, "
             f"effective classes {effective:.1f} of {label_effective:.1f})")
  return _result(ok, share, message)


def model_checks(logits_fn, images, labels, max_fraction=0.01):
  """The checks that need the model: {name: result} on one batch."""
  return {
      "probabilities": probabilities(logits_fn, images),
      "deterministic": deterministic(logits_fn, images),
      "gradients": gradients(logits_fn, images, labels, max_fraction),
      "collapse": collapse(logits_fn, images, labels),
  }
