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

``tfds_feature_rules`` holds the rules by type; this module walks a builder's features with them:
it picks the input image, skips identifiers, names the tasks (unique Python identifiers) and lists
what it skipped. ``TASK=FEATURE[:KIND]`` overrides change the mapping afterwards (``tfds_overrides``).

Example:
    >>> import tensorflow_datasets as tfds
    >>> F = tfds.features
    >>> features = F.FeaturesDict({"image": F.Image(shape=(8, 8, 3)), "label": F.ClassLabel(names=["cat", "dog"]),
    ...                            "flags": F.FeaturesDict({"Smiling": np.bool_, "Hat": np.bool_}), "id": F.Text()})
    >>> found = map_features(features)
    >>> [(l.name, l.kind, l.path) for l in found.labels], found.skipped
    ([('label', 'classification', 'label'), ('flags', 'multilabel', 'flags')], (('id', 'text'),))
"""

from __future__ import annotations

import dataclasses
import keyword
import re

import numpy as np

from mtl_keras.data.tfds_feature_rules import (
    MASK_NAME, feature_choices, feature_dtype, feature_shape, field_reason, leaf_name, tfds_types,
)
from mtl_keras.errors import MtlError

BOOL_TASKS = ("multilabel", "binary")
IDENTIFIER = "an identifier, not a label"
# Words that make a number an identifier (celeb_a's identity/Identity_No, coco's image/id): regressing
# on them would train on noise.
_ID_FIRST = frozenset({"id", "identity"})
_ID_LAST = frozenset({"id", "ids", "idx", "index", "identity", "no"})


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


def _is_identifier(keys, feature, F) -> bool:
    if not isinstance(feature, (F.FeaturesDict, F.Tensor)) or isinstance(feature, (F.ClassLabel, F.BBoxFeature)):
        return False
    if isinstance(feature, F.Tensor) and feature_dtype(feature).kind not in "iuf":
        return False  # text says "text"; a flag such as No_Beard is a label whatever its words
    words = [w for w in re.split(r"[^a-z0-9]+", leaf_name(keys).lower()) if w]
    return bool(words) and (words[0] in _ID_FIRST or words[-1] in _ID_LAST)


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
            shape = feature_shape(feature)
            if feature_dtype(feature) == np.uint8 and len(shape) == 3 and shape[-1] in (1, 3, 4):
                images.append((keys, feature))

    visit((), features)
    # RGB(A) first, then the one named "image"; a grayscale mask is never the input.
    usable = [(k, f) for k, f in images if feature_shape(f)[-1] != 1 or not MASK_NAME.search(leaf_name(k))]
    if not usable:
        raise MtlError(f"{dataset} has no uint8 image feature (1, 3 or 4 channels) to read as the model input")
    return min(usable, key=lambda item: (feature_shape(item[1])[-1] == 1, leaf_name(item[0]) != "image"))


def input_context(features, F, dataset) -> dict:
    """The input image of a dataset, as the rules by type take it (``feature_choices``' ``ctx``).

    The input is a uint8 ``Image`` (1, 3 or 4 channels, not a ``LabeledImage``): an RGB(A) one
    before a grayscale one, the one named ``image`` first; a grayscale image named like a mask
    never is.

    Args:
        features: a builder's ``info.features``.
        F: ``tfds_types()``.
        dataset: the dataset's name, for messages.

    Returns:
        ``{"types": F, "image": the input image's keys, "image_shape": its shape}``.

    Raises:
        MtlError: no usable input image.

    Example:
        >>> F = tfds_types()
        >>> features = F.FeaturesDict({"mask": F.Image(shape=(8, 8, 1)), "photo": F.Image(shape=(8, 8, 3))})
        >>> ctx = input_context(features, F, "pets")
        >>> ctx["image"], ctx["image_shape"]
        (('photo',), (8, 8, 3))
        >>> input_context(F.FeaturesDict({"mask": F.Image(shape=(8, 8, 1))}), F, "pets")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: pets has no uint8 image feature (1, 3 or 4 channels) to read as the model input
    """
    keys, image = _input_image(features, F, dataset)
    return {"types": F, "image": keys, "image_shape": feature_shape(image)}


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
    F = tfds_types()
    ctx = input_context(features, F, dataset)
    names, labels, skipped = _Names(), [], []

    def add(label, *candidates):
        labels.append(dataclasses.replace(label, name=names.take(*candidates)))

    def walk(keys, feature):
        path, leaf = "/".join(keys), leaf_name(keys)
        if keys == ctx["image"]:
            return
        if _is_identifier(keys, feature, F):
            skipped.append((path, IDENTIFIER))
            return
        choices, default, reason = feature_choices(keys, feature, ctx)
        if not default and isinstance(feature, F.FeaturesDict):
            for k, f in feature.items():
                walk(keys + (k,), f)
            return
        if not default:
            skipped.append((path, reason))
            return
        if isinstance(feature, F.FeaturesDict) and default == ("multilabel",) and bool_tasks == "binary":
            for k, f in feature.items():
                add(feature_choices(keys + (k,), f, ctx)[0]["classification"], k.split("/")[-1], f"{path}_{k}")
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
            skipped.extend((f"{path}/{field}", field_reason(keys)) for field in fields)

    for key, feature in features.items():
        walk((key,), feature)
    return FeatureMap(ctx["image"], ctx["image_shape"], tuple(labels), tuple(skipped))
