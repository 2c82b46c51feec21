"""mtl-keras: multi-task learning for Keras, from training to a quantized model on a device.

Example:
    >>> import mtl_keras as mk
    >>> tasks = mk.data.tasks_for("shapes", names=["shape", "color", "box"])
    >>> model = mk.build_model(tasks, trunk="resnet50", image_size=64, weights=None)
    >>> model.compile(optimizer="adam", loss_weights={"box": 5.0})
"""

import importlib
import os

# Read when TensorFlow loads, so they are set before anything in the package can import it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN CPU kernels on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX;
# on an AVX2 CPU its fallback kernels train ResNet50 2.6x slower (bench/cpu_kernels.py).
# TF_ENABLE_ONEDNN_OPTS=0 still turns it off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
__all__ = ["MtlError", "MultiTaskModel", "build_model", "data", "layers", "load_model", "tasks"]

# Loaded on first use (PEP 562), so `import mtl_keras.cli` does not load TensorFlow: the command
# line first starts TensorFlow quietly (mtl_keras.startup), then imports what it needs.
_LAZY = {
    "MtlError": "mtl_keras.errors",
    "MultiTaskModel": "mtl_keras.model",
    "build_model": "mtl_keras.model",
    "load_model": "mtl_keras.model.saving",
    # The stages, as subpackages (README, "Layout").
    "balancing": None,
    "data": None,
    "evaluate": None,
    "explain": None,
    "layers": None,
    "model": None,
    "run": None,
    "tasks": None,
    "train": None,
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'mtl_keras' has no attribute {name!r}")
    module = _LAZY[name]
    if module is None:
        return importlib.import_module(f"mtl_keras.{name}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
