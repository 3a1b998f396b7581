"""SmallCNN, the MNIST network of TRADES (Zhang et al., 2019).

Reference: yaodongyu/TRADES `models/small_cnn.py`:
  conv3x3(32)-conv3x3(32)-maxpool2-conv3x3(64)-conv3x3(64)-maxpool2-flatten
  -dense(200)-dropout(0.5)-dense(200)-dense(num_classes), ReLU, no batch norm.
With "valid" padding a 28x28 image is 4x4x64 before flattening, as in TRADES.

Init mimics TRADES' official code: conv weights kaiming_normal (He, fan-in, not
truncated) with zero bias; hidden dense layers keep PyTorch's default init; the
last layer starts at zero weights and zero bias (so initial logits are all 0).
"""
import keras
from keras import layers

from official.modeling.resnet import torch_bias_init, torch_kernel_init


def small_cnn(x, num_classes, filters=(32, 32, 64, 64), dense_units=(200, 200),
              padding="valid", dropout=0.5):
  """Returns (logits, features[dense_units[1]]).

  padding: "valid" as in TRADES; "same" keeps spatial sizes so tiny inputs (8x8) fit.
  dropout: after the first hidden dense layer, 0.5 in TRADES (0 disables it).
  """
  if len(filters) != 4 or len(dense_units) != 2:
    raise ValueError(f"small_cnn wants 4 filters and 2 dense_units, got {filters}, {dense_units}")
  for i, f in enumerate(filters):
    x = layers.Conv2D(
        f, 3, padding=padding, activation="relu", name=f"conv{i + 1}",
        kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal"))(x)
    if i % 2 == 1:
      x = layers.MaxPooling2D(2, name=f"pool{i // 2 + 1}")(x)
  x = layers.Flatten(name="flatten")(x)
  x = layers.Dense(dense_units[0], activation="relu", name="fc1",
                   kernel_initializer=torch_kernel_init(),
                   bias_initializer=torch_bias_init(x.shape[-1]))(x)
  if dropout > 0:
    x = layers.Dropout(dropout, name="dropout")(x)
  # float32 outputs under mixed precision, as in resnet.pool_and_classify.
  features = layers.Dense(dense_units[1], activation="relu", name="features", dtype="float32",
                          kernel_initializer=torch_kernel_init(),
                          bias_initializer=torch_bias_init(dense_units[0]))(x)
  logits = layers.Dense(num_classes, kernel_initializer="zeros", name="logits",
                        dtype="float32")(features)
  return logits, features
