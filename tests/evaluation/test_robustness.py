"""robustness.py: the summary statistics by hand; an attack's numbers do not
depend on the other attacks evaluated beside it; robust <= clean accuracy."""
import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from official.evaluation import robustness


def test_summarize_by_hand():
  labels = [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
  correct = [1, 0, 1, 1, 1, 0, 0, 1, 0, 0]
  s = robustness.summarize(correct, labels, num_classes=4, tail_fraction=0.3)
  assert s["accuracy"] == pytest.approx(0.5)
  assert s["per_class"][:3] == pytest.approx([0.5, 1.0, 0.2])
  assert np.isnan(s["per_class"][3])  # absent class: left out of the minimum
  assert s["worst_class"] == pytest.approx(0.2)
  # 30% of the 3 present classes rounds to 1 class: the weakest.
  assert s["tail"] == pytest.approx(0.2)
  s = robustness.summarize(correct, labels, num_classes=3, tail_fraction=0.67)
  assert s["tail"] == pytest.approx((0.2 + 0.5) / 2)


def _eval_cfg(attacks):
  return ml_collections.ConfigDict({
      # A radius where random starts matter (robust accuracy ~0.7).
      "attacks": attacks, "epsilon": 0.1, "pgd_step_size": 0.025,
      "pgd_steps": 2, "cw_step_size": 0.05, "cw_steps": 5, "cw_confidence": 50.0,
      "train_step_size": 0.05, "restarts": 1, "tail_fraction": 0.3,
      "max_examples": 0})


def test_an_attack_does_not_depend_on_its_neighbours():
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(3)])
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(64, 6, 6, 1)).astype(np.float32)
  # Labels the model gets right, so that attacks have something to break.
  labels = np.argmax(model(images).numpy(), -1).astype(np.int32)
  data = tf.data.Dataset.from_tensor_slices(
      {"image": images, "label": labels}).batch(32)
  run = lambda attacks: robustness.evaluate(  # noqa: E731
      lambda x: model(x), data, _eval_cfg(attacks), 3, seed=1, verbose=0)
  alone = run(("pgd20",))
  crowded = run(("natural", "fgsm", "cw", "pgd20", "kl10"))
  np.testing.assert_array_equal(alone["pgd20"]["per_class"],
                                crowded["pgd20"]["per_class"])
  assert crowded["natural"]["accuracy"] == 1.0
  assert crowded["pgd20"]["accuracy"] < crowded["natural"]["accuracy"]
  # Random starts do matter here: another evaluation seed, another result.
  other = robustness.evaluate(lambda x: model(x), data, _eval_cfg(("pgd20",)),
                              3, seed=2, verbose=0)
  assert other["pgd20"]["accuracy"] != alone["pgd20"]["accuracy"]
