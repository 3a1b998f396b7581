r"""Runs N multi-worker processes on this machine, as a cluster of N hosts would.

  python -m tools.launch_local --num_workers=2 -- -m official.train \
      --config=configs/at.py:digits --config.distribute=multi_worker \
      --workdir=runs/at-2workers

Everything after `--` is the python command line of ONE worker; each worker
gets it unchanged plus its own TF_CONFIG (free ports on 127.0.0.1, worker i of
N; worker 0 is the chief). Their output is streamed line by line with a
`[worker i]` prefix. If one worker fails, the others are stopped and the exit
code is the failed worker's; Ctrl-C stops them all.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags

_NUM_WORKERS = flags.DEFINE_integer("num_workers", 2, "Worker processes.")
_THREADS = flags.DEFINE_integer(
    "threads_per_worker", 0, "TensorFlow/OpenMP threads per worker (0: "
    "TensorFlow's default). On one machine, cores / workers avoids "
    "oversubscription.")
_GRACE = flags.DEFINE_float(
    "grace_seconds", 5.0, "After a worker fails: seconds the others get to "
    "end on their own before they are killed.")


def free_ports(n):
  """n distinct free TCP ports on 127.0.0.1 (released just before use)."""
  sockets = []
  for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def tf_configs(ports):
  """The TF_CONFIG of every worker of a cluster on these local ports."""
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  return [json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                   "index": i}})
          for i in range(len(ports))]


def _stream(index, pipe, lock):
  for line in iter(pipe.readline, b""):
    with lock:
      sys.stdout.write(f"[worker {index}] "
                       f"{line.decode(errors='replace').rstrip()}\n")
      sys.stdout.flush()
  pipe.close()


def _stop(processes, grace):
  """SIGTERM, then SIGKILL after `grace` seconds (TensorFlow may ignore
  SIGTERM while it waits for a peer)."""
  for p in processes:
    if p.poll() is None:
      p.send_signal(signal.SIGTERM)
  deadline = time.time() + grace
  for p in processes:
    try:
      p.wait(timeout=max(0.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


def launch(args, num_workers, threads=0, grace=5.0):
  """Starts the workers, streams their output; returns the exit code."""
  env = dict(os.environ)
  if threads:
    for key in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                "OMP_NUM_THREADS"):
      env[key] = str(threads)
  lock = threading.Lock()
  processes, streams = [], []
  try:
    for index, tf_config in enumerate(tf_configs(free_ports(num_workers))):
      p = subprocess.Popen([sys.executable, *args],
                           env={**env, "TF_CONFIG": tf_config},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
      processes.append(p)
      with lock:
        print(f"[launch_local] worker {index}: pid {p.pid}", flush=True)
      t = threading.Thread(target=_stream, args=(index, p.stdout, lock),
                           daemon=True)
      t.start()
      streams.append(t)
    code = 0
    while any(p.poll() is None for p in processes):
      failed = [p for p in processes if p.poll() not in (None, 0)]
      if failed:
        code = failed[0].returncode
        index = processes.index(failed[0])
        with lock:
          print(f"[launch_local] worker {index} exited with {code}: stopping "
                f"the others", flush=True)
        break
      time.sleep(0.2)
    _stop(processes, grace)
    for t in streams:
      t.join(timeout=5)
    if not code:
      code = next((p.returncode for p in processes if p.returncode), 0)
    return 128 - code if code < 0 else code  # killed by signal s: 128 + s
  except KeyboardInterrupt:
    _stop(processes, grace)
    return 130


def main(argv):
  args = argv[1:]
  if not args:
    print("error: no worker command: put the python arguments of one worker "
          "after `--`, e.g. -- -m official.train --config=...",
          file=sys.stderr)
    sys.exit(2)
  if _NUM_WORKERS.value < 1:
    print(f"error: --num_workers must be at least 1, got {_NUM_WORKERS.value}",
          file=sys.stderr)
    sys.exit(2)
  sys.exit(launch(args, _NUM_WORKERS.value, _THREADS.value, _GRACE.value))


if __name__ == "__main__":
  app.run(main)
