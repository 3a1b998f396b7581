"""L-infinity PGD (and FGSM as its one-step case) with per-example budgets.

The inner loop is one pure function of tensors (`_pgd_loop`): forward passes and
input gradients only, no variable writes, no cross-replica calls. That is what
lets `make_attack` wrap it in a nested `tf.function(jit_compile=True)` that XLA
compiles per replica under MirroredStrategy (see shared keras_tf_notes.md).

Besides the adversarial batch, every attack returns the per-example statistics
the reweighting methods read:
  correct_count  int32 [B]: how many PGD iterates were still classified
                 correctly, counting the random start and excluding the last
                 iterate (GAIRAT's official `kappa`).
  kappa_first    int32 [B]: the least number of steps after which the iterate
                 is misclassified (0: the start already is); K if the attack
                 never succeeds (GAIRAT's paper definition of kappa).
  epsilon        [B] the budget used for each example.
and, with `final_logits` (the default; the one pass beyond the K iterations):
  logits         [B, C] logits of the final iterate (forward with training=False).
  loss           [B] the attack objective at the final iterate.
The trainer's training attacks and the evaluations skip that forward: the
training forward (or the evaluation's own) sees the final iterate anyway.
"""
import dataclasses
import zlib

import keras
import tensorflow as tf

from official.attacks import losses
from official.common import replicas

LOSSES = ("ce", "cw", "kl")
# uniform: x + eps·U[-1, 1); gaussian: x + std·N(0, 1); one_sided:
# x + eps·U[0, 1) (RoBal's code: `x + epsilon * torch.rand(...)`); none.
RANDOM_STARTS = ("uniform", "gaussian", "one_sided", "none")
# BatchNorm during the attack's forwards: frozen (training=False, the moving
# averages) | batch (the attacked batch's own statistics, moving averages NOT
# updated: the forward is stateless, so the PGD loop stays free of variable
# writes). The trainer builds the forward; evaluation attacks are frozen.
BN_MODES = ("frozen", "batch")


@dataclasses.dataclass(frozen=True)
class AttackSpec:
  """One L-infinity attack. FGSM is `steps=1, step_size=epsilon, random_start='none'`."""
  name: str
  loss: str = "ce"              # ce | cw (margin, with confidence) | kl (TRADES)
  epsilon: float = 8 / 255
  step_size: float = 2 / 255
  steps: int = 10
  random_start: str = "uniform"  # uniform | gaussian | one_sided | none (RANDOM_STARTS)
  gaussian_std: float = 0.001   # TRADES / MART start: x + 0.001·N(0, 1)
  confidence: float = 50.0      # CW margin confidence
  restarts: int = 1
  bn: str = "frozen"             # frozen | batch (see BN_MODES)
  # The attack loss sees logit_scale · logits (Hitaj et al.'s logit-scaled
  # PGD, arXiv 2103.01914): a loss saturated by large logits (or flattened
  # by small ones) gets its gradient back; predictions are unchanged.
  logit_scale: float = 1.0

  def __post_init__(self):
    if self.loss not in LOSSES:
      raise ValueError(f"attack '{self.name}': unknown loss '{self.loss}'; "
                       f"valid: {', '.join(LOSSES)}")
    if self.random_start not in RANDOM_STARTS:
      raise ValueError(f"attack '{self.name}': unknown random_start "
                       f"'{self.random_start}'; valid: {', '.join(RANDOM_STARTS)}")
    if self.bn not in BN_MODES:
      raise ValueError(f"attack '{self.name}': unknown bn '{self.bn}'; "
                       f"valid: {', '.join(BN_MODES)}")
    if not 0.0 < self.epsilon <= 1.0:
      raise ValueError(f"attack '{self.name}': epsilon must be in (0, 1] for "
                       f"[0,1] images, got {self.epsilon}")
    if not self.logit_scale > 0:
      raise ValueError(f"attack '{self.name}': logit_scale must be > 0, got "
                       f"{self.logit_scale}")
    if self.steps < 1 or self.restarts < 1 or self.step_size <= 0:
      raise ValueError(f"attack '{self.name}': steps, restarts and step_size must "
                       f"be positive, got {self.steps}, {self.restarts}, "
                       f"{self.step_size}")

  def to_dict(self):
    return dataclasses.asdict(self)


def fgsm(epsilon, name="fgsm"):
  return AttackSpec(name=name, loss="ce", epsilon=epsilon, step_size=epsilon,
                    steps=1, random_start="none")


def stateless_seed(seed, counter, name):
  """A [2] int64 stateless seed from (seed, counter, attack name).

  Salted by the name, not by an attack's position among others, so adding an
  attack to a step or an evaluation never changes another attack's draws.
  """
  salt = zlib.crc32(name.encode()) % (2**31)
  return tf.stack([tf.cast(seed, tf.int64),
                   tf.cast(counter, tf.int64) * 2**31 + salt])


def random_start_noise(kind, shape, seed, gaussian_std=0.001):
  """Start noise for this replica's rows of the *global* batch.

  Each replica draws the noise of the whole global batch from the same
  stateless seed and keeps its own slice, so a 2-replica run starts PGD exactly
  where a 1-device run does, and replicas never share a start.
  """
  local = shape[0]
  global_shape = tf.concat([[local * replicas.num_replicas()], shape[1:]], 0)
  if kind == "uniform":
    noise = tf.random.stateless_uniform(global_shape, seed, -1.0, 1.0)
  elif kind == "one_sided":
    noise = tf.random.stateless_uniform(global_shape, seed, 0.0, 1.0)
  elif kind == "gaussian":
    noise = gaussian_std * tf.random.stateless_normal(global_shape, seed)
  else:
    noise = tf.zeros(global_shape)
  return replicas.local_rows(noise, local)


def _per_example(value, batch):
  value = tf.cast(value, tf.float32)
  return tf.broadcast_to(value, [batch]) if value.shape.rank == 0 else value


def rescale_gradients():
  """Whether attacks rescale their backward pass: under a float16 policy.

  A float16 backward flushes gradients below ~6e-8 to zero, and the sign of
  a zero is 0: PGD would silently stop moving those pixels (a confident
  example's CE gradient at the logits is often that small). bfloat16 has
  float32's exponent range and float32 needs nothing, so both keep the plain
  gradient (bit-identical to a run without this code).
  """
  return keras.mixed_precision.global_policy().compute_dtype == "float16"


def input_gradient(forward, x, labels, loss, nat_logits=None, confidence=50.0,
                   rescale=False):
  """([B, C] float32 logits, d sum_i loss_i / dx): one forward + one backward.

  The loss is computed in float32 from logits cast to float32. With
  `rescale`, the gradient at the logits (float32, cheap) is divided per
  example by its largest entry before it goes back through the (float16)
  network, so every example enters the backward pass at magnitude ~1 instead
  of underflowing; a positive per-example factor leaves the sign of that
  example's input gradient unchanged. A NaN from an overflow becomes 0.
  """
  if not rescale:
    with tf.GradientTape() as tape:
      tape.watch(x)
      logits = tf.cast(forward(x), tf.float32)
      objective = tf.reduce_sum(
          losses.attack_loss(loss, logits, labels, nat_logits, confidence))
    return logits, tape.gradient(objective, x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    raw = forward(x)
  logits = tf.cast(raw, tf.float32)
  with tf.GradientTape() as loss_tape:
    loss_tape.watch(logits)
    objective = tf.reduce_sum(
        losses.attack_loss(loss, logits, labels, nat_logits, confidence))
  upstream = loss_tape.gradient(objective, logits)
  peak = tf.reduce_max(tf.abs(upstream), axis=-1, keepdims=True)
  upstream = upstream / tf.where(peak > 0, peak, 1.0)
  grad = tape.gradient(raw, x, output_gradients=tf.cast(upstream, raw.dtype))
  return logits, tf.where(tf.math.is_nan(grad), tf.zeros_like(grad), grad)


def _pgd_loop(forward, x, labels, epsilon, step_size, noise, nat_logits, *,
              steps, loss, random_start, confidence, rescale=False,
              final_logits=True):
  """K steps of signed-gradient ascent, projected on the eps-ball and [0, 1]."""
  eps = epsilon[:, None, None, None]
  alpha = step_size[:, None, None, None]
  lower, upper = tf.maximum(x - eps, 0.0), tf.minimum(x + eps, 1.0)
  if random_start in ("uniform", "one_sided"):  # noise in units of eps
    x_adv = x + noise * eps
  else:  # gaussian noise is absolute; "none" passes zeros
    x_adv = x + noise
  x_adv = tf.clip_by_value(x_adv, lower, upper)

  batch = tf.shape(x)[0]
  correct_count = tf.zeros([batch], tf.int32)
  kappa_first = tf.fill([batch], steps)
  for k in tf.range(steps):
    logits, grad = input_gradient(forward, x_adv, labels, loss, nat_logits,
                                  confidence, rescale=rescale)
    correct = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels)
    correct_count += tf.cast(correct, tf.int32)
    kappa_first = tf.where((kappa_first == steps) & ~correct, k, kappa_first)
    x_adv = tf.clip_by_value(x_adv + alpha * tf.sign(grad), lower, upper)

  stats = {"correct_count": correct_count, "kappa_first": kappa_first,
           "epsilon": epsilon}
  if final_logits:
    logits = tf.cast(forward(x_adv), tf.float32)
    stats["logits"] = logits
    stats["loss"] = losses.attack_loss(loss, logits, labels, nat_logits,
                                       confidence)
  return tf.stop_gradient(x_adv), stats


def make_attack(forward, spec, jit_compile=False, rescale=None,
                final_logits=True):
  """Binds `spec` to a model forward (x -> logits, training=False).

  Returns `attack(x, labels, seed, epsilon=None, step_size=None,
  nat_logits=None) -> (x_adv, stats)`. `epsilon` / `step_size` override the
  spec's scalars and may be per-example [B] tensors (IAAT). `seed` is a
  stateless seed, shape [2] int. With restarts > 1, each example keeps the
  first restart that fools the model (else the last). `rescale`: rescale the
  input gradients per example (`input_gradient`), for a network that computes
  in float16; None = whether the global policy is float16 now.
  `final_logits=False` skips the forward on the final iterate (no "logits" /
  "loss" in the stats) for callers that run their own forward on x_adv; with
  restarts > 1 it runs anyway (picking a restart needs it).
  """

  rescale = rescale_gradients() if rescale is None else bool(rescale)
  final_logits = bool(final_logits) or spec.restarts > 1
  if spec.logit_scale != 1.0:
    unscaled, scale = forward, float(spec.logit_scale)
    forward = lambda x: scale * tf.cast(unscaled(x), tf.float32)  # noqa: E731

  def loop(x, labels, epsilon, step_size, noise, nat_logits):
    return _pgd_loop(forward, x, labels, epsilon, step_size, noise, nat_logits,
                     steps=spec.steps, loss=spec.loss,
                     random_start=spec.random_start, confidence=spec.confidence,
                     rescale=rescale, final_logits=final_logits)

  compiled = tf.function(loop, jit_compile=jit_compile)

  def attack(x, labels, seed, epsilon=None, step_size=None, nat_logits=None):
    x = tf.cast(x, tf.float32)
    labels = tf.cast(labels, tf.int32)
    batch = tf.shape(x)[0]
    epsilon = _per_example(spec.epsilon if epsilon is None else epsilon, batch)
    step_size = _per_example(
        spec.step_size if step_size is None else step_size, batch)
    if spec.loss == "kl" and nat_logits is None:
      nat_logits = tf.cast(forward(x), tf.float32)
    if nat_logits is None:  # a fixed placeholder keeps one traced signature
      nat_logits = tf.zeros([batch, 1])
    seed = tf.cast(seed, tf.int64)
    result = None
    for restart in range(spec.restarts):
      noise = random_start_noise(spec.random_start, tf.shape(x),
                                 tf.random.experimental.stateless_fold_in(
                                     seed, restart), spec.gaussian_std)
      x_adv, stats = compiled(x, labels, epsilon, step_size, noise, nat_logits)
      if result is None:
        result = (x_adv, stats)
        continue
      # Keep the earlier restart where it already fooled the model.
      prev_x, prev_stats = result
      fooled = tf.not_equal(
          tf.argmax(prev_stats["logits"], -1, output_type=tf.int32), labels)
      pick = lambda old, new: tf.where(  # noqa: E731
          tf.reshape(fooled, [-1] + [1] * (new.shape.rank - 1)), old, new)
      result = (pick(prev_x, x_adv),
                {k: pick(prev_stats[k], stats[k]) for k in stats})
    return result

  return attack
