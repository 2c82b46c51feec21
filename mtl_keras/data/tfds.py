"""tensorflow-datasets as a source: any image dataset by its features, five of them hand-checked.

``tfds:NAME`` maps the dataset's features to tasks with no adapter written for it
(``mtl_keras.data.tfds_features``: a ``ClassLabel`` is a classification, a dict of bools a
multilabel, a sequence of boxes a detection and its ``present``, ...); ``describe()`` prints what
was found and what was skipped, and why. The ``labels`` option (``--label TASK=FEATURE[:KIND]``)
overrides or adds a mapping; ``bool_tasks="binary"`` makes each bool of a dict its own task.

Five datasets have adapters: thin overrides on the generic mapping that keep the label names of
the built-in scenes and what the generic mapping cannot know.

=======================  ===========================================================================
``--data``               labels (task name: meaning)
=======================  ===========================================================================
``tfds:oxford_iiit_pet`` ``breed`` (37 classes), ``species`` (cat, dog), ``box`` (head box, rel_yxyx;
                         missing on the test split), ``mask`` (trimap: background, pet, border; the
                         border is "not classified" in the dataset, so it is ignored in loss and mIoU)
``tfds:voc/2007``        ``present`` (multi-hot over 20 classes), ``objects`` (boxes + labels, all
``tfds:voc/2012``        objects, difficult ones included)
``tfds:coco/2017``       ``present`` (80 classes), ``objects`` (crowd regions left out)
``tfds:coco/2014``
=======================  ===========================================================================

Splits: ``train``/``val``/``test`` map to the dataset's own splits (``validation``, ``val``,
``valid`` or ``dev`` for ``val``). A missing one is carved from another by tfds' percent slicing
(by example position, the same on every run): no validation split -> ``val`` is the last 10% of
``train`` (which keeps the first 90%); no test split -> ``val`` and ``test`` are the two halves of
the validation split; neither -> ``train[:80%]``, ``train[80%:90%]``, ``train[90%:]``. Without a
``train`` split the largest one plays its part. When the dataset does not list its splits (tfds
mock data) ``train``, ``validation`` and ``test`` are taken as they are. Where the public test
split has no labels (COCO, VOC 2012) the adapters take ``val`` and ``test`` from the validation
split; ``oxford_iiit_pet`` keeps the last 10% of its train split for ``val``.

Class names come from the dataset's ``ClassLabel`` names (the demo prints them). A generic dataset
is not flipped in training (a mirrored digit or landmark changes meaning); the adapters' are.
Nothing downloads unless asked: ``download=True`` (a source option) or ``tfds build NAME`` once;
``data_dir`` (or ``$TFDS_DATA_DIR``) says where prepared data lives.

Example:
    >>> import mtl_keras as mk
    >>> src = mk.data.get_source("tfds:voc/2007")
    >>> sorted(src.tasks()), src.tasks()["objects"].classes[:2]
    (['objects', 'present'], ['aeroplane', 'bicycle'])
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable

import tensorflow as tf

from mtl_keras.data.describe import describe_tasks
from mtl_keras.data.sharding import check_shard
from mtl_keras.data.tfds_features import FeatureMap, map_features
from mtl_keras.data.tfds_labels import DEFAULT_MAX_OBJECTS, make_task, read_image, read_label
from mtl_keras.data.tfds_overrides import apply_overrides, parse_overrides
from mtl_keras.errors import MtlError, unknown

SPLITS = ("train", "val", "test")
_VAL_NAMES = ("validation", "val", "valid", "dev")

# The 80 COCO detection categories in tfds' label order, for when the installed dataset info has
# none (tfds only fills them in while preparing the data; mock data has plain numbers).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
PET_MASK_CLASSES = ("background", "pet", "border")
# Oxford pets trimap pixel values: 1 pet, 2 background, 3 not classified; anything else is unlabelled.
_TRIMAP_TO_CLASS = {1: 1, 2: 0, 3: 2}


def _pets(label):
    if label.kind == "segmentation" and label.path == "segmentation_mask":
        return dataclasses.replace(label, classes=PET_MASK_CLASSES, values=tuple(_TRIMAP_TO_CLASS.items()),
                                   nonzero=False, ignore_class="border")
    if label.kind == "classification" and label.path == "species":
        return dataclasses.replace(label, classes=tuple(c.lower() for c in label.classes))
    return label


def _coco(label):
    if label.reader in ("objects", "present") and label.path == "objects":
        # tfds fills the names in only while preparing the data; mock data has plain numbers.
        numbered = all(c.isdigit() for c in label.classes)
        return dataclasses.replace(label, drop="is_crowd", classes=COCO_CLASSES if numbered else label.classes)
    return label


@dataclasses.dataclass(frozen=True)
class Adapter:
    """What a hand-checked dataset sets on top of the generic mapping.

    ``labels`` are its tasks as label overrides (the dataset's other features are not mapped);
    ``adjust`` changes a mapped label where an override cannot say it (pets' trimap, COCO crowds).

    Example:
        >>> ADAPTERS["voc/2007"].max_objects
        50
    """

    labels: tuple
    splits: tuple
    max_objects: int = DEFAULT_MAX_OBJECTS
    adjust: Callable | None = None


_OBJECTS = ("present=objects:multilabel", "objects=objects:detection")
_HALF_VAL = (("train", "train"), ("val", "validation[:50%]"), ("test", "validation[50%:]"))
ADAPTERS = {
    "oxford_iiit_pet": Adapter(
        ("breed=label", "species=species", "box=head_bbox", "mask=segmentation_mask:segmentation"),
        (("train", "train[:90%]"), ("val", "train[90%:]"), ("test", "test")), adjust=_pets,
    ),
    "voc/2007": Adapter(_OBJECTS, (("train", "train"), ("val", "validation"), ("test", "test")), 50),
    "voc/2012": Adapter(_OBJECTS, _HALF_VAL, 60),
    "coco/2017": Adapter(_OBJECTS, _HALF_VAL, 100, adjust=_coco),
    "coco/2014": Adapter(_OBJECTS, _HALF_VAL, 100, adjust=_coco),
}


def plan_splits(available) -> tuple:
    """``(("train", S), ("val", S), ("test", S))``: the tfds split string S behind each of ours.

    See the module docstring for the rules.

    Args:
        available: the dataset's splits, name -> ``SplitInfo`` or example count (``info.splits``);
            empty when the dataset does not list them.

    Returns:
        The three ``(ours, tfds split)`` pairs.

    Example:
        >>> plan_splits({"train": 60000, "test": 10000})
        (('train', 'train[:90%]'), ('val', 'train[90%:]'), ('test', 'test'))
        >>> plan_splits({"train": 100, "validation": 10})[1:]
        (('val', 'validation[:50%]'), ('test', 'validation[50%:]'))
        >>> plan_splits({"full": 10})
        (('train', 'full[:80%]'), ('val', 'full[80%:90%]'), ('test', 'full[90%:]'))
    """
    sizes = {str(k): int(getattr(v, "num_examples", v) or 0) for k, v in dict(available).items()}
    sizes = sizes or {"train": 0, "validation": 0, "test": 0}
    train = "train" if "train" in sizes else max(sizes, key=sizes.get)
    val = next((s for s in _VAL_NAMES if s in sizes and s != train), None)
    test = "test" if "test" in sizes and train != "test" else None
    if val and test:
        found = (train, val, test)
    elif test:
        found = (f"{train}[:90%]", f"{train}[90%:]", test)
    elif val:
        found = (train, f"{val}[:50%]", f"{val}[50%:]")
    else:
        found = (f"{train}[:80%]", f"{train}[80%:90%]", f"{train}[90%:]")
    return tuple(zip(SPLITS, found))


def _open_builder(name: str, data_dir):
    import tensorflow_datasets as tfds  # lazy: seconds to import; only a tfds source needs it

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(name.split("/")[0].split(":")[0], known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "tfds.list_builders() lists them"
        raise MtlError(f"unknown tfds dataset {name!r}; {hint}") from None
    except Exception as e:  # a builder's own failure (a bad config, a missing package): name it, no traceback
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MtlError(f"tfds dataset {name!r} cannot be opened: {first}") from e


def _where(label) -> str:
    """Where a label comes from, for ``describe``: the path, with an object's fields or a count of values."""
    if label.reader in ("objects", "present"):
        fields = [f for f in (label.box, label.label) if f]
        return f"{label.path} ({', '.join(fields)})" if fields else label.path
    if label.kind == "regression" and label.units > 1:
        return f"{label.path} ({label.units} values)"
    return label.path


class TfdsSource:
    """A tensorflow-datasets dataset, its tasks mapped from its features (``ADAPTERS`` for five of them).

    Options: ``data_dir`` (where prepared tfds data lives), ``download`` (fetch and prepare it if
    missing; False by default, COCO is ~25 GB), ``max_objects`` (rows of a detection label),
    ``labels`` (``TASK=FEATURE[:KIND]`` overrides, ``mtl_keras.data.tfds_overrides``),
    ``bool_tasks`` (``multilabel``: a dict of bools is one multilabel task; ``binary``: one
    classification task per bool).

    Raises:
        MtlError: an unknown dataset, a data dir that does not exist, a bad option or label override.

    Example:
        >>> TfdsSource("oxford_iiit_pet").tasks()["mask"].classes
        ['background', 'pet', 'border']
        >>> [t.kind for t in TfdsSource("mnist", labels=["digit=label"]).tasks().values()]
        ['classification']
    """

    def __init__(self, name: str, data_dir=None, download: bool = False, max_objects: int | None = None,
                 labels=(), bool_tasks: str = "multilabel"):
        if not isinstance(name, str) or not name.strip():
            raise MtlError(f"tfds dataset name must be a non-empty string, got {name!r}")
        if data_dir is not None and not os.path.isdir(os.fspath(data_dir)):
            raise MtlError(f"tfds data dir not found: {os.fspath(data_dir)}")
        self.name = f"tfds:{name}"
        self.tfds_name = name
        self.adapter = ADAPTERS.get(name)
        self.data_dir = None if data_dir is None else os.fspath(data_dir)
        self.download = bool(download)
        self.max_objects = int(max_objects or (self.adapter.max_objects if self.adapter else DEFAULT_MAX_OBJECTS))
        if self.max_objects < 1:
            raise MtlError(f"max_objects must be at least 1, got {self.max_objects}")
        self.labels = parse_overrides(labels)
        self.bool_tasks = bool_tasks
        # Mirrored pets, cars and people are still pets, cars and people; a mirrored digit is not.
        self.flip_ok = self.adapter is not None
        self._builder = _open_builder(name, self.data_dir)
        self.feature_map = self._map_features()

    def _map_features(self) -> FeatureMap:
        features = self._builder.info.features
        found = map_features(features, self.bool_tasks, dataset=self.name)
        if self.adapter is not None:
            unused = tuple((l.path, f"not used by the {self.tfds_name} adapter") for l in found.labels)
            found = dataclasses.replace(found, labels=(), skipped=found.skipped + unused)
            found = apply_overrides(found, features, parse_overrides(self.adapter.labels), self.name)
        found = apply_overrides(found, features, self.labels, self.name)
        if self.adapter is not None and self.adapter.adjust is not None:
            labels = tuple(self.adapter.adjust(l) for l in found.labels)
            used = {f"{l.path}/{l.drop}" for l in labels if l.drop}
            skipped = tuple(s for s in found.skipped if s[0] not in used)
            found = dataclasses.replace(found, labels=labels, skipped=skipped)
        if not found.labels:
            raise MtlError(f"{self.name}: no feature maps to a task ({len(found.skipped)} skipped); "
                           "name one with labels=TASK=FEATURE[:KIND]")
        return found

    def class_names(self) -> dict:
        """Class names per task (None for a task without classes), from the dataset's own info.

        Returns:
            ``{task name: [class names] or None}``.

        Example:
            >>> len(TfdsSource("coco/2017").class_names()["objects"])
            80
        """
        return {l.name: list(l.classes) or None for l in self.feature_map.labels}

    def tasks(self) -> dict:
        """The default task for each label this dataset has, in the mapping's order.

        Returns:
            ``{task name: Task}``.

        Example:
            >>> TfdsSource("voc/2007").tasks()["objects"].max_objects
            50
        """
        return {l.name: make_task(l, self.max_objects) for l in self.feature_map.labels}

    def describe(self) -> str:
        """The mapping as text: the input and splits, one line per task, then the skipped features.

        Returns:
            The text (``mtl-keras data tfds:NAME`` prints it).

        Example:
            >>> print(TfdsSource("voc/2007").describe())  # doctest: +ELLIPSIS
            tfds:voc/2007: input image (?x?x3); splits train=train, val=validation, test=test
            task     kind        from                   classes
            present  multilabel  objects (bbox, label)  20: aeroplane, bicycle, bird, boat, bottle, bus, ...
            objects  detection   objects (bbox, label)  20: aeroplane, bicycle, bird, boat, bottle, bus, ...
            skipped:
              image/filename: text
            ...
        """
        found = self.feature_map
        where = {l.name: _where(l) for l in found.labels}
        splits = ", ".join(f"{ours}={theirs}" for ours, theirs in self.splits())
        shape = "x".join("?" if d is None else str(d) for d in found.image_shape)
        title = f"{self.name}: input {found.image_path} ({shape}); splits {splits}"
        notes = ["skipped:", *(f"  {path}: {reason}" for path, reason in found.skipped)] if found.skipped else []
        return describe_tasks(title, self.tasks(), where, notes=notes)

    def splits(self) -> tuple:
        """``(ours, tfds split)`` pairs for ``train``, ``val`` and ``test`` (module docstring).

        Returns:
            Three pairs, e.g. ``(("train", "train[:90%]"), ("val", "train[90%:]"), ("test", "test"))``.

        Example:
            >>> TfdsSource("coco/2017").splits()[2]
            ('test', 'validation[50%:]')
        """
        if self.adapter is not None:
            return self.adapter.splits
        return plan_splits(self._builder.info.splits)

    def tfds_split(self, split: str) -> str:
        """The tfds split string behind one of ``train``/``val``/``test``.

        Args:
            split: ``train``, ``val`` or ``test``.

        Returns:
            The tfds split string (e.g. ``"validation[50%:]"``).

        Raises:
            MtlError: an unknown split.

        Example:
            >>> TfdsSource("coco/2017").tfds_split("test")
            'validation[50%:]'
        """
        splits = dict(self.splits())
        if split not in splits:
            raise unknown("split", split, SPLITS)
        return splits[split]

    def examples(self, split: str, image_size: int, size: int | None = None, shard=None) -> tf.data.Dataset:
        """Unbatched ``{"image": uint8 HxWx3, "labels": {...}}`` elements of one split.

        ``shard=(count, index)``: this worker's even part of the split (tfds' ``even_splits``, equal
        sizes), read alone; ``size`` then caps the part at ``size // count``.

        Args:
            split: ``train``, ``val`` or ``test``.
            image_size: the model input side (unused here: tfds images are resized by the pipeline).
            size: at most this many examples; ``None`` for the whole split.
            shard: ``(count, index)``, or ``None`` for the whole split.

        Returns:
            A ``tf.data.Dataset`` of ``{"image", "labels"}`` dicts (training files shuffled).

        Raises:
            MtlError: an unknown split, an invalid shard, a size below 1, or data not prepared in ``data_dir``.
        """
        import tensorflow_datasets as tfds  # lazy: seconds to import; only a tfds source needs it

        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        shard = check_shard(shard)
        try:
            if self.download:  # before the split plan: a dataset lists its splits once prepared
                self._builder.download_and_prepare()
            tfds_split = self.tfds_split(split)
            if shard is not None:
                # Slicing, not Dataset.shard: with shuffle_files the workers' file orders differ.
                tfds_split = tfds.even_splits(tfds_split, n=shard[0], drop_remainder=True)[shard[1]]
            ds = tfds.load(
                self.tfds_name, split=tfds_split, data_dir=self.data_dir, download=self.download,
                shuffle_files=(split == "train"),
            )
        except AssertionError as e:  # tfds' way of saying "not prepared"
            where = self.data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
            raise MtlError(
                f"tfds dataset {self.tfds_name!r} is not prepared in {where}; prepare it once with "
                f"`tfds build {self.tfds_name}` (downloads) or pass download=True"
            ) from e
        if shard is not None and size is not None:
            size = max(int(size) // shard[0], 1)
        if size is not None:
            if int(size) < 1:
                raise MtlError(f"split {split!r} of {self.name!r} would be empty (size {size})")
            ds = ds.take(int(size))
        return ds.map(self._example, num_parallel_calls=tf.data.AUTOTUNE)

    def _example(self, ex):
        found = self.feature_map
        labels = {l.name: read_label(l, ex, self.max_objects) for l in found.labels}
        return {"image": read_image(ex, found.image, found.image_shape[-1]), "labels": labels}
