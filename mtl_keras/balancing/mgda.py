"""``mgda``: MGDA-UB, multi-task learning as multi-objective optimisation (Sener & Koltun, NeurIPS 2018)."""

from __future__ import annotations

from keras import ops

from mtl_keras.balancing.base import GramianBalancer, register_balancer
from mtl_keras.balancing.solvers import min_norm_weights
from mtl_keras.errors import MtlError

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def mgda_weights(gram, losses, present, normalization: str = "none"):
    """MGDA's weights: the min-norm point of the convex hull of the (normalised) task gradients.

    The gradients are first divided by n_k: 1 (``"none"``), ‖g_k‖ (``"l2"``), L_k (``"loss"``) or
    L_k·‖g_k‖ (``"loss+"``), the variants of the paper's code (``gradient_normalizers``); on the
    Gramian that is G[k, l] / (n_k n_l). The weights w found there are applied to the raw losses, as
    the paper's code does (LibMTL instead applies them to the normalised gradients, i.e. w_k / n_k).
    A non-positive n_k (a zero gradient, a zero loss) is taken as 1: a zero gradient in the hull
    makes the min-norm point 0, MGDA's "Pareto-stationary, no common descent direction".

    Args:
        gram: the ``[K, K]`` Gramian G[k, l] = g_k·g_l.
        losses: ``[K]`` global-batch losses L_k (used by ``"loss"`` and ``"loss+"``).
        present: ``[K]``, 1.0 for the tasks on the simplex.
        normalization: one of ``"none"``, ``"l2"``, ``"loss"``, ``"loss+"``.

    Returns:
        A ``[K]`` float32 tensor on the simplex of the present tasks (0 for absent ones).

    Raises:
        MtlError: an unknown ``normalization``.

    Example:
        >>> gram = [[1.0, 0.0], [0.0, 4.0]]  # orthogonal, norms 1 and 2
        >>> [round(float(w), 4) for w in mgda_weights(gram, [1.0, 1.0], [1.0, 1.0])]  # w ∝ 1/‖g_k‖²
        [0.8, 0.2]
        >>> [round(float(w), 4) for w in mgda_weights(gram, [1.0, 1.0], [1.0, 1.0], "l2")]  # unit gradients
        [0.5, 0.5]
    """
    if normalization not in NORMALIZATIONS:
        raise MtlError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    gram = ops.cast(ops.convert_to_tensor(gram), "float32")
    losses = ops.cast(ops.convert_to_tensor(losses), "float32")
    norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
    scale = {"none": ops.ones_like(losses), "l2": norms, "loss": losses, "loss+": losses * norms}[normalization]
    scale = ops.where((scale > 0) & ops.isfinite(scale), scale, 1.0)
    return min_norm_weights(gram / ops.outer(scale, scale), present)


@register_balancer
class MGDA(GramianBalancer):
    """MGDA-UB: the update is the min-norm element of the convex hull of the task gradients.

    Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018. Update rule:
    w = argmin_{w ∈ Δ} ‖Σ_k w_k g_k‖² over the simplex of the tasks present in the batch (the
    Frank-Wolfe problem of the paper, solved exactly here: ``solvers.min_norm_weights``), and the
    shared update is Σ_k w_k g_k, a direction that decreases every task's loss unless it is 0
    (Pareto-stationary). The paper's upper bound (MGDA-UB) takes the gradients with respect to the
    shared representation: that is ``grad_level="features"``, the default. ``normalization`` is the
    paper's code's optional gradient normalisation (``mgda_weights``).

    Args:
        normalization: ``"none"`` (default), ``"l2"``, ``"loss"`` or ``"loss+"`` (``mgda_weights``).
        grad_level: ``"features"`` or ``"parameters"``, where the task gradients are taken (``GramianBalancer``).

    Raises:
        MtlError: an unknown ``normalization``.

    Example:
        >>> b = MGDA(tasks=["shape", "box"])
        >>> gram = ops.array([[1.0, -1.0], [-1.0, 4.0]])  # conflicting
        >>> [round(float(v), 4) for v in b.rule(gram, ops.ones(2), ops.ones(2))]  # (4 + 1) / (1 + 4 + 2)
        [0.7143, 0.2857]
    """

    key = "mgda"

    def __init__(self, normalization: str = "none", **kwargs):
        if normalization not in NORMALIZATIONS:
            raise MtlError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
        self.normalization = normalization
        super().__init__(**kwargs)

    def rule(self, gram, losses, present):
        """MGDA's min-norm weights for this step's Gramian (``mgda_weights``).

        Args:
            gram: ``[K, K]`` float32 Gramian of the task gradients (zero row and column for an absent task).
            losses: ``[K]`` global-batch losses (read by the ``"loss"`` and ``"loss+"`` normalisations).
            present: ``[K]`` float32, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` float32 tensor on the simplex of the present tasks.

        Example:
            >>> b = MGDA(tasks=["a", "b"])
            >>> [round(float(v), 4) for v in b.rule(ops.ones((2, 2)), ops.ones(2), ops.array([0.0, 1.0]))]
            [0.0, 1.0]
        """
        return mgda_weights(gram, losses, present, self.normalization)

    def get_config(self):
        return {**super().get_config(), "normalization": self.normalization}
