"""What every task balancer provides, and the registry that ``compile(balancer=...)`` reads.

A balancer is a Keras layer attached to the model (``model.balancer``): its variables (learned
log-variances, task weights, loss history) are model weights, so they save and load with the
``.keras`` file, follow ``BackupAndRestore`` and are created under the model's distribution strategy.
It is never called on tensors; the training step asks it for the combined loss (``combine``) or,
for gradient-level balancers, for the gradients themselves (``gradients``).
"""

from __future__ import annotations

import keras
from keras import ops

from mtl_keras.errors import MtlError, unknown

BALANCERS: dict[str, type["Balancer"]] = {}


def register_balancer(cls):
    """Class decorator: make a ``Balancer`` subclass available under its ``key``.

    Example:
        >>> @register_balancer
        ... class Halves(Balancer):
        ...     key = "halves_example"
        ...     def task_weights(self):
        ...         return ops.full((len(self.task_names),), 0.5)
        >>> "halves_example" in BALANCERS
        True
        >>> _ = BALANCERS.pop("halves_example")
    """
    if not cls.key or cls.key in BALANCERS and BALANCERS[cls.key] is not cls:
        raise MtlError(f"balancer key {cls.key!r} is empty or already registered")
    BALANCERS[cls.key] = keras.saving.register_keras_serializable(package="mtl_keras")(cls)
    return cls


class Balancer(keras.layers.Layer):
    """Base class: weighs the per-task losses L_i into the training objective.

    The losses a balancer sees already carry the compile-time ``loss_weights`` (which stay plain
    Keras), so a balancer works on top of them. Subclasses set ``key`` and override
    ``task_weights`` (and ``combine`` or ``gradients`` where the rule is not a weighted sum).

    Example:
        >>> b = get_balancer("dwa")
        >>> b.setup(["shape", "box"], ["classification", "box"])
        >>> [float(w) for w in b.task_weights()]
        [1.0, 1.0]
    """

    key = ""
    # True where the training step must leave the gradients to the balancer (PCGrad, GradNorm).
    needs_task_gradients = False

    def __init__(self, tasks=None, kinds=None, **kwargs):
        kwargs.setdefault("name", "balancer")
        super().__init__(**kwargs)
        self.task_names: list[str] = []
        self.task_kinds: list[str] = []
        if tasks is not None:
            self.setup(tasks, kinds)

    # ----- life cycle ---------------------------------------------------------------------------
    def setup(self, tasks, kinds=None) -> None:
        """Bind the balancer to the model's tasks (names in output order) and create its variables.

        ``compile`` does this; a balancer is bound to one model's tasks for life.

        Args:
            tasks: the task names, in the model's output order (at least one).
            kinds: each task's type key (``"classification"``, ``"box"``, ...), same order; ``None`` stores ``"task"``.

        Raises:
            MtlError: ``tasks`` is empty, or the balancer is already set up for other tasks.

        Example:
            >>> b = get_balancer("uncertainty"); b.setup(["shape", "count"], ["classification", "regression"])
            >>> tuple(b.log_vars.shape)
            (2,)
        """
        if self.built:
            if list(tasks) != self.task_names:
                raise MtlError(
                    f"balancer {self.key!r} was set up for tasks {self.task_names}, not {list(tasks)}; use a new instance"
                )
            return
        tasks = list(tasks)
        if not tasks:
            raise MtlError("a balancer needs at least one task")
        self.task_names = tasks
        self.task_kinds = list(kinds) if kinds is not None else ["task"] * len(tasks)
        self.build_variables(len(tasks))
        self.built = True

    def build_variables(self, num_tasks: int) -> None:
        """Create the balancer's variables with ``self.add_weight``; nothing by default.

        Args:
            num_tasks: the number of tasks K (the length of every per-task variable).
        """

    def _state(self, name, shape, initializer="zeros"):
        """A non-trainable variable every replica holds the same value of (updated in the step)."""
        return self.add_weight(
            name=name, shape=shape, initializer=initializer, trainable=False, aggregation="only_first_replica"
        )

    # ----- the rules ----------------------------------------------------------------------------
    def task_weights(self):
        """The weight each task's loss gets now, a ``[K]`` tensor (logged as ``weight_<task>``)."""
        return ops.ones((len(self.task_names),), "float32")

    def combine(self, losses, present, replica_scale=1.0):
        """The objective from ``losses`` (``[K]``, this replica's share of each global-batch mean loss).

        ``present[k]`` is 1.0 where task k has at least one label in the global batch; terms that
        do not scale with a loss (a regulariser) are multiplied by ``replica_scale`` so that the
        replicas' sum counts them once.

        Args:
            losses: a ``[K]`` float32 tensor of per-task loss contributions (``task_losses`` order).
            present: a ``[K]`` float32 tensor, 1.0 where the task has a label in the global batch.
            replica_scale: factor for terms that do not scale with a loss (``1 / num_replicas``).

        Returns:
            A scalar tensor: the objective to differentiate (by default Σ λ_k·L_k, weights held constant).
        """
        return ops.sum(ops.stop_gradient(self.task_weights()) * losses)

    def gradients(self, step, losses, present):
        """Gradients for ``step.variables``; only balancers with ``needs_task_gradients`` implement it.

        Args:
            step: the ``Step`` of this batch (tape, variables, per-task losses, replica helpers).
            losses: a ``[K]`` float32 tensor of per-task loss contributions.
            present: a ``[K]`` float32 tensor, 1.0 where the task has a label in the global batch.

        Returns:
            One gradient (or ``None``) per variable of ``step.variables``, loss-scaled like ``step.gradient``.

        Raises:
            NotImplementedError: the balancer combines losses instead (``needs_task_gradients`` False).
        """
        raise NotImplementedError

    def observe(self, losses, counts) -> None:
        """Called by every training step (in the graph) with what the global batch held of each task.

        Balancers that keep statistics over an epoch (DWA) accumulate them here, so that batches
        without labels for a task do not dilute its mean. Nothing by default.

        Args:
            losses: a ``[K]`` float32 tensor, each task's global-batch masked-mean loss (compile weight
                included; 0 where the task has no label in the batch).
            counts: a ``[K]`` float32 tensor, the number of labelled samples of each task in the global batch.
        """

    def on_epoch_end(self, epoch: int, task_losses: dict) -> None:
        """Called after each training epoch with the epoch-mean loss of every task.

        Args:
            epoch: the index of the epoch that ended (from 0).
            task_losses: ``{task: epoch-mean loss}`` as floats; tasks without a logged loss are absent.
        """

    def current_weights(self) -> dict:
        """``{task: weight}`` as Python floats, for logs and reports.

        Example:
            >>> b = get_balancer("uncertainty", tasks=["shape", "count"], kinds=["classification", "regression"])
            >>> b.current_weights()
            {'shape': 1.0, 'count': 0.5}
        """
        values = keras.ops.convert_to_numpy(self.task_weights())
        return {n: round(float(v), 6) for n, v in zip(self.task_names, values)}

    # ----- serialization ------------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update(tasks=self.task_names or None, kinds=self.task_kinds or None)
        return config

    def compute_output_shape(self, input_shape):
        return input_shape


def get_balancer(balancer, tasks=None, kinds=None) -> Balancer | None:
    """A balancer from a name or an instance; ``None`` and ``"static"`` mean plain Keras (returns None).

    Args:
        balancer: a registered name (case-insensitive; a gradient-level one may add its level,
            ``"mgda@parameters"``), a ``Balancer``, a serialized one (dict), or ``None``.
        tasks: task names to ``setup`` the balancer with; ``None`` leaves it unbound.
        kinds: the tasks' type keys, passed to ``setup`` with ``tasks``.

    Returns:
        The ``Balancer``, or ``None`` for ``None`` and ``"static"`` (plain Keras weighting).

    Raises:
        MtlError: an unknown name, or an object that is not a ``Balancer``.

    Example:
        >>> get_balancer("static") is None
        True
        >>> type(get_balancer("pcgrad")).__name__
        'PCGrad'
        >>> get_balancer("softmax")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: unknown balancer 'softmax'; available: aligned_mtl, cagrad, db_mtl, dwa, ...
    """
    if balancer is None:
        return None
    if isinstance(balancer, str):
        key, _, level = balancer.strip().lower().partition("@")
        if key not in BALANCERS:
            raise unknown("balancer", key, BALANCERS)
        if level and not issubclass(BALANCERS[key], GramianBalancer):
            raise MtlError(f"balancer {key!r} has no gradient level (only gradient-level balancers take @features/@parameters)")
        if level and level not in GRAD_LEVELS:
            raise unknown("gradient level", level, GRAD_LEVELS)
        balancer = BALANCERS[key](grad_level=level) if level else BALANCERS[key]()
    elif isinstance(balancer, dict):  # a serialized balancer, as in a saved compile config
        balancer = keras.saving.deserialize_keras_object(balancer)
    if not isinstance(balancer, Balancer):
        raise MtlError(f"balancer must be a name ({', '.join(sorted(BALANCERS))}) or a Balancer, got {balancer!r}")
    if balancer.key == "static":
        return None
    if tasks is not None:
        balancer.setup(tasks, kinds)
    return balancer


GRAD_LEVELS = ("features", "parameters")


class GramianBalancer(Balancer):
    """Base class of gradient-level balancers: a rule from the tasks' K×K Gramian to K weights.

    The gradient engine (``mtl_keras.balancing.engine``) computes each task's gradient g_k once per
    step, on the shared parameters (``grad_level="parameters"``) or on the shared features the heads
    read (``"features"``: K backward passes through the heads and one through the trunk), forms the
    Gramian G[k, l] = g_k·g_l of the global batch with the loss scale removed, and asks ``rule``
    for the c with which the shared part of the update is Σ_k c_k g_k. Projection methods (PCGrad,
    GradVac, UPGrad...) fit too: their result stays a combination of the task gradients, so only
    its coefficients are needed. Task-specific parameters (the heads) get the plain sum of their
    tasks' gradients, as in LibMTL. A task with no label in the global batch has a zero row and
    column in G and the engine sets its weight to 0, whatever the rule returns.

    Subclasses set ``key`` and override ``rule`` (and ``transform_losses`` to balance a function of
    the losses, e.g. their logarithm). ``task_weights`` reports the weights of the last step.

    Example:
        >>> class Mean(GramianBalancer):
        ...     key = "mean_example"
        ...     def rule(self, gram, losses, present):
        ...         return present / ops.maximum(ops.sum(present), 1.0)
        >>> b = Mean(tasks=["a", "b"])
        >>> [float(v) for v in b.rule(ops.eye(2), ops.ones(2), ops.ones(2))]
        [0.5, 0.5]
    """

    needs_task_gradients = True

    def __init__(self, grad_level: str = "features", **kwargs):
        if grad_level not in GRAD_LEVELS:
            raise MtlError(f"grad_level must be one of {', '.join(GRAD_LEVELS)}, got {grad_level!r}")
        self.grad_level = grad_level
        super().__init__(**kwargs)

    def setup(self, tasks, kinds=None) -> None:
        was_built = self.built
        super().setup(tasks, kinds)
        if not was_built:
            # The weights of the last step, for logs (weight_<task>); 1 before the first step.
            self.last_weights = self._state("last_weights", (len(self.task_names),), "ones")

    def task_weights(self):
        return ops.cast(self.last_weights, "float32")

    def transform_losses(self, losses, present):
        """The per-task objectives whose gradients are balanced; the losses themselves by default.

        Args:
            losses: a ``[K]`` float32 tensor (this replica's share of each task's global-batch loss).
            present: a ``[K]`` float32 tensor, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` tensor, differentiable in ``losses`` (DB-MTL returns log L_k).
        """
        return losses

    def rule(self, gram, losses, present):
        """The rule: K coefficients c such that the shared update is Σ_k c_k g_k.

        (Not named ``weights``: that is the Keras layer's list of variables.)

        Args:
            gram: ``[K, K]`` float32 Gramian of the task gradients (global batch, loss scale removed;
                zero row and column for an absent task).
            losses: ``[K]`` float32 global-batch values of ``transform_losses`` (0 for an absent task).
            present: ``[K]`` float32, 1.0 where the task has a label in the global batch.

        Returns:
            A ``[K]`` float32 tensor of coefficients (the engine zeroes absent tasks).
        """
        raise NotImplementedError

    def gradients(self, step, losses, present):
        grads, coefficients = step.engine.balanced_gradients(self, step, step.targets, step.target_values, present)
        self.last_weights.assign(coefficients)
        return grads

    def get_config(self):
        return {**super().get_config(), "grad_level": self.grad_level}
