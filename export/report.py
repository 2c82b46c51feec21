"""The per-format, per-task table of an export, its metric floors, and report.json / report.md.

Example:
    >>> from mtl_keras.tasks import ClassificationTask
    >>> floor = parse_floor("shape=0.9", [ClassificationTask("shape", classes=["a", "b"])])
    >>> floor.check({"shape": {"accuracy": 0.95}}), floor.check({"shape": {"accuracy": 0.5}})
    (True, False)
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math

from mtl_keras.errors import MtlError
from mtl_keras.tasks import TASK_TYPES


class _ToleranceByMetric(collections.abc.Mapping):
    """Each task type's ``export_tolerance`` keyed by its primary metric, read live from ``TASK_TYPES``.

    For readers that know a report's metric name but not its task (``bench/export.py``); the
    export itself asks the task (``drop_hints``).
    """

    def _table(self) -> dict:
        return {cls.primary_metric.lower(): float(cls.export_tolerance)
                for cls in TASK_TYPES.values() if cls.export_tolerance is not None}

    def __getitem__(self, metric):
        return self._table()[metric]

    def __iter__(self):
        return iter(self._table())

    def __len__(self):
        return len(self._table())


# A drop larger than this in a task's primary metric (int8 against Keras) earns a --float-heads hint.
DROP_TOLERANCE = _ToleranceByMetric()


@dataclasses.dataclass(frozen=True)
class Floor:
    """A bound on one task metric that every exported format must meet.

    For a higher-is-better metric it is a minimum; for a lower-is-better one (``mae``) a maximum.
    """

    task: str
    metric: str
    bound: float
    higher_is_better: bool

    def check(self, metrics: dict) -> bool:
        """Whether ``metrics`` meet this floor.

        Args:
            metrics: ``{task: {metric: value}}`` of one format.

        Returns:
            True when the value is finite and on the right side of ``bound``; False when it is missing or NaN.
        """
        value = metrics.get(self.task, {}).get(self.metric)
        if value is None or not math.isfinite(value):
            return False
        return value >= self.bound if self.higher_is_better else value <= self.bound

    def describe(self) -> str:
        return f"{self.task} {self.metric} {'>=' if self.higher_is_better else '<='} {self.bound:g}"


def parse_floor(text: str, tasks) -> Floor:
    """``task=value`` (the task's primary metric) or ``task.metric=value``.

    Args:
        text: one ``--min-metric`` value, e.g. ``count=0.3`` or ``box.iou=0.5``.
        tasks: the model's ``Task`` objects.

    Returns:
        A ``Floor``; its direction is the task's for its primary metric, else lower is better for
        mae/mse/rmse/abs_rel/loss.

    Raises:
        MtlError: no ``=``, a task the model does not have, or a value that is not a number.

    Example:
        >>> from mtl_keras.tasks import RegressionTask
        >>> parse_floor("count=0.3", [RegressionTask("count")]).describe()
        'count mae <= 0.3'
    """
    by_name = {t.name: t for t in tasks}
    key, sep, value = text.partition("=")
    if not sep:
        raise MtlError(f"--min-metric wants task=value or task.metric=value, got {text!r}")
    task_name, _, metric = key.strip().partition(".")
    if task_name not in by_name:
        raise MtlError(f"--min-metric names task {task_name!r}, which the model does not have; tasks: {', '.join(by_name)}")
    try:
        bound = float(value)
    except ValueError:
        raise MtlError(f"--min-metric {text!r}: {value!r} is not a number") from None
    task = by_name[task_name]
    metric = metric or task.primary_metric
    lower_is_better = ("mae", "mse", "rmse", "abs_rel", "loss")
    higher = task.higher_is_better if metric == task.primary_metric else metric not in lower_is_better
    return Floor(task_name, metric, bound, higher)


def drop_hints(tasks, keras_metrics: dict, int8_metrics: dict) -> list[str]:
    """Tasks whose primary metric fell more than their type's ``export_tolerance`` in int8, for ``--float-heads``.

    Args:
        tasks: the model's ``Task`` objects (a type with ``export_tolerance`` None is never hinted).
        keras_metrics: ``{task: {metric: value}}`` of the Keras model.
        int8_metrics: ``{task: {metric: value}}`` of the int8 file.

    Returns:
        The names of the tasks that dropped too far, in task order.

    Example:
        >>> from mtl_keras.tasks import BoxTask
        >>> drop_hints([BoxTask("box")], {"box": {"iou": 0.7}}, {"box": {"iou": 0.6}})
        ['box']
    """
    hints = []
    for t in tasks:
        tol = t.export_tolerance
        if tol is None:
            continue
        k = keras_metrics.get(t.name, {}).get(t.primary_metric)
        q = int8_metrics.get(t.name, {}).get(t.primary_metric)
        if k is None or q is None:
            continue
        drop = (k - q) if t.higher_is_better else (q - k)
        if drop > tol:
            hints.append(t.name)
    return hints


def _fmt(v, spec=".3f", none="-"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return format(v, spec)


def table_rows(report: dict) -> list[list[str]]:
    """The report as rows of strings: a header, the Keras reference, then one row per format.

    Args:
        report: the export report (``tasks``, ``keras``, ``formats``).

    Returns:
        A list of rows, each a list of strings of the same length; missing values are ``-``.
    """
    tasks = report["tasks"]
    header = ["format", "status", "size MB", "x fp32", "latency ms", "x fp32", "parity"]
    header += [f"{t['name']} {t['metric']}" for t in tasks]
    rows = [header]
    keras_row = ["keras", "reference", "-", "-", "-", "-", "-"]
    keras_row += [_fmt(report["keras"]["metrics"].get(t["name"], {}).get(t["metric"]), ".4f") for t in tasks]
    rows.append(keras_row)
    for f in report["formats"]:
        status = f["status"] if f["status"] != "failed" else "FAILED"
        row = [f["mode"], status, _fmt(f.get("size_mb"), ".2f"), _fmt(f.get("size_ratio"), ".3f"),
               _fmt(f.get("latency_ms"), ".2f"), _fmt(f.get("latency_ratio"), ".3f"), _fmt(f.get("parity_max_abs"), ".1e")]
        for t in tasks:
            v = f.get("metrics", {}).get(t["name"], {}).get(t["metric"])
            d = f.get("delta", {}).get(t["name"])
            row.append(_fmt(v, ".4f") + ("" if d is None else f" ({d:+.4f})"))
        rows.append(row)
    return rows


def format_table(report: dict) -> str:
    """A plain-text table of ``table_rows``, columns aligned.

    Args:
        report: the export report (``tasks``, ``keras``, ``formats``).

    Returns:
        The table as one string, lines joined by newlines.

    Example:
        >>> r = {"tasks": [], "keras": {"metrics": {}}, "formats": []}
        >>> format_table(r).split()[:3]
        ['format', 'status', 'size']
    """
    rows = table_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def markdown(report: dict) -> str:
    """``report.md``: the table as Markdown, with what was measured and how.

    Args:
        report: the export report (also ``model``, ``data``, ``split``, ``images``, ``threads``, ``timing_runs``, ``notes``).

    Returns:
        The Markdown text, ending with a newline.

    Example:
        >>> r = {"tasks": [], "keras": {"metrics": {}}, "formats": [], "notes": [], "model": "m.keras",
        ...      "data": "shapes", "split": "test", "images": 8, "threads": 2, "timing_runs": 5}
        >>> markdown(r).splitlines()[0]
        '# Export report: m.keras'
    """
    rows = table_rows(report)
    lines = [
        f"# Export report: {report['model']}",
        "",
        f"Metrics on {report['images']} images of the `{report['split']}` split of `{report['data']}`, computed "
        "by the tasks' own Keras metrics on the Keras model and on each .tflite through the LiteRT interpreter. "
        f"Latency: median of {report['timing_runs']} single-image calls, {report['threads']} threads, "
        "default XNNPACK delegate, all formats timed in the same run (interleaved), so the ratios compare. "
        "Parity: max |tflite - keras| over every output of every image. Change against Keras in brackets.",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    failures = [f for f in report["formats"] if f.get("reason")]
    mixed = [f for f in report["formats"] if f.get("float_heads") or f.get("float_layers")]
    if failures or mixed or report.get("notes"):
        lines.append("")
    for f in mixed:
        kept = [f"the {h} head" for h in f.get("float_heads", [])] + [f"`{p}`" for p in f.get("float_layers", [])]
        lines.append(f"- **{f['mode']}** keeps in float32: {', '.join(kept)}; everything else is int8.")
    for f in failures:
        lines.append(f"- **{f['mode']}**: {f['reason']}")
    for note in report.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"
