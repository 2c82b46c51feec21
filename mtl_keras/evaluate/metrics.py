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


def collect_predictions(model, dataset):
    """Targets, outputs and sample weights over a whole dataset, concatenated per task (numpy).

    Example:
        >>> t, o, w = collect_predictions(model, ds)  # doctest: +SKIP
    """
    targets, outputs, weights = {}, {}, {}
    for batch in dataset:
        x, y = batch[0], batch[1]
        sw = batch[2] if len(batch) > 2 else None
        pred = model(x, training=False)
        for name in model.output_names:
            targets.setdefault(name, []).append(np.asarray(y[name]))
            outputs.setdefault(name, []).append(np.asarray(pred[name]))
            w = np.ones(len(np.asarray(y[name])), np.float32) if sw is None else np.asarray(sw[name])
            weights.setdefault(name, []).append(w)
    if not targets:
        raise MtlError("the evaluation dataset is empty")
    cat = lambda d: {k: np.concatenate(v, axis=0) for k, v in d.items()}  # noqa: E731
    return cat(targets), cat(outputs), cat(weights)


def evaluate_model(model, dataset) -> dict:
    """``{task: {metric: value}}`` over ``dataset`` (batched ``(image, targets, weights)``).

    Uses the model's compiled metrics (compiling with the task defaults if needed); tasks whose
    type defines ``dataset_metrics(targets, outputs, weights)`` (e.g. COCO mAP) add those numbers.
    """
    if not getattr(model, "compiled", False):
        model.compile()
    logs = model.evaluate(dataset, verbose=0, return_dict=True)
    results = group_by_task(logs, model.task_names)
    extra_tasks = [t for t in model.tasks if hasattr(t, "dataset_metrics")]
    if extra_tasks:
        targets, outputs, weights = collect_predictions(model, dataset)
        for task in extra_tasks:
            results[task.name].update(task.dataset_metrics(targets[task.name], outputs[task.name], weights[task.name]))
    for name, metrics in results.items():
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            metrics["non_finite"] = bad
    return results


def format_table(results: dict, tasks) -> str:
    """A plain-text table: one row per task, its primary metric first.

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
