"""``gradvac``: Gradient Vaccine (Wang, Tsvetkov, Firat & Cao, ICLR 2021)."""

from __future__ import annotations

from keras import ops

from mtl_keras.balancing.base import GramianBalancer, register_balancer
from mtl_keras.balancing.orders import seeded_orders


def gradvac_coefficients(gram, orders, targets, present, beta: float = 0.01):
    """GradVac in the span of the task gradients: the c with Σ_i g_i^GV = Σ_k c_k g_k, and the new targets.

    For each task i, g_i^GV starts as g_i and visits the other tasks j in ``orders[i]``: with
    φ = cos(g_i^GV, g_j) and the target φ̂ = ``targets[i, j]``, if φ < φ̂ then
    g_i^GV += ‖g_i^GV‖·(φ̂·√(1−φ²) − φ·√(1−φ̂²)) / (‖g_j‖·√(1−φ̂²))·g_j, which raises the cosine to φ̂;
    then φ̂ ← (1 − β)·φ̂ + β·φ (φ before the adjustment, as in the paper's Algorithm 1). Each
    g_i^GV = Σ_k a_ik g_k stays a combination of the originals, so ‖g_i^GV‖² = a_iᵀGa_i and
    g_i^GV·g_j = (a_iG)_j come from the Gramian. A pair with an absent task or a zero gradient is
    skipped: no adjustment and no target update (a zero gradient has no direction).

    Args:
        gram: the ``[K, K]`` Gramian (array or tensor).
        orders: a ``[K, K]`` integer array; row i is a permutation of ``range(K)`` (i itself is skipped).
        targets: the ``[K, K]`` EMA targets φ̂ before this step.
        present: ``[K]``, 1.0 for the tasks that take part.
        beta: the EMA rate β of the targets.

    Returns:
        ``(coefficients, targets)``: a ``[K]`` float32 tensor (0 for tasks that take no part) and the
        updated ``[K, K]`` targets.

    Example:
        >>> gram = ops.eye(2)  # orthogonal unit gradients: cos 0 < target 0.5
        >>> c, t = gradvac_coefficients(gram, [[0, 1], [1, 0]], ops.full((2, 2), 0.5), ops.ones(2), 0.01)
        >>> [round(float(v), 4) for v in c]  # each g_i gains (1/√3)·g_j: cos 60°
        [1.5774, 1.5774]
        >>> round(float(t[0, 1]), 4)  # 0.99·0.5 + 0.01·0
        0.495
    """
    gram = ops.cast(ops.convert_to_tensor(gram), "float32")
    orders = ops.cast(ops.convert_to_tensor(orders), "int32")
    targets = ops.cast(ops.convert_to_tensor(targets), "float32")
    present = ops.cast(ops.convert_to_tensor(present), "float32")
    num = gram.shape[0]
    eye = ops.eye(num, dtype="float32")
    norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
    active = ops.cast((present > 0) & (norms > 0), "float32")
    # Row i of ``a`` is task i's adjusted gradient; the K tasks' passes are independent, so they run
    # side by side: visit p takes each task to its own p-th task (one-hot rows), K steps in all.
    a = eye
    delta = ops.zeros((num, num), "float32")
    for p in range(num):
        visited = ops.one_hot(orders[:, p], num, dtype="float32")  # row i: e_j, j = orders[i, p]
        other = ops.sum(visited * eye, axis=1) == 0
        pair = other & (active > 0) & (ops.matmul(visited, active[:, None])[:, 0] > 0)
        norm_i = ops.sqrt(ops.maximum(ops.sum(a * ops.matmul(a, gram), axis=1), 0.0))
        norm_j = ops.matmul(visited, norms[:, None])[:, 0]
        phi = ops.clip(ops.divide_no_nan(ops.sum(a * ops.matmul(visited, gram), axis=1), norm_i * norm_j), -1.0, 1.0)
        target = ops.sum(targets * visited, axis=1)
        root = ops.sqrt(ops.maximum(1.0 - target * target, 0.0))
        step = ops.divide_no_nan(
            norm_i * (target * ops.sqrt(ops.maximum(1.0 - phi * phi, 0.0)) - phi * root), norm_j * root
        )
        a = a + ops.where(pair & (phi < target), step, 0.0)[:, None] * visited
        delta = delta + ops.where(pair, beta * (phi - target), 0.0)[:, None] * visited
    return ops.sum(a * present[:, None], axis=0), targets + delta


@register_balancer
class GradVac(GramianBalancer):
    """GradVac: raise each pair's gradient cosine to an EMA target of its own history, not just to 0 as PCGrad.

    Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task Optimization in Massively
    Multilingual Models", ICLR 2021. Update rule (Algorithm 1): each task's gradient visits the others
    in a random order; where its cosine φ with g_j is below the target φ̂_ij it adds the multiple of
    g_j that brings the cosine to φ̂_ij (``gradvac_coefficients``, in the coefficient form on the
    Gramian: the whole shared gradient is one group, LibMTL's ``group_type=0``); every pair's target
    follows φ̂_ij ← (1 − β)·φ̂_ij + β·φ_ij from 0; the update is the sum of the adjusted gradients.
    β = 0.01 is the paper's; LibMTL's default is 0.5. The targets (a K×K variable) and the step
    counter that seeds the orders (as PCGrad's, ``seeded_orders``) save with the model. Tasks absent
    from the batch or with a zero gradient take no part and their targets are left as they are.

    Args:
        beta: the EMA rate β of the cosine targets.
        seed: mixed with the step counter into the seed of each step's task orders.
        grad_level: ``"features"`` or ``"parameters"``, where the task gradients are taken (``GramianBalancer``).

    Example:
        >>> b = GradVac(tasks=["shape", "box"])
        >>> gram = ops.array([[1.0, 0.0], [0.0, 1.0]])  # orthogonal: cos 0 is not below the targets 0
        >>> [float(v) for v in b.rule(gram, ops.zeros(2), ops.ones(2))]
        [1.0, 1.0]
        >>> float(b.targets[0, 1]), int(b.steps.value)
        (0.0, 1)
    """

    key = "gradvac"

    def __init__(self, beta: float = 0.01, seed: int = 0, **kwargs):
        self.beta = float(beta)
        self.seed = int(seed)
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        self.targets = self._state("similarity_targets", (num_tasks, num_tasks))
        # An integer counter: a float32 one would stop counting (and the orders stop changing) at 2**24.
        self.steps = self.add_weight(
            name="steps", shape=(), initializer="zeros", dtype="int64", trainable=False,
            aggregation="only_first_replica",
        )

    def task_orders(self, step_number):
        """Each task's random order of visiting the others at step ``step_number`` (``seeded_orders``).

        Args:
            step_number: the balancer's step counter (an integer or integer tensor).

        Returns:
            An int32 ``[K, K]`` tensor; row i is a permutation of ``range(K)``.

        Example:
            >>> sorted(GradVac(tasks=["a", "b", "c"]).task_orders(3).numpy()[2].tolist())
            [0, 1, 2]
        """
        return seeded_orders(len(self.task_names), self.seed, step_number)

    def rule(self, gram, losses, present):
        """GradVac's coefficients for this step's Gramian; updates the targets and the step counter.

        Args:
            gram: ``[K, K]`` float32 Gramian of the task gradients (zero row and column for an absent task).
            losses: ``[K]`` transformed losses (unused: the rule looks at the gradients only).
            present: ``[K]`` float32, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` float32 tensor c with Σ_i g_i^GV = Σ_k c_k g_k (0 for absent tasks).

        Example:
            >>> b = GradVac(tasks=["a", "b"], beta=0.5)
            >>> gram = ops.array([[1.0, -0.5], [-0.5, 1.0]])  # cos −0.5 < 0: both lifted to cos 0
            >>> [round(float(v), 4) for v in b.rule(gram, ops.zeros(2), ops.ones(2))]
            [1.5, 1.5]
            >>> round(float(b.targets[0, 1]), 4)  # 0.5·0 + 0.5·(−0.5)
            -0.25
        """
        orders = self.task_orders(self.steps.value)
        coefficients, targets = gradvac_coefficients(gram, orders, self.targets.value, present, self.beta)
        self.targets.assign(targets)
        self.steps.assign_add(1)
        return coefficients

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "seed": self.seed}
