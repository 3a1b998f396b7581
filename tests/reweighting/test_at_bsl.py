"""AT-BSL: the balanced softmax loss by hand, the configs, RandAugment on AT
and AT-BSL, 1 device == 2 replicas, and an exact resume with AutoAugment."""
import numpy as np
import pytest
import tensorflow as tf

from configs import at_bsl as at_bsl_config
from official.core import experiment
from official.reweighting import at_bsl
from official.reweighting import robal
from tests.core import helpers


def test_balanced_softmax_by_hand():
  # logits [1, 0, 0] + log n (n = 100, 10, 1) = [5.605170, 2.302585, 0];
  # label 1: 3.302585 + log(1 + e^-3.302585 + e^-5.605170) = 3.342254.
  log_prior = robal.log_prior([100, 10, 1])
  loss = at_bsl.balanced_softmax(tf.constant([[1.0, 0.0, 0.0]]),
                                 tf.constant([1]), log_prior)
  assert loss.numpy()[0] == pytest.approx(3.342254, abs=1e-5)
  # Balanced counts: the plain cross-entropy, log(e + 2) - 0 = 1.551445.
  loss = at_bsl.balanced_softmax(tf.constant([[1.0, 0.0, 0.0]]),
                                 tf.constant([1]), robal.log_prior([5, 5, 5]))
  assert loss.numpy()[0] == pytest.approx(1.551445, abs=1e-5)


def test_configs():
  c = at_bsl_config.get_config(None)
  assert (c.model.name, c.epochs, c.batch_size) == ("resnet18", 100, 128)
  assert (tuple(c.optimizer.lr_boundaries), c.optimizer.lr_decay,
          c.optimizer.weight_decay) == ((75, 90), 0.1, 5e-4)
  assert (c.attack.steps, c.attack.random_start) == (10, "gaussian")
  assert (c.data.name, c.data.imbalance.profile, c.data.imbalance.ratio,
          c.data.augment) == ("cifar10", "exp", 50.0, "default")
  assert c.model.head == "linear" and c.reweighting.name == "at_bsl"
  assert at_bsl_config.get_config("ra").data.augment == "randaugment"
  assert at_bsl_config.get_config("aua").data.augment == "autoaugment"
  c = at_bsl_config.get_config("ra,digits")
  assert (c.data.name, c.data.imbalance.n_max, c.data.imbalance.ratio,
          c.data.augment) == ("digits", 139, 10.0, "randaugment")
  c = at_bsl_config.get_config("mnist10k_lt")
  assert (c.data.path.endswith("mnist10k.npz"), c.data.imbalance.n_max,
          c.epochs) == (True, 600, 10)


def test_bad_values_are_one_line_errors(tmp_path):
  for overrides, match in [
      ({"objective.name": "mart"}, r"needs objective.name 'at'"),
      ({"data.augment": "trivialaugment"},
       r"unknown data.augment 'trivialaugment'; valid: default, none, crop, "
       r"crop_flip, randaugment, autoaugment"),
      ({"data.imbalance.n_max": 200},
       r"class 0 has 142 examples, fewer than n_c=200")]:
    with pytest.raises(ValueError, match=match) as e:
      experiment.prepare(helpers.tiny_config("at_bsl", "digits", **overrides),
                         str(tmp_path / "bad"))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("method, preset", [("at", "digits"),
                                            ("at_bsl", "ra,digits")])
def test_randaugment_trains_any_method(tmp_path, method, preset):
  config = helpers.tiny_config(method, preset,
                               **{"data.augment": "randaugment"})
  run = helpers.fit_steps(config, tmp_path / method, steps=3)
  assert run.data.augment == "randaugment+none"   # digits: no crop / flip
  batch = next(iter(run.data.train(0, 1)))
  raw = run.data.splits.x_train[batch["id"].numpy()] / 16.0
  changed = np.any(np.abs(batch["image"].numpy() - raw) > 1e-6,
                   axis=(1, 2, 3))
  # Two ops each, Identity / Color (gray) / a no-op draw leave a few alone.
  assert 0.5 < changed.mean() < 1.0
  loss = float(run.trainer.trackers["loss"].result())
  assert np.isfinite(loss) and loss > 0


def _train(tmp_path, distribute, steps=3):
  config = helpers.tiny_config("at_bsl", "digits", distribute=distribute)
  return helpers.fit_steps(config, tmp_path / distribute, steps)


def test_two_replicas_equal_one_device(tmp_path):
  one = _train(tmp_path, "default")
  two = _train(tmp_path, "mirrored")
  assert two.strategy.num_replicas_in_sync == 2
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  np.testing.assert_allclose(one.trainer.trackers["loss"].result().numpy(),
                             two.trainer.trackers["loss"].result().numpy(),
                             rtol=1e-5)


def test_resumed_run_with_autoaugment_equals_uninterrupted(tmp_path):
  kw = {"epochs": 2, "data.augment": "autoaugment"}
  config = lambda: helpers.tiny_config("at_bsl", "digits", **kw)  # noqa: E731
  full = experiment.prepare(config(), str(tmp_path / "full"))
  full.trainer.fit(full.data.train(0, 2), epochs=2, verbose=0,
                   steps_per_epoch=full.data.steps_per_epoch)
  first = experiment.prepare(config(), str(tmp_path / "cut"))
  first.trainer.fit(first.data.train(0, 1), epochs=1, verbose=0)
  first.checkpointer.save(1)
  del first  # "killed" after epoch 1
  again = experiment.prepare(config(), str(tmp_path / "cut"))
  assert again.initial_epoch == 1
  again.trainer.fit(again.data.train(1, 2), epochs=2, initial_epoch=1,
                    verbose=0)
  for a, b in zip(full.trainer.network.weights, again.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
