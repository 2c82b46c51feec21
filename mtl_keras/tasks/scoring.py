"""What a task type's Grad-CAM score rule (``Task.gradcam_score``) is made of.

A score is the scalar per image whose evidence a class-activation map shows. Each task type
builds its own from the head's tensor for a batch; ``mtl_keras.explain.scores`` only dispatches to
it. The pieces here are shared by the task types so that their rules agree on the target names
(``predicted``, ``label``, a class name or index) and on how a class is picked per image.

Example:
    >>> import numpy as np
    >>> s = TaskScore(lambda out: pick(out, [1, 0]), ["b", "a"], "logit of the given class")
    >>> [float(v) for v in s(np.array([[1.0, 5.0], [2.0, 3.0]], "float32"))]
    [5.0, 2.0]
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from mtl_keras.errors import MtlError, unknown

PREDICTED, LABEL = "predicted", "label"


@dataclasses.dataclass
class TaskScore:
    """A batch score function for tf-keras-vis plus, per image, what it scores (for people and JSON).

    Calling it on the head's tensor (``[B, ...]``) gives one score per image (``[B]``).

    Example:
        >>> import numpy as np
        >>> s = TaskScore(lambda out: out[:, 1], ["b"], "second unit")
        >>> [float(v) for v in s(np.array([[1.0, 5.0]], "float32"))]
        [5.0]
    """

    fn: Callable
    targets: list
    what: str

    def __call__(self, output):
        # Logits are float16 under mixed precision; scores (and their gradients) are taken in float32.
        return self.fn(tf.cast(tf.convert_to_tensor(output), tf.float32))


def class_index(task, target) -> int:
    """The index of the class a user names as a Grad-CAM target: a class name or its index.

    Args:
        task: a task with ``classes``.
        target: a class name, an index, or an index written as a string.

    Returns:
        The class index; an unknown name or an index out of range raises ``MtlError``.

    Example:
        >>> from mtl_keras.tasks import ClassificationTask
        >>> t = ClassificationTask("shape", classes=["circle", "square"])
        >>> class_index(t, "square"), class_index(t, "0")
        (1, 0)
    """
    classes = list(task.classes)
    if isinstance(target, (int, np.integer)) or (isinstance(target, str) and target.isdigit()):
        i = int(target)
        if not 0 <= i < len(classes):
            raise MtlError(f"task {task.name!r}: class index {i} out of range 0..{len(classes) - 1}")
        return i
    if target not in classes:
        raise unknown(f"target of task {task.name!r}: class", str(target), [PREDICTED, LABEL, *classes])
    return classes.index(target)


def pick(out, index):
    """``out[b, index[b]]`` for every image ``b``, as a tensor op (so gradients flow through it).

    Args:
        out: a ``[B, K]`` tensor or array.
        index: ``B`` integers, one unit per image.

    Returns:
        A ``[B]`` tensor.

    Example:
        >>> import numpy as np
        >>> pick(np.array([[1.0, 2.0], [3.0, 4.0]], "float32"), [1, 0]).numpy().tolist()
        [2.0, 3.0]
    """
    return tf.gather(out, tf.constant(index, tf.int32)[:, None], axis=1, batch_dims=1)[:, 0]


def targets_from(task, raw, labels, target, predicted, from_labels):
    """The class index per image for the common targets of a class-scoring rule.

    Args:
        task: a task with ``classes``.
        raw: the head's tensor for the batch (numpy, ``[B, ...]``).
        labels: the batch's raw labels for the task, or ``None``.
        target: ``"predicted"``, ``"label"``, or a class name or index.
        predicted: ``raw -> [B]`` class indices for ``"predicted"``.
        from_labels: ``labels -> [B]`` class indices for ``"label"``.

    Returns:
        A list of ``B`` ints.

    Example:
        >>> import numpy as np
        >>> from mtl_keras.tasks import ClassificationTask
        >>> t = ClassificationTask("shape", classes=["a", "b", "c"])
        >>> targets_from(t, np.zeros((2, 3)), None, "c", None, None)
        [2, 2]
    """
    if target == PREDICTED:
        index = predicted(raw)
    elif target == LABEL:
        index = from_labels(labels)
    else:
        index = np.full(len(raw), class_index(task, target))
    return [int(i) for i in index]
