"""Mixed precision: the Keras dtype policy and the loss-scaling optimizer.

`config.precision` picks a Keras policy (float32 | mixed_float16 |
mixed_bfloat16). Under a mixed policy layers compute in 16 bits and keep
float32 variables; what must stay float32 does so by construction:
  - the networks' logits and features layers are float32 layers
    (modeling/small_cnn.py, resnet.py), so losses, weights, softmaxes and the
    DRO normaliser see float32 (the trainer casts again, for any network);
  - BatchNormalization keeps float32 moving statistics and computes its
    statistics in float32 (Keras casts float16 inputs up inside the layer);
  - the attacks compute their loss in float32 and, under float16, rescale
    the backward pass per example so input gradients do not underflow
    (attacks/pgd.py `input_gradient`);
  - the export takes and serves float32 (core/export.py).
Only float16 needs loss scaling (its exponent range is 5 bits; bfloat16 has
float32's): the optimizer is wrapped in Keras's LossScaleOptimizer, which the
trainer's `train_step` drives (`scale_loss` before the gradient; `apply`
unscales and skips a step whose gradients are not finite).

The policy is process-global: `set_policy` must run before the network is
built, and tests restore float32 afterwards.
"""
import keras

from official.common import checks

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def check(name):
  return checks.check_choice("precision", name, PRECISIONS)


def set_policy(name):
  """Sets the global Keras dtype policy; returns the policy name."""
  keras.mixed_precision.set_global_policy(check(name))
  return name


def wrap_optimizer(optimizer, name):
  """LossScaleOptimizer around `optimizer` under mixed_float16, else itself."""
  if check(name) == "mixed_float16":
    return keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def loss_scale(optimizer):
  """The LossScaleOptimizer's current scale, or None without loss scaling."""
  if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
    return optimizer.dynamic_scale
  return None
