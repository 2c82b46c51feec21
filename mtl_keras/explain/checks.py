"""Numbers about class-activation maps: pointing game, energy in the box, task overlap, degenerate maps.

Pure numpy, so every check is testable on synthetic maps with known answers. Maps here are
non-negative ``[H, W]`` arrays at image resolution (``upsample``) or at the layer's own resolution
(``pointing_hit`` takes the low-resolution map: see there why). Boxes are ``rel_yxyx`` in [0, 1].

Example:
    >>> import numpy as np
    >>> cam = np.zeros((4, 4)); cam[1, 2] = 1.0
    >>> pointing_hit(cam, [0.0, 0.5, 0.5, 1.0], image_size=64)
    True
"""

from __future__ import annotations

import numpy as np

# Zhang et al. (2016) count a hit within 15 pixels of the box on ~224-pixel images; the same share
# of the image side is used at other sizes, so the check means the same at 64 px as at 224 px.
POINTING_TOLERANCE_PX = 15
POINTING_REFERENCE_SIZE = 224
# A map whose spread is this small relative to its peak carries no "where" information.
CONSTANT_RTOL = 1e-6

DEGENERATE_KINDS = ("nan", "zero", "constant")


def degenerate(cam) -> str | None:
    """Why a map cannot be used for localization (``"nan"``, ``"zero"``, ``"constant"``), else ``None``.

    Such maps are counted and reported, never averaged in: an all-zero Grad-CAM (every channel
    weighted negatively, then ReLU) has no maximum to point with and no energy to share.

    Args:
        cam: a map of any shape (array-like).

    Returns:
        ``"nan"`` (empty or non-finite), ``"zero"``, ``"constant"``, or ``None`` for a usable map.

    Example:
        >>> import numpy as np
        >>> [degenerate(m) for m in (np.full((2, 2), np.nan), np.zeros((2, 2)), np.ones((2, 2)), np.eye(2))]
        ['nan', 'zero', 'constant', None]
    """
    cam = np.asarray(cam, np.float64)
    if cam.size == 0 or not np.all(np.isfinite(cam)):
        return "nan"
    hi, lo = float(cam.max()), float(cam.min())
    if hi <= 0.0 and lo >= 0.0:
        return "zero"
    if hi - lo <= CONSTANT_RTOL * max(abs(hi), abs(lo)):
        return "constant"
    return None


def tolerance_px(image_size: int) -> float:
    """The pointing-game tolerance in pixels for a square image of ``image_size``.

    Args:
        image_size: side of the square image, in pixels.

    Returns:
        The tolerance in pixels (15 px scaled from 224 px), a float.

    Example:
        >>> round(tolerance_px(224), 2), round(tolerance_px(64), 2)
        (15.0, 4.29)
    """
    return POINTING_TOLERANCE_PX * float(image_size) / POINTING_REFERENCE_SIZE


def peak_point(cam) -> tuple[float, float]:
    """``(y, x)`` of the map's maximum, relative to the image: the centre of the top cell.

    The centre, not a corner: a bilinear upsampling of the map peaks there (or on a flat stretch
    running from there to the border), and ``scipy.ndimage.zoom``, which tf-keras-vis uses to
    expand maps, would put a 2×2 map's cell centres on the image corners.

    Args:
        cam: a 2-D map (array-like), at any resolution.

    Returns:
        ``(y, x)`` floats in 0..1, relative to the image height and width.

    Example:
        >>> import numpy as np
        >>> cam = np.zeros((2, 2)); cam[1, 0] = 1.0
        >>> peak_point(cam)
        (0.75, 0.25)
    """
    cam = np.asarray(cam, np.float64)
    i, j = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return float((i + 0.5) / cam.shape[0]), float((j + 0.5) / cam.shape[1])


def pointing_hit(cam, box, image_size: int) -> bool:
    """Pointing game (Zhang et al. 2016): does the map's maximum fall inside ``box`` (± tolerance)?

    ``cam`` may be at any resolution (its peak is taken as the top cell's centre, ``peak_point``);
    ``box`` is ``rel_yxyx``; the tolerance is 15 px scaled from 224 px to ``image_size``.

    Args:
        cam: a 2-D map, at any resolution.
        box: the object's box, ``(ymin, xmin, ymax, xmax)`` relative to the image (0..1).
        image_size: side of the square image, in pixels (scales the tolerance).

    Returns:
        True when the peak is inside the box grown by the tolerance.

    Example:
        >>> import numpy as np
        >>> cam = np.zeros((8, 8)); cam[1, 1] = 1.0      # peak at (12, 12) px of 64; tolerance 4.3 px
        >>> pointing_hit(cam, [0.2, 0.2, 0.5, 0.5], 64), pointing_hit(cam, [0.3, 0.3, 0.5, 0.5], 64)
        (True, False)
    """
    y, x = peak_point(cam)
    tol = tolerance_px(image_size) / float(image_size)
    y1, x1, y2, x2 = (float(v) for v in box)
    return bool(y1 - tol <= y <= y2 + tol and x1 - tol <= x <= x2 + tol)


def pointing_chance(box, image_size: int) -> float:
    """The hit rate of a uniformly random point: the share of the image the tolerant box covers.

    Args:
        box: the object's box, ``(ymin, xmin, ymax, xmax)`` relative to the image (0..1).
        image_size: side of the square image, in pixels (scales the tolerance).

    Returns:
        A float in 0..1: the area of the tolerant box, clipped to the image.

    Example:
        >>> round(pointing_chance([0.0, 0.0, 0.5, 0.5], 224), 3)
        0.321
    """
    tol = tolerance_px(image_size) / float(image_size)
    y1, x1, y2, x2 = (float(v) for v in box)
    h = min(1.0, y2 + tol) - max(0.0, y1 - tol)
    w = min(1.0, x2 + tol) - max(0.0, x1 - tol)
    return max(h, 0.0) * max(w, 0.0)


def box_mask(box, shape) -> np.ndarray:
    """Boolean ``[H, W]`` mask of the pixels whose centres lie inside a ``rel_yxyx`` box.

    Args:
        box: ``(ymin, xmin, ymax, xmax)`` relative to the image (0..1).
        shape: ``(H, W)`` of the mask.

    Returns:
        A boolean ``np.ndarray`` of shape ``[H, W]``.

    Example:
        >>> box_mask([0.0, 0.0, 0.5, 1.0], (4, 2)).astype(int).tolist()
        [[1, 1], [1, 1], [0, 0], [0, 0]]
    """
    h, w = shape
    ys = (np.arange(h) + 0.5) / h
    xs = (np.arange(w) + 0.5) / w
    y1, x1, y2, x2 = (float(v) for v in box)
    return ((ys >= y1) & (ys <= y2))[:, None] & ((xs >= x1) & (xs <= x2))[None, :]


def energy_in_box(cam, box) -> float:
    """Energy-based pointing game (Score-CAM paper): the share of the map's mass inside ``box``.

    ``cam`` is a non-negative map at image resolution. A uniform map scores the box's area share
    (``box_share``), the level a map with no localization reaches.

    Args:
        cam: a non-negative 2-D map at image resolution.
        box: ``(ymin, xmin, ymax, xmax)`` relative to the image (0..1).

    Returns:
        A float in 0..1: the map's sum inside the box over its total sum.

    Raises:
        ValueError: the map has no positive mass.

    Example:
        >>> import numpy as np
        >>> cam = np.zeros((4, 4)); cam[:2, :2] = 1.0; cam[3, 3] = 2.0
        >>> energy_in_box(cam, [0.0, 0.0, 0.5, 0.5])
        0.6666666666666666
    """
    cam = np.asarray(cam, np.float64)
    total = cam.sum()
    if not total > 0:
        raise ValueError("energy_in_box needs a map with positive mass (check degenerate() first)")
    return float(cam[box_mask(box, cam.shape)].sum() / total)


def box_share(box, shape) -> float:
    """The share of pixels inside the box: a uniform map's energy, the chance level of ``energy_in_box``.

    Args:
        box: ``(ymin, xmin, ymax, xmax)`` relative to the image (0..1).
        shape: ``(H, W)`` of the map.

    Returns:
        A float in 0..1.

    Example:
        >>> box_share([0.0, 0.0, 0.5, 0.5], (4, 4))
        0.25
    """
    return float(box_mask(box, shape).mean())


def map_correlation(a, b) -> float:
    """Pearson correlation of two maps of the same shape (how much two heads look at the same place).

    Args:
        a: a map (any shape).
        b: a map with as many values as ``a``.

    Returns:
        The correlation, a float in -1..1.

    Raises:
        ValueError: the maps differ in size, or one of them is constant.

    Example:
        >>> import numpy as np
        >>> a = np.arange(4.0).reshape(2, 2)
        >>> map_correlation(a, 2 * a + 1), map_correlation(a, -a)
        (1.0, -1.0)
    """
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps of different shapes: {a.shape} vs {b.shape}")
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    if not denom > 0:
        raise ValueError("correlation of a constant map is undefined (check degenerate() first)")
    return float(np.clip((a * b).sum() / denom, -1.0, 1.0))


def _mean(values):
    return float(np.mean(values)) if len(values) else None


def summarize(task_maps: dict, boxes, image_size: int) -> dict:
    """All checks over a set of images: per task and per pair of tasks, degenerate maps kept apart.

    ``task_maps``: ``{task: [(low_res_map, image_res_map), ...]}``, one pair per image, in the same
    image order for every task; ``boxes``: the main object's ``rel_yxyx`` box per image, or ``None``
    where an image has none. Rates and means are over the usable images only and say how many
    that was (``n``); degenerate maps are listed by kind and image index.

    Args:
        task_maps: ``{task: [(low_res_map, image_res_map), ...]}``, one pair per image.
        boxes: per image, the main object's ``(ymin, xmin, ymax, xmax)`` box (0..1), or ``None``.
        image_size: side of the square images, in pixels (scales the pointing tolerance).

    Returns:
        ``{"tasks": {task: {"n_images", "n_usable", "degenerate", "pointing_game", "energy_in_box"}},
        "overlap": {"a|b": {"n", "mean_correlation"}}}``; a mean over no image is ``None``.

    Raises:
        ValueError: a task has not one map pair per box.

    Example:
        >>> import numpy as np
        >>> hot = np.zeros((4, 4)); hot[0, 0] = 1.0
        >>> out = summarize({"t": [(hot, hot), (np.zeros((4, 4)),) * 2]}, [[0, 0, .5, .5]] * 2, 64)
        >>> out["tasks"]["t"]["pointing_game"]["hit_rate"], out["tasks"]["t"]["degenerate"]["zero"]
        (1.0, [1])
    """
    tasks, usable = {}, {}
    for name, maps in task_maps.items():
        if len(maps) != len(boxes):
            raise ValueError(f"task {name!r}: {len(maps)} maps for {len(boxes)} boxes")
        bad = {k: [] for k in DEGENERATE_KINDS}
        hits, chance, energy, share = [], [], [], []
        usable[name] = []
        for i, ((low, full), box) in enumerate(zip(maps, boxes)):
            why = degenerate(low) or degenerate(full)
            if why:
                bad[why].append(i)
                continue
            usable[name].append(i)
            if box is None:
                continue
            hits.append(pointing_hit(low, box, image_size))
            chance.append(pointing_chance(box, image_size))
            energy.append(energy_in_box(full, box))
            share.append(box_share(box, np.shape(full)))
        n_boxed = sum(b is not None for b in boxes)
        n_hits = int(np.sum(hits)) if hits else 0
        tasks[name] = {
            "n_images": len(maps),
            "n_usable": len(usable[name]),
            "degenerate": bad,
            "pointing_game": {
                "n": len(hits), "hits": n_hits, "hit_rate": _mean(hits),
                # The same hits over every image with a box, a degenerate map counting as a miss.
                "hit_rate_all": n_hits / n_boxed if n_boxed else None,
                "chance": _mean(chance), "tolerance_px": round(tolerance_px(image_size), 3),
            },
            "energy_in_box": {"n": len(energy), "mean": _mean(energy), "chance": _mean(share)},
        }
    overlap = {}
    names = list(task_maps)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sorted(set(usable[a]) & set(usable[b]))
            corr = [map_correlation(task_maps[a][k][1], task_maps[b][k][1]) for k in both]
            overlap[f"{a}|{b}"] = {"n": len(corr), "mean_correlation": _mean(corr)}
    return {"tasks": tasks, "overlap": overlap}
