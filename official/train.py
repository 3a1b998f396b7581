r"""Trains, evaluates and exports an adversarially robust classifier.

  python -m official.train --config=configs/lrat.py --workdir=runs/lrat
  python -m official.train --config=configs/at.py:digits --config.epochs=5

Reads top to bottom: config -> data -> model -> objective, attack, method ->
fit (checkpoint every epoch, resume from the last) -> evaluation -> export.
Everything that can be wrong with the input is checked in `prepare()`, before
anything is written, so a bad flag leaves an existing workdir untouched.
"""
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

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/lrat.py[:preset,...].",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory (default: runs/<config>-<preset>).")


def default_workdir(config_arg):
  path, _, preset = (config_arg or "").partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("runs", f"{name}-{preset.replace(',', '-')}" if preset else name)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from official.core import experiment  # heavy imports after flag parsing
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].serialize()
                                              .partition("=")[2])
  try:  # config_flags loads the file lazily: a missing one fails here
    run = experiment.prepare(_CONFIG.value, workdir)
  except (ValueError, OSError, KeyError, TypeError) as e:
    _fail(one_line(e))
  experiment.train_and_evaluate(run)


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


def _fail(message):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def run_main():
  # One-line errors for bad flags too (unknown --config.key, bad preset,
  # missing config file), instead of absl's traceback.
  try:
    argv = flags.FLAGS(sys.argv)
  except (flags.Error, AttributeError, KeyError, OSError, ValueError,
          TypeError) as e:
    message = None
    if isinstance(e, (AttributeError, KeyError)):
      try:
        message = unknown_override(sys.argv)
      except Exception:  # noqa: BLE001 -- fall back to the original message
        message = None
    _fail(message or one_line(e))
  flags.FLAGS.mark_as_parsed()
  logging.set_verbosity(logging.INFO)
  app.run(main, argv=argv, flags_parser=lambda a: a)


if __name__ == "__main__":
  run_main()
