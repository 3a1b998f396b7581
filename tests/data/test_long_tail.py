"""Long-tail counts (LDAM-DRW / RoBal numbers) and seeded per-class selection."""
import numpy as np
import pytest

from official.data import long_tail

CIFAR10_EXP100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_cifar10_exp_counts():
  np.testing.assert_array_equal(
      long_tail.class_counts("exp", 100, 5000, 10), CIFAR10_EXP100)
  totals = {r: long_tail.class_counts("exp", r, 5000, 10).sum()
            for r in (10, 50, 100)}
  assert totals == {10: 20431, 50: 13996, 100: 12406}


def test_cifar100_exp_counts():
  totals = {r: long_tail.class_counts("exp", r, 500, 100).sum()
            for r in (10, 50, 100)}
  assert totals == {10: 19573, 50: 12608, 100: 10847}
  counts = long_tail.class_counts("exp", 100, 500, 100)
  assert counts[0] == 500 and counts[-1] == 5
  assert counts.dtype == np.int64 and (np.diff(counts) <= 0).all()


def test_step_counts():
  # By hand: first floor(C/2) classes n_max, the rest int(n_max / ratio).
  np.testing.assert_array_equal(long_tail.class_counts("step", 100, 5000, 10),
                                [5000] * 5 + [50] * 5)
  assert long_tail.class_counts("step", 10, 5000, 10).sum() == 27500
  assert long_tail.class_counts("step", 10, 500, 100).sum() == 50 * 500 + 50 * 50
  # Odd C: floor(5/2) = 2 head classes; int(100 / 3) = 33.
  np.testing.assert_array_equal(long_tail.class_counts("step", 3, 100, 5),
                                [100, 100, 33, 33, 33])


def test_none_and_ratio_one_are_balanced():
  np.testing.assert_array_equal(long_tail.class_counts("none", 1, 7, 3), [7] * 3)
  np.testing.assert_array_equal(long_tail.class_counts("exp", 1, 7, 3), [7] * 3)


def _balanced_labels(per_class, num_classes, seed=123):
  labels = np.repeat(np.arange(num_classes), per_class)
  return np.random.RandomState(seed).permutation(labels)


@pytest.mark.parametrize("num_classes,per_class,ratio,total", [
    (10, 5000, 100, 12406), (10, 5000, 10, 20431), (100, 500, 50, 12608)])
def test_select_indices_matches_counts(num_classes, per_class, ratio, total):
  labels = _balanced_labels(per_class, num_classes)
  counts = long_tail.class_counts("exp", ratio, per_class, num_classes)
  ids = long_tail.select_indices(labels, counts, seed=0)
  assert len(ids) == total == len(np.unique(ids))
  assert (np.diff(ids) > 0).all()  # Sorted.
  np.testing.assert_array_equal(np.bincount(labels[ids], minlength=num_classes),
                                counts)


def test_select_indices_is_the_reference_construction():
  # LDAM-DRW: one RandomState(seed); per class in order: shuffle, keep first n.
  labels = _balanced_labels(20, 3)
  counts = [20, 7, 2]
  rng = np.random.RandomState(5)
  expected = []
  for c, n in enumerate(counts):
    idx = np.where(labels == c)[0]
    rng.shuffle(idx)
    expected.extend(idx[:n])
  np.testing.assert_array_equal(long_tail.select_indices(labels, counts, 5),
                                np.sort(expected))


def test_select_indices_seeded():
  labels = _balanced_labels(500, 10)
  counts = long_tail.class_counts("exp", 10, 500, 10)
  a = long_tail.select_indices(labels, counts, seed=0)
  b = long_tail.select_indices(labels, counts, seed=0)
  c = long_tail.select_indices(labels, counts, seed=1)
  np.testing.assert_array_equal(a, b)
  assert len(a) == len(c) and not np.array_equal(a, c)
  # Same per-class counts with the other seed, but other examples.
  np.testing.assert_array_equal(np.bincount(labels[c]), counts)
  assert len(np.intersect1d(a, c)) < len(a)


def test_too_few_examples():
  labels = np.array([0, 0, 0, 1, 1])
  with pytest.raises(ValueError, match=r"class 1 has 2 examples, fewer than "
                     r"n_c=3"):
    long_tail.select_indices(labels, [3, 3], seed=0)


@pytest.mark.parametrize("profile,ratio,match", [
    ("linear", 10, r"unknown data.imbalance.profile 'linear'; valid: none, "
                   r"exp, step"),
    ("exp", 0.5, r"data.imbalance.ratio must be a number >= 1.*got 0.5"),
    ("step", float("nan"), r"data.imbalance.ratio must be a number >= 1"),
    ("exp", "10", r"data.imbalance.ratio must be a number >= 1.*got '10'"),
])
def test_bad_profile_or_ratio(profile, ratio, match):
  with pytest.raises(ValueError, match=match):
    long_tail.class_counts(profile, ratio, 100, 10)


def test_bad_n_max():
  with pytest.raises(ValueError, match=r"data.imbalance.n_max must be a "
                     r"positive integer, got 0"):
    long_tail.class_counts("exp", 10, 0, 10)
