"""tools/benchmark.py: the pure parts (pass counts, overhead, the ratio line,
alternation); the timing itself is the tool's job, not a test's."""
import pytest

from tools import benchmark


def _config(method, **overrides):
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(["benchmark"])
  return benchmark.load_config(method, "mnist10k", **overrides)


@pytest.mark.parametrize("method,passes", [
    ("at", (10, 1, 0)), ("trades", (10, 2, 1)), ("mart", (10, 2, 0)),
    ("gairat", (10, 1, 0)), ("mail", (10, 1, 0)), ("done", (10, 1, 0)),
    ("srat", (10, 1, 0)), ("lrat", (20, 3, 0)), ("iaat", (30, 1, 3))])
def test_inherent_passes_of_every_method(method, passes):
  assert benchmark.inherent_passes(_config(method)) == passes


def test_inherent_passes_follow_the_options():
  assert benchmark.inherent_passes(_config(
      "lrat", **{"reweighting.variants": ("cw", "fgsm")})) == (21, 4, 0)
  assert benchmark.inherent_passes(_config("at", **{"attack.steps": 5})) == (
      5, 1, 0)
  # The benchmark times full steps: no burn-in, no warm-up.
  assert _config("lrat").reweighting.burn_in_epochs == 0
  assert _config("iaat").reweighting.warmup_epochs == 0


def test_overhead_and_ratio_line():
  # 10 attack iterations of 0.1 s + 1 training pass of 0.2 s = 1.2 s inherent.
  assert benchmark.overhead(1.26, (10, 1, 0), (0.1, 0.2, 0.05)) == (
      pytest.approx(0.05))
  assert benchmark.ratio_line("project", 103.0, 100.0) == (
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
  rates = benchmark.alternate({"a": fn("a"), "b": fn("b")}, 3)
  assert rates == {"a": 10.0, "b": 5.0}
  assert order == ["a", "b"] * 3  # alternated, not one after the other


def test_paired_ratio_is_the_median_of_same_round_ratios():
  # Round 2 ran on a loaded machine: both slow, the pair's ratio unchanged.
  assert benchmark.paired_ratio([100, 50, 110], [100, 50, 100]) == (
      pytest.approx(1.0))
  rounds = {}
  benchmark.alternate({"a": lambda: (4, 2.0)}, 2, rounds)
  assert rounds == {"a": [2.0, 2.0]}
