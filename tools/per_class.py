r"""Per-class robust accuracy of protocol runs, as a table and grouped bars.

  python -m tools.per_class --root=runs/fairness_hard \
      --methods=at,trades,done,wat --preset=mnist10k_hard \
      --attacks=pgd20,autoattack-fast --output=runs/fairness_hard/per_class

For each entry (`config[:presets]`, run directories as tools.protocol) and
attack, the `per_class` accuracies of each finished run (eval.json, then the
`--reports` files beside it, as tools.protocol looks columns up) are averaged
over seeds. Prints and writes OUTPUT.md (per attack: mean per class, the
mean of each seed's worst class ± its std, and that worst class per seed)
and OUTPUT.png (one panel per attack, one bar per method and class, the
seeds' std as error bars). A class-level method is judged by its worst
class, and the worst class moves between seeds: the per-seed column shows
which class it was.
"""
import json
import os

import numpy as np
from absl import app
from absl import flags

from tools import protocol  # its flags: --root, --methods, --seeds, --reports

_ATTACKS = flags.DEFINE_list("attacks", ["pgd20", "autoattack-fast"],
                             "Attacks whose per_class accuracies are drawn.")
_LABELS = flags.DEFINE_list("labels", [], "ENTRY=LABEL names for the legend "
                            "and table (default: the entry).")


def per_class(run, attack, reports=()):
  """The run's per-class accuracies under `attack`, or None."""
  for name in ("eval.json", *reports):
    path = os.path.join(run, name)
    if not os.path.exists(path):
      continue
    with open(path) as f:
      results = json.load(f)
    if isinstance(results.get(attack), dict) and "per_class" in results[attack]:
      return np.asarray(results[attack]["per_class"], float)
  return None


def collect(entries, seeds, root, attacks, reports=()):
  """{attack: {entry: array [seeds, classes]}} over the finished runs that
  report the attack's per-class accuracies."""
  out = {a: {} for a in attacks}
  for attack in attacks:
    for entry in entries:
      rows = []
      for seed in seeds:
        run = os.path.join(root, f"{protocol.run_name(entry)}-s{seed}")
        if protocol.finished(run):
          values = per_class(run, attack, reports)
          if values is not None:
            rows.append(values)
      if rows:
        out[attack][entry] = np.stack(rows)
  return out


def table(collected, labels):
  lines = []
  for attack, by_entry in collected.items():
    if not by_entry:
      continue
    classes = next(iter(by_entry.values())).shape[1]
    header = (["method"] + [f"class {k}" for k in range(classes)]
              + ["worst class", "worst class per seed"])
    lines += [f"**{attack}** (mean over seeds, %)", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry, values in by_entry.items():
      worst = values.min(axis=1)
      spread = f" ± {100 * worst.std(ddof=1):.2f}" if len(worst) > 1 else ""
      per_seed = ", ".join(f"{100 * w:.1f} (class {k})"
                           for w, k in zip(worst, values.argmin(axis=1)))
      row = ([f"{labels.get(entry, entry)} ({protocol.seeds_label(len(values))})"]
             + [f"{100 * v:.1f}" for v in values.mean(axis=0)]
             + [f"{100 * worst.mean():.2f}{spread}", per_seed])
      lines.append("| " + " | ".join(row) + " |")
    lines.append("")
  return "\n".join(lines)


def plot(collected, path, labels, title=""):
  from matplotlib.figure import Figure
  panels = [(a, e) for a, e in collected.items() if e]
  fig = Figure(figsize=(11, 2.8 * len(panels)))
  for i, (attack, by_entry) in enumerate(panels):
    ax = fig.add_subplot(len(panels), 1, i + 1)
    classes = next(iter(by_entry.values())).shape[1]
    width = 0.8 / len(by_entry)
    for j, (entry, values) in enumerate(by_entry.items()):
      std = values.std(axis=0, ddof=1) if len(values) > 1 else None
      ax.bar(np.arange(classes) - 0.4 + (j + 0.5) * width,
             100 * values.mean(axis=0), width, yerr=None if std is None else 100 * std,
             label=labels.get(entry, entry), error_kw={"elinewidth": 0.6})
    ax.set_xticks(range(classes))
    ax.set_xlabel("class")
    ax.set_ylabel(f"{attack} accuracy (%)")
    ax.set_ylim(0, 100)
    if i == 0:  # above the panel, clear of the bars
      ax.legend(fontsize=7, ncol=min(len(by_entry), 8), loc="lower center",
                bbox_to_anchor=(0.5, 1.0), frameon=False)
  protocol.save_figure(fig, path, title)


def main(argv):
  del argv
  root, entries, seeds, _, reports = protocol.selected_runs()
  labels = {}
  for item in _LABELS.value:
    entry, sep, label = item.partition("=")
    if not sep or entry not in entries:
      raise SystemExit(f"error: --labels entry {item!r}: expected ENTRY=LABEL "
                       f"with ENTRY one of {', '.join(entries)}")
    labels[entry] = label
  collected = collect(entries, seeds, root, _ATTACKS.value, reports)
  if not any(collected.values()):
    raise SystemExit(f"error: no finished run of {', '.join(entries)} under "
                     f"{root} reports per-class accuracies of "
                     f"{', '.join(_ATTACKS.value)}")
  protocol.write_reading(
      "per_class", table(collected, labels),
      lambda path, title: plot(collected, path, labels, title),
      "per-class robust accuracy, mean ± std over seeds",
      output=flags.FLAGS.output)


if __name__ == "__main__":
  protocol.define_output_flag("per_class")
  app.run(main)
