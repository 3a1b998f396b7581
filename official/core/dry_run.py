"""`--dry_run`: the whole configuration built and timed on synthetic data.

  python -m official.train --config=configs/lrat.py --dry_run

Writes nothing into any workdir. In about two minutes at most on the 2-core
CPU (WRN-34-10 configs), it answers "what will this run cost here?":

1. Data of the dataset's shape. tfds datasets are not loaded (no download):
   uniform-noise uint8 images and balanced labels (class i % C) of their
   known shapes and split sizes (SHAPES); a long-tailed profile selects from
   these labels as from real ones (data/long_tail.py). digits and npz read
   their local files.
2. `experiment.prepare()` itself builds strategy, network, objective,
   training attacks, method, optimizer and trainer, with the dataset's
   loader swapped for the synthetic one, in a throwaway directory under
   $TMPDIR that is deleted at the end (its --workdir is never touched).
3. The timing batch. The network's forward+backward pass is timed on a
   batch of 1 and of a larger power of two (per replica) and fitted as
   a + c * batch seconds (`pass_model`). The timing batch is the config's
   if a step (≈ attack steps + 3 passes) is predicted to take at most
   STEP_SECONDS, else the largest power of two that is (at least one example
   per replica): then prepare() runs again at it. Times measured at a
   reduced batch are scaled to the full one by the batch ratio and by the
   fitted per-example cost at the two batches (`per_example_ratio`: on a
   CPU the per-example cost falls with the batch), held constant beyond the
   larger batch timed: an upper estimate.
4. Training steps are timed by `fit()` on those batches, after a first step
   that traces (the median of TIMED_SECONDS of steps, at least MIN_STEPS in
   the first phase, one in later ones), at
   the start of each phase whose step costs differently
   (`Method.extra_passes_epoch`: LRAT's burn-in; IAAT's `warmup_epochs`).
   The method's epoch hooks are timed once (after a call that traces; on
   HOOK_PER_CLASS validation images per class, scaled to the split);
   eval.select=best_val's PGD-10 of the validation split after every epoch
   is estimated as the evaluation.
5. Evaluation: per attack of config.eval.attacks, the call evaluate() makes
   per batch (attack + forward, split over the replicas) is timed on one
   batch of test images after a call that traces; an attack too dear to
   run as is within EVAL_SECONDS / 10 is timed at 4 or 2 steps, plus the
   median cost of one step (over the attacks timed: their time above the
   clean forward / their steps) for each step left. The AutoAttack family is
   not run: its cost per example is estimated from that step cost and the
   forward's, times its members' pass counts
   (`autoattack_passes`: 100 APGD iterations, x9 target classes for APGD-T
   and FAB-T, 5,000 Square queries): an UPPER bound, as if no point were
   broken before the last member (real runs skip the points already
   broken). The eps_curve report is estimated the same way (a PGD per
   radius on its examples).
6. Projection: training = sum over phases of epochs x steps per epoch x the
   step time at the full batch, plus the epoch hooks; evaluation = examples
   x the per-example cost of each attack; plus the build and tracing time
   measured here. Python/TensorFlow start-up, checkpoints and the export are
   left out (seconds per epoch). Memory: the process's peak RSS at the
   timing batch (and the GPUs' peak, tf.config.experimental.get_memory_info),
   and an estimate at the full batch: weights, gradients and momentum, plus
   every layer output per example (`activation_values`) x the training
   forwards kept for the backward pass and one attack pass, in float32.
   On a shared machine the projection is what the run would take under the
   current load: the process CPU time of the timed steps (and eval calls)
   over their wall time and the CPUs gives the share they had, and each
   part scaled by its share a (lower-bound) figure for the machine to
   itself. Repeated eval calls keep the fastest (least disturbed).
"""
import contextlib
import copy
import dataclasses
import io
import os
import resource
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from official.attacks import autoattack
from official.attacks import pgd
from official.core import cluster
from official.core import experiment
from official.core import workdir as workdir_lib
from official.data import registry as data_registry
from official.data import sources
from official.evaluation import eps_curve
from official.evaluation import robustness

# name -> (image shape, train size, test size, classes): the tfds splits.
SHAPES = {
    "cifar10": ((32, 32, 3), 50_000, 10_000, 10),
    "cifar100": ((32, 32, 3), 50_000, 10_000, 100),
    "svhn_cropped": ((32, 32, 3), 73_257, 26_032, 10),
    "mnist": ((28, 28, 1), 60_000, 10_000, 10),
}
STEP_SECONDS = 2.0     # the largest timed training step wanted
TIMED_SECONDS = 4.0    # timed training per phase (at least MIN_STEPS steps)
MIN_STEPS, MAX_STEPS = 2, 20
EVAL_SECONDS = 20.0    # every per-batch eval attack, warm-up and timed call


def autoattack_passes(member, num_classes):
  """(gradient passes, forward passes) per example of one member at most."""
  targets = min(9, num_classes - 1)
  return {"apgd-ce": (100, 1), "apgd-dlr": (100, 1),
          "apgd-t": (100 * targets, targets),
          "fab-t": (100 * targets, 100 * targets + 1),
          "square": (0, 5001)}[member]


def synthetic_splits(name, seed=0):
  """Splits of noise images with SHAPES[name]'s sizes; balanced labels."""
  shape, n_train, n_test, classes = SHAPES[name]
  rng = np.random.default_rng(seed)
  return sources.Splits(
      x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
      y_train=(np.arange(n_train) % classes).astype(np.int32),
      x_test=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
      y_test=(np.arange(n_test) % classes).astype(np.int32),
      num_classes=classes, pixel_max=255.)


@contextlib.contextmanager
def _loader(name, splits):
  """data_registry.load reads `splits` for data.name `name` meanwhile."""
  if splits is None:
    yield
    return
  saved = data_registry.DATASETS[name]
  data_registry.DATASETS[name] = lambda data_cfg: splits
  try:
    yield
  finally:
    data_registry.DATASETS[name] = saved


class _Timer(keras.callbacks.Callback):
  """Per-step wall times; stops once `timed_seconds` (and MIN_STEPS) are
  timed, or at MAX_STEPS."""

  def __init__(self, timed_seconds, min_steps=MIN_STEPS):
    super().__init__()
    self.timed_seconds, self.min_steps = timed_seconds, min_steps
    self.ends = []

  def on_train_begin(self, logs=None):
    self.start = time.perf_counter()
    self.cpu = []

  def on_train_batch_end(self, batch, logs=None):
    float(np.asarray((logs or {}).get("loss", 0.0)).ravel()[0])  # sync
    self.ends.append(time.perf_counter())
    self.cpu.append(time.process_time())  # this process, all its threads
    steps = self.steps()
    if len(steps) >= MAX_STEPS or (len(steps) >= self.min_steps
                                   and sum(steps) >= self.timed_seconds):
      self.model.stop_training = True

  def first(self):
    return self.ends[0] - self.start

  def steps(self):
    return [float(t) for t in np.diff(self.ends)]

  def cpu_steps(self):
    return [float(t) for t in np.diff(self.cpu)]


def _fit_timed(run, epoch, timed_seconds, min_steps=MIN_STEPS):
  """(first step seconds, [timed step seconds]) at the start of `epoch`."""
  trainer = run.trainer
  trainer.optimizer.iterations.assign(epoch * trainer.steps_per_epoch)
  timer = _Timer(timed_seconds, min_steps)
  # Always MAX_STEPS + 1 steps asked (the timer stops earlier): one shape of
  # fit() for every call.
  # (As many epochs of data as those steps need: small data, few steps.)
  epochs = -(-(MAX_STEPS + 1) // max(run.data.steps_per_epoch, 1))
  trainer.fit(
      cluster.train_dataset(run.strategy, run.data, epoch, epoch + epochs),
      epochs=1, steps_per_epoch=MAX_STEPS + 1, verbose=0, shuffle=False,
      callbacks=[timer])
  return timer.first(), timer.steps(), timer.cpu_steps()


def _prepare(config, batch, splits, directory):
  """experiment.prepare at `batch` on the synthetic data, quietly."""
  config = copy.deepcopy(config)
  config.batch_size = int(batch)
  with _loader(config.data.name, splits), contextlib.redirect_stdout(
      io.StringIO()):
    return experiment.prepare(config, directory)


def _phase_epochs(run):
  """0 and the epochs from which a step costs differently."""
  config, method = run.config, run.trainer.method
  starts = {int(method.extra_passes_epoch()),
            int(config.reweighting.get("warmup_epochs", 0) or 0)}
  return sorted({0} | {e for e in starts if 0 < e < int(config.epochs)})


def _devices(strategy):
  try:
    return [d.split("/")[-1].replace("device:", "")
            for d in strategy.extended.worker_devices]
  except RuntimeError:  # the default strategy: TensorFlow's placement
    gpus = tf.config.list_logical_devices("GPU")
    return [(gpus[0] if gpus else tf.config.list_logical_devices("CPU")[0]
             ).name.split("/")[-1].replace("device:", "")]


def _rss():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB


def run(config, step_seconds=STEP_SECONDS, timed_seconds=TIMED_SECONDS,
        eval_seconds=EVAL_SECONDS):
  """Builds and times `config`; returns the report (see format_report)."""
  started = time.perf_counter()
  config = copy.deepcopy(config)
  experiment.validate(config)
  name = config.data.name
  splits = synthetic_splits(name, int(config.seed)) if name in SHAPES else None
  full_batch = int(config.batch_size)
  directory = tempfile.mkdtemp(prefix="dry_run-")
  report = {}
  try:
    replicas = experiment.make_strategy(config.distribute).num_replicas_in_sync
    if full_batch % replicas:
      raise ValueError(f"batch_size {full_batch} is not divisible by the "
                       f"{replicas} replicas of distribute={config.distribute}")
    # Built at one example per replica, the network's forward+backward pass
    # is timed at that batch and a larger one (a + c * batch): the timing
    # batch is the largest whose predicted step fits STEP_SECONDS.
    batch, build = replicas, time.perf_counter()
    run_ = _prepare(config, batch, splits, directory)
    build = time.perf_counter() - build
    data = run_.data
    if full_batch > data.num_train:
      raise ValueError(f"batch_size {full_batch} is larger than num_train "
                       f"{data.num_train} of data.name {name!r}")
    eval_batch = int(config.data.eval_batch_size)
    scaling = pass_model(run_.trainer.network, tuple(data.image_shape), 1,
                         max(full_batch, eval_batch) // replicas)
    passes = sum(s.steps for s in experiment.training_attacks(config, data)) + 3
    a, c = scaling[:2]
    per_replica = timing_batch_for(lambda b: passes * (a + c * b),
                                   step_seconds, full_batch // replicas)
    if per_replica * replicas != batch:  # rebuilt at the timing batch
      workdir_lib.release(directory)
      shutil.rmtree(directory, ignore_errors=True)
      del run_
      batch, build = per_replica * replicas, time.perf_counter()
      run_ = _prepare(config, batch, splits, directory)
      build = time.perf_counter() - build
    training = _time_training(run_, config, batch, full_batch, data,
                              timed_seconds, scaling)
    training["scaling"] = scaling
    if batch < full_batch:  # the per-example cost at the full batch
      ratio = per_example_ratio(scaling, batch // replicas,
                                full_batch // replicas)
      training["batch_ratio"] = ratio
      for phase in training["phases"]:
        phase["step_seconds"] *= ratio
        phase["examples_per_second"] /= ratio
        phase["seconds"] *= ratio
      training["seconds"] = (sum(p["seconds"] for p in training["phases"])
                             + training["epoch_hooks_seconds"]
                             * int(config.epochs))
    report["training"] = training
    report["evaluation"] = _time_evaluation(run_, config, data, scaling,
                                            eval_seconds)
    report["startup_seconds"] = (build + report["training"]["trace_seconds"]
                                 + report["evaluation"]["trace_seconds"])
    report["model"] = {"name": config.model.name,
                       "parameters": int(run_.trainer.network.count_params())}
    report["strategy"] = {"distribute": config.distribute,
                          "replicas": replicas,
                          "devices": _devices(run_.strategy)}
    report["data"] = {
        "name": name, "synthetic": splits is not None,
        "num_train": int(data.num_train),
        "num_test": int(len(data.splits.y_test)),
        "image_shape": [int(n) for n in data.image_shape],
        "num_classes": int(data.num_classes)}
    report["memory"] = _memory(run_, config, data, batch, full_batch)
  finally:
    workdir_lib.release(directory)
    shutil.rmtree(directory, ignore_errors=True)
  report["config"] = {
      "objective": config.objective.name, "method": config.reweighting.name,
      "epochs": int(config.epochs), "batch_size": full_batch,
      "precision": config.get("precision", "float32"),
      "xla": experiment.use_xla(config.xla),
      "attacks": [f"{s.name} ({s.steps} steps)"
                  for s in experiment.training_attacks(config, data)]}
  validation = (report["evaluation"]["validation_per_epoch_seconds"]
                * int(config.epochs))
  report["training"]["validation_seconds"] = validation
  report["training"]["seconds"] += validation
  report["total_seconds"] = (report["training"]["seconds"]
                             + report["evaluation"]["seconds"]
                             + report["startup_seconds"])
  # With the machine to itself: each part at the CPU share it was timed with.
  t, e = report["training"], report["evaluation"]
  report["alone_seconds"] = (
      sum(p["seconds"] * p["cpu_share"] for p in t["phases"])
      + (e["seconds"] + t["validation_seconds"]
         + t["epoch_hooks_seconds"] * int(config.epochs)) * e["cpu_share"]
      + report["startup_seconds"])
  report["elapsed_seconds"] = time.perf_counter() - started
  report["machine"] = {"cpus": os.cpu_count(), "load": list(os.getloadavg()),
                       "gpus": len(tf.config.list_physical_devices("GPU"))}
  return report


def _time_training(run_, config, batch, full_batch, data, timed_seconds,
                   scaling=None):
  """Each phase's step time at the full batch, and the projection."""
  epochs = int(config.epochs)
  steps_per_epoch = data.num_train // full_batch
  phases = _phase_epochs(run_)
  out = {"batch_size": full_batch, "timing_batch": batch,
         "steps_per_epoch": steps_per_epoch, "phases": [],
         "trace_seconds": 0.0}
  for i, start in enumerate(phases):
    end = phases[i + 1] if i + 1 < len(phases) else epochs
    # Later phases: one timed step suffices once it is TIMED_SECONDS long.
    first, steps, cpu = _fit_timed(run_, start, timed_seconds,
                                   MIN_STEPS if i == 0 else 1)
    median = float(np.median(steps))
    step = median * full_batch / batch
    out["trace_seconds"] += max(first - median, 0.0)
    out["phases"].append({
        "start_epoch": start, "epochs": end - start, "first_step": first,
        "timed_steps": len(steps), "step_seconds_at_timing_batch": median,
        "step_seconds": step, "examples_per_second": full_batch / step,
        "seconds": (end - start) * steps_per_epoch * step,
        # the share of the CPUs the timed steps had (a shared machine)
        "cpu_share": _share(sum(cpu), sum(steps))})
  hooks = _time_hooks(run_, scaling)
  out["epoch_hooks_seconds"] = hooks
  out["seconds"] = sum(p["seconds"] for p in out["phases"]) + hooks * epochs
  return out


PASS_SECONDS = 2.0  # the largest pass timed for the batch-size model


def pass_model(network, image_shape, small, cap, pass_seconds=PASS_SECONDS):
  """(a, c, small, large): one forward+backward pass of `network` on a batch
  of b takes a + c * b seconds, fitted on the batches `small` and `large`
  (the largest small * 2^k <= cap predicted to take at most pass_seconds;
  each the faster of two calls after one that traces). On a CPU the
  per-example cost falls with the batch: times measured at a reduced batch
  are scaled to the full one with it (per_example_ratio)."""

  @tf.function
  def grad(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      total = tf.reduce_sum(network(x, training=False)[0])
    return tape.gradient(total, x)

  def seconds(b):
    x = tf.random.uniform([b, *image_shape])
    grad(x).numpy()
    calls = []
    for _ in range(2):  # the faster of two: the machine may be shared
      start = time.perf_counter()
      grad(x).numpy()
      calls.append(time.perf_counter() - start)
    return min(calls)

  t_small = seconds(small)
  large = small
  while large * 2 <= cap and t_small * large * 2 / small <= pass_seconds:
    large *= 2
  if large == small and cap > small:
    large = small * 2
  if large == small:
    return 0.0, t_small / small, small, small
  t_large = seconds(large)
  c = (t_large - t_small) / (large - small)
  if c <= 0:  # noise: no correction (proportional scaling)
    return 0.0, t_large / large, small, large
  return t_small - c * small, c, small, large


def timing_batch_for(seconds_of, budget, cap):
  """`cap` if seconds_of(cap) <= budget, else the largest 2^k that fits (>= 1)."""
  if seconds_of(cap) <= budget:
    return int(cap)
  b = 1
  while b * 2 <= cap and seconds_of(b * 2) <= budget:
    b *= 2
  return b


def per_example_ratio(scaling, measured_batch, target_batch):
  """Per-example cost at target_batch / at measured_batch, by the fitted
  a + c * batch; beyond the largest batch timed the per-example cost is held
  constant (no extrapolation of the gain: an upper estimate)."""
  a, c, _, large = scaling
  at = lambda b: (a + c * b) / b  # noqa: E731
  return at(min(target_batch, large)) / at(min(measured_batch, large))


HOOK_PER_CLASS = 4  # validation images per class the epoch hooks are timed on


def _time_hooks(run_, scaling=None):
  """Seconds of the method's on_epoch_begin + on_epoch_end per epoch.

  The faster of the last two epochs, after a call at the one before that
  traces (a method's burn-in may skip its hooks early on). Hooks that read
  the validation split (FRL, WAT, CFA: a PGD of it every epoch) see
  HOOK_PER_CLASS images of each class; their time is scaled to the split,
  and by the per-example cost at the evaluation batch (`scaling`).
  """
  data, scale = run_.data, 1.0
  ids = np.asarray(getattr(data, "validation_ids", ()))
  if len(ids):
    labels = np.asarray(data.splits.y_train)[ids]
    keep = np.sort(np.concatenate([ids[labels == c][:HOOK_PER_CLASS]
                                   for c in np.unique(labels)]))
    if len(keep) < len(ids):
      scale = len(ids) / len(keep)
      if scaling is not None:
        replicas = run_.strategy.num_replicas_in_sync
        full = min(int(run_.config.data.eval_batch_size), len(ids))
        scale *= per_example_ratio(scaling, max(len(keep) // replicas, 1),
                                   max(full // replicas, 1))
      data = dataclasses.replace(data, validation_ids=keep)
  run_ = dataclasses.replace(run_, data=data)
  method, context = run_.trainer.method, experiment.epoch_context(run_)
  last = max(int(run_.config.epochs) - 1, 2)
  times = []
  for epoch in (last - 2, last - 1, last):
    start = time.perf_counter()
    method.on_epoch_begin(epoch, context)
    method.on_epoch_end(epoch, context)
    times.append(time.perf_counter() - start)
  return min(times[1:]) * scale


def _steps(spec):
  return int(spec.steps) * int(spec.restarts) if spec is not None else 0


def _batch_call(logits_fn, spec, strategy, jit_compile):
  """What robustness.evaluate runs per batch for one attack: the attack,
  then a forward (its rows split over the replicas under a strategy)."""
  attack = (pgd.make_attack(logits_fn, spec, jit_compile, final_logits=False)
            if spec is not None else None)

  def correct(images, labels, index):
    x = images
    if attack is not None:
      x, _ = attack(images, labels, pgd.stateless_seed(0, index, spec.name))
    return tf.equal(tf.argmax(logits_fn(x), -1, output_type=tf.int32), labels)
  return autoattack.replicated(correct, strategy, function=True)


def _share(cpu_seconds, wall_seconds):
  """Process CPU time / wall time / CPUs: the share of the machine it had."""
  return min(1.0, cpu_seconds / max(wall_seconds * (os.cpu_count() or 1),
                                    1e-9))


def _time_call(call, images, labels, budget=2.0, most=5):
  """(first call seconds, fastest later call seconds, its CPU share): the
  first call traces; later ones repeat (at most `most`) while they add up to
  under `budget` seconds, the fastest being the least disturbed by other
  processes on a shared machine."""
  times = []
  while len(times) < 2 or (len(times) <= most
                           and sum(t for t, _ in times[1:]) < budget):
    start, cpu = time.perf_counter(), time.process_time()
    np.asarray(call((images, labels), (tf.constant(0, tf.int64),)))
    times.append((time.perf_counter() - start, time.process_time() - cpu))
  wall, cpu = min(times[1:])
  return times[0][0], wall, _share(cpu, wall)


def _time_evaluation(run_, config, data, scaling, eval_seconds):
  """Per attack: seconds per example (timed or estimated) and projection.

  A per-batch attack of K steps (x restarts) is timed as is when a call on
  the timing batch fits the budget, else at 2 steps, extrapolated linearly
  in steps with the per-step cost (its time minus the clean forward's) / 2.
  """
  replicas = run_.strategy.num_replicas_in_sync
  strategy = run_.strategy if config.distribute == "mirrored" else None
  jit = experiment.use_xla(config.xla)
  logits_fn = experiment.deployed_logits_fn(run_)  # what evaluate() attacks
  specs = robustness.attack_specs(config.eval)
  n_test = len(data.splits.y_test)
  n_eval = min(int(config.eval.max_examples or 0) or n_test, n_test)
  n_aa = min(int(config.eval.autoattack_max_examples or 0) or n_eval, n_test)
  a, c = scaling[:2]
  pass_seconds = lambda b: a + c * b  # noqa: E731  (per-replica batch b)
  batch = replicas * timing_batch_for(
      lambda b: 3 * pass_seconds(b), eval_seconds / 20,
      int(config.data.eval_batch_size) // replicas)
  first = next(iter(data.test()))
  batch = max(replicas, min(batch, first["label"].shape[0] // replicas
                            * replicas))
  images = tf.cast(first["image"][:batch], tf.float32)
  labels = tf.cast(first["label"][:batch], tf.int32)
  # What evaluate() runs at: batches of eval.batch_size (at most n_eval).
  full = min(int(config.data.eval_batch_size), n_eval)
  ratio = (per_example_ratio(scaling, batch // replicas, full // replicas)
           if batch < full else 1.0)
  out = {"timing_batch": batch, "examples": n_eval, "attacks": [],
         "trace_seconds": 0.0, "batch_ratio": ratio}
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # TF's "N retracings" note per attack
  try:
    first_call, forward, share = _time_call(
        _batch_call(logits_fn, None, strategy, jit), images, labels)
    shares = [share]
    out["trace_seconds"] += max(first_call - forward, 0.0)
    forward *= ratio / batch
    measured = {}  # name -> (timed spec, seconds per example)
    for name, spec in specs.items():
      if spec is None or isinstance(spec, robustness.AutoAttackSpec):
        continue
      short = spec
      for k in (4, 2):  # as is if affordable, else 4 or 2 steps
        if (_steps(short) + 1) * pass_seconds(batch // replicas) > (
            eval_seconds / 10) and _steps(spec) > k:
          short = dataclasses.replace(spec, steps=k, restarts=1)
      first_call, seconds, share = _time_call(
          _batch_call(logits_fn, short, strategy, jit), images, labels)
      shares.append(share)
      out["trace_seconds"] += max(first_call - seconds, 0.0)
      measured[name] = (short, seconds * ratio / batch)
    # One attack step per example: the median over the timed attacks of
    # (time - clean forward) / steps; it extrapolates the attacks timed at
    # fewer steps and prices the AutoAttack family and eps_curve.
    per_steps = [max(t - forward, 0.0) / _steps(short)
                 for short, t in measured.values()]
    grad = (float(np.median(per_steps)) if per_steps else
            pass_seconds(batch // replicas) * ratio / (batch // replicas))
    timed = {}
    for name, (short, t) in measured.items():
      steps = _steps(specs[name])
      if short is specs[name]:
        timed[name] = (t, "timed")
      else:
        timed[name] = (t + (steps - _steps(short)) * grad,
                       f"timed at {_steps(short)} of {steps} steps, "
                       "+ the median step cost for the rest")
  finally:
    logging.set_verbosity(verbosity)
  for name, spec in specs.items():
    if spec is None:
      per_example, how, n = forward, "timed", n_eval
    elif isinstance(spec, robustness.AutoAttackSpec):
      g = f = 1  # the clean forward
      for member in spec.members:
        dg, df = autoattack_passes(member, data.num_classes)
        g, f = g + dg, f + df
      per_example = g * grad + f * forward
      how, n = (f"estimated: {g:,} gradient + {f:,} forward passes, "
                "none broken early: an upper bound"), n_aa
    else:
      (per_example, how), n = timed[name], n_eval
    out["attacks"].append({"name": name, "how": how, "examples": n,
                           "seconds_per_example": per_example,
                           "seconds": per_example * n})
  if "eps_curve" in config.eval.reports:
    radii = [e for e in eps_curve.epsilons(config.eval) if e > 0]
    n_curve = min(eps_curve.example_limit(config.eval) or n_test, n_test)
    steps = int(config.eval.pgd_steps) * int(config.eval.restarts)
    per_example = len(radii) * (forward + steps * grad)
    out["attacks"].append({
        "name": "eps_curve", "how": f"report, estimated: {len(radii)} radii "
        f"x PGD-{config.eval.pgd_steps}", "examples": n_curve,
        "seconds_per_example": per_example, "seconds": per_example * n_curve})
  out["seconds"] = sum(a["seconds"] for a in out["attacks"])
  out["cpu_share"] = float(np.median(shares))
  # eval.select=best_val: a CE-PGD-10 of the validation split after every
  # epoch (core/selection.py), a training cost.
  n_val = len(getattr(data, "validation_ids", ()))
  out["validation_per_epoch_seconds"] = (
      n_val * (forward + 10 * grad)
      if config.eval.get("select", "last") == "best_val" else 0.0)
  out["validation_examples"] = n_val
  return out


def activation_values(model):
  """Values per example of every layer output of a functional model (nested
  models walked): what a training forward keeps for its backward pass."""
  total = 0
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      total += activation_values(layer)
      continue
    if isinstance(layer, keras.layers.InputLayer):
      continue
    try:
      outputs = keras.tree.flatten(layer.output)
    except (AttributeError, ValueError):  # shared layer: several outputs
      continue
    for out in outputs:
      total += int(np.prod([d or 1 for d in out.shape[1:]]))
  return total


def _memory(run_, config, data, batch, full_batch):
  """Measured peak RSS (and GPU peaks), and an estimate at the full batch."""
  network, trainer = run_.trainer.network, run_.trainer
  objective_natural = trainer.objective.needs_natural
  forwards = len(experiment.training_attacks(config, data)) + int(
      objective_natural or trainer.method.needs_natural)
  params = int(network.count_params())
  activations = activation_values(network)
  out = {"peak_rss_bytes": _rss(), "timing_batch": batch,
         # weights, gradients, momentum; the training forwards' activations
         # (kept for the backward) and one attack pass's, float32.
         "estimate_bytes": int(4 * (3 * params + activations * full_batch
                                    * (forwards + 1))),
         "activation_values_per_example": activations,
         "training_forwards": forwards}
  gpus = {}
  for device in tf.config.list_logical_devices("GPU"):
    try:
      gpus[device.name] = int(
          tf.config.experimental.get_memory_info(device.name)["peak"])
    except (ValueError, tf.errors.OpError):
      pass
  if gpus:
    out["gpu_peak_bytes"] = gpus
  return out


def duration(seconds):
  """3.2 s, 4.1 min, 7.3 h, 12.5 days."""
  for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
    if seconds >= size * (2 if unit == "days" else 1):
      return f"{seconds / size:.1f} {unit}"
  return f"{seconds:.1f} s"


def _bytes(n):
  for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
    if n >= size:
      return f"{n / size:.{2 if unit == 'GiB' else 0}f} {unit}"
  return f"{n / 2**10:.0f} KiB"


def format_report(report):
  """The text --dry_run prints."""
  d, m, s, c = report["data"], report["model"], report["strategy"], report["config"]
  t, e = report["training"], report["evaluation"]
  source = ("synthetic noise of its shape (not downloaded)" if d["synthetic"]
            else "its local file")
  lines = [
      "Dry run: nothing is written (a throwaway directory under $TMPDIR was "
      "used and removed).",
      f"  data        {d['name']}: {d['num_train']:,} train / {d['num_test']:,} "
      f"test, {'x'.join(map(str, d['image_shape']))}, {d['num_classes']} "
      f"classes ({source})",
      f"  model       {m['name']}: {m['parameters']:,} parameters "
      f"({_bytes(4 * m['parameters'])} float32)",
      f"  training    objective {c['objective']}, method {c['method']}, "
      f"attacks {', '.join(c['attacks'])}; batch {c['batch_size']}, "
      f"{c['epochs']} epochs x {t['steps_per_epoch']:,} steps; precision "
      f"{c['precision']}, xla {'on' if c['xla'] else 'off'}",
      f"  strategy    {s['distribute']}: {s['replicas']} replica(s) on "
      f"{', '.join(s['devices'])}"]
  scaled = t["timing_batch"] != t["batch_size"]
  correction = ""
  if t.get("scaling"):
    small, large = t["scaling"][2:]
    replicas = s["replicas"]
    top = min(t["batch_size"] // replicas, large)
    correction = (f" x {t.get('batch_ratio', 1.0):.2f}, the per-example cost "
                  f"of a forward+backward pass at {top} / at "
                  f"{t['timing_batch'] // replicas} per replica, fitted as a + "
                  f"c*batch on batches {small} and {large}"
                  + (f" and held beyond {large}" if top < t["batch_size"]
                     // replicas else ""))
  lines.append(
      f"Training steps, timed at batch {t['timing_batch']}" +
      (f" (a step of {t['batch_size']} would be too slow to time here; scaled "
       f"to batch {t['batch_size']}: x{t['batch_size'] / t['timing_batch']:g}"
       f"{correction})" if scaled else "") + ":")
  for p in t["phases"]:
    end = p["start_epoch"] + p["epochs"]
    lines.append(
        f"  epochs {p['start_epoch'] + 1}-{end}: {p['step_seconds']:.3g} s/step "
        f"({p['examples_per_second']:.3g} examples/s, "
        f"{p['examples_per_second'] / s['replicas']:.3g} per replica; "
        f"median of {p['timed_steps']} steps after a first of "
        f"{p['first_step']:.1f} s) -> {duration(p['seconds'])}")
  if t["epoch_hooks_seconds"] > 0.01:
    lines.append(f"  method epoch hooks: {t['epoch_hooks_seconds']:.2f} s per "
                 "epoch")
  if t.get("validation_seconds"):
    lines.append(
        f"  eval.select=best_val: PGD-10 on the {e['validation_examples']:,} "
        f"validation images after every epoch -> "
        f"{duration(t['validation_seconds'])} (estimated, as below)")
  lines.append(f"Evaluation on {e['examples']:,} test examples (per-batch "
               f"attacks timed on a batch of {e['timing_batch']}, after a "
               "call that traces" + (
                   f"; per-example cost x {e['batch_ratio']:.2f} for "
                   "the evaluation batch, as above"
                   if e["batch_ratio"] != 1.0 else "") + "):")
  for a in e["attacks"]:
    lines.append(f"  {a['name']:<16} {a['seconds_per_example'] * 1e3:10.3f} "
                 f"ms/example x {a['examples']:,} -> {duration(a['seconds'])}"
                 + (f"  ({a['how']})" if a["how"] != "timed" else ""))
  mem = report["memory"]
  memory = (f"peak RSS {_bytes(mem['peak_rss_bytes'])} (this process, at "
            f"batch {mem['timing_batch']})")
  for device, peak in mem.get("gpu_peak_bytes", {}).items():
    memory += f"; {device} peak {_bytes(peak)}"
  lines.append(f"Memory: {memory}; estimated for training at batch "
               f"{t['batch_size']}: {_bytes(mem['estimate_bytes'])} (weights, "
               f"gradients, momentum + {mem['activation_values_per_example']:,}"
               f" activations per example x {mem['training_forwards'] + 1} "
               "passes kept, float32)")
  machine = report["machine"]
  lines.append(
      f"Projected wall time on this machine ({machine['cpus']} CPUs, "
      f"{machine['gpus']} GPUs, load average {machine['load'][0]:.1f}): "
      f"training {duration(t['seconds'])} + evaluation "
      f"{duration(e['seconds'])} + build and tracing "
      f"{duration(report['startup_seconds'])} = "
      f"{duration(report['total_seconds'])}"
      + (f", on {s['replicas']} replicas ({duration(report['total_seconds'] * s['replicas'])}"
         " of device time)" if s["replicas"] > 1 else ", on 1 device")
      + "; Python and TensorFlow start-up, checkpoints and export not included")
  shares = [p["cpu_share"] for p in t["phases"]] + [e["cpu_share"]]
  if min(shares) < 0.8:
    lines.append(
        f"  The timed steps and calls had {', '.join(f'{100 * x:.0f}%' for x in shares)}"
        f" of the {machine['cpus']} CPUs (process CPU time / wall time / "
        f"CPUs; training phases, evaluation): with the machine to itself, "
        f"about {duration(report['alone_seconds'])} (a lower bound: "
        "TensorFlow may not keep every CPU busy)")
  lines.append(f"(dry run took {report['elapsed_seconds']:.0f} s)")
  return "\n".join(lines)
