"""core/dry_run.py: the whole config built and timed on synthetic data, nothing written."""
import glob
import os

import numpy as np
import pytest

from official import api
from official.core import dry_run
from official.data import long_tail
from official.data import registry as data_registry
from official.modeling import registry as model_registry
from tests.core import helpers

CONFIGS = sorted(os.path.basename(p)[:-3]
                 for p in glob.glob(os.path.join(helpers.REPO, "configs", "*.py"))
                 if os.path.basename(p) not in ("__init__.py", "common.py"))
FAST = dict(step_seconds=0.5, timed_seconds=0.3, eval_seconds=2.0)


def _run(config, overrides=None, **budgets):
  return dry_run.run(api.load_config(config, overrides), **{**FAST, **budgets})


def test_a_digits_dry_run_projects_the_whole_schedule():
  config = api.load_config("configs/at.py:digits")
  report = dry_run.run(config, **FAST)
  assert report["data"] == {"name": "digits", "synthetic": False,
                            "num_train": 1437, "num_test": 360,
                            "image_shape": [8, 8, 1], "num_classes": 10}
  network = model_registry.build_model(config.model, (8, 8, 1), 10)
  assert report["model"] == {"name": "small_cnn",
                             "parameters": network.count_params()}
  t = report["training"]
  assert (t["batch_size"], t["steps_per_epoch"]) == (64, 1437 // 64)
  [phase] = t["phases"]
  assert (phase["start_epoch"], phase["epochs"]) == (0, 15)
  assert phase["timed_steps"] >= 2 and phase["step_seconds"] > 0
  assert phase["seconds"] == pytest.approx(15 * 22 * phase["step_seconds"])
  assert phase["examples_per_second"] == pytest.approx(
      64 / phase["step_seconds"])
  e = report["evaluation"]
  assert [a["name"] for a in e["attacks"]] == [*config.eval.attacks, "eps_curve"]
  for a in e["attacks"]:
    assert a["examples"] == 360 and a["seconds_per_example"] > 0
    assert a["seconds"] == pytest.approx(360 * a["seconds_per_example"])
  assert e["seconds"] == pytest.approx(sum(a["seconds"] for a in e["attacks"]))
  assert report["total_seconds"] == pytest.approx(
      t["seconds"] + e["seconds"] + report["startup_seconds"])
  assert report["memory"]["peak_rss_bytes"] > 0
  text = dry_run.format_report(report)
  assert "small_cnn: 115,690 parameters" in text
  assert "epochs 1-15:" in text and "Projected wall time" in text


@pytest.mark.parametrize("config,phases", [
    ("lrat:digits", [(0, 5), (5, 10)]),     # burn-in without the CW passes
    ("iaat:digits", [(0, 5), (5, 10)]),     # warm-up without the search
    ("gairat:digits", [(0, 15)]),           # the same step before and after
])
def test_each_phase_of_a_different_step_is_timed(config, phases):
  name, preset = config.split(":")
  report = _run(f"configs/{name}.py:{preset}")
  assert [(p["start_epoch"], p["epochs"])
          for p in report["training"]["phases"]] == phases
  if name == "lrat":  # the CW variant's attack and forward cost extra
    first, second = report["training"]["phases"]
    # CPU time per step (wall x the CPU share of the timed steps): on a
    # machine busy with other jobs the wall times of two short phases can
    # swap (measured: 0.051 vs 0.056 s with three jobs beside the test).
    cpu = lambda p: p["step_seconds"] * p["cpu_share"]  # noqa: E731
    assert cpu(second) > cpu(first)


def test_autoattack_is_estimated_from_its_pass_counts():
  report = _run("configs/at.py:digits", {
      "eval.attacks": ("natural", "pgd20", "autoattack"),
      "eval.autoattack_max_examples": 100, "eval.reports": ()})
  natural, pgd20, aa = report["evaluation"]["attacks"]
  grad = (pgd20["seconds_per_example"] - natural["seconds_per_example"]) / 20
  # 1 clean forward; APGD-CE 100, APGD-T 9 x 100, FAB-T 9 x 100 gradient
  # passes (+ a forward each), Square 5,000 forwards.
  g, f = 1 + 100 + 900 + 900, 1 + 1 + 9 + 901 + 5001
  assert aa["how"].startswith(f"estimated: {g:,} gradient + {f:,} forward")
  assert aa["seconds_per_example"] == pytest.approx(
      g * grad + f * natural["seconds_per_example"], rel=1e-6)
  assert aa["examples"] == 100
  assert dry_run.autoattack_passes("apgd-t", 3) == (200, 2)  # 2 targets


def test_synthetic_data_has_each_datasets_shape_and_long_tail():
  for name, (shape, n_train, n_test, classes) in dry_run.SHAPES.items():
    if name == "svhn_cropped":
      continue  # (the same code; spare the memory)
    splits = dry_run.synthetic_splits(name)
    assert splits.x_train.shape == (n_train, *shape)
    assert splits.x_test.shape == (n_test, *shape)
    assert splits.x_train.dtype == np.uint8 and splits.pixel_max == 255
    np.testing.assert_array_equal(np.bincount(splits.y_train),
                                  [n_train // classes] * classes)
  config = api.load_config("configs/srat.py:cifar10_lt")
  with dry_run._loader("cifar10", dry_run.synthetic_splits("cifar10")):
    data = data_registry.load(config.data, batch_size=128, seed=0)
  counts = long_tail.class_counts("exp", 100.0, 5000, 10)
  np.testing.assert_array_equal(data.class_counts, counts)
  assert data.num_train == sum(counts) == 12406
  assert data_registry.DATASETS["cifar10"].__name__ == "load_tfds"  # restored


def test_two_replicas():
  report = _run("configs/at.py:digits", {"distribute": "mirrored",
                                         "eval.attacks": ("natural", "pgd20")})
  assert report["strategy"] == {"distribute": "mirrored", "replicas": 2,
                                "devices": ["CPU:0", "CPU:1"]}
  assert report["training"]["timing_batch"] % 2 == 0


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_dry_runs_with_its_digits_preset(name):
  report = _run(f"configs/{name}.py:digits",
                {"eval.attacks": ("natural", "pgd20")})
  assert report["total_seconds"] > 0
  assert report["training"]["phases"][0]["timed_steps"] >= 2


def _snapshot(directory):
  return {p: (os.path.getsize(p), os.path.getmtime(p))
          for p in glob.glob(os.path.join(directory, "**"), recursive=True)}


def test_cli_writes_nothing(tmp_path):
  existing = tmp_path / "existing"
  existing.mkdir()
  (existing / "config.json").write_text("{}")
  before = _snapshot(str(existing))
  scratch = tmp_path / "tmp"
  scratch.mkdir()
  default = os.path.join(helpers.REPO, "runs", "lrat-digits")
  default_before = _snapshot(default) if os.path.exists(default) else None
  env = {"TMPDIR": str(scratch)}
  for workdir in ([f"--workdir={existing}"], []):
    proc = _train_cli(["--config=configs/lrat.py:digits", "--dry_run",
                       "--config.eval.attacks=('natural','pgd20')", *workdir],
                      env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Dry run: nothing is written" in proc.stdout
    assert "epochs 6-15:" in proc.stdout  # after LRAT's burn-in
    assert "Projected wall time on this machine" in proc.stdout
  assert _snapshot(str(existing)) == before
  assert os.listdir(scratch) == []  # the throwaway directory was removed
  if default_before is None:
    assert not os.path.exists(default)
  else:
    assert _snapshot(default) == default_before
  proc = _train_cli(["--config=configs/at.py:digits", "--dry_run",
                     "--config.model.name=custom"], env)
  assert proc.returncode == 2
  assert helpers.error_lines(proc) == [
      "error: model.name=custom needs model.builder=FILE.py:FUNCTION or "
      "package.module:FUNCTION, a function (input_shape, num_classes) -> "
      "keras.Model"]


def _train_cli(args, env):
  import subprocess
  import sys
  full = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  full.update(env, CUDA_VISIBLE_DEVICES="")
  return subprocess.run([sys.executable, "-m", "official.train", *args],
                        cwd=helpers.REPO, capture_output=True, text=True,
                        env=full, timeout=600)
