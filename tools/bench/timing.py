"""Contenders timed side by side: alternated rounds, medians, paired ratios.

A contender is fn(steps) -> (examples, seconds). `race` runs `--warmup`
untimed steps of each, then `--repeats` rounds; in each round every
contender runs `--steps` steps in turn (alternation spreads the load of a
busy machine over all of them); a rate is the median over rounds.
"""
import statistics

from absl import flags

STEPS = flags.DEFINE_integer("steps", 4, "Timed steps per round.")
WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first.")
REPEATS = flags.DEFINE_integer("repeats", 3, "Rounds (median).")


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


def timed(contender, steps):
  return lambda: contender(steps)


def race(contenders, steps=None, warmup=None, repeats=None, rounds=None):
  """Warm every contender up, then alternate; {name: median ex/s}."""
  steps = STEPS.value if steps is None else steps
  for contender in contenders.values():
    contender(WARMUP.value if warmup is None else warmup)
  return alternate({n: timed(c, steps) for n, c in contenders.items()},
                   REPEATS.value if repeats is None else repeats, rounds)


def short_rounds(contenders, rounds):
  """race() in 3x the rounds of half the steps, every round's rates into
  `rounds`: for paired ratios, whose rounds should be short and many."""
  return race(contenders, steps=max(1, STEPS.value // 2),
              repeats=3 * REPEATS.value, rounds=rounds)
