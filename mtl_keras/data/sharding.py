"""Splitting a data source between workers: each reads only its own examples.

Under ``--strategy multiworker`` every worker builds its own training pipeline. A source whose
``examples`` takes ``shard=(count, index)`` reads only its part (the built-in scenes render only
their indices, tfds reads an even split); any other source is read whole and every ``count``-th
example kept. Every worker gets the same number of examples (the last ``n mod count`` are left
out), so all of them run the same number of steps per epoch: a worker that ran out early would
leave the others waiting in a collective.
"""

from __future__ import annotations

import inspect

from mtl_keras.errors import MtlError


def check_shard(shard) -> tuple[int, int] | None:
    """``(count, index)`` validated, or None for "the whole source".

    Args:
        shard: ``(count, index)`` (two integers), or ``None``.

    Returns:
        ``(count, index)`` as ints, or None for ``None`` and for a count of 1.

    Raises:
        MtlError: ``count`` below 1, or ``index`` outside ``0..count-1``.

    Example:
        >>> check_shard((2, 1)), check_shard(None), check_shard((1, 0))
        ((2, 1), None, None)
        >>> check_shard((2, 2))
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: shard index 2 is not in 0..1
    """
    if shard is None:
        return None
    count, index = (int(v) for v in shard)
    if count < 1:
        raise MtlError(f"shard count must be at least 1, got {count}")
    if not 0 <= index < count:
        raise MtlError(f"shard index {index} is not in 0..{count - 1}")
    return None if count == 1 else (count, index)


def shard_indices(n: int, shard) -> range:
    """The example indices of one shard of ``n``: interleaved, the same length on every shard.

    Args:
        n: the number of examples in the split.
        shard: ``(count, index)``, or ``None`` for all examples.

    Returns:
        A ``range`` of ``n // count`` indices (``range(n)`` without a shard).

    Raises:
        MtlError: an invalid shard, or fewer examples than workers.

    Example:
        >>> list(shard_indices(7, (2, 0))), list(shard_indices(7, (2, 1)))
        ([0, 2, 4], [1, 3, 5])
    """
    shard = check_shard(shard)
    if shard is None:
        return range(n)
    count, index = shard
    per = n // count
    if per < 1:
        raise MtlError(f"{n} example(s) cannot be shared among {count} workers; use at least {count}")
    return range(index, per * count, count)


def sharded_examples(source, split: str, image_size: int, size: int | None, shard):
    """``source.examples(...)`` restricted to one shard.

    Args:
        source: a data source (its ``examples(split, image_size, size[, shard])`` is called).
        split: the split name (``train``, ``val``, ``test``).
        image_size: side of the square images, in pixels.
        size: at most this many examples before sharding; ``None`` for the whole split.
        shard: ``(count, index)``, or ``None`` for the whole split.

    Returns:
        An unbatched ``tf.data.Dataset`` of the shard's examples.

    Raises:
        MtlError: an invalid shard.

    Example:
        >>> from mtl_keras.data.scenes import ScenesSource
        >>> int(sharded_examples(ScenesSource("shapes"), "val", 32, 5, (2, 1)).cardinality())
        2
    """
    shard = check_shard(shard)
    if shard is None:
        return source.examples(split, image_size, size)
    if "shard" in inspect.signature(source.examples).parameters:
        return source.examples(split, image_size, size, shard=shard)
    count, index = shard
    ds = source.examples(split, image_size, size)
    n = int(ds.cardinality())
    if n < 0:  # unknown length: keep every count-th; equal lengths are then the source's promise
        return ds.shard(count, index)
    return ds.take(len(shard_indices(n, shard)) * count).shard(count, index)
