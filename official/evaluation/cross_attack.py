"""Accuracy under the attacks a run trained with vs. attacks it never saw.

The report `cross_attack` (the question LRAT asks: does robustness to the
training attack carry over to other attacks?). The run's training attacks
are the objective's attack plus the method's `extra_attacks` (LRAT's CW
variant), which the run hands over in `ReportContext.training_attacks` (so
evaluation never imports core). Each attack of `eval.attacks` is "seen" when
its loss (ce | cw | kl) is one of theirs, else "unseen"; FGSM is a one-step
CE attack, so it is seen by CE-trained runs.

eval.json gets {"trained_with": [training attack names], "trained_losses":
[...], "natural": clean accuracy, "seen": {attack: accuracy}, "unseen":
{attack: accuracy}}, plus "missing" naming what to add to eval.attacks when a
group is empty (e.g. a TRADES run needs `kl10` to show its own attack).
pgd10 / cw10 / kl10 (evaluation/robustness.py) are the three training
attacks at training settings.
"""
from absl import logging

# The eval attack that reproduces a training loss at training settings.
TRAINING_LIKE = {"ce": "pgd10", "cw": "cw10", "kl": "kl10"}


def group(results, trained_losses):
  """{"natural", "seen", "unseen"} accuracies from {attack: summary}."""
  out = {"natural": None, "seen": {}, "unseen": {}}
  for name, r in results.items():
    if "per_class" not in r:  # another report's dict
      continue
    loss = r.get("attack", {}).get("loss")
    if loss is None:
      out["natural"] = r["accuracy"]
    else:
      out["seen" if loss in trained_losses else "unseen"][name] = r["accuracy"]
  return out


def report(ctx):
  specs = ctx.training_attacks
  losses = sorted({s.loss for s in specs})
  out = {"trained_with": [s.name for s in specs], "trained_losses": losses}
  out.update(group(ctx.results, losses))
  missing = []
  if not out["seen"]:
    missing += [TRAINING_LIKE[l] for l in losses]
  if not out["unseen"]:
    missing += [a for l, a in TRAINING_LIKE.items() if l not in losses]
  if missing:
    out["missing"] = (f"add {', '.join(missing)} to eval.attacks to see "
                      f"both seen and unseen attacks")
  logging.info("cross_attack: trained with %s; seen %s; unseen %s",
               ", ".join(out["trained_with"]), out["seen"], out["unseen"])
  return out
