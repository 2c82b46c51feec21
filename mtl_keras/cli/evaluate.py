"""Evaluate a saved model on a dataset split; print the per-task table and write metrics JSON.

Example:
    mtl-keras evaluate runs/x/model.keras --data shapes --split test
    mtl-keras evaluate runs/pets/model.keras --data-dir /data/tfds   # the run's tfds data, moved
"""

from __future__ import annotations

import argparse
import os

from mtl_keras.errors import MtlError
from mtl_keras.run.folder import data_options, run_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="path to a .keras file written by mtl-keras train")
    p.add_argument("--data", default=None, help="dataset (default: the one the run was trained on)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where prepared tfds data lives (default: the run's, from config.json)")
    p.add_argument("--split", default="test", help="train | val | test")
    p.add_argument("--size", type=int, default=None, help="number of examples (default: the split's size)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default=None, help="metrics JSON path (default: metrics_<split>.json beside the model)")
    p.add_argument("--unsafe", action="store_true", help="allow loading models that contain arbitrary code")


def run(args) -> int:
    if args.batch_size < 1:
        raise MtlError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.size is not None and args.size < 1:
        raise MtlError(f"--size must be a positive integer, got {args.size}")
    import mtl_keras as mk
    from mtl_keras.run import files as io
    from mtl_keras.evaluate.metrics import evaluate_model, format_table

    model = mk.load_model(args.model, safe_mode=not args.unsafe)
    config = run_config(args.model)
    data = args.data or config.get("data")
    if not data:
        raise MtlError("no --data given and no config.json beside the model says which dataset it was trained on")
    options = data_options(data, args.data_dir, config)
    image_size = model.input_shape[1]
    ds = mk.data.load(data, split=args.split, image_size=image_size, batch_size=args.batch_size,
                      tasks=model.tasks, size=args.size, **options)
    results = evaluate_model(model, ds)
    print(f"{args.split} split of {data}:")
    print(format_table(results, model.tasks))
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.model)), f"metrics_{args.split}.json")
    io.write_json(out, {"data": data, "split": args.split, "model": os.path.abspath(args.model), "tasks": results})
    print(f"wrote {out}")
    return 0
