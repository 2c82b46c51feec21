"""Which shared trunk layer a CAM is taken on: tap names (``c3``/``c4``/``c5``), layer names, ``auto``.

Works on a loaded model from its graph alone: the ``c5`` tap is what ``shared_pool`` reads, and
``c3``/``c4`` are the last trunk layers at strides 8/16 that ``c5`` is computed from (the rule
``build_trunk`` uses), so it needs no trunk-specific layer names.

Example (the functions' own examples build the same ResNet50 model; they are not run by the test
suite, which runs this one, building it once):
    >>> import mtl_keras as mk
    >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "box"]), image_size=64)
    >>> tap_layers(m)
    {'c2': 'conv2_block3_out', 'c3': 'conv3_block4_out', 'c4': 'conv4_block6_out', 'c5': 'conv5_block3_out'}
    >>> resolve_layer(m, "box", "auto"), resolve_layer(m, "shape"), resolve_layer(m, "shape", "c4")
    ('conv4_block6_out', 'conv5_block3_out', 'conv4_block6_out')
    >>> reads(m, "shape", "conv5_block3_out"), reads(m, "box", "conv5_block3_out")
    (True, False)
    >>> is_shared(m, "conv4_block6_out"), is_shared(m, "conv5_block3_out"), tap_of(m, "conv4_block6_out")
    (True, False, 'c4')
"""

from __future__ import annotations

from mtl_keras.balancing.shared import ancestors
from mtl_keras.errors import MtlError
from mtl_keras.model.trunks import TAP_STRIDES

AUTO = "auto"
# "auto" takes, per head, the deepest of these that the head actually reads.
AUTO_ORDER = ("c5", "c4", "c3")


def _layer_names(tensor) -> set:
    """Names of the layers a symbolic tensor is computed from (itself included)."""
    return {op.name for op in ancestors(tensor)}


def tap_layers(model) -> dict:
    """``{"c2": name, ..., "c5": name}``: the model's shared trunk taps by layer name.

    Args:
        model: a multi-task model built by ``mtl_keras`` (it has a ``shared_pool`` layer).

    Returns:
        ``{tap: layer name}`` for the taps found, in ``c2``..``c5`` order (``c5`` always).

    Raises:
        MtlError: the model has no ``shared_pool`` layer.

    Example:
        >>> import mtl_keras as mk  # doctest: +SKIP
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape"]), image_size=64)  # doctest: +SKIP
        >>> tap_layers(m)  # doctest: +SKIP
        {'c2': 'conv2_block3_out', 'c3': 'conv3_block4_out', 'c4': 'conv4_block6_out', 'c5': 'conv5_block3_out'}
    """
    try:
        c5 = model.get_layer("shared_pool").input
    except ValueError:
        raise MtlError("this model has no 'shared_pool' layer: not a multi-task model built by mtl_keras") from None
    size = model.input_shape[1]
    trunk = _layer_names(c5)
    taps = {}
    for layer in model.layers:  # topological order: the last match at a stride is the tap
        if layer.name not in trunk:
            continue
        shape = getattr(layer.output, "shape", None)
        if shape is None or len(shape) != 4:
            continue
        for tap, stride in TAP_STRIDES.items():
            if tap != "c5" and shape[1] == size // stride and shape[2] == size // stride:
                taps[tap] = layer.name
    taps["c5"] = c5._keras_history[0].name
    return {k: taps[k] for k in TAP_STRIDES if k in taps}


def reads(model, task: str, layer: str) -> bool:
    """Whether task ``task``'s output is computed from layer ``layer`` (no gradient can flow otherwise).

    Args:
        model: a functional multi-task model.
        task: a task (output layer) name.
        layer: a layer name.

    Returns:
        True when ``layer`` is among the ancestors of the task's output.

    Example:
        >>> import mtl_keras as mk  # doctest: +SKIP
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "box"]), image_size=64)  # doctest: +SKIP
        >>> reads(m, "shape", "conv5_block3_out"), reads(m, "box", "conv5_block3_out")  # doctest: +SKIP
        (True, False)
    """
    return layer in _layer_names(model.get_layer(task).output)


def resolve_layer(model, task: str, layer: str = AUTO) -> str:
    """The layer name to take ``task``'s CAM on: ``auto``, a tap (``c3``/``c4``/``c5``) or a layer name.

    ``auto`` is the deepest shared tap this head reads: ``c5`` for heads on the pooled vector,
    ``c4`` for the box head (it reads the stride-16 map). A layer the head does not read, or one
    without a spatial map, is an error naming the problem.

    Args:
        model: a multi-task model built by ``mtl_keras``.
        task: the task (output layer) name.
        layer: ``auto`` (default), a tap name (``c2``..``c5``) or a layer name.

    Returns:
        The layer name.

    Raises:
        MtlError: no tap read by the head (``auto``), an unknown layer, a non-spatial layer, or one the head does not read.

    Example:
        >>> import mtl_keras as mk  # doctest: +SKIP
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape"]), image_size=64)  # doctest: +SKIP
        >>> resolve_layer(m, "shape"), resolve_layer(m, "shape", "c4")  # doctest: +SKIP
        ('conv5_block3_out', 'conv4_block6_out')
    """
    taps = tap_layers(model)
    if layer == AUTO:
        for tap in AUTO_ORDER:
            if tap in taps and reads(model, task, taps[tap]):
                return taps[tap]
        raise MtlError(f"task {task!r} reads none of the shared taps {', '.join(taps.values())}")
    name = taps.get(layer, layer)
    try:
        found = model.get_layer(name)
    except ValueError:
        raise MtlError(
            f"no layer {layer!r} in the model; use auto, a tap ({', '.join(f'{k}={v}' for k, v in taps.items())}) "
            "or a layer name"
        ) from None
    shape = getattr(found.output, "shape", None)
    if shape is None or len(shape) != 4:
        raise MtlError(f"layer {name!r} has output shape {shape}; a CAM needs a spatial [H, W, C] map")
    if not reads(model, task, name):
        raise MtlError(
            f"task {task!r} does not read layer {name!r} (its head is not computed from it); "
            f"use auto or a tap it reads"
        )
    return name


def option_for(layer, task: str) -> str:
    """The layer option of one task: ``layer`` itself, or its entry in a per-task dict (default ``auto``).

    Args:
        layer: one layer option for all tasks, or ``{task: option}``.
        task: the task name.

    Returns:
        The task's layer option (a string).

    Example:
        >>> option_for("c4", "box"), option_for({"box": "c3"}, "box"), option_for({"box": "c3"}, "shape")
        ('c4', 'c3', 'auto')
    """
    return layer.get(task, AUTO) if isinstance(layer, dict) else layer


def tap_of(model, layer: str) -> str | None:
    """The tap name (``c3``/``c4``/``c5``) of a layer, or ``None`` for other layers.

    Args:
        model: a multi-task model built by ``mtl_keras``.
        layer: a layer name.

    Returns:
        The tap name (``c2``..``c5``), or ``None``.

    Example:
        >>> import mtl_keras as mk  # doctest: +SKIP
        >>> tap_of(mk.build_model(mk.data.tasks_for("shapes", names=["shape"]), image_size=64), "conv4_block6_out")  # doctest: +SKIP
        'c4'
    """
    for tap, name in tap_layers(model).items():
        if name == layer:
            return tap
    return None


def is_shared(model, layer: str) -> bool:
    """Whether ``layer`` feeds more than one head (the point of explaining *shared* features).

    Args:
        model: a functional multi-task model.
        layer: a layer name.

    Returns:
        True when two or more task outputs are computed from ``layer``.

    Example:
        >>> import mtl_keras as mk  # doctest: +SKIP
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "box"]), image_size=64)  # doctest: +SKIP
        >>> is_shared(m, "conv4_block6_out"), is_shared(m, "conv5_block3_out")  # doctest: +SKIP
        (True, False)
    """
    return sum(reads(model, n, layer) for n in model.output_names) > 1

