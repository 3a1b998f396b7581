"""Worst-case metrics: the class-based RA-Tail and worst class of every
summary (by hand, and in TensorBoard), and the example-based report
`tail_examples` against a reference SavedModel."""
import glob
import os
import types

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from official.core import experiment
from official.evaluation import reports
from official.evaluation import robustness
from official.evaluation import tail_examples
from tests.core import helpers


def test_hardest_by_hand():
  losses = [0.5, 2.0, 0.1, 2.0, 3.0, 0.7, 1.0, 0.2, 0.3, 0.4]
  np.testing.assert_array_equal(tail_examples.hardest(losses, 0.3), [1, 3, 4])
  # Ties go to the lower index; at least one, at most all.
  np.testing.assert_array_equal(tail_examples.hardest(losses, 0.2), [1, 4])
  np.testing.assert_array_equal(tail_examples.hardest(losses, 0.01), [4])
  assert tail_examples.hardest(losses, 1.0).size == 10


def test_class_based_tail_is_the_mean_of_the_weakest_30_percent_of_classes():
  # 10 classes, 10 test examples each, class c has c + 1 correct... except
  # class 7 with none: per-class accuracy [.1, .2, ..., .7, 0, .9, 1].
  labels = np.repeat(np.arange(10), 10)
  correct = np.zeros(100, bool)
  for c in range(10):
    if c != 7:
      correct[c * 10:c * 10 + c + 1] = True
  s = robustness.summarize(correct, labels, 10, tail_fraction=0.3)
  assert s["per_class"][7] == 0.0 and s["per_class"][9] == 1.0
  assert s["worst_class"] == 0.0
  assert s["tail"] == pytest.approx((0.0 + 0.1 + 0.2) / 3)  # RA-Tail-30
  assert s["accuracy"] == pytest.approx(correct.mean())


def _scalars(logdir):
  values = {}
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        values[v.tag] = float(tf.make_ndarray(v.tensor))
  return values


def test_worst_class_and_tail_reach_tensorboard(tmp_path):
  s = robustness.summarize([1, 0, 1, 1], [0, 0, 1, 1], 2, 0.5)
  robustness.write_summaries({"pgd20": s, "some_report": {"x": 1}},
                             str(tmp_path))
  values = _scalars(str(tmp_path))
  assert values["eval/pgd20/worst_class"] == pytest.approx(0.5)
  assert values["eval/pgd20/tail"] == pytest.approx(0.5)
  assert values["eval/pgd20/accuracy"] == pytest.approx(0.75)


def _linear(seed):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                           keras.layers.Dense(3)])


def _eval_cfg(**options):
  return ml_collections.ConfigDict({
      "epsilon": 0.1, "pgd_step_size": 0.02, "pgd_steps": 5, "restarts": 1,
      "tail_fraction": 0.3, "max_examples": 0, "reference_loss": "natural",
      "reference_export": "", **options})


@pytest.fixture(name="reference")
def _reference(tmp_path):
  model = _linear(1)
  path = str(tmp_path / "reference")
  model.export(path, verbose=False)
  return model, path


def _report(tmp_path, current, eval_cfg, images, labels):
  dataset = tf.data.Dataset.from_tensor_slices(
      {"image": images, "label": labels}).batch(16)
  ctx = reports.ReportContext(
      logits_fn=lambda x: current(x, training=False),
      data=types.SimpleNamespace(test=lambda: dataset, num_classes=3),
      config=ml_collections.ConfigDict({"eval": eval_cfg}),
      workdir=str(tmp_path / "run"), results={}, seed=0, jit_compile=False)
  return reports.run_reports(("tail_examples",), ctx)["tail_examples"]


def test_report_ranks_by_the_reference_and_scores_the_current_model(
    tmp_path, reference):
  ref_model, path = reference
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 1, (40, 4, 4, 1)).astype(np.float32)
  labels = rng.integers(0, 3, 40).astype(np.int32)
  current = _linear(2)
  out = _report(tmp_path, current, _eval_cfg(reference_export=path), images,
                labels)
  # By hand: CE of the reference on the clean images, the 12 largest.
  logits = ref_model(images).numpy().astype(np.float64)
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  ce = -logp[np.arange(40), labels]
  tail = np.sort(np.argsort(-ce)[:12])
  saved = np.load(tmp_path / "run" / "tail_examples.npz")
  np.testing.assert_array_equal(saved["indices"], tail)
  np.testing.assert_allclose(saved["reference_loss"], ce, rtol=1e-5)
  assert (out["num_examples"], out["num_tail"]) == (40, 12)
  assert out["loss_threshold"] == pytest.approx(ce[tail].min(), rel=1e-5)
  pred = np.argmax(current(images).numpy(), -1)
  assert out["natural"] == pytest.approx((pred == labels)[tail].mean())
  assert 0.0 <= out["pgd20"] <= out["natural"]
  assert out["attack"]["steps"] == 5
  values = _scalars(str(tmp_path / "run" / "tb" / "eval"))
  assert values["eval/tail_examples/pgd20"] == pytest.approx(out["pgd20"])

  # Ranked by the reference's own PGD example: larger losses, same size;
  # max_examples limits the pool.
  out = _report(tmp_path, current,
                _eval_cfg(reference_export=path, reference_loss="pgd20",
                          max_examples=20), images, labels)
  assert (out["num_examples"], out["num_tail"]) == (20, 6)
  adv_loss = np.load(tmp_path / "run" / "tail_examples.npz")["reference_loss"]
  assert adv_loss.mean() > ce[:20].mean()


def test_check_rejects_missing_reference_before_training(tmp_path):
  with pytest.raises(ValueError, match="needs eval.reference_export"):
    tail_examples.check(_eval_cfg())
  with pytest.raises(ValueError, match="no SavedModel in"):
    tail_examples.check(_eval_cfg(reference_export=str(tmp_path)))
  with pytest.raises(ValueError, match="unknown eval.reference_loss 'x'"):
    tail_examples.check(_eval_cfg(reference_loss="x"))
  config = helpers.tiny_config()
  config.eval.reports = ("tail_examples",)
  with pytest.raises(ValueError, match="needs eval.reference_export"):
    experiment.validate(config)
