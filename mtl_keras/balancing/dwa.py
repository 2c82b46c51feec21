"""``dwa``: Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

import numpy as np
from keras import ops

from mtl_keras.balancing.base import Balancer, register_balancer


def dwa_weights(previous, before_previous, temperature: float = 2.0) -> np.ndarray:
    """λ_k = K·softmax(w_k / T) with w_k = L_k(t−1) / L_k(t−2), from two epochs' mean losses.

    Args:
        previous: the K epoch-mean losses of epoch t−1 (any sequence of floats).
        before_previous: the K epoch-mean losses of epoch t−2; a non-finite or non-positive entry gives rate 1.
        temperature: the softmax temperature T (larger is more uniform); default 2.0 as in the paper.

    Returns:
        A float64 ``np.ndarray`` of K weights that sums to K.

    Example:
        >>> [round(float(v), 4) for v in dwa_weights([1.0, 2.0], [2.0, 2.0])]  # w = (0.5, 1)
        [0.8756, 1.1244]
    """
    previous = np.asarray(previous, np.float64)
    before_previous = np.asarray(before_previous, np.float64)
    # A task with no usable history (absent, or a zero loss) keeps the neutral rate 1.
    ok = np.isfinite(previous) & np.isfinite(before_previous) & (before_previous > 0)
    rate = np.where(ok, previous / np.where(ok, before_previous, 1.0), 1.0)
    z = rate / float(temperature)
    e = np.exp(z - z.max())
    return len(rate) * e / e.sum()


@register_balancer
class DWA(Balancer):
    """Weights from how fast each task's epoch-mean loss fell over the last two epochs.

    The first two epochs use weight 1 for every task. The loss history and the weights are model
    variables, so a resumed run (``BackupAndRestore``) or a reloaded model continues where it was.

    Example:
        >>> b = DWA(tasks=["a", "b"])
        >>> b.on_epoch_end(0, {"a": 2.0, "b": 2.0}); b.on_epoch_end(1, {"a": 1.0, "b": 2.0})
        >>> b.current_weights()
        {'a': 0.875647, 'b': 1.124353}
    """

    key = "dwa"

    def __init__(self, temperature: float = 2.0, **kwargs):
        self.temperature = float(temperature)
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        self.lambdas = self._state("lambdas", (num_tasks,), "ones")
        # Row 0: epoch t−1, row 1: epoch t−2; epochs_seen says how many rows are real.
        self.history = self._state("loss_history", (2, num_tasks))
        self.epochs_seen = self._state("epochs_seen", ())

    def task_weights(self):
        return ops.cast(self.lambdas, "float32")

    def on_epoch_end(self, epoch, task_losses):
        if not all(n in task_losses for n in self.task_names):
            return
        latest = np.array([float(task_losses[n]) for n in self.task_names])
        history = ops.convert_to_numpy(self.history)
        history = np.stack([latest, history[0]])
        seen = float(ops.convert_to_numpy(self.epochs_seen)) + 1
        self.history.assign(history.astype("float32"))
        self.epochs_seen.assign(seen)
        if seen >= 2:
            self.lambdas.assign(dwa_weights(history[0], history[1], self.temperature).astype("float32"))

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
