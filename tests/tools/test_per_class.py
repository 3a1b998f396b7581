"""tools/per_class.py: per-class means over seeds, the worst class per seed
and its spread by hand, report files searched after eval.json, the figure."""
import json
import os

import numpy as np

from tools import per_class


def _run(root, entry, seed, evaluation, reports=None):
  workdir = os.path.join(root, f"{entry.replace(':', '-')}-s{seed}")
  os.makedirs(workdir)
  for name, content in {"eval.json": evaluation, "done.json": {},
                        **(reports or {})}.items():
    with open(os.path.join(workdir, name), "w") as f:
      json.dump(content, f)


def test_means_worst_classes_and_reports_by_hand(tmp_path):
  root = str(tmp_path)
  _run(root, "at", 0, {"pgd20": {"accuracy": 0.5, "per_class": [0.2, 0.6, 0.9]}})
  _run(root, "at", 1, {"pgd20": {"accuracy": 0.5, "per_class": [0.4, 0.3, 0.8]}},
       reports={"autoattack.json": {"autoattack": {"per_class": [0.1, 0.2, 0.3]}}})
  _run(root, "wat", 0, {"pgd20": {"per_class": [0.5, 0.5, 0.5]}})
  os.makedirs(os.path.join(root, "wat-s1"))  # unfinished: not counted
  got = per_class.collect(["at", "wat"], ["0", "1"], root,
                          ["pgd20", "autoattack"], reports=["autoattack.json"])
  np.testing.assert_allclose(got["pgd20"]["at"].mean(0), [0.3, 0.45, 0.85])
  assert got["pgd20"]["wat"].shape == (1, 3)
  assert list(got["autoattack"]) == ["at"]  # only seed 1 has the report
  text = per_class.table(got, {"at": "AT"})
  # AT's worst classes: 0.2 (class 0), 0.3 (class 1): mean 25, std 7.07.
  assert ("| AT (2 seeds) | 30.0 | 45.0 | 85.0 | 25.00 ± 7.07 | "
          "20.0 (class 0), 30.0 (class 1) |") in text
  assert "| wat (1 seed) | 50.0 | 50.0 | 50.0 | 50.00 | 50.0 (class 0) |" in text
  path = str(tmp_path / "p.png")
  per_class.plot(got, path, {"at": "AT"})
  assert os.path.getsize(path) > 1000
