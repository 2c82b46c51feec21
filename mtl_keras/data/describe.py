"""What a data source will train, as text: one line per task (name, kind, where its label comes from, classes).

``mtl-keras data NAME`` prints a source's ``describe()``; the sources build it with
``describe_tasks`` so every one reads the same, and ``describe_source`` falls back to listing
``tasks()`` for a source that has no ``describe()``.

Example:
    >>> from mtl_keras.tasks import ClassificationTask, RegressionTask
    >>> tasks = {"species": ClassificationTask("species", classes=["cat", "dog"]), "age": RegressionTask("age")}
    >>> print(describe_tasks("pets", tasks, {"species": "column Species"}))
    pets
    task     kind            from            classes
    species  classification  column Species  2: cat, dog
    age      regression      -               -
"""

from __future__ import annotations

# Class names shown per task before "...": enough to recognise the dataset, short enough for one line.
SHOWN_CLASSES = 6


def format_classes(classes, shown: int = SHOWN_CLASSES) -> str:
    """``"3: cat, dog, fox"``: the count, then the first ``shown`` class names.

    Args:
        classes: the class names, or None for a task without classes.
        shown: how many names to show before ``...``.

    Returns:
        The text; ``-`` when there are no classes.

    Example:
        >>> format_classes([str(i) for i in range(10)], shown=3)
        '10: 0, 1, 2, ...'
        >>> format_classes(None)
        '-'
    """
    if not classes:
        return "-"
    classes = [str(c) for c in classes]
    more = ", ..." if len(classes) > shown else ""
    return f"{len(classes)}: {', '.join(classes[:shown])}{more}"


def describe_tasks(title: str, tasks: dict, where: dict | None = None, labelled: dict | None = None,
                   notes=()) -> str:
    """A title line, then a table of the tasks (name, kind, source of the label, [labelled,] classes), then notes.

    Args:
        title: the first line (the dataset and its size).
        tasks: task name -> ``Task``, in the order to show.
        where: task name -> where its label comes from (a column, a feature); ``-`` when absent.
        labelled: task name -> ``"labelled/total"`` text, for data with missing labels; no column when None.
        notes: lines printed after the table (skipped columns, bad rows).

    Returns:
        The text, lines joined by newlines, no trailing newline.

    Example:
        >>> from mtl_keras.tasks import BoxTask
        >>> print(describe_tasks("x", {"box": BoxTask("box")}, labelled={"box": "3/4"}, notes=["one note"]))
        x
        task  kind  from  labelled  classes
        box   box   -     3/4       -
        one note
    """
    where = where or {}
    header = ["task", "kind", "from", *(["labelled"] if labelled is not None else []), "classes"]
    rows = []
    for name, task in tasks.items():
        row = [name, task.kind, where.get(name, "-")]
        if labelled is not None:
            row.append(labelled.get(name, "-"))
        row.append(format_classes(getattr(task, "classes", None)))
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [title]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return "\n".join([*lines, *notes])


def describe_source(name: str, source) -> str:
    """The source's own ``describe()``, or a table of its ``tasks()`` when it has none.

    Args:
        name: the dataset name, for the fallback's title.
        source: a data source object.

    Returns:
        The text ``mtl-keras data`` prints.

    Example:
        >>> class Bare:
        ...     def tasks(self):
        ...         from mtl_keras.tasks import RegressionTask
        ...         return {"age": RegressionTask("age")}
        >>> print(describe_source("mine", Bare()))
        mine
        task  kind        from  classes
        age   regression  -     -
    """
    if callable(getattr(source, "describe", None)):
        return source.describe()
    return describe_tasks(name, source.tasks())
