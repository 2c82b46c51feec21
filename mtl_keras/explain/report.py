"""CAMs and checks over a dataset split: per-image overlays and ``cam_checks.json``.

Example:
    >>> import mtl_keras as mk
    >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "box"]), image_size=64)
    >>> rep = explain(m, load_examples("shapes", "test", 64, 2), layer="c4")
    >>> sorted(rep["tasks"]), rep["tasks"]["box"]["layer"]
    (['box', 'shape'], 'conv4_block6_out')
"""

from __future__ import annotations

import os

import keras
import numpy as np

from mtl_keras import data as data_lib
from mtl_keras.data.pipeline import resize_example
from mtl_keras.run import files as io
from mtl_keras.errors import MtlError
from mtl_keras.explain import checks, render
from mtl_keras.explain import layers as layer_lib
from mtl_keras.explain.cams import DEFAULT_METHOD, DEFAULT_SCORECAM_CHANNELS, compute_cams, upsample
from mtl_keras.explain.scores import SCORES

CHECKS_FILE = "cam_checks.json"


def load_examples(data: str, split: str, image_size: int, n: int, **source_options) -> list:
    """The first ``n`` examples of a split as numpy ``{"image", "labels"}`` dicts at ``image_size``.

    Args:
        data: a dataset name as ``mtl_keras.data.load`` takes it.
        split: ``train``, ``val`` or ``test``.
        image_size: side of the square images, in pixels (labels are resized with them).
        n: the number of examples (at least 1).
        **source_options: options of the source (``data_dir``, ...).

    Returns:
        A list of up to ``n`` dicts ``{"image": [S, S, 3], "labels": {task: numpy label}}``.

    Raises:
        MtlError: ``n`` below 1, an unknown dataset or option, or an empty split.

    Example:
        >>> ex = load_examples("shapes", "test", 32, 1)[0]
        >>> ex["image"].shape, ex["labels"]["box"].shape
        ((32, 32, 3), (4,))
    """
    if int(n) < 1:
        raise MtlError(f"number of images must be at least 1, got {n}")
    source = data_lib.get_source(data, **source_options)
    ds = source.examples(split, int(image_size), int(n)).take(int(n))
    ds = ds.map(lambda ex: resize_example(ex, int(image_size)))
    out = list(ds.as_numpy_iterator())
    if not out:
        raise MtlError(f"split {split!r} of {data!r} has no examples")
    return out


def main_box(labels: dict):
    """The main object's ``rel_yxyx`` box from an example's labels, or ``None``.

    The ``box`` label when present and valid, else the largest of the ``objects`` boxes.

    Args:
        labels: one example's ``{task: label}`` (numpy), as ``load_examples`` gives them.

    Returns:
        ``[ymin, xmin, ymax, xmax]`` floats in 0..1, or ``None`` when neither label has a valid box.

    Example:
        >>> import numpy as np
        >>> objects = {"boxes": np.array([[0, 0, .2, .2], [0, 0, .5, .5]]), "labels": np.array([1, 0])}
        >>> main_box({"box": np.array([-1, -1, -1, -1.0]), "objects": objects})
        [0.0, 0.0, 0.5, 0.5]
    """
    box = labels.get("box")
    if box is not None:
        b = np.asarray(box, np.float64).reshape(-1)
        if b.size == 4 and (b >= 0).all() and b[2] > b[0] and b[3] > b[1]:
            return [float(v) for v in b]
    objects = labels.get("objects")
    if isinstance(objects, dict) and "boxes" in objects:
        boxes = np.asarray(objects["boxes"], np.float64).reshape(-1, 4)
        classes = np.asarray(objects.get("labels", np.zeros(len(boxes)))).reshape(-1)
        keep = (classes >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if keep.any():
            area = np.where(keep, (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), -1.0)
            return [float(v) for v in boxes[int(area.argmax())]]
    return None


def _task_labels(examples, name):
    values = [ex["labels"].get(name) for ex in examples]
    return None if any(v is None for v in values) else values


def explain(
    model,
    examples: list,
    tasks=None,
    method: str = DEFAULT_METHOD,
    layer: str = layer_lib.AUTO,
    targets: dict | None = None,
    batch_size: int = 16,
    out_dir=None,
    scorecam_channels: int = DEFAULT_SCORECAM_CHANNELS,
    meta: dict | None = None,
) -> dict:
    """CAMs of every (or the given) task head on ``examples`` and the checks over them.

    With ``out_dir``, writes ``NNNN.png`` per image (input + one overlay per task) and
    ``cam_checks.json`` there, each atomically. Returns the report written to the JSON.

    Args:
        model: a multi-task model built by ``mtl_keras``.
        examples: ``{"image", "labels"}`` dicts at the model's input size (``load_examples``).
        tasks: tasks or task names to explain; ``None`` means all (heads without a score rule are skipped).
        method: ``gradcam`` (default), ``gradcam++``, ``layercam`` or ``scorecam``.
        layer: the layer option (``auto``, a tap, a layer name), or ``{task: option}``.
        targets: ``{task: target}``; a task not in it explains its prediction.
        batch_size: images per CAM batch (at least 1).
        out_dir: folder for the PNGs and ``cam_checks.json``; ``None`` writes nothing.
        scorecam_channels: the most channels Score-CAM masks with.
        meta: extra top-level entries for the report (model path, data, ...).

    Returns:
        The report dict: ``image_size``, ``n_images``, ``n_with_box``, ``method``, ``tasks``, ``skipped``,
        ``overlap``, ``images`` (per image: box, per-task target, peak, hit, energy, png), plus ``meta``.

    Raises:
        MtlError: no head can be explained, a batch size below 1, or a bad method, layer or target.

    Example (not run by the test suite, which runs the module's example of ``explain`` above: a
    ResNet50 and its CAM checks take ten seconds and more on 2 CPU cores):
        >>> import mtl_keras as mk  # doctest: +SKIP
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["color"]), image_size=64)  # doctest: +SKIP
        >>> explain(m, load_examples("shapes", "test", 64, 1))["tasks"]["color"]["n_images"]  # doctest: +SKIP
        1
    """
    tasks, skipped = _explainable(model, tasks, layer)
    if int(batch_size) < 1:
        raise MtlError(f"batch size must be at least 1, got {batch_size}")
    size = int(model.input_shape[1])
    boxes = [main_box(ex["labels"]) for ex in examples]
    maps = {t.name: [] for t in tasks}
    per_image = [{"index": i, "box": boxes[i], "tasks": {}} for i in range(len(examples))]
    info = {}
    for start in range(0, len(examples), int(batch_size)):
        batch = examples[start : start + int(batch_size)]
        images = np.stack([np.asarray(ex["image"], np.float32) for ex in batch])
        labels = {t.name: _task_labels(batch, t.name) for t in tasks}
        cams = compute_cams(model, images, tasks, method=method, layer=layer, targets=targets, labels=labels,
                            scorecam_channels=scorecam_channels)
        for t in tasks:
            c = cams[t.name]
            if t.name not in info:
                info[t.name] = {
                    "kind": t.kind, "layer": c.layer, "tap": layer_lib.tap_of(model, c.layer),
                    "shared": layer_lib.is_shared(model, c.layer), "method": c.method, "score": c.what,
                    "map_size": list(c.maps.shape[1:]),
                }
            full = upsample(c.maps, size)
            for k in range(len(batch)):
                i = start + k
                maps[t.name].append((c.maps[k], full[k]))
                why = checks.degenerate(c.maps[k]) or checks.degenerate(full[k])
                entry = {"target": c.targets[k], "degenerate": why}
                if why is None:
                    entry["peak_yx"] = [round(v, 4) for v in checks.peak_point(c.maps[k])]
                    if boxes[i] is not None:
                        entry["hit"] = checks.pointing_hit(c.maps[k], boxes[i], size)
                        entry["energy_in_box"] = round(checks.energy_in_box(full[k], boxes[i]), 4)
                per_image[i]["tasks"][t.name] = entry
        if out_dir is not None:
            for k, ex in enumerate(batch):
                i = start + k
                per_image[i]["png"] = _write_overlay(out_dir, i, ex["image"], boxes[i], tasks, maps, per_image[i])
    summary = checks.summarize(maps, boxes, size)
    for name, entry in summary["tasks"].items():
        summary["tasks"][name] = {**info[name], **entry}
    report = {
        **(meta or {}),
        "image_size": size,
        "n_images": len(examples),
        "n_with_box": sum(b is not None for b in boxes),
        "method": method,
        "tasks": summary["tasks"],
        "skipped": skipped,
        "overlap": summary["overlap"],
        "images": per_image,
    }
    if out_dir is not None:
        io.write_json(os.path.join(out_dir, CHECKS_FILE), report)
    return report


def untrained_copy(model, seed: int = 0):
    """The same architecture with freshly initialised weights: the baseline of a randomization check.

    Adebayo et al. (2018): a map that looks the same for a trained and an untrained network says
    little about the model. On this project's 64 px ResNet50, Grad-CAM++ on ``c3``/``c4`` of an
    untrained net already "points" at the main object ~70% of the time (it follows edges).

    Args:
        model: the trained model (its ``get_config`` is rebuilt by its class).
        seed: the random seed for the new initialisation.

    Returns:
        A new model of the same class and config, with untrained weights.

    Example:
        >>> import mtl_keras as mk
        >>> tasks = mk.data.tasks_for("shapes", names=["count"])
        >>> m = mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=32)
        >>> c = untrained_copy(m); c.output_names == m.output_names and c is not m
        True
    """
    keras.utils.set_random_seed(int(seed))
    return type(model).from_config(model.get_config())


def _explainable(model, tasks, layer):
    """The heads to explain and ``{task: why}`` for those left out.

    A head is left out when its task type has no score rule or it does not read the chosen layer
    (``--layer c5`` and a box head on the stride-16 map): the others are still explained.
    """
    tasks = [model.task(t) if isinstance(t, str) else t for t in (model.tasks if tasks is None else tasks)]
    keep, skipped = [], {}
    for t in tasks:
        if t.kind not in SCORES:
            skipped[t.name] = f"no score rule for task type {t.kind!r} (a task type gives one with Task.gradcam_score)"
            continue
        try:
            layer_lib.resolve_layer(model, t.name, layer_lib.option_for(layer, t.name))
        except MtlError as e:
            if "does not read layer" not in str(e):
                raise
            skipped[t.name] = str(e)
            continue
        keep.append(t)
    if not keep:
        raise MtlError("no head can be explained: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return keep, skipped


def _write_overlay(out_dir, i, image, box, tasks, maps, record) -> str:
    panels = [render.input_panel(image, box, caption=f"#{i}")]
    for t in tasks:
        entry = record["tasks"][t.name]
        low, full = maps[t.name][i]
        if entry["degenerate"]:
            panels.append(render.overlay_panel(image, None, box, caption=f"{t.name}: {entry['degenerate']} map"))
            continue
        verdict = {True: " hit", False: " miss"}.get(entry.get("hit"), "")
        panels.append(render.overlay_panel(image, full, box, peak=entry["peak_yx"],
                                           caption=f"{t.name}: {entry['target']}{verdict}"))
    name = f"{i:04d}.png"
    render.save_png(render.side_by_side(panels), os.path.join(out_dir, name))
    return name
