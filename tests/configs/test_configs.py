"""Every config file: loads with the shared presets, validates, follows overrides."""
import glob
import importlib.util
import os

import pytest

from official.core import experiment

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
                 if os.path.basename(p) not in ("__init__.py", "common.py"))


def load(path, arg=None):
  spec = importlib.util.spec_from_file_location("cfg", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_the_base_methods_are_there():
  names = {os.path.basename(p) for p in CONFIGS}
  assert {"at.py", "trades.py", "mart.py"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
@pytest.mark.parametrize("preset", [None, "digits", "mnist10k"])
def test_config_loads_and_validates(path, preset):
  c = load(path, preset)
  for key in ("epochs", "batch_size", "seed"):
    assert key in c
  experiment.validate(c)  # names, epsilon, eval attacks, reports
  if preset == "mnist10k":
    assert c.data.name == "npz" and c.data.path.endswith("mnist10k.npz")
    assert c.attack.epsilon == pytest.approx(0.1)
    assert c.epochs == 10 and c.batch_size == 128
    # Every protocol run checks PGD-20 against AutoAttack's quick pair.
    assert "autoattack-fast" in c.eval.attacks and "pgd20" in c.eval.attacks
    assert c.eval.autoattack_max_examples == 500
  if preset is None:  # the papers' CIFAR settings
    assert c.attack.epsilon == pytest.approx(8 / 255)


def test_eval_epsilon_follows_an_override_of_the_training_epsilon():
  c = load(os.path.join(REPO, "configs", "at.py"), "digits")
  c.attack.epsilon = 0.2           # what --config.attack.epsilon=0.2 does
  assert experiment.resolve(c).eval.epsilon == pytest.approx(0.2)
  c = load(os.path.join(REPO, "configs", "at.py"), "digits")
  c.eval.epsilon = 0.05            # an explicit eval epsilon wins ...
  experiment.resolve(c)
  assert c.eval.epsilon == pytest.approx(0.05)
  assert c.attack.epsilon == pytest.approx(0.1)  # ... and leaves training alone


def test_unknown_preset_names_the_valid_ones():
  with pytest.raises(ValueError, match="unknown config preset 'nope'; valid: .*digits"):
    load(os.path.join(REPO, "configs", "at.py"), "nope")


def test_default_workdir_names_config_and_presets():
  from official import train
  assert train.default_workdir("configs/lrat.py") == os.path.join("runs", "lrat")
  assert train.default_workdir("configs/mail.py:trades,mnist10k") == os.path.join(
      "runs", "mail-trades-mnist10k")


def test_long_tailed_runs_report_head_and_tail_groups_for_any_method():
  c = load(os.path.join(REPO, "configs", "at.py"), "digits")
  assert "groups" not in experiment.resolve(c).eval.reports
  c.data.imbalance.profile = "exp"   # --config.data.imbalance.profile=exp
  assert "groups" in experiment.resolve(c).eval.reports
