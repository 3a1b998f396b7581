"""The validation split: the last N of each class by hand, taken before the
long-tailed selection (unchanged at N = 0), ids kept, never trained on, not
augmented, in data.json; too large an N is one error line."""
import types

import ml_collections
import numpy as np
import pytest

from configs.common import MNIST10K
from official.core import workdir as workdir_lib
from official.data import holdout
from official.data import long_tail
from official.data import registry


def test_last_n_of_each_class_by_hand():
  labels = np.array([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
  # class 0: rows 0 2 5 9; class 1: 1 4 8; class 2: 3 6 7.
  np.testing.assert_array_equal(holdout.validation_ids(labels, 1, 3),
                                [7, 8, 9])
  np.testing.assert_array_equal(holdout.validation_ids(labels, 2, 3),
                                [4, 5, 6, 7, 8, 9])
  assert holdout.validation_ids(labels, 0, 3).size == 0
  np.testing.assert_array_equal(holdout.without(labels, [7, 8, 9]),
                                [0, 1, 0, 2, 1, 0, 2, -1, -1, -1])


@pytest.mark.parametrize("n,message", [
    (3, r"data.validation_per_class=3 leaves class 1 \(of 3 training images\) "
        r"without training data; valid: 0 <= data.validation_per_class < 3"),
    (-1, r"data.validation_per_class must be an integer >= 0 .*got -1"),
    (1.5, r"data.validation_per_class must be an integer >= 0 .*got 1.5"),
])
def test_bad_sizes_are_one_line_errors(n, message):
  labels = np.array([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
  with pytest.raises(ValueError, match=message):
    holdout.validation_ids(labels, n, 3)


def _load(**kw):
  return registry.load(ml_collections.ConfigDict(kw), batch_size=64, seed=3)


def test_digits_split_ids_counts_and_pipeline():
  data = _load(name="digits", augment="crop_flip", validation_per_class=20)
  y = data.splits.y_train
  assert data.num_ids == 1437 and data.num_train == 1437 - 200
  np.testing.assert_array_equal(data.validation_counts, [20] * 10)
  assert not np.intersect1d(data.train_ids, data.validation_ids).size
  for c in range(10):  # the last 20 rows of each class
    np.testing.assert_array_equal(
        np.sort(data.validation_ids[y[data.validation_ids] == c]),
        np.flatnonzero(y == c)[-20:])
  # Every validation row, in id order, unaugmented (crop_flip is on), with
  # its original id; training batches never show one.
  batches = list(data.validation())
  ids = np.concatenate([b["id"].numpy() for b in batches])
  np.testing.assert_array_equal(ids, data.validation_ids)
  images = np.concatenate([b["image"].numpy() for b in batches])
  np.testing.assert_allclose(images, data.splits.x_train[ids] / 16.0)
  trained = np.concatenate([b["id"].numpy() for b in data.train(0, 2)])
  assert not np.intersect1d(trained, data.validation_ids).size
  # data.json: the validation counts and hash (absent without a split).
  fingerprint = workdir_lib.data_fingerprint(data)
  assert fingerprint["validation_counts"] == [20] * 10
  assert len(fingerprint["validation_sha256"]) == 64
  plain = _load(name="digits")
  assert "validation_counts" not in workdir_lib.data_fingerprint(plain)
  with pytest.raises(ValueError, match="no validation split"):
    plain.validation()


def test_long_tail_selection_unchanged_at_zero_and_drawn_from_the_rest():
  lt = dict(name="npz", path=MNIST10K,
            imbalance=dict(profile="exp", ratio=10.0, n_max=600, seed=0))
  before = _load(**lt)  # no key at all: the selection as it always was
  zero = _load(validation_per_class=0, **lt)
  np.testing.assert_array_equal(before.train_ids, zero.train_ids)
  y = before.splits.y_train
  np.testing.assert_array_equal(
      before.train_ids,
      long_tail.select_indices(y, long_tail.class_counts("exp", 10.0, 600, 10),
                               0))
  held = _load(validation_per_class=50, **lt)
  # Balanced validation, the same long-tailed counts, no overlap.
  np.testing.assert_array_equal(held.validation_counts, [50] * 10)
  np.testing.assert_array_equal(held.class_counts, before.class_counts)
  assert not np.intersect1d(held.train_ids, held.validation_ids).size
  masked = y.copy()
  masked[held.validation_ids] = -1
  np.testing.assert_array_equal(
      held.train_ids, long_tail.select_indices(masked, held.class_counts, 0))


def test_fingerprint_check_refuses_another_validation_split(tmp_path):
  splits = types.SimpleNamespace(x_train=np.arange(8, dtype=np.uint8).reshape(
      8, 1, 1, 1), y_train=np.arange(8) % 2)

  def bundle(held):
    return types.SimpleNamespace(
        train_ids=np.setdiff1d(np.arange(8), held), splits=splits,
        num_train=8 - len(held), num_classes=2, class_counts=np.array([3, 3]),
        image_shape=(1, 1, 1), validation_ids=np.asarray(held),
        validation_counts=np.array([1, 1]))

  a, b = (workdir_lib.data_fingerprint(bundle(h)) for h in ([6, 7], [4, 5]))
  assert a["validation_counts"] == b["validation_counts"] == [1, 1]
  assert a["validation_sha256"] != b["validation_sha256"]
  (tmp_path / "checkpoints").mkdir()
  (tmp_path / "checkpoints" / "ckpt-1.index").write_text("")
  import json
  (tmp_path / "data.json").write_text(json.dumps(a))
  with pytest.raises(ValueError, match=r"trained on other data \(train_sha256, "
                     r"validation_sha256 differ"):
    workdir_lib.check_identity(str(tmp_path), {}, b)
