"""One annotated picture per input: every task's prediction drawn on (or under) the image.

Layout: the picture, scaled for viewing, with masks as translucent overlays and boxes as outlined
rectangles labelled with their class; under it a caption panel with one line per global task.
``annotate`` also returns where it drew what (in the annotated picture's pixels), which goes into
``predictions.json`` so a reader (or a test) can check a drawing against the numbers.

Example:
    >>> tasks = [{"name": "box", "kind": "box"}]
    >>> picture, drawn = annotate(np.zeros((64, 64, 3), np.uint8), tasks, {"box": {"box_rel_yxyx": [0, 0, .5, .5]}})
    >>> drawn["box"]["xyxy"]
    [0, 0, 192, 192]
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Distinct, readable on light and dark backgrounds; tasks take them in card order.
TASK_COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
               (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40)]
CLASS_COLORS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
                (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (0, 0, 128)]
VIEW_MIN, VIEW_MAX = 384, 1024
LINE_WIDTH = 3
# A rainbow in the manner of Google's Turbo, as anchors from far (0: dark blue) to near (1: dark red):
# lightness rises to the middle and falls at both ends, so neither end washes out on the page.
DEPTH_ANCHORS = np.array([(48, 18, 59), (67, 100, 220), (40, 170, 240), (30, 220, 180), (120, 250, 90),
                          (200, 235, 50), (250, 175, 40), (235, 90, 20), (165, 25, 5), (120, 5, 5)], np.float32)


def _font(size: int = 14):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def view_size(width: int, height: int) -> tuple[int, int]:
    """The size the picture is shown at: its longer side brought into [384, 1024] pixels.

    Args:
        width: the picture's width, in pixels.
        height: the picture's height, in pixels.

    Returns:
        ``(width, height)`` in pixels, aspect ratio kept (each at least 1).

    Example:
        >>> view_size(64, 32), view_size(4000, 3000)
        ((384, 192), (1024, 768))
    """
    longest = max(width, height)
    scale = min(max(longest, VIEW_MIN), VIEW_MAX) / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def task_color(index: int) -> tuple[int, int, int]:
    """The colour of the ``index``-th task of the card.

    Args:
        index: the task's position in the card (any int; the palette repeats).

    Returns:
        An ``(r, g, b)`` tuple of ints in 0..255.

    Example:
        >>> task_color(0)
        (230, 25, 75)
    """
    return TASK_COLORS[index % len(TASK_COLORS)]


def depth_colors(depth, near: float | None = None, far: float | None = None) -> np.ndarray:
    """A depth map as colours: near warm (red), far cool (blue); pixels without depth black.

    Without ``near`` / ``far`` the range is the map's own (its 2nd and 98th percentiles of the
    measured pixels, so one stray pixel does not flatten the rest).

    Args:
        depth: a ``[H, W]`` (or ``[H, W, 1]``) array of depths; 0, negative or NaN means no depth.
        near: the depth shown warmest, or None.
        far: the depth shown coolest, or None.

    Returns:
        A uint8 ``[H, W, 3]`` RGB array.

    Example:
        >>> depth_colors(np.array([[1.0, 10.0, 0.0]]), near=1.0, far=10.0).tolist()
        [[[120, 5, 5], [48, 18, 59], [0, 0, 0]]]
    """
    d = np.asarray(depth, np.float32)
    d = d[..., 0] if d.ndim == 3 else d
    measured = np.isfinite(d) & (d > 0)
    values = d[measured]
    if near is None or far is None:
        lo, hi = np.percentile(values, [2, 98]) if values.size else (0.0, 1.0)
        near = lo if near is None else near
        far = hi if far is None else far
    span = max(float(far) - float(near), 1e-6)
    t = np.clip((float(far) - np.where(measured, d, far)) / span, 0.0, 1.0) * (len(DEPTH_ANCHORS) - 1)
    low = np.minimum(np.floor(t).astype(int), len(DEPTH_ANCHORS) - 2)
    frac = (t - low)[..., None]
    rgb = DEPTH_ANCHORS[low] * (1 - frac) + DEPTH_ANCHORS[low + 1] * frac
    return np.where(measured[..., None], np.round(rgb), 0).astype(np.uint8)


def _rel_to_px(box, w, h):
    y0, x0, y1, x1 = [float(v) for v in box]
    return [int(round(x0 * w)), int(round(y0 * h)), int(round(x1 * w)), int(round(y1 * h))]


def _label(draw, xy, text, color, font, bounds):
    x, y = xy
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw, th = right - left + 6, bottom - top + 4
    y = y - th if y - th >= 0 else y + LINE_WIDTH
    x = min(max(0, x), max(0, bounds[0] - tw))
    draw.rectangle([x, y, x + tw, y + th], fill=color)
    draw.text((x + 3, y + 2 - top), text, fill=(255, 255, 255) if sum(color) < 500 else (0, 0, 0), font=font)


def caption(task: dict, pred: dict) -> str | None:
    """The caption-panel line of a global task, or None for tasks drawn on the picture.

    Args:
        task: the card's task entry (``name``, ``kind``).
        pred: the task's decoded prediction (``demo.heads.decode``).

    Returns:
        The line, or None for ``box`` and unknown kinds.

    Example:
        >>> caption({"name": "shape", "kind": "classification"}, {"label": "star", "score": 0.93})
        'shape: star (0.93)'
    """
    kind, name = task["kind"], task["name"]
    if kind == "classification":
        return f"{name}: {pred['label']} ({pred['score']:.2f})"
    if kind == "multilabel":
        shown = ", ".join(f"{c} ({pred['scores'][c]:.2f})" for c in pred["labels"]) or "none"
        return f"{name}: {shown}"
    if kind == "regression":
        v = pred["value"]
        return f"{name}: {v:.2f}" if isinstance(v, float) else f"{name}: {', '.join(f'{x:.2f}' for x in v)}"
    if kind == "segmentation":
        return f"{name}: " + ", ".join(f"{c} {a:.0%}" for c, a in list(pred["areas"].items())[:4])
    if kind == "detection":
        return f"{name}: {len(pred['objects'])} object{'s' * (len(pred['objects']) != 1)}"
    if kind == "depth":
        units = (task.get("decoding") or {}).get("units") or ""
        return (f"{name}: {pred['nearest']:.2f}-{pred['farthest']:.2f}{units}, centre {pred['centre']:.2f}{units} "
                "(right: near red, far blue)")
    return None


def annotate(image: np.ndarray, tasks: list, predictions: dict) -> tuple[Image.Image, dict]:
    """Draw every task's prediction; return the picture and ``{task: what was drawn where}``.

    ``tasks`` are the model card's task entries, ``predictions`` the decoded outputs by task name.
    Masks first (under everything), then detected objects, then single boxes, then the captions.
    A depth map is drawn in colour beside the picture (``depth_colors``), one panel per depth task.

    Args:
        image: the picture, uint8 ``[H, W, 3]`` RGB.
        tasks: the model card's task entries (``name``, ``kind``, optional ``decoding``, ``classes``).
        predictions: ``{task name: decoded prediction}``; tasks without one are not drawn.

    Returns:
        ``(picture, drawn)``: an RGB ``PIL.Image`` at ``view_size`` (captions below) and ``{task: details}``.

    Example:
        >>> t = [{"name": "c", "kind": "classification"}]
        >>> pic, drawn = annotate(np.zeros((32, 32, 3), np.uint8), t, {"c": {"label": "x", "score": 1.0}})
        >>> pic.size[0], drawn["c"]["caption"]
        (384, 'c: x (1.00)')
    """
    h0, w0 = image.shape[:2]
    w, h = view_size(w0, h0)
    picture = Image.fromarray(image).resize((w, h), Image.BILINEAR).convert("RGB")
    font = _font(max(12, w // 40))
    drawn = {}
    colors = {t["name"]: task_color(i) for i, t in enumerate(tasks)}
    order = sorted(tasks, key=lambda t: {"segmentation": 0, "detection": 1, "box": 2}.get(t["kind"], 3))
    for task in order:
        name, kind, pred = task["name"], task["kind"], predictions.get(task["name"])
        if pred is None:
            continue
        if kind == "segmentation":
            alpha = float((task.get("decoding") or {}).get("overlay_alpha", 0.45))
            mask = np.asarray(Image.fromarray(np.asarray(pred["mask"], np.uint8)).resize((w, h), Image.NEAREST))
            palette = np.array([(0, 0, 0)] + [CLASS_COLORS[i % len(CLASS_COLORS)] for i in range(255)], np.float32)
            base = np.asarray(picture, np.float32)
            tinted = np.where((mask > 0)[..., None], (1 - alpha) * base + alpha * palette[mask], base)
            picture = Image.fromarray(np.clip(np.round(tinted), 0, 255).astype(np.uint8))
            drawn[name] = {"overlay_alpha": alpha, "size": [w, h],
                           "colors": {str(c): list(CLASS_COLORS[(i - 1) % len(CLASS_COLORS)])
                                      for i, c in enumerate(task.get("classes") or []) if i > 0}}
        elif kind == "detection":
            draw = ImageDraw.Draw(picture)
            boxes = []
            for obj in pred["objects"]:
                color = CLASS_COLORS[obj["index"] % len(CLASS_COLORS)]
                xyxy = _rel_to_px(obj["box_rel_yxyx"], w, h)
                draw.rectangle(xyxy, outline=color, width=LINE_WIDTH)
                _label(draw, xyxy[:2], f"{obj['label']} {obj['score']:.2f}", color, font, (w, h))
                boxes.append({"xyxy": xyxy, "color": list(color), "label": obj["label"]})
            drawn[name] = {"objects": boxes}
        elif kind == "box":
            draw = ImageDraw.Draw(picture)
            xyxy = _rel_to_px(pred["box_rel_yxyx"], w, h)
            draw.rectangle(xyxy, outline=colors[name], width=LINE_WIDTH)
            text = name
            main = next((t for t in tasks if t["kind"] == "classification"), None)
            if main is not None and main["name"] in predictions:
                text = f"{name}: {predictions[main['name']]['label']}"
            _label(draw, xyxy[:2], text, colors[name], font, (w, h))
            drawn[name] = {"xyxy": xyxy, "color": list(colors[name]), "width": LINE_WIDTH}
    panels = []
    for task in tasks:
        pred = predictions.get(task["name"])
        if task["kind"] == "depth" and pred is not None:
            # Resized as depths, then coloured: the colours stay on the map's scale.
            d = np.asarray(Image.fromarray(np.asarray(pred["depth"], np.float32)).resize((w, h), Image.BILINEAR))
            x0 = w * (len(panels) + 1)
            panels.append(Image.fromarray(depth_colors(d)))
            drawn[task["name"]] = {"xyxy": [x0, 0, x0 + w, h], "colors": "near red, far blue (turbo-like)",
                                   "range": [round(float(pred["nearest"]), 4), round(float(pred["farthest"]), 4)]}
    if panels:
        wide = Image.new("RGB", (w * (len(panels) + 1), h), (250, 250, 250))
        wide.paste(picture, (0, 0))
        for i, panel in enumerate(panels):
            wide.paste(panel, (w * (i + 1), 0))
        picture = wide
    lines = [(t["name"], caption(t, predictions[t["name"]])) for t in tasks
             if t["name"] in predictions and t["kind"] not in ("box",)]
    lines = [(n, c) for n, c in lines if c]
    line_h = font.size + 6 if hasattr(font, "size") else 16
    panel = Image.new("RGB", (picture.width, h + 8 + line_h * len(lines)), (250, 250, 250))
    panel.paste(picture, (0, 0))
    draw = ImageDraw.Draw(panel)
    for i, (name, text) in enumerate(lines):
        y = h + 4 + i * line_h
        draw.rectangle([6, y + 3, 6 + line_h - 8, y + line_h - 5], fill=colors[name])
        draw.text((6 + line_h, y), text, fill=(20, 20, 20), font=font)
        drawn.setdefault(name, {})["caption"] = text
    return panel, drawn
