"""tools/benchmark.py and its sections in tools/bench/: the pure parts (pass
counts, overhead, the ratio line, alternation); the timing itself is the
tool's job, not a test's."""
import importlib.util
import re

import pytest

from tools import benchmark
from tools.bench import art_attacks
from tools.bench import autoattack as bench_autoattack
from tools.bench import evaluation
from tools.bench import exports
from tools.bench import methods
from tools.bench import steps
from tools.bench import timing


def _config(method, **overrides):
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(["benchmark"])
  return steps.load_config(method, "mnist10k", **overrides)


@pytest.mark.parametrize("method,passes", [
    ("at", (10, 1, 0)), ("trades", (10, 2, 1)), ("mart", (10, 2, 0)),
    ("gairat", (10, 1, 0)), ("mail", (10, 1, 0)), ("done", (10, 1, 0)),
    ("srat", (10, 1, 0)), ("lrat", (20, 3, 0)), ("iaat", (30, 1, 3)),
    ("robal", (10, 2, 0)), ("at_bsl", (10, 1, 0)), ("arow", (10, 2, 1)),
    ("weat", (10, 2, 1))])
def test_inherent_passes_of_every_method(method, passes):
  assert methods.inherent_passes(_config(method)) == passes


def test_inherent_passes_follow_the_options():
  assert methods.inherent_passes(_config(
      "lrat", **{"reweighting.variants": ("cw", "fgsm")})) == (21, 4, 0)
  assert methods.inherent_passes(_config("at", **{"attack.steps": 5})) == (
      5, 1, 0)
  # The benchmark times full steps: no burn-in, no warm-up.
  assert _config("lrat").reweighting.burn_in_epochs == 0
  assert _config("iaat").reweighting.warmup_epochs == 0


def test_overhead_and_ratio_line():
  # 10 attack iterations of 0.1 s + 1 training pass of 0.2 s = 1.2 s inherent.
  assert methods.overhead(1.26, (10, 1, 0), (0.1, 0.2, 0.05)) == (
      pytest.approx(0.05))
  assert timing.ratio_line("project", 103.0, 100.0) == (
      "project: 103.0 ex/s vs reference 100.0 ex/s: ratio 1.03")


def test_alternate_takes_the_median_of_rounds():
  rounds = {"a": iter([(10, 1.0), (10, 2.0), (10, 0.5)]),
            "b": iter([(5, 1.0), (5, 1.0), (5, 1.0)])}
  order = []

  def fn(name):
    def run():
      order.append(name)
      return next(rounds[name])
    return run
  rates = timing.alternate({"a": fn("a"), "b": fn("b")}, 3)
  assert rates == {"a": 10.0, "b": 5.0}
  assert order == ["a", "b"] * 3  # alternated, not one after the other


def test_paired_ratio_is_the_median_of_same_round_ratios():
  # Round 2 ran on a loaded machine: both slow, the pair's ratio unchanged.
  assert timing.paired_ratio([100, 50, 110], [100, 50, 100]) == (
      pytest.approx(1.0))
  rounds = {}
  timing.alternate({"a": lambda: (4, 2.0)}, 2, rounds)
  assert rounds == {"a": [2.0, 2.0]}


def _rate_and_accuracy(lines, name):
  """(ex/s, robust accuracy) of `name`'s line in the autoattack section."""
  pattern = re.compile(rf"autoattack {re.escape(name)}: ([0-9.e+-]+) ex/s, "
                       r"robust accuracy ([0-9.]+)")
  found = [m for m in map(pattern.match, lines) if m]
  assert len(found) == 1, (name, lines)
  return float(found[0].group(1)), float(found[0].group(2))


def _export_digits_mlp(path, train_rows=None):
  """Exports a small Keras MLP trained on scikit-learn's digits (its first
  `train_rows` images, or all); returns the digits as (x [0, 1], y int64)."""
  import keras
  import numpy as np
  from sklearn import datasets as sk_datasets
  digits = sk_datasets.load_digits()
  x = (digits.images[..., None] / 16.0).astype(np.float32)
  y = digits.target.astype(np.int64)
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(32, activation="relu"),
                            keras.layers.Dense(10)])
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  model.fit(x[:train_rows], y[:train_rows], epochs=10, batch_size=64,
            verbose=0)
  model.export(str(path), verbose=False)
  return x, y


def test_autoattack_section_on_a_few_images(monkeypatch, tmp_path):
  """The section end to end at tiny budgets (the code path, not AutoAttack's
  cost): a Keras MLP on digits, 12 images, both XLA modes, ART if there."""
  import functools
  from absl import flags
  from absl.testing import flagsaver
  from official.attacks import apgd
  from official.attacks import autoattack
  from official.attacks import fab
  from official.attacks import square
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(["benchmark"])
  _export_digits_mlp(tmp_path / "export")
  for name, fn in (("apgd-ce", functools.partial(apgd.apgd_ce, steps=5)),
                   ("apgd-t", functools.partial(apgd.apgd_t, steps=5)),
                   ("fab-t", functools.partial(fab.fab_t, steps=5)),
                   ("square", functools.partial(square.square, n_queries=20))):
    monkeypatch.setitem(autoattack.MEMBERS, name, fn)
  monkeypatch.setattr(bench_autoattack, "AA_PRESET", "digits")
  monkeypatch.setattr(art_attacks, "ART_APGD_STEPS", 5)
  monkeypatch.setattr(art_attacks, "ART_SQUARE_QUERIES", 20)
  # flagsaver, not monkeypatch: monkeypatch's undo deleted the flags
  # (FlagValues.__delattr__) for every later test.
  with flagsaver.flagsaver(aa_export=str(tmp_path / "export"), aa_examples=12,
                           aa_warmup=2, aa_repeats=1, aa_xla=["off", "on"]):
    lines = bench_autoattack.section_autoattack(str(tmp_path))
  assert lines[0].startswith("autoattack [12 digits test images, eps 0.1")
  natural = float(lines[0].rsplit(" ", 1)[1])
  assert natural > 0.5  # it learned something: there is something to attack
  for xla in ("off", "on"):
    rate_ce, acc_ce = _rate_and_accuracy(lines, f"apgd-ce xla {xla}")
    rate_aa, acc_aa = _rate_and_accuracy(lines, f"autoattack xla {xla}")
    assert rate_ce > 0 and rate_aa > 0
    # The ensemble starts with the same apgd-ce (same seed) on every point.
    assert acc_aa <= acc_ce <= natural
  if importlib.util.find_spec("art") is None:
    assert "autoattack: ART not installed" in "\n".join(lines)
    return
  ratios = [line for line in lines if " vs ART [12 images" in line]
  assert all(re.search(r"ratio \d+\.\d\d$", line) for line in ratios)
  rate, accuracy = _rate_and_accuracy(lines, "ART APGD-CE")
  assert rate > 0 and accuracy <= natural
  if importlib.util.find_spec("multiprocess") is None:
    # ART's AutoAttack imports it without declaring it: said, not a crash.
    assert any(line.startswith("autoattack ART AutoAttack: ART failed") and
               "pip install multiprocess" in line for line in lines), lines
    assert len(ratios) == 2, lines  # apgd-ce x (xla off, on)
    return
  rate, accuracy = _rate_and_accuracy(lines, "ART AutoAttack")
  assert rate > 0 and accuracy <= natural
  assert len(ratios) == 4, lines  # (apgd-ce, autoattack) x (xla off, on)
  assert any("ensembles differ: ART AutoAttack(" in line
             and "no FAB-T" in line for line in ratios)


def test_floor_line_caps_the_ratio_to_art():
  line = evaluation.floor_line("pgd20", {"project": 80.0, "ART": 50.0,
                                         "floor": 100.0})
  assert line.endswith("100.0 ex/s: project/floor 0.80, ART/floor 0.50: no "
                       "implementation can exceed 2.00x ART on this model")
  assert evaluation.floor_line("pgd20", {"project": 50.0, "floor": 100.0}
                               ).endswith("project/floor 0.50")


def test_floor_loop_is_a_working_attack(tmp_path):
  """The floor contender is a real K-step attack, not an empty loop: on a
  digits MLP it lowers the accuracy, and more steps lower it no less."""
  import numpy as np
  import ml_collections
  import tensorflow as tf
  x, y = _export_digits_mlp(tmp_path / "export", train_rows=1400)
  loaded = tf.saved_model.load(str(tmp_path / "export"))  # owns the variables
  serve = loaded.serve
  x, y = x[1400:1600], y[1400:1600]
  natural = float(np.mean(np.argmax(serve(x).numpy(), -1) == y))
  config = ml_collections.ConfigDict({"epsilon": 0.1, "pgd_step_size": 0.025})
  n, seconds, one = evaluation._floor_loop(serve, x, y, config, 1)()
  _, _, twenty = evaluation._floor_loop(serve, x, y, config, 20)()
  assert n == 200 and seconds > 0
  assert twenty <= one < natural and natural > 0.8
  # APGD's floor: the steps on the correctly classified images only; the
  # misclassified ones count as not robust, as they would after any attack.
  n, _, correct_only = evaluation._floor_loop(serve, x, y, config, 20,
                                              only_correct=True)()
  assert n == 200 and abs(correct_only - twenty) <= 0.02


def test_bad_flags_stop_before_any_section_with_one_line(tmp_path):
  from absl import flags
  from absl.testing import flagsaver
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(["benchmark"])
  with pytest.raises(SystemExit, match=r"^error: --sections: 'bogus' is not "
                     r"one of reference, methods, precision, resnet, eval, "
                     r"autoattack$"):
    benchmark.check_flags(["eval", "bogus"])
  with flagsaver.flagsaver(eval_attacks=["pgd20", "fgsm"]):
    with pytest.raises(SystemExit, match=r"^error: --eval_attacks: 'fgsm' is "
                       r"not one of pgd20, apgd-ce, autoattack-fast$"):
      benchmark.check_flags(["eval"])
  with flagsaver.flagsaver(aa_export=str(tmp_path / "missing")):
    with pytest.raises(SystemExit, match=r"^error: --aa_export: .*missing.*: "
                       r"no such directory$"):
      benchmark.check_flags(["autoattack"])
  benchmark.check_flags(["eval", "autoattack"])  # the defaults: no exit


def test_benchmarked_images_are_in_the_unit_box():
  # The splits hold raw pixels (0..255 for mnist10k, 0..16 for digits): the
  # eval sections once attacked 0..255 floats, clipped to a [0, 1] ball.
  import numpy as np
  from official.data import registry
  from tests.core import helpers
  data = registry.load(helpers.tiny_config().data, batch_size=8, seed=0)
  x, y = exports.first_test_images(data, 50)
  assert x.shape == (50, 8, 8, 1) and x.dtype == np.float32
  assert x.min() >= 0.0 and x.max() == 1.0  # digits reach their pixel_max
  assert y.dtype == np.int64 and set(y) <= set(range(10))
