"""The export stage end to end: convert each mode, validate it through LiteRT, time it, report it.

Every .tflite is written to a temporary name, loaded and scored, and only then renamed into place;
a conversion or validation failure leaves no file behind for that mode.

Example:
    >>> report = export_model("runs/x/model.keras", modes=["fp32", "int8"], out="runs/x/export")  # doctest: +SKIP
    >>> [f["status"] for f in report["formats"]]                                                # doctest: +SKIP
    ['ok', 'ok']
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from demo import files
from demo.runner import LiteModel, ModelError
from export import calibration, card as card_lib, convert, layer_errors, report as report_lib
from export.evaluator import collect, evaluate_outputs
from mtl_keras.errors import MtlError
from mtl_keras.run.files import ensure_dir

DEFAULT_MODES = ("fp32", "fp16", "dynamic", "int8")
# Full-integer modes whose drift from fp32 is traced layer by layer (export/layer_errors.py).
LAYER_ERROR_MODES = ("int8", "int8_mixed")
LAYER_ERROR_IMAGES = 16


def output_files(out: str, modes) -> list[str]:
    """The files an export of ``modes`` writes into ``out``.

    Example:
        >>> output_files("e", ["fp32"])
        ['e/model_fp32.tflite', 'e/model_card.json', 'e/report.json', 'e/report.md']
    """
    return [os.path.join(out, f"model_{m}.tflite") for m in modes] + [
        os.path.join(out, f"layer_errors_{m}.csv") for m in modes if m in LAYER_ERROR_MODES and "fp32" in modes
    ] + [os.path.join(out, n) for n in (card_lib.CARD_NAME, "report.json", "report.md")]


def parse_modes(text, float_heads, float_layers=()) -> list[str]:
    """The ordered list of modes from ``--modes`` (``int8_mixed`` is added when heads or layers are kept float).

    Example:
        >>> parse_modes("fp32,int8", ["box"])
        ['fp32', 'int8', 'int8_mixed']
    """
    modes = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    if not modes:
        raise MtlError("--modes is empty; choose from " + ", ".join(convert.MODES))
    for m in modes:
        if m not in convert.MODES:
            raise MtlError(f"unknown export mode {m!r}; available: {', '.join(convert.MODES)}")
    if len(set(modes)) != len(modes):
        raise MtlError(f"--modes lists a mode twice: {','.join(modes)}")
    if (float_heads or float_layers) and "int8_mixed" not in modes:
        modes.append("int8_mixed")
    if "int8_mixed" in modes and not (float_heads or float_layers):
        raise MtlError("mode int8_mixed needs --float-heads TASK[,TASK] (or 'auto') or --float-layers PATTERN[,PATTERN]")
    return modes


def export_model(
    model_path,
    modes=DEFAULT_MODES,
    data: str | None = None,
    out: str | None = None,
    float_heads=(),
    float_layers=(),
    data_dir=None,
    calibration_size: int = calibration.DEFAULT_COUNT,
    eval_size: int | None = None,
    split: str = "test",
    floors=(),
    threads: int = 2,
    timing_runs: int = 50,
    force: bool = False,
    safe_mode: bool = True,
    log=print,
) -> dict:
    """Export ``model_path`` in each of ``modes`` and return the report (also written as JSON/Markdown).

    ``float_heads``: tasks whose heads stay float32 in ``int8_mixed``; ``["auto"]`` picks the tasks that
    lose more than the tolerance in int8. ``float_layers``: Keras layer names or globs (``conv5_*``) that
    also stay float32 in ``int8_mixed``. ``data_dir``: where a tfds dataset's prepared data lives (default:
    the run's saved one, when ``data`` is the run's dataset). ``floors``: ``--min-metric`` strings. ``eval_size``: number
    of test images (default: the whole split).
    """
    from mtl_keras import data as data_lib
    from mtl_keras.model.saving import load_model
    from mtl_keras.run.folder import data_options as resolve_options, run_config

    float_heads = [h for h in float_heads if h]
    float_layers = [p for p in float_layers if p]
    modes = parse_modes(modes, float_heads, float_layers)
    config = run_config(model_path)
    data = data or config.get("data")
    # Resolved before the model loads, so a --data-dir the dataset cannot take fails at once.
    options = resolve_options(data, data_dir, config) if data else {}
    model = load_model(model_path, safe_mode=safe_mode, compile=False)
    if not data:
        raise MtlError("no --data given and no config.json beside the model says which dataset it was trained on")
    floors = [report_lib.parse_floor(f, model.tasks) for f in floors]
    auto = float_heads == ["auto"]
    if not auto:
        convert_heads_check(model, float_heads)
    convert.match_layers(model, float_layers)  # a pattern that matches nothing fails before any work
    if auto and "int8" not in modes:
        raise MtlError("--float-heads auto picks heads from the int8 results; add int8 to --modes")
    out = out or os.path.join(os.path.dirname(os.path.abspath(model_path)), "export")
    existing = [p for p in output_files(out, modes) if os.path.exists(p)]
    if existing and not force:
        raise MtlError(f"{out} already holds {', '.join(os.path.basename(p) for p in existing)}; pass --force to overwrite")
    if os.path.exists(out) and not os.path.isdir(out):
        raise MtlError(f"--out {out} exists and is not a directory")
    ensure_dir(out)  # a clear MtlError when a parent is a file or the folder cannot be made

    image_size = int(model.inputs[0].shape[1])
    log(f"evaluating the Keras model on the {split} split of {data} ...")
    dataset = data_lib.load(data, split=split, image_size=image_size, batch_size=64, tasks=model.tasks,
                           size=eval_size, augment=False, **options)
    images, targets, weights = collect(dataset, model.tasks)
    reference = {k: np.asarray(v) for k, v in model.predict(images, batch_size=64, verbose=0).items()}
    keras_metrics = evaluate_outputs(model.tasks, targets, reference, weights)

    calib, calib_images = None, None
    if any(m.startswith("int") for m in modes):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            calib_images = calibration.calibration_images(
                data, image_size, calibration_size, data_options=options)
        for w in caught:
            log(f"warning: {w.message}")
        calib = {"images": int(len(calib_images)), "split": "train", "data": data}

    source = {"model": os.path.abspath(model_path), "data": data, "trunk": model.build_config.get("trunk"),
              "image_size": image_size, "run_config": {k: config[k] for k in ("data", "trunk", "image_size", "build") if k in config}}
    card = card_lib.new_card(model.tasks, image_size, source)
    report = {
        "model": os.fspath(model_path), "data": data, "split": split, "images": int(len(images)),
        "threads": int(threads), "timing_runs": int(timing_runs),
        "tasks": [{"name": t.name, "metric": t.primary_metric, "higher_is_better": t.higher_is_better} for t in model.tasks],
        "keras": {"metrics": keras_metrics},
        "floors": [f.describe() for f in floors],
        "formats": [], "notes": [],
    }
    by_name = {t.name: t for t in model.tasks}
    lite_models = {}
    with convert.SavedModel(model) as saved:
        for mode in modes:
            heads = float_heads if mode == "int8_mixed" else []
            if mode == "int8_mixed" and auto:
                int8 = next((f for f in report["formats"] if f["mode"] == "int8" and f["status"] != "failed"), None)
                heads = report_lib.drop_hints(model.tasks, keras_metrics, int8["metrics"]) if int8 else []
                if not heads and not float_layers:
                    report["notes"].append("int8_mixed skipped: no head lost more than the tolerance in int8")
                    continue
            layers = float_layers if mode == "int8_mixed" else []
            kept = [*(f"head {h}" for h in heads), *layers]
            log(f"converting {mode}{' (float: ' + ', '.join(kept) + ')' if kept else ''} ...")
            entry = {"mode": mode, "file": f"model_{mode}.tflite", "status": "failed", "float_heads": heads,
                     "float_layers": layers}
            report["formats"].append(entry)
            try:
                lite, data_bytes = _convert_and_validate(saved, mode, heads, layers, calib_images, out, threads)
            except (MtlError, ModelError) as e:
                # The trunk is what a user would change when the converter refuses one of its ops.
                entry["reason"] = f"{e} (trunk {source['trunk']})" if source.get("trunk") else str(e)
                log(f"  {mode} failed: {entry['reason']}")
                continue
            outputs = lite.predict(images)
            metrics = evaluate_outputs(model.tasks, targets, outputs, weights)
            parity = {k: float(np.max(np.abs(outputs[k] - reference[k]))) for k in reference}
            entry.update(
                status="ok", size_mb=round(len(data_bytes) / 1e6, 3), metrics=metrics,
                parity_max_abs=max(parity.values()), parity_per_task=parity,
                delta={t: round(metrics[t][by_name[t].primary_metric] - keras_metrics[t][by_name[t].primary_metric], 4)
                       for t in by_name},
                input_dtype=lite.input_dtype.name, ops=convert.builtin_ops(data_bytes),
            )
            below = [f.describe() for f in floors if not f.check(metrics)]
            if below:
                entry["status"] = "below floor"
                entry["reason"] = "below --min-metric " + "; ".join(below)
            lite_models[mode] = lite
            card["files"][entry["file"]] = card_lib.file_entry(
                data_bytes, mode, lite, heads, calib if mode.startswith("int") else None,
                {"data": data, "split": split, "images": int(len(images)), "metrics": metrics, "parity_max_abs": entry["parity_max_abs"]},
                float_layers=layers,
            )
            files.write_json(os.path.join(out, card_lib.CARD_NAME), card)

    _time_all(lite_models, images[0], report, timing_runs, log)
    _trace_layer_errors(lite_models, images[:LAYER_ERROR_IMAGES], report, out, log)
    report["notes"] += quantization_notes(model.tasks, keras_metrics, report["formats"])
    files.write_json(os.path.join(out, "report.json"), report)
    files.write_text(os.path.join(out, "report.md"), report_lib.markdown(report))
    return report


def quantization_notes(tasks, keras_metrics: dict, formats: list) -> list[str]:
    """What to try when int8 loses too much: float heads when the loss is in a head, int16x8 when not.

    Example:
        >>> from mtl_keras.tasks import BoxTask
        >>> rows = [{"mode": "int8", "status": "ok", "metrics": {"box": {"iou": 0.5}}}]
        >>> quantization_notes([BoxTask("box")], {"box": {"iou": 0.7}}, rows)[0][:40]
        'int8 loses more than the tolerance on bo'
    """
    done = {f["mode"]: f for f in formats if f["status"] != "failed"}
    notes = []
    if "int8" in done:
        hints = report_lib.drop_hints(tasks, keras_metrics, done["int8"]["metrics"])
        if hints and "int8_mixed" not in done:
            notes.append(f"int8 loses more than the tolerance on {', '.join(hints)}: try --float-heads {','.join(hints)} "
                         "(int8_mixed keeps those heads float32) and, if the loss is in the shared trunk, "
                         "--float-layers for the stages where the layer trace's error grows (e.g. 'conv5_*') or "
                         "--modes ...,int16x8 (int16 activations; slower, XNNPACK does not run it)")
    if "int8_mixed" in done:
        still = report_lib.drop_hints(tasks, keras_metrics, done["int8_mixed"]["metrics"])
        if still:
            notes.append(f"int8_mixed still loses more than the tolerance on {', '.join(still)}: the loss is upstream "
                         "of what stays float (see the layer trace); keep an earlier stage in float too, or use int16x8 "
                         "(int16 activations), the mode that keeps accuracy when int8 ranges are too coarse")
    return notes


def convert_heads_check(model, float_heads) -> None:
    unknown = [h for h in float_heads if h not in model.output_names]
    if unknown:
        raise MtlError(f"--float-heads names {', '.join(unknown)}, not tasks of this model ({', '.join(model.output_names)})")


def _convert_and_validate(saved, mode, heads, layers, calib_images, out, threads):
    """Convert, write under a temporary name, load with LiteRT, check the names; then rename."""
    representative = calibration.representative_dataset(calib_images) if calib_images is not None else None
    data_bytes = convert.convert(saved, mode, representative=representative, float_heads=heads, float_layers=layers)
    convert.builtin_ops(data_bytes)
    final = os.path.join(out, f"model_{mode}.tflite")
    tmp = os.path.join(out, f".model_{mode}.tflite.tmp")
    try:
        files.write_bytes(tmp, data_bytes)
        lite = LiteModel(tmp, threads=threads)
        names = sorted(lite.output_names)
        if names != sorted(saved.task_names):
            raise MtlError(f"the {mode} model's outputs are {names}, not the task names {sorted(saved.task_names)}")
        if mode.startswith("int8") and lite.input_dtype != np.uint8:
            raise MtlError(f"the {mode} model takes {lite.input_dtype.name}, not uint8")
        os.replace(tmp, final)
        lite.path = final
        return lite, data_bytes
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _time_all(lite_models: dict, image, report: dict, runs: int, log) -> None:
    """Median single-image latency of every format, timed in interleaved rounds in this one run."""
    if not lite_models or runs < 1:
        return
    log(f"timing {', '.join(lite_models)} ({runs} runs each, interleaved) ...")
    times = {m: [] for m in lite_models}
    rounds = max(1, min(5, runs))
    per_round = [runs // rounds + (1 if i < runs % rounds else 0) for i in range(rounds)]
    for m, lite in lite_models.items():
        lite.time_ms(image, runs=0, warmup=3)
    for n in per_round:
        for m, lite in lite_models.items():
            times[m] += lite.time_ms(image, runs=n, warmup=0)
    fp32 = float(np.median(times["fp32"])) if "fp32" in times else None
    fp32_size = next((f["size_mb"] for f in report["formats"] if f["mode"] == "fp32" and "size_mb" in f), None)
    for f in report["formats"]:
        if f["mode"] in times:
            f["latency_ms"] = round(float(np.median(times[f["mode"]])), 3)
            f["latency_ratio"] = round(f["latency_ms"] / fp32, 3) if fp32 else None
            f["delegate"] = lite_models[f["mode"]].delegate()
        if fp32_size and "size_mb" in f:
            f["size_ratio"] = round(f["size_mb"] / fp32_size, 3)


def _trace_layer_errors(lite_models: dict, images, report: dict, out: str, log) -> None:
    """For each full-integer file, where its outputs drift from fp32: a CSV per file and one line per format."""
    if "fp32" not in lite_models:
        return
    for f in report["formats"]:
        if f["mode"] not in LAYER_ERROR_MODES or f["mode"] not in lite_models:
            continue
        log(f"tracing {f['mode']} errors layer by layer on {len(images)} images ...")
        rows = layer_errors.compare(lite_models["fp32"].path, lite_models[f["mode"]].path, images)
        name = f"layer_errors_{f['mode']}.csv"
        files.write_text(os.path.join(out, name), layer_errors.to_csv(rows))
        f["layer_errors"] = {"file": name, "images": int(len(images)),
                             "largest_per_stage": {k: round(v, 4) for k, v in layer_errors.stage_errors(rows)}}
        report["notes"].append(f"{f['mode']}: {layer_errors.summary(rows)} (layer by layer: {name})")


def exit_status(report: dict) -> int:
    """0 when every format converted, validated and met the floors; 1 otherwise.

    Example:
        >>> exit_status({"formats": [{"status": "ok"}, {"status": "below floor"}]})
        1
    """
    return 0 if report["formats"] and all(f["status"] == "ok" for f in report["formats"]) else 1
