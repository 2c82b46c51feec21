"""Single-task baselines vs multi-task balancers: per-task metrics and Δm, printed and written.

Example:
    mtl-keras compare --data shapes --tasks shape,color,box --balancers static,uncertainty,gradnorm \
        --trunk mobilenet_v3_small --image-size 64 --epochs 3 --train-size 2048 --out runs/compare
    mtl-keras compare --data shapes --tasks shape,color,box --scale-task box=100 --out runs/compare_x100
    mtl-keras compare --data shapes --tasks shape,color,box --balancers static,uncertainty --seeds 3 \
        --trunk mobilenet_v3_small --out runs/compare_3seeds
"""

from __future__ import annotations

import argparse
import os
import warnings

from mtl_keras.cli.arguments import parse_dependencies_only, parse_depends_on, parse_task_numbers
from mtl_keras.evaluate.delta_m import format_table
from mtl_keras.run import files
from mtl_keras.run.data_flags import add_source_flags
from mtl_keras.run.entry import check_positive
from mtl_keras.run.folder import data_options
from mtl_keras.train.recipe import add_recipe_arguments, check_recipe_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``compare`` flags; the recipe flags mean what they mean for ``mtl-keras train``.

    Args:
        p: the subcommand's parser.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["--out", "runs/c", "--seeds", "3"]).seeds
        3
    """
    p.add_argument("--data", default="shapes", help="dataset name (shapes, digits, tfds:..., coco:DIR)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where prepared tfds data lives (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    add_source_flags(p)
    p.add_argument("--tasks", default=None, help="comma-separated task names, at least two (default: every label)")
    p.add_argument("--balancers", default="static,uncertainty,dwa,gradnorm,pcgrad",
                   help="comma-separated balancers to train the multi-task model with, or all (every registered "
                        "one); a gradient method may name its level: mgda@parameters")
    p.add_argument("--trunk", default="resnet50", help="resnet50 | mobilenet_v3_small | mobilenet_v3_large")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3, help="the same for every run")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-size", type=int, default=2048, help="training examples per epoch, every run")
    p.add_argument("--eval-size", type=int, default=512, help="examples of --split to score every run on")
    p.add_argument("--split", default="val", choices=["val", "test"])
    add_recipe_arguments(p, schedule=False)
    p.add_argument("--scale-task", default="",
                   help="multiply task losses in every run, e.g. box=100 (a loss in other units)")
    p.add_argument("--depends-on", default="",
                   help="TASK=OTHER[+OTHER],...: in the multi-task runs TASK's head also reads OTHER's output, as "
                        "for train (e.g. shape=objects); its single-task baseline trains without it")
    p.add_argument("--dependencies-only", default="",
                   help="as for train: in the multi-task runs these heads read only their --depends-on tasks, not "
                        "the shared pooled features (e.g. shape,color); their single-task baselines read the features")
    p.add_argument("--jit-compile", action="store_true", help="compile the train steps with XLA")
    p.add_argument("--seed", type=int, default=0, help="the first seed")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="repeat every run with seeds --seed .. --seed+N-1 (init and training data; the same "
                        "evaluation images); report mean ± std and Δm mean ± standard error (default: %(default)s)")
    p.add_argument("--out", required=True, help="directory for compare.json and compare.md")


def run(args) -> int:
    """Run the comparison and write compare.json and compare.md to ``--out``.

    Args:
        args: the parsed ``compare`` flags.

    Returns:
        0 (a user mistake is an ``MtlError``).

    Example:
        >>> from mtl_keras.cli import main
        >>> argv = ["compare", "--tasks", "shape,box", "--seeds", "3", "--epochs", "1", "--out", "runs/c"]
        >>> main(argv)  # doctest: +SKIP
        0
    """
    check_positive(args, "epochs", "batch_size", "image_size", "train_size", "eval_size", "seeds")
    check_recipe_arguments(args)
    # lazy: training imports Keras and TensorFlow; the parser and the checks above stay free of them.
    from mtl_keras.evaluate.compare import compare

    warnings.filterwarnings("ignore", message=".*shuffle=True.*")
    options = data_options(args.data, args.data_dir, images=args.images, labels=args.label)
    files.ensure_dir(args.out)
    scale = parse_task_numbers(args.scale_task, "--scale-task")
    depends_on = _depends_on(args)
    names = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    only = parse_dependencies_only(args.dependencies_only, depends_on, names)
    result = compare(
        data=args.data, tasks=args.tasks, balancers=args.balancers, trunk=args.trunk, image_size=args.image_size,
        epochs=args.epochs, batch_size=args.batch_size, train_size=args.train_size, eval_size=args.eval_size,
        split=args.split, learning_rate=args.learning_rate, loss_scale=scale, seed=args.seed,
        jit_compile=args.jit_compile, log=lambda line: print(line, flush=True), data_options=options,
        seeds=args.seeds, optimizer=args.optimizer, warmup=args.warmup, label_smoothing=args.label_smoothing,
        weight_decay=args.weight_decay, depends_on=depends_on, dependencies_only=only,
    )
    table = format_table(result)
    note = _budget_note(args, result, scale)
    files.write_json(os.path.join(args.out, "compare.json"), result)
    files.write_text(os.path.join(args.out, "compare.md"), f"{note}\n\n{table}\n")
    print(f"\n{note}\n\n{table}\n\nwrote {args.out}/compare.json, compare.md")
    return 0


def _depends_on(args) -> dict:
    """``--depends-on`` checked against ``--tasks`` before any data is read (a typo must not cost a run)."""
    # Without --tasks the names are the dataset's: only the syntax is checked here, and compare checks
    # the names once it has read the dataset.
    names = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    return parse_depends_on(args.depends_on, names)


def _budget_note(args, result: dict, scale: dict) -> str:
    """The line above the table: data, budget, recipe and seeds every run shared."""
    budget, seeds = result["budget"], result["seeds"]
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
    return (f"{args.data} {args.split} split ({args.eval_size} examples), {budget['trunk']} at {budget['image_size']} px, "
            f"{budget['epochs']} epochs x {args.train_size} examples, batch {args.batch_size}, "
            f"{budget['optimizer']} lr {budget['learning_rate']:g} warm-up {budget['warmup']:g}, {seed_text}"
            + (f", label smoothing {args.label_smoothing:g}" if args.label_smoothing else "")
            + (f", loss scale {scale}" if scale else "")
            + (f", depends on {args.depends_on}" if args.depends_on else "")
            + (f", {args.dependencies_only} read only their dependencies" if args.dependencies_only else ""))
