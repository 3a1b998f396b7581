import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn import datasets

from official.attacks import losses
from official.attacks import pgd


def _tiny_model(seed=0):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([
      keras.Input((8, 8, 1)), keras.layers.Flatten(),
      keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])


@pytest.fixture(scope="module")
def digits_model():
  """A small classifier trained (naturally) on scikit-learn's digits."""
  d = datasets.load_digits()
  x = (d.images / 16.0).astype("float32")[..., None]
  y = d.target.astype("int32")
  model = _tiny_model()
  model.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x[:1400], y[:1400], epochs=15, batch_size=64, verbose=0)
  return model, x[1400:1656], y[1400:1656]


def _forward(model):
  return lambda x: model(x, training=False)


def test_pgd_stays_in_ball_and_box_with_per_example_epsilon():
  model = _tiny_model()
  x = tf.random.stateless_uniform([4, 8, 8, 1], [1, 2])
  y = tf.constant([0, 1, 2, 3])
  eps = tf.constant([0.0, 0.03, 0.1, 0.3])
  spec = pgd.AttackSpec("p", epsilon=0.3, step_size=0.05, steps=5)
  x_adv, stats = pgd.make_attack(_forward(model), spec)(x, y, [0, 1], epsilon=eps)
  delta = np.abs((x_adv - x).numpy()).reshape(4, -1).max(axis=1)
  assert np.all(delta <= eps.numpy() + 1e-6)
  assert delta[0] == 0.0 and delta[3] > 0.1  # budgets are really per example
  assert x_adv.numpy().min() >= 0.0 and x_adv.numpy().max() <= 1.0
  np.testing.assert_allclose(stats["epsilon"].numpy(), eps.numpy())


def test_pgd_raises_loss_over_fgsm_and_clean(digits_model):
  model, x, y = digits_model
  eps = 0.1
  clean = losses.cross_entropy(model(x), y).numpy().mean()
  x_fgsm, _ = pgd.make_attack(_forward(model), pgd.fgsm(eps))(x, y, [0, 0])
  fgsm_loss = losses.cross_entropy(model(x_fgsm), y).numpy().mean()
  spec = pgd.AttackSpec("pgd", epsilon=eps, step_size=eps / 4, steps=20)
  x_pgd, stats = pgd.make_attack(_forward(model), spec)(x, y, [0, 0])
  pgd_loss = losses.cross_entropy(model(x_pgd), y).numpy().mean()
  assert clean < fgsm_loss < pgd_loss
  acc = lambda xx: np.mean(np.argmax(model(xx), -1) == y)  # noqa: E731
  assert acc(x_pgd) < acc(x_fgsm) <= acc(x)
  np.testing.assert_allclose(stats["loss"].numpy().mean(), pgd_loss, rtol=1e-4)


def test_statistics_match_a_hand_run_loop(digits_model):
  model, x, y = digits_model
  x, y = x[:64], y[:64]
  eps, alpha, steps = 0.1, 0.02, 10
  spec = pgd.AttackSpec("pgd", epsilon=eps, step_size=alpha, steps=steps,
                        random_start="none")
  x_adv, stats = pgd.make_attack(_forward(model), spec)(x, y, [0, 0])
  # Hand-run: eager loop, numpy bookkeeping.
  xa = tf.identity(x)
  count = np.zeros(64, int)
  first = np.full(64, steps)
  for k in range(steps):
    with tf.GradientTape() as tape:
      tape.watch(xa)
      logits = model(xa)
      loss = tf.reduce_sum(losses.cross_entropy(logits, y))
    g = tape.gradient(loss, xa)
    ok = np.argmax(logits.numpy(), -1) == y
    count += ok
    first[(first == steps) & ~ok] = k
    xa = tf.clip_by_value(tf.clip_by_value(xa + alpha * tf.sign(g), x - eps, x + eps), 0, 1)
  np.testing.assert_array_equal(stats["correct_count"].numpy(), count)
  np.testing.assert_array_equal(stats["kappa_first"].numpy(), first)
  np.testing.assert_allclose(x_adv.numpy(), xa.numpy(), atol=1e-6)
  assert 0 < count.mean() < steps  # the statistic is not trivially 0 or K


def test_without_final_logits_one_forward_fewer_same_result(digits_model):
  """`final_logits=False` (the trainer's and the evaluations' attacks) skips
  only the statistics forward: K forwards instead of K + 1, same x_adv and
  the same per-step statistics."""
  model, x, y = digits_model
  spec = pgd.AttackSpec("pgd", epsilon=0.1, step_size=0.02, steps=4)
  calls = []

  def forward(images):
    calls.append(1)  # counted per call: the tf.functions run eagerly here
    return model(images, training=False)

  results = {}
  tf.config.run_functions_eagerly(True)
  try:
    for final in (True, False):
      calls.clear()
      attack = pgd.make_attack(forward, spec, final_logits=final)
      results[final] = (attack(x, y, [3, 4]), len(calls))
  finally:
    tf.config.run_functions_eagerly(False)
  (x_full, full), n_full = results[True]
  (x_lean, lean), n_lean = results[False]
  assert (n_full, n_lean) == (spec.steps + 1, spec.steps)
  np.testing.assert_array_equal(x_lean.numpy(), x_full.numpy())
  assert set(full) - set(lean) == {"logits", "loss"}
  for key in lean:
    np.testing.assert_array_equal(lean[key].numpy(), full[key].numpy())
  # Restarts need the final logits to pick a restart: kept.
  spec2 = pgd.AttackSpec("pgd", epsilon=0.1, step_size=0.02, steps=2,
                         restarts=2)
  _, stats = pgd.make_attack(forward, spec2, final_logits=False)(x, y, [0, 0])
  assert "logits" in stats


def test_xla_matches_graph_mode(digits_model):
  model, x, y = digits_model
  spec = pgd.AttackSpec("pgd", epsilon=0.1, step_size=0.02, steps=5)
  a, sa = pgd.make_attack(_forward(model), spec, jit_compile=False)(x, y, [3, 4])
  b, sb = pgd.make_attack(_forward(model), spec, jit_compile=True)(x, y, [3, 4])
  np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
  np.testing.assert_array_equal(sa["correct_count"].numpy(),
                                sb["correct_count"].numpy())


def test_restarts_never_lower_the_attack_success(digits_model):
  model, x, y = digits_model
  one = pgd.AttackSpec("pgd", epsilon=0.08, step_size=0.02, steps=5)
  three = pgd.AttackSpec("pgd", epsilon=0.08, step_size=0.02, steps=5, restarts=3)
  x1, _ = pgd.make_attack(_forward(model), one)(x, y, [5, 5])
  x3, _ = pgd.make_attack(_forward(model), three)(x, y, [5, 5])
  fooled = lambda xx: np.argmax(model(xx), -1) != y  # noqa: E731
  # Restart 0 uses the same noise as the single run, so success can only grow.
  assert np.all(fooled(x3)[fooled(x1)])


def test_random_start_is_the_global_slice_under_two_replicas():
  from official.core import experiment
  strategy = experiment.make_strategy("mirrored")  # one per process
  assert strategy.num_replicas_in_sync == 2
  seed = tf.constant([7, 9], tf.int64)
  full = pgd.random_start_noise("uniform", tf.constant([6, 2, 2, 1]), seed)

  @tf.function
  def per_replica():
    return strategy.run(lambda: pgd.random_start_noise(
        "uniform", tf.constant([3, 2, 2, 1]), seed))

  parts = strategy.experimental_local_results(per_replica())
  np.testing.assert_allclose(np.concatenate([p.numpy() for p in parts]),
                             full.numpy())
  assert not np.allclose(parts[0].numpy(), parts[1].numpy())


@pytest.mark.parametrize("kw,match", [
    (dict(epsilon=0.0), "epsilon must be in"),
    (dict(epsilon=1.5), "epsilon must be in"),
    (dict(loss="l2"), "unknown loss 'l2'; valid: ce, cw, kl"),
    (dict(random_start="zero"), "unknown random_start"),
])
def test_bad_specs_raise_one_line_errors(kw, match):
  with pytest.raises(ValueError, match=match):
    pgd.AttackSpec("bad", **kw)


def test_logit_scale_attacks_the_scaled_logits():
  keras.utils.set_random_seed(3)
  model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(3)])
  x = tf.random.stateless_uniform([8, 4, 4, 1], [1, 2])
  y = tf.argmax(model(x), -1, output_type=tf.int32)
  seed = tf.constant([5, 6], tf.int64)
  spec = pgd.AttackSpec("s", "ce", 0.1, 0.02, 5, "uniform", logit_scale=0.1)
  scaled, _ = pgd.make_attack(lambda v: model(v), spec)(x, y, seed)
  plain = pgd.AttackSpec("s", "ce", 0.1, 0.02, 5, "uniform")
  by_hand, _ = pgd.make_attack(lambda v: 0.1 * model(v), plain)(x, y, seed)
  np.testing.assert_array_equal(scaled.numpy(), by_hand.numpy())
  with pytest.raises(ValueError, match="logit_scale must be > 0"):
    pgd.AttackSpec("s", logit_scale=0.0)


def test_one_sided_start_is_x_plus_eps_times_uniform_0_1():
  """RoBal's start x + eps·U[0, 1): no gradient (a constant forward), so the
  iterate stays at its (clipped) start."""
  noise = pgd.random_start_noise("one_sided", tf.constant([64, 4, 4, 1]),
                                 tf.constant([3, 4], tf.int64)).numpy()
  assert noise.min() >= 0.0 and noise.max() < 1.0 and noise.mean() > 0.4
  x = tf.fill([8, 4, 4, 1], 0.5)
  constant = lambda x: tf.zeros([tf.shape(x)[0], 10]) + 0.0 * tf.reduce_sum(x)  # noqa: E731
  spec = pgd.AttackSpec("p", epsilon=0.2, step_size=0.05, steps=2,
                        random_start="one_sided")
  x_adv, _ = pgd.make_attack(constant, spec)(x, tf.zeros([8], tf.int32), [1, 2])
  delta = (x_adv - x).numpy()
  assert delta.min() >= 0.0 and delta.max() <= 0.2 and delta.mean() > 0.05
  # Near the top of the box it is clipped to 1.
  top = tf.fill([8, 4, 4, 1], 0.95)
  x_adv, _ = pgd.make_attack(constant, spec)(top, tf.zeros([8], tf.int32),
                                             [1, 2])
  assert x_adv.numpy().max() <= 1.0 and (x_adv.numpy() >= 0.95).all()
