"""tools/launch_local: TF_CONFIG per worker, prefixed logs, stop all on a failure.

The workers here are tiny python programs (no TensorFlow): seconds in total.
tests/core/test_multiworker.py runs real training through the same launcher.
"""
import json
import os
import subprocess
import sys
import time

from tools import launch_local

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_PRINT_TASK = ("import json, os; c = json.loads(os.environ['TF_CONFIG']); "
               "print(c['task']['index'], *c['cluster']['worker']); "
               "print('threads', os.environ.get('TF_NUM_INTRAOP_THREADS'))")


def test_every_worker_gets_its_tf_config_and_a_prefix(capsys):
  assert launch_local.launch(["-c", _PRINT_TASK], num_workers=3, threads=1) == 0
  lines = capsys.readouterr().out.splitlines()
  tasks = sorted(l for l in lines if l.startswith("[worker") and "127.0.0.1"
                 in l)
  assert len(tasks) == 3
  addresses = {tuple(l.split()[3:]) for l in tasks}
  assert len(addresses) == 1  # one cluster, seen alike by every worker
  ports = [int(a.split(":")[1]) for a in addresses.pop()]
  assert len(set(ports)) == 3
  for i, line in enumerate(tasks):
    assert line.startswith(f"[worker {i}] {i} ")
  assert sum(l.endswith("threads 1") for l in lines) == 3


def test_tf_configs_name_worker_i_of_n():
  configs = [json.loads(c) for c in launch_local.tf_configs([5, 6])]
  assert configs == [
      {"cluster": {"worker": ["127.0.0.1:5", "127.0.0.1:6"]},
       "task": {"type": "worker", "index": i}} for i in (0, 1)]


def test_one_failure_stops_the_others_and_sets_the_exit_code(capsys):
  # Worker 0 ignores SIGTERM (as TensorFlow does while it waits for a peer)
  # and would sleep for a minute; worker 1 fails at once with code 3.
  script = ("import json, os, signal, sys, time; "
            "i = json.loads(os.environ['TF_CONFIG'])['task']['index']; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); "
            "sys.exit(3) if i == 1 else time.sleep(60)")
  start = time.time()
  assert launch_local.launch(["-c", script], num_workers=2, grace=1.0) == 3
  assert time.time() - start < 30
  out = capsys.readouterr().out
  assert "[launch_local] worker 1 exited with 3: stopping the others" in out


def test_a_killed_worker_gives_128_plus_the_signal():
  script = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
  assert launch_local.launch(["-c", script], num_workers=1) == 128 + 9


def test_missing_command_is_one_error_line():
  p = subprocess.run([sys.executable, "-m", "tools.launch_local",
                      "--num_workers=2"], cwd=REPO, capture_output=True,
                     text=True, timeout=60)
  assert p.returncode == 2
  assert p.stderr.strip().splitlines() == [
      "error: no worker command: put the python arguments of one worker "
      "after `--`, e.g. -- -m official.train --config=..."]
