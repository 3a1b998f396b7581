"""The validation split: N images of every class held out of the training split.

Rule (`data.validation_per_class = N`): the LAST N examples of each class, in
the order of the original training split. This is the rule of FRL's and WAT's
official codes (indices 4700-4999 of each CIFAR-10 class: the last 300);
CFA's code holds out the first 100 instead. It depends on nothing but the
labels, so the split is the same for every seed, method and long-tailing.

The split is taken BEFORE the long-tailed subsampling (data.imbalance): the
validation set stays balanced, like the test split, and the long-tailed
selection then draws from the remaining examples of each class (validation
rows are invisible to it). With N = 0 nothing is held out and the selection
is exactly the one without this module.

Validation examples keep their ids (rows of the original training split), so
per-example memories indexed by id (num_ids rows) are unaffected; they are
never in `train_ids`, never augmented.
"""
import numpy as np


def check(per_class):
  """The configured N as an int, or a one-line ValueError."""
  if (isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer))
      or per_class < 0):
    raise ValueError(f"data.validation_per_class must be an integer >= 0 "
                     f"(images of each class held out), got {per_class!r}")
  return int(per_class)


def validation_ids(labels, per_class, num_classes):
  """Sorted int64 ids of the last `per_class` examples of every class.

  Every class must keep at least one training example: a class with
  `per_class` images or fewer is refused with one line naming it.
  """
  per_class = check(per_class)
  labels = np.asarray(labels)
  if per_class == 0:
    return np.zeros(0, np.int64)
  counts = np.bincount(labels, minlength=num_classes)
  if counts.min() <= per_class:
    c = int(np.argmin(counts))  # the smallest class names the valid range
    raise ValueError(
        f"data.validation_per_class={per_class} leaves class {c} (of "
        f"{int(counts[c])} training images) without training data; valid: "
        f"0 <= data.validation_per_class < {int(counts.min())} (the smallest "
        f"class)")
  held = [np.flatnonzero(labels == c)[-per_class:] for c in range(num_classes)]
  return np.sort(np.concatenate(held)).astype(np.int64)


def without(labels, ids):
  """`labels` with the rows `ids` set to -1 (no class): what the long-tailed
  selection sees, so it draws from the remaining examples only."""
  masked = np.array(labels, copy=True)
  masked[np.asarray(ids, np.int64)] = -1
  return masked
