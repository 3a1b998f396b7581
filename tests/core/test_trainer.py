"""The training step: 1 device vs 2 replicas, loss scaling, weighted terms."""
import numpy as np
import pytest
import tensorflow as tf

from official.core import experiment
from official.reweighting import base
from official.reweighting import registry
from tests.core import helpers


class _SoftmaxOfLosses(base.Method):
  """Test method: weights = B * softmax(loss) over the GLOBAL batch, plus a
  per-example memory of the weights, to exercise global_sum / global_gather
  and PerExampleMemory under replicas."""
  name = "test_softmax"
  metric_names = ("weight_sum",)

  def build_state(self):
    self.memory = base.PerExampleMemory("w", self.data.num_ids, -1.0)
    return {"memory": self.memory}

  def weights(self, ctx):
    loss = ctx.terms["adv"]
    z = tf.exp(loss)
    w = z / base.global_sum(tf.reduce_sum(z)) * ctx.global_batch_size
    self.memory.update(ctx.ids, w)
    return {"adv": w}

  def metrics(self, ctx, weights):
    return {"weight_sum": base.global_sum(tf.reduce_sum(weights["adv"]))}


@pytest.fixture(autouse=True)
def _register_test_method(monkeypatch):
  monkeypatch.setitem(registry.METHODS, "test_softmax", _SoftmaxOfLosses)


def _train(distribute, tmp_path, steps=3, **overrides):
  config = helpers.tiny_config(distribute=distribute, **overrides)
  return helpers.fit_steps(config, tmp_path / distribute, steps)


@pytest.mark.parametrize("method,objective", [("none", "at"),
                                              ("test_softmax", "at"),
                                              ("none", "trades")])
def test_two_replicas_equal_one_device(tmp_path, method, objective):
  one = _train("default", tmp_path, **{"reweighting.name": method,
                                       "objective.name": objective})
  two = _train("mirrored", tmp_path, **{"reweighting.name": method,
                                        "objective.name": objective})
  assert two.strategy.num_replicas_in_sync == 2
  w1 = [v.numpy() for v in one.trainer.network.weights]
  w2 = [v.numpy() for v in two.trainer.network.weights]
  for a, b in zip(w1, w2):
    np.testing.assert_allclose(a, b, atol=1e-4)
  # The weights moved: the comparison is not between two untouched inits.
  init = experiment.prepare(helpers.tiny_config(), str(tmp_path / "init"))
  assert not np.allclose(w1[0], init.trainer.network.weights[0].numpy())
  if method == "test_softmax":
    m1, m2 = one.trainer.method.memory, two.trainer.method.memory
    np.testing.assert_allclose(m1.numpy(), m2.numpy(), atol=1e-5)
    copies = two.trainer.method.memory.variable.values
    np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())
    assert (m1.numpy() > 0).sum() == 3 * 32  # every update landed
    # The logged weight sum is the global batch size (normalised globally).
    np.testing.assert_allclose(
        two.trainer.trackers["method/weight_sum"].result().numpy(), 32, rtol=1e-5)


def test_loss_is_the_weighted_mean_over_the_global_batch(tmp_path):
  """With weights w = B softmax(l), the logged loss equals sum_i w_i l_i / B."""
  # SmallCNN starts with zero logits (TRADES' init), so step 1 has equal
  # losses and uniform weights; later steps do not.
  run = _train("mirrored", tmp_path, steps=3,
               **{"reweighting.name": "test_softmax"})
  term = run.trainer.trackers["term/adv"].result().numpy()
  loss = run.trainer.trackers["loss"].result().numpy()
  # Weighted towards the largest losses: the weighted mean exceeds the mean.
  assert loss > term
  plain = _train("default", tmp_path, steps=1)
  np.testing.assert_allclose(plain.trainer.trackers["loss"].result().numpy(),
                             plain.trainer.trackers["term/adv"].result().numpy(),
                             rtol=1e-5)


def test_weight_decay_is_coupled_and_not_doubled_across_replicas(tmp_path):
  """A zero learning signal isolates weight decay: w <- w - lr * wd * w."""
  for distribute in ("default", "mirrored"):
    config = helpers.tiny_config(distribute=distribute)
    config.optimizer.momentum = 0.0
    config.optimizer.weight_decay = 0.1
    config.optimizer.learning_rate = 0.5
    run = experiment.prepare(config, str(tmp_path / distribute))
    variables = run.trainer.network.trainable_variables
    before = [v.numpy() for v in variables]
    grads = [tf.zeros_like(v) for v in variables]

    @tf.function
    def apply():
      def step():
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        g = [gg + (0.1 / replicas) * v for gg, v in zip(grads, variables)]
        run.trainer.optimizer.apply(g, variables)
      run.strategy.run(step)
    apply()
    np.testing.assert_allclose(variables[0].numpy(), before[0] * (1 - 0.5 * 0.1),
                               rtol=1e-5)


def test_batch_statistics_attack_forward_writes_no_bn_state(tmp_path):
  """AttackSpec bn='batch': BN uses the attacked batch's statistics (logits
  equal a training-mode forward), yet the moving averages stay untouched."""
  import ml_collections
  from official.attacks import pgd
  config = helpers.tiny_config()
  config.model = ml_collections.ConfigDict(
      {"name": "wide_resnet", "depth": 10, "width": 1})
  run = experiment.prepare(config, str(tmp_path))
  network = run.trainer.network
  x = next(iter(run.data.test()))["image"][:16]
  x = tf.cast(x, tf.float32)
  labels = tf.zeros([16], tf.int32)
  moving = [v.numpy().copy() for v in network.non_trainable_variables]
  assert moving, "the model must have BN moving averages for this test"
  spec = pgd.AttackSpec("probe", "ce", 0.1, 0.02, 2, "none", bn="batch")
  with run.strategy.scope():
    x_adv, stats = run.trainer.attack_fn(spec)(x, labels, tf.constant([0, 0]))
  for before, v in zip(moving, network.non_trainable_variables):
    np.testing.assert_array_equal(before, v.numpy())
  frozen = network(x_adv, training=False)[0].numpy()
  batch = network(x_adv, training=True)[0].numpy()  # (this one writes BN)
  np.testing.assert_allclose(stats["logits"].numpy(), batch, atol=1e-4)
  assert np.abs(frozen - batch).max() > 1e-2  # the two modes do differ
  with pytest.raises(ValueError, match=r"attack 'probe': unknown bn 'train'; "
                     r"valid: frozen, batch"):
    pgd.AttackSpec("probe", bn="train")


class _PerStepStatistics(_SoftmaxOfLosses):
  """The per-step accumulation the epoch record replaced, as method metrics:
  each replica's batch mean / max / min, averaged by Keras Mean trackers."""
  name = "test_per_step"
  metric_names = ("term", "mean", "max", "min")

  def metrics(self, ctx, weights):
    w = weights["adv"]
    return {"term": tf.reduce_mean(ctx.terms["adv"]),
            "mean": tf.reduce_mean(w), "max": tf.reduce_max(w),
            "min": tf.reduce_min(w)}


def test_once_per_epoch_statistics_equal_the_per_step_accumulation(
    tmp_path, monkeypatch):
  monkeypatch.setitem(registry.METHODS, "test_per_step", _PerStepStatistics)
  config = helpers.tiny_config(distribute="mirrored",
                               **{"reweighting.name": "test_per_step"})
  run = experiment.prepare(config, str(tmp_path))
  history = run.trainer.fit(run.data.train(0, 1), epochs=1, steps_per_epoch=4,
                            verbose=0)
  trackers = run.trainer.trackers
  for stat, name in (("term", "term/adv"), ("mean", "weight/adv/mean"),
                     ("max", "weight/adv/max"), ("min", "weight/adv/min")):
    per_step = float(trackers[f"method/{stat}"].result())
    np.testing.assert_allclose(float(trackers[name].result()), per_step,
                               rtol=1e-6)
    # The epoch's logs (Progress line, TensorBoard) carry the same value.
    np.testing.assert_allclose(history.history[name][-1], per_step, rtol=1e-6)
  assert float(trackers["weight/adv/max"].result()) > 1.0  # not uniform
  # The histogram: every weight of the epoch, i.e. the 4 x 32 examples'.
  memory = run.trainer.method.memory.numpy()
  np.testing.assert_allclose(
      np.sort(run.trainer.record.weights_of_epoch()["adv"]),
      np.sort(memory[memory > 0]), rtol=1e-6)


def test_epsilon_warmup_ramps_radius_and_step_of_every_training_attack(tmp_path):
  # 4-step epochs, 1 warm-up epoch: eps_s = eps * min(1, (s + 1) / 4).
  config = helpers.tiny_config("lrat", **{"attack.epsilon_warmup_epochs": 1,
                                          "reweighting.burn_in_epochs": 0})
  run = experiment.prepare(config, str(tmp_path / "warmup"))
  trainer = run.trainer
  trainer.steps_per_epoch = 4
  trainer.epsilon_warmup_steps = 4
  trainer.run_eagerly = True  # the attack wrapper below sees numbers
  seen = []
  attack_fn = trainer.attack_fn

  def recording(spec, final_logits=True):
    attack = attack_fn(spec, final_logits)

    def wrapped(x, y, seed, epsilon, step_size):
      x_adv, stats = attack(x, y, seed, epsilon, step_size)
      seen.append((spec.name, float(np.max(epsilon)), float(np.max(step_size)),
                   float(np.max(np.abs(x_adv.numpy() - x.numpy())))))
      return x_adv, stats
    return wrapped
  trainer.attack_fn = recording
  trainer.fit(run.data.train(0, 1), epochs=1, steps_per_epoch=6, verbose=0)
  eps, alpha = config.attack.epsilon, config.attack.step_size
  names = {name for name, *_ in seen}
  assert len(names) == 2  # LRAT's CE and CW attacks are both ramped
  for name in names:
    rows = [r for r in seen if r[0] == name]
    assert len(rows) == 6
    ramp = np.minimum(1.0, np.arange(1, 7) / 4)
    np.testing.assert_allclose([r[1] for r in rows], eps * ramp, rtol=1e-6)
    np.testing.assert_allclose([r[2] for r in rows], alpha * ramp, rtol=1e-6)
    assert all(r[3] <= r[1] + 1e-6 for r in rows)  # inside the ramped ball


def test_no_warmup_leaves_the_attack_budget_to_the_spec(tmp_path):
  config = helpers.tiny_config()
  run = experiment.prepare(config, str(tmp_path / "plain"))
  assert run.trainer.epsilon_warmup_steps == 0
  assert run.trainer._epsilon_ramp(tf.constant(0, tf.int64)) is None


def test_adversarial_accuracy_is_the_training_forward_on_the_final_iterate(
    tmp_path):
  """The training attack ends without a forward of its own (final_logits
  False); the logged adversarial accuracy is that of the training forward on
  its output (SmallCNN without dropout: the network's accuracy there)."""
  run = experiment.prepare(helpers.tiny_config(), str(tmp_path / "acc"))
  trainer = run.trainer
  trainer.run_eagerly = True  # the wrapper below sees numbers
  seen = []
  attack_fn = trainer.attack_fn

  def recording(spec, final_logits=True):
    attack = attack_fn(spec, final_logits)

    def wrapped(x, labels, *args):
      x_adv, stats = attack(x, labels, *args)
      accuracy = lambda images: float(np.mean(np.argmax(  # noqa: E731
          trainer.network(images, training=False)[0].numpy(), -1)
          == labels.numpy()))  # the weights before this step's update
      seen.append((final_logits, sorted(stats), accuracy(x_adv), accuracy(x)))
      return x_adv, stats
    return wrapped
  trainer.attack_fn = recording
  # Leave SmallCNN's zero-logit start (every input one class: nothing to
  # fool) with a random head, so adversarial and clean accuracy can differ.
  rng = np.random.default_rng(0)
  for v in trainer.network.trainable_variables:
    if not np.any(v.numpy()):
      v.assign(rng.normal(0.0, 0.3, v.shape).astype("float32"))
  trainer.fit(run.data.train(0, 1), epochs=1, steps_per_epoch=4, verbose=0)
  assert len(seen) == 4
  assert all(final is False and "logits" not in keys
             for final, keys, _, _ in seen)
  adversarial = [a for _, _, a, _ in seen]
  # Not trivial: the attack fools it (the same step's clean accuracy is higher).
  assert any(a < c for _, _, a, c in seen), seen
  np.testing.assert_allclose(
      trainer.trackers["adversarial_accuracy"].result().numpy(),
      np.mean(adversarial), atol=1e-6)
