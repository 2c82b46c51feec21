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


def one_replica_batch(batch, strategy=None):
    """The batch as one replica sees it: every ``PerReplica`` value replaced by its first local part.

    Keras' symbolic build needs only the shapes and dtypes of a batch. Keras 3 gets them by
    ``strategy.reduce("MEAN", batch)`` on the whole ``(x, y, sample_weight)`` structure, which
    ``Strategy.reduce`` does not support for nests: on one worker the call happens to hand the
    structure back, across workers ``MultiWorkerMirroredStrategy`` tries to turn the tuple into a
    tensor and ``fit`` dies with "Attempt to convert a value (PerReplica:{...}) with an unsupported
    type" (keras-team/keras#20585, tensorflow/tensorflow#72388). Taking a local part needs no
    collective at all.

    Example:
        >>> import numpy as np
        >>> one_replica_batch((np.zeros((2, 3)), {"a": None}))[0].shape
        (2, 3)
    """
    strategy = strategy or tf.distribute.get_strategy()

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(local, batch)


def is_multi_worker(strategy=None) -> bool:
    """True under a ``MultiWorkerMirroredStrategy`` whose cluster has more than one worker.

    Example:
        >>> is_multi_worker(get_strategy("default"))
        False
    """
    strategy = strategy or tf.distribute.get_strategy()
    extended = getattr(strategy, "extended", None)
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        getattr(extended, "_in_multi_worker_mode", lambda: False)()
    )


def logs_for_reduction(logs, strategy=None):
    """Step logs shaped so that Keras can average them over the replicas of every worker.

    Across workers Keras 3 averages each log with ``strategy.reduce("MEAN", value, axis=0)``
    (``reduce_per_replica`` in keras/src/backend/tensorflow/trainer.py), which fails on the scalars
    that losses and metrics are ("Invalid reduction dimension 0 for input with 0 dimensions"; part
    of keras-team/keras#20585). A leading axis of length 1 makes that call the plain mean over the
    replicas, the same value Keras logs on one worker; elsewhere the logs pass unchanged.

    Example:
        >>> logs_for_reduction({"loss": 1.0}, get_strategy("default"))
        {'loss': 1.0}
    """
    if not is_multi_worker(strategy):
        return logs
    return tf.nest.map_structure(lambda v: tf.expand_dims(v, 0) if tf.is_tensor(v) else v, logs)
