r"""Trains, evaluates and exports an adversarially robust classifier.

  python -m official.train --config=configs/lrat.py --workdir=runs/lrat
  python -m official.train --config=configs/at.py:digits --config.epochs=5
  python -m official.train --config=configs/lrat.py --dry_run   # cost, no run

A workdir holds one run: it is locked while a run uses it, and resuming it
with another config or other data is refused (official/core/workdir.py).
A non-finite loss or weight ends the run with exit code 1, keeping the last
finite checkpoint; bad input ends with one `error:` line and exit code 2; a
multi-worker run whose peer is lost (killed, preempted, unreachable) ends with
one `error:` line naming it and exit code 3: rerun the same command on every
worker to resume.

Reads top to bottom: config -> data -> model -> objective, attack, method ->
fit (checkpoint every epoch, resume from the last) -> evaluation -> export.
Everything that can be wrong with the input is checked in `prepare()`, before
anything is written, so a bad flag leaves an existing workdir untouched.
"""
import hashlib
import importlib.util
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:  # config files import `configs.common`
  sys.path.insert(0, _REPO_ROOT)

from official.common import console  # noqa: E402  (absl only: no TensorFlow)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/lrat.py[:preset,...].",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory (default: runs/<config>-<preset>, plus a "
    "short hash of the --config.* overrides that change the training).")
_DRY_RUN = flags.DEFINE_bool(
    "dry_run", False, "Build the whole config on synthetic data of the "
    "dataset's shape, time a few training steps and an evaluation batch per "
    "attack, print parameters, peak memory, examples/s and the projected wall "
    "time of the schedule; write nothing (official/core/dry_run.py).")
_ALLOW = flags.DEFINE_list(
    "allow_config_change", [],
    "Config keys (or `prefix.*`) that may differ from the workdir's "
    "config.json on resume, besides the always safe ones (epochs, eval.*, "
    "checkpoints_to_keep, xla, data.eval_batch_size); e.g. "
    "optimizer.learning_rate to resume a diverged run at a lower rate.")


def config_overrides(argv):
  """The `--config.k=v` arguments, as `k=v`, in command-line order."""
  out = []
  for i, arg in enumerate(argv):
    if arg.startswith("--config."):
      if "=" in arg:
        out.append(arg[len("--config."):])
      elif i + 1 < len(argv):
        out.append(f"{arg[len('--config.'):]}={argv[i + 1]}")
  return out


def default_workdir(config_arg, overrides=()):
  """runs/<config>-<presets>[-<hash>]: the hash (6 hex digits) covers the
  overrides of keys that change the training (not epochs, eval.*, ...), so
  `--config.seed=1` gets its own workdir and `--config.epochs=9` extends."""
  from official.core import workdir as workdir_lib  # numpy only: light
  path, _, preset = (config_arg or "").partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  name = f"{name}-{preset.replace(',', '-')}" if preset else name
  changing = sorted(o for o in overrides if not workdir_lib.key_matches(
      o.split("=", 1)[0], workdir_lib.SAFE_KEYS))
  if changing:
    name += "-" + hashlib.sha256("\n".join(changing).encode()).hexdigest()[:6]
  return os.path.join("runs", name)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if _CONFIG.value is None:  # before the heavy imports: fail in a second
    _fail("--config is required, e.g. --config=configs/at.py:digits")
  if _DRY_RUN.value:
    return dry_run()
  workdir = _WORKDIR.value or default_workdir(
      flags.FLAGS["config"].serialize().partition("=")[2],
      config_overrides(sys.argv))
  print(f"Workdir: {workdir}", flush=True)
  with console.muted_stderr(_QUIET):  # heavy imports after flag parsing
    from official.core import callbacks
    from official.core import cluster
    from official.core import experiment
  try:  # config_flags loads the file lazily: a missing one fails here
    run = experiment.prepare(_CONFIG.value, workdir, _ALLOW.value)
  except (ValueError, OSError, KeyError, TypeError) as e:
    _fail(one_line(e))
  except cluster.PEER_ERRORS as e:
    _fail_if_peer_lost(e, cluster.lost_peer(e, workdir))
  try:
    results = experiment.train_and_evaluate(run)
  except callbacks.NonFiniteError as e:
    _fail(str(e), code=1)
  except cluster.PEER_ERRORS as e:
    _fail_if_peer_lost(e, cluster.lost_peer(e, workdir))
  if results is not None:  # None: a non-chief worker (the chief reports)
    print(experiment.summary(run, results), flush=True)


def dry_run():
  """--dry_run: nothing is written, the workdir is not even named."""
  with console.muted_stderr(_QUIET):
    from official.core import dry_run as dry_run_lib
  try:
    report = dry_run_lib.run(_CONFIG.value)
  except (ValueError, OSError, KeyError, TypeError) as e:
    _fail(one_line(e))
  print(dry_run_lib.format_report(report), flush=True)


def one_line(error):
  """The informative line of an error whose text may hold a whole traceback."""
  lines = [l.strip() for l in str(error).strip().splitlines() if l.strip()]
  for line in reversed(lines):  # config_flags wraps the loader's traceback
    match = re.match(r"^[\w.]*(Error|Exception): (.*)$", line)
    if match:
      return match.group(2)
  for line in lines:
    if "No such file" in line:
      return line.split("]", 1)[-1].strip()
  return lines[0] if lines else repr(error)


def config_file(argv):
  arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "")
  return arg.partition(":")[0] or "the config file"


def unknown_override(argv):
  """Names the `--config.a.b=v` override whose key the config lacks, if any."""
  config_arg = next((a.split("=", 1)[1] for a in argv
                     if a.startswith("--config=")), None)
  if config_arg is None:
    return None
  path, _, preset = config_arg.partition(":")
  spec = importlib.util.spec_from_file_location("config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(preset or None)
  for arg in argv:
    match = re.match(r"^--config\.([\w.]+)=", arg)
    if not match:
      continue
    node, keys = config, match.group(1).split(".")
    for depth, key in enumerate(keys):
      if not hasattr(node, "keys") or key not in node:
        parent = ".".join(keys[:depth]) or "config"
        valid = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none"
        return (f"unknown config key '{match.group(1)}' (no '{key}' in "
                f"{parent}); valid: {valid}")
      node = node[key]
  return None


def _fail(message, code=2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def _fail_if_peer_lost(error, message):
  """Exit code 3 with `message` (cluster.lost_peer's line) if there is one;
  else `error` was not a lost peer: raised as it is."""
  if message is None:
    raise error
  _fail(message, code=3)


_QUIET = []


def run_main():
  # One-line errors for bad flags too (unknown --config.key, bad preset,
  # missing config file), instead of absl's traceback.
  try:
    argv = flags.FLAGS(sys.argv)
  except SyntaxError as e:  # the config file itself does not parse
    _fail(f"config file {e.filename} line {e.lineno}: {e.msg}")
  except (flags.Error, AttributeError, KeyError, OSError, ValueError,
          TypeError) as e:
    message = None
    if isinstance(e, (AttributeError, KeyError)):
      try:
        message = unknown_override(sys.argv)
      except Exception:  # noqa: BLE001 -- fall back to the original message
        message = None
    _fail(message or one_line(e))
  except Exception as e:  # noqa: BLE001 -- the config's get_config raised
    _fail(f"{config_file(sys.argv)}: get_config raised {type(e).__name__}: "
          f"{one_line(e)}")
  flags.FLAGS.mark_as_parsed()
  if console.quiet_logs(sys.argv):
    _QUIET.append(True)
  else:
    logging.set_verbosity(flags.FLAGS.verbosity)
  app.run(main, argv=argv, flags_parser=lambda a: a)


if __name__ == "__main__":
  run_main()
