"""Model zoo: `config.model.name` -> builder, and the two-output Keras model around it.

Every model takes float32 images in [0, 1], NHWC, so attacks work in pixel space;
the optional per-channel normalisation is the model's first layer. Every model
returns `[logits, features]`: training code needs the penultimate features of
adversarial examples without a second forward pass. Export `logits_model(model)`.

A builder is `fn(x, num_classes, **options) -> (logits, features)` on the
(normalised) input tensor; its keyword options are the keys of `config.model`.
`model.name=custom` builds your own keras.Model instead (modeling/custom.py:
`model.builder=FILE.py:FUNCTION`).
"""
import inspect

import keras

from official.modeling import custom, heads, resnet, small_cnn, wide_resnet

MODELS = {
    "small_cnn": small_cnn.small_cnn,
    "resnet18": resnet.resnet18,
    "preact_resnet18": resnet.preact_resnet18,
    "wide_resnet": wide_resnet.wide_resnet,
}


def build_model(model_cfg, input_shape, num_classes, seed=None):
  """Builds `model_cfg.name` as a functional keras.Model with outputs [logits, features].

  model_cfg: ConfigDict (or dict) with `name`, optional `normalize` (None, or
    (mean, std) per-channel tuples) and the builder's options; unset options keep
    the builder's defaults.
  input_shape: (H, W, C) of the images.
  seed: if set, `keras.utils.set_random_seed(seed)` runs just before the layers are
    created, so two builds with the same seed have identical weights (unseeded Keras
    initializers and dropout draw their seeds from Python's `random` when created).
    This reseeds Python, NumPy, TF and Keras globally, as a training script's own
    seeding would.
  """
  name = model_cfg.get("name")
  if name == custom.NAME:  # your own keras.Model (model.builder)
    return custom.build(model_cfg, input_shape, num_classes, seed=seed)
  if name not in MODELS:
    raise ValueError(f"unknown model.name '{name}'; valid: "
                     f"{', '.join(sorted([*MODELS, custom.NAME]))}")
  builder = MODELS[name]
  # Generic keys (every network): the input normalisation and the head; an
  # empty `builder` is every config's placeholder for model.name=custom.
  generic = ("name", "normalize", "head", "cosine_gamma")
  options = {k: v for k, v in model_cfg.items()
             if k not in generic and not (k == "builder" and not v)}
  # Check options against the builder's signature (what a TypeError from the call
  # would tell) before any layer is built, and say it in one line.
  valid = list(inspect.signature(builder).parameters)[2:]  # After (x, num_classes).
  for key in options:
    if key not in valid:
      raise ValueError(f"unknown option model.{key} for model '{name}'; "
                       f"valid: {', '.join(list(generic) + valid)}")
  heads.check(model_cfg)

  inputs = keras.Input(shape=tuple(input_shape), name="image")
  x = inputs
  normalize = model_cfg.get("normalize", None)
  if normalize is not None:
    mean, std = normalize
    if not len(mean) == len(std) == input_shape[-1]:
      raise ValueError(f"model.normalize needs {input_shape[-1]} means and stds, got {normalize}")
    # (x - mean) / sqrt(std**2) with constant mean/std: no weights, nothing to train.
    x = keras.layers.Normalization(
        mean=list(mean), variance=[s * s for s in std], name="normalize")(x)
  if seed is not None:
    keras.utils.set_random_seed(seed)
  logits, features = builder(x, num_classes, **options)
  # model.head: the builder's linear layer, or a cosine head on its features.
  logits = heads.apply(model_cfg, logits, features, num_classes)
  return keras.Model(inputs, [logits, features], name=name)


def logits_model(model, transform=None):
  """The logits-only view of a `build_model` model (shares its layers): what
  gets exported and what the evaluation attacks.

  transform: the method's deployed logits (`Method.inference_logits`, e.g.
  RoBal-N's s·z − τ_p·log π), applied on the symbolic logits; None = the
  network's logits.
  """
  # `model.input`, not `model.inputs`: a one-element list would make callers (and the
  # export signature) expect a list and warn on a plain tensor.
  logits = model.outputs[0]
  if transform is not None:
    logits = transform(logits)
  return keras.Model(model.input, logits, name=f"{model.name}_logits")
