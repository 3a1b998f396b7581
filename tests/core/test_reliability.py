"""Runs that cannot silently go wrong (issue 10): each fault -> what happens.

NaN -> stop, keep the finite checkpoint; another config or data -> refused;
a locked workdir -> refused; damaged checkpoints -> fallback or error, never a
retrain; an interrupted run -> not finished; bad input -> one error line.
"""
import glob
import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from official.core import callbacks
from official.core import experiment
from official.core import export as export_lib
from official.core import workdir as workdir_lib
from tests.core import helpers
from tools import protocol


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished 2-epoch tiny run (ckpt-1, ckpt-2); tests work on copies."""
  workdir = str(tmp_path_factory.mktemp("finished") / "run")
  experiment.train_and_evaluate(experiment.prepare(helpers.tiny_config(), workdir))
  return workdir


def _copy(finished, tmp_path):
  workdir = str(tmp_path / "copy")
  shutil.copytree(finished, workdir)
  return workdir


def _snapshot(workdir):
  return {p: (os.path.getsize(p), os.path.getmtime(p))
          for p in glob.glob(os.path.join(workdir, "**"), recursive=True)}


def _truncate(workdir, number):
  shard, = glob.glob(os.path.join(workdir, "checkpoints", f"ckpt-{number}.data-*"))
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) // 2)
  return shard


def test_finished_run_has_done_marker_and_one_tensorboard_step_convention(finished):
  assert protocol.finished(finished)
  with open(os.path.join(finished, "done.json")) as f:
    done = json.load(f)
  with open(os.path.join(finished, "eval.json")) as f:
    assert done["accuracy"]["pgd20"] == json.load(f)["pgd20"]["accuracy"]
  assert done["artifacts"]["export"] == os.path.join(finished, "export")
  steps = {}
  for path in glob.glob(os.path.join(finished, "tb", "train", "events.out.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        steps.setdefault(value.tag, set()).add(event.step)
  # Keras's epoch_* scalars and our learning_rate: both after 1 and 2 epochs.
  assert steps["epoch_loss"] == steps["learning_rate"] == {1, 2}


def test_nan_run_stops_keeps_the_finite_checkpoint_and_resumes(tmp_path):
  workdir = str(tmp_path / "nan")
  # Epoch 1 at lr 0.1 is finite; the schedule then jumps to 1e6: NaN in epoch 2.
  args = [*helpers.TINY_FLAGS, "--config.epochs=3",
          "--config.optimizer.lr_boundaries=(1,)", f"--workdir={workdir}"]
  proc = helpers.train_cli([*args, "--config.optimizer.lr_decay=1e7"])
  assert proc.returncode == 1, proc.stderr[-2000:]
  errors = helpers.error_lines(proc)
  assert len(errors) == 1 and "diverged in epoch 2" in errors[0], proc.stderr[-2000:]
  assert "ckpt-1" in errors[0] and "Traceback" not in proc.stderr
  assert callbacks.checkpoint_numbers(os.path.join(workdir, "checkpoints")) == [1]
  reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints", "ckpt-1"))
  for key in reader.get_variable_to_shape_map():
    value = reader.get_tensor(key)
    if np.issubdtype(np.asarray(value).dtype, np.floating):
      assert np.isfinite(value).all(), key
  for name in ("export", "eval.json", "done.json"):
    assert not os.path.exists(os.path.join(workdir, name)), name
  # The console said what it was doing, without TF's noise.
  assert proc.stdout.index("Loading data") < proc.stdout.index("Epoch 1/3")
  for noise in ("I0000", "E0000", "Sharding callback", "oneDNN"):
    assert noise not in proc.stderr, proc.stderr[-2000:]
  # Same command at a sane rate: resumes from ckpt-1 once the change is allowed.
  proc = helpers.train_cli([*args, "--config.optimizer.lr_decay=0.1",
                            "--allow_config_change=optimizer.lr_decay"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"Resuming {workdir} from epoch 1" in proc.stdout
  assert ("Config changed since the last run (optimizer.lr_decay); the old one "
          "is kept as config.previous.json") in proc.stdout
  assert "Epoch 1/3" not in proc.stdout and "Epoch 3/3" in proc.stdout
  assert protocol.finished(workdir)
  # The end summary: headline accuracy, artifacts and the venv's tensorboard.
  summary = proc.stdout[proc.stdout.index("Done:"):]
  assert "natural  accuracy " in summary
  assert os.path.join(workdir, "eval.json") in summary
  assert os.path.join(workdir, "export") in summary
  assert f"--logdir {os.path.join(workdir, 'tb')}" in summary


def test_resume_refuses_another_seed_or_data_and_allows_more_epochs(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  before = _snapshot(workdir)
  with pytest.raises(ValueError, match=r"another config: seed \(0 -> 1\); use a new "
                     r"--workdir, or resume anyway with --allow_config_change=seed"):
    experiment.prepare(helpers.tiny_config(seed=1), workdir)
  assert _snapshot(workdir) == before
  # Same shapes and counts, other contents: the hash in data.json differs.
  with open(os.path.join(workdir, "data.json")) as f:
    data = json.load(f)
  data["train_sha256"] = "0" * 64
  with open(os.path.join(workdir, "data.json"), "w") as f:
    json.dump(data, f)
  with pytest.raises(ValueError, match=r"trained on other data \(train_sha256 differ"):
    experiment.prepare(helpers.tiny_config(), workdir)
  shutil.copy(os.path.join(finished, "data.json"), workdir)
  run = experiment.prepare(helpers.tiny_config(epochs=3), workdir)  # extends
  assert run.initial_epoch == 2
  workdir_lib.release(workdir)


def test_second_process_is_refused_while_the_first_finishes(tmp_path):
  workdir = str(tmp_path / "locked")
  first = experiment.prepare(helpers.tiny_config(epochs=1), workdir)
  proc = helpers.train_cli([*helpers.TINY_FLAGS, "--config.seed=1",
                            f"--workdir={workdir}"])
  assert proc.returncode == 2
  assert helpers.error_lines(proc) == [
      f"error: {workdir} is in use by pid {os.getpid()} on "
      + helpers.error_lines(proc)[0].split(f"pid {os.getpid()} on ", 1)[1]]
  assert "wait for it to end or use another --workdir" in proc.stderr
  results = experiment.train_and_evaluate(first)
  assert results["natural"]["accuracy"] > 0.3
  assert callbacks.checkpoint_numbers(os.path.join(workdir, "checkpoints")) == [1]
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["seed"] == 0


def test_garbage_checkpoint_index_falls_back_to_the_files(finished, tmp_path, caplog):
  workdir = _copy(finished, tmp_path)
  index = os.path.join(workdir, "checkpoints", "checkpoint")
  with open(index, "w") as f:
    f.write("garbage {{{")
  with caplog.at_level(logging.WARNING):
    run = experiment.prepare(helpers.tiny_config(), workdir)
  workdir_lib.release(workdir)
  assert run.initial_epoch == 2  # not a retrain from 0
  assert "rebuilt it from the checkpoint files" in caplog.text
  assert tf.train.latest_checkpoint(os.path.dirname(index)).endswith("ckpt-2")
  assert os.path.exists(index + ".damaged")
  assert callbacks.checkpoint_numbers(os.path.dirname(index)) == [1, 2]


def test_truncated_shard_falls_back_in_train_and_export_or_errors(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  shard = _truncate(workdir, 2)
  # tools.export: newest readable by default, an error naming a damaged epoch.
  path, epoch = export_lib.export_checkpoint(workdir, output=str(tmp_path / "e"))
  assert epoch == 1 and os.path.exists(os.path.join(path, "saved_model.pb"))
  proc = helpers.train_cli([f"--workdir={workdir}", "--epoch=2"], module="tools.export")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert helpers.error_lines(proc) == [
      f"error: damaged checkpoint {shard[:-len('.data-00000-of-00001')]}: "
      "IndexError: Read less bytes than requested"], proc.stderr[-2000:]
  # Training resumes from ckpt-1; ckpt-2 is kept aside, not overwritten.
  run = experiment.prepare(helpers.tiny_config(), workdir)
  workdir_lib.release(workdir)
  assert run.initial_epoch == 1
  damaged = os.path.join(workdir, "checkpoints", "damaged")
  assert sorted(os.listdir(damaged)) == ["ckpt-2.data-00000-of-00001", "ckpt-2.index"]
  # Nothing readable left: an error naming the file, the files untouched.
  shard1 = _truncate(workdir, 1)
  before = _snapshot(workdir)
  with pytest.raises(ValueError, match=f"every checkpoint in .* is damaged "
                     f"\\({shard1[:-len('.data-00000-of-00001')]}: IndexError"):
    experiment.prepare(helpers.tiny_config(), workdir)
  assert _snapshot(workdir) == before


def test_interrupted_run_is_not_finished_and_its_leftovers_go(finished, tmp_path,
                                                              monkeypatch):
  workdir = _copy(finished, tmp_path)

  def killed(*args, **kwargs):
    raise KeyboardInterrupt  # as a kill during the export

  monkeypatch.setattr(export_lib, "export", killed)
  run = experiment.prepare(helpers.tiny_config(), workdir)
  with pytest.raises(KeyboardInterrupt):
    experiment.train_and_evaluate(run)
  # eval.json of the earlier evaluation is there; the run is not finished.
  assert os.path.exists(os.path.join(workdir, "eval.json"))
  assert not protocol.finished(workdir)
  monkeypatch.undo()
  os.makedirs(os.path.join(workdir, "export.tmp"))
  os.makedirs(os.path.join(workdir, "checkpoints", "ckpt-3_temp"))
  experiment.train_and_evaluate(experiment.prepare(helpers.tiny_config(), workdir))
  assert protocol.finished(workdir)  # the lock was released by the interrupt
  assert not os.path.exists(os.path.join(workdir, "export.tmp"))
  assert not os.path.exists(os.path.join(workdir, "checkpoints", "ckpt-3_temp"))


def test_tail_fraction_and_single_class(tmp_path, caplog):
  with pytest.raises(ValueError, match=r"eval.tail_fraction must be in \(0, 1\], got 0.0"):
    experiment.validate(helpers.tiny_config(**{"eval.tail_fraction": 0.0}))
  path = str(tmp_path / "one.npz")
  x = np.random.default_rng(0).integers(0, 255, (64, 8, 8, 1), dtype=np.uint8)
  np.savez(path, x_train=x, y_train=np.zeros(64, np.int64), x_test=x[:8],
           y_test=np.zeros(8, np.int64))
  workdir = str(tmp_path / "w")
  with caplog.at_level(logging.WARNING):
    experiment.prepare(helpers.tiny_config(**{"data.name": "npz", "data.path": path}),
                       workdir)
  workdir_lib.release(workdir)
  assert "single class (counts [64])" in caplog.text


_SYNTAX = "def get_config(arg=None)\n  return None\n"
_RAISES = "def get_config(arg=None):\n  raise RuntimeError('no such preset here')\n"


def test_config_problems_are_one_line_errors(finished, tmp_path):
  (tmp_path / "syntax.py").write_text(_SYNTAX)
  (tmp_path / "raises.py").write_text(_RAISES)
  cases = [
      ([f"--config={tmp_path / 'syntax.py'}"],
       f"error: config file {tmp_path / 'syntax.py'} line 1: expected ':'"),
      ([f"--config={tmp_path / 'raises.py'}"],
       f"error: {tmp_path / 'raises.py'}: get_config raised RuntimeError: "
       "no such preset here"),
      ([], "error: --config is required, e.g. --config=configs/at.py:digits"),
  ]
  for args, expected in cases:
    proc = helpers.train_cli([*args, f"--workdir={tmp_path / 'w'}"])
    assert proc.returncode == 2 and helpers.error_lines(proc) == [expected], (
        args, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
  assert not os.path.exists(tmp_path / "w")


def test_corrupt_config_json_and_tiny_images_are_one_line_errors(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write('{"seed": 0,')
  proc = helpers.train_cli([*helpers.TINY_FLAGS, f"--workdir={workdir}"])
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  errors = helpers.error_lines(proc)
  assert len(errors) == 1 and errors[0].startswith(
      f"error: {os.path.join(workdir, 'config.json')} is not valid JSON"), proc.stderr
  path = str(tmp_path / "tiny.npz")
  x = np.random.default_rng(0).integers(0, 255, (64, 2, 2, 1), dtype=np.uint8)
  np.savez(path, x_train=x, y_train=np.arange(64) % 2, x_test=x[:8],
           y_test=np.arange(8) % 2)
  proc = helpers.train_cli([*helpers.TINY_FLAGS, "--config.data.name=npz",
                            f"--config.data.path={path}",
                            f"--workdir={tmp_path / 'tiny'}"])
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  errors = helpers.error_lines(proc)
  assert len(errors) == 1 and errors[0].startswith(
      "error: images of 2x2 pixels are too small for model.name=small_cnn"), proc.stderr
  assert not os.path.exists(tmp_path / "tiny")
