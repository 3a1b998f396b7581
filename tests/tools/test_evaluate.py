"""tools/evaluate.py: any SavedModel -> report + plot; checks; one-line errors."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn import datasets as sk_datasets

from official.core import experiment
from official.data import sources
from official.evaluation import robustness
from tests.core import helpers
from tools import evaluate

_ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "tools.evaluate", *args],
                        cwd=helpers.REPO, capture_output=True, text=True,
                        env=_ENV, timeout=300)


def _digits_test():
  """The digits preset's test split as the pipeline serves it: [0, 1] floats."""
  splits = sources.load_digits(None)
  return (splits.x_test.astype(np.float32) / np.float32(16.0),
          splits.y_test)


def _keras_classifier(input_shape=(8, 8, 1), head=None, first=None, classes=10,
                      flatten=True):
  """A plain Keras model (no library code), optionally trained on digits."""
  keras.utils.set_random_seed(0)
  x = keras.Input(input_shape)
  h = first(x) if first is not None else x
  if flatten:
    h = keras.layers.Flatten()(h)
  h = keras.layers.Dense(64, activation="relu")(h)
  h = keras.layers.Dense(classes)(h)
  return keras.Model(x, head(h) if head is not None else h)


@pytest.fixture(scope="module")
def library_export(tmp_path_factory):
  """A tiny AT run of this library (2 epochs on digits) and its RUN/export."""
  workdir = str(tmp_path_factory.mktemp("library"))
  run = experiment.prepare(helpers.tiny_config(), workdir)
  results = experiment.train_and_evaluate(run)
  return os.path.join(workdir, "export"), run.trainer.network, results


@pytest.fixture(scope="module")
def keras_export(tmp_path_factory):
  """A Keras MLP trained by model.fit, exported with model.export, and an .npz."""
  root = tmp_path_factory.mktemp("keras")
  digits = sk_datasets.load_digits()
  x = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
  y = digits.target.astype(np.int64)
  npz = str(root / "digits.npz")
  np.savez(npz, x_train=x[:1500], y_train=y[:1500], x_test=x[1500:],
           y_test=y[1500:])
  model = _keras_classifier()
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  model.fit(x[:1500] / 255.0, y[:1500], epochs=15, batch_size=64, verbose=0)
  path = str(root / "export")
  model.export(path, verbose=False)
  return path, model, npz


def test_library_export(library_export, tmp_path):
  path, network, eval_json = library_export
  report = evaluate.evaluate_export(
      path, "digits", ["natural", "fgsm", "pgd20"], ["0.1"], max_examples=96,
      batch_size=48, verbose=0)
  x, y = _digits_test()
  logits = network(x[:96], training=False)[0].numpy()
  correct = logits.argmax(-1) == y[:96]
  # Two batches of 48 merged: exactly the one-pass accuracy and per class.
  assert report["natural"]["accuracy"] == correct.mean()
  assert report["natural"]["num_examples"] == 96
  assert report["natural"]["per_class"] == [
      float(correct[y[:96] == c].mean()) for c in range(10)]
  assert report["natural"]["accuracy"] > 0.5  # it learned something
  # The run's own eval.json (eval.max_examples = 96): the same images.
  assert report["natural"]["per_class"] == eval_json["natural"]["per_class"]
  assert report["pgd20"]["accuracy"] < report["natural"]["accuracy"]
  assert report["pgd20"]["worst_class"] == min(report["pgd20"]["per_class"])
  # Eval settings of the digits preset at --epsilon (steps as in eval.json).
  assert report["pgd20"]["attack"]["epsilon"] == pytest.approx(0.1)
  assert report["pgd20"]["attack"]["step_size"] == pytest.approx(0.01)
  assert all(c["ok"] for c in report["checks"].values()), report["checks"]
  assert report["settings"]["num_examples"] == 96
  plot = evaluate.write(report, str(tmp_path / "out" / "aa.json"))
  assert plot == str(tmp_path / "out" / "aa.png")
  with open(plot, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(tmp_path / "out" / "aa.json") as f:
    assert json.load(f)["pgd20"] == report["pgd20"]


def test_one_batch_equals_robustness_evaluate(library_export):
  """Same seed, same numbers: a single batch is one robustness.evaluate call."""
  path, _, _ = library_export
  report = evaluate.evaluate_export(path, "digits", ["pgd20"], ["0.1"],
                                    max_examples=48, batch_size=48, seed=3,
                                    verbose=0)
  config, _ = evaluate.data_config("digits")
  cfg = evaluate.eval_config(config, True, ["pgd20"], 0.1)
  bundle, _ = evaluate.load_test_data(config, 48, 48)
  loaded = tf.saved_model.load(path)  # keep it: serve needs its variables
  direct = robustness.evaluate(loaded.serve, bundle.test(), cfg, 10, seed=3, verbose=0)
  assert report["pgd20"]["accuracy"] == direct["pgd20"]["accuracy"]
  assert report["pgd20"]["per_class"] == direct["pgd20"]["per_class"]


def test_merge_weights_members_by_batch_size():
  labels = [np.array([0, 0, 1, 1]), np.array([0, 1])]
  parts = [({"per_class": [0.5, 1.0], "attack": {"steps": 20},
             "members": {"apgd-ce": 0.75}}, labels[0]),
           ({"per_class": [0.0, 1.0], "attack": {"steps": 20},
             "members": {"apgd-ce": 0.0}}, labels[1])]
  merged = evaluate.merge(parts, 2, 0.3)
  assert merged["accuracy"] == pytest.approx(4 / 6)
  assert merged["per_class"] == pytest.approx([1 / 3, 1.0])
  assert merged["worst_class"] == pytest.approx(1 / 3)
  assert merged["attack"] == {"steps": 20}
  assert merged["members"]["apgd-ce"] == pytest.approx(0.5)  # (3 + 0) / 6


def test_cli_on_a_keras_model_and_an_npz(keras_export, tmp_path):
  path, model, npz = keras_export
  output = tmp_path / "report.json"
  proc = _cli(f"--export={path}", f"--data={npz}", "--attacks=natural,pgd20",
              "--epsilon=0.05,0.1", "--max_examples=100", "--batch_size=64",
              f"--output={output}", "--xla=off")
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = json.loads(output.read_text())
  with np.load(npz) as f:
    x = f["x_test"][:100].astype(np.float32) / np.float32(255.0)
    y = f["y_test"][:100]
  expected = (model.predict(x, verbose=0).argmax(-1) == y).mean()
  assert report["natural"]["accuracy"] == pytest.approx(expected)
  assert report["natural"]["accuracy"] > 0.8
  assert report["pgd20"]["accuracy"] < report["natural"]["accuracy"]
  # .npz: the protocol's step, epsilon / 10; the entries are the first radius.
  assert report["pgd20"]["attack"]["step_size"] == pytest.approx(0.005)
  sweep = report["epsilon_sweep"]
  assert sweep["epsilons"] == [0.05, 0.1]
  assert sweep["accuracy"]["pgd20"][0] == report["pgd20"]["accuracy"]
  assert sweep["accuracy"]["pgd20"][1] <= sweep["accuracy"]["pgd20"][0]
  assert set(report["checks"]) == {"probabilities", "deterministic",
                                   "gradients", "collapse", "square", "epsilon"}
  assert all(c["ok"] for c in report["checks"].values()), report["checks"]
  assert "warning:" not in proc.stdout
  # The progress bar's running robust accuracy ends at the result, per radius.
  for eps, acc in zip(sweep["epsilons"], sweep["accuracy"]["pgd20"]):
    assert f"epsilon {eps:g}: natural, pgd20 on 100 images" in proc.stdout
    assert f"pgd20: {acc:.4f}" in proc.stdout
  assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_warns_on_softmax_and_masked_gradients(tmp_path):
  """A softmax output behind a stop_gradient: both checks fire, report kept."""
  model = _keras_classifier(head=keras.layers.Softmax(),
                            first=keras.layers.Lambda(keras.ops.stop_gradient))
  model.export(str(tmp_path / "export"), verbose=False)
  proc = _cli(f"--export={tmp_path / 'export'}", "--data=digits",
              "--attacks=natural,fgsm", "--max_examples=40",
              f"--output={tmp_path / 'r.json'}", "--xla=off")
  assert proc.returncode == 0, proc.stderr[-2000:]
  warnings = [l for l in proc.stdout.splitlines() if l.startswith("warning:")]
  assert len(warnings) == 2, proc.stdout
  assert warnings[0].startswith("warning: probabilities: serve's outputs look")
  assert warnings[1].startswith("warning: gradients: 40 of 40 points (100.0%)")
  report = json.loads((tmp_path / "r.json").read_text())
  # FGSM cannot move a point whose gradient is zero.
  assert report["fgsm"]["accuracy"] == report["natural"]["accuracy"]


@pytest.fixture(scope="module")
def bad_exports(tmp_path_factory):
  root = tmp_path_factory.mktemp("bad")
  module = tf.Module()
  module.predict = tf.function(lambda x: x * 2.0, input_signature=[
      tf.TensorSpec([None, 8, 8, 1], tf.float32)])
  tf.saved_model.save(module, str(root / "no_serve"))
  _keras_classifier(input_shape=(28, 28, 1)).export(str(root / "mnist_shape"),
                                                    verbose=False)
  _keras_classifier(flatten=False).export(str(root / "rank4"), verbose=False)
  _keras_classifier(classes=7).export(str(root / "seven"), verbose=False)
  return root


@pytest.mark.parametrize("args,match", [
    (["--export={root}/nope"], "error: --export '{root}/nope': no such directory"),
    (["--export={root}"], "error: --export '{root}' is not a SavedModel (no "
     "saved_model.pb)"),
    (["--export={root}/no_serve"], "error: --export '{root}/no_serve' has no "
     "`serve` endpoint"),
    (["--export={root}/mnist_shape"], "error: --export '{root}/mnist_shape': "
     "serve does not accept the data's images (float32 [2, 8, 8, 1]); it "
     "expects float32 (None, 28, 28, 1)"),
    (["--export={root}/rank4"], "error: --export '{root}/rank4': serve returns "
     "shape [2, 8, 8, 10], not logits [N, 10]"),
    (["--export={root}/seven"], "error: --export '{root}/seven': serve returns "
     "shape [2, 7], not logits [N, 10]"),
    (["--export={root}/seven", "--data={root}/missing.npz"], "error: --data "
     "'{root}/missing.npz' is neither a dataset preset (valid: cifar10, "),
    (["--export={root}/seven", "--data=cifar11"], "error: --data 'cifar11' is "
     "neither a dataset preset"),
    (["--export={root}/seven", "--attacks=natural,nope"], "error: unknown "
     "attack 'nope' in --attacks; valid: "),
    (["--export={root}/seven", "--epsilon=2"], "error: --epsilon must be "
     "numbers in (0, 1], got '2'"),
    (["--export={root}/seven", "--distribute=tpu"], "error: unknown "
     "--distribute 'tpu'; valid: default, mirrored"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(bad_exports, args,
                                                         match):
  root = str(bad_exports)
  args = [a.format(root=root) for a in args]
  if not any(a.startswith("--data=") for a in args):
    args.append("--data=digits")
  output = os.path.join(root, "out", "report.json")
  proc = _cli(*args, "--attacks=natural" if "--attacks" not in str(args)
              else "--seed=0", f"--output={output}")
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and errors[0].startswith(match.format(root=root)), \
      proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert not os.path.exists(os.path.join(root, "out"))


def test_mirrored_passes_the_strategy_to_robustness_evaluate(keras_export,
                                                             monkeypatch):
  """--distribute=mirrored hands evaluate() the 2-replica strategy; default
  passes none (robustness.evaluate before its `strategy` keyword)."""
  path, _, npz = keras_export
  original, seen = robustness.evaluate, []

  def evaluate_with_strategy(*args, strategy=None, **kwargs):
    seen.append(strategy)
    return original(*args, **kwargs)

  monkeypatch.setattr(robustness, "evaluate", evaluate_with_strategy)
  kwargs = dict(max_examples=60, batch_size=30, verbose=0)
  mirrored = evaluate.evaluate_export(path, npz, ["natural", "fgsm"], ["0.1"],
                                      distribute="mirrored", **kwargs)
  assert [s.num_replicas_in_sync for s in seen] == [2, 2]
  seen.clear()
  default = evaluate.evaluate_export(path, npz, ["natural", "fgsm"], ["0.1"],
                                     **kwargs)
  assert seen == [None, None]
  for name in ("natural", "fgsm"):
    assert mirrored[name] == default[name]
