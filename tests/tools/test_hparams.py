"""tools/hparams.py: (re)writes the HParams summaries of finished runs below a root."""
import json
import os
import re
import subprocess
import sys

import pytest

from official.core import hparams
from tests.core import helpers

_ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}


def _summary(accuracy):
  return {"accuracy": accuracy, "per_class": [accuracy, accuracy],
          "worst_class": accuracy, "tail": accuracy, "num_examples": 10}


def _run(root, name, seed, finished=True, legacy=False):
  workdir = os.path.join(root, name)
  os.makedirs(os.path.join(workdir, "export"))
  config = {"seed": seed, "epochs": 10, "model": {"name": "small_cnn"},
            "reweighting": {"name": name.split("-")[0]}}
  files = {"config.json": config,
           "eval.json": {"natural": _summary(0.9), "pgd20": _summary(0.5 + seed / 100)}}
  if finished and not legacy:
    files["done.json"] = {}
  if legacy:  # before done.json: eval.json + export, no lock
    open(os.path.join(workdir, "export", "saved_model.pb"), "w").close()
  if not finished:
    open(os.path.join(workdir, ".lock"), "w").close()
  for file, content in files.items():
    with open(os.path.join(workdir, file), "w") as f:
      json.dump(content, f)
  return workdir


def _tool(*args):
  return subprocess.run([sys.executable, "-m", "tools.hparams", *args],
                        cwd=helpers.REPO, capture_output=True, text=True,
                        env=_ENV, timeout=300)


def test_finished_runs_get_their_sessions_and_the_root_its_experiment(tmp_path):
  root = str(tmp_path / "protocol_hard")
  done = [_run(root, "at-s0", 0), _run(root, "gairat-s1", 1),
          _run(root, "mail-s0", 0, legacy=True)]
  running = _run(root, "lrat-s0", 0, finished=False)
  # A config.json in a run's own subfolders is not another run.
  os.makedirs(os.path.join(done[0], "tb", "x"))
  open(os.path.join(done[0], "tb", "x", "config.json"), "w").close()
  proc = _tool(f"--root={root}", "--experiment")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "skipped lrat-s0: not finished" in proc.stdout
  assert "wrote gairat-s1/tb/hparams: natural 0.9000, pgd20 0.5100" in proc.stdout
  for workdir in done:
    written = hparams.read(os.path.join(workdir, "tb", "hparams"))
    assert written["trial_id"] == os.path.basename(workdir)
    config = json.load(open(os.path.join(workdir, "config.json")))
    assert written["hparams"]["seed"] == config["seed"]
    assert written["hparams"]["reweighting.name"] == config["reweighting"]["name"]
    assert written["metrics"]["eval/pgd20/accuracy"] == pytest.approx(
        0.5 + config["seed"] / 100)
  assert not os.path.exists(os.path.join(running, "tb"))
  experiment = hparams.read(root)["experiment"]
  assert experiment["hparams"] == ["reweighting.name", "seed"]
  assert experiment["metrics"] == ["eval/natural/accuracy",
                                   "eval/natural/worst_class",
                                   "eval/pgd20/accuracy", "eval/pgd20/worst_class"]


@pytest.mark.parametrize("make,match", [
    (lambda root: None, "error: --root=.* is not a directory"),
    (lambda root: os.makedirs(root), "error: no finished run .* under --root="),
])
def test_bad_roots_are_one_error_line(tmp_path, make, match):
  root = str(tmp_path / "root")
  make(root)
  proc = _tool(f"--root={root}")
  assert proc.returncode == 2
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and re.match(match, errors[0])
