"""A multi-task .tflite behind its signature: ``image`` in, one named output per task out.

LiteRT only (``ai_edge_litert``) plus numpy: this runs on a device with no TensorFlow. Outputs are
read by name through the signature runner, never by position, and quantized tensors are converted
with the scale and zero point stored in the model.

Example:
    >>> model = LiteModel("runs/x/export/model_int8.tflite")        # doctest: +SKIP
    >>> out = model.predict(np.zeros((1, 64, 64, 3), np.uint8))     # doctest: +SKIP
    >>> sorted(out)                                                 # doctest: +SKIP
    ['box', 'color', 'shape']
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from demo.quiet import LITE_NOISE, held_stderr

SIGNATURE = "serving_default"
INPUT_NAME = "image"


class ModelError(ValueError):
    """The .tflite cannot be used: not a TFLite file, or not a multi-task image model."""


class LiteModel:
    """A loaded .tflite with a ``serving_default`` signature taking ``image``.

    ``xnnpack=False`` turns off the default XNNPACK CPU delegate (for comparisons).

    Example:
        >>> LiteModel("missing.tflite")
        Traceback (most recent call last):
        ...
        demo.runner.ModelError: model file not found: missing.tflite
    """

    def __init__(self, path, threads: int = 2, xnnpack: bool = True):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType  # lazy: loaded with a model (demo.benchmark's baseline)

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelError(f"model file not found: {path}")
        with open(path, "rb") as f:
            head = f.read(8)
        if head[4:8] != b"TFL3":
            raise ModelError(f"{path} is not a TFLite model (no TFL3 file identifier)")
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            with held_stderr(LITE_NOISE):
                self.interpreter = Interpreter(model_path=path, num_threads=int(threads),
                                               experimental_op_resolver_type=resolver)
        except Exception as e:
            raise ModelError(f"LiteRT cannot load {path}: {_line(e)}") from None
        self.path = path
        self.threads = int(threads)
        self.xnnpack = xnnpack
        signatures = self.interpreter.get_signature_list()
        if SIGNATURE not in signatures:
            raise ModelError(f"{path} has no {SIGNATURE!r} signature (it has: {', '.join(signatures) or 'none'}); "
                             "it was not written by `python -m export`")
        inputs = signatures[SIGNATURE]["inputs"]
        if inputs != [INPUT_NAME]:
            raise ModelError(f"{path} takes inputs {inputs}, not a single {INPUT_NAME!r}; it is not a multi-task image model")
        with held_stderr(LITE_NOISE):
            # XNNPACK is applied (and LiteRT announces it) when tensors are first allocated.
            self.interpreter.allocate_tensors()
            self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        detail = self.runner.get_input_details()[INPUT_NAME]
        shape = [int(s) for s in detail["shape"]]
        if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
            raise ModelError(f"{path} takes an input of shape {shape}, not a square RGB image")
        self.image_size = shape[1]
        self.input_dtype = np.dtype(detail["dtype"])
        self.input_quantization = tuple(float(q) for q in detail["quantization"])
        self.output_names = sorted(signatures[SIGNATURE]["outputs"])
        self.output_details = self.runner.get_output_details()

    def _prepare(self, images) -> np.ndarray:
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"expected images of shape [N, {self.image_size}, {self.image_size}, 3], got {list(x.shape)}")
        if self.input_dtype == np.float32:
            return x.astype(np.float32)
        scale, zero = self.input_quantization[:2] if len(self.input_quantization) >= 2 else (0.0, 0)
        x = x.astype(np.float32)
        if scale and (scale != 1.0 or zero != 0):
            x = x / scale + zero
        info = np.iinfo(self.input_dtype)
        return np.clip(np.round(x), info.min, info.max).astype(self.input_dtype)

    def _dequantize(self, name, value) -> np.ndarray:
        value = np.asarray(value)
        if value.dtype == np.float32:
            return value
        scale, zero = self.output_details[name]["quantization"][:2]
        return (value.astype(np.float32) - zero) * (scale or 1.0)

    def predict(self, images, batch_size: int = 32) -> dict:
        """``{task: float32 [N, ...]}`` for RGB images ``[N, S, S, 3]`` (uint8 or float in 0..255).

        Args:
            images: RGB images ``[N, S, S, 3]`` at the model input size, uint8 or float in 0..255.
            batch_size: images per interpreter call.

        Returns:
            ``{task: float32 array [N, ...]}``, quantized outputs dequantized.

        Raises:
            ValueError: the images are not ``[N, S, S, 3]`` at the model's input size.

        Example:
            >>> sorted(LiteModel(path).predict(images))  # doctest: +SKIP
            ['box', 'shape']
        """
        x = self._prepare(images)
        parts = {name: [] for name in self.output_names}
        for start in range(0, len(x), batch_size):
            out = self.runner(**{INPUT_NAME: x[start:start + batch_size]})
            for name in self.output_names:
                parts[name].append(self._dequantize(name, out[name]))
        return {name: np.concatenate(v) for name, v in parts.items()}

    def time_ms(self, image, runs: int = 30, warmup: int = 3) -> list[float]:
        """Wall-clock milliseconds of ``runs`` single-image calls, after ``warmup`` untimed ones.

        Args:
            image: an RGB image ``[S, S, 3]`` or a batch (its first image is used), uint8 or float in 0..255.
            runs: the number of timed calls.
            warmup: the number of untimed calls first.

        Returns:
            The ``runs`` call times, in milliseconds.

        Raises:
            ValueError: the image is not ``[S, S, 3]`` at the model's input size.

        Example:
            >>> len(LiteModel(path).time_ms(image, runs=5))  # doctest: +SKIP
            5
        """
        x = self._prepare(image)[:1]
        for _ in range(warmup):
            self.runner(**{INPUT_NAME: x})
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            self.runner(**{INPUT_NAME: x})
            times.append((time.perf_counter() - t) * 1000.0)
        return times

    def delegate(self) -> str:
        """Which delegate runs the model, read from the execution plan after the first call.

        Example:
            >>> LiteModel(path).delegate()  # doctest: +SKIP
            'XNNPACK (2 threads, 1 delegated partition)'
        """
        try:
            ops = [op["op_name"] for op in self.interpreter._get_ops_details()]
        except Exception:  # a private API of the interpreter; a summary is optional
            return "XNNPACK (default CPU delegate)" if self.xnnpack else "none (built-in CPU kernels)"
        delegated = sum(op == "DELEGATE" for op in ops)
        if not delegated:
            return f"none: built-in CPU kernels ({self.threads} threads)"
        # The plan lists the replaced nodes too, so only the partitions are counted.
        return f"XNNPACK ({self.threads} threads, {delegated} delegated partition{'s' * (delegated != 1)})"

def latency_summary(times_ms) -> dict:
    """First, median and p90 latency (ms) and images/s from per-call times.

    Args:
        times_ms: per-call times in milliseconds, the first call first.

    Returns:
        ``{"first_ms", "median_ms", "p90_ms", "images_per_s", "runs"}``; values None when there is no time.

    Example:
        >>> latency_summary([10.0, 2.0, 4.0, 3.0])
        {'first_ms': 10.0, 'median_ms': 3.5, 'p90_ms': 8.2, 'images_per_s': 210.5, 'runs': 4}
    """
    times = [float(t) for t in times_ms]
    if not times:
        return {"first_ms": None, "median_ms": None, "p90_ms": None, "images_per_s": None, "runs": 0}
    median = statistics.median(times)
    return {
        "first_ms": round(times[0], 3),
        "median_ms": round(median, 3),
        "p90_ms": round(float(np.percentile(times, 90)), 3),
        "images_per_s": round(len(times) / (sum(times) / 1000.0), 1),
        "runs": len(times),
    }


def _line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
