"""GAIRAT: weight functions by hand, global normalisation, burn-in, λ = +inf
is plain AT (a trained run equals an `at` run), 1 device == 2 replicas,
resume."""
import math
import types

import numpy as np
import pytest
import tensorflow as tf

from configs import gairat as gairat_config
from official.core import experiment
from official.reweighting import base
from official.reweighting import gairat
from tests.core import helpers

KAPPA = [0, 2, 5, 8, 10]  # K = 10, λ = -1: z = λ + 5(1 - 2κ/K) = 4 - κ


def test_weight_functions_by_hand():
  # (1 + tanh z)/2 at z = 4, 2, -1, -4, -6.
  np.testing.assert_allclose(
      gairat.geometry_weights(KAPPA, 10, -1.0, "tanh"),
      [0.9996646, 0.9820138, 0.1192029, 3.353501e-4, 6.144175e-6], rtol=1e-5)
  np.testing.assert_allclose(
      gairat.geometry_weights(KAPPA, 10, -1.0, "sigmoid"),
      [0.9820138, 0.8807971, 0.2689414, 0.0179862, 0.0024726], rtol=1e-5)
  # (K + 1 - κ) / (K + 1), no λ.
  np.testing.assert_allclose(
      gairat.geometry_weights(KAPPA, 10, -1.0, "discrete"),
      [11 / 11, 9 / 11, 6 / 11, 3 / 11, 1 / 11], rtol=1e-6)
  # λ = +inf: every weight exactly 1 (plain AT).
  for function in ("tanh", "sigmoid"):
    np.testing.assert_array_equal(
        gairat.geometry_weights(KAPPA, 10, math.inf, function), 1.0)


def test_normalised_over_the_batch():
  omega = gairat.geometry_weights(KAPPA, 10, -1.0, "tanh")
  w = gairat.normalise(omega, 5)
  assert float(tf.reduce_sum(w)) == pytest.approx(5.0, rel=1e-6)
  # sum omega = 2.1012229: w = 5 omega / sum omega.
  np.testing.assert_allclose(w, [2.378769, 2.336767, 0.2836513, 7.979880e-4,
                                 1.462047e-5], rtol=1e-5)


def test_normalised_over_the_global_batch_under_two_replicas():
  strategy = experiment.make_strategy("mirrored")
  assert strategy.num_replicas_in_sync == 2
  omega = tf.constant([0.5, 1.0, 2.0, 4.0, 1.0, 1.0, 3.0, 7.5])

  @tf.function
  def run():
    def replica():
      i = tf.distribute.get_replica_context().replica_id_in_sync_group
      return gairat.normalise(omega[4 * i:4 * i + 4], 8)
    return strategy.run(replica)

  w = np.concatenate([v.numpy() for v in
                      strategy.experimental_local_results(run())])
  np.testing.assert_allclose(w, omega.numpy() * 8 / 20.0, rtol=1e-6)
  assert w.sum() == pytest.approx(8.0)


def _method(**options):
  config = gairat_config.get_config("digits")
  config.attack.steps = 10
  for key, value in options.items():
    if key.startswith("objective."):
      config.objective[key.split(".", 1)[1]] = value
    else:
      config.reweighting[key] = value
  data = types.SimpleNamespace(num_ids=16, train_ids=np.arange(16))
  method = gairat.GAIRAT(config.reweighting, config=config, data=data)
  method.build_state()
  return method


def _ctx(epoch, count, first=None):
  n = len(count)
  stats = {"correct_count": tf.constant(count, tf.int32),
           "kappa_first": tf.constant(first or count, tf.int32)}
  return base.StepContext(
      images=tf.zeros([n, 2, 2, 1]), labels=tf.zeros([n], tf.int32),
      ids=tf.range(n), epoch=tf.constant(epoch, tf.int32),
      step=tf.constant(0, tf.int64), global_batch_size=n, attack=None,
      attack_stats={"train_pgd_ce": stats}, primary_attack="train_pgd_ce")


def test_method_weights_burn_in_and_kappa_choice():
  method = _method(burn_in_epochs=2)
  assert method.term == "adv"
  # Burn-in (epochs 0, 1): plain AT.
  np.testing.assert_array_equal(method.weights(_ctx(1, KAPPA))["adv"], 1.0)
  w = method.weights(_ctx(2, KAPPA))["adv"]
  np.testing.assert_allclose(w, [2.378769, 2.336767, 0.2836513, 7.979880e-4,
                                 1.462047e-5], rtol=1e-5)
  # first_hit reads the paper's κ; count the official one.
  first = [10, 10, 10, 10, 10]
  method = _method(kappa="first_hit")
  np.testing.assert_allclose(method.weights(_ctx(0, KAPPA, first))["adv"], 1.0,
                             rtol=1e-6)  # equal κ: uniform weights
  # Metrics: mean κ, and the κ memory for the epoch histograms.
  metrics = method.metrics(_ctx(0, KAPPA, first), {})
  assert float(metrics["kappa_mean"]) == pytest.approx(10.0)
  summaries = method.epoch_summaries()
  np.testing.assert_array_equal(summaries["kappa"], [10] * 5)  # 5 of 16 seen
  # λ = +inf switches the weights off for every function.
  method = _method(lam=math.inf, function="discrete")
  np.testing.assert_array_equal(method.weights(_ctx(3, KAPPA))["adv"], 1.0)
  # TRADES: the KL term is weighted.
  assert _method(**{"objective.name": "trades"}).term == "kl"


def test_option_errors():
  with pytest.raises(ValueError, match="unknown reweighting.function 'x'"):
    _method(function="x")
  with pytest.raises(ValueError, match="unknown reweighting.kappa 'x'"):
    _method(kappa="x")
  with pytest.raises(ValueError, match="reweighting.term 'nat' is not a term"):
    _method(term="nat")


def test_configs():
  c = gairat_config.get_config()
  assert (c.model.name, c.model.depth, c.model.width) == ("wide_resnet", 34, 10)
  assert (c.epochs, c.optimizer.learning_rate, c.optimizer.lr_boundaries,
          c.optimizer.weight_decay) == (120, 0.1, (60, 90), 2e-4)
  assert (c.reweighting.burn_in_epochs, c.reweighting.lam,
          c.reweighting.function, c.reweighting.kappa) == (60, -1.0, "tanh",
                                                            "count")
  c = gairat_config.get_config("resnet18")
  assert (c.model.name, c.epochs, c.optimizer.lr_boundaries,
          c.reweighting.burn_in_epochs) == ("resnet18", 100, (30, 60), 30)
  for preset in ("digits", "mnist10k"):
    c = gairat_config.get_config(preset)
    assert (c.reweighting.burn_in_epochs, c.reweighting.lam) == (5, -1.0)


def _train(tmp_path, name, method="gairat", steps=4, **overrides):
  config = helpers.tiny_config(method, "digits", **overrides)
  return helpers.fit_steps(config, tmp_path / name, steps, steps_per_epoch=2)


def test_lambda_inf_trains_exactly_as_at(tmp_path):
  plain = _train(tmp_path, "at", method="at", steps=3)
  inf = _train(tmp_path, "inf", steps=3, **{"reweighting.lam": math.inf,
                                            "reweighting.burn_in_epochs": 0})
  # Same training settings: only the method (and eval attacks) differ.
  a, b = plain.config.to_dict(), inf.config.to_dict()
  for c in (a, b):
    del c["reweighting"], c["eval"]
  assert a == b
  for v, w in zip(plain.trainer.network.weights, inf.trainer.network.weights):
    np.testing.assert_array_equal(v.numpy(), w.numpy())


def test_two_replicas_equal_one_device_and_resume(tmp_path):
  # Burn-in for steps 1-2 (epoch 0), GAIRAT for 3-4.
  options = {"reweighting.burn_in_epochs": 1}
  one = _train(tmp_path, "default", distribute="default", **options)
  two = _train(tmp_path, "mirrored", distribute="mirrored", **options)
  assert two.strategy.num_replicas_in_sync == 2
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  k1, k2 = one.trainer.method.kappa.numpy(), two.trainer.method.kappa.numpy()
  np.testing.assert_array_equal(k1, k2)
  assert np.isfinite(k1).sum() <= 4 * 32 and np.isfinite(k1).sum() >= 32
  for run in (one, two):
    trackers = run.trainer.trackers
    # Mean 1 over every (global) batch, reweighted after the burn-in.
    assert float(trackers["weight/adv/mean"].result()) == pytest.approx(1.0)
    assert float(trackers["weight/adv/max"].result()) > 1.0
    assert float(trackers["method/reweighting_on"].result()) == 0.5
  np.testing.assert_allclose(
      one.trainer.trackers["method/kappa_mean"].result().numpy(),
      two.trainer.trackers["method/kappa_mean"].result().numpy(), rtol=1e-6)

  one.checkpointer.save(1)
  again = experiment.prepare(helpers.tiny_config("gairat", "digits", **options),
                             str(tmp_path / "default"))
  assert again.initial_epoch == 1
  np.testing.assert_array_equal(again.trainer.method.kappa.numpy(), k1)
