"""Single-box localization: the main object's box as ``rel_yxyx``, CIoU + L1 loss, mean IoU."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from keras.utils import bounding_boxes

from demo import heads
from mtl_keras.errors import unknown
from mtl_keras.layers import CenterSizeToCorners
from mtl_keras.tasks.base import Task, TaskExample, register_task_type
from mtl_keras.tasks.checks import assert_label
from mtl_keras.tasks.scoring import LABEL, PREDICTED, TaskScore

# The Grad-CAM targets that score one coordinate of the box, in ``rel_yxyx`` order.
BOX_COORDS = ("y1", "x1", "y2", "x2")


def box_iou(y_true, y_pred):
    """Element-wise IoU of two batches of ``rel_yxyx`` boxes.

    Args:
        y_true: boxes ``[..., 4]`` as ``(ymin, xmin, ymax, xmax)`` in 0..1.
        y_pred: boxes of the same shape.

    Returns:
        A float32 tensor ``[...]`` of IoUs (0 where both boxes are empty).

    Example:
        >>> import numpy as np
        >>> float(box_iou(np.array([[0, 0, .5, .5]]), np.array([[0, 0, .5, .25]]))[0])
        0.5
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    lo = ops.maximum(y_true[..., :2], y_pred[..., :2])
    hi = ops.minimum(y_true[..., 2:], y_pred[..., 2:])
    inter = ops.prod(ops.maximum(hi - lo, 0.0), axis=-1)
    area_t = ops.prod(ops.maximum(y_true[..., 2:] - y_true[..., :2], 0.0), axis=-1)
    area_p = ops.prod(ops.maximum(y_pred[..., 2:] - y_pred[..., :2], 0.0), axis=-1)
    return ops.divide_no_nan(inter, area_t + area_p - inter)


@keras.saving.register_keras_serializable(package="mtl_keras")
class BoxLoss(keras.losses.Loss):
    """``1 - CIoU`` (``keras.utils.bounding_boxes.compute_ciou``) plus ``l1_weight`` × L1.

    CIoU gives a useful gradient even when boxes do not overlap; the L1 term keeps early training
    stable when the predicted box is still far away.

    Example:
        >>> import numpy as np
        >>> round(float(BoxLoss()(np.array([[0, 0, .5, .5]]), np.array([[0, 0, .5, .5]]))), 4)
        0.0
    """

    def __init__(self, l1_weight: float = 1.0, reduction="mean_with_sample_weight", name="box_loss", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.l1_weight = float(l1_weight)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        # Scale-invariant, so the relative boxes can be passed as absolute yxyx.
        ciou = bounding_boxes.compute_ciou(y_true, y_pred, bounding_box_format="yxyx")
        l1 = ops.mean(ops.abs(y_true - y_pred), axis=-1)
        return (1.0 - ciou) + self.l1_weight * l1

    def get_config(self):
        return {**super().get_config(), "l1_weight": self.l1_weight}


@keras.saving.register_keras_serializable(package="mtl_keras")
class MeanBoxIoU(keras.metrics.Mean):
    """Mean IoU between true and predicted boxes over the samples that have a box.

    Example:
        >>> import numpy as np
        >>> m = MeanBoxIoU()
        >>> m.update_state(np.array([[0, 0, .5, .5]]), np.array([[0, 0, .5, .25]]))
        >>> round(float(m.result()), 3)
        0.5
    """

    def __init__(self, name="iou", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(box_iou(y_true, y_pred), sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@register_task_type
class BoxTask(Task):
    """The main object's box; the label is ``rel_yxyx`` in [0, 1], all -1 where missing.

    Example:
        >>> BoxTask("box").decode(np.array([0.1, 0.2, 0.5, 0.6]))
        {'box_rel_yxyx': [0.1, 0.2, 0.5, 0.6]}
    """

    kind = "box"
    primary_metric = "iou"
    higher_is_better = True
    export_tolerance = 0.02
    likelihood_factor = 0.5  # Gaussian likelihood

    def __init__(self, name, l1_weight: float = 1.0, reduce_channels: int = 32, **kwargs):
        super().__init__(name, **kwargs)
        self.l1_weight = float(l1_weight)
        self.reduce_channels = int(reduce_channels)

    @property
    def num_outputs(self):
        return 4

    def head(self, features, extra=None):
        # Global average pooling throws away where things are; a box needs the spatial layout, so the
        # head reads the stride-16 map, squeezed to a few channels and flattened.
        x = keras.layers.Conv2D(self.reduce_channels, 1, activation="relu", name=f"{self.name}_reduce")(features["c4"])
        x = keras.layers.Flatten(name=f"{self.name}_flatten")(x)
        return self.mlp(x, extra)

    def output_layer(self):
        return CenterSizeToCorners(dtype="float32", name=self.name)

    def loss(self):
        return BoxLoss(l1_weight=self.l1_weight)

    def metrics(self):
        return [MeanBoxIoU(name="iou")]

    def encode(self, label, image_size):
        box = tf.cast(tf.reshape(label, [4]), tf.float32)
        check = assert_label(tf.reduce_all(tf.math.is_finite(box)), self.name, box,
                             "a finite rel_yxyx box (or -1s when missing)")
        with tf.control_dependencies([check]):
            box = tf.identity(box)
        known = tf.reduce_all(box >= 0) & (box[2] > box[0]) & (box[3] > box[1])
        # A missing box still needs a valid one for the CIoU maths; its weight is 0.
        return tf.where(known, box, tf.constant([0.0, 0.0, 1.0, 1.0])), tf.cast(known, tf.float32)

    def target_signature(self, image_size):
        return tf.TensorSpec([4], tf.float32)

    def decode(self, output):
        return heads.box(output)

    def gradcam_score(self, raw, labels, target):
        """The box area (``predicted``, ``label`` or ``area``), or one coordinate (``y1 x1 y2 x2``).

        Args:
            raw: the predicted boxes for the batch, numpy ``[B, 4]`` ``rel_yxyx``.
            labels: unused (the score is the predicted box whatever the label).
            target: ``"predicted"``, ``"label"``, ``"area"`` or a coordinate name.

        Returns:
            A ``TaskScore``.

        Example:
            >>> s = BoxTask("box").gradcam_score(np.array([[0.1, 0.1, 0.5, 0.3]]), None, "predicted")
            >>> s.what, round(float(s(np.array([[0.1, 0.1, 0.5, 0.3]], "float32"))[0]), 3)
            ('box area', 0.08)
        """
        if target in (PREDICTED, LABEL, "area"):
            def area(out):
                return (out[:, 2] - out[:, 0]) * (out[:, 3] - out[:, 1])

            return TaskScore(area, ["area"] * len(raw), "box area")
        if target not in BOX_COORDS:
            raise unknown(f"target of box task {self.name!r}:", str(target), ["area", *BOX_COORDS])
        k = BOX_COORDS.index(target)
        return TaskScore(lambda out: out[:, k], [target] * len(raw), f"box {target}")

    @classmethod
    def example(cls, image_size=16):
        """A box in the upper left of the image and an output close to it.

        Args:
            image_size: unused (the box is relative to the image).

        Returns:
            A ``TaskExample``.

        Example:
            >>> ex = BoxTask.example()
            >>> ex.task.decode(ex.output)
            {'box_rel_yxyx': [0.1, 0.2, 0.5, 0.6]}
        """
        return TaskExample(cls("box"), np.array([0.1, 0.2, 0.5, 0.5], np.float32),
                           np.array([0.1, 0.2, 0.5, 0.6], np.float32))

    def get_config(self):
        return {**super().get_config(), "l1_weight": self.l1_weight, "reduce_channels": self.reduce_channels}
