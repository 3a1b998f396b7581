"""A few training steps of several methods, as one worker of a cluster runs them.

  python -m tools.launch_local --num_workers=2 -- -m tests.core.multiworker_job OUT

Each worker trains every case of CASES for a few steps under
`distribute: multi_worker` and writes OUT/<case>-<worker>.npz (network weights
and method state). tests/core/test_multiworker.py runs the same cases on one
device in its own process (`train_case(..., "default")`) and compares. One
process pair for all cases: every process pays TensorFlow's import once.
"""
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

# name: (config module, preset, overrides, steps, steps_per_epoch). The
# settings of the methods' own 1-vs-2-replica tests (tests/reweighting/).
CASES = {
    "at": ("at", "digits", {}, 3, None),
    # Burn-in for steps 1-2, GAIRAT's globally normalised weights for 3-4.
    "gairat": ("gairat", "digits", {"reweighting.burn_in_epochs": 1}, 4, 2),
    # The softmax over the global batch and its log_u state from step 1.
    "done": ("done", "digits", {"reweighting.burn_in_epochs": 0,
                                "reweighting.r": 0.05}, 3, None),
    # Warm-up for steps 1-2, the eps search (PerExampleMemory) for 3-4.
    "iaat": ("iaat", "digits", {"reweighting.warmup_epochs": 1}, 4, 2),
    # The separability loss over the global batch.
    "srat": ("srat", "digits,focal", {"reweighting.defer_epochs": 0}, 3, None),
}


def train_case(name, distribute, workdir):
  """Trains case `name`; returns {array name: value} to compare."""
  from official.core import cluster
  from official.core import experiment
  from tests.core import helpers
  module, preset, overrides, steps, steps_per_epoch = CASES[name]
  config = helpers.tiny_config(module, preset, distribute=distribute,
                               **overrides)
  run = experiment.prepare(config, workdir)
  if steps_per_epoch:
    run.trainer.steps_per_epoch = steps_per_epoch
  run.trainer.fit(cluster.train_dataset(run.strategy, run.data, 0, 1),
                  epochs=1, steps_per_epoch=steps, verbose=0)
  arrays = {f"network/{i}": v.numpy()
            for i, v in enumerate(run.trainer.network.weights)}
  for key, value in run.trainer.method_state.items():
    arrays[f"state/{key}"] = np.asarray(getattr(value, "variable", value).numpy())
  arrays["steps"] = np.asarray(run.trainer.optimizer.iterations.numpy())
  return arrays


def main(out):
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from official.core import cluster
  from official.core import experiment
  strategy = experiment.make_strategy("multi_worker")
  task_type, index = cluster.task()
  print(f"{task_type} {index}: {strategy.num_replicas_in_sync} replicas",
        flush=True)
  for name in CASES:
    arrays = train_case(name, "multi_worker", os.path.join(out, name))
    np.savez(os.path.join(out, f"{name}-{task_type}{index}.npz"), **arrays)
    print(f"{name} done", flush=True)


if __name__ == "__main__":
  main(sys.argv[1])
