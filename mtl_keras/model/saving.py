"""Loading ``.keras`` files safely, with clear errors for files of the wrong kind."""

from __future__ import annotations

import os
import zipfile

import keras

from mtl_keras import balancing, layers, tasks
from mtl_keras.errors import MtlError
from mtl_keras.model.multitask import MultiTaskModel

# Importing these registers every mtl_keras layer, loss, metric and balancer with Keras, which must know
# them before a file is read (the package itself loads lazily).
_REGISTERS = (balancing, layers, tasks)


def load_model(path, safe_mode: bool = True, compile: bool = True):
    """Load a multi-task model saved with ``model.save(path)``.

    ``safe_mode=True`` (the default) refuses ``Lambda`` layers and other arbitrary code; every layer,
    loss and metric of mtl_keras is registered, so its own models need nothing unsafe.

    Args:
        path: a ``.keras`` file written by ``model.save``.
        safe_mode: refuse ``Lambda`` layers and other arbitrary code (pass False only for files you trust).
        compile: recompile with the losses, weights, metrics and balancer it was saved with.

    Returns:
        The ``MultiTaskModel`` (or plain Keras model) stored in the file.

    Raises:
        MtlError: a missing file, a file that is not a ``.keras`` archive, or one that needs ``safe_mode=False``.

    Example:
        >>> load_model("missing.keras")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: model file not found: missing.keras
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MtlError(f"model file not found: {path}")
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        raise MtlError(f"{path} is not a .keras model file (a zip archive written by model.save)")
    try:
        model = keras.saving.load_model(path, safe_mode=safe_mode, compile=compile)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Lambda" in str(e) or "safe_mode" in str(e):
            raise MtlError(
                f"{path} contains code that safe mode will not run (a Lambda layer or similar); "
                "load it only if you trust its source, with safe_mode=False (--unsafe on the CLI)"
            ) from None
        raise MtlError(f"could not load {path}: {first}") from None
    if not isinstance(model, MultiTaskModel):
        raise MtlError(f"{path} holds a {type(model).__name__}, not an mtl_keras multi-task model")
    return model
