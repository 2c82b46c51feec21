"""``nash_mtl``: multi-task learning as a bargaining game (Navon, Shamsian, Achituve, Maron, Kawaguchi,
Chechik & Fetaya, ICML 2022)."""

from __future__ import annotations

from keras import ops

from mtl_keras.balancing.base import GramianBalancer, register_balancer
from mtl_keras.balancing.solvers import bargaining_weights
from mtl_keras.errors import MtlError


def nash_mtl_weights(gram, present):
    """Nash-MTL's α: the positive solution of G α = 1/α (elementwise) over the present tasks.

    It is the Nash bargaining solution of the paper (Theorem 5.3): the update d = Σ α_k g_k has
    g_i·d = 1/α_i for every task. Solved by Newton's method on the strictly convex
    ½αᵀGα − Σ log α_k (``solvers.bargaining_weights``, α = 1) where the paper's code runs 20
    sequential convex (CCCP) solves with cvxpy. A task with a zero gradient gets α = 0.

    Args:
        gram: the ``[K, K]`` Gramian of the task gradients (the weights scale as 1/sqrt of it: the
            update is scale-free).
        present: ``[K]``, 1.0 for the tasks present in the batch.

    Returns:
        A ``[K]`` float32 tensor α (0 for absent tasks).

    Example:
        >>> [round(float(a), 4) for a in nash_mtl_weights([[4.0, 0.0], [0.0, 1.0]], [1.0, 1.0])]  # α_k = 1/‖g_k‖
        [0.5, 1.0]
    """
    return bargaining_weights(gram, present, alpha=1.0)


@register_balancer
class NashMTL(GramianBalancer):
    """Nash-MTL: the update is the Nash bargaining solution between the tasks.

    Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022. Update rule: the task
    gradients bargain over the update d in a ball around 0; the solution is d = Σ_k α_k g_k with
    Gα = 1/α (``nash_mtl_weights``), so that each task's directional derivative g_i·d is 1/α_i and
    the update does not depend on the gradients' scale (orthogonal gradients: Σ g_k/‖g_k‖). The
    weights are recomputed every ``update_every`` steps and kept in between (the paper's
    ``update_weights_every``; the gradients are still computed each step, the engine needs them for
    the update). The paper's ``max_norm=1.0`` (clipping the norm of the shared parameters' update:
    the update is scale-free, its size does not shrink with the gradients) is the optimizer's
    business here (``clipnorm``/``global_clipnorm``).

    Args:
        update_every: recompute the weights every this many steps (default 1, every step).
        grad_level: ``"features"`` or ``"parameters"``, where the task gradients are taken (``GramianBalancer``).

    Raises:
        MtlError: ``update_every`` below 1.

    Example:
        >>> b = NashMTL(tasks=["shape", "box"])
        >>> gram = ops.array([[1.0, 0.0], [0.0, 4.0]])  # orthogonal, norms 1 and 2
        >>> [round(float(v), 4) for v in b.rule(gram, ops.ones(2), ops.ones(2))]
        [1.0, 0.5]
    """

    key = "nash_mtl"

    def __init__(self, update_every: int = 1, **kwargs):
        if int(update_every) < 1:
            raise MtlError(f"update_every must be at least 1, got {update_every}")
        self.update_every = int(update_every)
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        # The weights of the last solve and the steps seen, so that update_every survives a resume.
        self.held_weights = self._state("held_weights", (num_tasks,), "ones")
        self.steps = self.add_weight(
            name="steps", shape=(), initializer="zeros", dtype="int64", trainable=False,
            aggregation="only_first_replica",
        )

    def rule(self, gram, losses, present):
        """Nash-MTL's α for this step: a new solve every ``update_every`` steps, else the last one.

        A task absent at a solving step keeps its previous weight for the steps until the next.

        Args:
            gram: ``[K, K]`` float32 Gramian of the task gradients (zero row and column for an absent task).
            losses: ``[K]`` transformed losses (unused: the rule looks at the gradients only).
            present: ``[K]`` float32, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` float32 tensor α.

        Example:
            >>> b = NashMTL(tasks=["a", "b"], update_every=2)
            >>> first = b.rule(ops.eye(2), ops.ones(2), ops.ones(2))  # solved: α = (1, 1)
            >>> [float(v) for v in b.rule(4.0 * ops.eye(2), ops.ones(2), ops.ones(2))]  # kept
            [1.0, 1.0]
            >>> [float(v) for v in b.rule(4.0 * ops.eye(2), ops.ones(2), ops.ones(2))]  # solved: 1/‖g_k‖
            [0.5, 0.5]
        """
        present = ops.cast(present, "float32")
        if self.update_every == 1:
            return nash_mtl_weights(gram, present)
        held = ops.convert_to_tensor(self.held_weights.value)
        due = ops.equal(ops.mod(self.steps.value, self.update_every), 0)
        alpha = ops.cond(due, lambda: ops.where(present > 0, nash_mtl_weights(gram, present), held), lambda: held)
        self.held_weights.assign(alpha)
        self.steps.assign_add(1)
        return alpha

    def get_config(self):
        return {**super().get_config(), "update_every": self.update_every}
