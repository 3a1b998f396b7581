import numpy as np
import tensorflow as tf
import ml_collections as mlc

from official.modeling import objectives

NAT = np.array([[2.0, 0.5, -1.0], [0.1, 0.3, 1.5]], np.float32)
ADV = np.array([[0.5, 1.5, -0.5], [0.0, 2.0, 0.4]], np.float32)
Y = np.array([0, 2], np.int32)


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _ce(z, y):
  return -np.log(_softmax(z)[np.arange(len(y)), y])


def _kl(p_logits, q_logits):
  p, q = _softmax(p_logits), _softmax(q_logits)
  return (p * np.log(p / q)).sum(-1)


def test_trades_terms_and_loss_match_hand_computation():
  obj = objectives.get_objective("trades")
  terms = {k: v.numpy() for k, v in obj.terms(Y, NAT, ADV).items()}
  np.testing.assert_allclose(terms["nat"], _ce(NAT, Y), rtol=1e-5)
  np.testing.assert_allclose(terms["kl"], _kl(NAT, ADV), rtol=1e-5)
  coeff = obj.coefficients(mlc.ConfigDict({"beta": 6.0}))
  loss = np.mean(coeff["nat"] * terms["nat"] + coeff["kl"] * terms["kl"])
  expected = _ce(NAT, Y).mean() + 6.0 * _kl(NAT, ADV).mean()
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_mart_terms_match_the_official_formula():
  obj = objectives.get_objective("mart")
  terms = {k: v.numpy() for k, v in obj.terms(Y, NAT, ADV).items()}
  adv_p, nat_p = _softmax(ADV), _softmax(NAT)
  # Example 0: y=0, best wrong class on ADV is 1; example 1: y=2, best wrong 1.
  new_y = np.array([1, 1])
  bce = -np.log(1.0001 - adv_p[np.arange(2), new_y] + 1e-12)
  np.testing.assert_allclose(terms["adv"], _ce(ADV, Y) + bce, rtol=1e-5)
  true_p = nat_p[np.arange(2), Y]
  kl = (nat_p * (np.log(nat_p) - np.log(adv_p + 1e-12))).sum(-1)
  np.testing.assert_allclose(terms["kl"], kl * (1.0000001 - true_p), rtol=1e-4)
  coeff = obj.coefficients(mlc.ConfigDict({"beta": 5.0}))
  assert coeff == {"adv": 1.0, "kl": 5.0}


def test_at_term_is_adversarial_cross_entropy():
  obj = objectives.get_objective("at")
  terms = obj.terms(tf.constant(Y), None, tf.constant(ADV))
  np.testing.assert_allclose(terms["adv"].numpy(), _ce(ADV, Y), rtol=1e-5)
  assert not obj.needs_natural and obj.attack_loss == "ce"


def test_unknown_objective_names_the_choices():
  import pytest
  with pytest.raises(ValueError, match="unknown objective.name 'x'; valid: at, mart, trades"):
    objectives.get_objective("x")


def test_label_smoothing_smooths_only_the_classification_ce():
  alpha = 0.2
  smooth = lambda z, y: ((1 - alpha) * _ce(z, y) + alpha * -np.log(  # noqa: E731
      _softmax(z)).mean(-1))
  trades = {k: v.numpy() for k, v in objectives.get_objective("trades").terms(
      Y, NAT, ADV, label_smoothing=alpha).items()}
  np.testing.assert_allclose(trades["nat"], smooth(NAT, Y), rtol=1e-5)
  np.testing.assert_allclose(trades["kl"], _kl(NAT, ADV), rtol=1e-5)
  at = objectives.get_objective("at").terms(Y, None, ADV, label_smoothing=alpha)
  np.testing.assert_allclose(at["adv"].numpy(), smooth(ADV, Y), rtol=1e-5)
  mart = objectives.get_objective("mart")
  plain, smoothed = mart.terms(Y, NAT, ADV), mart.terms(Y, NAT, ADV,
                                                          label_smoothing=alpha)
  np.testing.assert_allclose(smoothed["adv"] - plain["adv"],
                             smooth(ADV, Y) - _ce(ADV, Y), rtol=1e-4)
  np.testing.assert_allclose(smoothed["kl"], plain["kl"])
