"""Python entry points: train your own Keras model with any method; dry-run a config.

  import keras
  from official import api

  def build(input_shape, num_classes):          # or a keras.Model object
    return keras.Sequential([keras.layers.Flatten(),
                             keras.layers.Dense(128, activation="relu"),
                             keras.layers.Dense(num_classes)])

  results = api.train(build, "configs/gairat.py:digits", "runs/mine",
                      overrides={"epochs": 5})
  results["pgd20"]["accuracy"]                  # = runs/mine/eval.json

`train` is the run `python -m official.train` makes (modeling/custom.py for
what the model must be): workdir lock and identity, a checkpoint per epoch,
resume, export, eval.json, TensorBoard (with HParams), done.json. Bad input
raises a one-line ValueError before anything is written.
"""
import contextlib
import copy
import importlib.util
import os
import sys

import ml_collections as mlc

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:  # config files import `configs.common`
  sys.path.insert(0, _REPO_ROOT)


def load_config(config, overrides=None):
  """A fresh ConfigDict: from a ConfigDict (deep-copied) or "FILE.py[:presets]"
  (as --config=; a relative FILE is looked up in the working directory, then
  in the repository), then `overrides` {"a.b": value} (as --config.a.b=value).
  """
  if isinstance(config, str):
    path, _, preset = config.partition(":")
    if not os.path.isfile(path) and os.path.isfile(os.path.join(_REPO_ROOT, path)):
      path = os.path.join(_REPO_ROOT, path)
    if not os.path.isfile(path):
      raise ValueError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location("config_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(preset or None)
  elif isinstance(config, mlc.ConfigDict):
    config = copy.deepcopy(config)
  else:
    raise ValueError(f"config must be a ConfigDict or 'FILE.py[:presets]', got "
                     f"{type(config).__name__}")
  for key, value in (overrides or {}).items():
    node, parts = config, key.split(".")
    for depth, part in enumerate(parts):
      if not hasattr(node, "keys") or part not in node:
        parent = ".".join(parts[:depth]) or "config"
        valid = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none"
        raise ValueError(f"unknown config key '{key}' (no '{part}' in "
                         f"{parent}); valid: {valid}")
      if depth < len(parts) - 1:
        node = node[part]
    node[parts[-1]] = value
  return config


def _with_model(config, spec):
  """config.model replaced by the registered model (name custom); the
  generic keys (model.head, ...) stay."""
  from official.modeling import custom
  generic = {k: config.model[k] for k in custom.GENERIC if k in config.model}
  with config.unlocked() if config.is_locked else contextlib.nullcontext():
    config.model = mlc.ConfigDict({"name": "custom", "builder": spec,
                                   **generic})
  return config


def train(model, config, workdir, *, overrides=None, allow_config_change=()):
  """Trains `model` with `config` in `workdir`; returns the eval results.

  model: a `keras.Model` mapping float32 [0, 1] images to logits, or a
    function (input_shape, num_classes) -> keras.Model (seeded with
    config.seed before it runs, as the library's models are).
  config: a ConfigDict or "FILE.py[:presets]"; its model.* is replaced by
    `model` (model.head and model.cosine_gamma stay). overrides:
    {"a.b": value}, as --config.a.b=value.
  workdir: the run directory. Calling again with the same workdir resumes
    (or, when finished, re-evaluates): the newest checkpoint is restored into
    the model, so a model object ends with the trained weights either way. A
    model whose architecture (object) or source (function) changed since the
    checkpoints were written is refused like a changed config
    (allow_config_change=("model.builder_sha256",) to resume anyway).
  Under distribute=mirrored a model object built outside the strategy is
  cloned into it (keras.models.clone_model) and the trained weights are
  copied back into the object at the end.

  Returns {attack: summary} (DIR/eval.json), None on a non-chief worker.
  Raises a one-line ValueError on bad input (nothing written);
  callbacks.NonFiniteError if the training diverged.
  """
  from official.core import experiment
  from official.modeling import custom
  if any(k == "model" or k.startswith("model.") for k in (overrides or {})):
    raise ValueError("overrides of model.* do not apply: the model is the one "
                     "given to official.api.train")
  config = load_config(config, overrides)
  with custom.registered(model) as (spec, record):
    _with_model(config, spec)
    run = experiment.prepare(config, workdir, tuple(allow_config_change))
    results = experiment.train_and_evaluate(run)
  if record.used is not None and record.used is not model and hasattr(
      model, "set_weights"):
    model.set_weights(record.used.get_weights())  # trained in a clone
  if results is not None:
    print(experiment.summary(run, results), flush=True)
  return results


def dry_run(config, model=None, *, overrides=None):
  """`--dry_run` from Python (official/core/dry_run.py): builds `config`
  (with `model`, if given, as model.name=custom) on synthetic data of its
  dataset's shape, times it, prints and returns the report. Writes nothing."""
  from official.core import dry_run as dry_run_lib
  from official.modeling import custom
  config = load_config(config, overrides)
  if model is None:
    report = dry_run_lib.run(config)
  else:
    with custom.registered(model) as (spec, _):
      report = dry_run_lib.run(_with_model(config, spec))
  print(dry_run_lib.format_report(report), flush=True)
  return report
