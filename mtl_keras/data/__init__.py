"""Data sources (built-in scenes, tensorflow-datasets, a user's COCO JSON, CSV or class folders), ``load`` and ``tasks_for``.

Example:
    >>> import mtl_keras as mk
    >>> train, val = mk.data.load("shapes", split=["train", "val"], image_size=32, batch_size=4, size=8)
    >>> x, y, w = next(iter(val)); tuple(x.shape)
    (4, 32, 32, 3)
"""

from __future__ import annotations

import functools
import inspect

from mtl_keras.data.coco import CocoJsonSource
from mtl_keras.data.csv_source import CsvSource
from mtl_keras.data.folder_source import FolderSource
from mtl_keras.data.pipeline import make_pipeline
from mtl_keras.data.scenes import ScenesSource
from mtl_keras.data.sharding import sharded_examples
from mtl_keras.data.tfds import TfdsSource
from mtl_keras.errors import MtlError, from_tf_error, unknown

# name -> factory(**options) returning a source with .tasks(), .examples(split, image_size, size), .flip_ok
SOURCES: dict = {}
# Prefixed names ("tfds:oxford_iiit_pet", "coco:/path/to/dir") -> factory(rest, **options)
PREFIXED_SOURCES: dict = {}
# Source key ("shapes", "tfds:") -> the option names its factory takes, or None when it cannot tell
# (a factory taking **kwargs); get_source checks them so a wrong option is an MtlError, not a TypeError.
SOURCE_OPTIONS: dict = {}


def _keyword_names(factory, prefixed: bool):
    params = list(inspect.signature(factory).parameters.values())[1 if prefixed else 0:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def register_source(name: str, factory, prefixed: bool = False, options=None) -> None:
    """Make a data source available to ``load`` (and the CLI's ``--data``).

    ``options``: the keyword options the factory takes; by default read from its signature (a
    factory taking ``**kwargs`` gets whatever it is passed, unchecked).

    Args:
        name: the dataset name (for a prefixed source, the part before ``:``).
        factory: a callable returning the source object; a prefixed one gets the text after ``:`` first.
        prefixed: register ``name:`` sources (``tfds:NAME``, ``coco:DIR``) instead of one exact name.
        options: the option names the factory accepts; ``None`` reads them from its signature.

    Example:
        >>> register_source("shapes4", lambda seed=0: ScenesSource("shapes", seed=seed, max_objects=4))
        >>> get_source("shapes4").max_objects, sorted(source_options("shapes4"))
        (4, ['seed'])
    """
    (PREFIXED_SOURCES if prefixed else SOURCES)[name] = factory
    SOURCE_OPTIONS[f"{name}:" if prefixed else name] = (
        _keyword_names(factory, prefixed) if options is None else frozenset(options)
    )


def available_sources() -> list[str]:
    """Names ``load`` accepts; prefixed ones end with ``:``.

    Example:
        >>> "shapes" in available_sources()
        True
    """
    return sorted(SOURCES) + sorted(f"{p}:" for p in PREFIXED_SOURCES)


def _resolve(name: str):
    """``(factory, positional args, key in SOURCE_OPTIONS)`` for a dataset name."""
    if not isinstance(name, str) or not name:
        raise MtlError(f"dataset name must be a non-empty string, got {name!r}")
    if ":" in name:
        prefix, rest = name.split(":", 1)
        if prefix in PREFIXED_SOURCES:
            return PREFIXED_SOURCES[prefix], (rest,), f"{prefix}:"
    elif name in SOURCES:
        return SOURCES[name], (), name
    raise unknown("dataset", name, available_sources())


def source_options(name: str) -> frozenset | None:
    """The option names the source behind ``name`` takes (``data_dir``, ...), or None when unknown.

    Args:
        name: a dataset name as ``load`` takes it (``shapes``, ``tfds:voc/2007``, ...).

    Returns:
        A frozenset of option names, or None when the factory takes ``**kwargs`` (any option passes).

    Raises:
        MtlError: ``name`` is empty or not a registered dataset.

    Example:
        >>> sorted(source_options("tfds:voc/2007"))
        ['bool_tasks', 'data_dir', 'download', 'labels', 'max_objects']
        >>> "data_dir" in source_options("shapes")
        False
    """
    return SOURCE_OPTIONS.get(_resolve(name)[2])


def get_source(name: str, **options):
    """The source object behind a dataset name; an option the source does not take is an ``MtlError``.

    Args:
        name: a dataset name as ``load`` takes it.
        **options: keyword options for the source's factory (``data_dir``, ``seed``, ...).

    Returns:
        The source object (it has ``tasks()`` and ``examples(split, image_size, size)``).

    Raises:
        MtlError: an unknown dataset name, or an option the source does not take.

    Example:
        >>> get_source("digits").name
        'digits'
        >>> get_source("shapes", data_dir="/data")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: dataset 'shapes' takes no option data_dir; its options: max_objects, seed, sizes
    """
    factory, args, key = _resolve(name)
    accepted = SOURCE_OPTIONS.get(key)
    unexpected = sorted(set(options) - accepted) if accepted is not None else []
    if unexpected:
        takes = ", ".join(sorted(accepted)) or "none"
        raise MtlError(f"dataset {name!r} takes no option {', '.join(unexpected)}; its options: {takes}")
    return factory(*args, **options)


def load(
    name: str,
    split="train",
    image_size: int = 96,
    batch_size: int = 32,
    tasks=None,
    augment: bool = True,
    size: int | None = None,
    seed: int = 0,
    shard=None,
    **source_options,
):
    """Batched ``(image, targets, sample_weights)`` datasets for ``model.fit`` / ``evaluate``.

    ``split`` may be a list, giving a list of datasets. ``tasks`` defaults to every task the dataset
    can label; pass ``model.tasks`` to match a model. ``size`` caps the number of examples. Training
    splits are shuffled and (where the labels allow it) randomly flipped. ``shard=(count, index)``
    keeps one worker's part of the split (``mtl_keras.data.sharding``).

    Args:
        name: a registered dataset (``shapes``, ``digits``, ``tfds:NAME``, ``coco:DIR``).
        split: ``train`` | ``val`` | ``test``, or a list of them.
        image_size: side of the square images, in pixels (at least 16).
        batch_size: examples per batch.
        tasks: the tasks to encode targets for (default: all the dataset has).
        augment: random flips on the training split, where the source allows them.
        size: at most this many examples (default: the whole split).
        seed: shuffling and augmentation seed.
        shard: ``(count, index)``: keep one worker's part.
        **source_options: options of the source (``data_dir``, ``download``, ...).

    Returns:
        A ``tf.data.Dataset`` of ``(image, targets, sample_weights)`` batches, or a list of them.

    Example:
        >>> ds = load("shapes", split="test", image_size=32, batch_size=2, size=2)
        >>> sorted(next(iter(ds))[1])
        ['box', 'color', 'count', 'depth', 'mask', 'objects', 'present', 'shape']
    """
    if isinstance(split, (list, tuple)):
        return [
            load(name, s, image_size, batch_size, tasks, augment, size, seed, shard, **source_options) for s in split
        ]
    if int(image_size) < 16:
        raise MtlError(f"image size must be at least 16 pixels, got {image_size}")
    source = get_source(name, **source_options)
    if tasks is None:
        tasks = list(source.tasks().values())
    examples = sharded_examples(source, split, int(image_size), size, shard)
    return make_pipeline(
        examples, tasks, int(image_size), int(batch_size), training=(split == "train"),
        augment=augment, flip_ok=getattr(source, "flip_ok", False), seed=seed,
    )


def data_error(error: BaseException, name=None) -> MtlError | None:
    """The one-line ``MtlError`` behind a TensorFlow error raised while reading dataset ``name``, or None.

    Bad labels and undecodable images fail inside ``tf.data`` (the only place they are seen without a
    separate pass over the data); this names the problem, and the files when the source can find them.

    Args:
        error: the exception raised while iterating a dataset.
        name: the dataset name, used to list unreadable image files; ``None`` lists none.

    Returns:
        An ``MtlError`` with a one-line message, or None when ``error`` is not a data problem (a bug).

    Example:
        >>> data_error(RuntimeError("a bug"), "shapes") is None
        True
    """
    def find_bad_images():
        try:
            return list(getattr(get_source(name), "unreadable_images", lambda: [])())
        except Exception:  # the diagnosis must not hide the original error
            return []

    return from_tf_error(error, find_bad_images if name else None)


def _tfds_source(name, **options):
    return TfdsSource(name, **options)


def _coco_source(path, **options):
    return CocoJsonSource(path, **options)


# "tfds:oxford_iiit_pet", "tfds:voc/2007", "tfds:coco/2017" (see mtl_keras.data.tfds) and
# "coco:DIR" or "coco:DIR/file.json" for a user's images + COCO instances JSON (mtl_keras.data.coco).
# Their modules load lazily, so their options are spelled out (tests check them against the classes).
register_source("shapes", functools.partial(ScenesSource, "shapes"))
register_source("digits", functools.partial(ScenesSource, "digits"))
register_source("tfds", _tfds_source, prefixed=True,
                options=("data_dir", "download", "max_objects", "labels", "bool_tasks"))
register_source("coco", _coco_source, prefixed=True, options=("max_objects", "flip"))
# "csv:FILE" (a labels CSV, mtl_keras.data.csv_source) and "folder:DIR" (class folders, mtl_keras.data.folder_source).
register_source("csv", CsvSource, prefixed=True, options=("images", "labels", "flip"))
register_source("folder", FolderSource, prefixed=True, options=("flip",))


def tasks_for(dataset: str, names=None, **dataset_options) -> list:
    """The tasks a dataset has labels for, in the order of ``names`` (all of them when omitted).

    Args:
        dataset: a dataset name as ``load`` takes it.
        names: task names, as a list or a comma-separated string; ``None`` means every task it has.
        **dataset_options: options of the source (``data_dir``, ...).

    Returns:
        A list of ``Task`` objects, the source's default task for each name.

    Raises:
        MtlError: an unknown dataset, an empty or repeated name, or a name the dataset has no label for.

    Example:
        >>> [t.kind for t in tasks_for("shapes", names=["color", "count"])]
        ['classification', 'regression']
    """
    available = get_source(dataset, **dataset_options).tasks()
    if names is None:
        return list(available.values())
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise MtlError("no task names given")
    seen = set()
    for n in names:
        if n in seen:
            raise MtlError(f"task {n!r} is listed twice")
        seen.add(n)
        if n not in available:
            raise MtlError(f"dataset {dataset!r} has no label for task {n!r}; available: {', '.join(available)}")
    return [available[n] for n in names]
