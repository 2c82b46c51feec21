"""Class-activation maps per task head through tf-keras-vis, on a list-output view of the model.

tf-keras-vis 0.8.7 with Keras 3 (each point checked on this stack; ``tests/test_explain.py``):

- Its score list must have one entry per model output, **in ``model.outputs`` order**, which for a
  dict-output model is the *sorted* task names, not the order the tasks were given; a score meant
  for one head silently lands on another. So CAMs run on ``head_model``: a plain list-output
  ``keras.Model`` over the same layers (no copy, no ``Lambda``) in an order we fix, with
  ``InactiveScore`` for every head not being explained.
- ``Scorecam`` and ``Saliency`` fail on dict outputs (``'dict' object has no attribute ...``); the
  list-output view fixes that too.
- ``penultimate_layer`` naming a non-convolution layer (a ResNet ``conv4_block6_out`` is an
  ``Activation``) silently moves to an earlier ``Conv2D`` unless ``seek_penultimate_conv_layer=False``.
- ``Scorecam`` passes every head's prediction through a softmax before scoring it: a 1-unit
  regression head always scores 1.0 and a box loses its coordinates. ``scorecam_model`` appends a
  constant 0 to each flattened head, so ``log(p_i) - log(p_last)`` recovers the raw values exactly
  (``unsoftmax``) and the same score functions work for every method; it also gives dense heads the
  ``[B, N]`` shape Scorecam's reshape needs.

Example:
    >>> import numpy as np, mtl_keras as mk
    >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "box"]), image_size=64)
    >>> res = compute_cams(m, np.zeros((2, 64, 64, 3), "float32"), layer="c4")
    >>> res["shape"].maps.shape, res["box"].layer
    ((2, 4, 4), 'conv4_block6_out')
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.errors import MtlError, unknown
from mtl_keras.explain import layers as layer_lib
from mtl_keras.explain import scores as score_lib

METHODS = ("gradcam", "gradcam++", "layercam", "scorecam")
DEFAULT_METHOD = "gradcam"
# Faster Score-CAM: only the N channels with the largest spatial spread mask the input
# (the full 2048 channels of ResNet's c5 would mean 2048 forward passes per image).
DEFAULT_SCORECAM_CHANNELS = 32


@dataclasses.dataclass
class TaskCams:
    """One head's maps for a batch: raw ``maps`` ``[B, h, w]`` at the layer's resolution, and provenance.

    Example:
        >>> import numpy as np
        >>> TaskCams("box", "box", "conv4_block6_out", "gradcam", "box area", ["area"], np.zeros((1, 4, 4))).maps.shape
        (1, 4, 4)
    """

    task: str
    kind: str
    layer: str
    method: str
    what: str
    targets: list
    maps: np.ndarray


def head_model(model, tasks, scorecam: bool = False) -> keras.Model:
    """A list-output view of ``model``: one output per task, each the tensor its score reads.

    ``scorecam=True`` flattens each output and appends a constant 0 (``Reshape`` →
    ``ZeroPadding1D`` → ``Flatten``, all builtin layers), see ``unsoftmax``.

    Args:
        model: a built multi-task model.
        tasks: the tasks to give outputs for, in this order (``Task`` objects of ``model``).
        scorecam: flatten each output and append a constant 0, for Score-CAM's softmax.

    Returns:
        A ``keras.Model`` on ``model.inputs`` with a list of outputs, one per task.

    Example:
        >>> import mtl_keras as mk
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "count"]), image_size=32,
        ...                    trunk="mobilenet_v3_small")
        >>> [tuple(o.shape) for o in head_model(m, m.tasks, scorecam=True).outputs]
        [(None, 7), (None, 2)]
    """
    outputs = []
    for task in tasks:
        t = score_lib.score_tensor(model, task)
        if scorecam:
            n = int(np.prod(t.shape[1:]))
            t = keras.layers.Reshape((n, 1), name=f"explain_{task.name}_column")(t)
            t = keras.layers.ZeroPadding1D((0, 1), name=f"explain_{task.name}_pad")(t)
            t = keras.layers.Flatten(name=f"explain_{task.name}_flat")(t)
        outputs.append(t)
    return keras.Model(model.inputs, outputs, name=f"{model.name}_heads")


def unsoftmax(probs, shape):
    """Undo Scorecam's softmax over a ``scorecam=True`` head: the raw ``[B, *shape]`` tensor.

    ``softmax(x ++ [0])_i / softmax(x ++ [0])_last = exp(x_i)``, so the log-ratio is ``x`` exactly.

    Args:
        probs: ``[B, n + 1]`` softmax probabilities of a ``scorecam=True`` head output.
        shape: the head output's shape without the batch axis (its product is n).

    Returns:
        A float32 ``[B, *shape]`` tensor of the raw head values.

    Example:
        >>> import numpy as np, tensorflow as tf
        >>> x = np.array([[-3.0, 0.5, 2.0]], "float32")
        >>> p = tf.nn.softmax(np.concatenate([x, np.zeros((1, 1), "float32")], 1))
        >>> np.round(unsoftmax(p, (3,)).numpy(), 4).tolist()
        [[-3.0, 0.5, 2.0]]
    """
    logp = tf.math.log(tf.cast(probs, tf.float32))
    x = logp[:, :-1] - logp[:, -1:]
    return tf.reshape(x, (-1, *shape))


def _visualizer(method, model):
    # lazy: `mtl-keras explain --help` reads METHODS from this module; tf-keras-vis loads only for CAMs
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.scorecam import Scorecam

    classes = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "layercam": Layercam, "scorecam": Scorecam}
    if method not in classes:
        raise unknown("CAM method", method, METHODS)
    return classes[method](model, clone=False)


@contextlib.contextmanager
def _quiet():
    # Keras warns that tf-keras-vis passes the single input as a list rather than {"image": ...}.
    # Scorecam calls model.predict, whose progress bar cannot be switched off from outside.
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*structure of `inputs`.*")
            yield
    finally:
        if interactive:
            keras.config.enable_interactive_logging()


def compute_cams(
    model,
    images,
    tasks=None,
    method: str = DEFAULT_METHOD,
    layer: str | dict = layer_lib.AUTO,
    targets: dict | None = None,
    labels: dict | None = None,
    scorecam_channels: int = DEFAULT_SCORECAM_CHANNELS,
) -> dict:
    """Raw CAMs ``{task: TaskCams}`` for a batch of ``images`` (``[B, H, W, 3]``, RGB 0–255).

    ``layer``: ``auto`` / tap / layer name, or a dict per task (see ``layers.resolve_layer``).
    ``targets``: per task, ``predicted`` (default), ``label`` or a task-specific target
    (``scores``); ``labels``: per task, the batch's raw labels (needed for ``label``).
    Maps are returned unnormalized and at the layer's resolution, so degenerate ones stay visible.

    Args:
        model: a built multi-task model whose input is ``[H, W, 3]``.
        images: a ``[B, H, W, 3]`` batch, RGB 0–255 (converted to float32).
        tasks: the tasks to explain; ``None`` means ``model.tasks``.
        method: ``gradcam`` (default), ``gradcam++``, ``layercam`` or ``scorecam``.
        layer: the layer option, one for all tasks or ``{task: option}``.
        targets: ``{task: target}``; a task not in it explains its prediction.
        labels: ``{task: raw labels of the batch}``, for ``label`` targets.
        scorecam_channels: the most activation channels Score-CAM masks with (its ``max_N``).

    Returns:
        ``{task name: TaskCams}``; each ``maps`` is a float32 ``[B, h, w]`` array at the layer's resolution.

    Raises:
        MtlError: no tasks, images of the wrong shape, an unknown method, layer or target.

    Example:
        >>> import numpy as np, mtl_keras as mk
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape"]), image_size=64)
        >>> res = compute_cams(m, np.zeros((1, 64, 64, 3), "float32"), method="gradcam++")
        >>> res["shape"].layer, res["shape"].maps.shape
        ('conv5_block3_out', (1, 2, 2))
    """
    # lazy: as in _visualizer, tf-keras-vis loads only when CAMs are computed
    from tf_keras_vis.utils.scores import InactiveScore

    tasks = list(model.tasks if tasks is None else tasks)
    if not tasks:
        raise MtlError("no tasks to explain")
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1:] != tuple(model.input_shape[1:]):
        raise MtlError(f"images must be [N, {', '.join(map(str, model.input_shape[1:]))}], got {list(images.shape)}")
    if method not in METHODS:
        raise unknown("CAM method", method, METHODS)
    targets, labels = dict(targets or {}), dict(labels or {})
    layers = {
        t.name: layer_lib.resolve_layer(model, t.name, layer_lib.option_for(layer, t.name)) for t in tasks
    }
    plain = head_model(model, tasks)
    raw = plain.predict_on_batch(images)
    raw = raw if isinstance(raw, list) else [raw]
    scorecam = method == "scorecam"
    viz = _visualizer(method, head_model(model, tasks, scorecam=True) if scorecam else plain)
    results = {}
    for i, task in enumerate(tasks):
        score = score_lib.build_score(task, raw[i], labels.get(task.name), targets.get(task.name))
        fn = score
        if scorecam:
            shape = tuple(raw[i].shape[1:])
            fn = _unsoftmaxed(score, shape)
        score_list = [InactiveScore() for _ in tasks]
        score_list[i] = fn
        kwargs = {}
        if scorecam:
            kwargs["max_N"] = min(scorecam_channels, plain.get_layer(layers[task.name]).output.shape[-1])
        with _quiet():
            cam = viz(
                score_list, images, penultimate_layer=layers[task.name], seek_penultimate_conv_layer=False,
                expand_cam=False, normalize_cam=False, **kwargs,
            )
        results[task.name] = TaskCams(
            task.name, task.kind, layers[task.name], method, score.what, score.targets, np.asarray(cam, np.float32)
        )
    return results


def _unsoftmaxed(score, shape):
    def fn(probs):
        return score(unsoftmax(probs, shape))

    return fn


def upsample(maps, size: int) -> np.ndarray:
    """Bilinear (half-pixel centres) resize of ``[B, h, w]`` maps to ``[B, size, size]``.

    Args:
        maps: ``[B, h, w]`` maps (any float array).
        size: the side of the output, in pixels.

    Returns:
        A float32 ``np.ndarray`` of shape ``[B, size, size]``.

    Example:
        >>> import numpy as np
        >>> upsample(np.ones((1, 2, 2)), 8).shape
        (1, 8, 8)
    """
    maps = np.asarray(maps, np.float32)
    return keras.ops.convert_to_numpy(
        keras.ops.image.resize(maps[..., None], (size, size), interpolation="bilinear")
    )[..., 0]



