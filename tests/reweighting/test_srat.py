"""SRAT: separability losses, focal / LDAM by hand, the configs, and
1 device == 2 replicas with the separability term over the global batch."""
import numpy as np
import pytest
import tensorflow as tf

from configs import srat as srat_config
from official.core import experiment
from official.reweighting import srat
from tests.core import helpers

# Four unit vectors in 2-D, two classes.
Z = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]], np.float32)
Y = np.array([0, 0, 1, 1], np.int32)


def test_batch_hard_triplet_by_hand():
  # Distances: d01 = sqrt(.4), d02 = d23 = sqrt(2), d03 = 2, d12 = sqrt(.8),
  # d13 = sqrt(3.6). Hardest positive / negative per anchor:
  #   0: sqrt(.4) / sqrt(2)   -> relu(.632 - 1.414 + .3) = 0
  #   1: sqrt(.4) / sqrt(.8)  -> .632456 - .894427 + .3 = .038028
  #   2: sqrt(2)  / sqrt(.8)  -> 1.414214 - .894427 + .3 = .819786
  #   3: sqrt(2)  / sqrt(3.6) -> relu(1.414 - 1.897 + .3) = 0
  np.testing.assert_allclose(srat.batch_hard_triplet(Z, Y, margin=0.3),
                             [0.0, 0.038028, 0.819786, 0.0], atol=1e-5)


def test_triplet_is_zero_when_separated_beyond_the_margin():
  z = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
  # Positives coincide, negatives are sqrt(2) away: zero for margin < sqrt(2).
  np.testing.assert_array_equal(srat.batch_hard_triplet(z, Y, margin=1.0),
                                [0, 0, 0, 0])
  assert srat.batch_hard_triplet(z, Y, margin=1.5).numpy() == pytest.approx(
      [1.5 - np.sqrt(2)] * 4, abs=1e-5)
  # An anchor alone in its class has no positive: 0.
  np.testing.assert_array_equal(
      srat.batch_hard_triplet(Z[:3], np.array([0, 0, 1]), margin=5.0)[2], 0.0)


def test_triplet_gradient_finite_for_identical_features():
  z = tf.Variable([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(srat.batch_hard_triplet(z, tf.constant([0, 0, 1]),
                                                 margin=2.0))
  assert np.isfinite(tape.gradient(loss, z).numpy()).all()


def _supcon_loops(z, y, tau):
  """The SupCon L_out formula, one anchor at a time."""
  out = []
  for i in range(len(y)):
    others = [a for a in range(len(y)) if a != i]
    log_denominator = np.log(sum(np.exp(z[i] @ z[a] / tau) for a in others))
    positives = [p for p in others if y[p] == y[i]]
    if not positives:
      out.append(0.0)
      continue
    out.append(-np.mean([z[i] @ z[p] / tau - log_denominator
                         for p in positives]))
  return np.array(out)


def test_supervised_contrastive_by_hand():
  # Anchor 0, tau = 1: similarities .8 (positive), 0, -1:
  # log(e^.8 + e^0 + e^-1) - .8 = 0.479104.
  loss = srat.supervised_contrastive(Z, Y, temperature=1.0).numpy()
  assert loss[0] == pytest.approx(0.479104, abs=1e-5)
  np.testing.assert_allclose(loss, _supcon_loops(Z, Y, 1.0), rtol=1e-5)
  y = np.array([0, 0, 1, 2], np.int32)  # anchors 2 and 3 have no positive
  loss = srat.supervised_contrastive(Z, y, temperature=0.5).numpy()
  np.testing.assert_allclose(loss, _supcon_loops(Z, y, 0.5), rtol=1e-5)
  assert loss[2] == loss[3] == 0.0


def test_focal_by_hand():
  logits = tf.constant([[2.0, 0.0, 0.0]])
  # p = e^2 / (e^2 + 2) = .786986, CE = .239545, (1 - p)^2 CE = .010869.
  assert srat.focal(logits, tf.constant([0]), 2.0).numpy()[0] == pytest.approx(
      0.010869, abs=1e-6)
  assert srat.focal(logits, tf.constant([0]), 0.0).numpy()[0] == pytest.approx(
      0.239545, abs=1e-6)


def test_ldam_by_hand():
  # n = 16, 1: m ∝ 1/2, 1, scaled to a largest margin of .5: .25, .5.
  margins = srat.ldam_margins([16, 1], max_margin=0.5)
  np.testing.assert_allclose(margins, [0.25, 0.5])
  logits = tf.constant([[1.0, 0.0], [1.0, 0.0]])
  # Label 0: 2 * [1 - .25, 0] -> CE = log(1 + e^-1.5) = .201413.
  # Label 1: 2 * [1, 0 - .5] = [2, -1] -> CE = 1 + log(e^2 + e^-1) = 3.048587.
  np.testing.assert_allclose(
      srat.ldam(logits, tf.constant([0, 1]), margins, scale=2.0),
      [0.201413, 3.048587], atol=1e-5)


def test_configs():
  c = srat_config.get_config("digits")
  assert (c.data.name, c.data.imbalance.profile) == ("digits", "exp")
  assert (c.data.imbalance.n_max, c.data.imbalance.ratio) == (139, 10.0)
  assert c.reweighting.name == "srat" and c.eval.reports == ("groups",)
  c = srat_config.get_config("mnist10k_lt")
  assert (c.data.name, c.data.imbalance.n_max, c.data.imbalance.ratio,
          c.data.imbalance.seed, c.epochs) == ("npz", 600, 100.0, 0, 10)
  assert srat_config.get_config("mnist10k").data.imbalance.n_max == 600
  assert srat_config.get_config("mnist10k_lt,at").reweighting.name == "none"
  assert srat_config.get_config(
      "mnist10k_lt,at_cb").reweighting.name == "class_balanced"
  assert srat_config.get_config(
      "cifar100_lt").data.imbalance.profile == "exp"
  assert srat_config.get_config("svhn_lt").data.imbalance.n_max == 4659
  assert srat_config.get_config("digits,balanced").data.imbalance.profile == (
      "none")
  c = srat_config.get_config("ldam,supcon")
  assert (c.reweighting.loss, c.reweighting.sep) == ("ldam", "supcon")


def test_bad_options(tmp_path):
  for overrides, match in [
      ({"reweighting.loss": "hinge"}, r"unknown reweighting.loss 'hinge'"),
      ({"reweighting.sep": "center"}, r"unknown reweighting.sep 'center'"),
      ({"reweighting.loss": "focal", "objective.name": "trades"},
       r"needs objective.name 'at', got 'trades'")]:
    with pytest.raises(ValueError, match=match):
      experiment.prepare(helpers.tiny_config("srat", "digits", **overrides),
                         str(tmp_path / "bad"))


def _train(distribute, tmp_path, preset, steps=3, **overrides):
  config = helpers.tiny_config("srat", preset, distribute=distribute,
                               **overrides)
  return helpers.fit_steps(config, tmp_path / distribute, steps)


@pytest.mark.parametrize("preset", ["digits,focal", "digits,ldam,supcon"])
def test_two_replicas_equal_one_device(tmp_path, preset):
  kw = {"reweighting.defer_epochs": 0}
  one = _train("default", tmp_path, preset, **kw)
  two = _train("mirrored", tmp_path, preset, **kw)
  assert two.strategy.num_replicas_in_sync == 2
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  # "sep" over the global batch: per replica it would be another number
  # (each anchor would miss half of its positives and negatives).
  for name in ("loss", "term/sep", "term/adv", "method/reweighting_on"):
    np.testing.assert_allclose(one.trainer.trackers[name].result().numpy(),
                               two.trainer.trackers[name].result().numpy(),
                               rtol=1e-4)
  assert one.trainer.trackers["term/sep"].result().numpy() > 0
  assert one.trainer.trackers["method/reweighting_on"].result().numpy() == 1


def test_deferral_switches_on_after_resume(tmp_path):
  """Weights 1 in epoch 1; class weights in epoch 2, after a restart."""
  config = helpers.tiny_config("srat", "digits", **{
      "reweighting.defer_epochs": 1, "epochs": 1})
  run = experiment.prepare(config, str(tmp_path / "run"))
  run.trainer.fit(run.data.train(0, 1), epochs=1, verbose=0)
  assert run.trainer.trackers["weight/adv/max"].result().numpy() == 1.0
  assert run.trainer.trackers["method/reweighting_on"].result().numpy() == 0
  run.checkpointer.save(1)
  config.epochs = 2
  again = experiment.prepare(config, str(tmp_path / "run"))
  assert again.initial_epoch == 1
  again.trainer.fit(again.data.train(1, 2), epochs=2, initial_epoch=1,
                    verbose=0)
  assert again.trainer.trackers["method/reweighting_on"].result().numpy() == 1
  assert again.trainer.trackers["weight/adv/max"].result().numpy() > 2.0
