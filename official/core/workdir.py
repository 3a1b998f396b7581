"""What makes a workdir belong to one run: lock, identity, data, completion.

A workdir holds one run. Three things could make it hold a mix of runs
without anyone noticing, and this module refuses each with one error line:
- two processes at once: an exclusive `fcntl.flock` on DIR/.lock for the whole
  run. The kernel drops it when the holder exits in any way (kill -9 too), so
  a stale lock cannot exist; the file only names the holder (PID, host) for the
  error message. (flock is per host: on a network filesystem shared by several
  hosts it may not exclude a process on another host.)
- a resume with another config: the stored DIR/config.json must equal the new
  resolved config except for SAFE_KEYS (or keys named by --allow_config_change).
  Keys that only one side has (added or removed by a code update since the
  run started) only warn: their defaults keep the old behaviour.
- a resume on other data: DIR/data.json holds the counts and a SHA-256 of the
  training split (images, labels, ids); they must match.
A run is finished only once DIR/done.json exists: it is written last, after
the export and eval.json, so a run killed anywhere before is unfinished.
"""
import fcntl
import hashlib
import json
import os
import shutil
import socket
import time

import numpy as np
from absl import logging

# Keys that may change when a run resumes: they do not change the weights
# trained so far. `epochs` extends a run, `eval.*` re-evaluates it.
SAFE_KEYS = ("epochs", "eval.*", "checkpoints_to_keep", "xla",
             "data.eval_batch_size")
DONE = "done.json"
_HELD = {}  # realpath -> open lock file, so one process may prepare twice


def key_matches(key, patterns):
  """`a.b` matches `a.b` and `a.*` (and `*`)."""
  for p in patterns:
    p = p.strip()
    if p == key or p == "*" or (p.endswith(".*") and key.startswith(p[:-1])):
      return True
  return False


def flatten(tree, prefix=""):
  """{"a": {"b": 1}} -> {"a.b": 1}: config keys as users write them."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict) and v:
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_changes(old, new):
  """Sorted keys whose values differ between two resolved config dicts."""
  a, b = flatten(old), flatten(new)
  absent = "<absent>"
  return sorted(k for k in set(a) | set(b) if a.get(k, absent) != b.get(k, absent))


def read_json(path):
  """A workdir's json file, or one error line naming it."""
  try:
    with open(path) as f:
      return json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise ValueError(f"{path} is not valid JSON ({e}); restore it from the "
                     "run's log or use a new --workdir") from None


def _rows_sha256(ids, splits):
  """SHA-256 of the ids and of their training-split images and labels."""
  digest = hashlib.sha256()
  for array in (ids, splits.x_train[ids], splits.y_train[ids]):
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype}{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def data_fingerprint(data):
  """Counts, shapes and a SHA-256 of the training examples a run uses, and
  of its validation split if it has one (validation_counts per class)."""
  out = {"num_train": int(data.num_train), "num_classes": int(data.num_classes),
         "class_counts": [int(n) for n in data.class_counts],
         "image_shape": [int(n) for n in data.image_shape],
         "train_sha256": _rows_sha256(np.asarray(data.train_ids), data.splits)}
  held = np.asarray(getattr(data, "validation_ids", ()), np.int64)
  if held.size:  # data.validation_per_class > 0 (data/holdout.py)
    out["validation_counts"] = [int(n) for n in data.validation_counts]
    out["validation_sha256"] = _rows_sha256(held, data.splits)
  return out


def has_checkpoints(workdir):
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(
      n.startswith("ckpt-") for n in os.listdir(directory))


def claim(workdir, config_dict, fingerprint, allow=()):
  """Locks `workdir` and checks that it holds this run (or nothing yet).

  The one entry point `prepare()` calls. Raises a one-line ValueError (the
  lock is released again) when another process holds the workdir, or when its
  checkpoints come from another config or other data. Creates the workdir
  (for the lock); a new one is removed again if the check fails. Returns
  whether it created the workdir.
  """
  created = not os.path.exists(workdir)
  lock(workdir)
  try:
    check_identity(workdir, config_dict, fingerprint, allow)
  except BaseException:
    release(workdir, remove_if_empty=created)
    raise
  return created


def check_identity(workdir, config_dict, fingerprint, allow=()):
  if not has_checkpoints(workdir):
    return  # nothing trained here yet: any run may start
  config_path = os.path.join(workdir, "config.json")
  if os.path.exists(config_path):
    old = read_json(config_path)
    old_flat, new_flat = flatten(old), flatten(config_dict)
    changed = [k for k in config_changes(old, config_dict)
               if not key_matches(k, SAFE_KEYS) and not key_matches(k, allow)]
    # A key only one side has was added or removed by a code change since the
    # run started: its default keeps the old behaviour, so it is not refused.
    versioned = [k for k in changed if (k in old_flat) != (k in new_flat)]
    if versioned:
      logging.warning("config keys added or removed since %s was written: %s",
                      config_path, ", ".join(versioned))
    changed = [k for k in changed if k not in versioned]
    if changed:
      shown = ", ".join(f"{k} ({old_flat.get(k, '<absent>')!r} -> "
                        f"{new_flat.get(k, '<absent>')!r})" for k in changed[:6])
      more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
      raise ValueError(
          f"{workdir} holds checkpoints of another config: {shown}{more}; use a "
          f"new --workdir, or resume anyway with --allow_config_change="
          f"{','.join(changed)}")
  data_path = os.path.join(workdir, "data.json")
  if os.path.exists(data_path):
    old = read_json(data_path)
    changed = [k for k in ("num_train", "num_classes", "class_counts",
                           "image_shape", "train_sha256", "validation_counts",
                           "validation_sha256")
               if k in old and old[k] != fingerprint.get(k)]
    if changed:
      raise ValueError(
          f"{workdir} was trained on other data ({', '.join(changed)} differ "
          f"from {data_path}); use a new --workdir for this data")


def lock(workdir):
  """Holds an exclusive flock on DIR/.lock until `release` or process exit."""
  key = os.path.realpath(workdir)
  if key in _HELD:
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, ".lock")
  f = open(path, "a+")  # noqa: SIM115 -- held open for the whole run
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    holder = f.read().strip() or "another process"
    f.close()
    raise ValueError(f"{workdir} is in use by {holder} (lock {path}); wait for "
                     "it to end or use another --workdir") from None
  f.seek(0)
  f.truncate()
  f.write(f"pid {os.getpid()} on {socket.gethostname()} since "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
  f.flush()
  _HELD[key] = f


def release(workdir, remove_if_empty=False):
  f = _HELD.pop(os.path.realpath(workdir), None)
  if f is not None:
    fcntl.flock(f, fcntl.LOCK_UN)
    f.close()
  if (remove_if_empty and os.path.isdir(workdir)
      and set(os.listdir(workdir)) <= {".lock"}):
    shutil.rmtree(workdir, ignore_errors=True)


def clean_stale(workdir):
  """Removes what a killed save leaves: checkpoints/*_temp*, DIR/*.tmp."""
  removed = []
  for directory, pattern in ((os.path.join(workdir, "checkpoints"), "_temp"),
                             (workdir, ".tmp")):
    if not os.path.isdir(directory):
      continue
    for name in os.listdir(directory):
      if pattern in name:
        path = os.path.join(directory, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        removed.append(path)
  return removed


def is_done(workdir):
  return os.path.exists(os.path.join(workdir, DONE))


def is_finished(workdir):
  """A run is finished once its done.json exists: official.train writes it
  last, after the export and eval.json (an eval.json alone may be left by a
  run killed before its export).

  Runs of the code before done.json have no DIR/.lock (the workdir lock came
  with it); that code wrote eval.json, then the export: both mean finished.
  """
  def has(name):
    return os.path.exists(os.path.join(workdir, name))
  if is_done(workdir):
    return True
  return (not has(".lock") and has("eval.json")
          and has(os.path.join("export", "saved_model.pb")))


def unmark_done(workdir):
  if is_done(workdir):
    os.remove(os.path.join(workdir, DONE))


def mark_done(workdir, summary):
  """Written last, atomically: its presence means every artifact is there."""
  path = os.path.join(workdir, DONE)
  with open(path + ".tmp", "w") as f:
    json.dump(summary, f, indent=2)
  os.replace(path + ".tmp", path)
