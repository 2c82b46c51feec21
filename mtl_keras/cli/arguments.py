"""Parsing of the flag values the commands share, so no command imports another.

``--loss-weights`` (train) and ``--scale-task`` (compare) are both ``TASK=NUMBER`` lists;
``--depends-on`` (train, and ``bench/time_to_accuracy.py``) and ``--target`` (explain) are parsed
here too. Nothing here imports TensorFlow: the parser and the early checks stay fast.

Example:
    >>> parse_task_numbers("box=5, count=0.5")
    {'box': 5.0, 'count': 0.5}
"""

from __future__ import annotations

from mtl_keras.errors import MtlError


def parse_task_numbers(text: str, flag: str = "--loss-weights") -> dict:
    """``"box=5,shape=1"`` -> ``{"box": 5.0, "shape": 1.0}``, with errors that name ``flag``.

    Args:
        text: the flag's value; empty means no entries.
        flag: the flag, for the error message (``--loss-weights``, ``--scale-task``).

    Returns:
        Task name -> number, in the order given.

    Raises:
        MtlError: an entry is not ``NAME=NUMBER``.

    Example:
        >>> parse_task_numbers("box=100", flag="--scale-task")
        {'box': 100.0}
        >>> parse_task_numbers("box5", flag="--scale-task")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: malformed --scale-task entry 'box5'; expected NAME=NUMBER, e.g. box=5
    """
    numbers = {}
    for part in filter(None, (s.strip() for s in (text or "").split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise MtlError(f"malformed {flag} entry {part!r}; expected NAME=NUMBER, e.g. box=5")
        try:
            numbers[name.strip()] = float(value)
        except ValueError:
            # Both flags end up as compile-time loss weights, so the message calls the number that.
            raise MtlError(f"loss weight for {name.strip()!r} is not a number: {value!r}") from None
    return numbers


def parse_loss_weights(text: str) -> dict:
    """``--loss-weights``: ``"box=5,shape=1"`` -> ``{"box": 5.0, "shape": 1.0}``, with clear errors.

    Args:
        text: the flag's value.

    Returns:
        Task name -> weight.

    Example:
        >>> parse_loss_weights("box=5, count=0.5")
        {'box': 5.0, 'count': 0.5}
    """
    return parse_task_numbers(text, "--loss-weights")


def parse_depends_on(text: str, task_names=None) -> dict:
    """``--depends-on``: ``"shape=mask,color=mask+objects"`` -> ``{"shape": ("mask",), "color": ("mask", "objects")}``.

    Args:
        text: the flag's value; empty means no dependencies.
        task_names: the tasks trained here (every name must be one); ``None`` checks the syntax only,
            for callers that learn the task names later (``compare`` without ``--tasks``).

    Returns:
        Task name -> the tasks whose outputs feed its head.

    Raises:
        MtlError: a malformed entry or a name that is not trained here.

    Example:
        >>> parse_depends_on("shape=mask", ["shape", "mask"])
        {'shape': ('mask',)}
        >>> parse_depends_on("color=mask+objects")
        {'color': ('mask', 'objects')}
    """
    found = {}
    for part in filter(None, (s.strip() for s in (text or "").split(","))):
        name, sep, deps = part.partition("=")
        deps = tuple(d.strip() for d in deps.split("+") if d.strip())
        if not sep or not name.strip() or not deps:
            raise MtlError(f"malformed --depends-on entry {part!r}; expected TASK=OTHER[+OTHER], e.g. shape=mask")
        for n in (name.strip(), *deps):
            if task_names is not None and n not in task_names:
                raise MtlError(f"--depends-on names {n!r}, not trained here; tasks: {', '.join(task_names)}")
        found[name.strip()] = deps
    return found


def parse_dependencies_only(text: str, depends_on: dict, task_names=None) -> tuple:
    """``--dependencies-only``: ``"shape,color"`` -> ``("shape", "color")``, each a task with ``--depends-on``.

    Args:
        text: the flag's value; empty means none.
        depends_on: ``parse_depends_on``'s result: a head that reads only its dependencies needs some.
        task_names: the tasks trained here; ``None`` checks against ``depends_on`` only.

    Returns:
        The names of the heads that read their dependencies and not the shared pooled features.

    Raises:
        MtlError: a name that is not trained here, or a task without ``--depends-on``.

    Example:
        >>> parse_dependencies_only("color", {"color": ("objects",)}, ["color", "objects"])
        ('color',)
    """
    names = tuple(n.strip() for n in (text or "").split(",") if n.strip())
    for n in names:
        if task_names is not None and n not in task_names:
            raise MtlError(f"--dependencies-only names {n!r}, not trained here; tasks: {', '.join(task_names)}")
        if n not in depends_on:
            raise MtlError(f"--dependencies-only names {n!r}, which has no --depends-on entry: its head would read "
                           f"nothing; add e.g. --depends-on {n}=OTHER")
    return names


def parse_targets(values, task_names) -> dict:
    """``--target``: ``["label", "box=area"]`` -> ``{task: target}``; a bare target applies to every task.

    Args:
        values: the repeated flag's values, ``TARGET`` or ``TASK=TARGET``.
        task_names: the tasks explained.

    Returns:
        Task name -> target, for the tasks that have one.

    Raises:
        MtlError: a ``TASK=`` names a task not explained.

    Example:
        >>> parse_targets(["label", "box=area"], ["shape", "box"])
        {'shape': 'label', 'box': 'area'}
    """
    bare, specific = None, {}
    for v in values:
        if "=" in v:
            name, target = v.split("=", 1)
            if name not in task_names:
                raise MtlError(f"--target names task {name!r}; tasks: {', '.join(task_names)}")
            specific[name] = target
        else:
            bare = v
    return {n: specific.get(n, bare) for n in task_names if n in specific or bare is not None}
