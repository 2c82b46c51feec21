"""``uncertainty``: homoscedastic task uncertainty (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

import keras
from keras import ops

from mtl_keras.balancing.base import Balancer, register_balancer
from mtl_keras.tasks import TASK_TYPES


@register_balancer
class Uncertainty(Balancer):
    """Learned log-variances s_i = log σ_i²: L = Σ c_i·exp(−s_i)·L_i + ½·s_i.

    c_i is ½ for regression-type tasks (Gaussian likelihood) and 1 for classification-type tasks, as
    in the paper (log σ_i = ½ s_i): each task type's ``likelihood_factor``, looked up by the kind
    the balancer stores (``factors`` overrides it per task name). The s_i are trainable weights of the model (``model.balancer``),
    trained by the model's optimizer and saved with it. A task with no label in the batch adds
    nothing, not even its ½·s_i term, so its s_i does not drift while it is absent.

    Example:
        >>> b = Uncertainty(tasks=["shape", "count"], kinds=["classification", "regression"])
        >>> _ = b.log_vars.assign([0.0, 1.0])
        >>> round(float(b.combine(ops.array([2.0, 3.0]), ops.array([1.0, 1.0]))), 4)  # 2 + .5·e⁻¹·3 + .5
        3.0518
    """

    key = "uncertainty"

    def __init__(self, initial_log_var: float = 0.0, factors: dict | None = None, **kwargs):
        self.initial_log_var = float(initial_log_var)
        self.factors = dict(factors or {})
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        self.log_vars = self.add_weight(
            name="log_vars", shape=(num_tasks,),
            initializer=keras.initializers.Constant(self.initial_log_var), trainable=True,
        )

    def likelihood_factors(self):
        """c_i per task: ``factors[name]``, else its task type's ``likelihood_factor`` (1 for an unknown kind).

        Example:
            >>> Uncertainty(tasks=["a", "b"], kinds=["box", "classification"]).likelihood_factors().numpy().tolist()
            [0.5, 1.0]
        """
        return ops.convert_to_tensor(
            [float(self.factors.get(n, _factor_of_kind(k))) for n, k in zip(self.task_names, self.task_kinds)],
            "float32",
        )

    def task_weights(self):
        return self.likelihood_factors() * ops.exp(-ops.cast(self.log_vars, "float32"))

    def combine(self, losses, present, replica_scale=1.0):
        s = ops.cast(self.log_vars, "float32")
        return ops.sum(self.task_weights() * losses + 0.5 * s * present * replica_scale)

    def get_config(self):
        return {**super().get_config(), "initial_log_var": self.initial_log_var, "factors": self.factors}


def _factor_of_kind(kind: str) -> float:
    # A balancer built without kinds stores "task", the base class's kind, which is not registered.
    cls = TASK_TYPES.get(kind)
    return 1.0 if cls is None else float(cls.likelihood_factor)
