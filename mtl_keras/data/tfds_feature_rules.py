"""The tasks one tensorflow-datasets feature can be, by its type: the rules behind ``tfds_features``' table.

For a feature, ``feature_choices`` gives every kind of task it can be read as (``kind -> Label``),
the kinds it maps to on its own (what ``tfds_features.map_features`` takes) and, when none, why: a
``ClassLabel`` is a classification (or its index regressed), a bool a classification (or a
one-class multilabel), a sequence of boxes a detection and its multi-hot ``present``, a dict of
bools a multilabel, a 1-channel image named like a mask a segmentation... ``field_choices`` does the
same for one field of a sequence's records, which only an override (``tfds_overrides``) names.
A ``Label`` says how the task's raw label is read (``tfds_labels`` reads it).

Example:
    >>> import tensorflow_datasets as tfds
    >>> F = tfds.features
    >>> ctx = {"types": F, "image": ("image",), "image_shape": (8, 8, 3)}
    >>> choices, default, why = feature_choices(("label",), F.ClassLabel(names=["cat", "dog"]), ctx)
    >>> sorted(choices), default, choices["classification"].classes
    (['classification', 'regression'], ('classification',), ('cat', 'dog'))
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from mtl_keras.tasks import TASK_TYPES

KINDS = ("classification", "multilabel", "regression", "box", "detection", "segmentation", "depth")
# The last part of a 1-channel image's name that says "this is a label map, not a picture".
MASK_NAME = re.compile(r"mask|segment|seg|label|trimap|annotation|parsing|semantic", re.I)
# An object's class field, most likely first (kitti names it "type").
_CLASS_FIELDS = ("label", "labels", "class", "category", "type")
_SKIP_TYPES = {"Video": "a video", "Dataset": "a nested dataset", "Audio": "audio", "Text": "text"}


@dataclasses.dataclass(frozen=True)
class Label:
    """How one task's raw label is read from a tfds example (``mtl_keras.data.tfds_labels`` reads it).

    ``reader`` says how: ``index`` (a class index), ``values`` (numbers or flags, flattened),
    ``multihot`` (a sequence of class indices), ``box``, ``objects`` (boxes and classes of a
    sequence), ``present`` (the multi-hot of those classes), ``mask`` or ``depth``.

    Example:
        >>> Label("breed", "classification", ("label",), "index", classes=("a", "b")).path
        'label'
    """

    name: str
    kind: str
    keys: tuple  # the feature's keys from the top of the example (a key may hold a "/": "image/id")
    reader: str
    classes: tuple = ()
    parts: tuple = ()  # values of a dict: its keys under ``keys``, in order
    units: int = 1  # regression: numbers in the label
    box: str | None = None  # objects: the records' box field; None when the sequence holds boxes only
    label: str | None = None  # objects: the records' class field; None for one class
    drop: str | None = None  # objects: a bool field whose True rows are left out (COCO crowds)
    values: tuple = ()  # mask: (pixel value, class) pairs, other pixels unlabelled; () reads pixels as classes
    nonzero: bool = False  # mask: background where the pixel is 0, foreground elsewhere
    ignore_class: str | None = None  # segmentation: the class left out of the loss and mIoU

    @property
    def path(self) -> str:
        """The feature path, keys joined by ``/``."""
        return "/".join(self.keys)


def tfds_types():
    """``tensorflow_datasets.features``, imported on first use (a tfds source is the only user).

    Returns:
        The module of tfds feature types (``FeaturesDict``, ``ClassLabel``, ``Sequence``, ...).

    Example:
        >>> tfds_types().ClassLabel.__name__
        'ClassLabel'
    """
    import tensorflow_datasets as tfds  # lazy: seconds to import; only a tfds source needs it

    return tfds.features


def leaf_name(keys) -> str:
    """The last part of a feature path: what a task, a class or a skipped feature is named after.

    Args:
        keys: the feature's keys from the top of the example (a key may hold a ``/``).

    Returns:
        The part after the last ``/``; ``""`` for no keys.

    Example:
        >>> leaf_name(("image", "image/id")), leaf_name(())
        ('id', '')
    """
    return keys[-1].split("/")[-1] if keys else ""


def feature_shape(feature) -> tuple:
    """A tfds feature's shape.

    Args:
        feature: a tfds feature.

    Returns:
        Its shape as a tuple, ``None`` where a dimension varies.

    Example:
        >>> feature_shape(tfds_types().Image(shape=(None, None, 3)))
        (None, None, 3)
    """
    return tuple(feature.shape)


def feature_dtype(feature) -> np.dtype:
    """A tfds feature's numpy dtype.

    Args:
        feature: a tfds feature.

    Returns:
        Its ``np.dtype`` (``uint8`` for an image, ``bool`` for a flag, ``object`` for text).

    Example:
        >>> feature_dtype(tfds_types().Image(shape=(8, 8, 3))).name
        'uint8'
    """
    return np.dtype(feature.np_dtype)


def _static(shape) -> bool:
    return all(d is not None for d in shape)


def _class_names(feature) -> tuple:
    return tuple(str(n) for n in feature.names) if feature.num_classes else ()


def _is_bool_scalar(feature, F) -> bool:
    return type(feature) in (F.Tensor, F.Scalar) and feature_dtype(feature).kind == "b" and feature_shape(feature) == ()


def _is_numbers(feature, F) -> bool:
    shape = feature_shape(feature)
    return (type(feature) in (F.Tensor, F.Scalar) and feature_dtype(feature).kind in "iuf" and _static(shape)
            and len(shape) <= 1)


def _like_image(shape, image_shape) -> bool:
    if len(shape) == 3 and shape[-1] == 1:
        shape = shape[:2]
    return len(shape) == 2 and all(a is None or b is None or a == b for a, b in zip(shape, image_shape[:2]))


def _numbers(keys, units, parts=()) -> Label:
    return Label("", "regression", keys, "values", parts=parts, units=units)


def _objects(keys, classes, box, label) -> dict:
    detection = Label("", "detection", keys, "objects", classes=classes, box=box, label=label)
    return {"detection": detection, "multilabel": dataclasses.replace(detection, kind="multilabel", reader="present")}


def feature_choices(keys, feature, ctx) -> tuple[dict, tuple, str]:
    """Every task a feature outside a sequence of records can be, and the ones it is on its own.

    Args:
        keys: the feature's keys from the top of the example.
        feature: a tfds feature.
        ctx: ``{"types": tfds_types(), "image": the input image's keys, "image_shape": its shape}``
            (``tfds_features.input_context``).

    Returns:
        ``(kind -> Label, the kinds mapped by default, why none)``: the labels are unnamed (``""``);
        the reason is ``""`` when some kind is mapped by default.

    Example:
        >>> F = tfds_types()
        >>> ctx = {"types": F, "image": ("image",), "image_shape": (8, 8, 3)}
        >>> choices, default, why = feature_choices(("smiling",), F.Scalar(np.bool_), ctx)
        >>> default, choices["classification"].classes, sorted(choices)
        (('classification',), ('not smiling', 'smiling'), ['classification', 'multilabel', 'regression'])
        >>> feature_choices(("caption",), F.Text(), ctx)
        ({}, (), 'text')
    """
    F = ctx["types"]
    for type_name, reason in _SKIP_TYPES.items():
        if isinstance(feature, getattr(F, type_name)):
            return {}, (), reason
    if isinstance(feature, F.Sequence):
        return _sequence_choices(keys, feature, F)
    if isinstance(feature, F.FeaturesDict):
        fields = list(feature.items())
        parts = tuple(k for k, _ in fields)
        if fields and all(_is_bool_scalar(f, F) for _, f in fields):
            flags = Label("", "multilabel", keys, "values", classes=parts, parts=parts)
            return {"multilabel": flags, "regression": _numbers(keys, len(parts), parts)}, ("multilabel",), ""
        if fields and all(_is_numbers(f, F) for _, f in fields):
            units = sum(int(np.prod(feature_shape(f))) for _, f in fields)
            return {"regression": _numbers(keys, units, parts)}, ("regression",), ""
        return {}, (), "a dict of mixed features (name its fields one by one)"
    if isinstance(feature, F.Image):
        return _image_choices(keys, feature, ctx)
    if isinstance(feature, F.ClassLabel):
        if feature_shape(feature) != ():
            return {}, (), f"a ClassLabel of shape {feature_shape(feature)}"
        classes = _class_names(feature)
        found = {"regression": _numbers(keys, 1)}
        if len(classes) < 2:
            return found, (), f"a ClassLabel with {len(classes)} class(es)"
        return {"classification": Label("", "classification", keys, "index", classes=classes), **found}, \
            ("classification",), ""
    if isinstance(feature, F.BBoxFeature):
        return {"box": Label("", "box", keys, "box"), "regression": _numbers(keys, 4)}, ("box",), ""
    if isinstance(feature, F.Tensor):
        return _tensor_choices(keys, feature, ctx)
    return {}, (), f"a {type(feature).__name__} feature"


def _tensor_choices(keys, feature, ctx):
    dtype, shape, leaf = feature_dtype(feature), feature_shape(feature), leaf_name(keys)
    if dtype.kind in "SUO":
        return {}, (), "text"
    if dtype.kind == "b" and shape == ():
        return {
            "classification": Label("", "classification", keys, "index", classes=(f"not {leaf}", leaf)),
            "multilabel": Label("", "multilabel", keys, "values", classes=(leaf,)),
            "regression": _numbers(keys, 1),
        }, ("classification",), ""
    if dtype.kind == "b" and len(shape) == 1 and _static(shape):
        classes = tuple(f"{leaf}_{i}" for i in range(shape[0]))
        return {"multilabel": Label("", "multilabel", keys, "values", classes=classes),
                "regression": _numbers(keys, shape[0])}, ("multilabel",), ""
    if dtype.kind in "iuf" and len(shape) <= 1 and _static(shape):
        return {"regression": _numbers(keys, int(np.prod(shape)))}, ("regression",), ""
    if dtype.kind == "f" and _like_image(shape, ctx["image_shape"]):
        if "depth" in TASK_TYPES:
            return {"depth": Label("", "depth", keys, "depth")}, ("depth",), ""
        return {}, (), "a per-pixel float map (dense regression): this install has no 'depth' task type"
    return {}, (), f"a {dtype.name} tensor of shape {shape}"


def _image_choices(keys, feature, ctx):
    if keys == ctx["image"]:
        return {}, (), "the input image"
    shape = feature_shape(feature)
    if not shape or shape[-1] != 1:
        return {}, (), f"another image (the input is {'/'.join(ctx['image'])!r})"
    F = ctx["types"]
    names = _class_names(feature) if isinstance(feature, F.LabeledImage) else ()
    found = {"segmentation": Label("", "segmentation", keys, "mask", classes=names or ("background", "foreground"),
                                   nonzero=not names)}
    if "depth" in TASK_TYPES:
        found["depth"] = Label("", "depth", keys, "depth")
    if MASK_NAME.search(leaf_name(keys)):
        return found, ("segmentation",), ""
    return found, (), "a 1-channel image not named like a mask or label map"


def _class_field(fields: dict, F) -> str | None:
    labels = [k for k, f in fields.items() if isinstance(f, F.ClassLabel) and feature_shape(f) == ()]
    return next((k for k in _CLASS_FIELDS if k in labels), labels[0] if labels else None)


def _sequence_choices(keys, feature, F):
    inner, leaf = feature.feature, leaf_name(keys)
    if isinstance(inner, F.ClassLabel) and feature_shape(inner) == ():
        return {"multilabel": Label("", "multilabel", keys, "multihot", classes=_class_names(inner))}, \
            ("multilabel",), ""
    if isinstance(inner, F.BBoxFeature):
        return _objects(keys, (leaf,), None, None), ("detection", "multilabel"), ""
    if isinstance(inner, F.FeaturesDict):
        fields = dict(inner.items())
        box = next((k for k, f in fields.items() if isinstance(f, F.BBoxFeature)), None)
        cls = _class_field(fields, F)
        classes = _class_names(fields[cls]) if cls else (leaf,)
        if box:
            return _objects(keys, classes, box, cls), ("detection", "multilabel"), ""
        if cls:
            return {"multilabel": Label("", "multilabel", keys + (cls,), "multihot", classes=classes)}, \
                ("multilabel",), ""
        return {}, (), "a sequence of records with neither a box nor a class label"
    return {}, (), f"a sequence of {type(inner).__name__}"


def field_choices(keys, feature, seq_keys, record, F):
    """Every task one field of a sequence's records can be (only overrides name those; none is a default).

    Args:
        keys: the field's keys from the top of the example (the sequence's keys, then the field).
        feature: the field's tfds feature.
        seq_keys: the sequence's keys.
        record: the sequence's records (a ``FeaturesDict``).
        F: ``tfds_types()``.

    Returns:
        ``(kind -> Label, (), why none)``: a class field is a multilabel (and, beside a box, the
        detection classed by it), a box field a detection of one class named after the sequence.

    Example:
        >>> F = tfds_types()
        >>> record = F.FeaturesDict({"bbox": F.BBoxFeature(), "pose": F.ClassLabel(names=["up", "down"])})
        >>> choices, _, _ = field_choices(("objects", "pose"), record["pose"], ("objects",), record, F)
        >>> {k: (l.keys, l.reader, l.label) for k, l in choices.items()}
        {'multilabel': (('objects', 'pose'), 'multihot', None), 'detection': (('objects',), 'objects', 'pose')}
    """
    fields = dict(record.items())
    box = next((k for k, f in fields.items() if isinstance(f, F.BBoxFeature)), None)
    field = keys[-1]
    if isinstance(feature, F.ClassLabel) and feature_shape(feature) == ():
        classes = _class_names(feature)
        found = {"multilabel": Label("", "multilabel", keys, "multihot", classes=classes)}
        if box:
            found["detection"] = _objects(seq_keys, classes, box, field)["detection"]
        return found, (), ""
    if isinstance(feature, F.BBoxFeature):
        return {"detection": _objects(seq_keys, (leaf_name(seq_keys),), field, None)["detection"]}, (), ""
    return {}, (), field_reason(seq_keys)


def field_reason(seq_keys) -> str:
    """Why a field of a sequence's records is skipped when no override names it.

    Args:
        seq_keys: the sequence's keys.

    Returns:
        The reason, naming the sequence.

    Example:
        >>> field_reason(("objects",))
        "a field of the objects in 'objects' (objects map to their boxes and classes)"
    """
    return f"a field of the objects in {'/'.join(seq_keys)!r} (objects map to their boxes and classes)"
