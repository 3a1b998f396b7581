"""DONE: KL-DRO weights and the SCGD normaliser by hand (numpy), the implicit
term against a finite difference, 1 device == 2 replicas, r -> inf == AT,
checkpoint + resume of log_u."""
import types

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from configs import done as done_config
from official.core import experiment
from official.reweighting import base
from official.reweighting import done
from tests.core import helpers

LOSSES = np.array([0.3, 1.2, 2.5, 0.9, 1.7, 0.1], np.float32)


def _method(objective="at", **options):
  cfg = ml_collections.ConfigDict({"name": "done", **options})
  config = ml_collections.ConfigDict({
      "objective": {"name": objective, "beta": 6.0},
      "attack": {"epsilon": 0.1, "step_size": 0.02}})
  method = done.DONE(cfg, config=config,
                     data=types.SimpleNamespace(num_ids=8))
  method.build_state()
  return method


def _ctx(terms, epoch=0, images=None, labels=None):
  n = len(next(iter(terms.values())))
  return base.StepContext(
      images=images, labels=labels, ids=tf.range(n),
      epoch=tf.constant(epoch, tf.int32), step=tf.constant(0, tf.int64),
      global_batch_size=n, attack=None,
      terms={k: tf.cast(v, tf.float32) for k, v in terms.items()})


def _softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


@pytest.mark.parametrize("normaliser", ["batch", "ema"])
def test_first_step_weights_are_B_times_softmax_of_losses_over_r(normaliser):
  for r in (0.5, 1.0, 3.0):
    method = _method(r=r, normaliser=normaliser)
    w = method.weights(_ctx({"adv": LOSSES}))["adv"].numpy()
    np.testing.assert_allclose(w, 6 * _softmax(LOSSES / r), rtol=1e-5)
    np.testing.assert_allclose(w.sum(), 6.0, rtol=1e-5)
    # log_u = logmeanexp(l / r), the initialisation.
    expected = np.log(np.mean(np.exp(LOSSES / r)))
    np.testing.assert_allclose(method.log_u.numpy(), expected, rtol=1e-6)
    assert method.updates.numpy() == 1


def test_large_r_is_uniform_and_small_r_picks_the_largest_loss():
  w = _method(r=1e6).weights(_ctx({"adv": LOSSES}))["adv"].numpy()
  np.testing.assert_allclose(w, np.ones(6), atol=1e-5)
  w = _method(r=0.01).weights(_ctx({"adv": LOSSES}))["adv"].numpy()
  assert np.argmax(w) == np.argmax(LOSSES)
  np.testing.assert_allclose(w[2], 6.0, rtol=1e-5)
  assert np.all(np.delete(w, 2) < 1e-10)


def test_scgd_running_estimate_follows_its_rule_over_several_steps():
  beta, r = 0.3, 0.8
  method = _method(r=r, beta=beta, burn_in_epochs=1)
  rng = np.random.default_rng(0)
  log_u, updates = None, 0
  for step, epoch in enumerate([0, 0, 1, 1, 2, 2]):
    losses = rng.uniform(0.0, 4.0, size=6).astype(np.float32)
    w = method.weights(_ctx({"adv": losses}, epoch=epoch))["adv"].numpy()
    if epoch < 1:  # burn-in: plain AT, the estimate untouched
      np.testing.assert_array_equal(w, np.ones(6))
      assert method.updates.numpy() == 0 and method.log_u.numpy() == 0.0
      continue
    mean_exp = np.mean(np.exp(losses.astype(np.float64) / r))
    if log_u is None:
      log_u = np.log(mean_exp)                      # first reweighted step
    else:
      log_u = np.log((1 - beta) * np.exp(log_u) + beta * mean_exp)
    updates += 1
    np.testing.assert_allclose(method.log_u.numpy(), log_u, rtol=1e-5,
                               err_msg=f"step {step}")
    assert method.updates.numpy() == updates
    np.testing.assert_allclose(w, np.exp(losses / r - log_u), rtol=1e-4)
    # Bounded: log_u >= log(beta) + m_t >= log(beta) + max l/r - log B.
    assert w.max() <= 6 / beta


def test_batch_normaliser_ignores_history_and_clip_caps():
  method = _method(normaliser="batch", r=0.5, clip=2.0)
  method.weights(_ctx({"adv": LOSSES * 3}))
  w = method.weights(_ctx({"adv": LOSSES}))["adv"].numpy()
  np.testing.assert_allclose(w, np.minimum(6 * _softmax(LOSSES / 0.5), 2.0),
                             rtol=1e-5)
  assert w.max() == pytest.approx(2.0)


def test_objectives_pick_their_terms():
  nat, kl = LOSSES, LOSSES[::-1].copy() * 0.1
  method = _method("trades", normaliser="batch")
  w = method.weights(_ctx({"nat": nat, "kl": kl}))
  assert set(w) == {"nat", "kl"}  # ℓ = nat + β·kl, both weighted
  np.testing.assert_allclose(w["nat"], 6 * _softmax(nat + 6.0 * kl), rtol=1e-5)
  np.testing.assert_array_equal(w["nat"], w["kl"])
  w = _method("mart", normaliser="batch").weights(
      _ctx({"adv": nat, "kl": kl}))
  assert set(w) == {"adv"}  # MART's KL term keeps weight 1
  np.testing.assert_allclose(w["adv"], 6 * _softmax(nat), rtol=1e-5)


def test_options_and_errors():
  with pytest.raises(ValueError, match="unknown reweighting.normaliser 'x'"):
    _method(normaliser="x")
  with pytest.raises(ValueError, match="unknown reweighting.implicit 'x'"):
    _method(implicit="x")
  with pytest.raises(ValueError, match=r"reweighting.r out of range"):
    _method(r=0.0)
  with pytest.raises(ValueError, match=r"reweighting.beta out of range"):
    _method(beta=0.0)
  with pytest.raises(ValueError, match="implicit 'barrier_diag' needs "
                     "objective.name 'at'"):
    _method("trades", implicit="barrier_diag")
  m = _method(implicit="lambda_identity")
  assert m.lam == pytest.approx(50.0)           # 1 / attack.step_size
  assert m.barrier_c == pytest.approx(50.0 * 0.01 / 2)
  assert m.extra_term_names == ("implicit",)
  assert _method().extra_term_names == ()


def test_inverse_hessians_by_hand():
  x = tf.constant([0.5, 0.5, 0.5, 0.05, 0.98])
  x_adv = tf.constant([0.6, 0.45, 0.4, 0.0, 1.0])
  lower, upper = done.box(x, x_adv, 0.1)
  np.testing.assert_allclose(lower, [0.4, 0.4, 0.4, 0.0, 0.88], atol=1e-7)
  np.testing.assert_allclose(upper, [0.6, 0.6, 0.6, 0.15, 1.0], atol=1e-7)
  # On a bound (eps-ball or pixel range): 0; strictly inside: 1 / lambda.
  np.testing.assert_array_equal(
      done.lambda_identity_inverse(x_adv, lower, upper, 4.0),
      [0.0, 0.25, 0.0, 0.0, 0.0])
  d = done.barrier_inverse(x_adv, lower, upper, 2.0).numpy()
  a, b = 0.15, 0.05  # distances of 0.45 to 0.6 and to 0.4
  np.testing.assert_allclose(d[1], 1 / (2.0 * (a**-2 + b**-2)), rtol=1e-4)
  np.testing.assert_array_equal(d[[0, 3, 4]], 0.0)
  # The centre of the ball: eps^2 / (2c); 0 at a bound.
  np.testing.assert_allclose(d[2], 0.0, atol=1e-12)
  centre = done.barrier_inverse(tf.constant([0.5]), tf.constant([0.4]),
                                tf.constant([0.6]), 2.0)
  np.testing.assert_allclose(centre, [0.01 / 4.0], rtol=1e-4)


def test_implicit_term_gradient_is_the_mixed_second_derivative():
  """∇_θ implicit_i = ∇²_θδ CE · D g: checked by a central difference of
  ∇_θ CE along the direction D g."""
  rng = np.random.default_rng(1)
  kernel = tf.Variable(rng.normal(size=(4, 3)).astype(np.float32))
  forward = lambda x: tf.reshape(x, [-1, 4]) @ kernel  # noqa: E731
  x = tf.constant(rng.uniform(0.2, 0.8, (2, 2, 2, 1)).astype(np.float32))
  x_adv = x + tf.constant(rng.uniform(-0.05, 0.05, (2, 2, 2, 1)),
                          tf.float32)
  labels = tf.constant([0, 2])
  method = _method(implicit="barrier_diag", barrier_c=0.001)
  ctx = _ctx({"adv": [0.0, 0.0]}, images=x, labels=labels)
  ctx.primary_attack = "pgd"
  ctx.adversarial_inputs = {"pgd": x_adv}
  ctx.attack_stats = {"pgd": {"epsilon": tf.fill([2], 0.1)}}
  ctx.forward = forward
  with tf.GradientTape() as tape:
    term = tf.reduce_sum(method.extra_terms(ctx)["implicit"])
  grad = tape.gradient(term, kernel).numpy()

  def ce_grad(inputs):
    with tf.GradientTape() as t:
      ce = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels, forward(inputs)))
    return t.gradient(ce, kernel).numpy()

  with tf.GradientTape() as t:
    t.watch(x_adv)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels,
                                                        forward(x_adv))
  g = t.gradient(ce, x_adv)
  lower, upper = done.box(x, x_adv, 0.1)
  v = done.barrier_inverse(x_adv, lower, upper, 0.001) * g
  h = 1e-2 / float(tf.reduce_max(tf.abs(v)))
  expected = (ce_grad(x_adv + h * v) - ce_grad(x_adv - h * v)) / (2 * h)
  np.testing.assert_allclose(grad, expected, rtol=2e-2, atol=1e-6)
  assert np.abs(grad).max() > 1e-3


def test_global_batch_under_two_replicas_matches_numpy():
  """weights() inside strategy.run: each replica holds half of the global
  batch; weights and log_u are those of the whole batch."""
  strategy = experiment.make_strategy("mirrored")
  assert strategy.num_replicas_in_sync == 2
  with strategy.scope():
    method = _method(r=0.7, beta=0.2)
  rng = np.random.default_rng(2)
  batches = rng.uniform(0, 3, size=(3, 8)).astype(np.float32)

  @tf.function
  def step(losses):
    def fn(local):
      return method.weights(_ctx({"adv": local}))["adv"]
    return strategy.run(fn, args=(losses,))

  log_u = None
  for losses in batches:
    local = strategy.experimental_distribute_values_from_function(
        lambda c, l=losses: tf.constant(
            np.split(l, 2)[c.replica_id_in_sync_group]))
    w = np.concatenate([v.numpy() for v in
                        strategy.experimental_local_results(step(local))])
    mean_exp = np.mean(np.exp(losses.astype(np.float64) / 0.7))
    log_u = np.log(mean_exp) if log_u is None else np.log(
        0.8 * np.exp(log_u) + 0.2 * mean_exp)
    np.testing.assert_allclose(method.log_u.numpy(), log_u, rtol=1e-5)
    np.testing.assert_allclose(w, np.exp(losses / 0.7 - log_u), rtol=1e-4)
  copies = method.log_u.values
  assert copies[0].numpy() == copies[1].numpy()
  assert method.updates.numpy() == 3


def test_configs():
  c = done_config.get_config()
  assert (c.model.name, c.epochs, c.batch_size, c.optimizer.learning_rate,
          c.optimizer.lr_boundaries, c.optimizer.weight_decay) == (
              "resnet18", 100, 128, 0.1, (50, 75), 5e-4)
  assert (c.reweighting.r, c.reweighting.beta, c.reweighting.normaliser,
          c.reweighting.implicit, c.reweighting.burn_in_epochs) == (
              1.0, 0.1, "ema", "none", 0)
  for preset in ("mnist10k", "digits"):
    c = done_config.get_config(preset)
    assert (c.reweighting.r, c.reweighting.burn_in_epochs) == (5.0, 5)
  c = done_config.get_config("cifar10_lt")
  assert (c.data.name, c.data.imbalance.profile, c.data.imbalance.ratio) == (
      "cifar10", "exp", 100.0)
  assert "groups" in c.eval.reports
  assert done_config.get_config("svhn").data.name == "svhn_cropped"


def _train(distribute, tmp_path, steps=3, name=None, **overrides):
  # SmallCNN starts with zero logits: a small r makes the first steps' nearly
  # equal losses give clearly unequal weights.
  options = {"reweighting.burn_in_epochs": 0, "reweighting.r": 0.05,
             **overrides}
  config = helpers.tiny_config("done", "digits", distribute=distribute,
                               **options)
  return helpers.fit_steps(config, tmp_path / (name or distribute), steps)


def _network(run):
  return [v.numpy() for v in run.trainer.network.weights]


@pytest.mark.parametrize("implicit", ["none", "lambda_identity",
                                      "barrier_diag"])
def test_two_replicas_equal_one_device(tmp_path, implicit):
  one = _train("default", tmp_path, **{"reweighting.implicit": implicit})
  two = _train("mirrored", tmp_path, **{"reweighting.implicit": implicit})
  assert two.strategy.num_replicas_in_sync == 2
  for a, b in zip(_network(one), _network(two)):
    np.testing.assert_allclose(a, b, atol=1e-4)
  m1, m2 = one.trainer.method, two.trainer.method
  assert m1.updates.numpy() == m2.updates.numpy() == 3
  assert one.trainer.trackers["method/weight_max"].result().numpy() > 1.2
  np.testing.assert_allclose(m1.log_u.numpy(), m2.log_u.numpy(), rtol=1e-5)
  for name in ("weight_max", "effective_fraction", "log_u"):
    np.testing.assert_allclose(
        one.trainer.trackers[f"method/{name}"].result().numpy(),
        two.trainer.trackers[f"method/{name}"].result().numpy(), rtol=1e-4)
  if implicit != "none":
    assert one.trainer.trackers["term/implicit"].result().numpy() >= 0


def test_huge_r_trains_as_plain_at(tmp_path):
  dro = _train("default", tmp_path, name="dro", **{"reweighting.r": 1e6})
  plain = _train("default", tmp_path, name="plain",
                 **{"reweighting.name": "none"})
  for a, b in zip(_network(dro), _network(plain)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  assert dro.trainer.trackers["method/weight_max"].result().numpy() == (
      pytest.approx(1.0, abs=1e-4))


def test_state_survives_checkpoint_and_resume(tmp_path):
  run = _train("default", tmp_path, steps=2, name="resume")
  method = run.trainer.method
  log_u, updates = method.log_u.numpy(), method.updates.numpy()
  assert updates == 2 and log_u != 0.0
  run.checkpointer.save(1)
  config = helpers.tiny_config("done", "digits",
                               **{"reweighting.burn_in_epochs": 0,
                                  "reweighting.r": 0.05})
  again = experiment.prepare(config, str(tmp_path / "resume"))
  assert again.initial_epoch == 1
  assert again.trainer.method.log_u.numpy() == log_u
  assert again.trainer.method.updates.numpy() == updates
