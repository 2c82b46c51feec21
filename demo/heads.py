"""Decoding each task head's raw output into a prediction a person (and JSON) can read. numpy only.

These functions are the one implementation of decoding: the library's ``Task.decode`` of each task
type calls them (the dense heads, detection and segmentation, through ``demo.decoding``), so the
device and ``predictions.json`` cannot decode differently. ``decode`` picks one by the task's entry
of the model card and applies the card's decoding settings.

Example:
    >>> task = {"name": "color", "kind": "classification", "classes": ["red", "blue"], "decoding": {"top_k": 2}}
    >>> decode(task, np.array([0.2, 0.8]))
    {'label': 'blue', 'index': 1, 'score': 0.8, 'top': [['blue', 0.8], ['red', 0.2]]}
"""

from __future__ import annotations

import numpy as np

from demo import decoding


def classification(output, classes, top_k: int | None = 1) -> dict:
    """The most likely class, its probability, and the ``top_k`` classes as ``[name, score]``.

    ``top_k=None`` leaves the ``top`` list out (the library's ``predictions.json`` has none).

    Args:
        output: one sample's class probabilities ``[K]`` (any shape, flattened).
        classes: the class names, indexed by class.
        top_k: how many classes the ``top`` list gives (at least 1), or None for no list.

    Returns:
        ``{"label", "index", "score"[, "top"]}``, scores rounded to 4 decimals.

    Example:
        >>> classification(np.array([0.1, 0.7, 0.2]), ["a", "b", "c"])
        {'label': 'b', 'index': 1, 'score': 0.7, 'top': [['b', 0.7]]}
        >>> classification(np.array([0.1, 0.7, 0.2]), ["a", "b", "c"], top_k=None)
        {'label': 'b', 'index': 1, 'score': 0.7}
    """
    p = np.asarray(output, np.float32).reshape(-1)
    order = np.argsort(-p, kind="stable")
    i = int(order[0])
    found = {"label": str(classes[i]), "index": i, "score": round(float(p[i]), 4)}
    if top_k is not None:
        found["top"] = [[str(classes[j]), round(float(p[j]), 4)] for j in order[: max(1, int(top_k))]]
    return found


def multilabel(output, classes, threshold: float = 0.5) -> dict:
    """The classes whose sigmoid score reaches ``threshold``, and every class's score.

    Args:
        output: one sample's per-class sigmoid scores ``[K]``.
        classes: the class names, indexed by class.
        threshold: the lowest score that counts as present (0..1).

    Returns:
        ``{"labels": [names], "scores": {name: score}}``, scores rounded to 4 decimals.

    Example:
        >>> multilabel(np.array([0.9, 0.2]), ["a", "b"])
        {'labels': ['a'], 'scores': {'a': 0.9, 'b': 0.2}}
    """
    p = np.asarray(output, np.float32).reshape(-1)
    return {"labels": [str(classes[i]) for i in np.flatnonzero(p >= threshold)],
            "scores": {str(c): round(float(v), 4) for c, v in zip(classes, p)}}


def box(output) -> dict:
    """One ``rel_yxyx`` box (fractions of the image height and width).

    Args:
        output: one sample's box output (its first 4 values are used).

    Returns:
        ``{"box_rel_yxyx": [ymin, xmin, ymax, xmax]}``, rounded to 4 decimals.

    Example:
        >>> box(np.array([0.1, 0.2, 0.5, 0.6]))
        {'box_rel_yxyx': [0.1, 0.2, 0.5, 0.6]}
    """
    v = np.asarray(output, np.float32).reshape(-1)[:4]
    return {"box_rel_yxyx": [round(float(x), 4) for x in v]}


def regression(output) -> dict:
    """The predicted value (a list for a vector target).

    Args:
        output: one sample's regression output (any shape, flattened).

    Returns:
        ``{"value": float}``, or ``{"value": [floats]}`` for several values, rounded to 4 decimals.

    Example:
        >>> regression(np.array([2.6]))
        {'value': 2.6}
    """
    v = np.asarray(output, np.float32).reshape(-1)
    return {"value": round(float(v[0]), 4)} if v.size == 1 else {"value": [round(float(x), 4) for x in v]}


def detection(output, classes, score_threshold: float = 0.3, max_objects: int = 100) -> dict:
    """Objects (label, score, box) from a detection heatmap output, via ``demo.decoding``.

    Args:
        output: one image's detection output, ``[H, W, C + 4]``.
        classes: the C class names.
        score_threshold: the lowest peak score kept (0..1).
        max_objects: at most this many objects.

    Returns:
        ``{"objects": [{"label", "index", "score", "box_rel_yxyx"}]}``, best first.

    Example:
        >>> detection(np.zeros((4, 4, 5), np.float32), ["a"])
        {'objects': []}
    """
    found = decoding.decode_detections(output, num_classes=len(classes), score_threshold=score_threshold,
                                       top_k=max_objects)
    return {"objects": decoding.detections_to_json(found, classes)}


def segmentation(output, classes) -> dict:
    """A per-pixel class map (``mask``, uint8, not written to JSON) and the share of each class.

    Args:
        output: one image's segmentation output, ``[H, W, K]`` class scores.
        classes: the K class names.

    Returns:
        ``{"areas": {name: fraction}, "mask": uint8 [H, W]}``.

    Example:
        >>> r = segmentation(np.array([[[0.9, 0.1], [0.2, 0.8]]]), ["background", "a"])
        >>> r["areas"], r["mask"].tolist()
        ({'background': 0.5, 'a': 0.5}, [[0, 1]])
    """
    mask = decoding.decode_mask(output)
    return {"areas": decoding.mask_areas(mask, classes), "mask": mask}


def depth(output, max_depth: float | None = None) -> dict:
    """A per-pixel depth map (``depth``, float32, not for JSON) and its nearest, farthest, median, centre depth.

    Unusable values (NaN, negative) become 0 (no depth) and, with ``max_depth``, depths are clipped to
    it. The numbers are over the pixels with a depth (0 when none has one); the centre is the median
    over the middle half of the image.

    Args:
        output: one image's depth output, ``[H, W, 1]`` or ``[H, W]``.
        max_depth: the largest depth reported (the card's ``max_depth``), or ``None`` for no cap.

    Returns:
        ``{"nearest", "farthest", "median", "centre": depths (4 decimals), "depth": float32 [H, W]}``.

    Raises:
        ValueError: ``output`` is not one map.

    Example:
        >>> r = depth(np.array([[[1.0], [3.0]], [[2.0], [12.0]]]), max_depth=10.0)
        >>> {k: v for k, v in r.items() if k != "depth"}, r["depth"].tolist()
        ({'nearest': 1.0, 'farthest': 10.0, 'median': 2.5, 'centre': 2.5}, [[1.0, 3.0], [2.0, 10.0]])
    """
    d = np.asarray(output, np.float32)
    if d.ndim == 3 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"depth output must be [H, W, 1] or [H, W], got shape {np.shape(output)}")
    top = np.float32(max_depth) if max_depth is not None else np.finfo(np.float32).max
    d = np.clip(np.nan_to_num(d, nan=0.0, posinf=top, neginf=0.0), 0.0, top)
    h, w = d.shape
    centre = d[h // 4: h - h // 4, w // 4: w - w // 4]
    seen, seen_centre = d[d > 0], centre[centre > 0]
    stats = {"nearest": seen.min() if seen.size else 0.0, "farthest": seen.max() if seen.size else 0.0,
             "median": np.median(seen) if seen.size else 0.0,
             "centre": np.median(seen_centre) if seen_centre.size else 0.0}
    return {**{k: round(float(v), 4) for k, v in stats.items()}, "depth": d}


def depth_millimetres(depth_map) -> np.ndarray:
    """A depth map as uint16 millimetres (metres × 1000, at most 65.535), the usual 16-bit depth PNG.

    Args:
        depth_map: ``[H, W]`` depths in metres (``depth``'s ``depth``).

    Returns:
        A uint16 ``[H, W]`` array; 0 where there is no depth.

    Example:
        >>> depth_millimetres(np.array([[1.2344, 0.0], [70.0, np.nan]])).tolist()
        [[1234, 0], [65535, 0]]
    """
    d = np.nan_to_num(np.asarray(depth_map, np.float64), nan=0.0) * 1000.0
    return np.clip(np.floor(d + 0.5), 0, 65535).astype(np.uint16)


def decode(task: dict, output, score_threshold: float | None = None, max_objects: int | None = None) -> dict:
    """Decode one sample's output of ``task`` (its model-card entry), with the card's decoding settings.

    ``score_threshold`` overrides the card's threshold of multi-label and detection heads,
    ``max_objects`` the most objects a detection head reports.

    Args:
        task: the card's task entry (``kind``, ``classes``, optional ``decoding``).
        output: one sample's output of that head (numpy, no batch axis).
        score_threshold: overrides the card's threshold (multilabel, detection); None keeps it.
        max_objects: overrides the card's object limit (detection); None keeps it.

    Returns:
        The decoded dict of the task's kind (see the functions above).

    Raises:
        ValueError: a kind this demo cannot decode.

    Example:
        >>> decode({"name": "count", "kind": "regression"}, np.array([3.0]))
        {'value': 3.0}
    """
    kind, settings = task["kind"], task.get("decoding") or {}
    classes = task.get("classes") or []
    if kind == "classification":
        return classification(output, classes, settings.get("top_k", 1))
    if kind == "multilabel":
        return multilabel(output, classes, settings.get("threshold", 0.5) if score_threshold is None else score_threshold)
    if kind == "box":
        return box(output)
    if kind == "regression":
        return regression(output)
    if kind == "detection":
        return detection(output, classes,
                          settings.get("score_threshold", 0.3) if score_threshold is None else score_threshold,
                          settings.get("top_k", 100) if max_objects is None else max_objects)
    if kind == "segmentation":
        return segmentation(output, classes)
    if kind == "depth":
        return depth(output, settings.get("max_depth"))
    raise ValueError(f"task {task.get('name')!r} has kind {kind!r}, which this demo cannot decode")


KINDS = ("classification", "multilabel", "box", "regression", "detection", "segmentation", "depth")
