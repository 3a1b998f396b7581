r"""Speed, measured side by side in one process: what the project costs.

  python -m tools.benchmark                                # every section, ~10 min here
  python -m tools.benchmark --presets=mnist10k --reference # the regression guard
  python -m tools.benchmark --sections=methods,eval --steps=6
  python -m tools.benchmark --sections=autoattack --aa_examples=100 \
      --aa_export=runs/protocol/at-s0/export     # standard AutoAttack vs ART

Sections (`--sections`, default all of them but `autoattack`):
  reference  the project's AT step vs a bare Keras PGD-AT step (same network,
             batch, attack and optimizer; no reweighting, no per-term metrics,
             no per-example memory), timed alternately; prints `ratio R`
             (project ex/s / reference ex/s). Keep R >= 0.95.
  methods    examples/s of every method config on the same data, beside its
             inherent passes and the overhead beyond them (below).
  precision  the AT step under float32, mixed_float16, mixed_bfloat16.
  resnet     ResNet-18 at 32x32 (random data, batch 64): project vs reference.
  eval       PGD-20 on an export through official/evaluation/robustness.py vs
             ART's ProjectedGradientDescent (and apgd-ce / autoattack-fast vs
             ART's AutoProjectedGradientDescent where those exist), same
             images, alternated; ART is not a dependency: skipped if missing.
             Beside PGD-20, its floor: a bare loop of its 20 forward+backward
             passes on the export; ART's rate over the floor caps what any
             implementation can gain over ART on that model.
  autoattack the standard AutoAttack ensemble (apgd-ce, apgd-t, fab-t,
             square) and apgd-ce alone, XLA off and on (`--aa_xla`), on
             `--aa_examples` mnist10k test images and `--aa_export` (or a
             20-step export), vs
             ART's AutoProjectedGradientDescent and ART's AutoAttack built as
             close to the standard ensemble as ART allows (APGD-CE, targeted
             APGD-DLR on the top-9 classes, Square; ART has no FAB). Seconds
             per image on a robust model: not in the default sections;
             `--aa_repeats` rounds (default 1) after a warm-up on
             `--aa_warmup` images. ART's AutoAttack needs `multiprocess`.

Timing: `warmup` untimed steps (tracing, XLA), then `repeats` rounds; in each
round every contender runs `steps` steps in turn (alternation spreads the
load of a busy machine over all of them); a rate is the median over rounds.
The reference and ResNet ratios are medians of per-round ratios (3x the
rounds of half the steps for the reference): the load of a shared machine
drifts between rounds far more than within one.

Inherent passes: a method's step needs A attack iterations (forward + input
gradient), T training forward+backward passes and F eval-mode forwards; the
three unit costs are timed on the same batch, and `overhead` is the measured
step time over A·a + T·t + F·f, minus 1. `vs bare` races each method alone
with the bare PGD-AT loop (the reference section's; short paired rounds):
(AT's units / the method's units) / median of the rounds' (method ex/s /
bare ex/s), minus 1, i.e. the method against a bare loop of its own passes
(for AT: its reference ratio, inverted, minus 1). What runs beyond the
passes: the weights, the metrics, the optimizer (the training attacks run
no forward of their own on the final iterate).
"""
import os
import sys
import tempfile
import time

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

# One module per section (tools/bench/); each defines its own flags.
from tools.bench import autoattack  # noqa: E402
from tools.bench import evaluation  # noqa: E402
from tools.bench import methods  # noqa: E402
from tools.bench import precision  # noqa: E402
from tools.bench import reference  # noqa: E402
from tools.bench import steps  # noqa: E402
from tools.bench import timing  # noqa: E402

SECTION_FNS = {"reference": reference.section_reference,
               "methods": methods.section_methods,
               "precision": precision.section_precision,
               "resnet": reference.section_resnet,
               "eval": evaluation.section_eval,
               "autoattack": autoattack.section_autoattack}
SECTIONS = tuple(SECTION_FNS)
# A round of `autoattack` takes minutes to hours: asked for by name only.
DEFAULT_SECTIONS = ("reference", "methods", "precision", "resnet", "eval")

_SECTIONS = flags.DEFINE_list("sections", list(DEFAULT_SECTIONS),
                              f"Sections to run: {', '.join(SECTIONS)}.")
_REFERENCE = flags.DEFINE_bool("reference", False,
                               "Only the reference section (the ratio line).")
for _module in (autoattack, evaluation, reference, steps, timing):
  flags.adopt_module_key_flags(_module)  # --help lists every flag


def check_flags(sections):
  """One `error:` line (exit 1) for a bad flag, before any section runs."""
  from tools import evaluate as evaluate_tool
  checks = [("sections", sections, SECTIONS),
            ("eval_attacks", flags.FLAGS.eval_attacks,
             evaluation.EVAL_SECTION_ATTACKS),
            ("aa_xla", flags.FLAGS.aa_xla, ("off", "on"))]
  for flag, values, valid in checks:
    for value in values:
      if value not in valid:
        raise SystemExit(f"error: --{flag}: '{value}' is not one of "
                         f"{', '.join(valid)}")
  for flag in ("eval_export", "aa_export"):
    path = flags.FLAGS[flag].value
    if path:
      try:
        evaluate_tool.check_export_path(path)
      except ValueError as e:
        raise SystemExit(f"error: --{flag}: {e}") from None


def main(argv):
  del argv
  sections = ["reference"] if _REFERENCE.value else _SECTIONS.value
  check_flags(sections)
  print(f"tools.benchmark {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f", {os.cpu_count()} CPUs, steps {timing.STEPS.value} x "
        f"{timing.REPEATS.value} rounds (median), warmup {timing.WARMUP.value}",
        flush=True)
  lines = []
  with tempfile.TemporaryDirectory() as workdir:
    for s in sections:
      lines += SECTION_FNS[s](workdir)
  print("\nsummary")
  for line in lines:
    print(line)


if __name__ == "__main__":
  app.run(main)
