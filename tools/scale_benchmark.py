r"""Multi-worker throughput and the cost of the gradient all-reduce.

Run as every worker of a cluster (here through launch_local):

  python -m tools.launch_local --num_workers=2 --threads_per_worker=1 -- \
      -m tools.scale_benchmark --preset=mnist10k
  python -m tools.launch_local --num_workers=1 --threads_per_worker=1 -- \
      -m tools.scale_benchmark --preset=mnist10k            # the 1-worker base

Each worker builds the run as official.train does (distribute: multi_worker),
times `steps` training steps of the global batch (after `warmup` steps of
tracing) and, alone, an all-reduce of tensors shaped like the gradients (the
collective every step adds). Worker 0 prints one JSON line: global examples/s,
ms per step, gradient bytes per step, ms per bare all-reduce.
"""
import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

_CONFIG = flags.DEFINE_string("config", "configs/at.py", "Method config file.")
_PRESET = flags.DEFINE_string("preset", "mnist10k", "Dataset preset.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Global batch (0: the config's).")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first.")
_REDUCES = flags.DEFINE_integer("reduces", 50, "Timed bare all-reduces.")


def main(argv):
  del argv
  import importlib.util
  import tensorflow as tf
  from official.core import cluster
  from official.core import experiment
  spec = importlib.util.spec_from_file_location("cfg", _CONFIG.value)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(_PRESET.value)
  config.distribute = "multi_worker"
  if _BATCH.value:
    config.batch_size = _BATCH.value
  strategy = experiment.make_strategy("multi_worker")
  with tempfile.TemporaryDirectory() as workdir:
    run = experiment.prepare(config, workdir)
    trainer = run.trainer

    def fit(steps):
      start = time.perf_counter()
      trainer.fit(cluster.train_dataset(strategy, run.data, 0, 1), epochs=1,
                  steps_per_epoch=steps, verbose=0)
      return time.perf_counter() - start

    fit(_WARMUP.value)
    seconds = fit(_STEPS.value)
    variables = trainer.network.trainable_variables
    grad_bytes = sum(int(tf.size(v)) * tf.as_dtype(v.dtype).size
                     for v in variables)

    @tf.function
    def all_reduce():
      def replica():
        return tf.distribute.get_replica_context().all_reduce(
            "sum", [tf.zeros_like(v) + 1.0 for v in variables])
      return strategy.run(replica)

    all_reduce()
    start = time.perf_counter()
    for _ in range(_REDUCES.value):
      result = all_reduce()
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t,
                          strategy.experimental_local_results(result))
    reduce_ms = 1000 * (time.perf_counter() - start) / _REDUCES.value
  if cluster.is_chief("multi_worker"):
    workers = len(json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"])
    print(json.dumps({
        "workers": workers, "replicas": strategy.num_replicas_in_sync,
        "global_batch": int(config.batch_size),
        "examples_per_s": round(_STEPS.value * int(config.batch_size)
                                / seconds, 1),
        "ms_per_step": round(1000 * seconds / _STEPS.value, 1),
        "gradient_bytes_per_step": grad_bytes,
        "bare_all_reduce_ms": round(reduce_ms, 2)}), flush=True)


if __name__ == "__main__":
  app.run(main)
