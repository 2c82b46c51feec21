"""Training speed helpers: mixed-precision policy choice and images/s per epoch.

The train command wires these in; the Python API user can call them the same way. (Choosing a
distribution strategy lives in ``mtl_keras.distribute.get_strategy``.)

Example:
    >>> mixed_precision_policy("auto", compute_capabilities=[(9, 0)])
    'mixed_bfloat16'
    >>> mixed_precision_policy("auto", compute_capabilities=[])
    'float32'
"""

from __future__ import annotations

import time

import keras
import tensorflow as tf

from mtl_keras.errors import MtlError

MIXED_PRECISION_MODES = ("auto", "float16", "bfloat16", "off")
_POLICIES = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16", "off": "float32"}


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """``(major, minor)`` compute capability of every visible GPU; ``[]`` on a CPU-only machine.

    Example:
        >>> isinstance(gpu_compute_capabilities(), list)
        True
    """
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        # Devices that report no capability (non-CUDA plugins) count as the oldest kind.
        capabilities.append(tuple(details.get("compute_capability") or (0, 0)))
    return capabilities


def mixed_precision_policy(mode: str = "auto", compute_capabilities=None) -> str:
    """The Keras dtype policy name for ``--mixed-precision auto|float16|bfloat16|off``.

    ``auto``: ``mixed_bfloat16`` when every visible GPU has compute capability >= 8.0 (Ampere and
    later run bfloat16 on tensor cores and need no loss scaling), ``mixed_float16`` on older GPUs,
    ``float32`` without a GPU (CPUs gain nothing from float16 and lose accuracy). An explicit
    ``float16`` / ``bfloat16`` is honoured as asked. ``compute_capabilities`` defaults to the
    visible GPUs (``gpu_compute_capabilities()``).

    Example:
        >>> mixed_precision_policy("auto", compute_capabilities=[(7, 0)])
        'mixed_float16'
        >>> mixed_precision_policy("bfloat16", compute_capabilities=[])
        'mixed_bfloat16'
    """
    if mode is None:
        mode = "auto"
    mode = str(mode).strip().lower()
    if mode not in MIXED_PRECISION_MODES:
        raise MtlError(f"unknown mixed-precision mode {mode!r}; choose one of: {', '.join(MIXED_PRECISION_MODES)}")
    if mode != "auto":
        return _POLICIES[mode]
    if compute_capabilities is None:
        compute_capabilities = gpu_compute_capabilities()
    capabilities = [tuple(c) for c in compute_capabilities]
    if not capabilities:
        return "float32"
    return "mixed_bfloat16" if min(capabilities) >= (8, 0) else "mixed_float16"


def set_mixed_precision(mode: str = "auto") -> str:
    """Set Keras' global dtype policy from ``mode`` (see ``mixed_precision_policy``); return its name.

    Call it before ``build_model``: layers take the policy that is global when they are created.
    Under ``mixed_float16`` Keras' ``compile`` wraps the optimizer in a ``LossScaleOptimizer`` itself;
    the task heads keep their outputs in float32.

    Example:
        >>> set_mixed_precision("off")
        'float32'
    """
    policy = mixed_precision_policy(mode)
    keras.mixed_precision.set_global_policy(policy)
    return policy


class ThroughputLogger(keras.callbacks.Callback):
    """Measure training images/s per epoch; add it to ``logs`` (so ``History``, ``CSVLogger`` and
    ``TensorBoard`` placed after it record ``images_per_second``) and print one line.

    The first batch of each epoch is left out of the rate (it includes graph tracing in epoch 1
    and the iterator start-up later), unless the epoch has only one step. Validation time is not
    counted. Works with ``steps_per_execution > 1`` (Keras reports the last batch index).

    Example:
        >>> cb = ThroughputLogger(batch_size=32, verbose=0)
        >>> cb.on_epoch_begin(0); cb.on_train_batch_end(0); cb.on_train_batch_end(9)
        >>> logs = {}; cb.on_epoch_end(0, logs); logs["images_per_second"] > 0
        True
    """

    def __init__(self, batch_size: int, examples_per_epoch: int | None = None, verbose: int = 1, print_fn=print):
        super().__init__()
        if int(batch_size) < 1:
            raise MtlError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.examples_per_epoch = None if examples_per_epoch is None else int(examples_per_epoch)
        self.verbose = verbose
        self.print_fn = print_fn
        self.history: list[float] = []
        self._clock = time.perf_counter

    def _images(self, batches: int) -> int:
        images = batches * self.batch_size
        if self.examples_per_epoch is not None:
            # The last batch of an epoch may be short.
            images = min(images, self.examples_per_epoch)
        return images

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._clock()
        self._first = None  # (time, batches done) after the first reported batch
        self._last = None

    def on_train_batch_end(self, batch, logs=None):
        now = (self._clock(), int(batch) + 1)
        if self._first is None:
            self._first = now
        self._last = now

    def on_epoch_end(self, epoch, logs=None):
        if self._last is None:
            return
        if self._last[1] > self._first[1]:
            seconds = self._last[0] - self._first[0]
            images = self._images(self._last[1]) - self._images(self._first[1])
        else:
            seconds = self._last[0] - self._start
            images = self._images(self._last[1])
        rate = images / max(seconds, 1e-9)
        self.history.append(rate)
        if logs is not None:
            logs["images_per_second"] = rate
        if self.verbose:
            self.print_fn(f"epoch {epoch + 1}: {rate:.1f} images/s (training, {images} images in {seconds:.1f} s)")
