"""The heavy phases of ``mtl-keras train``: build -> fit -> finish (``train.resolve`` comes first).

Kept apart from ``mtl_keras.cli.train`` so that the parser and the early checks never import Keras:
``train.run`` imports this module only once the flags are known to be good.

Example:
    >>> job = build(args, RunDir("runs/x"), {})  # doctest: +SKIP
    >>> finish(job, fit(job))                    # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
import warnings
from typing import Any

import keras
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.cli.arguments import parse_dependencies_only, parse_depends_on, parse_loss_weights
from mtl_keras.errors import MtlError
from mtl_keras.evaluate.metrics import evaluate_model, format_table
from mtl_keras.model.replicas import is_multi_worker
from mtl_keras.run.folder import RunDir
from mtl_keras.train.callbacks import NonFiniteLoss, StopOnNonFiniteLoss, ThroughputLogger
from mtl_keras.train.distribute import get_strategy, per_worker_dataset, worker_role
from mtl_keras.train.precision import set_mixed_precision
from mtl_keras.train.recipe import configure_tasks, make_optimizer

# What a lost worker looks like from a collective: any of these ends a multiworker fit.
LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.AbortedError,
                      tf.errors.DeadlineExceededError, tf.errors.InternalError)


@dataclasses.dataclass
class Training:
    """Everything ``build`` decided, for ``fit`` and ``finish``.

    Args:
        args: the settings trained with (a resumed run's own).
        run: the run folder (its ``home`` is a non-chief worker's own folder).
        tasks: the tasks, configured (label smoothing, dependencies).
        model: the compiled model, built in the strategy's scope.
        train: the training data (a per-worker dataset on multiworker runs).
        val: the validation split.
        test: the test split.
        config: what config.json records.
        policy: the mixed-precision policy's name.
        replicas: replicas in sync.
        strategy: the ``tf.distribute`` strategy.

    Example:
        >>> job = build(args, RunDir("runs/x"), {}); job.replicas  # doctest: +SKIP
        1
    """

    args: argparse.Namespace
    run: RunDir
    tasks: list
    model: Any
    train: Any
    val: Any
    test: Any
    config: dict
    policy: str
    replicas: int
    strategy: Any


def build(args, run: RunDir, data_options: dict) -> Training:
    """Phase 2: seed, precision, tasks, strategy, data and the compiled model; nothing is written.

    Args:
        args: the settings from ``train.resolve``.
        run: the run folder from ``train.resolve``.
        data_options: the source options from ``train.resolve``.

    Returns:
        The ``Training`` for ``fit``.

    Raises:
        MtlError: a task the dataset has no label for, a loss weight for a task not trained, bad data.

    Example:
        >>> build(args, RunDir("runs/x"), {}).model.task_names  # doctest: +SKIP
        ['shape', 'color', 'box']
    """
    # Our datasets are shuffled by the pipeline; Keras' reminder about it is noise here.
    warnings.filterwarnings("ignore", message=".*shuffle=True.*")
    keras.utils.set_random_seed(args.seed)
    policy = set_mixed_precision(args.mixed_precision, print_fn=print)
    tasks, loss_weights = _tasks(args, data_options)
    # Before any dataset or model exists: strategies own device placement from their creation on.
    strategy = get_strategy(args.strategy, connect_timeout=getattr(args, "connect_timeout", 300.0))
    if not is_multi_worker(strategy):
        run = RunDir(run.path)  # one machine: this process is the chief, whatever TF_CONFIG says
    train, steps_per_epoch, val, test = _datasets(args, tasks, strategy, data_options)
    # One validation batch before anything is built or written: a label or image problem that runs
    # through the whole data (a wrong class count, a NaN column) fails here in seconds.
    next(iter(val))
    with strategy.scope():
        model = mk.build_model(
            tasks, trunk=args.trunk, image_size=args.image_size,
            weights=None if args.weights.lower() == "none" else args.weights,
            bn_momentum=args.bn_momentum, branch_point=args.branch_point,
            zero_init_residual=args.zero_init_residual,
        )
        model.compile(
            optimizer=_optimizer(args, steps_per_epoch), loss_weights=loss_weights, balancer=args.balancer,
            jit_compile=bool(args.jit_compile),
        )
    replicas = strategy.num_replicas_in_sync
    config = _config(args, data_options, tasks, model, policy, replicas)
    return Training(args=args, run=run, tasks=tasks, model=model, train=train, val=val, test=test, config=config,
                    policy=policy, replicas=replicas, strategy=strategy)


def _tasks(args, data_options: dict) -> tuple[list, dict]:
    """The dataset's tasks named by ``--tasks``, configured, and the checked ``--loss-weights``."""
    tasks = mk.data.tasks_for(args.data, names=args.tasks, **data_options)
    names = [t.name for t in tasks]
    depends_on = parse_depends_on(args.depends_on, names)
    only = parse_dependencies_only(args.dependencies_only, depends_on, names)
    configure_tasks(tasks, args.label_smoothing, depends_on, dependencies_only=only)
    loss_weights = parse_loss_weights(args.loss_weights)
    unknown_weights = [k for k in loss_weights if k not in names]
    if unknown_weights:
        raise MtlError(f"--loss-weights names {', '.join(unknown_weights)}, not trained here; tasks: {', '.join(names)}")
    return tasks, loss_weights


def _datasets(args, tasks, strategy, data_options: dict):
    """``(train, steps_per_epoch, val, test)``; on multiworker runs each worker reads its own part of train."""
    replicas = strategy.num_replicas_in_sync
    sizes = {"train": args.train_size, "val": args.val_size, "test": args.test_size}

    def load(split, shard=None, batch_size=args.batch_size * replicas):
        return mk.data.load(args.data, split=split, image_size=args.image_size, batch_size=batch_size,
                            tasks=tasks, size=sizes[split], seed=args.seed, shard=shard, **data_options)

    val, test = load("val"), load("test")
    if is_multi_worker(strategy):
        # Each worker reads its own part of the training split, in batches of --batch-size per replica.
        workers, rank = worker_role()
        steps_per_epoch = int(load("train", (workers, rank), args.batch_size).cardinality()) // (replicas // workers)
        train = per_worker_dataset(strategy, lambda count, index: load("train", (count, index), args.batch_size))
    else:
        train = load("train")
        steps_per_epoch = int(train.cardinality())
    return train, steps_per_epoch, val, test


def _optimizer(args, steps_per_epoch: int):
    """The recipe's optimizer (``mtl_keras.train.recipe``); warm-up and decay span exactly the run's steps."""
    steps = max(steps_per_epoch, 0) * args.epochs
    return make_optimizer(
        args.optimizer, args.learning_rate, total_steps=steps, warmup_steps=int(round(args.warmup * steps)),
        schedule=args.lr_schedule, weight_decay=args.weight_decay,
    )


def _config(args, data_options: dict, tasks, model, policy: str, replicas: int) -> dict:
    """What config.json records: the flags (what ``--resume`` reads back) and what the run was."""
    return {
        "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
        "data": args.data,
        # Read back by evaluate, explain and export, so they find the data without the flag.
        "data_options": data_options,
        "tasks": [t.get_config() for t in tasks],
        "image_size": args.image_size,
        "trunk": args.trunk,
        "build": model.build_config,
        "policy": policy,
        "replicas": replicas,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "mtl_keras": mk.__version__},
    }


def fit(job: Training) -> float:
    """Phase 3: clear a forced run's files, write config.json, train; returns the training seconds.

    Args:
        job: from ``build``.

    Returns:
        Wall-clock seconds of ``model.fit``.

    Raises:
        MtlError: a non-finite loss, or a lost worker (with how to resume).

    Example:
        >>> seconds = fit(build(args, RunDir("runs/x"), {}))  # doctest: +SKIP
    """
    args, run, model = job.args, job.run, job.model
    # Only now, with every check passed: a typo in a forced run never costs the earlier run.
    if args.force:
        run.clear()
    # Only the chief writes to --out; another worker keeps what it needs to resume in its own folder.
    run.write_config(job.config)
    print(f"training {', '.join(model.task_names)} on {args.data} with {args.trunk} at {args.image_size} px "
          f"({model.count_params():,} parameters, policy {job.policy}, {job.replicas} replica(s))", flush=True)
    started = time.time()
    try:
        model.fit(job.train, validation_data=job.val, epochs=args.epochs, callbacks=_callbacks(job),
                  verbose=1 if sys.stdout.isatty() else 2)
    except NonFiniteLoss as e:
        raise MtlError(
            f"{e}; training stopped and the last good epoch is kept in {run.backup}. Lower --learning-rate "
            f"or fix the labels, then continue with: mtl-keras train --out {args.out} --resume"
        ) from None
    except LOST_WORKER_ERRORS as e:
        if not is_multi_worker(job.strategy):
            raise
        raise MtlError(f"{lost_worker_reason(e)}; the last completed epoch is kept. Restart every worker with "
                       f"the same TF_CONFIG and: mtl-keras train --out {args.out} --resume") from None
    return time.time() - started


def _callbacks(job: Training) -> list:
    """Non-finite loss stop, throughput, backup; on the chief also history.csv and TensorBoard."""
    run = job.run
    callbacks = [
        StopOnNonFiniteLoss(job.model.task_names),
        # Before the loggers, so history.csv and TensorBoard record images_per_second.
        ThroughputLogger(job.args.batch_size * job.replicas),
        # delete_checkpoint=False: we remove the backup ourselves only after the model is safely saved.
        keras.callbacks.BackupAndRestore(run.backup, delete_checkpoint=False),
    ]
    if run.is_chief:
        callbacks += [
            keras.callbacks.CSVLogger(run.history, append=job.args.resume),
            keras.callbacks.TensorBoard(run.logs, write_graph=False, profile_batch=0),
        ]
    return callbacks


def lost_worker_reason(error) -> str:
    """One line for a collective that failed because another worker went away (killed, crashed, unplugged).

    Args:
        error: the TensorFlow error ``fit`` raised.

    Returns:
        ``lost contact with <who> during training``.

    Example:
        >>> lost_worker_reason(RuntimeError("Collective ops is aborted by: failed to connect to all addresses; "
        ...                                 "last error: UNKNOWN: ipv4:127.0.0.1:40867: Failed to connect"))
        'lost contact with the worker at 127.0.0.1:40867 during training'
    """
    text = str(error)
    address = re.search(r"ipv[46]:([\w.:\[\]-]+:\d+)", text)
    task = re.search(r"/job:(\w+)/replica:\d+/task:(\d+)", text)
    if address:
        who = f"the worker at {address.group(1)}"
    elif task:
        who = f"{task.group(1)} {task.group(2)}"
    else:
        who = "another worker"
    return f"lost contact with {who} during training"


def finish(job: Training, train_seconds: float) -> int:
    """Phase 4: save the model, drop the backup, score the test split; the chief writes metrics.json.

    Args:
        job: from ``build``.
        train_seconds: from ``fit``.

    Returns:
        0.

    Example:
        >>> job = build(args, RunDir("runs/x"), {}); finish(job, fit(job))  # doctest: +SKIP
        0
    """
    args, run, model = job.args, job.run, job.model
    # Every worker saves (Keras' saving may read variables through collectives); only the chief's stays.
    run.save_model(model)
    run.remove_backup()
    results = evaluate_model(model, job.test)
    if not run.is_chief:
        run.remove_worker_dir()
        print(f"\nworker {run.worker_rank} done; the chief writes the run to its --out")
        return 0
    run.write_metrics({"data": args.data, "split": "test", "train_seconds": round(train_seconds, 1), "tasks": results})
    print(f"\ntest split of {args.data} (trained {train_seconds:.0f} s):")
    print(format_table(results, model.tasks))
    print(f"\nwrote {args.out}/model.keras, history.csv, config.json, metrics.json")
    return 0
