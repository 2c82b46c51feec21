"""One PNG per image: the input, then one CAM overlay per task head, side by side.

Each overlay shows the map (jet colours over the image), the main object's box (white), the map's
peak (black-edged white cross) and a caption: task, what was scored, and the pointing-game verdict.

Example:
    >>> import numpy as np
    >>> img = overlay_panel(np.zeros((32, 32, 3), "uint8"), np.eye(32), box=[0.1, 0.1, 0.5, 0.5],
    ...                     peak=(0.2, 0.2), caption="shape: circle")
    >>> img.size
    (192, 216)
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from mtl_keras.run import files as io

PANEL = 192
CAPTION_H = 24
ALPHA = 0.5


def _jet(values) -> np.ndarray:
    import matplotlib  # lazy: seconds to import, needed only for the colour map

    return (matplotlib.colormaps["jet"](values)[..., :3] * 255).astype(np.uint8)


def _panel_image(image) -> Image.Image:
    img = Image.fromarray(np.clip(np.asarray(image, np.float32), 0, 255).astype(np.uint8))
    return img.resize((PANEL, PANEL), Image.BILINEAR)


def _draw_box(draw, box, colour=(255, 255, 255)):
    if box is None:
        return
    y1, x1, y2, x2 = (float(v) * PANEL for v in box)
    draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)


def overlay_panel(image, cam, box=None, peak=None, caption: str = "") -> Image.Image:
    """The image with ``cam`` (``[H, W]`` at image resolution, or ``None`` for a degenerate map) over it.

    Args:
        image: the input, ``[H, W, 3]`` RGB 0–255 (clipped).
        cam: a non-negative ``[H, W]`` map (scaled to its maximum), or ``None`` to grey the image out.
        box: the main object's ``(ymin, xmin, ymax, xmax)`` box (0..1), drawn in white; ``None`` for none.
        peak: ``(y, x)`` in 0..1 of the map's maximum, drawn as a cross; ``None`` for none.
        caption: text under the image (first 34 characters).

    Returns:
        An RGB ``PIL.Image`` of 192 x 216 pixels.

    Example:
        >>> import numpy as np
        >>> overlay_panel(np.zeros((8, 8, 3), "uint8"), None, caption="degenerate: zero").size
        (192, 216)
    """
    base = _panel_image(image)
    if cam is not None:
        cam = np.asarray(cam, np.float32)
        cam = cam / cam.max() if cam.max() > 0 else cam
        heat = Image.fromarray(_jet(cam)).resize((PANEL, PANEL), Image.BILINEAR)
        base = Image.blend(base, heat, ALPHA)
    else:
        base = Image.blend(base, Image.new("RGB", base.size, (128, 128, 128)), 0.7)
    draw = ImageDraw.Draw(base)
    _draw_box(draw, box)
    if peak is not None:
        # Black under white, so the cross shows on any colour of the map.
        y, x = peak[0] * PANEL, peak[1] * PANEL
        for colour, width in (((0, 0, 0), 5), ((255, 255, 255), 2)):
            draw.line([x - 7, y, x + 7, y], fill=colour, width=width)
            draw.line([x, y - 7, x, y + 7], fill=colour, width=width)
    out = Image.new("RGB", (PANEL, PANEL + CAPTION_H), (255, 255, 255))
    out.paste(base, (0, 0))
    ImageDraw.Draw(out).text((4, PANEL + 6), caption[:34], fill=(0, 0, 0))
    return out


def side_by_side(panels) -> Image.Image:
    """Panels of equal height, left to right, with a 4-pixel gap.

    Args:
        panels: a list of ``PIL.Image`` panels (at least one).

    Returns:
        An RGB ``PIL.Image`` as tall as the tallest panel, on white.

    Example:
        >>> from PIL import Image
        >>> side_by_side([Image.new("RGB", (10, 5)), Image.new("RGB", (10, 5))]).size
        (24, 5)
    """
    gap = 4
    w = sum(p.width for p in panels) + gap * (len(panels) - 1)
    out = Image.new("RGB", (w, max(p.height for p in panels)), (255, 255, 255))
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + gap
    return out


def input_panel(image, box=None, caption: str = "input") -> Image.Image:
    """The plain input with the main object's box, captioned like the overlays.

    Args:
        image: the input, ``[H, W, 3]`` RGB 0–255 (clipped).
        box: the main object's ``(ymin, xmin, ymax, xmax)`` box (0..1); ``None`` for none.
        caption: text under the image (first 34 characters).

    Returns:
        An RGB ``PIL.Image`` of 192 x 216 pixels.

    Example:
        >>> import numpy as np
        >>> input_panel(np.zeros((8, 8, 3), "uint8")).size
        (192, 216)
    """
    base = _panel_image(image)
    _draw_box(ImageDraw.Draw(base), box)
    out = Image.new("RGB", (PANEL, PANEL + CAPTION_H), (255, 255, 255))
    out.paste(base, (0, 0))
    ImageDraw.Draw(out).text((4, PANEL + 6), caption[:34], fill=(0, 0, 0))
    return out


def save_png(image: Image.Image, path) -> None:
    """Write a PNG atomically (temporary file beside it, then rename).

    Args:
        image: the ``PIL.Image`` to write.
        path: the destination file (missing folders are created).

    Example:
        >>> import os, tempfile
        >>> from PIL import Image
        >>> p = os.path.join(tempfile.mkdtemp(), "a.png"); save_png(Image.new("RGB", (2, 2)), p); os.path.isfile(p)
        True
    """
    with io.atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
