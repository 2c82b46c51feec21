"""A catalogue of picture files of every kind users meet, written by the tests (nothing checked in).

``write_catalogue(folder)`` writes them and returns the source pixels; ``VALID`` names each usable
file with the conversion notes ``demo.pictures.read_picture`` must report, ``BROKEN`` each refused
file with words of its reason.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

H, W = 40, 48  # not square, so a rotation or an x/y mix-up shows
FRAMES = 12
LARGE = (6000, 4000)  # width, height of the large JPEG

VALID = {
    "gray.png": ["grayscale → RGB"],
    "rgba.png": ["alpha composited on white"],
    "palette.png": ["palette → RGB"],
    "palette_transparent.png": ["palette → RGB", "alpha composited on white"],
    "cmyk.jpg": ["CMYK → RGB"],
    "gray16.png": ["16-bit → 8-bit", "grayscale → RGB"],
    "rgb16.png": ["16-bit → 8-bit"],
    "animated.gif": [f"first frame of {FRAMES} (animated)", "palette → RGB"],
    "animated.webp": ["first frame of 3 (animated)"],
    "exif_rotated.jpg": ["EXIF rotated 90°"],
    "large.jpg": ["decoded at 1/8 scale (6000x4000 → 750x500)"],
}
BROKEN = {
    "tiny.png": "image is 8x8 pixels; at least 16x16 is needed",
    "truncated.jpg": "truncated or corrupt image data",
    "text.jpg": "not an image file",
    "empty.png": "empty file (0 bytes)",
}


def rgb_pixels() -> np.ndarray:
    """The 8-bit RGB picture every catalogue entry is made from."""
    return np.random.default_rng(0).integers(0, 256, (H, W, 3)).astype(np.uint8)


def png_bytes(width, height, bit_depth, color_type, raw=b"") -> bytes:
    """PNG bytes with a chosen header, written by hand (Pillow cannot write 16-bit RGB)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def rgb16_png(rgb8: np.ndarray) -> bytes:
    """A 16-bit RGB PNG holding ``rgb8 * 257`` (the exact 16-bit image of 8-bit values)."""
    v = (rgb8.astype(np.uint16) * 257).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in v)
    return png_bytes(rgb8.shape[1], rgb8.shape[0], 16, 2, raw)


def write_catalogue(folder, valid=True, broken=True) -> np.ndarray:
    """Write the catalogue's files into ``folder``; returns the RGB pixels they were made from."""
    rgb = rgb_pixels()
    if valid:
        Image.fromarray(rgb[..., 0]).save(folder / "gray.png")
        alpha = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
        Image.fromarray(np.dstack([rgb, alpha])).save(folder / "rgba.png")
        Image.fromarray(rgb).convert("P").save(folder / "palette.png")
        Image.fromarray(rgb).convert("P").save(folder / "palette_transparent.png", transparency=0)
        Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(folder / "gray16.png")
        (folder / "rgb16.png").write_bytes(rgb16_png(rgb))
        frames = [Image.fromarray(np.roll(rgb, 4 * i, axis=1)) for i in range(FRAMES)]
        frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
        frames[0].save(folder / "animated.webp", save_all=True, append_images=frames[1:3], lossless=True)
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90° clockwise to show"
        Image.fromarray(rgb).save(folder / "exif_rotated.jpg", exif=exif.tobytes())
        # Flat colour compresses to a few hundred kB and encodes in a fraction of a second.
        Image.new("RGB", LARGE, (90, 140, 200)).save(folder / "large.jpg", quality=80)
    if broken:
        Image.fromarray(rgb[:8, :8]).save(folder / "tiny.png")
        Image.fromarray(rgb).save(folder / "truncated.jpg")
        data = (folder / "truncated.jpg").read_bytes()
        (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
        (folder / "text.jpg").write_text("this is text, not a picture")
        (folder / "empty.png").write_bytes(b"")
    return rgb
