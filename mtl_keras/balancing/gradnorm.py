"""``gradnorm``: gradient normalization (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018)."""

from __future__ import annotations

from keras import ops

from mtl_keras.balancing.base import Balancer, register_balancer
from mtl_keras.balancing.step import shared_layers
from mtl_keras.errors import MtlError


def gradnorm_targets(weighted_norms, loss_ratios, alpha: float = 1.5, present=None):
    """Target gradient norms Ḡ·r_i^α, with r_i = L̃_i / mean(L̃) and L̃_i = L_i(t) / L_i(0).

    ``weighted_norms`` are G_i = ‖∇_W w_i·L_i‖, ``loss_ratios`` the L̃_i; tasks with ``present`` 0
    take no part in the means and get target 0.

    Args:
        weighted_norms: the K norms G_i (a sequence or ``[K]`` tensor).
        loss_ratios: the K inverse training rates L̃_i = L_i(t) / L_i(0).
        alpha: the asymmetry α (0 pulls all tasks to the same norm); default 1.5.
        present: a ``[K]`` 0/1 mask of the tasks to include; ``None`` includes all.

    Returns:
        A ``[K]`` float32 tensor of target norms (0 for absent tasks).

    Example:
        >>> [round(float(v), 4) for v in gradnorm_targets([1.0, 3.0], [1.0, 0.5], alpha=1.0)]
        [2.6667, 1.3333]
    """
    g = ops.convert_to_tensor(weighted_norms, "float32")
    ratios = ops.convert_to_tensor(loss_ratios, "float32")
    present = ops.ones_like(g) if present is None else ops.cast(present, "float32")
    count = ops.maximum(ops.sum(present), 1.0)
    mean_norm = ops.sum(g * present) / count
    relative = ops.divide_no_nan(ratios, ops.sum(ratios * present) / count)
    return present * mean_norm * ops.power(ops.maximum(relative, 0.0), alpha)


def last_shared_kernel(model):
    """The kernel of the last layer that every task's output depends on (GradNorm's W).

    Args:
        model: a functional multi-task model (one output per task).

    Returns:
        The trainable kernel variable of the last trainable shared layer that has one, or ``None``.

    Example:
        >>> import mtl_keras as mk
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "color"]), "mobilenet_v3_small", 32)
        >>> last_shared_kernel(m).path  # both heads read the pooled c5: the trunk's last conv
        'conv_1/kernel'
    """
    for layer in reversed(shared_layers(model)):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and getattr(kernel, "trainable", False) and layer.trainable:
            return kernel
    return None


@register_balancer
class GradNorm(Balancer):
    """Task weights w_i tuned so each task's gradient norm on the last shared layer follows its pace.

    Each step: G_i = ‖∇_W w_i·L_i‖ on the kernel W of the last shared layer, targets
    Ḡ·r_i^α (``gradnorm_targets``), one gradient step on Σ|G_i − target_i| / Ḡ for the w_i (targets
    held constant, as in the paper; dividing by Ḡ makes ``learning_rate`` independent of the loss
    scale), then the w_i are renormalised to sum to the number of tasks. ``layer`` names another
    shared layer to measure on.

    L_i(0), the reference of the inverse training rate L̃_i = L_i(t) / L_i(0), is the mean loss over
    task i's labelled samples in its first ``initial_steps`` (default 10) steps with labels, each
    step's global-batch masked mean weighted by its label count (from ``observe``): the paper's
    first-batch loss would rest on the one or two labelled samples a sparse task may have in it.
    Until a task has its L_i(0) it is taken to train at the average pace (r_i = 1, target Ḡ), so
    GradNorm equalises norms from the first step and tracks rates once they are measured.

    Example:
        >>> b = GradNorm(tasks=["shape", "box"], alpha=1.5)
        >>> b.current_weights()
        {'shape': 1.0, 'box': 1.0}
    """

    key = "gradnorm"
    needs_task_gradients = True

    def __init__(
        self, alpha: float = 1.5, learning_rate: float = 0.025, layer: str | None = None, initial_steps: int = 10,
        **kwargs,
    ):
        self.alpha = float(alpha)
        self.learning_rate = float(learning_rate)
        self.layer = layer
        self.initial_steps = int(initial_steps)
        if self.initial_steps < 1:
            raise MtlError(f"gradnorm: initial_steps must be at least 1, got {initial_steps}")
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        self.task_weight_vars = self._state("task_weights", (num_tasks,), "ones")
        # L_i(0); 0 until the task has had initial_steps steps with labels.
        self.initial_losses = self._state("initial_losses", (num_tasks,))
        # Over those steps: Σ loss·count, Σ count and the number of steps.
        self.initial_loss_sums = self._state("initial_loss_sums", (num_tasks,))
        self.initial_counts = self._state("initial_counts", (num_tasks,))
        self.initial_steps_seen = self._state("initial_steps_seen", (num_tasks,))

    def task_weights(self):
        return ops.cast(self.task_weight_vars, "float32")

    def _kernel(self, model):
        if self.layer:
            try:
                return model.get_layer(self.layer).kernel
            except (ValueError, AttributeError):
                raise MtlError(f"gradnorm: model has no layer {self.layer!r} with a kernel") from None
        kernel = last_shared_kernel(model)
        if kernel is None:
            raise MtlError("gradnorm: the tasks share no layer with a kernel to measure gradient norms on")
        return kernel

    def gradients(self, step, losses, present):
        weights = self.task_weights()
        grads = step.gradient(step.objective)
        kernel = self._kernel(step.model)
        per_task = [step.gradient(loss, [kernel], unconnected_zero=True)[0] for loss in step.task_losses]
        per_task = step.all_reduce(per_task)
        norms = ops.stack([ops.sqrt(ops.sum(ops.square(ops.cast(g, "float32")))) for g in per_task]) / step.loss_scale()
        self._update(weights * norms, step.all_reduce([losses])[0], present)
        return grads

    def observe(self, losses, counts):
        counts = ops.cast(counts, "float32")
        initial = ops.cast(self.initial_losses, "float32")
        seen = ops.cast(self.initial_steps_seen, "float32")
        measuring = ops.cast((initial <= 0) & (seen < self.initial_steps) & (counts > 0), "float32")
        sums = self.initial_loss_sums + measuring * ops.cast(losses, "float32") * counts
        total = self.initial_counts + measuring * counts
        seen = seen + measuring
        self.initial_loss_sums.assign(sums)
        self.initial_counts.assign(total)
        self.initial_steps_seen.assign(seen)
        done = (initial <= 0) & (seen >= self.initial_steps) & (total > 0)
        self.initial_losses.assign(ops.where(done, ops.divide_no_nan(sums, total), initial))

    def _update(self, weighted_norms, global_losses, present):
        initial = ops.cast(self.initial_losses, "float32")
        known = present * ops.cast(initial > 0, "float32")
        ratios = ops.divide_no_nan(global_losses, initial)
        # A task without its L_i(0) yet gets the mean rate of the others: relative rate 1.
        mean_ratio = ops.where(ops.sum(known) > 0, ops.divide_no_nan(ops.sum(ratios * known), ops.sum(known)), 1.0)
        ratios = ops.where(known > 0, ratios, mean_ratio)
        usable = present
        targets = ops.stop_gradient(gradnorm_targets(weighted_norms, ratios, self.alpha, usable))
        count = ops.maximum(ops.sum(usable), 1.0)
        mean_norm = ops.sum(weighted_norms * usable) / count
        weights = self.task_weights()
        # d/dw_i Σ|G_i − t_i| = sign(G_i − t_i)·G_i / w_i, as G_i = w_i·‖∇_W L_i‖.
        grad = usable * ops.sign(weighted_norms - targets) * ops.divide_no_nan(weighted_norms, weights)
        new = ops.maximum(weights - self.learning_rate * ops.divide_no_nan(grad, mean_norm), 1e-3)
        new = new * len(self.task_names) / ops.sum(new)
        ok = ops.all(ops.isfinite(new)) & (mean_norm > 0)
        self.task_weight_vars.assign(ops.where(ok, new, weights))

    def get_config(self):
        return {
            **super().get_config(), "alpha": self.alpha, "learning_rate": self.learning_rate, "layer": self.layer,
            "initial_steps": self.initial_steps,
        }
