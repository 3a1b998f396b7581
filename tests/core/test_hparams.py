"""core/hparams.py: a run's config and final metrics as HParams summaries,
read back from the event files."""
import glob
import json
import os

import pytest

from official.core import hparams
from official.core import workdir as workdir_lib

CONFIG = {"seed": 1, "epochs": 10, "batch_size": 128, "precision": "float32",
          "model": {"name": "small_cnn", "filters": [6, 6, 12, 12]},
          "data": {"name": "npz", "imbalance": {"ratio": 1.0}},
          "objective": {"name": "at", "beta": 6.0},
          "reweighting": {"name": "gairat", "lam": float("inf"), "term": "",
                          "normalize": False, "bias": None},
          "eval": {"attacks": ["natural", "pgd20", "autoattack-fast"],
                   "reports": []}}


def _summary(accuracy, per_class):
  return {"accuracy": accuracy, "per_class": per_class,
          "worst_class": min(per_class), "tail": min(per_class),
          "num_examples": 100, "attack": {}}


EVAL = {"natural": _summary(0.9, [0.8, 1.0]), "pgd20": _summary(0.5, [0.25, 0.75]),
        "autoattack-fast": _summary(0.45, [0.2, 0.7]),
        "cross_attack": {"seen": {}}, "eps_curve": {"accuracy": [0.9, 0.5]}}


def _run(root, name, config=CONFIG, results=EVAL, reports=None):
  workdir = os.path.join(root, name)
  os.makedirs(workdir)
  for file, content in (("config.json", config), ("eval.json", results),
                        ("done.json", {}), *(reports or {}).items()):
    with open(os.path.join(workdir, file), "w") as f:
      json.dump(content, f)
  return workdir


def test_a_run_writes_its_flat_config_and_final_metrics(tmp_path):
  workdir = _run(str(tmp_path), "gairat-s1", reports={
      "autoattack.json": {"natural": _summary(0.1, [0.1, 0.1]),
                          "autoattack": _summary(0.4, [0.3, 0.5])}})
  values, metrics = hparams.write_run(workdir)
  written = hparams.read(os.path.join(workdir, "tb", "hparams"))
  assert written["trial_id"] == "gairat-s1"
  assert written["hparams"] == values
  assert values == {
      "seed": 1, "epochs": 10, "batch_size": 128, "precision": "float32",
      "model.name": "small_cnn", "model.filters": "[6, 6, 12, 12]",
      "data.name": "npz", "data.imbalance.ratio": 1.0,
      "objective.name": "at", "objective.beta": 6.0,
      "reweighting.name": "gairat", "reweighting.lam": "inf",
      "reweighting.term": "", "reweighting.normalize": False,
      "reweighting.bias": "null",
      "eval.attacks": '["natural", "pgd20", "autoattack-fast"]',
      "eval.reports": "[]"}
  # eval.json's attacks (not its reports), then the AutoAttack report's
  # attack that eval.json lacks (its natural, on fewer images, is not used).
  expected = {"eval/natural/accuracy": 0.9, "eval/natural/worst_class": 0.8,
              "eval/pgd20/accuracy": 0.5, "eval/pgd20/worst_class": 0.25,
              "eval/autoattack-fast/accuracy": 0.45,
              "eval/autoattack-fast/worst_class": 0.2,
              "eval/autoattack/accuracy": 0.4,
              "eval/autoattack/worst_class": 0.3}
  assert metrics == expected
  assert written["metrics"] == pytest.approx(expected)
  assert written["experiment"] is None  # a run writes no experiment summary


def test_a_rewrite_leaves_one_session(tmp_path):
  workdir = _run(str(tmp_path), "at-s0")
  hparams.write_run(workdir)
  results = dict(EVAL, pgd20=_summary(0.55, [0.5, 0.6]))
  hparams.write_run(workdir, results)
  files = glob.glob(os.path.join(workdir, "tb", "hparams", "events.out.*"))
  assert len(files) == 1
  written = hparams.read(os.path.join(workdir, "tb", "hparams"))
  assert written["metrics"]["eval/pgd20/accuracy"] == pytest.approx(0.55)


def test_the_experiment_lists_differing_keys_and_every_metric(tmp_path):
  root = str(tmp_path)
  runs = {}
  for seed, method in ((0, "at"), (1, "at"), (0, "gairat")):
    config = json.loads(json.dumps(CONFIG))
    config["seed"] = seed
    config["reweighting"] = ({"name": "none"} if method == "at"
                             else CONFIG["reweighting"])
    results = EVAL if method == "gairat" else {"natural": EVAL["natural"]}
    workdir = _run(root, f"{method}-s{seed}", config, results)
    runs[workdir] = hparams.write_run(workdir)
  keys, tags = hparams.write_experiment(root, runs)
  # The keys that differ between the runs that have them (not GAIRAT's lam:
  # one value in its one run), and the identity keys.
  assert keys == ["objective.name", "reweighting.name", "seed"]
  assert tags == [  # eval.json's order, the union over the runs
      "eval/natural/accuracy", "eval/natural/worst_class",
      "eval/pgd20/accuracy", "eval/pgd20/worst_class",
      "eval/autoattack-fast/accuracy", "eval/autoattack-fast/worst_class"]
  written = hparams.read(root)
  assert written["experiment"] == {"hparams": keys, "metrics": tags,
                                   "differs": ["reweighting.name", "seed"]}
  hparams.write_experiment(root, runs)  # replaced, not a second one
  assert len(glob.glob(os.path.join(root, "events.out.*"))) == 1
  assert hparams.metric_display_name("eval/pgd20/worst_class") == (
      "pgd20 worst class")


def test_a_finished_run_of_official_train_has_its_session(tmp_path):
  """What experiment.evaluate writes, equal to config.json and eval.json."""
  from official.core import experiment
  from tests.core import helpers
  config = helpers.tiny_config(epochs=1, **{"eval.attacks": ("natural",),
                                            "eval.reports": ()})
  run = experiment.prepare(config, str(tmp_path / "run"))
  results = experiment.train_and_evaluate(run)
  written = hparams.read(str(tmp_path / "run" / "tb" / "hparams"))
  recorded = workdir_lib.read_json(str(tmp_path / "run" / "config.json"))
  assert written["hparams"] == hparams.hparam_values(recorded)
  assert written["hparams"]["model.filters"] == "[16, 16, 32, 32]"
  assert written["metrics"] == pytest.approx({
      "eval/natural/accuracy": results["natural"]["accuracy"],
      "eval/natural/worst_class": results["natural"]["worst_class"]})
