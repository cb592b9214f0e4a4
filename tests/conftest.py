"""Test-session setup: split the CPU into two logical devices before TensorFlow starts.

That lets MirroredStrategy(["/cpu:0", "/cpu:1"]) run two real replicas on a CPU-only
machine, which is how the distributed tests check loss scaling and gradient sums.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
