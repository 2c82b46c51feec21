"""Finding input pictures, loading them (through ``demo.pictures``) and resizing them for the model.

How a picture is read, converted to 8-bit RGB or refused with a one-line reason lives in
``demo.pictures.read_picture``, shared with training; ``ImageError``, ``MIN_SIDE`` and
``MAX_PIXELS`` are re-exported here for existing callers.

Example:
    >>> load_image("missing.png")
    Traceback (most recent call last):
    ...
    demo.pictures.ImageError: file not found
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from demo.pictures import MAX_PIXELS, MIN_SIDE, ImageError, read_picture

__all__ = ["EXTENSIONS", "MAX_PIXELS", "MIN_SIDE", "ImageError", "find_images", "load_image", "read_picture",
           "resize_for_model"]

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def find_images(paths) -> list[str]:
    """Files to run: each file as given, and each folder's image files (by extension, sorted).

    Missing paths and folders without pictures are kept, so each gets its own reason later.

    Args:
        paths: files and folders (str or path-like).

    Returns:
        A list of paths: files as given, each folder's pictures (or the folder itself when it has none).

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
    """The picture at ``path`` as upright uint8 ``[H, W, 3]`` RGB: ``read_picture`` without its notes.

    Kept for callers that only want the pixels; ``read_picture`` also says what was converted.

    Args:
        path: the picture file.
        min_side: the smallest width or height accepted, in pixels.
        max_pixels: the most pixels decoded.

    Returns:
        A uint8 ``[H, W, 3]`` RGB array.

    Raises:
        ImageError: the file is missing, not a picture, too small, too large or corrupt.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "g.png"); Image.new("L", (32, 32), 9).save(p)
        >>> load_image(p)[0, 0].tolist()
        [9, 9, 9]
    """
    return read_picture(path, min_side=min_side, max_pixels=max_pixels)[0]


def resize_for_model(image: np.ndarray, size: int) -> np.ndarray:
    """Stretch to the model's square input, bilinear (as the training pipeline resizes).

    Args:
        image: a uint8 ``[H, W, 3]`` array.
        size: side of the square model input, in pixels.

    Returns:
        A uint8 ``[size, size, 3]`` array (``image`` itself when it already has that size).

    Example:
        >>> resize_for_model(np.zeros((30, 40, 3), np.uint8), 16).shape
        (16, 16, 3)
    """
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), np.uint8)

