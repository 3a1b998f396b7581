"""eval.select: which weights a run exports and evaluates.

  last      the final epoch's weights (the default).
  best_val  the epoch whose weights have the best robust accuracy on the
            validation split (data.validation_per_class > 0): the usual
            answer to robust overfitting, and what CFA reports.

With best_val, after every epoch's checkpoint `BestCheckpoint` evaluates the
weights on the validation split with CE-PGD-10 at the TRAINING epsilon and
step, uniform random start, BN frozen (`validation.pgd_spec(config, 10)`;
training keys, so an eval.* change after training leaves the record valid),
and writes

  DIR/selection.json        {"attack": ..., "epochs": {"E": summary of epoch E},
                             "best": E}   (written atomically)
  DIR/checkpoints/best/ckpt-E   the network of the best epoch so far (network
                            only; outside checkpoints_to_keep's rotation)

Best = the highest validation robust accuracy; ties go to the higher clean
accuracy, then to the later epoch. The record is the selection's state, and
it follows the checkpoints exactly: it is written after the epoch's
checkpoint, and a run resumed at epoch E whose record lacks E (killed between
the two) evaluates the restored weights of E first, with the same random
starts (keyed by E), so a killed-and-resumed run records what a straight one
does. A new best is written under a new name before the record names it, and
older best files go only after, so a kill never leaves the record naming
missing weights.

What is validated is what would be exported had training stopped there:
the network, or, with config.averaging (core/averaging.py) once an epoch
has been averaged, the average (in a second network: EMA's averaged state;
SWA's averaged weights with its batch-norm statistics recomputed, as the
export does). Each epoch's record says which ("weights"), and the best
checkpoint holds those weights.

After training, `select` loads the chosen weights into the network before the
export and evaluation; eval.json gets "selection": {"select", "epoch",
"validation" (the record of that epoch), "epochs_recorded"}, and its
"weights" entry describes the selected epoch's weights.

eval.* keys may change when a finished run is re-evaluated. eval.select can
then only choose among what was recorded: best_val on a run trained with
`last` (no record) is one error line, before anything is written; on a run
resumed mid-way with best_val, the candidates are the epochs recorded from
the resume on (eval.json lists them).
"""
import json
import os

import keras
import tensorflow as tf
from absl import logging

from official.common import checks
from official.core import averaging
from official.data import holdout
from official.evaluation import validation as validation_lib
from official.reweighting import registry as method_registry

SELECTS = ("last", "best_val")
RECORD = "selection.json"
STEPS = 10  # PGD-10 at the training settings


def check(config):
  """Config checks (experiment.validate): eval.select, and a validation split
  where best_val or the method needs one. One-line ValueErrors."""
  select = checks.check_choice("eval.select", config.eval.get("select", "last"),
                               SELECTS)
  per_class = holdout.check(config.data.get("validation_per_class", 0) or 0)
  method = method_registry.METHODS[config.reweighting.name]
  for needs, who in ((select == "best_val", "eval.select=best_val"),
                     (method.needs_validation(config.reweighting),
                      f"reweighting.name={config.reweighting.name}")):
    if needs and per_class == 0:
      raise ValueError(f"{who} needs a validation split: set "
                       f"data.validation_per_class > 0 (images of each class "
                       f"held out of training), got 0")
  return select


def spec(config):
  return validation_lib.pgd_spec(config, STEPS)


def record_path(workdir):
  return os.path.join(workdir, RECORD)


def best_dir(workdir):
  return os.path.join(workdir, "checkpoints", "best")


def read_record(workdir):
  path = record_path(workdir)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def best_epoch(epochs):
  """The best of {"E": summary}: robust, then clean accuracy, then later E."""
  if not epochs:
    return None
  return max((int(e) for e in epochs), key=lambda e: (
      epochs[str(e)]["robust_accuracy"], epochs[str(e)]["clean_accuracy"], e))


def check_record(config, workdir, initial_epoch):
  """prepare(): best_val on a run with nothing left to train needs a record."""
  if config.eval.get("select", "last") != "best_val":
    return
  if initial_epoch < int(config.epochs):
    return  # training will record (from the resume on)
  record = read_record(workdir) or {}
  recorded = [e for e in record.get("epochs", {}) if int(e) <= initial_epoch]
  if not recorded:
    raise ValueError(
        f"eval.select=best_val: {record_path(workdir)} holds no per-epoch "
        f"validation record (the run trained with eval.select=last), and it "
        f"can only choose among recorded epochs; re-evaluate with "
        f"eval.select=last, or train with eval.select=best_val in a new "
        f"--workdir")


def _write_json(path, value):
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=2)
  os.replace(path + ".tmp", path)


class BestCheckpoint(keras.callbacks.Callback):
  """Validates each epoch's weights and keeps the best (module docstring).

  Listed AFTER the CheckpointCallback (the record follows the checkpoints).
  """

  def __init__(self, network, validation, config, workdir, initial_epoch,
               averager=None, build_network=None, train_batches=None):
    super().__init__()
    self.network = network
    self.validation = validation  # EpochContext.validation
    self.spec = spec(config)
    self.workdir = workdir
    self.initial_epoch = int(initial_epoch)
    # config.averaging: its WeightAverage, a builder of a second network of
    # the same architecture, SWA's batch-norm pass (train_batches()).
    self.averager = averager
    self.build_network = build_network
    self.train_batches = train_batches
    self.shadow = None
    self.writer = tf.summary.create_file_writer(
        os.path.join(workdir, "tb", "validation"))

  def on_train_begin(self, logs=None):
    record = read_record(self.workdir)
    # Epochs beyond the checkpoint (none, given the order) are retrained.
    epochs = {e: v for e, v in ((record or {}).get("epochs", {})).items()
              if int(e) <= self.initial_epoch}
    self.record = {"attack": self.spec.to_dict(), "epochs": epochs,
                   "best": best_epoch(epochs)}
    if self.initial_epoch and str(self.initial_epoch) not in epochs:
      # Killed after the checkpoint, before the record: the restored weights
      # are that epoch's.
      self._add(self.initial_epoch)

  def on_epoch_end(self, epoch, logs=None):
    self._add(epoch + 1)

  def candidate(self):
    """(network, description): what the export would hold now."""
    avg = self.averager
    n = 0 if avg is None else int(avg.count.numpy())
    if n == 0:
      return self.network, {"averaging": avg.mode if avg else "none",
                            "evaluated": "last"}
    if self.shadow is None:
      self.shadow = self.build_network()
    # The network's state, then the average over the variables it averages.
    index = {id(v): i for i, v in enumerate(self.network.variables)}
    for dst, src in zip(self.shadow.variables, self.network.variables):
      dst.assign(src)
    for src, avg_value in zip(avg.sources, avg.average):
      self.shadow.variables[index[id(src)]].assign(avg_value)
    info = {"averaging": avg.mode, "evaluated": avg.mode, "epochs_averaged": n,
            "first_epoch": int(avg.first_epoch.numpy()) + 1,
            "last_epoch": int(avg.last_epoch.numpy()) + 1}
    if avg.mode == "swa" and averaging.batch_norm_layers(self.shadow):
      info["bn_update_batches"] = averaging.bn_update(self.shadow,
                                                      self.train_batches())
    return self.shadow, info

  def _add(self, completed):
    network, weights = self.candidate()
    result = self.validation(self.spec, completed, network)
    epochs = self.record["epochs"]
    epochs[str(completed)] = dict(result.summary(), weights=weights)
    best = best_epoch(epochs)
    if best == completed:
      os.makedirs(best_dir(self.workdir), exist_ok=True)
      tf.train.Checkpoint(network=network).write(
          os.path.join(best_dir(self.workdir), f"ckpt-{completed}"))
    self.record["best"] = best
    _write_json(record_path(self.workdir), self.record)
    _remove_other_best(self.workdir, best)
    with self.writer.as_default():
      for key in ("robust_accuracy", "clean_accuracy", "worst_class_robust"):
        tf.summary.scalar(f"validation/{key}", epochs[str(completed)][key],
                          step=completed)
    self.writer.flush()


def _remove_other_best(workdir, keep):
  directory = best_dir(workdir)
  if not os.path.isdir(directory):
    return
  for name in os.listdir(directory):
    if not name.startswith(f"ckpt-{keep}."):
      os.remove(os.path.join(directory, name))


def callbacks(run, validation, build_network):
  """[BestCheckpoint] with eval.select=best_val (the chief's), else [].
  build_network: () -> a new network of the run's architecture."""
  if run.config.eval.get("select", "last") != "best_val":
    return []

  def build():
    with run.strategy.scope():
      return build_network()

  return [BestCheckpoint(run.trainer.network, validation, run.config,
                         run.workdir, run.initial_epoch,
                         averager=getattr(run.trainer, "averager", None),
                         build_network=build,
                         train_batches=lambda: run.data.train(0, 1))]


def select(run, epochs):
  """Loads the selected weights into the network; returns eval.json's
  "selection" entry."""
  select_ = run.config.eval.get("select", "last")
  if select_ == "last":
    return {"select": "last", "epoch": int(epochs)}
  record = read_record(run.workdir) or {}
  recorded = {e: v for e, v in record.get("epochs", {}).items()
              if int(e) <= int(epochs)}
  best = best_epoch(recorded)
  if best is None:  # check_record refuses this before anything is written
    raise ValueError(f"eval.select=best_val: no per-epoch validation record "
                     f"in {record_path(run.workdir)}")
  path = os.path.join(best_dir(run.workdir), f"ckpt-{best}")
  try:
    tf.train.Checkpoint(network=run.trainer.network).read(
        path).assert_existing_objects_matched()
  except (ValueError, AssertionError, tf.errors.OpError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"eval.select=best_val: the best epoch's weights {path} "
                     f"are unreadable ({first})") from None
  ordered = sorted(int(e) for e in recorded)
  if ordered[0] > 1:
    logging.warning("eval.select=best_val chose among epochs %d-%d only (the "
                    "run recorded from there on)", ordered[0], ordered[-1])
  chosen = recorded[str(best)]
  # eval.json's "weights": those of the chosen epoch (an average as of then).
  run.weights = dict(chosen.get("weights", {"evaluated": "last"}),
                     selected_epoch=best)
  return {"select": "best_val", "epoch": best, "validation": chosen,
          "epochs_recorded": ordered}
