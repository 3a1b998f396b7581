"""Tests for official/modeling/registry.py: names, options, normalisation, seeds, export."""
import re

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from official.modeling import registry

VALID = "preact_resnet18, resnet18, small_cnn, wide_resnet"  # Sorted.
# Small but complete configs: every model, cheap to build and run at batch size 2.
SMALL = {
    "small_cnn": {"padding": "same"},
    "resnet18": {},
    "preact_resnet18": {},
    "wide_resnet": {"depth": 10, "width": 1},
}


def build(name, input_shape=(8, 8, 3), seed=0, **options):
  cfg = ml_collections.ConfigDict(dict(name=name, **options))
  return registry.build_model(cfg, input_shape, 10, seed=seed)


def images(shape, seed=0):
  return np.random.default_rng(seed).uniform(size=(2,) + shape).astype("float32")


def test_registry_holds_the_four_models():
  assert sorted(registry.MODELS) == VALID.split(", ")


@pytest.mark.parametrize("name", sorted(SMALL))
def test_two_named_outputs(name):
  model = build(name, **SMALL[name])
  assert model.output_names == ["logits", "features"]
  assert model.input_shape == (None, 8, 8, 3)
  logits, features = model(images((8, 8, 3)), training=False)
  assert logits.shape == (2, 10)
  assert features.shape[-1] == model.get_layer("logits").kernel.shape[0]


def test_unknown_name():
  # model.name=custom (your own keras.Model, modeling/custom.py) is valid too.
  valid = ", ".join(sorted(VALID.split(", ") + ["custom"]))
  with pytest.raises(ValueError, match=re.escape(f"unknown model.name 'vgg16'; valid: {valid}")):
    build("vgg16")


def test_unknown_option_is_a_one_line_value_error():
  with pytest.raises(ValueError, match="model.widht") as err:
    build("wide_resnet", widht=10)
  assert "\n" not in str(err.value)
  with pytest.raises(ValueError, match="model.depth"):
    build("resnet18", depth=34)


def test_plain_dict_config_and_defaults():
  # A config sets only what it changes; the rest are the builder's defaults.
  model = registry.build_model({"name": "wide_resnet", "depth": 10}, (8, 8, 3), 10)
  assert model.outputs[1].shape == (None, 640)  # Default width 10: 64 * 10.


def test_normalize_is_per_channel_mean_std():
  mean, std = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
  model = build("small_cnn", normalize=(mean, std), **SMALL["small_cnn"])
  x = images((8, 8, 3))
  normalized = keras.Model(model.input, model.get_layer("normalize").output)(x)
  np.testing.assert_allclose(normalized, (x - np.array(mean)) / np.array(std), rtol=1e-5, atol=1e-6)


def test_normalize_none_is_identity():
  # Normalisation has no weights, so the same seed gives the same weights with or
  # without it; with mean 0 and std 1 the outputs must equal the plain model's.
  plain = build("resnet18", normalize=None)
  unit = build("resnet18", normalize=((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
  assert "normalize" not in [layer.name for layer in plain.layers]
  x = images((8, 8, 3))
  np.testing.assert_allclose(plain(x)[0], unit(x)[0], rtol=1e-6, atol=1e-6)


def test_normalize_needs_one_mean_and_std_per_channel():
  with pytest.raises(ValueError, match="3 means and stds"):
    build("small_cnn", normalize=((0.1307,), (0.3081,)))


@pytest.mark.parametrize("name", ["small_cnn", "wide_resnet"])
def test_seed_determines_weights(name):
  weights = lambda seed: [w.numpy() for w in build(name, seed=seed, **SMALL[name]).weights]
  a, b, c = weights(0), weights(0), weights(1)
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert any(not np.array_equal(x, z) for x, z in zip(a, c))


def test_logits_model_shares_layers_and_exports(tmp_path):
  model = build("small_cnn", **SMALL["small_cnn"])
  model.get_layer("logits").kernel.assign(np.ones((200, 10), "float32"))  # Non-zero logits.
  exported = registry.logits_model(model)
  x = images((8, 8, 3))
  np.testing.assert_allclose(exported(x), model(x)[0], rtol=1e-6)
  assert {id(w) for w in exported.weights} == {id(w) for w in model.weights}
  exported.export(str(tmp_path / "serve"), verbose=False)
  # Keep the loaded object alive: its variables die with it.
  loaded = tf.saved_model.load(str(tmp_path / "serve"))
  served = loaded.serve(x)
  np.testing.assert_allclose(served, model(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_cosine_head_on_every_network(name):
  """model.head=cosine: z = <x/|x|, w_j/(|w_j| + gamma)> on the features."""
  model = build(name, head="cosine", cosine_gamma=0.5, **SMALL[name])
  x = images((8, 8, 3))
  z, features = (t.numpy() for t in model(x))
  kernel = model.get_layer("cosine_logits").kernel.numpy()
  unit = features / np.linalg.norm(features, axis=1, keepdims=True)
  expected = unit @ (kernel / (np.linalg.norm(kernel, axis=0) + 0.5))
  np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-6)
  assert np.abs(z).max() < 1.0
  assert "logits" not in [layer.name for layer in model.layers]


def test_bad_head_is_a_one_line_value_error():
  with pytest.raises(ValueError, match=r"^unknown model.head 'arc'; valid: "
                     r"linear, cosine$"):
    build("small_cnn", head="arc", **SMALL["small_cnn"])
  with pytest.raises(ValueError, match=r"model.cosine_gamma must be a number "
                     r">= 0, got -0.1"):
    build("small_cnn", head="cosine", cosine_gamma=-0.1, **SMALL["small_cnn"])


def test_logits_model_applies_the_deployed_transform(tmp_path):
  model = build("small_cnn", head="cosine", **SMALL["small_cnn"])
  bias = np.float32(np.arange(10))
  deployed = registry.logits_model(model, lambda z: 10.0 * z - bias)
  x = images((8, 8, 3))
  np.testing.assert_allclose(deployed(x), 10 * model(x)[0].numpy() - bias,
                             rtol=1e-5, atol=1e-5)
  deployed.export(str(tmp_path / "serve"), verbose=False)
  loaded = tf.saved_model.load(str(tmp_path / "serve"))
  np.testing.assert_allclose(loaded.serve(x), deployed(x), rtol=1e-5, atol=1e-5)
