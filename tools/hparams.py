r"""(Re)writes the TensorBoard HParams summaries of finished runs.

  python -m tools.hparams --root=runs/protocol_hard
  python -m tools.hparams --root=runs/protocol_hard --experiment
  /work/main/.venv/bin/tensorboard --logdir runs/protocol_hard   # HPARAMS tab

Every run of official.train writes DIR/tb/hparams when it finishes
(official/core/hparams.py): its flattened config and final metrics (accuracy
and worst class of every attack of eval.json, and of the AutoAttack reports
tools.evaluate wrote beside it, e.g. DIR/autoattack.json). This tool writes
them for runs that predate that, and again after `tools.protocol --evaluate`
added a report. Every directory below --root holding a config.json is a run;
a finished one (DIR/done.json; or, from before done.json, eval.json and an
export without a lock) gets its DIR/tb/hparams (re)written, an unfinished one
is skipped with a note. `--experiment` also writes the experiment summary at
--root: the keys that differ between the runs found (listed and shown
first; plus objective, method and seed) and their metrics with readable
names, a tidier dashboard than TensorBoard's own inference (every key);
rerun it after adding runs, and restart a running TensorBoard (it keeps the
experiment it read first). A bad --root, or no finished run under it, ends with one
`error:` line (exit 2).
"""
import os
import sys

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

from official.common import console  # noqa: E402
from official.core import workdir as workdir_lib  # noqa: E402

_ROOT = flags.DEFINE_string("root", None, "Directory holding run directories "
                            "(searched recursively), e.g. runs/protocol_hard.")
_EXPERIMENT = flags.DEFINE_bool(
    "experiment", False, "Also write the experiment summary (hparams_config) "
    "at --root for the runs found.")

_SKIP = ("checkpoints", "export", "tb")


def find_runs(root):
  """Sorted run directories (holding a config.json) below `root`."""
  runs = []
  for directory, subdirs, files in os.walk(root):
    subdirs[:] = sorted(d for d in subdirs if d not in _SKIP
                        and not d.startswith("export"))
    if "config.json" in files:
      runs.append(directory)
  return sorted(runs)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  root = _ROOT.value
  if not root or not os.path.isdir(root):
    _fail(f"--root={root} is not a directory")
  runs = find_runs(root)
  done = [r for r in runs if workdir_lib.is_finished(r)]
  if not done:
    _fail(f"no finished run (a directory with config.json and done.json) "
          f"under --root={root}")
  with console.muted_stderr(console.quiet_logs(sys.argv)):
    from official.core import hparams
  written = {}
  for workdir in runs:
    name = os.path.relpath(workdir, root)
    if workdir not in done:
      print(f"skipped {name}: not finished")
      continue
    try:
      written[workdir] = hparams.write_run(workdir)
    except (ValueError, OSError) as e:
      print(f"skipped {name}: {str(e).splitlines()[0]}")
      continue
    _, metrics = written[workdir]
    shown = ", ".join(f"{t.split('/')[1]} {v:.4f}" for t, v in metrics.items()
                      if t.endswith("/accuracy"))
    print(f"wrote {os.path.join(name, hparams.SUBDIR)}: {shown}")
  if _EXPERIMENT.value and written:
    keys, tags = hparams.write_experiment(root, written)
    print(f"wrote the experiment at {root}: {len(keys)} keys "
          f"({', '.join(keys)}), {len(tags)} metrics")
  print(f"view: {os.path.join(os.path.dirname(sys.executable), 'tensorboard')}"
        f" --logdir {root}  (HPARAMS tab)")


def _fail(message):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


if __name__ == "__main__":
  app.run(main)
