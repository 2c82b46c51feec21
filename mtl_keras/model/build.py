"""``build_model``: one shared trunk, one named output per task, compile defaults from the tasks.

Example:
    >>> import mtl_keras as mk
    >>> tasks = mk.data.tasks_for("shapes", names=["shape", "box"])
    >>> model = mk.build_model(tasks, trunk="resnet50", image_size=64)
    >>> sorted(model.output_names)
    ['box', 'shape']
"""

from __future__ import annotations

import keras

from mtl_keras import tasks as task_lib
from mtl_keras.errors import MtlError
from mtl_keras.layers import fpn_features
from mtl_keras.model.multitask import MultiTaskModel
from mtl_keras.model.trunks import build_trunk, trunk_spec


def _topological(tasks) -> list:
    """Tasks ordered so each comes after the tasks it ``depends_on``; a cycle is an error."""
    by_name = {t.name: t for t in tasks}
    order, state = [], {}

    def visit(t, path):
        if state.get(t.name) == "done":
            return
        if state.get(t.name) == "active":
            raise MtlError(f"task dependencies form a cycle: {' -> '.join([*path, t.name])}")
        state[t.name] = "active"
        for d in t.depends_on:
            visit(by_name[d], [*path, t.name])
        state[t.name] = "done"
        order.append(t)

    for t in tasks:
        visit(t, [])
    return order


def build_model(
    tasks,
    trunk: str = "resnet50",
    image_size: int = 96,
    weights=None,
    bn_momentum: float | None = 0.9,
    branch_point: str | None = None,
    name: str = "mtl",
    zero_init_residual: bool = True,
    pool_pyramid: bool | None = None,
) -> MultiTaskModel:
    """A functional multi-task model: input ``image`` (RGB 0–255), one output per task, named after it.

    ``branch_point`` (``"c3"`` or ``"c4"``) shares the trunk only up to that tap; global heads then
    each get their own copy of the deeper stages (dense heads keep using the shared taps).
    A task's ``depends_on`` feeds the outputs of those tasks into its head.
    ``zero_init_residual`` starts each residual block of a from-scratch ResNet as the identity
    (``mtl_keras.model.trunks.zero_residual_gammas``). ``pool_pyramid`` (default: when a task is dense)
    feeds the global heads the average of the shared feature pyramid beside that of ``c5``.

    Args:
        tasks: ``Task`` objects with unique names (e.g. from ``mtl_keras.data.tasks_for``).
        trunk: a registered trunk (``resnet50``, ``mobilenet_v3_small``, ``mobilenet_v3_large``).
        image_size: side of the square input, in pixels.
        weights: ``None`` (from scratch), ``"imagenet"`` (downloads) or a trunk ``.weights.h5`` path.
        bn_momentum: BatchNorm momentum of the trunk (``None``: Keras' default).
        branch_point: ``"c3"`` / ``"c4"`` to stop sharing the trunk after that tap, or ``None``.
        name: the model's name.
        zero_init_residual: start each from-scratch residual block as the identity.
        pool_pyramid: global heads also read the pooled FPN (default: when a task is dense).

    Returns:
        A ``MultiTaskModel`` whose outputs are named after the tasks.

    Example:
        >>> import mtl_keras as mk
        >>> ts = mk.data.tasks_for("shapes", names=["shape", "count"])
        >>> m = build_model(ts, image_size=64)
        >>> {k: tuple(v.shape) for k, v in sorted(m.output.items())}
        {'count': (None, 1), 'shape': (None, 6)}
    """
    tasks = task_lib.check_unique(tasks)
    trunk_spec(trunk)
    image_size = int(image_size)
    image = keras.Input((image_size, image_size, 3), name="image")
    taps = build_trunk(trunk, image, weights=weights, bn_momentum=bn_momentum, zero_init_residual=zero_init_residual)
    shared_pool = keras.layers.GlobalAveragePooling2D(name="shared_pool")
    # "image" rides along for heads that read the pixels themselves (a detector's reader pools them at its main object).
    features = {**taps, "pooled": shared_pool(taps["c5"]), "image": image}
    if pool_pyramid is None:
        pool_pyramid = any(t.dense for t in tasks)
    if pool_pyramid:
        # Global heads also read the pooled pyramid that the dense heads train pixel by pixel: the
        # largest object fills most of it, so its class is there long before c5 has learned it.
        pyramid = keras.layers.GlobalAveragePooling2D(name="pyramid_pool")(fpn_features(features))
        features["pooled"] = keras.layers.Concatenate(name="shared_features")([features["pooled"], pyramid])
    branches = {}
    if branch_point is not None:
        if branch_point not in ("c3", "c4"):
            raise MtlError(f"branch_point must be 'c3' or 'c4' (the tap after which tasks stop sharing), got {branch_point!r}")
        branches = _branch_copies(trunk, image_size, branch_point, [t for t in tasks if not t.dense])
    outputs = {}
    by_name = {t.name: t for t in tasks}
    for task in _topological(tasks):
        if task.dense and not task.shared_features:
            raise MtlError(f"task {task.name!r} is dense: its head always reads the shared feature maps "
                           f"(shared_features=False is for global heads)")
        task_features = features
        if task.name in branches:
            c5 = branches[task.name](taps[branch_point])
            task_features = {**features, "c5": c5, "pooled": keras.layers.GlobalAveragePooling2D(name=f"{task.name}_pool")(c5)}
        extra = [by_name[d].summary_for(task.name, outputs[d], i, features=task_features, spatial=task.dense)
                 for i, d in enumerate(task.depends_on)]
        outputs[task.name] = task.head(task_features, extra=extra or None)
    build_config = {
        "trunk": trunk, "image_size": image_size, "bn_momentum": bn_momentum,
        "branch_point": branch_point, "pool_pyramid": bool(pool_pyramid), "weights": weights if weights in (None, "imagenet") else str(weights),
    }
    return MultiTaskModel(inputs=image, outputs=outputs, tasks=tasks, build_config=build_config, name=name)


def _branch_copies(trunk: str, image_size: int, branch_point: str, tasks) -> dict:
    """Per-task copies of the trunk stages after ``branch_point``, as sub-models named ``<task>_branch``."""
    template_in = keras.Input((image_size, image_size, 3))
    template_taps = build_trunk(trunk, template_in, weights=None)
    tail = keras.Model(template_taps[branch_point], template_taps["c5"])
    copies = {}
    for task in tasks:
        copy = keras.models.clone_model(tail)
        copy.name = f"{task.name}_branch"
        copies[task.name] = copy
    return copies
