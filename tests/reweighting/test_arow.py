"""ARoW: the weighted KL term by hand, its undetached weight's gradient
against finite differences, the configs, 1 device == 2 replicas, resume."""
import types

import numpy as np
import pytest
import tensorflow as tf

from configs import arow as arow_config
from official.core import experiment
from official.reweighting import arow
from official.reweighting import base
from tests.core import helpers

NAT = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.5, 0.5, 0.5]])
ADV = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [2.0, 0.0, -1.0]])
LABELS = np.array([0, 1, 2], np.int32)


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _arow_kl_numpy(nat, adv, labels):
  p, q = _softmax(nat), _softmax(adv)
  kl = (p * (np.log(p) - np.log(q))).sum(-1)
  return kl * (1.0 - q[np.arange(len(labels)), labels])


def _method(objective="trades"):
  config = types.SimpleNamespace(objective=types.SimpleNamespace(name=objective))
  data = types.SimpleNamespace(num_ids=8, train_ids=np.arange(8))
  m = arow.ARoW({}, config=config, data=data)
  m.build_state()
  return m


def _ctx(nat, adv, dtype=tf.float32):
  return base.StepContext(
      images=None, labels=tf.constant(LABELS), ids=tf.constant([4, 0, 2]),
      epoch=tf.constant(0), step=tf.constant(0, tf.int64), global_batch_size=3,
      attack=None, natural_logits=tf.constant(nat, dtype),
      adversarial_logits={"train_pgd_kl": adv}, primary_attack="train_pgd_kl")


def test_weighted_kl_term_by_hand():
  # By hand for the first example: p = softmax(1, 0, 0) = (e, 1, 1)/(e + 2),
  # q = softmax(.5, .5, 0); weight 1 - q_0 = 1 - e^.5/(2e^.5 + 1).
  p = np.array([np.e, 1, 1]) / (np.e + 2)
  q = np.array([np.exp(.5), np.exp(.5), 1]) / (2 * np.exp(.5) + 1)
  first = (p * np.log(p / q)).sum() * (1 - q[0])
  term = _method().extra_terms(_ctx(NAT, tf.constant(ADV, tf.float32)))
  assert set(term) == {"kl"}
  got = term["kl"].numpy()
  assert got[0] == pytest.approx(first, rel=1e-5)
  np.testing.assert_allclose(got, _arow_kl_numpy(NAT, ADV, LABELS), rtol=1e-5)
  # The weight is 1 - p_y(x~): smaller for the example ARoW trusts more.
  np.testing.assert_allclose(
      arow.robustness_weight(tf.constant(ADV), LABELS).numpy(),
      1 - _softmax(ADV)[np.arange(3), LABELS], rtol=1e-6)


def test_gradient_flows_through_the_weight_as_finite_differences_say():
  method = _method()
  adv = tf.Variable(ADV, dtype=tf.float64)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(method.extra_terms(_ctx(NAT, adv, tf.float64))["kl"])
  grad = tape.gradient(loss, adv).numpy()
  numeric = np.zeros_like(ADV)
  h = 1e-6
  for index in np.ndindex(ADV.shape):
    up, down = ADV.copy(), ADV.copy()
    up[index] += h
    down[index] -= h
    numeric[index] = (_arow_kl_numpy(NAT, up, LABELS).sum()
                      - _arow_kl_numpy(NAT, down, LABELS).sum()) / (2 * h)
  np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
  # A detached weight would give another gradient: the test can tell them apart.
  with tf.GradientTape() as tape:
    q = tf.nn.softmax(adv)
    kl = tf.reduce_sum(tf.nn.softmax(NAT) * (tf.nn.log_softmax(NAT)
                                             - tf.nn.log_softmax(adv)), -1)
    detached = tf.stop_gradient(1 - tf.gather(q, LABELS, batch_dims=1))
    loss = tf.reduce_sum(kl * detached)
  assert np.abs(tape.gradient(loss, adv).numpy() - numeric).max() > 1e-3


def test_metrics_memory_and_objective_check():
  method = _method()
  ctx = _ctx(NAT, tf.constant(ADV, tf.float32))
  metrics = method.metrics(ctx, {})
  w = 1 - _softmax(ADV)[np.arange(3), LABELS]
  assert float(metrics["weight_mean"]) == pytest.approx(w.mean(), rel=1e-5)
  assert float(metrics["weight_min"]) == pytest.approx(w.min(), rel=1e-5)
  np.testing.assert_allclose(method.memory.numpy()[[4, 0, 2]], w, rtol=1e-5)
  np.testing.assert_allclose(np.sort(method.epoch_summaries()["weight"]),
                             np.sort(w), rtol=1e-5)
  with pytest.raises(ValueError, match="needs objective.name=trades"):
    _method("at")


def test_configs():
  c = arow_config.get_config()
  assert (c.objective.name, c.objective.beta, c.objective.label_smoothing,
          c.attack.random_start, c.averaging, c.averaging_start_epoch,
          c.epochs, c.optimizer.lr_boundaries, c.optimizer.weight_decay,
          c.model.name) == ("trades", 7.0, 0.2, "uniform", "swa", 50, 120,
                            (60, 100), 5e-4, "resnet18")
  assert arow_config.get_config("ce").objective.label_smoothing == 0.0
  c = arow_config.get_config("mnist10k_hard")
  assert (c.averaging_start_epoch, c.attack.epsilon, c.epochs,
          c.objective.label_smoothing) == (4, 0.3, 10, 0.2)
  assert arow_config.get_config("digits").averaging_start_epoch == 6


def _train(tmp_path, distribute, steps=3):
  config = helpers.tiny_config("arow", "digits", distribute=distribute,
                               averaging_start_epoch=1)
  return helpers.fit_steps(config, tmp_path / distribute, steps)


def test_two_replicas_equal_one_device_and_resume(tmp_path):
  one = _train(tmp_path, "default")
  two = _train(tmp_path, "mirrored")
  assert two.strategy.num_replicas_in_sync == 2
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  m1, m2 = one.trainer.method.memory.numpy(), two.trainer.method.memory.numpy()
  np.testing.assert_allclose(m1, m2, atol=1e-4, equal_nan=True)
  seen = np.isfinite(m1)
  assert seen.sum() >= 32 and ((m1[seen] >= 0) & (m1[seen] <= 1)).all()
  one.checkpointer.save(1)
  again = experiment.prepare(
      helpers.tiny_config("arow", "digits", averaging_start_epoch=1),
      str(tmp_path / "default"))
  assert again.initial_epoch == 1
  np.testing.assert_array_equal(again.trainer.method.memory.numpy(), m1)
