"""Box-head output layer: a valid ``rel_yxyx`` box by construction."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mtl_keras")
class CenterSizeToCorners(keras.layers.Layer):
    """Turn 4 logits into a ``rel_yxyx`` box that is always ordered and inside [0, 1].

    The logits are read as (centre y, centre x, height, width) through a sigmoid; predicting a
    centre and a size instead of two corners means y1 <= y2 and x1 <= x2 hold for every output, which
    IoU losses need.

    Example:
        >>> import numpy as np
        >>> [round(float(v), 2) for v in CenterSizeToCorners()(np.zeros((1, 4), "float32"))[0]]
        [0.25, 0.25, 0.75, 0.75]
    """

    def call(self, logits):
        cyx_hw = ops.sigmoid(ops.cast(logits, "float32"))
        cy, cx, h, w = ops.unstack(cyx_hw, 4, axis=-1)
        box = ops.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)
        return ops.clip(box, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape
