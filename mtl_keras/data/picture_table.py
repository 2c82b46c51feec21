"""Picture files with a table of labels: what the CSV and the folder sources share.

Each picture has a split, one label per task, and a ``present`` flag per task; the pipeline
multiplies the task's sample weight by that flag (``mtl_keras.data.pipeline.encode_targets``), so a
missing label costs its task nothing while the picture still trains the others. Missing labels also
carry the task's own marker (-1 for a class index or a multi-hot row), so code that reads labels
without the weights (explain) sees them as missing too.

Splits that never move: ``stable_split`` derives a picture's split from a hash of its path, so
adding pictures, or reordering them, leaves every other picture where it was.

Example:
    >>> import collections
    >>> sorted(collections.Counter(stable_split(f"img/{i:04d}.png") for i in range(1000)).items())
    [('test', 92), ('train', 792), ('val', 116)]
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from demo.pictures import MIN_SIDE, ImageError, read_picture
from mtl_keras.data.pictures import read_picture_tensor
from mtl_keras.errors import MtlError, unknown

SPLITS = ("train", "val", "test")
# Percent of pictures per split when the data does not say (the Keras / scikit-learn habit: most to training).
SPLIT_SHARES = (("train", 80), ("val", 10), ("test", 10))
# Hashed with every path, so a split is a function of the path alone; changing it would move every picture.
SPLIT_SALT = "mtl-keras split v1"
# Problems listed in a warning before "and N more"; describe() lists them all.
SHOWN_PROBLEMS = 8


def stable_split(key: str) -> str:
    """``train`` (80 %), ``val`` (10 %) or ``test`` (10 %) from a hash of ``key``, the same on every run.

    Args:
        key: what identifies the picture, its path as the data names it (``img/001.png``).

    Returns:
        The split's name.

    Example:
        >>> stable_split("cat/001.jpg") == stable_split("cat/001.jpg")
        True
    """
    digest = hashlib.sha256(f"{SPLIT_SALT}:{key}".encode("utf-8")).digest()
    percent = int.from_bytes(digest[:8], "big") % 100
    for split, share in SPLIT_SHARES:
        if percent < share:
            return split
        percent -= share
    return SPLIT_SHARES[-1][0]


def probe_picture(path: str) -> str | None:
    """Why ``path`` cannot be a training picture, from its header alone; None when it looks usable.

    Reading the header only keeps a large folder quick to check; a picture whose header reads but
    whose data is cut short still stops training later, with a message naming the file.

    Args:
        path: the picture file.

    Returns:
        A short reason (``file not found``, ``not an image file ...``), or None.

    Example:
        >>> probe_picture("/no/such.png")
        'file not found'
    """
    if not os.path.exists(path):
        return "file not found"
    if os.path.isdir(path):
        return "is a folder, not a picture"
    stat = os.stat(path)
    if stat.st_size == 0:
        return "empty file (0 bytes)"
    return _probe_header(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1 << 16)
def _probe_header(path: str, mtime_ns: int, size: int) -> str | None:
    # Keyed by the file's state: training builds its source once per split, and each build checks again.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except UnidentifiedImageError:
        return "not an image file (Pillow cannot identify its format)"
    except Exception as e:  # a cut-off or mangled header raises many kinds
        return f"unreadable image header ({type(e).__name__})"
    if min(width, height) < MIN_SIDE:
        return f"picture is {width}x{height}, under {MIN_SIDE} pixels a side"
    return None


def report_problems(where: str, problems) -> None:
    """One warning listing the bad rows or files that were left out (the first few, then a count).

    Args:
        where: the data's name, first in the message.
        problems: one line each (``row 5 (a.png): file not found``); nothing is warned when empty.

    Example:
        >>> report_problems("csv:x.csv", [])
    """
    problems = list(problems)
    if not problems:
        return
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    more = f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    warnings.warn(f"{where}: {len(problems)} problem(s), left out, the rest is used: {shown}{more} "
                  f"(mtl-keras data {where} lists them all)", stacklevel=3)


class PictureTable:
    """Picture paths, their splits, and per task a label column and a ``present`` column.

    Args:
        name: the dataset's name, for messages.
        paths: the picture files, one per row.
        names: how messages name each picture (``row 5: img/a.png``).
        splits: each row's split (``train``, ``val``, ``test``).
        labels: task name -> numpy array with one label per row (missing ones hold the task's marker).
        present: task name -> float32 0/1 per row (0: the label is missing).

    Example:
        >>> t = PictureTable("x", ["a.png", "b.png"], ["a.png", "b.png"], ["train", "test"],
        ...                  {"n": np.array([1.0, 0.0], np.float32)}, {"n": np.array([1, 0], np.float32)})
        >>> t.split_counts(), t.labelled("n")
        ({'train': 1, 'val': 0, 'test': 1}, 1)
    """

    def __init__(self, name: str, paths, names, splits, labels: dict, present: dict):
        self.name = name
        self.paths = np.asarray(list(paths), dtype=object)
        self.names = np.asarray(list(names), dtype=object)
        self.splits = np.asarray(list(splits), dtype=object)
        self.labels = labels
        self.present = present

    def __len__(self) -> int:
        return len(self.paths)

    def split_counts(self) -> dict:
        """Pictures per split, ``{"train": n, "val": n, "test": n}``."""
        return {s: int(np.sum(self.splits == s)) for s in SPLITS}

    def labelled(self, task: str) -> int:
        """How many pictures have a label for ``task``."""
        return int(np.sum(self.present[task] > 0))

    def examples(self, split: str, image_size: int, size: int | None = None) -> tf.data.Dataset:
        """Unbatched ``{"image", "labels", "present"}`` elements of one split, in table order.

        Pictures are read by the demo's reader (``mtl_keras.data.pictures``), as the device reads them.

        Args:
            split: ``train``, ``val`` or ``test``.
            image_size: the model input side (allows a reduced-scale decode of large pictures).
            size: at most this many pictures (the first ones); ``None`` for the whole split.

        Returns:
            A ``tf.data.Dataset`` of known length.

        Raises:
            MtlError: an unknown split, or a split with no pictures.
        """
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        rows = np.flatnonzero(self.splits == split)
        if size is not None:
            rows = rows[: int(size)]
        if not len(rows):
            raise MtlError(f"split {split!r} of {self.name} has no pictures ({self._counts_text()})")
        labels = {t: v[rows] for t, v in self.labels.items()}
        present = {t: v[rows] for t, v in self.present.items()}
        ds = tf.data.Dataset.from_tensor_slices(
            (self.paths[rows].astype(str), self.names[rows].astype(str), labels, present))

        def to_example(path, name, labels, present):
            return {"image": read_picture_tensor(path, name, image_size), "labels": labels, "present": present}

        return ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def unreadable_images(self) -> list[str]:
        """``"NAME: reason"`` for each picture the shared reader refuses; decodes every one, for diagnosis.

        Returns:
            The refused pictures, in table order.
        """
        bad = []
        for path, name in zip(self.paths, self.names):
            try:
                read_picture(path)
            except ImageError as e:
                bad.append(f"{name}: {e}")
        return bad

    def _counts_text(self) -> str:
        return ", ".join(f"{s} {n}" for s, n in self.split_counts().items())


class PictureTableSource:
    """What a source backed by a ``PictureTable`` (``self.table``) serves straight from it: the
    examples of a split and the pictures the reader refuses. ``CsvSource`` and ``FolderSource`` add
    their tasks and ``describe``.

    Example:
        >>> class Demo(PictureTableSource):
        ...     table = PictureTable("demo", [], [], [], {}, {})
        >>> Demo().unreadable_images()
        []
    """

    table: PictureTable

    def examples(self, split: str, image_size: int, size: int | None = None) -> tf.data.Dataset:
        """Unbatched ``{"image", "labels", "present"}`` elements of one split (``PictureTable.examples``).

        Args:
            split: ``train``, ``val`` or ``test``.
            image_size: the model input side.
            size: at most this many pictures; ``None`` for the whole split.

        Returns:
            A ``tf.data.Dataset``.
        """
        return self.table.examples(split, image_size, size)

    def unreadable_images(self) -> list[str]:
        """``"NAME: reason"`` for each picture the shared reader refuses (``PictureTable.unreadable_images``).

        Returns:
            The refused pictures, in table order.
        """
        return self.table.unreadable_images()
