"""Multi-worker training: the cluster from TF_CONFIG, and who writes what.

`distribute: multi_worker` runs the same command on every worker; the cluster
comes from the standard `TF_CONFIG` environment variable, e.g. for worker 1 of
two hosts:

  {"cluster": {"worker": ["host0:12345", "host1:12345"]},
   "task": {"type": "worker", "index": 1}}

TensorFlow's `MultiWorkerMirroredStrategy` does all the communication
(collective all-reduce / all-gather over gRPC). This module only:

- parses and checks TF_CONFIG first, so a typo is one `error:` line, not a
  gRPC traceback or a hang;
- bounds every wait: the workers must all register within `timeout` seconds,
  a dead peer is noticed by the coordination service's heartbeat, and every
  collective gives up after `timeout` seconds (CommunicationOptions), so a
  killed worker stops the others instead of leaving them blocked forever;
- feeds each worker exactly its replicas' rows of every global batch
  (`train_dataset`), which is the layout `official/common/replicas.py` and
  `PerExampleMemory` assume, so a 2-worker run equals a 1-device run;
- decides the side effects: only the chief writes the workdir (tb/,
  eval.json, plots, export, config.json); the other workers save their
  checkpoints (every worker must take part in a save) into their own scratch
  directory, DIR/.scratch/<task>-<index>, deleted after each save (a save
  killed midway leaves it: the next start deletes it), and restore from the
  chief's checkpoints;
- turns a collective that fails because a peer is gone into one `error:`
  line naming the peer and how to resume (`lost_peer`).
"""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import tensorflow as tf

from official.core import callbacks

# Seconds a worker waits for the others: to register at start-up, and in any
# one collective (a step's all-reduce, a checkpoint). Long enough for the
# skew between workers tracing their first step on a loaded machine; short
# enough that a dead peer does not hang a job for hours. Overridable with
# the environment variable below (the tests shorten it).
DEFAULT_TIMEOUT = 600
TIMEOUT_ENV = "OFFICIAL_CLUSTER_TIMEOUT"
JOBS = ("chief", "worker")
# Under the workdir: where non-chief workers write the checkpoints they must
# take part in, one folder each (on a shared filesystem, like the workdir).
SCRATCH = ".scratch"
# What a collective raises when a peer is gone: its heartbeats stopped or its
# connection broke (Unavailable, Aborted), or no answer within the timeout
# (DeadlineExceeded).
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
               tf.errors.DeadlineExceededError)
_EXAMPLE = ('{"cluster": {"worker": ["host0:port", "host1:port"]}, '
            '"task": {"type": "worker", "index": 0}}')
_STRATEGY = []


def timeout_seconds():
  value = os.environ.get(TIMEOUT_ENV, "")
  if not value:
    return DEFAULT_TIMEOUT
  if not re.fullmatch(r"[0-9]+", value) or int(value) <= 0:
    raise ValueError(f"{TIMEOUT_ENV} must be a positive number of seconds, "
                     f"got {value!r}")
  return int(value)


def parse_tf_config(text):
  """TF_CONFIG text -> (cluster {job: [address]}, task type, task index).

  Raises one-line ValueErrors naming what is wrong; only the `chief` and
  `worker` jobs of MultiWorkerMirroredStrategy are accepted (no ps/evaluator).
  """
  if text is None or not text.strip():
    raise ValueError("distribute=multi_worker needs the TF_CONFIG environment "
                     f"variable, e.g. {_EXAMPLE}")
  try:
    spec = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"TF_CONFIG is not valid JSON ({e}); expected e.g. "
                     f"{_EXAMPLE}") from None
  if not isinstance(spec, dict):
    raise ValueError(f"TF_CONFIG must be a JSON object, e.g. {_EXAMPLE}")
  for key in ("cluster", "task"):
    if not isinstance(spec.get(key), dict) or not spec[key]:
      raise ValueError(f"TF_CONFIG has no '{key}' object; expected e.g. "
                       f"{_EXAMPLE}")
  cluster = spec["cluster"]
  for job, addresses in cluster.items():
    if job not in JOBS:
      raise ValueError(f"TF_CONFIG cluster has job {job!r}; valid: "
                       f"{', '.join(JOBS)}")
    if (not isinstance(addresses, list) or not addresses
        or not all(isinstance(a, str) and re.fullmatch(r"[^\s:]+:[0-9]+", a)
                   for a in addresses)):
      raise ValueError(f"TF_CONFIG cluster.{job} must be a non-empty list of "
                       f"'host:port' strings, got {addresses!r}")
  if len(cluster.get("chief", [])) > 1:
    raise ValueError("TF_CONFIG cluster.chief must have one address, got "
                     f"{len(cluster['chief'])}")
  task = spec["task"]
  task_type, index = task.get("type"), task.get("index")
  if task_type not in cluster:
    raise ValueError(f"TF_CONFIG task.type {task_type!r} is not a job of the "
                     f"cluster; valid: {', '.join(sorted(cluster))}")
  if (not isinstance(index, int) or isinstance(index, bool)
      or not 0 <= index < len(cluster[task_type])):
    raise ValueError(f"TF_CONFIG task.index {index!r} is out of range for the "
                     f"{len(cluster[task_type])} {task_type} task(s)")
  return cluster, task_type, index


def task():
  """(task type, index) of this process from TF_CONFIG; ('worker', 0) without."""
  text = os.environ.get("TF_CONFIG")
  if not text:
    return "worker", 0
  _, task_type, index = parse_tf_config(text)
  return task_type, index


def is_chief(distribute="multi_worker"):
  """Whether this process writes the workdir: always, unless multi_worker
  and it is not the chief (task `chief`, or `worker` 0 without one).

  Reads TF_CONFIG only, so it can be called before the strategy exists
  (e.g. to decide which directory a process locks).
  """
  if distribute != "multi_worker":
    return True
  cluster, task_type, index = parse_tf_config(os.environ.get("TF_CONFIG"))
  if "chief" in cluster:
    return task_type == "chief"
  return index == 0


def make_strategy():
  """The process's one MultiWorkerMirroredStrategy, with bounded waits.

  Must run before TensorFlow executes any op (the strategy starts this
  process's gRPC server and configures collectives in the eager context).
  """
  if _STRATEGY:
    return _STRATEGY[0]
  cluster, task_type, index = parse_tf_config(os.environ.get("TF_CONFIG"))
  timeout = timeout_seconds()
  # Configured here rather than left to the strategy's defaults, which wait
  # an hour for workers to register.
  from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
  from tensorflow.python.eager import context
  leader = "chief" if "chief" in cluster else "worker"
  context.context().configure_coordination_service(
      service_type="standalone",
      service_leader=f"/job:{leader}/replica:0/task:0",
      cluster_register_timeout_in_ms=timeout * 1000,
      heartbeat_timeout_in_ms=min(timeout, 30) * 1000,
      shutdown_barrier_timeout_in_ms=timeout * 1000,
      coordinated_jobs=[coordination_config_pb2.CoordinatedJob(
          name=job, num_tasks=len(cluster[job])) for job in JOBS
                        if job in cluster])
  options = tf.distribute.experimental.CommunicationOptions(
      timeout_seconds=timeout,
      implementation=tf.distribute.experimental.CommunicationImplementation.RING)
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  # A peer that never comes up blocks the start-up in C++, past the register
  # timeout, holding the GIL and deaf to SIGTERM (measured): a Python thread
  # cannot end it, a watchdog process can.
  message = (f"{task_type} {index} of TF_CONFIG cluster {json.dumps(cluster)}: "
             f"not every worker connected within {timeout}s (is every worker "
             f"started, and is every address reachable from every host?)")
  watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(timeout),
                               message, str(os.getpid())])
  try:
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver, communication_options=options)
  except (tf.errors.OpError, RuntimeError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"{message} ({first})") from None
  finally:
    watchdog.kill()
    watchdog.wait()
  # Every worker has the same number of full batches (drop_remainder, a
  # stated cardinality): no partial-batch handling, which would erase the
  # static batch size the training step needs.
  strategy.extended.experimental_enable_get_next_as_optional = False
  _STRATEGY.append(strategy)
  return strategy


# argv: seconds, message, pid. Kills the pid (if still its parent) after the
# delay, unless killed first.
_WATCHDOG = """import os, sys, time
time.sleep(float(sys.argv[1]))
if os.getppid() == int(sys.argv[3]):
  print("error: " + sys.argv[2], file=sys.stderr, flush=True)
  os.kill(int(sys.argv[3]), 9)
"""


def is_multi_worker(strategy):
  """A MultiWorkerMirroredStrategy over a real cluster (not its local mode)."""
  return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
          and strategy.extended._in_multi_worker_mode())  # noqa: SLF001


def train_dataset(strategy, data, start_epoch, end_epoch):
  """`data.train(...)` as `fit()` should get it under `strategy`.

  Multi-worker: each worker builds only its replicas' rows of every global
  batch (`DataBundle.train(shard=...)`), split per local replica in replica
  order, so replica r of the cluster holds rows [r*local, (r+1)*local) of
  each global batch, as a 1-host MirroredStrategy has it. Every example is
  seen once per epoch, in the order of the 1-device run. Other strategies:
  the global batches unchanged (fit splits them).
  """
  if not is_multi_worker(strategy):
    return data.train(start_epoch, end_epoch)
  replicas = strategy.num_replicas_in_sync

  def dataset_fn(input_context):
    workers = input_context.num_input_pipelines
    worker = input_context.input_pipeline_id
    local = replicas // workers
    ds = data.train(start_epoch, end_epoch, shard=(worker, workers))
    if local > 1:  # consecutive per-replica batches go to local replicas in turn
      ds = ds.rebatch(data.batch_size // replicas, drop_remainder=True)
    return ds

  return strategy.distribute_datasets_from_function(dataset_fn)


class _WorkerCheckpointer(callbacks.Checkpointer):
  """A non-chief's Checkpointer: restores from the chief's directory, saves
  into its scratch directory (DIR/.scratch/<task>-<index>) and deletes it. It
  must still save: a save under MultiWorkerMirroredStrategy is a step every
  worker takes. Scratch left by a save killed midway goes at the next start."""

  def __init__(self, directory, trainer, keep):
    super().__init__(directory, trainer, keep)
    task_type, index = task()
    self.scratch = os.path.join(os.path.dirname(directory), SCRATCH,
                                f"{task_type}-{index}")
    _remove_scratch(self.scratch)

  def save(self, epoch, loss=None):
    # The same finiteness checks as the chief's (same weights: same verdict,
    # so no worker is left waiting in a collective save).
    if loss is not None and not np.isfinite(loss):
      raise callbacks.NonFiniteError(
          f"training diverged in epoch {epoch}: mean loss {loss}")
    self.check_finite(f"in epoch {epoch}")
    self.epoch.assign(epoch)
    try:
      manager = tf.train.CheckpointManager(self.checkpoint, self.scratch,
                                           max_to_keep=1)
      return manager.save(checkpoint_number=epoch)
    finally:
      _remove_scratch(self.scratch)


def _remove_scratch(path):
  """Deletes a scratch directory, and DIR/.scratch once it is empty."""
  shutil.rmtree(path, ignore_errors=True)
  try:
    os.rmdir(os.path.dirname(path))
  except OSError:  # absent, or another worker's scratch is in it
    pass


def checkpointer(distribute, directory, trainer, keep):
  """The run's Checkpointer: the plain one, except on a non-chief worker.

  The chief first deletes all of DIR/.scratch: what workers killed mid-save
  left, whatever the cluster was then. No other worker saves before the
  chief has built its checkpointer (a save follows collective steps).
  """
  if is_chief(distribute):
    shutil.rmtree(os.path.join(os.path.dirname(directory), SCRATCH),
                  ignore_errors=True)
    return callbacks.Checkpointer(directory, trainer, keep=keep)
  return _WorkerCheckpointer(directory, trainer, keep)


# (text in the error, what it says about the peer), first match wins.
_SYMPTOMS = (("stopped sending heartbeats", "it stopped sending heartbeats"),
             ("connection reset", "its connection was reset"),
             ("socket closed", "its connection closed"),
             ("connection refused", "it refused the connection"),
             ("failed to connect", "it could not be reached"))


def lost_peer(error, workdir):
  """The `error:` text for a collective that failed because a peer of this
  process's cluster is gone (killed, preempted, unreachable), or None.

  Names the peer(s) the error names (task and TF_CONFIG address), else the
  tasks it could be, and how to resume.
  """
  if not _STRATEGY or not isinstance(error, PEER_ERRORS):
    return None
  cluster, task_type, index = parse_tf_config(os.environ.get("TF_CONFIG"))
  text = str(error)
  # TF names a task /job:worker/replica:0/task:1 or /job:worker/task:1.
  named = []
  for job, i in re.findall(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", text):
    peer = (job, int(i))
    if (peer != (task_type, index) and peer not in named
        and peer[1] < len(cluster.get(job, []))):
      named.append(peer)
  others = [(job, i) for job in JOBS for i in range(len(cluster.get(job, [])))
            if (job, i) != (task_type, index)]
  if not named and len(others) == 1:
    named = others  # two tasks: the other one

  def name(peers, joiner):
    return joiner.join(f"{job} {i} ({cluster[job][i]})" for job, i in peers)
  if named:
    who = f"lost {name(named, ' and ')} of the TF_CONFIG cluster"
  else:
    who = (f"lost a peer of the TF_CONFIG cluster (the error does not say "
           f"which: {name(others, ' or ')})")
  lower = text.lower()
  symptom = next((said for key, said in _SYMPTOMS if key in lower),
                 f"no answer within {timeout_seconds()}s"
                 if isinstance(error, tf.errors.DeadlineExceededError)
                 else "a collective was aborted")
  return (f"{who}: {symptom} ({type(error).__name__}); rerun the same command "
          f"on every worker: the run resumes from the chief's last checkpoint "
          f"(if any) in {os.path.join(workdir, 'checkpoints')}")
