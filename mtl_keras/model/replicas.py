"""Keras 3 workarounds that let ``MultiTaskModel`` train on several replicas and workers.

Both work around keras-team/keras#20585: Keras all-reduces values that ``MultiWorkerMirroredStrategy``
cannot reduce. tests/test_multiworker.py fails without them.

Example:
    >>> logs_for_reduction({"loss": 1.0}, tf.distribute.get_strategy())
    {'loss': 1.0}
"""

from __future__ import annotations

import tensorflow as tf
def one_replica_batch(batch, strategy=None):
    """The batch as one replica sees it: every ``PerReplica`` value replaced by its first local part.

    Keras' symbolic build needs only the shapes and dtypes of a batch. Keras 3 gets them by
    ``strategy.reduce("MEAN", batch)`` on the whole ``(x, y, sample_weight)`` structure, which
    ``Strategy.reduce`` does not support for nests: on one worker the call happens to hand the
    structure back, across workers ``MultiWorkerMirroredStrategy`` tries to turn the tuple into a
    tensor and ``fit`` dies with "Attempt to convert a value (PerReplica:{...}) with an unsupported
    type" (keras-team/keras#20585, tensorflow/tensorflow#72388). Taking a local part needs no
    collective at all.

    Args:
        batch: a nest of tensors and ``PerReplica`` values (one distributed batch).
        strategy: the strategy the batch comes from (default: the current one).

    Returns:
        The same nest with each distributed value replaced by its first local replica's part.

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

    Args:
        strategy: a ``tf.distribute`` strategy (default: the current one).

    Returns:
        Whether ``fit`` needs the multi-worker workarounds.

    Example:
        >>> is_multi_worker(tf.distribute.get_strategy())
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

    Args:
        logs: the step's ``{name: scalar}`` logs.
        strategy: the strategy (default: the current one).

    Returns:
        ``logs``, each tensor with a leading axis of 1 across workers; unchanged otherwise.

    Example:
        >>> logs_for_reduction({"loss": 1.0}, tf.distribute.get_strategy())
        {'loss': 1.0}
    """
    if not is_multi_worker(strategy):
        return logs
    return tf.nest.map_structure(lambda v: tf.expand_dims(v, 0) if tf.is_tensor(v) else v, logs)
