"""ResNet-18 and PreAct ResNet-18, the CIFAR variants of the adversarial-training papers.

References (PyTorch):
  - ResNet-18: kuangliu/pytorch-cifar `models/resnet.py` (used by MART, GAIRAT, ...).
  - PreAct ResNet-18: locuslab/robust_overfitting `preactresnet.py` (Rice et al., 2020).
Both use a 3x3 stem conv of 64 channels and no max-pool (CIFAR images are small),
four stages of two BasicBlocks with widths 64/128/256/512, global average pooling
and one dense layer.

Builders take the (already normalised) image tensor and return `(logits, features)`;
`official/modeling/registry.py` wraps them in a `keras.Model`. The small layer
helpers here are shared with `wide_resnet.py` and `small_cnn.py`.
"""
import math

import keras
from keras import layers


def torch_kernel_init():
  """PyTorch's default Conv2d/Linear weight init: kaiming_uniform(a=√5) = U(±1/√fan_in).

  The reference code keeps this default, so we do too. A fresh instance per layer:
  an unseeded Keras initializer draws its seed once, at construction, so sharing
  one instance would give same-shaped layers identical weights.
  """
  return keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")


def torch_bias_init(fan_in):
  """PyTorch's default Linear bias init: U(±1/√fan_in)."""
  bound = 1 / math.sqrt(fan_in)
  return keras.initializers.RandomUniform(-bound, bound)


def conv(x, filters, kernel, stride, name, kernel_initializer=None):
  """Bias-free conv (a BatchNorm follows or precedes it), padded as PyTorch's k//2."""
  padding = "same"
  if stride > 1 and kernel > 1:
    # TF's "same" pads a stride-2 conv on the bottom/right only; PyTorch pads both
    # sides. Padding explicitly keeps the 3x3 branch aligned with the 1x1 shortcut
    # exactly as in the reference models.
    x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    padding = "valid"
  return layers.Conv2D(
      filters, kernel, stride, padding=padding, use_bias=False,
      kernel_initializer=kernel_initializer or torch_kernel_init(), name=name)(x)


def batch_norm(x, name):
  # PyTorch's defaults, which the papers used (Keras momentum = 1 - torch momentum).
  return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def bn_relu(x, name):
  return layers.ReLU(name=f"{name}_relu")(batch_norm(x, name))


def pool_and_classify(x, num_classes, bias_initializer):
  """Global average pool -> "features"; dense -> "logits".

  Both output layers compute in float32 so that losses and attacks see float32
  under a mixed_float16 policy (Keras' advice for the last layers).
  """
  features = layers.GlobalAveragePooling2D(name="features", dtype="float32")(x)
  logits = layers.Dense(
      num_classes, kernel_initializer=torch_kernel_init(),
      bias_initializer=bias_initializer, name="logits", dtype="float32")(features)
  return logits, features


def _basic_block(x, filters, stride, name):
  """conv-BN-ReLU-conv-BN, plus the (projected) input, then ReLU."""
  shortcut = x
  if stride != 1 or x.shape[-1] != filters:
    shortcut = batch_norm(conv(x, filters, 1, stride, f"{name}_proj"), f"{name}_proj_bn")
  y = bn_relu(conv(x, filters, 3, stride, f"{name}_conv1"), f"{name}_bn1")
  y = batch_norm(conv(y, filters, 3, 1, f"{name}_conv2"), f"{name}_bn2")
  y = layers.Add(name=f"{name}_add")([shortcut, y])
  return layers.ReLU(name=f"{name}_out")(y)


def _preact_block(x, filters, stride, name):
  """BN-ReLU-conv-BN-ReLU-conv; a projection shortcut starts from the pre-activation."""
  out = bn_relu(x, f"{name}_bn1")
  shortcut = x
  if stride != 1 or x.shape[-1] != filters:
    shortcut = conv(out, filters, 1, stride, f"{name}_proj")
  y = conv(out, filters, 3, stride, f"{name}_conv1")
  y = conv(bn_relu(y, f"{name}_bn2"), filters, 3, 1, f"{name}_conv2")
  return layers.Add(name=f"{name}_add")([shortcut, y])


def _resnet18(x, num_classes, preact):
  x = conv(x, 64, 3, 1, "stem_conv")
  if not preact:  # The pre-activation net normalises inside its first block instead.
    x = bn_relu(x, "stem_bn")
  block = _preact_block if preact else _basic_block
  for stage, (filters, stride) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2))):
    for i in range(2):
      x = block(x, filters, stride if i == 0 else 1, f"stage{stage + 1}_block{i + 1}")
  if preact:  # Pre-activation blocks end on an addition: normalise before pooling.
    x = bn_relu(x, "final_bn")
  return pool_and_classify(x, num_classes, torch_bias_init(512))


def resnet18(x, num_classes):
  """ResNet-18 (CIFAR variant). Returns (logits, features[512])."""
  return _resnet18(x, num_classes, preact=False)


def preact_resnet18(x, num_classes):
  """PreAct ResNet-18 (He et al., 2016b; as in Rice et al., 2020). Returns (logits, features[512])."""
  return _resnet18(x, num_classes, preact=True)
