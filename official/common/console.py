"""A console a person can read: TensorFlow's start-up noise off by default.

TF prints `oneDNN custom operations` / `Could not find cuda drivers` while it
loads (before it reads its log level), then `E0000 ... CUDA error` on a CPU
machine, and absl logs INFO lines such as `Sharding callback duration`: all
look like failures. Every command line of the project (official.train,
tools.evaluate, tools.export) hides them unless `--verbosity` is given.
"""
import contextlib
import os
import sys
import tempfile

from absl import logging


@contextlib.contextmanager
def muted_stderr(quiet):
  """Drops what TF's C++ side prints while it loads (`oneDNN custom
  operations`, `Could not find cuda drivers`: printed before its log level is
  read). Replayed if the import fails."""
  if not quiet:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    except BaseException:
      os.dup2(saved, 2)
      captured.seek(0)
      sys.stderr.write(captured.read().decode(errors="replace"))
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def quiet_logs(argv):
  """absl INFO (TF's `Sharding callback duration`, ...) and TF's C++ lines
  (`E0000 ... CUDA error` on a CPU machine) look like failures: off unless
  --verbosity is given (0 = INFO, 1+ = debug). Must run before TF is imported.
  """
  if any(a.startswith(("--verbosity", "-v=", "--v=")) or a == "-v" for a in argv):
    return False
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  logging.set_verbosity(logging.WARNING)
  return True
