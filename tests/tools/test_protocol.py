"""tools/protocol.py: mean ± sample std over seeds, eps curves, the plot."""
import json
import os

import numpy as np
import pytest

from tools import protocol


def _write(root, entry, seed, results):
  workdir = os.path.join(root, f"{protocol.run_name(entry)}-s{seed}")
  os.makedirs(workdir)
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(results, f)


def _results(pgd, worst, curve=None):
  out = {"pgd20": {"accuracy": pgd, "worst_class": worst}}
  if curve is not None:
    out["eps_curve"] = {"epsilons": [0.0, 0.1], "accuracy": curve,
                        "train_epsilon": 0.1}
  return out


def test_table_mean_and_sample_std(tmp_path):
  root = str(tmp_path)
  for seed, (pgd, worst) in enumerate([(0.90, 0.80), (0.92, 0.70), (0.94, 0.75)]):
    _write(root, "mail:trades", seed, _results(pgd, worst))
  _write(root, "at", 0, _results(0.5, 0.25))
  text = protocol.table(["mail:trades", "at", "gairat"], ["0", "1", "2"], root,
                        ["pgd20", "pgd20.worst_class", "cw"])
  rows = text.splitlines()
  assert rows[0] == "| method | pgd20 | pgd20.worst_class | cw |"
  # Sample std (n - 1) of 90, 92, 94 is 2; of 80, 70, 75 it is 5.
  assert rows[2] == "| mail:trades (3 seeds) | 92.00 ± 2.00 | 75.00 ± 5.00 | – |"
  # One seed: its value, no spread; missing runs: a row of dashes.
  assert rows[3] == "| at (1 seed) | 50.00 | 25.00 | – |"
  assert rows[4] == "| gairat (0 seeds) | – | – | – |"
  # A difference column is taken per run, then averaged: 10, 22, 19.
  gap = protocol.table(["mail:trades"], ["0", "1", "2"], root,
                       ["pgd20-pgd20.worst_class"]).splitlines()[2]
  assert gap == "| mail:trades (3 seeds) | 17.00 ± 6.24 |"


def test_eps_curves_average_and_plot(tmp_path):
  root = str(tmp_path)
  _write(root, "at", 0, _results(0.9, 0.8, curve=[0.98, 0.90]))
  _write(root, "at", 1, _results(0.9, 0.8, curve=[0.96, 0.86]))
  _write(root, "iaat", 0, _results(0.9, 0.8, curve=[0.99, 0.88]))
  _write(root, "mail", 0, _results(0.9, 0.8))  # no curve: left out
  curves = protocol.eps_curves(["at", "iaat", "mail"], ["0", "1"], root)
  assert list(curves) == ["at", "iaat"]
  np.testing.assert_allclose(curves["at"][1], [[98, 90], [96, 86]])
  assert curves["at"][2] == 0.1  # the training radius, marked on the plot
  rows = protocol.eps_curve_table(curves).splitlines()
  assert rows[0] == "| method | ε 0 | ε 0.1 |"
  assert rows[2] == "| at (2 seeds) | 97.00 ± 1.41 | 88.00 ± 2.83 |"
  assert rows[3] == "| iaat (1 seed) | 99.00 | 88.00 |"
  path = os.path.join(root, "eps_curve.png")
  protocol.plot_eps_curves(curves, path)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_eps_curves_at_different_radii_are_refused(tmp_path):
  root = str(tmp_path)
  _write(root, "at", 0, _results(0.9, 0.8, curve=[0.98, 0.90]))
  other = _results(0.9, 0.8, curve=[0.98, 0.90])
  other["eps_curve"]["epsilons"] = [0.0, 0.2]
  _write(root, "at", 1, other)
  with pytest.raises(ValueError, match="at: runs have eps_curve reports at "
                     "different radii"):
    protocol.eps_curves(["at"], ["0", "1"], root)
