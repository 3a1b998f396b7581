"""IAAT: the eps update rule by hand, the budget wiring on scripted attack
outcomes, 1 device == 2 replicas (network and eps memory), resume, artifacts."""
import json
import types

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from configs import iaat as iaat_config
from official.core import experiment
from official.reweighting import base
from official.reweighting import iaat
from tests.core import helpers


def test_update_rule_every_branch_by_hand():
  #          up     stay   down   clean-wrong floor  up (at-eps not robust)
  eps = [0.05, 0.05, 0.05, 0.05, 0.01, 0.05]
  robust_at = [True, True, False, True, False, False]
  robust_above = [True, False, False, True, False, True]
  clean = [True, True, True, False, True, True]
  new = iaat.update_rule(eps, robust_at, robust_above, clean, gamma=0.02,
                         ema=0.1)
  # 0.1 * candidate + 0.9 * eps, candidate 0.07 / 0.05 / 0.03 / 0 / max(-0.01,
  # 0) / 0.07.
  np.testing.assert_allclose(new, [0.052, 0.05, 0.048, 0.045, 0.009, 0.052],
                             atol=1e-7)


def test_update_rule_cap_and_ema():
  eps, yes = [0.1, 0.1], [True, True]
  # Uncapped: 0.1 * 0.12 + 0.09 = 0.102; capped candidate 0.11 -> 0.101.
  np.testing.assert_allclose(
      iaat.update_rule(eps, yes, yes, yes, gamma=0.02, ema=0.1), [0.102] * 2,
      atol=1e-7)
  np.testing.assert_allclose(
      iaat.update_rule(eps, yes, yes, yes, gamma=0.02, ema=0.1, cap=0.11),
      [0.101] * 2, atol=1e-7)
  # ema = 1: the candidate itself.
  np.testing.assert_allclose(
      iaat.update_rule(eps, yes, [False, False], [True, False], gamma=0.02,
                       ema=1.0), [0.1, 0.0], atol=1e-7)


def test_warmup_rule_and_step_sizes():
  np.testing.assert_allclose(iaat.warmup_rule([True, False], 8 / 255),
                             [8 / 255, 0.0])
  np.testing.assert_allclose(iaat.warmup_rule([True, False], 0.1, cap=0.05),
                             [0.05, 0.0])
  # max(2 eps / K, floor), K = 10: the floor wins up to eps = 5 * floor.
  np.testing.assert_allclose(iaat.step_sizes([0.0, 0.05, 0.1, 0.2], 10, 0.02),
                             [0.02, 0.02, 0.02, 0.04], atol=1e-7)


def _method(**options):
  cfg = ml_collections.ConfigDict({"name": "iaat", "warmup_epochs": 2,
                                   "gamma": 0.02, "ema": 0.1, **options})
  config = ml_collections.ConfigDict(
      {"attack": {"epsilon": 0.1, "step_size": 0.01, "steps": 10}})
  data = types.SimpleNamespace(num_ids=8, train_ids=np.arange(8))
  method = iaat.IAAT(cfg, config=config, data=data)
  method.build_state()
  return method


class _ScriptedAttacks:
  """ctx.attack stand-in: final-iterate correctness per attack name; and
  ctx.attack_forward's: the clean forward's correctness ("clean")."""

  def __init__(self, correct):
    self.correct = correct   # {spec name or "clean": [B] bool}
    self.calls = {}          # {spec name: (epsilon, step_size)}
    self.forward_modes = []  # BN mode of every clean forward

  def forward(self, bn):
    self.forward_modes.append(bn)
    return lambda x: tf.one_hot(
        tf.where(self.correct["clean"], 0, 1), 2)  # labels are 0

  def __call__(self, spec, x, y, epsilon=None, step_size=None):
    self.calls[spec.name] = (np.asarray(epsilon), np.asarray(step_size))
    logits = tf.one_hot(tf.where(self.correct[spec.name], y, 1 - y), 2)
    return x, {"logits": logits}


def _ctx(attack, epoch, ids):
  n = len(ids)
  return base.StepContext(
      images=tf.zeros([n, 2, 2, 1]), labels=tf.zeros([n], tf.int32),
      ids=tf.constant(ids, tf.int32), epoch=tf.constant(epoch, tf.int32),
      step=tf.constant(0, tf.int64), global_batch_size=n, attack=attack,
      attack_forward=attack.forward)


def test_budget_warmup_then_search_on_scripted_outcomes():
  method = _method()
  ids = [5, 1, 3, 6]
  clean = [True, False, True, True]
  attack = _ScriptedAttacks({"clean": clean})
  eps, step = method.attack_budget(_ctx(attack, epoch=1, ids=ids))
  # Warm-up: eps_max where the clean input is right; no attack ran (the
  # clean check is one plain forward, frozen BN: no backward pass).
  np.testing.assert_allclose(eps, [0.1, 0.0, 0.1, 0.1])
  np.testing.assert_allclose(step, [0.02, 0.01, 0.02, 0.02])  # 2 eps / 10
  assert attack.calls == {} and attack.forward_modes == ["frozen"]
  memory = method.memory.numpy()
  np.testing.assert_allclose(memory[ids], [0.1, 0.0, 0.1, 0.1])
  assert memory[[0, 2, 4, 7]].tolist() == [0, 0, 0, 0]  # not visited

  # After warm-up (epoch 2): up, (clean-wrong), stay, down.
  attack = _ScriptedAttacks({
      "clean": clean,
      "iaat_search_at_eps": [True, True, True, False],
      "iaat_search_above_eps": [True, True, False, False]})
  eps, step = method.attack_budget(_ctx(attack, epoch=2, ids=ids))
  expected = [0.102, 0.0, 0.1, 0.098]  # 0.1 c + 0.9 eps
  np.testing.assert_allclose(eps, expected, atol=1e-7)
  np.testing.assert_allclose(method.memory.numpy()[ids], expected, atol=1e-7)
  np.testing.assert_allclose(step, np.maximum(2 * np.array(expected) / 10,
                                              0.01), atol=1e-7)
  # The two searches ran at eps_i and eps_i + gamma, each with its own step.
  at, at_step = attack.calls["iaat_search_at_eps"]
  above, above_step = attack.calls["iaat_search_above_eps"]
  np.testing.assert_allclose(at, [0.1, 0.0, 0.1, 0.1])
  np.testing.assert_allclose(above, [0.12, 0.02, 0.12, 0.12], atol=1e-7)
  np.testing.assert_allclose(at_step, [0.02, 0.01, 0.02, 0.02], atol=1e-7)
  np.testing.assert_allclose(above_step, [0.024, 0.01, 0.024, 0.024],
                             atol=1e-7)


def test_options_and_errors():
  assert _method(min_step=0.005).min_step == 0.005
  assert _method().min_step == 0.01  # None: the training step
  # BN mode of the clean check and both searches (the training attack is the
  # trainer's, always frozen).
  frozen, train = _method(), _method(search_bn="train")
  for method, bn in ((frozen, "frozen"), (train, "batch")):
    assert [method.clean_bn, *(s.bn for s in method.search_specs)] == [bn] * 3
  with pytest.raises(ValueError, match=r"unknown reweighting.search_bn 'x'"):
    _method(search_bn="x")
  with pytest.raises(ValueError, match=r"reweighting.gamma out of range"):
    _method(gamma=0.0)


def test_configs():
  c = iaat_config.get_config()
  assert (c.epochs, c.batch_size, c.optimizer.lr_boundaries,
          c.optimizer.lr_decay, c.optimizer.weight_decay) == (
              110, 256, (70, 90, 100), 0.2, 5e-4)
  assert (c.model.name, c.model.depth, c.model.width) == ("wide_resnet", 34, 10)
  assert c.reweighting.gamma == pytest.approx(1.9 / 255)
  assert c.reweighting.warmup_epochs == 10 and c.reweighting.min_step is None
  assert "eps_curve" in c.eval.reports
  for preset in ("mnist10k", "digits"):
    c = iaat_config.get_config(preset)
    assert (c.reweighting.warmup_epochs, c.reweighting.gamma) == (5, 0.024)


def _train(distribute, tmp_path, steps=4):
  """Warm-up for steps 1-2 (epoch 0), the search for 3-4 (epoch 1)."""
  config = helpers.tiny_config("iaat", "digits", distribute=distribute,
                               **{"reweighting.warmup_epochs": 1})
  return helpers.fit_steps(config, tmp_path / distribute, steps,
                           steps_per_epoch=2)


def test_two_replicas_equal_one_device_and_resume(tmp_path):
  one = _train("default", tmp_path)
  two = _train("mirrored", tmp_path)
  assert two.strategy.num_replicas_in_sync == 2
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  m1, m2 = one.trainer.method.memory.numpy(), two.trainer.method.memory.numpy()
  np.testing.assert_allclose(m1, m2, atol=1e-6)
  copies = two.trainer.method.memory.variable.values
  np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())
  # 128 distinct ids: warm-up gives 0.1 or 0, the first search from 0 gives
  # 0.1 * gamma (up) or 0.
  values = set(np.unique(np.round(m1.astype(np.float64), 6)).tolist())
  assert values == {0.0, 0.0024, 0.1}
  assert (m1 > 0).sum() <= 4 * 32
  np.testing.assert_allclose(
      one.trainer.trackers["method/eps_mean"].result().numpy(),
      two.trainer.trackers["method/eps_mean"].result().numpy(), rtol=1e-5)

  # Resume: the memory comes back from the checkpoint.
  one.checkpointer.save(1)
  config = helpers.tiny_config("iaat", "digits",
                               **{"reweighting.warmup_epochs": 1})
  again = experiment.prepare(config, str(tmp_path / "default"))
  assert again.initial_epoch == 1
  np.testing.assert_array_equal(again.trainer.method.memory.numpy(), m1)

  # Artifacts and the per-epoch summaries.
  method = again.trainer.method
  method.save_artifacts(str(tmp_path / "artifacts"))
  np.testing.assert_array_equal(np.load(tmp_path / "artifacts" / "eps.npy"),
                                m1)
  saved = np.load(tmp_path / "artifacts" / "eps_train.npz")
  np.testing.assert_array_equal(saved["ids"], again.data.train_ids)
  np.testing.assert_array_equal(saved["eps"], m1[again.data.train_ids])
  np.testing.assert_array_equal(
      saved["labels"], again.data.splits.y_train[again.data.train_ids])
  summaries = method.epoch_summaries()
  assert summaries["eps"].shape == (again.data.num_train,)
  assert summaries["eps_mean"] == pytest.approx(m1[again.data.train_ids].mean())
  assert np.ndim(summaries["eps_median"]) == 0
  with open(tmp_path / "artifacts" / "eps_summary.json") as f:
    assert json.load(f)["eps_mean"] == pytest.approx(summaries["eps_mean"])


def test_train_mode_search_on_a_batchnorm_model(tmp_path):
  """search_bn=train end to end (BN model, XLA PGD): warm-up, then a search;
  the memory takes only the values the rule allows from its start."""
  config = helpers.tiny_config("iaat", "digits", xla="on", **{
      "reweighting.warmup_epochs": 1, "reweighting.search_bn": "train"})
  config.model = ml_collections.ConfigDict(
      {"name": "wide_resnet", "depth": 10, "width": 1})
  run = helpers.fit_steps(config, tmp_path, 4, steps_per_epoch=2)
  memory = run.trainer.method.memory.numpy()
  values = set(np.unique(np.round(memory.astype(np.float64), 6)).tolist())
  assert values <= {0.0, 0.0024, 0.1} and 0.1 in values
  assert "iaat_search_at_eps" in {s.name for s, _ in run.trainer._attacks}
