"""cross_attack: seen / unseen grouping by the training losses, the training
attacks rebuilt from the config (at, lrat, trades), the pgd10 / cw10 / kl10
eval attacks at the training step, and the report in eval.json of a run."""
import json
import types

import pytest

from configs import common
from official.core import experiment
from official.evaluation import cross_attack
from official.evaluation import reports
from official.evaluation import robustness
from tests.core import helpers


def _summary(accuracy, loss=None):
  return {"accuracy": accuracy, "per_class": [accuracy],
          "attack": {"loss": loss} if loss else {}}


RESULTS = {"natural": _summary(0.9), "fgsm": _summary(0.7, "ce"),
           "pgd20": _summary(0.5, "ce"), "cw": _summary(0.4, "cw"),
           "kl10": _summary(0.8, "kl"), "groups": {"head_classes": [0]}}


def test_group_by_training_losses():
  assert cross_attack.group(RESULTS, ["ce"]) == {
      "natural": 0.9, "seen": {"fgsm": 0.7, "pgd20": 0.5},
      "unseen": {"cw": 0.4, "kl10": 0.8}}
  assert cross_attack.group(RESULTS, ["ce", "cw"])["unseen"] == {"kl10": 0.8}
  assert cross_attack.group(RESULTS, ["kl"])["seen"] == {"kl10": 0.8}


def _report(method, preset="digits", attacks=("natural", "pgd20", "cw")):
  config = helpers.tiny_config(method, preset)
  config.eval.attacks = attacks
  results = {n: _summary(0.5, robustness.attack_specs(
      experiment.resolve(config).eval)[n].loss if n != "natural" else None)
             for n in attacks}
  data = types.SimpleNamespace(num_ids=10, train_ids=list(range(10)),
                               class_counts=[1] * 10)
  return cross_attack.report(reports.ReportContext(
      logits_fn=None, data=data, config=config, workdir="", results=results,
      seed=0, jit_compile=False,
      training_attacks=experiment.training_attacks(config, data)))


def test_training_attacks_of_at_lrat_and_trades():
  out = _report("at")
  assert (out["trained_with"], out["trained_losses"]) == (["train_pgd_ce"],
                                                          ["ce"])
  assert (set(out["seen"]), set(out["unseen"])) == ({"pgd20"}, {"cw"})
  assert "missing" not in out
  out = _report("lrat")
  assert out["trained_with"] == ["train_pgd_ce", "lrat_pgd_cw"]
  assert set(out["seen"]) == {"pgd20", "cw"} and out["unseen"] == {}
  assert out["missing"].startswith("add kl10 to eval.attacks")
  out = _report("trades", preset="digits")
  assert out["trained_losses"] == ["kl"] and out["seen"] == {}
  assert "add kl10" in out["missing"]


def test_training_like_eval_attacks_follow_the_training_step():
  config = helpers.tiny_config("lrat", "digits")
  config.attack.step_size = 0.013      # --config.attack.step_size=0.013
  specs = robustness.attack_specs(experiment.resolve(config).eval)
  for name, loss, start in (("pgd10", "ce", "uniform"),
                            ("cw10", "cw", "uniform"),
                            ("kl10", "kl", "gaussian")):
    spec = specs[name]
    assert (spec.loss, spec.steps, spec.random_start) == (loss, 10, start)
    assert spec.step_size == pytest.approx(0.013)
    assert spec.epsilon == pytest.approx(config.attack.epsilon)
  assert specs["cw10"].confidence == 50.0
  assert "cross_attack" in common.base().eval.reports


@pytest.mark.parametrize("method", ["at", "lrat"])
def test_eval_json_has_the_report(tmp_path, method):
  config = helpers.tiny_config(method, "digits")
  config.eval.max_examples = 48
  run = experiment.prepare(config, str(tmp_path / method))
  experiment.evaluate(run)  # the untrained network: only the layout matters
  with open(tmp_path / method / "eval.json") as f:
    report = json.load(f)["cross_attack"]
  expected = {"at": ["train_pgd_ce"],
              "lrat": ["train_pgd_ce", "lrat_pgd_cw"]}[method]
  assert report["trained_with"] == expected
  names = set(config.eval.attacks) - {"natural"}
  assert set(report["seen"]) | set(report["unseen"]) == names
  assert report["unseen"]  # lrat: kl10 (its config lists it)
