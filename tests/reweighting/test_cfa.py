"""CFA: class radii (CCM), class β and the 1 + β_y normalisation (CCR), the
FAWA gate by hand; t_k from the steps; 1 device == 2 replicas; resume."""
import types

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from configs import cfa as cfa_config
from official.core import experiment
from official.reweighting import base
from official.reweighting import cfa
from tests.core import helpers


def test_ccm_ccr_and_the_gate_by_hand():
  t = [0.2, 0.6, 0.4]
  np.testing.assert_allclose(cfa.class_epsilon(t, 0.5, 0.1), [0.07, 0.11, 0.09])
  beta_y = cfa.class_beta(t, 0.5, 6.0)
  np.testing.assert_allclose(beta_y, [4.2, 6.6, 5.4])
  # (CE + β_y KL) / (1 + β_y) with the objective's coefficients (1, β = 6).
  w_nat, w_kl = cfa.trades_weights(beta_y, 6.0)
  np.testing.assert_allclose(w_nat, [1 / 5.2, 1 / 7.6, 1 / 6.4], rtol=1e-6)
  np.testing.assert_allclose(w_kl, [4.2 / 6 / 5.2, 6.6 / 6 / 7.6,
                                    5.4 / 6 / 6.4], rtol=1e-6)
  w_nat, w_kl = cfa.trades_weights(beta_y, 6.0, normalise=False)
  np.testing.assert_allclose(w_nat, [1, 1, 1])
  np.testing.assert_allclose(w_kl, [0.7, 1.1, 0.9], rtol=1e-6)
  assert cfa.fawa_gate([0.3, 0.24, 0.5], 0.24)      # min == δ passes
  assert not cfa.fawa_gate([0.3, 0.2399, 0.5], 0.24)


def _config(objective="trades", **options):
  return ml_collections.ConfigDict({
      "objective": {"name": objective, "beta": 6.0},
      "attack": {"epsilon": 0.1, "step_size": 0.02, "steps": 10},
      "averaging": "ema",
      "reweighting": {"name": "cfa", "begin": 2, "threshold": 0.24,
                      **options}})


def _method(objective="trades", **options):
  config = _config(objective, **options)
  method = cfa.CFA(config.reweighting, config=config,
                   data=types.SimpleNamespace(num_classes=3))
  method.build_state()
  return method


def _ctx(epoch, labels, predictions=None):
  n = len(labels)
  ctx = base.StepContext(images=tf.zeros([n, 2, 2, 1]),
                         labels=tf.constant(labels), ids=tf.range(n),
                         epoch=tf.constant(epoch),
                         step=tf.constant(0, tf.int64), global_batch_size=n,
                         attack=None, primary_attack="train")
  if predictions is not None:
    ctx.adversarial_logits["train"] = tf.one_hot(predictions, 3)
  return ctx


class _Run:
  def __init__(self, *robust):
    self.robust, self.calls = list(robust), []

  def validation(self, spec, epoch):
    self.calls.append((spec, epoch))
    return types.SimpleNamespace(robust=np.array(self.robust.pop(0)))


def test_epoch_statistics_budget_weights_and_gate():
  method = _method()
  # One epoch: labels [0 0 1 2 2], adversarial predictions right on 1 0 1 1 0.
  method.on_epoch_begin(1, None)
  method.metrics(_ctx(1, [0, 0, 1, 2, 2], [0, 1, 1, 2, 0]), {})
  method.metrics(_ctx(1, [1], [1]), {})
  np.testing.assert_array_equal(method.correct.numpy(), [1, 2, 1])
  np.testing.assert_array_equal(method.seen.numpy(), [2, 2, 2])
  run = _Run([0.3, 0.25, 0.5])
  method.on_epoch_end(1, run)
  np.testing.assert_allclose(method.train_robust.numpy(), [0.5, 1.0, 0.5])
  assert method.seen.numpy().sum() == 0  # counters reset
  spec, epoch = run.calls[0]
  assert epoch == 2 and (spec.loss, spec.steps, spec.epsilon) == ("ce", 10, 0.1)
  assert method.accept_average(1)
  # Before `begin` (2): the configured radius and β.
  eps, step = method.attack_budget(_ctx(1, [0, 1, 2]))
  np.testing.assert_allclose(eps, [0.1] * 3)
  np.testing.assert_allclose(step, [0.02] * 3)
  w = method.weights(_ctx(1, [0, 1]))
  np.testing.assert_allclose(w["nat"], [1 / 7] * 2, rtol=1e-6)
  np.testing.assert_allclose(w["kl"], [1 / 7] * 2, rtol=1e-6)
  # From `begin`: ε_k = (0.5 + t_k) 0.1, β_k = (0.5 + t_k) 6.
  eps, step = method.attack_budget(_ctx(2, [0, 1, 2]))
  np.testing.assert_allclose(eps, [0.1, 0.15, 0.1], rtol=1e-6)
  np.testing.assert_allclose(step, [0.02] * 3)
  w = method.weights(_ctx(2, [0, 1]))
  np.testing.assert_allclose(w["nat"], [1 / 7, 1 / 10], rtol=1e-6)
  np.testing.assert_allclose(w["kl"], [1 / 7, 9 / 6 / 10], rtol=1e-6)
  # A class absent from an epoch keeps its t; a failed gate closes.
  method.on_epoch_begin(2, None)
  method.metrics(_ctx(2, [0, 1], [1, 1]), {})
  method.on_epoch_end(2, _Run([0.3, 0.2, 0.5]))
  np.testing.assert_allclose(method.train_robust.numpy(), [0.0, 1.0, 0.5])
  assert not method.accept_average(2)
  # AT: radii only, no term weights; without FAWA every epoch is accepted.
  at = _method("at", ccr=False, fawa=False)
  assert at.weights(_ctx(3, [0])) == {}
  at.on_epoch_end(0, None)
  assert at.accept_average(0)


@pytest.mark.parametrize("objective,options,message", [
    ("at", {"ccr": True}, r"reweighting.ccr needs objective.name 'trades'"),
    ("mart", {}, r"reweighting.name=cfa needs objective.name 'at' or 'trades'"),
    ("trades", {"threshold": 1.2}, r"reweighting.threshold must be \[0, 1\], "
     r"got 1.2"),
    ("trades", {"lambda1": 0.0}, r"reweighting.lambda1 must be > 0, got 0.0"),
    ("trades", {"lambda2": -0.1}, r"reweighting.lambda2 must be >= 0"),
])
def test_bad_values_are_one_line_errors(objective, options, message):
  with pytest.raises(ValueError, match=message):
    _method(objective, **options)


def test_fawa_needs_the_ema_average_and_a_validation_split():
  config = _config()
  config.averaging = "none"
  with pytest.raises(ValueError, match=r"reweighting.fawa needs averaging "
                     r"'ema' \(the average it gates\), got 'none'"):
    cfa.CFA(config.reweighting, config=config,
            data=types.SimpleNamespace(num_classes=3))
  c = cfa_config.get_config("at,mnist10k")
  c.data.validation_per_class = 0
  with pytest.raises(ValueError, match=r"reweighting.name=cfa needs a "
                     r"validation split"):
    experiment.validate(c)
  c.reweighting.fawa = False
  experiment.validate(c)  # CCM alone needs no validation


def test_configs():
  c = cfa_config.get_config()
  assert (c.objective.name, c.objective.beta, c.model.name, c.epochs,
          c.optimizer.lr_boundaries, c.optimizer.weight_decay) == (
              "trades", 6.0, "preact_resnet18", 200, (100, 150), 5e-4)
  r = c.reweighting
  assert (r.lambda1, r.lambda2, r.begin, r.threshold, r.ccm, r.ccr, r.fawa,
          r.normalise) == (0.5, 0.5, 10, 0.24, True, True, True, True)
  assert (c.averaging, c.averaging_decay, c.averaging_start_epoch,
          c.data.validation_per_class, c.eval.select) == (
              "ema", 0.88, 0, 100, "best_val")
  c = cfa_config.get_config("at,mnist10k_hard")
  assert (c.objective.name, c.reweighting.ccr, c.reweighting.begin,
          c.averaging_start_epoch, c.data.validation_per_class,
          c.eval.select, c.attack.epsilon) == ("at", False, 5, 5, 50, "last",
                                               0.3)


def _tiny(distribute="default", epochs=3, threshold=0.0):
  return helpers.tiny_config("cfa", "trades,digits", distribute=distribute,
                             epochs=epochs, averaging_start_epoch=0, **{
                                 "reweighting.begin": 1,
                                 "reweighting.threshold": threshold})


def _average(run):
  return [v.numpy() for v in run.trainer.averager.average]


def test_two_replicas_equal_one_device_and_resume_is_exact(tmp_path):
  one = helpers.fit_epochs(_tiny("default"), tmp_path / "one", 3)
  two = helpers.fit_epochs(_tiny("mirrored"), tmp_path / "two", 3)
  assert two.strategy.num_replicas_in_sync == 2
  t = one.trainer.method.train_robust.numpy()
  np.testing.assert_array_equal(two.trainer.method.train_robust.numpy(), t)
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  # threshold 0: every epoch passes the gate, all three are averaged.
  assert int(one.trainer.averager.count.numpy()) == 3
  for a, b in zip(_average(one), _average(two)):
    np.testing.assert_allclose(a, b, atol=1e-4)
  helpers.fit_epochs(_tiny("default", 2), tmp_path / "resumed", 3)
  again = helpers.fit_epochs(_tiny("default", 3), tmp_path / "resumed", 3)
  assert again.initial_epoch == 2
  np.testing.assert_array_equal(again.trainer.method.train_robust.numpy(), t)
  assert int(again.trainer.averager.count.numpy()) == 3
  for a, b in zip(one.trainer.network.weights, again.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
  for a, b in zip(_average(one), _average(again)):
    np.testing.assert_allclose(a, b, atol=1e-5)


class _Gate:
  """Validator.__call__ stand-in: worst class robust 0.3 / 0.1 / 0.5 after
  epochs 1 / 2 / 3 (the network's own weights, as FAWA reads them)."""

  def __init__(self):
    self.networks = []

  def __call__(self, validator, spec, epoch, network=None):
    self.networks.append(network)
    robust = np.full(10, 0.9)
    robust[3] = {1: 0.3, 2: 0.1, 3: 0.5}[epoch]
    return types.SimpleNamespace(robust=robust)


def test_the_gate_feeds_the_average_only_accepted_epochs(tmp_path, monkeypatch):
  """δ = 0.24: epochs 1 and 3 join the EMA (decay 0.88), epoch 2 does not:
  average = 0.88·θ1 + 0.12·θ3, with θ1, θ3 the weights after those epochs."""
  from official.evaluation import validation as validation_lib
  gate = _Gate()
  monkeypatch.setattr(validation_lib.Validator, "__call__",
                      lambda self, spec, epoch, network=None: gate(
                          self, spec, epoch, network))
  run1 = helpers.fit_epochs(_tiny("default", 1, 0.24), tmp_path / "run", 3)
  theta1 = [v.numpy().copy() for v in run1.trainer.averager.sources]
  run = helpers.fit_epochs(_tiny("default", 3, 0.24), tmp_path / "run", 3)
  theta3 = [v.numpy() for v in run.trainer.averager.sources]
  assert gate.networks == [None, None, None]  # the trained network itself
  averager = run.trainer.averager
  assert int(averager.count.numpy()) == 2
  assert (int(averager.first_epoch.numpy()), int(averager.last_epoch.numpy())
          ) == (0, 2)
  for avg, a, b in zip(_average(run), theta1, theta3):
    np.testing.assert_allclose(avg, 0.88 * a + 0.12 * b, rtol=1e-5, atol=1e-6)
