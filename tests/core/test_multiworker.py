"""distribute: multi_worker: 2 worker processes on 127.0.0.1 against 1 device.

Every worker process imports TensorFlow (slow here), so the processes are
few: one pair trains every method's case (tests/core/multiworker_job.py),
one pair runs official.train to the end, one pair is killed mid-run and one
pair resumes it; two single processes check start-up errors. Every wait has a
timeout and every process is killed at the end, pass or fail. The
official.train runs of the kill test get a private TMPDIR: nothing may be
left in the system temp dir.
"""
import glob
import json
import os
import signal
import subprocess
import re
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from official.core import cluster
from tests.core import helpers
from tests.core import multiworker_job
from tools import launch_local

REPO = helpers.REPO
TIMEOUT = "30"  # OFFICIAL_CLUSTER_TIMEOUT of the workers: start-up, peers


@pytest.fixture
def processes():
  """Popen objects to kill at the end of the test, whatever happens."""
  started = []
  yield started
  for p in started:
    if p.poll() is None:
      p.kill()
    p.wait(timeout=30)


def _env(tf_config=None, timeout=TIMEOUT, tmpdir=None):
  env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
         cluster.TIMEOUT_ENV: timeout, "TF_NUM_INTRAOP_THREADS": "1",
         "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}
  env.pop("TF_CONFIG", None)
  if tf_config is not None:
    env["TF_CONFIG"] = tf_config
  if tmpdir is not None:
    env["TMPDIR"] = str(tmpdir)
  return env


def _start(processes, args, tf_config=None, log=None, timeout=TIMEOUT,
           tmpdir=None, err=subprocess.STDOUT):
  p = subprocess.Popen([sys.executable, *args], cwd=REPO,
                       env=_env(tf_config, timeout, tmpdir),
                       stdout=log or subprocess.PIPE, stderr=err)
  processes.append(p)
  return p


def _launch(processes, args, seconds, tmpdir=None):
  """tools.launch_local with 2 workers; returns (exit code, output)."""
  p = _start(processes, ["-m", "tools.launch_local", "--num_workers=2",
                         "--", *args], tmpdir=tmpdir)
  out, _ = p.communicate(timeout=seconds)
  return p.returncode, out.decode(errors="replace")


def test_tf_config_errors_are_one_line():
  ok = launch_local.tf_configs([1234, 1235])[1]
  assert cluster.parse_tf_config(ok) == (
      {"worker": ["127.0.0.1:1234", "127.0.0.1:1235"]}, "worker", 1)
  cases = [
      (None, "distribute=multi_worker needs the TF_CONFIG environment variable"),
      ('{"cluster": {"worker": ["a:1"]', "TF_CONFIG is not valid JSON"),
      ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG has no 'task' object"),
      ('{"task": {"type": "worker", "index": 0}}',
       "TF_CONFIG has no 'cluster' object"),
      ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
       "TF_CONFIG task.type 'chief' is not a job of the cluster; valid: worker"),
      ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
       "TF_CONFIG task.index 1 is out of range for the 1 worker task"),
      ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
       "TF_CONFIG cluster has job 'ps'; valid: chief, worker"),
      ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}',
       "TF_CONFIG cluster.worker must be a non-empty list of 'host:port'"),
  ]
  for text, message in cases:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as e:
      cluster.parse_tf_config(text)
    assert "\n" not in str(e.value)
  # Who writes: worker 0 without a chief job, else the chief.
  two = {"worker": ["a:1", "b:1"]}
  for spec, chief in (({"cluster": two, "task": {"type": "worker", "index": 0}},
                       True),
                      ({"cluster": two, "task": {"type": "worker", "index": 1}},
                       False),
                      ({"cluster": {**two, "chief": ["c:1"]},
                        "task": {"type": "worker", "index": 0}}, False)):
    os.environ["TF_CONFIG"] = json.dumps(spec)
    try:
      assert cluster.is_chief("multi_worker") is chief
      assert cluster.is_chief("mirrored") is True
    finally:
      del os.environ["TF_CONFIG"]


def test_shards_are_the_replica_rows_of_each_global_batch():
  """Worker i of n reads rows [i*B/n, (i+1)*B/n) of every global batch: the
  layout official/common/replicas.py assumes; together, every example once."""
  from official.data import registry
  config = helpers.tiny_config()
  data = registry.load(config.data, batch_size=32, seed=3)
  full = [b["id"].numpy() for b in data.train(1, 3)]
  parts = [[b["id"].numpy() for b in data.train(1, 3, shard=(i, 2))]
           for i in range(2)]
  assert len(full) == len(parts[0]) == len(parts[1]) == 2 * data.steps_per_epoch
  for step, batch in enumerate(full):
    np.testing.assert_array_equal(batch[:16], parts[0][step])
    np.testing.assert_array_equal(batch[16:], parts[1][step])
  epoch = np.concatenate(full[:data.steps_per_epoch])
  assert len(set(epoch.tolist())) == data.steps_per_epoch * 32
  with pytest.raises(ValueError, match=r"shard=\(0, 3\).*divisible"):
    data.train(0, 1, shard=(0, 3))


def test_two_workers_equal_one_device(tmp_path, processes):
  """AT, GAIRAT, DONE (log_u), IAAT (eps memory), SRAT: after a few steps the
  2-worker weights and method state equal 1-device ones, on both workers."""
  out = tmp_path / "workers"
  out.mkdir()
  code, log = _launch(processes, ["-m", "tests.core.multiworker_job",
                                  str(out)], seconds=420)
  assert code == 0, log[-3000:]
  assert "worker 0: 2 replicas" in log and "worker 1: 2 replicas" in log
  for name in multiworker_job.CASES:
    one = multiworker_job.train_case(name, "default", str(tmp_path / name))
    chief = np.load(out / f"{name}-worker0.npz")
    other = np.load(out / f"{name}-worker1.npz")
    assert sorted(chief.files) == sorted(one)
    assert int(chief["steps"]) == int(one["steps"]) == multiworker_job.CASES[
        name][3]
    for key in one:
      np.testing.assert_allclose(chief[key], one[key], atol=1e-4,
                                 err_msg=f"{name}: {key}")
      np.testing.assert_array_equal(chief[key], other[key],
                                    err_msg=f"{name}: {key} across workers")
    # The weights moved (not two untouched initialisations).
    assert np.abs(one["network/0"] - _initial(name, tmp_path)).max() > 1e-4
  # IAAT's memory and DONE's log_u hold what the steps wrote.
  iaat = np.load(out / "iaat-worker0.npz")
  assert (iaat["state/eps"] > 0).sum() > 0
  assert np.isfinite(np.load(out / "done-worker0.npz")["state/log_u"]).all()


def _initial(name, tmp_path):
  from official.core import experiment
  module, preset, overrides, _, _ = multiworker_job.CASES[name]
  config = helpers.tiny_config(module, preset, **overrides)
  return experiment.prepare(config, str(tmp_path / f"init-{name}")
                            ).trainer.network.weights[0].numpy()


def _config_file(tmp_path):
  path = tmp_path / "tiny_at.py"
  path.write_text(
      "from tests.core import helpers\n\n\n"
      "def get_config(arg=None):\n"
      "  c = helpers.tiny_config('at', 'digits', distribute='multi_worker',"
      " epochs=3)\n"
      "  c.eval.attacks, c.eval.reports = ('natural', 'pgd20'), ()\n"
      "  return c\n")
  return str(path)


def _checkpoint(workdir, epoch):
  reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints",
                                                 f"ckpt-{epoch}"))
  # Network weights (saved under optimizer/_trainable_variables), momenta,
  # iterations, epoch.
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_official_train_chief_writes_and_a_killed_worker_resumes(
    tmp_path, processes):
  config = _config_file(tmp_path)
  train = ["-m", "official.train", f"--config={config}"]
  tmpdir = tmp_path / "tmpdir"  # the workers' system temp dir
  tmpdir.mkdir()

  # 1. Uninterrupted: only the chief writes tb/, eval.json, export/.
  full = str(tmp_path / "full")
  code, log = _launch(processes, [*train, f"--workdir={full}"], seconds=420,
                      tmpdir=tmpdir)
  assert code == 0, log[-3000:]
  for name in ("tb", "eval.json", "export", "config.json", "checkpoints"):
    assert os.path.exists(os.path.join(full, name)), name
  pids = {int(line.rsplit(" ", 1)[1]) for line in log.splitlines()
          if line.startswith("[launch_local] worker 0: pid")}
  events = glob.glob(os.path.join(full, "tb", "**", "events.out.tfevents.*"),
                     recursive=True)
  assert events and {int(os.path.basename(e).split(".")[-3])
                     for e in events} == pids
  evaluating = [line for line in log.splitlines() if "Evaluating" in line]
  assert evaluating and all(l.startswith("[worker 0]") for l in evaluating)
  # The other worker's checkpoints went to DIR/.scratch/worker-1, deleted;
  # nothing in the system temp dir.
  assert not os.path.exists(os.path.join(full, cluster.SCRATCH))
  assert os.listdir(tmpdir) == []
  assert sorted(os.listdir(os.path.join(full, "checkpoints"))) == sorted(
      ["checkpoint"] + [f"ckpt-{e}.{s}" for e in (1, 2, 3)
                        for s in ("index", "data-00000-of-00001")])

  # 2. Worker 1 killed (SIGKILL) while it saves a checkpoint (its scratch
  # directory exists for 0.03-1.5 s per save here): worker 0 stops with one
  # error line naming it, exit code 3.
  killed = str(tmp_path / "killed")
  scratch = os.path.join(killed, cluster.SCRATCH, "worker-1")
  with open(tmp_path / "w0.log", "wb") as log0, \
       open(tmp_path / "w0.err", "wb") as err0:
    ports = launch_local.free_ports(2)
    w0, w1 = [_start(processes, [*train, f"--workdir={killed}"], tf_config=c,
                     log=log0 if i == 0 else subprocess.DEVNULL,
                     err=err0 if i == 0 else subprocess.DEVNULL,
                     tmpdir=tmpdir)
              for i, c in enumerate(launch_local.tf_configs(ports))]
    deadline = time.time() + 300
    while not os.path.exists(scratch):
      assert time.time() < deadline and w0.poll() is None and w1.poll() is None
      time.sleep(0.005)
    w1.send_signal(signal.SIGKILL)
    killed_at = time.time()
    w0.wait(timeout=180)  # a bounded stop, not a hang (85 s at load 40)
  stopped_after = time.time() - killed_at
  mid_save = os.path.exists(scratch)
  err = (tmp_path / "w0.err").read_text()
  lines = err.strip().splitlines()
  assert w0.returncode == 3, err[-3000:]
  assert "Traceback" not in err, err[-3000:]
  assert [l for l in lines if l.startswith("error:")] == lines[-1:], err[-3000:]
  # The symptom (heartbeats, connection) depends on the moment of the kill:
  # test_a_lost_peer_is_one_error_line_naming_it has the exact texts.
  assert re.fullmatch(
      re.escape(f"error: lost worker 1 (127.0.0.1:{ports[1]}) of the "
                "TF_CONFIG cluster: ") + r"[^;]+ \((Unavailable|Aborted|"
      r"DeadlineExceeded)Error\); " + re.escape(
          "rerun the same command on every worker: the run resumes from the "
          f"chief's last checkpoint (if any) in {killed}/checkpoints"),
      lines[-1]), err[-3000:]
  assert not os.path.exists(os.path.join(killed, "eval.json"))
  # A killed save leaves its scratch in the workdir, never in the system
  # temp dir (only TensorFlow's autograph files there: a SIGKILLed process
  # cannot delete them at exit).
  left_in_tmp = set(os.listdir(tmpdir))
  assert all(n.startswith("__autograph_generated_file") for n in left_in_tmp)
  # What a save killed midway leaves (made here if the kill came just after
  # the save), and a worker that is not in the cluster any more.
  os.makedirs(os.path.join(scratch, "ckpt-1_temp"), exist_ok=True)
  os.makedirs(os.path.join(killed, cluster.SCRATCH, "worker-5"))

  # 3. The same commands again: resume from the last checkpoint, finish with
  # the weights of the uninterrupted run; the scratch is gone.
  code, log = _launch(processes, [*train, f"--workdir={killed}"], seconds=420,
                      tmpdir=tmpdir)
  assert code == 0, log[-3000:]
  resumed = [line for line in log.splitlines() if "Resuming" in line]
  assert resumed and "from epoch 3" not in resumed[0], resumed
  assert not os.path.exists(os.path.join(killed, cluster.SCRATCH))
  assert set(os.listdir(tmpdir)) == left_in_tmp
  a, b = _checkpoint(full, 3), _checkpoint(killed, 3)
  assert sorted(a) == sorted(b)
  assert len([k for k in a if "_trainable_variables" in k]) == 14  # SmallCNN
  for key in a:
    np.testing.assert_allclose(b[key], a[key], atol=1e-5, err_msg=key)
  print(f"worker 0 stopped {stopped_after:.0f}s after worker 1 was killed "
        f"({'during' if mid_save else 'just after'} its save)")


def test_a_lost_peer_is_one_error_line_naming_it(monkeypatch):
  """What TensorFlow raised in the survivor of a SIGKILLed peer (measured:
  the chief's and worker 1's side), and a timeout that names no one."""
  two = {"worker": ["127.0.0.1:5001", "127.0.0.1:5002"]}
  three = {"worker": [*two["worker"], "127.0.0.1:5003"]}
  heartbeat = (
      "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device"
      "_/job:worker/replica:0/task:0/device:CPU:0}} Collective ops is aborted "
      "by: Error reported from /job:worker/task:1: The following tasks are "
      "unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\n"
      "The tasks have crashed. [Op:CollectiveReduceV2]")
  refused = (
      "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device"
      "_/job:worker/replica:0/task:1/device:CPU:0}} Collective ops is aborted "
      "by: failed to connect to all addresses; last error: UNKNOWN: "
      "ipv4:127.0.0.1:5001: Failed to connect to remote host: Connection "
      "refused\nAdditional GRPC error information from remote target "
      "/job:worker/replica:0/task:0 while calling /tensorflow.WorkerService/"
      "CompleteInstance [Op:CollectiveReduceV2]")
  resume = ("rerun the same command on every worker: the run resumes from the "
            "chief's last checkpoint (if any) in DIR/checkpoints")
  assert cluster.lost_peer(tf.errors.UnavailableError(None, None, heartbeat),
                           "DIR") is None  # no cluster in this process
  monkeypatch.setattr(cluster, "_STRATEGY", ["a multi-worker strategy"])
  monkeypatch.setenv(cluster.TIMEOUT_ENV, "30")
  cases = [
      (two, 0, tf.errors.UnavailableError(None, None, heartbeat),
       "lost worker 1 (127.0.0.1:5002) of the TF_CONFIG cluster: it stopped "
       "sending heartbeats (UnavailableError)"),
      (two, 1, tf.errors.UnavailableError(None, None, refused),
       "lost worker 0 (127.0.0.1:5001) of the TF_CONFIG cluster: it refused "
       "the connection (UnavailableError)"),
      (three, 0, tf.errors.DeadlineExceededError(None, None, "timed out"),
       "lost a peer of the TF_CONFIG cluster (the error does not say which: "
       "worker 1 (127.0.0.1:5002) or worker 2 (127.0.0.1:5003)): no answer "
       "within 30s (DeadlineExceededError)")]
  for spec, index, error, message in cases:
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": spec, "task": {"type": "worker", "index": index}}))
    assert cluster.lost_peer(error, "DIR") == f"{message}; {resume}"
  # Not a peer's loss: raised as it is.
  assert cluster.lost_peer(tf.errors.InvalidArgumentError(None, None, "x"),
                           "DIR") is None


def test_unreachable_peer_and_bad_tf_config_end_with_one_error_line(
    tmp_path, processes):
  train = ["-m", "official.train", f"--config={_config_file(tmp_path)}",
           f"--workdir={tmp_path / 'run'}"]
  # Worker 0 of 2 whose peer never starts: an error line after the timeout.
  lonely = launch_local.tf_configs(launch_local.free_ports(2))[0]
  start = time.time()
  p = _start(processes, train, tf_config=lonely, timeout="10")
  out, _ = p.communicate(timeout=130)
  lines = [l for l in out.decode().splitlines() if l.startswith("error:")]
  assert p.returncode != 0 and len(lines) == 1, out.decode()[-2000:]
  assert "not every worker connected within 10s" in lines[0]
  assert time.time() - start < 130  # 10s + importing TensorFlow
  # Malformed JSON: the same one-line error as any bad config, exit code 2.
  p = _start(processes, train, tf_config='{"cluster": ')
  out, _ = p.communicate(timeout=120)
  lines = [l for l in out.decode().splitlines() if l.startswith("error:")]
  assert p.returncode == 2 and len(lines) == 1, out.decode()[-2000:]
  assert lines[0].startswith("error: TF_CONFIG is not valid JSON")
  assert not os.path.exists(tmp_path / "run")
