"""Logit margins of the evaluated points: a file, a plot, TensorBoard histograms.

The margin of a point is z_y − max_{k≠y} z_k of its logits (> 0: correct).
Kanai et al. (arXiv 2207.10283) read robustness off its distribution: plain
AT's margins on attacked test points have two peaks, one well above 0 (the
points it defends) and one below; importance-weighted CE (GAIRAT, MAIL)
moves the mass to a single peak near 0, where PGD with a fixed step still
fails but a targeted attack flips the points. Every per-batch attack of an
evaluation records its margins (robustness.py, `keep_margins`); this module
stores them:

  DIR/margins.npz   per-example margins per attack (natural, pgd20, ...),
                    and the labels
  DIR/margins.png   natural vs PGD-20 (or whatever attacks ran) histograms
  tb/eval           histograms `eval/margin/<attack>`

tools/margins.py overlays them across runs and methods.
"""
import os

import numpy as np

FILE = "margins.npz"


def pop_values(results):
  """{attack: per-example margins} taken out of evaluate(keep_margins=True)
  results (so the rest is JSON)."""
  return {name: r.pop("margin_values") for name, r in results.items()
          if isinstance(r, dict) and "margin_values" in r}


def save(values, labels, directory, name=FILE):
  """Writes the margins (and labels) to DIR/margins.npz and its plot."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, name)
  np.savez(path, labels=np.asarray(labels), **{
      k: np.asarray(v, np.float32) for k, v in values.items()})
  plot(values, os.path.splitext(path)[0] + ".png")
  return path


def load(path):
  """{attack: margins} and labels from a margins.npz."""
  with np.load(path) as f:
    values = {k: f[k] for k in f.files if k != "labels"}
    labels = f["labels"] if "labels" in f.files else None
  return values, labels


def write_summaries(values, logdir):
  """Histograms `eval/margin/<attack>` into TensorBoard (step 0)."""
  import tensorflow as tf
  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default():
    for name, v in values.items():
      tf.summary.histogram(f"eval/margin/{name}", np.asarray(v), step=0)
  writer.flush()


def shared_range(arrays, quantile=0.995):
  """A symmetric-enough x range holding all but the extreme tails."""
  pooled = np.concatenate([np.asarray(a).ravel() for a in arrays])
  lo, hi = np.quantile(pooled, [1 - quantile, quantile])
  return float(min(lo, 0.0)), float(max(hi, 0.0))


def draw(ax, values, title=None, bins=60, value_range=None):
  """Histograms of each attack's margins on one axis (density)."""
  value_range = value_range or shared_range(list(values.values()))
  for name, v in values.items():
    v = np.clip(np.asarray(v), *value_range)
    ax.hist(v, bins=bins, range=value_range, density=True, histtype="step",
            linewidth=1.5, label=name)
  ax.axvline(0.0, color="gray", linewidth=0.8, linestyle="--")
  if title:
    ax.set_title(title, fontsize=9)
  ax.set_xlabel("logit margin z_y − max other z")


def plot(values, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  shown = {k: values[k] for k in values if k in ("natural", "pgd20")} or values
  fig, ax = plt.subplots(figsize=(6, 3.5))
  draw(ax, shown)
  ax.set_ylabel("density")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
