"""The model's ``train_step`` with a balancer or several replicas: per-task losses, masks, the balancer.

With the default ``static`` balancer on one replica the model keeps Keras' own ``train_step``. With
any other balancer, or with ``static`` on several replicas (where Keras would average the replicas'
masked means instead of taking the global batch's), ``MultiTaskModel.train_step`` calls
``train_step`` here, which

- computes each task's loss with the compiled loss object and the task's sample weights (weight 0
  marks a missing label, so that sample adds nothing to that task's loss or gradient);
- scales every task's loss to the *global* batch: under a distribution strategy each replica's
  masked mean is reweighted by its share of the task's labelled samples over all replicas, so the
  summed gradients are those of the global masked mean;
- hands the per-task losses to the balancer (``combine``), or, for gradient-level balancers, the
  tape to the gradient engine (``mtl_keras.balancing.engine``: per-task gradients once, their
  Gramian, the balancer's rule) or to the balancer itself (GradNorm's ``gradients``);
- tells the balancer what the global batch held (``observe``: each task's masked-mean loss and
  label count), for statistics over an epoch (DWA);
- scales for mixed precision (``LossScaleOptimizer``) through ``output_gradients``;
- reports ``loss`` and ``<task>_loss`` exactly as Keras does with static weights (the compile-time
  weighted sum and the per-output losses), so runs with different balancers stay comparable; the
  reported values reuse the losses already computed (each task's loss is computed once per step).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from mtl_keras.balancing.base import Balancer
from mtl_keras.balancing.engine import GradientEngine, tape_sources
from mtl_keras.balancing.shared import ancestors, shared_layers

# ancestors and shared_layers live in mtl_keras.balancing.shared; kept importable from here.
__all__ = ["Step", "all_reduce", "ancestors", "shared_layers", "task_losses", "train_step"]


class Step:
    """What a balancer's ``gradients`` gets: the tape, the variables and the distribution helpers.

    ``gradient(target)`` returns loss-scaled gradients for ``variables`` (the optimizer unscales),
    ``all_reduce`` sums tensors over replicas, ``num_replicas`` is the number in sync.

    Example (inside a balancer's ``gradients``):
        >>> def gradients(self, step, losses, present):  # doctest: +SKIP
        ...     per_task = [step.gradient(loss) for loss in step.task_losses]
        ...     return [sum(g for g in gs if g is not None) for gs in zip(*per_task)]
    """

    def __init__(self, model, tape, variables, task_losses, objective, regularization, engine=None, features=()):
        self.model = model
        self.engine = engine
        self.features = list(features)
        self.targets = None
        self.target_values = None
        self.tape = tape
        self.variables = variables
        self.task_losses = task_losses
        self.objective = objective
        self.regularization = regularization
        self.has_regularization = bool(model.losses)
        self.num_replicas = tf.distribute.get_strategy().num_replicas_in_sync

    def loss_scale(self):
        """The current mixed-precision loss scale (1 without a ``LossScaleOptimizer``)."""
        opt = self.model.optimizer
        if isinstance(opt, keras.optimizers.LossScaleOptimizer):
            return ops.cast(opt.dynamic_scale, "float32")
        return ops.cast(getattr(opt, "loss_scale_factor", None) or 1.0, "float32")

    def scale(self, value):
        return value * self.loss_scale()

    def gradient(self, target, variables=None, unconnected_zero=False):
        """Loss-scaled gradients of ``target`` (recorded on the tape) for ``variables``.

        Args:
            target: a scalar tensor computed under the step's tape (a task loss or the objective).
            variables: the variables to differentiate for; ``None`` means ``self.variables``.
            unconnected_zero: give zeros instead of ``None`` for variables ``target`` does not depend on.

        Returns:
            A list of gradients, one per variable (``None`` where unconnected, unless ``unconnected_zero``).
        """
        variables = self.variables if variables is None else variables
        sources = tape_sources(variables)
        grads = self.tape.gradient(target, sources, output_gradients=ops.cast(self.loss_scale(), target.dtype))
        if unconnected_zero:
            grads = [ops.zeros_like(s) if g is None else g for g, s in zip(grads, sources)]
        return grads

    def all_reduce(self, values: list) -> list:
        """Sum each tensor over the replicas (identity on one replica): the module's ``all_reduce``.

        Args:
            values: a list of tensors computed in a replica context.

        Returns:
            The list, each tensor summed over the replicas.
        """
        return all_reduce(values)


def all_reduce(values):
    """Sum ``values`` (a tensor or a list of tensors) over the replicas in sync; identity on one replica.

    Args:
        values: a tensor, or a list of tensors, computed in a replica context.

    Returns:
        The same structure, each tensor summed over the replicas.

    Example:
        >>> [float(v) for v in all_reduce([tf.constant(2.0), tf.constant(3.0)])]  # one replica
        [2.0, 3.0]
    """
    if tf.distribute.get_strategy().num_replicas_in_sync == 1:
        return values
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)


def task_losses(model, y, y_pred, sample_weight=None):
    """Per-task losses for one batch: ``(contributions, present)``, in ``model.task_names`` order.

    ``contributions[k]`` (a scalar tensor) is this replica's share of task k's global-batch masked
    mean times its compile-time loss weight: summed over replicas it is the global masked mean, on
    one device it is just the masked mean. ``present`` (``[K]``) is 1.0 where task k has a label
    anywhere in the global batch.

    Args:
        model: a compiled ``MultiTaskModel`` (its losses and loss weights are read).
        y: the targets, ``{task: tensor}``.
        y_pred: the model's outputs, ``{task: tensor}``.
        sample_weight: ``{task: [batch] weights}`` (0 marks a missing label), or ``None`` for all present.

    Returns:
        ``(contributions, present)``: a list of K scalar float32 tensors and a ``[K]`` float32 tensor.

    Example:
        >>> import mtl_keras as mk, numpy as np
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "count"]), "mobilenet_v3_small", 32)
        >>> m.compile(balancer="uncertainty", loss_weights={"count": 2.0})
        >>> y = {"shape": np.array([1, 2]), "count": np.array([[1.0], [2.0]], "float32")}
        >>> pred = {"shape": np.full((2, 6), 1 / 6, "float32"), "count": np.array([[1.0], [0.0]], "float32")}
        >>> losses, present = task_losses(m, y, pred, {"shape": np.ones(2), "count": np.array([0.0, 1.0])})
        >>> [round(float(v), 4) for v in losses], [float(v) for v in present]  # ln 6; 2·Huber(2) over 1 label
        ([1.7918, 3.0], [1.0, 1.0])
    """
    terms = _task_terms(model, y, y_pred, sample_weight)
    return terms.contributions, terms.present


class _Terms:
    """One batch's per-task loss terms (see ``_task_terms``)."""

    def __init__(self, contributions, raw, counts):
        self.contributions = contributions  # this replica's share of each global mean, compile weight in
        self.raw = raw  # Keras' own per-output loss value (what its <task>_loss metric records)
        self.counts = counts  # labelled samples of each task in the global batch, [K]
        self.present = ops.cast(counts > 0, "float32")


def _task_terms(model, y, y_pred, sample_weight=None) -> _Terms:
    names = model.task_names
    losses = model._mtl_losses
    weights = model._mtl_loss_weights
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    raw, means, counts = [], [], []
    for name in names:
        w = sample_weight.get(name) if isinstance(sample_weight, dict) else None
        value = ops.cast(losses[name](y[name], y_pred[name], w), "float32")
        raw.append(value)
        # Keras divides each replica's mean by the replica count; undo it to get the local mean.
        means.append(value * replicas if replicas > 1 else value)
        if w is None:
            counts.append(ops.cast(ops.shape(y_pred[name])[0], "float32"))
        else:
            counts.append(ops.cast(ops.sum(ops.cast(w, "float32")), "float32"))
    local_counts = ops.stack(counts)
    global_counts = all_reduce(local_counts)
    contributions = []
    for k, name in enumerate(names):
        share = means[k] if replicas == 1 else means[k] * ops.divide_no_nan(local_counts[k], global_counts[k])
        contributions.append(share * weights[name])
    return _Terms(contributions, raw, global_counts)


class _StaticSum:
    """``static`` inside this step: the plain sum of the (compile-weighted) task losses."""

    needs_task_gradients = False

    def combine(self, losses, present, replica_scale=1.0):
        return ops.sum(losses)


def _metric(model, name):
    # Looked up while tracing only; a recompile makes new metric objects.
    return next((m for m in model.metrics if m.name == name), None)


def train_step(model, data):
    """One training step with ``model.balancer``; returns the logs like Keras' ``train_step``.

    ``MultiTaskModel.train_step`` calls it whenever the model was compiled with a balancer other
    than ``static``, or trains on several replicas; ``fit`` then runs it like Keras' own.

    Args:
        model: a compiled ``MultiTaskModel`` (its ``balancer``, losses and loss weights are read).
        data: one batch, ``(x, y)`` or ``(x, y, sample_weight)`` with ``y`` and the weights keyed by task.

    Returns:
        The metric logs of the batch (``loss``, ``<task>_loss``, the compiled metrics, ``weight_<task>``).

    Example (not run by the test suite: tracing a training step takes about a minute on 2 CPU cores;
    tests/test_balancing_training.py trains with every balancer):
        >>> import mtl_keras as mk  # doctest: +SKIP
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "box"]), "mobilenet_v3_small", 32)  # doctest: +SKIP
        >>> m.compile(optimizer="adam", balancer="pcgrad")  # doctest: +SKIP
        >>> ds = mk.data.load("shapes", "train", image_size=32, batch_size=4, size=4, tasks=m.tasks)  # doctest: +SKIP
        >>> history = m.fit(ds, epochs=1, verbose=0)  # doctest: +SKIP
        >>> sorted(k for k in history.history if k.startswith("weight_"))  # doctest: +SKIP
        ['weight_box', 'weight_shape']
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    balancer = model.balancer or _StaticSum()
    variables = list(model.trainable_variables)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if not model.optimizer.built:
        # Before the tape: the loss scale (a LossScaleOptimizer variable) must exist when traced.
        model.optimizer.build(variables)
    grad_level = getattr(balancer, "grad_level", None)
    engine = GradientEngine.of(model, grad_level) if grad_level else None
    with tf.GradientTape(persistent=balancer.needs_task_gradients) as tape:
        y_pred, features = engine.forward(x) if engine else (model(x, training=True), [])
        terms = _task_terms(model, y, y_pred, sample_weight)
        losses, present = ops.stack(terms.contributions), terms.present
        regularization = ops.cast(ops.sum(model.losses), "float32") / replicas if model.losses else ops.zeros(())
        if engine is None:
            objective = balancer.combine(losses, present, 1.0 / replicas) + regularization
        else:
            objective = None
            targets, target_values = engine.targets(balancer, losses, present, replicas)
    step = Step(model, tape, variables, terms.contributions, objective, regularization, engine, features)
    if engine is not None:
        step.targets, step.target_values = targets, target_values
    if balancer.needs_task_gradients:
        grads = balancer.gradients(step, losses, present)
    else:
        grads = step.gradient(objective)
    del tape
    model.optimizer.apply(grads, variables)
    if _observes(balancer):
        global_losses = all_reduce(losses) if replicas > 1 else losses
        balancer.observe(ops.stop_gradient(global_losses), terms.counts)
    _report_losses(model, x, y, y_pred, sample_weight, terms, regularization)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def _observes(balancer) -> bool:
    # Only balancers that override the hook pay for it (one more all-reduce across replicas).
    observe = getattr(type(balancer), "observe", None)
    return observe is not None and observe is not Balancer.observe


def _report_losses(model, x, y, y_pred, sample_weight, terms, regularization):
    """Update ``loss`` and ``<task>_loss`` as Keras' ``compute_loss`` would, from ``terms``.

    Keras' compiled loss records each output's unweighted loss (times the replica count, weighted by
    the batch size) and the loss tracker the compile-weighted sum plus the regularisation. Reading
    Keras' per-output trackers needs its private ``_flat_losses``; a Keras without them gets its own
    ``compute_loss`` (which computes every task loss a second time).
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    batch = ops.shape(next(t for t in tf.nest.flatten(x) if t is not None))[0]
    compile_loss = getattr(model, "_compile_loss", None)
    flat = getattr(compile_loss, "_flat_losses", None)
    if compile_loss is not None and not compile_loss.built:
        compile_loss.build(y, y_pred)
        flat = getattr(compile_loss, "_flat_losses", None)
    paths = [entry[0] for entry in flat] if flat is not None else None
    index = {n: k for k, n in enumerate(model.task_names)}
    if paths is None or any(len(p) != 1 or p[0] not in index for p in paths):
        reported = ops.cast(model.compute_loss(x, y, y_pred, sample_weight, training=True), "float32")
    else:
        for path, metric in zip(paths, compile_loss.metrics or [None] * len(paths)):
            if metric is not None:
                metric.update_state(terms.raw[index[path[0]]] * replicas, sample_weight=batch)
        weights = model._mtl_loss_weights
        reported = sum(terms.raw[k] * weights[n] for k, n in enumerate(model.task_names)) + regularization * replicas
    loss_tracker = _metric(model, "loss")
    if loss_tracker is not None:
        loss_tracker.update_state(reported * replicas, sample_weight=batch)
