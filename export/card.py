"""``model_card.json``: everything the device needs to use a .tflite, beside the .tflite files.

One card per export folder: what the files share (tasks in output order, their types and class names,
decoding settings, the input, the training run) and, under ``files``, what each .tflite has of its own
(mode, quantization, checksum, its measured metrics). The demo reads only this card and the .tflite.
Each task's decoding settings come from its type (``Task.card_decoding``).

Example:
    >>> from mtl_keras.tasks import ClassificationTask
    >>> card = new_card([ClassificationTask("color", classes=["red", "blue"])], image_size=64, source={})
    >>> card["tasks"][0]["decoding"], card["input"]["name"]
    ({'top_k': 2}, 'image')
"""

from __future__ import annotations

import datetime
import hashlib

import keras
import tensorflow as tf

import mtl_keras

CARD_NAME = "model_card.json"
CARD_FORMAT = "mtl-keras/model-card"
CARD_VERSION = 1


def new_card(tasks, image_size: int, source: dict) -> dict:
    """The shared part of a card for a model with ``tasks`` (in output order of meaning).

    Args:
        tasks: the model's ``Task`` objects, in output order.
        image_size: side of the square model input, in pixels.
        source: where the model came from (run folder, data, ...), stored as given (JSON-safe).

    Returns:
        The card dict (``format``, ``version``, ``created``, ``input``, ``tasks``, ``source``, ``exported_with``,
        and an empty ``files`` for ``file_entry`` results).

    Example:
        >>> from mtl_keras.tasks import BoxTask
        >>> new_card([BoxTask("box")], 32, {"data": "shapes"})["tasks"][0]["kind"]
        'box'
    """
    return {
        "format": CARD_FORMAT,
        "version": CARD_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "input": {
            "name": "image", "shape": [1, int(image_size), int(image_size), 3], "color": "RGB",
            "range": [0, 255], "resize": "stretch to the square input (as in training), bilinear",
            "preprocessing": "inside the model (the trunk's own normalization)",
        },
        "tasks": [
            {
                "name": t.name,
                "kind": t.kind,
                "classes": list(getattr(t, "classes", []) or []) or None,
                "primary_metric": t.primary_metric,
                "higher_is_better": bool(t.higher_is_better),
                "decoding": t.card_decoding(),
                "config": t.get_config(),
            }
            for t in tasks
        ],
        "source": source,
        "exported_with": {"tensorflow": tf.__version__, "keras": keras.__version__, "mtl_keras": mtl_keras.__version__},
        "files": {},
    }


def file_entry(data: bytes, mode: str, lite_model, float_heads=(), calibration=None, validation=None,
               float_layers=()) -> dict:
    """The per-file part of a card: mode, size, checksum, input/output tensors and their quantization.

    Args:
        data: the .tflite file's bytes (size and SHA-256 are taken from them).
        mode: the export mode (``fp32``, ``fp16``, ``int8``, ...).
        lite_model: a ``demo.runner.LiteModel`` of the file (input and output tensor details).
        float_heads: the heads kept in float in a quantized file.
        calibration: how the quantized file was calibrated (JSON-safe), or ``None``.
        validation: how the file compared with the Keras model (JSON-safe), or ``None``.
        float_layers: the layers kept in float in a quantized file.

    Returns:
        ``{"mode", "size_bytes", "sha256", "input", "outputs", "float_heads", "float_layers", "calibration",
        "validation"}``; ``quantization`` is None for a float tensor.

    Example:
        >>> entry = file_entry(tflite_bytes, "int8", LiteModel(path))  # doctest: +SKIP
        >>> entry["input"]["dtype"]                                               # doctest: +SKIP
        'uint8'
    """
    scale, zero = (list(lite_model.input_quantization) + [0.0, 0])[:2]
    outputs = {}
    for task_name, d in lite_model.output_details.items():
        q = d.get("quantization", (0.0, 0))
        outputs[task_name] = {"shape": [int(s) for s in d["shape"]], "dtype": d["dtype"].__name__,
                              "quantization": {"scale": float(q[0]), "zero_point": int(q[1])} if q[0] else None}
    return {
        "mode": mode,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "input": {
            "dtype": lite_model.input_dtype.name,
            "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None,
        },
        "outputs": outputs,
        "float_heads": list(float_heads),
        "float_layers": list(float_layers),
        "calibration": calibration,
        "validation": validation,
    }
