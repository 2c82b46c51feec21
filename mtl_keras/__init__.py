"""mtl-keras: multi-task learning for Keras, from training to a quantized model on a device.

Example:
    >>> import mtl_keras as mk
    >>> tasks = mk.tasks.from_dataset("shapes", names=["shape", "color", "box"])
    >>> model = mk.build_model(tasks, trunk="resnet50", image_size=64, weights=None)
    >>> model.compile(optimizer="adam", loss_weights={"box": 5.0})
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN CPU kernels on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX;
# on an AVX2 CPU its fallback kernels train ResNet50 2.6x slower (bench/cpu_kernels.py). Read when
# TensorFlow loads, so it is set before any import of it; TF_ENABLE_ONEDNN_OPTS=0 still turns it off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from mtl_keras import data, layers, tasks  # noqa: E402
from mtl_keras.errors import MtlError  # noqa: E402
from mtl_keras.model import MultiTaskModel, build_model  # noqa: E402
from mtl_keras.saving import load_model  # noqa: E402

__version__ = "0.1.0"
__all__ = ["MtlError", "MultiTaskModel", "build_model", "data", "layers", "load_model", "tasks"]
