"""Mixed precision: mixed runs train, attacks keep their budget and their
input gradients (no float16 underflow), the export serves float32, resume
restores the loss-scale optimizer, bad values fail in one line."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from official.attacks import losses
from official.attacks import pgd
from official.core import experiment
from official.core import export
from official.core import precision
from tests.core import helpers


@pytest.fixture(autouse=True)
def _float32_afterwards():
  """The policy is process-global: every other test expects float32."""
  yield
  keras.mixed_precision.set_global_policy("float32")


def _test_batch(run, n=96):
  batches = list(run.data.test().take(2))  # eval batches of 48
  x = tf.concat([tf.cast(b["image"], tf.float32) for b in batches], 0)[:n]
  y = tf.concat([tf.cast(b["label"], tf.int32) for b in batches], 0)[:n]
  return x, y


def _accuracy(run, x, y):
  logits = run.trainer.network(x, training=False)[0]
  return float(np.mean(np.argmax(logits, -1) == y.numpy()))


@pytest.mark.parametrize("mode", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_runs_train_and_attacks_stay_in_the_ball(tmp_path, mode):
  config = helpers.tiny_config(precision=mode, **{"attack.steps": 2})
  run = experiment.prepare(config, str(tmp_path))
  network = run.trainer.network
  compute = mode.split("_")[1]
  assert network.get_layer("conv1").compute_dtype == compute
  assert all(v.dtype == "float32" for v in network.weights)
  assert isinstance(run.trainer.optimizer, keras.optimizers.LossScaleOptimizer
                    ) == (mode == "mixed_float16")
  x, y = _test_batch(run)
  before = _accuracy(run, x, y)
  run.trainer.fit(run.data.train(0, 2), epochs=1, steps_per_epoch=80,
                  verbose=0)
  after = _accuracy(run, x, y)
  # From the zero-logit start (one class: 0.10); float32 reaches 0.2-0.4 too.
  assert after > before + 0.1, (before, after)
  assert np.isfinite(float(run.trainer.trackers["loss"].result()))
  logits = network(x, training=False)[0]
  assert logits.dtype == tf.float32
  # The training attack on the mixed network: inside the eps-ball and [0, 1].
  spec = run.trainer.train_attack
  x_adv, stats = run.trainer.attack_fn(spec)(x, y, tf.constant([1, 2]))
  delta = np.abs(x_adv.numpy() - x.numpy())
  assert delta.max() <= spec.epsilon + 1e-6 and delta.max() > 0.5 * spec.epsilon
  assert 0.0 <= x_adv.numpy().min() and x_adv.numpy().max() <= 1.0
  assert stats["logits"].dtype == tf.float32
  # The attack works: it raises the loss it ascends, on average. (Not its
  # accuracy: on a model 80 steps from its start, two small steps from a
  # random start may fix as many points as they break; on this machine's
  # native float16 kernels that happened: 0.32 adversarial vs 0.29 clean.)
  clean_loss = losses.cross_entropy(logits, y).numpy().mean()
  assert stats["loss"].numpy().mean() > clean_loss + 0.01, (
      stats["loss"].numpy().mean(), clean_loss)


def _zero_fraction(network, x, y, rescale):
  forward = lambda images: network(images, training=False)[0]  # noqa: E731
  _, grad = pgd.input_gradient(forward, x, y, "ce", rescale=rescale)
  return float(np.mean(grad.numpy() == 0))


def test_float16_attack_gradients_do_not_underflow(tmp_path):
  """Same weights, float32 vs float16 compute: the attack's input gradient
  has no more zero entries in float16 (where the plain float16 backward of
  a confident model flushes most of them to zero)."""
  run = experiment.prepare(helpers.tiny_config(), str(tmp_path / "f32"))
  run.trainer.fit(run.data.train(0, 1), epochs=1, steps_per_epoch=20,
                  verbose=0)
  # A confident model: labels = its own predictions, logit margins scaled to
  # a median of 40. The CE gradient at the logits is ~exp(-margin): a float32
  # number (> 1e-38), far below float16's smallest (6e-8).
  x, _ = _test_batch(run)
  logits = run.trainer.network(x)[0].numpy()
  y = tf.constant(np.argmax(logits, -1), tf.int32)
  top2 = np.sort(logits, -1)[:, -2:]
  factor = 40.0 / np.median(top2[:, 1] - top2[:, 0])
  for v in run.trainer.network.get_layer("logits").weights:
    v.assign(v * factor)
  weights = [v.numpy() for v in run.trainer.network.weights]
  float32_zeros = _zero_fraction(run.trainer.network, x, y, rescale=False)

  mixed = experiment.prepare(helpers.tiny_config(precision="mixed_float16"),
                             str(tmp_path / "f16"))
  network = mixed.trainer.network
  for v, w in zip(network.weights, weights):
    v.assign(w)
  assert network.get_layer("conv1").compute_dtype == "float16"
  rescaled = _zero_fraction(network, x, y, rescale=True)
  plain = _zero_fraction(network, x, y, rescale=False)
  assert rescaled <= float32_zeros, (rescaled, float32_zeros)
  assert plain > float32_zeros + 0.1, (plain, float32_zeros)  # the failure
  assert mixed.trainer.attack_fn(mixed.trainer.train_attack) is not None
  # The trainer picks the rescaled gradient for a float16 network.
  assert pgd.rescale_gradients()


def test_export_serves_float32_and_resume_restores_the_loss_scale(tmp_path):
  config = helpers.tiny_config(precision="mixed_float16")
  run = helpers.fit_steps(config, tmp_path / "run", 3)
  optimizer = run.trainer.optimizer
  scale, iterations = float(optimizer.dynamic_scale), int(optimizer.iterations)
  assert iterations == 3  # no step skipped
  x, _ = _test_batch(run, 8)
  path = export.export(run.trainer.network, str(tmp_path / "export"))
  loaded = tf.saved_model.load(path)  # (keep it: it owns the variables)
  served = loaded.serve(x)
  assert served.dtype == tf.float32
  # Both compute in float16 (unit roundoff 4.9e-4); the saved graph may pick
  # other kernels (this machine has native avx512_fp16): equal to float16's
  # precision, not bit for bit.
  np.testing.assert_allclose(served, run.trainer.network(x)[0], rtol=1e-3,
                             atol=1e-5)

  run.checkpointer.save(1)
  again = experiment.prepare(helpers.tiny_config(precision="mixed_float16"),
                             str(tmp_path / "run"))
  assert again.initial_epoch == 1
  assert float(again.trainer.optimizer.dynamic_scale) == scale
  assert int(again.trainer.optimizer.iterations) == iterations
  for a, b in zip(run.trainer.network.weights, again.trainer.network.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_precision_is_one_line():
  with pytest.raises(ValueError, match=r"^unknown precision 'float16'; valid: "
                     r"float32, mixed_float16, mixed_bfloat16$"):
    experiment.validate(helpers.tiny_config(precision="float16"))
  assert precision.wrap_optimizer("sgd", "float32") == "sgd"
  assert precision.loss_scale(keras.optimizers.SGD()) is None
