"""Head / tail accuracy and a per-class bar chart: the report `groups`.

Classes are grouped by their TRAINING count (DataBundle.class_counts): the
head is the `eval.head_fraction` (default 0.5) of classes with the largest
counts (ties by class index), the tail the rest. A group's accuracy is the
mean of its classes' accuracies (the test splits are balanced, so this is
also the accuracy over the group's test examples).

eval.json gets {"head_classes": [...], "tail_classes": [...],
"head_fraction": f, "class_counts": [...], "<attack>": {"head": acc,
"tail": acc}} for every attack of eval.attacks; TensorBoard gets
`eval/<attack>/head` and `eval/<attack>/tail`; DIR/per_class.png shows clean
and PGD-20 accuracy per class with the training counts under the bars.
"""
import os

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

PLOTTED = ("natural", "pgd20")  # the bars of the chart, when evaluated


def split_classes(class_counts, head_fraction=0.5):
  """(head, tail): sorted class lists; head = the most frequent classes."""
  counts = np.asarray(class_counts)
  if not 0.0 < head_fraction < 1.0:
    raise ValueError(f"eval.head_fraction must be in (0, 1), got "
                     f"{head_fraction}")
  num_head = min(max(1, int(round(head_fraction * len(counts)))),
                 len(counts) - 1)
  order = np.argsort(-counts, kind="stable")
  return sorted(order[:num_head].tolist()), sorted(order[num_head:].tolist())


def group_accuracy(per_class, classes):
  values = np.asarray(per_class, np.float64)[classes]
  values = values[~np.isnan(values)]
  return float(values.mean()) if values.size else float("nan")


def plot_per_class(results, class_counts, tail, path):
  """Bars per class for the PLOTTED attacks present in results."""
  names = [n for n in PLOTTED if n in results] or [
      n for n, r in results.items() if "per_class" in r][:2]
  num_classes = len(class_counts)
  fig = Figure(figsize=(max(6.0, 0.6 * num_classes), 4.0))
  ax = fig.add_subplot()
  width = 0.8 / max(1, len(names))
  x = np.arange(num_classes)
  for k, name in enumerate(names):
    ax.bar(x + (k - (len(names) - 1) / 2) * width, results[name]["per_class"],
           width, label=name)
  labels = [f"{c}{'*' if c in tail else ''}\nn={n}"
            for c, n in enumerate(class_counts)]
  ax.set_xticks(x, labels, fontsize=8 if num_classes <= 20 else 5)
  ax.set_ylim(0.0, 1.12)  # room for the legend above accuracy 1
  ax.set_ylabel("test accuracy")
  ax.set_xlabel("class (training count n; * = tail)")
  ax.legend(loc="upper right", ncol=len(names))
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def report(ctx):
  counts = [int(n) for n in ctx.data.class_counts]
  fraction = float(ctx.config.eval.get("head_fraction", 0.5))
  head, tail = split_classes(counts, fraction)
  attacks = {n: r for n, r in ctx.results.items() if "per_class" in r}
  out = {"head_classes": head, "tail_classes": tail, "head_fraction": fraction,
         "class_counts": counts}
  for name, r in attacks.items():
    out[name] = {"head": group_accuracy(r["per_class"], head),
                 "tail": group_accuracy(r["per_class"], tail)}
  os.makedirs(ctx.workdir, exist_ok=True)
  plot_per_class(attacks, counts, tail, os.path.join(ctx.workdir,
                                                     "per_class.png"))
  writer = tf.summary.create_file_writer(os.path.join(ctx.workdir, "tb",
                                                      "eval"))
  with writer.as_default():
    for name in attacks:
      for group in ("head", "tail"):
        tf.summary.scalar(f"eval/{name}/{group}", out[name][group], step=0)
  writer.flush()
  return out
