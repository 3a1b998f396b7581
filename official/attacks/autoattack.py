"""AutoAttack (Croce & Hein, ICML 2020): an ensemble of parameter-free attacks.

Every member is `fn(forward, x, y, epsilon, *, seed, jit_compile=False) ->
x_adv` (x float32 [B, H, W, C] in [0, 1], y int32 [B], epsilon a float;
x_adv in the eps-ball and [0, 1]); it "succeeds" on a row iff
argmax forward(x_adv) != y. `run` applies members in order, as the
reference's `run_standard_evaluation` does: each member sees only the points
every earlier member left robust, and a point's adversarial image is the
first one that fooled the model (the per-example worst case over members).

Where this differs from the reference, and why:
  * The remaining points are re-batched into batches of one fixed size (the
    last one padded by repeating its rows, the copies' results dropped), so
    XLA compiles one shape per member instead of one per batch.
  * Random draws come from a stateless seed per (seed, batch, member), not
    from a global torch seed: same seed, same numbers, on 1 or 2 replicas.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from official.attacks import apgd
from official.attacks import fab
from official.attacks import pgd
from official.attacks import square

# name -> fn(forward, x, y, epsilon, *, seed, jit_compile=False) -> x_adv.
MEMBERS = {
    "apgd-ce": apgd.apgd_ce,
    "apgd-dlr": apgd.apgd_dlr,
    "apgd-t": apgd.apgd_t,
    "fab-t": fab.fab_t,
    "square": square.square,
}
# The reference's `standard` version (L-inf / L2), in its order, and the
# quick white-box pair for development.
ENSEMBLES = {
    "autoattack": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "autoattack-fast": ("apgd-ce", "apgd-t"),
}


def names():
  """Every evaluation name this module answers to: ensembles and members."""
  return tuple(ENSEMBLES) + tuple(MEMBERS)


def members_of(name):
  """The members of an ensemble (or the member itself), all registered."""
  if name in ENSEMBLES:
    members = ENSEMBLES[name]
  elif name in MEMBERS:
    members = (name,)
  else:
    raise ValueError(f"unknown autoattack attack '{name}'; valid: "
                     f"{', '.join(names())}")
  for m in members:
    if m not in MEMBERS:
      raise ValueError(f"attack '{name}' needs member '{m}', which is not "
                       f"registered in autoattack.MEMBERS (registered: "
                       f"{', '.join(MEMBERS)})")
  return members


@dataclasses.dataclass
class Result:
  robust: np.ndarray          # [N] bool: no member fooled the model
  x_adv: np.ndarray           # [N, ...] the first fooling image, else x
  clean_accuracy: float
  members: dict               # member -> robust accuracy after it (cumulative)


def replicated(fn, strategy=None, function=False):
  """fn over a global batch, its rows split evenly across the replicas.

  Returns call(batched, shared) -> fn(*batched, *shared) on the whole batch:
  `batched` tensors are cut into consecutive per-replica slices (replica r
  gets rows [r * local, (r + 1) * local), the order `replicas.local_rows`
  assumes), `shared` ones go to every replica, and the per-replica outputs
  are concatenated back in replica order. The first dimension must be
  divisible by the number of replicas. function=True traces the whole call
  (fn and strategy.run) into one tf.function; False runs it eagerly, which
  lets a member that is not graph-safe still run (its own inner loop is
  compiled anyway).
  """
  if strategy is None or strategy.num_replicas_in_sync == 1:
    body = tf.function(fn) if function else fn
    return lambda batched, shared: body(*batched, *shared)
  n = strategy.num_replicas_in_sync
  run = lambda args: strategy.run(fn, args=args)  # noqa: E731
  if function:
    run = tf.function(run)

  def call(batched, shared):
    local = int(batched[0].shape[0]) // n
    if local * n != int(batched[0].shape[0]):
      raise ValueError(f"batch of {batched[0].shape[0]} rows is not divisible "
                       f"by the {n} replicas")
    dist = [strategy.experimental_distribute_values_from_function(
        lambda ctx, t=t: t[ctx.replica_id_in_sync_group * local:
                           (ctx.replica_id_in_sync_group + 1) * local])
            for t in batched]
    out = run((*dist, *shared))
    return tf.nest.map_structure(
        lambda v: tf.concat(strategy.experimental_local_results(v), 0), out)

  return call


def padded_batches(count, batch_size):
  """Index batches of exactly `batch_size` over range(count).

  Yields (indices [batch_size], real): the last batch repeats its own rows
  to fill up; only its first `real` results count.
  """
  for start in range(0, count, batch_size):
    idx = np.arange(start, min(start + batch_size, count))
    yield np.resize(idx, batch_size), len(idx)


def predictions(forward, x, batch_size, strategy=None):
  """argmax forward(x) over a numpy array, in fixed-size padded batches."""
  call = replicated(
      lambda xb: tf.argmax(forward(xb), -1, output_type=tf.int32), strategy,
      function=True)
  out = np.zeros(len(x), np.int32)
  for idx, real in padded_batches(len(x), batch_size):
    out[idx[:real]] = np.asarray(call((tf.constant(x[idx]),), ()))[:real]
  return out


def run(forward, x, y, epsilon, members, *, seed=0, batch_size=500,
        jit_compile=False, strategy=None, progress=None):
  """Runs `members` (names in MEMBERS) in order on the points still robust.

  x float32 numpy [N, ...] in [0, 1], y int [N]. batch_size: rows per member
  call (rounded up to a multiple of the replicas). progress: optional
  fn(member, batch, num_batches, robust_accuracy) called after each batch.
  Returns a Result.
  """
  x = np.asarray(x, np.float32)
  y = np.asarray(y, np.int32)
  replicas = strategy.num_replicas_in_sync if strategy is not None else 1
  batch_size = -(-int(batch_size) // replicas) * replicas
  robust = predictions(forward, x, batch_size, strategy) == y
  clean = float(robust.mean()) if len(y) else 0.0
  x_adv = x.copy()
  cumulative = {}
  for member in members:
    fn = MEMBERS[member]

    def step(xb, yb, s, fn=fn):
      adv = fn(forward, xb, yb, float(epsilon), seed=s,
               jit_compile=jit_compile)
      return adv, tf.not_equal(
          tf.argmax(forward(adv), -1, output_type=tf.int32), yb)

    call = replicated(step, strategy)
    todo = np.flatnonzero(robust)
    num_batches = -(-len(todo) // batch_size)
    for b, (idx, real) in enumerate(padded_batches(len(todo), batch_size)):
      rows = todo[idx]
      adv, fooled = call((tf.constant(x[rows]), tf.constant(y[rows])),
                         (pgd.stateless_seed(seed, b, member),))
      adv, fooled = np.asarray(adv)[:real], np.asarray(fooled)[:real]
      hit = rows[:real][fooled]
      robust[hit] = False
      x_adv[hit] = adv[fooled]
      if progress is not None:
        progress(member, b, num_batches, float(robust.mean()))
    cumulative[member] = float(robust.mean()) if len(y) else 0.0
  return Result(robust, x_adv, clean, cumulative)
