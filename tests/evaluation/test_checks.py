"""official/evaluation/checks.py: each check fires on a model built to trip it."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from official.evaluation import checks


def _linear(head=None, first=None):
  """A fixed random linear classifier on 8x8x1 images, with optional layers."""
  keras.utils.set_random_seed(0)
  x = keras.Input((8, 8, 1))
  h = first(x) if first is not None else x
  h = keras.layers.Dense(10)(keras.layers.Flatten()(h))
  if head is not None:
    h = head(h)
  return keras.Model(x, h)


class _AlwaysDropout(keras.layers.Layer):
  """Dropout that stays on at inference (a randomised 'defence')."""

  def call(self, x):
    keep = tf.cast(tf.random.uniform(tf.shape(x)) > 0.5, x.dtype)
    return 2.0 * x * keep


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  return (rng.uniform(size=(32, 8, 8, 1)).astype(np.float32),
          rng.integers(0, 10, 32).astype(np.int32))


def test_quiet_on_a_normal_model(batch):
  model = _linear()
  found = checks.model_checks(lambda x: model(x, training=False), *batch)
  assert {k: v["ok"] for k, v in found.items()} == {
      "probabilities": True, "deterministic": True, "gradients": True,
      "collapse": True}
  assert found["deterministic"]["value"] == 0.0
  assert found["gradients"]["value"] == 0.0
  assert set(found["gradients"]) == {"ok", "value", "message"}


def test_one_class_everywhere_is_flagged_unless_the_labels_are_so():
  labels = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
  # Logits by hand: class 2 wins on 9 of 10 rows, class 1 on one.
  logits = np.zeros((10, 4), np.float32)
  logits[:, 2] = 1.0
  logits[4, 1] = 2.0
  found = checks.collapse(lambda x: x, logits, labels)
  assert not found["ok"] and found["value"] == pytest.approx(0.9)
  assert "predicts class 2 for 90%" in found["message"]
  assert "share of the labels: 20%" in found["message"]
  # 80% one class, 20% another: below the 90% share, and the predictions'
  # effective classes exp(-(0.8 ln 0.8 + 0.2 ln 0.2)) = 1.65 are above
  # 0.3 x the labels' (shares 0.3, 0.3, 0.2, 0.2: 3.89) = 1.17: not flagged.
  logits[5, 1] = 2.0
  found = checks.collapse(lambda x: x, logits, labels)
  assert found["ok"], found
  assert "effective classes 1.6 of 3.9" in found["message"]
  # A 10-class model that predicts classes 0 and 1 only (89% / 11%) on a
  # balanced test set: 1.4 effective classes of 10, a collapse.
  ten = np.repeat(np.arange(10), 10)
  two = np.zeros((100, 10), np.float32)
  two[:, 0] = 1.0
  two[89:, 1] = 2.0
  found = checks.collapse(lambda x: x, two, ten)
  assert not found["ok"] and found["value"] == pytest.approx(0.89)
  assert "effective classes predicted 1.4 of the labels' 10.0" in found["message"]
  # A test set that is 90% class 2, predicted so: not a collapse.
  skewed = np.array([2] * 9 + [1])
  logits[5, 1] = 0.0
  assert checks.collapse(lambda x: x, logits, skewed)["ok"]


def test_softmax_outputs_are_flagged(batch):
  model = _linear(head=keras.layers.Softmax())
  found = checks.probabilities(lambda x: model(x, training=False), batch[0])
  assert not found["ok"] and found["value"] < 1e-5
  assert "look like probabilities" in found["message"]


def test_dropout_at_inference_is_flagged(batch):
  model = _linear(first=_AlwaysDropout())
  found = checks.deterministic(lambda x: model(x, training=False), batch[0])
  assert not found["ok"] and found["value"] > 0.1
  assert "not deterministic" in found["message"]


def test_zero_gradients_are_flagged(batch):
  stopped = _linear(first=keras.layers.Lambda(keras.ops.stop_gradient))
  found = checks.gradients(lambda x: stopped(x, training=False), *batch)
  assert not found["ok"] and found["value"] == 1.0
  assert found["message"].startswith("32 of 32 points (100.0%) have a zero")
  # A NaN gradient counts too: 0 * log(0) in a hand-made softmax-log head.
  model = _linear()
  nan = lambda x: tf.math.log(tf.nn.relu(model(x)) * 0.0)  # noqa: E731
  assert checks.gradients(nan, *batch)["value"] == 1.0


def test_square_breaking_white_box_points_is_flagged():
  members = {"apgd-ce": 0.60, "apgd-t": 0.55, "fab-t": 0.55, "square": 0.50}
  found = checks.square({"natural": {"accuracy": 0.9},
                         "autoattack": {"accuracy": 0.50, "members": members}})
  assert not found["ok"] and found["value"] == pytest.approx(0.05)
  assert "in autoattack" in found["message"]
  # Within the 0.2% noise allowance: quiet.
  members["square"] = 0.549
  found = checks.square({"autoattack": {"accuracy": 0.549, "members": members}})
  assert found["ok"] and found["value"] == pytest.approx(0.001)
  # Separate entries: square (50%) below the lowest white-box (cw, 58%);
  # a square-free ensemble counts as white-box through its last member.
  separate = {"natural": {"accuracy": 0.9}, "pgd20": {"accuracy": 0.60},
              "cw": {"accuracy": 0.58}, "square": {"accuracy": 0.50},
              "autoattack-fast": {"accuracy": 0.56,
                                  "members": {"apgd-ce": 0.6, "apgd-t": 0.56}}}
  found = checks.square(separate)
  assert not found["ok"] and found["value"] == pytest.approx(0.06)
  separate["square"]["accuracy"] = 0.57
  assert checks.square(separate)["ok"]
  assert checks.square({"pgd20": {"accuracy": 0.6}})["value"] is None


def test_accuracy_rising_with_epsilon_is_flagged():
  found = checks.epsilon([0.1, 0.0, 0.05], [0.75, 0.9, 0.7])  # unsorted
  assert not found["ok"] and found["value"] == pytest.approx(0.05)
  assert "at epsilon 0.1" in found["message"]
  found = checks.epsilon([0.0, 0.05, 0.1], [0.9, 0.7, 0.7005])
  assert found["ok"] and found["value"] == pytest.approx(0.0005)
