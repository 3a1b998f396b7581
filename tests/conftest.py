"""Shared test setup: two logical CPU devices (for MirroredStrategy tests) and quiet TF."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402

# Logical devices must be configured before TF initialises its runtime, so this
# happens at import time of the test session, once.
_cpu = tf.config.list_physical_devices("CPU")[0]
try:
  tf.config.set_logical_device_configuration(
      _cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # Already initialised (e.g. a plugin touched TF first).
  pass
