"""Long-tailed training subsets, as built by LDAM-DRW and RoBal.

Pure numpy so that the counts and the selection can be checked without data.

ρ = n_max / n_min ("ratio"). Per-class counts:
  exp:  n_c = int(n_max · ρ^(−c/(C−1)))          (class 0 is the head)
  step: the first ⌊C/2⌋ classes keep n_max, the rest int(n_max / ρ).
Selection (LDAM-DRW `IMBALANCECIFAR10.gen_imbalanced_data`): one RandomState,
classes in order 0..C-1, shuffle each class's indices and keep the first n_c.
For CIFAR-10 exp this gives 20,431 / 13,996 / 12,406 examples for ρ = 10/50/100.
"""
import numpy as np

PROFILES = ("none", "exp", "step")


def check(profile, ratio):
  """Raises a one-line ValueError for an unknown profile or a ratio < 1."""
  if profile not in PROFILES:
    raise ValueError(f"unknown data.imbalance.profile {profile!r}; "
                     f"valid: {', '.join(PROFILES)}")
  # `not >=` also rejects NaN.
  if not isinstance(ratio, (int, float, np.number)) or not ratio >= 1:
    raise ValueError(f"data.imbalance.ratio must be a number >= 1 "
                     f"(n_max/n_min), got {ratio!r}")


def class_counts(profile, ratio, n_max, num_classes):
  """Training examples per class, int64 [num_classes]."""
  check(profile, ratio)
  if int(n_max) != n_max or n_max < 1:
    raise ValueError(f"data.imbalance.n_max must be a positive integer, "
                     f"got {n_max}")
  n_max, c = int(n_max), np.arange(num_classes)
  if profile == "none":
    counts = np.full(num_classes, n_max)
  elif profile == "exp":
    if num_classes < 2:
      raise ValueError("data.imbalance.profile 'exp' needs >= 2 classes")
    # Python floats and int() per class as in the reference code: a
    # vectorised float power could truncate one count differently.
    counts = [int(n_max * ratio**(-i / (num_classes - 1))) for i in c]
  else:  # step
    counts = np.where(c < num_classes // 2, n_max, int(n_max / ratio))
  return np.asarray(counts, np.int64)


def select_indices(labels, counts, seed):
  """Sorted indices of the first counts[c] shuffled examples of each class c."""
  labels = np.asarray(labels)
  rng = np.random.RandomState(seed)
  keep = []
  for c, n_c in enumerate(counts):
    idx = np.flatnonzero(labels == c)
    if len(idx) < n_c:
      raise ValueError(f"long-tail: class {c} has {len(idx)} examples, "
                       f"fewer than n_c={n_c}; lower data.imbalance.n_max")
    rng.shuffle(idx)
    keep.append(idx[:n_c])
  # Sorted so that the ids do not reveal the selection order; the training
  # order comes from the per-epoch shuffle anyway.
  return np.sort(np.concatenate(keep)).astype(np.int64)
