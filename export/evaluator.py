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


def collect(dataset, tasks) -> tuple[np.ndarray, dict, dict]:
    """Images, targets and weights of a batched ``(image, targets, weights)`` dataset as numpy arrays.

    Example:
        >>> import mtl_keras as mk
        >>> tasks = mk.data.tasks_for("shapes", names=["count"])
        >>> x, y, w = collect(mk.data.load("shapes", "test", image_size=32, batch_size=2, tasks=tasks, size=3), tasks)
        >>> x.shape, y["count"].shape
        ((3, 32, 32, 3), (3, 1))
    """
    images, targets, weights = [], {t.name: [] for t in tasks}, {t.name: [] for t in tasks}
    for x, y, w in dataset:
        images.append(np.asarray(x))
        for t in tasks:
            targets[t.name].append(np.asarray(y[t.name]))
            weights[t.name].append(np.asarray(w[t.name]))
    if not images:
        raise MtlError("the evaluation split is empty")
    return (
        np.concatenate(images),
        {k: np.concatenate(v) for k, v in targets.items()},
        {k: np.concatenate(v) for k, v in weights.items()},
    )


def evaluate_outputs(tasks, targets: dict, outputs: dict, weights: dict) -> dict:
    """``{task: {metric: value}}`` from whole-split numpy ``targets``, model ``outputs`` and ``weights``.

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

    Example:
        >>> import mtl_keras as mk
        >>> [t] = mk.data.tasks_for("shapes", names=["box"])
        >>> primary(t, {"iou": 0.7})
        0.7
    """
    return float(scores.get(task.primary_metric, float("nan")))
