"""SavedModel export: of a live network, or of any checkpoint of a run."""
import os
import types

import ml_collections as mlc
import numpy as np
import tensorflow as tf
from absl import logging

from official.core import callbacks
from official.core import workdir as workdir_lib
from official.modeling import registry as model_registry


def export(network, path, transform=None):
  """SavedModel with `serve`: float32 [0,1] NHWC images -> logits.

  transform: the method's deployed logits (Method.inference_logits), so that
  `serve` is what the run's evaluation attacked.
  """
  model = model_registry.logits_model(network, transform)
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

  Returns (path, epoch). Default output: WORKDIR/export-epoch<N>. Without
  `epoch`, the newest readable checkpoint (found from the files, not from the
  `checkpoint` index, which may be damaged); a damaged one is skipped with a
  warning. A damaged requested `epoch` is an error naming its file.
  """
  config_path = os.path.join(workdir, "config.json")
  data_path = os.path.join(workdir, "data.json")
  for path in (config_path, data_path):
    if not os.path.exists(path):
      raise ValueError(f"{path} not found: is {workdir} a run directory?")
  config = mlc.ConfigDict(workdir_lib.read_json(config_path))
  data = workdir_lib.read_json(data_path)  # shapes only: no data is loaded
  network = model_registry.build_model(config.model, tuple(data["image_shape"]),
                                       data["num_classes"])
  directory = os.path.join(workdir, "checkpoints")
  numbers = callbacks.checkpoint_numbers(directory)
  wanted = numbers[::-1] if epoch is None else [n for n in numbers if n == epoch]
  if not wanted:
    found = ", ".join(f"ckpt-{n}" for n in numbers) or "none"
    label = f"ckpt-{epoch} " if epoch is not None else ""
    raise ValueError(f"no checkpoint {label}in {directory}; found: {found}")
  damaged = []
  for number in wanted:
    path = os.path.join(directory, f"ckpt-{number}")
    reason = callbacks.unreadable(path)
    if reason is None:
      break
    damaged.append(f"{path}: {reason}")
  else:
    raise ValueError(f"damaged checkpoint {'; '.join(damaged)}")
  for line in damaged:
    logging.warning("skipped damaged checkpoint %s", line)
  try:
    tf.train.Checkpoint(network=network).restore(path).expect_partial()
  except (ValueError, AssertionError, tf.errors.OpError) as e:
    raise ValueError(f"checkpoint {path} does not match {config_path}: "
                     f"{str(e).strip().splitlines()[0]}") from None
  output = output or os.path.join(workdir, f"export-epoch{number}")
  return export(network, output, deployed_transform(config, data)), number


def deployed_transform(config, data_json):
  """The method's inference_logits for a finished run (None: the identity),
  rebuilt from its config and data.json's class counts (no data loaded)."""
  from official.reweighting import base as method_base
  from official.reweighting import registry as method_registry
  cls = method_registry.METHODS.get(config.reweighting.name)
  if cls is None or cls.inference_logits is method_base.Method.inference_logits:
    return None
  counts = types.SimpleNamespace(
      class_counts=np.asarray(data_json["class_counts"], np.int64),
      num_classes=int(data_json["num_classes"]))
  return cls(config.reweighting, config=config, data=counts).inference_logits
