"""The training recipe: optimizer, learning-rate warm-up and schedule, weight decay.

One place for what ``mtl-keras train``, ``compare`` and ``bench/time_to_accuracy.py`` train with,
so a figure measured by one holds for the others. The defaults are the ones measured best for a
from-scratch trunk on a few thousand steps (README, "The recipe"): AdamW, a short linear warm-up,
cosine decay to 1 % of the peak, no weight decay on BatchNorm parameters and biases.

Example:
    >>> opt = make_optimizer("adamw", 2e-3, total_steps=100, warmup_steps=10)
    >>> round(float(opt.learning_rate), 6)  # step 0 of the warm-up
    0.0
"""

from __future__ import annotations

import math

from mtl_keras.errors import MtlError, unknown

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")
# Parameters that scale or shift features: decaying them towards 0 only fights BatchNorm
# ("Bag of Tricks", He et al. 2019, "no bias decay").
NO_DECAY = ("gamma", "beta", "bias")


def learning_rate_schedule(peak: float, total_steps: int, warmup_steps: int = 0, schedule: str = "cosine"):
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then cosine decay to 1 % of it.

    Keras' own ``CosineDecay`` (with its ``warmup_target``) does both; ``constant`` keeps ``peak``
    after the warm-up.

    Args:
        peak: the peak learning rate, a positive finite number.
        total_steps: the run's optimizer steps; 0 or less (unknown length) gives the constant ``peak``.
        warmup_steps: steps of the linear warm-up (>= 0, capped at ``total_steps``).
        schedule: ``cosine`` (default) or ``constant``.

    Returns:
        A ``keras.optimizers.schedules.CosineDecay``, or the float ``peak`` where nothing changes.

    Raises:
        MtlError: an unknown schedule, a non-positive peak, or negative warm-up steps.

    Example:
        >>> s = learning_rate_schedule(1.0, total_steps=110, warmup_steps=10)
        >>> [round(float(s(k)), 3) for k in (0, 5, 10, 110)]
        [0.0, 0.5, 1.0, 0.01]
    """
    import keras  # lazy: the CLI reads this module's defaults for --help without TensorFlow

    if schedule not in SCHEDULES:
        raise unknown("learning-rate schedule", schedule, SCHEDULES)
    if not (peak > 0 and math.isfinite(peak)):
        raise MtlError(f"learning rate must be a positive number, got {peak}")
    total_steps, warmup_steps = int(total_steps), int(warmup_steps)
    if warmup_steps < 0:
        raise MtlError(f"warm-up steps must be >= 0, got {warmup_steps}")
    if total_steps <= 0:
        # Unknown length (an endless dataset): no schedule to span, the peak rate throughout.
        return float(peak)
    warmup_steps = min(warmup_steps, total_steps)
    if schedule == "constant":
        if not warmup_steps:
            return float(peak)
        # A cosine with alpha=1 never decays: warm-up, then the peak rate.
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(total_steps - warmup_steps, 1), alpha=1.0,
            warmup_target=float(peak), warmup_steps=warmup_steps,
        )
    if not warmup_steps:
        return keras.optimizers.schedules.CosineDecay(float(peak), decay_steps=total_steps, alpha=0.01)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(total_steps - warmup_steps, 1), alpha=0.01,
        warmup_target=float(peak), warmup_steps=warmup_steps,
    )


def make_optimizer(
    name: str = "adamw",
    learning_rate: float = 2e-3,
    total_steps: int = 0,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    weight_decay: float | None = None,
):
    """A Keras optimizer with the recipe's schedule; ``weight_decay=None`` takes the optimizer's default.

    ``adamw`` (decoupled decay, default 1e-4 here) and ``sgd`` (Nesterov momentum 0.9, L2-style
    decay 5e-5) leave BatchNorm scales/shifts and biases undecayed; ``adam`` has no decay.

    Args:
        name: ``adamw`` (default), ``adam`` or ``sgd`` (case-insensitive).
        learning_rate: the peak learning rate.
        total_steps: the run's optimizer steps, for the schedule (0: constant rate).
        warmup_steps: steps of the linear warm-up.
        schedule: ``cosine`` or ``constant``.
        weight_decay: the decay (finite, >= 0); ``None`` takes 1e-4 (adamw), 5e-5 (sgd), none (adam).

    Returns:
        A ``keras.optimizers.Optimizer`` (``AdamW``, ``Adam`` or ``SGD``).

    Raises:
        MtlError: an unknown optimizer, a bad schedule or decay, or a weight decay with ``adam``.

    Example:
        >>> type(make_optimizer("sgd", 0.1, total_steps=10)).__name__
        'SGD'
    """
    import keras  # lazy: the CLI reads this module's defaults for --help without TensorFlow

    name = str(name).strip().lower()
    if name not in OPTIMIZERS:
        raise unknown("optimizer", name, OPTIMIZERS)
    if weight_decay is not None and not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise MtlError(f"weight decay must be a finite number >= 0, got {weight_decay}")
    rate = learning_rate_schedule(learning_rate, total_steps, warmup_steps, schedule)
    if name == "adam":
        if weight_decay:
            raise MtlError("adam takes no weight decay; use --optimizer adamw for decoupled weight decay")
        return keras.optimizers.Adam(rate)
    if name == "adamw":
        opt = keras.optimizers.AdamW(rate, weight_decay=1e-4 if weight_decay is None else weight_decay)
    else:
        opt = keras.optimizers.SGD(rate, momentum=0.9, nesterov=True,
                                   weight_decay=5e-5 if weight_decay is None else weight_decay)
    opt.exclude_from_weight_decay(var_names=list(NO_DECAY))
    return opt


def configure_tasks(tasks, label_smoothing: float = 0.0, depends_on: dict | None = None,
                    dependencies_only=()) -> list:
    """Apply the recipe's per-task settings in place: label smoothing on every task type that has it,
    ``depends_on`` (``{task: (other, ...)}``, e.g. from ``--depends-on``) and which heads read only
    their dependencies (``--dependencies-only``); returns ``tasks``.

    Args:
        tasks: the ``Task`` objects to change (in place).
        label_smoothing: set on every task that has a ``label_smoothing`` attribute (0 for none).
        depends_on: ``{task name: (other task names)}``; tasks not in it keep theirs.
        dependencies_only: names of tasks whose heads skip the shared pooled features
            (``Task.shared_features = False``); the others keep theirs.

    Returns:
        ``tasks``, the same list.

    Raises:
        MtlError: ``dependencies_only`` names a task that is not here or depends on none.

    Example:
        >>> from mtl_keras.tasks import ClassificationTask
        >>> [t] = configure_tasks([ClassificationTask("shape", ["a", "b"])], 0.1, {"shape": ("mask",)})
        >>> t.label_smoothing, t.depends_on
        (0.1, ('mask',))
    """
    depends_on = depends_on or {}
    for task in tasks:
        # Any task type with a label_smoothing setting takes it, not only the built-in classification.
        if hasattr(task, "label_smoothing"):
            task.label_smoothing = float(label_smoothing)
        if task.name in depends_on:
            task.depends_on = tuple(depends_on[task.name])
        if task.name in dependencies_only:
            if not task.depends_on:
                raise MtlError(f"dependencies_only names {task.name!r}, which depends on no task here: "
                               f"its head would read nothing")
            task.shared_features = False
    unknown_names = sorted(set(dependencies_only) - {t.name for t in tasks})
    if unknown_names:
        raise MtlError(f"dependencies_only names {', '.join(map(repr, unknown_names))}, not a task here; "
                       f"tasks: {', '.join(t.name for t in tasks)}")
    return tasks


# The recipe's defaults, measured on the main job (README, "The recipe"); the flags of train and compare.
DEFAULTS = {"optimizer": "adamw", "learning_rate": 2e-3, "warmup": 0.1, "label_smoothing": 0.1}


def add_recipe_arguments(parser, schedule: bool = True) -> None:
    """The recipe's command-line flags, shared by ``mtl-keras train`` and ``compare``.

    Args:
        parser: the ``argparse.ArgumentParser`` to add the flags to.
        schedule: also add ``--lr-schedule`` (``compare`` leaves it out).

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser(); add_recipe_arguments(p)
        >>> a = p.parse_args(["--warmup", "0.2"]); (a.optimizer, a.learning_rate, a.warmup)
        ('adamw', 0.002, 0.2)
    """
    parser.add_argument("--optimizer", default=DEFAULTS["optimizer"], help="adamw | adam | sgd (Nesterov momentum 0.9)")
    parser.add_argument("--learning-rate", type=float, default=DEFAULTS["learning_rate"],
                        help="peak learning rate, after the warm-up (default: %(default)s)")
    if schedule:
        parser.add_argument("--lr-schedule", default="cosine", choices=list(SCHEDULES),
                            help="cosine: decay to 1%% of the peak over the run (steady final epochs); constant: fixed rate")
    parser.add_argument("--warmup", type=float, default=DEFAULTS["warmup"],
                        help="fraction of the run's steps spent warming the learning rate up from 0 (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="decoupled weight decay (adamw: 1e-4, sgd: 5e-5 by default; BatchNorm and biases never decay)")
    parser.add_argument("--label-smoothing", type=float, default=DEFAULTS["label_smoothing"],
                        help="label smoothing of every classification task's cross-entropy (default: %(default)s)")


def check_recipe_arguments(args) -> None:
    """One-line errors for impossible recipe flags, before anything heavy runs.

    Args:
        args: the parsed ``argparse.Namespace`` of the recipe flags (``weight_decay`` optional).

    Raises:
        MtlError: an unknown optimizer or a flag out of its range.

    Example:
        >>> import argparse
        >>> check_recipe_arguments(argparse.Namespace(optimizer="adamw", learning_rate=-1, warmup=0, label_smoothing=0))
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: --learning-rate must be positive, got -1
    """
    if str(args.optimizer).strip().lower() not in OPTIMIZERS:
        raise unknown("optimizer", args.optimizer, OPTIMIZERS)
    if not args.learning_rate > 0:
        raise MtlError(f"--learning-rate must be positive, got {args.learning_rate}")
    if not 0 <= args.warmup < 1:
        raise MtlError(f"--warmup is a fraction of the run's steps in [0, 1), got {args.warmup}")
    if not 0 <= args.label_smoothing < 1:
        raise MtlError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    decay = getattr(args, "weight_decay", None)
    if decay is not None and not (decay >= 0 and math.isfinite(decay)):
        raise MtlError(f"--weight-decay must be a finite number >= 0, got {decay}")

