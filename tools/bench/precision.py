"""The project's AT step (mnist10k) under each precision policy, against
float32 in the same race."""
import os

from tools.bench import steps as steps_lib
from tools.bench import timing

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def section_precision(workdir):
  runs = {p: steps_lib.ProjectStep(
      steps_lib.load_config("at", "mnist10k", precision=p),
      os.path.join(workdir, f"precision_{p}")) for p in PRECISIONS}
  rates = timing.race(runs)
  lines = []
  for p in PRECISIONS:
    lines.append(f"precision [mnist10k AT] " + timing.ratio_line(
        p, rates[p], rates["float32"], "float32"))
    print(lines[-1], flush=True)
  return lines
