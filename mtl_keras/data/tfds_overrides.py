"""``TASK=FEATURE[:KIND]`` overrides of a tfds dataset's mapping: the ``labels`` option (``--label``).

``parse_overrides`` reads the strings; ``apply_overrides`` changes a ``FeatureMap``
(``tfds_features.map_features``) with them. The task ``TASK`` reads ``FEATURE`` (a path such as
``attributes/Smiling``) as ``KIND`` (by default the kind the feature maps to on its own,
``tfds_feature_rules``). It replaces the task of the same name and the task of the same feature and
kind. Inside a sequence of objects, ``objects/pose:multilabel`` is the multi-hot of that field and
``objects/type:detection`` the detection classed by it. A bad entry, a feature that does not exist
(with the closest paths) or one that cannot be that kind is a one-line ``MtlError``.

Example:
    >>> import numpy as np, tensorflow_datasets as tfds
    >>> from mtl_keras.data.tfds_features import map_features
    >>> F = tfds.features
    >>> features = F.FeaturesDict({"image": F.Image(shape=(8, 8, 3)), "label": F.ClassLabel(names=["cat", "dog"]),
    ...                            "flags": F.FeaturesDict({"Smiling": np.bool_, "Hat": np.bool_}), "id": F.Text()})
    >>> found = apply_overrides(map_features(features), features, parse_overrides(["smiling=flags/Smiling"]))
    >>> found.labels[-1].kind, found.labels[-1].classes
    ('classification', ('not Smiling', 'Smiling'))
"""

from __future__ import annotations

import dataclasses
import difflib
import keyword
from typing import NamedTuple

from mtl_keras.data.tfds_feature_rules import KINDS, feature_choices, field_choices, tfds_types
from mtl_keras.data.tfds_features import FeatureMap, input_context
from mtl_keras.errors import MtlError


class Override(NamedTuple):
    """One ``TASK=FEATURE[:KIND]`` (``kind`` None: the feature's own), with the text it came from."""

    task: str
    feature: str
    kind: str | None
    text: str


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
    F, paths = tfds_types(), []

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
        >>> import numpy as np, tensorflow_datasets as tfds
        >>> from mtl_keras.data.tfds_features import map_features
        >>> F = tfds.features
        >>> size = F.Tensor(shape=(2,), dtype=np.float32)
        >>> features = F.FeaturesDict({"image": F.Image(shape=(8, 8, 3)), "size": size})
        >>> apply_overrides(map_features(features), features, parse_overrides("size=size:box"))
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: label 'size=size:box': feature 'size' cannot be a box task (it can be: regression)
    """
    F = tfds_types()
    ctx = input_context(features, F, dataset)
    labels, skipped = list(found.labels), list(found.skipped)
    for override in overrides:
        keys, feature, seq = _resolve(features, override, F)
        path = "/".join(keys)
        if keys == found.image:
            raise MtlError(f"label {override.text!r}: {path!r} is the input image")
        if seq is not None:
            choices, default, reason = field_choices(keys, feature, *seq, F)
        else:
            choices, default, reason = feature_choices(keys, feature, ctx)
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
