"""Picking a ``tf.distribute`` strategy by name: ``auto``, ``default``, ``mirrored``, ``multiworker``.

Build and compile the model under ``strategy.scope()``; every balancer scales its losses to the
global batch, so the same command trains on one device or many.

Example:
    >>> strategy = get_strategy("default")
    >>> strategy.num_replicas_in_sync
    1
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from mtl_keras.errors import MtlError, unknown

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def _check_tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise MtlError(
            "--strategy multiworker needs TF_CONFIG, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise MtlError(f"TF_CONFIG is not valid JSON: {e.msg} at position {e.pos}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise MtlError('TF_CONFIG must hold "cluster" (job name -> list of host:port) and "task" ({"type", "index"})')
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise MtlError(f"TF_CONFIG task {task!r} is not in its cluster (jobs: {', '.join(sorted(cluster))})")
    return config


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The distribution strategy called ``name``.

    - ``auto``: ``MirroredStrategy`` over all GPUs when more than one is visible, else the default.
    - ``default``: TensorFlow's default (one device, no distribution).
    - ``mirrored``: ``MirroredStrategy`` over every visible GPU (the CPU when there is none).
    - ``multiworker``: ``MultiWorkerMirroredStrategy``; the cluster comes from ``TF_CONFIG``.

    Example:
        >>> get_strategy("horovod")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: unknown strategy 'horovod'; available: auto, default, mirrored, multiworker
    """
    key = str(name).strip().lower()
    if key not in STRATEGIES:
        raise unknown("strategy", name, STRATEGIES)
    if key == "auto":
        key = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if key == "default":
        return tf.distribute.get_strategy()
    if key == "mirrored":
        return tf.distribute.MirroredStrategy()
    _check_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()
