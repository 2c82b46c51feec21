"""``gls``: Geometric Loss Strategy (Chennupati, Sistu, Yogamani & Rawashdeh, CVPR Workshops 2019)."""

from __future__ import annotations

import keras
from keras import ops

from mtl_keras.balancing.base import Balancer, register_balancer
from mtl_keras.balancing.global_objective import global_objective


def geometric_mean_loss(losses, present, epsilon: float = 1e-8):
    """The GLS objective (Π_k L_k)^{1/K} over the present tasks, and its slopes ∂/∂L_k.

    Computed as exp(mean_k log(L_k + ε)), which stays finite where the product of many small or
    large losses would not; the slope of task k is GLS / (K·(L_k + ε)), 0 for an absent task.

    Args:
        losses: a ``[K]`` float32 tensor of (global-batch) task losses.
        present: a ``[K]`` float32 tensor, 1.0 where the task has a label in the batch.
        epsilon: ε added to every loss before the logarithm.

    Returns:
        ``(value, slopes)``: a scalar float32 tensor (0 when no task is present) and a ``[K]`` one.

    Example:
        >>> value, slopes = geometric_mean_loss(ops.array([1.0, 4.0, 9.0]), ops.array([1.0, 1.0, 0.0]), 0.0)
        >>> float(value), [float(s) for s in slopes]  # √(1·4); 2/(2·1), 2/(2·4)
        (2.0, [1.0, 0.25, 0.0])
    """
    losses = ops.cast(losses, "float32")
    present = ops.cast(present, "float32")
    count = ops.sum(present)
    shifted = losses + epsilon
    # Absent tasks enter the logarithm as 1 so that they add nothing, not log 0.
    logs = ops.log(ops.where(present > 0, shifted, 1.0))
    value = ops.where(count > 0, ops.exp(ops.sum(present * logs) / ops.maximum(count, 1.0)), 0.0)
    slopes = present * ops.divide_no_nan(value, ops.maximum(count, 1.0) * shifted)
    return value, slopes


@register_balancer
class GLS(Balancer):
    """The geometric mean of the task losses as the objective: L = (Π_{k present} L_k)^{1/K}.

    Chennupati et al., "MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss Strategy
    for Multi-Task Learning", CVPR Workshops 2019. No state and no hyperparameter: the gradient is
    Σ_k (L/(K·L_k))·∇L_k, so each task is weighted by the inverse of its own loss (scale-invariant)
    times the common geometric mean. K counts the tasks with a label in the global batch; an absent
    task is left out of the product. Under a distribution strategy the geometric mean is taken of
    the global losses (``global_objective``). ``task_weights`` reports the last step's slopes
    L/(K·L_k).

    Example:
        >>> b = GLS(tasks=["a", "b"])
        >>> round(float(b.combine(ops.array([2.0, 8.0]), ops.array([1.0, 1.0]))), 4)  # √16
        4.0
        >>> b.current_weights()  # 4/(2·2), 4/(2·8)
        {'a': 1.0, 'b': 0.25}
    """

    key = "gls"

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        self.epsilon = float(epsilon)
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        # The slopes of the last step, for logs; 1/K (equal losses) before the first one.
        self.last_weights = self._state("last_weights", (num_tasks,), keras.initializers.Constant(1.0 / num_tasks))

    def task_weights(self):
        return ops.cast(self.last_weights, "float32")

    def combine(self, losses, present, replica_scale=1.0):
        def geometric(global_losses):
            value, slopes = geometric_mean_loss(global_losses, present, self.epsilon)
            self.last_weights.assign(slopes)
            return value, slopes

        return global_objective(geometric, losses, replica_scale)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
