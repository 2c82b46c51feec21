"""Multi-label classification: independent sigmoids, binary cross-entropy, micro F1."""

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.errors import MtlError
from mtl_keras.tasks.base import Task, register_task_type
from mtl_keras.tasks.checks import assert_label


@register_task_type
class MultilabelTask(Task):
    """Any subset of ``classes`` per sample; the label is a multi-hot vector, all -1 where missing.

    Example:
        >>> t = MultilabelTask("present", classes=["a", "b", "c"])
        >>> t.decode(np.array([0.9, 0.1, 0.7]))["labels"]
        ['a', 'c']
    """

    kind = "multilabel"
    primary_metric = "f1"
    higher_is_better = True

    def __init__(self, name, classes, threshold: float = 0.5, **kwargs):
        super().__init__(name, **kwargs)
        if len(classes) < 1:
            raise MtlError(f"task {name!r}: multilabel needs at least 1 class")
        self.classes = [str(c) for c in classes]
        self.threshold = float(threshold)

    @property
    def num_outputs(self):
        return len(self.classes)

    def output_layer(self):
        return keras.layers.Activation("sigmoid", dtype="float32", name=self.name)

    def loss(self):
        return keras.losses.BinaryCrossentropy(reduction="mean_with_sample_weight")

    def metrics(self):
        return [
            keras.metrics.F1Score(average="micro", threshold=self.threshold, name="f1"),
            keras.metrics.BinaryAccuracy(threshold=self.threshold, name="accuracy"),
        ]

    def encode(self, label, image_size):
        label = tf.cast(tf.reshape(label, [len(self.classes)]), tf.float32)
        # Not ``label >= 0`` alone: NaN compares false everywhere and would pass as "missing".
        allowed = tf.reduce_all((label >= 0) & (label <= 1)) | tf.reduce_all(label < 0)
        check = assert_label(allowed, self.name, label, f"{len(self.classes)} values in [0, 1] (or all -1 when missing)")
        with tf.control_dependencies([check]):
            known = tf.reduce_all(label >= 0)
        return tf.where(known, label, tf.zeros_like(label)), tf.cast(known, tf.float32)

    def target_signature(self, image_size):
        return tf.TensorSpec([len(self.classes)], tf.float32)

    def decode(self, output):
        p = np.asarray(output, np.float32)
        on = np.flatnonzero(p >= self.threshold)
        return {
            "labels": [self.classes[i] for i in on],
            "scores": {self.classes[i]: round(float(p[i]), 4) for i in range(len(p))},
        }

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "threshold": self.threshold}
