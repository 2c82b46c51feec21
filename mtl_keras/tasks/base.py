"""What every task type provides: its head, loss, metrics, target encoding and output decoding.

A task type is one file under ``mtl_keras/tasks/`` with a ``Task`` subclass decorated by
``register_task_type``; nothing else needs to change to add one.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mtl_keras.errors import MtlError, unknown

TASK_TYPES: dict[str, type["Task"]] = {}


def register_task_type(cls):
    """Class decorator: make a ``Task`` subclass available under its ``kind``.

    Example:
        >>> @register_task_type
        ... class Ordinal(Task):
        ...     kind = "ordinal_example"
        >>> "ordinal_example" in TASK_TYPES
        True
    """
    TASK_TYPES[cls.kind] = cls
    return cls


class Task:
    """One task: a named output of the multi-task model.

    Subclasses set ``kind``, ``primary_metric`` (the metric reported first and compared across runs)
    and ``higher_is_better``, and implement ``head``, ``loss``, ``metrics``, ``encode`` and ``decode``.

    Example:
        >>> from mtl_keras.tasks import ClassificationTask
        >>> t = ClassificationTask("shape", classes=["circle", "square"])
        >>> t.name, t.num_outputs
        ('shape', 2)
    """

    kind = "task"
    primary_metric = "loss"
    higher_is_better = False
    # Whether the head reads the pooled shared vector (global tasks) or the dense taps.
    dense = False

    def __init__(self, name: str, depends_on=(), hidden_units: int = 256, dropout: float = 0.0):
        if not isinstance(name, str) or not name.isidentifier():
            raise MtlError(f"task name must be a Python identifier, got {name!r}")
        self.name = name
        self.depends_on = tuple(depends_on)
        self.hidden_units = int(hidden_units)
        self.dropout = float(dropout)

    # ----- model side -------------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        raise NotImplementedError

    def head(self, features: dict, extra: list | None = None):
        """Build this task's head on the shared ``features`` and return its named output tensor.

        ``features`` holds the trunk taps (``c3``, ``c4``, ``c5``) and ``pooled`` (the shared
        global-average vector); ``extra`` are the outputs of the tasks this one ``depends_on``.
        """
        return self.mlp(features["pooled"], extra)

    def mlp(self, x, extra=None):
        """The shared part of every global head: [features, deps] -> hidden Dense -> logits -> output layer.

        ``extra``: what this head reads of the tasks it ``depends_on``, each summarised by that
        task's ``summary_for`` (a vector per image).
        """
        if extra:
            x = keras.layers.Concatenate(name=f"{self.name}_with_deps")([x, *extra])
        x = keras.layers.Dense(self.hidden_units, activation="relu", name=f"{self.name}_hidden")(x)
        if self.dropout:
            x = keras.layers.Dropout(self.dropout, name=f"{self.name}_dropout")(x)
        logits = keras.layers.Dense(self.num_outputs, name=f"{self.name}_logits")(x)
        return self.output_layer()(logits)

    def summary_for(self, reader: str, output, index: int):
        """What the head of task ``reader`` reads of this task's ``output`` when it ``depends_on`` it.

        A global output is read as it is. A dense one (``[H, W, C]``, e.g. a mask) is averaged over
        the image: for a segmentation softmax that is the share of the image each class covers. It
        is then standardised (BatchNormalization), so its few values are not drowned by the
        thousands of pooled features. Layers are named ``{reader}_pool_{index}[_bn]``.
        """
        if len(output.shape) != 4:
            return output
        pooled = keras.layers.GlobalAveragePooling2D(name=f"{reader}_pool_{index}")(output)
        return keras.layers.BatchNormalization(momentum=0.9, name=f"{reader}_pool_{index}_bn")(pooled)

    def output_layer(self) -> keras.layers.Layer:
        """The head's last layer, named after the task and kept in float32 under mixed precision."""
        raise NotImplementedError

    def loss(self) -> keras.losses.Loss:
        raise NotImplementedError

    def metrics(self) -> list:
        raise NotImplementedError

    # ----- data side (runs inside tf.data) ----------------------------------------------------
    def encode(self, label, image_size):
        """Turn one sample's raw label into ``(target, weight)``; weight 0 marks a missing label."""
        raise NotImplementedError

    def target_signature(self, image_size: int) -> tf.TensorSpec:
        """Shape and dtype of one sample's encoded target."""
        raise NotImplementedError

    # ----- person side ------------------------------------------------------------------------
    def decode(self, output) -> dict:
        """Turn one sample's raw output (numpy) into something a person (and JSON) can read."""
        raise NotImplementedError

    # ----- serialization ----------------------------------------------------------------------
    def get_config(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "depends_on": list(self.depends_on),
            "hidden_units": self.hidden_units,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config: dict) -> "Task":
        config = dict(config)
        kind = config.pop("kind", cls.kind)
        if cls is Task:
            if kind not in TASK_TYPES:
                raise unknown("task type", kind, TASK_TYPES)
            return TASK_TYPES[kind].from_config(config)
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "kind")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return isinstance(other, Task) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((self.kind, self.name))
