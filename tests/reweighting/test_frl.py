"""FRL: the multiplier update, class weights and radii by hand; the hook on a
scripted validation; 1 device == 2 replicas; resume; configs and errors."""
import types

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from configs import frl as frl_config
from official.core import experiment
from official.reweighting import base
from official.reweighting import frl
from tests.core import helpers

# Three classes: clean 0.9 / 0.6 / 0.75, robust 0.5 / 0.2 / 0.5 (balanced:
# totals 0.75 and 0.4). Clean errors 0.1 / 0.4 / 0.25 (mean 0.25), boundary
# errors 0.4 / 0.4 / 0.25 (mean 0.35).
CLEAN, ROBUST = [0.9, 0.6, 0.75], [0.5, 0.2, 0.5]
LAM = [[0.1, 0.2, 0.0], [0.3, 0.1, 0.05], [0.0, 0.1, -0.1]]


def test_gaps_projection_weights_and_radii_by_hand():
  gap0, gap1 = frl.constraint_gaps(CLEAN, ROBUST, 0.75, 0.4, 0.1, 0.02)
  np.testing.assert_allclose(gap0, [-0.25, 0.05, -0.1], atol=1e-12)
  np.testing.assert_allclose(gap1, [0.03, 0.03, -0.12], atol=1e-12)
  lam0, lam1, lam2 = frl.update_multipliers(
      *LAM, gap0, gap1, rate1=0.5, rate2=1.0, limit=0.4, remargin=True)
  # λ0 + 0.5 γ0 = [-0.025, 0.225, -0.05] -> clamp: sum 0.225 <= 0.4 stays.
  np.testing.assert_allclose(lam0, [0.0, 0.225, 0.0], atol=1e-12)
  # λ1 + 2·0.5 γ1 = [0.33, 0.13, -0.07] -> [0.33, 0.13, 0], sum 0.46 > 0.4.
  np.testing.assert_allclose(lam1, [0.132 / 0.46, 0.052 / 0.46, 0.0],
                             atol=1e-12)
  np.testing.assert_allclose(lam2, [0.03, 0.13, -0.22], atol=1e-12)
  # w = 1/3 + λ − Σλ/3: sums to 1.
  np.testing.assert_allclose(frl.class_weights(lam0),
                             [0.2583333333, 0.4833333333, 0.2583333333])
  np.testing.assert_allclose(frl.class_weights(lam1),
                             [0.4869565217, 0.3130434783, 0.2])
  np.testing.assert_allclose(frl.epsilon_scale(lam2),
                             [np.exp(0.06), np.exp(0.26), 0.98])
  np.testing.assert_allclose(frl.epsilon_scale([2.0], 0.98, 3.0), [3.0])
  # Reweight: λ2 never moves.
  *_, lam2 = frl.update_multipliers(*LAM, gap0, gap1, rate1=0.5, rate2=1.0,
                                    limit=0.4, remargin=False)
  np.testing.assert_array_equal(lam2, LAM[2])


def test_rate_halves_every_40_frl_epochs():
  # The code halves before its 1-based epochs 40, 80: 0-based 39, 79.
  assert [frl.rate_at(0.05, e, 40) for e in (0, 38, 39, 78, 79)] == [
      0.05, 0.05, 0.025, 0.025, 0.0125]
  assert frl.rate_at(0.05, 500, 0) == 0.05


def _method(**options):
  cfg = ml_collections.ConfigDict({
      "name": "frl", "remargin": True, "tau0": 0.1, "tau1": 0.02,
      "rate1": 0.5, "rate2": 1.0, "limit": 0.4, "burn_in_epochs": 2,
      "rate_halving_epochs": 0, **options})
  config = ml_collections.ConfigDict({
      "objective": {"name": "trades", "beta": 1.5},
      "attack": {"epsilon": 0.1, "step_size": 0.02, "steps": 10}})
  method = frl.FRL(cfg, config=config,
                   data=types.SimpleNamespace(num_classes=3))
  method.build_state()
  return method


class _Run:
  """EpochContext stand-in: a scripted validation result."""

  def __init__(self):
    self.calls = []

  def validation(self, spec, epoch):
    self.calls.append((spec, epoch))
    return types.SimpleNamespace(clean=np.array(CLEAN), robust=np.array(ROBUST),
                                 clean_accuracy=0.75, robust_accuracy=0.4)


def test_hook_weights_and_budget_on_a_scripted_validation():
  method = _method()
  method.lam.assign(np.array(LAM, np.float32))
  run = _Run()
  method.on_epoch_begin(1, run)  # burn-in: nothing moves, no validation
  assert run.calls == []
  np.testing.assert_allclose(method.table.numpy(),
                             [[1 / 3] * 3, [1 / 3] * 3, [1.0] * 3])
  method.on_epoch_begin(2, run)
  spec, epoch = run.calls[0]
  assert epoch == 2 and (spec.loss, spec.steps, spec.epsilon,
                         spec.step_size) == ("ce", 20, 0.1, 0.02)
  np.testing.assert_allclose(method.lam.numpy()[1],
                             [0.132 / 0.46, 0.052 / 0.46, 0.0], atol=1e-7)
  labels = tf.constant([0, 1, 1, 2])
  ctx = base.StepContext(images=tf.zeros([4, 2, 2, 1]), labels=labels,
                         ids=tf.range(4), epoch=tf.constant(2),
                         step=tf.constant(0, tf.int64), global_batch_size=4,
                         attack=None)
  w = method.weights(ctx)
  # w0 = [0.258333, 0.483333, 0.483333, 0.258333] · 4 / 1.483333.
  np.testing.assert_allclose(w["nat"], np.array(
      [0.2583333, 0.4833333, 0.4833333, 0.2583333]) * 4 / 1.4833333, rtol=1e-5)
  np.testing.assert_allclose(w["kl"], np.array(
      [0.4869565, 0.3130435, 0.3130435, 0.2]) * 4 / 1.3130435, rtol=1e-5)
  eps, step = method.attack_budget(ctx)
  np.testing.assert_allclose(eps, 0.1 * np.array(
      [np.exp(0.06), np.exp(0.26), np.exp(0.26), 0.98]), rtol=1e-6)
  # Every example steps by the batch's largest radius / 5 (step / eps).
  np.testing.assert_allclose(step, [0.02 * np.exp(0.26)] * 4, rtol=1e-6)
  assert _method(remargin=False).attack_budget(ctx) is None


@pytest.mark.parametrize("key,value,message", [
    ("tau0", 1.5, r"reweighting.tau0 must be in \[0, 1\], got 1.5"),
    ("tau1", -0.1, r"reweighting.tau1 must be in \[0, 1\], got -0.1"),
    ("rate1", -0.05, r"reweighting.rate1 must be >= 0, got -0.05"),
    ("rate2", -1.0, r"reweighting.rate2 must be >= 0, got -1.0"),
    ("limit", 1.0, r"reweighting.limit must be in \[0, 1\) .*got 1.0"),
])
def test_bad_values_are_one_line_errors(key, value, message):
  with pytest.raises(ValueError, match=message):
    _method(**{key: value})


def test_configs_and_config_errors():
  c = frl_config.get_config()
  assert (c.objective.name, c.objective.beta, c.model.name) == (
      "trades", 1.5, "preact_resnet18")
  assert c.data.validation_per_class == 300 and c.epochs == 140
  assert (c.reweighting.tau0, c.reweighting.rate1, c.reweighting.limit,
          c.reweighting.remargin) == (0.1, 0.05, 0.5, False)
  c = frl_config.get_config("remargin,mnist10k")
  assert (c.reweighting.tau0, c.reweighting.tau1, c.reweighting.rate2,
          c.reweighting.eps_scale_max, c.reweighting.remargin) == (
              0.07, 0.07, 0.2, 3.0, True)
  assert (c.reweighting.burn_in_epochs, c.data.validation_per_class,
          c.epochs) == (5, 50, 10)
  hard = frl_config.get_config("reweight,mnist10k_hard")
  assert hard.reweighting.burn_in_epochs == 5 and hard.attack.epsilon == 0.3
  c.data.validation_per_class = 0
  with pytest.raises(ValueError, match=r"reweighting.name=frl needs a "
                     r"validation split: set data.validation_per_class > 0"):
    experiment.validate(c)
  c = helpers.tiny_config("frl", "digits", **{"objective.name": "at"})
  with pytest.raises(ValueError, match="needs objective.name 'trades'"):
    frl.FRL(c.reweighting, config=c, data=types.SimpleNamespace(num_classes=10))


def _tiny(distribute="default", epochs=2):
  return helpers.tiny_config("frl", "remargin,digits", distribute=distribute,
                             epochs=epochs, **{"reweighting.burn_in_epochs": 1,
                                               "reweighting.rate1": 0.5,
                                               "reweighting.rate2": 2.0})


def test_two_replicas_equal_one_device_and_resume_is_exact(tmp_path):
  one = helpers.fit_epochs(_tiny("default", 3), tmp_path / "one")
  two = helpers.fit_epochs(_tiny("mirrored", 3), tmp_path / "two")
  assert two.strategy.num_replicas_in_sync == 2
  lam = one.trainer.method.lam.numpy()
  assert np.abs(lam).sum() > 0  # the multipliers moved (epochs 2 and 3)
  np.testing.assert_allclose(two.trainer.method.lam.numpy(), lam, atol=1e-5)
  np.testing.assert_allclose(two.trainer.method.table.numpy(),
                             one.trainer.method.table.numpy(), atol=1e-5)
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  # Stopped after epoch 2, then the same command with 3 epochs: the epoch-3
  # update starts from the checkpointed multipliers.
  helpers.fit_epochs(_tiny("default", 2), tmp_path / "resumed")
  again = helpers.fit_epochs(_tiny("default", 3), tmp_path / "resumed")
  assert again.initial_epoch == 2
  np.testing.assert_allclose(again.trainer.method.lam.numpy(), lam, atol=1e-6)
  for a, b in zip(one.trainer.network.weights, again.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
