"""From a tensorflow-datasets builder's ``info.features`` to labels: any image dataset, no adapter written.

The input is the uint8 ``Image`` named ``image`` (else the first RGB one; a grayscale image is made
RGB, an RGBA one loses its alpha). Every other feature becomes a task by its type, named after its
path (the last part, lower case: ``label``, ``attributes``, ``objects``):

========================================================  ===============================================
feature                                                   task
========================================================  ===============================================
scalar ``ClassLabel``                                     classification over its names
``bool`` scalar                                           classification (``not X``, ``X``)
``Sequence(ClassLabel)``                                  multilabel (multi-hot) over its names
``BBoxFeature``                                           box (``rel_yxyx``; an empty box is missing)
``Sequence`` of ``BBoxFeature`` (or of records holding    detection (every object's box and class) and its
one, and a ``ClassLabel`` -- ``label``, ``labels``,       multilabel ``present`` (``NAME_present`` unless
``class``, ``category`` or ``type`` first)                the sequence is ``objects``); without a class
                                                          label, one class named after the sequence
``FeaturesDict`` of ``bool`` (``attributes``)             multilabel over its keys, or one classification
                                                          each with ``bool_tasks="binary"``
``FeaturesDict`` of numbers (``landmarks``)               regression, one unit per number
numeric ``Tensor``, scalar or vector                      regression
1-channel ``Image`` named like a mask (``mask``,          segmentation over a ``LabeledImage``'s classes,
``label``, ``segmentation``, ``trimap``...)               else background / foreground (pixel > 0)
float ``Tensor`` shaped like the image (``(H, W)`` or     ``depth``, when that task type is registered
``(H, W, 1)``)                                            (``mtl_keras.tasks.TASK_TYPES``)
========================================================  ===============================================

Anything else (text, identifiers such as ``id`` or ``Identity_No``, a second RGB image, the other
fields of an object, video, audio) is listed as skipped with the reason, never a traceback.

``TASK=FEATURE[:KIND]`` overrides or adds a mapping (``apply_overrides``): the task ``TASK`` reads
``FEATURE`` (a path such as ``attributes/Smiling``) as ``KIND`` (by default the kind the feature maps
to on its own). It replaces the task of the same name and the task of the same feature and kind.
Inside a sequence of objects, ``objects/pose:multilabel`` is the multi-hot of that field and
``objects/type:detection`` the detection classed by it.

Example:
    >>> import tensorflow_datasets as tfds
    >>> F = tfds.features
    >>> features = F.FeaturesDict({"image": F.Image(shape=(8, 8, 3)), "label": F.ClassLabel(names=["cat", "dog"]),
    ...                            "flags": F.FeaturesDict({"Smiling": np.bool_, "Hat": np.bool_}), "id": F.Text()})
    >>> found = map_features(features)
    >>> [(l.name, l.kind, l.path) for l in found.labels], found.skipped
    ([('label', 'classification', 'label'), ('flags', 'multilabel', 'flags')], (('id', 'text'),))
    >>> found = apply_overrides(found, features, parse_overrides(["smiling=flags/Smiling"]))
    >>> found.labels[-1].kind, found.labels[-1].classes
    ('classification', ('not Smiling', 'Smiling'))
"""

from __future__ import annotations

import dataclasses
import difflib
import keyword
import re
from typing import NamedTuple

import numpy as np

from mtl_keras.errors import MtlError
from mtl_keras.tasks import TASK_TYPES

KINDS = ("classification", "multilabel", "regression", "box", "detection", "segmentation", "depth")
BOOL_TASKS = ("multilabel", "binary")
IDENTIFIER = "an identifier, not a label"
# The last part of a 1-channel image's name that says "this is a label map, not a picture".
_MASK_NAME = re.compile(r"mask|segment|seg|label|trimap|annotation|parsing|semantic", re.I)
# Words that make a number an identifier (celeb_a's identity/Identity_No, coco's image/id): regressing
# on them would train on noise.
_ID_FIRST = frozenset({"id", "identity"})
_ID_LAST = frozenset({"id", "ids", "idx", "index", "identity", "no"})
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


@dataclasses.dataclass(frozen=True)
class FeatureMap:
    """What a dataset's features map to: the input image, the labels and the skipped features.

    Example:
        >>> FeatureMap(("image",), (None, None, 3), (), (("id", "text"),)).image_path
        'image'
    """

    image: tuple  # the input image's keys
    image_shape: tuple
    labels: tuple  # Label, in task order
    skipped: tuple  # (feature path, reason) pairs

    @property
    def image_path(self) -> str:
        """The input image's feature path."""
        return "/".join(self.image)


class Override(NamedTuple):
    """One ``TASK=FEATURE[:KIND]`` (``kind`` None: the feature's own), with the text it came from."""

    task: str
    feature: str
    kind: str | None
    text: str


def _types():
    import tensorflow_datasets as tfds  # lazy: seconds to import; only a tfds source needs it

    return tfds.features


def _leaf(keys) -> str:
    return keys[-1].split("/")[-1] if keys else ""


def _shape(feature) -> tuple:
    return tuple(feature.shape)


def _dtype(feature) -> np.dtype:
    return np.dtype(feature.np_dtype)


def _static(shape) -> bool:
    return all(d is not None for d in shape)


def _class_names(feature) -> tuple:
    return tuple(str(n) for n in feature.names) if feature.num_classes else ()


def _is_bool_scalar(feature, F) -> bool:
    return type(feature) in (F.Tensor, F.Scalar) and _dtype(feature).kind == "b" and _shape(feature) == ()


def _is_numbers(feature, F) -> bool:
    shape = _shape(feature)
    return (type(feature) in (F.Tensor, F.Scalar) and _dtype(feature).kind in "iuf" and _static(shape)
            and len(shape) <= 1)


def _is_identifier(keys, feature, F) -> bool:
    if not isinstance(feature, (F.FeaturesDict, F.Tensor)) or isinstance(feature, (F.ClassLabel, F.BBoxFeature)):
        return False
    if isinstance(feature, F.Tensor) and _dtype(feature).kind not in "iuf":
        return False  # text says "text"; a flag such as No_Beard is a label whatever its words
    words = [w for w in re.split(r"[^a-z0-9]+", _leaf(keys).lower()) if w]
    return bool(words) and (words[0] in _ID_FIRST or words[-1] in _ID_LAST)


def _like_image(shape, image_shape) -> bool:
    if len(shape) == 3 and shape[-1] == 1:
        shape = shape[:2]
    return len(shape) == 2 and all(a is None or b is None or a == b for a, b in zip(shape, image_shape[:2]))


def _numbers(keys, units, parts=()) -> Label:
    return Label("", "regression", keys, "values", parts=parts, units=units)


def _objects(keys, classes, box, label) -> dict:
    detection = Label("", "detection", keys, "objects", classes=classes, box=box, label=label)
    return {"detection": detection, "multilabel": dataclasses.replace(detection, kind="multilabel", reader="present")}


def _choices(keys, feature, ctx) -> tuple[dict, tuple, str]:
    """``(kind -> Label, the kinds mapped by default, why none)`` for a feature outside a sequence of records."""
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
            units = sum(int(np.prod(_shape(f))) for _, f in fields)
            return {"regression": _numbers(keys, units, parts)}, ("regression",), ""
        return {}, (), "a dict of mixed features (name its fields one by one)"
    if isinstance(feature, F.Image):
        return _image_choices(keys, feature, ctx)
    if isinstance(feature, F.ClassLabel):
        if _shape(feature) != ():
            return {}, (), f"a ClassLabel of shape {_shape(feature)}"
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
    dtype, shape, leaf = _dtype(feature), _shape(feature), _leaf(keys)
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
    shape = _shape(feature)
    if not shape or shape[-1] != 1:
        return {}, (), f"another image (the input is {'/'.join(ctx['image'])!r})"
    F = ctx["types"]
    names = _class_names(feature) if isinstance(feature, F.LabeledImage) else ()
    found = {"segmentation": Label("", "segmentation", keys, "mask", classes=names or ("background", "foreground"),
                                   nonzero=not names)}
    if "depth" in TASK_TYPES:
        found["depth"] = Label("", "depth", keys, "depth")
    if _MASK_NAME.search(_leaf(keys)):
        return found, ("segmentation",), ""
    return found, (), "a 1-channel image not named like a mask or label map"


def _class_field(fields: dict, F) -> str | None:
    labels = [k for k, f in fields.items() if isinstance(f, F.ClassLabel) and _shape(f) == ()]
    return next((k for k in _CLASS_FIELDS if k in labels), labels[0] if labels else None)


def _sequence_choices(keys, feature, F):
    inner, leaf = feature.feature, _leaf(keys)
    if isinstance(inner, F.ClassLabel) and _shape(inner) == ():
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


def _field_choices(keys, feature, seq_keys, record, F):
    """The choices for one field of a sequence's records (only overrides name those)."""
    fields = dict(record.items())
    box = next((k for k, f in fields.items() if isinstance(f, F.BBoxFeature)), None)
    field = keys[-1]
    if isinstance(feature, F.ClassLabel) and _shape(feature) == ():
        classes = _class_names(feature)
        found = {"multilabel": Label("", "multilabel", keys, "multihot", classes=classes)}
        if box:
            found["detection"] = _objects(seq_keys, classes, box, field)["detection"]
        return found, (), ""
    if isinstance(feature, F.BBoxFeature):
        return {"detection": _objects(seq_keys, (_leaf(seq_keys),), field, None)["detection"]}, (), ""
    return {}, (), _field_reason(seq_keys)


def _field_reason(seq_keys) -> str:
    return f"a field of the objects in {'/'.join(seq_keys)!r} (objects map to their boxes and classes)"


class _Names:
    """Unique task names: the first candidate that is a free Python identifier, else one numbered."""

    def __init__(self, taken=()):
        self.taken = set(taken)

    def take(self, *candidates) -> str:
        cleaned = [re.sub(r"\W+", "_", c).strip("_").lower() for c in candidates]
        for c in cleaned:
            if c.isidentifier() and not keyword.iskeyword(c) and c not in self.taken:
                self.taken.add(c)
                return c
        base = cleaned[-1] if cleaned[-1].isidentifier() else f"task_{cleaned[-1]}"
        n = 2
        while f"{base}_{n}" in self.taken:
            n += 1
        self.taken.add(f"{base}_{n}")
        return f"{base}_{n}"


def _input_image(features, F, dataset):
    images = []

    def visit(keys, feature):
        if isinstance(feature, F.FeaturesDict):
            for k, f in feature.items():
                visit(keys + (k,), f)
        elif isinstance(feature, F.Image) and not isinstance(feature, F.LabeledImage):
            shape = _shape(feature)
            if _dtype(feature) == np.uint8 and len(shape) == 3 and shape[-1] in (1, 3, 4):
                images.append((keys, feature))

    visit((), features)
    # RGB(A) first, then the one named "image"; a grayscale mask is never the input.
    usable = [(k, f) for k, f in images if _shape(f)[-1] != 1 or not _MASK_NAME.search(_leaf(k))]
    if not usable:
        raise MtlError(f"{dataset} has no uint8 image feature (1, 3 or 4 channels) to read as the model input")
    return min(usable, key=lambda item: (_shape(item[1])[-1] == 1, _leaf(item[0]) != "image"))


def _context(features, F, dataset) -> dict:
    keys, image = _input_image(features, F, dataset)
    return {"types": F, "image": keys, "image_shape": _shape(image)}


def map_features(features, bool_tasks: str = "multilabel", dataset: str = "the dataset") -> FeatureMap:
    """The generic mapping of a tfds ``FeaturesDict`` to labels (the module docstring's table).

    Args:
        features: a builder's ``info.features``.
        bool_tasks: ``multilabel`` (a dict of bools is one multilabel task) or ``binary`` (one
            classification task per bool).
        dataset: the dataset's name, for messages.

    Returns:
        A ``FeatureMap``: the input image, the labels in feature order, and the skipped features.

    Raises:
        MtlError: no usable input image, or an unknown ``bool_tasks``.

    Example:
        >>> import tensorflow_datasets as tfds
        >>> F = tfds.features
        >>> features = F.FeaturesDict({"image": F.Image(shape=(None, None, 3)), "objects": F.Sequence({
        ...     "bbox": F.BBoxFeature(), "type": F.ClassLabel(names=["car", "van"]), "alpha": F.Scalar(np.float32)})})
        >>> found = map_features(features)
        >>> [(l.name, l.kind, l.classes, l.label) for l in found.labels]
        [('objects', 'detection', ('car', 'van'), 'type'), ('present', 'multilabel', ('car', 'van'), 'type')]
        >>> found.skipped
        (('objects/alpha', "a field of the objects in 'objects' (objects map to their boxes and classes)"),)
    """
    if bool_tasks not in BOOL_TASKS:
        raise MtlError(f"bool_tasks must be one of {', '.join(BOOL_TASKS)}, got {bool_tasks!r}")
    F = _types()
    ctx = _context(features, F, dataset)
    names, labels, skipped = _Names(), [], []

    def add(label, *candidates):
        labels.append(dataclasses.replace(label, name=names.take(*candidates)))

    def walk(keys, feature):
        path, leaf = "/".join(keys), _leaf(keys)
        if keys == ctx["image"]:
            return
        if _is_identifier(keys, feature, F):
            skipped.append((path, IDENTIFIER))
            return
        choices, default, reason = _choices(keys, feature, ctx)
        if not default and isinstance(feature, F.FeaturesDict):
            for k, f in feature.items():
                walk(keys + (k,), f)
            return
        if not default:
            skipped.append((path, reason))
            return
        if isinstance(feature, F.FeaturesDict) and default == ("multilabel",) and bool_tasks == "binary":
            for k, f in feature.items():
                add(_choices(keys + (k,), f, ctx)[0]["classification"], k.split("/")[-1], f"{path}_{k}")
            return
        for kind in default:
            label = choices[kind]
            if label.reader == "present":
                add(label, "present" if leaf == "objects" else f"{leaf}_present", f"{path}_present")
            else:
                add(label, leaf, path)
        if isinstance(feature, F.Sequence) and isinstance(feature.feature, F.FeaturesDict):
            used = {choices[k].box for k in default} | {choices[k].label for k in default}
            used |= {choices[k].keys[-1] for k in default if choices[k].keys != keys}
            fields = [f for f in feature.feature.keys() if f not in used]
            skipped.extend((f"{path}/{field}", _field_reason(keys)) for field in fields)

    for key, feature in features.items():
        walk((key,), feature)
    return FeatureMap(ctx["image"], ctx["image_shape"], tuple(labels), tuple(skipped))


def parse_overrides(texts) -> list[Override]:
    """``["TASK=FEATURE[:KIND]", ...]`` -> ``Override`` s, with one-line errors naming the bad entry.

    Args:
        texts: a list of strings (one string is a list of one); ``None`` or empty: none.

    Returns:
        The overrides, in the order given.

    Raises:
        MtlError: an entry that is not ``TASK=FEATURE[:KIND]``, a task name that is not a Python
            identifier, an unknown kind, or a task named twice.

    Example:
        >>> parse_overrides("smiling=attributes/Smiling:classification")[0][:3]
        ('smiling', 'attributes/Smiling', 'classification')
        >>> parse_overrides(["smiling=attributes/Smiling:binary"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: label '...:binary': unknown task kind 'binary'; available: box, classification, ...
    """
    if not texts:
        return []
    if isinstance(texts, str):
        texts = [texts]
    found, seen = [], set()
    for text in texts:
        task, sep, rest = str(text).partition("=")
        task, rest = task.strip(), rest.strip()
        if not sep or not task or not rest:
            raise MtlError(f"malformed label {text!r}; expected TASK=FEATURE[:KIND], "
                           "e.g. smiling=attributes/Smiling:classification")
        if not task.isidentifier() or keyword.iskeyword(task):
            raise MtlError(f"label {text!r}: the task name {task!r} must be a Python identifier (letters, digits, _)")
        if task in seen:
            raise MtlError(f"label {text!r}: task {task!r} is named twice")
        seen.add(task)
        feature, colon, kind = rest.rpartition(":")
        if not colon:
            feature, kind = rest, None
        elif kind.strip() not in KINDS:
            raise MtlError(f"label {text!r}: unknown task kind {kind.strip()!r}; available: {', '.join(sorted(KINDS))}")
        found.append(Override(task, feature.strip().strip("/"), kind and kind.strip(), str(text)))
    return found


def feature_paths(features) -> list[str]:
    """Every feature path of a ``FeaturesDict``, the fields of a sequence's records included.

    Args:
        features: a builder's ``info.features``.

    Returns:
        The paths, depth first in feature order.

    Example:
        >>> import tensorflow_datasets as tfds
        >>> F = tfds.features
        >>> feature_paths(F.FeaturesDict({"image": F.Image(), "objects": F.Sequence({"bbox": F.BBoxFeature()})}))
        ['image', 'objects', 'objects/bbox']
    """
    F, paths = _types(), []

    def visit(prefix, feature):
        if isinstance(feature, F.Sequence) and isinstance(feature.feature, F.FeaturesDict):
            feature = feature.feature
        if isinstance(feature, F.FeaturesDict):
            for k, f in feature.items():
                paths.append(f"{prefix}{k}")
                visit(f"{prefix}{k}/", f)

    visit("", features)
    return paths


def _resolve(features, override: Override, F):
    """``(keys, feature, (sequence keys, its records' FeaturesDict) or None)`` for an override's path."""
    rest, keys, feature, seq = override.feature, (), features, None
    while rest:
        if isinstance(feature, F.Sequence) and isinstance(feature.feature, F.FeaturesDict) and seq is None:
            seq, feature = (keys, feature.feature), feature.feature
        fields = list(feature.keys()) if isinstance(feature, F.FeaturesDict) else []
        key = max((k for k in fields if rest == k or rest.startswith(k + "/")), key=len, default=None)
        if key is None:
            paths = feature_paths(features)
            close = difflib.get_close_matches(override.feature, paths, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"features: {', '.join(features.keys())}"
            raise MtlError(f"label {override.text!r}: no feature {override.feature!r}; {hint}")
        keys, feature, rest = keys + (key,), feature[key], rest[len(key):].lstrip("/")
    return keys, feature, seq


def apply_overrides(found: FeatureMap, features, overrides, dataset: str = "the dataset") -> FeatureMap:
    """The mapping with each ``Override`` applied in turn (see the module docstring).

    A task the override replaces whose feature then has no task is listed as skipped, saying which
    override replaced it.

    Args:
        found: the mapping to change (``map_features``).
        features: the same builder's ``info.features``.
        overrides: ``Override`` s (``parse_overrides``).
        dataset: the dataset's name, for messages.

    Returns:
        The new ``FeatureMap``.

    Raises:
        MtlError: an override naming no feature, the input image, or a feature that cannot be that kind.

    Example:
        >>> import tensorflow_datasets as tfds
        >>> F = tfds.features
        >>> size = F.Tensor(shape=(2,), dtype=np.float32)
        >>> features = F.FeaturesDict({"image": F.Image(shape=(8, 8, 3)), "size": size})
        >>> apply_overrides(map_features(features), features, parse_overrides("size=size:box"))
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: label 'size=size:box': feature 'size' cannot be a box task (it can be: regression)
    """
    F = _types()
    ctx = _context(features, F, dataset)
    labels, skipped = list(found.labels), list(found.skipped)
    for override in overrides:
        keys, feature, seq = _resolve(features, override, F)
        path = "/".join(keys)
        if keys == found.image:
            raise MtlError(f"label {override.text!r}: {path!r} is the input image")
        if seq is not None:
            choices, default, reason = _field_choices(keys, feature, *seq, F)
        else:
            choices, default, reason = _choices(keys, feature, ctx)
        if not choices:
            raise MtlError(f"label {override.text!r}: feature {path!r} cannot be a task: {reason}")
        kind = override.kind or (default[0] if default else next(iter(choices)))
        if kind not in choices:
            raise MtlError(f"label {override.text!r}: feature {path!r} cannot be a {kind} task "
                           f"(it can be: {', '.join(choices)})")
        new = dataclasses.replace(choices[kind], name=override.task)
        replaced = [i for i, l in enumerate(labels)
                    if l.name == new.name or (l.keys, l.kind, l.reader) == (new.keys, new.kind, new.reader)]
        for i in replaced:
            if labels[i].keys != new.keys:
                skipped.append((labels[i].path, f"replaced by label {override.text!r}"))
        at = replaced[0] if replaced else len(labels)
        labels = [l for i, l in enumerate(labels) if i not in replaced]
        labels.insert(at, new)
        skipped = [s for s in skipped if s[0] not in (path, new.path)]
    kept = {l.path for l in labels}
    skipped = [s for s in dict(skipped).items() if s[0] not in kept]
    return dataclasses.replace(found, labels=tuple(labels), skipped=tuple(skipped))

