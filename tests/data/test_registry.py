"""load() and the DataBundle pipelines: ids, epochs, resumption, errors."""
import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from official.data import long_tail
from official.data import registry

from configs.common import MNIST10K  # ../shared/data/mnist10k.npz beside the repo


def _cfg(**kw):
  return ml_collections.ConfigDict(kw)


def _batches(ds):
  return [{k: v.numpy() for k, v in b.items()} for b in ds]


@pytest.fixture(scope="module")
def digits():
  return registry.load(_cfg(name="digits", augment="crop_flip"),
                       batch_size=100, seed=7)


@pytest.fixture(scope="module")
def mnist_lt():
  """mnist10k, long-tailed (exp, ratio 10, n_max 600), no augmentation."""
  cfg = _cfg(name="npz", path=MNIST10K,
             imbalance=dict(profile="exp", ratio=10.0, n_max=600, seed=0))
  return registry.load(cfg, batch_size=64, seed=3)


def test_digits_bundle(digits):
  assert digits.num_classes == 10 and digits.image_shape == (8, 8, 1)
  assert digits.num_train == digits.num_ids == 1437
  assert digits.steps_per_epoch == 14 and digits.augment == "crop_flip"
  np.testing.assert_array_equal(digits.train_ids, np.arange(1437))
  assert digits.class_counts.dtype == np.int64
  assert digits.class_counts.sum() == 1437


def test_train_batches_and_epochs(digits):
  ds = digits.train(0, 3)
  assert len(ds) == 42
  batches = _batches(ds)
  assert len(batches) == 42
  for b in batches:
    assert b["image"].shape == (100, 8, 8, 1) and b["image"].dtype == np.float32
    assert b["label"].dtype == np.int32 and b["id"].dtype == np.int32
    assert 0 <= b["image"].min() and b["image"].max() <= 1
    np.testing.assert_array_equal(b["label"], digits.splits.y_train[b["id"]])
  orders = [np.concatenate([b["id"] for b in batches[e * 14:(e + 1) * 14]])
            for e in range(3)]
  for order in orders:  # Each id at most once; 37 dropped per epoch.
    assert len(order) == 1400 == len(np.unique(order))
  assert not np.array_equal(orders[0], orders[1])
  assert len(_batches(digits.train(2, 2))) == 0


def test_resume_sees_the_same_batches(digits):
  full = _batches(digits.train(0, 3))[28:]
  resumed = _batches(digits.train(2, 3))
  assert len(resumed) == 14
  for a, b in zip(full, resumed):
    np.testing.assert_array_equal(a["id"], b["id"])
    np.testing.assert_array_equal(a["image"], b["image"])  # Same augmentation.


def test_seed_changes_the_order():
  cfg = _cfg(name="digits", augment="none")
  a = registry.load(cfg, batch_size=100, seed=0)
  b = registry.load(cfg, batch_size=100, seed=1)
  ids = lambda d: next(iter(d.train(0, 1)))["id"].numpy()
  np.testing.assert_array_equal(ids(a), ids(a))
  assert not np.array_equal(ids(a), ids(b))


def test_augmentation_changes_images_but_not_labels(digits):
  plain = registry.load(_cfg(name="digits", augment="none"),
                        batch_size=100, seed=7)
  aug = next(iter(digits.train(0, 1)))
  raw = next(iter(plain.train(0, 1)))
  np.testing.assert_array_equal(aug["id"], raw["id"])  # Same order, same seed.
  np.testing.assert_array_equal(raw["image"],
                                digits.splits.x_train[raw["id"]] / 16)
  changed = np.any(aug["image"] != raw["image"], axis=(1, 2, 3))
  # 162 (offset, flip) outcomes, one of them the identity: nearly all change.
  assert changed.mean() > 0.9


def test_default_augment_table():
  bundle = registry.load(_cfg(name="digits", augment="default"),
                         batch_size=10, seed=0)
  assert bundle.augment == "none"
  assert registry.DEFAULT_AUGMENT["cifar10"] == "crop_flip"
  assert registry.DEFAULT_AUGMENT["svhn_cropped"] == "crop"


def test_test_split(digits):
  batches = _batches(digits.test())
  assert [len(b["id"]) for b in batches] == [360]  # eval_batch_size 500.
  bundle = registry.load(_cfg(name="digits", eval_batch_size=100),
                         batch_size=10, seed=0)
  batches = _batches(bundle.test())
  assert [len(b["id"]) for b in batches] == [100, 100, 100, 60]
  ids = np.concatenate([b["id"] for b in batches])
  np.testing.assert_array_equal(ids, np.arange(360))
  images = np.concatenate([b["image"] for b in batches])
  np.testing.assert_array_equal(images, bundle.splits.x_test / 16)  # No aug.
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]),
                                bundle.splits.y_test)


def test_long_tail_npz_ids_are_original_rows(mnist_lt):
  counts = long_tail.class_counts("exp", 10.0, 600, 10)
  np.testing.assert_array_equal(mnist_lt.class_counts, counts)
  assert mnist_lt.num_train == counts.sum() == len(mnist_lt.train_ids)
  assert mnist_lt.num_ids == 8000
  assert mnist_lt.steps_per_epoch == counts.sum() // 64
  with np.load(MNIST10K) as f:
    x, y = f["x_train"], f["y_train"]
  np.testing.assert_array_equal(np.bincount(y[mnist_lt.train_ids]), counts)
  batch = next(iter(mnist_lt.train(4, 5)))
  assert set(batch["id"].numpy()) <= set(mnist_lt.train_ids)
  np.testing.assert_array_equal(batch["image"][..., 0],
                                x[batch["id"]] / np.float32(255))
  np.testing.assert_array_equal(batch["label"], y[batch["id"]])
  # Test split stays whole and balanced-as-given.
  assert sum(len(b["id"]) for b in mnist_lt.test()) == 2000


def test_long_tail_seed():
  def ids(seed):
    cfg = _cfg(name="npz", path=MNIST10K, imbalance=dict(
        profile="step", ratio=5.0, n_max=500, seed=seed))
    return registry.load(cfg, batch_size=64, seed=0).train_ids
  a, b = ids(0), ids(1)
  assert len(a) == len(b) == 5 * 500 + 5 * 100
  np.testing.assert_array_equal(a, ids(0))
  assert not np.array_equal(a, b)


def test_npz_bundle():
  bundle = registry.load(_cfg(name="npz", path=MNIST10K), batch_size=128,
                         seed=0)
  assert (bundle.num_train, bundle.image_shape) == (8000, (28, 28, 1))
  assert bundle.steps_per_epoch == 62 and bundle.augment == "none"


@pytest.mark.parametrize("name,shape,num_classes,augment", [
    ("cifar10", (32, 32, 3), 10, "crop_flip"),
    ("cifar100", (32, 32, 3), 100, "crop_flip"),
    ("svhn_cropped", (32, 32, 3), 10, "crop"),
    ("mnist", (28, 28, 1), 10, "none")])
def test_tfds_bundle_mocked(name, shape, num_classes, augment):
  with tfds.testing.mock_data(num_examples=40):
    bundle = registry.load(_cfg(name=name), batch_size=16, seed=0)
  assert (bundle.num_classes, bundle.image_shape) == (num_classes, shape)
  assert bundle.augment == augment and bundle.steps_per_epoch == 2
  batch = next(iter(bundle.train(0, 1)))
  assert batch["image"].shape == (16,) + shape
  assert 0 <= batch["image"].numpy().min() <= batch["image"].numpy().max() <= 1
  last = _batches(bundle.test())[-1]
  assert last["image"].shape == (40,) + shape


def test_tfds_long_tail_mocked():
  # Mock labels are random: many examples and a small n_max make every class
  # large enough.
  imbalance = dict(profile="exp", ratio=10.0, n_max=30, seed=0)
  counts = long_tail.class_counts("exp", 10.0, 30, 10)
  with tfds.testing.mock_data(num_examples=1000):
    bundle = registry.load(_cfg(name="cifar10", imbalance=imbalance),
                           batch_size=int(counts.sum()), seed=0)
  np.testing.assert_array_equal(bundle.class_counts, counts)
  assert bundle.num_ids == 1000 and bundle.steps_per_epoch == 1
  batch = next(iter(bundle.train(0, 1)))
  np.testing.assert_array_equal(np.sort(batch["id"]), bundle.train_ids)
  np.testing.assert_array_equal(np.bincount(batch["label"], minlength=10),
                                counts)


def test_keras_fit_consumes_epochs_in_order(digits):
  """fit(initial_epoch=e) on train(e, n) sees the uninterrupted run's batches."""
  seen = []

  class Recorder(keras.Model):

    def __init__(self):
      super().__init__()
      self.dense = keras.layers.Dense(10)

    def call(self, x):
      return self.dense(keras.ops.reshape(x, (-1, 64)))

    def train_step(self, data):
      seen.append(data["id"].numpy())
      self(data["image"])
      return {"steps": tf.constant(1.0)}

  model = Recorder()
  model.compile(optimizer="sgd", run_eagerly=True)
  model.fit(digits.train(1, 3), epochs=3, initial_epoch=1, shuffle=False,
            steps_per_epoch=digits.steps_per_epoch, verbose=0)
  expected = [b["id"] for b in _batches(digits.train(0, 3))][14:]
  assert len(seen) == len(expected) == 28
  for a, b in zip(seen, expected):
    np.testing.assert_array_equal(a, b)


def test_mirrored_strategy_splits_batches(digits):
  strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
  batch = next(iter(strategy.experimental_distribute_dataset(
      digits.train(0, 1))))
  shards = strategy.experimental_local_results(batch["id"])
  assert [len(s) for s in shards] == [50, 50]
  first = next(iter(digits.train(0, 1)))["id"].numpy()
  np.testing.assert_array_equal(np.concatenate(shards), first)


@pytest.mark.parametrize("cfg,batch_size,match", [
    (dict(name="imagenet"), 10, r"^unknown data.name 'imagenet'; valid: "
                                r"cifar10, cifar100, digits, mnist, npz, "
                                r"svhn_cropped$"),
    (dict(augment="rotate"), 10, r"^unknown data.augment 'rotate'; valid: "
                                 r"default, none, crop, crop_flip, randaugment, "
                                 r"autoaugment$"),
    (dict(imbalance=dict(profile="zipf", ratio=10.0)), 10,
     r"^unknown data.imbalance.profile 'zipf'; valid: none, exp, step$"),
    (dict(imbalance=dict(profile="exp", ratio=0.1)), 10,
     r"^data.imbalance.ratio must be a number >= 1 \(n_max/n_min\), got 0.1$"),
    (dict(imbalance=dict(profile="exp", ratio=10.0, n_max=1000)), 10,
     r"^long-tail: class 0 has 142 examples, fewer than n_c=1000"),
    (dict(), 1438, r"^batch_size 1438 is larger than num_train 1437 of "
                   r"data.name 'digits'$"),
    (dict(), 0, r"^batch_size must be a positive integer, got 0$"),
    (dict(eval_batch_size=-5), 10,
     r"^data.eval_batch_size must be a positive integer, got -5$"),
])
def test_load_errors(cfg, batch_size, match):
  cfg = {"name": "digits", **cfg}
  with pytest.raises(ValueError, match=match):
    registry.load(_cfg(**cfg), batch_size=batch_size, seed=0)


def test_batch_size_larger_than_long_tail_subset():
  cfg = _cfg(name="npz", path=MNIST10K,
             imbalance=dict(profile="exp", ratio=100.0, n_max=100))
  with pytest.raises(ValueError, match=r"^batch_size 512 is larger than "
                     r"num_train 242 of data.name 'npz'$"):
    registry.load(cfg, batch_size=512, seed=0)


def test_bad_epoch_range(digits):
  with pytest.raises(ValueError, match=r"need 0 <= start_epoch <= end_epoch"):
    digits.train(3, 2)


def test_float_rgb_npz_with_crop_flip(tmp_path):
  path = str(tmp_path / "rgb.npz")
  rng = np.random.RandomState(0)
  x = rng.rand(20, 6, 6, 3).astype(np.float32)
  np.savez(path, x_train=x, y_train=np.arange(20) % 4, x_test=x[:3],
           y_test=np.array([3, 2, 1]))
  bundle = registry.load(_cfg(name="npz", path=path, augment="crop_flip"),
                         batch_size=8, seed=0)
  assert (bundle.num_classes, bundle.image_shape) == (4, (6, 6, 3))
  batches = _batches(bundle.train(0, 2))
  assert len(batches) == 4
  for b in batches:
    assert b["image"].shape == (8, 6, 6, 3)
    assert 0 <= b["image"].min() and b["image"].max() <= 1
  test = _batches(bundle.test())[0]
  np.testing.assert_array_equal(test["image"], x[:3])  # Float kept exactly.


def test_n_max_zero_means_the_largest_class(tmp_path):
  # configs/common.py's default n_max = 0: the largest class of the split.
  path = str(tmp_path / "balanced.npz")
  x = np.zeros((40, 4, 4, 1), np.float32)
  np.savez(path, x_train=x, y_train=np.arange(40) % 4, x_test=x[:4],
           y_test=np.arange(4))
  bundle = registry.load(_cfg(name="npz", path=path, imbalance=dict(
      profile="step", ratio=2.0, seed=0, n_max=0)), batch_size=5, seed=0)
  np.testing.assert_array_equal(bundle.class_counts, [10, 10, 5, 5])
  # Digits is not balanced: its largest class (146) exceeds class 0 (142).
  with pytest.raises(ValueError, match=r"class 0 has 142 examples, fewer "
                     r"than n_c=146"):
    registry.load(_cfg(name="digits", imbalance=dict(profile="exp", ratio=10.0,
                                                     n_max=0)),
                  batch_size=5, seed=0)
