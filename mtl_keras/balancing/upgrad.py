"""``upgrad``: Unconflicting Projection of Gradients (Quinton & Rey, "Jacobian Descent for Multi-Objective
Optimization", arXiv 2406.16232, 2024)."""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.balancing.base import GramianBalancer, register_balancer
from mtl_keras.balancing.solvers import lower_bounded_qp
from mtl_keras.errors import MtlError


def upgrad_coefficients(gram, present, reg_eps: float = 1e-4):
    """UPGrad's coefficients: Σ_i of the projections of g_i/m onto the dual cone of the task gradients.

    The projection of Jᵀu onto the dual cone {d : g_k·d ≥ 0 for every k} is Jᵀv with v the minimiser
    of ½vᵀGv subject to v ≥ u (the paper's Proposition 1; ``solvers.lower_bounded_qp``). With
    u = e_i/m for each present task i (the mean's preference weights) the update is Jᵀ Σ_i v_i. As in
    TorchJD, G is divided by its trace and ``reg_eps``·I is added, which makes the QP strictly
    convex; the aggregate then has g_k·d ≥ −reg_eps·trace(G)·c_k at worst, and is exactly the mean
    where no two gradients conflict (G ≥ 0 entrywise, so v_i = u_i is feasible and optimal).

    Args:
        gram: the ``[K, K]`` Gramian of the task gradients.
        present: ``[K]``, 1.0 for the tasks present in the batch.
        reg_eps: the ridge on the trace-normalised Gramian (TorchJD's default 1e-4).

    Returns:
        A ``[K]`` float32 tensor of coefficients (0 for absent tasks).

    Raises:
        MtlError: a negative ``reg_eps``.

    Example:
        >>> [round(float(v), 4) for v in upgrad_coefficients([[1.0, 0.5], [0.5, 1.0]], [1.0, 1.0])]  # no conflict
        [0.5, 0.5]
        >>> [round(float(v), 3) for v in upgrad_coefficients([[1.0, -0.5], [-0.5, 1.0]], [1.0, 1.0])]
        [0.75, 0.75]
    """
    if reg_eps < 0:
        raise MtlError(f"reg_eps must be non-negative, got {reg_eps}")
    g = tf.cast(tf.convert_to_tensor(gram), tf.float64)
    p = tf.cast(tf.convert_to_tensor(present) > 0, tf.float64)
    g = g * p[:, None] * p[None, :]
    trace = tf.reduce_sum(tf.linalg.diag_part(g))
    g = tf.math.divide_no_nan(g, trace) + reg_eps * tf.linalg.diag(p)
    lower = tf.linalg.diag(p / tf.maximum(tf.reduce_sum(p), 1.0))
    return tf.reduce_sum(lower_bounded_qp(g, lower, p), axis=0)


@register_balancer
class UPGrad(GramianBalancer):
    """UPGrad: each task's gradient projected onto the dual cone of all of them, then averaged.

    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization" (arXiv 2406.16232, 2024).
    Update rule: d = (1/m) Σ_i π_J(g_i) over the m present tasks, π_J the projection onto the dual
    cone {x : g_k·x ≥ 0 for every k}; each projection is a QP on the Gramian solved in-graph
    (``upgrad_coefficients``), so d never conflicts with any task (g_k·d ≥ 0) and is the plain mean
    when no gradients conflict. The paper's preference weights are uniform (TorchJD's default).

    Args:
        reg_eps: the ridge added to the trace-normalised Gramian (TorchJD's default 1e-4). TorchJD's
            absolute ``norm_eps`` (a Gramian with trace below it is treated as zero) is not kept: the
            gradients with respect to the features are small in absolute terms; only a zero Gramian is.
        grad_level: ``"features"`` or ``"parameters"``, where the task gradients are taken (``GramianBalancer``).

    Raises:
        MtlError: a negative ``reg_eps``.

    Example:
        >>> b = UPGrad(tasks=["shape", "box"])
        >>> gram = tf.constant([[1.0, -1.0], [-1.0, 4.0]])  # conflicting
        >>> c = b.rule(gram, tf.ones(2), tf.ones(2))
        >>> [round(float(v), 3) for v in c]  # g1/2 gains g2/8, g2/2 gains g1/2
        [1.0, 0.625]
        >>> [round(float(v), 3) for v in tf.linalg.matvec(gram, c)]  # g_k·d ≥ 0: no task is hurt
        [0.375, 1.5]
    """

    key = "upgrad"

    def __init__(self, reg_eps: float = 1e-4, **kwargs):
        if reg_eps < 0:
            raise MtlError(f"reg_eps must be non-negative, got {reg_eps}")
        self.reg_eps = float(reg_eps)
        super().__init__(**kwargs)

    def rule(self, gram, losses, present):
        """UPGrad's coefficients for this step's Gramian (``upgrad_coefficients``).

        Args:
            gram: ``[K, K]`` float32 Gramian of the task gradients (zero row and column for an absent task).
            losses: ``[K]`` transformed losses (unused: the rule looks at the gradients only).
            present: ``[K]`` float32, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` float32 tensor of coefficients (0 for absent tasks).

        Example:
            >>> b = UPGrad(tasks=["a", "b", "c"])
            >>> [round(float(v), 4) for v in b.rule(tf.eye(3), tf.ones(3), tf.constant([1.0, 1.0, 0.0]))]
            [0.5, 0.5, 0.0]
        """
        return upgrad_coefficients(gram, present, self.reg_eps)

    def get_config(self):
        return {**super().get_config(), "reg_eps": self.reg_eps}
