"""Classifier heads on a network's features (`config.model.head`).

  linear   the builder's own last layer (a Dense): logits = W x + b
  cosine   RoBal's scale-invariant classifier (Wu et al., CVPR 2021;
           `wutong16/Adversarial_Long-Tail`, models/classifiers/
           basic_classifiers.py: CosPlus_Classifier with scale 1, bias off):

             z_j = < x / ‖x‖ , w_j / (‖w_j‖ + γ) >,   γ = 0.03125

           no bias, z_j in (−1, 1). γ > 0 lets a class's weight norm stay
           below 1 (a learnt per-class scale); γ = 0 is the plain cosine.
           Init as the official code: w ~ U(±1/√D) (D = feature size).
           The features are normalised with a floor on the norm (1e-12, as
           tf.math.l2_normalize): an all-zero ReLU feature vector gives z = 0
           where the official code divides by zero (NaN).

Any scale applied to z (RoBal's s in its loss, its deployed s·z − τ_p·log π)
belongs to the method (reweighting/robal.py), not to the network: the
network's logits are z, which the training attacks and the TRADES-like KL
see (scale 1, as in the official code).
"""
import math

import keras
from keras import ops

HEADS = ("linear", "cosine")


class CosineHead(keras.layers.Layer):
  """[B, D] features -> [B, C] cosine logits with the γ-damped weight norm."""

  def __init__(self, units, gamma=0.03125, **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.gamma = float(gamma)

  def build(self, input_shape):
    bound = 1.0 / math.sqrt(int(input_shape[-1]))
    self.kernel = self.add_weight(
        name="kernel", shape=(int(input_shape[-1]), self.units),
        initializer=keras.initializers.RandomUniform(-bound, bound))

  def call(self, x):
    x = x / ops.maximum(ops.norm(x, axis=-1, keepdims=True), 1e-12)
    w = self.kernel / (ops.norm(self.kernel, axis=0, keepdims=True)
                       + self.gamma)
    return ops.matmul(x, w)

  def get_config(self):
    return {**super().get_config(), "units": self.units, "gamma": self.gamma}


def check(model_cfg):
  """Raises one-line ValueErrors for a bad head choice or γ."""
  head = model_cfg.get("head", "linear")
  if head not in HEADS:
    raise ValueError(f"unknown model.head '{head}'; valid: {', '.join(HEADS)}")
  gamma = model_cfg.get("cosine_gamma", 0.03125)
  if not isinstance(gamma, (int, float)) or not gamma >= 0:
    raise ValueError(f"model.cosine_gamma must be a number >= 0, got {gamma!r}")
  return head, float(gamma)


def apply(model_cfg, logits, features, num_classes):
  """The head's logits on `features` (the input of the builder's last layer).

  `linear` keeps the builder's logits; `cosine` replaces them (the builder's
  Dense is then not part of the model: a functional model keeps only the
  layers between its inputs and outputs).
  """
  head, gamma = check(model_cfg)
  if head == "linear":
    return logits
  if len(features.shape) != 2:
    raise ValueError(f"model.head 'cosine' needs [batch, dim] features, got "
                     f"shape {tuple(features.shape)}")
  # float32 under mixed precision, as the builders' last layers.
  return CosineHead(num_classes, gamma, name="cosine_logits",
                    dtype="float32")(features)
