r"""Speed, measured side by side in one process: what the project costs.

  python -m tools.benchmark                                # every section, ~10 min here
  python -m tools.benchmark --presets=mnist10k --reference # the regression guard
  python -m tools.benchmark --sections=methods,eval --steps=6
  python -m tools.benchmark --sections=autoattack --aa_examples=100 \
      --aa_export=runs/protocol/at-s0/export     # standard AutoAttack vs ART

Sections (`--sections`, default all of them but `autoattack`):
  reference  the project's AT step vs a bare Keras PGD-AT step (same network,
             batch, attack and optimizer; no reweighting, no per-term metrics,
             no per-example memory), timed alternately; prints `ratio R`
             (project ex/s / reference ex/s). Keep R >= 0.95.
  methods    examples/s of every method config on the same data, beside its
             inherent passes and the overhead beyond them (below).
  precision  the AT step under float32, mixed_float16, mixed_bfloat16.
  resnet     ResNet-18 at 32x32 (random data, batch 64): project vs reference.
  eval       PGD-20 on an export through official/evaluation/robustness.py vs
             ART's ProjectedGradientDescent (and apgd-ce / autoattack-fast vs
             ART's AutoProjectedGradientDescent where those exist), same
             images, alternated; ART is not a dependency: skipped if missing.
             Beside PGD-20, its floor: a bare loop of its 20 forward+backward
             passes on the export; ART's rate over the floor caps what any
             implementation can gain over ART on that model.
  autoattack the standard AutoAttack ensemble (apgd-ce, apgd-t, fab-t,
             square) and apgd-ce alone, XLA off and on (`--aa_xla`), on
             `--aa_examples` mnist10k test images and `--aa_export` (or a
             20-step export), vs
             ART's AutoProjectedGradientDescent and ART's AutoAttack built as
             close to the standard ensemble as ART allows (APGD-CE, targeted
             APGD-DLR on the top-9 classes, Square; ART has no FAB). Seconds
             per image on a robust model: not in the default sections;
             `--aa_repeats` rounds (default 1) after a warm-up on
             `--aa_warmup` images. ART's AutoAttack needs `multiprocess`.

Timing: `warmup` untimed steps (tracing, XLA), then `repeats` rounds; in each
round every contender runs `steps` steps in turn (alternation spreads the
load of a busy machine over all of them); a rate is the median over rounds.
The reference and ResNet ratios are medians of per-round ratios (3x the
rounds of half the steps for the reference): the load of a shared machine
drifts between rounds far more than within one.

Inherent passes: a method's step needs A attack iterations (forward + input
gradient), T training forward+backward passes and F eval-mode forwards; the
three unit costs are timed on the same batch, and `overhead` is the measured
step time over A·a + T·t + F·f, minus 1. `vs bare` races each method alone
with the bare PGD-AT loop (the reference section's; short paired rounds):
(AT's units / the method's units) / median of the rounds' (method ex/s /
bare ex/s), minus 1, i.e. the method against a bare loop of its own passes
(for AT: its reference ratio, inverted, minus 1). What runs beyond the
passes: the weights, the metrics, the optimizer (the training attacks run
no forward of their own on the final iterate).
"""
import importlib
import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

SECTIONS = ("reference", "methods", "precision", "resnet", "eval",
            "autoattack")
# A round of `autoattack` takes minutes to hours: asked for by name only.
DEFAULT_SECTIONS = ("reference", "methods", "precision", "resnet", "eval")
METHODS = ("at", "trades", "mart", "gairat", "mail", "lrat", "done", "srat",
           "iaat", "robal", "at_bsl")
# Past every burn-in / warm-up: the benchmark times each method's full step.
FULL_STEP = {"gairat": {"reweighting.burn_in_epochs": 0},
             "mail": {"reweighting.burn_in_epochs": 0},
             "lrat": {"reweighting.burn_in_epochs": 0},
             "done": {"reweighting.burn_in_epochs": 0},
             "srat": {"reweighting.defer_epochs": 0},
             "iaat": {"reweighting.warmup_epochs": 0}}
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

_SECTIONS = flags.DEFINE_list("sections", list(DEFAULT_SECTIONS),
                              f"Sections to run: {', '.join(SECTIONS)}.")
_REFERENCE = flags.DEFINE_bool("reference", False,
                               "Only the reference section (the ratio line).")
_PRESETS = flags.DEFINE_list("presets", ["mnist10k"],
                             "Dataset presets of the reference section.")
_XLA = flags.DEFINE_string("xla", "off", "XLA for the PGD loops: off | on.")
_STEPS = flags.DEFINE_integer("steps", 4, "Timed steps per round.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Rounds (median).")
_EVAL_EXAMPLES = flags.DEFINE_integer("eval_examples", 500,
                                      "Test images of the eval section.")
_EVAL_EXPORT = flags.DEFINE_string(
    "eval_export", "", "SavedModel of the eval section ('' = the AT "
    "SmallCNN after 20 steps; a robust export makes APGD run its 100 "
    "iterations on almost every image).")
EVAL_SECTION_ATTACKS = ("pgd20", "apgd-ce", "autoattack-fast")
_EVAL_ATTACKS = flags.DEFINE_list(
    "eval_attacks", list(EVAL_SECTION_ATTACKS),
    f"Attacks of the eval section ({', '.join(EVAL_SECTION_ATTACKS)}).")
_AA_EXPORT = flags.DEFINE_string(
    "aa_export", "", "SavedModel of the autoattack section (serve: float32 "
    "[0, 1] NHWC images -> logits); empty: a SmallCNN trained 20 AT steps.")
_AA_EXAMPLES = flags.DEFINE_integer(
    "aa_examples", 1000, "mnist10k test images of the autoattack section.")
_AA_WARMUP = flags.DEFINE_integer(
    "aa_warmup", 20, "Untimed images per contender first (autoattack section).")
_AA_REPEATS = flags.DEFINE_integer(
    "aa_repeats", 1, "Timed rounds of the autoattack section (--repeats is "
    "for the others: one round here can take hours).")
_AA_XLA = flags.DEFINE_list(
    "aa_xla", ["off", "on"], "XLA modes of the project in the autoattack "
    "section.")


# ---------------------------------------------------------------- pure parts
def inherent_passes(config):
  """(A attack iterations, T training fwd+bwd, F eval forwards) of one step.

  What the method's formula needs, at its full step (after any burn-in):
  AT K + 1; TRADES adds the natural training pass and the KL attack's f(x);
  MART the natural pass; LRAT one more attack and training pass per variant
  (+ the natural pass of its local form); IAAT the two search attacks (each
  with the forward that checks its final iterate) and the clean check f(x);
  RoBal the natural pass of its KL term. GAIRAT, MAIL, DONE, SRAT, AT-BSL
  read what AT computes.
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


def overhead(seconds, passes, unit_seconds):
  """Measured step time over the inherent work, minus 1."""
  inherent = sum(n * u for n, u in zip(passes, unit_seconds))
  return seconds / inherent - 1.0


def ratio_line(name, rate, reference_rate, label="reference", ratio=None,
               digits=1):
  ratio = rate / reference_rate if ratio is None else ratio
  return (f"{name}: {rate:.{digits}f} ex/s vs {label} "
          f"{reference_rate:.{digits}f} ex/s: ratio {ratio:.2f}")


def alternate(contenders, repeats, rounds=None):
  """{name: fn() -> (examples, seconds)} run in turn `repeats` times;
  returns {name: median examples/s}. `rounds`, a dict, receives every
  round's rates per name (for paired ratios)."""
  rates = {name: [] for name in contenders}
  for _ in range(repeats):
    for name, fn in contenders.items():
      examples, seconds = fn()
      rates[name].append(examples / seconds)
  if rounds is not None:
    rounds.update(rates)
  return {name: statistics.median(r) for name, r in rates.items()}


def paired_ratio(rates, reference_rates):
  """Median over rounds of rate / reference rate in the same round: the
  machine's load drifts between rounds, much less within one."""
  return statistics.median(a / b for a, b in zip(rates, reference_rates))


# ---------------------------------------------------------------- contenders
def load_config(method, preset, **overrides):
  module = importlib.import_module(f"configs.{method}")
  config = module.get_config(preset)
  config.xla = _XLA.value
  for key, value in {**FULL_STEP.get(method, {}), **overrides}.items():
    node = config
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = value
  return config


class ProjectStep:
  """The project's compiled step (prepare() as official.train does)."""

  def __init__(self, config, workdir):
    from official.core import experiment
    self.run = experiment.prepare(config, workdir)
    self.batch = int(config.batch_size)
    epochs = int(config.epochs)
    self.iterator = iter(self.run.data.train(0, epochs).repeat())
    self.run.trainer.make_train_function()

  def __call__(self, steps):
    start = time.perf_counter()
    logs = None
    for _ in range(steps):
      logs = self.run.trainer.train_function([next(self.iterator)])
    float(logs["loss"])  # waits for the last step
    return steps * self.batch, time.perf_counter() - start


def bare_pgd(forward, x, y, noise, eps, alpha, steps):
  """L-inf PGD and nothing else: start x + noise, `steps` signed CE-gradient
  steps, each projected on the eps-ball and [0, 1]. The attack of the
  reference loop and of the eval section's floor."""
  import tensorflow as tf
  lower, upper = tf.maximum(x - eps, 0.0), tf.minimum(x + eps, 1.0)
  x_adv = tf.clip_by_value(x + noise, lower, upper)
  for _ in tf.range(steps):
    with tf.GradientTape() as tape:
      tape.watch(x_adv)
      loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=y, logits=forward(x_adv)))
    x_adv = tf.clip_by_value(x_adv + alpha * tf.sign(tape.gradient(loss, x_adv)),
                             lower, upper)
  return x_adv


class ReferenceStep:
  """A bare Keras PGD-AT step: the same network, batch, attack, optimizer.

  Plain CE on the adversarial batch, coupled weight decay, PGD-K with a
  uniform start in an XLA-or-graph tf.function; nothing else (no weights,
  no per-term metrics, no per-example memory, no statistics).
  """

  def __init__(self, config, data):
    import keras
    import tensorflow as tf
    from official.modeling import registry
    network = registry.build_model(config.model, data.image_shape,
                                   data.num_classes, seed=int(config.seed))
    optimizer = keras.optimizers.SGD(float(config.optimizer.learning_rate),
                                     momentum=float(config.optimizer.momentum))
    variables = network.trainable_variables
    optimizer.build(variables)
    eps, alpha = float(config.attack.epsilon), float(config.attack.step_size)
    steps, wd = int(config.attack.steps), float(config.optimizer.weight_decay)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits

    @tf.function(jit_compile=config.xla == "on")
    def attack(x, y, seed):
      noise = tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps)
      return bare_pgd(lambda images: network(images)[0], x, y, noise, eps,
                      alpha, steps)

    @tf.function
    def step(batch, seed):
      x = tf.cast(batch["image"], tf.float32)
      y = tf.cast(batch["label"], tf.int32)
      x_adv = attack(x, y, seed)
      with tf.GradientTape() as tape:
        logits = tf.cast(network(x_adv, training=True)[0], tf.float32)
        loss = tf.reduce_mean(ce(labels=y, logits=logits))
      grads = tape.gradient(loss, variables)
      optimizer.apply([g + wd * v for g, v in zip(grads, variables)],
                      variables)
      return loss

    self.step, self.batch = step, int(config.batch_size)
    self.iterator = iter(data.train(0, int(config.epochs)).repeat())
    self.count = 0

  def __call__(self, steps):
    import tensorflow as tf
    start = time.perf_counter()
    for _ in range(steps):
      self.count += 1
      loss = self.step(next(self.iterator), tf.constant([0, self.count]))
    float(loss)
    return steps * self.batch, time.perf_counter() - start


def timed(contender, steps):
  return lambda: contender(steps)


def race(contenders, steps=None, warmup=None, repeats=None, rounds=None):
  """Warm every contender up, then alternate; {name: median ex/s}."""
  steps = _STEPS.value if steps is None else steps
  for contender in contenders.values():
    contender(_WARMUP.value if warmup is None else warmup)
  return alternate({n: timed(c, steps) for n, c in contenders.items()},
                   _REPEATS.value if repeats is None else repeats, rounds)


# ---------------------------------------------------------------- sections
def section_reference(workdir):
  out = []
  for preset in _PRESETS.value:
    config = load_config("at", preset)
    project = ProjectStep(config, os.path.join(workdir, f"ref_{preset}"))
    reference = ReferenceStep(config, project.run.data)
    # Short rounds, many of them: the ratio is the median of paired rounds.
    rounds = {}
    rates = race({"project": project, "reference": reference},
                 steps=max(1, _STEPS.value // 2), repeats=3 * _REPEATS.value,
                 rounds=rounds)
    ratio = paired_ratio(rounds["project"], rounds["reference"])
    out.append(f"reference [{preset}, AT PGD-{config.attack.steps}, batch "
               f"{config.batch_size}, xla {config.xla}] " + ratio_line(
                   "project", rates["project"], rates["reference"],
                   ratio=ratio))
    print(out[-1], flush=True)
  return out


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
  runs = {m: ProjectStep(load_config(m, "mnist10k"),
                         os.path.join(workdir, f"method_{m}")) for m in METHODS}
  units = unit_passes(runs["at"].run)
  # The bare PGD-AT loop (the reference section's): what a loop of exactly
  # AT's passes costs beyond the units timed alone (the projection, the
  # update, the input pipeline), to calibrate `vs bare`.
  bare = ReferenceStep(runs["at"].run.config, runs["at"].run.data)
  rates = race({**units, "bare AT loop": bare})
  batch = runs["at"].batch
  units = tuple(batch / rates[u] for u in units)  # seconds per pass
  at_work = sum(n * u for n, u in
                zip(inherent_passes(runs["at"].run.config), units))
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
    pair = race({method: runs[method], "bare AT loop": bare},
                steps=max(1, _STEPS.value // 2), repeats=3 * _REPEATS.value,
                rounds=rounds)
    config = runs[method].run.config
    passes = inherent_passes(config)
    inherent = sum(n * u for n, u in zip(passes, units))
    # The bare loop's rate scaled by the inherent work over the method's.
    vs_bare = (at_work / inherent) / paired_ratio(
        rounds[method], rounds["bare AT loop"]) - 1.0
    lines.append(f"{method:<8} {pair[method]:>7.1f} {passes[0]:>3} "
                 f"{passes[1]:>2} {passes[2]:>2} {batch / inherent:>13.1f} "
                 f"{100 * overhead(batch / pair[method], passes, units):>7.0f}% "
                 f"{100 * vs_bare:>6.0f}%")
    print(lines[-1], flush=True)
  return lines


def section_precision(workdir):
  runs = {p: ProjectStep(load_config("at", "mnist10k", precision=p),
                         os.path.join(workdir, f"precision_{p}"))
          for p in PRECISIONS}
  rates = race(runs)
  lines = []
  for p in PRECISIONS:
    lines.append(f"precision [mnist10k AT] " + ratio_line(
        p, rates[p], rates["float32"], "float32"))
    print(lines[-1], flush=True)
  return lines


def section_resnet(workdir):
  import numpy as np
  rng = np.random.default_rng(0)
  path = os.path.join(workdir, "random32.npz")
  np.savez(path, x_train=rng.random((640, 32, 32, 3), np.float32),
           y_train=rng.integers(0, 10, 640), x_test=rng.random(
               (64, 32, 32, 3), np.float32), y_test=rng.integers(0, 10, 64))
  config = load_config("at", None, **{"data.name": "npz", "data.path": path,
                                      "data.augment": "none", "batch_size": 64})
  project = ProjectStep(config, os.path.join(workdir, "resnet"))
  reference = ReferenceStep(config, project.run.data)
  # A ResNet-18 PGD-10 step takes seconds on a CPU: one step per round.
  rounds = {}
  rates = race({"project": project, "reference": reference}, steps=1,
               warmup=1, repeats=_REPEATS.value + 1, rounds=rounds)
  line = (f"resnet18 [32x32x3 random, batch 64, PGD-10, xla {config.xla}] "
          + ratio_line("project", rates["project"], rates["reference"],
                       ratio=paired_ratio(rounds["project"],
                                          rounds["reference"])))
  print(line, flush=True)
  return [line]


def short_run_export(workdir, run_name, export_name):
  """(run, export path) of the protocol AT SmallCNN after 20 steps: a model
  that is not at its zero-logit init, for sections not given an export."""
  from official.core import export
  project = ProjectStep(load_config("at", "mnist10k"),
                        os.path.join(workdir, run_name))
  project(20)
  run = project.run
  return run, export.export(run.trainer.network,
                            os.path.join(workdir, export_name))


def given_export(flag, config):
  """(loaded export, the config's data) for an export given by --FLAG; a
  one-line `error:` (exit 1) if it does not load."""
  from official.data import registry as data_registry
  from tools import evaluate as evaluate_tool
  try:
    loaded = evaluate_tool.load_export(flags.FLAGS[flag].value)
  except ValueError as e:
    raise SystemExit(f"error: --{flag}: {e}") from None
  return loaded, data_registry.load(config.data, batch_size=1, seed=0)


def check_flags(sections):
  """One `error:` line (exit 1) for a bad flag, before any section runs."""
  from tools import evaluate as evaluate_tool
  checks = [("sections", sections, SECTIONS),
            ("eval_attacks", _EVAL_ATTACKS.value, EVAL_SECTION_ATTACKS),
            ("aa_xla", _AA_XLA.value, ("off", "on"))]
  for flag, values, valid in checks:
    for value in values:
      if value not in valid:
        raise SystemExit(f"error: --{flag}: '{value}' is not one of "
                         f"{', '.join(valid)}")
  for flag in ("eval_export", "aa_export"):
    path = flags.FLAGS[flag].value
    if path:
      try:
        evaluate_tool.check_export_path(path)
      except ValueError as e:
        raise SystemExit(f"error: --{flag}: {e}") from None


def first_test_images(data, n):
  """The first n test images as the attacks see them: float32 NHWC in
  [0, 1] (the splits hold raw pixels up to pixel_max), and int64 labels."""
  import numpy as np
  x = data.splits.x_test[:n].astype(np.float32) / data.splits.pixel_max
  if x.ndim == 3:
    x = x[..., None]
  return x, data.splits.y_test[:n].astype(np.int64)


def section_eval(workdir):
  import numpy as np
  import tensorflow as tf
  from official.evaluation import robustness
  if _EVAL_EXPORT.value:
    from official.core import experiment
    run_config = experiment.resolve(load_config("at", "mnist10k"))
    loaded, data = given_export("eval_export", run_config)
  else:
    run, path = short_run_export(workdir, "eval_run", "export")
    loaded = tf.saved_model.load(path)  # owns the variables: keep it alive
    run_config, data = run.config, run.data
  serve = loaded.serve
  x, y = first_test_images(data, _EVAL_EXAMPLES.value)
  n = len(y)
  dataset = tf.data.Dataset.from_tensor_slices(
      {"image": x, "label": y}).batch(100)
  config = run_config.eval
  config.max_examples = 0

  def project_eval(name):
    def fn():
      config.attacks = (name,)
      start = time.perf_counter()
      result = robustness.evaluate(serve, dataset, config,
                                   data.num_classes, verbose=0,
                                   jit_compile=run_config.xla == "on")
      return n, time.perf_counter() - start, result[name]["accuracy"]
    return fn

  lines = []
  try:
    art = _art_classifier(serve, x.shape[1:], data.num_classes)
  except ImportError as e:
    art = None
    lines.append(f"eval: ART not installed ({e}); project only")
  # The floor: an attack's bare forward+backward passes (a plain
  # tf.function loop, nothing else), what no framework can beat on this
  # model: PGD-20's 20 on every image; APGD-CE's 100 on the images the
  # model classifies correctly (ours and ART's attack only those).
  floors = {"pgd20": _floor_loop(serve, x, y, config, int(config.pgd_steps)),
            "apgd-ce": _floor_loop(serve, x, y, config, ART_APGD_STEPS,
                                   only_correct=True)}
  contenders = {}
  if "pgd20" in _EVAL_ATTACKS.value:
    contenders["pgd20"] = (project_eval("pgd20"), _art_pgd(art, config, x, y))
  # ART's APGD-CE is the same attack as ours (100 iterations, step 2 eps);
  # autoattack-fast (+ APGD-T) has no ART counterpart: timed alone.
  if "apgd-ce" in _EVAL_ATTACKS.value:
    contenders["apgd-ce"] = (project_eval("apgd-ce"),
                             _art_apgd(art, config, x, y))
  if "autoattack-fast" in _EVAL_ATTACKS.value:
    contenders["autoattack-fast"] = (project_eval("autoattack-fast"), None)
  for name, (ours, theirs) in contenders.items():
    ours()  # warm-up: tracing
    accuracy = {}

    def ours_rate(ours=ours):
      examples, seconds, acc = ours()
      accuracy["project"] = acc
      return examples, seconds
    fns = {"project": ours_rate}
    if theirs is not None:
      def theirs_rate(theirs=theirs):
        examples, seconds, acc = theirs()
        accuracy["ART"] = acc
        return examples, seconds
      try:
        theirs_rate()
        fns["ART"] = theirs_rate
      except Exception as e:  # noqa: BLE001  (a third-party failure: say it)
        lines.append(f"eval {name}: ART failed: {type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}")
    if name in floors:
      floors[name]()  # warm-up: tracing
      fns["floor"] = lambda floor=floors[name]: floor()[:2]
    rates = alternate(fns, _REPEATS.value)
    accs = ", ".join(f"{k} accuracy {v:.3f}" for k, v in accuracy.items())
    if "ART" in rates:
      lines.append(f"eval {name} [{n} mnist10k test images, export] "
                   + ratio_line("project", rates["project"], rates["ART"],
                                "ART") + f" ({accs})")
    else:
      lines.append(f"eval {name}: project {rates['project']:.1f} ex/s ({accs})")
    if "floor" in rates:
      lines.append(floor_line(name, rates))
  for line in lines:
    print(line, flush=True)
  return lines


def floor_line(name, rates):
  """The project's and ART's rates as fractions of the bare loop's: ART at a
  fraction q of the floor caps any project/ART ratio at 1/q."""
  floor = rates["floor"]
  line = (f"eval {name} floor [bare loop of its forward+backward passes] "
          f"{floor:.1f} ex/s: project/floor {rates['project'] / floor:.2f}")
  if "ART" in rates:
    q = rates["ART"] / floor
    line += (f", ART/floor {q:.2f}: no implementation can exceed "
             f"{1 / q:.2f}x ART on this model")
  return line


def _floor_loop(serve, x, y, config, steps, batch_size=100,
                only_correct=False):
  """fn() -> (examples, seconds, robust accuracy) of the least a K-step L-inf
  attack costs: uniform start, K signed-gradient steps of CE (forward +
  input gradient each) and one forward to count, in one plain tf.function
  per batch of 100 (the batches of both frameworks). `only_correct`: the K
  steps run on the correctly classified images only (one forward finds
  them, inside the timing), as APGD's do; the rate counts every image."""
  import numpy as np
  import tensorflow as tf
  eps, alpha = float(config.epsilon), float(config.pgd_step_size)

  @tf.function
  def robust(images, labels):
    noise = tf.random.uniform(tf.shape(images), -eps, eps, seed=0)
    x_adv = bare_pgd(serve, images, labels, noise, eps, alpha, steps)
    return tf.reduce_sum(tf.cast(tf.equal(
        tf.argmax(serve(x_adv), -1), labels), tf.int32))

  predict = tf.function(lambda images: tf.argmax(serve(images), -1))

  def fn():
    start = time.perf_counter()
    xs, ys = x, y
    if only_correct:
      keep = np.concatenate([predict(tf.constant(x[i:i + batch_size])).numpy()
                             for i in range(0, len(y), batch_size)]) == y
      xs, ys = x[keep], y[keep]
    count = sum(int(robust(tf.constant(xs[i:i + batch_size]),
                           tf.constant(ys[i:i + batch_size])))
                for i in range(0, len(ys), batch_size))
    return len(y), time.perf_counter() - start, count / len(y)
  return fn


def _art_classifier(serve, input_shape, num_classes):
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from art.estimators.classification import TensorFlowV2Classifier
  import tensorflow as tf
  return TensorFlowV2Classifier(
      model=lambda x, training=False: serve(tf.cast(x, tf.float32)),
      nb_classes=num_classes, input_shape=tuple(input_shape),
      loss_object=tf.keras.losses.SparseCategoricalCrossentropy(
          from_logits=True), clip_values=(0.0, 1.0))


def _art_pgd(classifier, config, x, y):
  if classifier is None:
    return None
  import numpy as np
  from art.attacks.evasion import ProjectedGradientDescent
  attack = ProjectedGradientDescent(
      classifier, norm=np.inf, eps=float(config.epsilon),
      eps_step=float(config.pgd_step_size), max_iter=int(config.pgd_steps),
      num_random_init=1, batch_size=100, verbose=False)
  return _art_run(classifier, attack, x, y)


def _art_apgd(classifier, config, x, y):
  if classifier is None:
    return None
  attack = _art_apgd_attack(classifier, float(config.epsilon), 100)
  return _art_run(classifier, attack, x, y)


def _art_apgd_attack(classifier, eps, batch_size, loss="cross_entropy",
                     targeted=False):
  """ART's APGD at AutoAttack's settings: 100 iterations (ART_APGD_STEPS),
  first step 2 eps, one random start."""
  import numpy as np
  from art.attacks.evasion import AutoProjectedGradientDescent
  return AutoProjectedGradientDescent(
      classifier, norm=np.inf, eps=eps, eps_step=2 * eps,
      max_iter=ART_APGD_STEPS, targeted=targeted, nb_random_init=1,
      batch_size=batch_size, loss_type=loss, verbose=False)


def _art_run(classifier, attack, x, y):
  def fn():
    start = time.perf_counter()
    x_adv = attack.generate(x=x, y=y)
    accuracy = float((classifier.predict(x_adv, batch_size=100).argmax(-1)
                      == y).mean())
    return len(x), time.perf_counter() - start, accuracy
  return fn


# The data of the autoattack section (a dataset preset of configs/common.py).
AA_PRESET = "mnist10k"
# ART's side of the autoattack section. ART's AutoAttack has no FAB, and its
# `targeted=True` runs *every* listed attack against every other class in
# label order; the closest it gets to the standard ensemble (apgd-ce, apgd-t,
# fab-t, square) is an explicit list: APGD-CE, then ART's targeted APGD-DLR
# against each row's 9 highest other classes (ArtTopTargets), then Square,
# at AutoAttack's budgets.
ART_APGD_STEPS = 100
ART_SQUARE_QUERIES = 5000


def art_autoattack_name():
  """What _art_autoattack runs, for the printed lines."""
  return (f"ART AutoAttack(attacks=[APGD-CE {ART_APGD_STEPS} it, targeted "
          f"APGD-DLR on each row's top-9 other classes {ART_APGD_STEPS} it "
          f"each, Square {ART_SQUARE_QUERIES} queries p_init 0.8]): no FAB-T "
          "(ART has none)")


class ArtTopTargets:
  """AutoAttack's APGD-T from ART's parts, as one member of ART's AutoAttack.

  ART's targeted APGD-DLR (a row's target is its 2nd, 3rd, ... highest clean
  logit; 9 targets), on the rows no earlier target fooled; a row keeps the
  first image that fools the model. ART's AutoAttack sees an untargeted
  attack (success = the label changed), as AutoAttack's APGD-T is. ART's
  targeted DLR is its untargeted DLR descended toward the target, not
  AutoAttack's targeted DLR (z_y - z_t over z_1 - (z_3 + z_4) / 2).
  """
  targeted = False

  def __init__(self, classifier, eps, batch_size, num_targets=9):
    self.classifier = classifier
    self.batch_size = batch_size
    self.num_targets = min(num_targets, classifier.nb_classes - 1)
    self.apgd = _art_apgd_attack(classifier, eps, batch_size,
                                 loss="difference_logits_ratio", targeted=True)

  def generate(self, x, y, **kwargs):
    import numpy as np
    labels = y.argmax(-1) if y.ndim == 2 else y
    logits = self.classifier.predict(x, batch_size=self.batch_size)
    ranked = np.argsort(-logits, axis=-1)
    robust = logits.argmax(-1) == labels
    x_adv = x.copy()
    for t in range(1, self.num_targets + 1):
      rows = np.flatnonzero(robust)
      if not len(rows):
        break
      adv = self.apgd.generate(x[rows], y=ranked[rows, t], **kwargs)
      fooled = self.classifier.predict(
          adv, batch_size=self.batch_size).argmax(-1) != labels[rows]
      x_adv[rows[fooled]] = adv[fooled]
      robust[rows[fooled]] = False
    return x_adv


def _art_autoattack(classifier, eps, batch_size):
  """ART's AutoAttack with the attacks art_autoattack_name() lists, in order."""
  import numpy as np
  from art.attacks.evasion import AutoAttack
  from art.attacks.evasion import SquareAttack
  attacks = [_art_apgd_attack(classifier, eps, batch_size),
             ArtTopTargets(classifier, eps, batch_size),
             SquareAttack(classifier, norm=np.inf, max_iter=ART_SQUARE_QUERIES,
                          eps=eps, p_init=0.8, nb_restarts=1,
                          batch_size=batch_size, verbose=False)]
  return AutoAttack(classifier, norm=np.inf, eps=eps, eps_step=2 * eps,
                    attacks=attacks, batch_size=batch_size, targeted=False)


def section_autoattack(workdir):
  """Standard AutoAttack and APGD-CE, XLA off and on, beside ART's."""
  import numpy as np
  import tensorflow as tf
  from official.evaluation import robustness
  config = load_config("at", AA_PRESET)
  if _AA_EXPORT.value:
    loaded, data = given_export("aa_export", config)
    source = _AA_EXPORT.value
  else:
    run, path = short_run_export(workdir, "aa_run", "aa_export")
    loaded, data = tf.saved_model.load(path), run.data
    source = "SmallCNN after 20 AT steps"
  serve = loaded.serve  # `loaded` owns the variables: keep it alive
  x, y = first_test_images(data, _AA_EXAMPLES.value)
  n = len(y)
  batch = min(n, int(config.data.eval_batch_size))  # both frameworks
  eval_cfg = config.eval
  eval_cfg.max_examples = eval_cfg.autoattack_max_examples = 0  # all n
  eps = eval_cfg.epsilon = float(config.attack.epsilon)  # mnist10k: 0.1
  natural = float(np.mean(np.concatenate(
      [np.argmax(serve(tf.constant(x[i:i + batch])), -1)
       for i in range(0, n, batch)]) == y))

  def ours(name, xla):
    def make(count):
      dataset = tf.data.Dataset.from_tensor_slices(
          {"image": x[:count], "label": y[:count]}).batch(batch)

      def fn():
        eval_cfg.attacks = (name,)
        start = time.perf_counter()
        result = robustness.evaluate(serve, dataset, eval_cfg,
                                     data.num_classes, verbose=0,
                                     jit_compile=xla == "on")[name]
        return count, time.perf_counter() - start, result
      return fn
    return make

  def theirs(build):
    def make(count):
      attack = build()
      run = _art_run(classifier, attack, x[:count], y[:count])

      def fn():
        examples, seconds, accuracy = run()
        return examples, seconds, {"accuracy": accuracy}
      return fn
    return make

  lines = [f"autoattack [{n} {AA_PRESET} test images, eps {eps}, batch "
           f"{batch}, export {source}] natural accuracy {natural:.3f}"]
  makers = {}
  for xla in _AA_XLA.value:
    makers[f"apgd-ce xla {xla}"] = ours("apgd-ce", xla)
  try:
    classifier = _art_classifier(serve, x.shape[1:], data.num_classes)
    makers["ART APGD-CE"] = theirs(
        lambda: _art_apgd_attack(classifier, eps, batch))
  except ImportError as e:
    classifier = None
    lines.append(f"autoattack: ART not installed ({e}); project only")
  for xla in _AA_XLA.value:
    makers[f"autoattack xla {xla}"] = ours("autoattack", xla)
  if classifier is not None:
    makers["ART AutoAttack"] = theirs(
        lambda: _art_autoattack(classifier, eps, batch))

  # Warm-up on a few images (tracing; XLA compiles again for the timed
  # batch shape, inside the round, as it would for a user), then the rounds.
  warm = max(1, min(_AA_WARMUP.value, n))
  fns, results = {}, {}
  for name, make in makers.items():
    try:
      make(warm)()
    except Exception as e:  # noqa: BLE001  (a third-party failure: say it)
      if not name.startswith("ART"):
        raise
      lines.append(f"autoattack {name}: ART failed: {type(e).__name__}: "
                   f"{str(e).splitlines()[0] if str(e) else ''}")
      if getattr(e, "name", None) == "multiprocess":
        lines[-1] += (" (ART's AutoAttack imports it, ART does not declare "
                      "it: pip install multiprocess)")
      continue
    fn = make(n)

    def timed_fn(name=name, fn=fn):
      examples, seconds, result = fn()
      results[name] = result
      return examples, seconds
    fns[name] = timed_fn
  rounds = {}
  rates = alternate(fns, _AA_REPEATS.value, rounds)

  for name, rate in rates.items():
    line = (f"autoattack {name}: {rate:.3g} ex/s, robust accuracy "
            f"{results[name]['accuracy']:.3f}")
    if "members" in results[name]:
      line += " (after " + ", ".join(
          f"{m} {a:.3f}" for m, a in results[name]["members"].items()) + ")"
    lines.append(line)
  for ours_name, art_name, note in (
      ("apgd-ce", "ART APGD-CE", "same attack"),
      ("autoattack", "ART AutoAttack",
       "ensembles differ: " + art_autoattack_name())):
    if art_name not in rates:
      continue
    for xla in _AA_XLA.value:
      name = f"{ours_name} xla {xla}"
      lines.append(
          f"autoattack {ours_name} vs ART [{n} images; {note}] " + ratio_line(
              f"project xla {xla}", rates[name], rates[art_name], art_name,
              ratio=paired_ratio(rounds[name], rounds[art_name]), digits=2))
  for line in lines:
    print(line, flush=True)
  return lines


SECTION_FNS = {"reference": section_reference, "methods": section_methods,
               "precision": section_precision, "resnet": section_resnet,
               "eval": section_eval, "autoattack": section_autoattack}


def main(argv):
  del argv
  sections = ["reference"] if _REFERENCE.value else _SECTIONS.value
  check_flags(sections)
  print(f"tools.benchmark {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f", {os.cpu_count()} CPUs, steps {_STEPS.value} x {_REPEATS.value} "
        f"rounds (median), warmup {_WARMUP.value}", flush=True)
  lines = []
  with tempfile.TemporaryDirectory() as workdir:
    for s in sections:
      lines += SECTION_FNS[s](workdir)
  print("\nsummary")
  for line in lines:
    print(line)


if __name__ == "__main__":
  app.run(main)
