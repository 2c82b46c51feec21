"""Per-task evaluation: the compiled Keras metrics, grouped by task, plus dataset-level metrics.

Example:
    >>> import mtl_keras as mk
    >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["color"]), trunk="mobilenet_v3_small", image_size=32)
    >>> m.compile()
    >>> ds = mk.data.load("shapes", split="test", image_size=32, batch_size=4, size=8, tasks=m.tasks)
    >>> sorted(evaluate_model(m, ds)["color"])
    ['accuracy', 'loss']
"""

from __future__ import annotations

import math

import numpy as np

from mtl_keras.errors import MtlError


def group_by_task(logs: dict, task_names) -> dict:
    """Split Keras' flat ``{"<task>_<metric>": v}`` logs into ``{task: {metric: v}}``.

    Longer task names are matched first, so ``box`` and ``box_small`` do not collide; a one-task
    model's unprefixed metrics belong to its task.

    Args:
        logs: Keras' logs (``model.evaluate(..., return_dict=True)``).
        task_names: the model's task names.

    Returns:
        ``{task: {metric: value}}`` (floats).

    Example:
        >>> group_by_task({"loss": 1.0, "box_iou": 0.5, "box_loss": 0.2}, ["box", "shape"])
        {'box': {'iou': 0.5, 'loss': 0.2}, 'shape': {}}
        >>> group_by_task({"loss": 0.3, "accuracy": 0.9}, ["shape"])
        {'shape': {'accuracy': 0.9, 'loss': 0.3}}
    """
    grouped = {name: {} for name in task_names}
    for key, value in logs.items():
        for name in sorted(task_names, key=len, reverse=True):
            if key.startswith(name + "_"):
                grouped[name][key[len(name) + 1 :]] = float(value)
                break
        else:
            if len(task_names) == 1 and key != "loss":
                # Keras leaves the output name off a one-output model's metrics ("accuracy").
                grouped[task_names[0]][key] = float(value)
    if len(task_names) == 1 and "loss" in logs:
        grouped[task_names[0]].setdefault("loss", float(logs["loss"]))
    return grouped


def collect(dataset, tasks, model=None) -> tuple:
    """A batched ``(image, targets[, weights])`` dataset as whole-split numpy arrays, per task.

    The one loop over an evaluation split: ``evaluate_model`` gives it the model (each batch's
    outputs are kept, not its images), ``export`` the dataset alone (it runs the Keras model and
    every ``.tflite`` on the same images).

    Args:
        dataset: batches of ``(image, targets)`` or ``(image, targets, weights)``, keyed by task name.
        tasks: the tasks (or task names) to collect.
        model: when given, it is run on each batch and its outputs take the images' place.

    Returns:
        ``(images, targets, weights)``, or ``(outputs, targets, weights)`` with ``model``: images one
        array, the others ``{task: array}`` (weights all 1 where the dataset has none).

    Raises:
        MtlError: the dataset is empty.

    Example:
        >>> import mtl_keras as mk
        >>> tasks = mk.data.tasks_for("shapes", names=["count"])
        >>> x, y, w = collect(mk.data.load("shapes", "test", image_size=32, batch_size=2, tasks=tasks, size=3), tasks)
        >>> x.shape, y["count"].shape, w["count"].tolist()
        ((3, 32, 32, 3), (3, 1), [1.0, 1.0, 1.0])
    """
    names = [getattr(t, "name", t) for t in tasks]
    first, targets, weights = [], {n: [] for n in names}, {n: [] for n in names}
    for batch in dataset:
        x, y = batch[0], batch[1]
        sw = batch[2] if len(batch) > 2 else None
        # predict_on_batch: the compiled forward pass (traced once); an eager call of ResNet50 is ~8x slower.
        first.append(np.asarray(x) if model is None else model.predict_on_batch(x))
        for name in names:
            targets[name].append(np.asarray(y[name]))
            weights[name].append(np.ones(len(targets[name][-1]), np.float32) if sw is None else np.asarray(sw[name]))
    if not first:
        raise MtlError("the evaluation dataset is empty")
    cat = lambda d: {k: np.concatenate(v, axis=0) for k, v in d.items()}  # noqa: E731
    if model is None:
        return np.concatenate(first, axis=0), cat(targets), cat(weights)
    return cat({n: [np.asarray(p[n]) for p in first] for n in names}), cat(targets), cat(weights)


def evaluate_model(model, dataset) -> dict:
    """``{task: {metric: value}}`` over ``dataset`` (batched ``(image, targets, weights)``).

    Uses the model's compiled metrics (compiling with the task defaults if needed); tasks whose
    type defines ``dataset_metrics(targets, outputs, weights)`` (e.g. COCO mAP) add those numbers.

    Args:
        model: a ``MultiTaskModel``.
        dataset: batched ``(image, targets, weights)`` (``mtl_keras.data.load``).

    Returns:
        ``{task: {metric: value}}``; a task with a non-finite metric also gets ``non_finite``: their names.

    Example: see the module's.
    """
    if not getattr(model, "compiled", False):
        model.compile()
    logs = model.evaluate(dataset, verbose=0, return_dict=True)
    results = group_by_task(logs, model.task_names)
    extra_tasks = [t for t in model.tasks if hasattr(t, "dataset_metrics")]
    if extra_tasks:
        outputs, targets, weights = collect(dataset, model.output_names, model=model)
        for task in extra_tasks:
            results[task.name].update(task.dataset_metrics(targets[task.name], outputs[task.name], weights[task.name]))
    for name, metrics in results.items():
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            metrics["non_finite"] = bad
    return results


def format_table(results: dict, tasks) -> str:
    """A plain-text table: one row per task, its primary metric first.

    Args:
        results: ``{task: {metric: value}}`` (``evaluate_model``).
        tasks: the tasks, in the table's row order.

    Returns:
        The table, one line per task under a header.

    Example:
        >>> from mtl_keras.tasks import BoxTask
        >>> print(format_table({"box": {"iou": 0.71, "loss": 0.4}}, [BoxTask("box")]))
        task  metric  value   loss
        box   iou     0.7100  0.4000
    """
    rows = [("task", "metric", "value", "loss")]
    for t in tasks:
        m = results.get(t.name, {})
        primary = m.get(t.primary_metric, float("nan"))
        rows.append((t.name, t.primary_metric, f"{primary:.4f}", f"{m.get('loss', float('nan')):.4f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
