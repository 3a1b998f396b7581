"""Your own Keras model: `model.name=custom`, `model.builder=FILE.py:FUNCTION`
(or `package.module:FUNCTION`).

`FUNCTION(input_shape, num_classes)` returns a `keras.Model` that maps float32
[0, 1] NHWC images of `input_shape` to `num_classes` logits (no softmax;
normalise inside the model if it needs it). `build()` wraps it into the
library's two outputs [logits, features] (modeling/registry.py):

  features = the input of the model's last layer (or operation), read from
  its graph: for a keras.Sequential or functional model ending in a Dense
  layer, the penultimate activations. A model whose last layer has several
  inputs (e.g. an Add), or a subclassed model (no graph to read), exposes no
  features: the logits stand in for them (nothing reads them), and a method
  that needs them (`Method.needs_features`: SRAT's separability loss) stops
  with one error line naming it (`check_features`).

The builder runs right after `keras.utils.set_random_seed(config.seed)`, so
the seed makes the build reproducible as it does for the library's models.

Identity (workdir.claim compares config.json on resume): `resolve()` records
model.builder (a FILE.py made absolute: a changed path is a config change)
and model.builder_sha256, the SHA-256 of the builder's source file (FILE.py,
or the module's file). A resume after the file was edited is therefore
refused like any other config change; `--allow_config_change=
model.builder_sha256` resumes anyway (e.g. after a comment-only edit). Only
that one file is hashed, not modules it imports. Other model.* keys of the
preset (SmallCNN's filters, ...) do not apply and are dropped; the generic
ones stay: model.head=cosine (RoBal's) replaces the model's last layer by a
cosine head on its features (modeling/heads.py).

From Python (official/api.py), a builder function or a keras.Model object is
registered for the length of a run under a `python:` builder name; its hash is
that of the function's source, or of the object's architecture (layer types
and settings, in order).
"""
import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
import os

import keras
import ml_collections as mlc
import tensorflow as tf

from official.modeling import heads

NAME = "custom"
PYTHON = "python:"
GENERIC = ("head", "cosine_gamma")  # model.* keys of every network: kept
_USAGE = "FILE.py:FUNCTION or package.module:FUNCTION"


@dataclasses.dataclass
class _Registered:
  obj: object            # a builder function or a keras.Model
  sha256: str
  used: object = None    # the keras.Model the run trained (a clone, or obj)


_REGISTERED = {}         # "python:..." -> _Registered (official.api.train)
_MODULES = {}            # (path, sha256) -> module loaded from a FILE.py


def _first_line(error):
  text = str(error).strip()
  return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _split(spec):
  source, sep, function = str(spec).rpartition(":")
  if not sep or not source or not function.isidentifier():
    raise ValueError(f"model.builder must be {_USAGE}, got {spec!r}")
  return source, function


def _is_file(source):
  return source.endswith(".py") or os.sep in source


def _sha256_file(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def normalize(spec):
  """The builder as recorded: FILE.py made absolute, a module name as is."""
  if str(spec).startswith(PYTHON):
    return str(spec)
  source, function = _split(spec)
  if _is_file(source):
    return f"{os.path.abspath(source)}:{function}"
  return f"{source}:{function}"


def source_sha256(spec):
  """SHA-256 of the builder's source file (or of a registered object)."""
  spec = normalize(spec)
  if spec.startswith(PYTHON):
    return _registered(spec).sha256
  source, _ = _split(spec)
  if _is_file(source):
    if not os.path.isfile(source):
      raise ValueError(f"model.builder {spec!r}: file not found: {source}")
    return _sha256_file(source)
  try:
    found = importlib.util.find_spec(source)
  except (ImportError, ValueError) as e:
    raise ValueError(f"model.builder {spec!r}: cannot import module "
                     f"{source!r} ({_first_line(e)})") from None
  if found is None or not found.origin or not os.path.isfile(found.origin):
    raise ValueError(f"model.builder {spec!r}: no module named {source!r} "
                     "(is its package on PYTHONPATH / the current directory?)")
  return _sha256_file(found.origin)


def load(spec):
  """The builder function (or registered keras.Model) named by `spec`."""
  spec = normalize(spec)
  if spec.startswith(PYTHON):
    return _registered(spec).obj
  source, function = _split(spec)
  sha = source_sha256(spec)
  try:
    if _is_file(source):
      key = (source, sha)
      if key not in _MODULES:
        name = f"custom_model_{sha[:12]}"
        module_spec = importlib.util.spec_from_file_location(name, source)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        _MODULES[key] = module
      module = _MODULES[key]
    else:
      module = importlib.import_module(source)
  except SyntaxError as e:
    raise ValueError(f"model.builder {spec!r}: {e.filename} line {e.lineno}: "
                     f"{e.msg}") from None
  except Exception as e:  # noqa: BLE001 -- the user's file raised anything
    raise ValueError(f"model.builder {spec!r}: importing {source} raised "
                     f"{_first_line(e)}") from None
  fn = getattr(module, function, None)
  if not callable(fn):
    found = sorted(n for n, v in vars(module).items()
                   if inspect.isfunction(v) and not n.startswith("_")
                   and getattr(v, "__module__", None) == module.__name__)
    raise ValueError(f"model.builder {spec!r}: {source} has no function "
                     f"{function!r} (functions: {', '.join(found) or 'none'})")
  return fn


def resolve(model_cfg):
  """config.model as a run records it (config.json).

  Library models: unchanged, minus an empty `builder` key. `custom`: only
  name, builder (normalised) and builder_sha256. Raises one-line ValueErrors
  for a missing or unloadable builder, before anything is written.
  """
  name = model_cfg.get("name")
  builder = model_cfg.get("builder", "") or ""
  if name != NAME:
    if builder:
      raise ValueError(f"model.builder is read only by model.name=custom, got "
                       f"model.name={name!r}; add --config.model.name=custom")
    if "builder" in model_cfg:
      return mlc.ConfigDict({k: v for k, v in model_cfg.items()
                             if k != "builder"})
    return model_cfg
  if not builder:
    raise ValueError(f"model.name=custom needs model.builder={_USAGE}, a "
                     "function (input_shape, num_classes) -> keras.Model")
  spec = normalize(builder)
  load(spec)  # the file imports and has the function: fail before any write
  generic = {k: model_cfg[k] for k in GENERIC if k in model_cfg}
  heads.check(generic)
  return mlc.ConfigDict({"name": NAME, "builder": spec,
                         "builder_sha256": source_sha256(spec), **generic})


def build(model_cfg, input_shape, num_classes, seed=None):
  """The user's model as a functional keras.Model with outputs [logits, features].

  The returned model has `missing_features`: None, or why the features are
  not available (read by `check_features`).
  """
  spec = normalize(model_cfg.get("builder", "") or "")
  if not spec:
    raise ValueError(f"model.name=custom needs model.builder={_USAGE}")
  recorded = model_cfg.get("builder_sha256", None)
  if recorded and not spec.startswith(PYTHON):
    current = source_sha256(spec)
    if current != recorded:  # export/evaluate of an old run's config
      from absl import logging
      logging.warning("model.builder %s changed since the run recorded it "
                      "(sha256 %s..., now %s...)", spec, recorded[:12],
                      current[:12])
  input_shape = tuple(int(n) for n in input_shape)
  what = f"model.builder {spec!r}"
  obj = load(spec)
  if isinstance(obj, keras.Model):
    user = _in_scope(obj, input_shape, what)
  else:
    if seed is not None:
      keras.utils.set_random_seed(int(seed))
    fname = getattr(obj, "__name__", "the builder")
    try:
      user = obj(input_shape, int(num_classes))
    except Exception as e:  # noqa: BLE001 -- the user's function raised
      raise ValueError(f"{what}: {fname}(input_shape={input_shape}, "
                       f"num_classes={num_classes}) raised {_first_line(e)}"
                       ) from None
    if not isinstance(user, keras.Model):
      raise ValueError(f"{what} returned {type(user).__name__}, not a "
                       "keras.Model")
  if spec.startswith(PYTHON):
    _registered(spec).used = user
  _check_outputs(user, input_shape, int(num_classes), what)
  head, _ = heads.check(model_cfg)
  features, missing = _features(user)
  image = keras.Input(shape=input_shape, name="image")
  if head != "linear":  # model.head on the features, not the user's logits
    if features is None:
      raise ValueError(f"model.head={head} needs the model's features, but "
                       f"{what} exposes none: {missing}")
    features = keras.Model(user.inputs, features,
                           name=f"{user.name}_features")(image)
    logits = heads.apply(model_cfg, None, features, num_classes)
  elif features is not None:
    two = keras.Model(user.inputs, [user.outputs[0], features],
                      name=f"{user.name}_features")
    logits, features = two(image)
  else:  # nothing reads them (check_features): the logits stand in
    logits = user(image)
    features = logits
  model = keras.Model(image, [logits, features], name=NAME)
  model.missing_features = missing
  model.builder = spec
  return model


def _check_outputs(user, input_shape, num_classes, what):
  """Calls the model on a symbolic batch: one output of [None, num_classes]."""
  try:
    out = user(keras.Input(shape=input_shape))
  except Exception as e:  # noqa: BLE001
    raise ValueError(f"{what}: the model does not take images of shape "
                     f"{input_shape} ({_first_line(e)})") from None
  if isinstance(out, (list, tuple, dict)):
    raise ValueError(f"{what}: the model has {len(out)} outputs; return a "
                     "model with one output, the logits")
  shape = tuple(out.shape)
  if len(shape) != 2 or shape[1] != num_classes:
    raise ValueError(f"{what}: the model outputs shape {shape}; expected "
                     f"(None, {num_classes}): one logit for each of the "
                     f"dataset's {num_classes} classes")
  last = _last_operation(user)
  if last is not None and _is_softmax(last):
    raise ValueError(f"{what}: the last layer {last.name!r} applies a "
                     "softmax; return logits (drop the softmax)")
  return out


def _graph_output(user):
  """The model's output tensor in its own graph, or None (subclassed)."""
  try:
    outputs = user.outputs
  except (AttributeError, ValueError):
    return None
  return outputs[0] if outputs else None


def _last_operation(user):
  out = _graph_output(user)
  history = getattr(out, "_keras_history", None)
  return history.operation if history is not None else None


def _is_softmax(operation):
  softmax = keras.activations.softmax
  return (isinstance(operation, keras.layers.Softmax)
          or getattr(operation, "activation", None) is softmax)


def _features(user):
  """(features tensor, None) from the last layer's input, or (None, why)."""
  out = _graph_output(user)
  if out is None:
    return None, (f"it is a subclassed keras.Model ({type(user).__name__}), "
                  "whose layers' inputs cannot be read; build it with "
                  "keras.Sequential or the functional API")
  history = out._keras_history
  node = history.operation._inbound_nodes[history.node_index]
  inputs = list(node.input_tensors)
  if len(inputs) != 1:
    return None, (f"its last layer {history.operation.name!r} has "
                  f"{len(inputs)} inputs; end the model with a layer of one "
                  "input (e.g. Dense on the feature vector)")
  if inputs[0] is user.inputs[0]:
    return None, (f"its last layer {history.operation.name!r} reads the "
                  "images themselves")
  return inputs[0], None


def check_features(network, method):
  """One error line if `method` needs features the network does not expose."""
  missing = getattr(network, "missing_features", None)
  if missing and getattr(method, "needs_features", False):
    raise ValueError(
        f"reweighting.name={method.name} needs the model's features "
        f"(Method.needs_features: the input of the last layer), but "
        f"model.builder {getattr(network, 'builder', '')!r} exposes none: "
        f"{missing}")


def _in_scope(model, input_shape, what):
  """The model object itself, or (its variables made outside the current
  tf.distribute strategy's scope, e.g. a MirroredStrategy) a clone made in
  it with the same weights; the caller copies the trained weights back."""
  strategy = tf.distribute.get_strategy()
  if all(strategy.extended.variable_created_in_scope(v.value)
         for v in model.weights):
    return model
  try:
    clone = keras.models.clone_model(model)
    if not clone.built:
      clone(keras.Input(shape=input_shape))
    clone.set_weights(model.get_weights())
  except Exception as e:  # noqa: BLE001
    raise ValueError(f"{what}: its variables were created outside the "
                     "distribution strategy and keras.models.clone_model "
                     f"cannot copy it ({_first_line(e)}); pass a builder "
                     "function instead of the model") from None
  return clone


# ---------------------------------------------------------------- Python API


def _registered(spec):
  if spec not in _REGISTERED:
    raise ValueError(f"model.builder {spec!r} is a Python object given to "
                     "official.api.train, not available here; rebuild the "
                     "run from Python, or use a FILE.py:FUNCTION builder")
  return _REGISTERED[spec]


def architecture_sha256(model):
  """Layer types and their settings (names left out), in order."""
  described = []

  def walk(layer):
    for sub in getattr(layer, "layers", None) or ():
      if isinstance(sub, keras.Model):
        described.append(type(sub).__name__)
        walk(sub)
        continue
      try:
        config = {k: v for k, v in sub.get_config().items() if k != "name"}
      except Exception:  # noqa: BLE001 -- a layer without get_config
        config = {}
      described.append([type(sub).__name__, config])
  described.append(type(model).__name__)
  walk(model)
  text = json.dumps(described, sort_keys=True, default=repr)
  return hashlib.sha256(text.encode()).hexdigest()


def _function_sha256(fn):
  try:
    text = inspect.getsource(fn)
  except (OSError, TypeError):
    code = getattr(fn, "__code__", None)
    text = repr((code.co_code, code.co_consts)) if code else repr(fn)
  return hashlib.sha256(text.encode()).hexdigest()


def python_spec(obj):
  """The builder name a Python function or model object is recorded under."""
  if isinstance(obj, keras.Model):
    return f"{PYTHON}{type(obj).__module__}.{type(obj).__qualname__}"
  if callable(obj):
    module = getattr(obj, "__module__", None) or "__main__"
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    return f"{PYTHON}{module}.{name}"
  raise ValueError(f"official.api.train needs a keras.Model or a function "
                   f"(input_shape, num_classes) -> keras.Model, got "
                   f"{type(obj).__name__}")


@contextlib.contextmanager
def registered(obj):
  """Makes `obj` (function or keras.Model) loadable as a builder; yields
  (spec, record) where record.used is the model the run trained."""
  spec = python_spec(obj)
  sha = (architecture_sha256(obj) if isinstance(obj, keras.Model)
         else _function_sha256(obj))
  record = _Registered(obj, sha)
  previous = _REGISTERED.get(spec)
  _REGISTERED[spec] = record
  try:
    yield spec, record
  finally:
    if previous is None:
      _REGISTERED.pop(spec, None)
    else:
      _REGISTERED[spec] = previous
