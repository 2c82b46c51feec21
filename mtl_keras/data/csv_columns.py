"""Which task each column of a labels CSV is, and how its cells become labels (``mtl_keras.data.csv_source``).

The rules, in order (the CSV source's module docstring shows a file):

1. a header ``NAME:a|b|c`` is a multilabel task NAME over the classes a, b, c; a cell holds one
   0/1 per class (``1|0|1``) or the names of the classes present (``a|c``);
2. headers ``NAME:a``, ``NAME:b``, ... (cells 0/1) are together one multilabel task NAME over a, b, ...;
3. a column whose values are numbers (at least 90 % of them; the others are reported as bad
   cells) is a regression task;
4. any other column is a classification task, its classes the distinct values, sorted;
5. left out, with the reason (``describe()`` shows it): a column without a header or without a
   value, a text column with one value only, a text column whose every value differs (at least
   ``ID_MIN`` of them: an identifier or a caption, not a class).

A task is named after its column (or group), characters a Python name cannot hold becoming ``_``.
``labels`` (``TASK=COLUMN[:KIND]``) names a column (or a group, by NAME) and a kind itself; its
columns are then not inferred again. A plain column read as ``multilabel`` holds the names of the
classes present, separated by ``|``. An empty cell is a missing label; a group of 0/1 columns is
missing when all its cells are empty.

Example:
    >>> columns, skipped = infer_columns(["species", "weight"], [["cat", "4.5"], ["dog", ""], ["cat", "3"]])
    >>> [(c.task, c.kind, c.classes) for c in columns], skipped
    ([('species', 'classification', ['cat', 'dog']), ('weight', 'regression', None)], {})
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from mtl_keras.data.label_spec import KINDS, parse_label_specs
from mtl_keras.errors import MtlError
from mtl_keras.tasks import ClassificationTask, MultilabelTask, RegressionTask

# Share of a column's values that must be numbers for it to be read as a regression target.
NUMERIC_SHARE = 0.9
# A text column with this many values, all different, names pictures rather than classes them.
ID_MIN = 10
SEPARATOR = "|"


def task_name(header: str) -> str:
    """A task name from a column header: characters a Python name cannot hold become ``_``.

    Args:
        header: the column's header (or a group's NAME).

    Returns:
        A Python identifier.

    Example:
        >>> task_name("Hair colour"), task_name("3d shape")
        ('Hair_colour', '_3d_shape')
    """
    name = re.sub(r"\W", "_", header.strip())
    return name if name.isidentifier() else f"_{name}"


def number(cell: str) -> float:
    """The finite number in ``cell``; ``ValueError`` (the reason) when there is none.

    Example:
        >>> number(" 4.5 ")
        4.5
        >>> number("nan")
        Traceback (most recent call last):
        ...
        ValueError: 'nan' is not a finite number
    """
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"{cell!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{cell!r} is not a finite number")
    return value


def _bit(cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = None
    if value not in (0.0, 1.0):
        raise ValueError(f"{cell!r} is not 0 or 1")
    return value


@dataclasses.dataclass
class LabelColumn:
    """One task read from one column (or from a group of 0/1 columns) of the CSV.

    Args:
        task: the task's name.
        kind: ``classification``, ``regression`` or ``multilabel``.
        columns: the headers read, in order (several for a group of 0/1 columns).
        classes: the class names (None for regression).
        style: how cells hold a multilabel: ``bits`` (one 0/1 column per class), ``packed`` (a
            ``NAME:a|b|c`` column: ``1|0|1`` or ``a|c``) or ``names`` (``a|c``); ``""`` otherwise.

    Example:
        >>> LabelColumn("tags", "multilabel", ("tags:a|b|c",), ["a", "b", "c"], "packed").read(["a|c"]).tolist()
        [1.0, 0.0, 1.0]
    """

    task: str
    kind: str
    columns: tuple
    classes: list | None = None
    style: str = ""

    @property
    def where(self) -> str:
        """Where the label comes from, for ``describe()``: ``column weight``, ``columns attr:a, attr:b``."""
        if len(self.columns) == 1:
            return f"column {self.columns[0]}"
        shown = ", ".join(self.columns[:3]) + (", ..." if len(self.columns) > 3 else "")
        return f"{len(self.columns)} columns {shown}"

    def make_task(self):
        """The ``Task`` this column trains (classes from the data)."""
        if self.kind == "classification":
            return ClassificationTask(self.task, classes=self.classes)
        if self.kind == "multilabel":
            return MultilabelTask(self.task, classes=self.classes)
        return RegressionTask(self.task)

    def missing(self):
        """The label a picture without one gets (-1 for classes; 0 for a number, which its weight of 0 hides)."""
        if self.kind == "classification":
            return np.int32(-1)
        if self.kind == "multilabel":
            return np.full(len(self.classes), -1.0, np.float32)
        return np.float32(0.0)

    def read(self, cells: list):
        """The label in ``cells`` (the row's cells of ``columns``), None when empty; ``ValueError`` when unreadable.

        Args:
            cells: the stripped cells of this column's ``columns``, in order.

        Returns:
            An int32 class index, a float32 number or a float32 multi-hot row; None for a missing label.

        Raises:
            ValueError: the reason the cell cannot be this task's label.
        """
        if all(c == "" for c in cells):
            return None
        if self.kind == "classification":
            if cells[0] not in self._index:
                raise ValueError(f"{cells[0]!r} is not one of its {len(self.classes)} classes")
            return np.int32(self._index[cells[0]])
        if self.kind == "regression":
            return np.float32(number(cells[0]))
        if self.style == "bits":
            if any(c == "" for c in cells):
                raise ValueError("some of its 0/1 columns are empty, not all")
            return np.asarray([_bit(c) for c in cells], np.float32)
        parts = [p.strip() for p in cells[0].split(SEPARATOR)]
        if self.style == "packed" and len(parts) == len(self.classes) and all(p in ("0", "1") for p in parts):
            return np.asarray([float(p) for p in parts], np.float32)
        unknown = [p for p in parts if p not in self._index]
        if unknown and self.style == "packed":
            raise ValueError(f"{cells[0]!r} is neither {len(self.classes)} values 0/1 nor class names, separated by {SEPARATOR}")
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not one of its {len(self.classes)} classes")
        row = np.zeros(len(self.classes), np.float32)
        row[[self._index[p] for p in parts]] = 1.0
        return row

    @property
    def _index(self) -> dict:
        return {c: i for i, c in enumerate(self.classes or [])}


def _sorted_classes(values) -> list:
    values = sorted(set(values))
    try:
        return sorted(values, key=float)  # class codes 2, 10 in numeric order
    except ValueError:
        return values


def _numeric(values) -> bool:
    count = 0
    for v in values:
        try:
            number(v)
            count += 1
        except ValueError:
            pass
    return count >= NUMERIC_SHARE * len(values)


def _groups(header: list) -> dict:
    """NAME -> headers, for ``NAME:a|b|c`` columns and groups of ``NAME:a`` columns, in header order."""
    groups = {}
    for h in header:
        if ":" in h:
            groups.setdefault(h.split(":", 1)[0].strip(), []).append(h)
    for name, members in groups.items():
        packed = [h for h in members if SEPARATOR in h.split(":", 1)[1]]
        if packed and len(members) > 1:
            raise MtlError(f"columns {', '.join(members)}: a NAME:a|b|c column cannot share its NAME with others")
    return groups


def _group_column(task: str, members: list) -> LabelColumn:
    if len(members) == 1 and SEPARATOR in members[0].split(":", 1)[1]:
        classes = [c.strip() for c in members[0].split(":", 1)[1].split(SEPARATOR)]
        if any(not c for c in classes) or len(set(classes)) != len(classes):
            raise MtlError(f"column {members[0]!r}: its classes after ':' must be distinct and non-empty, e.g. tags:a|b|c")
        return LabelColumn(task, "multilabel", (members[0],), classes, "packed")
    classes = [h.split(":", 1)[1].strip() for h in members]
    if any(not c for c in classes) or len(set(classes)) != len(classes):
        raise MtlError(f"columns {', '.join(members)}: each needs a distinct class name after ':', e.g. attr:smiling")
    return LabelColumn(task, "multilabel", tuple(members), classes, "bits")


def _plain_column(task: str, header: str, values: list, kind: str | None) -> LabelColumn | str:
    """The column read as ``kind`` (inferred when None), or the reason it is left out."""
    filled = [v for v in values if v != ""]
    if kind is None:
        if not filled:
            return "no values"
        kind = "regression" if _numeric(filled) else "classification"
        distinct = set(filled)
        if kind == "classification" and len(distinct) < 2:
            return f"one value only ({filled[0]!r})"
        if kind == "classification" and len(distinct) == len(filled) >= ID_MIN:
            return "every value differs (an identifier?)"
    if kind == "regression":
        return LabelColumn(task, kind, (header,))
    if kind == "classification":
        classes = _sorted_classes(filled)
        if len(classes) < 2:
            raise MtlError(f"column {header!r} read as classification has {len(classes)} class(es); it needs 2")
        return LabelColumn(task, kind, (header,), classes)
    names = _sorted_classes(p.strip() for v in filled for p in v.split(SEPARATOR) if p.strip())
    if not names:
        raise MtlError(f"column {header!r} read as multilabel names no class")
    return LabelColumn(task, kind, (header,), names, "names")


def infer_columns(header: list, rows: list, specs=None) -> tuple[list, dict]:
    """The task of every label column (the picture and split columns already taken out).

    Args:
        header: the label columns' headers.
        rows: the rows' cells, each a list as long as ``header`` (stripped; ``""`` where empty).
        specs: the ``labels`` option, ``TASK=COLUMN[:KIND]`` strings (``parse_label_specs``).

    Returns:
        ``(columns, skipped)``: the ``LabelColumn`` s (the specs' first, then the inferred ones in
        header order) and ``{header: why it is no task}``.

    Raises:
        MtlError: a spec naming no column or a kind the column cannot be, two tasks with one name,
            a malformed group header.

    Example:
        >>> cols, _ = infer_columns(["attr:smiling", "attr:hat"], [["1", "0"], ["", ""]])
        >>> cols[0].task, cols[0].classes, cols[0].read(["1", "0"]).tolist()
        ('attr', ['smiling', 'hat'], [1.0, 0.0])
        >>> infer_columns(["a"], [["1"]], specs=["b=B"])
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: label 'b=B': no column 'B'; columns: a
    """
    groups = _groups(header)
    values = {h: [row[i] for row in rows] for i, h in enumerate(header)}
    columns, skipped, claimed = [], {}, set()
    for spec in parse_label_specs(specs):
        text = f"{spec.task}={spec.column}" + (f":{spec.kind}" if spec.kind else "")
        if spec.column in groups and spec.column not in values:
            if spec.kind not in (None, "multilabel"):
                raise MtlError(f"label {text!r}: {spec.column!r} names a group of 0/1 columns, which can only be multilabel")
            columns.append(_group_column(spec.task, groups[spec.column]))
            claimed.update(groups[spec.column])
        elif spec.column in values:
            found = _plain_column(spec.task, spec.column, values[spec.column], spec.kind)
            if isinstance(found, str):
                raise MtlError(f"label {text!r}: column {spec.column!r} is no task: {found}")
            columns.append(found)
            claimed.add(spec.column)
        else:
            hint = f" (a KIND is one of {', '.join(KINDS)})" if ":" in spec.column else ""
            raise MtlError(f"label {text!r}: no column {spec.column!r}{hint}; columns: {', '.join(header)}")
    for h in header:
        if h in claimed:
            continue
        if not h.strip():
            skipped[h] = "no header"
        elif ":" in h:
            name = h.split(":", 1)[0].strip()
            members = [m for m in groups[name] if m not in claimed]
            if h == members[0]:
                columns.append(_group_column(task_name(name), members))
        else:
            found = _plain_column(task_name(h), h, values[h], None)
            if isinstance(found, str):
                skipped[h] = found
            else:
                columns.append(found)
    names = [c.task for c in columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MtlError(f"two label columns make a task named {twice[0]!r}; rename one or name them with --label")
    return columns, skipped
