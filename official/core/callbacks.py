"""Checkpoint/resume and per-epoch TensorBoard summaries for `fit()`."""
import os
import re
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging


class NonFiniteError(ValueError):
  """Training diverged: a loss or a variable is NaN or infinite."""


class Checkpointer:
  """Network, optimizer (slots, iterations), method state, the weight
  average (if any) and epoch, per epoch.

  A raw `tf.train.Checkpoint` rather than Keras's BackupAndRestore: it also
  saves the method's tf.Variables (IAAT's epsilon memory, DRO estimates), and
  it is never deleted at the end of training, so a finished run can be
  re-evaluated or re-exported from its workdir.

  Checkpoints are never lost silently: `save` refuses non-finite weights (so
  a diverged epoch cannot rotate the good checkpoints out), and
  `restore_latest` skips damaged checkpoints (moved to checkpoints/damaged/,
  with a warning) and reads the directory itself when its `checkpoint` index
  file is unreadable, rather than starting again from epoch 0.
  """

  def __init__(self, directory, trainer, keep=3):
    self.directory = directory
    self.keep = keep
    self.trainer = trainer
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    # Slot variables must exist before a restore can fill them.
    trainer.optimizer.build(trainer.network.trainable_variables)
    # The weight average (config.averaging) only where a run has one, so
    # the checkpoints of runs without it keep their layout.
    averaged = ({"averaging": trainer.averager.state()}
                if getattr(trainer, "averager", None) is not None else {})
    self.checkpoint = tf.train.Checkpoint(
        network=trainer.network, optimizer=trainer.optimizer,
        method_state=_state_variables(trainer.method_state), epoch=self.epoch,
        **averaged)
    self.manager = tf.train.CheckpointManager(self.checkpoint, directory,
                                              max_to_keep=keep)

  def restore_latest(self):
    """Restores the newest readable checkpoint; returns the epoch to start at."""
    numbers = checkpoint_numbers(self.directory)
    if not numbers:
      return 0
    indexed = self.manager.latest_checkpoint
    damaged = []
    for number in reversed(numbers):
      path = os.path.join(self.directory, f"ckpt-{number}")
      reason = unreadable(path)
      if reason is None:
        break
      damaged.append((path, reason))
    else:
      files = "; ".join(f"{p}: {r}" for p, r in damaged)
      raise ValueError(f"every checkpoint in {self.directory} is damaged ({files}); "
                       "move them away to train from epoch 0")
    try:
      self.checkpoint.restore(path).assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.OpError) as e:
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise ValueError(f"checkpoint {path} does not match this config (model, "
                       f"data or method changed?): {first}") from None
    for bad, reason in damaged:
      moved = _move_damaged(bad)
      logging.warning("checkpoint %s is damaged (%s): moved to %s; resuming from "
                      "%s", bad, reason, moved, path)
    if damaged or os.path.basename(indexed or "") != os.path.basename(path):
      if not damaged:
        logging.warning("%s does not name the newest checkpoint %s (unreadable "
                        "or stale index): rebuilt it from the checkpoint files",
                        os.path.join(self.directory, "checkpoint"), path)
      self._rebuild_index()
    return int(self.epoch.numpy())

  def _rebuild_index(self):
    """Rewrites checkpoints/checkpoint from the files, so rotation sees them."""
    paths = [os.path.join(self.directory, f"ckpt-{n}")
             for n in checkpoint_numbers(self.directory)]
    index = os.path.join(self.directory, "checkpoint")
    if os.path.exists(index):
      os.replace(index, index + ".damaged")
    tf.compat.v1.train.update_checkpoint_state(
        self.directory, paths[-1], all_model_checkpoint_paths=paths)
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory,
                                              max_to_keep=self.keep)

  def check_finite(self, where):
    """Raises NonFiniteError if a network or optimizer variable is NaN or
    infinite (one reduction per variable, one host transfer).

    Method state is not checked: memories use inf/NaN as "not seen yet"
    (MAIL's margins, GAIRAT's and LRAT's kappa before an example's first step).
    """
    variables = [v for v in (*self.trainer.network.weights,
                             *self.trainer.optimizer.variables)
                 if tf.as_dtype(v.dtype).is_floating]
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables])
    if not bool(finite.numpy()):
      bad = next(getattr(v, "path", v.name) for v in variables
                 if not np.isfinite(np.asarray(v)).all())
      raise NonFiniteError(f"training diverged {where}: variable {bad} is not "
                           f"finite; {self._advice()}")

  def _advice(self):
    latest = self.manager.latest_checkpoint
    if latest is None:
      return "no checkpoint was written; lower optimizer.learning_rate and rerun"
    workdir = os.path.dirname(self.directory)
    return (f"nothing was saved for it, the last finite checkpoint is {latest}; "
            f"to resume from it, rerun with --workdir={workdir}, a lower "
            "optimizer.learning_rate and --allow_config_change="
            "optimizer.learning_rate (or the optimizer.* keys you change)")

  def save(self, epoch, loss=None):
    """Saves after `epoch` epochs, unless the loss or any variable is not finite."""
    if loss is not None and not np.isfinite(loss):
      raise NonFiniteError(f"training diverged in epoch {epoch}: mean loss "
                           f"{loss}; {self._advice()}")
    self.check_finite(f"in epoch {epoch}")
    self.epoch.assign(epoch)
    return self.manager.save(checkpoint_number=epoch)


def checkpoint_numbers(directory):
  """Sorted N of every checkpoints/ckpt-N.index (whatever the index file says)."""
  if not os.path.isdir(directory):
    return []
  numbers = []
  for name in os.listdir(directory):
    match = re.fullmatch(r"ckpt-(\d+)\.index", name)
    if match:
      numbers.append(int(match.group(1)))
  return sorted(numbers)


def unreadable(path):
  """Why the checkpoint at `path` cannot be read in full, or None.

  Reads every tensor: a truncated data shard only shows when read (as an
  IndexError from TF's reader), not in the index.
  """
  try:
    reader = tf.train.load_checkpoint(path)
    for key in reader.get_variable_to_shape_map():
      reader.get_tensor(key)
  except Exception as e:  # noqa: BLE001 -- any read failure means damaged
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip(": ")
  return None


def _move_damaged(path):
  directory = os.path.join(os.path.dirname(path), "damaged")
  os.makedirs(directory, exist_ok=True)
  for f in tf.io.gfile.glob(path + ".*"):
    os.replace(f, os.path.join(directory, os.path.basename(f)))
  return directory


def _state_variables(state):
  return {name: getattr(value, "variable", value) for name, value in state.items()}


class MethodEpochHooks(keras.callbacks.Callback):
  """The method's epoch hooks (reweighting/base.py), before the checkpoint.

  Listed before CheckpointCallback, so that what `on_epoch_end` changes
  (method state) is in the epoch's checkpoint.
  """

  def __init__(self, method, run):
    super().__init__()
    self.method = method
    self.run = run  # base.EpochContext

  def on_epoch_begin(self, epoch, logs=None):
    self.method.on_epoch_begin(epoch, self.run)

  def on_epoch_end(self, epoch, logs=None):
    self.method.on_epoch_end(epoch, self.run)


class CheckpointCallback(keras.callbacks.Callback):
  """Saves each epoch; a non-finite epoch stops the run (NonFiniteError).

  Checked once per epoch, at its end: a per-step check would need a host
  sync each step. The epoch's mean loss is non-finite if any step's was.
  """

  def __init__(self, checkpointer):
    super().__init__()
    self.checkpointer = checkpointer

  def on_epoch_end(self, epoch, logs=None):
    loss = (logs or {}).get("loss")
    self.checkpointer.save(epoch + 1, None if loss is None else float(loss))


class TensorBoard(keras.callbacks.TensorBoard):
  """Keras's TensorBoard with every series at step = epochs completed.

  Keras logs `epoch_*` at the 0-based epoch index; EpochSummaries and the
  checkpoints count completed epochs (1..E, ckpt-E). One convention: 1..E.
  """

  def on_epoch_end(self, epoch, logs=None):
    super().on_epoch_end(epoch + 1, logs)


class EpochSummaries(keras.callbacks.Callback):
  """Learning rate, weight histograms per term, and the method's own histograms.

  The weight histogram of a term holds every weight the epoch's steps gave
  (each training example once per epoch; core/records.py), read from the
  trainer's per-replica record once, here.
  """

  def __init__(self, trainer, logdir, train_ids):
    super().__init__()
    self.trainer = trainer
    self.train_ids = np.asarray(train_ids)
    self.writer = tf.summary.create_file_writer(os.path.join(logdir, "train"))

  def on_epoch_end(self, epoch, logs=None):
    trainer = self.trainer
    step = epoch + 1
    with self.writer.as_default():
      lr = trainer.optimizer.learning_rate
      tf.summary.scalar("learning_rate", float(np.asarray(lr)), step=step)
      for term, values in trainer.record.weights_of_epoch().items():
        tf.summary.histogram(f"weights/{term}", values, step=step)
      for name, values in trainer.method.epoch_summaries().items():
        values = np.asarray(values)
        if values.ndim == 0:
          tf.summary.scalar(f"method/{name}", float(values), step=step)
        else:
          tf.summary.histogram(f"method/{name}", values, step=step)
    self.writer.flush()


class Progress(keras.callbacks.Callback):
  """A progress bar of the headline metrics, and one full line per epoch.

  Keras's own bar shows every value `train_step` returns (each term's weight
  mean / max / min, the method's metrics): too many for a terminal. Here the
  bar (terminals only) shows HEADLINE; the end-of-epoch line, which is what
  log files keep, shows everything.
  """
  HEADLINE = ("loss", "clean_accuracy", "adversarial_accuracy")

  def __init__(self, epochs, steps_per_epoch, live):
    super().__init__()
    self.epochs = int(epochs)
    self.steps = int(steps_per_epoch)
    self.live = bool(live)

  def on_epoch_begin(self, epoch, logs=None):
    self.start = time.time()
    if self.live:
      print(f"Epoch {epoch + 1}/{self.epochs}")
      self.bar = keras.utils.Progbar(self.steps, unit_name="step",
                                     stateful_metrics=self.HEADLINE)

  def on_train_batch_end(self, batch, logs=None):
    if self.live:
      self.bar.update(batch + 1, [(k, float(logs[k])) for k in self.HEADLINE
                                  if k in (logs or {})])

  def on_epoch_end(self, epoch, logs=None):
    seconds = time.time() - self.start
    values = " - ".join(f"{k}: {float(v):.4g}" for k, v in (logs or {}).items())
    print(f"Epoch {epoch + 1}/{self.epochs} - {seconds:.0f}s - "
          f"{1000 * seconds / self.steps:.0f}ms/step - {values}", flush=True)
