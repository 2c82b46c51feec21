"""Grad-CAM per task head on the shared features: overlays per image and ``cam_checks.json``.

Example:
    mtl-keras explain runs/x/model.keras --data shapes --n 16 --out runs/x/gradcam
    mtl-keras explain runs/x/model.keras --layer c4 --method gradcam++ --tasks shape,box
"""

from __future__ import annotations

import argparse
import os

# The parser needs the methods and their defaults, so these load with it (TensorFlow included).
from mtl_keras.cli.arguments import parse_targets
from mtl_keras.errors import MtlError
from mtl_keras.explain.cams import DEFAULT_METHOD, DEFAULT_SCORECAM_CHANNELS, METHODS
from mtl_keras.explain.report import CHECKS_FILE, explain, load_examples, untrained_copy
from mtl_keras.run.data_flags import add_source_flags
from mtl_keras.run.entry import check_positive
from mtl_keras.run.folder import RunDir


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``explain`` flags.

    Args:
        p: the subcommand's parser.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["m.keras", "--target", "box=area", "--target", "label"]).target
        ['box=area', 'label']
    """
    p.add_argument("model", help="path to a .keras file written by mtl-keras train")
    p.add_argument("--data", default=None, help="dataset (default: the one the run was trained on)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where prepared tfds data lives (default: the run's, from config.json)")
    add_source_flags(p, saved=True)
    p.add_argument("--split", default="test", help="train | val | test")
    p.add_argument("--n", type=int, default=16, help="number of images")
    p.add_argument("--out", default=None, help="output folder (default: gradcam/ beside the model)")
    p.add_argument("--tasks", default=None, help="comma-separated task names (default: every head)")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS)
    p.add_argument(
        "--layer", default="auto",
        help="shared layer: auto (per head, the deepest tap it reads), c3 | c4 | c5, or a layer name",
    )
    p.add_argument(
        "--target", action="append", default=[], metavar="[TASK=]TARGET",
        help="what to score: predicted (default) | label | a class name | box: area, y1, x1, y2, x2; "
             "TASK=TARGET for one task, repeatable",
    )
    p.add_argument("--baseline", action="store_true",
                   help="also run the checks on an untrained copy of the model (randomization sanity check)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--scorecam-channels", type=int, default=DEFAULT_SCORECAM_CHANNELS,
                   help="Score-CAM: mask with the N most varied channels (Faster Score-CAM)")
    p.add_argument("--unsafe", action="store_true", help="allow loading models that contain arbitrary code")


def run(args) -> int:
    """Grad-CAM (or ``--method``) per head on ``--n`` images of the run's data; overlays and checks.

    Args:
        args: the parsed ``explain`` flags.

    Returns:
        0 (a user mistake is an ``MtlError``).

    Example:
        >>> from mtl_keras.cli import main
        >>> main(["explain", "runs/x/model.keras", "--n", "4", "--method", "gradcam++"])  # doctest: +SKIP
        0
    """
    check_positive(args, "n", "batch_size", "scorecam_channels")
    run_dir = RunDir.of_model(args.model)
    opened = run_dir.open(args.data, args.data_dir, safe_mode=not args.unsafe, compile=False,
                          images=args.images, labels=args.label)
    model = opened.model
    tasks = model.tasks
    if args.tasks:
        tasks = [model.task(n.strip()) for n in args.tasks.split(",") if n.strip()]
        if not tasks:
            raise MtlError("--tasks names no task")
    targets = parse_targets(args.target, [t.name for t in tasks])
    out = args.out or run_dir.gradcam
    examples = load_examples(opened.data, args.split, opened.image_size, args.n, **opened.data_options)
    options = dict(tasks=[t.name for t in tasks], method=args.method, layer=args.layer, targets=targets,
                   batch_size=args.batch_size, scorecam_channels=args.scorecam_channels)
    meta = {"model": os.path.abspath(args.model), "data": opened.data, "split": args.split}
    if args.baseline:
        # Computed first, so cam_checks.json is written once, complete, with the baseline in it.
        base = explain(untrained_copy(model), examples, **options)
        meta["baseline_untrained"] = {k: base[k] for k in ("tasks", "skipped", "overlap")}
    report = explain(model, examples, out_dir=out, meta=meta, **options)
    print(format_report(report))
    if args.baseline:
        print("untrained copy (same architecture, random weights):")
        print("\n".join(format_report({**report, **report["baseline_untrained"]}).splitlines()[1:]))
    print(f"wrote {len(report['images'])} overlays and {os.path.join(out, CHECKS_FILE)}")
    return 0


def _fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def format_report(report: dict) -> str:
    """A table of the checks per task (degenerate maps counted apart), then the task overlaps.

    ``pointing`` is over the usable maps; ``all`` counts a degenerate map as a miss.

    Args:
        report: ``mtl_keras.explain.report.explain``'s result.

    Returns:
        The table, one line per task, then one per skipped task and per task pair.

    Example:
        >>> rep = {"method": "gradcam", "n_images": 2, "tasks": {"shape": {"layer": "c5l", "n_usable": 1,
        ...        "degenerate": {"nan": [], "zero": [1], "constant": []},
        ...        "pointing_game": {"hits": 1, "n": 1, "hit_rate": 1.0, "hit_rate_all": 0.5, "chance": 0.2},
        ...        "energy_in_box": {"mean": 0.4, "chance": 0.1}}}, "overlap": {}}
        >>> print(format_report(rep).splitlines()[2])
        shape    c5l                  1/2  1/1 = 1.00  0.50  0.20    0.40  0.10  degenerate: zero 1
    """
    lines = [
        f"{report['method']} on {report['n_images']} images",
        f"{'task':<8} {'layer':<18} {'usable':>5}  {'pointing':<11} {'all':<5} {'chance':<6}  {'energy':<5} {'chance':<6}",
    ]
    for name, t in report["tasks"].items():
        pg, en = t["pointing_game"], t["energy_in_box"]
        bad = ", ".join(f"{k} {len(v)}" for k, v in t["degenerate"].items() if v)
        point = f"{pg['hits']}/{pg['n']} = {_fmt(pg['hit_rate'])}" if pg["n"] else "-"
        usable = f"{t['n_usable']}/{report['n_images']}"
        line = (
            f"{name:<8} {t['layer']:<18} {usable:>5}  {point:<11} {_fmt(pg.get('hit_rate_all')):<5} "
            f"{_fmt(pg['chance']):<6}  {_fmt(en['mean']):<5} {_fmt(en['chance'])}"
        )
        lines.append(line + (f"  degenerate: {bad}" if bad else ""))
    for name, why in report.get("skipped", {}).items():
        lines.append(f"{name:<8} skipped: {why}")
    for pair, o in report["overlap"].items():
        lines.append(f"overlap {pair}: mean correlation {_fmt(o['mean_correlation'])} over {o['n']} images")
    return "\n".join(lines)
