"""Keras multi-task model -> TFLite bytes in one of the quantization modes, builtin ops only.

The route is the one that keeps a Keras 3 dict-output model's names: ``keras.export.ExportArchive``
writes a SavedModel with a ``serving_default`` endpoint whose input is named ``image`` and whose
outputs are the model's dict keys (the task names), and ``tf.lite.TFLiteConverter.from_saved_model``
converts it (this is also what ``model.export(format="litert")`` does inside). The SavedModel is
written once and every mode converts from it.

Example (any Keras model with a square RGB ``image`` input and named outputs converts; a tiny one
here, so the example runs in seconds, where ``mtl_keras.build_model`` gives the real one):
    >>> import keras
    >>> image = keras.Input((32, 32, 3), name="image")
    >>> pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(64, 3, name="conv")(image))
    >>> m = keras.Model(image, {"color": keras.layers.Dense(3, name="color")(pooled)})
    >>> with SavedModel(m) as sm:
    ...     fp32 = convert(sm, "fp32")
    >>> fp32[4:8]  # the TFLite file identifier
    b'TFL3'
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import tempfile
import warnings

import keras
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from tensorflow.lite.python import convert as tflite_convert

from demo.quiet import LITE_NOISE, held_stderr
from mtl_keras.balancing.shared import ancestors as graph_ancestors
from mtl_keras.errors import MtlError

MODES = ("fp32", "fp16", "dynamic", "int8", "int8_mixed", "int16x8")
SIGNATURE = "serving_default"
INPUT_NAME = "image"


class SavedModel:
    """A temporary SavedModel of ``model`` with one ``serving_default`` endpoint (``image`` -> tasks).

    Use as a context manager; the folder is removed on exit.

    Args:
        model: a Keras model with one square RGB input ``(None, S, S, 3)`` and named outputs.

    Raises:
        MtlError: the input is not a square RGB image.

    Example:
        >>> import keras
        >>> image = keras.Input((32, 32, 3), name="image")
        >>> m = keras.Model(image, {"count": keras.layers.Dense(1, name="count")(keras.layers.Flatten()(image))})
        >>> with SavedModel(m) as sm:
        ...     sm.image_size, sm.task_names
        (32, ['count'])
    """

    def __init__(self, model: keras.Model):
        shape = tuple(model.inputs[0].shape)
        if len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[1] != shape[2]:
            raise MtlError(f"the model's input must be a square RGB image (None, S, S, 3), got {shape}")
        self.model = model
        self.image_size = int(shape[1])
        self.task_names = list(model.output_names)
        self.path = None

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="mtl_export_sm_")
        archive = keras.export.ExportArchive()
        archive.track(self.model)
        spec = tf.TensorSpec((None, self.image_size, self.image_size, 3), tf.float32, name=INPUT_NAME)
        model = self.model

        def serve(image):
            return model(image, training=False)

        archive.add_endpoint(SIGNATURE, serve, input_signature=[spec])
        archive.write_out(self.path, verbose=False)
        return self

    def __exit__(self, *exc):
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def _converter(saved: SavedModel) -> tf.lite.TFLiteConverter:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved.path, signature_keys=[SIGNATURE])
    # Builtins only: a Flex (SELECT_TF_OPS) op would need the TensorFlow runtime on the device.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def convert(saved: SavedModel, mode: str, representative=None, float_heads=(), float_layers=()) -> bytes:
    """Convert ``saved`` to TFLite bytes.

    ``mode``: ``fp32``; ``fp16`` (float16 weights); ``dynamic`` (int8 weights, float activations);
    ``int8`` (full-integer PTQ calibrated on ``representative``, a callable yielding
    ``{"image": float32 [1,S,S,3]}``, with a uint8 ``image`` input so camera pixels go straight in);
    ``int8_mixed`` (as int8, but the heads named in ``float_heads`` and the layers matching
    ``float_layers``, names or ``fnmatch`` patterns such as ``conv5_*``, stay float32); ``int16x8`` (int8
    weights, int16 activations everywhere, float32 input: far finer activation steps where int8 loses
    too much, at a speed cost, since XNNPACK does not run it).

    Args:
        saved: the open ``SavedModel`` to convert.
        mode: one of ``MODES``.
        representative: the calibration data of the ``int*`` modes (a callable, as above).
        float_heads: ``int8_mixed``: the tasks whose head layers stay float32.
        float_layers: ``int8_mixed``: layer names or patterns that stay float32.

    Returns:
        The ``.tflite`` file's bytes (builtin ops only).

    Raises:
        MtlError: an unknown mode, missing calibration data, or the converter's failure in one line.

    Example (int8 weights make a model with a 1,728-weight kernel smaller):
        >>> import keras
        >>> image = keras.Input((32, 32, 3), name="image")
        >>> pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(64, 3, name="conv")(image))
        >>> m = keras.Model(image, {"box": keras.layers.Dense(4, name="box")(pooled)})
        >>> with SavedModel(m) as sm:
        ...     len(convert(sm, "dynamic")) < len(convert(sm, "fp32"))
        True
    """
    if mode not in MODES:
        raise MtlError(f"unknown export mode {mode!r}; available: {', '.join(MODES)}")
    converter = _converter(saved)
    if mode == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int16x8":
        if representative is None:
            raise MtlError(f"mode {mode} needs a representative dataset for calibration")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif mode in ("int8", "int8_mixed"):
        if representative is None:
            raise MtlError(f"mode {mode} needs a representative dataset for calibration")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.inference_input_type = tf.uint8
        if mode == "int8":
            # INT8 only: the converter fails loudly rather than leave an op in float.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        else:
            return _convert_mixed(saved, converter, float_heads, float_layers)
    try:
        with warnings.catch_warnings():
            # The calibrator inside the converter still builds a tf.lite.Interpreter, which warns.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            with held_stderr(LITE_NOISE):
                return converter.convert()
    except Exception as e:  # the converter's errors are pages long; keep the line that names the op
        raise MtlError(f"TFLite conversion ({mode}) failed: {conversion_reason(e)}") from None


def _convert_mixed(saved: SavedModel, converter, float_heads, float_layers=()) -> bytes:
    """int8 everywhere except the ``float_heads``' layers and the ``float_layers``, which stay float32.

    These are the two steps ``TFLiteConverter.convert()`` runs for int8 (calibrate, then the MLIR
    quantizer), split so the quantizer can be told which nodes to leave in float; it is the same
    call ``tf.lite.experimental.QuantizationDebugger`` makes for its ``denylisted_nodes`` option.
    """
    if not float_heads and not float_layers:
        raise MtlError("mode int8_mixed needs --float-heads (the tasks whose heads stay float) or --float-layers")
    unknown = [h for h in float_heads if h not in saved.task_names]
    if unknown:
        raise MtlError(f"--float-heads names {', '.join(unknown)}, not tasks of this model ({', '.join(saved.task_names)})")
    layers = head_layers(saved.model, float_heads) if float_heads else set()
    layers |= match_layers(saved.model, float_layers)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    converter._experimental_calibrate_only = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            with held_stderr(LITE_NOISE):
                calibrated = converter.convert()
        nodes = _nodes_of_layers(calibrated, layers)
        if not nodes:
            raise MtlError(f"found no graph nodes of {', '.join([*float_heads, *float_layers])} to keep in float")
        with held_stderr(LITE_NOISE):
            return tflite_convert.mlir_quantize(
                calibrated, input_data_type=tf.uint8, output_data_type=tf.float32, denylisted_nodes=nodes
            )
    except MtlError:
        raise
    except Exception as e:
        raise MtlError(f"TFLite conversion (int8_mixed) failed: {_first_line(e)}") from None


def match_layers(model: keras.Model, patterns) -> set[str]:
    """Names of the model's layers that match any of ``patterns`` (names or ``fnmatch`` globs).

    A pattern that matches nothing is an error: a typo would otherwise quantize what was meant to stay float.

    Args:
        model: the Keras model.
        patterns: layer names or ``fnmatch`` patterns (``conv5_*``).

    Returns:
        The matching layer names.

    Raises:
        MtlError: a pattern matches no layer.

    Example (on a ResNet50 trunk, ``conv5_block3_3_*`` names ``conv5_block3_3_conv`` and ``conv5_block3_3_bn``):
        >>> import keras
        >>> image = keras.Input((32, 32, 3), name="image")
        >>> x = keras.layers.BatchNormalization(name="conv5_bn")(keras.layers.Conv2D(8, 3, name="conv5_conv")(image))
        >>> m = keras.Model(image, {"box": keras.layers.Dense(4, name="box")(keras.layers.Flatten()(x))})
        >>> sorted(match_layers(m, ["conv5_*"]))
        ['conv5_bn', 'conv5_conv']
    """
    names = [layer.name for layer in model.layers]
    chosen = set()
    for pattern in patterns:
        hits = fnmatch.filter(names, pattern)
        if not hits:
            raise MtlError(f"--float-layers {pattern!r} matches no layer of the model (e.g. {', '.join(names[-3:])}; "
                           "patterns like conv5_* work)")
        chosen.update(hits)
    return chosen


def head_layers(model: keras.Model, tasks) -> set[str]:
    """Names of the layers that only the given tasks' outputs depend on (their heads).

    A layer shared with any other task (the trunk, a shared FPN) is not a head layer.

    Args:
        model: a functional model with one output per task.
        tasks: the task (output) names whose heads are wanted.

    Returns:
        The layer names.

    Example:
        >>> import mtl_keras as mk
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "box"]), trunk="mobilenet_v3_small", image_size=32)
        >>> sorted(head_layers(m, ["box"]))
        ['box', 'box_flatten', 'box_hidden', 'box_logits', 'box_reduce']
    """
    ancestors = {
        name: {op.name for op in graph_ancestors(output) if not isinstance(op, keras.layers.InputLayer)}
        for name, output in zip(model.output_names, model.outputs)
    }
    chosen = set().union(*(ancestors[t] for t in tasks))
    others = set().union(*(a for t, a in ancestors.items() if t not in tasks)) if len(ancestors) > len(tasks) else set()
    return chosen - others


def _nodes_of_layers(tflite_model: bytes, layers: set[str]) -> list[str]:
    """Tensor names of a converted model that belong to the given Keras layers.

    Converted tensor names look like ``mtl_1/box_hidden_1/MatMul;mtl_1/box_hidden_1/Relu``: the
    second path part is the layer name with a ``_<n>`` suffix the tracing added.
    """
    names = [t["name"] for t in Interpreter(model_content=tflite_model).get_tensor_details()]
    pattern = re.compile(r"^(?:[^/]+)/(" + "|".join(re.escape(n) for n in sorted(layers)) + r")(?:_\d+)?/")
    return [n for n in names if any(pattern.match(part) for part in n.split(";"))]


def builtin_ops(tflite_model: bytes) -> list[str]:
    """The op names in a converted model; a Flex or custom op makes it unusable on a device.

    Args:
        tflite_model: the ``.tflite`` file's bytes.

    Returns:
        The sorted op names.

    Raises:
        MtlError: the model needs a Flex or custom op.

    Example:
        >>> import keras
        >>> image = keras.Input((32, 32, 3), name="image")
        >>> pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, name="conv")(image))
        >>> m = keras.Model(image, {"count": keras.layers.Dense(1, name="count")(pooled)})
        >>> with SavedModel(m) as sm:
        ...     builtin_ops(convert(sm, "fp32"))
        ['CONV_2D', 'FULLY_CONNECTED', 'MEAN']
    """
    interp = Interpreter(
        model_content=tflite_model, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    ops = sorted({op["op_name"] for op in interp._get_ops_details()})
    custom = [o for o in ops if o.startswith("Flex") or o == "CUSTOM"]
    if custom:
        raise MtlError(f"the converted model needs non-builtin ops {', '.join(custom)}, which a device runtime lacks")
    return ops


def conversion_reason(e) -> str:
    """One line from a converter error: the ops it cannot quantize when it names them, else its first error line.

    The 16x8 quantizer repeats its complaint once per node; the op names are what tell a user which
    trunk to change (MobileNetV3's HARD_SWISH has no 16x8 kernel in TF 2.21).

    Args:
        e: the converter's exception.

    Returns:
        One line for the user.

    Example:
        >>> print(conversion_reason(ValueError("Quantization to 16x8-bit not yet supported for op: 'HARD_SWISH'.\\n" * 3)))
        op HARD_SWISH has no 16x8 quantization in this converter (not yet supported for op: 'HARD_SWISH')
        >>> print(conversion_reason(RuntimeError("loc(x): error: 'tf.Foo' op is neither a custom op nor a flex op")))
        loc(x): error: 'tf.Foo' op is neither a custom op nor a flex op
    """
    ops = sorted(set(re.findall(r"not yet supported for op: '([A-Za-z0-9_]+)'", str(e))))
    if ops:
        quoted = ", ".join(f"'{o}'" for o in ops)
        return (f"op{'s' * (len(ops) > 1)} {', '.join(ops)} {'have' if len(ops) > 1 else 'has'} no 16x8 quantization "
                f"in this converter (not yet supported for op: {quoted})")
    return _first_line(e)


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "error:" in ln.lower():
            return ln
    return lines[0] if lines else type(e).__name__

