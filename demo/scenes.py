"""Built-in synthetic scenes, rendered with numpy and Pillow only.

This module lives in ``demo/`` because the demo folder is what gets copied onto a device, and the
device must be able to render sample scenes without TensorFlow. The training library
(``mtl_keras.data.scenes``) wraps the very same renderer in ``tf.data``, so the two never drift apart.

Every scene holds 1..``max_objects`` objects on a textured background. The *main* object is the
largest one; it is drawn last, so it is never occluded and its box is tight around its pixels.
The ``depth`` label (float32, metre-like units) places the background on a slanted floor, 10 at the
top row to 5 at the bottom, and each object in front of everything drawn before it (1.5..4.5, the
larger nearer), so the main object is the nearest.

Example:
    >>> scene = render_scene(seed=0, split="train", index=3, image_size=64)
    >>> scene.image.shape, scene.labels["box"].shape
    ((64, 64, 3), (4,))
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star")
COLORS = ("red", "green", "blue", "yellow", "magenta", "cyan")
DIGITS = tuple(str(d) for d in range(10))
SPLITS = ("train", "val", "test")
_RGB = {
    "red": (215, 40, 40),
    "green": (35, 170, 55),
    "blue": (45, 75, 225),
    "yellow": (235, 215, 35),
    "magenta": (205, 45, 200),
    "cyan": (35, 200, 210),
}
# Object side as a fraction of the image side. The floor keeps the smallest object a few pixels
# wide at the smallest image size the trunks accept (32 px).
_MIN_SIZE, _MAX_SIZE = 0.22, 0.55
_MAX_OVERLAP_IOU = 0.2
# The depth label, in metre-like units: the background is a floor seen at a slant, _FAR at the top
# row and _FLOOR_NEAR at the bottom one; objects stand in front of it, a larger one nearer (as it
# would look), and each nearer than every object drawn before it.
_FAR, _FLOOR_NEAR = 10.0, 5.0
_OBJECT_FAR, _OBJECT_NEAR = 4.5, 1.5
_NEARER = 0.95  # an object drawn later is at most this fraction of the previous one's depth


@dataclasses.dataclass
class Scene:
    """One rendered scene: an RGB uint8 image and its labels (see ``label_names``)."""

    image: np.ndarray
    labels: dict


def class_names(source: str) -> tuple[str, ...]:
    """Class names of an object source.

    Args:
        source: ``shapes`` or ``digits``.

    Returns:
        The class names, a tuple of strings.

    Raises:
        ValueError: an unknown source.

    Example:
        >>> class_names("shapes")[:2]
        ('circle', 'square')
    """
    if source == "shapes":
        return SHAPES
    if source == "digits":
        return DIGITS
    raise ValueError(f"unknown scene source {source!r}; available: shapes, digits")


def main_label_name(source: str) -> str:
    """Name of the main-object class label: ``shape`` for shapes, ``digit`` for digits.

    Args:
        source: ``shapes`` or ``digits``.

    Returns:
        ``"shape"`` or ``"digit"``.

    Raises:
        ValueError: an unknown source.

    Example:
        >>> main_label_name("digits")
        'digit'
    """
    class_names(source)
    return "shape" if source == "shapes" else "digit"


def label_names(source: str) -> tuple[str, ...]:
    """Every label a scene of this source carries.

    Args:
        source: ``shapes`` or ``digits``.

    Returns:
        The label names, a tuple of strings, the main label first.

    Raises:
        ValueError: an unknown source.

    Example:
        >>> label_names("shapes")
        ('shape', 'color', 'present', 'box', 'count', 'objects', 'mask', 'depth')
    """
    return (main_label_name(source), "color", "present", "box", "count", "objects", "mask", "depth")


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for one scene: splits draw from disjoint seed streams.

    Args:
        seed: the data seed.
        split: ``train``, ``val`` or ``test``.
        index: the scene's index in the split.

    Returns:
        A ``np.random.Generator`` seeded by ``(seed, split, index)``.

    Raises:
        ValueError: an unknown split.

    Example:
        >>> float(scene_rng(0, "val", 1).random()) != float(scene_rng(0, "test", 1).random())
        True
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; available: {', '.join(SPLITS)}")
    return np.random.default_rng([int(seed), SPLITS.index(split), int(index)])


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    coarse = rng.uniform(85, 170, size=(5, 5, 3)).astype(np.uint8)
    # Mostly gray so an object's colour stays the one it was painted with.
    coarse = (0.75 * coarse.mean(axis=2, keepdims=True) + 0.25 * coarse).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32)
    grain = rng.normal(0, 6, size=(size, size, 1))
    return np.clip(smooth + grain, 0, 255)


def _floor_depth(size: int) -> np.ndarray:
    rows = _FAR + (_FLOOR_NEAR - _FAR) * (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.repeat(rows[:, None], size, axis=1).astype(np.float32)


def _object_depth(r: float, previous: float) -> float:
    """The depth of an object of relative radius ``r`` drawn after one at depth ``previous``."""
    share = (2 * r - _MIN_SIZE) / (_MAX_SIZE - _MIN_SIZE)
    by_size = _OBJECT_FAR - (_OBJECT_FAR - _OBJECT_NEAR) * min(max(share, 0.0), 1.0)
    return min(by_size, _NEARER * previous)


def _polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    def ring(n, radius, phase):
        return [
            (cx + radius * math.cos(phase + 2 * math.pi * i / n), cy + radius * math.sin(phase + 2 * math.pi * i / n))
            for i in range(n)
        ]

    if kind == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if kind == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if kind == "diamond":
        return ring(4, r, -math.pi / 2)
    if kind == "cross":
        t = r / 3
        return [
            (cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t), (cx + r, cy + t),
            (cx + t, cy + t), (cx + t, cy + r), (cx - t, cy + r), (cx - t, cy + t), (cx - r, cy + t),
            (cx - r, cy - t), (cx - t, cy - t),
        ]
    if kind == "star":
        outer, inner = ring(5, r, -math.pi / 2), ring(5, r * 0.45, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    raise ValueError(kind)


def _shape_mask(kind: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(_polygon(kind, cx, cy, r), fill=255)
    return np.asarray(canvas) > 127


def _sprite_mask(sprite: np.ndarray, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    side = max(2, int(round(2 * r)))
    scaled = Image.fromarray((sprite / max(sprite.max(), 1e-6) * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR)
    mask = np.zeros((size, size), bool)
    top, left = int(round(cy - side / 2)), int(round(cx - side / 2))
    patch = np.asarray(scaled) > 90
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, size), min(left + side, size)
    mask[y0:y1, x0:x1] = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    return mask


def _iou(a, b) -> float:
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _place(rng, count: int) -> list[tuple[float, float, float]]:
    """Centres and radii (relative) of up to ``count`` objects that overlap little."""
    placed: list[tuple[float, float, float]] = []
    for _ in range(count):
        for _attempt in range(30):
            r = rng.uniform(_MIN_SIZE, _MAX_SIZE) / 2
            cy, cx = rng.uniform(r, 1 - r, size=2)
            extent = (cy - r, cx - r, cy + r, cx + r)
            if all(_iou(extent, (py - pr, px - pr, py + pr, px + pr)) < _MAX_OVERLAP_IOU for py, px, pr in placed):
                placed.append((cy, cx, r))
                break
    return placed


def render_scene(
    seed: int = 0,
    split: str = "train",
    index: int = 0,
    image_size: int = 96,
    source: str = "shapes",
    max_objects: int = 3,
    sprites: tuple[np.ndarray, np.ndarray] | None = None,
) -> Scene:
    """Render scene ``index`` of ``split``; the same arguments always give the same scene.

    ``sprites`` is ``(images, labels)`` of small grayscale glyphs, needed for ``source="digits"``
    (the library passes scikit-learn's handwritten digits).

    Args:
        seed: the data seed.
        split: ``train``, ``val`` or ``test``.
        index: the scene's index in the split.
        image_size: side of the square image, in pixels (at least 16).
        source: ``shapes`` or ``digits``.
        max_objects: the most objects in a scene (at least 1; each scene has 1..max_objects).
        sprites: ``(images, labels)`` glyphs for ``digits``; ``None`` for shapes.

    Returns:
        A ``Scene``: ``image`` uint8 ``[S, S, 3]`` and ``labels`` (see ``label_names``).

    Raises:
        ValueError: an unknown source or split, digits without sprites, a too small size or ``max_objects``.

    Example:
        >>> s = render_scene(seed=1, index=0, image_size=48, max_objects=2)
        >>> int(s.labels["count"]) in (1, 2), s.labels["mask"].shape
        (True, (48, 48))
    """
    names = class_names(source)
    if source == "digits" and sprites is None:
        raise ValueError("source='digits' needs sprites=(images, labels)")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be at least 1, got {max_objects}")
    rng = scene_rng(seed, split, index)
    size = int(image_size)
    image = _background(rng, size)
    placed = _place(rng, int(rng.integers(1, max_objects + 1)))
    # Largest last: the main object is drawn on top, so nothing hides it.
    placed.sort(key=lambda p: p[2])
    classes = rng.integers(0, len(names), size=len(placed))
    colors = rng.integers(0, len(COLORS), size=len(placed))
    seg = np.zeros((size, size), np.uint8)
    depth = _floor_depth(size)
    z = _FLOOR_NEAR
    boxes = np.full((max_objects, 4), -1.0, np.float32)
    labels = np.full((max_objects,), -1, np.int32)
    for i, ((cy, cx, r), k, c) in enumerate(zip(placed, classes, colors)):
        if source == "shapes":
            mask = _shape_mask(names[k], size, cx * size, cy * size, r * size)
        else:
            pool = np.flatnonzero(sprites[1] == k)
            mask = _sprite_mask(sprites[0][rng.choice(pool)], size, cx * size, cy * size, r * size)
        if not mask.any():
            mask[int(cy * size), int(cx * size)] = True
        tint = np.clip(np.array(_RGB[COLORS[c]], np.float32) + rng.normal(0, 12, 3), 0, 255)
        shade = rng.normal(0, 5, size=(size, size, 1))
        image = np.where(mask[..., None], np.clip(tint + shade, 0, 255), image)
        seg[mask] = k + 1
        z = _object_depth(r, z)
        depth[mask] = z
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes[i] = (rows[0] / size, cols[0] / size, (rows[-1] + 1) / size, (cols[-1] + 1) / size)
        labels[i] = k
    main = len(placed) - 1
    present = np.zeros(len(names), np.float32)
    present[labels[labels >= 0]] = 1.0
    scene_labels = {
        main_label_name(source): np.int32(classes[main]),
        "color": np.int32(colors[main]),
        "present": present,
        "box": boxes[main].copy(),
        "count": np.float32(len(placed)),
        "objects": {"boxes": boxes, "labels": labels},
        "mask": seg,
        "depth": depth,
    }
    return Scene(image=image.astype(np.uint8), labels=scene_labels)
