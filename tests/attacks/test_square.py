import numpy as np
import pytest
import tensorflow as tf

from official.attacks import pgd
from official.attacks import square


def _binary_linear(side=4, seed=0, gradient=True):
  """Logits (0, w.x + b) on flattened [side, side, 1] images.

  The margin is linear, so the worst point of the eps-ball is the vertex
  x - eps * sign(w) (for label 1), and an interior x is robust iff
  |w.x + b| > eps * ||w||_1. With gradient=False the input passes through
  0 * x + stop_gradient(x): same logits, input gradient zero everywhere.
  """
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(side * side, 1)).astype("float32")
  b = np.float32(-0.5 * w.sum())  # the boundary through the grey image

  def forward(x):
    if not gradient:
      x = 0.0 * x + tf.stop_gradient(x)
    g = tf.matmul(tf.reshape(x, [tf.shape(x)[0], -1]), w) + b
    return tf.concat([tf.zeros_like(g), g], 1)

  return forward, w[:, 0], b


def _points(n, side=4, seed=1):
  rng = np.random.default_rng(seed)
  return rng.uniform(0.3, 0.7, (n, side, side, 1)).astype("float32")


def _labels_and_distance(x, w, b):
  g = x.reshape(len(x), -1) @ w + b
  return (g > 0).astype("int32"), np.abs(g) / np.abs(w).sum()


def _predict(forward, x):
  return forward(x).numpy().argmax(1)


def test_schedule_and_square_side_match_the_reference():
  p = [square.p_selection(0.8, i).numpy() for i in (0, 10, 11, 50, 51, 201,
                                                     1001, 4001, 8001)]
  np.testing.assert_allclose(p, [0.8, 0.8, 0.4, 0.4, 0.2, 0.1, 0.8 / 32,
                                 0.8 / 128, 0.8 / 512], rtol=1e-6)
  # MNIST: round(sqrt(0.8 * 784)) = round(25.04) = 25; p=0.4: 17.7 -> 18;
  # never 0, never more than the image.
  assert square.square_side(0.8, 28, 28).numpy() == 25
  assert square.square_side(0.4, 28, 28).numpy() == 18
  assert square.square_side(0.8 / 512, 28, 28).numpy() == 1
  assert square.square_side(1.0, 4, 6).numpy() == 4


def test_margin_by_hand():
  logits = tf.constant([[1.0, 3.0, 2.0], [5.0, -1.0, 0.0]])
  np.testing.assert_allclose(square.margin(logits, [1, 2]).numpy(), [1.0, -5.0])


def test_square_stays_in_ball_and_box_with_per_example_epsilon():
  forward, w, b = _binary_linear(side=6)
  x = np.random.default_rng(2).uniform(0, 1, (8, 6, 6, 1)).astype("float32")
  x[0] = 0.0  # at the box edge
  y, _ = _labels_and_distance(x, w, b)
  eps = np.array([0.01, 0.05, 0.1, 0.3] * 2, "float32")
  x_adv = square.square(forward, x, y, tf.constant(eps), seed=[0, 1],
                        n_queries=50).numpy()
  delta = np.abs(x_adv - x).reshape(8, -1).max(1)
  assert np.all(delta <= eps + 1e-6)
  assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
  np.testing.assert_allclose(delta[1:], eps[1:], rtol=1e-5)  # on the vertices


def test_square_reaches_the_analytic_robust_accuracy_of_a_linear_model():
  forward, w, b = _binary_linear()
  x = _points(64)
  y, dist = _labels_and_distance(x, w, b)
  for eps in (0.02, 0.04, 0.06):
    x_adv = square.square(forward, x, y, eps, seed=[3, 0], n_queries=400)
    robust = _predict(forward, x_adv) == y
    np.testing.assert_array_equal(robust, dist > eps)
    assert 0.0 < robust.mean() < 1.0


def test_square_needs_no_gradient_where_pgd_fails():
  forward, w, b = _binary_linear(side=8, gradient=False)
  eps = 0.03
  x = _points(128, side=8)
  y, dist = _labels_and_distance(x, w, b)
  # Keep points a random start alone cannot break (PGD's uniform start moves
  # w.x by ~ eps ||w||_2 / sqrt(3), far below eps ||w||_1 / 2 in 64 dims).
  keep = dist > eps / 2
  x, y, dist = x[keep], y[keep], dist[keep]
  with tf.GradientTape() as tape:  # the model's input gradient is zero
    xt = tf.constant(x)
    tape.watch(xt)
    g = tape.gradient(tf.reduce_sum(forward(xt)), xt)
  assert np.all(g.numpy() == 0.0)
  spec = pgd.AttackSpec("pgd20", epsilon=eps, step_size=eps / 4, steps=20)
  x_pgd, _ = pgd.make_attack(forward, spec)(x, y, [0, 0])
  breakable = dist <= eps
  assert breakable.sum() >= 10
  assert np.all(_predict(forward, x_pgd) == y)  # PGD-20 finds nothing
  x_sq = square.square(forward, x, y, eps, seed=[0, 0], n_queries=2000)
  fooled = _predict(forward, x_sq) != y
  np.testing.assert_array_equal(fooled, breakable)  # exactly the analytic set


def test_fooled_examples_never_change_and_same_seed_same_numbers():
  forward, w, b = _binary_linear(side=6)
  x = _points(32, side=6)
  y, _ = _labels_and_distance(x, w, b)
  short = square.square(forward, x, y, 0.08, seed=[5, 5], n_queries=20).numpy()
  again = square.square(forward, x, y, 0.08, seed=[5, 5], n_queries=20).numpy()
  np.testing.assert_array_equal(short, again)
  other = square.square(forward, x, y, 0.08, seed=[5, 6], n_queries=20).numpy()
  assert not np.array_equal(short, other)
  long = square.square(forward, x, y, 0.08, seed=[5, 5], n_queries=300).numpy()
  fooled_early = _predict(forward, short) != y
  fooled_late = _predict(forward, long) != y
  assert 0 < fooled_early.sum() < fooled_late.sum()
  # Fooled after 20 queries: the same point after 300.
  np.testing.assert_array_equal(long[fooled_early], short[fooled_early])


def test_misclassified_inputs_come_back_unchanged():
  forward, w, b = _binary_linear()
  x = _points(8)
  y, _ = _labels_and_distance(x, w, b)
  x_adv = square.square(forward, x, 1 - y, 0.1, seed=[0, 0], n_queries=10)
  np.testing.assert_array_equal(x_adv.numpy(), x)


def test_xla_matches_graph_mode():
  forward, w, b = _binary_linear(side=6)
  x = _points(16, side=6)
  y, _ = _labels_and_distance(x, w, b)
  a = square.square(forward, x, y, 0.06, seed=[1, 2], n_queries=100)
  c = square.square(forward, x, y, 0.06, seed=[1, 2], n_queries=100,
                    jit_compile=True)
  np.testing.assert_allclose(a.numpy(), c.numpy(), atol=1e-6)


def test_two_replicas_equal_one_device():
  from official.core import experiment
  strategy = experiment.make_strategy("mirrored")
  assert strategy.num_replicas_in_sync == 2
  forward, w, b = _binary_linear(side=6)
  x = _points(8, side=6)
  y, _ = _labels_and_distance(x, w, b)
  full = square.square(forward, x, y, 0.06, seed=[4, 4], n_queries=60)

  @tf.function
  def run():
    def replica_fn():
      rid = tf.distribute.get_replica_context().replica_id_in_sync_group
      rows = tf.range(4) + 4 * rid
      return square.square(forward, tf.gather(x, rows), tf.gather(y, rows),
                           0.06, seed=[4, 4], n_queries=60)
    return strategy.run(replica_fn)

  parts = strategy.experimental_local_results(run())
  np.testing.assert_array_equal(np.concatenate([p.numpy() for p in parts]),
                                full.numpy())


@pytest.mark.parametrize("kw,match", [
    (dict(epsilon=0.0), "epsilon must be in"),
    (dict(n_queries=0), "n_queries must be positive"),
    (dict(p_init=1.5), r"p_init must be in \(0, 1\]"),
    (dict(seed=7), r"seed must be a \[2\] int stateless seed"),
])
def test_bad_arguments_raise_one_line_errors(kw, match):
  forward, _, _ = _binary_linear()
  args = dict(epsilon=0.1, seed=[0, 0], n_queries=10, p_init=0.8)
  args.update(kw)
  with pytest.raises(ValueError, match=match):
    square.square(forward, _points(2), [0, 1], args.pop("epsilon"), **args)
