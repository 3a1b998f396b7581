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
  with open(os.path.join(workdir, "done.json"), "w") as f:  # a finished run
    json.dump({}, f)


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


def _write_report(root, entry, seed, name, report):
  path = os.path.join(root, f"{protocol.run_name(entry)}-s{seed}", name)
  with open(path, "w") as f:
    json.dump(report, f)


def test_report_files_add_columns_on_the_same_images(tmp_path):
  root = str(tmp_path)
  # eval.json: all test images; autoattack.json: the first 500, where PGD-20
  # is 88% (not eval.json's 90%).
  for seed, (pgd, aa) in enumerate([(0.88, 0.85), (0.86, 0.85)]):
    _write(root, "gairat", seed, {"natural": {"accuracy": 0.99},
                                  "pgd20": {"accuracy": 0.90},
                                  "cw": {"accuracy": 0.89}})
    _write_report(root, "gairat", seed, "autoattack.json", {
        "natural": {"accuracy": 0.98}, "pgd20": {"accuracy": pgd},
        "autoattack": {"accuracy": aa},
        "autoattack-fast": {"accuracy": aa + 0.01},
        "checks": {"gradients": {"ok": True, "value": 0.0}}})
  columns = ["pgd20", "autoattack", "pgd20-autoattack", "autoattack-fast",
             "pgd20-autoattack-fast", "cw-autoattack"]
  rows = protocol.table(["gairat"], ["0", "1"], root, columns,
                        reports=["autoattack.json", "missing.json"]).splitlines()
  # pgd20 alone: eval.json's; the difference: both terms from the report
  # (3 and 1 points); cw is not in the report: no cross-file difference.
  assert rows[2] == ("| gairat (2 seeds) | 90.00 ± 0.00 | 85.00 ± 0.00 | "
                     "2.00 ± 1.41 | 86.00 ± 0.00 | 1.00 ± 1.41 | – |")
  # Without --reports the AutoAttack columns are empty, as before.
  rows = protocol.table(["gairat"], ["0"], root, columns).splitlines()
  assert rows[2] == "| gairat (1 seed) | 90.00 | – | – | – | – | – |"
  sources = [{"pgd20": {"accuracy": 0.9}},
             {"pgd20": {"accuracy": 0.8}, "apgd-ce": {"accuracy": 0.7}}]
  assert protocol.lookup(sources, "pgd20-apgd-ce") == pytest.approx(0.1)
  assert protocol.lookup(sources, "apgd-ce") == 0.7
  with pytest.raises(KeyError):
    protocol.lookup(sources, "apgd-t")
  # The report's checks tabulate too (a fraction of points, in %).
  row = protocol.table(["gairat"], ["0"], root, ["checks.gradients.value"],
                       reports=["autoattack.json"]).splitlines()[2]
  assert row == "| gairat (1 seed) | 0.00 |"


def test_parse_evaluate():
  assert protocol.parse_evaluate(["autoattack:500", "apgd-ce:100"]) == [
      ("autoattack", 500), ("apgd-ce", 100)]
  for bad in ("autoattack", "autoattack:0", ":500", "autoattack:x"):
    with pytest.raises(ValueError, match=f"--evaluate entry '{bad}' is not "
                       "ATTACK:N"):
      protocol.parse_evaluate([bad])


def test_evaluate_runs_writes_a_report_per_finished_run(tmp_path):
  """tools.evaluate on each finished run's export, once; the table reads it."""
  import keras
  root = str(tmp_path)
  keras.utils.set_random_seed(0)
  x = keras.Input((8, 8, 1))
  model = keras.Model(x, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
  for seed in (0, 1):
    _write(root, "at", seed, {"pgd20": {"accuracy": 0.5}})
    workdir = os.path.join(root, f"at-s{seed}")
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump({"seed": seed, "eval": {"epsilon": 0.1},
                 "data": {"name": "digits", "path": ""}}, f)
  model.export(os.path.join(root, "at-s0", "export"), verbose=False)
  os.makedirs(os.path.join(root, "at-s2"))  # unfinished: skipped
  # The dataset preset the run trained on (the last of the entry's and
  # --preset's), else the run's config.json data.
  cmd = protocol.evaluate_command("at", os.path.join(root, "at-s0"),
                                  "fgsm", 40, "digits")
  assert protocol.dataset_of("at:mnist10k", {}, "") == "mnist10k"
  assert protocol.dataset_of("at", {"data": {"name": "npz", "path": "a.npz"}},
                             "") == "a.npz"
  assert cmd[3:] == [
      f"--export={root}/at-s0/export", "--data=digits",
      "--attacks=natural,pgd20,fgsm", "--epsilon=0.1", "--max_examples=40",
      "--seed=0", f"--output={root}/at-s0/fgsm.json"]
  # Seed 1 already has its report: not evaluated again (it has no export).
  _write_report(root, "at", 1, "fgsm.json", {"fgsm": {"accuracy": 0.3},
                                                    "pgd20": {"accuracy": 0.2}})
  protocol.evaluate_runs(["at"], ["0", "1", "2"], root, [("fgsm", 40)],
                         "digits")
  with open(os.path.join(root, "at-s0", "fgsm.json")) as f:
    report = json.load(f)
  assert report["settings"]["num_examples"] == 40
  assert report["pgd20"]["accuracy"] <= report["natural"]["accuracy"]
  assert not os.path.exists(os.path.join(root, "at-s2", "fgsm.json"))
  row = protocol.table(["at"], ["0", "1"], root, ["fgsm"],
                       reports=["fgsm.json"]).splitlines()[2]
  values = [100 * report["fgsm"]["accuracy"], 30.0]
  assert row == f"| at (2 seeds) | {protocol.mean_std(values)} |"


def test_paired_table_differences_same_seeds_only(tmp_path):
  root, base_root = str(tmp_path / "m"), str(tmp_path / "b")
  for seed, pgd in enumerate([0.90, 0.95, 0.80]):
    _write(base_root, "at", seed, _results(pgd, 0.5))
  for seed, pgd in [(0, 0.92), (1, 0.99)]:  # seed 2 missing: not paired
    _write(root, "gairat", seed, _results(pgd, 0.6))
  text = protocol.paired_table(["gairat"], "at", ["0", "1", "2"], root,
                               base_root, ["pgd20", "pgd20.worst_class"])
  rows = text.splitlines()
  assert rows[0] == "| method − at | pgd20 | pgd20.worst_class |"
  # Per-seed differences 2 and 4 (not 92/99 against the 3-seed mean 88.33).
  assert rows[2] == "| gairat (2 seeds) | 3.00 ± 1.41 | 10.00 ± 0.00 |"
  # The baseline itself, in its own root, is no row.
  same = protocol.paired_table(["at", "gairat"], "at", ["0"], base_root,
                               base_root, ["pgd20"]).splitlines()
  assert len(same) == 3 and same[2].startswith("| gairat (0 seeds)")
