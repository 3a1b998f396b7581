r"""Exports any checkpoint of a run as a SavedModel (`serve`: [0,1] NHWC -> logits).

  python -m tools.export --workdir=runs/lrat                 # newest checkpoint
  python -m tools.export --workdir=runs/lrat --epoch=30 --output=/tmp/lrat30

Rebuilds the network from the run's own config.json and data.json, restores
the checkpoint and writes the SavedModel (default: WORKDIR/export-epoch<N>).
"""
import os
import sys

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.", required=True)
_EPOCH = flags.DEFINE_integer("epoch", None, "Checkpoint epoch (default: newest).")
_OUTPUT = flags.DEFINE_string("output", None, "SavedModel directory.")


def main(argv):
  del argv
  from official.common import console
  with console.muted_stderr(console.quiet_logs(sys.argv)):
    from official.core import export as export_lib
  try:
    path, number = export_lib.export_checkpoint(_WORKDIR.value, _EPOCH.value,
                                                _OUTPUT.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"exported epoch {number} to {path}")


if __name__ == "__main__":
  app.run(main)
