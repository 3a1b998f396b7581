"""official/api.py: one call trains a given keras.Model (or builder) with a config."""
import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from official import api
from official.core import hparams
from official.core import workdir as workdir_lib

SMALL = {"batch_size": 32, "attack.steps": 2, "eval.attacks": ("natural", "pgd20"),
         "eval.max_examples": 100, "eval.pgd_steps": 5, "eval.reports": (),
         "data.eval_batch_size": 50}


def _sequential(units=32):
  """A model the library does not define; seeded initialisers, so two
  objects start equal."""
  init = lambda s: keras.initializers.GlorotUniform(seed=s)  # noqa: E731
  return keras.Sequential([
      keras.Input((8, 8, 1)), keras.layers.Flatten(),
      keras.layers.Dense(units, activation="relu", kernel_initializer=init(1)),
      keras.layers.Dense(10, kernel_initializer=init(2))])


def _train(model, workdir, epochs, **overrides):
  return api.train(model, "configs/at.py:digits", str(workdir),
                   overrides={**SMALL, "epochs": epochs, **overrides})


def _snapshot(workdir):
  return {p: (os.path.getsize(p), os.path.getmtime(p))
          for p in glob.glob(os.path.join(workdir, "**"), recursive=True)}


def test_a_model_object_trains_resumes_exactly_and_ends_trained(tmp_path):
  tf.config.experimental.enable_op_determinism()
  straight = _sequential()
  results = _train(straight, tmp_path / "straight", 2)
  # The whole run: eval.json (returned), export, checkpoints, done.json.
  workdir = tmp_path / "straight"
  assert results == workdir_lib.read_json(str(workdir / "eval.json"))
  assert {n for n, r in results.items() if "per_class" in r} == {"natural",
                                                                "pgd20"}
  assert results["natural"]["num_examples"] == 100
  done = workdir_lib.read_json(str(workdir / "done.json"))
  assert done["epochs"] == 2
  assert os.path.exists(workdir / "export" / "saved_model.pb")
  recorded = workdir_lib.read_json(str(workdir / "config.json"))["model"]
  assert recorded["name"] == "custom"
  assert recorded["builder"] == "python:keras.src.models.sequential.Sequential"
  # The object itself trained (the run's network shares its variables).
  assert not np.allclose(straight.weights[0].numpy(),
                         _sequential().weights[0].numpy())
  loaded = tf.saved_model.load(str(workdir / "export"))
  x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
  np.testing.assert_allclose(loaded.serve(x), straight(x), atol=1e-5)

  # One epoch, then a fresh object resumes: the checkpoint restores into it.
  first = _sequential()
  _train(first, tmp_path / "resumed", 1)
  again = _sequential()
  resumed = _train(again, tmp_path / "resumed", 2)
  for a, b in zip(straight.weights, again.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
  assert resumed["pgd20"]["accuracy"] == pytest.approx(
      results["pgd20"]["accuracy"], abs=0.011)
  # HParams: the run's config and final metrics.
  written = hparams.read(str(workdir / "tb" / "hparams"))
  assert written["hparams"]["model.name"] == "custom"
  assert written["metrics"]["eval/pgd20/accuracy"] == pytest.approx(
      results["pgd20"]["accuracy"])


def test_another_architecture_is_refused_and_the_workdir_kept(tmp_path):
  _train(_sequential(), tmp_path / "w", 1)
  before = _snapshot(str(tmp_path / "w"))
  with pytest.raises(ValueError, match=r"holds checkpoints of another config: "
                     r"model.builder_sha256 .*--allow_config_change="
                     r"model.builder_sha256") as info:
    _train(_sequential(units=33), tmp_path / "w", 2)
  assert "\n" not in str(info.value)
  assert _snapshot(str(tmp_path / "w")) == before
  with pytest.raises(ValueError, match="overrides of model.* do not apply"):
    _train(_sequential(), tmp_path / "x", 1, **{"model.name": "small_cnn"})
  with pytest.raises(ValueError, match=r"unknown config key 'nope'"):
    _train(_sequential(), tmp_path / "x", 1, nope=1)
  assert not os.path.exists(tmp_path / "x")


def test_an_object_under_two_replicas_trains_as_on_one_device(tmp_path):
  """Made outside the MirroredStrategy, the object is cloned into it and the
  trained weights come back into the object."""
  one, two = _sequential(), _sequential()
  _train(one, tmp_path / "one", 1, distribute="default")
  _train(two, tmp_path / "two", 1, distribute="mirrored")
  assert not np.allclose(one.weights[0].numpy(), _sequential().weights[0].numpy())
  for a, b in zip(one.weights, two.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def builder(input_shape, num_classes):
  return keras.Sequential([keras.layers.Flatten(),
                           keras.layers.Dense(24, activation="relu"),
                           keras.layers.Dense(num_classes)])


def test_a_builder_function_with_a_reweighting_method(tmp_path):
  results = api.train(builder, "configs/gairat.py:digits", str(tmp_path / "g"),
                      overrides={**SMALL, "epochs": 1,
                                 "reweighting.burn_in_epochs": 0})
  config = json.load(open(tmp_path / "g" / "config.json"))
  assert config["reweighting"]["name"] == "gairat"
  assert config["model"]["builder"].startswith("python:")
  assert config["model"]["builder"].endswith(".builder")
  assert 0.0 <= results["pgd20"]["accuracy"] <= results["natural"]["accuracy"]


def test_a_collapsed_network_is_flagged_in_eval_done_and_the_table(tmp_path):
  """A network that predicts one class everywhere scores that class's share
  under every attack: eval.json's collapse check fails, done.json and the
  protocol table say so (and a learning network's check passes)."""
  from tools import protocol
  stuck = keras.Sequential([
      keras.Input((8, 8, 1)), keras.layers.Flatten(),
      keras.layers.Dense(10, kernel_initializer="zeros",
                         bias_initializer=keras.initializers.Constant(
                             [100.0] + [0.0] * 9))])
  # Zero learning rate: it stays as built (weight decay alone moves nothing
  # that matters here).
  results = _train(stuck, tmp_path / "at-s0", 1, **{"optimizer.learning_rate": 0.0})
  check = results["checks"]["collapse"]
  assert not check["ok"] and check["value"] == 1.0
  assert "predicts class 0 for 100%" in check["message"]
  done = workdir_lib.read_json(str(tmp_path / "at-s0" / "done.json"))
  assert done["warnings"] == [check["message"]]
  # Every image called class 0: class 0 all right, every other all wrong,
  # the accuracy class 0's share of the 100 test images (~10%).
  assert results["natural"]["per_class"] == [1.0] + [0.0] * 9
  assert 0.0 < results["natural"]["accuracy"] < 0.2
  learning = _train(_sequential(), tmp_path / "at-s1", 2)
  assert learning["checks"]["collapse"]["ok"]
  text = protocol.table(["at"], ["0", "1"], str(tmp_path), ["natural"])
  assert "| at (2 seeds; collapsed: seed 0) |" in text
