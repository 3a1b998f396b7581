"""A model the library does not define, for model.name=custom (docs/custom_model.md).

  python -m official.train --config=configs/srat.py:digits \
      --config.model.name=custom \
      --config.model.builder=docs/examples/my_model.py:build
"""
import keras


def build(input_shape, num_classes):
  """float32 [0, 1] images of `input_shape` -> `num_classes` logits."""
  return keras.Sequential([
      keras.Input(input_shape),
      keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
      keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
      keras.layers.MaxPooling2D(),
      keras.layers.Flatten(),
      # The input of the last layer is what SRAT's separability loss sees.
      keras.layers.Dense(128, activation="relu"),
      keras.layers.Dense(num_classes),  # logits: no softmax
  ])
