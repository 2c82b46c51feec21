"""``cagrad``: Conflict-Averse Gradient descent (Liu, Liu, Jin, Stone & Liu, NeurIPS 2021)."""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.balancing.base import GramianBalancer, register_balancer
from mtl_keras.balancing.solvers import cagrad_dual
from mtl_keras.errors import MtlError

# The divisor of the update for each ``rescale`` of the paper's code: none, 1 + c², 1 + c.
RESCALES = (0, 1, 2)
# ‖g_w‖ from a float32 Gramian carries an error of about sqrt(eps·trace); below this fraction of the
# mean gradient norm λ = c‖g_0‖/‖g_w‖ would multiply rounding noise, so ‖g_w‖ is held at it.
_SMALLEST_GW = 1e-3


def cagrad_coefficients(gram, present, c: float = 0.4, rescale: int = 1):
    """CAGrad's update d = (g_0 + λ g_w) / s written as Σ_k coefficient_k g_k.

    g_0 is the mean of the present tasks' gradients, w the dual solution (``solvers.cagrad_dual``),
    g_w = Σ w_k g_k, λ = c‖g_0‖/‖g_w‖, and s = 1 + c² (``rescale=1``), 1 + c (2) or 1 (0). So the
    coefficients are (1/m + λ w_k)/s for the m present tasks. With c = 0 the update is the mean.

    Args:
        gram: the ``[K, K]`` Gramian of the task gradients.
        present: ``[K]``, 1.0 for the tasks present in the batch.
        c: the radius of the ball around g_0 the update may move in, relative to ‖g_0‖ (c ≥ 0).
        rescale: 0, 1 or 2, the paper's code's rescaling of the update (see above).

    Returns:
        A ``[K]`` float32 tensor of coefficients (0 for absent tasks).

    Raises:
        MtlError: a negative ``c`` or an unknown ``rescale``.

    Example:
        >>> gram = [[1.0, 0.0], [0.0, 1.0]]  # orthogonal unit gradients: g_w = g_0 by symmetry
        >>> [round(float(v), 4) for v in cagrad_coefficients(gram, [1.0, 1.0], c=0.0)]  # the mean
        [0.5, 0.5]
        >>> [round(float(v), 4) for v in cagrad_coefficients(gram, [1.0, 1.0], c=0.5)]  # (0.5 + 0.25) / 1.25
        [0.6, 0.6]
    """
    if c < 0:
        raise MtlError(f"CAGrad's c must be non-negative, got {c}")
    if rescale not in RESCALES:
        raise MtlError(f"rescale must be one of {RESCALES}, got {rescale!r}")
    g = tf.cast(tf.convert_to_tensor(gram), tf.float64)
    p = tf.cast(tf.convert_to_tensor(present) > 0, tf.float64)
    g = g * p[:, None] * p[None, :]
    m = tf.maximum(tf.reduce_sum(p), 1.0)
    w = tf.cast(cagrad_dual(g, p, c), tf.float64)
    mean_norm = tf.sqrt(tf.maximum(tf.reduce_sum(p * tf.linalg.matvec(g, p)), 0.0)) / m
    gw_norm = tf.sqrt(tf.maximum(tf.reduce_sum(w * tf.linalg.matvec(g, w)), 0.0))
    floor = _SMALLEST_GW * tf.sqrt(tf.maximum(tf.linalg.trace(g), 0.0) / m)
    lam = tf.math.divide_no_nan(c * mean_norm, tf.maximum(gw_norm, floor))
    divisor = {0: 1.0, 1: 1.0 + c * c, 2: 1.0 + c}[rescale]
    return tf.cast((p / m + lam * w) / divisor, tf.float32)


@register_balancer
class CAGrad(GramianBalancer):
    """CAGrad: the update that maximises the worst task's improvement within a ball around the mean gradient.

    Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021. Update rule:
    d* = argmax_d min_i g_i·d subject to ‖d − g_0‖ ≤ c‖g_0‖, g_0 the mean of the task gradients. Its
    dual is min_{w ∈ Δ} g_wᵀg_0 + c‖g_0‖‖g_w‖ over the simplex of the present tasks (solved in-graph,
    ``solvers.cagrad_dual``, where the paper's code calls scipy's SLSQP), and d* = g_0 + c‖g_0‖ g_w/‖g_w‖,
    divided by 1 + c² as in the paper's code (``rescale=1``; ``cagrad_coefficients``). c = 0 is
    plain gradient descent on the mean loss; c → ∞ approaches MGDA. c = 0.4 is the paper's value for
    NYU-v2 and Cityscapes (0.5 on Metaworld).

    Args:
        c: the ball's radius relative to ‖g_0‖ (default 0.4).
        rescale: 0 (none), 1 (÷ (1 + c²), default) or 2 (÷ (1 + c)), the paper's code's options.
        grad_level: ``"features"`` or ``"parameters"``, where the task gradients are taken (``GramianBalancer``).

    Raises:
        MtlError: a negative ``c`` or an unknown ``rescale``.

    Example:
        >>> b = CAGrad(tasks=["shape", "box"], c=0.0)
        >>> [round(float(v), 4) for v in b.rule(tf.constant([[1.0, -0.5], [-0.5, 2.0]]), tf.ones(2), tf.ones(2))]
        [0.5, 0.5]
    """

    key = "cagrad"

    def __init__(self, c: float = 0.4, rescale: int = 1, **kwargs):
        if c < 0:
            raise MtlError(f"CAGrad's c must be non-negative, got {c}")
        if rescale not in RESCALES:
            raise MtlError(f"rescale must be one of {RESCALES}, got {rescale!r}")
        self.c = float(c)
        self.rescale = int(rescale)
        super().__init__(**kwargs)

    def rule(self, gram, losses, present):
        """CAGrad's coefficients for this step's Gramian (``cagrad_coefficients``).

        Args:
            gram: ``[K, K]`` float32 Gramian of the task gradients (zero row and column for an absent task).
            losses: ``[K]`` transformed losses (unused: the rule looks at the gradients only).
            present: ``[K]`` float32, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` float32 tensor of coefficients (0 for absent tasks).

        Example:
            >>> b = CAGrad(tasks=["a", "b", "c"])
            >>> c = b.rule(tf.eye(3), tf.ones(3), tf.constant([1.0, 0.0, 1.0]))  # a and c present
            >>> [round(float(v), 4) for v in c]  # (1/2 + 0.4·1/2) / (1 + 0.4²)
            [0.6034, 0.0, 0.6034]
        """
        return cagrad_coefficients(gram, present, self.c, self.rescale)

    def get_config(self):
        return {**super().get_config(), "c": self.c, "rescale": self.rescale}
