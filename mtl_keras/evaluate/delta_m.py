"""Δm (Maninis, Radosavovic & Kokkinos, CVPR 2019), its summary over seeds, and compare's table.

Δm is the mean over tasks of the relative change of the multi-task model's primary metric against the
single-task baseline, signed so that positive means better. Over several seeds each number gets its
mean, standard deviation and standard error, and Δm is called significant when it is more than two
standard errors from 0.

Example:
    >>> delta_m({"acc": 0.88, "mae": 0.45}, {"acc": 0.80, "mae": 0.50}, {"acc": True, "mae": False})
    10.0
"""

from __future__ import annotations

import math
import statistics

from mtl_keras.errors import MtlError


def delta_m(multi: dict, single: dict, higher_is_better: dict) -> float:
    """Δm in percent: mean over tasks of ±(M_multi − M_single) / M_single × 100.

    The sign is + for metrics where higher is better and − where lower is better, so Δm > 0 means
    the multi-task model beats the single-task baselines on average.

    Args:
        multi: ``{task: metric}`` of the multi-task model.
        single: ``{task: metric}`` of the single-task baselines; its tasks are the ones averaged.
        higher_is_better: ``{task: bool}``, each metric's direction.

    Returns:
        Δm in percent, a float rounded to 6 decimals.

    Raises:
        MtlError: no task, a task missing from ``multi`` or ``higher_is_better``, a non-finite or zero baseline.

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

    Args:
        values: the per-seed values (numbers, at least one).

    Returns:
        ``{"mean", "std", "se", "n"}``; ``std`` and ``se`` are None for one value.

    Raises:
        MtlError: no value.

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

    Args:
        per_seed: Δm of each seed (floats, or None where undefined).

    Returns:
        ``{"mean", "std", "se", "n", "significant"}`` (rounded to 6 decimals); all but ``n`` None when a Δm is None.

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

    Args:
        result: a ``compare`` result: ``tasks``, ``metric``, ``higher_is_better``, ``single``, ``multi``,
            ``delta_m``, and with seeds ``seeds``, ``std``, ``delta_m_stats``.

    Returns:
        The table as one string (lines joined by newlines), the seeds note under it when ``seeds`` is set.

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
    speed = _speed_cells(result)
    speed_head = "" if speed is None else f" {speed[0]} |"
    lines = ["| run | " + " | ".join(head) + " | Δm % |" + speed_head,
             "|" + "---|" * (len(tasks) + 2 + (speed is not None))]
    single_std = std.get("single", {})
    lines.append(
        "| single-task | " + " | ".join(cell(result["single"][t], single_std.get(t)) for t in tasks) + " | 0.00 |"
        + ("" if speed is None else " |")
    )
    for name, values in result["multi"].items():
        run_std = std.get("multi", {}).get(name, {})
        dm = result["delta_m"][name]
        se = result.get("delta_m_stats", {}).get(name, {}).get("se")
        dm_cell = f"{_signed(dm)} ± {se:.2f}" if spread and dm is not None and se is not None else _signed(dm)
        lines.append(f"| {name} | " + " | ".join(cell(values[t], run_std.get(t)) for t in tasks) + f" | {dm_cell} |"
                     + ("" if speed is None else f" {speed[1].get(name, '')} |"))
    if seeds is not None:
        lines += ["", _seed_note(result)]
    return "\n".join(lines)


def _speed_cells(result: dict):
    """``(header, {run: cell})`` for the training-speed column, or None when the runs have no rates.

    Relative to the ``static`` multi-task run when there is one (step time ÷ static, lower is
    faster), else the images/s themselves.
    """
    rates = {k: v for k, v in (result.get("images_per_second") or {}).items() if v}
    if not rates:
        return None
    if rates.get("static"):
        return "step time ÷ static", {k: f"{rates['static'] / v:.2f}" for k, v in rates.items()}
    return "images/s", {k: f"{v:.1f}" for k, v in rates.items()}


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
