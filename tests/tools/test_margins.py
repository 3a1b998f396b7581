"""tools/margins.py: pooled over seeds, the statistics by hand, missing runs
named, the figure written; official/evaluation/margins.py save/load."""
import json
import os

import numpy as np
import pytest

from official.evaluation import margins as margins_lib
from tools import margins


def _run(root, entry, seed, natural=None, pgd20=None):
  workdir = os.path.join(root, f"{entry.replace(':', '-')}-s{seed}")
  os.makedirs(workdir)
  with open(os.path.join(workdir, "done.json"), "w") as f:
    json.dump({}, f)
  if natural is not None:
    margins_lib.save({"natural": np.array(natural), "pgd20": np.array(pgd20)},
                     np.zeros(len(natural), int), workdir)
  return workdir


def test_pooled_statistics_by_hand_and_the_figure(tmp_path):
  root = str(tmp_path)
  _run(root, "at", 0, [4.0, 6.0], [-2.0, 0.5])
  _run(root, "at", 1, [2.0, 8.0], [3.0, -0.5])
  _run(root, "gairat", 0, [1.0, 1.0, 1.0, 1.0], [0.1, -0.1, 0.2, -0.2])
  pooled, missing = margins.collect(["at", "gairat"], ["0", "1"], root)
  assert missing == []
  np.testing.assert_array_equal(np.sort(pooled["at"][0]["pgd20"]),
                                [-2.0, -0.5, 0.5, 3.0])
  assert pooled["at"][1] == 2 and pooled["gairat"][1] == 1
  rows = margins.stats_table(pooled).splitlines()
  # at: natural median of 2, 4, 6, 8 is 5; PGD-20: median 0, half below 0,
  # half within ±1. gairat: every PGD-20 margin within ±1.
  assert rows[2].startswith("| at (2 seeds) | 5.00 | 3.50 / 6.50 | 0.0% | 0.0% "
                            "| 0.00 | -0.88 / 1.12 | 50.0% | 50.0% |")
  assert rows[3].endswith("| 50.0% | 100.0% |")
  path = str(tmp_path / "m.png")
  margins.plot(pooled, path)
  assert os.path.getsize(path) > 1000


def test_runs_without_margins_are_named_and_files_round_trip(tmp_path):
  root = str(tmp_path)
  old = _run(root, "at", 0)  # finished, but before margins were recorded
  _, missing = margins.collect(["at"], ["0"], root)
  assert missing == [old]
  values, labels = margins_lib.load(margins_lib.save(
      {"pgd20": [0.5, -1.0]}, [3, 4], str(tmp_path / "x")))
  np.testing.assert_array_equal(values["pgd20"], np.float32([0.5, -1.0]))
  np.testing.assert_array_equal(labels, [3, 4])
  assert os.path.exists(str(tmp_path / "x" / "margins.png"))
