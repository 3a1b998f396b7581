r"""Exports any checkpoint of a run as a SavedModel (`serve`: [0,1] NHWC -> logits).

  python -m tools.export --workdir=runs/lrat                 # newest checkpoint
  python -m tools.export --workdir=runs/lrat --epoch=30 --output=/tmp/lrat30

Rebuilds the network from the run's own config.json, restores the checkpoint
and writes the SavedModel (default: WORKDIR/export-epoch<N>).
"""
import json
import os
import sys

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.", required=True)
_EPOCH = flags.DEFINE_integer("epoch", None, "Checkpoint epoch (default: newest).")
_OUTPUT = flags.DEFINE_string("output", None, "SavedModel directory.")


def export_checkpoint(workdir, epoch=None, output=None):
  import ml_collections as mlc
  import tensorflow as tf
  from official.core import experiment
  from official.modeling import registry as model_registry

  config_path = os.path.join(workdir, "config.json")
  data_path = os.path.join(workdir, "data.json")
  for path in (config_path, data_path):
    if not os.path.exists(path):
      raise ValueError(f"{path} not found: is {workdir} a run directory?")
  with open(config_path) as f:
    config = mlc.ConfigDict(json.load(f))
  with open(data_path) as f:
    data = json.load(f)
  # The network needs only shapes, which data.json holds: no data is loaded.
  network = model_registry.build_model(config.model, tuple(data["image_shape"]),
                                       data["num_classes"])
  directory = os.path.join(workdir, "checkpoints")
  if epoch is None:
    path = tf.train.latest_checkpoint(directory)
  else:
    path = os.path.join(directory, f"ckpt-{epoch}")
    if not tf.io.gfile.exists(path + ".index"):
      path = None
  if path is None:
    found = sorted(os.path.basename(p).split(".")[0]
                   for p in tf.io.gfile.glob(os.path.join(directory, "ckpt-*.index")))
    raise ValueError(f"no checkpoint {'ckpt-%d' % epoch if epoch else ''} in "
                     f"{directory}; found: {', '.join(found) or 'none'}")
  tf.train.Checkpoint(network=network).restore(path).expect_partial()
  number = int(path.rsplit("-", 1)[1])
  output = output or os.path.join(workdir, f"export-epoch{number}")
  return experiment.export(network, output), number


def main(argv):
  del argv
  try:
    path, number = export_checkpoint(_WORKDIR.value, _EPOCH.value, _OUTPUT.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"exported epoch {number} to {path}")


if __name__ == "__main__":
  app.run(main)
