"""SavedModel export: of a live network, or of any checkpoint of a run."""
import json
import os

import ml_collections as mlc
import tensorflow as tf

from official.modeling import registry as model_registry


def export(network, path):
  """SavedModel with `serve`: float32 [0,1] NHWC images -> logits."""
  model = model_registry.logits_model(network)
  tmp = path + ".tmp"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  model.export(tmp, verbose=False)
  # Swap in only once the new export is complete: an old one is never lost.
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)
  tf.io.gfile.rename(tmp, path)
  return path


def export_checkpoint(workdir, epoch=None, output=None):
  """Rebuilds the run's network from config.json and exports a checkpoint.

  Returns (path, epoch). Default output: WORKDIR/export-epoch<N>.
  """
  config_path = os.path.join(workdir, "config.json")
  data_path = os.path.join(workdir, "data.json")
  for path in (config_path, data_path):
    if not os.path.exists(path):
      raise ValueError(f"{path} not found: is {workdir} a run directory?")
  with open(config_path) as f:
    config = mlc.ConfigDict(json.load(f))
  with open(data_path) as f:
    data = json.load(f)  # the network needs only shapes: no data is loaded
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
    found = sorted(os.path.basename(p).split(".")[0] for p in
                   tf.io.gfile.glob(os.path.join(directory, "ckpt-*.index")))
    wanted = f"ckpt-{epoch} " if epoch is not None else ""
    raise ValueError(f"no checkpoint {wanted}in {directory}; found: "
                     f"{', '.join(found) or 'none'}")
  tf.train.Checkpoint(network=network).restore(path).expect_partial()
  number = int(path.rsplit("-", 1)[1])
  output = output or os.path.join(workdir, f"export-epoch{number}")
  return export(network, output), number
