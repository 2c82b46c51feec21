"""Where a quantized model drifts from the float one: the error of every layer's output, end to end.

Both .tflite files run the same images with every intermediate tensor kept; for each tensor the
quantized file also has, the error is ``rmse(dequantized - float) / std(float)``: the quantization
noise that has built up to that point, relative to the signal. Reading it along the graph shows
where the error grows (a stage whose layers each add a little, or one op that clips), which tells
what to keep in float (``--float-layers``). TF's ``QuantizationDebugger`` answers a different
question, each op's own error given quantized inputs; on a from-scratch ResNet50 every op there
sits at the rounding floor while the end-to-end error still grows tenfold through the deepest stage.

Example:
    >>> rows = compare("runs/x/export/model_fp32.tflite", "runs/x/export/model_int8.tflite", images)  # doctest: +SKIP
    >>> [(r["layer"], round(r["relative_error"], 2)) for r in rows[-2:]]                              # doctest: +SKIP
    [('conv5_block3_out', 0.31), ('shape_logits', 0.4)]
"""

from __future__ import annotations

import csv
import io
import re
import warnings

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from demo.quiet import LITE_NOISE, held_stderr
from mtl_keras.errors import MtlError

COLUMNS = ("order", "layer", "relative_error", "steps_per_std", "float_std", "float_max", "scale", "tensor")
# Below this many int8 steps per standard deviation the grid cannot resolve a tensor's typical values:
# its range was set by rare large activations (heavy tails across images), not by the usual ones.
COARSE_STEPS = 2.0


def compare(float_model, quantized_model, images: np.ndarray) -> list[dict]:
    """Per-tensor error of ``quantized_model`` against ``float_model`` (paths or bytes) on ``images``.

    ``images``: uint8 ``[N, S, S, 3]``. Rows come in execution order, one per quantized tensor that
    the float file also has, as dicts with ``order`` (the op's place in execution order), ``layer``
    (the Keras layer), ``relative_error``, ``steps_per_std`` (the float spread in int8 steps),
    ``float_std``, ``float_max``, ``scale``, ``tensor``.

    Args:
        float_model: the float .tflite file, a path or its bytes.
        quantized_model: the quantized .tflite file of the same model, a path or its bytes.
        images: uint8 ``[N, S, S, 3]`` images at the model input size (N >= 1).

    Returns:
        A list of row dicts (the keys of ``COLUMNS``), sorted by execution order.

    Raises:
        MtlError: ``images`` is not a non-empty 4-D batch.

    Example:
        >>> compare(b"", b"", np.zeros((0, 8, 8, 3), np.uint8))
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: the layer comparison needs at least one image [N, S, S, 3], got shape (0, 8, 8, 3)
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise MtlError(f"the layer comparison needs at least one image [N, S, S, 3], got shape {images.shape}")
    ref, quant = _interpreter(float_model), _interpreter(quantized_model)
    by_name = {t["name"]: t for t in ref.get_tensor_details()}
    pairs = []
    for t in quant.get_tensor_details():
        scale = float(t["quantization"][0])
        match = by_name.get(t["name"])
        if scale > 0 and match is not None and len(t["shape"]) > 0 and tuple(t["shape"]) == tuple(match["shape"]):
            pairs.append((t, match))
    sums = {t["index"]: np.zeros(4) for t, _ in pairs}  # squared error, sum, sum of squares, count
    peaks = {t["index"]: 0.0 for t, _ in pairs}
    for image in images:
        _run(ref, image)
        _run(quant, image)
        for t, m in pairs:
            try:
                a = ref.get_tensor(m["index"]).astype(np.float64)
                q = quant.get_tensor(t["index"]).astype(np.float64)
            except ValueError:  # a tensor the runtime reuses for another one (not kept)
                continue
            scale, zero = t["quantization"]
            b = (q - zero) * scale
            sums[t["index"]] += (np.sum((a - b) ** 2), np.sum(a), np.sum(a * a), a.size)
            peaks[t["index"]] = max(peaks[t["index"]], float(np.max(np.abs(a))))
    rows = []
    for t, _ in pairs:
        err, total, squares, n = sums[t["index"]]
        if n == 0:
            continue
        var = max(squares / n - (total / n) ** 2, 0.0)
        std = float(np.sqrt(var))
        rows.append({
            "order": int(t["index"]), "layer": keras_layer(t["name"]),
            "relative_error": float(np.sqrt(err / n) / std) if std > 0 else float("nan"),
            "steps_per_std": std / float(t["quantization"][0]),
            "float_std": std, "float_max": peaks[t["index"]], "scale": float(t["quantization"][0]),
            "tensor": t["name"],
        })
    # Execution order, so the rows (and stages) read from the input to the heads.
    position = {}
    for i, op in enumerate(quant._get_ops_details()):
        for index in op["outputs"]:
            position.setdefault(int(index), i)
    rows = [dict(r, order=position[r["order"]]) for r in rows if r["order"] in position]  # constants: no op
    rows.sort(key=lambda r: r["order"])
    return rows


def stage_errors(rows: list[dict]) -> list[tuple[str, float]]:
    """The largest relative error reached inside each trunk stage / head, in graph order.

    A stage is a layer name's prefix before ``_block`` (``conv4_block2_out`` -> ``conv4``); other
    layers count under their own name's first word (``shape_logits`` -> ``shape``).

    Args:
        rows: rows of ``compare`` (``layer`` and ``relative_error`` are read).

    Returns:
        ``[(stage, largest relative error)]`` in the order stages first appear; NaN rows are left out.

    Example:
        >>> stage_errors([{"layer": "conv4_block1_out", "relative_error": 0.1},
        ...               {"layer": "conv5_block1_out", "relative_error": 0.3},
        ...               {"layer": "shape_logits", "relative_error": 0.4}])
        [('conv4', 0.1), ('conv5', 0.3), ('shape', 0.4)]
    """
    stages: dict[str, float] = {}
    for r in rows:
        e = r["relative_error"]
        if not np.isfinite(e) or r["layer"].startswith(("serving_default", "StatefulPartitionedCall")):
            continue  # the input itself and the bare output aliases are not stages
        stage = r["layer"].split("_block")[0] if "_block" in r["layer"] else r["layer"].split("_")[0]
        stages[stage] = max(stages.get(stage, 0.0), e)
    return list(stages.items())


def summary(rows: list[dict]) -> str:
    """One line for the report: the error reached in each stage, and the tensors int8 cannot resolve.

    Args:
        rows: rows of ``compare`` (``layer``, ``relative_error``, ``steps_per_std``).

    Returns:
        The line, a string.

    Example:
        >>> summary([{"layer": "conv5_block1_out", "relative_error": 0.3, "steps_per_std": 0.4}])
        'error relative to the float signal, largest per stage: conv5 0.30; 1 tensor spans < 2 int8 steps per standard deviation (the first: conv5_block1_out, 0.4), its range set by rare large activations'
    """
    text = "error relative to the float signal, largest per stage: " + ", ".join(
        f"{stage} {err:.2f}" for stage, err in stage_errors(rows))
    coarse = [r for r in rows if r.get("steps_per_std", COARSE_STEPS) < COARSE_STEPS and np.isfinite(r["relative_error"])]
    if coarse:
        n = len(coarse)
        text += (f"; {n} tensor{'s' if n > 1 else ''} span{'' if n > 1 else 's'} < {COARSE_STEPS:g} int8 steps per standard "
                 f"deviation (the first: {coarse[0]['layer']}, {coarse[0]['steps_per_std']:.1f}), "
                 f"{'their ranges' if n > 1 else 'its range'} set by rare large activations")
    return text


def keras_layer(tensor_name: str) -> str:
    """The Keras layer a converted tensor comes from (``mtl_1/conv2_block1_out_1/Relu`` -> ``conv2_block1_out``).

    A fused op names several layers; the first is the one whose output the tensor is.

    Args:
        tensor_name: the tensor's name in the .tflite file.

    Returns:
        The layer name (its ``_N`` suffix removed), or the name unchanged when it has no ``/``.

    Example:
        >>> keras_layer("mtl_1/box_hidden_1/MatMul;mtl_1/box_hidden_1/Relu")
        'box_hidden'
        >>> keras_layer("StatefulPartitionedCall:1")
        'StatefulPartitionedCall:1'
    """
    parts = tensor_name.split(";")[0].split("/")
    return re.sub(r"_\d+$", "", parts[1]) if len(parts) > 1 else parts[0]


def to_csv(rows: list[dict]) -> str:
    """``rows`` as CSV text (the columns of ``COLUMNS``).

    Args:
        rows: rows of ``compare`` (each must have every key of ``COLUMNS``).

    Returns:
        The CSV text, header line first, ``\\n`` line endings.

    Example:
        >>> to_csv([]).strip()
        'order,layer,relative_error,steps_per_std,float_std,float_max,scale,tensor'
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in COLUMNS})
    return buffer.getvalue()


def _interpreter(model):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*preserve_all_tensors.*")  # debugging is the point here
        kwargs = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
        interp = Interpreter(**kwargs, experimental_preserve_all_tensors=True)
    with held_stderr(LITE_NOISE):
        interp.allocate_tensors()
    return interp


def _run(interp, image):
    detail = interp.get_input_details()[0]
    x = image[None]
    if detail["dtype"] == np.uint8:
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    else:
        x = x.astype(np.float32)
    interp.set_tensor(detail["index"], x)
    interp.invoke()
