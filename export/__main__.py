"""Export a trained model to TFLite (fp32 | fp16 | dynamic | int8 [| int8_mixed | int16x8]), validated per task.

Example:
    python -m export runs/x/model.keras --modes fp32,fp16,dynamic,int8 --out runs/x/export
    python -m export runs/x/model.keras --float-heads box --min-metric shape=0.95   # CI gate
    python -m export runs/x/model.keras --modes fp32,int8 --float-layers 'conv5_*'  # last stage in float
    python -m export runs/pets/model.keras --data-dir /data/tfds   # the run's tfds data, moved
"""

from __future__ import annotations

import argparse
import sys

from export.calibration import DEFAULT_COUNT
from mtl_keras.errors import MtlError
from mtl_keras.run.data_flags import add_source_flags
from mtl_keras.run.entry import add_verbose_argument, check_positive, run_reporting_errors
from mtl_keras.run.folder import RunDir
from mtl_keras.startup import start_tensorflow, verbose_requested


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The export options (shared by ``python -m export`` and ``mtl-keras export``).

    Args:
        p: the parser to add them to.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["m.keras", "--float-heads", "box"]).float_heads
        'box'
    """
    p.add_argument("model", help="a .keras file written by mtl-keras train")
    p.add_argument("--modes", default="fp32,fp16,dynamic,int8",
                   help="comma-separated: fp32, fp16, dynamic, int8, int8_mixed, int16x8 (default: %(default)s)")
    p.add_argument("--data", default=None, help="dataset for calibration and validation (default: the run's, from config.json)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where prepared tfds data lives (default: the run's, from config.json)")
    add_source_flags(p, saved=True)
    p.add_argument("--out", default=None, help="output folder (default: export/ beside the model)")
    p.add_argument("--float-heads", default="",
                   help="TASK[,TASK] whose heads stay float32 in an added int8_mixed mode; 'auto' = those int8 hurts")
    p.add_argument("--float-layers", default="",
                   help="Keras layer names or globs (e.g. 'conv5_*') that stay float32 in an added int8_mixed mode; "
                        "layer_errors_int8.csv shows where int8 drifts")
    p.add_argument("--calibration-size", type=int, default=DEFAULT_COUNT,
                   help="training images for int8 calibration (default: %(default)s; fewer than 200 warns)")
    p.add_argument("--eval-size", type=int, default=None, help="test images to validate on (default: the whole split)")
    p.add_argument("--split", default="test", help="split to validate on (default: %(default)s)")
    p.add_argument("--min-metric", action="append", default=[], metavar="TASK[.METRIC]=VALUE",
                   help="fail when any format's metric is worse than VALUE (repeatable; a ceiling for mae)")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads for timing (default: %(default)s)")
    p.add_argument("--timing-runs", type=int, default=50, help="timed single-image calls per format (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite files of an earlier export in --out")
    p.add_argument("--unsafe", action="store_true", help="allow loading models that contain arbitrary code")


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def run(args) -> int:
    """Run the export; 0 when every format is ok, 1 when one failed or fell below a floor.

    Args:
        args: the parsed export flags.

    Returns:
        0 or 1 (``export.stage.exit_status``); a user mistake is an ``MtlError``.

    Example:
        >>> main(["runs/x/model.keras", "--modes", "fp32,int8"])  # doctest: +SKIP
        0
    """
    check_positive(args, "calibration_size", "threads")
    check_positive(args, "eval_size", optional=True)
    if args.timing_runs < 0:
        raise MtlError(f"--timing-runs must be >= 0, got {args.timing_runs}")
    # lazy: the stage imports TensorFlow and the converter; `python -m export --help` needs neither.
    from export.report import format_table
    from export.stage import exit_status, export_model

    report = export_model(
        args.model, modes=args.modes, data=args.data, out=args.out,
        float_heads=_names(args.float_heads), float_layers=_names(args.float_layers),
        calibration_size=args.calibration_size, eval_size=args.eval_size, split=args.split,
        floors=args.min_metric, threads=args.threads, timing_runs=args.timing_runs, force=args.force,
        safe_mode=not args.unsafe, log=lambda m: print(m, file=sys.stderr), data_dir=args.data_dir,
        images=args.images, labels=args.label,
    )
    print(format_table(report))
    for f in report["formats"]:
        if f.get("reason"):
            print(f"{f['mode']}: {f['reason']}")
    for note in report["notes"]:
        print(f"note: {note}")
    out = args.out or RunDir.of_model(args.model).export
    print(f"wrote {out}/ (report.json, report.md, model_card.json, {len([f for f in report['formats'] if f['status'] != 'failed'])} .tflite)")
    return exit_status(report)


def main(argv=None) -> int:
    """``python -m export``: parse, run, and turn user errors into one line and exit status 2.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.

    Example:
        >>> main(["does-not-exist.keras", "--modes", "fp32", "--data", "shapes"])  # doctest: +SKIP
        2
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    start_tensorflow(verbose=verbose_requested(argv))
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    add_verbose_argument(parser)
    return run_reporting_errors(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
