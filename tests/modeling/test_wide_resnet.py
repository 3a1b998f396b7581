"""Tests for official/modeling/wide_resnet.py (the TRADES/MART/GAIRAT WideResNet)."""
import keras
import ml_collections
import numpy as np
import pytest

from official.modeling import registry


def build(input_shape=(32, 32, 3), seed=0, **options):
  cfg = ml_collections.ConfigDict(dict(name="wide_resnet", **options))
  return registry.build_model(cfg, input_shape, 10, seed=seed)


def num_params(model):
  # Trainable only: BN gamma/beta count (PyTorch parameters), moving stats do not (buffers).
  return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("depth, expected", [(34, 46_160_474), (28, 36_479_194)])
def test_param_count_matches_pytorch(depth, expected):
  model = build(depth=depth, width=10)  # Built only: no forward pass at this size.
  assert num_params(model) == expected
  assert model.outputs[1].shape == (None, 640)


@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1)])
def test_outputs_and_features(shape):
  model = build(shape, depth=10, width=2)
  x = np.random.default_rng(0).uniform(size=(2,) + shape).astype("float32")
  logits, features = model(x, training=False)
  assert logits.shape == (2, 10) and features.shape == (2, 128)  # 64 * width.
  last = model.get_layer("logits")
  assert last.kernel.shape == (128, 10) and not np.any(last.bias.numpy())  # TRADES: zero bias.
  np.testing.assert_allclose(logits, features @ last.kernel.numpy() + last.bias.numpy(),
                             rtol=1e-5, atol=1e-5)


def test_depth_must_be_6n_plus_4():
  with pytest.raises(ValueError, match="6n\\+4"):
    build(depth=30)


def test_first_block_of_group_shares_its_pre_activation():
  model = build(depth=16, width=2)  # n = 2 blocks per group.
  pre = model.get_layer("group2_block1_bn1_relu").output
  assert model.get_layer("group2_block1_proj").input is pre
  assert model.get_layer("group2_block1_conv1_pad").input is pre
  # Later blocks add their raw input; group 1 changes width 16 -> 32, so it projects too.
  assert model.get_layer("group2_block2_add").input[0] is model.get_layer("group2_block1_add").output
  assert [l.name for l in model.layers if l.name.endswith("_proj")] == [
      "group1_block1_proj", "group2_block1_proj", "group3_block1_proj"]


def test_trades_conv_init_and_pytorch_batch_norm():
  model = build(depth=10, width=4)
  kernel = model.get_layer("group3_block1_conv2").kernel.numpy()  # 3x3x256x256.
  # N(0, 2 / (k*k*out_channels)); 589,824 draws, so within 1%.
  np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (3 * 3 * 256)), rtol=0.01)
  bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert len(bns) == 2 * 3 + 1
  assert all(l.momentum == 0.9 and l.epsilon == 1e-5 for l in bns)


def test_dropout_between_the_convs():
  model = build(depth=10, width=1, dropout=0.3)
  drops = [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
  assert [l.rate for l in drops] == [0.3] * 3
  assert model.get_layer("group1_block1_conv2").input is drops[0].output
  x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
  np.testing.assert_array_equal(model(x, training=False)[0], model(x, training=False)[0])
  assert not np.array_equal(model(x, training=True)[1], model(x, training=False)[1])
  assert not any(isinstance(l, keras.layers.Dropout) for l in build(depth=10, width=1).layers)
