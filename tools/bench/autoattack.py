"""The autoattack section: the standard AutoAttack ensemble and APGD-CE
alone, XLA off and on, against ART's APGD-CE and ART's closest AutoAttack
(art_attacks.py), on the same images. Seconds per image on a robust model:
asked for by name only."""
import time

from absl import flags

from tools.bench import art_attacks
from tools.bench import exports
from tools.bench import steps as steps_lib
from tools.bench import timing

# The data of the autoattack section (a dataset preset of configs/common.py).
AA_PRESET = "mnist10k"
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


def section_autoattack(workdir):
  """Standard AutoAttack and APGD-CE, XLA off and on, beside ART's."""
  import numpy as np
  import tensorflow as tf
  from official.evaluation import robustness
  config = steps_lib.load_config("at", AA_PRESET)
  if _AA_EXPORT.value:
    loaded, data = exports.given_export("aa_export", config)
    source = _AA_EXPORT.value
  else:
    run, path = exports.short_run_export(workdir, "aa_run", "aa_export")
    loaded, data = tf.saved_model.load(path), run.data
    source = "SmallCNN after 20 AT steps"
  serve = loaded.serve  # `loaded` owns the variables: keep it alive
  x, y = exports.first_test_images(data, _AA_EXAMPLES.value)
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
      run = art_attacks.run(classifier, attack, x[:count], y[:count])

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
    classifier = art_attacks.classifier(serve, x.shape[1:], data.num_classes)
    makers["ART APGD-CE"] = theirs(
        lambda: art_attacks.apgd_attack(classifier, eps, batch))
  except ImportError as e:
    classifier = None
    lines.append(f"autoattack: ART not installed ({e}); project only")
  for xla in _AA_XLA.value:
    makers[f"autoattack xla {xla}"] = ours("autoattack", xla)
  if classifier is not None:
    makers["ART AutoAttack"] = theirs(
        lambda: art_attacks.autoattack(classifier, eps, batch))

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
      lines.append(f"autoattack {name}: {art_attacks.failure(e)}")
      continue
    fn = make(n)

    def timed_fn(name=name, fn=fn):
      examples, seconds, result = fn()
      results[name] = result
      return examples, seconds
    fns[name] = timed_fn
  rounds = {}
  rates = timing.alternate(fns, _AA_REPEATS.value, rounds)

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
       "ensembles differ: " + art_attacks.autoattack_name())):
    if art_name not in rates:
      continue
    for xla in _AA_XLA.value:
      name = f"{ours_name} xla {xla}"
      lines.append(
          f"autoattack {ours_name} vs ART [{n} images; {note}] "
          + timing.ratio_line(
              f"project xla {xla}", rates[name], rates[art_name], art_name,
              ratio=timing.paired_ratio(rounds[name], rounds[art_name]),
              digits=2))
  for line in lines:
    print(line, flush=True)
  return lines
