"""What the tasks share: the trunk's layers, and the feature tensors where the task heads branch off.

Gradient-level balancers need both. ``shared_layers`` is the trunk (its parameters are where task
gradients conflict); ``shared_features`` are the tensors the heads read from it (the taps), where
per-task gradients cost a backward pass through one head instead of the whole network.

A task that ``depends_on`` another reads that task's *output*; the walk back from a task's output
stops at any other task's output, so a head that another head reads is not counted as shared: the
trunk ends where the heads begin, whatever reads what.
"""

from __future__ import annotations

import functools

import keras

__all__ = ["ancestors", "shared_features", "shared_layers", "task_outputs"]


def _history_key(tensor):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    return id(history.operation), history.node_index, history.tensor_index


def ancestors(tensor, stop=()) -> list:
    """The operations (layers) a Keras symbolic tensor is computed from, its own included, each once.

    The one graph walk of the library: ``shared_layers`` here, the CAM taps of ``mtl_keras.explain``
    and the head layers ``export`` keeps in float all read it.

    Args:
        tensor: a symbolic tensor of a functional model (``model.outputs[i]``, ``layer.output``).
        stop: symbolic tensors not to walk through (their layers and everything before them are left
            out unless reached another way).

    Returns:
        The layers, from the one that produced ``tensor`` back to the inputs (depth first).

    Example:
        >>> image = keras.Input((8,), name="image")
        >>> hidden = keras.layers.Dense(4, name="hidden")(image)
        >>> out = keras.layers.Dense(2, name="head")(hidden)
        >>> [op.name for op in ancestors(out)]
        ['head', 'hidden', 'image']
        >>> [op.name for op in ancestors(out, stop=[hidden])]
        ['head']
    """
    ops, seen = [], set()
    for op, _ in _walk(tensor, stop):
        if id(op) not in seen:
            seen.add(id(op))
            ops.append(op)
    return ops


def _walk(tensor, stop=()):
    """``(operation, node)`` pairs reached from ``tensor``, each node once (a layer applied twice
    has two), not through ``stop``."""
    blocked = {_history_key(t) for t in stop} - {None, _history_key(tensor)}
    found, seen, stack = [], set(), [tensor]
    while stack:
        t = stack.pop()
        key = _history_key(t)
        if key is None or key in blocked:
            continue
        history = t._keras_history
        op = history.operation
        node = op._inbound_nodes[history.node_index]
        if (id(op), history.node_index) in seen:
            continue
        seen.add((id(op), history.node_index))
        found.append((op, node))
        stack.extend(node.input_tensors)
    return found


def task_outputs(model) -> dict:
    """``{task name: symbolic output tensor}`` of a functional multi-task model.

    Example:
        >>> image = keras.Input((4,), name="image")
        >>> m = keras.Model(image, {"a": keras.layers.Dense(1, name="a")(image)})
        >>> list(task_outputs(m))
        ['a']
    """
    if isinstance(model.output, dict):
        return dict(model.output)
    return dict(zip(model.output_names, model.outputs))


def _task_walks(model) -> dict:
    outputs = task_outputs(model)
    return {
        name: _walk(tensor, [t for other, t in outputs.items() if other != name]) for name, tensor in outputs.items()
    }


def shared_layers(model) -> list:
    """The layers every task's output depends on (the shared trunk), in the model's layer order.

    A head that another task ``depends_on`` stays that task's own: the walk from each output stops
    at the other tasks' outputs.

    Args:
        model: a functional multi-task model (one output per task).

    Returns:
        The shared layers, as ``model.layers`` lists them.

    Example:
        >>> import mtl_keras as mk
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "count"]), "mobilenet_v3_small", 32)
        >>> names = [layer.name for layer in shared_layers(m)]
        >>> names[-1], "shape_logits" in names
        ('shared_pool', False)
    """
    walks = _task_walks(model)
    common = functools.reduce(set.intersection, ({id(op) for op, _ in walk} for walk in walks.values()))
    return [layer for layer in model.layers if id(layer) in common]


def shared_features(model) -> list:
    """The symbolic tensors the task heads read from the shared trunk (its taps), each once.

    Every input of a task-specific layer that a shared layer produced, the model's input excepted
    (the image has no parameters behind it). A task that reads no shared feature (a model whose
    tasks share nothing but the input) gives an empty list.

    Args:
        model: a functional multi-task model (one output per task).

    Returns:
        A list of symbolic tensors, in a fixed order (the order the walks meet them).

    Example:
        >>> import mtl_keras as mk
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "count"]), "mobilenet_v3_small", 32)
        >>> [t._keras_history.operation.name for t in shared_features(m)]
        ['shared_pool']
    """
    walks = _task_walks(model)
    shared = functools.reduce(set.intersection, ({id(op) for op, _ in walk} for walk in walks.values()))
    found, keys = [], set()
    for walk in walks.values():
        for op, node in walk:
            if id(op) in shared:
                continue
            for t in node.input_tensors:
                history = getattr(t, "_keras_history", None)
                key = _history_key(t)
                if history is None or key in keys or id(history.operation) not in shared:
                    continue
                if isinstance(history.operation, keras.layers.InputLayer):
                    continue
                keys.add(key)
                found.append(t)
    return found
