"""Grad-CAM checks on the shared features, per task head (tf-keras-vis).

- ``cams.compute_cams``: raw maps per head for a batch (Grad-CAM, Grad-CAM++, LayerCAM, Score-CAM);
- ``scores``: asks each task type for its score (``Task.gradcam_score``; ``register_score`` overrides one);
- ``layers``: which shared layer (``auto``, ``c3``/``c4``/``c5`` or a layer name);
- ``checks``: pointing game, energy in the box, task overlap, degenerate maps (numpy);
- ``report.explain``: maps + checks over a dataset, overlays and ``cam_checks.json``.

Example (not run by the test suite: ``mtl_keras.explain.cams``' own examples run ``compute_cams``):
    >>> import numpy as np, mtl_keras as mk  # doctest: +SKIP
    >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape"]), image_size=64)  # doctest: +SKIP
    >>> compute_cams(m, np.zeros((1, 64, 64, 3), "float32"))["shape"].maps.shape  # doctest: +SKIP
    (1, 2, 2)
"""

from mtl_keras.explain.cams import METHODS, TaskCams, compute_cams, head_model, upsample
from mtl_keras.explain.checks import (
    degenerate,
    energy_in_box,
    map_correlation,
    pointing_hit,
    summarize,
)
from mtl_keras.explain.layers import resolve_layer, tap_layers
from mtl_keras.explain.report import explain, load_examples, untrained_copy
from mtl_keras.explain.scores import SCORES, TaskScore, register_score

__all__ = [
    "METHODS", "SCORES", "TaskCams", "TaskScore", "compute_cams", "degenerate", "energy_in_box", "explain",
    "head_model", "load_examples", "map_correlation", "pointing_hit", "register_score", "resolve_layer",
    "summarize", "tap_layers", "untrained_copy", "upsample",
]
