"""Extra evaluation reports, run after the attacks of `eval.attacks`.

A report is `fn(ctx: ReportContext) -> dict`; its dict is stored in eval.json
under the report's name, and it may write files (plots, arrays) to
`ctx.workdir`. `config.eval.reports` lists the reports a run makes. A new
report is one module and one entry in REPORTS.
"""
import dataclasses
from typing import Callable

from official.evaluation import cross_attack
from official.evaluation import eps_curve
from official.evaluation import groups
from official.evaluation import tail_examples


@dataclasses.dataclass
class ReportContext:
  logits_fn: Callable        # images -> logits, training=False
  data: object               # DataBundle (test(), class_counts, num_classes)
  config: object             # the whole config
  workdir: str
  results: dict              # {attack name: summary} of eval.attacks
  seed: int
  jit_compile: bool
  # The AttackSpecs the run trained with, primary first (cross_attack).
  training_attacks: tuple = ()


REPORTS = {
    "groups": groups.report,
    "eps_curve": eps_curve.report,
    "tail_examples": tail_examples.report,
    "cross_attack": cross_attack.report,
}


def check_names(names):
  for name in names:
    if name not in REPORTS:
      raise ValueError(f"unknown report '{name}' in eval.reports; valid: "
                       f"{', '.join(sorted(REPORTS))}")


def run_reports(names, ctx):
  check_names(names)
  return {name: REPORTS[name](ctx) for name in names}
