"""Semantic segmentation: per-pixel softmax at input resolution over the shared FPN, mean IoU.

The label is an ``H×W`` class-index mask (uint8; 0 is usually background). The value 255 marks
unlabelled pixels, and ``ignore_class`` (e.g. the "not classified" border of the Oxford pets
trimaps) can mark a class to leave out: both get a per-pixel sample weight of 0, so they neither
train nor count in the loss or in ``MeanIoU``.

Example:
    >>> t = SegmentationTask("mask", classes=["background", "pet", "border"], ignore_class="border")
    >>> target, weight = t.encode(np.array([[0, 1], [2, 255]], "uint8"), 2)
    >>> target.numpy().tolist(), weight.numpy().tolist()
    ([[0, 1], [2, 0]], [[1.0, 1.0], [0.0, 0.0]])
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from demo import heads
from demo.decoding import OUTPUT_STRIDE
from mtl_keras.errors import MtlError, unknown
from mtl_keras.layers import fpn_features
from mtl_keras.tasks.base import Task, TaskExample, register_task_type
from mtl_keras.tasks.scoring import LABEL, PREDICTED, TaskScore, class_index

UNLABELLED = 255


@keras.saving.register_keras_serializable(package="mtl_keras")
class MaskMeanIoU(keras.metrics.MeanIoU):
    """Keras ``MeanIoU`` over softmax masks, taking the 0/1 per-pixel sample weights as integers.

    ``MeanIoU`` counts in an integer confusion matrix and warns on every float weight; the
    pipeline's pixel weights are exactly 0 or 1, so casting them loses nothing.

    Example:
        >>> m = MaskMeanIoU(num_classes=2)
        >>> _ = m.update_state(np.array([[0, 1]]), np.array([[[.9, .1], [.8, .2]]]), np.array([[1.0, 1.0]]))
        >>> round(float(m.result()), 3)
        0.25
    """

    def __init__(self, num_classes, name="miou", ignore_class=None, sparse_y_pred=False, **kwargs):
        super().__init__(
            num_classes=num_classes, name=name, ignore_class=ignore_class, sparse_y_pred=sparse_y_pred, **kwargs
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            sample_weight = keras.ops.cast(keras.ops.round(sample_weight), self.dtype)
        return super().update_state(y_true, y_pred, sample_weight=sample_weight)


@register_task_type
class SegmentationTask(Task):
    """One class per pixel; ``classes[0]`` is normally the background.

    Example:
        >>> t = SegmentationTask("mask", classes=["background", "circle"])
        >>> t.decode(np.array([[[0.9, 0.1], [0.3, 0.7]]]))["areas"]
        {'background': 0.5, 'circle': 0.5}
    """

    kind = "segmentation"
    primary_metric = "miou"
    higher_is_better = True
    dense = True
    export_tolerance = 0.02
    gradcam_reads_logits = True

    def __init__(self, name, classes, ignore_class=None, head_channels: int = 64, **kwargs):
        super().__init__(name, **kwargs)
        self.classes = [str(c) for c in classes]
        if len(self.classes) < 2:
            raise MtlError(f"task {name!r}: segmentation needs at least 2 classes, got {self.classes}")
        if len(self.classes) >= UNLABELLED:
            raise MtlError(f"task {name!r}: at most {UNLABELLED - 1} classes (255 marks unlabelled pixels)")
        if ignore_class is not None and str(ignore_class) not in self.classes:
            raise unknown(f"ignore class of task {name!r}:", str(ignore_class), self.classes)
        self.ignore_class = None if ignore_class is None else str(ignore_class)
        self.head_channels = int(head_channels)

    @property
    def num_outputs(self):
        return len(self.classes)

    @property
    def ignore_index(self):
        return None if self.ignore_class is None else self.classes.index(self.ignore_class)

    # ----- model side -------------------------------------------------------------------------
    def head(self, features, extra=None):
        p = fpn_features(features)
        n = self.name
        if extra:
            # Another dense head's map on the same grid, e.g. a detector's class heatmaps: the detector
            # names each object's class from the whole object, where a pixel near an edge sees only part
            # of it. A second convolution spreads that answer from the object's centre to its outline.
            for t in extra:
                if len(t.shape) != 4 or tuple(t.shape[1:3]) != tuple(p.shape[1:3]):
                    raise MtlError(f"task {n!r} reads maps on its {p.shape[1]}x{p.shape[2]} grid; got a tensor "
                                   f"of shape {tuple(t.shape[1:])} from a task it depends on")
            x = keras.layers.Concatenate(name=f"{n}_with_deps")([p, *extra])
            p = keras.layers.Conv2D(self.head_channels, 3, padding="same", activation="relu", name=f"{n}_deps_conv")(x)
        x = keras.layers.Conv2D(self.head_channels, 3, padding="same", activation="relu", name=f"{n}_conv")(p)
        x = keras.layers.Conv2D(len(self.classes), 1, name=f"{n}_logits")(x)
        x = keras.layers.UpSampling2D(OUTPUT_STRIDE, interpolation="bilinear", name=f"{n}_upsample")(x)
        return self.output_layer()(x)

    def output_layer(self):
        return keras.layers.Activation("softmax", dtype="float32", name=self.name)

    def loss(self):
        # Per-pixel sample weights: unlabelled/ignored pixels (weight 0) neither add nor dilute.
        return keras.losses.SparseCategoricalCrossentropy(reduction="mean_with_sample_weight")

    def metrics(self):
        return [MaskMeanIoU(num_classes=len(self.classes), ignore_class=self.ignore_index, name="miou")]

    # ----- data side --------------------------------------------------------------------------
    def encode(self, label, image_size):
        mask = tf.cast(tf.reshape(label, [image_size, image_size]), tf.int32)
        labelled = tf.not_equal(mask, UNLABELLED)
        in_range = tf.debugging.assert_less(
            tf.where(labelled, mask, 0), len(self.classes),
            message=f"task {self.name!r}: mask value out of range (classes 0..{len(self.classes) - 1}, 255 = unlabelled)",
        )
        with tf.control_dependencies([in_range]):
            target = tf.where(labelled, mask, 0)
        if self.ignore_index is not None:
            labelled &= tf.not_equal(mask, self.ignore_index)
        return target, tf.cast(labelled, tf.float32)

    def target_signature(self, image_size):
        return tf.TensorSpec([image_size, image_size], tf.int32)

    # ----- person side ------------------------------------------------------------------------
    def decode(self, output):
        found = heads.segmentation(output, self.classes)
        # The device draws the uint8 mask; JSON wants lists.
        return {**found, "mask": found["mask"].tolist()}

    def card_decoding(self):
        """How strongly the device's picture blends the class colours over the image.

        Returns:
            ``{"overlay_alpha": a}``.

        Example:
            >>> SegmentationTask("mask", classes=["background", "a"]).card_decoding()
            {'overlay_alpha': 0.45}
        """
        return {"overlay_alpha": 0.45}

    def gradcam_score(self, raw, labels, target):
        """The mean logit of a class over its pixels: the main predicted or labelled class, or a named one.

        ``classes[0]`` is the background, so the class to explain by default is the most frequent
        other one, over the predicted (``predicted``) or labelled (``label``) pixels.

        Args:
            raw: the head's pixel logits for the batch, numpy ``[B, H, W, K]``.
            labels: the batch's ``H×W`` class-index masks, or ``None``.
            target: ``"predicted"``, ``"label"``, a class name or a class index.

        Returns:
            A ``TaskScore`` whose targets are the class names.

        Example:
            >>> t = SegmentationTask("mask", classes=["background", "a", "b"])
            >>> raw = np.zeros((1, 2, 2, 3), "float32"); raw[0, 0, :, 2] = 5.0
            >>> s = t.gradcam_score(raw, None, "predicted")
            >>> s.targets, [float(v) for v in s(raw)]
            (['b'], [5.0])
        """
        k = raw.shape[-1]
        if target == LABEL:
            source = np.stack([np.asarray(m).reshape(raw.shape[1:3]) for m in labels]).astype(int)
        else:
            source = raw.argmax(-1)
        if target in (PREDICTED, LABEL):
            counts = np.stack([np.bincount(s.ravel()[(s.ravel() > 0) & (s.ravel() < k)], minlength=k) for s in source])
            index = counts.argmax(-1)
            index = np.where(counts.max(-1) > 0, index, 0)
        else:
            index = np.full(len(raw), class_index(self, target))
        pixels = (source == np.asarray(index)[:, None, None]).astype(np.float32)
        # A class with no pixel in an image: score its mean logit over the whole image instead.
        pixels[pixels.reshape(len(raw), -1).sum(-1) == 0] = 1.0
        index = [int(i) for i in index]
        weights = tf.constant(pixels / pixels.sum(axis=(1, 2), keepdims=True))

        def class_pixels(out):
            logits = tf.gather(out, tf.constant(index, tf.int32)[:, None], axis=3, batch_dims=1)[..., 0]
            return tf.reduce_sum(logits * weights, axis=(1, 2))

        return TaskScore(class_pixels, [self.classes[i] for i in index], f"mean logit over the {target} class's pixels")

    @classmethod
    def example(cls, image_size=16):
        """Background and one class, a mask with a square of it and an unlabelled pixel, and a matching output.

        Args:
            image_size: the side of the mask and of the output.

        Returns:
            A ``TaskExample``.

        Example:
            >>> ex = SegmentationTask.example(8)
            >>> ex.task.decode(ex.output)["areas"]
            {'background': 0.75, 'circle': 0.25}
        """
        n = int(image_size)
        mask = np.zeros((n, n), np.uint8)
        mask[: n // 2, : n // 2] = 1
        mask[-1, -1] = UNLABELLED
        output = np.stack([mask != 1, mask == 1], axis=-1).astype(np.float32)
        return TaskExample(cls("mask", classes=["background", "circle"]), mask, output)

    def get_config(self):
        return {
            **super().get_config(),
            "classes": self.classes, "ignore_class": self.ignore_class, "head_channels": self.head_channels,
        }
