"""Single-box localization: the main object's box as ``rel_yxyx``, CIoU + L1 loss, mean IoU."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from keras.utils import bounding_boxes

from mtl_keras.layers import CenterSizeToCorners
from mtl_keras.tasks.base import Task, register_task_type
from mtl_keras.tasks.checks import assert_label


def box_iou(y_true, y_pred):
    """Element-wise IoU of two batches of ``rel_yxyx`` boxes.

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
        return {"box_rel_yxyx": [round(float(v), 4) for v in np.asarray(output, np.float32).reshape(4)]}

    def get_config(self):
        return {**super().get_config(), "l1_weight": self.l1_weight, "reduce_channels": self.reduce_channels}
