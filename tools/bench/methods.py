"""Every method's full step (mnist10k) beside the passes its formula needs.

A step's inherent work is A attack iterations, T training forward+backward
passes and F eval-mode forwards (`inherent_passes`), each timed alone on the
same batch (`unit_passes`); `overhead` is the step time over that work, and
`vs bare` compares each method with the bare PGD-AT loop in paired rounds
(tools/benchmark.py's docstring has the formulas).
"""
import os
import time

from tools.bench import steps as steps_lib
from tools.bench import timing

METHODS = ("at", "trades", "mart", "gairat", "mail", "lrat", "done", "srat",
           "iaat", "robal", "at_bsl", "arow", "weat")


def inherent_passes(config):
  """(A attack iterations, T training fwd+bwd, F eval forwards) of one step.

  What the method's formula needs, at its full step (after any burn-in):
  AT K + 1; TRADES adds the natural training pass and the KL attack's f(x);
  MART the natural pass; LRAT one more attack and training pass per variant
  (+ the natural pass of its local form); IAAT the two search attacks (each
  with the forward that checks its final iterate) and the clean check f(x);
  RoBal the natural pass of its KL term. GAIRAT, MAIL, DONE, SRAT, AT-BSL
  read what AT computes; ARoW and WEAT what TRADES computes.
  """
  steps = int(config.attack.steps)
  objective = config.objective.name
  attack, train, forward = steps, 1, 0
  if objective in ("trades", "mart"):
    train += 1
  if objective == "trades":
    forward += 1
  method = config.reweighting.name
  if method == "lrat":
    variants = tuple(config.reweighting.get("variants", ("cw",)))
    attack += sum(1 if v == "fgsm" else steps for v in variants)
    train += len(variants)
    if config.reweighting.get("form", "local") == "local":
      train += 1  # the natural member of each pair
  elif method == "iaat":
    attack += 2 * steps
    forward += 3  # the clean check, each search's final-iterate check
  elif method == "robal":
    train += 1  # the natural pass of the KL term
  return attack, train, forward


def inherent_seconds(passes, unit_seconds):
  """Seconds of a step's passes at the units' costs: A·a + T·t + F·f."""
  return sum(n * u for n, u in zip(passes, unit_seconds))


def overhead(seconds, passes, unit_seconds):
  """Measured step time over the inherent work, minus 1."""
  return seconds / inherent_seconds(passes, unit_seconds) - 1.0


def unit_passes(run):
  """{unit: fn(steps) -> (examples, seconds)}: one attack iteration, one
  training fwd+bwd, one eval forward, on a batch of the run (contenders of
  the same race as the methods, so a busy machine weighs on all alike)."""
  import tensorflow as tf
  network = run.trainer.network
  batch = next(iter(run.data.train(0, 1)))
  x = tf.cast(batch["image"], tf.float32)
  y = tf.cast(batch["label"], tf.int32)
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits

  @tf.function
  def attack_iteration(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(ce(labels=y, logits=network(x)[0]))
    return tape.gradient(loss, x)

  @tf.function
  def train_pass(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(ce(labels=y, logits=network(x, training=True)[0]))
    return tape.gradient(loss, network.trainable_variables)

  @tf.function
  def forward(x):
    return network(x)[0]

  def unit(fn):
    def run(steps):
      start = time.perf_counter()
      for _ in range(steps):
        out = fn(x)
      tf.nest.map_structure(lambda t: t.numpy(), out)
      return steps * int(x.shape[0]), time.perf_counter() - start
    return run

  return {"unit:attack": unit(attack_iteration),
          "unit:train": unit(train_pass), "unit:forward": unit(forward)}


def section_methods(workdir):
  runs = {m: steps_lib.ProjectStep(steps_lib.load_config(m, "mnist10k"),
                                   os.path.join(workdir, f"method_{m}"))
          for m in METHODS}
  units = unit_passes(runs["at"].run)
  # The bare PGD-AT loop (the reference section's): what a loop of exactly
  # AT's passes costs beyond the units timed alone (the projection, the
  # update, the input pipeline), to calibrate `vs bare`.
  bare = steps_lib.ReferenceStep(runs["at"].run.config, runs["at"].run.data)
  rates = timing.race({**units, "bare AT loop": bare})
  batch = runs["at"].batch
  units = tuple(batch / rates[u] for u in units)  # seconds per pass
  at_work = inherent_seconds(inherent_passes(runs["at"].run.config), units)
  glue = (batch / rates["bare AT loop"]) / at_work
  lines = [f"methods [mnist10k, SmallCNN, batch {batch}, PGD-10, full steps "
           f"(no burn-in); units: attack iteration {1e3 * units[0]:.0f} ms, "
           f"training fwd+bwd {1e3 * units[1]:.0f} ms, forward "
           f"{1e3 * units[2]:.0f} ms; bare AT loop "
           f"{rates['bare AT loop']:.1f} ex/s = {glue:.2f}x its units]",
           f"{'method':<8} {'ex/s':>7} {'A':>3} {'T':>2} {'F':>2} "
           f"{'inherent ex/s':>13} {'overhead':>8} {'vs bare':>7}"]
  for line in lines:
    print(line, flush=True)
  for method in METHODS:
    # Each method in its own race with the bare loop, many short paired
    # rounds (as the reference section): in one long race of every method
    # a contender's rate moved 10-15% with its place.
    rounds = {}
    pair = timing.short_rounds({method: runs[method], "bare AT loop": bare},
                               rounds)
    config = runs[method].run.config
    passes = inherent_passes(config)
    inherent = inherent_seconds(passes, units)
    # The bare loop's rate scaled by the inherent work over the method's.
    vs_bare = (at_work / inherent) / timing.paired_ratio(
        rounds[method], rounds["bare AT loop"]) - 1.0
    lines.append(f"{method:<8} {pair[method]:>7.1f} {passes[0]:>3} "
                 f"{passes[1]:>2} {passes[2]:>2} {batch / inherent:>13.1f} "
                 f"{100 * overhead(batch / pair[method], passes, units):>7.0f}% "
                 f"{100 * vs_bare:>6.0f}%")
    print(lines[-1], flush=True)
  return lines
