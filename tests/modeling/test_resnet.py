"""Tests for official/modeling/resnet.py (ResNet-18 and PreAct ResNet-18, CIFAR variants)."""
import keras
import ml_collections
import numpy as np
import pytest

from official.modeling import registry


def build(name, input_shape=(32, 32, 3), seed=0):
  return registry.build_model(ml_collections.ConfigDict({"name": name}), input_shape, 10, seed=seed)


def num_params(model):
  # Trainable only: BN gamma/beta count (PyTorch parameters), moving stats do not (buffers).
  return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_resnet18_param_count_matches_pytorch():
  assert num_params(build("resnet18")) == 11_173_962


def test_preact_resnet18_param_count_matches_pytorch():
  # 11,171,146 is kuangliu's PreActResNet18, which pools right after the last
  # block. The papers' version (Rice et al., 2020) adds BN-ReLU on the 512
  # channels before pooling: 512 gammas + 512 betas more.
  model = build("preact_resnet18")
  final_bn = num_params(keras.Model(model.input, model.get_layer("final_bn").output)) - \
      num_params(keras.Model(model.input, model.get_layer("stage4_block2_add").output))
  assert final_bn == 1024
  assert num_params(model) == 11_171_146 + 1024


@pytest.mark.parametrize("name", ["resnet18", "preact_resnet18"])
@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1)])
def test_outputs_and_features(name, shape):
  model = build(name, shape)
  x = np.random.default_rng(0).uniform(size=(2,) + shape).astype("float32")
  logits, features = model(x, training=False)
  assert logits.shape == (2, 10) and features.shape == (2, 512)
  last = model.get_layer("logits")
  assert last.kernel.shape == (512, 10)
  np.testing.assert_allclose(logits, features @ last.kernel.numpy() + last.bias.numpy(),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "preact_resnet18"])
def test_pytorch_batch_norm_and_bias_free_convs(name):
  model = build(name)
  bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
  # ResNet-18: stem + 2 per block + 3 projections; PreAct: 2 per block + final.
  assert len(bns) == (1 + 16 + 3 if name == "resnet18" else 16 + 1)
  assert len(convs) == 1 + 16 + 3
  assert all(l.momentum == 0.9 and l.epsilon == 1e-5 for l in bns)
  assert not any(l.use_bias for l in convs)


def test_spatial_sizes_follow_pytorch_padding():
  # 32 -> 32 -> 16 -> 8 -> 4, and the 3x3 stride-2 branch is explicitly padded 1|1.
  model = build("resnet18")
  sizes = [model.get_layer(f"stage{s}_block2_out").output.shape[1] for s in (1, 2, 3, 4)]
  assert sizes == [32, 16, 8, 4]
  assert model.get_layer("stage2_block1_conv1_pad").padding == ((1, 1), (1, 1))


def test_preact_projection_starts_from_the_pre_activation():
  model = build("preact_resnet18")
  pre = model.get_layer("stage2_block1_bn1_relu").output
  assert model.get_layer("stage2_block1_proj").input is pre
  assert model.get_layer("stage2_block1_conv1_pad").input is pre
  # Identity blocks add the raw block input, not its pre-activation.
  assert model.get_layer("stage2_block2_add").input[0] is model.get_layer("stage2_block1_add").output
