"""Run an exported multi-task .tflite on pictures with LiteRT: annotated PNGs, predictions.json, index.html.

Needs only ai-edge-litert, numpy and Pillow (demo/requirements.txt): copy the demo/ folder and the
export folder (.tflite + model_card.json) onto a device and run it there.

Example:
    python -m demo runs/x/export/model_int8.tflite photos/ cat.jpg --out runs/demo
    python -m demo runs/x/export/model_int8.tflite --samples 8      # built-in scenes, no picture needed
    python -m demo runs/x/export/model_int8.tflite --benchmark      # latency and memory per setting (demo/benchmark.py)

Exit status: 0 all pictures ran; 1 some were refused (each with a one-line reason); 2 the model
cannot be used (missing card, a .tflite of another kind, ...).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import time

import numpy as np

from demo import benchmark


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a .tflite written by `python -m export` (model_card.json beside it)")
    p.add_argument("inputs", nargs="*", help="image files and/or folders of images")
    p.add_argument("--samples", type=int, default=0, help="also run N built-in test scenes (rendered, no files needed)")
    p.add_argument("--out", default="runs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads (default: %(default)s)")
    p.add_argument("--score-threshold", type=float, default=None, help="score threshold of multi-label and detection heads (default: the card's)")
    p.add_argument("--max-objects", type=int, default=None, help="most objects drawn per detection head (default: the card's)")
    p.add_argument("--no-xnnpack", action="store_true", help="run on the built-in CPU kernels, without the XNNPACK delegate")
    benchmark.add_arguments(p)


def _stem(index: int, name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(os.path.basename(name))[0])[:60] or "image"
    return f"{index:03d}_{base}"


def _samples(card: dict, count: int, size: int) -> list:
    """``count`` test scenes of the dataset the model was trained on (shapes or digits)."""
    from demo import scenes  # lazy: the renderer (Pillow) only with --samples

    if count <= 0:  # no --samples: nothing drawn, so nothing to say about what would be drawn
        return []
    source = (card.get("source") or {}).get("data") or "shapes"
    if source not in ("shapes", "digits"):
        print(f"note: the model was trained on {source}; --samples draws built-in shapes scenes", file=sys.stderr)
        source = "shapes"
    sprites = None
    if source == "digits":
        try:
            from sklearn.datasets import load_digits  # lazy: only for a digits model's --samples
        except ImportError:
            raise SystemExit("error: --samples for a digits model needs scikit-learn (for its handwritten digits)")
        d = load_digits()
        sprites = (d.images.astype(np.float32), d.target.astype(np.int32))
    out = []
    for i in range(count):
        s = scenes.render_scene(seed=0, split="test", index=i, image_size=size, source=source, sprites=sprites)
        main = scenes.main_label_name(source)
        names = scenes.class_names(source)
        truth = {main: names[int(s.labels[main])], "color": scenes.COLORS[int(s.labels["color"])],
                 "present": [names[j] for j in np.flatnonzero(s.labels["present"])],
                 "box_rel_yxyx": [round(float(v), 4) for v in s.labels["box"]], "count": int(s.labels["count"])}
        out.append((f"sample:{source}/test/{i}", s.image, truth))
    return out


def run(args) -> int:
    # lazy: `python -m demo --help` answers without loading Pillow or LiteRT (slow on a small device)
    from PIL import Image

    from demo import files, gallery, heads
    from demo.draw import annotate
    from demo.images import ImageError, find_images, read_picture, resize_for_model
    from demo.model_card import check_outputs, load_card
    from demo.runner import LiteModel, ModelError, latency_summary

    if getattr(args, "benchmark", False):
        return benchmark.run(args)
    if args.threads < 1:
        print(f"error: --threads must be a positive integer, got {args.threads}", file=sys.stderr)
        return 2
    if args.samples < 0 or (args.max_objects is not None and args.max_objects < 1):
        print("error: --samples must be >= 0 and --max-objects >= 1", file=sys.stderr)
        return 2
    if not args.inputs and not args.samples:
        print("error: give image files or folders, or --samples N", file=sys.stderr)
        return 2
    try:
        card = load_card(args.model)
        model = LiteModel(args.model, threads=args.threads, xnnpack=not args.no_xnnpack)
        check_outputs(card, model.output_names)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    unknown = [t["name"] for t in card["tasks"] if t["kind"] not in heads.KINDS]
    if unknown:
        print(f"error: the card has tasks of kinds this demo cannot decode: {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        print(f"error: --out {args.out} is not a folder that can be created ({e.strerror or e})", file=sys.stderr)
        return 2

    work = [(p, None, None) for p in find_images(args.inputs)] + _samples(card, args.samples, model.image_size)
    records, failures, times = [], [], []
    for index, (name, pixels, truth) in enumerate(work):
        try:
            image, conversions = read_picture(name, size=model.image_size) if pixels is None else (pixels, [])
        except ImageError as e:
            failures.append({"input": name, "reason": str(e)})
            print(f"skipped {name}: {e}", file=sys.stderr)
            continue
        x = resize_for_model(image, model.image_size)
        t = time.perf_counter()
        outputs = model.predict(x[None], batch_size=1)
        times.append((time.perf_counter() - t) * 1000.0)
        decoded = {t_["name"]: heads.decode(t_, outputs[t_["name"]][0], args.score_threshold, args.max_objects)
                   for t_ in card["tasks"]}
        picture, drawn = annotate(image, card["tasks"], decoded)
        stem = _stem(index, name)
        rec_tasks = {}
        for task_name, pred in decoded.items():
            pred = dict(pred)
            if "mask" in pred:
                mask_file = f"{stem}.{task_name}.png"
                files.write_bytes(os.path.join(args.out, mask_file), _png(Image.fromarray(pred.pop("mask"))))
                pred["mask_png"] = mask_file
            if "depth" in pred:  # a 16-bit PNG in millimetres, the common depth-map file
                depth_file = f"{stem}.{task_name}.png"
                files.write_bytes(os.path.join(args.out, depth_file),
                                  _png(Image.fromarray(heads.depth_millimetres(pred.pop("depth")))))
                pred["depth_png_mm"] = depth_file
            rec_tasks[task_name] = pred
        files.write_bytes(os.path.join(args.out, f"{stem}.png"), _png(picture))
        view = Image.fromarray(image).resize(_view(image), Image.BILINEAR)
        files.write_bytes(os.path.join(args.out, f"{stem}.input.png"), _png(view))
        if conversions:
            print(f"converted {name}: {'; '.join(conversions)}")
        records.append({"input": name, "size": [int(image.shape[1]), int(image.shape[0])], "conversions": conversions,
                        "annotated": f"{stem}.png", "input_view": f"{stem}.input.png",
                        "latency_ms": round(times[-1], 3), "tasks": rec_tasks, "drawn": drawn,
                        **({"truth": truth} if truth else {})})
    summary = latency_summary(times)
    doc = {
        "model": os.path.basename(args.model), "mode": card["file"].get("mode"),
        "delegate": model.delegate() if times else "not run (no picture was usable)", "threads": args.threads,
        "settings": {"score_threshold": args.score_threshold, "max_objects": args.max_objects},
        "latency": summary, "images": records, "failures": failures,
    }
    files.write_json(os.path.join(args.out, "predictions.json"), doc)
    files.write_text(os.path.join(args.out, "index.html"), gallery.render(doc))
    print(f"{len(records)} image(s) run, {len(failures)} refused; delegate: {doc['delegate']}")
    if times:
        print(f"latency: first {summary['first_ms']:.2f} ms, median {summary['median_ms']:.2f} ms, "
              f"p90 {summary['p90_ms']:.2f} ms, {summary['images_per_s']:.1f} images/s ({args.threads} threads)")
    print(f"wrote {os.path.join(args.out, 'index.html')} and predictions.json")
    return 1 if failures else 0


def _view(image: np.ndarray) -> tuple[int, int]:
    # lazy: Pillow (which demo.draw needs) loads only when a picture is drawn
    from demo.draw import view_size

    return view_size(image.shape[1], image.shape[0])


def _png(picture) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
