"""Training callbacks of mtl_keras."""

from __future__ import annotations

import math

import keras


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
        mtl_keras.callbacks.NonFiniteLoss: loss of task 'box' became nan at epoch 1, batch 1
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
