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

    Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019:
    λ_k(t) = K·softmax_k(w_k / T) with w_k = L_k(t−1) / L_k(t−2) (``dwa_weights``). A task's epoch
    loss is its mean over the epoch's labelled samples: every step the training step reports each
    task's global-batch masked-mean loss and label count (``observe``), the balancer sums
    loss·count and count over the epoch, and ``on_epoch_end`` divides. Batches without labels for
    a task neither dilute its mean nor count; a task with no label in a whole epoch has no mean for
    it (0 in ``history``) and keeps the neutral rate 1 for the rates that epoch enters.

    The first two epochs use weight 1 for every task. The loss history, the weights and the running
    sums are model variables, so a resumed run (``BackupAndRestore``) or a reloaded model continues
    where it was.

    Example:
        >>> b = DWA(tasks=["a", "b"])
        >>> b.observe(ops.array([2.0, 2.0]), ops.array([4.0, 4.0])); b.on_epoch_end(0, {})
        >>> b.observe(ops.array([1.0, 2.0]), ops.array([4.0, 4.0])); b.on_epoch_end(1, {})
        >>> b.current_weights()
        {'a': 0.875647, 'b': 1.124353}
    """

    key = "dwa"

    def __init__(self, temperature: float = 2.0, **kwargs):
        self.temperature = float(temperature)
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        self.lambdas = self._state("lambdas", (num_tasks,), "ones")
        # Row 0: epoch t−1, row 1: epoch t−2 (0 where the task had no label that epoch);
        # epochs_seen says how many rows are real.
        self.history = self._state("loss_history", (2, num_tasks))
        self.epochs_seen = self._state("epochs_seen", ())
        # This epoch so far: Σ loss·count and Σ count over the steps.
        self.loss_sums = self._state("epoch_loss_sums", (num_tasks,))
        self.label_counts = self._state("epoch_label_counts", (num_tasks,))

    def task_weights(self):
        return ops.cast(self.lambdas, "float32")

    def observe(self, losses, counts):
        counts = ops.cast(counts, "float32")
        # A task without labels has loss 0 here; the product with count 0 adds nothing either way.
        self.loss_sums.assign(self.loss_sums + ops.cast(losses, "float32") * counts)
        self.label_counts.assign(self.label_counts + counts)

    def epoch_means(self) -> np.ndarray:
        """This epoch's mean loss over labelled samples per task so far; NaN for a task without labels.

        Returns:
            A float64 ``np.ndarray`` of K means.

        Example:
            >>> b = DWA(tasks=["a", "b"])
            >>> b.observe(ops.array([1.0, 0.0]), ops.array([2.0, 0.0]))
            >>> b.observe(ops.array([4.0, 0.0]), ops.array([1.0, 0.0]))
            >>> b.epoch_means().tolist()  # (1·2 + 4·1) / 3
            [2.0, nan]
        """
        sums = np.asarray(ops.convert_to_numpy(self.loss_sums), np.float64)
        counts = np.asarray(ops.convert_to_numpy(self.label_counts), np.float64)
        return np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), np.nan)

    def on_epoch_end(self, epoch, task_losses):
        # task_losses (Keras' <task>_loss logs) are averaged over all batches, labelled or not; the
        # sums from observe are what DWA needs.
        latest = np.nan_to_num(self.epoch_means(), nan=0.0)
        history = np.stack([latest, ops.convert_to_numpy(self.history)[0]])
        seen = float(ops.convert_to_numpy(self.epochs_seen)) + 1
        self.history.assign(history.astype("float32"))
        self.epochs_seen.assign(seen)
        self.loss_sums.assign(np.zeros_like(latest, "float32"))
        self.label_counts.assign(np.zeros_like(latest, "float32"))
        if seen >= 2:
            # 0 marks an epoch without labels: NaN gives that task rate 1 in dwa_weights.
            known = np.where(history > 0, history, np.nan)
            self.lambdas.assign(dwa_weights(known[0], known[1], self.temperature).astype("float32"))

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
