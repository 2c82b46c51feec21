"""``imtl``: Impartial Multi-Task Learning (Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, ICLR 2021)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops

from mtl_keras.balancing.base import GramianBalancer, register_balancer


def imtl_weights(gram, present):
    """IMTL-G's α: Σ_k α_k = 1 and g = Σ_k α_k g_k has the same projection g·u_i on every unit u_i = g_i/‖g_i‖.

    With M[i, k] = u_i·g_k the conditions are M α = t·1 and 1ᵀα = 1, so α ∝ M⁻¹1 = G⁻¹n (n the
    gradient norms; the paper's closed form α₂..K = g₁Uᵀ(DUᵀ)⁻¹ is the same solution). Here they are
    solved as one linear system in the coefficients β_k = α_k‖g_k‖/max‖g‖ of the unit vectors, whose
    block is the cosine matrix (unit-free, well scaled even when the norms differ by orders of
    magnitude), with the minimum-norm least-squares solution (the pseudo-inverse's): where the
    conditions leave a choice (identical or collinear gradients) it takes the smallest β, e.g. equal
    weights for identical gradients, instead of failing on a singular matrix. Where the gradients
    admit no aggregate but 0 (g₂ = −g₁), the α returned gives 0. Tasks that are absent, or whose
    gradient is exactly zero (no direction to be impartial to), take no part and get α = 0; the
    others get what IMTL-G gives them alone.

    Args:
        gram: the ``[K, K]`` Gramian G[k, l] = g_k·g_l (array or tensor).
        present: ``[K]``, 1.0 for the tasks that take part.

    Returns:
        A ``[K]`` float32 tensor α (summing to 1 over the tasks that take part; all 0 if none does).

    Example:
        >>> g = ops.array([[1.0, 0.0], [0.0, 2.0]])  # orthogonal, norms 1 and 2
        >>> [round(float(a), 4) for a in imtl_weights(g @ ops.transpose(g), ops.ones(2))]  # α ∝ 1/‖g_k‖
        [0.6667, 0.3333]
    """
    gram = ops.cast(ops.convert_to_tensor(gram), "float32")
    present = ops.cast(ops.convert_to_tensor(present), "float32")
    num = gram.shape[0]
    diag = ops.diagonal(gram) * present
    active = present * ops.cast(diag > 0, "float32")
    largest = ops.max(diag * active)
    nu = ops.sqrt(ops.divide_no_nan(diag * active, largest))  # ‖g_k‖ / max‖g‖, 0 where not taking part
    cosines = ops.divide_no_nan(ops.divide_no_nan(gram, largest) * ops.outer(active, active), ops.outer(nu, nu))
    # Σ_k α_k = Σ_k β_k/ν_k = 1, the row divided by its largest entry (1/ν_min) to keep it within [0, 1].
    nu_min = ops.min(ops.where(active > 0, nu, 1.0))
    total_row = active * ops.divide_no_nan(nu_min, nu)
    system = ops.concatenate(
        [
            ops.concatenate([cosines, -active[:, None]], axis=1),  # cosines·β − τ = 0 for each task taking part
            ops.concatenate([total_row, ops.zeros((1,), "float32")])[None, :],
        ],
        axis=0,
    )
    rhs = ops.one_hot(num, num + 1, dtype="float32") * nu_min
    solution = ops.cast(_min_norm_solution(system, rhs)[:num], "float32")
    return active * ops.divide_no_nan(solution, nu)


def _min_norm_solution(system, rhs):
    # pinv(system)·rhs from the eigendecomposition of systemᵀ·system in float64 (where squaring the
    # condition number costs nothing at K×K): XLA compiles eigh about three times faster than the SVD
    # of tf.linalg.pinv. Singular values below pinv's float32 cut-off are the Gramian's rounding noise.
    a = ops.cast(system, "float64")
    mu, basis = tf.linalg.eigh(ops.matmul(ops.transpose(a), a))
    cutoff = 10.0 * a.shape[0] * np.finfo(np.float32).eps
    kept = mu > cutoff * cutoff * ops.max(mu)
    inverse = ops.where(kept, 1.0 / ops.where(kept, mu, 1.0), 0.0)
    projected = ops.matmul(ops.transpose(basis), ops.matmul(ops.transpose(a), ops.cast(rhs, "float64")[:, None]))
    return ops.matmul(basis, inverse[:, None] * projected)[:, 0]


@register_balancer
class IMTL(GramianBalancer):
    """IMTL: the update has equal projections on every task's unit gradient (IMTL-G), on learned loss scales (IMTL-L).

    Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021. Update rule (IMTL-G): with the
    task gradients g_k and u_k = g_k/‖g_k‖, the shared update is g = Σ_k α_k g_k where Σ_k α_k = 1
    and g·u_i is the same for every task i (``imtl_weights``, the closed form on the Gramian), so no
    task's direction is favoured whatever the gradients' magnitudes. Tasks absent from the batch or
    with a zero gradient take no part (α = 0). With ``loss_scale`` (the paper's hybrid IMTL, and
    LibMTL's, hence the default) every task's loss is replaced by IMTL-L's e^{s_k}·L_k − s_k with a
    learned s_k (a trainable variable of the balancer, 0 at the start, saved with the model): the
    gradients balanced are those of e^{s_k}·L_k, the heads get their sum, and s_k gets e^{s_k}·L_k − 1,
    which drives e^{s_k}·L_k to 1 (the scale-invariant loss). A task absent from the batch leaves its
    s_k alone. ``loss_scale=False`` is IMTL-G alone on the plain losses.

    Args:
        loss_scale: learn the IMTL-L scales s_k (the hybrid IMTL) or balance the plain losses (IMTL-G).
        grad_level: ``"features"`` or ``"parameters"``, where the task gradients are taken (``GramianBalancer``).

    Example:
        >>> b = IMTL(tasks=["shape", "box"])
        >>> gram = ops.array([[1.0, 0.0], [0.0, 4.0]])  # orthogonal, norms 1 and 2
        >>> [round(float(v), 4) for v in b.rule(gram, ops.zeros(2), ops.ones(2))]
        [0.6667, 0.3333]
        >>> float(b.transform_losses(ops.array([2.0, 3.0]), ops.ones(2))[0])  # e⁰·2 − 0
        2.0
    """

    key = "imtl"

    def __init__(self, loss_scale: bool = True, **kwargs):
        self.loss_scale = bool(loss_scale)
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        if self.loss_scale:
            self.log_scales = self.add_weight(name="loss_scales", shape=(num_tasks,), initializer="zeros", trainable=True)

    def transform_losses(self, losses, present):
        """IMTL-L's e^{s_k}·L_k − s_k with ``loss_scale`` (the engine multiplies by ``present``), else L_k.

        Args:
            losses: a ``[K]`` float32 tensor of task losses.
            present: a ``[K]`` float32 tensor, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` float32 tensor, differentiable in ``losses`` and in the scales s.

        Example:
            >>> b = IMTL(tasks=["a", "b"]); _ = b.log_scales.assign([0.0, 1.0])
            >>> [round(float(v), 4) for v in b.transform_losses(ops.array([2.0, 1.0]), ops.ones(2))]  # 2; e − 1
            [2.0, 1.7183]
        """
        losses = ops.cast(losses, "float32")
        if not self.loss_scale:
            return losses
        s = ops.cast(self.log_scales, "float32")
        return ops.exp(s) * losses - s

    def rule(self, gram, losses, present):
        """IMTL-G's α for this step's Gramian (``imtl_weights``).

        Args:
            gram: ``[K, K]`` float32 Gramian of the task gradients (zero row and column for an absent task).
            losses: ``[K]`` transformed losses (unused: the rule looks at the gradients only).
            present: ``[K]`` float32, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` float32 tensor α, summing to 1 over the present tasks with a nonzero gradient.

        Example:
            >>> b = IMTL(tasks=["a", "b", "c"], loss_scale=False)
            >>> [round(float(v), 4) for v in b.rule(ops.eye(3), ops.zeros(3), ops.array([1.0, 0.0, 1.0]))]
            [0.5, 0.0, 0.5]
        """
        return imtl_weights(gram, present)

    def get_config(self):
        return {**super().get_config(), "loss_scale": self.loss_scale}
