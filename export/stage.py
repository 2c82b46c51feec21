"""The export stage end to end: convert each mode, validate it through LiteRT, time it, report it.

Every .tflite is written to a temporary name, loaded and scored, and only then renamed into place;
a conversion or validation failure leaves no file behind for that mode.

``export_model(...)`` (or ``run_export(ExportPlan(...))``) runs the phases in order: ``prepare``
(check the plan, reopen the run through ``RunDir``), ``reference`` (the Keras model's outputs and
metrics, calibration images), ``convert_mode`` per mode (convert, validate, score, card entry),
timing, the layer-by-layer trace, ``write_report``.

Example:
    >>> report = export_model("runs/x/model.keras", modes=["fp32", "int8"], out="runs/x/export")  # doctest: +SKIP
    >>> [f["status"] for f in report["formats"]]                                                # doctest: +SKIP
    ['ok', 'ok']
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import numpy as np

from demo import files
from demo.runner import LiteModel, ModelError
from export import calibration, card as card_lib, convert, layer_errors, report as report_lib
from export.evaluator import collect, evaluate_outputs
from mtl_keras.errors import MtlError
from mtl_keras.run.files import ensure_dir
from mtl_keras.run.folder import RunDir

DEFAULT_MODES = ("fp32", "fp16", "dynamic", "int8")
# Full-integer modes whose drift from fp32 is traced layer by layer (export/layer_errors.py).
LAYER_ERROR_MODES = ("int8", "int8_mixed")
LAYER_ERROR_IMAGES = 16


def output_files(out: str, modes) -> list[str]:
    """The files an export of ``modes`` writes into ``out``.

    Args:
        out: the export folder.
        modes: the parsed modes.

    Returns:
        Every .tflite, layer trace, card and report path, in that order.

    Example:
        >>> output_files("e", ["fp32"])
        ['e/model_fp32.tflite', 'e/model_card.json', 'e/report.json', 'e/report.md']
    """
    return [os.path.join(out, f"model_{m}.tflite") for m in modes] + [
        os.path.join(out, f"layer_errors_{m}.csv") for m in modes if m in LAYER_ERROR_MODES and "fp32" in modes
    ] + [os.path.join(out, n) for n in (card_lib.CARD_NAME, "report.json", "report.md")]


def parse_modes(text, float_heads, float_layers=()) -> list[str]:
    """The ordered list of modes from ``--modes`` (``int8_mixed`` is added when heads or layers are kept float).

    Args:
        text: ``--modes`` (comma-separated) or a list of modes.
        float_heads: the heads kept float (non-empty adds ``int8_mixed``).
        float_layers: the layer patterns kept float (non-empty adds ``int8_mixed``).

    Returns:
        The modes, in the order given.

    Raises:
        MtlError: an empty list, an unknown or repeated mode, or ``int8_mixed`` with nothing kept float.

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


@dataclasses.dataclass
class ExportPlan:
    """The settings of one export (``python -m export``'s flags), before anything is loaded.

    Args:
        model_path: the ``.keras`` file written by ``mtl-keras train``.
        modes: the modes to convert (a list or comma-separated; ``int8_mixed`` is added when heads
            or layers are kept float).
        data: the dataset to calibrate and validate on (None: the run's, from config.json).
        out: the output folder (None: ``export/`` beside the model).
        float_heads: tasks whose heads stay float32 in ``int8_mixed``; ``["auto"]`` picks the tasks
            that lose more than the tolerance in int8.
        float_layers: Keras layer names or globs (``conv5_*``) that also stay float32 in ``int8_mixed``.
        data_dir: where a tfds dataset's prepared data lives (None: the run's saved one, when ``data``
            is the run's dataset).
        images: the folder a csv: dataset's pictures are relative to (None: the run's saved one).
        labels: ``TASK=FEATURE[:KIND]`` mappings (None: the run's saved ones).
        calibration_size: training images for int8 calibration.
        eval_size: test images to validate on (None: the whole split).
        split: the split to validate on.
        floors: ``--min-metric`` strings (``TASK[.METRIC]=VALUE``).
        threads: interpreter threads for validation and timing.
        timing_runs: timed single-image calls per format (0: no timing).
        force: overwrite the files of an earlier export.
        safe_mode: refuse models with arbitrary code (``--unsafe`` turns it off).

    Example:
        >>> plan = ExportPlan("/runs/x/model.keras", modes="fp32,int8", float_heads=["box", ""]).checked()
        >>> plan.modes, plan.float_heads, plan.output_dir
        (['fp32', 'int8', 'int8_mixed'], ['box'], '/runs/x/export')
    """

    model_path: str
    modes: Any = DEFAULT_MODES
    data: str | None = None
    out: str | None = None
    float_heads: Any = ()
    float_layers: Any = ()
    data_dir: Any = None
    images: Any = None
    labels: Any = None
    calibration_size: int = calibration.DEFAULT_COUNT
    eval_size: int | None = None
    split: str = "test"
    floors: Any = ()
    threads: int = 2
    timing_runs: int = 50
    force: bool = False
    safe_mode: bool = True

    def checked(self) -> ExportPlan:
        """The plan with empty names dropped and ``modes`` parsed into a list (``parse_modes``).

        Returns:
            A checked copy.

        Raises:
            MtlError: an unknown or repeated mode, or ``int8_mixed`` with nothing kept float.

        Example:
            >>> ExportPlan("m.keras", modes="fp32, int8", float_layers=["conv5_*"]).checked().modes
            ['fp32', 'int8', 'int8_mixed']
        """
        heads = [h for h in self.float_heads if h]
        layers = [p for p in self.float_layers if p]
        return dataclasses.replace(self, float_heads=heads, float_layers=layers,
                                   modes=parse_modes(self.modes, heads, layers))

    @property
    def auto_heads(self) -> bool:
        """Whether ``int8_mixed`` picks its float heads from the int8 results (``--float-heads auto``).

        Example:
            >>> ExportPlan("m.keras", float_heads=["auto"]).auto_heads
            True
        """
        return list(self.float_heads) == ["auto"]

    @property
    def output_dir(self) -> str:
        """``out``, or ``export/`` beside the model.

        Example:
            >>> ExportPlan("/runs/x/model.keras").output_dir
            '/runs/x/export'
        """
        return self.out or RunDir.of_model(self.model_path).export


@dataclasses.dataclass
class _Export:
    """One export under way: the plan, the reopened run, and what each phase adds."""

    plan: ExportPlan
    run: Any  # mtl_keras.run.folder.OpenRun
    floors: list
    out: str
    report: dict = dataclasses.field(default_factory=dict)
    card: dict = dataclasses.field(default_factory=dict)
    images: Any = None
    targets: Any = None
    weights: Any = None
    reference: dict = dataclasses.field(default_factory=dict)
    keras_metrics: dict = dataclasses.field(default_factory=dict)
    calibration: dict | None = None
    calibration_images: Any = None
    lite_models: dict = dataclasses.field(default_factory=dict)

    @property
    def tasks(self) -> list:
        return self.run.model.tasks


def export_model(
    model_path, modes=DEFAULT_MODES, data: str | None = None, out: str | None = None, float_heads=(),
    float_layers=(), data_dir=None, calibration_size: int = calibration.DEFAULT_COUNT, eval_size: int | None = None,
    split: str = "test", floors=(), threads: int = 2, timing_runs: int = 50, force: bool = False,
    safe_mode: bool = True, log=print, images=None, labels=None,
) -> dict:
    """Export ``model_path`` in each of ``modes`` and return the report (also written as JSON/Markdown).

    The keyword form of ``run_export(ExportPlan(...), log)``.

    Args:
        model_path, modes, data, out, float_heads, float_layers, data_dir, calibration_size, eval_size,
        split, floors, threads, timing_runs, force, safe_mode, images, labels: the ``ExportPlan`` fields.
        log: called with one line per step (``python -m export`` prints them to stderr).

    Returns:
        The report: the Keras metrics, and per format its status, size, metrics, parity and latency.

    Example:
        >>> report = export_model("runs/x/model.keras", modes=["fp32"], eval_size=8)  # doctest: +SKIP
        >>> report["formats"][0]["status"]                                          # doctest: +SKIP
        'ok'
    """
    plan = ExportPlan(
        model_path=model_path, modes=modes, data=data, out=out, float_heads=float_heads, float_layers=float_layers,
        data_dir=data_dir, calibration_size=calibration_size, eval_size=eval_size, split=split, floors=floors,
        threads=threads, timing_runs=timing_runs, force=force, safe_mode=safe_mode, images=images, labels=labels,
    )
    return run_export(plan, log)


def run_export(plan: ExportPlan, log=print) -> dict:
    """The phases of an export: prepare -> reference -> convert and validate -> time -> trace -> write.

    Args:
        plan: what to export (checked here).
        log: called with one line per step.

    Returns:
        The report (also written to ``report.json`` and ``report.md``).

    Example:
        >>> run_export(ExportPlan("runs/x/model.keras", modes=["fp32", "int8"]))["formats"]  # doctest: +SKIP
    """
    job = prepare(plan)
    reference(job, log)
    with convert.SavedModel(job.run.model) as saved:
        for mode in job.plan.modes:
            convert_mode(job, saved, mode, log)
    _time_all(job.lite_models, job.images[0], job.report, plan.timing_runs, log)
    _trace_layer_errors(job.lite_models, job.images[:LAYER_ERROR_IMAGES], job.report, job.out, log)
    return write_report(job)


def prepare(plan: ExportPlan) -> _Export:
    """Phase 1: check the plan, reopen the run (model, data), check heads, layers, floors and ``out``.

    Every check that needs no data comes before any data is read, so a mistake costs seconds.

    Args:
        plan: what to export.

    Returns:
        The export under way, with its output folder created.

    Raises:
        MtlError: a bad mode, head, layer pattern, floor or dataset, or an ``out`` that holds an
            earlier export (without ``force``) or cannot be a folder.

    Example:
        >>> prepare(ExportPlan("runs/x/model.keras", modes="fp32,int4"))
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: unknown export mode 'int4'; available: fp32, fp16, dynamic, int8, int8_mixed, int16x8
    """
    plan = plan.checked()
    run = RunDir.of_model(plan.model_path).open(plan.data, plan.data_dir, safe_mode=plan.safe_mode, compile=False,
                                                images=plan.images, labels=plan.labels)
    model = run.model
    floors = [report_lib.parse_floor(f, model.tasks) for f in plan.floors]
    if not plan.auto_heads:
        convert_heads_check(model, plan.float_heads)
    convert.match_layers(model, plan.float_layers)  # a pattern that matches nothing fails before any work
    if plan.auto_heads and "int8" not in plan.modes:
        raise MtlError("--float-heads auto picks heads from the int8 results; add int8 to --modes")
    out = plan.output_dir
    existing = [p for p in output_files(out, plan.modes) if os.path.exists(p)]
    if existing and not plan.force:
        raise MtlError(f"{out} already holds {', '.join(os.path.basename(p) for p in existing)}; pass --force to overwrite")
    if os.path.exists(out) and not os.path.isdir(out):
        raise MtlError(f"--out {out} exists and is not a directory")
    ensure_dir(out)  # a clear MtlError when a parent is a file or the folder cannot be made
    return _Export(plan=plan, run=run, floors=floors, out=out)


def reference(job: _Export, log=print) -> None:
    """Phase 2: the Keras model's outputs and metrics on the split (what every format is held to),
    the calibration images for the integer modes, an empty card and report.

    Args:
        job: from ``prepare``.
        log: called with one line per step.

    Example:
        >>> job = prepare(ExportPlan("runs/x/model.keras")); reference(job)  # doctest: +SKIP
        >>> sorted(job.keras_metrics)                                         # doctest: +SKIP
        ['box', 'shape']
    """
    plan, run, tasks = job.plan, job.run, job.tasks
    log(f"evaluating the Keras model on the {plan.split} split of {run.data} ...")
    dataset = run.load_split(plan.split, batch_size=64, size=plan.eval_size, augment=False)
    job.images, job.targets, job.weights = collect(dataset, tasks)
    job.reference = {k: np.asarray(v) for k, v in run.model.predict(job.images, batch_size=64, verbose=0).items()}
    job.keras_metrics = evaluate_outputs(tasks, job.targets, job.reference, job.weights)
    if any(m.startswith("int") for m in plan.modes):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            job.calibration_images = calibration.calibration_images(
                run.data, run.image_size, plan.calibration_size, data_options=run.data_options)
        for w in caught:
            log(f"warning: {w.message}")
        job.calibration = {"images": int(len(job.calibration_images)), "split": "train", "data": run.data}
    job.card = card_lib.new_card(tasks, run.image_size, run.card_source())
    job.report = {
        "model": os.fspath(plan.model_path), "data": run.data, "split": plan.split, "images": int(len(job.images)),
        "threads": int(plan.threads), "timing_runs": int(plan.timing_runs),
        "tasks": [{"name": t.name, "metric": t.primary_metric, "higher_is_better": t.higher_is_better} for t in tasks],
        "keras": {"metrics": job.keras_metrics},
        "floors": [f.describe() for f in job.floors],
        "formats": [], "notes": [],
    }


def convert_mode(job: _Export, saved, mode: str, log=print) -> None:
    """Phase 3, one mode: convert, validate through LiteRT, score against the reference; add it to the
    report and the card. A failure is recorded in the report, not raised.

    Args:
        job: from ``reference``.
        saved: the model as a SavedModel (``convert.SavedModel``), shared by every mode.
        mode: the mode to convert.
        log: called with one line per step.

    Example:
        >>> with convert.SavedModel(job.run.model) as saved: convert_mode(job, saved, "fp32")  # doctest: +SKIP
    """
    plan = job.plan
    heads = plan.float_heads if mode == "int8_mixed" else []
    if mode == "int8_mixed" and plan.auto_heads:
        int8 = next((f for f in job.report["formats"] if f["mode"] == "int8" and f["status"] != "failed"), None)
        heads = report_lib.drop_hints(job.tasks, job.keras_metrics, int8["metrics"]) if int8 else []
        if not heads and not plan.float_layers:
            job.report["notes"].append("int8_mixed skipped: no head lost more than the tolerance in int8")
            return
    layers = plan.float_layers if mode == "int8_mixed" else []
    kept = [*(f"head {h}" for h in heads), *layers]
    log(f"converting {mode}{' (float: ' + ', '.join(kept) + ')' if kept else ''} ...")
    entry = {"mode": mode, "file": f"model_{mode}.tflite", "status": "failed", "float_heads": heads,
             "float_layers": layers}
    job.report["formats"].append(entry)
    try:
        lite, data_bytes = _convert_and_validate(saved, mode, heads, layers, job.calibration_images, job.out,
                                                 plan.threads)
    except (MtlError, ModelError) as e:
        trunk = job.run.model.build_config.get("trunk")
        # The trunk is what a user would change when the converter refuses one of its ops.
        entry["reason"] = f"{e} (trunk {trunk})" if trunk else str(e)
        log(f"  {mode} failed: {entry['reason']}")
        return
    _score(job, entry, lite, data_bytes)
    job.lite_models[mode] = lite
    job.card["files"][entry["file"]] = card_lib.file_entry(
        data_bytes, mode, lite, heads, job.calibration if mode.startswith("int") else None,
        {"data": job.run.data, "split": plan.split, "images": int(len(job.images)), "metrics": entry["metrics"],
         "parity_max_abs": entry["parity_max_abs"]},
        float_layers=layers,
    )
    files.write_json(os.path.join(job.out, card_lib.CARD_NAME), job.card)


def _score(job: _Export, entry: dict, lite, data_bytes: bytes) -> None:
    """A converted file's metrics, parity with the Keras outputs and change per task; floors checked."""
    outputs = lite.predict(job.images)
    metrics = evaluate_outputs(job.tasks, job.targets, outputs, job.weights)
    parity = {k: float(np.max(np.abs(outputs[k] - job.reference[k]))) for k in job.reference}
    primary = {t.name: t.primary_metric for t in job.tasks}
    entry.update(
        status="ok", size_mb=round(len(data_bytes) / 1e6, 3), metrics=metrics,
        parity_max_abs=max(parity.values()), parity_per_task=parity,
        delta={t: round(metrics[t][m] - job.keras_metrics[t][m], 4) for t, m in primary.items()},
        input_dtype=lite.input_dtype.name, ops=convert.builtin_ops(data_bytes),
    )
    below = [f.describe() for f in job.floors if not f.check(metrics)]
    if below:
        entry["status"] = "below floor"
        entry["reason"] = "below --min-metric " + "; ".join(below)


def write_report(job: _Export) -> dict:
    """Last phase: the notes on what to try next, then report.json and report.md.

    Args:
        job: after the conversions, timing and trace.

    Returns:
        The report.

    Example:
        >>> report = write_report(job)  # doctest: +SKIP
    """
    report = job.report
    report["notes"] += quantization_notes(job.tasks, job.keras_metrics, report["formats"])
    files.write_json(os.path.join(job.out, "report.json"), report)
    files.write_text(os.path.join(job.out, "report.md"), report_lib.markdown(report))
    return report


def quantization_notes(tasks, keras_metrics: dict, formats: list) -> list[str]:
    """What to try when int8 loses too much: float heads when the loss is in a head, int16x8 when not.

    Args:
        tasks: the model's tasks.
        keras_metrics: the Keras model's metrics per task.
        formats: the report's format entries.

    Returns:
        One note per suggestion (none when int8 keeps every task within the tolerance).

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
    """Refuse ``--float-heads`` names that are not outputs of the model.

    Args:
        model: the Keras model.
        float_heads: task names.

    Raises:
        MtlError: naming the unknown heads and the model's tasks.

    Example:
        >>> import types
        >>> convert_heads_check(types.SimpleNamespace(output_names=["shape", "box"]), ["boxes"])
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: --float-heads names boxes, not tasks of this model (shape, box)
    """
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

    Args:
        report: ``export_model``'s report.

    Returns:
        The exit status of ``python -m export``.

    Example:
        >>> exit_status({"formats": [{"status": "ok"}, {"status": "below floor"}]})
        1
    """
    return 0 if report["formats"] and all(f["status"] == "ok" for f in report["formats"]) else 1
