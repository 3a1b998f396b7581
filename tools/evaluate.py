r"""Robust accuracy of any SavedModel: a JSON report and a per-class bar chart.

  python -m tools.evaluate --export=runs/at/export --data=mnist10k \
      --attacks=natural,pgd20,autoattack --epsilon=0.1 --max_examples=500 \
      --output=runs/at/aa.json
  python -m tools.evaluate --export=my_keras_export --data=test.npz \
      --attacks=natural,pgd20 --epsilon=0.05,0.1 --output=report.json

The export's `serve` must map float32 [0, 1] NHWC images to logits: ours
(`RUN/export`, `tools.export`) or a user's `keras_model.export(dir)`. `--data`
is a dataset preset of configs/common.py (digits, mnist10k, cifar10, ...) or an
.npz with x_test / y_test (and x_train / y_train, as mnist10k.npz); only its
first `--max_examples` test images are used. The attacks are the eval names of
official/evaluation/robustness.py, at the preset's settings with step sizes
scaled to `--epsilon` (an .npz: the protocol's, step = epsilon / 10).

The report maps each attack name to the same object as a run's eval.json, plus
"checks" (official/evaluation/checks.py: a warning line is printed for each
failed one) and "settings"; with several --epsilon, the first one's results
are the entries and "epsilon_sweep" holds the accuracy per radius. The plot
(accuracy per class per attack) is written beside the report as .png. A bad
export, data set, attack name or epsilon ends with one `error:` line (exit 2)
and writes nothing.
"""
import dataclasses
import inspect
import json
import os
import sys

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

from configs import common  # noqa: E402  (no TensorFlow: fails fast)
from official.common import console  # noqa: E402  (absl only)

# Step of a .npz data set's attacks, as a fraction of epsilon: the protocol's
# PGD-20 / CW step 0.01 at epsilon 0.1 (shared/specs/protocol.md).
NPZ_STEP_FRACTION = 0.1
# Primary step sizes of the eval config, scaled with --epsilon.
_STEP_KEYS = ("pgd_step_size", "cw_step_size", "train_step_size")


def define_flags():
  """The CLI's flags, defined only when run as a program: importing this
  module (tests, tools.protocol) must not collide with other tools' flags
  (--output of tools.export, --xla of tools.benchmark)."""
  flags.DEFINE_string("export", None, "SavedModel directory (serve: float32 "
                      "[0, 1] NHWC images -> logits).")
  flags.DEFINE_string("data", None, "Dataset preset name (test split) or the "
                      "path of an .npz with x_test, y_test.")
  flags.DEFINE_list("attacks", ["natural", "autoattack"],
                    "Eval attack names (robustness.EVAL_ATTACKS).")
  flags.DEFINE_list("epsilon", None, "L-inf radius in (0, 1]; several "
                    "(comma-separated) add an accuracy-vs-epsilon sweep. "
                    "Default: the preset's training epsilon.")
  flags.DEFINE_integer("max_examples", 0, "First N test images (0 = the whole "
                       "test split).")
  flags.DEFINE_string("output", "report.json", "JSON report; the plot goes "
                      "beside it with the extension .png.")
  flags.DEFINE_string("margins_file", "", "Also write every point's logit "
                      "margin per attack (natural, pgd20, ...) to this .npz "
                      "(and its histogram plot beside it): tools.margins "
                      "reads RUN/margins.npz.")
  flags.DEFINE_integer("batch_size", 500, "Evaluation batch size.")
  flags.DEFINE_integer("seed", 0, "Seed of the attacks' random draws.")
  flags.DEFINE_string("distribute", "default", "default | mirrored")
  flags.DEFINE_string("xla", "auto", "XLA for the attack loops: auto | on | off")


def parse_epsilons(values):
  """--epsilon strings -> floats in (0, 1], or a one-line error."""
  epsilons = []
  for value in values:
    try:
      eps = float(value)
    except ValueError:
      eps = None
    if eps is None or not 0 < eps <= 1:
      raise ValueError(f"--epsilon must be numbers in (0, 1], got '{value}'")
    epsilons.append(eps)
  if not epsilons:
    raise ValueError("--epsilon is empty; give a radius in (0, 1], e.g. 0.1")
  return epsilons


def data_config(data):
  """(the config of `data`, is_preset): a preset's, or an .npz's."""
  config = common.base()
  if data in common.DATASET_PRESETS:
    common.DATASET_PRESETS[data](config)
    return config, True
  if not os.path.isfile(data):
    raise ValueError(f"--data '{data}' is neither a dataset preset (valid: "
                     f"{', '.join(sorted(common.DATASET_PRESETS))}) nor an "
                     ".npz file")
  config.data.name = "npz"
  config.data.path = data
  return config, False


def eval_config(config, is_preset, attacks, epsilon):
  """The eval config at `epsilon`: the preset's steps scaled by eps / its eps."""
  cfg = config.eval
  cfg.attacks = tuple(attacks)
  cfg.max_examples = 0  # the tool cuts the data itself
  base_eps = float(config.attack.epsilon)
  if cfg.train_step_size is None:
    cfg.train_step_size = float(config.attack.step_size)
  for key in _STEP_KEYS:
    cfg[key] = (float(cfg[key]) * epsilon / base_eps if is_preset
                else NPZ_STEP_FRACTION * epsilon)
  cfg.epsilon = float(epsilon)
  return cfg


def load_test_data(config, batch_size, max_examples):
  """The first `max_examples` test images (all if 0), batched, and their count."""
  from official.data import registry as data_registry
  bundle = data_registry.load(config.data, batch_size=1, seed=0)
  splits = bundle.splits
  n = len(splits.y_test) if not max_examples else min(max_examples,
                                                      len(splits.y_test))
  splits = dataclasses.replace(splits, x_test=splits.x_test[:n],
                               y_test=splits.y_test[:n])
  bundle = dataclasses.replace(bundle, splits=splits,
                               eval_batch_size=int(batch_size))
  return bundle, n


def _signature(serve):
  """The input specs `serve` was exported with, for an error message."""
  try:
    specs = [f"{s.dtype.name} {s.shape}" for cf in serve.concrete_functions
             for s in cf.structured_input_signature[0]]
    return " or ".join(specs) or "?"
  except Exception:  # pylint: disable=broad-except  (a plain callable)
    return "?"


def check_export_path(path):
  """A one-line error unless `path` holds a SavedModel (before TF is imported)."""
  if not path or not os.path.isdir(path):
    raise ValueError(f"--export '{path}': no such directory")
  if not os.path.exists(os.path.join(path, "saved_model.pb")):
    raise ValueError(f"--export '{path}' is not a SavedModel (no saved_model.pb)")


def load_export(path):
  """The loaded export (keep it alive while using its `serve`), or a one-line
  error naming what is missing."""
  import tensorflow as tf
  check_export_path(path)
  try:
    loaded = tf.saved_model.load(path)
  except Exception as e:  # pylint: disable=broad-except
    reason = f"{type(e).__name__}: {e}".splitlines()[0][:160]
    raise ValueError(f"--export '{path}' cannot be loaded ({reason})") from None
  if not callable(getattr(loaded, "serve", None)):
    found = sorted(getattr(loaded, "signatures", {}) or {})
    raise ValueError(f"--export '{path}' has no `serve` endpoint (signatures: "
                     f"{', '.join(found) or 'none'}); export with "
                     "model.export(dir)")
  return loaded


def validate_serve(serve, path, images, num_classes):
  """Raises a one-line error unless serve(images) are [N, num_classes] logits."""
  import tensorflow as tf
  x = tf.convert_to_tensor(images[:2], tf.float32)
  try:
    out = serve(x)
  except (TypeError, ValueError, tf.errors.InvalidArgumentError):
    raise ValueError(
        f"--export '{path}': serve does not accept the data's images "
        f"(float32 {list(x.shape)}); it expects {_signature(serve)}") from None
  if not isinstance(out, tf.Tensor):
    raise ValueError(f"--export '{path}': serve returns {type(out).__name__}, "
                     "not one tensor of logits [N, classes]")
  if out.shape.rank != 2 or out.shape[-1] != num_classes:
    raise ValueError(f"--export '{path}': serve returns shape {list(out.shape)}"
                     f", not logits [N, {num_classes}] for the data's "
                     f"{num_classes} classes")
  if not out.dtype.is_floating:
    raise ValueError(f"--export '{path}': serve returns {out.dtype.name}, not "
                     "float logits")


def connected(logits_fn, images):
  """logits_fn, made differentiable if its output ignores its input.

  A forward cut from its input (tf.stop_gradient) has no gradient at all, and
  a gradient attack would fail on `None`; with a zero-weight path from the
  input, the attacks see the zero gradient the checks report, and the
  black-box attacks still run.
  """
  import tensorflow as tf
  x = tf.convert_to_tensor(images[:1], tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = tf.reduce_sum(logits_fn(x))
  if tape.gradient(y, x) is not None:
    return logits_fn
  return lambda v: logits_fn(v) + 0.0 * tf.reduce_sum(v, [1, 2, 3])[:, None]


def merge(parts, num_classes, tail_fraction):
  """One summary from per-batch summaries: [(summary, labels)] -> summary.

  Per-class correct counts are recovered from each batch's per-class accuracy
  and label counts, so accuracy, per_class, worst_class and tail are exactly
  those of one pass; other numbers (e.g. an ensemble's cumulative `members`)
  are averaged weighted by the batch sizes; settings equal in every batch are
  kept as they are.
  """
  import numpy as np
  from official.evaluation import robustness
  correct, labels = [], []
  for summary, y in parts:
    for c in range(num_classes):
      n = int((y == c).sum())
      k = int(round(summary["per_class"][c] * n)) if n else 0
      correct += [True] * k + [False] * (n - k)
      labels += [c] * n
  merged = robustness.summarize(correct, labels, num_classes, tail_fraction)
  weights = [len(y) for _, y in parts]
  for key in parts[0][0]:
    if key not in merged:
      merged[key] = _merge_values([s[key] for s, _ in parts], weights)
  return merged


def _merge_values(values, weights):
  first = values[0]
  if all(v == first for v in values[1:]):
    return first
  if isinstance(first, dict):
    return {k: _merge_values([v[k] for v in values], weights) for k in first}
  if all(isinstance(v, (int, float)) and not isinstance(v, bool)
         for v in values):
    return sum(v * w for v, w in zip(values, weights)) / sum(weights)
  return first


def run_attacks(logits_fn, bundle, n, eval_cfg, seed, jit_compile, strategy,
                verbose, margins_out=None):
  """{attack: summary} over the data, batch by batch, with a progress bar.

  Each batch is one `robustness.evaluate` call, so that the bar can show the
  running robust accuracy; batch i draws its random starts from seed
  `seed + i * 1000003`, so a single batch matches one evaluate(seed=seed).
  The per-batch attacks' margin statistics are those of all points (not
  merged per batch); `margins_out` (a dict) receives the per-point margins.
  """
  import keras
  import numpy as np
  import tensorflow as tf
  from official.evaluation import robustness
  kwargs = {} if strategy is None else {"strategy": strategy}
  names = list(eval_cfg.attacks)
  bar = keras.utils.Progbar(n, verbose=verbose, stateful_metrics=names,
                            unit_name="image")
  parts = {name: [] for name in names}
  margins = {name: [] for name in names}
  correct = dict.fromkeys(names, 0.0)
  seen = 0
  for index, batch in enumerate(bundle.test()):
    # A one-batch tf.data.Dataset, as evaluate() gets in a run (a strategy
    # may distribute it).
    one = tf.data.Dataset.from_tensors(batch)
    result = robustness.evaluate(logits_fn, one, eval_cfg,
                                 bundle.num_classes,
                                 seed=seed + index * 1000003,
                                 jit_compile=jit_compile, verbose=0,
                                 keep_margins=True, **kwargs)
    labels = np.asarray(batch["label"])
    seen += len(labels)
    for name in names:
      if "margin_values" in result[name]:
        margins[name].append(result[name].pop("margin_values"))
      parts[name].append((result[name], labels))
      correct[name] += result[name]["accuracy"] * len(labels)
    bar.update(seen, [(name, correct[name] / seen) for name in names])
  tail = float(eval_cfg.get("tail_fraction", 0.3))
  merged = {name: merge(parts[name], bundle.num_classes, tail) for name in names}
  for name in names:
    if margins[name]:
      values = np.concatenate(margins[name])
      merged[name]["margin"] = robustness.margin_summary(values)
      if margins_out is not None:
        margins_out[name] = values
  return merged


def evaluate_export(export, data, attacks, epsilons=None, *, max_examples=0,
                    batch_size=500, seed=0, distribute="default", xla="auto",
                    verbose=1, margins_out=None):
  """Validates everything, runs the attacks and checks; returns the report.

  margins_out (a dict): receives {attack: per-point margins} and "labels"
  (at the first epsilon)."""
  from official.common import checks as config_checks
  config_checks.check_choice("--distribute", distribute, ("default", "mirrored"))
  config_checks.check_choice("--xla", xla, ("auto", "on", "off"))
  for key, value, low in (("--batch_size", batch_size, 1),
                          ("--max_examples", max_examples, 0)):
    if not isinstance(value, int) or value < low:
      raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
  check_export_path(export)
  config, is_preset = data_config(data)
  epsilons = parse_epsilons(epsilons or [str(config.attack.epsilon)])
  attacks = list(dict.fromkeys(attacks))
  from official.evaluation import robustness  # TensorFlow from here on
  valid = ", ".join(sorted(robustness.EVAL_ATTACKS))
  unknown = [a for a in attacks if a not in robustness.EVAL_ATTACKS]
  if unknown:
    raise ValueError(f"unknown attack '{','.join(unknown)}' in --attacks; "
                     f"valid: {valid}")
  if not attacks:
    raise ValueError(f"--attacks is empty; valid: {valid}")
  if distribute != "default" and "strategy" not in inspect.signature(
      robustness.evaluate).parameters:
    raise ValueError("--distribute=mirrored needs robustness.evaluate("
                     "strategy=...), which this version lacks")
  bundle, n = load_test_data(config, batch_size, max_examples)

  import numpy as np
  from official.core import experiment
  from official.evaluation import checks
  strategy = experiment.make_strategy(distribute)
  with strategy.scope():
    loaded = load_export(export)
  first = next(iter(bundle.test()))
  images, labels = np.asarray(first["image"]), np.asarray(first["label"])
  validate_serve(loaded.serve, export, images, bundle.num_classes)
  logits_fn = connected(loaded.serve, images)
  found = checks.model_checks(logits_fn, images, labels)

  jit_compile = experiment.use_xla(xla)
  sweep = {}
  for eps in epsilons:
    eval_cfg = eval_config(data_config(data)[0], is_preset, attacks, eps)
    if verbose:
      print(f"epsilon {eps:g}: {', '.join(attacks)} on {n} images", flush=True)
    sweep[eps] = run_attacks(
        logits_fn, bundle, n, eval_cfg, seed, jit_compile,
        strategy if distribute != "default" else None, verbose,
        margins_out if eps == epsilons[0] else None)
  if margins_out is not None:
    margins_out["labels"] = bundle.splits.y_test[:n]
  report = dict(sweep[epsilons[0]])
  found["square"] = checks.square(report)
  if len(epsilons) > 1:
    curves = {a: [sweep[e][a]["accuracy"] for e in epsilons]
              for a in attacks if a != "natural"}
    report["epsilon_sweep"] = {"epsilons": epsilons, "accuracy": curves}
    per_attack = [checks.epsilon(epsilons, acc, name=a)
                  for a, acc in curves.items()]
    if per_attack:  # the largest rise of any attack (natural has none)
      found["epsilon"] = max(per_attack, key=lambda r: r["value"])
  report["checks"] = found
  report["settings"] = {
      "export": os.path.abspath(export), "data": data, "attacks": attacks,
      "epsilon": epsilons[0], "epsilons": epsilons, "max_examples": max_examples,
      "num_examples": n, "num_classes": bundle.num_classes,
      "batch_size": batch_size, "seed": seed, "distribute": distribute,
      "xla": xla, "jit_compile": jit_compile}
  return report


def plot_per_class(report, path):
  """Grouped bars: accuracy per class, one bar per attack."""
  import numpy as np
  from matplotlib.figure import Figure
  names = [k for k, v in report.items() if isinstance(v, dict)
           and "per_class" in v]
  classes = len(report[names[0]]["per_class"])
  width = 0.8 / len(names)
  fig = Figure(figsize=(max(5.0, 0.6 * classes + 1.5), 3.6))
  ax = fig.add_subplot()
  for i, name in enumerate(names):
    r = report[name]
    ax.bar(np.arange(classes) + (i - (len(names) - 1) / 2) * width,
           100 * np.asarray(r["per_class"], float), width,
           label=f"{name} ({100 * r['accuracy']:.1f}%)")
  s = report["settings"]
  ax.set_xticks(np.arange(classes))
  ax.set_xlabel("class")
  ax.set_ylabel("accuracy (%)")
  ax.set_ylim(0, 118)  # headroom for the legend above the bars
  ax.set_yticks(range(0, 101, 20))
  ax.set_title(f"ε = {s['epsilon']:g}, first {s['num_examples']} test images "
               f"of {os.path.basename(s['data'])}", fontsize=9)
  ax.legend(fontsize=7, loc="upper center", ncol=min(len(names), 4))
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def write(report, output):
  """The JSON report and its plot beside it; returns the plot's path."""
  directory = os.path.dirname(os.path.abspath(output))
  os.makedirs(directory, exist_ok=True)
  plot = os.path.splitext(output)[0] + ".png"
  plot_per_class(report, plot)
  with open(output, "w") as f:
    json.dump(report, f, indent=2)
  return plot


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    sys.exit(2)
  f = flags.FLAGS
  with console.muted_stderr(console.quiet_logs(sys.argv)):
    import tensorflow as tf  # noqa: F401  (loads here, its start-up noise muted)
  margins = {} if f.margins_file else None
  try:
    if not f.export or not f.data:
      raise ValueError("--export=DIR and --data=PRESET_OR_NPZ are required")
    if f.margins_file and not f.margins_file.endswith(".npz"):
      raise ValueError(f"--margins_file must end in .npz, got {f.margins_file!r}")
    report = evaluate_export(
        f.export, f.data, f.attacks, f.epsilon, max_examples=f.max_examples,
        batch_size=f.batch_size, seed=f.seed, distribute=f.distribute,
        xla=f.xla, verbose=1 if sys.stdout.isatty() else 2,
        margins_out=margins)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  for name, r in report.items():
    if isinstance(r, dict) and "per_class" in r:
      print(f"{name:16s} accuracy {r['accuracy']:.4f}  worst class "
            f"{r['worst_class']:.4f}")
  for name, check in report["checks"].items():
    if not check["ok"]:
      print(f"warning: {name}: {check['message']}")
  plot = write(report, f.output)
  print(f"wrote {f.output} and {plot}")
  if margins is not None:
    from official.evaluation import margins as margins_lib
    labels = margins.pop("labels")
    path = margins_lib.save(margins, labels, os.path.dirname(
        os.path.abspath(f.margins_file)), os.path.basename(f.margins_file))
    print(f"wrote {path}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
