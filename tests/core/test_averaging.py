"""Weight averaging: SWA and the gated EMA by hand, bn_update by hand, a run
exports the mean of its checkpoints, resume and 2 replicas equal, errors."""
import json
import os
import re
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from official.core import averaging
from official.core import experiment
from tests.core import helpers


def _linear(value):
  model = keras.Sequential([keras.Input((2,)),
                            keras.layers.Dense(1, use_bias=False)])
  model.layers[0].kernel.assign(np.full((2, 1), value, np.float32))
  return model


def _kernel(avg):
  return float(avg.average[0].numpy()[0, 0])


def test_swa_is_the_mean_of_the_epochs_from_the_start():
  model = _linear(0.0)
  avg = averaging.WeightAverage(model, "swa", start_epoch=2)
  for epoch, value in enumerate([10.0, 20.0, 1.0, 2.0, 6.0]):
    model.layers[0].kernel.assign(np.full((2, 1), value, np.float32))
    avg.update(epoch)
  assert _kernel(avg) == pytest.approx((1 + 2 + 6) / 3)
  assert (int(avg.count.numpy()), int(avg.first_epoch.numpy()),
          int(avg.last_epoch.numpy())) == (3, 2, 4)


def test_gated_ema_copies_the_first_accepted_epoch_then_decays():
  model = _linear(0.0)
  avg = averaging.WeightAverage(model, "ema", start_epoch=0, decay=0.75)
  values = [4.0, 8.0, 0.0, 16.0]
  accepted = [False, True, False, True]
  for epoch, (value, ok) in enumerate(zip(values, accepted)):
    model.layers[0].kernel.assign(np.full((2, 1), value, np.float32))
    assert avg.update(epoch, ok) == ok
  # Epoch 1 copies 8; epoch 2 is refused; epoch 3: 0.75·8 + 0.25·16 = 10.
  assert _kernel(avg) == pytest.approx(10.0)
  assert int(avg.count.numpy()) == 2
  # The callback asks the method's gate.
  gate = types.SimpleNamespace(accept_average=lambda epoch: epoch == 0)
  callback = averaging.AveragingCallback(
      averaging.WeightAverage(model, "ema", decay=0.5), gate)
  callback.on_epoch_end(0)
  callback.on_epoch_end(1)
  assert int(callback.average.count.numpy()) == 1


def test_apply_writes_the_average_or_keeps_the_last_weights():
  model = _linear(3.0)
  avg = averaging.WeightAverage(model, "ema", start_epoch=0)
  info = avg.apply_to(model)
  assert info == {"averaging": "ema", "epochs_averaged": 0,
                  "evaluated": "last (no epoch was averaged)"}
  assert float(model.layers[0].kernel.numpy()[0, 0]) == 3.0
  avg.update(0)
  model.layers[0].kernel.assign(np.zeros((2, 1), np.float32))
  info = avg.apply_to(model)
  assert info["evaluated"] == "ema" and info["first_epoch"] == 1
  assert float(model.layers[0].kernel.numpy()[0, 0]) == 3.0


def test_bn_update_is_the_equal_mean_of_the_batch_statistics():
  inputs = keras.Input((2,))
  bn = keras.layers.BatchNormalization(momentum=0.9)
  model = keras.Model(inputs, bn(inputs))
  bn.moving_mean.assign([5.0, 5.0])  # stale statistics, to be replaced
  rng = np.random.default_rng(0)
  batches = [rng.normal(loc, 2.0, (8, 2)).astype(np.float32)
             for loc in (0.0, 1.0, 5.0)]
  count = averaging.bn_update(model, [{"image": b} for b in batches])
  assert count == 3
  np.testing.assert_allclose(bn.moving_mean.numpy(),
                             np.mean([b.mean(0) for b in batches], 0),
                             rtol=1e-5)
  np.testing.assert_allclose(bn.moving_variance.numpy(),
                             np.mean([b.var(0) for b in batches], 0),
                             rtol=1e-4)
  assert bn.momentum == 0.9  # restored


def _run(tmp_path, name, epochs, distribute="default", then=None):
  # Batches of 256: 5 steps an epoch. (Over a hundred steps at lr 0.1, the
  # ~1e-7 differences of a 2-replica gradient sum grow chaotically.)
  def config(e):
    return helpers.tiny_config(
        "at", "digits", distribute=distribute, averaging="swa",
        averaging_start_epoch=1, epochs=e, batch_size=256,
        **{"eval.attacks": ("natural",), "eval.reports": ()})
  workdir = str(tmp_path / name)
  for e in ([epochs] if then is None else [epochs, then]):
    run = experiment.prepare(config(e), workdir)
    experiment.train_and_evaluate(run)
  return run, workdir


def _serve(workdir, images):
  loaded = tf.saved_model.load(os.path.join(workdir, "export"))  # kept alive
  return loaded.serve(images).numpy()


def test_swa_run_exports_the_mean_of_its_checkpoints_resumes_and_replicates(
    tmp_path):
  run, workdir = _run(tmp_path, "straight", 3)
  with open(os.path.join(workdir, "eval.json")) as f:
    weights = json.load(f)["weights"]
  assert weights == {"averaging": "swa", "epochs_averaged": 2,
                     "first_epoch": 2, "last_epoch": 3, "evaluated": "swa"}
  # The expectation from the checkpoints of epochs 2 and 3.
  again = experiment.prepare(run.config, workdir)
  network = again.trainer.network
  w3 = [v.numpy() for v in network.weights]
  again.checkpointer.checkpoint.restore(
      os.path.join(workdir, "checkpoints", "ckpt-2")).expect_partial()
  w2 = [v.numpy() for v in network.weights]
  assert not np.allclose(w2[0], w3[0])
  for v, a, b in zip(network.weights, w2, w3):
    v.assign((a + b) / 2)
  images = next(iter(again.data.test()))["image"][:16]
  np.testing.assert_allclose(_serve(workdir, images),
                             network(images, training=False)[0].numpy(),
                             rtol=1e-5, atol=1e-5)
  experiment.workdir_lib.release(workdir)
  # Resumed (2 epochs, then 3) and on 2 replicas: the same export.
  _, resumed = _run(tmp_path, "resumed", 2, then=3)
  np.testing.assert_allclose(_serve(resumed, images), _serve(workdir, images),
                             rtol=1e-6, atol=1e-6)
  _, mirrored = _run(tmp_path, "mirrored", 3, distribute="mirrored")
  np.testing.assert_allclose(_serve(mirrored, images), _serve(workdir, images),
                             atol=1e-4)


@pytest.mark.parametrize("key,value,message", [
    ("averaging", "mean", "unknown averaging 'mean'; valid: none, swa, ema"),
    ("averaging_decay", 1.0, "averaging_decay must be in (0, 1), got 1.0"),
    ("averaging_start_epoch", 2, "averaging_start_epoch must be in [0, epochs - 1] = [0, 1]"),
    ("objective.label_smoothing", 1.0, "objective.label_smoothing must be in [0, 1), got 1.0"),
    ("optimizer.schedule", "cosine", "unknown optimizer.schedule 'cosine'; valid: piecewise, onecycle"),
])
def test_bad_values_are_one_line_errors(key, value, message):
  overrides = {"averaging": "ema", key: value}
  if key == "averaging":
    overrides = {key: value}
  config = helpers.tiny_config(**overrides)
  with pytest.raises(ValueError, match=re.escape(message)):
    experiment.validate(config)


def test_bn_update_under_two_replicas_equals_one_device():
  rng = np.random.default_rng(1)
  batches = [{"image": rng.normal(loc, 1.5, (8, 3)).astype(np.float32)}
             for loc in (0.0, 2.0)]

  def bn_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.BatchNormalization()(
        keras.layers.Dense(3)(inputs)))

  one = bn_model()
  averaging.bn_update(one, batches)
  strategy = experiment.make_strategy("mirrored")
  assert strategy.num_replicas_in_sync == 2
  with strategy.scope():
    two = bn_model()
  averaging.bn_update(two, batches)
  for a, b in zip(one.non_trainable_variables, two.non_trainable_variables):
    for copy in strategy.experimental_local_results(b):  # every replica's
      np.testing.assert_allclose(a.numpy(), copy.numpy(), rtol=1e-6)
  assert not np.allclose(one.non_trainable_variables[0].numpy(), 0.0)
