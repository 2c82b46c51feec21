"""Training callbacks of mtl_keras."""

from __future__ import annotations

import math
import time

import keras

from mtl_keras.errors import MtlError


class NonFiniteLoss(RuntimeError):
    """Raised from inside ``fit`` when a task's loss becomes NaN or infinite."""

    def __init__(self, task: str, epoch: int, batch: int, value: float):
        super().__init__(f"loss of task {task!r} became {value} at epoch {epoch + 1}, batch {batch + 1}")
        self.task, self.epoch, self.batch, self.value = task, epoch, batch, value


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training the moment any task's loss is non-finite, naming that task.

    Keras' ``TerminateOnNaN`` only sees the total and lets the epoch end, so ``BackupAndRestore``
    would then save the broken weights; raising here keeps the last good backup intact.

    Example:
        >>> cb = StopOnNonFiniteLoss(["box"])
        >>> cb.on_train_batch_end(0, {"box_loss": float("nan"), "loss": float("nan")})
        Traceback (most recent call last):
        ...
        mtl_keras.train.callbacks.NonFiniteLoss: loss of task 'box' became nan at epoch 1, batch 1
    """

    def __init__(self, task_names):
        super().__init__()
        self.task_names = list(task_names)
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        for name in self.task_names:
            value = logs.get(f"{name}_loss")
            if value is not None and not math.isfinite(float(value)):
                raise NonFiniteLoss(name, self.epoch, batch, float(value))
        value = logs.get("loss")
        if value is not None and not math.isfinite(float(value)):
            raise NonFiniteLoss("(total)", self.epoch, batch, float(value))


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
