"""Is multi-task learning better here? Single-task baselines against multi-task runs, and Δm.

``compare`` trains each task alone and all tasks together under each chosen balancer, with the same
trunk, data, seed and budget, evaluates every run on the same split and reports each task's primary
metric and Δm (Maninis, Radosavovic & Kokkinos, CVPR 2019): the mean over tasks of the relative
change against the single-task baseline, signed so that positive means better. With ``seeds=N`` every
run is repeated for N seeds and the result carries every per-seed number with its mean and spread.

Example:
    >>> delta_m({"acc": 0.88, "mae": 0.45}, {"acc": 0.80, "mae": 0.50}, {"acc": True, "mae": False})
    10.0
"""

from __future__ import annotations

import math
import statistics
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


def seed_summary(values) -> dict:
    """Mean, sample standard deviation (ddof=1), standard error (std/√n) and n of per-seed values.

    With one value there is no spread to estimate, so ``std`` and ``se`` are None rather than a
    reassuring 0.

    Example:
        >>> seed_summary([1.0, 3.0])
        {'mean': 2.0, 'std': 1.4142135623730951, 'se': 1.0, 'n': 2}
        >>> seed_summary([0.5])
        {'mean': 0.5, 'std': None, 'se': None, 'n': 1}
    """
    values = [float(v) for v in values]
    if not values:
        raise MtlError("a seed summary needs at least one value")
    n = len(values)
    if n == 1:
        return {"mean": values[0], "std": None, "se": None, "n": 1}
    std = statistics.stdev(values)
    return {"mean": statistics.fmean(values), "std": std, "se": std / math.sqrt(n), "n": n}


def delta_m_summary(per_seed) -> dict:
    """Δm over seeds: mean, sample std, standard error and whether the mean exceeds 2 standard errors.

    ``significant`` is a rough rule (about 95 % for many seeds; with 2 or 3 seeds a t-test would ask
    for much more), and None with one seed, where there is no error to compare against. A seed whose
    Δm is undefined (None) makes the whole summary None: averaging only the seeds that happened to
    be defined would quietly select them.

    Example:
        >>> delta_m_summary([2.0, 4.0, 6.0])
        {'mean': 4.0, 'std': 2.0, 'se': 1.154701, 'n': 3, 'significant': True}
        >>> delta_m_summary([-1.0, 3.0])["significant"]
        False
    """
    per_seed = list(per_seed)
    if not per_seed or any(v is None for v in per_seed):
        return {"mean": None, "std": None, "se": None, "n": len(per_seed), "significant": None}
    s = seed_summary(per_seed)
    rounded = {k: (None if s[k] is None else round(s[k], 6)) for k in ("mean", "std", "se")}
    significant = None if s["n"] < 2 else bool(s["mean"] > 2 * s["se"])
    return {**rounded, "n": s["n"], "significant": significant}


def format_table(result: dict) -> str:
    """A Markdown table: one row per run (single-task first), one column per task, then Δm.

    With several seeds (``result["seeds"]`` from ``compare(..., seeds=N)``) each cell is the mean
    ± sample std over seeds and Δm is its mean ± standard error; a line under the table names the
    seeds and the tasks each multi-task run loses on against its single-task model, on average.

    Example:
        >>> r = {"tasks": ["shape"], "metric": {"shape": "accuracy"}, "higher_is_better": {"shape": True},
        ...      "single": {"shape": 0.8}, "multi": {"static": {"shape": 0.9}}, "delta_m": {"static": 12.5}}
        >>> print(format_table(r))
        | run | shape accuracy ↑ | Δm % |
        |---|---|---|
        | single-task | 0.8000 | 0.00 |
        | static | 0.9000 | +12.50 |
        >>> r.update(seeds=[0, 1], std={"single": {"shape": 0.02}, "multi": {"static": {"shape": 0.01}}},
        ...          delta_m_stats={"static": {"mean": 12.5, "std": 1.0, "se": 0.71, "n": 2, "significant": True}})
        >>> print(format_table(r))  # doctest: +ELLIPSIS
        | run | shape accuracy ↑ | Δm % |
        |---|---|---|
        | single-task | 0.8000 ± 0.0200 | 0.00 |
        | static | 0.9000 ± 0.0100 | +12.50 ± 0.71 |
        <BLANKLINE>
        2 seeds (0, 1): mean ± sample std over seeds; Δm mean ± standard error (Δm > 2 SE: static). No task ...
    """
    tasks = result["tasks"]
    seeds = result.get("seeds")
    spread = seeds is not None and len(seeds) > 1
    std = result.get("std", {})

    def cell(mean, sd):
        return f"{mean:.4f} ± {sd:.4f}" if spread and sd is not None else f"{mean:.4f}"

    head = [f"{t} {result['metric'][t]} {'↑' if result['higher_is_better'][t] else '↓'}" for t in tasks]
    lines = ["| run | " + " | ".join(head) + " | Δm % |", "|" + "---|" * (len(tasks) + 2)]
    single_std = std.get("single", {})
    lines.append(
        "| single-task | " + " | ".join(cell(result["single"][t], single_std.get(t)) for t in tasks) + " | 0.00 |"
    )
    for name, values in result["multi"].items():
        run_std = std.get("multi", {}).get(name, {})
        dm = result["delta_m"][name]
        se = result.get("delta_m_stats", {}).get(name, {}).get("se")
        dm_cell = f"{_signed(dm)} ± {se:.2f}" if spread and dm is not None and se is not None else _signed(dm)
        lines.append(f"| {name} | " + " | ".join(cell(values[t], run_std.get(t)) for t in tasks) + f" | {dm_cell} |")
    if seeds is not None:
        lines += ["", _seed_note(result)]
    return "\n".join(lines)


def _seed_note(result: dict) -> str:
    """The line under a compare table: how many seeds, what ± means, where multi-task loses."""
    seeds = result["seeds"]
    n = len(seeds)
    note = f"{n} seed{'s' if n > 1 else ''} ({', '.join(str(s) for s in seeds)})"
    if n > 1:
        winners = [b for b, s in result.get("delta_m_stats", {}).items() if s.get("significant")]
        note += (": mean ± sample std over seeds; Δm mean ± standard error "
                 f"(Δm > 2 SE: {', '.join(winners) if winners else 'none'}).")
    else:
        note += "."
    losses = []
    for name, values in result["multi"].items():
        worse = [t for t in result["tasks"] if _worse(values[t], result["single"][t], result["higher_is_better"][t])]
        if worse:
            losses.append(f"{name}: {', '.join(worse)}")
    if losses:
        return note + " Worse than the single-task model on average: " + "; ".join(losses) + "."
    return note + " No task is worse than its single-task model on average."


def _worse(multi: float, single: float, higher_is_better: bool) -> bool:
    # NaN compares false either way and would hide a diverged run; a non-finite metric counts as a loss.
    if not (math.isfinite(multi) and math.isfinite(single)):
        return True
    return multi < single if higher_is_better else multi > single


def _signed(value) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _train_and_score(tasks, balancer, load_train, evaluation, settings, loss_scale, seed) -> dict:
    """One run with ``seed``: build, compile, fit, evaluate; returns primary metrics, history and final weights."""
    import keras

    from mtl_keras.evaluate.metrics import evaluate_model
    from mtl_keras.model import build_model
    from mtl_keras.train.recipe import make_optimizer

    # Seeded before the data and the model exist, so every run of one seed starts from the same
    # trunk initialisation and sees the same batches in the same order: runs differ only in tasks
    # and balancer, and the comparison within a seed is paired.
    keras.utils.set_random_seed(seed)
    train = load_train(seed)
    model = build_model(tasks, trunk=settings["trunk"], image_size=settings["image_size"], weights=None,
                           zero_init_residual=True)
    names = [t.name for t in tasks]
    # Unknown cardinality (-1/-2) means no schedule to span: the recipe then keeps the peak rate.
    steps = max(int(train.cardinality()), 0) * settings["epochs"]
    optimizer = make_optimizer(settings["optimizer"], settings["learning_rate"], total_steps=steps,
                               warmup_steps=int(round(settings["warmup"] * steps)),
                               weight_decay=settings.get("weight_decay"))
    model.compile(
        optimizer=optimizer,
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
        "seed": int(seed),
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
    learning_rate: float = 2e-3,
    loss_scale: dict | None = None,
    seed: int = 0,
    jit_compile: bool = False,
    log=print,
    data_options: dict | None = None,
    seeds: int = 1,
    optimizer: str = "adamw",
    warmup: float = 0.1,
    label_smoothing: float = 0.1,
    weight_decay: float | None = None,
) -> dict:
    """Train single-task baselines and one multi-task model per balancer, for each seed; return metrics and Δm.

    Every run gets the same trunk, data and budget (``epochs`` × ``train_size`` examples) and the
    project's training recipe (``mtl_keras.train.recipe``: ``optimizer`` at peak ``learning_rate``, linear
    warm-up over the fraction ``warmup`` of the steps, cosine decay; zero-initialised residuals).
    ``seeds=N`` repeats everything for seeds ``seed`` … ``seed + N − 1``: each seed sets the model
    initialisation and the training data's shuffle and flips, while every run of every seed is scored
    on the same ``split`` examples. ``loss_scale`` multiplies a task's loss in every run (``{"box": 100}``:
    box loss in other units), as a compile-time loss weight, which the balancers then work on top of.
    ``label_smoothing`` goes to every classification task. ``data_options`` go to the data source
    (``{"data_dir": ...}`` for a ``tfds:`` dataset).

    The result holds, for every run, the mean over seeds (``single``, ``multi``; the value itself with
    one seed), ``std`` (sample std, ddof=1; None with one seed) and every per-seed value
    (``per_seed``, in the order of ``seeds``). Δm is computed per seed, each multi-task run against
    the single-task runs of the same seed (``per_seed["delta_m"]``); ``delta_m`` is their mean and
    ``delta_m_stats`` adds std, standard error and ``significant`` (mean > 2 SE; None with one seed).
    ``runs`` keeps each run's history, keyed ``single:<task>`` / ``multi:<balancer>``, with
    ``@seed<s>`` appended when there are several seeds.

    Example:
        >>> r = compare("shapes", ["shape", "color"], ["static"], trunk="mobilenet_v3_small",
        ...             image_size=32, epochs=1, train_size=64, eval_size=32, seeds=3)  # doctest: +SKIP
        >>> sorted(r["multi"]), sorted(r["single"]), r["seeds"]  # doctest: +SKIP
        (['static'], ['color', 'shape'], [0, 1, 2])
        >>> len(r["per_seed"]["delta_m"]["static"]), sorted(r["delta_m_stats"]["static"])  # doctest: +SKIP
        (3, ['mean', 'n', 'se', 'significant', 'std'])
    """
    from mtl_keras import data as data_lib
    from mtl_keras.balancing import BALANCERS
    from mtl_keras.train.recipe import OPTIMIZERS, configure_tasks

    # Checked before any data is read: a typo must not cost a training run.
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise MtlError(f"seeds must be a positive integer (the number of seeds), got {seeds!r}")
    optimizer = str(optimizer).strip().lower()
    if optimizer not in OPTIMIZERS:
        raise unknown("optimizer", optimizer, OPTIMIZERS)
    if not 0 <= warmup < 1:
        raise MtlError(f"warmup is a fraction of the run's steps in [0, 1), got {warmup}")
    if not 0 <= label_smoothing < 1:
        raise MtlError(f"label smoothing must be in [0, 1), got {label_smoothing}")
    balancers = [b.strip().lower() for b in (balancers.split(",") if isinstance(balancers, str) else balancers)]
    if not balancers:
        raise MtlError("compare needs at least one balancer")
    for b in balancers:
        if b not in BALANCERS:
            raise unknown("balancer", b, BALANCERS)
    if len(set(balancers)) != len(balancers):
        raise MtlError(f"a balancer is listed twice: {', '.join(balancers)}")
    data_options = dict(data_options or {})
    task_list = data_lib.tasks_for(data, names=tasks, **data_options)
    if len(task_list) < 2:
        raise MtlError("compare needs at least two tasks (one task alone is its own baseline)")
    configure_tasks(task_list, label_smoothing)
    loss_scale = dict(loss_scale or {})
    for name, value in loss_scale.items():
        if name not in [t.name for t in task_list]:
            raise MtlError(f"loss scale names {name!r}, not a task here; tasks: {', '.join(t.name for t in task_list)}")
        if not (value > 0 and math.isfinite(value)):
            raise MtlError(f"loss scale of {name!r} must be a positive number, got {value}")
    seed_list = [int(seed) + k for k in range(seeds)]
    settings = {"trunk": trunk, "image_size": int(image_size), "epochs": int(epochs), "seed": int(seed),
                "learning_rate": float(learning_rate), "jit_compile": bool(jit_compile),
                "optimizer": optimizer, "warmup": float(warmup), "weight_decay": weight_decay}

    def load_train(s):
        return data_lib.load(data, "train", image_size=image_size, batch_size=batch_size, tasks=task_list,
                            size=train_size, seed=s, **data_options)

    # One evaluation split for all seeds, so seeds differ in training only and are scored on the same images.
    evaluation = data_lib.load(data, split, image_size=image_size, batch_size=batch_size, tasks=task_list,
                              size=eval_size, seed=seed, **data_options)
    names = [t.name for t in task_list]
    result = {
        "data": data, "split": split, "tasks": names,
        "metric": {t.name: t.primary_metric for t in task_list},
        "higher_is_better": {t.name: bool(t.higher_is_better) for t in task_list},
        "budget": {**settings, "seeds": seeds, "batch_size": batch_size, "train_size": train_size,
                   "eval_size": eval_size, "label_smoothing": float(label_smoothing), "zero_init_residual": True},
        "seeds": seed_list, "loss_scale": loss_scale,
        "single": {}, "multi": {}, "delta_m": {}, "std": {"single": {}, "multi": {}}, "delta_m_stats": {},
        "per_seed": {"single": {t: [] for t in names}, "multi": {b: {t: [] for t in names} for b in balancers},
                     "delta_m": {b: [] for b in balancers}},
        "runs": {},
    }
    per_seed = result["per_seed"]
    up = result["higher_is_better"]

    def key(kind, s):
        return kind if seeds == 1 else f"{kind}@seed{s}"

    # Seeds outermost: an interrupted comparison has finished whole seeds, each a complete comparison.
    for s in seed_list:
        at = f" (seed {s})" if seeds > 1 else ""
        single = {}
        for task in task_list:
            run = _train_and_score([task], "static", load_train, evaluation, settings, loss_scale, s)
            single[task.name] = run["metrics"][task.name]
            per_seed["single"][task.name].append(single[task.name])
            result["runs"][key(f"single:{task.name}", s)] = run
            log(f"single-task {task.name}{at}: {task.primary_metric} {single[task.name]:.4f} ({run['seconds']} s)")
        for balancer in balancers:
            run = _train_and_score(task_list, balancer, load_train, evaluation, settings, loss_scale, s)
            for t in names:
                per_seed["multi"][balancer][t].append(run["metrics"][t])
            result["runs"][key(f"multi:{balancer}", s)] = run
            try:
                dm = delta_m(run["metrics"], single, up)
            except MtlError as e:  # e.g. a baseline at 0: keep every trained number, say why Δm is missing
                dm = None
                log(f"warning{at}: {e}")
            per_seed["delta_m"][balancer].append(dm)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in run["metrics"].items())
            dm_text = "n/a" if dm is None else f"{dm:+.2f}%"
            log(f"multi-task {balancer}{at}: {shown}; Δm {dm_text} ({run['seconds']} s)")

    for t in names:
        summary = seed_summary(per_seed["single"][t])
        result["single"][t], result["std"]["single"][t] = summary["mean"], summary["std"]
    for b in balancers:
        means, stds = {}, {}
        for t in names:
            summary = seed_summary(per_seed["multi"][b][t])
            means[t], stds[t] = summary["mean"], summary["std"]
        result["multi"][b], result["std"]["multi"][b] = means, stds
        result["delta_m_stats"][b] = delta_m_summary(per_seed["delta_m"][b])
        result["delta_m"][b] = result["delta_m_stats"][b]["mean"]
    if seeds > 1:
        for b, st in result["delta_m_stats"].items():
            if st["mean"] is None:
                log(f"multi-task {b}: Δm undefined for at least one seed, so no mean over seeds")
            else:
                log(f"multi-task {b}: Δm {st['mean']:+.2f} ± {st['se']:.2f}% (mean ± SE over {seeds} seeds)")
    return result
