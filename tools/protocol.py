r"""Runs the small-scale protocol (shared/specs/protocol.md) and tabulates it.

  python -m tools.protocol --methods=at,gairat,mail,lrat --seeds=0,1,2
  python -m tools.protocol --methods=at,gairat --table_only      # just the table
  python -m tools.protocol --methods=at,iaat --table_only --eps_curve
  python -m tools.protocol --methods=at,gairat --table_only --paired=at

Each entry of --methods is `config[:presets]`; `--preset` (default `mnist10k`)
is appended, so `mail:trades` runs `configs/mail.py:trades,mnist10k`. Runs go
to `--root/<entry>-s<seed>` via `python -m official.train` (one process each,
as a user would run them); a finished run (DIR/done.json) is not run again, and
an interrupted one resumes from its checkpoint. The table (mean ± std over
seeds, in %; std is the sample std, n - 1; a single seed shows its value) is
printed as markdown and written to `--root/table.md`. With `--eps_curve`, the
runs' `eps_curve` reports (accuracy against test epsilon) are averaged the same
way into `--root/eps_curve.md` and plotted, mean ± std band per entry, in
`--root/eps_curve.png`. With `--paired=ENTRY`, a second table holds the
per-seed differences entry − ENTRY (same seed: a paired comparison), mean ±
std, in `--root/paired.md` (`--paired_root` if the baseline runs elsewhere).

AutoAttack columns come from report files of `tools.evaluate` beside a run's
eval.json (same schema):

  python -m tools.protocol --methods=at,gairat --seeds=0 --table_only \
      --evaluate=autoattack:500 --columns=natural,pgd20,autoattack,pgd20-autoattack
  python -m tools.protocol --methods=at,gairat --seeds=1,2 --table_only \
      --evaluate=autoattack-fast:500 --reports=autoattack.json \
      --columns=autoattack-fast,pgd20-autoattack-fast

`--evaluate=ATTACK:N` runs `tools.evaluate` on every finished run's export
(natural, pgd20 and ATTACK on the first N test images, the run's epsilon and
seed) into RUN/ATTACK.json, skipping runs that have it; those files are read
with the `--reports` files. A column is looked up in eval.json first, then in
the reports; a difference `a-b` takes both terms from the first file that has
both, so `pgd20-autoattack` compares the same images.
"""
import json
import os
import subprocess
import sys

import numpy as np
from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

from official.core import workdir as workdir_lib  # noqa: E402  (no TensorFlow)

_METHODS = flags.DEFINE_list("methods", ["at"], "config[:presets] entries.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_PRESET = flags.DEFINE_string("preset", "mnist10k", "Preset appended to each entry.")
_ROOT = flags.DEFINE_string("root", "runs/protocol", "Where runs are written.")
_OVERRIDES = flags.DEFINE_list("overrides", [], "Extra --config.k=v for every run.")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Only tabulate existing runs.")
_EPS_CURVE = flags.DEFINE_bool("eps_curve", False,
                               "Also average and plot the eps_curve reports.")
_REPORTS = flags.DEFINE_list(
    "reports", [], "Extra report files of tools.evaluate in each run directory "
    "(e.g. autoattack.json), searched after eval.json for the columns.")
_EVALUATE = flags.DEFINE_list(
    "evaluate", [], "ATTACK:N entries: run tools.evaluate (natural, pgd20, "
    "ATTACK on the first N test images) on every finished run's export into "
    "RUN/ATTACK.json, unless it exists; the table then reads it.")
_PAIRED = flags.DEFINE_string(
    "paired", "", "Baseline entry (e.g. at): a second table of per-seed "
    "differences entry − baseline (same seed), mean ± std: the paired view.")
_PAIRED_ROOT = flags.DEFINE_string(
    "paired_root", "", "Where the --paired baseline's runs are ('' = --root).")
_COLUMNS = flags.DEFINE_list(
    "columns", ["natural", "fgsm", "pgd20", "cw", "pgd20.worst_class",
                "cw.worst_class"],
    "eval.json fields: `attack` (its accuracy) or `attack.field` or "
    "`report.key.field` (e.g. groups.pgd20.tail), or `a-b`, the difference of "
    "two of those per run (e.g. cw-pgd20).")


def selected_runs():
  """(root, entries, seeds, preset, reports) from this module's flags: the
  runs a reading tool (tools.margins, tools.per_class) works on."""
  return (_ROOT.value, list(_METHODS.value), list(_SEEDS.value), _PRESET.value,
          list(_REPORTS.value))


def save_figure(fig, path, title=""):
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def define_output_flag(tool):
  """--output of a reading tool, defined only when it runs as a program
  (tools.export and tools.diagnostics define their own --output, and a test
  process imports them all)."""
  flags.DEFINE_string("output", "", "Prefix of OUTPUT.md / OUTPUT.png "
                      f"('' = ROOT/{tool}).")


def write_reading(tool, text, draw, title, output=""):
  """A reading tool's outputs: OUTPUT.md holds `text`, `draw(png_path,
  title)` the figure (OUTPUT: `output`, or ROOT/<tool>); both named on
  stdout with the text."""
  root = _ROOT.value
  prefix = output or os.path.join(root, tool)
  with open(prefix + ".md", "w") as f:
    f.write(text + "\n")
  draw(prefix + ".png", f"{os.path.basename(os.path.normpath(root))}: {title}")
  print(text)
  print(f"wrote {prefix}.md and {prefix}.png")


def run_name(entry):
  return entry.replace(":", "-").replace(",", "-")


def command(entry, seed, workdir):
  config, _, presets = entry.partition(":")
  presets = ",".join(p for p in (presets, _PRESET.value) if p)
  return [sys.executable, "-m", "official.train",
          f"--config=configs/{config}.py" + (f":{presets}" if presets else ""),
          f"--config.seed={seed}", f"--workdir={workdir}",
          *[f"--config.{o}" for o in _OVERRIDES.value]]


# Which runs count as finished (and are skipped): official/core/workdir.py.
finished = workdir_lib.is_finished


def _value(results, column):
  """`attack` (its accuracy), `attack.field` or `report.key.field` in one file."""
  node = results
  for key in column.split("."):
    node = node[key]
  node = node["accuracy"] if isinstance(node, dict) else node
  if isinstance(node, bool) or not isinstance(node, (int, float)):
    raise KeyError(column)
  return node


def lookup(results, column):
  """A column's value in one run: `results` is its eval.json or a list of it
  and its report files, searched in order.

  A name is looked up whole first (attack names may hold a hyphen:
  autoattack-fast, apgd-ce); else `a-b` is the difference of two names, split
  at the first hyphen where both terms are found in one file: the difference
  of two numbers measured on the same images.
  """
  sources = results if isinstance(results, list) else [results]
  for source in sources:
    try:
      return _value(source, column)
    except (KeyError, TypeError):
      pass
  for i, char in enumerate(column):
    if char != "-":
      continue
    for source in sources:
      try:
        return _value(source, column[:i]) - _value(source, column[i + 1:])
      except (KeyError, TypeError):
        pass
  raise KeyError(column)


def mean_std(values):
  """'m ± s' (sample std) in %, the value alone for one seed, '–' for none."""
  if not values:
    return "–"
  if len(values) == 1:
    return f"{values[0]:.2f}"
  return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def seeds_label(n):
  return f"{n} seed" + ("" if n == 1 else "s")


def load_results(entry, seeds, root):
  """{seed: eval.json} for the seeds of `entry` that have finished."""
  results = {}
  for seed in seeds:
    workdir = os.path.join(root, f"{run_name(entry)}-s{seed}")
    if finished(workdir):
      with open(os.path.join(workdir, "eval.json")) as f:
        results[seed] = json.load(f)
  return results


def load_reports(entry, seed, root, reports):
  """The report files (e.g. autoattack.json) that exist in one run directory."""
  found = []
  for name in reports:
    path = os.path.join(root, f"{run_name(entry)}-s{seed}", name)
    if os.path.exists(path):
      with open(path) as f:
        found.append(json.load(f))
  return found


def run_sources(entry, seeds, root, reports=()):
  """{seed: [eval.json, *report files]} of the finished runs of `entry`,
  each file read once."""
  return {seed: [results, *load_reports(entry, seed, root, reports)]
          for seed, results in load_results(entry, seeds, root).items()}


def collapsed(sources):
  """The seeds of `sources` (run_sources) whose eval.json or report files
  carry a failed `collapse` check (official/evaluation/checks.py: one class
  predicted for most images): their robust accuracies are a class share,
  not robustness."""
  def failed(source):
    check = (source.get("checks") or {}).get("collapse")
    return check is not None and not check.get("ok", True)
  return [seed for seed, files in sources.items() if any(map(failed, files))]


def row_label(entry, n, sources):
  """`entry (n seeds)`, naming the collapsed runs among `sources`."""
  bad = collapsed(sources)
  note = f"; collapsed: seed {', '.join(bad)}" if bad else ""
  return f"{entry} ({seeds_label(n)}{note})"


def table(entries, seeds, root, columns, reports=()):
  """Markdown table of `columns` (mean ± std over the finished seeds); each
  run's `reports` files are searched after its eval.json."""
  header = "| method | " + " | ".join(columns) + " |"
  lines = [header, "|" + "---|" * (len(columns) + 1)]
  for entry in entries:
    sources = run_sources(entry, seeds, root, reports)
    runs = values_of(sources, columns)
    # A column a run did not evaluate is left out (all missing: "–").
    cells = [mean_std([v[c] for v in runs.values() if c in v]) for c in columns]
    lines.append(f"| {row_label(entry, len(runs), sources)} | "
                 + " | ".join(cells) + " |")
  return "\n".join(lines)


def values_of(sources, columns):
  """{seed: {column: value in %}} from run_sources' files."""
  values = {}
  for seed, files in sources.items():
    values[seed] = {}
    for c in columns:
      try:
        values[seed][c] = 100 * lookup(files, c)
      except KeyError:  # not evaluated in this run
        pass
  return values


def run_values(entry, seeds, root, columns, reports=()):
  """{seed: {column: value in %}} of the finished runs of `entry`."""
  return values_of(run_sources(entry, seeds, root, reports), columns)


def paired_table(entries, baseline, seeds, root, baseline_root, columns,
                 reports=()):
  """Markdown table of per-seed differences entry − baseline (the same seed
  on both sides: a paired comparison), mean ± std over the common seeds."""
  base = run_values(baseline, seeds, baseline_root, columns, reports)
  lines = ["| method − " + baseline + " | " + " | ".join(columns) + " |",
           "|" + "---|" * (len(columns) + 1)]
  for entry in entries:
    if entry == baseline and root == baseline_root:
      continue
    sources = run_sources(entry, seeds, root, reports)
    runs = values_of(sources, columns)
    common = sorted(set(runs) & set(base))
    cells = [mean_std([runs[s][c] - base[s][c] for s in common
                       if c in runs[s] and c in base[s]]) for c in columns]
    lines.append(f"| {row_label(entry, len(common), {k: sources[k] for k in common})} | "
                 + " | ".join(cells) + " |")
  return "\n".join(lines)


def eps_curves(entries, seeds, root):
  """{entry: (epsilons, [seeds x radii] accuracy in %, training eps)} over the
  runs that have an eps_curve report."""
  curves = {}
  for entry in entries:
    found = [r["eps_curve"] for r in load_results(entry, seeds, root).values()
             if "eps_curve" in r]
    if not found:
      continue
    radii = found[0]["epsilons"]
    if any(c["epsilons"] != radii for c in found):
      raise ValueError(f"{entry}: runs have eps_curve reports at different radii")
    curves[entry] = (radii, 100 * np.array([c["accuracy"] for c in found]),
                     found[0].get("train_epsilon"))
  return curves


def eps_curve_table(curves):
  radii = next(iter(curves.values()))[0]
  lines = ["| method | " + " | ".join(f"ε {e:g}" for e in radii) + " |",
           "|" + "---|" * (len(radii) + 1)]
  for entry, (eps, acc, _) in curves.items():
    if eps != radii:
      raise ValueError(f"{entry}: eps_curve radii differ from the other entries")
    cells = [mean_std(list(acc[:, j])) for j in range(len(eps))]
    lines.append(f"| {entry} ({seeds_label(len(acc))}) | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot_eps_curves(curves, path):
  from matplotlib.figure import Figure  # only this output needs matplotlib
  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.add_subplot()
  for entry, (eps, acc, _) in curves.items():
    mean = acc.mean(axis=0)
    line, = ax.plot(eps, mean, "o-", label=f"{entry} ({seeds_label(len(acc))})")
    if len(acc) > 1:
      std = acc.std(axis=0, ddof=1)
      ax.fill_between(eps, mean - std, mean + std, color=line.get_color(),
                      alpha=0.2)
  train_eps = {c[2] for c in curves.values()} - {None}
  if len(train_eps) == 1:
    ax.axvline(train_eps.pop(), color="gray", linestyle=":", label="train ε")
  ax.set_xlabel("test ε (L∞)")
  ax.set_ylabel("PGD-20 accuracy (%)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def parse_evaluate(specs):
  """`ATTACK:N` entries -> [(attack, n)], or a one-line error."""
  parsed = []
  for spec in specs:
    attack, _, n = spec.partition(":")
    if not attack or not n.isdigit() or int(n) < 1:
      raise ValueError(f"--evaluate entry '{spec}' is not ATTACK:N (e.g. "
                       "autoattack:500, N >= 1 test images)")
    parsed.append((attack, int(n)))
  return parsed


def dataset_of(entry, config, preset):
  """--data for tools.evaluate: the run's dataset preset, else its data."""
  from configs import common  # no TensorFlow
  presets = entry.partition(":")[2].split(",") + [preset]
  found = [p for p in presets if p in common.DATASET_PRESETS]
  if found:
    return found[-1]
  data = config["data"]
  return data["path"] if data["name"] == "npz" else data["name"]


def evaluate_command(entry, workdir, attack, n, preset):
  """The tools.evaluate command that writes WORKDIR/ATTACK.json."""
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  attacks = ",".join(dict.fromkeys(["natural", "pgd20", attack]))
  return [sys.executable, "-m", "tools.evaluate",
          f"--export={os.path.join(workdir, 'export')}",
          f"--data={dataset_of(entry, config, preset)}", f"--attacks={attacks}",
          f"--epsilon={config['eval']['epsilon']}", f"--max_examples={n}",
          f"--seed={config['seed']}",
          f"--output={os.path.join(workdir, attack + '.json')}"]


def evaluate_runs(entries, seeds, root, specs, preset):
  """Runs tools.evaluate on every finished run that lacks ATTACK.json."""
  for attack, n in specs:
    for seed in seeds:
      for entry in entries:
        workdir = os.path.join(root, f"{run_name(entry)}-s{seed}")
        if (not finished(workdir)
            or os.path.exists(os.path.join(workdir, f"{attack}.json"))):
          continue
        _run(evaluate_command(entry, workdir, attack, n, preset), workdir)


def _run(cmd, workdir):
  """One run's command, as a user would type it; its output to RUN/log.txt."""
  print("$", " ".join(cmd[1:]), flush=True)
  with open(os.path.join(workdir, "log.txt"), "a") as log:
    subprocess.run(cmd, cwd=_REPO, stdout=log, stderr=subprocess.STDOUT,
                   check=True)


def main(argv):
  del argv
  root = _ROOT.value
  try:
    specs = parse_evaluate(_EVALUATE.value)
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  os.makedirs(root, exist_ok=True)
  if not _TABLE_ONLY.value:
    for seed in _SEEDS.value:
      for entry in _METHODS.value:
        workdir = os.path.join(root, f"{run_name(entry)}-s{seed}")
        if finished(workdir):
          continue
        os.makedirs(workdir, exist_ok=True)
        _run(command(entry, seed, workdir), workdir)
  if specs:
    evaluate_runs(_METHODS.value, _SEEDS.value, root, specs, _PRESET.value)
  reports = list(dict.fromkeys(
      [*_REPORTS.value, *[f"{attack}.json" for attack, _ in specs]]))
  text = table(_METHODS.value, _SEEDS.value, root, _COLUMNS.value, reports)
  with open(os.path.join(root, "table.md"), "w") as f:
    f.write(text + "\n")
  print(text)
  if _PAIRED.value:
    text = paired_table(_METHODS.value, _PAIRED.value, _SEEDS.value, root,
                        _PAIRED_ROOT.value or root, _COLUMNS.value, reports)
    with open(os.path.join(root, "paired.md"), "w") as f:
      f.write(text + "\n")
    print(text)
  if _EPS_CURVE.value:
    try:
      curves = eps_curves(_METHODS.value, _SEEDS.value, root)
      if not curves:
        raise ValueError(f"no eps_curve report in the runs under {root}")
      text = eps_curve_table(curves)
    except ValueError as e:  # one line, nothing written
      raise SystemExit(f"error: {e}") from None
    with open(os.path.join(root, "eps_curve.md"), "w") as f:
      f.write(text + "\n")
    plot_eps_curves(curves, os.path.join(root, "eps_curve.png"))
    print(text)


if __name__ == "__main__":
  app.run(main)
