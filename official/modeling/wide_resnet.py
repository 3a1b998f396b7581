"""WideResNet-depth-width (Zagoruyko & Komodakis, 2016) as in the TRADES/MART/GAIRAT code.

Reference: yaodongyu/TRADES `models/wideresnet.py` (copied by MART and GAIRAT).
A 3x3 stem conv of 16 channels, three groups of n = (depth-4)/6 pre-activation
blocks with widths 16k/32k/64k (k = width) and strides 1/2/2, a final BN-ReLU,
global average pooling and one dense layer. WRN-34-10 has 46,160,474 parameters.

Faithful details:
  - The first block of a group changes the width: its BN-ReLU output feeds both the
    3x3 branch and the 1x1 projection shortcut. Other blocks add the raw input.
  - Dropout (if any) sits between the two convs of a block.
  - Init as TRADES: conv weights N(0, 2/(k*k*out_channels)) (He, fan-out), dense
    weights PyTorch's default, dense bias zero; BN gamma=1, beta=0.
  - TRADES also builds a `sub_block1` that forward() never uses; it is left out
    (it would only add unused parameters).
"""
import keras
from keras import layers

from official.modeling.resnet import bn_relu, conv, pool_and_classify


def _he_fan_out():
  # math.sqrt(2. / (k*k*out)) in TRADES; fresh instance per layer (see torch_kernel_init).
  return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _block(x, filters, stride, dropout, name):
  out = bn_relu(x, f"{name}_bn1")
  shortcut = x
  # TRADES tests only in != out channels; the stride test is for safety (same models).
  if stride != 1 or x.shape[-1] != filters:
    shortcut = conv(out, filters, 1, stride, f"{name}_proj", _he_fan_out())
  y = conv(out, filters, 3, stride, f"{name}_conv1", _he_fan_out())
  y = bn_relu(y, f"{name}_bn2")
  if dropout > 0:
    y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
  y = conv(y, filters, 3, 1, f"{name}_conv2", _he_fan_out())
  return layers.Add(name=f"{name}_add")([shortcut, y])


def wide_resnet(x, num_classes, depth=34, width=10, dropout=0.0):
  """WRN-`depth`-`width`; depth = 6n+4 (28, 34, ...). Returns (logits, features[64*width])."""
  if depth < 10 or (depth - 4) % 6:
    raise ValueError(f"wide_resnet depth must be 6n+4 with n >= 1 (28, 34, ...), got {depth}")
  n = (depth - 4) // 6
  x = conv(x, 16, 3, 1, "stem_conv", _he_fan_out())
  for group, (filters, stride) in enumerate(zip((16 * width, 32 * width, 64 * width), (1, 2, 2))):
    for i in range(n):
      x = _block(x, filters, stride if i == 0 else 1, dropout, f"group{group + 1}_block{i + 1}")
  x = bn_relu(x, "final_bn")
  return pool_and_classify(x, num_classes, "zeros")
