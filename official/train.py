r"""Trains, evaluates and exports an adversarially robust classifier.

  python -m official.train --config=configs/lrat.py --workdir=runs/lrat
  python -m official.train --config=configs/at.py:digits --config.epochs=5

Reads top to bottom: config -> data -> model -> objective, attack, method ->
fit (checkpoint every epoch, resume from the last) -> evaluation -> export.
Everything that can be wrong with the input is checked in `prepare()`, before
anything is written, so a bad flag leaves an existing workdir untouched.
"""
import os
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
  try:
    run = experiment.prepare(_CONFIG.value, workdir)
  except (ValueError, FileNotFoundError, KeyError, TypeError) as e:
    _fail(str(e).strip().splitlines()[0] if str(e).strip() else repr(e))
  experiment.train_and_evaluate(run)


def _fail(message):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def run_main():
  # One-line errors for bad flags too (unknown --config.key, bad preset).
  try:
    argv = flags.FLAGS(sys.argv)
  except flags.Error as e:
    _fail(str(e).strip().splitlines()[0])
  flags.FLAGS.mark_as_parsed()
  logging.set_verbosity(logging.INFO)
  app.run(main, argv=argv, flags_parser=lambda a: a)


if __name__ == "__main__":
  run_main()
