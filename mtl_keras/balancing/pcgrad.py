"""``pcgrad``: gradient surgery (Yu, Kumar, Gupta, Levine, Hausman & Finn, NeurIPS 2020)."""

from __future__ import annotations

from keras import ops

from mtl_keras.balancing.base import GramianBalancer, register_balancer
from mtl_keras.balancing.orders import seeded_orders


def pcgrad_coefficients(gram, orders):
    """PCGrad in the span of the task gradients: the c with Σ_i g_i^PC = Σ_k c_k g_k.

    ``gram[k, l] = g_k·g_l``; ``orders[i]`` is the (random) order in which task i visits the others
    (a permutation of all tasks; i itself is skipped). Each projected g_i^PC = Σ_k a_ik g_k stays a
    combination of the original gradients, so the surgery needs only the K×K Gram matrix, never a
    copy of the gradients.

    Args:
        gram: the ``[K, K]`` Gram matrix of the task gradients (array or tensor).
        orders: a ``[K, K]`` integer array; row i is a permutation of ``range(K)``.

    Returns:
        A ``[K]`` float32 tensor c with Σ_i g_i^PC = Σ_k c_k g_k.

    Example:
        >>> import numpy as np
        >>> g = np.array([[1.0, 0.0], [-1.0, 1.0]])  # conflicting: g1·g2 = -1
        >>> c = pcgrad_coefficients(g @ g.T, [[0, 1], [1, 0]])
        >>> [round(float(v), 4) for v in np.asarray(c) @ g]  # g1 → (.5, .5), g2 → (0, 1)
        [0.5, 1.5]
    """
    gram = ops.convert_to_tensor(gram, "float32")
    orders = ops.convert_to_tensor(orders, "int32")
    k = gram.shape[0]
    eye = ops.eye(k, dtype="float32")
    diagonal = ops.diagonal(gram)
    # Row i of ``a`` is task i's projected gradient; the K surgeries are independent, so they run
    # side by side: visit p takes each task to its own p-th task (one-hot rows), K steps in all.
    a = eye
    for p in range(k):
        visited = ops.one_hot(orders[:, p], k, dtype="float32")  # row i: e_j, j = orders[i, p]
        dot = ops.sum(a * ops.matmul(visited, gram), axis=1)  # g_i^PC · g_j
        norm2 = ops.matmul(visited, diagonal[:, None])[:, 0]
        other = ops.sum(visited * eye, axis=1) == 0
        conflict = ops.cast((dot < 0) & other, "float32")
        a = a - (conflict * ops.divide_no_nan(dot, norm2))[:, None] * visited
    return ops.sum(a, axis=0)


@register_balancer
class PCGrad(GramianBalancer):
    """Project each task's gradient off the others' where they conflict, then sum (Yu et al. 2020).

    Update rule (the paper's Algorithm 1): for every task i, g_i^PC ← g_i; for each other task j,
    in a random order, if g_i^PC·g_j < 0 then g_i^PC ← g_i^PC − (g_i^PC·g_j / ‖g_j‖²) g_j; the update
    is Σ_i g_i^PC. Every projected gradient stays a combination of the originals, so the rule is
    ``pcgrad_coefficients`` on the Gramian the engine gives, with the orders drawn by
    ``task_orders`` from ``seed`` and the balancer's own step counter (a variable saved with the
    model, so a resumed run continues the sequence; the engine does not pass the optimizer's).
    Tasks absent from the batch take no part: their rows and columns are dropped and their
    coefficient is 0. Without any conflict the update is the plain sum of the task gradients.

    Args:
        seed: mixed with the step counter into the seed of each step's task orders.
        grad_level: ``"features"`` or ``"parameters"``, where the task gradients are taken (``GramianBalancer``).

    Example:
        >>> b = PCGrad(tasks=["shape", "box"])
        >>> gram = ops.array([[1.0, -1.0], [-1.0, 2.0]])  # g1 = (1, 0), g2 = (-1, 1): they conflict
        >>> [float(v) for v in b.rule(gram, ops.ones(2), ops.ones(2))]  # 2·g1 + 1.5·g2 = (0.5, 1.5)
        [2.0, 1.5]
        >>> int(b.steps.value)
        1
    """

    key = "pcgrad"

    def __init__(self, seed: int = 0, **kwargs):
        self.seed = int(seed)
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        # An integer counter: a float32 one would stop counting (and the orders stop changing) at 2**24.
        self.steps = self.add_weight(
            name="steps", shape=(), initializer="zeros", dtype="int64", trainable=False,
            aggregation="only_first_replica",
        )

    def task_orders(self, step_number):
        """Each task's random order of visiting the others, the same on every replica (seeded by the step).

        Args:
            step_number: the balancer's step counter (an integer or integer tensor), mixed into the seed.

        Returns:
            An int32 ``[K, K]`` tensor; row i is a permutation of ``range(K)``.

        Example:
            >>> b = PCGrad(tasks=["a", "b", "c"], seed=1)
            >>> sorted(b.task_orders(0).numpy()[0].tolist())
            [0, 1, 2]
        """
        return seeded_orders(len(self.task_names), self.seed, step_number)

    def rule(self, gram, losses, present):
        """PCGrad's coefficients for this step's Gramian; advances the step counter.

        Args:
            gram: ``[K, K]`` float32 Gramian of the task gradients (zero row and column for an absent task).
            losses: ``[K]`` transformed losses (unused: PCGrad looks at the gradients only).
            present: ``[K]`` float32, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` float32 tensor c with Σ_i g_i^PC = Σ_k c_k g_k (0 for absent tasks).

        Example:
            >>> b = PCGrad(tasks=["a", "b"])
            >>> [float(v) for v in b.rule(ops.eye(2), ops.ones(2), ops.ones(2))]  # orthogonal: the plain sum
            [1.0, 1.0]
        """
        present = ops.cast(present, "float32")
        gram = ops.cast(gram, "float32") * ops.outer(present, present)
        orders = self.task_orders(self.steps.value)
        self.steps.assign_add(1)
        return pcgrad_coefficients(gram, orders) * present

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
