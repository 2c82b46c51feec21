"""The gradient engine: each task's gradient once per step, their Gramian, and the balanced update.

Every gradient-level balancer (``GramianBalancer``) is a rule from the K×K Gramian of the task
gradients to K coefficients; this module does the rest, in one place, for all of them:

- **per-task gradients** of the balancer's per-task objectives (``transform_losses``), computed
  under the step's tape with the same masks (absent labels weigh 0), global-batch scaling and
  mixed-precision loss scale as every other balancer;
- at ``grad_level="features"``, with respect to the shared features the heads read
  (``shared_features``): K backward passes through the heads only, then one through the trunk with
  the combined feature gradient (MGDA-UB's bound, LibMTL's ``rep_grad``); at ``"parameters"``, with
  respect to the trunk's parameters (K backward passes through the whole network);
- the **Gramian** G[k, l] = g_k·g_l of the *global* batch (summed over replicas: at the features
  level each replica's samples are its own, so the replicas' Gramians add up; at the parameters
  level the task gradients are summed over replicas first), loss scale removed, in float32;
- the **update**: Σ_k c_k g_k on the shared part; each head gets the plain sum of its tasks'
  gradients (as in LibMTL); absent tasks get c_k = 0; the regularisation losses are added unweighted.

Each replica applies its own share Σ_k c_k g_k^(replica) (every replica computes the same c from the
same Gramian), so the optimizer's sum over replicas is the single-device update on the global batch.

Example (inside the train step; see ``mtl_keras.balancing.step.train_step``):
    >>> engine = GradientEngine.of(model, "features")  # doctest: +SKIP
    >>> with tf.GradientTape(persistent=True) as tape:  # doctest: +SKIP
    ...     y_pred, features = engine.forward(x)
    ...     ...
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from mtl_keras.balancing.shared import shared_features, shared_layers, task_outputs

__all__ = ["GradientEngine", "aggregate", "gramian", "tape_sources"]


def gramian(per_task) -> tf.Tensor:
    """The K×K Gramian of K gradients given as parts: G[k, l] = Σ_parts <g_k, g_l>, in float32.

    Args:
        per_task: a list over parts (variables or feature tensors) of K-stacked tensors ``[K, ...]``.

    Returns:
        A ``[K, K]`` float32 tensor.

    Example:
        >>> g = tf.constant([[1.0, 0.0], [1.0, 1.0]])
        >>> gramian([g[:, :1], g[:, 1:]]).numpy().tolist()
        [[1.0, 1.0], [1.0, 2.0]]
    """
    total = None
    for part in per_task:
        flat = ops.reshape(ops.cast(part, "float32"), (ops.shape(part)[0], -1))
        g = ops.matmul(flat, ops.transpose(flat))
        total = g if total is None else total + g
    return total


def aggregate(coefficients, stacked):
    """Σ_k c_k g_k for one part, in the part's dtype.

    Args:
        coefficients: ``[K]`` weights.
        stacked: the part's K gradients, ``[K, ...]``.

    Returns:
        A tensor shaped like one gradient of the part.

    Example:
        >>> aggregate(tf.constant([0.5, 2.0]), tf.constant([[2.0, 0.0], [0.0, 1.0]])).numpy().tolist()
        [1.0, 2.0]
    """
    return ops.tensordot(ops.cast(coefficients, stacked.dtype), stacked, axes=1)


def _stack(grads, like):
    return ops.stack([ops.zeros_like(like) if g is None else g for g in grads])


def tape_sources(values) -> list:
    """What a ``tf.GradientTape`` differentiates for: Keras variables as their ``tf.Variable``
    (the tape does not know Keras' wrapper; see DESIGN.md), tensors as they are.

    Example:
        >>> [type(s).__name__ for s in tape_sources([keras.Variable(1.0), tf.constant(2.0)])]
        ['ResourceVariable', 'EagerTensor']
    """
    return [v.value if isinstance(v, keras.Variable) else v for v in values]


class GradientEngine:
    """Per-task gradients, their Gramian and the balanced update for one model at one level.

    Built once per model and level (``GradientEngine.of``); ``forward`` runs the model under the
    step's tape (returning the shared features too at the features level), ``balanced_gradients``
    turns the tape into the update. A model whose tasks read no shared feature (they share only the
    input) falls back to the parameters level.

    Example:
        >>> import mtl_keras as mk
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "count"]), "mobilenet_v3_small", 32)
        >>> engine = GradientEngine.of(m, "features")
        >>> engine.level, [t._keras_history.operation.name for t in engine.features]
        ('features', ['shared_pool'])
    """

    def __init__(self, model, level: str):
        self.model = model
        self.features = shared_features(model) if level == "features" else []
        self.level = "features" if self.features else "parameters"
        shared = {id(v) for layer in shared_layers(model) for v in layer.trainable_variables}
        self.shared_ids = shared
        self.names = list(task_outputs(model))
        self._tapped = None

    @classmethod
    def of(cls, model, level: str) -> GradientEngine:
        """The engine of ``model`` at ``level``, built on first use and kept on the model.

        Args:
            model: a functional multi-task model.
            level: ``"features"`` or ``"parameters"``.

        Returns:
            The ``GradientEngine``.
        """
        cache = model.__dict__.setdefault("_mtl_gradient_engines", {})
        if level not in cache:
            cache[level] = cls(model, level)
        return cache[level]

    def forward(self, x, training: bool = True):
        """``(y_pred, features)``: the model's outputs by task, and the shared features (features level).

        Args:
            x: the batch's inputs.
            training: the call's ``training`` flag.

        Returns:
            ``({task: output}, [feature tensors])``; the list is empty at the parameters level.
        """
        if not self.features:
            return self.model(x, training=training), []
        if self._tapped is None:
            # The same layers, with the taps as extra outputs: the forward pass is the model's own.
            outputs = task_outputs(self.model)
            self._tapped = keras.Model(self.model.input, [*outputs.values(), *self.features])
        values = self._tapped(x, training=training)
        k = len(self.names)
        return dict(zip(self.names, values[:k])), list(values[k:])

    def targets(self, balancer, losses, present, num_replicas: int):
        """The per-task objectives to differentiate (call under the tape): ``transform_losses`` of the
        global-batch losses, differentiable through this replica's share, times ``present``.

        Args:
            balancer: the ``GramianBalancer``.
            losses: ``[K]``, this replica's share of each task's global-batch loss.
            present: ``[K]`` 0/1.
            num_replicas: replicas in sync.

        Returns:
            ``(targets, global_values)``: the K scalar objectives (a list, each recorded on the tape),
            and their ``[K]`` global value (no gradient).
        """
        if num_replicas > 1:
            global_losses = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, losses)
            # The value is the global loss (a nonlinear transform needs it), the gradient this replica's share.
            losses = losses + ops.stop_gradient(global_losses - losses)
        targets = ops.cast(balancer.transform_losses(losses, present), "float32") * present
        return ops.unstack(targets, num=len(self.names)), ops.stop_gradient(targets)

    def balanced_gradients(self, balancer, step, targets, values, present):
        """The update for ``step.variables`` (loss-scaled, this replica's share), and the coefficients.

        Args:
            balancer: the ``GramianBalancer`` whose ``rule`` is applied.
            step: the batch's ``Step`` (tape, variables, loss scale, features).
            targets: the K per-task objectives recorded on the tape (``targets``).
            values: their global values (no gradient), handed to the rule.
            present: ``[K]`` 0/1.

        Returns:
            ``(gradients, coefficients)``: one gradient (or None) per variable, and the ``[K]`` c used.
        """
        variables = step.variables
        num = len(self.names)
        scale = step.loss_scale()
        shared_index = [i for i, v in enumerate(variables) if id(v) in self.shared_ids]
        own_index = [i for i in range(len(variables)) if id(variables[i]) not in self.shared_ids]
        shared_src = tape_sources([variables[i] for i in shared_index])
        own_src = tape_sources([variables[i] for i in own_index])
        parts = step.features if self.level == "features" else shared_src
        per_task_parts, own = [], [None] * len(own_index)
        for k in range(num):
            grads = step.tape.gradient(targets[k], [*parts, *own_src], output_gradients=ops.cast(scale, targets[k].dtype))
            per_task_parts.append(grads[: len(parts)])
            for j, g in enumerate(grads[len(parts):]):
                if g is not None:
                    own[j] = g if own[j] is None else own[j] + g
        stacked = [_stack([per_task_parts[k][p] for k in range(num)], parts[p]) for p in range(len(parts))]
        if self.level == "parameters" and step.num_replicas > 1 and stacked:
            gram = gramian(step.all_reduce(stacked))
        else:
            gram = gramian(stacked) if stacked else ops.zeros((num, num), "float32")
            if step.num_replicas > 1:
                gram = step.all_reduce(gram)
        gram = gram / ops.square(scale)
        coefficients = ops.cast(balancer.rule(gram, values, present), "float32") * present
        # A solver that fails on a degenerate Gramian falls back to the plain sum; a non-finite
        # Gramian (an fp16 overflow) still gives a non-finite update, which LossScaleOptimizer skips.
        coefficients = ops.where(ops.all(ops.isfinite(coefficients)), coefficients, present)
        combined = [aggregate(coefficients, s) for s in stacked]
        grads = [None] * len(variables)
        if self.level == "features":
            trunk = step.tape.gradient(step.features, shared_src, output_gradients=combined) if shared_src else []
        else:
            trunk = combined
        for i, g in zip(shared_index, trunk):
            grads[i] = g
        balancer_ids = {id(v) for v in balancer.trainable_variables}
        for i, g in zip(own_index, own):
            if g is not None and step.num_replicas > 1 and id(variables[i]) in balancer_ids:
                # A balancer's own variable saw the global loss on every replica (``targets``): count it once.
                g = g / step.num_replicas
            grads[i] = g
        if step.has_regularization:
            for i, g in enumerate(step.gradient(step.regularization)):
                if g is not None:
                    grads[i] = g if grads[i] is None else grads[i] + g
        return grads, coefficients
