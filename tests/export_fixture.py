"""One small exported run shared by tests/test_export.py, test_demo.py, test_pictures.py and
test_demo_benchmark.py, built once per test run: under pytest-xdist (``make test``) the first worker
that needs it builds it in the workers' common temp folder, under a file lock, and the others read it.

A mobilenet_v3_small model at 32 px with five shapes tasks, trained for a few steps: naming, parity,
quantization and the demo's drawing do not need a good model. The steps matter anyway: untrained,
BatchNorm's initial moving statistics shrink the features to ~1e-10 and every head outputs a constant,
which would make parity and by-name checks pass trivially.
"""

from __future__ import annotations

import fcntl
import json
import os

TASKS = ["shape", "color", "present", "box", "count"]
IMAGE_SIZE = 32
STEPS = 8
_CACHE = {}


def shared_dir(tmp_path_factory, name: str) -> str:
    """A folder that every pytest-xdist worker of this run sees (their common temp base), else the session's."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    path = os.path.join(os.fspath(base), name)
    os.makedirs(path, exist_ok=True)
    return path


def exported_run(tmp_path_factory) -> dict:
    """``{"run": dir, "model": model.keras, "export": dir, "report": report}`` (built on first call)."""
    if "run" in _CACHE:
        return _CACHE
    root = shared_dir(tmp_path_factory, "exported_run")
    run = os.path.join(root, "run")
    with open(os.path.join(root, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait here while the first one builds
        if not os.path.exists(os.path.join(root, "done")):
            _build_exported_run(run)
            open(os.path.join(root, "done"), "w").close()
    with open(os.path.join(run, "export", "report.json")) as f:
        report = json.load(f)
    _CACHE.update(run=run, model=os.path.join(run, "model.keras"), export=os.path.join(run, "export"), report=report)
    return _CACHE


def _build_exported_run(run: str) -> None:
    import mtl_keras as mk
    from export.stage import export_model

    os.makedirs(run, exist_ok=True)
    model = mk.build_model(mk.data.tasks_for("shapes", names=TASKS), trunk="mobilenet_v3_small", image_size=IMAGE_SIZE)
    model.compile(optimizer="adam")
    train = mk.data.load("shapes", "train", image_size=IMAGE_SIZE, batch_size=16, tasks=model.tasks, size=16 * STEPS)
    model.fit(train, epochs=1, verbose=0)
    model.save(os.path.join(run, "model.keras"))
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump({"data": "shapes", "image_size": IMAGE_SIZE, "trunk": "mobilenet_v3_small"}, f)
    export_model(
        os.path.join(run, "model.keras"), modes=["fp32", "fp16", "dynamic", "int8", "int16x8"], float_heads=["box"],
        calibration_size=16, eval_size=48, timing_runs=3, log=lambda m: None,
    )


INT16_TRUNK = "resnet50"
INT16_TASKS = ["shape", "box", "count"]
INT16_CALIBRATION = 8
_INT16_CACHE = {}


def int16x8_run(root) -> dict:
    """A ResNet50 run exported as int16x8 only (MobileNetV3's HARD_SWISH has no 16x8 kernel; ResNet50 converts).

    Untrained, to stay cheap: one forward pass in training mode with BatchNorm momentum 0 sets every
    moving statistic to real batch statistics, which is what the few training steps above are for.
    Scored on the calibration images themselves (the first ``INT16_CALIBRATION`` of the train split), so
    the report's parity measures 16-bit rounding: on unseen images this untrained model's activations
    leave the range so few images calibrated, and clipping would dominate. ``{"run", "model", "export",
    "report"}``, built on first call.
    """
    if "run" in _INT16_CACHE:
        return _INT16_CACHE
    import keras
    import numpy as np

    import mtl_keras as mk
    from export.stage import export_model

    run = os.path.join(os.fspath(root), "run16")
    os.makedirs(run, exist_ok=True)
    keras.utils.set_random_seed(16)
    model = mk.build_model(mk.data.tasks_for("shapes", names=INT16_TASKS), trunk=INT16_TRUNK, image_size=IMAGE_SIZE)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved_momentum = [bn.momentum for bn in norms]
    for bn in norms:
        bn.momentum = 0.0
    train = mk.data.load("shapes", "train", image_size=IMAGE_SIZE, batch_size=32, tasks=model.tasks, size=32)
    images = np.concatenate([np.asarray(x) for x, _, _ in train])
    model(images.astype("float32"), training=True)
    for bn, m in zip(norms, saved_momentum):
        bn.momentum = m
    model.save(os.path.join(run, "model.keras"))
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump({"data": "shapes", "image_size": IMAGE_SIZE, "trunk": INT16_TRUNK}, f)
    report = export_model(os.path.join(run, "model.keras"), modes=["int16x8"], split="train",
                          calibration_size=INT16_CALIBRATION, eval_size=INT16_CALIBRATION, timing_runs=0, log=lambda m: None)
    _INT16_CACHE.update(run=run, model=os.path.join(run, "model.keras"), export=os.path.join(run, "export"), report=report)
    return _INT16_CACHE
