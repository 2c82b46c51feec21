"""Data sources (built-in scenes, tensorflow-datasets, a user's COCO JSON) and the ``load`` entry point.

Example:
    >>> import mtl_keras as mk
    >>> train, val = mk.data.load("shapes", split=["train", "val"], image_size=32, batch_size=4, size=8)
    >>> x, y, w = next(iter(val)); tuple(x.shape)
    (4, 32, 32, 3)
"""

from __future__ import annotations

from mtl_keras.data.pipeline import make_pipeline
from mtl_keras.data.scenes import ScenesSource
from mtl_keras.errors import MtlError, unknown

# name -> factory(**options) returning a source with .tasks(), .examples(split, image_size, size), .flip_ok
SOURCES = {
    "shapes": lambda **kw: ScenesSource("shapes", **kw),
    "digits": lambda **kw: ScenesSource("digits", **kw),
}
# Prefixed names ("tfds:oxford_iiit_pet", "coco:/path/to/dir") -> factory(rest, **options)
PREFIXED_SOURCES: dict = {}


def register_source(name: str, factory, prefixed: bool = False) -> None:
    """Make a data source available to ``load`` (and the CLI's ``--data``).

    Example:
        >>> register_source("shapes4", lambda **kw: ScenesSource("shapes", max_objects=4, **kw))
        >>> get_source("shapes4").max_objects
        4
    """
    (PREFIXED_SOURCES if prefixed else SOURCES)[name] = factory


def available_sources() -> list[str]:
    """Names ``load`` accepts; prefixed ones end with ``:``.

    Example:
        >>> "shapes" in available_sources()
        True
    """
    return sorted(SOURCES) + sorted(f"{p}:" for p in PREFIXED_SOURCES)


def get_source(name: str, **options):
    """The source object behind a dataset name.

    Example:
        >>> get_source("digits").name
        'digits'
    """
    if not isinstance(name, str) or not name:
        raise MtlError(f"dataset name must be a non-empty string, got {name!r}")
    if ":" in name:
        prefix, rest = name.split(":", 1)
        if prefix in PREFIXED_SOURCES:
            return PREFIXED_SOURCES[prefix](rest, **options)
    elif name in SOURCES:
        return SOURCES[name](**options)
    raise unknown("dataset", name, available_sources())


def load(
    name: str,
    split="train",
    image_size: int = 96,
    batch_size: int = 32,
    tasks=None,
    augment: bool = True,
    size: int | None = None,
    seed: int = 0,
    **source_options,
):
    """Batched ``(image, targets, sample_weights)`` datasets for ``model.fit`` / ``evaluate``.

    ``split`` may be a list, giving a list of datasets. ``tasks`` defaults to every task the dataset
    can label; pass ``model.tasks`` to match a model. ``size`` caps the number of examples. Training
    splits are shuffled and (where the labels allow it) randomly flipped.

    Example:
        >>> ds = load("shapes", split="test", image_size=32, batch_size=2, size=2)
        >>> sorted(next(iter(ds))[1])
        ['box', 'color', 'count', 'present', 'shape']
    """
    if isinstance(split, (list, tuple)):
        return [
            load(name, s, image_size, batch_size, tasks, augment, size, seed, **source_options) for s in split
        ]
    if int(image_size) < 16:
        raise MtlError(f"image size must be at least 16 pixels, got {image_size}")
    source = get_source(name, **source_options)
    if tasks is None:
        tasks = list(source.tasks().values())
    examples = source.examples(split, int(image_size), size)
    return make_pipeline(
        examples, tasks, int(image_size), int(batch_size), training=(split == "train"),
        augment=augment, flip_ok=getattr(source, "flip_ok", False), seed=seed,
    )


def data_error(error: BaseException, name=None) -> MtlError | None:
    """The one-line ``MtlError`` behind a TensorFlow error raised while reading dataset ``name``, or None.

    Bad labels and undecodable images fail inside ``tf.data`` (the only place they are seen without a
    separate pass over the data); this names the problem, and the files when the source can find them.

    Example:
        >>> data_error(RuntimeError("a bug"), "shapes") is None
        True
    """
    from mtl_keras.errors import from_tf_error

    def find_bad_images():
        try:
            return list(getattr(get_source(name), "unreadable_images", lambda: [])())
        except Exception:  # the diagnosis must not hide the original error
            return []

    return from_tf_error(error, find_bad_images if name else None)


def _tfds_source(name, **options):
    from mtl_keras.data.tfds import TfdsSource

    return TfdsSource(name, **options)


def _coco_source(path, **options):
    from mtl_keras.data.coco import CocoJsonSource

    return CocoJsonSource(path, **options)


# "tfds:oxford_iiit_pet", "tfds:voc/2007", "tfds:coco/2017" (see mtl_keras.data.tfds) and
# "coco:DIR" or "coco:DIR/file.json" for a user's images + COCO instances JSON (mtl_keras.data.coco).
register_source("tfds", _tfds_source, prefixed=True)
register_source("coco", _coco_source, prefixed=True)
