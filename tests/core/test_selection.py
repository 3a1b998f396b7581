"""eval.select: the best-epoch rule by hand; the best weights kept out of the
checkpoint rotation and loaded for the export; the record follows the
checkpoints (a kill between the two, a kill -9 anywhere); switching to
best_val after training is one error line that writes nothing."""
import glob
import json
import os
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from official.core import experiment
from official.core import selection
from official.core import workdir as workdir_lib
from official.evaluation import validation as validation_lib
from tests.core import helpers


def _entry(robust, clean):
  return {"robust_accuracy": robust, "clean_accuracy": clean}


def test_best_epoch_by_hand():
  assert selection.best_epoch({}) is None
  epochs = {"1": _entry(0.5, 0.8), "2": _entry(0.3, 0.9),
            "3": _entry(0.5, 0.7), "4": _entry(0.2, 0.99)}
  assert selection.best_epoch(epochs) == 1          # tie: higher clean wins
  epochs["5"] = _entry(0.5, 0.8)
  assert selection.best_epoch(epochs) == 5          # full tie: the later
  assert selection.best_epoch({"9": _entry(0.1, 0.1), "10": _entry(0.2, 0.0)}
                              ) == 10               # numeric, not string order


def test_config_errors():
  c = helpers.tiny_config(**{"eval.select": "best"})
  with pytest.raises(ValueError, match=r"unknown eval.select 'best'; valid: "
                     r"last, best_val"):
    experiment.validate(c)
  c = helpers.tiny_config(**{"eval.select": "best_val"})
  with pytest.raises(ValueError, match=r"eval.select=best_val needs a "
                     r"validation split: set data.validation_per_class > 0"):
    experiment.validate(c)
  c = helpers.tiny_config(**{"data.validation_per_class": 200})
  with pytest.raises(ValueError, match=r"data.validation_per_class=200 leaves "
                     r"class \d \(of \d+ training images\) without training"):
    experiment.prepare(c, "/nonexistent/never/written")


# Scripted validation results per completed epoch: (robust, clean).
SCRIPT = {1: (0.5, 0.8), 2: (0.3, 0.9), 3: (0.5, 0.7), 4: (0.2, 0.99)}


@pytest.fixture
def scripted(monkeypatch):
  """Validator.__call__ returning SCRIPT, and the network weights it saw."""
  seen = {}

  def call(self, spec, epoch, network=None):
    network = network if network is not None else self.network
    seen.setdefault(epoch, []).append(
        [v.numpy().copy() for v in network.weights])
    robust, clean = SCRIPT[epoch]
    return validation_lib.ValidationResult(
        attack=spec.to_dict(), epoch=epoch, counts=np.array([1] * 10),
        clean=np.full(10, clean), robust=np.full(10, robust),
        clean_accuracy=clean, robust_accuracy=robust,
        losses={}, mean_losses={})

  monkeypatch.setattr(validation_lib.Validator, "__call__", call)
  return seen


def _tiny(epochs, select="best_val"):
  return helpers.tiny_config(epochs=epochs, checkpoints_to_keep=1, **{
      "data.validation_per_class": 10, "eval.select": select})


def test_best_weights_survive_rotation_and_are_the_ones_evaluated(
    tmp_path, scripted):
  workdir = tmp_path / "run"
  run = helpers.fit_epochs(_tiny(4), workdir, 3)
  record = selection.read_record(str(workdir))
  assert sorted(record["epochs"], key=int) == ["1", "2", "3", "4"]
  assert record["best"] == 1 and record["attack"]["name"] == "val_pgd10"
  assert record["attack"]["steps"] == 10 and record["attack"]["epsilon"] == 0.1
  ckpts = os.path.join(workdir, "checkpoints")
  assert sorted(os.listdir(os.path.join(ckpts, "best"))) == [
      "ckpt-1.data-00000-of-00001", "ckpt-1.index"]
  assert not glob.glob(os.path.join(ckpts, "ckpt-1.*"))  # rotated out
  selected = selection.select(run, 4)
  assert selected["select"] == "best_val" and selected["epoch"] == 1
  assert selected["validation"]["robust_accuracy"] == 0.5
  assert selected["epochs_recorded"] == [1, 2, 3, 4]
  for got, want in zip(run.trainer.network.weights, scripted[1][0]):
    np.testing.assert_array_equal(got.numpy(), want)
  assert selection.select(run, 4) == selected
  run.config.eval.select = "last"
  assert selection.select(run, 4) == {"select": "last", "epoch": 4}


def test_with_averaging_the_average_is_validated_and_selected(
    tmp_path, scripted):
  """EMA from epoch 1: each epoch's candidate is the average as of then,
  validated in a second network; best_val (SCRIPT: epoch 1) loads the
  average as of the best epoch, and eval.json's weights say so."""
  workdir = tmp_path / "run"
  config = _tiny(3)
  config.averaging, config.averaging_decay = "ema", 0.5
  run = helpers.fit_epochs(config, workdir, 3)
  record = selection.read_record(str(workdir))
  for e in ("1", "2", "3"):
    w = record["epochs"][e]["weights"]
    assert (w["averaging"], w["evaluated"], w["epochs_averaged"],
            w["first_epoch"], w["last_epoch"]) == ("ema", "ema", int(e), 1,
                                                   int(e))
  # Epoch 1's candidate is θ1 itself (the first accepted epoch is copied);
  # the last candidate equals the averager's final average.
  average = {id(v): a.numpy() for v, a in zip(run.trainer.averager.sources,
                                              run.trainer.averager.average)}
  final = [average.get(id(v)) for v in run.trainer.network.weights]
  for got, want in zip(scripted[3][0], final):
    if want is not None:
      np.testing.assert_allclose(got, want, rtol=1e-6)
  selected = selection.select(run, 3)
  assert selected["epoch"] == 1
  assert run.weights == dict(record["epochs"]["1"]["weights"],
                             selected_epoch=1)
  for got, want in zip(run.trainer.network.weights, scripted[1][0]):
    np.testing.assert_array_equal(got.numpy(), want)


def test_a_kill_between_checkpoint_and_record_is_made_up_on_resume(
    tmp_path, scripted):
  workdir = tmp_path / "run"
  helpers.fit_epochs(_tiny(2), workdir, 3)
  # As if killed after ckpt-2 was saved, before the record took epoch 2.
  path = selection.record_path(str(workdir))
  with open(path) as f:
    record = json.load(f)
  del record["epochs"]["2"]
  with open(path, "w") as f:
    json.dump(record, f)
  before = {e: len(w) for e, w in scripted.items()}
  helpers.fit_epochs(_tiny(3), workdir, 3)
  # Epoch 2 evaluated on the restored weights (those of the first run).
  assert len(scripted[2]) == before[2] + 1
  for a, b in zip(scripted[2][0], scripted[2][1]):
    np.testing.assert_array_equal(a, b)
  assert sorted(selection.read_record(str(workdir))["epochs"], key=int) == [
      "1", "2", "3"]


def test_best_val_after_a_last_run_is_refused_and_writes_nothing(
    tmp_path, scripted):
  workdir = str(tmp_path / "run")
  helpers.fit_epochs(_tiny(1, select="last"), workdir, 3)
  assert selection.read_record(workdir) is None
  snapshot = {p: os.path.getmtime(p) for p in glob.glob(workdir + "/**",
                                                         recursive=True)}
  with pytest.raises(ValueError, match=r"eval.select=best_val: .*selection.json "
                     r"holds no per-epoch validation record \(the run trained "
                     r"with eval.select=last\)"):
    experiment.prepare(_tiny(1), workdir)
  assert {p: os.path.getmtime(p) for p in glob.glob(
      workdir + "/**", recursive=True)} == snapshot
  # Mid-training, the switch is allowed: it records from the resume on.
  run = helpers.fit_epochs(_tiny(3), workdir, 3)
  assert sorted(selection.read_record(workdir)["epochs"], key=int) == [
      "1", "2", "3"]
  assert selection.select(run, 3)["epoch"] == 1


FLAGS = ["--config=configs/frl.py:remargin,digits", "--config.batch_size=32",
         "--config.model.filters=(16,16,32,32)",
         "--config.model.dense_units=(64,64)", "--config.attack.steps=2",
         "--config.eval.attacks=('natural','pgd20')",
         "--config.eval.reports=()", "--config.eval.max_examples=96",
         "--config.eval.pgd_steps=3", "--config.data.eval_batch_size=48",
         "--config.epochs=4", "--config.reweighting.burn_in_epochs=1",
         "--config.reweighting.rate1=0.5", "--config.eval.select=best_val",
         "--config.checkpoints_to_keep=1"]


def _weights(workdir, epoch):
  reader = tf.train.load_checkpoint(
      os.path.join(workdir, "checkpoints", f"ckpt-{epoch}"))
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith(("network/", "method_state/"))}


def test_kill_9_and_resume_equals_a_straight_run(tmp_path):
  """FRL-Remargin with best_val through the CLI, killed by SIGKILL right
  after its second checkpoint, then rerun: multipliers, weights, the
  selection record and eval.json equal an uninterrupted run's."""
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  proc = helpers.train_cli([*FLAGS, f"--workdir={straight}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env["CUDA_VISIBLE_DEVICES"] = ""
  child = subprocess.Popen([sys.executable, "-m", "official.train", *FLAGS,
                            f"--workdir={killed}"], cwd=helpers.REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    index = os.path.join(killed, "checkpoints", "ckpt-2.index")
    deadline = time.time() + 600
    while not os.path.exists(index) and child.poll() is None:
      assert time.time() < deadline
      time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
  finally:
    child.kill()
    child.wait()
  assert not workdir_lib.is_done(killed)
  proc = helpers.train_cli([*FLAGS, f"--workdir={killed}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "Resuming" in proc.stdout
  a, b = _weights(straight, 4), _weights(killed, 4)
  assert set(a) == set(b)
  assert any(k.startswith("method_state/lambda") for k in a)
  for k in a:
    np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=k)
  records = [selection.read_record(w) for w in (straight, killed)]
  assert records[0] == records[1] and len(records[0]["epochs"]) == 4
  evals = []
  for w in (straight, killed):
    with open(os.path.join(w, "eval.json")) as f:
      evals.append(json.load(f))
  assert evals[0]["selection"] == evals[1]["selection"]
  assert evals[0]["selection"]["epoch"] == records[0]["best"]
  assert evals[0]["pgd20"]["per_class"] == evals[1]["pgd20"]["per_class"]
  # The best epoch's weights are what was exported.
  best = records[0]["best"]
  assert os.path.exists(os.path.join(killed, "checkpoints", "best",
                                     f"ckpt-{best}.index"))
  with open(os.path.join(killed, "data.json")) as f:
    assert json.load(f)["validation_counts"] == [20] * 10
