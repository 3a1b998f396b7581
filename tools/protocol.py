r"""Runs the small-scale protocol (shared/specs/protocol.md) and tabulates it.

  python -m tools.protocol --methods=at,gairat,mail,lrat --seeds=0,1,2
  python -m tools.protocol --methods=at,gairat --table_only      # just the table

Each entry of --methods is `config[:presets]`; `--preset` (default `mnist10k`)
is appended, so `mail:trades` runs `configs/mail.py:trades,mnist10k`. Runs go
to `--root/<entry>-s<seed>` via `python -m official.train` (one process each,
as a user would run them); a run whose eval.json exists is not run again, and
an interrupted one resumes from its checkpoint. The table (mean ± std over
seeds, in %) is printed as markdown and written to `--root/table.md`.
"""
import json
import os
import subprocess
import sys

import numpy as np
from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_METHODS = flags.DEFINE_list("methods", ["at"], "config[:presets] entries.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_PRESET = flags.DEFINE_string("preset", "mnist10k", "Preset appended to each entry.")
_ROOT = flags.DEFINE_string("root", "runs/protocol", "Where runs are written.")
_OVERRIDES = flags.DEFINE_list("overrides", [], "Extra --config.k=v for every run.")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Only tabulate existing runs.")
_COLUMNS = flags.DEFINE_list(
    "columns", ["natural", "fgsm", "pgd20", "cw", "pgd20.worst_class",
                "cw.worst_class"],
    "eval.json fields: `attack` (its accuracy) or `attack.field` or "
    "`report.key.field` (e.g. groups.pgd20.tail).")


def run_name(entry):
  return entry.replace(":", "-").replace(",", "-")


def command(entry, seed, workdir):
  config, _, presets = entry.partition(":")
  presets = ",".join(p for p in (presets, _PRESET.value) if p)
  return [sys.executable, "-m", "official.train",
          f"--config=configs/{config}.py" + (f":{presets}" if presets else ""),
          f"--config.seed={seed}", f"--workdir={workdir}",
          *[f"--config.{o}" for o in _OVERRIDES.value]]


def lookup(results, column):
  node = results
  keys = column.split(".")
  for key in keys:
    node = node[key]
  return node["accuracy"] if isinstance(node, dict) else node


def table(entries, seeds, root):
  header = "| method | " + " | ".join(_COLUMNS.value) + " |"
  lines = [header, "|" + "---|" * (len(_COLUMNS.value) + 1)]
  for entry in entries:
    values = {c: [] for c in _COLUMNS.value}
    done = 0
    for seed in seeds:
      path = os.path.join(root, f"{run_name(entry)}-s{seed}", "eval.json")
      if not os.path.exists(path):
        continue
      done += 1
      with open(path) as f:
        results = json.load(f)
      for c in _COLUMNS.value:
        try:
          values[c].append(100 * lookup(results, c))
        except KeyError:  # not evaluated in this run: shown as "–"
          pass
    cells = [f"{np.mean(v):.2f} ± {np.std(v):.2f}" if v else "–"
             for v in values.values()]
    lines.append(f"| {entry} ({done} seeds) | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  root = _ROOT.value
  os.makedirs(root, exist_ok=True)
  if not _TABLE_ONLY.value:
    for seed in _SEEDS.value:
      for entry in _METHODS.value:
        workdir = os.path.join(root, f"{run_name(entry)}-s{seed}")
        if os.path.exists(os.path.join(workdir, "eval.json")):
          continue
        cmd = command(entry, seed, workdir)
        print("$", " ".join(cmd[1:]), flush=True)
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "log.txt"), "a") as log:
          subprocess.run(cmd, cwd=_REPO, stdout=log, stderr=subprocess.STDOUT,
                         check=True)
  text = table(_METHODS.value, _SEEDS.value, root)
  with open(os.path.join(root, "table.md"), "w") as f:
    f.write(text + "\n")
  print(text)


if __name__ == "__main__":
  app.run(main)
