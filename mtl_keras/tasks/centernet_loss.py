"""CenterNet's training loss: a class-heatmap focal loss plus L1 on box size and centre offset.

The targets are ``DetectionTask``'s encoding, ``[H, W, C + 5]`` (heatmaps, size, offset, a centre
indicator); the predictions its output, ``[H, W, C + 4]``.
"""

from __future__ import annotations

import keras
from keras import ops

from mtl_keras.errors import unknown

HEATMAP_LOSSES = ("focal", "penalty_reduced")


@keras.saving.register_keras_serializable(package="mtl_keras")
class CenterNetLoss(keras.losses.Loss):
    """Heatmap focal loss + L1 on box size and centre offset at object centres, per image.

    ``heatmap_loss="focal"`` is Keras' ``binary_focal_crossentropy`` against the Gaussian targets;
    ``"penalty_reduced"`` is CenterNet's variant (negatives near a centre are penalised less).
    Both are normalised by the number of objects in the image (at least 1), as in CenterNet.

    Example:
        >>> import numpy as np
        >>> from mtl_keras.tasks.detection import DetectionTask
        >>> t = DetectionTask("objects", classes=["a"])
        >>> y = t.encode({"boxes": np.array([[.2, .2, .6, .6]]), "labels": np.array([0])}, 32)[0][None]
        >>> loss = CenterNetLoss(num_classes=1)
        >>> bool(loss(y, y[..., :5]) < loss(y, np.full((1, 8, 8, 5), .5, "float32")))
        True
    """

    def __init__(
        self,
        num_classes: int,
        heatmap_loss: str = "focal",
        size_weight: float = 5.0,
        offset_weight: float = 1.0,
        gamma: float = 2.0,
        reduction="mean_with_sample_weight",
        name="centernet_loss",
        **kwargs,
    ):
        super().__init__(reduction=reduction, name=name, **kwargs)
        if heatmap_loss not in HEATMAP_LOSSES:
            raise unknown("heatmap loss", heatmap_loss, HEATMAP_LOSSES)
        self.num_classes = int(num_classes)
        self.heatmap_loss = heatmap_loss
        self.size_weight = float(size_weight)
        self.offset_weight = float(offset_weight)
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        c = self.num_classes
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        heat_true, heat_pred = y_true[..., :c], ops.clip(y_pred[..., :c], 1e-4, 1.0 - 1e-4)
        centres = y_true[..., c + 4]
        n = ops.maximum(ops.sum(centres, axis=(1, 2)), 1.0)
        if self.heatmap_loss == "focal":
            # Keras averages over the class axis; times C gives the per-cell sum over classes.
            per_cell = keras.losses.binary_focal_crossentropy(heat_true, heat_pred, gamma=self.gamma) * c
            heat = ops.sum(per_cell, axis=(1, 2))
        else:
            pos = ops.cast(heat_true >= 1.0 - 1e-4, "float32")
            pos_loss = -ops.log(heat_pred) * ops.power(1.0 - heat_pred, self.gamma) * pos
            neg_loss = (
                -ops.log(1.0 - heat_pred) * ops.power(heat_pred, self.gamma)
                * ops.power(1.0 - heat_true, 4.0) * (1.0 - pos)
            )
            heat = ops.sum(pos_loss + neg_loss, axis=(1, 2, 3))
        l1 = ops.abs(y_true[..., c : c + 4] - y_pred[..., c : c + 4]) * centres[..., None]
        size = ops.sum(l1[..., :2], axis=(1, 2, 3))
        offset = ops.sum(l1[..., 2:], axis=(1, 2, 3))
        return (heat + self.size_weight * size + self.offset_weight * offset) / n

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes, "heatmap_loss": self.heatmap_loss,
            "size_weight": self.size_weight, "offset_weight": self.offset_weight, "gamma": self.gamma,
        }
