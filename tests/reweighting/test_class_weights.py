"""Class weights (none / inverse / effective number), DRW deferral, the
class_balanced method, and 1 device == 2 replicas."""
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from official.core import experiment
from official.reweighting import base
from official.reweighting import class_weights
from tests.core import helpers


def test_effective_number_by_hand():
  # beta = 0.5, n = 1, 2, 3: (1-b)/(1-b^n) = 1, 2/3, 4/7; sum 47/21, so the
  # weights with mean 1 are w * 63/47.
  np.testing.assert_allclose(
      class_weights.class_weights([1, 2, 3], "effective", beta=0.5),
      [63 / 47, 42 / 47, 36 / 47], rtol=1e-6)


def test_effective_number_cifar10_lt_default_beta():
  counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
  w = class_weights.class_weights(counts)  # beta = 0.9999
  raw = [(1 - 0.9999) / (1 - 0.9999**n) for n in counts]
  np.testing.assert_allclose(w, np.array(raw) / np.mean(raw), rtol=1e-5)
  assert w.mean() == pytest.approx(1.0) and (np.diff(w) > 0).all()
  # Between "none" and inverse frequency: the tail/head ratio is < 100.
  assert 30 < w[-1] / w[0] < 100


def test_inverse_none_and_absent_classes():
  np.testing.assert_allclose(class_weights.class_weights([1, 2, 4], "inverse"),
                             [12 / 7, 6 / 7, 3 / 7], rtol=1e-6)
  np.testing.assert_array_equal(class_weights.class_weights([5, 1], "none"),
                                [1, 1])
  # A class without training examples: weight 0, left out of the mean.
  np.testing.assert_allclose(class_weights.class_weights([2, 0, 1], "inverse"),
                             [2 / 3, 0, 4 / 3], rtol=1e-6)
  with pytest.raises(ValueError, match=r"unknown class-weight scheme 'sqrt'"):
    class_weights.class_weights([1, 2], "sqrt")
  with pytest.raises(ValueError, match=r"beta must be in \(0, 1\)"):
    class_weights.class_weights([1, 2], "effective", beta=1.0)


def test_defer_epoch():
  assert class_weights.defer_epoch(-1, 10) == 8   # 80% of training
  assert class_weights.defer_epoch(-1, 200) == 160  # LDAM-DRW
  assert class_weights.defer_epoch(3, 10) == 3
  assert class_weights.defer_epoch(0, 10) == 0


def test_per_example_deferral_and_normalisation():
  w = np.array([63 / 47, 42 / 47, 36 / 47], np.float32)
  labels = tf.constant([0, 2, 2, 1])
  for normalize in ("batch", "classes"):  # Before the switch: all ones.
    np.testing.assert_array_equal(
        class_weights.per_example(w, labels, 2, 3, normalize), [1, 1, 1, 1])
  by_class = [63 / 47, 36 / 47, 36 / 47, 42 / 47]
  np.testing.assert_allclose(
      class_weights.per_example(w, labels, tf.constant(3), 3, "classes"),
      by_class, rtol=1e-6)
  # Batch: mean 1 over the batch, i.e. w_i * B / sum_j w_j (= 4 * w / (177/47)).
  np.testing.assert_allclose(
      class_weights.per_example(w, labels, 5, 3, "batch"),
      np.array(by_class) * 4 * 47 / 177, rtol=1e-6)
  with pytest.raises(ValueError, match=r"unknown class-weight normalize"):
    class_weights.per_example(w, labels, 0, 0, "mean")


class _Data:
  class_counts = np.array([4, 2, 1])
  num_ids = 7


def _method(objective="at", **cfg):
  config = ml_collections.ConfigDict({"epochs": 10, "objective": {
      "name": objective, "beta": 6.0}})
  cfg = ml_collections.ConfigDict({"name": "class_balanced", "scheme": "inverse",
                                   "defer_epochs": 1, "normalize": "classes",
                                   **cfg})
  return class_weights.ClassBalanced(cfg, config=config, data=_Data())


def _ctx(epoch, terms):
  labels = tf.constant([0, 1, 2, 2])
  return base.StepContext(images=None, labels=labels, ids=tf.range(4),
                          epoch=tf.constant(epoch), step=tf.constant(0, tf.int64),
                          global_batch_size=4, attack=None, terms=terms)


def test_method_weights_every_objective_term():
  # inverse of [4, 2, 1] = [1/4, 1/2, 1], mean 7/12: [3/7, 6/7, 12/7].
  expected = [3 / 7, 6 / 7, 12 / 7, 12 / 7]
  m = _method("trades")
  terms = {"nat": tf.zeros(4), "kl": tf.zeros(4)}
  before = m.weights(_ctx(0, terms))
  np.testing.assert_array_equal(before["kl"], [1, 1, 1, 1])
  after = m.weights(_ctx(1, terms))
  assert set(after) == {"nat", "kl"}
  np.testing.assert_allclose(after["nat"], expected, rtol=1e-6)
  np.testing.assert_allclose(after["kl"], expected, rtol=1e-6)
  assert float(m.metrics(_ctx(1, terms), after)["reweighting_on"]) == 1.0
  only_kl = _method("trades", terms=("kl",)).weights(_ctx(1, terms))
  assert set(only_kl) == {"kl"}
  with pytest.raises(ValueError, match=r"objective 'at' has no term 'kl'; "
                     r"valid: adv"):
    _method("at", terms=("kl",))


def _train(distribute, tmp_path, preset, steps=3, **overrides):
  config = helpers.tiny_config("srat", preset, distribute=distribute,
                               **overrides)
  return helpers.fit_steps(config, tmp_path / distribute, steps)


def test_class_balanced_two_replicas_equal_one_device(tmp_path):
  kw = {"reweighting.defer_epochs": 0}
  one = _train("default", tmp_path, "digits,at_cb", **kw)
  two = _train("mirrored", tmp_path, "digits,at_cb", **kw)
  assert two.strategy.num_replicas_in_sync == 2
  assert one.trainer.method.name == "class_balanced"
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  # (weight/adv/max is a mean of per-replica maxima: not comparable.)
  for name in ("loss", "weight/adv/mean", "term/adv"):
    np.testing.assert_allclose(one.trainer.trackers[name].result().numpy(),
                               two.trainer.trackers[name].result().numpy(),
                               rtol=1e-5)
  # Batch-normalised over the GLOBAL batch: mean weight exactly 1, and the
  # rare classes weigh more than the head.
  assert two.trainer.trackers["weight/adv/mean"].result().numpy() == (
      pytest.approx(1.0, rel=1e-5))
  assert one.trainer.trackers["weight/adv/max"].result().numpy() > 2.0
