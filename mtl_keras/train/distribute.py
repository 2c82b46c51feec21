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
import socket
import time

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


def get_strategy(name: str = "auto", connect_timeout: float = 300.0) -> tf.distribute.Strategy:
    """The distribution strategy called ``name``.

    - ``auto``: ``MirroredStrategy`` over all GPUs when more than one is visible, else the default.
    - ``default``: TensorFlow's default (one device, no distribution).
    - ``mirrored``: ``MirroredStrategy`` over every visible GPU (the CPU when there is none).
    - ``multiworker``: ``MultiWorkerMirroredStrategy``; the cluster comes from ``TF_CONFIG``. Every
      other worker must accept connections within ``connect_timeout`` seconds.

    Args:
        name: ``auto`` (default), ``default``, ``mirrored`` or ``multiworker`` (case-insensitive).
        connect_timeout: seconds to wait for the other workers (``multiworker`` only).

    Returns:
        A ``tf.distribute.Strategy``.

    Raises:
        MtlError: an unknown name, a bad ``TF_CONFIG``, or a worker unreachable within the timeout.

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
    config = _check_tf_config()
    wait_for_workers(config, connect_timeout)
    return tf.distribute.MultiWorkerMirroredStrategy()


def _tasks(config: dict) -> list[tuple[str, int, str]]:
    """``(job, index, address)`` of every task that trains (chief and workers), chief first."""
    cluster = config["cluster"]
    return [(job, i, addr) for job in ("chief", "worker") for i, addr in enumerate(cluster.get(job, []))]


def worker_role(config: dict | None = None) -> tuple[int, int]:
    """``(number of workers, this worker's rank)`` from ``TF_CONFIG``; rank 0 is the chief.

    The chief is task ``chief`` when the cluster has one, else ``worker`` 0. Without ``TF_CONFIG``
    there is one worker.

    Args:
        config: a parsed ``TF_CONFIG`` dict; ``None`` reads (and checks) the environment variable.

    Returns:
        ``(count, rank)`` as ints; ``(1, 0)`` without ``TF_CONFIG``.

    Raises:
        MtlError: ``TF_CONFIG`` is set but malformed.

    Example:
        >>> worker_role({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}})
        (2, 1)
    """
    if config is None:
        if not os.environ.get("TF_CONFIG"):
            return 1, 0
        config = _check_tf_config()
    tasks = _tasks(config)
    me = (config["task"]["type"], config["task"]["index"])
    ranks = [i for i, (job, index, _) in enumerate(tasks) if (job, index) == me]
    return len(tasks), (ranks[0] if ranks else 0)


def wait_for_workers(config: dict, timeout: float = 300.0, poll: float = 0.5) -> None:
    """Return once every other worker in ``config`` accepts a TCP connection; ``MtlError`` after ``timeout`` s.

    TensorFlow itself waits for a missing worker without end. Meanwhile this worker listens on its
    own port, so that the others' checks succeed too; it lets go before TensorFlow takes the port.

    Args:
        config: a parsed ``TF_CONFIG`` dict (``cluster`` and ``task``).
        timeout: seconds to wait for all the others together.
        poll: seconds between connection attempts.

    Raises:
        MtlError: a worker is still unreachable after ``timeout`` seconds.

    Example:
        >>> wait_for_workers({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}})
    """
    tasks = _tasks(config)
    me = (config["task"]["type"], config["task"]["index"])
    others = [addr for job, i, addr in tasks if (job, i) != me]
    if not others:
        return
    own = next(addr for job, i, addr in tasks if (job, i) == me)
    listener = None
    try:
        listener = socket.create_server(("", int(own.rsplit(":", 1)[1])), reuse_port=hasattr(socket, "SO_REUSEPORT"))
    except (OSError, ValueError):
        listener = None  # the port is taken or the address odd: TensorFlow will say so itself
    deadline = time.monotonic() + timeout
    try:
        for addr in others:
            host, _, port = addr.rpartition(":")
            while True:
                try:
                    with socket.create_connection((host.strip("[]"), int(port)), timeout=min(poll * 4, 5)):
                        break
                except (OSError, ValueError):
                    if time.monotonic() > deadline:
                        raise MtlError(
                            f"worker {addr} is unreachable after {timeout:.0f} s (is it started, with the same "
                            f"TF_CONFIG cluster, and is the port open?)"
                        ) from None
                    time.sleep(poll)
    finally:
        if listener is not None:
            listener.close()


def per_worker_dataset(strategy, build):
    """Each worker's own input pipeline: ``build(count, index)`` -> a ``tf.data.Dataset`` of that
    worker's part of the data, batched per replica.

    Through ``distribute_datasets_from_function``: no worker reads what it then throws away (as
    the default data sharding of ``experimental_distribute_dataset`` does), and a global step takes
    one batch per replica, so the global batch is the batch times the replicas.

    Args:
        strategy: the ``tf.distribute.Strategy`` to train under.
        build: a callable ``(count, index) -> tf.data.Dataset``, the worker's part batched per replica.

    Returns:
        A ``tf.distribute.DistributedDataset``.

    Example:
        >>> ds = per_worker_dataset(get_strategy("default"), lambda n, i: tf.data.Dataset.range(4).batch(2))
        >>> [int(b.shape[0]) for b in ds]
        [2, 2]
    """

    def dataset_fn(context):
        return build(context.num_input_pipelines, context.input_pipeline_id)

    return strategy.distribute_datasets_from_function(dataset_fn)
