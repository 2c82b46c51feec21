"""``TASK=COLUMN[:KIND]``: how a user names a task, the column (or feature) it reads and its kind.

The ``labels`` option of the CSV source (``--label`` on the command line) takes these strings. The
kind is read from the text after the last ``:`` only when it is a kind's name, so a column whose
header holds a colon (``tags:a|b|c``) can be named as it is.

Example:
    >>> parse_label_specs(["age=Age:regression", "tags=tags:a|b|c"])
    [LabelSpec(task='age', column='Age', kind='regression'), LabelSpec(task='tags', column='tags:a|b|c', kind=None)]
"""

from __future__ import annotations

from typing import NamedTuple

from mtl_keras.errors import MtlError

# The kinds a column of labels can be read as (a box or a mask needs more than one cell per picture).
KINDS = ("classification", "regression", "multilabel")


class LabelSpec(NamedTuple):
    """One ``TASK=COLUMN[:KIND]``: the task's name, the column it reads, and its kind (None: inferred).

    Example:
        >>> LabelSpec("age", "Age", "regression").kind
        'regression'
    """

    task: str
    column: str
    kind: str | None


def parse_label_specs(specs) -> list[LabelSpec]:
    """``["TASK=COLUMN[:KIND]", ...]`` -> ``LabelSpec`` s, with one-line errors naming the bad entry.

    Args:
        specs: a list of strings (one string is taken as a list of one); ``None`` or empty: none.

    Returns:
        The specs, in the order given.

    Raises:
        MtlError: an entry that is not ``TASK=COLUMN[:KIND]``, a task name that is not a Python
            identifier, or a task named twice.

    Example:
        >>> parse_label_specs("species=Species")
        [LabelSpec(task='species', column='Species', kind=None)]
        >>> parse_label_specs(["Species"])
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: malformed label 'Species'; expected TASK=COLUMN[:KIND] (KIND: classification, regression, multilabel), e.g. species=Species:classification
    """
    if not specs:
        return []
    if isinstance(specs, str):
        specs = [specs]
    found, seen = [], set()
    for spec in specs:
        task, sep, rest = str(spec).partition("=")
        task, rest = task.strip(), rest.strip()
        if not sep or not task or not rest:
            raise MtlError(f"malformed label {spec!r}; expected TASK=COLUMN[:KIND] (KIND: {', '.join(KINDS)}), "
                           "e.g. species=Species:classification")
        if not task.isidentifier():
            raise MtlError(f"label {spec!r}: the task name {task!r} must be a Python identifier (letters, digits, _)")
        if task in seen:
            raise MtlError(f"label {spec!r}: task {task!r} is named twice")
        seen.add(task)
        column, colon, kind = rest.rpartition(":")
        if colon and kind.strip() in KINDS and column.strip():
            found.append(LabelSpec(task, column.strip(), kind.strip()))
        else:
            found.append(LabelSpec(task, rest, None))
    return found
