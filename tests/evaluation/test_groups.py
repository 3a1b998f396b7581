"""The `groups` report: head / tail split, group accuracies, PNG, TensorBoard,
and a whole SRAT run on long-tailed digits."""
import glob
import json
import os
import types

import ml_collections
import numpy as np
import pytest

from official.core import experiment
from official.evaluation import groups
from official.evaluation import reports
from tests.core import helpers

CIFAR10_LT = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_split_classes():
  assert groups.split_classes(CIFAR10_LT) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
  assert groups.split_classes(CIFAR10_LT, 0.3) == ([0, 1, 2], list(range(3, 10)))
  # Unsorted counts; ties go to the lower class index.
  assert groups.split_classes([1, 5, 5, 2]) == ([1, 2], [0, 3])
  # Never an empty group.
  assert groups.split_classes([3, 1], 0.01) == ([0], [1])
  assert groups.split_classes([3, 1], 0.99) == ([0], [1])
  with pytest.raises(ValueError, match=r"eval.head_fraction must be in"):
    groups.split_classes([3, 1], 1.0)


def _ctx(workdir, results, counts, head_fraction=0.5):
  config = ml_collections.ConfigDict({"eval": {"head_fraction": head_fraction}})
  data = types.SimpleNamespace(class_counts=np.array(counts))
  return reports.ReportContext(logits_fn=None, data=data, config=config,
                               workdir=str(workdir), results=results, seed=0,
                               jit_compile=False)


def test_report_on_fixed_results(tmp_path):
  counts = [50, 400, 10, 100]  # head = classes 1, 3; tail = 0, 2
  results = {
      "natural": {"accuracy": 0.6, "per_class": [0.5, 0.9, 0.2, 0.8]},
      "pgd20": {"accuracy": 0.3, "per_class": [0.2, 0.6, float("nan"), 0.4]},
  }
  out = reports.run_reports(("groups",), _ctx(tmp_path, results, counts))
  g = out["groups"]
  assert (g["head_classes"], g["tail_classes"]) == ([1, 3], [0, 2])
  assert g["class_counts"] == counts and g["head_fraction"] == 0.5
  assert g["natural"] == pytest.approx({"head": 0.85, "tail": 0.35})
  # A class without test examples (nan) is left out of its group's mean.
  assert g["pgd20"] == pytest.approx({"head": 0.5, "tail": 0.2})
  with open(tmp_path / "per_class.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert glob.glob(str(tmp_path / "tb" / "eval" / "events.out.*"))
  json.dumps(g)  # eval.json-ready


def test_srat_run_writes_groups(tmp_path):
  config = helpers.tiny_config("srat", "digits", epochs=1)
  run = experiment.prepare(config, str(tmp_path))
  results = experiment.train_and_evaluate(run)
  with open(tmp_path / "eval.json") as f:
    saved = json.load(f)
  assert saved["groups"] == json.loads(json.dumps(results["groups"]))
  g = saved["groups"]
  assert g["class_counts"] == [139, 107, 83, 64, 49, 38, 29, 23, 17, 13]
  assert (g["head_classes"], g["tail_classes"]) == ([0, 1, 2, 3, 4],
                                                    [5, 6, 7, 8, 9])
  for name in ("natural", "fgsm", "pgd20", "cw"):
    per_class = np.array(saved[name]["per_class"])
    assert g[name]["head"] == pytest.approx(np.nanmean(per_class[:5]))
    assert g[name]["tail"] == pytest.approx(np.nanmean(per_class[5:]))
  assert os.path.getsize(tmp_path / "per_class.png") > 1000
  with open(tmp_path / "data.json") as f:
    assert json.load(f)["class_counts"] == g["class_counts"]
