r"""Examples/second of one adversarial training step, with XLA on and off.

  python -m tools.benchmark                       # digits and mnist10k, AT PGD-10
  python -m tools.benchmark --presets=mnist10k --config=configs/lrat.py --steps=30

Each measurement builds the run from the config (as official.train does),
runs `warmup` steps (tracing and XLA compilation), then times `steps` steps of
`fit()` and reports global-batch examples per second (median of `repeats`).
"""
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

_CONFIG = flags.DEFINE_string("config", "configs/at.py", "Method config file.")
_PRESETS = flags.DEFINE_list("presets", ["digits", "mnist10k"], "Dataset presets.")
_XLA = flags.DEFINE_list("xla", ["off", "on"], "XLA settings to compare.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per repeat.")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed steps first.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats (median).")


def measure(config_path, preset, xla, steps, warmup, repeats):
  import importlib.util
  from official.core import experiment
  spec = importlib.util.spec_from_file_location("cfg", config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(preset)
  config.xla = xla
  with tempfile.TemporaryDirectory() as workdir:
    run = experiment.prepare(config, workdir)
    per_epoch = run.data.steps_per_epoch
    epochs = (warmup + steps * repeats) // per_epoch + 2
    iterator = iter(run.data.train(0, epochs))
    trainer = run.trainer
    trainer.make_train_function()
    step_fn = trainer.train_function

    def run_steps(n):
      logs = None
      for _ in range(n):
        logs = step_fn([next(iterator)])
      float(logs["loss"])  # waits for the last step to finish

    run_steps(warmup)
    rates = []
    for _ in range(repeats):
      start = time.perf_counter()
      run_steps(steps)
      rates.append(steps * config.batch_size / (time.perf_counter() - start))
  return statistics.median(rates), config


def main(argv):
  del argv
  rows = []
  for preset in _PRESETS.value:
    for xla in _XLA.value:
      rate, config = measure(_CONFIG.value, preset, xla, _STEPS.value,
                             _WARMUP.value, _REPEATS.value)
      rows.append((preset, xla, rate, config))
  print(f"\n{'preset':<10} {'xla':<4} {'examples/s':>10}  setting")
  for preset, xla, rate, c in rows:
    print(f"{preset:<10} {xla:<4} {rate:>10.1f}  {c.objective.name}/"
          f"{c.reweighting.name}, PGD-{c.attack.steps}, batch {c.batch_size}, "
          f"model {c.model.name}")


if __name__ == "__main__":
  app.run(main)
