"""evaluation/validation.py: per-class numbers by hand, a robust point stays
robust, 1 device == 2 replicas, the cache, random starts keyed by epoch."""
import types

import numpy as np
import pytest
import tensorflow as tf

from official.attacks import pgd
from official.core import experiment
from official.evaluation import validation
from tests.attacks import linear


def test_per_class_and_summarize_by_hand():
  labels = np.array([0, 0, 1, 1, 1, 2])
  out = {"clean": [1, 1, 1, 0, 1, 0], "robust": [1, 0, 0, 0, 1, 0],
         "nat_ce": [0.1, 0.3, 1.0, 2.0, 3.0, 5.0],
         "adv_ce": [1.0, 1.0, 2.0, 2.0, 2.0, 9.0],
         "kl": [0.0, 0.2, 0.3, 0.3, 0.6, 1.0]}
  spec = pgd.AttackSpec("val_pgd10", epsilon=0.1, step_size=0.02)
  r = validation.summarize(out, labels, 4, spec, epoch=3)
  np.testing.assert_array_equal(r.counts, [2, 3, 1, 0])
  np.testing.assert_allclose(r.clean[:3], [1.0, 2 / 3, 0.0])
  np.testing.assert_allclose(r.robust[:3], [0.5, 1 / 3, 0.0])
  assert np.isnan(r.clean[3])
  assert r.clean_accuracy == pytest.approx(4 / 6)
  assert r.robust_accuracy == pytest.approx(2 / 6)
  np.testing.assert_allclose(r.losses["nat_ce"][:3], [0.2, 2.0, 5.0])
  np.testing.assert_allclose(r.losses["kl"][:3], [0.1, 0.4, 1.0])
  assert r.mean_losses["adv_ce"] == pytest.approx(17 / 6)
  s = r.summary()
  assert s["epoch"] == 3 and s["attack"]["name"] == "val_pgd10"
  assert s["num_examples"] == 6


class _Data:
  """The DataBundle surface the Validator reads: validation(), num_classes."""

  def __init__(self, x, y, batch):
    self.x, self.y, self.batch, self.num_classes = x, y, batch, 3
    self.reads = 0

  def validation(self):
    self.reads += 1
    return tf.data.Dataset.from_tensor_slices(
        {"image": self.x, "label": self.y}).batch(self.batch)


def _network(forward):
  return lambda x, training=False: [forward(x), None]


def test_robust_points_stay_robust_and_results_are_cached():
  forward, x, y, radius = linear.make(3, num_points=90)
  data = _Data(x, y, batch=40)  # 40, 40, 10: a short last batch
  validator = validation.Validator(_network(forward), data, seed=0)
  spec = pgd.AttackSpec("val", "ce", 0.05, 0.0125, 10, "uniform")
  r = validator(spec, epoch=2)
  np.testing.assert_array_equal(r.counts, np.bincount(y, minlength=3))
  np.testing.assert_allclose(r.clean, 1.0)  # y is the clean prediction
  # Every point farther than eps from the boundary survives; others fall.
  assert r.robust_accuracy >= np.mean(radius > 0.05)
  assert r.robust_accuracy < 1.0
  logits = forward(x).numpy()
  ce = -(logits[np.arange(90), y] - np.log(np.exp(logits).sum(1)))
  np.testing.assert_allclose(r.losses["nat_ce"],
                             [ce[y == c].mean() for c in range(3)], rtol=1e-5)
  assert validator(spec, epoch=2) is r and data.reads == 1  # cached
  other = validator(spec, epoch=3)  # other random starts
  assert data.reads == 2 and other.robust_accuracy >= np.mean(radius > 0.05)


def test_two_replicas_equal_one_device():
  forward, x, y, _ = linear.make(3, num_points=90)
  spec = pgd.AttackSpec("val_kl", "kl", 0.08, 0.02, 5, "gaussian")
  one = validation.Validator(_network(forward), _Data(x, y, 40), seed=1)(
      spec, 4)
  strategy = experiment.make_strategy("mirrored")
  assert strategy.num_replicas_in_sync == 2
  two = validation.Validator(_network(forward), _Data(x, y, 40), seed=1,
                             strategy=strategy)(spec, 4)
  np.testing.assert_array_equal(one.robust, two.robust)
  for k in validation.LOSSES:
    np.testing.assert_allclose(one.losses[k], two.losses[k], rtol=1e-5,
                               atol=1e-7)
  assert one.mean_losses["kl"] > 0


def test_specs_follow_the_training_settings():
  config = types.SimpleNamespace(attack=types.SimpleNamespace(
      epsilon=0.3, step_size=0.06, steps=7))
  s = validation.pgd_spec(config, 20)
  assert (s.name, s.loss, s.epsilon, s.step_size, s.steps, s.random_start) == (
      "val_pgd20", "ce", 0.3, 0.06, 20, "uniform")
  s = validation.trades_spec(config)
  assert (s.loss, s.steps, s.random_start) == ("kl", 7, "gaussian")
