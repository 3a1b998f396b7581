"""Per-term statistics of an epoch, computed once per epoch, not per step.

The step used to keep, for every loss term, four running means (the term's
mean, the weight's mean / max / min over the batch) and a per-example memory
of the last weight of every id (a global gather and a scatter into a
[num_ids] variable per term, every step): ~20% of a plain AT step on the
2-core CPU (tools/benchmark.py). Here the step only copies its per-example
(term, weight) rows into a per-replica buffer (one slice assignment, no
reduction, no cross-replica traffic); the statistics and the histograms are
computed from the buffer when asked, i.e. once at the end of each epoch.
They equal the per-step accumulation they replace: the mean over (step,
replica) of each per-replica batch statistic (tests/core/test_trainer.py).

The buffer holds `capacity` steps (the trainer's steps per epoch) and wraps
around beyond that: an epoch longer than planned keeps its last `capacity`
steps. Keras resets it at the start of every epoch (`reset_state`).
"""
import keras
import numpy as np
import tensorflow as tf

STATISTICS = ("term/{}", "weight/{}/mean", "weight/{}/max", "weight/{}/min")


def _components(variable):
  """The per-replica copies of a sync-on-read variable (itself if plain)."""
  return getattr(variable, "values", (variable,))


class EpochRecord(keras.metrics.Metric):
  """This replica's per-example (term value, weight) rows of every step."""

  def __init__(self, terms, local_batch, capacity, name="epoch_record"):
    super().__init__(name=name)
    self.terms = tuple(terms)
    self.capacity = max(int(capacity), 1)
    local = dict(trainable=False,
                 synchronization=tf.VariableSynchronization.ON_READ,
                 aggregation=tf.VariableAggregation.NONE)
    # Raw tf.Variables, one copy per replica (ON_READ, never aggregated).
    self._state = {
        "rows": tf.Variable(tf.zeros([self.capacity, int(local_batch),
                                      max(len(self.terms), 1), 2]),
                            name="epoch_record_rows", **local),
        "steps": tf.Variable(tf.constant(0, tf.int64),
                             name="epoch_record_steps", **local)}
    self.present = set()  # terms a traced step wrote (others read as 0)

  def update_state(self, terms, weights):
    """terms, weights: {term: [B]} of this replica. A term missing from
    `terms` was not computed this step (LRAT's burn-in): NaN values, left
    out of its mean; its weight is still recorded (0 there)."""
    if not self.terms:
      return
    rows, steps = self._state["rows"], self._state["steps"]
    columns = []
    for term in self.terms:
      value = terms.get(term)
      if value is None and term not in weights:
        value = weight = tf.zeros(rows.shape[1:2])
      else:
        self.present.add(term)
        if value is None:
          value = tf.fill(rows.shape[1:2], float("nan"))
        value = tf.cast(value, tf.float32)
        weight = tf.broadcast_to(tf.cast(weights.get(term, 1.0), tf.float32),
                                 tf.shape(value))
      columns.append(tf.stack([value, weight], -1))
    rows[steps % self.capacity].assign(tf.stack(columns, 1))
    steps.assign_add(1)

  def reset_state(self):
    for copy in _components(self._state["steps"]):
      copy.assign(0)

  @property
  def steps(self):
    return int(_components(self._state["steps"])[0].numpy())

  def rows(self):
    """[replicas * steps, B, terms, 2] of the recorded steps (eager)."""
    n = min(self.steps, self.capacity)
    return np.concatenate([copy.numpy()[:n]
                           for copy in _components(self._state["rows"])])

  def result(self):
    """{"term/t", "weight/t/mean|max|min"}: the mean over (step, replica)
    of each batch statistic, as the running means this replaces."""
    rows = self.rows() if self.steps else None
    out = {}
    for k, term in enumerate(self.terms):
      if rows is None or term not in self.present:
        stats = (0.0,) * 4
      else:
        value, weight = rows[:, :, k, 0], rows[:, :, k, 1]
        per_step = value.mean(1)
        per_step = per_step[~np.isnan(per_step)]  # steps that computed it
        stats = (per_step.mean() if per_step.size else 0.0,
                 weight.mean(1).mean(), weight.max(1).mean(),
                 weight.min(1).mean())
      for name, stat in zip(STATISTICS, stats):
        out[name.format(term)] = np.float32(stat)
    return out

  def weights_of_epoch(self):
    """{term: every weight the epoch's steps gave} (histograms)."""
    if not self.steps:
      return {}
    rows = self.rows()
    return {t: rows[:, :, k, 1].ravel() for k, t in enumerate(self.terms)
            if t in self.present}


class RecordView:
  """`trainer.trackers[name]` for a statistic of the record: `.result()`."""

  def __init__(self, record, name):
    self.record, self.name = record, name

  def result(self):
    return tf.constant(self.record.result()[self.name])
