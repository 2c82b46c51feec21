"""What every task type provides: its head, loss, metrics, target encoding and output decoding.

A task type is one file under ``mtl_keras/tasks/`` with a ``Task`` subclass decorated by
``register_task_type``; nothing else needs to change to add one. Besides the model and data sides,
the class carries what the later stages ask of a task type:

- ``decode``: one sample's output for a person and JSON (through the numpy decoders of ``demo``,
  which the device runs, so the two cannot differ);
- ``card_decoding``: the decoding settings written to the model card for the device;
- ``export_tolerance``: how far int8 may lower the primary metric before the export suggests
  keeping the head in float (``--float-heads``);
- ``likelihood_factor``: the likelihood's factor in the ``uncertainty`` balancer;
- ``gradcam_score`` and ``gradcam_reads_logits``: the Grad-CAM score rule (``mtl_keras.explain``);
- ``example``: a small instance with a sample label and output, which the contract test
  (``tests/test_task_contract.py``) runs every registered type through.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
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
        >>> del TASK_TYPES["ordinal_example"]
    """
    TASK_TYPES[cls.kind] = cls
    return cls


class TaskExample(NamedTuple):
    """A small task of one type with one sample's raw label and one sample's raw head output.

    Example:
        >>> from mtl_keras.tasks import RegressionTask
        >>> ex = RegressionTask.example()
        >>> ex.task.name, ex.label.tolist(), ex.output.shape
        ('count', [3.0], (1,))
    """

    task: "Task"
    label: object  # as a data source yields it, before ``encode``
    output: np.ndarray  # one sample's head output, without the batch axis


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
    # The largest drop of the primary metric (int8 .tflite against Keras) taken as quantization noise;
    # a larger one earns a --float-heads hint. None: no hint, the metric has no scale to compare to.
    export_tolerance: float | None = None
    # c in the uncertainty balancer's c·exp(-s)·L + s/2: 1 for a softmax/sigmoid likelihood, 1/2
    # for a Gaussian one (Kendall, Gal & Cipolla 2018).
    likelihood_factor = 1.0
    # Grad-CAM scores the input of the head's final softmax/sigmoid (the logits) when True.
    gradcam_reads_logits = False

    def __init__(self, name: str, depends_on=(), hidden_units: int = 256, dropout: float = 0.0,
                 shared_features: bool = True):
        if not isinstance(name, str) or not name.isidentifier():
            raise MtlError(f"task name must be a Python identifier, got {name!r}")
        self.name = name
        self.depends_on = tuple(depends_on)
        self.hidden_units = int(hidden_units)
        self.dropout = float(dropout)
        # False: a global head that depends on other tasks reads only what they give it (see ``mlp``).
        self.shared_features = bool(shared_features)

    # ----- model side -------------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        raise NotImplementedError

    def head(self, features: dict, extra: list | None = None):
        """Build this task's head on the shared ``features`` and return its named output tensor.

        ``features`` holds the trunk taps (``c3``, ``c4``, ``c5``) and ``pooled`` (the shared
        global-average vector); ``extra`` are the outputs of the tasks this one ``depends_on``.

        Args:
            features: ``{"c3", "c4", "c5": map tensors, "pooled": [B, C] tensor, ...}`` of the shared trunk.
            extra: the summaries of the tasks this one ``depends_on`` (``summary_for``), or ``None``.

        Returns:
            The head's symbolic output tensor, produced by a layer named after the task.
        """
        return self.mlp(features["pooled"], extra)

    def mlp(self, x, extra=None):
        """The shared part of every global head: [features, deps] -> hidden Dense -> logits -> output layer.

        ``extra``: what this head reads of the tasks it ``depends_on``, each summarised by that
        task's ``summary_for`` (a vector per image). They join the features before the hidden layer
        and also reach the logits through one linear layer of their own (``{name}_deps_logits``,
        zero at the start): a wide-and-deep head. The few dependency values are otherwise a small
        part of the hidden layer's thousands of inputs, and the head learns to trust them late;
        the direct path lets it use another head's answer as soon as that answer is informative.

        With ``shared_features=False`` the head reads only ``extra``, not ``x``. That suits a head
        about one object that reads a detector (``MainObjectPool``): the globally pooled features mix
        every object of the picture, and with them the head learns the wrong object's colour or shape
        from the scenes where another object dominates the average (README, "The recipe").

        Args:
            x: the input vector tensor, ``[B, C]`` (usually ``features["pooled"]``).
            extra: the summaries of the tasks this one ``depends_on``; ``None`` for none.

        Returns:
            The output tensor of ``output_layer()``, ``[B, num_outputs]``.
        """
        if not self.shared_features and not extra:
            raise MtlError(f"task {self.name!r} reads no shared features (shared_features=False) and depends on no "
                           f"other task: its head would have no input; give it depends_on or shared_features=True")
        deps = None
        if extra:
            deps = extra[0] if len(extra) == 1 else keras.layers.Concatenate(name=f"{self.name}_deps")(extra)
            # Without the shared features the dependencies are the whole input, concatenated once for both paths.
            x = keras.layers.Concatenate(name=f"{self.name}_with_deps")([x, *extra]) if self.shared_features else deps
        x = keras.layers.Dense(self.hidden_units, activation="relu", name=f"{self.name}_hidden")(x)
        if self.dropout:
            x = keras.layers.Dropout(self.dropout, name=f"{self.name}_dropout")(x)
        logits = keras.layers.Dense(self.num_outputs, name=f"{self.name}_logits")(x)
        if deps is not None:
            wide = keras.layers.Dense(self.num_outputs, kernel_initializer="zeros", use_bias=False,
                                      name=f"{self.name}_deps_logits")(deps)
            logits = keras.layers.Add(name=f"{self.name}_logits_sum")([logits, wide])
        return self.output_layer()(logits)

    def summary_for(self, reader: str, output, index: int, features=None, spatial: bool = False):
        """What the head of task ``reader`` reads of this task's ``output`` when it ``depends_on`` it.

        A global output is read as it is. A dense one (``[H, W, C]``, e.g. a mask) is averaged over
        the image: for a segmentation softmax that is the share of the image each class covers. It
        is then standardised (BatchNormalization), so its few values are not drowned by the
        thousands of pooled features. Layers are named ``{reader}_pool_{index}[_bn]``.

        Args:
            reader: the name of the task whose head reads this output.
            output: this task's symbolic output tensor.
            index: the position of this task in the reader's ``depends_on`` (for unique layer names).
            features: the shared features the reader's head gets (a task type may pool them with its output).
            spatial: the reader is a dense head: it reads a map as it is, not pooled.

        Returns:
            ``output`` itself when it is not a 4-D map or the reader is dense, else a ``[B, C]`` pooled,
            batch-normalised tensor.

        Raises:
            MtlError: a dense reader of a global output (it has no map to read).
        """
        if spatial:
            if len(output.shape) != 4:
                raise MtlError(f"task {reader!r} is dense and can only depend on dense tasks; {self.name!r} is not")
            return output
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
        """Turn one sample's raw label into ``(target, weight)``; weight 0 marks a missing label.

        Args:
            label: one sample's raw label tensor, in the task type's label format.
            image_size: side of the square model input, in pixels.

        Returns:
            ``(target, weight)``: a tensor matching ``target_signature`` and a float32 scalar.
        """
        raise NotImplementedError

    def target_signature(self, image_size: int) -> tf.TensorSpec:
        """Shape and dtype of one sample's encoded target.

        Args:
            image_size: side of the square model input, in pixels.

        Returns:
            A ``tf.TensorSpec`` without the batch axis.
        """
        raise NotImplementedError

    # ----- person side ------------------------------------------------------------------------
    def decode(self, output) -> dict:
        """Turn one sample's raw output (numpy) into something a person (and JSON) can read.

        Args:
            output: one sample's head output, a numpy array without the batch axis.

        Returns:
            A JSON-safe dict (the keys depend on the task type).
        """
        raise NotImplementedError

    def card_decoding(self) -> dict:
        """The decoding settings the model card gives the device for this task (thresholds, top-k).

        They must be JSON-safe (plain dicts, lists, str, numbers) and are read by ``demo.heads.decode``.

        Returns:
            A dict, empty when the output needs no setting to decode.

        Example:
            >>> from mtl_keras.tasks import BoxTask
            >>> BoxTask("box").card_decoding()
            {}
        """
        return {}

    # ----- explanation side ---------------------------------------------------------------------
    @classmethod
    def has_gradcam_score(cls) -> bool:
        """Whether this task type defines a Grad-CAM score rule (``gradcam_score``).

        Returns:
            True when a subclass overrides ``gradcam_score``.

        Example:
            >>> from mtl_keras.tasks import BoxTask
            >>> BoxTask.has_gradcam_score(), Task.has_gradcam_score()
            (True, False)
        """
        return cls.gradcam_score is not Task.gradcam_score

    def gradcam_score(self, raw, labels, target):
        """The Grad-CAM score of this task for one batch: what each image's map should explain.

        Reads ``gradcam_reads_logits``: when True, ``raw`` and the score's input are the logits
        before the head's final softmax/sigmoid, as Grad-CAM prescribes; else the head's output.
        ``mtl_keras.explain.scores.build_score`` normalises ``target`` and checks ``labels`` first.

        Args:
            raw: the head's tensor for the batch, numpy ``[B, ...]``.
            labels: the batch's raw labels for this task, or ``None``.
            target: ``"predicted"``, ``"label"`` or a task-specific target (a class, a coordinate).

        Returns:
            A ``mtl_keras.tasks.scoring.TaskScore``: a ``[B, ...] -> [B]`` function and, per image,
            what it scores.

        Example:
            >>> import numpy as np
            >>> from mtl_keras.tasks import RegressionTask
            >>> RegressionTask("count").gradcam_score(np.zeros((2, 1)), None, "predicted").targets
            ['value[0]', 'value[0]']
        """
        raise NotImplementedError(f"task type {self.kind!r} has no Grad-CAM score rule")

    # ----- contract ---------------------------------------------------------------------------
    @classmethod
    def example(cls, image_size: int = 16) -> TaskExample:
        """A small task of this type with one sample label and output (for the contract test).

        Args:
            image_size: the square input size the label is made for (a multiple of 4).

        Returns:
            A ``TaskExample(task, label, output)``.

        Example:
            >>> from mtl_keras.tasks import ClassificationTask
            >>> ClassificationTask.example().task.classes
            ['circle', 'square', 'star']
        """
        raise NotImplementedError(f"task type {cls.kind!r} has no example")

    # ----- serialization ----------------------------------------------------------------------
    def get_config(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "depends_on": list(self.depends_on),
            "hidden_units": self.hidden_units,
            "dropout": self.dropout,
            "shared_features": self.shared_features,
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
