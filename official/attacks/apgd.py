"""Auto-PGD (APGD, Croce & Hein, ICML 2020, arXiv 2003.01690), L-inf and L2.

PGD without a step size to tune: it starts at 2 eps, adds momentum 0.75 and
halves the step of an example at checkpoints where its loss stalls, jumping
back to its best point. The fixed hyperparameters are those of the reference
implementation (fra31/auto-attack, autoattack/autopgd_base.py, `standard`
version): 100 iterations, one restart, rho = 0.75, checkpoint windows of
22%, shrinking by 3% to at least 6% of the iterations.

`apgd` is a pure function of (forward, x, y, eps) like PGD: its inner loop
(`_apgd_loop`) has only forward passes and input gradients, fixed shapes and
no variable writes, so it runs in a nested tf.function(jit_compile=...) that
XLA compiles, per replica under MirroredStrategy. Random starts are drawn for
the GLOBAL batch from a stateless seed and cut to this replica's rows
(`pgd.random_start_noise`), so 2 replicas give the numbers of 1 device.

Where this differs from the reference, and why:
  * Oscillation count: the reference compares the first iterate of the first
    window with an unwritten (zero) slot of its loss history; here it is
    compared with the loss at the random start, as in the paper (Alg. 1,
    condition 1). Later windows are identical.
  * Every row of the batch is iterated (fixed shapes for XLA): the reference
    drops rows already fooled before a restart or a new target; here they
    keep their first success, which gives the same result.
  * A row that is not fooled returns its highest-loss iterate; the reference
    returns the clean image. Both are classified correctly; the best point is
    more useful to a caller that looks at losses.
"""
import weakref

import tensorflow as tf

from official.attacks import losses
from official.attacks import pgd
from official.common import checks

NORMS = ("linf", "l2")
LOSSES = ("ce", "dlr", "dlr-targeted")
MIN_CLASSES = {"ce": 2, "dlr": 3, "dlr-targeted": 4}

# forward -> {settings: compiled loop}: an eager caller attacking batch after
# batch traces (and XLA-compiles) the loop once, not once per call. Weak keys:
# a dropped model is not kept alive by the cache.
_COMPILED = weakref.WeakKeyDictionary()


def schedule(steps):
  """(first window, minimum window, window decrease) in iterations."""
  return (max(int(0.22 * steps), 1), max(int(0.06 * steps), 1),
          max(int(0.03 * steps), 1))


def _rows(v, rank):
  return tf.reshape(v, [-1] + [1] * (rank - 1))


def _normalize(v, norm):
  """v divided by its per-example L-inf or L2 norm."""
  flat = tf.reshape(v, [tf.shape(v)[0], -1])
  if norm == "linf":
    n = tf.reduce_max(tf.abs(flat), -1)
  else:
    n = tf.sqrt(tf.reduce_sum(tf.square(flat), -1))
  return v / _rows(n + 1e-12, v.shape.rank)


def _project(x, x_new, eps, norm):
  """Back into the eps-ball around x, then into [0, 1] (as the reference)."""
  if norm == "linf":
    return tf.clip_by_value(x_new, tf.maximum(x - eps, 0.0),
                            tf.minimum(x + eps, 1.0))
  delta = x_new - x
  flat = tf.reshape(delta, [tf.shape(x)[0], -1])
  length = _rows(tf.sqrt(tf.reduce_sum(tf.square(flat), -1)), x.shape.rank)
  return tf.clip_by_value(
      x + _normalize(delta, "l2") * tf.minimum(eps, length), 0.0, 1.0)


def _objective(loss, logits, y, target):
  if loss == "ce":
    return losses.cross_entropy(logits, y)
  if loss == "dlr":
    return losses.dlr(logits, y)
  return losses.dlr_targeted(logits, y, target)


def _apgd_loop(forward, x, y, target, eps, noise, *, steps, loss, norm, rho):
  """One APGD run. Returns (x_adv [B, ...], fooled [B] bool)."""
  rank = x.shape.rank
  e = _rows(eps, rank)

  def evaluate(x_adv):
    with tf.GradientTape() as tape:
      tape.watch(x_adv)
      logits = forward(x_adv)
      value = _objective(loss, logits, y, target)
      total = tf.reduce_sum(value)
    grad = tape.gradient(total, x_adv)
    wrong = tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), y)
    return value, grad, wrong

  x_adv = tf.clip_by_value(x + e * _normalize(noise, norm), 0.0, 1.0)
  value, grad, fooled = evaluate(x_adv)
  x_best_adv = x_adv          # the latest misclassified iterate
  x_best, grad_best, loss_best = x_adv, grad, value  # the highest loss
  step = 2.0 * eps
  x_old = x_adv
  window, window_min, window_decrease = schedule(steps)
  k = tf.constant(window)
  since = tf.constant(0)
  prev_loss = value
  increases = tf.zeros_like(value)
  best_at_check = loss_best
  reduced = tf.ones_like(fooled)  # no "unreduced" condition at the 1st check
  for i in tf.range(steps):
    a = tf.where(i > 0, 0.75, 1.0)
    momentum = x_adv - x_old
    x_old = x_adv
    direction = tf.sign(grad) if norm == "linf" else _normalize(grad, "l2")
    z = _project(x, x_adv + _rows(step, rank) * direction, e, norm)
    x_adv = _project(x, x_adv + a * (z - x_adv) + (1.0 - a) * momentum, e,
                     norm)
    value, grad, wrong = evaluate(x_adv)
    fooled = fooled | wrong
    x_best_adv = tf.where(_rows(wrong, rank), x_adv, x_best_adv)
    better = value > loss_best
    x_best = tf.where(_rows(better, rank), x_adv, x_best)
    grad_best = tf.where(_rows(better, rank), grad, grad_best)
    loss_best = tf.where(better, value, loss_best)
    increases += tf.cast(value > prev_loss, tf.float32)
    prev_loss = value
    since += 1
    # Checkpoint: halve the step where the loss rose in at most rho of the
    # window's iterations, or where the step was not halved at the last
    # checkpoint and the best loss has not improved since; restart there
    # from the best point.
    check = tf.equal(since, k)
    stalled = ((increases <= tf.cast(k, tf.float32) * rho)
               | (~reduced & (best_at_check >= loss_best)))
    halve = check & stalled
    step = tf.where(halve, step / 2.0, step)
    x_adv = tf.where(_rows(halve, rank), x_best, x_adv)
    grad = tf.where(_rows(halve, rank), grad_best, grad)
    reduced = tf.where(check, stalled, reduced)
    best_at_check = tf.where(check, loss_best, best_at_check)
    increases = tf.where(check, tf.zeros_like(increases), increases)
    since = tf.where(check, 0, since)
    k = tf.where(check, tf.maximum(k - window_decrease, window_min), k)
  x_out = tf.where(_rows(fooled, rank), x_best_adv, x_best)
  return tf.stop_gradient(x_out), fooled


def _compiled(forward, steps, loss, norm, rho, jit_compile):
  key = (steps, loss, norm, rho, bool(jit_compile))
  try:
    cache = _COMPILED.setdefault(forward, {})
  except TypeError:  # not weak-referenceable: no cache
    cache = {}
  if key not in cache:
    def loop(x, y, target, eps, noise):
      return _apgd_loop(forward, x, y, target, eps, noise, steps=steps,
                        loss=loss, norm=norm, rho=rho)
    cache[key] = tf.function(loop, jit_compile=jit_compile)
  return cache[key]


def _check(loss, norm, num_classes):
  checks.check_choice("apgd loss", loss, LOSSES)
  checks.check_choice("apgd norm", norm, NORMS)
  if num_classes is not None and num_classes < MIN_CLASSES[loss]:
    raise ValueError(f"apgd loss '{loss}' needs at least {MIN_CLASSES[loss]} "
                     f"classes, the model has {num_classes}")


def apgd(forward, x, y, epsilon, *, loss="ce", target=None, norm="linf",
         steps=100, restarts=1, rho=0.75, seed, jit_compile=False):
  """APGD on `loss` (ce | dlr | dlr-targeted towards `target` [B]).

  forward: images -> logits. x float32 [B, ...] in [0, 1], y int [B],
  epsilon a float or [B] (per-example budget), seed a [2] stateless seed.
  Returns x_adv in the eps-ball and [0, 1]. Rows the model already gets wrong
  are returned unchanged (as the reference, which does not attack them);
  with restarts > 1 a row keeps the first restart that fools the model.
  """
  x = tf.convert_to_tensor(x, tf.float32)
  y = tf.cast(y, tf.int32)
  logits = forward(x)
  _check(loss, norm, logits.shape[-1])
  batch = tf.shape(x)[0]
  eps = tf.broadcast_to(tf.cast(epsilon, tf.float32), [batch])
  target = tf.zeros_like(y) if target is None else tf.cast(target, tf.int32)
  loop = _compiled(forward, int(steps), loss, norm, float(rho), jit_compile)
  seed = tf.cast(seed, tf.int64)
  fooled = tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), y)
  x_adv = x
  kind = "uniform" if norm == "linf" else "gaussian"
  for restart in range(restarts):
    noise = pgd.random_start_noise(
        kind, tf.shape(x), tf.random.experimental.stateless_fold_in(
            seed, restart), gaussian_std=1.0)
    new_x, new_fooled = loop(x, y, target, eps, noise)
    keep = _rows(fooled, x.shape.rank)
    x_adv = tf.where(keep, x_adv, new_x)
    fooled = fooled | new_fooled
  return x_adv


def apgd_ce(forward, x, y, epsilon, *, seed, jit_compile=False, steps=100,
            restarts=1, norm="linf"):
  """APGD on cross-entropy (AutoAttack's first member)."""
  return apgd(forward, x, y, epsilon, loss="ce", steps=steps,
              restarts=restarts, norm=norm, seed=seed, jit_compile=jit_compile)


def apgd_dlr(forward, x, y, epsilon, *, seed, jit_compile=False, steps=100,
             restarts=1, norm="linf"):
  """APGD on the untargeted DLR loss."""
  return apgd(forward, x, y, epsilon, loss="dlr", steps=steps,
              restarts=restarts, norm=norm, seed=seed, jit_compile=jit_compile)


def apgd_t(forward, x, y, epsilon, *, seed, jit_compile=False, steps=100,
           num_targets=9, norm="linf"):
  """APGD on the targeted DLR loss, once per target class.

  The targets of a row are its 2nd, 3rd, ... highest clean logits (the
  reference's `n_target_classes` = 9, capped at classes - 1); a row keeps
  the first target that fools the model. A target is skipped when every row
  is already fooled (a tf.cond, so this also holds inside a graph).
  """
  x = tf.convert_to_tensor(x, tf.float32)
  y = tf.cast(y, tf.int32)
  logits = forward(x)
  num_classes = logits.shape[-1]
  _check("dlr-targeted", norm, num_classes)
  ranked = tf.math.top_k(logits, num_classes).indices
  fooled = tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), y)
  x_adv = x
  seed = tf.cast(seed, tf.int64)
  for t in range(min(int(num_targets), num_classes - 1)):
    def attack(t=t, x_adv=x_adv, fooled=fooled):
      new_x = apgd(forward, x, y, epsilon, loss="dlr-targeted",
                   target=ranked[:, t + 1], norm=norm, steps=steps,
                   seed=tf.random.experimental.stateless_fold_in(seed, t),
                   jit_compile=jit_compile)
      new_fooled = tf.not_equal(
          tf.argmax(forward(new_x), -1, output_type=tf.int32), y)
      return (tf.where(_rows(fooled, x.shape.rank), x_adv, new_x),
              fooled | new_fooled)
    x_adv, fooled = tf.cond(tf.reduce_all(fooled),
                            lambda x_adv=x_adv, fooled=fooled: (x_adv, fooled),
                            attack)
  return x_adv
