"""tools/diagnostics.py: final-epoch statistics from TensorBoard logs written
by the library's own callbacks, over seeds; IAAT's radii; the CLI."""
import json
import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from official.core import callbacks
from tests.core import helpers
from tools import diagnostics

_ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
K = 10  # attack.steps of the synthetic runs


def _kappa(seed):
  """κ of 10 + seed examples: 0, 3, 5, 7 and the rest at K (6 + seed)."""
  return np.array([0, 3, 5, 7] + [K] * (6 + seed), np.float32)


def _write_run(root, entry, seed, epochs, finished=True, eps=None,
               resumed_from=None):
  """A run directory as official.train leaves it: config.json, done.json and
  tb/train written by callbacks.TensorBoard (Keras's epoch_* scalars) and
  callbacks.EpochSummaries (the method's histograms and scalars). `epochs`:
  one (logs, method summaries) pair per epoch. `resumed_from`: the epochs a
  first process wrote before it was killed (its last one is written again,
  with other values, by the resumed process: new event files)."""
  workdir = os.path.join(root, f"{entry}-s{seed}")
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump({"epochs": len(epochs), "seed": seed,
               "attack": {"steps": K, "epsilon": 0.1}}, f)
  sessions = [(0, epochs)]
  if resumed_from:
    sessions = [(0, resumed_from),
                (len(resumed_from) - 1, epochs[len(resumed_from) - 1:])]
  for start, written in sessions:
    _write_summaries(os.path.join(workdir, "tb"), start, written)
  if eps is not None:
    np.savez(os.path.join(workdir, "eps_train.npz"), ids=np.arange(eps.size),
             eps=eps, labels=np.zeros(eps.size, np.int64))
  if finished:
    with open(os.path.join(workdir, "done.json"), "w") as f:
      json.dump({}, f)
  else:
    open(os.path.join(workdir, ".lock"), "w").close()
  return workdir


def _write_summaries(logdir, start, epochs):
  """What one process of official.train writes for epochs start, ...."""
  model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
  model.compile(optimizer=keras.optimizers.SGD(0.01))  # epoch_learning_rate
  board = callbacks.TensorBoard(logdir, write_graph=False)
  board.set_model(model)
  summaries = {}
  trainer = types.SimpleNamespace(
      optimizer=types.SimpleNamespace(learning_rate=0.01),
      record=types.SimpleNamespace(
          weights_of_epoch=lambda: {"adv": np.ones(4, np.float32)}),
      method=types.SimpleNamespace(epoch_summaries=lambda: summaries))
  per_epoch = callbacks.EpochSummaries(trainer, logdir, train_ids=np.arange(4))
  for epoch, (logs, method) in enumerate(epochs, start=start):
    summaries.clear()
    summaries.update(method)
    board.on_epoch_end(epoch, logs)
    per_epoch.on_epoch_end(epoch)
  board._train_writer.flush()


def _gairat_epochs(seed):
  """Epoch 1: a decoy (all κ = 0); epoch 2 (final): known values."""
  first = ({"adversarial_accuracy": 0.1, "clean_accuracy": 0.2,
            "method/kappa_mean": 0.0},
           {"kappa": np.zeros(5, np.float32), "kappa_mean": 0.0})
  kappa = _kappa(seed)
  final = ({"adversarial_accuracy": 0.5 + 0.1 * seed, "clean_accuracy": 0.9,
            "method/kappa_mean": 7.0 + seed},
           {"kappa": kappa, "kappa_mean": kappa.mean()})
  return [first, final]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("runs"))
  for seed in (0, 1, 2):
    # Seed 1 was killed in epoch 2 and resumed: epoch 2 is written twice.
    killed = [_gairat_epochs(1)[0], _gairat_epochs(1)[0]] if seed == 1 else None
    _write_run(root, "gairat", seed, _gairat_epochs(seed), resumed_from=killed)
  _write_run(root, "gairat", 3, _gairat_epochs(3), finished=False)
  margin = np.linspace(-0.5, 1.0, 301).astype(np.float32)
  _write_run(root, "mail", 0, [({"adversarial_accuracy": 0.4,
                                  "clean_accuracy": 0.8},
                                 {"margin": margin,
                                  "margin_mean": margin.mean()})])
  # 10 radii: 2 at 0, 4 at 0.05, 2 at the training eps (float32), 2 above.
  eps = np.array([0, 0, .05, .05, .05, .05, .1, .1, .12, .12], np.float32)
  _write_run(root, "iaat", 0, [({"adversarial_accuracy": 0.3,
                                  "clean_accuracy": 0.7,
                                  "method/eps_mean": 0.06},
                                 {"eps": eps, "eps_mean": eps.mean()})],
             eps=eps)
  return root


def test_kappa_comes_back_exact_from_tf_summary_histogram(tmp_path):
  # Every κ in 0..K with uneven counts, 3..K, and 0..20 (buckets 2/3 wide:
  # some integers sit near a bucket's right edge), as tf.summary.histogram
  # writes them (30 buckets over [min, max]).
  full = np.repeat(np.arange(K + 1), np.arange(1, K + 2)).astype(np.float32)
  cases = [full, full[full >= 3], np.arange(21, dtype=np.float32)]
  for step, kappa in enumerate(cases, start=1):
    with tf.summary.create_file_writer(str(tmp_path)).as_default() as writer:
      tf.summary.histogram("method/kappa", kappa, step=step)
      writer.flush()
    buckets = diagnostics.final_summaries(str(tmp_path))["method/kappa"]
    values, exact = diagnostics.histogram_values(buckets, integer=True)
    assert exact
    np.testing.assert_array_equal(np.sort(values), kappa)


def test_final_epoch_over_seeds(root):
  result = diagnostics.entry_diagnostics("gairat", ["0", "1", "2", "3", "4"],
                                         root)
  assert sorted(result["runs"]) == ["0", "1", "2"]
  assert result["skipped"] == ["gairat-s3: not finished",
                               "gairat-s4: no run directory"]
  s = result["summary"]
  # Final epoch, in %: 50, 60, 70 -> 60 ± 10 (sample std); 90 for each.
  assert s["accuracy"]["adversarial_accuracy"]["mean"] == pytest.approx(60)
  assert s["accuracy"]["adversarial_accuracy"]["std"] == pytest.approx(10)
  assert s["accuracy"]["clean_accuracy"]["std"] == pytest.approx(0, abs=1e-5)
  # Keras's epoch mean (7, 8, 9) and the memory's mean at the epoch's end.
  assert s["method"]["epoch_method/kappa_mean"]["mean"] == pytest.approx(8)
  assert s["method"]["epoch_method/kappa_mean"]["std"] == pytest.approx(1)
  memory = [_kappa(seed).mean() for seed in (0, 1, 2)]
  assert s["method"]["method/kappa_mean"]["mean"] == pytest.approx(
      np.mean(memory))
  # κ = K: 6/10, 7/11, 8/12 of the examples.
  at_k = [6 / 10, 7 / 11, 8 / 12]
  kappa = s["distributions"]["method/kappa"]
  assert kappa["at_K"]["mean"] == pytest.approx(np.mean(at_k))
  assert kappa["at_K"]["std"] == pytest.approx(np.std(at_k, ddof=1))
  # Seed 0: 0, 3, 5, 7, 10 x 6: q10 = 0.9 of the way from 0 to 3.
  run = result["runs"]["0"]["distributions"]["method/kappa"]
  assert run["q10"] == pytest.approx(2.7)
  assert run["n"] == 10 and run["resolution"] == 0
  assert run["per_kappa"][:4] == [0.1, 0, 0, 0.1]
  assert run["per_kappa"][K] == pytest.approx(0.6)


def test_margin_and_eps(root):
  mail = diagnostics.entry_diagnostics("mail", ["0"], root)
  margin = mail["runs"]["0"]["distributions"]["method/margin"]
  # Bucket centres: within half a bucket (1.5 / 30 / 2) of the true values.
  assert margin["resolution"] == pytest.approx(0.025)
  assert margin["q50"] == pytest.approx(0.25, abs=margin["resolution"] + 1e-9)
  assert margin["below_0"] == pytest.approx(100 / 301, abs=0.02)
  assert mail["summary"]["distributions"]["method/margin"]["n"]["std"] is None
  iaat = diagnostics.entry_diagnostics("iaat", ["0"], root)
  eps = iaat["summary"]["eps"]
  assert eps["zero"]["mean"] == pytest.approx(0.2)
  # 0.1 in float32 is not "above" 0.1: only the two at 0.12.
  assert eps["above_train_epsilon"]["mean"] == pytest.approx(0.2)
  assert eps["q50"]["mean"] == pytest.approx(0.05)
  assert eps["q90"]["mean"] == pytest.approx(0.12)
  assert iaat["summary"]["method"]["epoch_method/eps_mean"]["mean"] == (
      pytest.approx(0.06))


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "tools.diagnostics", *args],
                        cwd=helpers.REPO, capture_output=True, text=True,
                        env=_ENV, timeout=300)


def test_cli_writes_table_json_and_figures(root, tmp_path):
  output = str(tmp_path / "out" / "diag")
  done = _cli(f"--root={root}", "--methods=gairat,mail,iaat,lrat",
              "--seeds=0,1,2", f"--output={output}")
  assert done.returncode == 0, done.stderr
  assert "| gairat (3 seeds) | 60.00 ± 10.00 | 90.00 ± 0.00 |" in done.stdout
  assert "| lrat (0 seeds) | – | – |" in done.stdout
  assert "lrat-s0: no run directory" in done.stdout
  with open(output + ".md") as f:
    assert f.read().strip() == done.stdout.split("\nwrote ")[0].strip()
  with open(output + ".json") as f:
    report = json.load(f)
  summary = report["entries"]["gairat"]["summary"]
  assert summary["distributions"]["method/kappa"]["at_K"]["n"] == 3
  for figure in ("_kappa.png", "_eps.png"):
    with open(output + figure, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_root_is_one_error_line(tmp_path):
  missing = str(tmp_path / "nowhere")
  done = _cli(f"--root={missing}", "--methods=gairat")
  assert done.returncode == 2
  assert done.stderr.strip() == f"error: --root={missing} is not a directory"
  empty = _cli(f"--root={tmp_path}", "--methods=gairat", "--seeds=0")
  assert empty.returncode == 2
  assert empty.stderr.strip().splitlines() == [
      f"error: no finished run of gairat (seeds 0) under --root={tmp_path}"]
