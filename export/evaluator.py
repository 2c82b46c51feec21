"""Per-task metrics from numpy predictions, so a .tflite is scored exactly like the Keras model.

Each task's own Keras metric objects (``task.metrics()``, the ones ``compile`` uses) are updated with
the whole split's numpy arrays, and a task's ``dataset_metrics(targets, outputs, weights)`` hook
(e.g. COCO mAP through pycocotools) adds its numbers. Nothing is re-implemented here.

Example:
    >>> import numpy as np, mtl_keras as mk
    >>> [task] = mk.data.tasks_for("shapes", names=["shape"])
    >>> targets, weights = {"shape": np.array([0, 1])}, {"shape": np.array([1.0, 1.0])}
    >>> evaluate_outputs([task], targets, {"shape": np.eye(6)[[0, 2]]}, weights)
    {'shape': {'accuracy': 0.5}}
"""

from __future__ import annotations

import numpy as np

from mtl_keras.errors import MtlError
# The export's images, targets and weights come from the evaluation stage's one loop over a split.
from mtl_keras.evaluate.metrics import collect

__all__ = ["collect", "evaluate_outputs", "primary"]


def evaluate_outputs(tasks, targets: dict, outputs: dict, weights: dict) -> dict:
    """``{task: {metric: value}}`` from whole-split numpy ``targets``, model ``outputs`` and ``weights``.

    Args:
        tasks: the tasks to score.
        targets: ``{task: array}`` over the split (``collect``).
        outputs: ``{task: array}``, the model's (Keras or ``.tflite``) outputs on the same images.
        weights: ``{task: array}``, 0 where a label is missing.

    Returns:
        ``{task: {metric: value}}``: the task's Keras metrics and its ``dataset_metrics``.

    Raises:
        MtlError: an output is missing or has the wrong length.

    Example:
        >>> import numpy as np, mtl_keras as mk
        >>> [task] = mk.data.tasks_for("shapes", names=["count"])
        >>> evaluate_outputs([task], {"count": np.array([[1.0]])}, {"count": np.array([[1.5]])}, {"count": np.array([1.0])})
        {'count': {'mae': 0.5}}
    """
    results = {}
    for task in tasks:
        name = task.name
        if name not in outputs:
            raise MtlError(f"the model gave no output named {name!r}; it gave: {', '.join(sorted(outputs))}")
        y, p, w = targets[name], np.asarray(outputs[name], np.float32), weights[name]
        if len(p) != len(y):
            raise MtlError(f"task {name!r}: {len(p)} predictions for {len(y)} targets")
        scores = {}
        for metric in task.metrics():
            metric.update_state(y, p, sample_weight=w)
            scores[metric.name] = float(np.asarray(metric.result()))
        hook = getattr(task, "dataset_metrics", None)
        if callable(hook):
            scores.update({k: float(v) for k, v in hook(y, p, w).items()})
        results[name] = scores
    return results


def primary(task, scores: dict) -> float:
    """The task's primary metric out of its ``scores`` (NaN when missing).

    Args:
        task: the task (its ``primary_metric`` names the number).
        scores: ``{metric: value}`` of that task.

    Returns:
        The number, NaN when ``scores`` lacks it.

    Example:
        >>> import mtl_keras as mk
        >>> [t] = mk.data.tasks_for("shapes", names=["box"])
        >>> primary(t, {"iou": 0.7})
        0.7
    """
    return float(scores.get(task.primary_metric, float("nan")))
