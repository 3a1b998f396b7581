"""The `eps_curve` report: radii from the config, clean accuracy at 0, a curve
that falls with the radius for a trained tiny model, JSON and PNG."""
import json

import ml_collections
import numpy as np
import pytest

from official.core import experiment
from official.evaluation import eps_curve
from tests.core import helpers


def _eval_cfg(**kw):
  return ml_collections.ConfigDict({"epsilon": 0.1, **kw})


def test_radii_from_the_config():
  np.testing.assert_allclose(eps_curve.epsilons(_eval_cfg(eps_curve_points=5)),
                             [0.0, 0.05, 0.1, 0.15, 0.2])
  # Default 9 points in [0, 2 eps]; capped at 1 for large budgets.
  assert len(eps_curve.epsilons(_eval_cfg())) == 9
  assert eps_curve.epsilons(_eval_cfg(epsilon=0.8, eps_curve_points=3)) == [
      0.0, 0.5, 1.0]
  # An explicit list wins; sorted, deduplicated, 0 (clean) always included.
  assert eps_curve.epsilons(_eval_cfg(eps_curve=(0.2, 0.05, 0.2))) == [
      0.0, 0.05, 0.2]
  with pytest.raises(ValueError, match=r"radii must be in \[0, 1\], got 1.5"):
    eps_curve.epsilons(_eval_cfg(eps_curve=(1.5,)))
  with pytest.raises(ValueError, match=r"eps_curve_points must be >= 2"):
    eps_curve.epsilons(_eval_cfg(eps_curve_points=1))


def test_example_limit():
  limit = eps_curve.example_limit
  assert limit(_eval_cfg(eps_curve_max_examples=1000, max_examples=0)) == 1000
  assert limit(_eval_cfg(eps_curve_max_examples=1000, max_examples=96)) == 96
  assert limit(_eval_cfg(eps_curve_max_examples=0, max_examples=0)) == 0


def test_curve_of_a_trained_model(tmp_path):
  config = helpers.tiny_config("at", "digits", epochs=3)
  config.eval.attacks = ("natural", "pgd20")
  config.eval.reports = ("eps_curve",)
  config.eval.eps_curve_points = 5  # 0, 0.05, 0.1, 0.15, 0.2
  run = experiment.prepare(config, str(tmp_path))
  results = experiment.train_and_evaluate(run)
  with open(tmp_path / "eval.json") as f:
    saved = json.load(f)["eps_curve"]
  with open(tmp_path / "eps_curve.json") as f:
    assert json.load(f) == saved
  assert saved == json.loads(json.dumps(results["eps_curve"]))
  np.testing.assert_allclose(saved["epsilons"], [0.0, 0.05, 0.1, 0.15, 0.2])
  acc = np.array(saved["accuracy"])
  assert saved["num_examples"] == 96  # eval.max_examples of the tiny config
  # Radius 0 is the clean accuracy, on the same examples as "natural".
  assert acc[0] == saved["clean_accuracy"] == results["natural"]["accuracy"]
  assert acc[0] > 0.5  # the model learned something: the curve is not flat 0
  # PGD is random: allow one example of noise between neighbouring radii.
  assert np.all(np.diff(acc) <= 1 / 96 + 1e-9), acc
  assert acc[-1] < acc[0]
  assert (saved["train_epsilon"], saved["eval_epsilon"]) == (0.1, 0.1)
  with open(tmp_path / "eps_curve.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
