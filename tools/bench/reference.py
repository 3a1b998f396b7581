"""The project's AT step against the bare Keras PGD-AT step (steps.py): on
the dataset presets (`reference`, the regression guard: keep the ratio >=
0.95) and on ResNet-18 at 32x32 (`resnet`). A ratio is the median of the
rounds' ratios: the load of a shared machine drifts between rounds far more
than within one."""
import os

from absl import flags

from tools.bench import steps as steps_lib
from tools.bench import timing

_PRESETS = flags.DEFINE_list("presets", ["mnist10k"],
                             "Dataset presets of the reference section.")


def section_reference(workdir):
  out = []
  for preset in _PRESETS.value:
    config = steps_lib.load_config("at", preset)
    project = steps_lib.ProjectStep(config,
                                    os.path.join(workdir, f"ref_{preset}"))
    reference = steps_lib.ReferenceStep(config, project.run.data)
    # Short rounds, many of them: the ratio is the median of paired rounds.
    rounds = {}
    rates = timing.short_rounds({"project": project, "reference": reference},
                                rounds)
    ratio = timing.paired_ratio(rounds["project"], rounds["reference"])
    out.append(f"reference [{preset}, AT PGD-{config.attack.steps}, batch "
               f"{config.batch_size}, xla {config.xla}] " + timing.ratio_line(
                   "project", rates["project"], rates["reference"],
                   ratio=ratio))
    print(out[-1], flush=True)
  return out


def section_resnet(workdir):
  import numpy as np
  rng = np.random.default_rng(0)
  path = os.path.join(workdir, "random32.npz")
  np.savez(path, x_train=rng.random((640, 32, 32, 3), np.float32),
           y_train=rng.integers(0, 10, 640), x_test=rng.random(
               (64, 32, 32, 3), np.float32), y_test=rng.integers(0, 10, 64))
  config = steps_lib.load_config(
      "at", None, **{"data.name": "npz", "data.path": path,
                     "data.augment": "none", "batch_size": 64})
  project = steps_lib.ProjectStep(config, os.path.join(workdir, "resnet"))
  reference = steps_lib.ReferenceStep(config, project.run.data)
  # A ResNet-18 PGD-10 step takes seconds on a CPU: one step per round.
  rounds = {}
  rates = timing.race({"project": project, "reference": reference}, steps=1,
                      warmup=1, repeats=timing.REPEATS.value + 1,
                      rounds=rounds)
  line = (f"resnet18 [32x32x3 random, batch 64, PGD-10, xla {config.xla}] "
          + timing.ratio_line("project", rates["project"], rates["reference"],
                              ratio=timing.paired_ratio(rounds["project"],
                                                        rounds["reference"])))
  print(line, flush=True)
  return [line]
