"""Square Attack, L-infinity, untargeted margin loss: score-based, no gradients.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient
black-box adversarial attack via random search", ECCV 2020 (arXiv
1912.00049), as AutoAttack's `standard` version runs it (reference code
`fra31/auto-attack`, `autoattack/square.py`; `autoattack.py` sets
p_init = 0.8, n_queries = 5000, one restart, resc_schedule = False).

Random search on the vertices of the eps-ball (Algorithm 1 of the paper):
- Start (sec. 3.1): vertical stripes, x + eps * s with one sign s per example,
  column and channel, constant down each column; clipped to [0, 1].
- Each iteration draws a square of side
    s = min(max(round(sqrt(p * H * W)), 1), min(H, W)),
  at a uniform position among all where it fits (top row in {0, ..., H - s},
  left column in {0, ..., W - s}) and one sign per channel; inside the
  square the candidate is the best point + 2 eps * sign, projected on the
  eps-ball and [0, 1], i.e. set to a vertex of the ball. The candidate replaces the best point
  when its margin  m = z_y - max_{j != y} z_j  is lower, or <= 0.
- p follows the reference's `p_selection` in the iteration number i (not
  rescaled to n_queries): p_init for i <= 10, then halved at i > 10, 50,
  200, 500, 1000, 2000, 4000, 6000, 8000.
- An example whose margin is <= 0 is fooled and never changes again; the loop
  ends when every example is fooled, or after n_queries iterations (each one
  forward pass; the start costs one more).
Only forward passes: no tf.GradientTape anywhere, so a model whose gradient
is zero or useless (a quantising input, a stop_gradient) is attacked as well
as any other.

Randomness and replicas: like the AutoAttack code, one square (position and
channel signs) is drawn per iteration for the whole batch, so it is the same
on every replica and an example's path does not depend on which batch it is
in. The stripes are drawn per example for the GLOBAL batch from the seed and
each replica keeps its rows (`pgd.random_start_noise`), so 2 replicas equal
1 device. All draws happen before the loop (a [n_queries, 2 + C] table), so
the XLA and the plain loop see the same numbers.

Where this differs from the reference, and why:
- Examples that are misclassified from the start, and examples never fooled,
  are masked instead of cut out (fixed shapes for XLA). Clean-misclassified
  examples are returned unchanged, as in the reference.
- Not fooled examples return their best (lowest-margin) point, not x: it is
  still in the ball and still classified correctly, so robust accuracy is the
  same, and the point is more useful to a caller that keeps the worst case.
- The square's corner is uniform on {0, ..., H - s}: every position where
  it fits. The reference's `random_int(0, h - s)` stops one short, so its
  squares never touch the last row or column once s < H and those pixels
  keep their stripe value: negligible on 28x28 images, but on small inputs
  (the tests' 4x4 linear models) it keeps Square from the optimal vertex.
- The per-iteration draws use TensorFlow's stateless Philox generator, so the
  numbers are not PyTorch's.
"""
import tensorflow as tf

from official.attacks import pgd

# The reference's p_selection: p = p_init / 2^k after the k-th threshold.
P_THRESHOLDS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_selection(p_init, iteration):
  """Fraction of pixels the square covers at `iteration` (0-based)."""
  it = tf.cast(iteration, tf.int32)
  halvings = tf.reduce_sum(
      tf.cast(it > tf.constant(P_THRESHOLDS, tf.int32), tf.float32))
  return p_init / tf.pow(2.0, halvings)


def square_side(p, height, width):
  """Side of the square: round(sqrt(p * H * W)), in [1, min(H, W)]."""
  side = tf.round(tf.sqrt(p * float(height * width)))  # half to even, as Python
  return tf.cast(tf.clip_by_value(side, 1.0, float(min(height, width))),
                 tf.int32)


def margin(logits, labels):
  """z_y - max_{j != y} z_j per example: > 0 while classified correctly."""
  onehot = tf.one_hot(labels, tf.shape(logits)[-1], on_value=True,
                      off_value=False)
  true = tf.reduce_max(tf.where(onehot, logits, -float("inf")), axis=-1)
  other = tf.reduce_max(tf.where(onehot, -float("inf"), logits), axis=-1)
  return true - other


def _square_loop(forward, x, labels, eps, x_best, active, draws, *, n_queries,
                 p_init):
  """The random search; returns (best point, its margin)."""
  _, height, width, _ = x.shape
  lower = tf.maximum(x - eps, 0.0)
  upper = tf.minimum(x + eps, 1.0)
  rows = tf.range(height)[:, None]
  cols = tf.range(width)[None, :]
  margin_best = margin(forward(x_best), labels)

  def live(m):
    return active & (m > 0.0)

  def cond(i, x_best, m):
    del x_best
    return (i < n_queries) & tf.reduce_any(live(m))

  def body(i, x_best, m):
    side = square_side(p_selection(p_init, i), height, width)
    draw = draws[i]
    vh = tf.cast(draw[0] * tf.cast(height - side + 1, tf.float32), tf.int32)
    vw = tf.cast(draw[1] * tf.cast(width - side + 1, tf.float32), tf.int32)
    inside = ((rows >= vh) & (rows < vh + side) & (cols >= vw)
              & (cols < vw + side))
    delta = tf.where(inside[:, :, None], 2.0 * draw[2:], 0.0)  # [H, W, C]
    candidate = tf.clip_by_value(x_best + eps * delta[None], lower, upper)
    m_new = margin(forward(candidate), labels)
    take = live(m) & ((m_new < m) | (m_new <= 0.0))
    x_best = tf.where(take[:, None, None, None], candidate, x_best)
    m = tf.where(take, m_new, m)
    return i + 1, x_best, m

  _, x_best, m = tf.while_loop(cond, body, (tf.constant(0), x_best,
                                            margin_best))
  return tf.stop_gradient(x_best), m


_LOOPS = {False: tf.function(_square_loop, jit_compile=False),
          True: tf.function(_square_loop, jit_compile=True)}


def _check(x, epsilon, seed, n_queries, p_init):
  if seed.shape != (2,):
    raise ValueError("square: seed must be a [2] int stateless seed "
                     f"(pgd.stateless_seed), got shape {seed.shape}")
  if x.shape.rank != 4 or None in x.shape[1:]:
    raise ValueError("square: x must be [B, H, W, C] images with static "
                     f"H, W, C, got shape {x.shape}")
  if n_queries < 1:
    raise ValueError(f"square: n_queries must be positive, got {n_queries}")
  if not 0.0 < p_init <= 1.0:
    raise ValueError(f"square: p_init must be in (0, 1], got {p_init}")
  if isinstance(epsilon, (int, float)) and not 0.0 < epsilon <= 1.0:
    raise ValueError(f"square: epsilon must be in (0, 1] for [0,1] images, "
                     f"got {epsilon}")


def square(forward, x, y, epsilon, *, seed, jit_compile=False, n_queries=5000,
           p_init=0.8):
  """Square Attack (L-inf, margin loss) with AutoAttack's settings.

  Args:
    forward: x -> logits (training=False); only called, never differentiated.
    x: [B, H, W, C] images in [0, 1]; y: [B] labels.
    epsilon: scalar or [B] L-inf budget.
    seed: [2] int stateless seed (e.g. `pgd.stateless_seed`).
    jit_compile: compile the search loop with XLA.
    n_queries: iterations after the start (reference 5000).
    p_init: initial fraction of pixels per square (reference 0.8).

  Returns:
    x_adv [B, H, W, C] within eps of x and in [0, 1]: the first point found
    with margin <= 0 (misclassified), else the lowest-margin point; x itself
    for examples misclassified before the attack.

  The search loop is traced (and XLA-compiled) once per `forward` object,
  shapes and settings: pass the same `forward` for every batch (a new lambda
  per call retraces every time).
  """
  x = tf.cast(x, tf.float32)
  seed = tf.cast(seed, tf.int64)
  _check(x, epsilon, seed, n_queries, p_init)
  labels = tf.cast(y, tf.int32)
  batch = tf.shape(x)[0]
  _, height, width, channels = x.shape
  eps = tf.cast(epsilon, tf.float32)
  eps = tf.broadcast_to(eps, [batch]) if eps.shape.rank == 0 else eps
  eps = eps[:, None, None, None]

  stripes = pgd.random_start_noise(
      "uniform", tf.stack([batch, 1, width, channels]),
      tf.random.experimental.stateless_fold_in(seed, 0))
  stripes = tf.where(stripes < 0.0, -1.0, 1.0)
  x_start = tf.clip_by_value(x + eps * stripes, 0.0, 1.0)
  positions = tf.random.stateless_uniform(
      [n_queries, 2], tf.random.experimental.stateless_fold_in(seed, 1),
      alg="philox")
  signs = tf.random.stateless_uniform(
      [n_queries, channels], tf.random.experimental.stateless_fold_in(seed, 2),
      alg="philox")
  draws = tf.concat([positions, tf.where(signs < 0.5, -1.0, 1.0)], 1)

  correct = tf.equal(tf.argmax(forward(x), -1, output_type=tf.int32), labels)
  x_best, _ = _LOOPS[bool(jit_compile)](
      forward, x, labels, eps, x_start, correct, draws,
      n_queries=int(n_queries), p_init=float(p_init))
  return tf.where(correct[:, None, None, None], x_best, x)
