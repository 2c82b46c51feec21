"""Single-label classification: softmax over ``classes``, sparse cross-entropy, accuracy."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from demo import heads
from mtl_keras.errors import MtlError
from mtl_keras.tasks.base import Task, TaskExample, register_task_type
from mtl_keras.tasks.checks import assert_label
from mtl_keras.tasks.scoring import LABEL, PREDICTED, TaskScore, pick, targets_from


@keras.saving.register_keras_serializable(package="mtl_keras")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy of class-index labels with label smoothing (Szegedy et al. 2016).

    Keras' ``SparseCategoricalCrossentropy`` has no ``label_smoothing``; this one-hots the index and
    uses Keras' ``categorical_crossentropy``, whose smoothing spreads ``label_smoothing`` over all classes.

    Example:
        >>> loss = SparseSmoothedCrossentropy(0.1)
        >>> round(float(loss(np.array([0]), np.array([[0.9, 0.1]]))), 4)  # -(0.95 ln .9 + 0.05 ln .1)
        0.2152
    """

    def __init__(self, label_smoothing: float = 0.0, reduction="mean_with_sample_weight",
                 name="sparse_smoothed_crossentropy", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        classes = ops.shape(y_pred)[-1]
        one_hot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@register_task_type
class ClassificationTask(Task):
    """One class per sample; the label is a class index, -1 where it is missing.

    Example:
        >>> t = ClassificationTask("color", classes=["red", "green"])
        >>> t.decode(np.array([0.2, 0.8]))
        {'label': 'green', 'index': 1, 'score': 0.8}
    """

    kind = "classification"
    primary_metric = "accuracy"
    higher_is_better = True
    export_tolerance = 0.01
    gradcam_reads_logits = True

    def __init__(self, name, classes, label_smoothing: float = 0.0, **kwargs):
        super().__init__(name, **kwargs)
        if len(classes) < 2:
            raise MtlError(f"task {name!r}: classification needs at least 2 classes, got {list(classes)}")
        self.classes = [str(c) for c in classes]
        if not 0 <= float(label_smoothing) < 1:
            raise MtlError(f"task {name!r}: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    @property
    def num_outputs(self):
        return len(self.classes)

    def output_layer(self):
        return keras.layers.Activation("softmax", dtype="float32", name=self.name)

    def loss(self):
        # Masked mean: a sample with weight 0 (missing label) neither adds to nor dilutes the loss.
        if self.label_smoothing:
            return SparseSmoothedCrossentropy(self.label_smoothing)
        return keras.losses.SparseCategoricalCrossentropy(reduction="mean_with_sample_weight")

    def metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def encode(self, label, image_size):
        label = tf.cast(tf.reshape(label, []), tf.int32)
        k = len(self.classes)
        check = assert_label((label >= -1) & (label < k), self.name, label,
                             f"a class index in 0..{k - 1} (or -1 for a missing label)")
        with tf.control_dependencies([check]):
            known = label >= 0
        return tf.where(known, label, 0), tf.cast(known, tf.float32)

    def target_signature(self, image_size):
        return tf.TensorSpec([], tf.int32)

    def decode(self, output):
        # The device lists the top classes too (card_decoding); predictions.json never did.
        return heads.classification(output, self.classes, top_k=None)

    def card_decoding(self):
        """The device shows the three most likely classes (all of them when there are fewer).

        Returns:
            ``{"top_k": k}``.

        Example:
            >>> ClassificationTask("color", classes=["red", "green"]).card_decoding()
            {'top_k': 2}
        """
        return {"top_k": min(3, len(self.classes))}

    def gradcam_score(self, raw, labels, target):
        """The logit of the predicted class, the labelled class, or a class named by name or index.

        Args:
            raw: the head's logits for the batch, numpy ``[B, K]``.
            labels: the batch's class indices, or ``None``.
            target: ``"predicted"``, ``"label"``, a class name or a class index.

        Returns:
            A ``TaskScore`` whose targets are the class names.

        Example:
            >>> t = ClassificationTask("shape", classes=["circle", "square"])
            >>> t.gradcam_score(np.array([[0.1, 2.0], [3.0, 0.0]]), [1, 1], "label").targets
            ['square', 'square']
        """
        def from_labels(labels):
            index = np.asarray(labels).reshape(-1).astype(int)
            if (index < 0).any():
                raise MtlError(f"task {self.name!r}: target 'label' but some images have no {self.name} label")
            return index

        index = targets_from(self, raw, labels, target, lambda raw: raw.argmax(-1), from_labels)
        why = target if target in (PREDICTED, LABEL) else "given"
        return TaskScore(lambda out: pick(out, index), [self.classes[i] for i in index], f"logit of the {why} class")

    @classmethod
    def example(cls, image_size=16):
        """Three shapes, the label of a square, and an output that predicts it.

        Args:
            image_size: unused (a class label has no size).

        Returns:
            A ``TaskExample``.

        Example:
            >>> ex = ClassificationTask.example()
            >>> ex.task.decode(ex.output)["label"]
            'square'
        """
        return TaskExample(cls("shape", classes=["circle", "square", "star"]), np.int64(1),
                           np.array([0.2, 0.7, 0.1], np.float32))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "label_smoothing": self.label_smoothing}
