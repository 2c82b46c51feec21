"""``famo``: Fast Adaptive Multitask Optimization (Liu, Liu, Jiang, Stone & Liu, NeurIPS 2023)."""

from __future__ import annotations

import keras
from keras import ops

from mtl_keras.balancing.base import Balancer, register_balancer
from mtl_keras.balancing.global_objective import global_objective


def present_softmax(logits, present):
    """softmax over the present tasks only: z_k = present_k·e^{ξ_k} / Σ_j present_j·e^{ξ_j}.

    Args:
        logits: a ``[K]`` float32 tensor ξ.
        present: a ``[K]`` 0/1 float32 mask.

    Returns:
        A ``[K]`` float32 tensor, 0 where absent, summing to 1 over the present tasks (all 0 if none).

    Example:
        >>> [round(float(v), 4) for v in present_softmax(ops.array([0.0, 5.0, 0.0]), ops.array([1.0, 0.0, 1.0]))]
        [0.5, 0.0, 0.5]
    """
    logits = ops.cast(logits, "float32")
    present = ops.cast(present, "float32")
    top = ops.max(ops.where(present > 0, logits, -1e30))
    e = present * ops.exp(ops.where(present > 0, logits - top, 0.0))
    return ops.divide_no_nan(e, ops.sum(e))


def famo_objective(losses, logits, present, epsilon: float = 1e-8):
    """FAMO's objective Σ_k z_k·log(L_k + ε) / c with c = Σ_k z_k / (L_k + ε) held constant, and its slopes.

    z is the softmax of the logits over the present tasks. The slope of task k is
    z_k / (c·(L_k + ε)); the slopes sum to 1 over the present tasks.

    Args:
        losses: a ``[K]`` float32 tensor of (global-batch) task losses L_k (L_k* = 0, as in the authors' code).
        logits: the ``[K]`` float32 task logits ξ.
        present: a ``[K]`` 0/1 float32 mask; absent tasks add no term.
        epsilon: ε added to every loss.

    Returns:
        ``(value, slopes)``: a scalar float32 tensor and a ``[K]`` one (0 for absent tasks).

    Example:
        >>> value, slopes = famo_objective(ops.array([1.0, 3.0]), ops.zeros(2), ops.ones(2), 0.0)
        >>> [round(float(s), 4) for s in slopes]  # ∝ 1/L: (3/4, 1/4)
        [0.75, 0.25]
    """
    losses = ops.cast(losses, "float32")
    present = ops.cast(present, "float32")
    z = present_softmax(logits, present)
    shifted = ops.where(present > 0, losses + epsilon, 1.0)
    c = ops.sum(z / shifted)
    value = ops.divide_no_nan(ops.sum(z * ops.log(shifted)), c)
    slopes = ops.divide_no_nan(z / shifted, c)
    return value, slopes


def famo_logit_gradient(logits, log_decrease, valid):
    """The gradient FAMO's optimizer applies to the logits: J_z(ξ)ᵀ·δ over the valid tasks.

    δ_k = log L_k(before) − log L_k(after) is how much task k's log loss fell; with z the softmax
    over the valid tasks, d_k = z_k·(δ_k − Σ_j z_j δ_j), the gradient of Σ_j z_j δ_j (the paper's
    update ξ ← ξ − β·(J_z)ᵀδ descends it, moving weight away from tasks that improved most).

    Args:
        logits: the ``[K]`` float32 logits ξ.
        log_decrease: the ``[K]`` float32 δ (ignored where not valid).
        valid: a ``[K]`` 0/1 float32 mask of the tasks with a δ this step.

    Returns:
        A ``[K]`` float32 tensor, 0 where not valid.

    Example:
        >>> [round(float(v), 4) for v in famo_logit_gradient(ops.zeros(2), ops.array([1.0, 0.0]), ops.ones(2))]
        [0.25, -0.25]
    """
    valid = ops.cast(valid, "float32")
    z = present_softmax(logits, valid)
    delta = valid * ops.cast(log_decrease, "float32")
    return z * (delta - ops.sum(z * delta))


@register_balancer
class FAMO(Balancer):
    """Loss weights from task logits ξ that FAMO's own optimizer moves toward equal log-loss decrease.

    Liu et al., "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023. With z = softmax(ξ):

    - the objective is Σ_k z_k·log(L_k + ε) / c with c = Σ_k z_k / (L_k + ε) held constant, so
      the model's gradient is Σ_k (z_k / (c·(L_k + ε)))·∇L_k (weights that sum to 1; L_k* = 0);
    - the logits follow δ_k = log(L_k(before) + ε) − log(L_k(after) + ε), the decrease of each
      log loss across a model update: gradient d = J_z(ξ)ᵀδ (``famo_logit_gradient``), applied
      with Adam (β = 0.9, 0.999; ε̂ = 1e-8) at ``learning_rate`` γ = 0.025 and L2 weight decay
      ``weight_decay`` = 1e-3 added to d (PyTorch ``Adam(weight_decay=...)``, as the authors'
      NYUv2, CelebA and QM9 scripts set it; their Cityscapes script uses 1e-2), in the graph, on
      the K logits.

    δ is measured between consecutive batches: "after" is this step's loss and "before" the
    task's loss at its previous step with labels (one step back when every batch has labels).
    The authors' MTL trainers (and LibMTL) instead re-evaluate the same batch after the update,
    one more forward pass per step; consecutive batches keep the step at one forward and one
    backward pass, at the price of batch-to-batch noise in δ, which Adam's averaging smooths. So
    each step first updates ξ with the δ that the previous update produced, then weighs its own
    losses with the new z. Their shared-gradient clipping (norm 1) is the optimizer's business
    here (``clipnorm``).

    A task without a label in the global batch adds no term (z is the softmax over the present
    tasks), gets no δ and its logit and Adam moments stay as they are; each logit counts its own
    Adam steps for the bias correction. Under a distribution strategy everything is computed from
    the global losses (``global_objective``), identically on every replica. ``task_weights``
    reports the last step's gradient weights z_k / (c·(L_k + ε)).

    Example:
        >>> b = FAMO(tasks=["a", "b"])
        >>> _ = b.combine(ops.array([1.0, 4.0]), ops.array([1.0, 1.0]))  # first step: z uniform
        >>> b.current_weights()  # ∝ 1/L
        {'a': 0.8, 'b': 0.2}
        >>> _ = b.combine(ops.array([0.5, 4.0]), ops.array([1.0, 1.0]))  # a fell: its logit drops
        >>> float(b.logits[0]) < 0.0 < float(b.logits[1])
        True
    """

    key = "famo"

    def __init__(
        self, learning_rate: float = 0.025, weight_decay: float = 1e-3, epsilon: float = 1e-8,
        beta_1: float = 0.9, beta_2: float = 0.999, adam_epsilon: float = 1e-8, **kwargs,
    ):
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)
        self.epsilon = float(epsilon)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.adam_epsilon = float(adam_epsilon)
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        self.logits = self._state("logits", (num_tasks,))
        # Adam's moments and each logit's own step count.
        self.moment_1 = self._state("moment_1", (num_tasks,))
        self.moment_2 = self._state("moment_2", (num_tasks,))
        self.adam_steps = self._state("adam_steps", (num_tasks,))
        # Each task's loss at its last step with labels, and whether there was one.
        self.previous_losses = self._state("previous_losses", (num_tasks,))
        self.has_previous = self._state("has_previous", (num_tasks,))
        self.last_weights = self._state("last_weights", (num_tasks,), keras.initializers.Constant(1.0 / num_tasks))

    def task_weights(self):
        return ops.cast(self.last_weights, "float32")

    def update_logits(self, global_losses, present):
        """One step of FAMO's logit optimizer from this step's global losses; records them for the next.

        Args:
            global_losses: a ``[K]`` float32 tensor, each task's global-batch loss this step.
            present: a ``[K]`` 0/1 float32 mask of the tasks with a label in the global batch.

        Returns:
            The new ``[K]`` float32 logits (also assigned to ``self.logits``).

        Example:
            >>> b = FAMO(tasks=["a", "b"], learning_rate=0.1, weight_decay=0.0)
            >>> _ = b.update_logits(ops.array([2.0, 2.0]), ops.ones(2))  # no previous loss: nothing moves
            >>> [round(float(v), 4) for v in b.update_logits(ops.array([1.0, 2.0]), ops.ones(2))]  # ±lr
            [-0.1, 0.1]
        """
        present = ops.cast(present, "float32")
        losses = ops.cast(global_losses, "float32")
        valid = present * ops.cast(self.has_previous, "float32")
        logits = ops.cast(self.logits, "float32")
        before = ops.where(valid > 0, ops.cast(self.previous_losses, "float32"), 1.0)
        after = ops.where(valid > 0, losses, 1.0)
        delta = ops.log(before + self.epsilon) - ops.log(after + self.epsilon)
        grad = famo_logit_gradient(logits, delta, valid) + self.weight_decay * logits
        steps = ops.cast(self.adam_steps, "float32") + valid
        m = self.beta_1 * self.moment_1 + (1.0 - self.beta_1) * grad
        v = self.beta_2 * self.moment_2 + (1.0 - self.beta_2) * ops.square(grad)
        m_hat = m / (1.0 - ops.power(self.beta_1, ops.maximum(steps, 1.0)))
        v_hat = v / (1.0 - ops.power(self.beta_2, ops.maximum(steps, 1.0)))
        new_logits = logits - self.learning_rate * m_hat / (ops.sqrt(v_hat) + self.adam_epsilon)
        moved = valid > 0
        new_logits = ops.where(moved, new_logits, logits)
        self.logits.assign(new_logits)
        self.moment_1.assign(ops.where(moved, m, self.moment_1))
        self.moment_2.assign(ops.where(moved, v, self.moment_2))
        self.adam_steps.assign(steps)
        self.previous_losses.assign(ops.where(present > 0, losses, self.previous_losses))
        self.has_previous.assign(ops.maximum(ops.cast(self.has_previous, "float32"), present))
        return new_logits

    def combine(self, losses, present, replica_scale=1.0):
        def famo(global_losses):
            logits = self.update_logits(global_losses, present)
            value, slopes = famo_objective(global_losses, logits, present, self.epsilon)
            self.last_weights.assign(slopes)
            return value, slopes

        return global_objective(famo, losses, replica_scale)

    def get_config(self):
        return {
            **super().get_config(), "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
            "epsilon": self.epsilon, "beta_1": self.beta_1, "beta_2": self.beta_2, "adam_epsilon": self.adam_epsilon,
        }
