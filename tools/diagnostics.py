r"""What each method did in training: final-epoch statistics over the seeds.

  python -m tools.diagnostics --root=runs/protocol \
      --methods=gairat,lrat,done,iaat --seeds=0,1,2 \
      [--output=runs/protocol/diagnostics]

Entries, seeds and run directories are tools.protocol's (its --methods,
--seeds and --root flags, `--root/<entry>-s<seed>`); a run that is missing or
not finished is skipped with a note. From each run's TensorBoard log
(DIR/tb/train; each series' value at its last step):
  - the final epoch's training adversarial and clean accuracy (%), and every
    scalar of the method: `epoch_method/<name>` (the epoch's mean of what the
    method logs per step, as in the epoch's log line) and `method/<name>`
    (from its per-example memory at the end of the epoch);
  - the method's per-example histograms, `method/<name>` (GAIRAT's and
    LRAT's κ, MAIL's margin, IAAT's ε): n, mean, quantiles; for κ the
    fraction at κ = K (every PGD iterate before the last one still classified
    correctly), for the margin the fraction below 0;
  - IAAT: the learned radii of DIR/eps_train.npz (exact values): quantiles,
    the fraction at 0 and above the training ε (config.json attack.epsilon).
Every number is the mean ± sample std over the seeds (one seed: its value).
Written: OUTPUT.md (also printed), OUTPUT.json (with every run's values),
OUTPUT_kappa.png (training examples per κ, per method) and OUTPUT_eps.png
(IAAT's radii), the figures only when some run has the data. A bad --root,
or no finished run at all, ends with one `error:` line (exit 2).

tf.summary.histogram keeps 30 equal buckets over [min, max]: κ (integers in
0..K, K < 30) comes back exactly; other values as bucket centres, within half
a bucket (1/60 of their range: the table shows it beside the name). The
`weights/<term>` histograms are left out: heavy-tailed weights put most
examples in the first bucket, and their centres say little (the
`epoch_weight/<term>/{mean,max,min}` scalars are in TensorBoard).
"""
import glob
import json
import os
import sys

import numpy as np
from absl import app
from absl import flags

from official.common import console
from tools import protocol  # defines --methods, --seeds, --root: used here

ACCURACIES = ("adversarial_accuracy", "clean_accuracy")  # Keras: epoch_<name>
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
QUANTILE_NAMES = tuple(f"q{round(100 * q)}" for q in QUANTILES)
# κ of LRAT's FGSM variant counts one step; every other κ the training
# attack's attack.steps (LRAT's CW variant uses them too).
KAPPA_STEPS = {"method/kappa/fgsm": 1}
# IAAT's radii are float32 and moved by an EMA: "above ε" means beyond the
# rounding of ε itself.
ABOVE_TOLERANCE = 1e-5


def define_flags():
  """Only when run as a program: tools.export has its own --output."""
  flags.DEFINE_string("output", None, "Prefix of OUTPUT.md, OUTPUT.json, "
                      "OUTPUT_kappa.png, OUTPUT_eps.png (default "
                      "ROOT/diagnostics).")


def final_summaries(logdir):
  """{tag: value at the last step} of the event files in `logdir`: scalars
  as floats, histograms as [k, 3] arrays (left edge, right edge, count).

  A resumed run has several files and may have written a step twice: the
  latest write wins.
  """
  import tensorflow as tf  # only reading the event files needs it
  latest = {}
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    try:
      for record in tf.data.TFRecordDataset(path):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for v in event.summary.value:
          kind = v.WhichOneof("value")
          if kind == "tensor":
            value = tf.make_ndarray(v.tensor)
          elif kind == "simple_value":
            value = np.float32(v.simple_value)
          else:
            continue
          when = (event.step, event.wall_time)
          if v.tag not in latest or when >= latest[v.tag][0]:
            latest[v.tag] = (when, value)
    except tf.errors.DataLossError:  # a killed writer's truncated last record
      pass
  out = {}
  for tag, (_, value) in latest.items():
    if value.ndim == 0:
      out[tag] = float(value)
    elif value.ndim == 2 and value.shape[1] == 3:
      out[tag] = value.astype(np.float64)
  return out


def histogram_values(buckets, integer=False):
  """(per-example values, exact) of a TensorBoard histogram [k, 3].

  tf.summary.histogram puts x in bucket floor((x - min) / width): integers
  with buckets narrower than 1 have one integer per bucket (an edge may equal
  it, up to rounding), so they come back exactly. Anything else: bucket
  centres.
  """
  left, right, counts = np.asarray(buckets, np.float64).T
  counts = np.rint(counts).astype(np.int64)
  if integer and not np.any((right - left >= 1) & (counts > 0)):
    return np.repeat(np.ceil(left - 1e-6), counts), True
  return np.repeat((left + right) / 2, counts), False


def distribution(values):
  """n, mean and QUANTILES of an array of per-example values."""
  out = {"n": int(values.size), "mean": float(values.mean())}
  out.update(zip(QUANTILE_NAMES, np.quantile(values, QUANTILES).tolist()))
  return out


def histogram_distribution(tag, buckets, steps):
  """distribution() of one histogram, plus for κ the fraction at K and the
  fraction per κ = 0..K, for the margin the fraction below 0; None if empty.
  `resolution`: how far a value may be from its bucket's centre (0: exact)."""
  kappa = tag.startswith("method/kappa")
  values, exact = histogram_values(buckets, integer=kappa)
  if not values.size:
    return None
  out = distribution(values)
  left, right = np.asarray(buckets)[:, 0], np.asarray(buckets)[:, 1]
  out["resolution"] = 0.0 if exact else float(np.max(right - left) / 2)
  if kappa:
    k = KAPPA_STEPS.get(tag, steps)
    out["K"] = k
    out["at_K"] = float(np.mean(values == k)) if exact else None
    if exact and values.min() >= 0 and values.max() <= k:
      out["per_kappa"] = (np.bincount(values.astype(np.int64), minlength=k + 1)
                          / values.size).tolist()
  if tag == "method/margin":
    out["below_0"] = float(np.mean(values < 0))
  return out


def eps_distribution(path, train_epsilon):
  """distribution() of IAAT's learned radii (eps_train.npz), the fraction
  at 0 (IAAT's own eps <= 0) and above the training epsilon."""
  eps = np.load(path)["eps"].astype(np.float64)
  out = distribution(eps)
  out["zero"] = float(np.mean(eps <= 0))
  out["above_train_epsilon"] = float(
      np.mean(eps > train_epsilon * (1 + ABOVE_TOLERANCE)))
  out["train_epsilon"] = float(train_epsilon)
  return out


def run_record(workdir):
  """One finished run: accuracies (%), method scalars, distributions, ε."""
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  summaries = final_summaries(os.path.join(workdir, "tb", "train"))
  scalars = {t: v for t, v in summaries.items() if isinstance(v, float)}
  method = sorted((t for t in scalars
                   if t.startswith(("method/", "epoch_method/"))),
                  key=lambda t: (t.partition("/")[2], t))  # the pairs together
  record = {
      "epochs": config["epochs"],
      "accuracy": {n: 100 * scalars[f"epoch_{n}"] for n in ACCURACIES
                   if f"epoch_{n}" in scalars},
      "method": {t: scalars[t] for t in method},
      "distributions": {},
  }
  for tag in sorted(summaries):
    if tag.startswith("method/") and tag not in scalars:
      found = histogram_distribution(tag, summaries[tag],
                                     config["attack"]["steps"])
      if found:
        record["distributions"][tag] = found
  eps_path = os.path.join(workdir, "eps_train.npz")
  if os.path.exists(eps_path):
    record["eps"] = eps_distribution(eps_path, config["attack"]["epsilon"])
  return record


def over_seeds(dicts):
  """{key: {mean, std, n}} over the dicts that hold a number under key; std
  is the sample std (n - 1), None for one value."""
  out = {}
  for key in dict.fromkeys(k for d in dicts for k in d):
    values = [d[key] for d in dicts if isinstance(d.get(key), (int, float))
              and not isinstance(d.get(key), bool)]
    if values:
      std = float(np.std(values, ddof=1)) if len(values) > 1 else None
      out[key] = {"mean": float(np.mean(values)), "std": std, "n": len(values)}
  return out


def find_runs(entry, seeds, root):
  """({seed: workdir} of the finished runs of `entry`, [why others are not])."""
  found, skipped = {}, []
  for seed in seeds:
    name = f"{protocol.run_name(entry)}-s{seed}"
    workdir = os.path.join(root, name)
    if not os.path.isdir(workdir):
      skipped.append(f"{name}: no run directory")
    elif not protocol.finished(workdir):
      skipped.append(f"{name}: not finished")
    elif not os.path.isdir(os.path.join(workdir, "tb", "train")):
      skipped.append(f"{name}: no tb/train")
    else:
      found[seed] = workdir
  return found, skipped


def entry_diagnostics(entry, seeds, root):
  """{"runs": {seed: record}, "skipped": [notes], "summary": over seeds}."""
  found, skipped = find_runs(entry, seeds, root)
  runs = {seed: run_record(workdir) for seed, workdir in found.items()}
  records = list(runs.values())
  tags = dict.fromkeys(t for r in records for t in r["distributions"])
  summary = {
      "accuracy": over_seeds([r["accuracy"] for r in records]),
      "method": over_seeds([r["method"] for r in records]),
      "distributions": {t: over_seeds([r["distributions"][t] for r in records
                                       if t in r["distributions"]])
                        for t in tags},
      "eps": over_seeds([r["eps"] for r in records if "eps" in r]),
  }
  return {"runs": runs, "skipped": skipped, "summary": summary}


def cell(stat, fmt=".4g"):
  """'mean ± std', the mean alone for one seed, '–' for none."""
  if stat is None:
    return "–"
  text = format(stat["mean"], fmt)
  return text if stat["std"] is None else f"{text} ± {format(stat['std'], fmt)}"


def markdown(root, seeds, results):
  lines = [f"# Training diagnostics: {root} (seeds {', '.join(seeds)})", "",
           "Final epoch; mean ± sample std over the seeds (one seed: its "
           "value). `epoch_method/*`: the epoch's mean of the per-step "
           "metric; `method/*`: the per-example memory at the epoch's end.",
           "", "| method | adversarial_accuracy (%) | clean_accuracy (%) |",
           "|---|---|---|"]
  for entry, r in results.items():
    cells = [cell(r["summary"]["accuracy"].get(n), ".2f") for n in ACCURACIES]
    lines.append(f"| {entry} ({protocol.seeds_label(len(r['runs']))}) | "
                 + " | ".join(cells) + " |")
  stats = ("n", "mean", *QUANTILE_NAMES)
  for entry, r in results.items():
    s = r["summary"]
    if not (s["method"] or s["distributions"] or s["eps"]):
      continue  # plain AT: the headline table says it all
    epochs = "/".join(str(e) for e in sorted({run["epochs"]
                                              for run in r["runs"].values()}))
    lines += ["", f"## {entry} ({protocol.seeds_label(len(r['runs']))}, "
              f"{epochs} epoch{'' if epochs == '1' else 's'})"]
    if s["method"]:
      lines += ["", "| scalar | value |", "|---|---|"]
      lines += [f"| {t} | {cell(v)} |" for t, v in s["method"].items()]
    if s["distributions"]:
      lines += ["", "| per example | " + " | ".join(stats)
                + " | κ = K | < 0 |", "|" + "---|" * (len(stats) + 3)]
      for tag, d in s["distributions"].items():
        cells = [cell(d.get(k), ".0f" if k == "n" else ".4g")
                 for k in (*stats, "at_K", "below_0")]
        resolution = d.get("resolution", {}).get("mean")
        label = f"{tag} (± {resolution:.2g})" if resolution else tag
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if s["eps"]:
      train = s["eps"]["train_epsilon"]["mean"]
      lines += ["", "| IAAT ε (eps_train.npz) | " + " | ".join(stats)
                + f" | = 0 | > train ε {train:g} |",
                "|" + "---|" * (len(stats) + 3)]
      cells = [cell(s["eps"].get(k), ".0f" if k == "n" else ".4g")
               for k in (*stats, "zero", "above_train_epsilon")]
      lines.append("| ε | " + " | ".join(cells) + " |")
  skipped = [note for r in results.values() for note in r["skipped"]]
  if skipped:
    lines += ["", "Skipped: " + "; ".join(skipped) + "."]
  return "\n".join(lines)


def plot_kappa(results, path):
  """Training examples (%) per κ, mean over seeds, one line per κ
  histogram; False (nothing written) if no run has one."""
  from matplotlib.figure import Figure  # only the figures need matplotlib
  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.add_subplot()
  plotted = False
  for entry, r in results.items():
    for tag in r["summary"]["distributions"]:
      fractions = [run["distributions"][tag]["per_kappa"]
                   for run in r["runs"].values()
                   if "per_kappa" in run["distributions"].get(tag, {})]
      if not fractions or len({len(f) for f in fractions}) > 1:
        continue
      label = entry + tag[len("method/kappa"):]  # lrat/primary, lrat/cw
      mean = 100 * np.mean(fractions, axis=0)
      ax.plot(np.arange(len(mean)), mean, "o-",
              label=f"{label} ({protocol.seeds_label(len(fractions))})")
      plotted = True
  if not plotted:
    return False
  ax.set_xlabel("κ (PGD iterates still classified correctly; K = never broken)")
  ax.set_ylabel("training examples (%)")
  ax.set_yscale("log")  # most examples sit at K; the rest would be flat
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return True


def plot_eps(results, root, path):
  """IAAT's learned radii, the seeds pooled, per entry; False if none."""
  from matplotlib.figure import Figure
  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.add_subplot()
  train = set()
  for entry, r in results.items():
    found = [os.path.join(root, f"{protocol.run_name(entry)}-s{seed}",
                          "eps_train.npz")
             for seed, run in r["runs"].items() if "eps" in run]
    if not found:
      continue
    eps = np.concatenate([np.load(p)["eps"] for p in found])
    ax.hist(eps, bins=40, histtype="step",
            weights=np.full(eps.size, 100 / eps.size),
            label=f"{entry} ({protocol.seeds_label(len(found))})")
    train.update(run["eps"]["train_epsilon"] for run in r["runs"].values()
                 if "eps" in run)
  if not train:
    return False
  for eps in sorted(train):
    ax.axvline(eps, color="gray", linestyle=":", label=f"train ε {eps:g}")
  ax.set_xlabel("learned ε (L∞)")
  ax.set_ylabel("training examples (%)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return True


def main(argv):
  f = flags.FLAGS
  if len(argv) > 1:
    print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    sys.exit(2)
  root = f.root
  if not os.path.isdir(root):
    print(f"error: --root={root} is not a directory", file=sys.stderr)
    sys.exit(2)
  if not any(find_runs(entry, f.seeds, root)[0] for entry in f.methods):
    print(f"error: no finished run of {', '.join(f.methods)} (seeds "
          f"{', '.join(f.seeds)}) under --root={root}", file=sys.stderr)
    sys.exit(2)
  with console.muted_stderr(console.quiet_logs(sys.argv)):
    import tensorflow as tf  # noqa: F401  (loads here, its start-up noise muted)
  results = {entry: entry_diagnostics(entry, f.seeds, root)
             for entry in f.methods}
  output = f.output or os.path.join(root, "diagnostics")
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  text = markdown(root, f.seeds, results)
  with open(output + ".md", "w") as out:
    out.write(text + "\n")
  with open(output + ".json", "w") as out:
    json.dump({"root": root, "seeds": f.seeds, "entries": results}, out,
              indent=2)
  print(text)
  written = [output + ".md", output + ".json"]
  if plot_kappa(results, output + "_kappa.png"):
    written.append(output + "_kappa.png")
  if plot_eps(results, root, output + "_eps.png"):
    written.append(output + "_eps.png")
  print("wrote " + ", ".join(written))


if __name__ == "__main__":
  define_flags()
  app.run(main)
