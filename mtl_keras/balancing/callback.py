"""``BalancerLogger``: the epoch hook of adaptive balancers, and their weights in the epoch logs."""

from __future__ import annotations

import keras


class BalancerLogger(keras.callbacks.Callback):
    """Calls the balancer's ``on_epoch_end`` (DWA's update) and adds ``weight_<task>`` to the logs.

    ``MultiTaskModel.fit`` puts one first in the callback list whenever the model has an adaptive
    balancer, so ``History``, ``CSVLogger`` and ``TensorBoard`` all see the weights; there is no
    need to add it yourself. The logged weight of an epoch is the one in force at its end (for DWA,
    the weights the epoch trained with).

    Example:
        >>> import mtl_keras as mk
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "box"]), "mobilenet_v3_small", 32)
        >>> m.compile(optimizer="adam", balancer="uncertainty")
        >>> logs = {}
        >>> BalancerLogger(m).on_epoch_end(0, logs)
        >>> sorted(logs)
        ['weight_box', 'weight_shape']
    """

    def __init__(self, model=None):
        super().__init__()
        if model is not None:
            self.set_model(model)

    def on_epoch_end(self, epoch, logs=None):
        balancer = getattr(self.model, "balancer", None)
        if balancer is None or logs is None:
            return
        weights = balancer.current_weights()
        task_losses = {n: logs[f"{n}_loss"] for n in balancer.task_names if f"{n}_loss" in logs}
        if len(balancer.task_names) == 1 and "loss" in logs:
            task_losses = {balancer.task_names[0]: logs["loss"]}
        balancer.on_epoch_end(epoch, task_losses)
        for name, value in weights.items():
            logs[f"weight_{name}"] = value
