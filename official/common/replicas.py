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


def _placed(value):
  """`value` on this replica's device when the process has one replica.

  With one local replica (MultiWorkerMirroredStrategy, one device per
  worker) the collective's merge_call receives a plain tensor and uses its
  device as the destination; a graph tensor built without a device scope
  has none and the collective fails ("destinations can not be empty").
  """
  devices = tf.distribute.get_strategy().extended.worker_devices
  if len(devices) != 1:
    return value
  with tf.device(devices[0]):
    return tf.nest.map_structure(tf.identity, value)


def global_sum(value):
  """Sum of `value` over all replicas."""
  ctx = _context()
  return value if ctx is None else ctx.all_reduce(
      tf.distribute.ReduceOp.SUM, _placed(value))


def global_gather(value):
  """Concatenation of `value` over replicas along axis 0, in replica order."""
  ctx = _context()
  return value if ctx is None else ctx.all_gather(_placed(value), axis=0)


def local_rows(global_value, local_size):
  """This replica's `local_size` rows of a global-batch tensor."""
  ctx = _context()
  if ctx is None:
    return global_value
  start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local_size
  return global_value[start:start + local_size]
