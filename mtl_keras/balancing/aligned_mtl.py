"""``aligned_mtl``: Aligned-MTL, independent component alignment (Senushkin, Patakin, Kuznetsov & Konushin, CVPR 2023)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops

from mtl_keras.balancing.base import GramianBalancer, register_balancer
from mtl_keras.errors import MtlError

SCALES = ("min", "median", "rmse")


def aligned_mtl_matrix(gram, present, scale: str = "min"):
    """B with Ĝ = G·B: the task-gradient matrix G = [g_1 … g_K] with every nonzero singular value set to one.

    From the eigendecomposition of the Gramian GᵀG = V Λ Vᵀ (Λ = Σ², the squared singular values
    of G), B = σ·V_r Λ_r^{-1/2} V_rᵀ over the r eigenvalues above the rank tolerance
    max λ · K · ε (as the authors' code: directions the gradients do not span are dropped, so B stays
    finite for collinear, identical or zero gradients). Then Ĝ = G B = σ·U_r V_rᵀ, the closest matrix
    to G with orthogonal columns of equal norm, scaled by σ: √λ_min of the kept eigenvalues
    (``"min"``, the paper's), their (lower) median (``"median"``) or their root mean square
    (``"rmse"``). Its condition number is 1: BᵀGᵀGB = σ²·V_r V_rᵀ. B does not change when G is
    scaled, so the Gramian is normalised by its trace before ``tf.linalg.eigh`` (float32 range).

    Args:
        gram: the ``[K, K]`` Gramian GᵀG (array or tensor).
        present: ``[K]``, 1.0 for the tasks that take part (the others' rows and columns of B are 0).
        scale: ``"min"``, ``"median"`` or ``"rmse"``, the common singular value σ.

    Returns:
        A ``[K, K]`` float32 tensor B (all 0 when no task has a nonzero gradient).

    Example:
        >>> g = np.array([[2.0, 0.0], [0.0, 1.0]])  # orthogonal: B only rescales, to the smaller norm
        >>> np.round(np.asarray(aligned_mtl_matrix(g @ g.T, np.ones(2, "float32"))), 4).tolist()
        [[0.5, 0.0], [0.0, 1.0]]
    """
    gram = ops.cast(ops.convert_to_tensor(gram), "float32")
    present = ops.cast(ops.convert_to_tensor(present), "float32")
    num = gram.shape[0]
    active = present * ops.cast(ops.diagonal(gram) > 0, "float32")
    mask = ops.outer(active, active)
    gram = gram * mask
    gram = ops.divide_no_nan(gram, ops.trace(gram))
    lam, vec = tf.linalg.eigh(ops.cast(gram, "float64"))  # ascending
    lam, vec = ops.cast(lam, "float32"), ops.cast(vec, "float32")
    kept = lam > ops.max(lam) * num * np.finfo(np.float32).eps
    rank = ops.sum(ops.cast(kept, "int32"))
    lam_kept = ops.where(kept, lam, 0.0)
    if scale == "min":
        squared = ops.min(ops.where(kept, lam, ops.max(lam)))
    elif scale == "median":
        # The kept eigenvalues are the last r of the ascending list: the lower median is at K − r + (r − 1) // 2.
        squared = ops.take(lam, ops.clip(num - rank + (rank - 1) // 2, 0, num - 1))
    elif scale == "rmse":
        squared = ops.divide_no_nan(ops.sum(lam_kept), ops.cast(rank, "float32"))
    else:
        raise MtlError(f"aligned_mtl scale must be one of {', '.join(SCALES)}, got {scale!r}")
    inverse_sqrt = ops.where(kept, ops.rsqrt(ops.where(kept, lam, 1.0)), 0.0)
    b = ops.sqrt(ops.maximum(squared, 0.0)) * ops.matmul(vec * inverse_sqrt[None, :], ops.transpose(vec))
    return b * mask


def aligned_mtl_weights(gram, present, scale: str = "min"):
    """Aligned-MTL's coefficients c = B·1: the update Ĝ·1 = Σ_k c_k g_k sums the aligned task gradients.

    Args:
        gram: the ``[K, K]`` Gramian (array or tensor).
        present: ``[K]``, 1.0 for the tasks that take part.
        scale: ``"min"``, ``"median"`` or ``"rmse"`` (``aligned_mtl_matrix``).

    Returns:
        A ``[K]`` float32 tensor (0 for the tasks that take no part).

    Example:
        >>> g = np.array([[1.0, 1.0], [1.0, 1.0]])  # identical: rank 1, the plain sum
        >>> [round(float(c), 4) for c in aligned_mtl_weights(g @ g.T, np.ones(2, "float32"))]
        [1.0, 1.0]
    """
    present = ops.cast(ops.convert_to_tensor(present), "float32")
    return ops.matmul(aligned_mtl_matrix(gram, present, scale), present[:, None])[:, 0]


@register_balancer
class AlignedMTL(GramianBalancer):
    """Aligned-MTL: align the task gradients' principal components so the system is perfectly conditioned.

    Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023. Update
    rule: with G = [g_1 … g_K] = U Σ Vᵀ (rank r), the aligned matrix is Ĝ = σ·U_r V_rᵀ (every
    nonzero singular value replaced by σ = σ_min by default, condition number 1) and the update is
    Ĝ·1 = Σ_k c_k g_k, c = σ·V_r Σ_r⁻¹ V_rᵀ·1 (``aligned_mtl_weights``): all in-graph from the
    eigendecomposition of the K×K Gramian (``tf.linalg.eigh``), rank-aware. Tasks absent from the
    batch or with a zero gradient take no part (c = 0). Identical gradients give the plain sum.

    Args:
        scale: ``"min"`` (the paper's), ``"median"`` or ``"rmse"``: the common singular value σ.
        grad_level: ``"features"`` or ``"parameters"``, where the task gradients are taken (``GramianBalancer``).

    Raises:
        MtlError: an unknown ``scale``.

    Example:
        >>> b = AlignedMTL(tasks=["shape", "box"])
        >>> gram = ops.array([[4.0, 0.0], [0.0, 1.0]])  # orthogonal, norms 2 and 1: both scaled to 1
        >>> [float(v) for v in b.rule(gram, ops.zeros(2), ops.ones(2))]
        [0.5, 1.0]
    """

    key = "aligned_mtl"

    def __init__(self, scale: str = "min", **kwargs):
        if scale not in SCALES:
            raise MtlError(f"aligned_mtl scale must be one of {', '.join(SCALES)}, got {scale!r}")
        self.scale = scale
        super().__init__(**kwargs)

    def rule(self, gram, losses, present):
        """Aligned-MTL's coefficients for this step's Gramian (``aligned_mtl_weights``).

        Args:
            gram: ``[K, K]`` float32 Gramian of the task gradients (zero row and column for an absent task).
            losses: ``[K]`` transformed losses (unused: the rule looks at the gradients only).
            present: ``[K]`` float32, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` float32 tensor c (0 for absent tasks).

        Example:
            >>> b = AlignedMTL(tasks=["a", "b", "c"])
            >>> [float(v) for v in b.rule(ops.eye(3), ops.zeros(3), ops.array([1.0, 1.0, 0.0]))]
            [1.0, 1.0, 0.0]
        """
        return aligned_mtl_weights(gram, present, self.scale)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
