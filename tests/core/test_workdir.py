"""official/core/workdir.py: lock, config identity, data fingerprint, marker."""
import os
import signal
import subprocess
import sys
import types

import numpy as np
import pytest

from official.core import workdir as workdir_lib
from tests.core import helpers


def test_config_changes_name_dotted_keys_and_safe_keys_match():
  old = {"seed": 0, "epochs": 2, "eval": {"attacks": ["pgd20"]},
         "optimizer": {"learning_rate": 0.1, "momentum": 0.9}}
  new = {"seed": 1, "epochs": 5, "eval": {"attacks": ["cw"]},
         "optimizer": {"learning_rate": 0.01, "momentum": 0.9}, "extra": 1}
  changed = workdir_lib.config_changes(old, new)
  assert changed == ["epochs", "eval.attacks", "extra", "optimizer.learning_rate",
                     "seed"]
  unsafe = [k for k in changed if not workdir_lib.key_matches(k, workdir_lib.SAFE_KEYS)]
  assert unsafe == ["extra", "optimizer.learning_rate", "seed"]
  assert workdir_lib.key_matches("optimizer.learning_rate", ["optimizer.*"])
  assert not workdir_lib.key_matches("optimizer_x", ["optimizer.*"])


def _bundle(x):
  splits = types.SimpleNamespace(x_train=x, y_train=np.arange(len(x)) % 2)
  return types.SimpleNamespace(train_ids=np.arange(len(x)), splits=splits,
                               num_train=len(x), num_classes=2,
                               class_counts=np.bincount(splits.y_train),
                               image_shape=x.shape[1:])


def test_data_fingerprint_sees_one_changed_pixel():
  x = np.zeros((4, 2, 2, 1), np.uint8)
  a = workdir_lib.data_fingerprint(_bundle(x))
  assert a == workdir_lib.data_fingerprint(_bundle(x.copy()))
  x[3, 1, 1, 0] = 1  # same shapes and counts, other contents
  b = workdir_lib.data_fingerprint(_bundle(x))
  assert a["class_counts"] == b["class_counts"] == [2, 2]
  assert a["train_sha256"] != b["train_sha256"]


def test_corrupt_json_is_named(tmp_path):
  path = tmp_path / "config.json"
  path.write_text("{not json")
  with pytest.raises(ValueError, match=f"{path} is not valid JSON"):
    workdir_lib.read_json(str(path))


_HOLDER = """
import sys, time
from official.core import workdir
workdir.lock(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_lock_names_the_holder_and_dies_with_it(tmp_path):
  workdir = str(tmp_path / "w")
  holder = subprocess.Popen([sys.executable, "-c", _HOLDER, workdir],
                            cwd=helpers.REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ValueError, match=f"in use by pid {holder.pid} on "):
      workdir_lib.lock(workdir)
    holder.send_signal(signal.SIGKILL)  # kill -9: the kernel drops the flock
    holder.wait(timeout=30)
    workdir_lib.lock(workdir)
    with open(os.path.join(workdir, ".lock")) as f:
      assert f.read().startswith(f"pid {os.getpid()} on ")
  finally:
    holder.kill()
    workdir_lib.release(workdir)


def test_claim_of_a_new_workdir_that_fails_leaves_nothing(tmp_path):
  workdir = str(tmp_path / "w")
  os.makedirs(os.path.join(workdir, "checkpoints"))
  open(os.path.join(workdir, "checkpoints", "ckpt-1.index"), "w").close()
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write('{"seed": 0}')
  with pytest.raises(ValueError, match=r"seed \(0 -> 1\).*--allow_config_change=seed"):
    workdir_lib.claim(workdir, {"seed": 1}, {})
  assert workdir_lib.claim(workdir, {"seed": 1}, {}, allow=["seed"]) is False
  workdir_lib.release(workdir)
  # A key added to the config since (a code update) is not a difference.
  assert workdir_lib.claim(workdir, {"seed": 0, "new_key": 1}, {}) is False
  workdir_lib.release(workdir)
  fresh = str(tmp_path / "fresh")
  assert workdir_lib.claim(fresh, {"seed": 1}, {}) is True
  workdir_lib.release(fresh, remove_if_empty=True)
  assert not os.path.exists(fresh)


def test_stale_temp_folders_and_done_marker(tmp_path):
  workdir = str(tmp_path)
  os.makedirs(os.path.join(workdir, "checkpoints", "ckpt-3_temp"))
  os.makedirs(os.path.join(workdir, "export.tmp"))
  open(os.path.join(workdir, "checkpoints", "ckpt-2.index"), "w").close()
  removed = workdir_lib.clean_stale(workdir)
  assert sorted(os.path.basename(p) for p in removed) == ["ckpt-3_temp", "export.tmp"]
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["ckpt-2.index"]
  assert not workdir_lib.is_done(workdir)
  workdir_lib.mark_done(workdir, {"epochs": 2})
  assert workdir_lib.is_done(workdir)
  workdir_lib.unmark_done(workdir)
  assert not workdir_lib.is_done(workdir)


def test_default_workdir_hashes_the_overrides_that_change_training():
  from official import train
  assert train.default_workdir("configs/at.py:digits") == "runs/at-digits"
  # Extending or re-evaluating a run keeps its default workdir ...
  assert train.default_workdir("configs/at.py:digits",
                               ["epochs=9", "eval.pgd_steps=5"]) == "runs/at-digits"
  # ... another seed gets its own, the same one for the same overrides.
  seed1 = train.default_workdir("configs/at.py:digits", ["seed=1"])
  assert seed1.startswith("runs/at-digits-") and len(seed1) == len("runs/at-digits-") + 6
  assert seed1 == train.default_workdir("configs/at.py:digits", ["seed=1", "epochs=3"])
  assert seed1 != train.default_workdir("configs/at.py:digits", ["seed=2"])
  assert train.config_overrides(["x", "--config.seed=1", "--config.epochs", "4"]) == [
      "seed=1", "epochs=4"]
