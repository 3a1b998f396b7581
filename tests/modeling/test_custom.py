"""modeling/custom.py: your own keras.Model as model.name=custom, with every method."""
import hashlib
import json
import os
import textwrap

import keras
import ml_collections as mlc
import numpy as np
import pytest

from official.core import experiment
from official.modeling import custom
from official.modeling import registry
from official.reweighting import registry as method_registry
from tests.core import helpers

BUILDERS = textwrap.dedent('''
    import keras

    def build(input_shape, num_classes):
      """A model the library does not define: Flatten, Dense(48), Dense."""
      return keras.Sequential([
          keras.layers.Flatten(),
          keras.layers.Dense(48, activation="relu"),
          keras.layers.Dense(num_classes),
      ])

    def functional(input_shape, num_classes):
      x = keras.Input(input_shape)
      h = keras.layers.Conv2D(8, 3, activation="relu")(x)
      h = keras.layers.GlobalAveragePooling2D()(h)
      return keras.Model(x, keras.layers.Dense(num_classes)(h))

    def two_heads(input_shape, num_classes):
      x = keras.Input(input_shape)
      h = keras.layers.Flatten()(x)
      a = keras.layers.Dense(num_classes)(h)
      b = keras.layers.Dense(num_classes)(h)
      return keras.Model(x, keras.layers.Add()([a, b]))

    class Subclassed(keras.Model):
      def __init__(self, n):
        super().__init__()
        self.flat = keras.layers.Flatten()
        self.dense = keras.layers.Dense(n)

      def call(self, x):
        return self.dense(self.flat(x))

    def subclassed(input_shape, num_classes):
      return Subclassed(num_classes)

    def eleven(input_shape, num_classes):
      return keras.Sequential([keras.layers.Flatten(),
                               keras.layers.Dense(num_classes + 1)])

    def softmax(input_shape, num_classes):
      return keras.Sequential([keras.layers.Flatten(),
                               keras.layers.Dense(num_classes, activation="softmax")])

    def two_outputs(input_shape, num_classes):
      x = keras.Input(input_shape)
      h = keras.layers.Flatten()(x)
      return keras.Model(x, [keras.layers.Dense(num_classes)(h), h])

    def not_a_model(input_shape, num_classes):
      return [input_shape, num_classes]

    def raises(input_shape, num_classes):
      raise RuntimeError("no GPU here")

    def fixed_shape(input_shape, num_classes):
      return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(num_classes)])
''')


@pytest.fixture
def builders(tmp_path):
  path = tmp_path / "my_models.py"
  path.write_text(BUILDERS)
  return str(path)


def _cfg(builder):
  return custom.resolve(mlc.ConfigDict({"name": "custom", "builder": builder}))


def _build(builder, seed=0, shape=(8, 8, 1)):
  return registry.build_model(_cfg(builder), shape, 10, seed=seed)


def test_resolve_records_the_absolute_path_and_the_file_hash(builders, monkeypatch):
  monkeypatch.chdir(os.path.dirname(builders))
  cfg = _cfg("my_models.py:build")
  assert cfg.to_dict() == {
      "name": "custom", "builder": f"{builders}:build",
      "builder_sha256": hashlib.sha256(BUILDERS.encode()).hexdigest()}
  # A library model keeps its keys, minus the empty placeholder.
  lib = custom.resolve(mlc.ConfigDict({"name": "small_cnn", "filters": (1,),
                                       "builder": ""}))
  assert lib.to_dict() == {"name": "small_cnn", "filters": (1,)}


def test_features_are_the_input_of_the_last_layer_and_the_seed_fixes_the_build(
    builders):
  model = _build(f"{builders}:build")
  assert [tuple(o.shape) for o in model.outputs] == [(None, 10), (None, 48)]
  assert model.missing_features is None
  x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
  logits, features = model(x)
  inner = model.layers[-1]  # the user's model with its features output
  dense, head = inner.layers[-2], inner.layers[-1]
  expected = np.maximum(x.reshape(4, -1) @ dense.kernel.numpy()
                        + dense.bias.numpy(), 0)
  np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logits, expected @ head.kernel.numpy()
                             + head.bias.numpy(), rtol=1e-5, atol=1e-5)
  again, other = _build(f"{builders}:build"), _build(f"{builders}:build", seed=1)
  for a, b, c in zip(model.weights, again.weights, other.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert not np.array_equal(model.weights[0].numpy(), other.weights[0].numpy())
  conv = _build(f"{builders}:functional")
  assert [tuple(o.shape) for o in conv.outputs] == [(None, 10), (None, 8)]


def test_a_module_builder_is_imported_by_name(builders, monkeypatch):
  package = os.path.join(os.path.dirname(builders), "mypkg")
  os.makedirs(package)
  open(os.path.join(package, "__init__.py"), "w").close()
  os.rename(builders, os.path.join(package, "nets.py"))
  monkeypatch.syspath_prepend(os.path.dirname(builders))
  cfg = _cfg("mypkg.nets:build")
  assert cfg.builder == "mypkg.nets:build"
  assert cfg.builder_sha256 == hashlib.sha256(BUILDERS.encode()).hexdigest()
  assert tuple(_build("mypkg.nets:build").outputs[1].shape) == (None, 48)


@pytest.mark.parametrize("builder,match", [
    ("{f}", r"model.builder must be FILE.py:FUNCTION or package.module:FUNCTION"),
    ("/nonexistent/x.py:build", r"file not found: /nonexistent/x.py"),
    ("no_such_module_xyz:build", r"no module named 'no_such_module_xyz'"),
    ("{f}:nope", r"has no function 'nope' \(functions: build, eleven, "),
    ("{f}:raises", r"raises\(input_shape=\(8, 8, 1\), num_classes=10\) raised "
                   r"RuntimeError: no GPU here"),
    ("{f}:not_a_model", r"returned list, not a keras.Model"),
    ("{f}:eleven", r"the model outputs shape \(None, 11\); expected \(None, 10\)"),
    ("{f}:softmax", r"applies a softmax; return logits"),
    ("{f}:two_outputs", r"the model has 2 outputs; return a model with one"),
    ("{f}:fixed_shape", r"the model does not take images of shape \(8, 8, 1\)"),
])
def test_bad_builders_are_one_line_errors(builders, builder, match):
  with pytest.raises(ValueError, match=match) as info:
    _build(builder.format(f=builders))
  assert "\n" not in str(info.value)


def test_builder_and_name_go_together():
  with pytest.raises(ValueError, match=r"model.builder is read only by "
                     r"model.name=custom, got model.name='small_cnn'; add "
                     r"--config.model.name=custom"):
    custom.resolve(mlc.ConfigDict({"name": "small_cnn", "builder": "a.py:f"}))
  with pytest.raises(ValueError, match=r"model.name=custom needs "
                     r"model.builder=FILE.py:FUNCTION"):
    custom.resolve(mlc.ConfigDict({"name": "custom", "builder": ""}))


@pytest.mark.parametrize("builder,why", [
    ("two_heads", r"its last layer 'add\w*' has 2 inputs"),
    ("subclassed", r"it is a subclassed keras.Model \(Subclassed\)"),
])
def test_a_method_that_needs_features_names_itself(builders, builder, why):
  model = _build(f"{builders}:{builder}")
  assert tuple(model.outputs[0].shape) == (None, 10)
  srat = method_registry.METHODS["srat"]
  gairat = method_registry.METHODS["gairat"]
  assert srat.needs_features and not gairat.needs_features
  custom.check_features(model, gairat)  # needs none: trains
  with pytest.raises(ValueError, match=r"reweighting.name=srat needs the "
                     r"model's features .* exposes none: " + why):
    custom.check_features(model, srat)


def test_prepare_stops_before_writing_when_features_are_missing(builders, tmp_path):
  config = helpers.tiny_config("srat", **{"model.name": "custom",
                                          "model.builder": f"{builders}:two_heads"})
  with pytest.raises(ValueError, match="reweighting.name=srat needs"):
    experiment.prepare(config, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")


def test_a_cosine_head_replaces_the_last_layer_on_the_features(builders):
  cfg = custom.resolve(mlc.ConfigDict({
      "name": "custom", "builder": f"{builders}:build", "head": "cosine",
      "cosine_gamma": 0.0, "filters": (1,)}))
  assert cfg.to_dict() == {"name": "custom", "builder": f"{builders}:build",
                           "builder_sha256": hashlib.sha256(
                               BUILDERS.encode()).hexdigest(),
                           "head": "cosine", "cosine_gamma": 0.0}
  model = registry.build_model(cfg, (8, 8, 1), 10, seed=0)
  # The user's Dense(48) and the cosine kernel; not the user's last Dense.
  assert [tuple(v.shape) for v in model.trainable_variables] == [
      (64, 48), (48,), (48, 10)]
  x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
  logits, features = model(x)
  kernel = model.trainable_variables[-1].numpy()
  expected = (features.numpy() / np.linalg.norm(features, axis=1, keepdims=True)
              ) @ (kernel / np.linalg.norm(kernel, axis=0, keepdims=True))
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match=r"model.head=cosine needs the model's "
                     r"features, but .* exposes none: its last layer"):
    registry.build_model(custom.resolve(mlc.ConfigDict({
        "name": "custom", "builder": f"{builders}:two_heads",
        "head": "cosine"})), (8, 8, 1), 10)


def test_architecture_hash_ignores_layer_names_not_settings():
  def make(units):
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(units),
                             keras.layers.Dense(3)])
  a, b, c = make(5), make(5), make(6)
  assert a.layers[0].name != b.layers[0].name  # auto-numbered names differ
  assert custom.architecture_sha256(a) == custom.architecture_sha256(b)
  assert custom.architecture_sha256(a) != custom.architecture_sha256(c)


def _train(builder, distribute, tmp_path, method="at", steps=3):
  overrides = {"model.name": "custom", "model.builder": builder,
               "distribute": distribute}
  if method == "gairat":  # reweighted from the first step
    overrides["reweighting.burn_in_epochs"] = 0
  config = helpers.tiny_config(method, **overrides)
  return helpers.fit_steps(config, tmp_path / f"{method}-{distribute}", steps)


@pytest.mark.parametrize("method", ["at", "gairat", "srat"])
def test_two_replicas_equal_one_device(builders, tmp_path, method):
  builder = f"{builders}:build"
  one = _train(builder, "default", tmp_path, method)
  two = _train(builder, "mirrored", tmp_path, method)
  assert two.strategy.num_replicas_in_sync == 2
  assert one.trainer.network.name == "custom"
  w1 = [v.numpy() for v in one.trainer.network.weights]
  w2 = [v.numpy() for v in two.trainer.network.weights]
  assert len(w1) == 4
  for a, b in zip(w1, w2):
    np.testing.assert_allclose(a, b, atol=1e-5)
  init = registry.build_model(one.config.model, (8, 8, 1), 10, seed=0)
  assert not np.allclose(w1[0], init.weights[0].numpy())  # it trained
  if method == "gairat":  # the weights were not uniform
    trackers = one.trainer.trackers
    assert (trackers["weight/adv/max"].result().numpy()
            > trackers["weight/adv/min"].result().numpy() + 0.1)
  if method == "srat":  # the separability term ran on the features
    sep = one.trainer.trackers["term/sep"].result().numpy()
    assert sep > 0
    np.testing.assert_allclose(
        sep, two.trainer.trackers["term/sep"].result().numpy(), rtol=1e-4)


_CLI_SMALL = ["--config.epochs=1", "--config.batch_size=32",
              "--config.attack.steps=2",
              "--config.eval.attacks=('natural','pgd20')",
              "--config.eval.max_examples=100", "--config.eval.pgd_steps=5",
              "--config.eval.reports=()", "--config.data.eval_batch_size=50"]


def _snapshot(workdir):
  import glob
  return {p: (os.path.getsize(p), os.path.getmtime(p))
          for p in glob.glob(os.path.join(workdir, "**"), recursive=True)}


def test_cli_trains_a_builder_file_and_refuses_it_edited(builders, tmp_path):
  workdir = str(tmp_path / "run")
  args = ["--config=configs/at.py:digits", "--config.model.name=custom",
          f"--config.model.builder={builders}:build", *_CLI_SMALL,
          f"--workdir={workdir}"]
  proc = helpers.train_cli(args)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "Building custom, objective at, method none" in proc.stdout
  recorded = json.load(open(os.path.join(workdir, "config.json")))["model"]
  assert recorded == {"name": "custom", "builder": f"{builders}:build",
                      "builder_sha256": hashlib.sha256(
                          BUILDERS.encode()).hexdigest(),
                      "head": "linear", "cosine_gamma": 0.03125}
  done = json.load(open(os.path.join(workdir, "done.json")))
  assert set(done["accuracy"]) == {"natural", "pgd20"}
  assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
  assert os.path.isdir(os.path.join(workdir, "tb", "hparams"))

  # The builder file edited: resuming is a config change, refused.
  with open(builders, "a") as f:
    f.write("\n# an edit\n")
  before = _snapshot(workdir)
  again = args[:-1] + ["--config.epochs=2", f"--workdir={workdir}"]
  proc = helpers.train_cli(again)
  assert proc.returncode == 2
  errors = helpers.error_lines(proc)
  assert len(errors) == 1 and errors[0].startswith(
      f"error: {workdir} holds checkpoints of another config: "
      "model.builder_sha256 ("), proc.stderr[-2000:]
  assert errors[0].endswith("--allow_config_change=model.builder_sha256")
  assert _snapshot(workdir) == before
  # ... unless allowed.
  proc = helpers.train_cli(again + ["--allow_config_change=model.builder_sha256"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"Resuming {workdir} from epoch 1" in proc.stdout


def test_cli_names_the_method_that_needs_features(builders, tmp_path):
  proc = helpers.train_cli([
      "--config=configs/srat.py:digits", "--config.model.name=custom",
      f"--config.model.builder={builders}:two_heads", *_CLI_SMALL,
      f"--workdir={tmp_path / 'w'}"])
  assert proc.returncode == 2
  assert helpers.error_lines(proc) == [
      f"error: reweighting.name=srat needs the model's features "
      f"(Method.needs_features: the input of the last layer), but "
      f"model.builder '{builders}:two_heads' exposes none: its last layer "
      f"'add' has 2 inputs; end the model with a layer of one input (e.g. "
      f"Dense on the feature vector)"]
  assert not os.path.exists(tmp_path / "w")
  proc = helpers.train_cli(["--config=configs/at.py:digits",
                            f"--config.model.builder={builders}:build",
                            f"--workdir={tmp_path / 'w'}"])
  assert helpers.error_lines(proc) == [
      "error: model.builder is read only by model.name=custom, got "
      "model.name='small_cnn'; add --config.model.name=custom"]


def test_the_documented_example_exposes_its_features():
  """docs/custom_model.md's builder: 128 features before the logits."""
  path = os.path.join(helpers.REPO, "docs", "examples", "my_model.py")
  model = _build(f"{path}:build")
  assert [tuple(o.shape) for o in model.outputs] == [(None, 10), (None, 128)]
  assert model.missing_features is None
