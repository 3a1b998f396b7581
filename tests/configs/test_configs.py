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
  if preset is None:  # the papers' CIFAR settings (RoBal's code: 0.031)
    assert c.attack.epsilon == pytest.approx(8 / 255, abs=5e-4)


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


@pytest.mark.parametrize("method", ["at", "gairat", "iaat", "done", "srat",
                                    "robal", "at_bsl"])
def test_the_capacity_limited_preset_resolves_for_every_method(method):
  c = load(os.path.join(REPO, "configs", f"{method}.py"), "mnist10k_hard")
  experiment.validate(c)
  # mnist10k's data, schedule and evaluation ...
  easy = load(os.path.join(REPO, "configs", f"{method}.py"), "mnist10k")
  for key in ("data.path", "epochs", "batch_size", "optimizer.learning_rate",
              "eval.attacks", "eval.reports", "eval.autoattack_max_examples"):
    node_hard, node_easy = c, easy
    for part in key.split("."):
      node_hard, node_easy = node_hard[part], node_easy[part]
    assert node_hard == node_easy, key
  # ... with the narrow network at eps 0.3, ramped over the first 5 epochs.
  assert tuple(c.model.filters) == (6, 6, 12, 12)
  assert tuple(c.model.dense_units) == (100, 100)
  assert c.attack.epsilon == pytest.approx(0.3)
  assert c.attack.step_size == pytest.approx(0.06)
  assert c.eval.pgd_step_size == pytest.approx(0.03)
  assert c.attack.epsilon_warmup_epochs == 5
  # The methods' mnist10k presets (burn-in, warm-up) apply to the variant.
  if method in ("gairat", "done"):
    assert c.reweighting.burn_in_epochs == 5
  if method == "done":  # its own variant preset: r by the accuracy rule
    assert c.reweighting.r == pytest.approx(2.0)
  if method == "iaat":
    assert c.reweighting.warmup_epochs == 5
    assert c.reweighting.gamma == pytest.approx(0.3 * 1.9 / 8)
  if method == "srat":  # its long-tailed version of the same data
    assert c.data.imbalance.profile == "exp" and c.data.imbalance.n_max == 600


def test_the_long_tailed_capacity_limited_preset_keeps_the_step_count():
  hard = load(os.path.join(REPO, "configs", "at.py"), "mnist10k_hard")
  lt = load(os.path.join(REPO, "configs", "srat.py"), "mnist10k_hard_lt,at")
  experiment.validate(lt)
  assert lt.reweighting.name == "none"
  assert (lt.data.imbalance.profile, lt.data.imbalance.ratio) == ("exp", 100.0)
  assert tuple(lt.model.filters) == tuple(hard.model.filters)
  assert lt.attack.epsilon == hard.attack.epsilon
  # 1,489 long-tailed images (11 steps of 128) for 50 epochs ~ 8,000 for 10.
  n_lt = sum(int(600 * 100 ** (-i / 9)) for i in range(10))
  steps_lt, steps_hard = n_lt // 128 * lt.epochs, 8000 // 128 * hard.epochs
  assert abs(steps_lt - steps_hard) / steps_hard < 0.15
  assert lt.attack.epsilon_warmup_epochs * (n_lt // 128) == pytest.approx(
      hard.attack.epsilon_warmup_epochs * (8000 // 128), rel=0.15)


def test_model_width_is_overridable_under_every_small_cnn_preset():
  for preset in ("digits", "mnist10k", "mnist10k_hard", "mnist"):
    c = load(os.path.join(REPO, "configs", "at.py"), preset)
    c.model.filters = (4, 4, 8, 8)    # what --config.model.filters=... does
    c.model.dense_units = (32, 32)
    assert {"filters", "dense_units", "padding", "dropout"} <= set(c.model)


def test_the_capacity_limited_preset_trains_a_few_steps(tmp_path):
  import numpy as np
  from tests.core import helpers
  c = load(os.path.join(REPO, "configs", "at.py"), "mnist10k_hard")
  c.batch_size = 32
  c.attack.steps = 2
  run = helpers.fit_steps(c, tmp_path / "hard", steps=4)
  assert run.trainer.network.get_layer("conv1").filters == 6
  assert run.trainer.network.get_layer("fc1").units == 100
  head = run.trainer.network.get_layer("logits").kernel.numpy()
  assert np.isfinite(head).all() and np.abs(head).max() > 0  # left its zero init
  assert run.trainer.epsilon_warmup_steps == 5 * run.data.steps_per_epoch


def _flat(c):
  import json
  from official.core import workdir
  return workdir.flatten(json.loads(experiment.resolve(c).to_json_best_effort()))


def test_srat_long_tailed_presets_resolve_as_before_the_move_to_common():
  """mnist10k_lt / mnist10k_hard_lt / cifar10_lt moved from configs/srat.py to
  configs/common.py: SRAT's arms keep every training key (the values stored
  from the code before the move), so their protocol runs resume."""
  import json
  path = os.path.join(os.path.dirname(__file__), "srat_presets_before.json")
  with open(path) as f:
    before = json.load(f)
  assert {"mnist10k_lt", "mnist10k_hard_lt", "mnist10k_lt,at",
          "mnist10k_hard_lt,at_cb", "cifar10_lt"} <= set(before)
  for arg, old in before.items():
    new = _flat(load(os.path.join(REPO, "configs", "srat.py"), arg))
    new["data.path"] = os.path.basename(new["data.path"])  # stored so
    for key, value in old.items():
      assert new[key] == value, (arg, key)
    # New keys only where their default keeps the old behaviour.
    added = {k: new[k] for k in new if k not in old and not k.startswith(
        ("eval.", "checkpoints_to_keep", "xla", "data.eval_batch_size"))}
    assert added.get("model.head", "linear") == "linear", (arg, added)


# The training keys that make two runs "the same data and schedule".
SHARED_KEYS = ("data.name", "data.path", "data.imbalance.profile",
               "data.imbalance.ratio", "data.imbalance.n_max",
               "data.imbalance.seed", "epochs", "batch_size",
               "optimizer.learning_rate", "optimizer.lr_boundaries",
               "optimizer.weight_decay", "model.name", "model.filters",
               "model.dense_units", "attack.epsilon", "attack.step_size",
               "attack.steps", "attack.epsilon_warmup_epochs")


@pytest.mark.parametrize("preset", ["mnist10k_lt", "mnist10k_hard_lt"])
@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_long_tailed_presets_mean_the_same_for_every_method(path, preset):
  arm = _flat(load(os.path.join(REPO, "configs", "srat.py"), f"{preset},at"))
  c = load(path, preset)
  experiment.validate(c)
  flat = _flat(c)
  for key in SHARED_KEYS:
    assert flat[key] == arm[key], key
  assert "groups" in c.eval.reports
  name = os.path.basename(path)
  # The method presets of the family apply (common.PRESET_FAMILY).
  if name in ("gairat.py", "mail.py", "lrat.py", "done.py"):
    assert c.reweighting.burn_in_epochs == 5
  if name == "done.py":  # mnist10k_hard's r on the hard data, mnist10k's else
    assert c.reweighting.r == (2.0 if preset == "mnist10k_hard_lt" else 5.0)
  if name == "iaat.py":
    gamma = 0.3 * 1.9 / 8 if preset == "mnist10k_hard_lt" else 0.024
    assert c.reweighting.gamma == pytest.approx(gamma)


def test_cifar10_lt_is_a_common_preset():
  for name in ("at.py", "srat.py", "robal.py", "done.py"):
    c = load(os.path.join(REPO, "configs", name), "cifar10_lt")
    assert (c.data.name, c.data.imbalance.profile, c.data.imbalance.ratio,
            c.data.imbalance.n_max) == ("cifar10", "exp", 100.0, 0), name
