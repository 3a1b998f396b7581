"""A whole run on the embedded digits: artifacts, resume, export, bad input."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from official.core import experiment
from tests.core import helpers


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  run = experiment.prepare(helpers.tiny_config(), workdir)
  results = experiment.train_and_evaluate(run)
  return run, results


def test_run_writes_every_artifact(finished_run):
  run, results = finished_run
  workdir = run.workdir
  assert glob.glob(os.path.join(workdir, "tb", "train", "events.out.*"))
  assert glob.glob(os.path.join(workdir, "tb", "eval", "events.out.*"))
  assert os.path.exists(os.path.join(workdir, "checkpoints", "ckpt-2.index"))
  assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
  with open(os.path.join(workdir, "eval.json")) as f:
    saved = json.load(f)
  assert set(saved) >= {"natural", "fgsm", "pgd20", "cw"}
  for name in ("natural", "fgsm", "pgd20", "cw"):
    assert len(saved[name]["per_class"]) == 10
    assert 0.0 <= saved[name]["accuracy"] <= 1.0
  assert saved["pgd20"]["attack"]["steps"] == 5  # tiny_config's eval setting
  assert saved["cw"]["attack"]["loss"] == "cw"
  assert saved["pgd20"]["attack"]["epsilon"] == pytest.approx(0.1)
  # The model learned something, and the attack hurts it.
  assert saved["natural"]["accuracy"] > 0.5
  assert saved["pgd20"]["accuracy"] < saved["natural"]["accuracy"]
  # Per-class numbers average back to the overall accuracy (balanced-ish test).
  assert saved["pgd20"]["worst_class"] == min(saved["pgd20"]["per_class"])
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["epochs"] == 2
  with open(os.path.join(workdir, "data.json")) as f:
    assert sum(json.load(f)["class_counts"]) == 1437


def test_resume_continues_exactly_where_it_stopped(tmp_path):
  tf.config.experimental.enable_op_determinism()
  straight = experiment.prepare(helpers.tiny_config(epochs=2),
                                str(tmp_path / "straight"))
  experiment.train_and_evaluate(straight)
  # Stop after one epoch, then rerun the same command with epochs=2.
  first = experiment.prepare(helpers.tiny_config(epochs=1), str(tmp_path / "resumed"))
  experiment.train_and_evaluate(first)
  again = experiment.prepare(helpers.tiny_config(epochs=2), str(tmp_path / "resumed"))
  assert again.initial_epoch == 1
  experiment.train_and_evaluate(again)
  for a, b in zip(straight.trainer.network.weights, again.trainer.network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
  assert int(again.trainer.optimizer.iterations.numpy()) == 2 * 44


_RELOAD = r"""
import sys, numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
x = tf.constant(np.load(sys.argv[2]))
with tf.GradientTape() as tape:
  tape.watch(x)
  logits = model.serve(x)
  loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.argmax(logits, -1), logits=logits))
grad = tape.gradient(loss, x)
np.save(sys.argv[3], logits.numpy())
np.save(sys.argv[4], grad.numpy())
"""


def test_export_reloads_in_a_fresh_process_with_input_gradients(finished_run, tmp_path):
  run, _ = finished_run
  x = next(iter(run.data.test()))["image"].numpy()[:8]
  np.save(tmp_path / "x.npy", x)
  subprocess.run([sys.executable, "-c", _RELOAD, os.path.join(run.workdir, "export"),
                  str(tmp_path / "x.npy"), str(tmp_path / "logits.npy"),
                  str(tmp_path / "grad.npy")], check=True,
                 env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
  expected = run.trainer.network(x, training=False)[0].numpy()
  np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected, atol=1e-5)
  grad = np.load(tmp_path / "grad.npy")
  assert grad.shape == x.shape and np.abs(grad).sum() > 0


def test_tools_export_writes_a_checkpoint_as_savedmodel(finished_run, tmp_path):
  from official.core import export as export_lib
  run, _ = finished_run
  path, epoch = export_lib.export_checkpoint(run.workdir, epoch=1,
                                              output=str(tmp_path / "e1"))
  assert epoch == 1
  loaded = tf.saved_model.load(path)
  x = next(iter(run.data.test()))["image"][:4]
  assert loaded.serve(x).shape == (4, 10)
  with pytest.raises(ValueError, match="no checkpoint ckpt-7 .*found: ckpt-1, ckpt-2"):
    export_lib.export_checkpoint(run.workdir, epoch=7)
  # And the CLI, as a user runs it.
  proc = subprocess.run([sys.executable, "-m", "tools.export",
                         f"--workdir={run.workdir}", f"--output={tmp_path / 'e2'}"],
                        cwd=helpers.REPO, capture_output=True, text=True)
  assert proc.returncode == 0 and "exported epoch 2" in proc.stdout, proc.stderr[-500:]


@pytest.mark.parametrize("overrides,match", [
    ({"reweighting.name": "nope"}, "unknown reweighting.name 'nope'; valid: "),
    ({"objective.name": "nope"}, "unknown objective.name 'nope'; valid: at, mart, trades"),
    ({"data.name": "nope"}, "unknown data.name 'nope'; valid: cifar10, cifar100, digits"),
    ({"model.name": "nope"}, "unknown model.name 'nope'; valid: "),
    ({"attack.epsilon": 0.0}, r"attack.epsilon must be in \(0, 1\], got 0.0"),
    ({"attack.epsilon": 1.5}, r"attack.epsilon must be in \(0, 1\], got 1.5"),
    ({"distribute": "mirrored", "batch_size": 33}, "batch_size 33 is not divisible by the 2 replicas"),
    ({"distribute": "tpu"}, "unknown distribute 'tpu'; valid: default, mirrored, multi_worker"),
    ({"data.name": "npz", "data.path": "/nonexistent.npz"}, "/nonexistent.npz"),
    ({"eval.attacks": ("pgd20", "nope")}, "unknown eval attack 'nope'"),
])
def test_bad_input_raises_one_line_errors(tmp_path, overrides, match):
  with pytest.raises(ValueError, match=match) as info:
    experiment.prepare(helpers.tiny_config(**overrides), str(tmp_path / "w"))
  assert "\n" not in str(info.value)
  assert not os.path.exists(tmp_path / "w")  # nothing written


def test_malformed_npz_is_named(tmp_path):
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"not a zip file")
  with pytest.raises(ValueError, match="bad.npz"):
    experiment.prepare(helpers.tiny_config(**{"data.name": "npz",
                                              "data.path": str(bad)}),
                       str(tmp_path / "w"))


def _snapshot(workdir):
  return {p: (os.path.getsize(p), os.path.getmtime(p))
          for p in glob.glob(os.path.join(workdir, "**"), recursive=True)}


@pytest.mark.parametrize("args,match", [
    (["--config=configs/at.py:digits", "--config.reweighting.name=nope"],
     "error: unknown reweighting.name 'nope'; valid: "),
    (["--config=configs/at.py:digits", "--config.nope=1"],
     "error: unknown config key 'nope' (no 'nope' in config); valid: attack,"),
    (["--config=configs/at.py:bogus"], "error: unknown config preset 'bogus'; valid: "),
    (["--config=configs/at.py:digits", "--config.attack.epsilon=2.0"],
     "error: attack.epsilon must be in (0, 1], got 2.0"),
    # A valid config whose network differs from the checkpoint's (wider convs):
    # refused by the identity check, naming the keys.
    (["--config=configs/at.py:digits"], "holds checkpoints of another config: "),
])
def test_cli_errors_are_one_line_and_keep_the_workdir(finished_run, args, match):
  run, _ = finished_run
  before = _snapshot(run.workdir)
  proc = subprocess.run(
      [sys.executable, "-m", "official.train", *args, f"--workdir={run.workdir}"],
      cwd=helpers.REPO, capture_output=True, text=True,
      env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert proc.returncode == 2
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, proc.stderr[-2000:]
  assert errors[0].startswith(match) or (
      errors[0].startswith("error: ") and match in errors[0]), proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert _snapshot(run.workdir) == before


def test_onecycle_schedule_follows_pytorchs_onecycle_by_hand():
  import math
  schedule = experiment.OneCycle(0.1, total_steps=100, pct_start=0.25)
  lr = lambda s: float(schedule(s))  # noqa: E731
  # torch: starts at max/25, peaks at step pct·total − 1 = 24, ends at
  # max/25/1e4 at step total − 1, cosine in between.
  assert lr(0) == pytest.approx(0.1 / 25, rel=1e-5)
  assert lr(24) == pytest.approx(0.1, rel=1e-5)
  assert lr(99) == pytest.approx(0.1 / 25 / 1e4, rel=1e-4)
  mid_up = 0.004 + (0.1 - 0.004) / 2 * (1 - math.cos(math.pi * 12 / 24))
  assert lr(12) == pytest.approx(mid_up, rel=1e-5)
  mid_down = 4e-7 + (0.1 - 4e-7) / 2 * (1 + math.cos(math.pi * 37.5 / 75))
  assert lr(61.5) == pytest.approx(mid_down, rel=1e-5)
