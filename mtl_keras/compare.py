"""Is multi-task learning better here? Single-task baselines against multi-task runs, and Δm.

``compare`` trains each task alone and all tasks together under each chosen balancer, with the same
trunk, data, seed and budget, evaluates every run on the same split and reports each task's primary
metric and Δm (Maninis, Radosavovic & Kokkinos, CVPR 2019): the mean over tasks of the relative
change against the single-task baseline, signed so that positive means better.

Example:
    >>> delta_m({"acc": 0.88, "mae": 0.45}, {"acc": 0.80, "mae": 0.50}, {"acc": True, "mae": False})
    10.0
"""

from __future__ import annotations

import math
import time

from mtl_keras.errors import MtlError, unknown


def delta_m(multi: dict, single: dict, higher_is_better: dict) -> float:
    """Δm in percent: mean over tasks of ±(M_multi − M_single) / M_single × 100.

    The sign is + for metrics where higher is better and − where lower is better, so Δm > 0 means
    the multi-task model beats the single-task baselines on average.

    Example:
        >>> delta_m({"iou": 0.6, "mae": 0.3}, {"iou": 0.5, "mae": 0.2}, {"iou": True, "mae": False})
        -15.0
    """
    if not single:
        raise MtlError("Δm needs at least one task")
    missing = [t for t in single if t not in multi or t not in higher_is_better]
    if missing:
        raise MtlError(f"Δm: no multi-task result or direction for task(s) {', '.join(missing)}")
    total = 0.0
    for task, base in single.items():
        base, value = float(base), float(multi[task])
        if not (math.isfinite(base) and math.isfinite(value)):
            raise MtlError(f"Δm: task {task!r} has a non-finite metric (single {base}, multi {value})")
        if base == 0:
            raise MtlError(f"Δm: the single-task metric of {task!r} is 0, so a relative change is undefined")
        sign = 1.0 if higher_is_better[task] else -1.0
        total += sign * (value - base) / abs(base)
    return round(100.0 * total / len(single), 6)


def format_table(result: dict) -> str:
    """A Markdown table: one row per run (single-task first), one column per task, then Δm.

    Example:
        >>> r = {"tasks": ["shape"], "metric": {"shape": "accuracy"}, "higher_is_better": {"shape": True},
        ...      "single": {"shape": 0.8}, "multi": {"static": {"shape": 0.9}}, "delta_m": {"static": 12.5}}
        >>> print(format_table(r))
        | run | shape accuracy ↑ | Δm % |
        |---|---|---|
        | single-task | 0.8000 | 0.00 |
        | static | 0.9000 | +12.50 |
    """
    tasks = result["tasks"]
    head = [f"{t} {result['metric'][t]} {'↑' if result['higher_is_better'][t] else '↓'}" for t in tasks]
    lines = ["| run | " + " | ".join(head) + " | Δm % |", "|" + "---|" * (len(tasks) + 2)]
    lines.append("| single-task | " + " | ".join(f"{result['single'][t]:.4f}" for t in tasks) + " | 0.00 |")
    for name, values in result["multi"].items():
        lines.append(
            f"| {name} | " + " | ".join(f"{values[t]:.4f}" for t in tasks) + f" | {_signed(result['delta_m'][name])} |"
        )
    return "\n".join(lines)


def _signed(value) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _train_and_score(tasks, balancer, train, evaluation, settings, loss_scale) -> dict:
    """One run: build, compile, fit, evaluate; returns primary metrics, history and final weights."""
    import keras

    import mtl_keras as mk
    from mtl_keras.evaluate import evaluate_model

    keras.utils.set_random_seed(settings["seed"])
    model = mk.build_model(tasks, trunk=settings["trunk"], image_size=settings["image_size"], weights=None)
    names = [t.name for t in tasks]
    model.compile(
        optimizer=keras.optimizers.Adam(settings["learning_rate"]),
        loss_weights={k: v for k, v in loss_scale.items() if k in names},
        balancer=balancer,
        jit_compile=settings["jit_compile"],
    )
    started = time.time()
    history = model.fit(train, epochs=settings["epochs"], verbose=0)
    seconds = time.time() - started
    scores = evaluate_model(model, evaluation)
    primary = {}
    for t in tasks:
        if t.primary_metric not in scores[t.name]:
            raise MtlError(f"task {t.name!r} reported no {t.primary_metric!r}; it reported {sorted(scores[t.name])}")
        primary[t.name] = float(scores[t.name][t.primary_metric])
    return {
        "metrics": primary,
        "seconds": round(seconds, 1),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "weights": model.balancer.current_weights() if model.balancer is not None else None,
    }


def compare(
    data: str = "shapes",
    tasks=None,
    balancers=("static", "uncertainty", "dwa", "gradnorm", "pcgrad"),
    trunk: str = "resnet50",
    image_size: int = 64,
    epochs: int = 3,
    batch_size: int = 32,
    train_size: int | None = 2048,
    eval_size: int | None = 512,
    split: str = "val",
    learning_rate: float = 1e-3,
    loss_scale: dict | None = None,
    seed: int = 0,
    jit_compile: bool = False,
    log=print,
    data_options: dict | None = None,
) -> dict:
    """Train single-task baselines and one multi-task model per balancer; return metrics and Δm.

    Every run gets the same trunk, seed, data and budget (``epochs`` × ``train_size`` examples).
    ``loss_scale`` multiplies a task's loss in every run (``{"box": 100}``: box loss in other
    units), as a compile-time loss weight, which the balancers then work on top of.
    ``data_options`` go to the data source (``{"data_dir": ...}`` for a ``tfds:`` dataset).

    Example:
        >>> r = compare("shapes", ["shape", "color"], ["static"], trunk="mobilenet_v3_small",
        ...             image_size=32, epochs=1, train_size=64, eval_size=32)  # doctest: +SKIP
        >>> sorted(r["multi"]), sorted(r["single"])  # doctest: +SKIP
        (['static'], ['color', 'shape'])
    """
    import mtl_keras as mk
    from mtl_keras.balancing import BALANCERS

    balancers = [b.strip().lower() for b in (balancers.split(",") if isinstance(balancers, str) else balancers)]
    if not balancers:
        raise MtlError("compare needs at least one balancer")
    for b in balancers:
        if b not in BALANCERS:
            raise unknown("balancer", b, BALANCERS)
    if len(set(balancers)) != len(balancers):
        raise MtlError(f"a balancer is listed twice: {', '.join(balancers)}")
    data_options = dict(data_options or {})
    task_list = mk.tasks.from_dataset(data, names=tasks, **data_options)
    if len(task_list) < 2:
        raise MtlError("compare needs at least two tasks (one task alone is its own baseline)")
    loss_scale = dict(loss_scale or {})
    for name, value in loss_scale.items():
        if name not in [t.name for t in task_list]:
            raise MtlError(f"loss scale names {name!r}, not a task here; tasks: {', '.join(t.name for t in task_list)}")
        if not (value > 0 and math.isfinite(value)):
            raise MtlError(f"loss scale of {name!r} must be a positive number, got {value}")
    settings = {"trunk": trunk, "image_size": int(image_size), "epochs": int(epochs), "seed": int(seed),
                "learning_rate": float(learning_rate), "jit_compile": bool(jit_compile)}
    train = mk.data.load(data, "train", image_size=image_size, batch_size=batch_size, tasks=task_list,
                         size=train_size, seed=seed, **data_options)
    evaluation = mk.data.load(data, split, image_size=image_size, batch_size=batch_size, tasks=task_list,
                              size=eval_size, seed=seed, **data_options)
    result = {
        "data": data, "split": split, "tasks": [t.name for t in task_list],
        "metric": {t.name: t.primary_metric for t in task_list},
        "higher_is_better": {t.name: bool(t.higher_is_better) for t in task_list},
        "budget": {**settings, "batch_size": batch_size, "train_size": train_size, "eval_size": eval_size},
        "loss_scale": loss_scale, "single": {}, "multi": {}, "delta_m": {}, "runs": {},
    }
    for task in task_list:
        run = _train_and_score([task], "static", train, evaluation, settings, loss_scale)
        result["single"][task.name] = run["metrics"][task.name]
        result["runs"][f"single:{task.name}"] = run
        log(f"single-task {task.name}: {task.primary_metric} {run['metrics'][task.name]:.4f} ({run['seconds']} s)")
    for balancer in balancers:
        run = _train_and_score(task_list, balancer, train, evaluation, settings, loss_scale)
        result["multi"][balancer] = run["metrics"]
        result["runs"][f"multi:{balancer}"] = run
        try:
            result["delta_m"][balancer] = delta_m(run["metrics"], result["single"], result["higher_is_better"])
        except MtlError as e:  # e.g. a baseline at 0: keep every trained number, say why Δm is missing
            result["delta_m"][balancer] = None
            log(f"warning: {e}")
        shown = ", ".join(f"{k} {v:.4f}" for k, v in run["metrics"].items())
        dm = result["delta_m"][balancer]
        log(f"multi-task {balancer}: {shown}; Δm {'n/a' if dm is None else f'{dm:+.2f}%'} ({run['seconds']} s)")
    return result
