import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize

from official.attacks import fab


def _linear(num_classes=10, side=4, seed=0):
  """A fixed-weight linear classifier on flattened [side, side, 1] images."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(side * side, num_classes)).astype("float32")
  b = (0.1 * rng.normal(size=num_classes)).astype("float32")

  def forward(x):
    return tf.matmul(tf.reshape(x, [tf.shape(x)[0], -1]), w) + b

  return forward, w, b


def _interior_points(n, side=4, seed=1):
  # In [0.35, 0.65]: every minimal perturbation below is < 0.35, so the box
  # [0, 1] never binds and the closed form holds.
  rng = np.random.default_rng(seed)
  return rng.uniform(0.35, 0.65, (n, side, side, 1)).astype("float32")


def _analytic_min_linf(x, w, b):
  """min_j (z_y - z_j) / ||w_y - w_j||_1: the distance to the nearest of the
  half-spaces {z_j >= z_y}, whose union is the adversarial set."""
  flat = x.reshape(len(x), -1)
  z = flat @ w + b
  y = z.argmax(1)
  dist = np.full(z.shape, np.inf)
  for j in range(z.shape[1]):
    m = y != j
    dist[m, j] = ((z[m, y[m]] - z[m, j])
                  / np.abs(w[:, y[m]] - w[:, [j]]).sum(0))
  return y, dist.min(1)


def _linf(a, b):
  return np.abs(np.asarray(a) - np.asarray(b)).reshape(len(a), -1).max(1)


def _lp_min_linf(p, w, b):
  """min ||d||_inf s.t. w.(p+d) = b, 0 <= p+d <= 1, by scipy's LP solver."""
  dim = len(p)
  eye = np.eye(dim)
  a_ub = np.block([[eye, -np.ones((dim, 1))], [-eye, -np.ones((dim, 1))]])
  bounds = [(-p[i], 1 - p[i]) for i in range(dim)] + [(0, None)]
  res = optimize.linprog(np.r_[np.zeros(dim), 1.0], A_ub=a_ub,
                         b_ub=np.zeros(2 * dim),
                         A_eq=np.r_[w, 0.0][None], b_eq=[b - w @ p],
                         bounds=bounds)
  return res.x[-1] if res.status == 0 else None


def _qp_min_l2(p, w, b):
  """min ||d||_2 s.t. w.(p+d) = b, 0 <= p+d <= 1, by scipy's SLSQP."""
  res = optimize.minimize(
      lambda d: d @ d, np.zeros_like(p, dtype="float64"),
      jac=lambda d: 2 * d, method="SLSQP",
      bounds=[(-p[i], 1 - p[i]) for i in range(len(p))],
      constraints=[dict(type="eq", fun=lambda d: w @ (p + d) - b,
                        jac=lambda d: w.astype("float64"))],
      options=dict(ftol=1e-14, maxiter=500))
  return np.sqrt(res.fun) if res.success else None


def _norm(v, norm):
  v = np.asarray(v).reshape(len(v), -1)
  return np.abs(v).max(1) if norm == "Linf" else np.sqrt((v * v).sum(1))


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_projection_is_the_box_constrained_minimum(norm):
  rng = np.random.default_rng(0)
  n, dim = 8, 12
  p = rng.uniform(0, 1, (n, dim)).astype("float32")
  w = rng.normal(size=(n, dim)).astype("float32")
  w[0, :4] = 0.0  # zero weights: those coordinates must not move
  gap = rng.choice([-1, 1], n) * rng.uniform(0.05, 0.5, n)
  b = (np.sum(w * p, 1) + gap * np.abs(w).sum(1)).astype("float32")
  b[1] = np.sum(w[1] * p[1]) + 100.0  # the box never reaches the plane
  d = fab.project(tf.constant(p), tf.constant(w), tf.constant(b),
                  norm).numpy()
  z = p + d
  assert z.min() >= 0.0 and z.max() <= 1.0
  np.testing.assert_array_equal(d[0, :4], 0.0)
  solver = _lp_min_linf if norm == "Linf" else _qp_min_l2
  binding = 0
  for i in range(n):
    lam = solver(p[i], w[i], b[i])
    if i == 1:
      # Infeasible (the solver agrees): the vertex that goes furthest towards
      # the plane. w.z must rise here, so each coordinate goes to the end
      # where w_i pushes it up.
      assert lam is None and b[i] > w[i] @ p[i]
      np.testing.assert_allclose(z[i], w[i] > 0, atol=1e-6)
      continue
    np.testing.assert_allclose(_norm(d[i:i + 1], norm)[0], lam, rtol=1e-4)
    np.testing.assert_allclose(w[i] @ z[i], b[i], atol=1e-4)
    binding += np.any((z[i] < 1e-6) | (z[i] > 1 - 1e-6))
  assert binding >= 2  # the box really constrained some of the cases


def test_projection_hand_case():
  # p = (0.5, 0.9), w = (1, 1), b = 2.0: the free step is 0.3 per coordinate,
  # but x2 can only rise 0.1, so x1 must rise 0.5 (to 1.0): ||d|| = 0.5.
  d = fab.project_linf(tf.constant([[0.5, 0.9]]), tf.constant([[1.0, 1.0]]),
                       tf.constant([2.0])).numpy()
  np.testing.assert_allclose(d, [[0.5, 0.1]], atol=1e-6)


def test_fab_minimal_norm_is_within_one_percent_of_the_analytic_minimum():
  forward, w, b = _linear()
  x = _interior_points(24)
  y, d_star = _analytic_min_linf(x, w, b)
  best = np.full(len(x), np.inf)
  for rank in range(1, 10):
    x_adv, found = fab.fab_minimal(forward, x, y, target_rank=rank, seed=[0, 0])
    adv = forward(x_adv).numpy().argmax(1) != y
    assert np.all(found.numpy() == adv)  # found <=> misclassified
    best = np.minimum(best, np.where(adv, _linf(x_adv, x), np.inf))
  ratio = best / d_star
  assert np.all(ratio >= 1.0 - 1e-5), ratio.min()  # never below the minimum
  assert np.all(ratio <= 1.01), ratio.max()


def test_fab_t_reaches_the_analytic_robust_accuracy():
  forward, w, b = _linear()
  x = _interior_points(64)
  y, d_star = _analytic_min_linf(x, w, b)
  checked = 0
  for eps in (0.03, 0.057, 0.083, 0.105):
    # FAB overshoots the minimum by < 1%: keep eps off that band.
    assert not np.any((d_star > eps / 1.01) & (d_star <= eps))
    x_adv = fab.fab_t(forward, x, y, eps, seed=[0, 0])
    robust = forward(x_adv).numpy().argmax(1) == y
    assert np.all(_linf(x_adv, x) <= eps + 1e-6)
    assert x_adv.numpy().min() >= 0.0 and x_adv.numpy().max() <= 1.0
    np.testing.assert_array_equal(robust, d_star > eps)
    np.testing.assert_array_equal(x_adv.numpy()[robust], x[robust])
    checked += 0 < robust.mean() < 1
  assert checked >= 3  # the radii are not all trivial


def test_misclassified_and_per_example_epsilon():
  forward, w, b = _linear()
  x = _interior_points(16)
  y, d_star = _analytic_min_linf(x, w, b)
  wrong = y.copy()
  wrong[:4] = (y[:4] + 1) % 10  # labels the model already gets wrong
  x_adv, found = fab.fab_minimal(forward, x, wrong, target_rank=1, steps=5)
  np.testing.assert_array_equal(x_adv.numpy()[:4], x[:4])
  assert np.all(found.numpy()[:4])
  eps = np.where(np.arange(16) % 2 == 0, 1e-3, 0.3).astype("float32")
  x_adv = fab.fab_t(forward, x, y, tf.constant(eps))
  robust = forward(x_adv).numpy().argmax(1) == y
  np.testing.assert_array_equal(robust, d_star > eps)
  assert robust[::2].all() and not robust[1::2].any()


def test_xla_matches_graph_mode():
  forward, w, b = _linear()
  x = _interior_points(16)
  y, _ = _analytic_min_linf(x, w, b)
  a = fab.fab_t(forward, x, y, 0.08, n_target_classes=3, steps=30)
  c = fab.fab_t(forward, x, y, 0.08, n_target_classes=3, steps=30,
                jit_compile=True)
  np.testing.assert_allclose(a.numpy(), c.numpy(), atol=1e-5)
  assert not np.array_equal(a.numpy(), x)  # something was attacked


def test_two_replicas_equal_one_device():
  from official.core import experiment
  strategy = experiment.make_strategy("mirrored")
  assert strategy.num_replicas_in_sync == 2
  forward, w, b = _linear()
  x = _interior_points(8)
  y, _ = _analytic_min_linf(x, w, b)
  full = fab.fab_t(forward, x, y, 0.08, n_target_classes=2, steps=20)

  @tf.function
  def run():
    def replica_fn():
      rid = tf.distribute.get_replica_context().replica_id_in_sync_group
      xs = tf.gather(x, tf.range(4) + 4 * rid)
      ys = tf.gather(y, tf.range(4) + 4 * rid)
      return fab.fab_t(forward, xs, ys, 0.08, n_target_classes=2, steps=20)
    return strategy.run(replica_fn)

  parts = strategy.experimental_local_results(run())
  np.testing.assert_allclose(np.concatenate([p.numpy() for p in parts]),
                             full.numpy(), atol=1e-6)


def _analytic_min_l2(x, w, b):
  """min_j (z_y - z_j) / ||w_y - w_j||_2 (the L2 distance to each half-space),
  and the largest coordinate of that step, d* |w_y - w_j|_i / ||w_y - w_j||_2
  (below 0.35 the box [0, 1] around these points does not bind)."""
  flat = x.reshape(len(x), -1)
  z = flat @ w + b
  y = z.argmax(1)
  dist = np.full(z.shape, np.inf)
  coord = np.zeros(z.shape)
  for j in range(z.shape[1]):
    m = y != j
    diff = w[:, y[m]] - w[:, [j]]
    norm = np.sqrt((diff * diff).sum(0))
    dist[m, j] = (z[m, y[m]] - z[m, j]) / norm
    coord[m, j] = dist[m, j] * np.abs(diff).max(0) / norm
  j = dist.argmin(1)
  rows = np.arange(len(x))
  return y, dist[rows, j], coord[rows, j]


def test_fab_l2_matches_the_closed_form():
  forward, w, b = _linear(num_classes=5)  # 4 targets: the cap at C - 1
  x = _interior_points(32)
  y, d_star, coord = _analytic_min_l2(x, w, b)
  assert coord.max() < 0.35  # the box never binds
  best = np.full(len(x), np.inf)
  for rank in range(1, 5):
    x_adv, found = fab.fab_minimal(forward, x, y, target_rank=rank, norm="L2")
    adv = forward(x_adv).numpy().argmax(1) != y
    assert np.all(found.numpy() == adv)
    best = np.minimum(best, np.where(adv, _norm(x_adv - x, "L2"), np.inf))
  ratio = best / d_star
  assert np.all(ratio >= 1.0 - 1e-5) and np.all(ratio <= 1.01), ratio
  eps = 0.27
  assert not np.any((d_star > eps / 1.01) & (d_star <= eps))
  x_adv = fab.fab_t(forward, x, y, eps, norm="L2")
  robust = forward(x_adv).numpy().argmax(1) == y
  np.testing.assert_array_equal(robust, d_star > eps)
  assert 0 < robust.mean() < 1
  assert np.all(_norm(x_adv - x, "L2") <= eps + 1e-6)


@pytest.mark.parametrize("kw,match", [
    (dict(target_rank=0), r"target_rank must be in \[1, 9\]"),
    (dict(target_rank=10), r"target_rank must be in \[1, 9\]"),
    (dict(target_rank=1, steps=0), "steps must be positive"),
    (dict(target_rank=1, norm="L1"), "unknown fab norm 'L1'; valid: Linf, L2"),
])
def test_bad_arguments_raise_one_line_errors(kw, match):
  forward, _, _ = _linear()
  with pytest.raises(ValueError, match=match):
    fab.fab_minimal(forward, _interior_points(2), [0, 1], **kw)
