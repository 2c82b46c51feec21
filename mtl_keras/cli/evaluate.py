"""Evaluate a saved model on a dataset split; print the per-task table and write metrics JSON.

Example:
    mtl-keras evaluate runs/x/model.keras --data shapes --split test
    mtl-keras evaluate runs/pets/model.keras --data-dir /data/tfds   # the run's tfds data, moved
"""

from __future__ import annotations

import argparse
import os

# TensorFlow-free at import (it loads TensorFlow only to score), so the parser stays light.
from mtl_keras.evaluate.metrics import evaluate_model, format_table
from mtl_keras.run import files
from mtl_keras.run.data_flags import add_source_flags
from mtl_keras.run.entry import check_positive
from mtl_keras.run.folder import RunDir


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``evaluate`` flags.

    Args:
        p: the subcommand's parser.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["runs/x/model.keras", "--split", "val"]).split
        'val'
    """
    p.add_argument("model", help="path to a .keras file written by mtl-keras train")
    p.add_argument("--data", default=None, help="dataset (default: the one the run was trained on)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where prepared tfds data lives (default: the run's, from config.json)")
    add_source_flags(p, saved=True)
    p.add_argument("--split", default="test", help="train | val | test")
    p.add_argument("--size", type=int, default=None, help="number of examples (default: the split's size)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default=None, help="metrics JSON path (default: metrics_<split>.json beside the model)")
    p.add_argument("--unsafe", action="store_true", help="allow loading models that contain arbitrary code")


def run(args) -> int:
    """Score the model on a split of its run's dataset (or ``--data``); print the table, write the JSON.

    Args:
        args: the parsed ``evaluate`` flags.

    Returns:
        0 (a user mistake is an ``MtlError``).

    Example:
        >>> from mtl_keras.cli import main
        >>> main(["evaluate", "runs/x/model.keras", "--split", "val"])  # doctest: +SKIP
        0
    """
    check_positive(args, "batch_size")
    check_positive(args, "size", optional=True)
    run_dir = RunDir.of_model(args.model)
    opened = run_dir.open(args.data, args.data_dir, safe_mode=not args.unsafe, images=args.images, labels=args.label)
    ds = opened.load_split(args.split, batch_size=args.batch_size, size=args.size)
    results = evaluate_model(opened.model, ds)
    print(f"{args.split} split of {opened.data}:")
    print(format_table(results, opened.model.tasks))
    out = args.out or run_dir.split_metrics(args.split)
    files.write_json(out, {"data": opened.data, "split": args.split, "model": os.path.abspath(args.model),
                           "tasks": results})
    print(f"wrote {out}")
    return 0
