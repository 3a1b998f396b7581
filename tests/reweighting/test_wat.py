"""WAT: validation costs and the Hedge weights by hand; the hook on a
scripted validation; per-example weights; 1 device == 2 replicas; resume."""
import types

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from configs import wat as wat_config
from official.reweighting import base
from official.reweighting import wat
from tests.core import helpers


def test_costs_and_hedge_by_hand():
  # β = 2: c_k = CE_k + 2 KL_k; the last entry from the overall means.
  cost = wat.costs([0.5, 1.0], [0.1, 0.3], 0.75, 0.2, beta=2.0)
  np.testing.assert_allclose(cost, [0.7, 1.6, 1.15])
  # w = 2 exp(C) / Σ exp(C): e^0.7, e^1.6, e^1.15 over 10.124978.
  np.testing.assert_allclose(wat.hedge_weights(cost, 1.0, 2),
                             [0.397779, 0.978379, 0.623842], atol=2e-6)
  # A common shift of the costs changes nothing; weights sum to K.
  np.testing.assert_allclose(wat.hedge_weights(cost + 0.3, 1.0, 2),
                             wat.hedge_weights(cost, 1.0, 2))
  w = wat.hedge_weights([1.7, 1.6, 1.65], 1.0, 2)
  np.testing.assert_allclose(w, [0.700264, 0.633625, 0.666111], atol=2e-6)
  assert w.sum() == pytest.approx(2.0)
  # No overflow for large cumulative costs.
  assert np.isfinite(wat.hedge_weights([1e4, 1e4 + 1, 0.0], 0.1, 2)).all()


def _method(burn_in=1):
  cfg = ml_collections.ConfigDict({"name": "wat", "eta": 1.0,
                                   "burn_in_epochs": burn_in})
  config = ml_collections.ConfigDict({
      "objective": {"name": "trades", "beta": 2.0},
      "attack": {"epsilon": 0.1, "step_size": 0.02, "steps": 10}})
  method = wat.WAT(cfg, config=config, data=types.SimpleNamespace(num_classes=2))
  method.build_state()
  return method


class _Run:
  def __init__(self, *results):
    self.results, self.calls = list(results), []

  def validation(self, spec, epoch):
    self.calls.append((spec, epoch))
    nat, kl = self.results.pop(0)
    return types.SimpleNamespace(
        losses={"nat_ce": np.array(nat), "kl": np.array(kl)},
        mean_losses={"nat_ce": float(np.mean(nat)), "kl": float(np.mean(kl))})


def _ctx(epoch, labels):
  return base.StepContext(images=tf.zeros([len(labels), 2, 2, 1]),
                          labels=tf.constant(labels), ids=tf.range(len(labels)),
                          epoch=tf.constant(epoch),
                          step=tf.constant(0, tf.int64),
                          global_batch_size=len(labels), attack=None)


def test_hook_and_weights_on_a_scripted_validation():
  method = _method(burn_in=1)
  run = _Run(([0.5, 1.0], [0.1, 0.3]), ([1.5, 0.0], [0.0, 0.0]))
  # Burn-in: plain TRADES, no validation.
  method.on_epoch_end(0, run)
  assert run.calls == []
  w = method.weights(_ctx(0, [0, 1, 1]))
  np.testing.assert_array_equal(w["nat"], [1.0, 1.0, 1.0])
  # First WAT epoch: every weight 1 (class 1 + average 1 = 2), as the code.
  np.testing.assert_array_equal(method.weights(_ctx(1, [0, 1]))["kl"], [2, 2])
  method.on_epoch_end(1, run)
  spec, epoch = run.calls[0]
  assert epoch == 2 and (spec.loss, spec.random_start, spec.steps) == (
      "kl", "gaussian", 10)
  np.testing.assert_allclose(method.cumulative.numpy(), [0.7, 1.6, 1.15])
  w = method.class_weights.numpy()
  np.testing.assert_allclose(w, [0.397779, 0.978379, 0.623842], atol=2e-6)
  got = method.weights(_ctx(2, [0, 1, 1]))
  np.testing.assert_allclose(got["nat"], [w[0] + w[2], w[1] + w[2],
                                          w[1] + w[2]], rtol=1e-6)
  np.testing.assert_array_equal(got["nat"], got["kl"])
  # Second update: costs [1.5, 0, 0.75] -> cumulative [2.2, 1.6, 1.9].
  method.on_epoch_end(2, run)
  np.testing.assert_allclose(method.cumulative.numpy(), [2.2, 1.6, 1.9],
                             atol=1e-12)
  np.testing.assert_allclose(method.class_weights.numpy(),
                             wat.hedge_weights([2.2, 1.6, 1.9], 1.0, 2),
                             rtol=1e-6)


def test_configs_and_errors():
  c = wat_config.get_config()
  assert (c.objective.name, c.objective.beta, c.model.name, c.epochs,
          c.optimizer.weight_decay, c.reweighting.eta,
          c.reweighting.burn_in_epochs, c.data.validation_per_class) == (
              "trades", 6.0, "resnet18", 100, 2e-4, 0.1, 0, 300)
  c = wat_config.get_config("mnist10k_hard")
  assert (c.reweighting.burn_in_epochs, c.data.validation_per_class) == (5, 50)
  with pytest.raises(ValueError, match="reweighting.eta must be > 0"):
    cfg = ml_collections.ConfigDict({"name": "wat", "eta": -0.1})
    wat.WAT(cfg, config=c, data=types.SimpleNamespace(num_classes=10))


def _tiny(distribute="default", epochs=3):
  return helpers.tiny_config("wat", "digits", distribute=distribute,
                             epochs=epochs, **{"reweighting.burn_in_epochs": 1})


def test_two_replicas_equal_one_device_and_resume_is_exact(tmp_path):
  # 3 steps an epoch: TRADES alone drifts ~1e-4 apart on 2 replicas in 18.
  one = helpers.fit_epochs(_tiny("default"), tmp_path / "one", 3)
  two = helpers.fit_epochs(_tiny("mirrored"), tmp_path / "two", 3)
  assert two.strategy.num_replicas_in_sync == 2
  cumulative = one.trainer.method.cumulative.numpy()
  assert cumulative.min() > 0  # two validations (after epochs 2 and 3)
  # Mean validation losses: float sums in another order (weights ~1e-5 apart).
  np.testing.assert_allclose(two.trainer.method.cumulative.numpy(), cumulative,
                             rtol=3e-4)
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  helpers.fit_epochs(_tiny("default", 2), tmp_path / "resumed", 3)
  again = helpers.fit_epochs(_tiny("default", 3), tmp_path / "resumed", 3)
  assert again.initial_epoch == 2
  np.testing.assert_allclose(again.trainer.method.cumulative.numpy(),
                             cumulative, rtol=1e-6)
  np.testing.assert_allclose(again.trainer.method.class_weights.numpy(),
                             one.trainer.method.class_weights.numpy(),
                             rtol=1e-6)
  for a, b in zip(one.trainer.network.weights, again.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
