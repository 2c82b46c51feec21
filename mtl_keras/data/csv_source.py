"""A labels CSV and its pictures as a data source (``--data csv:FILE``): one row per picture, one column per task.

Example file (pictures relative to the CSV's folder, or to ``images=DIR`` / ``--images DIR``)::

    image,species,weight,tags:indoor|night|people,split
    img/001.png,cat,4.2,1|0|0,train
    img/002.png,dog,,0|1|1,
    img/003.png,,7.5,,test

- The picture column is the first one named ``image``, ``file``, ``filename``, ``file_name``,
  ``path``, ``image_path`` or ``filepath`` (any case).
- A ``split`` column (``train``, ``val`` or ``validation``, ``test``) puts each row in a split; where
  there is none, or its cell is empty, a hash of the picture's path does (80 % train, 10 % val,
  10 % test), so rows appended later never move the earlier ones.
- Every other column is a task; ``mtl_keras.data.csv_columns`` says how its kind is inferred
  (numbers: regression; text: classification; ``NAME:a|b|c`` or ``NAME:a``, ``NAME:b``... 0/1
  columns: multilabel) and how ``labels=["TASK=COLUMN[:KIND]"]`` (``--label``) overrides it.
- **An empty cell is a missing label**: that picture does not count for that task (sample weight
  0) and still trains the others.
- Bad rows are left out and listed in one warning, by row number (the header is row 1) and file: a
  missing or unreadable picture leaves out its row; a cell that is not its task's label (a word in a
  number column, a 2 among 0/1) leaves out that label only. ``describe()`` lists them all.
- A CSV that is wrong as a whole (no picture column, no rows, no label column, every row bad) is
  one ``MtlError``.

Example:
    >>> src = CsvSource("photos/labels.csv")  # doctest: +SKIP
    >>> print(src.describe())                 # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np

from mtl_keras.data.csv_columns import infer_columns
from mtl_keras.data.describe import describe_tasks
from mtl_keras.data.picture_table import (
    PictureTable,
    PictureTableSource,
    probe_picture,
    report_problems,
    stable_split,
)
from mtl_keras.errors import MtlError

IMAGE_COLUMNS = ("image", "file", "filename", "file_name", "path", "image_path", "filepath")
SPLIT_COLUMN = "split"
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test"}
# Read as a spreadsheet program writes CSV: with a byte-order mark, ';' in some locales, tabs in .tsv.
DELIMITERS = ",;\t"


def read_rows(path: str) -> tuple[list, list]:
    """``(header, [(row number, cells), ...])`` of a CSV file; blank lines are skipped.

    Args:
        path: the CSV file (UTF-8, with or without a byte-order mark; ``,``, ``;`` or tab separated).

    Returns:
        The header's cells (stripped) and each row's number (the header is row 1) with its cells.

    Raises:
        MtlError: a missing, non-UTF-8, malformed or empty file.

    Example:
        >>> read_rows("/no/such.csv")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: CSV file not found: /no/such.csv
    """
    if os.path.isdir(path):
        raise MtlError(f"{path} is a folder; csv: takes the CSV file itself (folder: takes a folder of class folders)")
    if not os.path.isfile(path):
        raise MtlError(f"CSV file not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise MtlError(f"{path} is not a UTF-8 text file (save the spreadsheet as CSV UTF-8)") from None
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=DELIMITERS)
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next((row for row in reader if any(c.strip() for c in row)), None)
        if header is None:
            raise MtlError(f"{path} is empty: it needs a header row (image,TASK,...) and one row per picture")
        rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except csv.Error as e:
        raise MtlError(f"{path} is not a readable CSV: {e} (line {reader.line_num})") from None
    return [h.strip() for h in header], rows


class CsvTable:
    """A labels CSV read and checked once: its tasks, the usable pictures and every problem found.

    Args:
        path: the CSV file.
        images: the folder the picture paths are relative to (default: the CSV's folder).
        labels: ``TASK=COLUMN[:KIND]`` overrides (``mtl_keras.data.csv_columns``).

    Raises:
        MtlError: a CSV that is wrong as a whole.

    Example:
        >>> CsvTable("/no/such.csv")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: CSV file not found: /no/such.csv
    """

    def __init__(self, path: str, images: str | None = None, labels=None):
        header, rows = read_rows(path)
        if images is not None and not os.path.isdir(images):
            raise MtlError(f"picture folder not found: {images}")
        self.path = path
        self.base = images if images is not None else (os.path.dirname(path) or ".")
        lowered = [h.lower() for h in header]
        duplicated = sorted({h for h in header if h and header.count(h) > 1})
        if duplicated:
            raise MtlError(f"{path}: column {duplicated[0]!r} appears twice in the header")
        image_col = next((lowered.index(n) for n in IMAGE_COLUMNS if n in lowered), None)
        if image_col is None:
            raise MtlError(f"{path} has no picture column: name one {', '.join(IMAGE_COLUMNS[:3])} (or "
                           f"{', '.join(IMAGE_COLUMNS[3:])}); its columns: {', '.join(header)}")
        if not rows:
            raise MtlError(f"{path} has a header but no rows")
        split_col = lowered.index(SPLIT_COLUMN) if SPLIT_COLUMN in lowered else None
        label_idx = [i for i in range(len(header)) if i not in (image_col, split_col)]
        if not label_idx:
            raise MtlError(f"{path} has no label column, only {', '.join(header)}; add one column per task")
        problems, good = [], []
        for number, cells in rows:
            if len(cells) > len(header):
                problems.append(f"row {number}: {len(cells)} cells, the header has {len(header)}")
                continue
            cells = [c.strip() for c in cells] + [""] * (len(header) - len(cells))
            good.append((number, cells))
        self.columns, self.skipped = infer_columns(
            [header[i] for i in label_idx], [[cells[i] for i in label_idx] for _, cells in good], labels)
        if not self.columns:
            why = "; ".join(f"{h or '(no header)'}: {r}" for h, r in self.skipped.items())
            raise MtlError(f"no column of {path} can be a task ({why})")
        self.split_by = "its split column" if split_col is not None else "a hash of each picture's path"
        self.table, self.problems = self._pictures(good, header, image_col, split_col, label_idx, problems)
        report_problems(f"csv:{path}", self.problems)

    def _pictures(self, good, header, image_col, split_col, label_idx, problems):
        paths, names, splits = [], [], []
        values = {c.task: [] for c in self.columns}
        positions = {h: i for i, h in enumerate(header)}
        for number, cells in good:
            picture = cells[image_col]
            where = f"row {number} ({picture})" if picture else f"row {number}"
            if not picture:
                problems.append(f"{where}: no picture named")
                continue
            path = os.path.join(self.base, os.path.expanduser(picture))
            why = probe_picture(path)
            if why:
                problems.append(f"{where}: {why}")
                continue
            split = cells[split_col].lower() if split_col is not None else ""
            if split and split not in SPLIT_NAMES:
                problems.append(f"{where}: split {cells[split_col]!r} is not train, val or test")
                continue
            for column in self.columns:
                try:
                    value = column.read([cells[positions[h]] for h in column.columns])
                except ValueError as e:
                    problems.append(f"{where}: {column.task}: {e}")
                    value = None
                values[column.task].append(value)
            paths.append(path)
            names.append(f"row {number}: {picture}")
            splits.append(SPLIT_NAMES[split] if split else stable_split(picture.replace("\\", "/")))
        if not paths:
            shown = "; ".join(problems[:3])
            raise MtlError(f"none of the {len(good)} rows of {self.path} is usable: {shown}")
        labels, present = {}, {}
        for column in self.columns:
            found = values[column.task]
            present[column.task] = np.asarray([v is not None for v in found], np.float32)
            labels[column.task] = np.stack([column.missing() if v is None else v for v in found])
        return PictureTable(f"csv:{self.path}", paths, names, splits, labels, present), problems


class CsvSource(PictureTableSource):
    """Pictures and a labels CSV as a data source (the module docstring has the rules).

    Options: ``images`` (the folder the picture paths are relative to; default the CSV's folder),
    ``labels`` (``TASK=COLUMN[:KIND]`` strings overriding the inferred tasks), ``flip`` (random
    horizontal flips in training; turn off for text, digits, arrows...).

    Args:
        path: the CSV file.
        images: the pictures' folder.
        labels: a list of ``TASK=COLUMN[:KIND]``.
        flip: allow horizontal flips as augmentation.

    Raises:
        MtlError: a CSV that is wrong as a whole, a picture folder that does not exist, a bad ``labels`` entry.

    Example:
        >>> CsvSource("")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: csv: needs a CSV file, e.g. csv:data/labels.csv
    """

    def __init__(self, path: str, images=None, labels=None, flip: bool = True):
        path = os.path.expanduser(os.fspath(path))
        if not path:
            raise MtlError("csv: needs a CSV file, e.g. csv:data/labels.csv")
        self.name = f"csv:{path}"
        self.flip_ok = bool(flip)
        images = None if images is None else os.path.expanduser(os.fspath(images))
        labels = [labels] if isinstance(labels, str) else list(labels or [])
        self.csv = CsvTable(path, images, labels)
        self.table = self.csv.table

    def tasks(self) -> dict:
        """One task per label column, classes from the data.

        Returns:
            Task name -> ``Task``, the ``labels`` ones first, then in column order.
        """
        return {c.task: c.make_task() for c in self.csv.columns}

    def class_names(self) -> dict:
        """Task name -> its class names (None for regression)."""
        return {c.task: c.classes for c in self.csv.columns}

    def describe(self) -> str:
        """What will train: the pictures per split, one line per task, the skipped columns and bad rows.

        Returns:
            The text ``mtl-keras data csv:FILE`` prints.
        """
        counts = self.table.split_counts()
        total = len(self.table)
        title = (f"{self.name}: {total} pictures (train {counts['train']}, val {counts['val']}, "
                 f"test {counts['test']}), split by {self.csv.split_by}")
        notes = [f"not a task: column {h or '(no header)'}: {why}" for h, why in self.csv.skipped.items()]
        if self.csv.problems:
            notes.append(f"{len(self.csv.problems)} problem(s), left out:")
            notes += [f"  {p}" for p in self.csv.problems]
        return describe_tasks(
            title, self.tasks(), {c.task: c.where for c in self.csv.columns},
            {c.task: f"{self.table.labelled(c.task)}/{total}" for c in self.csv.columns}, notes)
