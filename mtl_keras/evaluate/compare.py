"""Is multi-task learning better here? Single-task baselines against multi-task runs, and Δm.

``compare`` trains each task alone and all tasks together under each chosen balancer, with the same
trunk, data, seed and budget, evaluates every run on the same split and reports each task's primary
metric and Δm (Maninis, Radosavovic & Kokkinos, CVPR 2019): the mean over tasks of the relative
change against the single-task baseline, signed so that positive means better. With ``seeds=N`` every
run is repeated for N seeds and the result carries every per-seed number with its mean and spread
(``mtl_keras.evaluate.delta_m``, which also formats the table).

Example:
    >>> CompareSettings(seed=3, seeds=2).seed_list
    [3, 4]
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any, Callable

import keras

from mtl_keras import data as data_lib
from mtl_keras import model as model_lib
from mtl_keras.errors import MtlError
from mtl_keras.evaluate.compare_settings import CompareSettings, balancer_names  # noqa: F401 (re-exported)
from mtl_keras.evaluate.delta_m import delta_m, delta_m_summary, seed_summary
from mtl_keras.evaluate.metrics import evaluate_model
from mtl_keras.train import recipe
from mtl_keras.train.callbacks import ThroughputLogger


def _train_and_score(tasks, balancer, load_train, evaluation, settings, loss_scale, seed) -> dict:
    """One run with ``seed``: build, compile, fit, evaluate; returns primary metrics, history and final weights."""
    # Seeded before the data and the model exist, so every run of one seed starts from the same
    # trunk initialisation and sees the same batches in the same order: runs differ only in tasks
    # and balancer, and the comparison within a seed is paired.
    keras.utils.set_random_seed(seed)
    train = load_train(seed)
    # Looked up on the modules at call time, so a test can put a tiny model or a spy in their place.
    model = model_lib.build_model(tasks, trunk=settings["trunk"], image_size=settings["image_size"], weights=None,
                                  zero_init_residual=True)
    names = [t.name for t in tasks]
    # Unknown cardinality (-1/-2) means no schedule to span: the recipe then keeps the peak rate.
    steps = max(int(train.cardinality()), 0) * settings["epochs"]
    optimizer = recipe.make_optimizer(settings["optimizer"], settings["learning_rate"], total_steps=steps,
                                      warmup_steps=int(round(settings["warmup"] * steps)),
                                      weight_decay=settings.get("weight_decay"))
    model.compile(
        optimizer=optimizer,
        loss_weights={k: v for k, v in loss_scale.items() if k in names},
        balancer=balancer,
        jit_compile=settings["jit_compile"],
    )
    started = time.time()
    speed = ThroughputLogger(batch_size=settings.get("batch_size", 1), verbose=0)
    history = model.fit(train, epochs=settings["epochs"], verbose=0, callbacks=[speed])
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
        # The last epoch's rate: its first batch (tracing, iterator start) is left out.
        "images_per_second": round(float(speed.history[-1]), 2) if speed.history else None,
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "weights": model.balancer.current_weights() if model.balancer is not None else None,
    }


@dataclasses.dataclass
class _Plan:
    """A checked comparison with its tasks and evaluation data, ready to train."""

    settings: CompareSettings
    tasks: list
    evaluation: Any
    log: Callable

    def load_train(self, seed: int):
        s = self.settings
        return data_lib.load(s.data, "train", image_size=s.image_size, batch_size=s.batch_size, tasks=self.tasks,
                             size=s.train_size, seed=seed, **s.data_options)

    def key(self, kind: str, seed: int) -> str:
        return kind if self.settings.seeds == 1 else f"{kind}@seed{seed}"


def _prepare(settings: CompareSettings, log) -> _Plan:
    """The tasks (at least two, configured), the loss scale checked against them, the evaluation split."""
    task_list = data_lib.tasks_for(settings.data, names=settings.tasks, **settings.data_options)
    if len(task_list) < 2:
        raise MtlError("compare needs at least two tasks (one task alone is its own baseline)")
    names = [t.name for t in task_list]
    for name, others in settings.depends_on.items():
        for n in (name, *others):
            if n not in names:
                raise MtlError(f"depends_on names {n!r}, not compared here; tasks: {', '.join(names)}")
    recipe.configure_tasks(task_list, settings.label_smoothing, settings.depends_on,
                           dependencies_only=settings.dependencies_only)
    for name, value in settings.loss_scale.items():
        if name not in names:
            raise MtlError(f"loss scale names {name!r}, not a task here; tasks: {', '.join(names)}")
        if not (value > 0 and math.isfinite(value)):
            raise MtlError(f"loss scale of {name!r} must be a positive number, got {value}")
    # One evaluation split for all seeds, so seeds differ in training only and are scored on the same images.
    evaluation = data_lib.load(settings.data, settings.split, image_size=settings.image_size,
                               batch_size=settings.batch_size, tasks=task_list, size=settings.eval_size,
                               seed=settings.seed, **settings.data_options)
    return _Plan(settings=settings, tasks=task_list, evaluation=evaluation, log=log)


def _new_result(plan: _Plan) -> dict:
    """The result's skeleton: settings, tasks and their metrics, empty per-seed lists to fill."""
    s, names, balancers = plan.settings, [t.name for t in plan.tasks], plan.settings.balancers
    return {
        "data": s.data, "split": s.split, "tasks": names,
        "metric": {t.name: t.primary_metric for t in plan.tasks},
        "higher_is_better": {t.name: bool(t.higher_is_better) for t in plan.tasks},
        "budget": s.budget(), "seeds": s.seed_list, "loss_scale": s.loss_scale,
        "single": {}, "multi": {}, "delta_m": {}, "std": {"single": {}, "multi": {}}, "delta_m_stats": {},
        "per_seed": {"single": {t: [] for t in names}, "multi": {b: {t: [] for t in names} for b in balancers},
                     "delta_m": {b: [] for b in balancers}, "images_per_second": {b: [] for b in balancers}},
        "runs": {},
    }


def _run_seed(plan: _Plan, result: dict, seed: int) -> None:
    """Every run of one seed: each task alone, then every balancer; appends to ``result``."""
    s, log, per_seed = plan.settings, plan.log, result["per_seed"]
    at = f" (seed {seed})" if s.seeds > 1 else ""
    training = s.training()
    single = {}
    for task in plan.tasks:
        run = _train_and_score([_alone(task)], "static", plan.load_train, plan.evaluation, training, s.loss_scale, seed)
        single[task.name] = run["metrics"][task.name]
        per_seed["single"][task.name].append(single[task.name])
        result["runs"][plan.key(f"single:{task.name}", seed)] = run
        log(f"single-task {task.name}{at}: {task.primary_metric} {single[task.name]:.4f} ({run['seconds']} s)")
    for balancer in s.balancers:
        run = _train_and_score(plan.tasks, balancer, plan.load_train, plan.evaluation, training, s.loss_scale, seed)
        for t in per_seed["multi"][balancer]:
            per_seed["multi"][balancer][t].append(run["metrics"][t])
        result["runs"][plan.key(f"multi:{balancer}", seed)] = run
        try:
            dm = delta_m(run["metrics"], single, result["higher_is_better"])
        except MtlError as e:  # e.g. a baseline at 0: keep every trained number, say why Δm is missing
            dm = None
            log(f"warning{at}: {e}")
        per_seed["delta_m"][balancer].append(dm)
        per_seed["images_per_second"][balancer].append(run.get("images_per_second"))
        shown = ", ".join(f"{k} {v:.4f}" for k, v in run["metrics"].items())
        dm_text = "n/a" if dm is None else f"{dm:+.2f}%"
        log(f"multi-task {balancer}{at}: {shown}; Δm {dm_text} ({run['seconds']} s)")


def _alone(task):
    """``task`` for its single-task baseline: the same head, without the other tasks it depends on
    (so it reads the shared features, whatever ``shared_features`` says: it has nothing else)."""
    if not task.depends_on:
        return task
    alone = copy.copy(task)
    alone.depends_on = ()
    alone.shared_features = True
    return alone


def _summarize(result: dict, seeds: int, log) -> None:
    """Means and spreads over seeds into ``result`` (single, multi, std, delta_m, delta_m_stats)."""
    per_seed = result["per_seed"]
    for t in result["tasks"]:
        summary = seed_summary(per_seed["single"][t])
        result["single"][t], result["std"]["single"][t] = summary["mean"], summary["std"]
    for b, values in per_seed["multi"].items():
        summaries = {t: seed_summary(values[t]) for t in result["tasks"]}
        result["multi"][b] = {t: sm["mean"] for t, sm in summaries.items()}
        result["std"]["multi"][b] = {t: sm["std"] for t, sm in summaries.items()}
        result["delta_m_stats"][b] = delta_m_summary(per_seed["delta_m"][b])
        result["delta_m"][b] = result["delta_m_stats"][b]["mean"]
        rates = [v for v in per_seed["images_per_second"][b] if v]
        result.setdefault("images_per_second", {})[b] = sum(rates) / len(rates) if rates else None
    if seeds > 1:
        for b, st in result["delta_m_stats"].items():
            if st["mean"] is None:
                log(f"multi-task {b}: Δm undefined for at least one seed, so no mean over seeds")
            else:
                log(f"multi-task {b}: Δm {st['mean']:+.2f} ± {st['se']:.2f}% (mean ± SE over {seeds} seeds)")


def run_comparison(settings: CompareSettings, log=print) -> dict:
    """Train and score every run of ``settings``: prepare -> each seed's runs -> summary over seeds.

    Seeds are outermost, so an interrupted comparison has finished whole seeds, each a complete one.

    Args:
        settings: what to compare (checked here).
        log: called with one line per finished run.

    Returns:
        The result described in ``compare``.

    Example:
        >>> r = run_comparison(CompareSettings(tasks=["shape", "color"], balancers=["static"],
        ...                    trunk="mobilenet_v3_small", image_size=32, epochs=1, train_size=64))  # doctest: +SKIP
        >>> r["seeds"]  # doctest: +SKIP
        [0]
    """
    settings = settings.checked()
    plan = _prepare(settings, log)
    result = _new_result(plan)
    for seed in settings.seed_list:
        _run_seed(plan, result, seed)
    _summarize(result, settings.seeds, log)
    return result


def compare(
    data: str = "shapes", tasks=None, balancers=("static", "uncertainty", "dwa", "gradnorm", "pcgrad"),
    trunk: str = "resnet50", image_size: int = 64, epochs: int = 3, batch_size: int = 32,
    train_size: int | None = 2048, eval_size: int | None = 512, split: str = "val", learning_rate: float = 2e-3,
    loss_scale: dict | None = None, seed: int = 0, jit_compile: bool = False, log=print,
    data_options: dict | None = None, seeds: int = 1, optimizer: str = "adamw", warmup: float = 0.1,
    label_smoothing: float = 0.1, weight_decay: float | None = None, depends_on: dict | None = None,
    dependencies_only=(),
) -> dict:
    """Train single-task baselines and one multi-task model per balancer, for each seed; return metrics and Δm.

    The keyword form of ``run_comparison(CompareSettings(...), log)``.

    Args:
        data, tasks, balancers, trunk, image_size, epochs, batch_size, train_size, eval_size, split,
        learning_rate, loss_scale, seed, jit_compile, data_options, seeds, optimizer, warmup,
        label_smoothing, weight_decay, depends_on, dependencies_only: the ``CompareSettings`` fields.
        log: called with one line per finished run.

    Returns:
        For every run, the mean over seeds (``single``, ``multi``; the value itself with one seed),
        ``std`` (sample std, ddof=1; None with one seed) and every per-seed value (``per_seed``, in
        the order of ``seeds``). Δm is computed per seed, each multi-task run against the single-task
        runs of the same seed (``per_seed["delta_m"]``); ``delta_m`` is their mean and
        ``delta_m_stats`` adds std, standard error and ``significant`` (mean > 2 SE; None with one
        seed). ``runs`` keeps each run's history, keyed ``single:<task>`` / ``multi:<balancer>``,
        with ``@seed<s>`` appended when there are several seeds.

    Example:
        >>> r = compare("shapes", ["shape", "color"], ["static"], trunk="mobilenet_v3_small",
        ...             image_size=32, epochs=1, train_size=64, eval_size=32, seeds=3)  # doctest: +SKIP
        >>> sorted(r["multi"]), sorted(r["single"]), r["seeds"]  # doctest: +SKIP
        (['static'], ['color', 'shape'], [0, 1, 2])
        >>> len(r["per_seed"]["delta_m"]["static"]), sorted(r["delta_m_stats"]["static"])  # doctest: +SKIP
        (3, ['mean', 'n', 'se', 'significant', 'std'])
    """
    settings = CompareSettings(
        data=data, tasks=tasks, balancers=balancers, trunk=trunk, image_size=image_size, epochs=epochs,
        batch_size=batch_size, train_size=train_size, eval_size=eval_size, split=split,
        learning_rate=learning_rate, loss_scale=loss_scale, seed=seed, jit_compile=jit_compile,
        data_options=data_options, seeds=seeds, optimizer=optimizer, warmup=warmup,
        label_smoothing=label_smoothing, weight_decay=weight_decay, depends_on=depends_on,
        dependencies_only=dependencies_only,
    )
    return run_comparison(settings, log)
