r"""Logit-margin distributions of protocol runs, method by method.

  python -m tools.margins --root=runs/protocol_hard \
      --methods=at,trades,gairat,mail,lrat,arow --preset=mnist10k_hard \
      --output=runs/protocol_hard/margins

For each entry (`config[:presets]`, run directories as tools.protocol), the
margins z_y − max_{k≠y} z_k of the test points, natural and under PGD-20,
pooled over the finished seeds, from each run's `margins.npz` (written by
official.train's evaluation; official/evaluation/margins.py). Prints and
writes OUTPUT.md (median, quartiles, the fraction below 0 and within ±1 of
0) and OUTPUT.png (one panel per method, a shared x axis). A run without
margins.npz (trained before margins were recorded) is named in one error
line; `--evaluate_missing` makes them first, with tools.evaluate on the
run's export (natural + PGD-20 on the whole test split at the run's ε and
seed): PGD-20's random starts then differ from the run's own evaluation, the
distribution does not.
"""
import os
import subprocess
import sys

import numpy as np
from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

from official.evaluation import margins as margins_lib  # noqa: E402
from tools import protocol  # noqa: E402  (its flags: --root, --methods, ...)

_EVALUATE_MISSING = flags.DEFINE_bool(
    "evaluate_missing", False, "Run tools.evaluate (natural, pgd20) on the "
    "exports of finished runs without margins.npz first.")
ATTACKS = ("natural", "pgd20")


def workdir(root, entry, seed):
  return os.path.join(root, f"{protocol.run_name(entry)}-s{seed}")


def evaluate_command(entry, run, preset):
  """tools.evaluate on a run's export: natural + PGD-20, every test image."""
  import json
  with open(os.path.join(run, "config.json")) as f:
    config = json.load(f)
  return [sys.executable, "-m", "tools.evaluate",
          f"--export={os.path.join(run, 'export')}",
          f"--data={protocol.dataset_of(entry, config, preset)}",
          "--attacks=natural,pgd20", f"--epsilon={config['eval']['epsilon']}",
          f"--seed={config['seed']}",
          f"--output={os.path.join(run, 'margins_eval.json')}",
          f"--margins_file={os.path.join(run, margins_lib.FILE)}"]


def collect(entries, seeds, root):
  """{entry: {attack: pooled margins}, ...} and the finished runs that lack
  margins.npz."""
  pooled, missing = {}, []
  for entry in entries:
    found = {a: [] for a in ATTACKS}
    for seed in seeds:
      run = workdir(root, entry, seed)
      if not protocol.finished(run):
        continue
      path = os.path.join(run, margins_lib.FILE)
      if not os.path.exists(path):
        missing.append(run)
        continue
      values, _ = margins_lib.load(path)
      for a in ATTACKS:
        if a in values:
          found[a].append(values[a])
    if found["natural"]:
      pooled[entry] = ({a: np.concatenate(v) for a, v in found.items() if v},
                       len(found["natural"]))
  return pooled, missing


def stats_table(pooled):
  cells = ("median", "quartiles", "below 0", "within ±1")
  header = ["method"] + [f"{a} {c}" for a in ATTACKS for c in cells]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for entry, (values, n) in pooled.items():
    row = [f"{entry} ({protocol.seeds_label(n)})"]
    for a in ATTACKS:
      v = values.get(a)
      if v is None:
        row += ["–"] * len(cells)
        continue
      q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])
      row += [f"{med:.2f}", f"{q1:.2f} / {q3:.2f}",
              f"{100 * (v < 0).mean():.1f}%",
              f"{100 * (np.abs(v) < 1).mean():.1f}%"]
    lines.append("| " + " | ".join(row) + " |")
  return "\n".join(lines)


def plot(pooled, path, title=""):
  from matplotlib.figure import Figure
  n = len(pooled)
  cols = min(4, n)
  rows = -(-n // cols)
  fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
  value_range = margins_lib.shared_range(
      [v for values, _ in pooled.values() for v in values.values()])
  for i, (entry, (values, seeds)) in enumerate(pooled.items()):
    ax = fig.add_subplot(rows, cols, i + 1)
    margins_lib.draw(ax, values, f"{entry} ({protocol.seeds_label(seeds)})",
                     value_range=value_range)
    ax.set_yticks([])
    if i == 0:
      ax.legend(fontsize=7)
  protocol.save_figure(fig, path, title)


def main(argv):
  del argv
  root, entries, seeds, preset, _ = protocol.selected_runs()
  if _EVALUATE_MISSING.value:
    for run in collect(entries, seeds, root)[1]:
      entry = next(e for e in entries
                   if os.path.basename(run).startswith(protocol.run_name(e) + "-s"))
      print("$", " ".join(evaluate_command(entry, run, preset)[1:]), flush=True)
      with open(os.path.join(run, "log.txt"), "a") as log:
        subprocess.run(evaluate_command(entry, run, preset), cwd=_REPO,
                       stdout=log, stderr=subprocess.STDOUT, check=True)
  pooled, missing = collect(entries, seeds, root)
  if missing:
    raise SystemExit(f"error: no margins.npz in {', '.join(missing)}; make "
                     "them with --evaluate_missing")
  if not pooled:
    raise SystemExit(f"error: no finished runs of {', '.join(entries)} "
                     f"under {root}")
  protocol.write_reading(
      "margins", stats_table(pooled),
      lambda path, title: plot(pooled, path, title),
      "logit margins, natural vs PGD-20 (beyond the axis: piled at its ends)",
      output=flags.FLAGS.output)


if __name__ == "__main__":
  protocol.define_output_flag("margins")
  app.run(main)
