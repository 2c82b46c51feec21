"""What the edge export buys: TFLite size and latency of each mode against fp32, parity, per-task drop.

Figures (from one export run: every format converted, validated and timed side by side, rounds
interleaved, median of single-image calls with 2 threads on the default XNNPACK delegate):
  export/int8_size_over_fp32        .tflite bytes, int8 ÷ fp32                 (target <= 0.27)
  export/int8_latency_over_fp32     median latency, int8 ÷ fp32                (target <= 0.5)
  export/fp16_size_over_fp32, export/dynamic_size_over_fp32, export/*_latency_over_fp32  (no target)
  export/fp32_parity_max_abs        max |tflite - keras| over every output      (target <= 1e-4)
  export/int8_drop_<task>           primary metric, Keras - int8 (lower-is-better: int8 - Keras);
                                    only for a trained model (--model or --report) (target <= 0.01 acc/F1, 0.02 IoU/mAP)

Without arguments it builds a ResNet50 shapes model at 64 px, trains it a few steps (BatchNorm
statistics; untrained heads output constants) and exports it: sizes, latency and parity need no
accuracy. With ``--model runs/x/model.keras`` it exports that trained model into a temporary
folder; with ``--report runs/x/export/report.json`` it only reads an earlier export's numbers.

Run from the repository root:  python bench/export.py [--model M | --report R] [--trunk resnet50 --image-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _timing  # noqa: E402  (sets TF logging before TensorFlow loads)

TASKS = "shape,color,present,box,count"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a trained .keras to export (config.json beside it names the data)")
    p.add_argument("--report", default=None, help="read an earlier export's report.json instead of exporting")
    p.add_argument("--trunk", default="resnet50")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--modes", default="fp32,fp16,dynamic,int8")
    p.add_argument("--calibration-size", type=int, default=100)
    p.add_argument("--eval-size", type=int, default=None, help="test images (default: 64 for the built model, whole split otherwise)")
    p.add_argument("--timing-runs", type=int, default=50)
    return p.parse_args(argv)


def build_model(folder: str, trunk: str, image_size: int) -> str:
    """A shapes model with BatchNorm statistics warmed up by a few training steps, saved with its config."""
    import mtl_keras as mk

    tasks = mk.data.tasks_for("shapes", names=TASKS)
    model = mk.build_model(tasks, trunk=trunk, image_size=image_size)
    model.compile(optimizer="adam")
    model.fit(mk.data.load("shapes", "train", image_size=image_size, batch_size=16, tasks=tasks, size=64), verbose=0)
    path = os.path.join(folder, "model.keras")
    model.save(path)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"data": "shapes", "trunk": trunk, "image_size": image_size}, f)
    return path


def print_figures(report: dict, trained: bool) -> None:
    from export.report import DROP_TOLERANCE

    formats = {f["mode"]: f for f in report["formats"] if f["status"] != "failed"}
    for f in report["formats"]:
        if f["status"] == "failed":
            print(f"# {f['mode']} FAILED: {f.get('reason')}")
    fp32 = formats.get("fp32")
    if not fp32:
        print("# no fp32 format in the report: no ratios")
        return
    for mode, f in formats.items():
        if mode == "fp32":
            continue
        target = ("<=", 0.27) if mode == "int8" else None
        _timing.figure(f"export/{mode}_size_over_fp32", f["size_mb"] / fp32["size_mb"], target,
                       f"{mode} {f['size_mb']:.2f} MB, fp32 {fp32['size_mb']:.2f} MB")
        if f.get("latency_ms") and fp32.get("latency_ms"):
            target = ("<=", 0.5) if mode == "int8" else None
            _timing.figure(f"export/{mode}_latency_over_fp32", f["latency_ms"] / fp32["latency_ms"], target,
                           f"{mode} {f['latency_ms']:.2f} ms, fp32 {fp32['latency_ms']:.2f} ms median, "
                           f"{report['threads']} threads, {f.get('delegate', '')}")
    _timing.figure("export/fp32_parity_max_abs", fp32["parity_max_abs"], ("<=", 1e-4),
                   f"over {report['images']} {report['split']} images, every output", fmt="{:.2g}")
    if not trained:
        print("# per-task int8 drops skipped: the built model is not trained (pass --model or --report)")
        return
    for mode in ("int8", "int8_mixed"):
        f = formats.get(mode)
        if not f:
            continue
        for t in report["tasks"]:
            k = report["keras"]["metrics"][t["name"]][t["metric"]]
            q = f["metrics"][t["name"]][t["metric"]]
            drop = (k - q) if t["higher_is_better"] else (q - k)
            tol = DROP_TOLERANCE.get(t["metric"].lower())
            _timing.figure(f"export/{mode}_drop_{t['name']}", drop, ("<=", tol) if tol else None,
                           f"{t['metric']}: keras {k:.4f}, {mode} {q:.4f}", fmt="{:.4f}")


def main(argv=None) -> int:
    args = parse_args(argv)
    _timing.header("TFLite export: size, latency, parity and accuracy of each mode against fp32 / Keras")
    if args.report:
        with open(args.report) as f:
            report = json.load(f)
        print(f"# read {args.report} (model {report['model']})")
        print_figures(report, trained=True)
        return 0
    from export.report import format_table
    from export.stage import export_model

    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or build_model(tmp, args.trunk, args.image_size)
        eval_size = args.eval_size or (None if args.model else 64)
        report = export_model(model_path, modes=args.modes, out=os.path.join(tmp, "export"),
                              calibration_size=args.calibration_size, eval_size=eval_size,
                              timing_runs=args.timing_runs, force=True, log=lambda m: print(f"# {m}", flush=True))
        print("\n".join("# " + line for line in format_table(report).splitlines()))
        print_figures(report, trained=bool(args.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
