"""Turning dense model outputs into boxes and masks, with numpy only (no TensorFlow).

The on-device demo runs this on LiteRT outputs; the training library (``mtl_keras.tasks.detection``
and ``mtl_keras.tasks.segmentation``) imports it from here, so the two can never decode differently.

Detection output layout (one ``[H, W, C + 4]`` float32 map per image, ``H = W = image_size / 4``):

====================  ===================================================================
channels ``0..C-1``   class heatmaps (sigmoid scores; a peak marks an object centre)
channel ``C, C+1``    box height and width, relative to the image (0..1)
channel ``C+2, C+3``  centre offset inside its cell, in cells (0..1), y then x
====================  ===================================================================

Example:
    >>> out = np.zeros((8, 8, 2 + 4), np.float32)
    >>> out[3, 5, 1] = 0.9                        # class 1 peak at cell (3, 5)
    >>> out[3, 5, 2:4] = 0.25, 0.5                # 0.25 high, 0.5 wide
    >>> out[3, 5, 4:6] = 0.5, 0.5                 # centre in the middle of the cell
    >>> det = decode_detections(out, num_classes=2)
    >>> det["classes"].tolist(), det["boxes"].round(4).tolist()
    ([1], [[0.3125, 0.4375, 0.5625, 0.9375]])
"""

from __future__ import annotations

import numpy as np

# Output stride of the dense maps relative to the input image (the shared FPN level).
OUTPUT_STRIDE = 4


def local_peaks(heatmap: np.ndarray, kernel: int = 3) -> np.ndarray:
    """Boolean map of local maxima over ``kernel``×``kernel`` windows, per channel.

    This is CenterNet's replacement for non-maximum suppression: a cell is kept when it equals the
    max-pool of its neighbourhood. ``heatmap`` is ``[H, W, C]``.

    Args:
        heatmap: a ``[H, W, C]`` array (converted to float32).
        kernel: the window side, odd (default 3).

    Returns:
        A boolean ``[H, W, C]`` array, True at the local maxima (ties included).

    Raises:
        ValueError: ``heatmap`` is not 3-D.

    Example:
        >>> h = np.array([[0.1, 0.2, 0.1], [0.2, 0.9, 0.3], [0.1, 0.3, 0.8]], np.float32)[..., None]
        >>> local_peaks(h)[..., 0].astype(int).tolist()
        [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    """
    h = np.asarray(heatmap, np.float32)
    if h.ndim != 3:
        raise ValueError(f"heatmap must be [H, W, C], got shape {h.shape}")
    pad = kernel // 2
    padded = np.pad(h, ((pad, pad), (pad, pad), (0, 0)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel, kernel), axis=(0, 1))
    return h >= windows.max(axis=(-2, -1))


def decode_detections(
    output: np.ndarray, num_classes: int, score_threshold: float = 0.3, top_k: int = 100
) -> dict:
    """Boxes, scores and classes from one image's ``[H, W, C + 4]`` detection output.

    Peak picking (3×3 max-pool), the ``top_k`` highest peaks over all classes, then
    ``score >= score_threshold``. Boxes are ``rel_yxyx`` clipped to [0, 1], best first.

    Args:
        output: one image's detection output, ``[H, W, C + 4]`` (class heatmaps, then h, w, dy, dx).
        num_classes: C, the number of classes.
        score_threshold: the lowest peak score kept (0..1).
        top_k: at most this many objects.

    Returns:
        ``{"boxes": float32 [n, 4], "scores": float32 [n], "classes": int32 [n]}``, best first.

    Raises:
        ValueError: ``output`` is not ``[H, W, num_classes + 4]``.

    Example:
        >>> det = decode_detections(np.zeros((4, 4, 5), np.float32), num_classes=1)
        >>> det["boxes"].shape, det["scores"].shape
        ((0, 4), (0,))
    """
    out = np.asarray(output, np.float32)
    c = int(num_classes)
    if out.ndim != 3 or out.shape[-1] != c + 4:
        raise ValueError(f"detection output must be [H, W, {c + 4}] for {c} classes, got shape {out.shape}")
    grid_h, grid_w = out.shape[:2]
    heat = out[..., :c]
    ys, xs, cs = np.nonzero(local_peaks(heat) & (heat >= score_threshold))
    scores = heat[ys, xs, cs]
    order = np.argsort(-scores, kind="stable")[: int(top_k)]
    ys, xs, cs, scores = ys[order], xs[order], cs[order], scores[order]
    h, w = out[ys, xs, c], out[ys, xs, c + 1]
    cy = (ys + out[ys, xs, c + 2]) / grid_h
    cx = (xs + out[ys, xs, c + 3]) / grid_w
    boxes = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1).clip(0.0, 1.0)
    return {
        "boxes": boxes.astype(np.float32).reshape(-1, 4),
        "scores": scores.astype(np.float32),
        "classes": cs.astype(np.int32),
    }


def detections_to_json(detections: dict, class_names) -> list[dict]:
    """``decode_detections`` output as a JSON-ready list, one dict per object.

    Args:
        detections: ``{"boxes", "scores", "classes"}`` as ``decode_detections`` returns it.
        class_names: the class names, indexed by class.

    Returns:
        A list of ``{"label", "index", "score", "box_rel_yxyx"}`` dicts (4 decimals), in the given order.

    Example:
        >>> d = {"boxes": np.array([[0, 0, .5, .5]]), "scores": np.array([.9]), "classes": np.array([1])}
        >>> detections_to_json(d, ["cat", "dog"])
        [{'label': 'dog', 'index': 1, 'score': 0.9, 'box_rel_yxyx': [0.0, 0.0, 0.5, 0.5]}]
    """
    return [
        {
            "label": str(class_names[int(k)]),
            "index": int(k),
            "score": round(float(s), 4),
            "box_rel_yxyx": [round(float(v), 4) for v in b],
        }
        for b, s, k in zip(detections["boxes"], detections["scores"], detections["classes"])
    ]


def decode_mask(probabilities: np.ndarray) -> np.ndarray:
    """Per-pixel class index (uint8 ``[H, W]``) from a ``[H, W, K]`` segmentation output.

    Args:
        probabilities: a ``[H, W, K]`` array of class scores.

    Returns:
        A uint8 ``[H, W]`` array of argmax class indices.

    Raises:
        ValueError: ``probabilities`` is not 3-D.

    Example:
        >>> decode_mask(np.array([[[0.2, 0.8], [0.9, 0.1]]])).tolist()
        [[1, 0]]
    """
    p = np.asarray(probabilities)
    if p.ndim != 3:
        raise ValueError(f"segmentation output must be [H, W, K], got shape {p.shape}")
    return np.argmax(p, axis=-1).astype(np.uint8)


def mask_areas(mask: np.ndarray, class_names) -> dict:
    """Fraction of the image each class covers, for the classes that appear (largest first).

    Args:
        mask: a ``[H, W]`` array of class indices.
        class_names: the class names, indexed by class (indices past the list are ignored).

    Returns:
        ``{class name: fraction of pixels}`` (4 decimals), classes with no pixel left out.

    Example:
        >>> mask_areas(np.array([[0, 1], [1, 1]], np.uint8), ["background", "square"])
        {'square': 0.75, 'background': 0.25}
    """
    m = np.asarray(mask)
    counts = np.bincount(m.ravel(), minlength=len(class_names))[: len(class_names)]
    order = np.argsort(-counts, kind="stable")
    return {str(class_names[i]): round(float(counts[i]) / m.size, 4) for i in order if counts[i]}
