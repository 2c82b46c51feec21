"""One small exported run shared by tests/test_export.py and tests/test_demo.py (built once per session).

A mobilenet_v3_small model at 32 px with five shapes tasks, trained for a few steps: naming, parity,
quantization and the demo's drawing do not need a good model. The steps matter anyway: untrained,
BatchNorm's initial moving statistics shrink the features to ~1e-10 and every head outputs a constant,
which would make parity and by-name checks pass trivially.
"""

from __future__ import annotations

import json
import os

TASKS = ["shape", "color", "present", "box", "count"]
IMAGE_SIZE = 32
STEPS = 8
_CACHE = {}


def exported_run(root) -> dict:
    """``{"run": dir, "model": model.keras, "export": dir, "report": report}`` (built on first call)."""
    if "run" in _CACHE:
        return _CACHE
    import mtl_keras as mk
    from export.stage import export_model

    run = os.path.join(os.fspath(root), "run")
    os.makedirs(run, exist_ok=True)
    model = mk.build_model(mk.tasks.from_dataset("shapes", names=TASKS), trunk="mobilenet_v3_small", image_size=IMAGE_SIZE)
    model.compile(optimizer="adam")
    train = mk.data.load("shapes", "train", image_size=IMAGE_SIZE, batch_size=16, tasks=model.tasks, size=16 * STEPS)
    model.fit(train, epochs=1, verbose=0)
    model.save(os.path.join(run, "model.keras"))
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump({"data": "shapes", "image_size": IMAGE_SIZE, "trunk": "mobilenet_v3_small"}, f)
    report = export_model(
        os.path.join(run, "model.keras"), modes=["fp32", "fp16", "dynamic", "int8", "int16x8"], float_heads=["box"],
        calibration_size=16, eval_size=48, timing_runs=3, log=lambda m: None,
    )
    _CACHE.update(run=run, model=os.path.join(run, "model.keras"), export=os.path.join(run, "export"), report=report)
    return _CACHE
