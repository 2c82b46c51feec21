"""Finding and loading input pictures, with a one-line reason for each one that cannot be used.

The model takes 8-bit RGB. Anything else (grayscale, RGBA, palette, 16-bit, CMYK), a file Pillow
cannot read, a truncated file, an image too small to show anything or too large to hold safely in
memory is refused with the reason, so the other pictures still run.

Example:
    >>> load_image("missing.png")
    Traceback (most recent call last):
    ...
    demo.images.ImageError: file not found
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
MIN_SIDE = 16
MAX_PIXELS = 40_000_000

_MODE_NAMES = {
    "1": "1-bit black-and-white", "L": "grayscale", "LA": "grayscale with alpha", "P": "palette",
    "PA": "palette with alpha", "RGBA": "RGBA", "RGBa": "RGBA", "CMYK": "CMYK", "YCbCr": "YCbCr",
    "LAB": "Lab", "HSV": "HSV", "I": "32-bit integer", "F": "32-bit float", "I;16": "16-bit grayscale",
    "I;16B": "16-bit grayscale", "I;16L": "16-bit grayscale", "I;16N": "16-bit grayscale",
}


class ImageError(ValueError):
    """A picture the demo cannot use; the message is the one-line reason."""


def find_images(paths) -> list[str]:
    """Files to run: each file as given, and each folder's image files (by extension, sorted).

    Missing paths and folders without pictures are kept, so each gets its own reason later.

    Example:
        >>> find_images([]) == []
        True
    """
    found = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            inside = sorted(
                os.path.join(p, n) for n in os.listdir(p)
                if n.lower().endswith(EXTENSIONS) and not n.startswith(".") and os.path.isfile(os.path.join(p, n))
            )
            # An empty folder stays in the list, so it is reported rather than silently skipped.
            found += inside or [p]
        else:
            found.append(p)
    return found


def load_image(path, min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The picture at ``path`` as uint8 ``[H, W, 3]`` RGB, upright (EXIF orientation applied).

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "g.png"); Image.new("L", (32, 32)).save(p)
        >>> load_image(p)
        Traceback (most recent call last):
        ...
        demo.images.ImageError: grayscale image (mode L): the model takes 8-bit RGB; convert it to RGB first
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError("file not found")
    if os.path.isdir(path):
        raise ImageError("is a folder with no image files")
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError("not an image file (Pillow cannot identify its format)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large to decode safely: {e}".split(" could be")[0]) from None
    except OSError as e:
        raise ImageError(f"cannot open: {e}") from None
    with image:
        w, h = image.size
        if min(w, h) < min_side:
            raise ImageError(f"image is {w}x{h} pixels; at least {min_side}x{min_side} is needed to see anything")
        if w * h > max_pixels:
            raise ImageError(f"image is {w}x{h} pixels ({w * h / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP limit")
        raw_modes = [t[3] if len(t) > 3 else None for t in (getattr(image, "tile", None) or [])]
        sixteen_bit = any(isinstance(m, str) and ";16" in m for m in raw_modes)
        if image.mode != "RGB":
            kind = _MODE_NAMES.get(image.mode, image.mode)
            raise ImageError(f"{kind} image (mode {image.mode}): the model takes 8-bit RGB; convert it to RGB first")
        if sixteen_bit:
            raise ImageError("16-bit-per-channel RGB image: the model takes 8-bit RGB; convert it to 8 bits first")
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"), np.uint8).copy()
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"truncated or corrupt image data ({_line(e)})") from None


def resize_for_model(image: np.ndarray, size: int) -> np.ndarray:
    """Stretch to the model's square input, bilinear (as the training pipeline resizes).

    Example:
        >>> resize_for_model(np.zeros((30, 40, 3), np.uint8), 16).shape
        (16, 16, 3)
    """
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), np.uint8)


def _line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
