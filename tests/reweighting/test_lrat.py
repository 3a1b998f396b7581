"""LRAT: local pair weights by hand (sum 1 per instance, natural ~1 when every
variant is safe), burn-in, the pair_trades form, extra terms, the configs,
1 device == 2 replicas, resume."""
import math
import types

import numpy as np
import pytest
import tensorflow as tf

from configs import lrat as lrat_config
from official.attacks import losses
from official.core import experiment
from official.reweighting import base
from official.reweighting import lrat
from tests.core import helpers

CW = "lrat_pgd_cw"
# GAIRAT tanh safeness at K = 10, λ = -1: s(κ) = sigmoid(2 (4 - κ)).
S0, S10 = 0.9996646498695335, 6.144174602207286e-06  # κ = 0, κ = K


def _method(preset="digits", **options):
  config = lrat_config.get_config(preset)
  config.attack.steps = 10
  config.reweighting.update(options)
  data = types.SimpleNamespace(num_ids=8, train_ids=np.arange(8))
  method = lrat.LRAT(config.reweighting, config=config, data=data)
  method.build_state()
  return method


def _ctx(epoch, kappa_pgd, kappa_cw, logits=None):
  n = len(kappa_pgd)
  stats = lambda k: {"correct_count": tf.constant(k, tf.int32),  # noqa: E731
                     "kappa_first": tf.constant(k, tf.int32)}
  logits = tf.zeros([n, 3]) if logits is None else tf.constant(logits)
  return base.StepContext(
      images=tf.zeros([n, 2, 2, 1]), labels=tf.zeros([n], tf.int32),
      ids=tf.range(n), epoch=tf.constant(epoch, tf.int32),
      step=tf.constant(0, tf.int64), global_batch_size=n, attack=None,
      natural_logits=logits,
      adversarial_logits={"train_pgd_ce": logits, CW: 2.0 * logits},
      attack_stats={"train_pgd_ce": stats(kappa_pgd), CW: stats(kappa_cw)},
      primary_attack="train_pgd_ce")


def test_local_weights_by_hand():
  natural, adversarial = lrat.local_weights([[0.8, 0.4], [0.0, 0.0]])
  np.testing.assert_allclose(adversarial, [[0.4, 0.2], [0.0, 0.0]])
  np.testing.assert_allclose(natural, [0.4, 1.0])


def test_pair_weights_sum_to_one_and_safe_instances_fit_themselves():
  method = _method(burn_in_epochs=2)
  assert method.extra_attacks[0].name == CW
  # Both safe / PGD safe, CW breaks at once / both break at once.
  ctx = _ctx(2, [10, 10, 0], [10, 0, 0])
  w = {k: v.numpy() for k, v in method.weights(ctx).items()}
  assert set(w) == {"nat", "adv", "adv_cw"}
  np.testing.assert_allclose(w["adv"], [S10 / 2, S10 / 2, S0 / 2], rtol=1e-5)
  np.testing.assert_allclose(w["adv_cw"], [S10 / 2, S0 / 2, S0 / 2],
                             rtol=1e-5)
  np.testing.assert_allclose(w["nat"], [1 - S10, 1 - (S10 + S0) / 2, 1 - S0],
                             atol=1e-7)  # float32: 1 - s
  np.testing.assert_allclose(w["nat"] + w["adv"] + w["adv_cw"], 1.0,
                             rtol=1e-6)
  assert abs(w["nat"][0] - 1.0) < 1e-4  # every variant safe: fit x itself
  # Burn-in: plain AT.
  w = method.weights(_ctx(1, [10, 10, 0], [10, 0, 0]))
  np.testing.assert_array_equal(w["adv"], 1.0)
  np.testing.assert_array_equal(w["nat"], 0.0)
  np.testing.assert_array_equal(w["adv_cw"], 0.0)


def test_mail_safeness_and_metrics():
  method = _method(burn_in_epochs=0, safeness="mail")
  # Uniform logits, 3 classes: PM = 0 on both variants (CW logits are 2x):
  # s = sigmoid(-10 (0 + 0.5)) = sigmoid(-5).
  w = method.weights(_ctx(0, [3], [3]))
  s = 1 / (1 + math.exp(5.0))
  np.testing.assert_allclose(w["adv"], [s / 2], rtol=1e-5)
  np.testing.assert_allclose(w["nat"], [1 - s], rtol=1e-5)
  metrics = method.metrics(_ctx(0, [3], [3]), w)
  assert float(metrics["natural_weight_fraction"]) == pytest.approx(1 - s)
  assert float(metrics["adversarial_weight_fraction"]) == pytest.approx(s)
  assert float(metrics["kappa_mean_cw"]) == 3.0
  np.testing.assert_array_equal(method.kappa.numpy()[0], [3, 3])


def test_extra_terms():
  method = _method()
  logits = np.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]], np.float32)
  terms = method.extra_terms(_ctx(0, [0, 0], [0, 0], logits))
  labels = tf.zeros([2], tf.int32)
  np.testing.assert_allclose(terms["nat"],
                             losses.cross_entropy(logits, labels), rtol=1e-6)
  np.testing.assert_allclose(terms["adv_cw"],
                             losses.cross_entropy(2 * logits, labels),
                             rtol=1e-6)


def test_pair_trades_form():
  method = _method("digits,pair_trades", burn_in_epochs=1)
  assert method.extra_term_names == ("kl_cw",)
  assert method.extra_attacks[0].random_start == "gaussian"  # TRADES' start
  # w = (1 + tanh(λ + K/2 - κ))/2 = sigmoid(2 (4 - κ)) at κ = 0, 4, 5, 10.
  w = method.weights(_ctx(1, [0, 4, 5, 10], [0, 0, 0, 0]))
  expected = [S0, 0.5, 0.11920292, S10]
  np.testing.assert_allclose(w["kl"], expected, rtol=1e-5)
  np.testing.assert_allclose(w["kl"] + w["kl_cw"], 1.0, rtol=1e-6)
  w = method.weights(_ctx(0, [0, 4, 5, 10], [0, 0, 0, 0]))  # burn-in
  np.testing.assert_array_equal(w["kl"], 1.0)
  np.testing.assert_array_equal(w["kl_cw"], 0.0)
  # The CW member carries TRADES' β: β KL(p(x) || p(x~_cw)).
  logits = np.array([[1.0, 0.0, -1.0]], np.float32)
  terms = method.extra_terms(_ctx(0, [0], [0], logits))
  np.testing.assert_allclose(
      terms["kl_cw"], 6.0 * losses.kl_divergence(logits, 2 * logits),
      rtol=1e-6)


def test_option_errors():
  for preset, form, objective in (("digits,pair_trades", "local", "at"),
                                  ("digits", "pair_trades", "trades")):
    c = lrat_config.get_config(preset)
    c.reweighting.form = form
    with pytest.raises(ValueError, match=f"form '{form}' needs objective.name "
                       f"'{objective}'"):
      lrat.LRAT(c.reweighting, config=c, data=None)
  with pytest.raises(ValueError, match="unknown reweighting.variants entry"):
    _method(variants=("pgd",))
  with pytest.raises(ValueError, match="unknown reweighting.safeness 'x'"):
    _method(safeness="x")
  with pytest.raises(ValueError, match="variants must be"):
    _method("digits,pair_trades", variants=("cw", "fgsm"))


def test_configs_and_design_card_defaults():
  c = lrat_config.get_config()  # the design card: --config=configs/lrat.py
  experiment.validate(c)
  assert (c.data.name, c.model.name, c.objective.name, c.epochs) == (
      "cifar10", "resnet18", "at", 100)
  assert (c.reweighting.form, c.reweighting.variants, c.reweighting.lam,
          c.reweighting.burn_in_epochs) == ("local", ("cw",), -1.0, 50)
  method = lrat.LRAT(c.reweighting, config=c, data=None)
  spec = method.extra_attacks[0]
  assert (spec.loss, spec.confidence, spec.steps, spec.random_start) == (
      "cw", 50.0, 10, "uniform")
  assert spec.epsilon == pytest.approx(8 / 255)
  assert spec.step_size == pytest.approx(2 / 255)
  for preset in ("digits", "mnist10k"):
    c = lrat_config.get_config(preset)
    assert (c.reweighting.burn_in_epochs, c.reweighting.lam) == (5, -1.0)


def _train(tmp_path, distribute, steps=4):
  config = helpers.tiny_config("lrat", "digits", distribute=distribute,
                               **{"reweighting.burn_in_epochs": 1})
  # Burn-in steps 1-2, LRAT 3-4.
  return helpers.fit_steps(config, tmp_path / distribute, steps,
                           steps_per_epoch=2)


def test_two_replicas_equal_one_device_and_resume(tmp_path):
  one = _train(tmp_path, "default")
  two = _train(tmp_path, "mirrored")
  assert two.strategy.num_replicas_in_sync == 2
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  k1, k2 = one.trainer.method.kappa.numpy(), two.trainer.method.kappa.numpy()
  np.testing.assert_array_equal(k1, k2)
  assert k1.shape == (one.data.num_ids, 2)
  for run in (one, two):
    t = {k: float(v.result()) for k, v in run.trainer.trackers.items()}
    # Every pair sums to 1, every step.
    assert t["weight/nat/mean"] + t["weight/adv/mean"] + t[
        "weight/adv_cw/mean"] == pytest.approx(1.0, abs=1e-5)
    assert t["method/natural_weight_fraction"] == pytest.approx(
        t["weight/nat/mean"], abs=1e-5)
    assert t["method/reweighting_on"] == 0.5
    assert 0.0 < t["weight/nat/mean"] < 0.5  # 0 in the burn-in steps
  np.testing.assert_allclose(
      one.trainer.trackers["method/natural_weight_fraction"].result().numpy(),
      two.trainer.trackers["method/natural_weight_fraction"].result().numpy(),
      rtol=1e-5)

  one.checkpointer.save(1)
  again = experiment.prepare(
      helpers.tiny_config("lrat", "digits",
                          **{"reweighting.burn_in_epochs": 1}),
      str(tmp_path / "default"))
  assert again.initial_epoch == 1
  np.testing.assert_array_equal(again.trainer.method.kappa.numpy(), k1)


def test_burn_in_skips_the_variant_passes_and_changes_no_number(
    tmp_path, monkeypatch):
  """The skipped burn-in passes (CW attack, its forward, the natural forward)
  had weight 0: skipping them leaves every weight bit-identical, through the
  burn-in and after it."""
  fast = _train(tmp_path / "skip", "default")
  # The CW attack never ran in the burn-in: ids seen only then have no κ.
  kappa = fast.trainer.method.kappa.numpy()
  assert np.isnan(kappa[:, 1]).sum() > np.isnan(kappa[:, 0]).sum()
  # Its term is logged over the steps that computed it, not the stand-ins'
  # log(10) of zero logits.
  rows = fast.trainer.record.rows()
  cw = fast.trainer.record.terms.index("adv_cw")
  assert np.isnan(rows[:2, :, cw, 0]).all() and np.isfinite(rows[2:, :, cw, 0]).all()
  np.testing.assert_allclose(
      float(fast.trainer.trackers["term/adv_cw"].result()),
      rows[2:, :, cw, 0].mean(1).mean(), rtol=1e-6)
  monkeypatch.setattr(lrat.LRAT, "extra_passes_epoch", lambda self: 0)
  every = _train(tmp_path / "all", "default")
  for a, b in zip(fast.trainer.network.weights, every.trainer.network.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  for name in ("loss", "weight/nat/mean", "weight/adv_cw/mean",
               "method/natural_weight_fraction"):
    np.testing.assert_array_equal(fast.trainer.trackers[name].result(),
                                  every.trainer.trackers[name].result())


def test_burn_in_skip_on_a_batchnorm_model_under_two_replicas(tmp_path):
  """tf.cond around BN training forwards works under MirroredStrategy."""
  import ml_collections
  config = helpers.tiny_config("lrat", "digits", distribute="mirrored",
                               **{"reweighting.burn_in_epochs": 1})
  config.model = ml_collections.ConfigDict(
      {"name": "wide_resnet", "depth": 10, "width": 1})
  run = helpers.fit_steps(config, tmp_path, 3, steps_per_epoch=2)
  t = {k: float(v.result()) for k, v in run.trainer.trackers.items()}
  assert np.isfinite(t["loss"]) and 0.0 < t["weight/nat/mean"] < 0.5
