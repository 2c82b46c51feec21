"""What a comparison trains and scores (``CompareSettings``), and the balancer list it reads.

Checked before any data is read, so a typo in a flag never costs a training run.

Example:
    >>> CompareSettings(balancers="static, dwa").checked().balancers
    ['static', 'dwa']
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mtl_keras.balancing import BALANCERS, get_balancer
from mtl_keras.errors import MtlError, unknown
from mtl_keras.train import recipe


def balancer_names(text) -> list[str]:
    """Balancer names from a list or comma-separated text; ``all`` is every registered balancer.

    A gradient-level balancer may carry its level: ``mgda@parameters`` (the default is its own).

    Args:
        text: ``"static,pcgrad"``, ``["static", "pcgrad"]`` or ``"all"``.

    Returns:
        The lower-case names, ``static`` first for ``all``.

    Raises:
        MtlError: an unknown name or level, or none at all.

    Example:
        >>> balancer_names("static, PCGrad@parameters")
        ['static', 'pcgrad@parameters']
        >>> names = balancer_names("all"); names[0], len(names) == len(BALANCERS)
        ('static', True)
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    items = [b.strip().lower() for b in items if b.strip()]
    if items == ["all"]:
        return ["static", *sorted(k for k in BALANCERS if k != "static")]
    if not items:
        raise MtlError("compare needs at least one balancer")
    for item in items:
        get_balancer(item)  # refuses an unknown name or level
    return items


@dataclasses.dataclass
class CompareSettings:
    """What a comparison trains and scores: the same for every run, so runs differ only in tasks and balancer.

    Every run gets the same trunk, data and budget (``epochs`` × ``train_size`` examples) and the
    project's training recipe (``mtl_keras.train.recipe``: ``optimizer`` at peak ``learning_rate``, linear
    warm-up over the fraction ``warmup`` of the steps, cosine decay; zero-initialised residuals).

    Args:
        data: the dataset (``shapes``, ``tfds:NAME``, ``coco:DIR``).
        tasks: task names (a list or comma-separated), at least two; None: every label of the dataset.
        balancers: the multi-task balancers, one multi-task run each (a list or comma-separated).
        trunk: the shared trunk of every run.
        image_size: input size in pixels.
        epochs: epochs of every run.
        batch_size: examples per batch.
        train_size: training examples per epoch (None: the split's size).
        eval_size: examples of ``split`` every run is scored on.
        split: ``val`` or ``test``.
        learning_rate: the recipe's peak learning rate.
        loss_scale: task -> factor on its loss in every run (``{"box": 100}``: box loss in other units),
            a compile-time loss weight the balancers then work on top of.
        seed: the first seed.
        jit_compile: compile the train steps with XLA.
        data_options: source options (``{"data_dir": ...}`` for a ``tfds:`` dataset).
        seeds: repeat everything for seeds ``seed`` … ``seed + seeds − 1`` (init, training data's
            shuffle and flips; every run of every seed is scored on the same examples).
        optimizer: ``adamw``, ``adam`` or ``sgd``.
        warmup: fraction of the steps spent warming up, in [0, 1).
        label_smoothing: for every classification task, in [0, 1).
        weight_decay: the optimizer's weight decay (None: the recipe's default).
        depends_on: ``{task: (other, ...)}``: in the multi-task runs that task's head also reads those
            tasks' outputs (``--depends-on``, e.g. ``{"shape": ("objects",)}``); its single-task
            baseline has the same head without them, since it trains alone.
        dependencies_only: tasks whose heads, in the multi-task runs, read only their ``depends_on``
            tasks and not the shared pooled features (``--dependencies-only``); their single-task
            baselines read the shared features, having nothing else.

    Example:
        >>> s = CompareSettings(tasks=["shape", "box"], balancers="static, PCGrad", seeds=2).checked()
        >>> s.balancers, s.seed_list, s.training()["optimizer"]
        (['static', 'pcgrad'], [0, 1], 'adamw')
        >>> CompareSettings(balancers="static,static").checked()
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: a balancer is listed twice: static, static
    """

    data: str = "shapes"
    tasks: Any = None
    balancers: Any = ("static", "uncertainty", "dwa", "gradnorm", "pcgrad")
    trunk: str = "resnet50"
    image_size: int = 64
    epochs: int = 3
    batch_size: int = 32
    train_size: int | None = 2048
    eval_size: int | None = 512
    split: str = "val"
    learning_rate: float = 2e-3
    loss_scale: dict | None = None
    seed: int = 0
    jit_compile: bool = False
    data_options: dict | None = None
    seeds: int = 1
    optimizer: str = "adamw"
    warmup: float = 0.1
    label_smoothing: float = 0.1
    weight_decay: float | None = None
    depends_on: dict | None = None
    dependencies_only: tuple = ()

    def checked(self) -> CompareSettings:
        """The settings normalised (balancer and optimizer names, plain dicts) and checked.

        Checked before any data is read: a typo must not cost a training run.

        Returns:
            A checked copy.

        Raises:
            MtlError: a bad seed count, optimizer, warm-up, label smoothing or balancer list.

        Example:
            >>> CompareSettings(seeds=0).checked()
            Traceback (most recent call last):
            ...
            mtl_keras.errors.MtlError: seeds must be a positive integer (the number of seeds), got 0
        """
        seeds = self.seeds
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise MtlError(f"seeds must be a positive integer (the number of seeds), got {seeds!r}")
        optimizer = str(self.optimizer).strip().lower()
        if optimizer not in recipe.OPTIMIZERS:
            raise unknown("optimizer", optimizer, recipe.OPTIMIZERS)
        if not 0 <= self.warmup < 1:
            raise MtlError(f"warmup is a fraction of the run's steps in [0, 1), got {self.warmup}")
        if not 0 <= self.label_smoothing < 1:
            raise MtlError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        balancers = balancer_names(self.balancers)
        if len(set(balancers)) != len(balancers):
            raise MtlError(f"a balancer is listed twice: {', '.join(balancers)}")
        return dataclasses.replace(self, optimizer=optimizer, balancers=balancers,
                                   data_options=dict(self.data_options or {}), loss_scale=dict(self.loss_scale or {}),
                                   depends_on={k: tuple(v) for k, v in (self.depends_on or {}).items()},
                                   dependencies_only=tuple(self.dependencies_only or ()))

    @property
    def seed_list(self) -> list[int]:
        """The seeds every run is repeated for.

        Example:
            >>> CompareSettings(seed=3, seeds=2).seed_list
            [3, 4]
        """
        return [int(self.seed) + k for k in range(self.seeds)]

    def training(self) -> dict:
        """What every run trains with (the ``settings`` of one run; also the core of ``budget``).

        Returns:
            trunk, image_size, epochs, seed, learning_rate, jit_compile, optimizer, warmup, weight_decay.

        Example:
            >>> CompareSettings(epochs=2).training()["epochs"]
            2
        """
        return {"trunk": self.trunk, "image_size": int(self.image_size), "epochs": int(self.epochs),
                "batch_size": int(self.batch_size),
                "seed": int(self.seed), "learning_rate": float(self.learning_rate),
                "jit_compile": bool(self.jit_compile), "optimizer": self.optimizer, "warmup": float(self.warmup),
                "weight_decay": self.weight_decay}

    def budget(self) -> dict:
        """The result's ``budget``: what every run got, for the report.

        Returns:
            ``training()`` plus seeds, batch and split sizes, label smoothing and zero-init residuals.

        Example:
            >>> CompareSettings(seeds=3).budget()["seeds"]
            3
        """
        return {**self.training(), "seeds": self.seeds, "batch_size": self.batch_size,
                "train_size": self.train_size, "eval_size": self.eval_size,
                "label_smoothing": float(self.label_smoothing), "zero_init_residual": True,
                "depends_on": {k: list(v) for k, v in (self.depends_on or {}).items()},
                "dependencies_only": list(self.dependencies_only or ())}
