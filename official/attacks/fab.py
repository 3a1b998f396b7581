"""FAB-T: the targeted Fast Adaptive Boundary attack, L-infinity (and L2).

Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive
boundary attack", ICML 2020 (arXiv 1907.02044), as AutoAttack's `standard`
version runs it (`fab-t`, reference code `fra31/auto-attack`, files
`fab_base.py`, `fab_pt.py`, `fab_projections.py`, `autoattack.py`).

FAB looks for the adversarial point of smallest norm, not for the worst point
of an eps-ball. For a target class t, each iteration linearises the decision
boundary between the true class y and t at the iterate x1:

  f_t(z) - f_y(z) ~ df + w . (z - x1),  df = f_t(x1) - f_y(x1),  w = grad df,

and projects both the iterate x1 and the original point x0 onto that
hyperplane intersected with the box [0, 1]^D (`project`: the smallest
L-infinity, or L2, step d with w . (p + d) = b, 0 <= p + d <= 1). The step
(paper eq. 9) mixes the two projections, extrapolated by eta:

  a1 = ||d1||, a2 = ||d2||, alpha = clip(a1 / (a1 + a2), 0, alpha_max)
  x1 <- clip((1 - alpha) (x1 + eta d1) + alpha (x0 + eta d2), 0, 1).

When x1 is misclassified it becomes the best point if it is closer to x0, and
x1 is pulled back towards x0: x1 <- x0 + beta (x1 - x0) (paper eq. 10).
Reference constants (AutoAttack standard): 100 iterations, alpha_max = 0.1,
eta = 1.05, beta = 0.9, one restart per target (so no random start: the seed
is unused), the 9 highest non-true clean logits as targets, tried in order;
an example counts as broken at the first target whose minimal point has
norm <= eps. L2 is the same loop with the L2 projection and norms (as the
reference's `norm='L2'`).

Where this differs from the reference, and why:
- Fixed shapes: the whole batch runs every target, examples that are clean
  misclassified or already broken are frozen by a mask instead of being cut
  out (XLA needs static shapes). Per-example results are the same.
- `fab_t` freezes an example as soon as its best point is within eps, and
  the loop ends when no example is left to attack. The reference keeps
  shrinking it for the rest of the 100 iterations; its norm only decreases,
  so the acceptance (norm <= eps at the end) is exactly the same, only the
  returned point may be a larger (still <= eps) perturbation.
- The projection bisects on its multiplier instead of sorting the
  coordinates (see `project`): the same minimiser (tests compare it with an LP
  solver) without a sort of D elements per iteration.
- When the clean prediction is already wrong, `fab_minimal` returns x with
  `found` True (the minimal perturbation is 0); the reference skips them.
- Fewer than 10 classes: targets are capped at num_classes - 1 (the
  reference would index past the sorted logits).
- L1 and the untargeted FAB (one backward pass per class) are not here.
"""
import tensorflow as tf

from official.common import checks

NORMS = ("Linf", "L2")
ALPHA_MAX = 0.1
ETA = 1.05
BETA = 0.9
_NOT_FOUND = 1e10  # the reference's "no adversarial point yet" norm
BISECTION_STEPS = 20


def project(points, w, b, norm="Linf", bisection_steps=BISECTION_STEPS):
  """Smallest step (L-inf or L2) onto {z: w . z = b} within the box [0, 1]^D.

  Args:
    points: [N, D] points p in [0, 1].
    w: [N, D] hyperplane normals.
    b: [N] offsets.
    norm: "Linf" or "L2".
    bisection_steps: halvings of the (log) multiplier bracket. 20 leave it
      a few 1e-6 wide (relative); the exact last piece below makes the step
      exact unless a breakpoint falls inside it, and off by less otherwise.

  Returns:
    d [N, D] minimising ||d|| s.t. w . (p + d) = b and 0 <= p + d <= 1.
    If the box never reaches the hyperplane, d moves every coordinate to the
    bound that goes furthest towards it (the box vertex), as the reference.

  Why it is exact: to lower w . z by the gap, coordinate i moves against
  sign(w_i) by d_i(lam) = min(lam c_i, r_i), capped by its room to the box
  r_i (p_i if w_i > 0, else 1 - p_i); c_i = 1 for L-inf (every coordinate
  moves by the radius lam) and c_i = |w_i| for L2 (the KKT point of the
  least-squares step, d = -lam w clipped to the box). The progress
  g(lam) = sum_i |w_i| min(lam c_i, r_i) is continuous, nondecreasing and
  piecewise linear with breakpoints r_i / c_i, and the optimum is the least
  lam with g(lam) = gap. Bisection (geometric: the L2 breakpoints span many
  decades) brackets it in [lo, hi]; coordinates with r_i <= lo c_i are
  saturated, and the linear piece then gives
    lam = (gap - sum_sat |w_i| r_i) / sum_rest |w_i| c_i,
  exact unless a breakpoint lies inside the final bracket.
  The reference sorts the breakpoints and bisects over the sorted list; a
  sort of D elements per row and iteration made that slow (XLA's CPU sort
  most of all), and it finds the same point.
  """
  f = tf.reduce_sum(w * points, axis=1) - b
  direction = tf.where(f >= 0, 1.0, -1.0)[:, None]  # +1: lower w . z
  w = w * direction
  gap = tf.abs(f)
  room = tf.where(w > 0, points, 1.0 - points)
  weight = tf.abs(w)
  speed = tf.ones_like(w) if norm == "Linf" else weight

  def reach(lam):  # g(lam)
    return tf.reduce_sum(weight * tf.minimum(lam[:, None] * speed, room),
                         axis=1)

  moving = weight > 0
  # Capped so that lam * speed stays finite (0, not NaN, where w_i = 0) when
  # a tiny L2 weight puts a breakpoint near overflow.
  top = tf.minimum(tf.reduce_max(
      tf.where(moving, room / tf.where(moving, speed, 1.0), 0.0), axis=1),
                   1e30)
  # Without the box the step is gap / sum |w_i| c_i: a lower bound.
  free = gap / tf.maximum(tf.reduce_sum(weight * speed, axis=1), 1e-30)
  feasible = reach(top) >= gap

  def halve(lo, hi):
    mid = tf.where(lo > 0, tf.sqrt(lo) * tf.sqrt(hi), 0.5 * hi)
    short = reach(mid) < gap
    return tf.where(short, mid, lo), tf.where(short, hi, mid)

  lo, hi = tf.while_loop(lambda lo, hi: True, halve,
                         (tf.minimum(free, top), top),
                         maximum_iterations=bisection_steps)
  saturated = room <= lo[:, None] * speed
  done = tf.reduce_sum(tf.where(saturated, weight * room, 0.0), axis=1)
  left = tf.reduce_sum(tf.where(saturated, 0.0, weight * speed), axis=1)
  lam = tf.clip_by_value((gap - done) / tf.maximum(left, 1e-30), lo, hi)
  lam = tf.where(feasible, lam, top)
  return -tf.sign(w) * tf.minimum(lam[:, None] * speed, room)


def project_linf(points, w, b):
  return project(points, w, b, "Linf")


def _norm(v, norm):
  if norm == "Linf":
    return tf.reduce_max(tf.abs(v), axis=1)
  return tf.sqrt(tf.reduce_sum(tf.square(v), axis=1))


def _predict(forward, x):
  return tf.argmax(forward(x), -1, output_type=tf.int32)


def _fab_loop(forward, x0, labels, target, active, stop_norm, *, norm, steps,
              alpha_max, eta, beta):
  """FAB iterations for one target; returns (best point, its norm)."""
  shape = tf.shape(x0)
  batch = shape[0]
  flat0 = tf.reshape(x0, [batch, -1])
  rows = tf.range(batch)
  y_idx = tf.stack([rows, labels], 1)
  t_idx = tf.stack([rows, target], 1)

  def live(best_norm):
    return active & (best_norm > stop_norm)

  def cond(k, x1, best, best_norm):
    del x1, best
    return (k < steps) & tf.reduce_any(live(best_norm))

  def body(k, x1, best, best_norm):
    on = live(best_norm)
    with tf.GradientTape() as tape:
      tape.watch(x1)
      logits = forward(x1)
      df = tf.gather_nd(logits, t_idx) - tf.gather_nd(logits, y_idx)
      total = tf.reduce_sum(df)
    w = tf.reshape(tape.gradient(total, x1), [batch, -1])
    flat1 = tf.reshape(x1, [batch, -1])
    b = tf.reduce_sum(w * flat1, axis=1) - df
    d = project(tf.concat([flat1, flat0], 0), tf.concat([w, w], 0),
                tf.concat([b, b], 0), norm)
    d1, d2 = d[:batch], d[batch:]
    a1 = tf.maximum(_norm(d1, norm), 1e-8)
    a2 = tf.maximum(_norm(d2, norm), 1e-8)
    alpha = tf.clip_by_value(a1 / (a1 + a2), 0.0, alpha_max)[:, None]
    step = tf.clip_by_value(
        (flat1 + eta * d1) * (1.0 - alpha) + (flat0 + eta * d2) * alpha,
        0.0, 1.0)
    new_x = tf.reshape(step, shape)
    adv = tf.not_equal(_predict(forward, new_x), labels)
    dist = _norm(step - flat0, norm)
    better = on & adv & (dist < best_norm)
    best = tf.where(better[:, None, None, None], new_x, best)
    best_norm = tf.where(better, dist, best_norm)
    back = tf.reshape(flat0 + beta * (step - flat0), shape)
    new_x = tf.where(adv[:, None, None, None], back, new_x)
    x1 = tf.where(on[:, None, None, None], new_x, x1)
    return k + 1, x1, best, best_norm

  init = (tf.constant(0), x0, x0, tf.fill([batch], _NOT_FOUND))
  _, _, best, best_norm = tf.while_loop(cond, body, init)
  return tf.stop_gradient(best), best_norm


_LOOPS = {False: tf.function(_fab_loop, jit_compile=False),
          True: tf.function(_fab_loop, jit_compile=True)}


def _targets(logits, labels, target_rank):
  """Class of the `target_rank`-th highest clean logit other than the label."""
  onehot = tf.one_hot(labels, tf.shape(logits)[-1], on_value=True,
                      off_value=False)
  others = tf.where(onehot, tf.cast(-float("inf"), logits.dtype), logits)
  order = tf.argsort(others, axis=-1, direction="DESCENDING", stable=True)
  return tf.cast(order[:, target_rank - 1], tf.int32)


def _run(forward, x, labels, logits, target_rank, active, stop_norm, *, norm,
         steps, jit_compile, alpha_max, eta, beta):
  target = _targets(logits, labels, target_rank)
  return _LOOPS[bool(jit_compile)](
      forward, x, labels, target, active, stop_norm, norm=norm,
      steps=int(steps), alpha_max=float(alpha_max), eta=float(eta),
      beta=float(beta))


def _check(target_rank, num_classes, steps, norm):
  checks.check_choice("fab norm", norm, NORMS)
  if num_classes is not None and not 1 <= target_rank <= num_classes - 1:
    raise ValueError(f"fab: target_rank must be in [1, {num_classes - 1}] "
                     f"for {num_classes} classes, got {target_rank}")
  if steps < 1:
    raise ValueError(f"fab: steps must be positive, got {steps}")


def fab_minimal(forward, x, y, *, target_rank, steps=100, seed=None,
                jit_compile=False, norm="Linf", alpha_max=ALPHA_MAX, eta=ETA,
                beta=BETA):
  """The smallest adversarial point (L-inf or L2) FAB finds for one target.

  Args:
    forward: x -> logits (training=False).
    x: [B, H, W, C] images in [0, 1]; y: [B] labels.
    target_rank: 1 targets the highest non-true clean logit, 2 the next, ...
    steps: FAB iterations (reference 100).
    seed: unused (one restart, no random start: the reference's fab-t).
    jit_compile: compile the iteration loop with XLA.
    norm: "Linf" (AutoAttack's default) or "L2".

  Returns:
    (x_adv, found): x_adv [B, H, W, C] the closest misclassified point found
    (x itself where none was found, or where x is already misclassified);
    found [B] bool (True for clean-misclassified examples: norm 0).
  """
  del seed
  x = tf.cast(x, tf.float32)
  labels = tf.cast(y, tf.int32)
  logits = forward(x)
  _check(target_rank, logits.shape[-1], steps, norm)
  correct = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels)
  best, best_norm = _run(forward, x, labels, logits, target_rank, correct,
                         tf.constant(0.0), norm=norm, steps=steps,
                         jit_compile=jit_compile, alpha_max=alpha_max,
                         eta=eta, beta=beta)
  found = best_norm < _NOT_FOUND
  return best, found | ~correct


def fab_t(forward, x, y, epsilon, *, seed=None, jit_compile=False,
          n_target_classes=9, steps=100, norm="Linf"):
  """AutoAttack's FAB-T: per example, the first target broken within eps.

  Targets are the `n_target_classes` highest non-true clean logits in order
  (capped at num_classes - 1); each runs only on the examples no earlier
  target broke. Returns x_adv [B, H, W, C]: a misclassified point with
  ||x_adv - x|| <= epsilon (in `norm`: "Linf" or "L2") where one was found,
  else x itself. `epsilon` is a scalar or a [B] tensor. `seed` is unused
  (see the module docstring).

  The loop is traced (and XLA-compiled) once per `forward` object, shapes
  and settings, then reused for every target: pass the same `forward` for
  every batch (a new lambda per call retraces every time).
  """
  del seed
  x = tf.cast(x, tf.float32)
  labels = tf.cast(y, tf.int32)
  batch = tf.shape(x)[0]
  eps = tf.cast(epsilon, tf.float32)
  eps = tf.broadcast_to(eps, [batch]) if eps.shape.rank == 0 else eps
  logits = forward(x)
  num_classes = logits.shape[-1]
  targets = n_target_classes if num_classes is None else min(
      n_target_classes, num_classes - 1)
  _check(1, num_classes, steps, norm)
  robust = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels)
  x_adv = x
  for rank in range(1, targets + 1):
    best, best_norm = _run(forward, x, labels, logits, rank, robust, eps,
                           norm=norm, steps=steps, jit_compile=jit_compile,
                           alpha_max=ALPHA_MAX, eta=ETA, beta=BETA)
    broken = robust & (best_norm <= eps)
    x_adv = tf.where(broken[:, None, None, None], best, x_adv)
    robust = robust & ~broken
  return x_adv
