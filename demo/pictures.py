"""Reading one picture file as the model takes it: upright 8-bit RGB, plus what was converted to get there.

The one way pictures are read, shared by the device runner (``python -m demo``) and by training,
evaluation, export calibration and explain on a user's folder (``mtl_keras.data.coco``), so a
picture the runner accepts is one training accepts, with the same pixels. numpy and Pillow only.

What is converted (each conversion is returned as a short line, e.g. ``"grayscale → RGB"``):

- EXIF orientation is applied (a phone photo comes out upright);
- grayscale (``1``, ``L``, ``I;16``, ``I``, ``F``), palette (``P``, ``PA``), ``CMYK``, ``YCbCr``,
  ``LAB``, ``HSV`` become RGB;
- transparency (``RGBA``, ``LA``, ``PA``, a palette with a transparent colour) is composited onto
  ``background``, **white** unless told otherwise: most transparent pictures (logos, icons,
  screenshots, scans) are drawn for a light page, where black would swallow dark strokes;
- 16 bits per channel become 8 by rounding ``v / 257`` (so 8-bit values saved as ``v * 257`` come
  back exactly; 16-bit RGB is reduced by Pillow's decoder, which keeps the high byte: the same for
  such values); 32-bit integers are read as 16-bit when they fit, else scaled from the int32 range;
  32-bit floats are read as 0–1 when they fit, else clipped to 0–255;
- an animated GIF, WebP or PNG (or a multi-page TIFF) gives its first frame;
- given ``size`` (the model's input side), a larger JPEG is decoded at 1/2, 1/4 or 1/8 scale
  (Pillow's ``draft``: a 40-megapixel photo never needs its full size in memory) and other formats
  are reduced the same way (``Image.reduce``), as long as both sides stay at least ``size``.

Refused, each with a one-line reason (``ImageError``): a missing or empty file, a file that is not a
picture, truncated or corrupt data, a picture under ``MIN_SIDE`` pixels a side, and a picture over
``MAX_PIXELS`` decoded pixels (decompression-bomb safety; Pillow itself refuses headers over
``2 * Image.MAX_IMAGE_PIXELS``).

Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "g.png"); Image.new("L", (32, 24), 7).save(p)
    >>> pixels, notes = read_picture(p)
    >>> pixels.shape, pixels[0, 0].tolist(), notes
    ((24, 32, 3), [7, 7, 7], ['grayscale → RGB'])
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_SIDE = 16
# Decoded pixels (after a reduced-scale decode): 90 MP is 270 MB as RGB, about Pillow's own warning level.
MAX_PIXELS = 90_000_000
WHITE = (255, 255, 255)
SCALES = (8, 4, 2)

_ORIENTATION = {2: "EXIF mirrored", 3: "EXIF rotated 180°", 4: "EXIF flipped upside down",
                5: "EXIF mirrored and rotated 90°", 6: "EXIF rotated 90°",
                7: "EXIF mirrored and rotated 270°", 8: "EXIF rotated 270°"}
_KINDS = {"1": "1-bit black-and-white", "L": "grayscale", "P": "palette", "CMYK": "CMYK", "YCbCr": "YCbCr",
          "LAB": "Lab", "HSV": "HSV"}
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class ImageError(ValueError):
    """A picture that cannot be used; the message is the one-line reason.

    Example:
        >>> str(ImageError("file not found"))
        'file not found'
    """


def read_picture(path, size: int | None = None, background=WHITE, min_side: int = MIN_SIDE,
                 max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """The picture at ``path`` as upright uint8 ``[H, W, 3]`` RGB and the conversions applied to it.

    ``size``: the side the picture will be resized to (the model input); a larger picture may be
    decoded or reduced at 1/2, 1/4 or 1/8 scale, never below it. ``background``: the RGB colour
    transparent pixels are composited onto (white by default). See the module docstring for every rule.

    Args:
        path: the picture file (str or path-like).
        size: the model input side, allowing a reduced-scale decode; ``None`` decodes at full size.
        background: the ``(r, g, b)`` colour under transparent pixels.
        min_side: the smallest width or height accepted, in pixels.
        max_pixels: the most pixels decoded.

    Returns:
        ``(pixels, notes)``: uint8 ``[H, W, 3]`` RGB and the conversions applied, as short strings.

    Raises:
        ImageError: the file is missing, a folder, empty, not a picture, too small, too large or corrupt.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> Image.new("RGBA", (40, 40), (255, 0, 0, 0)).save(p)
        >>> pixels, notes = read_picture(p, size=16)
        >>> pixels.shape, pixels[0, 0].tolist(), notes
        ((20, 20, 3), [255, 255, 255], ['alpha composited on white', 'reduced to 1/2 scale (40x40 → 20x20)'])
        >>> read_picture(os.path.join(os.path.dirname(p), "missing.png"))
        Traceback (most recent call last):
        ...
        demo.pictures.ImageError: file not found
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError("file not found")
    if os.path.isdir(path):
        raise ImageError("is a folder with no image files")
    if os.path.getsize(path) == 0:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 MP of header size; the limit here is on decoded pixels, checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError("not an image file (Pillow cannot identify its format)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large to decode safely: {e}".split(" could be")[0]) from None
    except Exception as e:  # a plugin meeting a cut-off or mangled header raises many kinds
        raise ImageError(f"truncated or corrupt image data ({_line(e)})") from None
    with image:
        return _convert(image, size, tuple(int(c) for c in background), min_side, max_pixels)


def _convert(image, size, background, min_side, max_pixels):
    notes = []
    w, h = image.size
    if min(w, h) < min_side:
        raise ImageError(f"image is {w}x{h} pixels; at least {min_side}x{min_side} is needed to see anything")
    frames = int(getattr(image, "n_frames", 1) or 1)
    if frames > 1:
        kind = "multi-page" if image.format == "TIFF" else "animated"
        notes.append(f"first frame of {frames} ({kind})")
    sixteen = any(";16" in _rawmode(t) for t in (getattr(image, "tile", None) or []))
    if size and image.format in ("JPEG", "MPO") and min(w, h) >= 2 * size:
        image.draft(image.mode, (int(size), int(size)))
        if image.size != (w, h):
            notes.append(f"decoded at 1/{round(w / image.size[0])} scale ({w}x{h} → {image.size[0]}x{image.size[1]})")
    dw, dh = image.size
    if dw * dh > max_pixels:
        raise ImageError(f"image is {dw}x{dh} pixels ({dw * dh / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP "
                         "that are decoded safely")
    try:
        image.load()
    except MemoryError:
        raise ImageError(f"image is {dw}x{dh} pixels, too large to decode in the memory available") from None
    except Exception as e:  # truncated, a bad checksum, a broken chunk: Pillow raises several kinds
        raise ImageError(f"truncated or corrupt image data ({_line(e)})") from None
    image, oriented = _upright(image)
    notes += oriented
    pixels, converted = _to_rgb8(image, sixteen, background)
    notes += converted
    return _reduce(pixels, size, notes)


def _rawmode(tile) -> str:
    # PNG tiles carry the raw mode as a string, JPEG and TIFF tiles as the first item of a tuple.
    args = tile[3] if len(tile) > 3 else None
    if isinstance(args, tuple):
        args = args[0] if args else None
    return args if isinstance(args, str) else ""


def _upright(image):
    try:
        orientation = image.getexif().get(0x0112)
    except Exception:  # unreadable EXIF: the pixels are still good, just not re-oriented
        return image, []
    if orientation not in _ORIENTATION:
        return image, []
    return ImageOps.exif_transpose(image), [_ORIENTATION[orientation]]


def _to_rgb8(image, sixteen: bool, background) -> tuple[np.ndarray, list[str]]:
    mode = image.mode
    notes = ["16-bit → 8-bit"] if sixteen and mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I") else []
    if mode == "RGB":
        return np.asarray(image, np.uint8).copy(), notes
    if mode.startswith("I;16") or mode in ("I", "F"):
        gray, depth = _scale_to_8bit(np.asarray(image))
        return np.repeat(gray[..., None], 3, axis=2), notes + [depth, "grayscale → RGB"]
    if mode == "P" and ("transparency" in image.info or image.palette and image.palette.mode == "RGBA"):
        mode = "PA"
    if mode in _ALPHA_MODES:
        kind = {"LA": "grayscale", "La": "grayscale", "PA": "palette"}.get(mode)
        rgba = np.asarray(image.convert("RGBA"), np.uint8)
        return _composite(rgba, background), notes + ([f"{kind} → RGB"] if kind else []) + [_alpha_note(rgba, background)]
    try:
        rgb = np.asarray(image.convert("RGB"), np.uint8).copy()
    except (ValueError, OSError) as e:
        raise ImageError(f"colour mode {mode} cannot be converted to RGB ({_line(e)})") from None
    return rgb, notes + [f"{_KINDS.get(mode, mode)} → RGB"]


def _scale_to_8bit(values: np.ndarray) -> tuple[np.ndarray, str]:
    """One channel of 16-bit, 32-bit integer or float values as uint8, and which rule was used.

    Example:
        >>> _scale_to_8bit(np.array([[0, 257, 65535]], np.uint16))
        (array([[  0,   1, 255]], dtype=uint8), '16-bit → 8-bit')
        >>> _scale_to_8bit(np.array([[0.0, 0.5, 1.0]], np.float32))[0].tolist()
        [[0, 128, 255]]
    """
    if values.dtype.kind == "f":
        v = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if v.size and v.min() >= 0.0 and v.max() <= 1.0:
            return np.round(v * 255.0).astype(np.uint8), "32-bit float (0–1) → 8-bit"
        return np.round(np.clip(v, 0.0, 255.0)).astype(np.uint8), "32-bit float → 8-bit (clipped to 0–255)"
    v = values.astype(np.int64)
    if values.dtype.itemsize <= 2 or (v.size and v.min() >= 0 and v.max() <= 65535):
        # Exact rounding of v / 257: an 8-bit value saved as v * 257 comes back as v.
        return ((np.clip(v, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8), "16-bit → 8-bit"
    top = np.iinfo(np.int32).max
    return ((np.clip(v, 0, top) * 255 + top // 2) // top).astype(np.uint8), "32-bit integer → 8-bit"


def _composite(rgba: np.ndarray, background) -> np.ndarray:
    alpha = rgba[..., 3:].astype(np.uint32)
    bg = np.asarray(background, np.uint32)
    mixed = (rgba[..., :3].astype(np.uint32) * alpha + bg * (255 - alpha) + 127) // 255
    return mixed.astype(np.uint8)


def _alpha_note(rgba: np.ndarray, background) -> str:
    if rgba[..., 3].min() == 255:
        return "alpha channel dropped (opaque everywhere)"
    names = {(255, 255, 255): "white", (0, 0, 0): "black"}
    return f"alpha composited on {names.get(tuple(background), 'RGB' + str(tuple(background)))}"


def _reduce(pixels: np.ndarray, size, notes: list) -> tuple[np.ndarray, list[str]]:
    h, w = pixels.shape[:2]
    if size and not any(n.startswith("decoded at") for n in notes):
        factor = next((f for f in SCALES if min(w, h) // f >= size), 1)
        if factor > 1:
            pixels = np.asarray(Image.fromarray(pixels).reduce(factor), np.uint8)
            notes = notes + [f"reduced to 1/{factor} scale ({w}x{h} → {pixels.shape[1]}x{pixels.shape[0]})"]
    return pixels, notes


def _line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
