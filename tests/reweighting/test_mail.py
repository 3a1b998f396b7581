"""MAIL: probabilistic margins and weights by hand, the term per objective,
burn-in, the optional normalisation, 1 device == 2 replicas, resume."""
import math
import types

import numpy as np
import pytest
import tensorflow as tf

from configs import mail as mail_config
from official.core import experiment
from official.reweighting import base
from official.reweighting import mail
from tests.core import helpers

# softmax = [1/4, 1/2, 1/4]: PM = -1/4 for y = 0, +1/4 for y = 1; uniform
# logits: PM = 0.
LOGITS = np.array([[0.0, math.log(2.0), 0.0], [0.0, math.log(2.0), 0.0],
                   [0.0, 0.0, 0.0]], np.float32)
LABELS = np.array([0, 1, 2], np.int32)


def test_probabilistic_margin_by_hand():
  np.testing.assert_allclose(mail.probabilistic_margin(LOGITS, LABELS),
                             [-0.25, 0.25, 0.0], atol=1e-6)
  # A confident wrong prediction: p = [e^4, 1, 1] / (e^4 + 2), y = 1.
  p = np.exp([4.0, 0.0, 0.0]) / (np.exp(4.0) + 2)
  np.testing.assert_allclose(
      mail.probabilistic_margin([[4.0, 0.0, 0.0]], [1]), [p[1] - p[0]],
      rtol=1e-5)


def test_margin_weights_by_hand():
  pm = [-0.25, 0.25, 0.0]
  # MAIL-AT: 3 sigmoid(-10 (PM + 0.5)) = 3 sigmoid(-2.5, -7.5, -5).
  np.testing.assert_allclose(mail.margin_weights(pm, -0.5, 10.0),
                             [0.2275746, 0.00165834, 0.0200786], rtol=1e-5)
  # MAIL-TRADES: 3 sigmoid(-2 PM) = 3 sigmoid(0.5, -0.5, 0).
  np.testing.assert_allclose(mail.margin_weights(pm, 0.0, 2.0),
                             [1.8673779, 1.1326221, 1.5], rtol=1e-6)


def _method(objective="at", **options):
  config = mail_config.get_config(f"{objective},digits")
  config.reweighting.update(options)
  data = types.SimpleNamespace(num_ids=8, train_ids=np.arange(8))
  method = mail.MAIL(config.reweighting, config=config, data=data)
  method.build_state()
  return method


def _ctx(epoch):
  return base.StepContext(
      images=tf.zeros([3, 2, 2, 1]), labels=tf.constant(LABELS),
      ids=tf.constant([4, 0, 2]), epoch=tf.constant(epoch, tf.int32),
      step=tf.constant(0, tf.int64), global_batch_size=3, attack=None,
      adversarial_logits={"train_pgd_ce": tf.constant(LOGITS)},
      primary_attack="train_pgd_ce")


def test_term_bias_slope_per_objective_and_burn_in():
  method = _method("at", burn_in_epochs=5)
  assert (method.term, method.bias, method.slope, method.scale) == (
      "adv", -0.5, 10.0, 3.0)
  np.testing.assert_array_equal(method.weights(_ctx(4))["adv"], 1.0)
  np.testing.assert_allclose(method.weights(_ctx(5))["adv"],
                             [0.2275746, 0.00165834, 0.0200786], rtol=1e-5)
  method = _method("trades", burn_in_epochs=0)
  assert (method.term, method.bias, method.slope) == ("kl", 0.0, 2.0)
  np.testing.assert_allclose(method.weights(_ctx(0))["kl"],
                             [1.8673779, 1.1326221, 1.5], rtol=1e-6)
  method = _method("mart")
  assert (method.term, method.bias, method.slope) == ("adv", -1.5, 1.0)
  # Explicit values win over the objective's.
  assert _method("at", bias=0.1, slope=3.0).bias == 0.1


def test_normalize_option_and_metrics():
  method = _method("trades", burn_in_epochs=0, normalize=True)
  w = method.weights(_ctx(0))["kl"]
  np.testing.assert_allclose(w, np.array([1.8673779, 1.1326221, 1.5]) / 1.5,
                             rtol=1e-6)  # mean 1
  metrics = method.metrics(_ctx(0), {})
  assert float(metrics["margin_mean"]) == pytest.approx(0.0, abs=1e-6)
  margins = method.margin.numpy()
  np.testing.assert_allclose(margins[[4, 0, 2]], [-0.25, 0.25, 0.0], atol=1e-6)
  assert np.isnan(margins[[1, 3, 5, 6, 7]]).all()  # not seen yet
  np.testing.assert_allclose(np.sort(method.epoch_summaries()["margin"]),
                             [-0.25, 0.0, 0.25], atol=1e-6)


def test_configs():
  c = mail_config.get_config()
  assert (c.model.name, c.epochs, c.optimizer.learning_rate,
          c.optimizer.weight_decay, c.optimizer.lr_boundaries,
          c.objective.beta) == ("resnet18", 120, 0.01, 3.5e-3, (75, 90, 100),
                                5.0)
  assert (c.objective.name, c.reweighting.burn_in_epochs,
          c.attack.random_start) == ("at", 75, "gaussian")
  assert mail_config.get_config("trades").objective.name == "trades"
  assert mail_config.get_config("mart").objective.name == "mart"
  c = mail_config.get_config("mnist10k")
  assert (c.reweighting.burn_in_epochs, c.attack.random_start) == (5, "uniform")
  assert _method("at").bias == -0.5 and _method("at").slope == 10.0


def _train(tmp_path, distribute, steps=4):
  config = helpers.tiny_config("mail", "trades,digits", distribute=distribute,
                               **{"reweighting.burn_in_epochs": 1})
  # Burn-in steps 1-2, MAIL-TRADES 3-4.
  return helpers.fit_steps(config, tmp_path / distribute, steps,
                           steps_per_epoch=2)


def test_two_replicas_equal_one_device_and_resume(tmp_path):
  one = _train(tmp_path, "default")
  two = _train(tmp_path, "mirrored")
  assert two.strategy.num_replicas_in_sync == 2
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  m1, m2 = one.trainer.method.margin.numpy(), two.trainer.method.margin.numpy()
  np.testing.assert_allclose(m1, m2, atol=1e-4, equal_nan=True)
  seen = np.isfinite(m1)
  assert 32 <= seen.sum() <= 4 * 32 and (np.abs(m1[seen]) <= 1).all()
  for run in (one, two):
    trackers = run.trainer.trackers
    assert float(trackers["weight/nat/mean"].result()) == 1.0  # never weighted
    assert float(trackers["method/reweighting_on"].result()) == 0.5
    # Burn-in steps have w = 1; MAIL's are in (0, 3), not normalised.
    assert float(trackers["weight/kl/max"].result()) > 1.0

  one.checkpointer.save(1)
  again = experiment.prepare(
      helpers.tiny_config("mail", "trades,digits",
                          **{"reweighting.burn_in_epochs": 1}),
      str(tmp_path / "default"))
  assert again.initial_epoch == 1
  np.testing.assert_array_equal(again.trainer.method.margin.numpy(), m1)
