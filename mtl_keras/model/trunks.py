"""Trunk registry: shared feature extractors from ``keras.applications``, built flat into the model.

Each trunk exposes feature taps at strides 4, 8, 16 and 32 (``c2`` to ``c5``) for dense heads,
and its own input preprocessing as a layer, so the model takes RGB pixels in [0, 255].

Example:
    >>> import keras
    >>> image = keras.Input((64, 64, 3), name="image")
    >>> taps = build_trunk("resnet50", image, weights=None)
    >>> [tuple(taps[k].shape[1:3]) for k in ("c3", "c4", "c5")]
    [(8, 8), (4, 4), (2, 2)]
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os

import keras

from mtl_keras.errors import MtlError, unknown
from mtl_keras.layers import TrunkPreprocess

TAP_STRIDES = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}


@dataclasses.dataclass(frozen=True)
class TrunkSpec:
    """How to build one trunk: the ``keras.applications`` constructor and its conventions."""

    builder: str
    preprocess: str
    extra_kwargs: tuple = ()
    # Taps by layer name where the architecture has stable names; otherwise found by stride.
    tap_layers: tuple = ()
    min_size: int = 32
    # fnmatch pattern of the BatchNorm that closes each residual branch (zero-initialised on request).
    residual_bn: str | None = None


TRUNKS = {
    "resnet50": TrunkSpec(
        "ResNet50", "caffe",
        tap_layers=(("c2", "conv2_block3_out"), ("c3", "conv3_block4_out"), ("c4", "conv4_block6_out"), ("c5", "conv5_block3_out")),
        residual_bn="conv*_block*_3_bn",
    ),
    "mobilenet_v3_small": TrunkSpec("MobileNetV3Small", "none", extra_kwargs=(("include_preprocessing", True),)),
    "mobilenet_v3_large": TrunkSpec("MobileNetV3Large", "none", extra_kwargs=(("include_preprocessing", True),)),
}


def trunk_spec(name: str) -> TrunkSpec:
    """The spec of a registered trunk, or a clear error listing the registered ones.

    Args:
        name: a trunk name (``resnet50``, ``mobilenet_v3_small``, ``mobilenet_v3_large``).

    Returns:
        Its ``TrunkSpec`` (the Keras application and the layer names of its taps).

    Raises:
        MtlError: an unknown name, with the registered ones.

    Example:
        >>> trunk_spec("resnet50").preprocess
        'caffe'
    """
    if name not in TRUNKS:
        raise unknown("trunk", name, TRUNKS)
    return TRUNKS[name]


def _taps_by_stride(model: keras.Model, image_size: int) -> dict:
    """The last layer output at each tap stride (1×1 squeeze-excite maps are not feature maps)."""
    taps = {}
    for layer in model.layers:
        shape = getattr(layer.output, "shape", None)
        if shape is None or len(shape) != 4:
            continue
        for tap, stride in TAP_STRIDES.items():
            if shape[1] == image_size // stride and shape[2] == image_size // stride:
                taps[tap] = layer.output
    return taps


def zero_residual_gammas(layers, pattern: str) -> int:
    """Set the scale of every BatchNorm named like ``pattern`` to 0; return how many there were.

    Args:
        layers: the layers to look through (e.g. ``model.layers``).
        pattern: a regular expression the BatchNorm layer names must match in full.

    Returns:
        How many BatchNorm scales were set to 0.

    Example:
        >>> import keras
        >>> bn = keras.layers.BatchNormalization(name="conv2_block1_3_bn"); bn.build((None, 4))
        >>> zero_residual_gammas([bn], "conv*_block*_3_bn"), float(bn.gamma.numpy().sum())
        (1, 0.0)
    """
    count = 0
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization) and fnmatch.fnmatchcase(layer.name, pattern):
            layer.gamma.assign(keras.ops.zeros_like(layer.gamma))
            count += 1
    return count


def build_trunk(name: str, image, weights=None, bn_momentum: float | None = 0.9, zero_init_residual: bool = False) -> dict:
    """Build trunk ``name`` flat on the ``image`` input tensor; return its taps ``c2`` to ``c5``.

    ``weights``: ``None`` (random), ``"imagenet"`` (downloads once, at the user's request) or a path
    to a ``.weights.h5`` file saved from the same trunk. ``bn_momentum`` replaces Keras' 0.99 default:
    with 0.99 the moving statistics lag far behind on short from-scratch runs and validation swings.
    ``zero_init_residual`` starts the BatchNorm scale that closes each residual branch at 0 (ResNet50;
    no-op for trunks without such blocks and for pretrained weights), so every block begins as the
    identity: the from-scratch network starts shallow and learns faster (Goyal et al. 2017).

    Args:
        name: a registered trunk (``TRUNKS``).
        image: the symbolic ``(None, S, S, 3)`` input, ``S`` a multiple of 32.
        weights: ``None``, ``"imagenet"`` or a ``.weights.h5`` path.
        bn_momentum: the BatchNorm momentum (``None`` keeps Keras' default).
        zero_init_residual: zero the scale closing each residual branch (from scratch only).

    Returns:
        ``{"c2": tensor, "c3": ..., "c4": ..., "c5": ...}``, the feature maps at strides 4 to 32.

    Raises:
        MtlError: an unknown trunk, a bad image size or a weights file that does not fit.

    Example:
        >>> import keras
        >>> taps = build_trunk("mobilenet_v3_small", keras.Input((64, 64, 3)), weights=None)
        >>> {k: tuple(v.shape[1:3]) for k, v in sorted(taps.items())}
        {'c2': (16, 16), 'c3': (8, 8), 'c4': (4, 4), 'c5': (2, 2)}
    """
    spec = trunk_spec(name)
    size = image.shape[1]
    if size is None or size < spec.min_size or image.shape[2] != size:
        raise MtlError(f"trunk {name!r} needs a square image of at least {spec.min_size} px, got {tuple(image.shape[1:3])}")
    if size % 32:
        raise MtlError(f"image size must be a multiple of 32 for stride-32 taps, got {size}")
    path = None
    if weights not in (None, "imagenet"):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise MtlError(f"trunk weights file not found: {path}")
        weights = None
    x = TrunkPreprocess(spec.preprocess, name="trunk_preprocess")(image)
    builder = getattr(keras.applications, spec.builder)
    trunk = builder(include_top=False, weights=weights, input_tensor=x, **dict(spec.extra_kwargs))
    if path:
        try:
            trunk.load_weights(path)
        except Exception as e:  # a file of another architecture: say so in one line
            raise MtlError(f"could not load trunk weights from {path}: {str(e).splitlines()[0]}") from None
    if bn_momentum is not None:
        for layer in trunk.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    if zero_init_residual and spec.residual_bn and weights is None and not path:
        zero_residual_gammas(trunk.layers, spec.residual_bn)
    if spec.tap_layers:
        taps = {tap: trunk.get_layer(layer).output for tap, layer in spec.tap_layers}
    else:
        taps = _taps_by_stride(trunk, size)
    return taps
