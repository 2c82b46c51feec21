"""``MultiTaskModel``: a functional Keras model that knows its tasks and trains them with a balancer.

``compile`` fills in each task's loss and metrics; ``train_step`` hands over to the balanced step
(``mtl_keras.balancing.step``) when a balancer other than ``static`` or several replicas are in play.

Example:
    >>> import mtl_keras as mk
    >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["color"]), image_size=32)
    >>> isinstance(m, MultiTaskModel)
    True
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mtl_keras import tasks as task_lib
from mtl_keras.balancing import BalancerLogger, get_balancer
from mtl_keras.balancing.step import train_step as balanced_train_step
from mtl_keras.errors import MtlError, unknown
from mtl_keras.model.replicas import logs_for_reduction, one_replica_batch
@keras.saving.register_keras_serializable(package="mtl_keras")
class MultiTaskModel(keras.Model):
    """A functional Keras model that knows its tasks.

    Behaves like any functional model (``fit``, ``evaluate``, ``save``); on top of that ``compile``
    fills in each task's loss and metrics, accepts a partial ``loss_weights`` dict (unnamed tasks
    weigh 1.0), and ``fit``/``evaluate`` drop dataset targets for tasks the model does not have.

    Example:
        >>> import mtl_keras as mk
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["color"]), image_size=32)
        >>> m.compile(optimizer="adam", loss_weights={"color": 2.0})
        >>> [t.name for t in m.tasks]
        ['color']
    """

    def __init__(self, *args, tasks=None, build_config=None, **kwargs):
        super().__init__(*args, **kwargs)
        # from_config builds the graph first and attaches the tasks after.
        self.tasks = task_lib.check_unique(tasks) if tasks is not None else []
        self.build_config = dict(build_config or {})
        # Set by compile(balancer=...): None means Keras' own train_step (the static balancer).
        self.balancer = None

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str):
        """The model's task called ``name``.

        Args:
            name: the task name (its output name).

        Returns:
            The ``Task`` object.

        Raises:
            MtlError: the model has no task of that name.
        """
        for t in self.tasks:
            if t.name == name:
                return t
        raise unknown("task", name, self.task_names)

    # ----- compile ----------------------------------------------------------------------------
    def _per_task(self, value, what: str, default) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise MtlError(f"{what} must be a dict keyed by task name ({', '.join(self.task_names)})")
        for k in value:
            if k not in self.task_names:
                raise MtlError(f"{what} names {k!r}, which is not a task of this model; tasks: {', '.join(self.task_names)}")
        return {t.name: (value[t.name] if t.name in value else default(t)) for t in self.tasks}

    def compile(self, optimizer="adam", loss=None, loss_weights=None, metrics=None, balancer="static", **kwargs):
        """``keras.Model.compile`` with per-task defaults and a task balancer.

        ``loss`` / ``metrics`` / ``loss_weights`` are dicts keyed by task name; tasks left out get
        their task's loss, metrics and a weight of 1.0. ``balancer`` is a name from
        ``mtl_keras.balancing.BALANCERS`` or a ``Balancer`` instance with its options; the default
        ``"static"`` is plain Keras (``loss_weights`` only). Other balancers work on top of the
        ``loss_weights`` and train with ``mtl_keras.balancing.step.train_step``.

        Args:
            optimizer: any Keras optimizer or its name.
            loss: ``{task: loss}`` for the tasks whose loss to replace.
            loss_weights: ``{task: weight >= 0}``; unnamed tasks weigh 1.0.
            metrics: ``{task: [metric, ...]}``; weighted by label presence.
            balancer: a balancer name or ``Balancer`` instance (default ``"static"``).
            **kwargs: the rest of ``keras.Model.compile`` (``jit_compile``, ``steps_per_execution``...).

        Example:
            >>> import mtl_keras as mk
            >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["color", "count"]), image_size=32)
            >>> m.compile(loss_weights={"count": 0.5}, balancer="uncertainty")
            >>> m.balancer.key, m._mtl_loss_weights
            ('uncertainty', {'color': 1.0, 'count': 0.5})
        """
        # A reloaded model's compile config names them weighted_metrics (see below).
        if metrics is None:
            metrics = kwargs.pop("weighted_metrics", None)
        elif kwargs.get("weighted_metrics") is not None:
            raise MtlError("pass task metrics as `metrics` only; they are always weighted by label presence")
        kwargs.pop("weighted_metrics", None)
        loss = self._per_task(loss, "loss", lambda t: t.loss())
        metrics = self._per_task(metrics, "metrics", lambda t: t.metrics())
        loss_weights = self._per_task(loss_weights, "loss_weights", lambda t: 1.0)
        for name, w in loss_weights.items():
            try:
                w = float(w)
            except (TypeError, ValueError):
                raise MtlError(f"loss weight of task {name!r} must be a number, got {w!r}") from None
            if not (w >= 0 and w != float("inf")):
                raise MtlError(f"loss weight of task {name!r} must be finite and >= 0, got {w}")
            loss_weights[name] = w
        # Sample weights here mean "this sample has a label for this task": metrics must see them too,
        # so the task metrics go in as Keras' weighted_metrics (plain `metrics` ignore sample weights).
        self._attach_balancer(balancer, loss)
        self._mtl_loss_weights = dict(loss_weights)
        # Attached before Keras' compile, so the optimizer is built with the balancer's variables too.
        super().compile(
            optimizer=optimizer, loss=loss, loss_weights=loss_weights, weighted_metrics=metrics, **kwargs
        )

    def _attach_balancer(self, balancer, loss) -> None:
        old = getattr(self, "balancer", None)
        if isinstance(balancer, str) and old is not None and _same_balancer(balancer, old):
            balancer = old  # recompiling with the same name keeps the learned state
        with self.distribute_strategy.scope():
            balancer = get_balancer(balancer, self.task_names, [t.kind for t in self.tasks])
        if old is not None and balancer is not old:
            raise MtlError(
                f"this model was compiled with balancer {old.key!r}; changing balancers needs a fresh model "
                "(its variables are part of the model)"
            )
        self.balancer = balancer
        self._mtl_losses = {}
        for name, fn in loss.items():
            fn = keras.losses.get(fn) if isinstance(fn, (str, dict)) else fn
            if not isinstance(fn, keras.losses.Loss):
                fn = keras.losses.LossFunctionWrapper(fn, reduction="mean_with_sample_weight")
            self._mtl_losses[name] = fn

    def get_compile_config(self):
        # Keras records the arguments its own compile() received: our filled-in per-task dicts;
        # the balancer (with its options) is ours to add.
        config = super().get_compile_config()
        if config and self.balancer is not None:
            config["balancer"] = keras.saving.serialize_keras_object(self.balancer)
        return config

    # ----- training ---------------------------------------------------------------------------
    def train_step(self, data):
        if self.balancer is None and self.distribute_strategy.num_replicas_in_sync == 1:
            return super().train_step(data)
        # Several replicas: Keras' own step would average each replica's masked mean, not take the
        # global batch's; ours weighs each replica by its share of the labels (mtl_keras.balancing.step).
        return logs_for_reduction(balanced_train_step(self, data))

    def test_step(self, data):
        return logs_for_reduction(super().test_step(data))

    def compile_from_config(self, config):
        """Recompile a loaded model with the losses, weights and metrics it was saved with."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # ----- data -------------------------------------------------------------------------------
    def _select_targets(self, data):
        """Keep only the targets (and weights) of this model's tasks in a ``tf.data`` dataset."""
        if not isinstance(data, tf.data.Dataset):
            return data
        spec = data.element_spec
        if not (isinstance(spec, tuple) and len(spec) >= 2 and isinstance(spec[1], dict)):
            return data
        missing = [n for n in self.task_names if n not in spec[1]]
        if missing:
            raise MtlError(
                f"the dataset has no targets for task(s) {', '.join(missing)}; it has: {', '.join(sorted(spec[1]))}"
            )
        if set(spec[1]) == set(self.task_names):
            return data
        names = self.task_names
        return data.map(lambda *el: tuple({n: part[n] for n in names} if isinstance(part, dict) else part for part in el))

    def fit(self, x=None, *args, validation_data=None, callbacks=None, **kwargs):
        if self.balancer is not None:
            callbacks = list(callbacks or [])
            if not any(isinstance(c, BalancerLogger) for c in callbacks):
                # First, so History, CSVLogger and TensorBoard all see the weight_<task> entries.
                callbacks.insert(0, BalancerLogger())
        x = self._select_targets(x)
        self._build_state(x)
        return super().fit(
            x, *args, validation_data=self._select_targets(validation_data), callbacks=callbacks, **kwargs,
        )

    def evaluate(self, x=None, *args, **kwargs):
        x = self._select_targets(x)
        self._build_state(x)
        return super().evaluate(x, *args, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Workaround for keras-team/keras#20585: Keras' own version all-reduces the first batch to
        # learn its shapes, which fails across workers; one replica's part gives the same shapes.
        # tests/test_multiworker.py fails without it.
        if iterator is not None and data_batch is None and getattr(self, "_distribute_strategy", None) is not None:
            for _, _, it in iterator:
                data_batch = one_replica_batch(next(it), self.distribute_strategy)
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _build_state(self, data):
        """Create optimizer slots and metric/loss state from the dataset's spec, before the first step.

        Without a distribution strategy Keras defers this to the first trace of the train function;
        variables created inside a ``tf.function`` make it trace a second time, which on ResNet50
        costs ~10 s of a 2-core CPU per ``fit`` (bench/README.md, Profile). Keras' own symbolic
        build (what it runs under a strategy) does it on KerasTensors: no data is read.
        """
        if not isinstance(data, tf.data.Dataset) or getattr(self, "_distribute_strategy", None) is not None:
            return
        build = getattr(self, "_symbolic_build", None)
        if build is None:  # a Keras without it: the deferred build still works, only slower
            return
        build(data_batch=data.element_spec)

    # ----- serialization ----------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config["tasks"] = [t.get_config() for t in self.tasks]
        config["build_config_mtl"] = self.build_config
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from keras.src.models.functional import functional_from_config  # lazy: Keras' private module, only on load

        config = dict(config)
        tasks = [task_lib.from_config(c) for c in config.pop("tasks", [])]
        build_config = config.pop("build_config_mtl", {})
        model = functional_from_config(cls, config, custom_objects=custom_objects)
        model.tasks = task_lib.check_unique(tasks)
        model.build_config = build_config
        return model


def _same_balancer(name: str, balancer) -> bool:
    """Whether ``name`` (``"mgda"`` or ``"mgda@parameters"``) names ``balancer``'s method (and level)."""
    key, _, level = name.strip().lower().partition("@")
    return key == balancer.key and (not level or level == getattr(balancer, "grad_level", None))
