"""Datasets by name: `load(config.data, batch_size=..., seed=...)` -> DataBundle.

Every split is held in memory as numpy (CIFAR-10/100 and SVHN fit), and the
tf.data pipelines gather from it by example id:

  train(e0, e1): for each epoch e, stateless_shuffle(train_ids, [seed, e]),
    drop the remainder, gather + augment (key from (seed, e, id)), batch.
  test():        the test split in order, batched, no augmentation.

  validation(): the held-out validation split (data.validation_per_class,
    data/holdout.py) in id order, batched, no augmentation.

Elements: {"image": float32 [B, H, W, C] in [0, 1], "label": int32 [B],
"id": int32 [B]}, where `id` is the row of the original (un-subsampled) split,
so per-example state can be indexed by it across runs, seeds and subsets.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from official.data import augment as augment_lib
from official.data import holdout
from official.data import long_tail
from official.data import sources

DATASETS = {
    "cifar10": sources.load_tfds,
    "cifar100": sources.load_tfds,
    "svhn_cropped": sources.load_tfds,
    "mnist": sources.load_tfds,
    "digits": sources.load_digits,
    "npz": sources.load_npz,
}

# data.augment="default": what the papers use on each dataset (no flip on
# SVHN: flipped digits are other digits).
DEFAULT_AUGMENT = {
    "cifar10": "crop_flip",
    "cifar100": "crop_flip",
    "svhn_cropped": "crop",
    "mnist": "none",
    "digits": "none",
    "npz": "none",
}


@dataclasses.dataclass
class DataBundle:
  num_classes: int
  image_shape: tuple          # (H, W, C).
  num_train: int              # Training examples used (after long-tailing).
  num_ids: int                # Size of the original train split.
  class_counts: np.ndarray    # int64 [num_classes], used training counts.
  train_ids: np.ndarray       # Ids of the used training examples, sorted.
  steps_per_epoch: int        # num_train // batch_size.
  # What train() and test() need besides the above.
  batch_size: int = 1
  eval_batch_size: int = 500
  seed: int = 0
  augment: str = "none"
  splits: sources.Splits = dataclasses.field(default=None, repr=False)
  # Held-out validation ids (rows of the train split; data/holdout.py), sorted.
  validation_ids: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(0, np.int64))

  @property
  def validation_counts(self) -> np.ndarray:
    """int64 [num_classes]: validation images per class (zeros: no split)."""
    labels = np.asarray(self.splits.y_train)[self.validation_ids]
    return np.bincount(labels, minlength=self.num_classes).astype(np.int64)

  def train(self, start_epoch: int, end_epoch: int,
            shard: tuple = (0, 1)) -> tf.data.Dataset:
    """(end_epoch - start_epoch) * steps_per_epoch batches, epoch after epoch.

    shard=(i, n): only rows [i*b, (i+1)*b) of every global batch, b =
    batch_size / n (worker i of n under multi_worker). The ids are cut before
    any image is gathered or augmented, so a worker reads only its rows.
    """
    if not 0 <= start_epoch <= end_epoch:
      raise ValueError(f"train(start_epoch={start_epoch}, end_epoch="
                       f"{end_epoch}): need 0 <= start_epoch <= end_epoch")
    index, count = shard
    if not 0 <= index < count or self.batch_size % count:
      raise ValueError(f"train(shard={shard}): need 0 <= index < count and "
                       f"batch_size {self.batch_size} divisible by count")
    rows = self.batch_size // count
    images = tf.constant(self.splits.x_train)
    labels = tf.constant(self.splits.y_train, tf.int32)
    ids = tf.constant(self.train_ids, tf.int64)
    per_epoch = self.steps_per_epoch * self.batch_size

    def epoch_ids(epoch):
      # The order of epoch e depends on (seed, e) only: resuming at e replays
      # exactly the batches of an uninterrupted run.
      order = tf.random.experimental.stateless_shuffle(
          ids, seed=tf.stack([tf.constant(self.seed, tf.int64), epoch]),
          alg="philox")
      # Drop the remainder per epoch, so batches never straddle two epochs.
      order = order[:per_epoch]
      if count > 1:  # this shard's rows of every global batch
        order = tf.reshape(order, [self.steps_per_epoch, self.batch_size])
        order = tf.reshape(order[:, index * rows:(index + 1) * rows], [-1])
      return tf.data.Dataset.from_tensor_slices(order).map(
          lambda i: (epoch, i))

    def example(epoch, i):
      key = augment_lib.example_key(self.seed, epoch, i)
      return {"image": augment_lib.apply(tf.gather(images, i), self.augment,
                                         key, self.splits.pixel_max),
              "label": tf.gather(labels, i),
              "id": tf.cast(i, tf.int32)}

    ds = tf.data.Dataset.range(start_epoch, end_epoch).flat_map(epoch_ids)
    ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(rows, drop_remainder=True).map(self._to_float)
    # flat_map hides the length; state it (and have tf.data check it).
    ds = ds.apply(tf.data.experimental.assert_cardinality(
        (end_epoch - start_epoch) * self.steps_per_epoch))
    return ds.prefetch(tf.data.AUTOTUNE)

  def test(self) -> tf.data.Dataset:
    """The whole test split in order; the last batch may be short."""
    images = tf.constant(self.splits.x_test)
    labels = tf.constant(self.splits.y_test, tf.int32)
    ds = tf.data.Dataset.range(len(self.splits.y_test))
    ds = ds.batch(self.eval_batch_size).map(
        lambda i: {"image": tf.gather(images, i),
                   "label": tf.gather(labels, i),
                   "id": tf.cast(i, tf.int32)})
    return ds.map(self._to_float).prefetch(tf.data.AUTOTUNE)

  def validation(self) -> tf.data.Dataset:
    """The validation split in id order, like test(): unaugmented, the last
    batch may be short; `id` is the example's row of the train split."""
    if not len(self.validation_ids):
      raise ValueError("this run has no validation split: set "
                       "data.validation_per_class > 0")
    images = tf.constant(self.splits.x_train)
    labels = tf.constant(self.splits.y_train, tf.int32)
    ds = tf.data.Dataset.from_tensor_slices(
        tf.constant(self.validation_ids, tf.int64))
    ds = ds.batch(self.eval_batch_size).map(
        lambda i: {"image": tf.gather(images, i),
                   "label": tf.gather(labels, i),
                   "id": tf.cast(i, tf.int32)})
    return ds.map(self._to_float).prefetch(tf.data.AUTOTUNE)

  def _to_float(self, batch):
    # Division, not a multiply by 1/255: 255 * (1/255) rounds above 1.
    image = tf.cast(batch["image"], tf.float32) / self.splits.pixel_max
    return {**batch, "image": image}


def load(data_cfg, *, batch_size: int, seed: int) -> DataBundle:
  """Loads `data_cfg.name` and builds its (possibly long-tailed) DataBundle."""
  name = data_cfg.get("name", None)
  if name not in DATASETS:
    raise ValueError(f"unknown data.name {name!r}; "
                     f"valid: {', '.join(sorted(DATASETS))}")
  kind = data_cfg.get("augment", "default")
  if kind not in ("default",) + augment_lib.AUGMENTS:
    raise ValueError(f"unknown data.augment {kind!r}; valid: "
                     f"default, {', '.join(augment_lib.AUGMENTS)}")
  kind = DEFAULT_AUGMENT[name] if kind == "default" else kind
  # randaugment / autoaugment: the policy, then the dataset's crop/flip.
  kind = augment_lib.resolve(kind, DEFAULT_AUGMENT[name])
  imbalance = data_cfg.get("imbalance", None) or {}
  profile = imbalance.get("profile", "none")
  ratio = imbalance.get("ratio", 1.0)
  long_tail.check(profile, ratio)  # Fail before a slow load.
  per_class = holdout.check(data_cfg.get("validation_per_class", 0) or 0)
  eval_batch_size = data_cfg.get("eval_batch_size", 500)
  for key, value in (("batch_size", batch_size),
                     ("data.eval_batch_size", eval_batch_size)):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{key} must be a positive integer, got {value!r}")

  splits = DATASETS[name](data_cfg)
  num_classes, labels = splits.num_classes, splits.y_train
  # The validation split first (the last N of each class), then training
  # (long-tailed or not) from the rest: holdout.py.
  validation_ids = holdout.validation_ids(labels, per_class, num_classes)
  remaining = holdout.without(labels, validation_ids)
  if profile == "none":
    train_ids = np.flatnonzero(remaining >= 0).astype(np.int64)
  else:
    n_max = imbalance.get("n_max", None)
    if not n_max:  # None or the config's 0: the largest class left
      n_max = np.bincount(remaining[remaining >= 0],
                          minlength=num_classes).max()
    counts = long_tail.class_counts(profile, ratio, n_max, num_classes)
    train_ids = long_tail.select_indices(remaining, counts,
                                         imbalance.get("seed", 0))
  num_train = len(train_ids)
  if batch_size > num_train:
    raise ValueError(f"batch_size {batch_size} is larger than num_train "
                     f"{num_train} of data.name {name!r}")
  return DataBundle(
      num_classes=num_classes,
      image_shape=tuple(splits.x_train.shape[1:]),
      num_train=num_train,
      num_ids=len(labels),
      class_counts=np.bincount(labels[train_ids], minlength=num_classes
                               ).astype(np.int64),
      train_ids=train_ids,
      steps_per_epoch=num_train // batch_size,
      batch_size=int(batch_size),
      eval_batch_size=int(eval_batch_size),
      seed=int(seed),
      augment=kind,
      splits=splits,
      validation_ids=validation_ids)
