"""Train a multi-task model and write model.keras, history.csv, config.json and metrics.json.

Example:
    mtl-keras train --data shapes --tasks shape,color,present,box,count --image-size 96 \
        --epochs 3 --loss-weights box=5 --out runs/x
    mtl-keras train --data tfds:oxford_iiit_pet --data-dir /data/tfds --trunk mobilenet_v3_small --out runs/pets
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time

from mtl_keras.errors import MtlError

RUN_FILES = ("model.keras", "history.csv", "config.json", "metrics.json")
# What runs saved before the recipe flags trained with (Adam, no warm-up, no smoothing, no decay).
PRE_RECIPE_SETTINGS = {"optimizer": "adam", "warmup": 0.0, "label_smoothing": 0.0, "weight_decay": None,
                       "depends_on": "", "zero_init_residual": False}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mtl_keras.train.recipe import add_recipe_arguments

    p.add_argument("--data", default="shapes", help="dataset name (shapes, digits, tfds:..., coco:DIR)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where prepared tfds data lives (default: $TFDS_DATA_DIR or ~/tensorflow_datasets); "
                        "saved in config.json for evaluate, explain and export")
    p.add_argument("--tasks", default=None, help="comma-separated task names (default: every label of the dataset)")
    p.add_argument("--trunk", default="resnet50", help="resnet50 | mobilenet_v3_small | mobilenet_v3_large")
    p.add_argument("--weights", default="none", help="trunk weights: none | imagenet | path to .weights.h5")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    add_recipe_arguments(p)
    p.add_argument("--zero-init-residual", default=True, action=argparse.BooleanOptionalAction,
                   help="start each ResNet residual block as the identity (last BatchNorm scale 0); from-scratch trunks only")
    p.add_argument("--loss-weights", default="", help="per-task weights, e.g. box=5,shape=1 (others 1.0)")
    p.add_argument("--balancer", default="static", help="static | uncertainty | dwa | gradnorm | pcgrad")
    p.add_argument("--strategy", default="auto", help="auto | default | mirrored | multiworker (reads TF_CONFIG)")
    p.add_argument("--connect-timeout", type=float, default=300.0, metavar="S",
                   help="multiworker: give up when another worker does not answer within S seconds")
    p.add_argument("--mixed-precision", default="auto",
                   help="auto (bfloat16 on GPUs that have it, float16 on older GPUs; on a CPU bfloat16 only where a short "
                        "probe measures it >= 1.1x faster than float32) | float16 | bfloat16 | off")
    p.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    p.add_argument("--bn-momentum", type=float, default=0.9, help="BatchNorm momentum (Keras default 0.99 lags on short runs)")
    p.add_argument("--depends-on", default="",
                   help="feed tasks' outputs into another task's head, e.g. shape=mask (dense outputs are averaged "
                        "over the image first); several: shape=mask,color=mask")
    p.add_argument("--branch-point", default=None, help="share the trunk only up to this tap (c3 or c4)")
    p.add_argument("--train-size", type=int, default=None, help="examples per training epoch (built-in data)")
    p.add_argument("--val-size", type=int, default=None)
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its last backup")
    p.add_argument("--force", action="store_true", help="overwrite a finished run in --out")


def parse_loss_weights(text: str) -> dict:
    """``"box=5,shape=1"`` -> ``{"box": 5.0, "shape": 1.0}``, with clear errors.

    Example:
        >>> parse_loss_weights("box=5, count=0.5")
        {'box': 5.0, 'count': 0.5}
    """
    weights = {}
    for part in filter(None, (s.strip() for s in (text or "").split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise MtlError(f"malformed --loss-weights entry {part!r}; expected NAME=NUMBER, e.g. box=5")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise MtlError(f"loss weight for {name.strip()!r} is not a number: {value!r}") from None
    return weights


def parse_depends_on(text: str, task_names) -> dict:
    """``"shape=mask,color=mask+objects"`` -> ``{"shape": ("mask",), "color": ("mask", "objects")}``.

    Example:
        >>> parse_depends_on("shape=mask", ["shape", "mask"])
        {'shape': ('mask',)}
    """
    found = {}
    for part in filter(None, (s.strip() for s in (text or "").split(","))):
        name, sep, deps = part.partition("=")
        deps = tuple(d.strip() for d in deps.split("+") if d.strip())
        if not sep or not name.strip() or not deps:
            raise MtlError(f"malformed --depends-on entry {part!r}; expected TASK=OTHER[+OTHER], e.g. shape=mask")
        for n in (name.strip(), *deps):
            if n not in task_names:
                raise MtlError(f"--depends-on names {n!r}, not trained here; tasks: {', '.join(task_names)}")
        found[name.strip()] = deps
    return found


def validate(args) -> None:
    """Reject impossible settings before anything heavy is imported or written."""
    from mtl_keras.train.recipe import check_recipe_arguments

    for flag in ("epochs", "batch_size", "image_size"):
        if getattr(args, flag) < 1:
            raise MtlError(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    for flag in ("train_size", "val_size", "test_size"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise MtlError(f"--{flag.replace('_', '-')} must be a positive integer, got {v}")
    check_recipe_arguments(args)
    if not 0 <= args.bn_momentum < 1:
        raise MtlError(f"--bn-momentum must be in [0, 1), got {args.bn_momentum}")


def worker_dir(args) -> str | None:
    """Where a multiworker worker other than the chief keeps its own files (its backup, its copy of
    config.json, the model Keras' saving makes every worker write), or None on the chief.

    ``--out/.worker-<rank>``: with a shared ``--out`` the workers do not collide, with separate
    disks it is the worker's own; removed when the run ends, kept while it is resumable.

    Example:
        >>> import argparse; worker_dir(argparse.Namespace(out="runs/x", strategy="default", resume=False)) is None
        True
    """
    if args.strategy != "multiworker" and not args.resume:
        return None
    from mtl_keras.train.distribute import worker_role

    if not os.environ.get("TF_CONFIG"):
        return None
    count, rank = worker_role()
    return os.path.join(args.out, f".worker-{rank}") if rank > 0 else None


def lost_worker_reason(error) -> str:
    """One line for a collective that failed because another worker went away (killed, crashed, unplugged).

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


def prepare_run_dir(args) -> None:
    """Refuse to clobber a finished run (``--force`` allows it), check ``--resume`` has a backup."""
    from mtl_keras.run.files import ensure_dir

    out = worker_dir(args) or args.out
    finished = os.path.exists(os.path.join(out, "model.keras"))
    backup = os.path.join(out, "backup")
    if args.resume and args.force:
        raise MtlError("--resume and --force contradict each other; use one")
    if args.resume:
        if not os.path.isdir(backup):
            raise MtlError(f"nothing to resume in {out}: no backup of an interrupted run there")
        return
    if os.path.isdir(backup) and not args.force:
        raise MtlError(f"{out} holds an interrupted run; pass --resume to continue it or --force to start over")
    if finished and not args.force:
        raise MtlError(f"{out} already holds a finished run; pass --force to overwrite it or choose another --out")
    ensure_dir(out)


def clear_previous_run(args) -> None:
    """With ``--force``, remove the earlier run's files; called only once the new run has passed
    every check and is about to write, so a typo in the new command never costs the old run."""
    if not args.force:
        return
    for name in (*RUN_FILES, "backup", "logs") if worker_dir(args) is None else ("backup", "config.json"):
        target = os.path.join(worker_dir(args) or args.out, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)


def load_resume_config(args):
    """On ``--resume``, the run's own config.json decides every setting (only --out is needed)."""
    own = worker_dir(args)
    path = os.path.join(own, "config.json") if own and os.path.isfile(os.path.join(own, "config.json")) else (
        os.path.join(args.out, "config.json"))
    if not os.path.isfile(path):
        raise MtlError(f"nothing to resume in {args.out}: it holds no config.json of an earlier run")
    with open(path) as f:
        saved = json.load(f)["args"]
    # A run saved before a flag existed trained without it: resume it with what it used then, not
    # with today's defaults (a different optimizer or schedule half-way through a run).
    saved = {**PRE_RECIPE_SETTINGS, **saved}
    for key, value in saved.items():
        if key not in ("resume", "force", "out"):
            setattr(args, key, value)
    return args


def make_optimizer(args, train):
    """The recipe's optimizer (``mtl_keras.train.recipe``); warm-up and decay span exactly the run's steps.

    ``train``: the training dataset, or its number of steps per epoch.
    """
    from mtl_keras.train.recipe import make_optimizer as recipe_optimizer

    per_epoch = train if isinstance(train, int) else int(train.cardinality())
    steps = max(per_epoch, 0) * args.epochs
    return recipe_optimizer(
        args.optimizer, args.learning_rate, total_steps=steps, warmup_steps=int(round(args.warmup * steps)),
        schedule=args.lr_schedule, weight_decay=args.weight_decay,
    )


def run(args) -> int:
    from mtl_keras.run.folder import data_options

    validate(args)
    if args.resume:
        load_resume_config(args)
    data_opts = data_options(args.data, args.data_dir)
    # Absolute in config.json's args too, so --resume finds the data from any working directory.
    args.data_dir = data_opts.get("data_dir", args.data_dir)
    prepare_run_dir(args)

    import warnings

    import keras
    import tensorflow as tf

    import mtl_keras as mk
    from mtl_keras.run import files as io

    # Our datasets are shuffled by the pipeline; Keras' reminder about it is noise here.
    warnings.filterwarnings("ignore", message=".*shuffle=True.*")
    from mtl_keras.train.callbacks import NonFiniteLoss, StopOnNonFiniteLoss
    from mtl_keras.model.replicas import is_multi_worker
    from mtl_keras.train.distribute import get_strategy, per_worker_dataset, worker_role
    from mtl_keras.evaluate.metrics import evaluate_model, format_table
    from mtl_keras.train.callbacks import ThroughputLogger
    from mtl_keras.train.precision import set_mixed_precision
    from mtl_keras.train.recipe import configure_tasks

    keras.utils.set_random_seed(args.seed)
    policy = set_mixed_precision(args.mixed_precision, print_fn=print)
    tasks = mk.data.tasks_for(args.data, names=args.tasks, **data_opts)
    configure_tasks(tasks, args.label_smoothing, parse_depends_on(args.depends_on, [t.name for t in tasks]))
    loss_weights = parse_loss_weights(args.loss_weights)
    unknown_weights = [k for k in loss_weights if k not in [t.name for t in tasks]]
    if unknown_weights:
        raise MtlError(
            f"--loss-weights names {', '.join(unknown_weights)}, not trained here; tasks: {', '.join(t.name for t in tasks)}"
        )
    weights = None if args.weights.lower() == "none" else args.weights
    # Before any dataset or model exists: strategies own device placement from their creation on.
    strategy = get_strategy(args.strategy, connect_timeout=getattr(args, "connect_timeout", 300.0))
    replicas = strategy.num_replicas_in_sync
    own_dir = worker_dir(args) if is_multi_worker(strategy) else None
    chief = own_dir is None
    sizes = {"train": args.train_size, "val": args.val_size, "test": args.test_size}

    def load(split, shard=None, batch_size=args.batch_size * replicas):
        return mk.data.load(args.data, split=split, image_size=args.image_size, batch_size=batch_size,
                            tasks=tasks, size=sizes[split], seed=args.seed, shard=shard, **data_opts)

    val, test = load("val"), load("test")
    if is_multi_worker(strategy):
        # Each worker reads its own part of the training split, in batches of --batch-size per replica.
        workers, rank = worker_role()
        steps_per_epoch = int(load("train", (workers, rank), args.batch_size).cardinality()) // (replicas // workers)
        train = per_worker_dataset(strategy, lambda count, index: load("train", (count, index), args.batch_size))
    else:
        train = load("train")
        steps_per_epoch = int(train.cardinality())
    # One validation batch before anything is built or written: a label or image problem that runs
    # through the whole data (a wrong class count, a NaN column) fails here in seconds.
    next(iter(val))
    with strategy.scope():
        model = mk.build_model(
            tasks, trunk=args.trunk, image_size=args.image_size, weights=weights,
            bn_momentum=args.bn_momentum, branch_point=args.branch_point,
            zero_init_residual=args.zero_init_residual,
        )
        model.compile(
            optimizer=make_optimizer(args, steps_per_epoch), loss_weights=loss_weights, balancer=args.balancer,
            jit_compile=bool(args.jit_compile),
        )
    config = {
        "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
        "data": args.data,
        # Read back by evaluate, explain and export, so they find the data without the flag.
        "data_options": data_opts,
        "tasks": [t.get_config() for t in tasks],
        "image_size": args.image_size,
        "trunk": args.trunk,
        "build": model.build_config,
        "policy": policy,
        "replicas": replicas,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "mtl_keras": mk.__version__},
    }
    clear_previous_run(args)
    # Only the chief writes to --out; another worker keeps what it needs to resume in its own folder.
    home = args.out if chief else own_dir
    io.write_json(os.path.join(home, "config.json"), config)
    backup = os.path.join(home, "backup")
    callbacks = [
        StopOnNonFiniteLoss(model.task_names),
        # Before the loggers, so history.csv and TensorBoard record images_per_second.
        ThroughputLogger(args.batch_size * replicas),
        # delete_checkpoint=False: we remove the backup ourselves only after the model is safely saved.
        keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False),
    ]
    if chief:
        callbacks += [
            keras.callbacks.CSVLogger(os.path.join(args.out, "history.csv"), append=args.resume),
            keras.callbacks.TensorBoard(os.path.join(args.out, "logs"), write_graph=False, profile_batch=0),
        ]
    print(f"training {', '.join(model.task_names)} on {args.data} with {args.trunk} at {args.image_size} px "
          f"({model.count_params():,} parameters, policy {policy}, {replicas} replica(s))", flush=True)
    started = time.time()
    try:
        model.fit(train, validation_data=val, epochs=args.epochs, callbacks=callbacks,
                  verbose=1 if sys.stdout.isatty() else 2)
    except NonFiniteLoss as e:
        raise MtlError(
            f"{e}; training stopped and the last good epoch is kept in {backup}. Lower --learning-rate "
            f"or fix the labels, then continue with: mtl-keras train --out {args.out} --resume"
        ) from None
    except (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.AbortedError,
            tf.errors.DeadlineExceededError, tf.errors.InternalError) as e:
        if not is_multi_worker(strategy):
            raise
        raise MtlError(f"{lost_worker_reason(e)}; the last completed epoch is kept. Restart every worker with "
                       f"the same TF_CONFIG and: mtl-keras train --out {args.out} --resume") from None
    train_seconds = time.time() - started
    # Every worker saves (Keras' saving may read variables through collectives); only the chief's stays.
    io.save_model(model, os.path.join(home, "model.keras"))
    shutil.rmtree(backup, ignore_errors=True)
    results = evaluate_model(model, test)
    if not chief:
        shutil.rmtree(own_dir, ignore_errors=True)
        print(f"\nworker {worker_role()[1]} done; the chief writes the run to its --out")
        return 0
    io.write_json(
        os.path.join(args.out, "metrics.json"),
        {"data": args.data, "split": "test", "train_seconds": round(train_seconds, 1), "tasks": results},
    )
    print(f"\ntest split of {args.data} (trained {train_seconds:.0f} s):")
    print(format_table(results, model.tasks))
    print(f"\nwrote {args.out}/model.keras, history.csv, config.json, metrics.json")
    return 0
