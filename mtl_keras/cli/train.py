"""Train a multi-task model and write model.keras, history.csv, config.json and metrics.json.

Example:
    mtl-keras train --data shapes --tasks shape,color,present,box,count --image-size 96 \
        --epochs 3 --loss-weights box=5 --out runs/x
    mtl-keras train --data tfds:oxford_iiit_pet --data-dir /data/tfds --trunk mobilenet_v3_small --out runs/pets
    mtl-keras train --data csv:photos/labels.csv --images photos/jpg --label age=Age:regression --out runs/mine
"""

from __future__ import annotations

import argparse
import os

from mtl_keras.errors import MtlError
from mtl_keras.run.data_flags import add_source_flags
from mtl_keras.run.entry import check_positive
from mtl_keras.run.folder import RunDir, absolute_data, data_options
from mtl_keras.train.recipe import add_recipe_arguments, check_recipe_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` flags (the recipe's come from ``mtl_keras.train.recipe``).

    Args:
        p: the subcommand's parser.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["--out", "runs/x", "--epochs", "5"]).epochs
        5
    """
    p.add_argument("--data", default="shapes",
                   help="dataset name (shapes, digits, tfds:..., coco:DIR, csv:FILE, folder:DIR; see mtl-keras data)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where prepared tfds data lives (default: $TFDS_DATA_DIR or ~/tensorflow_datasets); "
                        "saved in config.json for evaluate, explain and export")
    add_source_flags(p)
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
    p.add_argument("--balancer", default="static",
                   help="static (default) | uncertainty | dwa | rlw | famo | gls | gradnorm | mgda | pcgrad | cagrad | "
                        "imtl | gradvac | nash_mtl | aligned_mtl | db_mtl | upgrad | fairgrad (README, Task balancing)")
    p.add_argument("--strategy", default="auto", help="auto | default | mirrored | multiworker (reads TF_CONFIG)")
    p.add_argument("--connect-timeout", type=float, default=300.0, metavar="S",
                   help="multiworker: give up when another worker does not answer within S seconds")
    p.add_argument("--mixed-precision", default="auto",
                   help="auto (bfloat16 on GPUs that have it, float16 on older GPUs; on a CPU bfloat16 only where a short "
                        "probe measures it >= 1.1x faster than float32) | float16 | bfloat16 | off")
    p.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    p.add_argument("--bn-momentum", type=float, default=0.9, help="BatchNorm momentum (Keras default 0.99 lags on short runs)")
    p.add_argument("--depends-on", default="",
                   help="feed tasks' outputs into another task's head, e.g. shape=objects (a global head reads a dense "
                        "output pooled; a detection output also at its most prominent object; a mask head reads a "
                        "detection map as it is); several: shape=objects,color=objects,mask=objects")
    p.add_argument("--dependencies-only", default="",
                   help="global heads that read only what their --depends-on tasks give them, not the shared pooled "
                        "features, e.g. shape,color (a head about the main object reading a detector: the pooled "
                        "features mix every object)")
    p.add_argument("--branch-point", default=None, help="share the trunk only up to this tap (c3 or c4)")
    p.add_argument("--train-size", type=int, default=None, help="examples per training epoch (built-in data)")
    p.add_argument("--val-size", type=int, default=None)
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its last backup")
    p.add_argument("--force", action="store_true", help="overwrite a finished run in --out")


def validate(args) -> None:
    """Reject impossible settings before anything heavy is imported or written.

    Args:
        args: the parsed ``train`` flags.

    Raises:
        MtlError: one line naming the flag.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> validate(p.parse_args(["--out", "r", "--bn-momentum", "1"]))
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: --bn-momentum must be in [0, 1), got 1.0
    """
    check_positive(args, "epochs", "batch_size", "image_size")
    check_positive(args, "train_size", "val_size", "test_size", optional=True)
    check_recipe_arguments(args)
    if not 0 <= args.bn_momentum < 1:
        raise MtlError(f"--bn-momentum must be in [0, 1), got {args.bn_momentum}")


def worker_rank(args) -> int:
    """This process's multiworker rank (from ``TF_CONFIG``); 0 for the chief and single-machine runs.

    A worker other than the chief keeps its own files in ``--out/.worker-<rank>`` (``RunDir.home``):
    with a shared ``--out`` the workers do not collide, with separate disks it is the worker's own.

    Args:
        args: the parsed ``train`` flags (``strategy``, ``resume``).

    Returns:
        The rank; 0 unless ``--strategy multiworker`` (or ``--resume``) runs under ``TF_CONFIG``.

    Example:
        >>> worker_rank(argparse.Namespace(out="runs/x", strategy="default", resume=False))
        0
    """
    if args.strategy != "multiworker" and not args.resume:
        return 0
    if not os.environ.get("TF_CONFIG"):
        return 0
    # lazy: the strategies import TensorFlow; only a multiworker run needs them this early.
    from mtl_keras.train.distribute import worker_role

    return worker_role()[1]


def with_settings(args, settings: dict) -> argparse.Namespace:
    """A copy of ``args`` with ``settings`` (``RunDir.resume_settings()``) in place of the command line's.

    Args:
        args: the parsed ``train`` flags.
        settings: flag name -> value.

    Returns:
        A new namespace; ``args`` is left as it was.

    Example:
        >>> with_settings(argparse.Namespace(epochs=3, out="r"), {"epochs": 9})
        Namespace(epochs=9, out='r')
    """
    return argparse.Namespace(**{**vars(args), **settings})


def load_resume_config(args) -> argparse.Namespace:
    """On ``--resume``, the run's own config.json decides every setting (only ``--out`` is needed).

    Args:
        args: the parsed ``train`` flags.

    Returns:
        ``args`` with the saved settings applied (a new namespace).

    Example:
        >>> load_resume_config(argparse.Namespace(out="/nonexistent", strategy="auto", resume=True))
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: nothing to resume in /nonexistent: it holds no config.json of an earlier run
    """
    return with_settings(args, RunDir(args.out, worker_rank=worker_rank(args)).resume_settings())


def resolve(args) -> tuple[argparse.Namespace, RunDir, dict]:
    """Phase 1: check the flags, apply a resumed run's settings, resolve the data options, check ``--out``.

    Nothing heavy is imported and nothing is written but the (empty) run folder.

    Args:
        args: the parsed ``train`` flags.

    Returns:
        ``(args, run, data_options)``: the settings to train with, the run folder, the source options.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> resolve(p.parse_args(["--out", "/nonexistent", "--resume", "--force"]))
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: nothing to resume in /nonexistent: it holds no config.json of an earlier run
    """
    validate(args)
    run_dir = RunDir(args.out, worker_rank=worker_rank(args))
    if args.resume:
        args = with_settings(args, run_dir.resume_settings())
    options = data_options(args.data, args.data_dir, images=getattr(args, "images", None),
                           labels=getattr(args, "label", None))
    # Absolute in config.json's args too, so --resume (and evaluate, explain, export) find the data from any
    # working directory.
    args.data = absolute_data(args.data)
    args.data_dir = options.get("data_dir", args.data_dir)
    args.images = options.get("images", getattr(args, "images", None))
    run_dir.prepare(resume=args.resume, force=args.force)
    return args, run_dir, options


def run(args) -> int:
    """Train: resolve -> build -> fit -> finish (``mtl_keras.cli.training`` holds the heavy phases).

    Args:
        args: the parsed ``train`` flags.

    Returns:
        0 (a user mistake is an ``MtlError``).

    Example:
        >>> from mtl_keras.cli import main
        >>> main(["train", "--data", "shapes", "--tasks", "shape", "--epochs", "1", "--out", "runs/x"])  # doctest: +SKIP
        0
    """
    args, run_dir, options = resolve(args)
    # lazy: the phases import Keras and TensorFlow; the parser and the checks above stay free of them.
    from mtl_keras.cli import training

    job = training.build(args, run_dir, options)
    seconds = training.fit(job)
    return training.finish(job, seconds)
