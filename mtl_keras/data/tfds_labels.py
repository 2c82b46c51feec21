"""From a ``tfds_feature_rules.Label`` to its task and to the raw label of one tfds example (inside ``tf.data``).

The raw labels are those the tasks' ``encode`` takes: a class index, a vector of numbers or flags,
a multi-hot, an ``rel_yxyx`` box (all -1 when the box is empty: tfds stores zeros where a dataset has
none), the Keras bounding-box dict padded with -1, an ``H×W`` mask (255 unlabelled) or depth map.

Example:
    >>> from mtl_keras.data.tfds_feature_rules import Label
    >>> label = Label("where", "box", ("bbox",), "box")
    >>> read_label(label, {"bbox": tf.constant([0.5, 0.1, 0.2, 0.9])}).numpy().tolist()
    [-1.0, -1.0, -1.0, -1.0]
    >>> make_task(label).kind
    'box'
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mtl_keras.errors import MtlError
from mtl_keras.tasks import (
    TASK_TYPES, BoxTask, ClassificationTask, DetectionTask, MultilabelTask, RegressionTask, SegmentationTask,
)

DEFAULT_MAX_OBJECTS = 100
UNLABELLED = 255


def make_task(label, max_objects: int = DEFAULT_MAX_OBJECTS):
    """The default task of one label, named after it.

    Args:
        label: a ``tfds_feature_rules.Label``.
        max_objects: rows of a detection label.

    Returns:
        A ``Task`` of the label's kind.

    Raises:
        MtlError: the label's kind is not a registered task type.

    Example:
        >>> from mtl_keras.data.tfds_feature_rules import Label
        >>> make_task(Label("objects", "detection", ("objects",), "objects", classes=("car",)), 5).max_objects
        5
    """
    name, classes = label.name, list(label.classes)
    if label.kind == "classification":
        return ClassificationTask(name, classes=classes)
    if label.kind == "multilabel":
        return MultilabelTask(name, classes=classes)
    if label.kind == "regression":
        return RegressionTask(name, units=label.units)
    if label.kind == "box":
        return BoxTask(name)
    if label.kind == "detection":
        return DetectionTask(name, classes=classes, max_objects=max_objects)
    if label.kind == "segmentation":
        return SegmentationTask(name, classes=classes, ignore_class=label.ignore_class)
    if label.kind in TASK_TYPES:
        return TASK_TYPES[label.kind](name)
    raise MtlError(f"task {name!r}: this install has no task type {label.kind!r}")


def pad_objects(boxes, labels, max_objects: int) -> dict:
    """The Keras bounding-box dict with exactly ``max_objects`` rows, padded (or cut) with -1.

    Args:
        boxes: the objects' boxes, reshaped to ``[N, 4]`` float32.
        labels: the objects' class indices, reshaped to ``[N]`` int32.
        max_objects: the number of rows M to return.

    Returns:
        ``{"boxes": [M, 4] float32, "labels": [M] int32}`` tensors.

    Example:
        >>> d = pad_objects(tf.constant([[0., 0., .5, .5]]), tf.constant([3]), 2)
        >>> d["labels"].numpy().tolist(), d["boxes"].numpy()[1].tolist()
        ([3, -1], [-1.0, -1.0, -1.0, -1.0])
    """
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])[:max_objects]
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])[:max_objects]
    pad = max_objects - tf.shape(labels)[0]
    return {
        "boxes": tf.ensure_shape(tf.pad(boxes, [[0, pad], [0, 0]], constant_values=-1.0), [max_objects, 4]),
        "labels": tf.ensure_shape(tf.pad(labels, [[0, pad]], constant_values=-1), [max_objects]),
    }


def read_image(example: dict, keys: tuple, channels: int):
    """The input image of one example as uint8 ``H×W×3``: grayscale repeated, alpha dropped.

    Args:
        example: a tfds example (nested dict of tensors).
        keys: the image feature's keys.
        channels: the feature's channels (1, 3 or 4).

    Returns:
        A uint8 ``[H, W, 3]`` tensor.

    Example:
        >>> tuple(read_image({"image": tf.zeros([2, 3, 1], tf.uint8)}, ("image",), 1).shape)
        (2, 3, 3)
    """
    image = _get(example, keys)
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    return image[..., :3]


def read_label(label, example: dict, max_objects: int = DEFAULT_MAX_OBJECTS):
    """One example's raw label for ``label``'s task.

    Args:
        label: a ``tfds_feature_rules.Label``.
        example: a tfds example (nested dict of tensors).
        max_objects: rows of a detection label.

    Returns:
        A tensor, or for a detection the ``{"boxes", "labels"}`` dict.

    Example:
        >>> from mtl_keras.data.tfds_feature_rules import Label
        >>> flags = Label("attrs", "multilabel", ("attrs",), "values", classes=("a", "b"), parts=("a", "b"))
        >>> read_label(flags, {"attrs": {"a": tf.constant(True), "b": tf.constant(False)}}).numpy().tolist()
        [1.0, 0.0]
    """
    value = _get(example, label.keys)
    if label.reader == "index":
        return tf.cast(tf.reshape(value, []), tf.int32)
    if label.reader == "values":
        parts = [value[p] for p in label.parts] if label.parts else [value]
        return tf.concat([tf.reshape(tf.cast(p, tf.float32), [-1]) for p in parts], 0)
    if label.reader == "multihot":
        return _multi_hot(value, len(label.classes))
    if label.reader == "box":
        box = tf.reshape(tf.cast(value, tf.float32), [4])
        return tf.where((box[2] > box[0]) & (box[3] > box[1]), box, -tf.ones([4]))
    if label.reader in ("objects", "present"):
        boxes, classes = _objects(label, value)
        if label.reader == "present":
            return _multi_hot(classes, len(label.classes))
        return pad_objects(boxes, classes, max_objects)
    if label.reader == "mask":
        return _mask(label, value)
    if label.reader == "depth":
        depth = tf.cast(value, tf.float32)
        return depth[..., 0] if depth.shape.rank == 3 else depth
    raise MtlError(f"task {label.name!r}: unknown label reader {label.reader!r}")


def _get(example, keys):
    for key in keys:
        example = example[key]
    return example


def _multi_hot(classes, k: int):
    classes = tf.reshape(tf.cast(classes, tf.int32), [-1])
    hot = tf.reduce_max(tf.one_hot(classes, k, dtype=tf.float32), axis=0)
    return tf.ensure_shape(tf.where(tf.size(classes) > 0, hot, tf.zeros([k])), [k])


def _column(values, n, dtype):
    """A per-object field cut or padded (with zeros) to ``n`` rows."""
    values = tf.cast(values, dtype)
    pad = tf.maximum(n - tf.shape(values)[0], 0)
    return tf.concat([values, tf.zeros(tf.concat([[pad], tf.shape(values)[1:]], 0), dtype)], 0)[:n]


def _objects(label, value):
    """The kept objects' boxes ``[N, 4]`` and classes ``[N]``: non-empty boxes, ``drop`` rows left out."""
    boxes = tf.reshape(tf.cast(value[label.box] if label.box else value, tf.float32), [-1, 4])
    n = tf.shape(boxes)[0]
    # Real data has one row per object in every field; tfds mock data does not, so align them.
    if label.label:
        n = tf.minimum(n, tf.shape(value[label.label])[0])
        classes = tf.cast(value[label.label][:n], tf.int32)
    else:
        classes = tf.zeros([n], tf.int32)
    boxes = boxes[:n]
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if label.drop:
        keep &= ~_column(value[label.drop], n, tf.bool)
    return tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep)


def _mask(label, value):
    pixels = tf.cast(value[..., 0], tf.int32)
    if label.nonzero:
        return tf.cast(pixels > 0, tf.uint8)
    if label.values:
        table = np.full(256, UNLABELLED, np.uint8)
        for pixel, cls in label.values:
            table[pixel] = cls
        return tf.gather(tf.constant(table), tf.clip_by_value(pixels, 0, 255))
    return tf.cast(pixels, tf.uint8)
