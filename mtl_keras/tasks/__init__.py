"""Task types (one file each) and the helpers that pick tasks for a dataset.

Example:
    >>> import mtl_keras as mk
    >>> [t.name for t in mk.data.tasks_for("shapes", names=["shape", "box"])]
    ['shape', 'box']
"""

from mtl_keras.errors import MtlError, unknown
from mtl_keras.tasks.base import TASK_TYPES, Task, TaskExample, register_task_type
from mtl_keras.tasks.box import BoxTask
from mtl_keras.tasks.classification import ClassificationTask
from mtl_keras.tasks.depth import DepthTask
from mtl_keras.tasks.detection import DetectionTask
from mtl_keras.tasks.multilabel import MultilabelTask
from mtl_keras.tasks.regression import RegressionTask
from mtl_keras.tasks.segmentation import SegmentationTask

__all__ = [
    "TASK_TYPES",
    "BoxTask",
    "ClassificationTask",
    "DepthTask",
    "DetectionTask",
    "MultilabelTask",
    "RegressionTask",
    "SegmentationTask",
    "Task",
    "TaskExample",
    "from_config",
    "register_task_type",
]


def from_config(config: dict) -> Task:
    """Rebuild a task from ``task.get_config()``.

    Args:
        config: a dict from ``Task.get_config()``; its ``kind`` selects the registered task type.

    Returns:
        A new ``Task`` of that type.

    Raises:
        MtlError: an unknown task type.

    Example:
        >>> from_config(BoxTask("box").get_config()).name
        'box'
    """
    return Task.from_config(config)


def check_unique(tasks) -> list[Task]:
    """Validate a task list: non-empty, Task objects, unique names, known dependencies.

    Args:
        tasks: an iterable of ``Task`` objects.

    Returns:
        The tasks, as a list in the same order.

    Raises:
        MtlError: no task, a non-Task, a repeated name, or a ``depends_on`` that is not a valid task.

    Example:
        >>> len(check_unique([BoxTask("box")]))
        1
    """
    tasks = list(tasks)
    if not tasks:
        raise MtlError("a model needs at least one task")
    names = []
    for t in tasks:
        if not isinstance(t, Task):
            raise MtlError(f"expected Task objects, got {type(t).__name__}: {t!r}")
        if t.name in names:
            raise MtlError(f"two tasks are named {t.name!r}")
        names.append(t.name)
    for t in tasks:
        for d in t.depends_on:
            if d not in names:
                raise unknown(f"dependency of task {t.name!r}:", d, names)
    return tasks
