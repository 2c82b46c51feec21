"""COCO box mAP through pycocotools (the reference implementation), fed from in-memory arrays.

Boxes come in as ``rel_yxyx``; they are scaled to pixels of an ``image_size`` square image only so
that pycocotools' area ranges mean what they usually mean (mAP over all areas does not depend on it).

Example:
    >>> ev = CocoEvaluator(num_classes=2)
    >>> ev.add(gt_boxes=[[0.1, 0.1, 0.5, 0.5]], gt_classes=[1],
    ...        boxes=[[0.1, 0.1, 0.5, 0.5]], scores=[0.9], classes=[1])
    >>> ev.result()
    {'map': 1.0, 'map50': 1.0}
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np

from mtl_keras.errors import MtlError


def _xywh(boxes_rel_yxyx: np.ndarray, image_size: int) -> np.ndarray:
    b = np.asarray(boxes_rel_yxyx, np.float64).reshape(-1, 4) * image_size
    return np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], axis=-1)


class CocoEvaluator:
    """Accumulates ground truth and detections image by image; ``result()`` runs ``COCOeval``.

    Feed it batch by batch to keep memory flat over a large split. ``result()`` gives
    ``{"map": mAP@[.5:.95], "map50": mAP@.5}``; NaN when the images hold no ground-truth box at all
    (mAP is undefined there), 0.0 when there are boxes but no detections.

    Example:
        >>> ev = CocoEvaluator(num_classes=1)
        >>> ev.add([[0, 0, .5, .5]], [0], boxes=[[0, .25, .5, .75]], scores=[.8], classes=[0])
        >>> ev.result()["map50"]
        0.0
    """

    def __init__(self, num_classes: int, image_size: int = 512):
        if int(num_classes) < 1:
            raise MtlError(f"COCO evaluation needs at least one class, got {num_classes}")
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.images: list[dict] = []
        self.gt: list[dict] = []
        self.dt: list[dict] = []

    def add(self, gt_boxes, gt_classes, boxes, scores, classes) -> None:
        """One image: its true boxes/classes and its detections (``rel_yxyx``, class indices).

        Args:
            gt_boxes: the true boxes ``[n, 4]``, ``(ymin, xmin, ymax, xmax)`` in 0..1.
            gt_classes: their class indices ``[n]``, in ``0..num_classes-1``.
            boxes: the detected boxes ``[m, 4]``, same format.
            scores: their confidences ``[m]``.
            classes: their class indices ``[m]``.

        Raises:
            MtlError: a class index outside ``0..num_classes-1``.
        """
        image_id = len(self.images) + 1  # pycocotools treats id 0 as "unmatched"
        s = self.image_size
        self.images.append({"id": image_id, "width": s, "height": s})
        gt_classes = np.asarray(gt_classes, np.int64).reshape(-1)
        classes = np.asarray(classes, np.int64).reshape(-1)
        scores = np.asarray(scores, np.float64).reshape(-1)
        for arr, what in ((gt_classes, "ground-truth"), (classes, "detected")):
            if arr.size and (arr.min() < 0 or arr.max() >= self.num_classes):
                raise MtlError(f"{what} class index out of range 0..{self.num_classes - 1}: {arr.tolist()}")
        for box, k in zip(_xywh(gt_boxes, s), gt_classes):
            self.gt.append({
                "id": len(self.gt) + 1, "image_id": image_id, "category_id": int(k) + 1,
                "bbox": box.tolist(), "area": float(box[2] * box[3]), "iscrowd": 0,
            })
        for box, score, k in zip(_xywh(boxes, s), scores, classes):
            self.dt.append({"image_id": image_id, "category_id": int(k) + 1, "bbox": box.tolist(), "score": float(score)})

    def result(self) -> dict:
        """``{"map", "map50"}`` over everything added so far."""
        if not self.gt:
            return {"map": math.nan, "map50": math.nan}
        if not self.dt:
            return {"map": 0.0, "map50": 0.0}
        # lazy: pycocotools takes ~0.8 s to import, and only detection evaluation needs it, not every
        # `import mtl_keras.tasks`.
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        # pycocotools prints progress and tables to stdout; the caller reports the numbers itself.
        with contextlib.redirect_stdout(io.StringIO()):
            truth = COCO()
            truth.dataset = {
                "images": self.images, "annotations": self.gt,
                "categories": [{"id": k + 1, "name": str(k)} for k in range(self.num_classes)],
            }
            truth.createIndex()
            found = truth.loadRes([dict(d) for d in self.dt])
            ev = COCOeval(truth, found, iouType="bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return {"map": round(float(ev.stats[0]), 6), "map50": round(float(ev.stats[1]), 6)}


def coco_map(ground_truth, detections, num_classes: int, image_size: int = 512) -> dict:
    """mAP@[.5:.95] and mAP@.5 of per-image detections against per-image ground truth.

    ``ground_truth``: per image ``(boxes [n, 4] rel_yxyx, classes [n])``; ``detections``: per image
    a dict with ``boxes``, ``scores``, ``classes`` (what ``demo.decoding.decode_detections`` returns).

    Args:
        ground_truth: per image, ``(boxes [n, 4], classes [n])``.
        detections: per image, ``{"boxes": [m, 4], "scores": [m], "classes": [m]}``.
        num_classes: the number of classes.
        image_size: the pixel size the relative boxes are scaled to (sets COCO's area ranges).

    Returns:
        ``{"map": float, "map50": float}``; NaN when there is no ground-truth box.

    Raises:
        MtlError: the two lists differ in length, fewer than one class, or a class index out of range.

    Example:
        >>> gt = [(np.array([[0, 0, .5, .5]]), np.array([0]))]
        >>> det = [{"boxes": np.array([[0, 0, .5, .5]]), "scores": np.array([.7]), "classes": np.array([0])}]
        >>> coco_map(gt, det, num_classes=1)
        {'map': 1.0, 'map50': 1.0}
    """
    if len(ground_truth) != len(detections):
        raise MtlError(f"{len(ground_truth)} ground-truth images but {len(detections)} detection results")
    ev = CocoEvaluator(num_classes, image_size)
    for (gt_boxes, gt_classes), det in zip(ground_truth, detections):
        ev.add(gt_boxes, gt_classes, det["boxes"], det["scores"], det["classes"])
    return ev.result()
