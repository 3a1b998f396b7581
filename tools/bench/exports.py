"""The model an attack section times and the images it attacks: an export
given by a flag, or the AT SmallCNN after 20 steps (not at its zero-logit
init), exported here."""
import os

from absl import flags

from tools.bench import steps as steps_lib


def short_run_export(workdir, run_name, export_name):
  """(run, export path) of the protocol AT SmallCNN after 20 steps: a model
  that is not at its zero-logit init, for sections not given an export."""
  from official.core import export
  project = steps_lib.ProjectStep(steps_lib.load_config("at", "mnist10k"),
                                  os.path.join(workdir, run_name))
  project(20)
  run = project.run
  return run, export.export(run.trainer.network,
                            os.path.join(workdir, export_name))


def given_export(flag, config):
  """(loaded export, the config's data) for an export given by --FLAG; a
  one-line `error:` (exit 1) if it does not load."""
  from official.data import registry as data_registry
  from tools import evaluate as evaluate_tool
  try:
    loaded = evaluate_tool.load_export(flags.FLAGS[flag].value)
  except ValueError as e:
    raise SystemExit(f"error: --{flag}: {e}") from None
  return loaded, data_registry.load(config.data, batch_size=1, seed=0)


def first_test_images(data, n):
  """The first n test images as the attacks see them: float32 NHWC in
  [0, 1] (the splits hold raw pixels up to pixel_max), and int64 labels."""
  import numpy as np
  x = data.splits.x_test[:n].astype(np.float32) / data.splits.pixel_max
  if x.ndim == 3:
    x = x[..., None]
  return x, data.splits.y_test[:n].astype(np.int64)
