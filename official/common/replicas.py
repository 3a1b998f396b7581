"""Global-batch helpers for code that runs inside a MirroredStrategy replica.

A step sees one replica's slice of the global batch. Anything defined over
"the batch" (a normaliser, a softmax, random starts, a batch-hard triplet)
must be computed over the GLOBAL batch so that a 2-replica run equals a
1-device run. Batches are equal across replicas (drop_remainder) and
all_gather concatenates them in replica order, so replica r holds rows
[r * local, (r + 1) * local) of every global-batch tensor. Outside a replica
context (or with one replica) every helper is the identity.
"""
import tensorflow as tf


def _context():
  ctx = tf.distribute.get_replica_context()
  return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def num_replicas():
  ctx = _context()
  return ctx.num_replicas_in_sync if ctx is not None else 1


def global_sum(value):
  """Sum of `value` over all replicas."""
  ctx = _context()
  return value if ctx is None else ctx.all_reduce(
      tf.distribute.ReduceOp.SUM, value)


def global_gather(value):
  """Concatenation of `value` over replicas along axis 0, in replica order."""
  ctx = _context()
  return value if ctx is None else ctx.all_gather(value, axis=0)


def local_rows(global_value, local_size):
  """This replica's `local_size` rows of a global-batch tensor."""
  ctx = _context()
  if ctx is None:
    return global_value
  start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local_size
  return global_value[start:start + local_size]
