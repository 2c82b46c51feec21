"""What a global head reads from a detection map: how much of each class there is, and its biggest object.

A CenterNet map ``[H, W, C + 4]`` (C class heatmaps, then box height, width and the centre offset)
becomes ``[2C]``: the mean of each heatmap (how much of the class the image holds) and, per class,
the largest ``score × box area`` over the cells (its most prominent object). Global average pooling
alone gives only the first half, where one big object and several small ones look alike; a head
asked about the main (largest) object, such as the scenes' ``shape``, needs the second.

Example:
    >>> import numpy as np
    >>> m = np.zeros((1, 4, 4, 2 + 4), "float32")
    >>> m[0, 1, 1, 0], m[0, 1, 1, 2:4] = 1.0, (0.5, 0.5)   # class 0: one object, a quarter of the image
    >>> m[0, 3, 3, 1], m[0, 3, 3, 2:4] = 1.0, (0.1, 0.1)   # class 1: a small one
    >>> DetectionSummary(num_classes=2)(m).numpy().round(4).tolist()
    [[0.0625, 0.0625, 0.25, 0.01]]
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mtl_keras")
class DetectionSummary(keras.layers.Layer):
    """``[B, H, W, C + 4]`` detection map -> ``[B, 2C]``: per-class mean score, then per-class max of score × area.

    Example:
        >>> DetectionSummary(num_classes=3).compute_output_shape((None, 8, 8, 7))
        (None, 6)
    """

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)

    def call(self, detections):
        c = self.num_classes
        scores = detections[..., :c]
        area = detections[..., c : c + 1] * detections[..., c + 1 : c + 2]
        return ops.concatenate([ops.mean(scores, axis=(1, 2)), ops.max(scores * area, axis=(1, 2))], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
