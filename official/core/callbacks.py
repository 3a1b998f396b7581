"""Checkpoint/resume and per-epoch TensorBoard summaries for `fit()`."""
import os
import time

import keras
import numpy as np
import tensorflow as tf


class Checkpointer:
  """Network, optimizer (slots, iterations), method state and epoch, per epoch.

  A raw `tf.train.Checkpoint` rather than Keras's BackupAndRestore: it also
  saves the method's tf.Variables (IAAT's epsilon memory, DRO estimates), and
  it is never deleted at the end of training, so a finished run can be
  re-evaluated or re-exported from its workdir.
  """

  def __init__(self, directory, trainer, keep=3):
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    # Slot variables must exist before a restore can fill them.
    trainer.optimizer.build(trainer.network.trainable_variables)
    self.checkpoint = tf.train.Checkpoint(
        network=trainer.network, optimizer=trainer.optimizer,
        method_state=_state_variables(trainer.method_state), epoch=self.epoch)
    self.manager = tf.train.CheckpointManager(self.checkpoint, directory,
                                              max_to_keep=keep)

  def restore_latest(self):
    """Restores the newest checkpoint if any; returns the epoch to start at."""
    path = self.manager.latest_checkpoint
    if path is None:
      return 0
    try:
      self.checkpoint.restore(path).assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.OpError) as e:
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise ValueError(f"checkpoint {path} does not match this config (model, "
                       f"data or method changed?): {first}") from None
    return int(self.epoch.numpy())

  def save(self, epoch):
    self.epoch.assign(epoch)
    return self.manager.save(checkpoint_number=epoch)


def _state_variables(state):
  return {name: getattr(value, "variable", value) for name, value in state.items()}


class CheckpointCallback(keras.callbacks.Callback):

  def __init__(self, checkpointer):
    super().__init__()
    self.checkpointer = checkpointer

  def on_epoch_end(self, epoch, logs=None):
    self.checkpointer.save(epoch + 1)


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
