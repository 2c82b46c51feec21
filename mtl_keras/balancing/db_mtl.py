"""``db_mtl``: Dual-Balancing Multi-Task Learning (Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Tsang & Kwok, 2023)."""

from __future__ import annotations

from keras import ops

from mtl_keras.balancing.base import GramianBalancer, register_balancer


def db_mtl_weights(norms, present):
    """DB-MTL's gradient-magnitude balance: α_k = max_j ‖g_j‖ / ‖g_k‖ over the present tasks.

    Each task's contribution α_k·g_k then has the norm of the largest task gradient. A task with a
    zero norm (nothing to scale) or absent gets 0.

    Args:
        norms: ``[K]`` gradient norms (or their running estimates).
        present: ``[K]``, 1.0 for the tasks that take part.

    Returns:
        A ``[K]`` float32 tensor α.

    Example:
        >>> [float(a) for a in db_mtl_weights(ops.array([1.0, 4.0, 9.0, 0.0]), ops.array([1.0, 1.0, 0.0, 1.0]))]
        [4.0, 1.0, 0.0, 0.0]
    """
    norms = ops.cast(ops.convert_to_tensor(norms), "float32")
    present = ops.cast(ops.convert_to_tensor(present), "float32")
    return present * ops.divide_no_nan(ops.max(norms * present), norms)


@register_balancer
class DBMTL(GramianBalancer):
    """DB-MTL: balance the loss scales with a logarithm and the gradient magnitudes to the largest.

    Lin et al., "Dual-Balancing for Multi-Task Learning", arXiv:2308.12029, 2023. Update rule: each
    task's objective is log(L_k + ε) (loss-scale balancing; ``transform_losses``), g_k its gradient,
    and the update is Σ_k α_k g_k with α_k = max_j m_j / m_k (gradient-magnitude balancing,
    ``db_mtl_weights``), where m_k is a running estimate of ‖g_k‖: m_k ← β_t·m_k + (1 − β_t)·‖g_k‖,
    β_t = β / t^σ, t the number of steps the task was present.

    The paper (and LibMTL) keeps the moving average of the full gradients ĝ_k and sums α_k·ĝ_k.
    Here the average is kept on what the Gramian gives, the norms ‖g_k‖ = √G_kk, and the current
    gradients are summed: a K×|θ| buffer would cost K copies of the shared parameters (or of the
    features), and at the features level the gradients of different batches are on different
    samples, so averaging them is meaningless. The estimate is bias-corrected (divided by
    1 − Π β_t, per task), so the first steps and a task first seen late are not under-estimated;
    the ratios α are otherwise those of the uncorrected average. A step without a label for a task
    leaves its estimate alone. β = 0.9 and σ = 0 are LibMTL's defaults; ε = 1e-8 as LibMTL's.

    Args:
        beta: the moving-average rate β of the gradient norms.
        beta_sigma: σ in β_t = β / t^σ (0: a constant β).
        epsilon: ε in log(L_k + ε).
        grad_level: ``"features"`` or ``"parameters"``, where the task gradients are taken (``GramianBalancer``).

    Example:
        >>> b = DBMTL(tasks=["shape", "box"])
        >>> gram = ops.array([[1.0, 0.0], [0.0, 9.0]])  # norms 1 and 3
        >>> [round(float(v), 4) for v in b.rule(gram, ops.zeros(2), ops.ones(2))]  # both contributions of norm 3
        [3.0, 1.0]
        >>> round(float(b.transform_losses(ops.array([1.0, 0.5]), ops.ones(2))[1]), 4)  # log 0.5
        -0.6931
    """

    key = "db_mtl"

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.0, epsilon: float = 1e-8, **kwargs):
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.epsilon = float(epsilon)
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        self.norm_average = self._state("norm_average", (num_tasks,))
        # Π over the task's steps of the weights the average gave its start value (1 − this is the bias correction).
        self.start_weight = self._state("start_weight", (num_tasks,), "ones")
        self.seen = self._state("steps_seen", (num_tasks,))

    def transform_losses(self, losses, present):
        """log(L_k + ε): the loss-scale balance (the engine multiplies by ``present``).

        Args:
            losses: a ``[K]`` float32 tensor of task losses (global-batch values).
            present: a ``[K]`` float32 tensor, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` float32 tensor; its gradient is ∇L_k / (L_k + ε).

        Example:
            >>> b = DBMTL(tasks=["a"])
            >>> round(float(b.transform_losses(ops.array([1.0]), ops.ones(1))[0]), 6)
            0.0
        """
        return ops.log(ops.cast(losses, "float32") + self.epsilon)

    def norm_estimates(self):
        """The bias-corrected running gradient norms m_k (0 for a task never present).

        Returns:
            A ``[K]`` float32 tensor.

        Example:
            >>> b = DBMTL(tasks=["a", "b"])
            >>> _ = b.rule(ops.array([[4.0, 0.0], [0.0, 0.0]]), ops.zeros(2), ops.array([1.0, 0.0]))
            >>> [round(float(v), 4) for v in b.norm_estimates()]
            [2.0, 0.0]
        """
        return ops.divide_no_nan(ops.cast(self.norm_average, "float32"), 1.0 - ops.cast(self.start_weight, "float32"))

    def rule(self, gram, losses, present):
        """DB-MTL's α for this step's Gramian of the log-loss gradients; updates the running norms.

        Args:
            gram: ``[K, K]`` float32 Gramian of the task gradients (zero row and column for an absent task).
            losses: ``[K]`` log losses (unused: the rule looks at the gradients only).
            present: ``[K]`` float32, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` float32 tensor α (0 for absent tasks and tasks whose estimated norm is 0).

        Example:
            >>> b = DBMTL(tasks=["a", "b"], beta=0.5)
            >>> _ = b.rule(ops.array([[1.0, 0.0], [0.0, 1.0]]), ops.zeros(2), ops.ones(2))
            >>> [round(float(v), 4) for v in b.rule(ops.array([[4.0, 0.0], [0.0, 1.0]]), ops.zeros(2), ops.ones(2))]
            [1.0, 1.6667]
        """
        gram = ops.cast(gram, "float32")
        present = ops.cast(present, "float32")
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        seen = ops.cast(self.seen, "float32") + present
        rate = self.beta / ops.power(ops.maximum(seen, 1.0), self.beta_sigma)
        on = present > 0
        average = ops.where(on, rate * self.norm_average + (1.0 - rate) * norms, self.norm_average)
        start = ops.where(on, rate * self.start_weight, self.start_weight)
        self.norm_average.assign(average)
        self.start_weight.assign(start)
        self.seen.assign(seen)
        return db_mtl_weights(self.norm_estimates(), present)

    def get_config(self):
        return {
            **super().get_config(), "beta": self.beta, "beta_sigma": self.beta_sigma, "epsilon": self.epsilon,
        }
