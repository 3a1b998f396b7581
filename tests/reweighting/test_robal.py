"""RoBal: margins, bias, loss and deployed logits by hand; the export serves
the evaluation's forward; 1 device == 2 replicas; a resumed run (with
RandAugment on) equals an uninterrupted one; bad values are one-line errors."""
import numpy as np
import pytest
import tensorflow as tf

from configs import robal as robal_config
from official.core import experiment
from official.core import export as export_lib
from official.modeling import heads
from official.reweighting import robal
from tests.core import helpers

COUNTS = [100, 10, 1]
# log π = log(n_c / 111) = -0.104360, -2.406945, -4.709530.
LOG_PRIOR = [-0.10436002, -2.40694511, -4.7095302]


def test_log_prior_and_margins_by_hand():
  np.testing.assert_allclose(robal.log_prior(COUNTS), LOG_PRIOR, rtol=1e-6)
  # m_c = 0.1 + 0.3 · log(n_c / 1) / 10: log 100 = 4.605170, log 10 = 2.302585.
  np.testing.assert_allclose(robal.margins(COUNTS, 0.1, 0.3, 10.0),
                             [0.238155, 0.169078, 0.1], atol=1e-6)
  # The head class gets the largest margin (the official code's direction).
  m = robal.margins(COUNTS, 0.1, 0.3, 10.0)
  assert m[0] > m[1] > m[2]
  np.testing.assert_allclose(robal.margins(COUNTS, 0.1, 0.0, 10.0), [0.1] * 3)
  with pytest.raises(ValueError, match=r"need every class .*\[3, 0\]"):
    robal.log_prior([3, 0])


def test_margin_loss_by_hand():
  z = tf.constant([[0.5, 0.2, -0.1]])
  # Label 0 (head), m = 0.1, s = 10, τ_b = 1: logits 10·[0.4, 0.2, -0.1] +
  # log π = [3.895640, -0.406945, -5.709530];
  # CE = log(1 + e^-4.302585 + e^-9.605170) = 0.0135092.
  loss = robal.margin_loss(z, tf.constant([0]), np.float32([0.1] * 3),
                           1.0 * np.float32(LOG_PRIOR), 10.0)
  assert loss.numpy()[0] == pytest.approx(0.0135092, abs=1e-5)
  # Label 2 (rarest), margins of τ_m 0.3 (m_2 = 0.1), τ_b = 1.5: logits
  # [5 - 0.156540, 2 - 3.610418, -1 - 1 - 7.064295] -> CE = 13.909329.
  loss = robal.margin_loss(z, tf.constant([2]),
                           robal.margins(COUNTS, 0.1, 0.3, 10.0),
                           1.5 * np.float32(LOG_PRIOR), 10.0)
  assert loss.numpy()[0] == pytest.approx(13.909329, abs=1e-4)


def test_cosine_head_by_hand():
  head = heads.CosineHead(2, gamma=0.25)
  head.build((None, 2))
  # w_0 = (1, 0) (norm 1), w_1 = (0, 2) (norm 2): divided by norm + 0.25,
  # (0.8, 0) and (0, 0.888889). x = (3, 4) / 5 = (0.6, 0.8).
  head.kernel.assign([[1.0, 0.0], [0.0, 2.0]])
  z = head(tf.constant([[3.0, 4.0], [0.0, 0.0]])).numpy()
  np.testing.assert_allclose(z[0], [0.48, 0.711111], atol=1e-6)
  np.testing.assert_array_equal(z[1], [0.0, 0.0])  # zero features: z = 0


def _method(preset, counts=COUNTS):
  c = robal_config.get_config(preset)
  data = type("Data", (), {"class_counts": np.asarray(counts),
                           "num_classes": len(counts)})
  return robal.RoBal(c.reweighting, config=c, data=data)


def test_deployed_logits_by_hand():
  z = np.float32([[0.5, 0.2, -0.1]])
  # RoBal-N: 10·z − 0.1·log π = [5.010436, 2.240695, -0.529047].
  np.testing.assert_allclose(_method("N").inference_logits(z),
                             [[5.010436, 2.240695, -0.529047]], atol=1e-5)
  np.testing.assert_array_equal(_method("R").inference_logits(z), z)


def test_terms_by_hand():
  method = _method("N")
  z_nat = tf.constant([[0.5, 0.2, -0.1]])
  z_adv = tf.constant([[0.1, 0.4, -0.1]])
  ctx = type("Ctx", (), {})()
  ctx.adversarial_logits, ctx.primary_attack = {"p": z_adv}, "p"
  ctx.natural_logits, ctx.labels = z_nat, tf.constant([1])
  terms = method.extra_terms(ctx)
  # KL(softmax z_nat ‖ softmax z_adv) = 0.0348864; β = 6.
  assert terms["kl"].numpy()[0] == pytest.approx(6 * 0.0348864, abs=1e-5)
  # adv: label 1, m 0.1, τ_b 1.2: logits [1, 3, -1] + 1.2 log π.
  logits = np.array([1.0, 3.0, -1.0]) + 1.2 * np.array(LOG_PRIOR)
  expected = np.log(np.exp(logits).sum()) - logits[1]
  assert terms["adv"].numpy()[0] == pytest.approx(expected, abs=1e-5)


def test_configs():
  c = robal_config.get_config(None)
  assert (c.model.name, c.model.depth, c.model.width) == ("wide_resnet", 34, 10)
  assert (c.model.head, c.model.cosine_gamma) == ("cosine", 0.03125)
  assert (c.epochs, c.batch_size, tuple(c.optimizer.lr_boundaries)) == (
      80, 64, (60, 75))
  assert c.optimizer.weight_decay == 2e-4
  assert (c.attack.steps, c.attack.step_size, c.attack.epsilon,
          c.attack.random_start) == (5, 0.0078, 0.031, "one_sided")
  assert (c.data.name, c.data.imbalance.profile, c.data.imbalance.ratio) == (
      "cifar10", "exp", 50.0)
  r = c.reweighting
  assert (r.scale, r.margin, r.kl_weight, r.tau_m, r.tau_b, r.tau_p,
          r.inference) == (10.0, 0.1, 6.0, 0.0, 1.2, 0.1, "adjusted")
  r = robal_config.get_config("R").reweighting
  assert (r.tau_m, r.tau_b, r.inference) == (0.3, 1.5, "plain")
  c = robal_config.get_config("N,digits")
  assert (c.data.name, c.data.imbalance.n_max, c.data.imbalance.ratio) == (
      "digits", 139, 10.0)
  assert c.model.name == "small_cnn" and c.model.head == "cosine"
  assert c.optimizer.learning_rate == 0.01  # 0.05 kills the cosine features
  c = robal_config.get_config("R,mnist10k_hard_lt")
  assert (c.epochs, c.data.imbalance.n_max, c.data.imbalance.ratio,
          tuple(c.model.filters)) == (50, 600, 100.0, (6, 6, 12, 12))
  assert robal_config.get_config("cifar10_lt").data.imbalance.ratio == 100.0


@pytest.mark.parametrize("overrides, match", [
    ({"reweighting.scale": 0.0}, r"reweighting.scale must be > 0, got 0.0"),
    ({"reweighting.margin": -0.1}, r"reweighting.margin must be > 0"),
    ({"reweighting.tau_b": -1.0}, r"reweighting.tau_b must be >= 0"),
    ({"reweighting.inference": "post"},
     r"unknown reweighting.inference 'post'; valid: adjusted, plain"),
    ({"model.head": "linear"}, r"needs model.head 'cosine'"),
    ({"model.head": "arc"}, r"unknown model.head 'arc'; valid: linear, cosine"),
    ({"model.cosine_gamma": -1.0}, r"model.cosine_gamma must be a number >= 0"),
    ({"objective.name": "trades"}, r"needs objective.name 'at'"),
    ({"attack.random_start": "half"}, r"unknown random_start 'half'"),
])
def test_bad_values_are_one_line_errors(tmp_path, overrides, match):
  with pytest.raises(ValueError, match=match) as e:
    experiment.prepare(helpers.tiny_config("robal", "N,digits", **overrides),
                       str(tmp_path / "bad"))
  assert "\n" not in str(e.value)
  assert not (tmp_path / "bad").exists()  # nothing written


def test_export_serves_the_evaluated_forward(tmp_path):
  """RoBal-N: `serve` = the evaluation's forward = 10·z − 0.1·log π, also
  when a checkpoint is exported later from config.json + data.json."""
  run = helpers.fit_steps(helpers.tiny_config("robal", "N,digits"),
                          tmp_path / "run", steps=2)
  x = next(iter(run.data.test()))["image"][:8]
  evaluated = experiment.deployed_logits_fn(run)(x).numpy()
  z = run.trainer.network(x, training=False)[0].numpy()
  np.testing.assert_allclose(
      evaluated, 10 * z - 0.1 * robal.log_prior(run.data.class_counts),
      atol=1e-5)
  path = export_lib.export(run.trainer.network, str(tmp_path / "export"),
                           run.trainer.method.inference_logits)
  loaded = tf.saved_model.load(path)
  np.testing.assert_allclose(loaded.serve(x).numpy(), evaluated, atol=1e-5)
  run.checkpointer.save(1)
  path, _ = export_lib.export_checkpoint(str(tmp_path / "run"),
                                         output=str(tmp_path / "e1"))
  again = tf.saved_model.load(path)
  np.testing.assert_allclose(again.serve(x).numpy(), evaluated, atol=1e-5)


def _train(tmp_path, distribute, steps=3):
  config = helpers.tiny_config("robal", "R,digits", distribute=distribute)
  return helpers.fit_steps(config, tmp_path / distribute, steps)


def test_two_replicas_equal_one_device(tmp_path):
  one = _train(tmp_path, "default")
  two = _train(tmp_path, "mirrored")
  assert two.strategy.num_replicas_in_sync == 2
  for a, b in zip(one.trainer.network.weights, two.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
  for name in ("loss", "term/adv", "term/kl"):
    np.testing.assert_allclose(one.trainer.trackers[name].result().numpy(),
                               two.trainer.trackers[name].result().numpy(),
                               rtol=1e-4, atol=1e-6)
  assert one.trainer.trackers["term/kl"].result().numpy() > 0
  assert one.trainer.network.get_layer("cosine_logits").gamma == 0.03125


def test_resumed_run_with_randaugment_equals_uninterrupted(tmp_path):
  kw = {"epochs": 2, "data.augment": "randaugment"}
  full = experiment.prepare(helpers.tiny_config("robal", "N,digits", **kw),
                            str(tmp_path / "full"))
  assert full.data.augment == "randaugment+none"
  full.trainer.fit(full.data.train(0, 2), epochs=2, verbose=0,
                   steps_per_epoch=full.data.steps_per_epoch)
  first = experiment.prepare(helpers.tiny_config("robal", "N,digits", **kw),
                             str(tmp_path / "cut"))
  first.trainer.fit(first.data.train(0, 1), epochs=1, verbose=0)
  first.checkpointer.save(1)
  del first  # "killed" after epoch 1
  again = experiment.prepare(helpers.tiny_config("robal", "N,digits", **kw),
                             str(tmp_path / "cut"))
  assert again.initial_epoch == 1
  again.trainer.fit(again.data.train(1, 2), epochs=2, initial_epoch=1,
                    verbose=0)
  for a, b in zip(full.trainer.network.weights, again.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_cli_bad_scale_is_one_error_line(tmp_path):
  proc = helpers.train_cli(["--config=configs/robal.py:N,digits",
                            "--config.reweighting.scale=0.0",
                            f"--workdir={tmp_path / 'run'}"])
  assert proc.returncode == 2
  assert helpers.error_lines(proc) == [
      "error: reweighting.scale must be > 0, got 0.0"]
  assert not (tmp_path / "run").exists()
