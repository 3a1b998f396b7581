"""Tests for official/modeling/small_cnn.py (TRADES' MNIST SmallCNN)."""
import ml_collections
import numpy as np
import pytest

from official.modeling import registry


def build(input_shape, seed=0, **options):
  cfg = ml_collections.ConfigDict(dict(name="small_cnn", **options))
  return registry.build_model(cfg, input_shape, 10, seed=seed)


def num_params(model):
  return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def images(shape):
  return np.random.default_rng(0).uniform(size=(2,) + shape).astype("float32")


def conv(c_in, c_out):
  return 3 * 3 * c_in * c_out + c_out


def dense(n_in, n_out):
  return n_in * n_out + n_out


def test_mnist_param_count_matches_trades():
  # 28 -conv-> 26 -conv-> 24 -pool-> 12 -conv-> 10 -conv-> 8 -pool-> 4: 4*4*64 inputs to fc1.
  expected = (conv(1, 32) + conv(32, 32) + conv(32, 64) + conv(64, 64)
              + dense(4 * 4 * 64, 200) + dense(200, 200) + dense(200, 10))
  assert expected == 312_202
  assert num_params(build((28, 28, 1))) == expected


@pytest.mark.parametrize("shape, flat", [((28, 28, 1), 4 * 4 * 64), ((32, 32, 3), 5 * 5 * 64)])
def test_output_shapes(shape, flat):
  model = build(shape)
  assert model.get_layer("flatten").output.shape == (None, flat)
  logits, features = model(images(shape), training=False)
  assert logits.shape == (2, 10) and features.shape == (2, 200)


def test_same_padding_runs_on_8x8():
  model = build((8, 8, 1), padding="same")
  assert model.get_layer("flatten").output.shape == (None, 2 * 2 * 64)
  assert model(images((8, 8, 1)))[0].shape == (2, 10)


def test_widths_are_configurable():
  model = build((28, 28, 1), filters=(4, 4, 8, 8), dense_units=(16, 12))
  expected = (conv(1, 4) + conv(4, 4) + conv(4, 8) + conv(8, 8)
              + dense(4 * 4 * 8, 16) + dense(16, 12) + dense(12, 10))
  assert num_params(model) == expected
  assert model.outputs[1].shape == (None, 12)
  with pytest.raises(ValueError, match="4 filters"):
    build((28, 28, 1), filters=(32, 64))


def test_trades_init():
  model = build((28, 28, 1))
  last = model.get_layer("logits")
  assert not np.any(last.kernel.numpy()) and not np.any(last.bias.numpy())
  assert not np.any(model(images((28, 28, 1)))[0])  # Zero last layer: logits start at 0.
  conv4 = model.get_layer("conv4")
  assert not np.any(conv4.bias.numpy())
  # kaiming_normal: std sqrt(2 / fan_in), fan_in = 3*3*64; 36,864 draws, so within 3%.
  np.testing.assert_allclose(conv4.kernel.numpy().std(), np.sqrt(2 / (3 * 3 * 64)), rtol=0.03)


def test_logits_are_last_dense_of_features():
  model = build((28, 28, 1))
  last = model.get_layer("logits")
  rng = np.random.default_rng(1)
  last.kernel.assign(rng.normal(size=(200, 10)).astype("float32"))  # TRADES starts at 0.
  last.bias.assign(rng.normal(size=10).astype("float32"))
  logits, features = model(images((28, 28, 1)), training=False)
  assert np.all(features.numpy() >= 0)  # After the ReLU.
  np.testing.assert_allclose(logits, features @ last.kernel.numpy() + last.bias.numpy(),
                             rtol=1e-5, atol=1e-5)


def test_dropout_as_trades():
  assert build((28, 28, 1)).get_layer("dropout").rate == 0.5
  no_dropout = build((28, 28, 1), dropout=0.0)
  assert "dropout" not in [layer.name for layer in no_dropout.layers]
