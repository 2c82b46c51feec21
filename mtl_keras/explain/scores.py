"""Score functions per task type: the scalar per image whose evidence a CAM shows.

One rule per task ``kind`` (``register_score``): which tensor it reads (the logits before a
softmax/sigmoid, as Grad-CAM prescribes, or the output itself) and how it picks each image's
target from the model's prediction, the image's label, or a class the user names. A new task
type adds one rule here; a kind without a rule is reported as "no score rule" and skipped.

| kind | reads | default target (``"predicted"``) | ``"label"`` | other targets |
|---|---|---|---|---|
| classification | logits | predicted class | labelled class | class name / index |
| multilabel | logits | top-scoring label | best-scoring labelled class | class name / index |
| box | box (rel_yxyx) | box area | box area | ``y1 x1 y2 x2`` |
| regression | value | unit 0 | unit 0 | unit index |
| detection | heatmap logits | class of the highest peak; score = that peak | largest labelled object's class | class |
| segmentation | pixel logits | most frequent predicted non-background class; mean logit over its pixels | labelled pixels of the main labelled class | class |

Example:
    >>> import numpy as np
    >>> from mtl_keras.tasks import ClassificationTask
    >>> t = ClassificationTask("shape", classes=["circle", "square"])
    >>> s = build_score(t, np.array([[0.1, 2.0], [3.0, 0.0]]))
    >>> s.targets, [float(v) for v in s(np.array([[0.1, 2.0], [3.0, 0.0]], "float32"))]
    (['square', 'circle'], [2.0, 3.0])
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras
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


@dataclasses.dataclass(frozen=True)
class ScoreRule:
    """How one task type is scored: a ``build`` function and whether it reads the logits.

    Example:
        >>> SCORES["box"].uses_logits, SCORES["classification"].uses_logits
        (False, True)
    """

    build: Callable
    uses_logits: bool


SCORES: dict[str, ScoreRule] = {}


def register_score(kind: str, uses_logits: bool):
    """Decorator: the score rule for task type ``kind``.

    The decorated ``build(task, raw, labels, target) -> TaskScore`` gets the head's tensor for the
    batch as numpy (``raw``), the images' raw labels for the task (or ``None``) and the user's
    target option. ``uses_logits``: score the input of the head's final softmax/sigmoid.

    Example:
        >>> @register_score("ordinal_example", uses_logits=False)
        ... def _ordinal(task, raw, labels, target):
        ...     return TaskScore(lambda out: out[:, 0], ["rank"] * len(raw), "rank")
        >>> "ordinal_example" in SCORES
        True
    """

    def decorator(build):
        SCORES[kind] = ScoreRule(build, uses_logits)
        return build

    return decorator


def score_tensor(model, task):
    """The symbolic tensor ``task``'s score reads: logits before an output activation, else the output.

    Example:
        >>> import mtl_keras as mk
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape"]), image_size=32, trunk="mobilenet_v3_small")
        >>> score_tensor(m, m.tasks[0]).shape
        (None, 6)
    """
    rule = rule_for(task)
    layer = model.get_layer(task.name)
    if rule.uses_logits and isinstance(layer, keras.layers.Activation):
        return layer.input
    return layer.output


def rule_for(task) -> ScoreRule:
    """The registered score rule of a task's kind, or a clear error.

    Example:
        >>> from mtl_keras.tasks import BoxTask
        >>> rule_for(BoxTask("box")).uses_logits
        False
    """
    if task.kind not in SCORES:
        raise unknown(f"score rule for task {task.name!r} of kind", task.kind, SCORES)
    return SCORES[task.kind]


def build_score(task, raw, labels=None, target=PREDICTED) -> TaskScore:
    """The score of ``task`` for one batch: ``raw`` is its ``score_tensor`` evaluated on the batch.

    Example:
        >>> import numpy as np
        >>> from mtl_keras.tasks import BoxTask
        >>> s = build_score(BoxTask("box"), np.array([[0.1, 0.1, 0.5, 0.3]]))
        >>> s.what, round(float(s(np.array([[0.1, 0.1, 0.5, 0.3]], "float32"))[0]), 3)
        ('box area', 0.08)
    """
    if target is None:
        target = PREDICTED
    if target == LABEL and labels is None:
        raise MtlError(f"task {task.name!r}: target 'label' needs labels, and the data has none for it")
    return rule_for(task).build(task, np.asarray(raw), labels, target)


def _class_index(task, target) -> int:
    classes = list(task.classes)
    if isinstance(target, (int, np.integer)) or (isinstance(target, str) and target.isdigit()):
        i = int(target)
        if not 0 <= i < len(classes):
            raise MtlError(f"task {task.name!r}: class index {i} out of range 0..{len(classes) - 1}")
        return i
    if target not in classes:
        raise unknown(f"target of task {task.name!r}: class", str(target), [PREDICTED, LABEL, *classes])
    return classes.index(target)


def _pick(out, index):
    """``out[b, index[b]]`` for every image ``b``."""
    return tf.gather(out, tf.constant(index, tf.int32)[:, None], axis=1, batch_dims=1)[:, 0]


@register_score("classification", uses_logits=True)
def _classification_score(task, raw, labels, target):
    if target == PREDICTED:
        index = raw.argmax(-1)
        why = "predicted"
    elif target == LABEL:
        index = np.asarray(labels).reshape(-1).astype(int)
        if (index < 0).any():
            raise MtlError(f"task {task.name!r}: target 'label' but some images have no {task.name} label")
        why = "label"
    else:
        index = np.full(len(raw), _class_index(task, target))
        why = "given"
    index = [int(i) for i in index]
    return TaskScore(lambda out: _pick(out, index), [task.classes[i] for i in index], f"logit of the {why} class")


@register_score("multilabel", uses_logits=True)
def _multilabel_score(task, raw, labels, target):
    if target == PREDICTED:
        index = raw.argmax(-1)
    elif target == LABEL:
        on = np.asarray(labels, np.float32).reshape(len(raw), -1) > 0.5
        if not on.any(-1).all():
            raise MtlError(f"task {task.name!r}: target 'label' but some images have no positive label")
        index = np.where(on, raw, -np.inf).argmax(-1)
    else:
        index = np.full(len(raw), _class_index(task, target))
    index = [int(i) for i in index]
    return TaskScore(lambda out: _pick(out, index), [task.classes[i] for i in index], f"logit of the {target} label")


BOX_COORDS = ("y1", "x1", "y2", "x2")


@register_score("box", uses_logits=False)
def _box_score(task, raw, labels, target):
    if target in (PREDICTED, LABEL, "area"):
        def area(out):
            return (out[:, 2] - out[:, 0]) * (out[:, 3] - out[:, 1])

        return TaskScore(area, ["area"] * len(raw), "box area")
    if target not in BOX_COORDS:
        raise unknown(f"target of box task {task.name!r}:", str(target), ["area", *BOX_COORDS])
    k = BOX_COORDS.index(target)
    return TaskScore(lambda out: out[:, k], [target] * len(raw), f"box {target}")


@register_score("regression", uses_logits=False)
def _regression_score(task, raw, labels, target):
    unit = 0 if target in (PREDICTED, LABEL) else target
    try:
        unit = int(unit)
    except (TypeError, ValueError):
        raise MtlError(f"target of regression task {task.name!r} must be a unit index, got {target!r}") from None
    if not 0 <= unit < raw.shape[-1]:
        raise MtlError(f"task {task.name!r}: unit {unit} out of range 0..{raw.shape[-1] - 1}")
    return TaskScore(lambda out: out[:, unit], [f"value[{unit}]"] * len(raw), f"value of unit {unit}")


@register_score("detection", uses_logits=True)
def _detection_score(task, raw, labels, target):
    c = len(task.classes)
    heat = raw[..., :c]
    if target == PREDICTED:
        index = heat.reshape(len(raw), -1, c).max(1).argmax(-1)
    elif target == LABEL:
        index = []
        for lab in labels:
            boxes = np.asarray(lab["boxes"], np.float32).reshape(-1, 4)
            cls = np.asarray(lab["labels"]).reshape(-1)
            keep = cls >= 0
            if not keep.any():
                raise MtlError(f"task {task.name!r}: target 'label' but an image has no labelled object")
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            index.append(int(cls[np.where(keep, area, -1).argmax()]))
    else:
        index = np.full(len(raw), _class_index(task, target))
    index = [int(i) for i in index]

    def peak(out):
        per_class = tf.reduce_max(out[..., :c], axis=(1, 2))  # [B, C]: each class's highest cell
        return _pick(per_class, index)

    return TaskScore(peak, [task.classes[i] for i in index], "heatmap peak logit of the class")


@register_score("segmentation", uses_logits=True)
def _segmentation_score(task, raw, labels, target):
    k = raw.shape[-1]
    if target == LABEL:
        source = np.stack([np.asarray(m).reshape(raw.shape[1:3]) for m in labels]).astype(int)
    else:
        source = raw.argmax(-1)
    if target in (PREDICTED, LABEL):
        # classes[0] is the background: the class to explain is the most frequent other one.
        counts = np.stack([np.bincount(s.ravel()[(s.ravel() > 0) & (s.ravel() < k)], minlength=k) for s in source])
        index = counts.argmax(-1)
        index = np.where(counts.max(-1) > 0, index, 0)
    else:
        index = np.full(len(raw), _class_index(task, target))
    pixels = (source == np.asarray(index)[:, None, None]).astype(np.float32)
    # A class with no pixel in an image: score its mean logit over the whole image instead.
    pixels[pixels.reshape(len(raw), -1).sum(-1) == 0] = 1.0
    index = [int(i) for i in index]
    weights = tf.constant(pixels / pixels.sum(axis=(1, 2), keepdims=True))

    def class_pixels(out):
        logits = tf.gather(out, tf.constant(index, tf.int32)[:, None], axis=3, batch_dims=1)[..., 0]
        return tf.reduce_sum(logits * weights, axis=(1, 2))

    return TaskScore(class_pixels, [task.classes[i] for i in index], f"mean logit over the {target} class's pixels")
