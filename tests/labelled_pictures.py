"""Small pictures and labels CSVs written by the tests of the CSV and folder sources (nothing checked in)."""

from __future__ import annotations

import csv
import pathlib

import numpy as np
from PIL import Image

SIDE = 24


def write_picture(path, value: int = 0, side: int = SIDE) -> pathlib.Path:
    """A ``side``-pixel RGB PNG (or JPEG, by suffix) of a noise pattern seeded by ``value``; parents created."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(value).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_csv(path, header, rows) -> pathlib.Path:
    """A CSV file: ``header`` then ``rows`` (lists of cells)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def append_rows(path, rows) -> None:
    """Rows appended at the end of an existing CSV."""
    with open(path, "a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
