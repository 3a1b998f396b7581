"""The eval section: attacks through official/evaluation/robustness.py on an
export, against ART's same attacks on the same images (alternated), and
against their floor: a bare loop of the attack's forward+backward passes,
which no implementation can beat on that model."""
import time

from absl import flags

from tools.bench import art_attacks
from tools.bench import exports
from tools.bench import steps as steps_lib
from tools.bench import timing

EVAL_SECTION_ATTACKS = ("pgd20", "apgd-ce", "autoattack-fast")
_EVAL_EXAMPLES = flags.DEFINE_integer("eval_examples", 500,
                                      "Test images of the eval section.")
_EVAL_EXPORT = flags.DEFINE_string(
    "eval_export", "", "SavedModel of the eval section ('' = the AT "
    "SmallCNN after 20 steps; a robust export makes APGD run its 100 "
    "iterations on almost every image).")
_EVAL_ATTACKS = flags.DEFINE_list(
    "eval_attacks", list(EVAL_SECTION_ATTACKS),
    f"Attacks of the eval section ({', '.join(EVAL_SECTION_ATTACKS)}).")


def section_eval(workdir):
  import tensorflow as tf
  from official.evaluation import robustness
  if _EVAL_EXPORT.value:
    from official.core import experiment
    run_config = experiment.resolve(steps_lib.load_config("at", "mnist10k"))
    loaded, data = exports.given_export("eval_export", run_config)
  else:
    run, path = exports.short_run_export(workdir, "eval_run", "export")
    loaded = tf.saved_model.load(path)  # owns the variables: keep it alive
    run_config, data = run.config, run.data
  serve = loaded.serve
  x, y = exports.first_test_images(data, _EVAL_EXAMPLES.value)
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
    art = art_attacks.classifier(serve, x.shape[1:], data.num_classes)
  except ImportError as e:
    art = None
    lines.append(f"eval: ART not installed ({e}); project only")
  # The floor: an attack's bare forward+backward passes (a plain
  # tf.function loop, nothing else), what no framework can beat on this
  # model: PGD-20's 20 on every image; APGD-CE's 100 on the images the
  # model classifies correctly (ours and ART's attack only those).
  floors = {"pgd20": _floor_loop(serve, x, y, config, int(config.pgd_steps)),
            "apgd-ce": _floor_loop(serve, x, y, config,
                                   art_attacks.ART_APGD_STEPS,
                                   only_correct=True)}
  contenders = {}
  if "pgd20" in _EVAL_ATTACKS.value:
    contenders["pgd20"] = (project_eval("pgd20"),
                           art_attacks.pgd_run(art, config, x, y))
  # ART's APGD-CE is the same attack as ours (100 iterations, step 2 eps);
  # autoattack-fast (+ APGD-T) has no ART counterpart: timed alone.
  if "apgd-ce" in _EVAL_ATTACKS.value:
    contenders["apgd-ce"] = (project_eval("apgd-ce"),
                             art_attacks.apgd_run(art, config, x, y))
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
        lines.append(f"eval {name}: {art_attacks.failure(e)}")
    if name in floors:
      floors[name]()  # warm-up: tracing
      fns["floor"] = lambda floor=floors[name]: floor()[:2]
    rates = timing.alternate(fns, timing.REPEATS.value)
    accs = ", ".join(f"{k} accuracy {v:.3f}" for k, v in accuracy.items())
    if "ART" in rates:
      lines.append(f"eval {name} [{n} mnist10k test images, export] "
                   + timing.ratio_line("project", rates["project"],
                                       rates["ART"], "ART") + f" ({accs})")
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
    x_adv = steps_lib.bare_pgd(serve, images, labels, noise, eps, alpha,
                               steps)
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
