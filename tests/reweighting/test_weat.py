"""WEAT: energies and weights by hand, both variants' terms, the configs,
1 device == 2 replicas, resume."""
import math
import types

import numpy as np
import pytest
import tensorflow as tf

from configs import weat as weat_config
from official.core import experiment
from official.reweighting import base
from official.reweighting import weat
from tests.core import helpers

# logsumexp(0, 0, 0) = log 3; logsumexp(log 2, 0, 0) = log 4; the third has
# |E| = 5 - log(1 + 2e^-5) large: a confident, low-weight example.
NAT = np.array([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0], [5.0, 0.0, 0.0]],
               np.float32)
ADV = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
LABELS = np.array([0, 1, 2], np.int32)


def _method(variant="nat", objective="trades", normalize=False):
  config = types.SimpleNamespace(objective=types.SimpleNamespace(name=objective))
  data = types.SimpleNamespace(num_ids=8, train_ids=np.arange(8))
  m = weat.WEAT({"variant": variant, "normalize": normalize}, config=config,
                data=data)
  m.build_state()
  return m


def _ctx():
  return base.StepContext(
      images=None, labels=tf.constant(LABELS), ids=tf.constant([4, 0, 2]),
      epoch=tf.constant(0), step=tf.constant(0, tf.int64), global_batch_size=3,
      attack=None, natural_logits=tf.constant(NAT),
      adversarial_logits={"train_pgd_kl": tf.constant(ADV)},
      primary_attack="train_pgd_kl")


def test_energy_and_weights_by_hand():
  e3 = -math.log(1 + 1 + math.exp(5.0))
  np.testing.assert_allclose(weat.energy(tf.constant(NAT)).numpy(),
                             [-math.log(3), -math.log(4), e3], rtol=1e-6)
  expected = [1 / math.log(1 + 3), 1 / math.log(1 + 4),
              1 / math.log(1 + math.exp(-e3))]
  w = _method().weights(_ctx())
  assert set(w) == {"nat", "kl"}
  np.testing.assert_allclose(w["nat"].numpy(), expected, rtol=1e-6)
  np.testing.assert_array_equal(w["nat"].numpy(), w["kl"].numpy())
  # normalize: mean 1 over the batch, the same ratios.
  normalised = _method(normalize=True).weights(_ctx())["kl"].numpy()
  np.testing.assert_allclose(normalised, np.array(expected) * 3 / sum(expected),
                             rtol=1e-6)
  # Positive energies weigh by |E| too (softplus of |E|, no overflow).
  np.testing.assert_allclose(
      weat.energy_weights(tf.constant([[-200.0, -200.0]])).numpy(),
      [1 / (200 - math.log(2))], rtol=1e-6)


def test_variants_terms():
  assert _method("nat").extra_terms(_ctx()) == {}
  terms = _method("adv").extra_terms(_ctx())
  # WEAT_adv: the classification term is CE(f(x~), y) = log(e + 2) - 1.
  np.testing.assert_allclose(terms["nat"].numpy(),
                             [math.log(math.e + 2) - 1] * 3, rtol=1e-6)
  with pytest.raises(ValueError, match="reweighting.variant"):
    _method("both")
  with pytest.raises(ValueError, match="needs objective.name=trades"):
    _method(objective="mart")


def test_metrics_and_memory():
  method = _method()
  ctx = _ctx()
  w = method.weights(ctx)
  metrics = method.metrics(ctx, w)
  assert float(metrics["weight_mean"]) == pytest.approx(
      float(np.mean(w["kl"])), rel=1e-6)
  energies = weat.energy(tf.constant(NAT)).numpy()
  assert float(metrics["energy_mean"]) == pytest.approx(energies.mean(),
                                                        rel=1e-6)
  np.testing.assert_allclose(method.energy.numpy()[[4, 0, 2]], energies,
                             rtol=1e-6)


def test_configs():
  c = weat_config.get_config()
  assert (c.objective.name, c.objective.beta, c.reweighting.variant,
          c.optimizer.schedule, c.optimizer.learning_rate, c.epochs,
          c.optimizer.weight_decay, c.model.name) == (
              "trades", 6.0, "nat", "onecycle", 0.1, 100, 5e-4, "resnet18")
  assert weat_config.get_config("adv").reweighting.variant == "adv"
  c = weat_config.get_config("mnist10k_hard")
  assert (c.optimizer.schedule, c.optimizer.learning_rate, c.attack.epsilon,
          c.attack.random_start) == ("piecewise", 0.01, 0.3, "uniform")


def _train(tmp_path, distribute, variant, steps=3):
  config = helpers.tiny_config("weat", "digits", distribute=distribute,
                               **{"reweighting.variant": variant})
  return helpers.fit_steps(config, tmp_path / f"{variant}-{distribute}", steps)


@pytest.mark.parametrize("variant", ["nat", "adv"])
def test_two_replicas_equal_one_device_and_resume(tmp_path, variant):
  one = _train(tmp_path, "default", variant)
  two = _train(tmp_path, "mirrored", variant)
  assert two.strategy.num_replicas_in_sync == 2
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  e1 = one.trainer.method.energy.numpy()
  np.testing.assert_allclose(e1, two.trainer.method.energy.numpy(), atol=1e-4,
                             equal_nan=True)
  weights = one.trainer.trackers["weight/kl/mean"].result()
  assert 0 < float(weights) < 1 / math.log(2)
  one.checkpointer.save(1)
  again = experiment.prepare(
      helpers.tiny_config("weat", "digits", **{"reweighting.variant": variant}),
      str(tmp_path / f"{variant}-default"))
  assert again.initial_epoch == 1
  np.testing.assert_array_equal(again.trainer.method.energy.numpy(), e1)
