"""Object detection, CenterNet-style: a class heatmap plus box size and centre offset per cell.

The head reads the shared stride-4 FPN map and emits ONE dense float32 tensor ``[H/4, W/4, C + 4]``
(layout in ``demo.decoding``), so ``fit``, ``save`` and TFLite export treat it like any other
output. Targets are encoded in ``tf.data`` from the Keras bounding-box dict
``{"boxes": [M, 4] rel_yxyx, "labels": [M]}`` (padded with -1) into ``[H/4, W/4, C + 5]``: the
Gaussian heatmaps, size, offset and a centre indicator. Decoding (peak picking, top-k, threshold)
is ``demo.decoding.decode_detections`` — numpy, shared with the device demo. Evaluation is COCO mAP
through pycocotools (``mtl_keras.tasks.coco_map``).

Example:
    >>> t = DetectionTask("objects", classes=["circle", "square"])
    >>> t.num_outputs, t.target_signature(64).shape
    (6, TensorShape([16, 16, 7]))
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from demo import heads
from demo.decoding import OUTPUT_STRIDE, decode_detections
from mtl_keras.errors import MtlError, unknown
from mtl_keras.layers import DetectionSummary, MainObjectPool, fpn_features
from mtl_keras.tasks.base import Task, TaskExample, register_task_type
from mtl_keras.tasks.centernet_loss import HEATMAP_LOSSES, CenterNetLoss
from mtl_keras.tasks.checks import assert_label
from mtl_keras.tasks.coco_map import CocoEvaluator
from mtl_keras.tasks.scoring import TaskScore, pick, targets_from

# Gaussian spread relative to the object size (TTFNet's alpha): sigma = alpha * size / 6, per axis,
# so elongated objects get elongated peaks; the floor keeps tiny objects learnable.
_GAUSSIAN_ALPHA = 0.54
_MIN_SIGMA_CELLS = 0.5
# Prior probability of an object centre at a cell: a low start keeps the many empty cells from
# swamping the first steps (the focal-loss paper's initialisation).
_HEATMAP_PRIOR = 0.1
# Widths (in cells) over which a dense reader sees the detection map max-pooled: a peak reaches a pixel
# up to 2, 4 and 8 cells away (the scenes' objects span 3.5-9 cells at 64 px).
_REACH_WINDOWS = (5, 9, 17)


def targets_to_boxes(target: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The ground-truth boxes and classes stored in one encoded ``[H, W, C + 5]`` target.

    Exact except where two objects share a centre cell (the encoding keeps one box there).

    Args:
        target: one image's encoded target, ``[H, W, C + 5]`` (class heatmaps, size, offset, centre mask).
        num_classes: C, the number of classes.

    Returns:
        ``(boxes, classes)``: float32 ``[n, 4]`` ``(ymin, xmin, ymax, xmax)`` in 0..1 and int32 ``[n]``.

    Example:
        >>> t = DetectionTask("objects", classes=["a", "b"])
        >>> y = t.encode({"boxes": np.array([[.2, .2, .6, .6], [-1, -1, -1, -1]]), "labels": np.array([1, -1])}, 32)[0]
        >>> boxes, classes = targets_to_boxes(y.numpy(), 2)
        >>> boxes.astype(float).round(4).tolist(), classes.tolist()
        ([[0.2, 0.2, 0.6, 0.6]], [1])
    """
    t = np.asarray(target, np.float32)
    c = int(num_classes)
    grid_h, grid_w = t.shape[:2]
    ys, xs = np.nonzero(t[..., c + 4] > 0.5)
    boxes, classes = [], []
    for y, x in zip(ys, xs):
        h, w, dy, dx = t[y, x, c : c + 4]
        cy, cx = (y + dy) / grid_h, (x + dx) / grid_w
        for k in np.flatnonzero(t[y, x, :c] >= 1.0 - 1e-4):
            boxes.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
            classes.append(k)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int32)


@register_task_type
class DetectionTask(Task):
    """Every object's class and box; the label is the Keras bounding-box dict padded with -1.

    ``max_objects`` caps what ``decode`` returns for a person; ``score_threshold`` is the score a
    detection needs there (mAP evaluation keeps the top 100 at any score, as COCO does).

    Example:
        >>> t = DetectionTask("objects", classes=["circle", "square"], max_objects=3)
        >>> out = np.zeros((16, 16, 6), np.float32); out[4, 8, 1] = 0.9; out[4, 8, 2:4] = 0.5
        >>> t.decode(out)["objects"][0]["label"]
        'square'
    """

    kind = "detection"
    primary_metric = "map50"
    higher_is_better = True
    dense = True
    export_tolerance = 0.02
    gradcam_reads_logits = True

    def __init__(
        self,
        name,
        classes,
        max_objects: int = 100,
        score_threshold: float = 0.3,
        heatmap_loss: str = "focal",
        size_weight: float = 5.0,
        offset_weight: float = 1.0,
        head_channels: int = 64,
        **kwargs,
    ):
        super().__init__(name, **kwargs)
        if len(classes) < 1:
            raise MtlError(f"task {name!r}: detection needs at least 1 class")
        if heatmap_loss not in HEATMAP_LOSSES:
            raise unknown(f"heatmap loss of task {name!r}:", heatmap_loss, HEATMAP_LOSSES)
        if int(max_objects) < 1:
            raise MtlError(f"task {name!r}: max_objects must be at least 1, got {max_objects}")
        self.classes = [str(c) for c in classes]
        self.max_objects = int(max_objects)
        self.score_threshold = float(score_threshold)
        self.heatmap_loss = heatmap_loss
        self.size_weight = float(size_weight)
        self.offset_weight = float(offset_weight)
        self.head_channels = int(head_channels)

    @property
    def num_outputs(self):
        return len(self.classes) + 4

    # ----- model side -------------------------------------------------------------------------
    def head(self, features, extra=None):
        if extra:
            raise MtlError(f"task {self.name!r}: a detection head cannot depend on other tasks")
        p = fpn_features(features)
        n, hc = self.name, self.head_channels
        heat = keras.layers.Conv2D(hc, 3, padding="same", activation="relu", name=f"{n}_heat_conv")(p)
        prior_logit = float(np.log(_HEATMAP_PRIOR / (1 - _HEATMAP_PRIOR)))
        heat = keras.layers.Conv2D(
            len(self.classes), 1, bias_initializer=keras.initializers.Constant(prior_logit), name=f"{n}_heat_logits"
        )(heat)
        box = keras.layers.Conv2D(hc, 3, padding="same", activation="relu", name=f"{n}_box_conv")(p)
        box = keras.layers.Conv2D(4, 1, name=f"{n}_box_logits")(box)
        logits = keras.layers.Concatenate(name=f"{n}_logits")([heat, box])
        return self.output_layer()(logits)

    def summary_for(self, reader, output, index, features=None, spatial=False):
        """Per class: the mean heatmap score and the largest ``score × box area`` (``DetectionSummary``),
        standardised; a head about the main object needs to know which object is largest. With the
        shared ``features``, also the pyramid pooled at the most prominent object (``MainObjectPool``):
        what that object looks like (its colour, its outline), which a global average mixes with the rest.
        A dense reader (``spatial``, e.g. a mask) reads the detection map itself, which class is where, and
        the map max-pooled over 5, 9 and 17 cells, which carries each object's class out to its edges."""
        if spatial:
            # The heatmap peaks at object centres and is ~0 at their edges (its spread is a sixth of the
            # object), so a mask pixel near an edge would find no class there. The map max-pooled over a
            # few widths (stride 1) carries each peak out to the object's extent.
            output = super().summary_for(reader, output, index, spatial=True)
            reach = [keras.layers.MaxPooling2D(k, strides=1, padding="same", name=f"{reader}_reach_{index}_{k}")(output)
                     for k in _REACH_WINDOWS]
            return keras.layers.Concatenate(name=f"{reader}_reach_{index}")([output, *reach])
        summary = DetectionSummary(len(self.classes), name=f"{reader}_pool_{index}")(output)
        summary = keras.layers.BatchNormalization(momentum=0.9, name=f"{reader}_pool_{index}_bn")(summary)
        if features is None:
            return summary
        main = MainObjectPool(len(self.classes), name=f"{reader}_main_object_{index}")([output, fpn_features(features)])
        reads = [summary, main]
        if "image" in features:
            # Its mean pixel colour too: the pyramid is trained by class-only heads (boxes, masks) and
            # keeps little of an object's colour, which the pixels hold as they are.
            cells = keras.layers.AveragePooling2D(OUTPUT_STRIDE, name=f"{reader}_pixels_{index}")(features["image"])
            pixels = MainObjectPool(len(self.classes), name=f"{reader}_main_pixels_{index}")([output, cells])
            reads.append(keras.layers.BatchNormalization(momentum=0.9, name=f"{reader}_main_pixels_{index}_bn")(pixels))
        return keras.layers.Concatenate(name=f"{reader}_reads_{index}")(reads)

    def output_layer(self):
        # Sizes (relative) and offsets (in cells) live in [0, 1] like the scores: one sigmoid for all.
        return keras.layers.Activation("sigmoid", dtype="float32", name=self.name)

    def loss(self):
        return CenterNetLoss(
            num_classes=len(self.classes), heatmap_loss=self.heatmap_loss,
            size_weight=self.size_weight, offset_weight=self.offset_weight,
        )

    def metrics(self):
        # mAP needs the whole split at once: see dataset_metrics.
        return []

    # ----- data side --------------------------------------------------------------------------
    def grid_size(self, image_size: int) -> int:
        """The side of the detection output grid for a square input of ``image_size``.

        Args:
            image_size: side of the square model input, in pixels (a multiple of ``OUTPUT_STRIDE``).

        Returns:
            ``image_size // OUTPUT_STRIDE``.

        Raises:
            MtlError: ``image_size`` is not a multiple of ``OUTPUT_STRIDE``.
        """
        if int(image_size) % OUTPUT_STRIDE:
            raise MtlError(f"image size must be a multiple of {OUTPUT_STRIDE} for detection, got {image_size}")
        return int(image_size) // OUTPUT_STRIDE

    def encode(self, label, image_size):
        if not isinstance(label, dict) or not {"boxes", "labels"} <= set(label):
            raise MtlError(f"task {self.name!r} expects a {{'boxes', 'labels'}} dict as its label")
        c, g = len(self.classes), self.grid_size(image_size)
        boxes = tf.reshape(tf.cast(label["boxes"], tf.float32), [-1, 4])
        labels = tf.reshape(tf.cast(label["labels"], tf.int32), [-1])
        # -1 pads the dict to a fixed length; a class past the last one is a labelling mistake, and
        # dropping it would train the model that the object is background.
        in_range = tf.reduce_all((labels >= -1) & (labels < c))
        finite = tf.reduce_all(tf.math.is_finite(boxes))
        checks = [
            assert_label(in_range, self.name, labels, f"a class index in 0..{c - 1} (or -1 for padding)"),
            assert_label(finite, self.name, boxes, "finite rel_yxyx boxes (or -1s for padding)"),
        ]
        with tf.control_dependencies(checks):
            labels = tf.identity(labels)
        # Zero-area boxes (they occur in COCO) carry no centre or size to learn from: skipped.
        valid = (labels >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = tf.clip_by_value(tf.boolean_mask(boxes, valid), 0.0, 1.0)
        labels = tf.boolean_mask(labels, valid)
        size = boxes[:, 2:] - boxes[:, :2]
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 * g
        cell = tf.clip_by_value(tf.floor(centre), 0.0, g - 1.0)
        offset = tf.clip_by_value(centre - cell, 0.0, 1.0)
        sigma = tf.maximum(_GAUSSIAN_ALPHA * size * g / 6.0, _MIN_SIGMA_CELLS)
        grid = tf.range(g, dtype=tf.float32)
        dy = (grid[None, :, None] - cell[:, 0, None, None]) / sigma[:, 0, None, None]
        dx = (grid[None, None, :] - cell[:, 1, None, None]) / sigma[:, 1, None, None]
        gauss = tf.exp(-0.5 * (tf.square(dy) + tf.square(dx)))  # [M, g, g], exactly 1 at the centre cell
        heat = tf.maximum(tf.math.unsorted_segment_max(gauss, labels, c), 0.0)  # empty class -> lowest float
        heat = tf.transpose(heat, [1, 2, 0])
        reg = tf.concat([size, offset, tf.ones_like(size[:, :1])], axis=-1)
        reg = tf.tensor_scatter_nd_update(tf.zeros([g, g, 5]), tf.cast(cell, tf.int32), reg)
        # An image with no object is a valid (all-background) example, not a missing label.
        return tf.concat([heat, reg], axis=-1), tf.constant(1.0)

    def target_signature(self, image_size):
        g = self.grid_size(image_size)
        return tf.TensorSpec([g, g, len(self.classes) + 5], tf.float32)

    # ----- person side ------------------------------------------------------------------------
    def decode(self, output):
        return heads.detection(output, self.classes, self.score_threshold, self.max_objects)

    def card_decoding(self):
        """The device keeps the task's score threshold and its most objects per image.

        Returns:
            ``{"score_threshold": s, "top_k": n}``.

        Example:
            >>> DetectionTask("objects", classes=["a"], max_objects=5).card_decoding()
            {'score_threshold': 0.3, 'top_k': 5}
        """
        return {"score_threshold": float(self.score_threshold), "top_k": int(self.max_objects)}

    def gradcam_score(self, raw, labels, target):
        """The heatmap peak logit of a class: the highest peak's class, the largest labelled object's, or a named one.

        Args:
            raw: the head's logits for the batch, numpy ``[B, H, W, C + 4]``.
            labels: the batch's ``{"boxes", "labels"}`` dicts, or ``None``.
            target: ``"predicted"``, ``"label"``, a class name or a class index.

        Returns:
            A ``TaskScore`` whose targets are the class names.

        Example:
            >>> t = DetectionTask("objects", classes=["a", "b"])
            >>> raw = np.zeros((1, 4, 4, 6), "float32"); raw[0, 1, 2, 1] = 3.0
            >>> s = t.gradcam_score(raw, None, "predicted")
            >>> s.targets, [float(v) for v in s(raw)]
            (['b'], [3.0])
        """
        c = len(self.classes)

        def from_labels(labels):
            index = []
            for lab in labels:
                boxes = np.asarray(lab["boxes"], np.float32).reshape(-1, 4)
                cls = np.asarray(lab["labels"]).reshape(-1)
                keep = cls >= 0
                if not keep.any():
                    raise MtlError(f"task {self.name!r}: target 'label' but an image has no labelled object")
                area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
                index.append(int(cls[np.where(keep, area, -1).argmax()]))
            return index

        index = targets_from(
            self, raw, labels, target, lambda raw: raw[..., :c].reshape(len(raw), -1, c).max(1).argmax(-1), from_labels
        )

        def peak(out):
            per_class = tf.reduce_max(out[..., :c], axis=(1, 2))  # [B, C]: each class's highest cell
            return pick(per_class, index)

        return TaskScore(peak, [self.classes[i] for i in index], "heatmap peak logit of the class")

    @classmethod
    def example(cls, image_size=16):
        """Two classes, one labelled object (padded with -1), and an output with one peak.

        Args:
            image_size: the input size; the output is its ``OUTPUT_STRIDE`` grid.

        Returns:
            A ``TaskExample``.

        Example:
            >>> ex = DetectionTask.example(16)
            >>> [o["label"] for o in ex.task.decode(ex.output)["objects"]]
            ['square']
        """
        g = int(image_size) // OUTPUT_STRIDE
        task = cls("objects", classes=["circle", "square"])
        output = np.zeros((g, g, len(task.classes) + 4), np.float32)
        output[g // 2, g // 2, 1] = 0.9
        output[g // 2, g // 2, 2:] = 0.5
        label = {"boxes": np.array([[0.25, 0.25, 0.75, 0.75], [-1, -1, -1, -1]], np.float32),
                 "labels": np.array([1, -1], np.int32)}
        return TaskExample(task, label, output)

    def dataset_metrics(self, targets, outputs, weights) -> dict:
        """COCO ``map`` (mAP@[.5:.95]) and ``map50`` over a split, through pycocotools.

        ``targets``/``outputs`` are the encoded targets and model outputs of every image, stacked;
        images with weight 0 are left out. Ground truth is read back from the encoded targets.

        Args:
            targets: the encoded targets, ``[N, H, W, C + 5]``.
            outputs: the model outputs, ``[N, H, W, C + 4]``.
            weights: the sample weights, ``[N]`` (0: no label, left out).

        Returns:
            ``{"map": float, "map50": float}``; NaN when no image has a ground-truth box.

        Raises:
            MtlError: outputs whose shape does not match the targets and classes.

        Example:
            >>> t = DetectionTask("objects", classes=["a"])
            >>> y = t.encode({"boxes": np.array([[.2, .2, .6, .6]]), "labels": np.array([0])}, 32)[0].numpy()[None]
            >>> t.dataset_metrics(y, y[..., :5], np.ones(1))
            {'map': 1.0, 'map50': 1.0}
        """
        targets, outputs = np.asarray(targets), np.asarray(outputs)
        weights = np.asarray(weights, np.float32).reshape(len(targets), -1)[:, 0]
        c = len(self.classes)
        if outputs.shape[:-1] != targets.shape[:-1] or outputs.shape[-1] != c + 4:
            raise MtlError(
                f"task {self.name!r}: outputs {outputs.shape} do not match targets {targets.shape} for {c} classes"
            )
        ev = CocoEvaluator(c, image_size=targets.shape[1] * OUTPUT_STRIDE)
        for target, output, w in zip(targets, outputs, weights):
            if w <= 0:
                continue
            gt_boxes, gt_classes = targets_to_boxes(target, c)
            det = decode_detections(output, c, score_threshold=0.01, top_k=100)
            ev.add(gt_boxes, gt_classes, det["boxes"], det["scores"], det["classes"])
        return ev.result()

    def get_config(self):
        return {
            **super().get_config(),
            "classes": self.classes, "max_objects": self.max_objects, "score_threshold": self.score_threshold,
            "heatmap_loss": self.heatmap_loss, "size_weight": self.size_weight,
            "offset_weight": self.offset_weight, "head_channels": self.head_channels,
        }
