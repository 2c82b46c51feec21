"""Multi-label classification: independent sigmoids, binary cross-entropy, micro F1."""

import keras
import numpy as np
import tensorflow as tf

from demo import heads
from mtl_keras.errors import MtlError
from mtl_keras.tasks.base import Task, TaskExample, register_task_type
from mtl_keras.tasks.checks import assert_label
from mtl_keras.tasks.scoring import TaskScore, pick, targets_from


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
    export_tolerance = 0.01
    gradcam_reads_logits = True

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
        return heads.multilabel(output, self.classes, self.threshold)

    def card_decoding(self):
        """The device reports the classes whose score reaches the task's threshold.

        Returns:
            ``{"threshold": t}``.

        Example:
            >>> MultilabelTask("present", classes=["a"], threshold=0.4).card_decoding()
            {'threshold': 0.4}
        """
        return {"threshold": self.threshold}

    def gradcam_score(self, raw, labels, target):
        """The logit of the top-scoring label, the best-scoring labelled class, or a named class.

        Args:
            raw: the head's logits for the batch, numpy ``[B, K]``.
            labels: the batch's multi-hot labels, or ``None``.
            target: ``"predicted"``, ``"label"``, a class name or a class index.

        Returns:
            A ``TaskScore`` whose targets are the class names.

        Example:
            >>> t = MultilabelTask("present", classes=["a", "b", "c"])
            >>> t.gradcam_score(np.array([[3.0, 1.0, 2.0]]), [[0, 1, 1]], "label").targets
            ['c']
        """
        def from_labels(labels):
            on = np.asarray(labels, np.float32).reshape(len(raw), -1) > 0.5
            if not on.any(-1).all():
                raise MtlError(f"task {self.name!r}: target 'label' but some images have no positive label")
            return np.where(on, raw, -np.inf).argmax(-1)

        index = targets_from(self, raw, labels, target, lambda raw: raw.argmax(-1), from_labels)
        return TaskScore(lambda out: pick(out, index), [self.classes[i] for i in index], f"logit of the {target} label")

    @classmethod
    def example(cls, image_size=16):
        """Three classes, a sample with the first and last, and an output that finds them.

        Args:
            image_size: unused (a multi-hot label has no size).

        Returns:
            A ``TaskExample``.

        Example:
            >>> ex = MultilabelTask.example()
            >>> ex.task.decode(ex.output)["labels"]
            ['circle', 'star']
        """
        return TaskExample(cls("present", classes=["circle", "square", "star"]), np.array([1, 0, 1], np.float32),
                           np.array([0.9, 0.1, 0.7], np.float32))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "threshold": self.threshold}
